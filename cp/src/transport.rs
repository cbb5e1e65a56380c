//! rvsadm's and rvs-cp's way to the data plane: the shared-memory control
//! region rvs-dp serves (`rvs_proto::ring`), one request and one reply at a
//! time, as serde_json bytes.
//!
//! The transport connects lazily and reconnects by itself: a tool started
//! before rvs-dp, or one that outlives an rvs-dp restart, keeps working. The
//! operator-facing texts ("rvs-dp is not running (no control region at
//! PATH)", ...) are the ring's own `CtlError` messages.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rvs_proto::command::{Command, Reply};
use rvs_proto::region::{RegionError as RingError, DEFAULT_PATH};
use rvs_proto::ring::CtlClient;
use rvs_proto::statsarea::{KernelStatsBlock, StatsReader};
use rvs_proto::types::DropReason;

use crate::adm::CtlTransport;

/// How long one request may wait for rvs-dp's reply by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// Environment variable naming the control region (below `--ctl`).
pub const CTL_ENV: &str = "RVS_CTL";

/// The control region path: `--ctl` if given, else `$RVS_CTL`, else the
/// config file's `dataplane.ctl` (rvs-cp only), else `DEFAULT_PATH` (`/run/rvs/rvs.ctl`).
pub fn resolve_ctl_path(cli: Option<&Path>, config: Option<&Path>) -> PathBuf {
    if let Some(p) = cli {
        return p.to_path_buf();
    }
    match std::env::var_os(CTL_ENV) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => config.map_or_else(|| PathBuf::from(DEFAULT_PATH), Path::to_path_buf),
    }
}

/// Why a request got no usable reply.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(transparent)]
    Ring(#[from] RingError),
    #[error("cannot encode the request: {0}")]
    Encode(serde_json::Error),
    #[error("rvs-dp sent a reply this tool cannot read: {0}")]
    Decode(serde_json::Error),
}

/// A client of the control region at one path.
pub struct ShmTransport {
    path: PathBuf,
    timeout: Duration,
    client: Option<CtlClient>,
}

