//! `--ready-file`: a file that tells keepalived whether this director can
//! serve, so that VRRP never gives it the VIPs before rvs-dp holds the
//! configuration (at start, or after an rvs-dp restart).
//!
//! The format is keepalived's `vrrp_track_file` with `weight 0`: "0" means
//! ready, any other value puts the tracking VRRP instances (and their sync
//! group) in FAULT. The file is replaced by a rename, so keepalived, which
//! watches it with inotify, never reads it half-written.

use std::io::Write;
use std::path::{Path, PathBuf};

use tracing::{info, warn};

pub struct ReadyFile {
    path: PathBuf,
    /// What the file says now; None before the first write.
    written: Option<bool>,
    /// A write failed: logged once until one succeeds.
    failing: bool,
}

impl ReadyFile {
    /// Does not touch the file until the first `set`.
    pub fn new(path: &Path) -> ReadyFile {
        ReadyFile {
            path: path.to_path_buf(),
            written: None,
            failing: false,
        }
    }

    /// Writes the state if it changed, or if the file no longer says what
    /// was written (removed, or overwritten, e.g. by keepalived's
    /// `init_file ... overwrite` at its restart). A failure is logged and
    /// retried at the next call.
    pub fn set(&mut self, ready: bool) {
        let want = if ready { "0" } else { "1" };
        if self.written == Some(ready) && std::fs::read_to_string(&self.path).is_ok_and(|s| s.trim() == want)
        {
            return;
        }
        match write_atomically(&self.path, format!("{want}\n").as_bytes()) {
            Ok(()) => {
                info!(
                    "{}: {}",
                    self.path.display(),
                    if ready {
                        "ready (0): rvs-dp holds the configuration"
                    } else {
                        "not ready (1): rvs-dp is not running or not configured yet, or a service lost its quorum"
                    }
                );
                self.written = Some(ready);
                self.failing = false;
            }
            Err(e) if !self.failing => {
                warn!(
                    "cannot write the ready file {}: {e}; retrying",
                    self.path.display()
                );
                self.failing = true;
            }
            Err(_) => {}
        }
    }
}

fn write_atomically(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(content)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rvs-ready-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn keeps_the_file_at_keepalived_track_file_values() {
        let dir = scratch("change");
        let path = dir.join("ready");
        let mut r = ReadyFile::new(&path);
        assert!(!path.exists(), "nothing before the first set");
        r.set(false);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "1\n");
        r.set(true);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "0\n");
        // Overwritten or removed behind its back: restored.
        std::fs::write(&path, "1\n").unwrap();
        r.set(true);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "0\n");
        std::fs::remove_file(&path).unwrap();
        r.set(true);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "0\n");
        r.set(false);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "1\n");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no temporary left");
    }

    #[test]
    fn an_unwritable_path_is_retried() {
        let dir = scratch("retry");
        let path = dir.join("missing").join("ready");
        let mut r = ReadyFile::new(&path);
        r.set(true);
        assert!(r.written.is_none());
        std::fs::create_dir(dir.join("missing")).unwrap();
        r.set(true);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "0\n");
    }
}
