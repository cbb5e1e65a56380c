//! Root's rvsadm never talks to a control region a local user planted: a fake
//! region with a valid header, whose dp_pid is a live process of `nobody`.
//! It must refuse with the file, its owner and mode, and send nothing (the
//! squatter's command ring stays as it was: no command captured).
//!
//! Needs root to act as `nobody` (setpriv), as in CI; skipped otherwise.

use std::io::Write;
use std::mem::offset_of;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rvs_proto::region::{Header, Layout};
use rvs_proto::ring::CtlServer;

const SETPRIV: &str = "/usr/bin/setpriv";
const AS_NOBODY: [&str; 3] = ["--reuid=nobody", "--regid=nogroup", "--clear-groups"];

/// A world-writable sticky directory of the test's own (like /dev/shm),
/// removed on drop.
struct SharedDir(PathBuf);

impl SharedDir {
    fn new() -> SharedDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("rvs-squat-adm-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        SharedDir(dir)
    }
}

impl Drop for SharedDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The squatter's stand-in for rvs-dp: a live process of nobody's.
struct Squatter(Child);

impl Drop for Squatter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A valid, ready region naming `dp_pid`, built with the proto crate's types.
fn fake_region(dir: &Path, dp_pid: u32) -> Vec<u8> {
    let real = dir.join("built-by-root.ctl");
    let server = CtlServer::create(&real, Layout::default()).unwrap();
    let mut bytes = std::fs::read(&real).unwrap();
    drop(server);
    let off = offset_of!(Header, dp_pid);
    bytes[off..off + 4].copy_from_slice(&dp_pid.to_ne_bytes());
    bytes
}

#[test]
fn rvsadm_refuses_a_squatted_region_and_sends_nothing() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !Path::new(SETPRIV).exists() {
        eprintln!("skipped: needs root and {SETPRIV} to act as the squatter (nobody)");
        return;
    }
    let dir = SharedDir::new();
    let path = dir.0.join("rvs.ctl");
    let squatter = Squatter(
        Command::new(SETPRIV)
            .args(AS_NOBODY)
            .args(["sleep", "60"])
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(50));
    let bytes = fake_region(&dir.0, squatter.0.id());
    let mut plant = Command::new("timeout")
        .args(["10", SETPRIV])
        .args(AS_NOBODY)
        .args(["sh", "-c", "umask 077; cat > \"$1\"", "sh"])
        .arg(&path)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    plant.stdin.take().unwrap().write_all(&bytes).unwrap();
    assert!(plant.wait().unwrap().success());

    let exe = env!("CARGO_BIN_EXE_rvsadm");
    for args in [
        vec!["-A", "-t", "10.1.0.5:80", "-s", "rr"],
        vec!["-a", "-t", "10.1.0.5:80", "-r", "10.2.0.11:80", "-m"],
        vec!["-Ln"],
    ] {
        let out = Command::new("timeout")
            .arg("10")
            .arg(exe)
            .args(&args)
            .arg("--ctl")
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "rvsadm {args:?}: {stderr}");
        for part in [
            format!("refusing control region {}", path.display()),
            "owned by another user".to_string(),
            "owner uid 65534 (nobody)".to_string(),
            "mode 0600".to_string(),
        ] {
            assert!(
                stderr.contains(&part),
                "rvsadm {args:?}: missing {part:?} in {stderr}"
            );
        }
    }
    assert!(
        std::fs::read(&path).unwrap() == bytes,
        "rvsadm wrote into the squatter's region"
    );
}