impl ShmTransport {
    /// Does not connect yet: the first request (or `check`) does.
    pub fn new(path: impl Into<PathBuf>) -> ShmTransport {
        ShmTransport {
            path: path.into(),
            timeout: DEFAULT_TIMEOUT,
            client: None,
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> ShmTransport {
        self.timeout = timeout;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The generation of the region currently mapped, if connected.
    pub fn generation(&self) -> Option<u64> {
        self.client.as_ref().map(CtlClient::generation)
    }

    fn client(&mut self) -> Result<&mut CtlClient, RingError> {
        if self.client.is_none() {
            self.client = Some(CtlClient::open(&self.path)?);
        }
        // Just set if it was empty.
        self.client.as_mut().ok_or_else(|| RingError::NotRunning {
            path: self.path.display().to_string(),
        })
    }

    /// Connects if needed and checks that rvs-dp is alive; returns the
    /// generation of the region now mapped (a different one than before
    /// means rvs-dp restarted and holds none of the old configuration).
    pub fn check(&mut self) -> Result<u64, RingError> {
        let client = self.client()?;
        match client.check_restart(false) {
            Ok(()) | Err(RingError::Restarted { .. }) => Ok(client.generation()),
            Err(e) => {
                self.client = None;
                Err(e)
            }
        }
    }

    /// Read access to the workers' stats blocks of the current region.
    pub fn stats(&mut self) -> Result<StatsReader, RingError> {
        self.check()?;
        Ok(self.client()?.stats())
    }

    /// Raw bytes in, raw bytes out, retrying once when rvs-dp was found
    /// restarted before the request went out (nothing was sent, so the retry
    /// cannot apply a command twice).
    pub fn request_bytes(&mut self, msg: &[u8]) -> Result<Vec<u8>, RingError> {
        let timeout = self.timeout;
        self.request_bytes_within(msg, timeout)
    }

    /// `request_bytes`, waiting up to `timeout` for the reply (a full
    /// resync's pages may wait for the workers longer than a command).
    pub fn request_bytes_within(&mut self, msg: &[u8], timeout: Duration) -> Result<Vec<u8>, RingError> {
        let first = self.client()?.request(msg, timeout);
        let result = match first {
            Err(RingError::Restarted { sent: false, .. }) => self.client()?.request(msg, timeout),
            other => other,
        };
        if let Err(RingError::Stale { .. } | RingError::NotReady { .. } | RingError::NotRunning { .. }) =
            &result
        {
            // Reopen on the next request: a new rvs-dp may be there by then.
            self.client = None;
        }
        result
    }

    /// One command, one reply.
    pub fn send(&mut self, cmd: &Command) -> Result<Reply, TransportError> {
        let msg = serde_json::to_vec(cmd).map_err(TransportError::Encode)?;
        let reply = self.request_bytes(&msg)?;
        serde_json::from_slice(&reply).map_err(TransportError::Decode)
    }
}

impl CtlTransport for ShmTransport {
    fn request(&mut self, cmd: &Command) -> anyhow::Result<Reply> {
        Ok(self.send(cmd)?)
    }

    fn drops(&mut self) -> anyhow::Result<[u64; DropReason::COUNT]> {
        let reader = self.stats()?;
        let mut total = [0u64; DropReason::COUNT];
        for w in 0..reader.workers() {
            // A worker caught mid-publish is read again by the reader itself;
            // one that never publishes (stopped) adds nothing.
            if let Some(b) = reader.read(w) {
                for (t, n) in total.iter_mut().zip(b.drops.iter()) {
                    *t += n;
                }
            }
        }
        Ok(total)
    }

    fn workers(&mut self) -> anyhow::Result<Vec<crate::adm::WorkerCounters>> {
        let reader = self.stats()?;
        let mut block = rvs_proto::statsarea::WorkerStatsBlock::new_boxed();
        let mut out = Vec::new();
        for w in 0..reader.workers() {
            if reader.read_into(w, &mut block) {
                out.push(crate::adm::WorkerCounters::from_block(w as u32, &block));
            }
        }
        Ok(out)
    }

    fn kernel(&mut self) -> anyhow::Result<KernelStatsBlock> {
        match self.stats()?.read_kernel() {
            Some(b) => Ok(b),
            None => anyhow::bail!(
                "rvs-dp's kernel interface counters are being written and could not be read (its exception thread may have died mid-update)"
            ),
        }
    }
}

/// Splits rvsadm's own `--ctl PATH` / `--ctl=PATH` out of its arguments (the
/// rest are ipvsadm's). Errors when `--ctl` lacks its value.
pub fn take_ctl_arg(args: &mut Vec<String>) -> Result<Option<PathBuf>, String> {
    let mut found = None;
    let mut i = 0;
    while i < args.len() {
        if args[i] == "--ctl" {
            if i + 1 >= args.len() {
                return Err("option --ctl requires an argument (the control region path)".into());
            }
            found = Some(PathBuf::from(args.remove(i + 1)));
            args.remove(i);
        } else if let Some(v) = args[i].strip_prefix("--ctl=") {
            found = Some(PathBuf::from(v));
            args.remove(i);
        } else {
            i += 1;
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ctl_option_is_taken_out_of_ipvsadm_args() {
        let mut a = v(&["-L", "--ctl", "/tmp/x.ctl", "-n"]);
        assert_eq!(take_ctl_arg(&mut a), Ok(Some(PathBuf::from("/tmp/x.ctl"))));
        assert_eq!(a, v(&["-L", "-n"]));
        let mut a = v(&["--ctl=/y", "-C"]);
        assert_eq!(take_ctl_arg(&mut a), Ok(Some(PathBuf::from("/y"))));
        assert_eq!(a, v(&["-C"]));
        let mut a = v(&["-Ln"]);
        assert_eq!(take_ctl_arg(&mut a), Ok(None));
        assert!(take_ctl_arg(&mut v(&["-L", "--ctl"])).is_err());
    }

    /// rvsadm prints the whole error chain (`{:#}`): an OS error that is part
    /// of the region's message must not come again as its cause.
    #[test]
    fn os_errors_are_printed_once() {
        let e = RingError::Io {
            op: "open",
            path: "/run/rvs/rvs.ctl".into(),
            err: std::io::Error::from_raw_os_error(libc::EACCES),
        };
        let shown = format!("{:#}", anyhow::Error::from(TransportError::from(e)));
        assert_eq!(shown.matches("Permission denied").count(), 1, "{shown}");
    }

    #[test]
    fn cli_path_wins() {
        assert_eq!(
            resolve_ctl_path(Some(Path::new("/a")), Some(Path::new("/b"))),
            PathBuf::from("/a")
        );
    }

    #[test]
    fn no_data_plane_is_a_clear_error() {
        let path = std::env::temp_dir().join(format!("rvs-nodp-{}.ctl", std::process::id()));
        let mut t = ShmTransport::new(&path);
        let e = t.send(&Command::List).unwrap_err().to_string();
        assert_eq!(
            e,
            format!("rvs-dp is not running (no control region at {})", path.display())
        );
    }
}
