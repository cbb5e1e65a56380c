//! Full resync between directors, beyond IPVS (whose sync is incremental only): a
//! director that starts, or whose rvs-dp restarts, fetches its peer's whole
//! connection table and hands it to its rvs-dp before it reports ready
//! (`--ready-file`), so keepalived lets it take the VIPs back (preempt) only once
//! it knows every connection the peer forwards. What changes after the listing
//! reaches it by the sync daemons (the peer's master, this director's backup,
//! which rvs-cp starts before it fetches).
//!
//! - Serving (`--resync-listen ADDR:PORT`): a thread that accepts TCP connections
//!   and answers each with its own rvs-dp's connection listing (`-L -c`, paged over
//!   its own control connection), one JSON `ConnInfo` a line, then `END n`. If its
//!   rvs-dp cannot be listed it answers `ERR reason`.
//! - Fetching (`--resync-from ADDR:PORT`, `fetch`): Ok(Some(entries)) after `END`
//!   with the count it announced; Ok(None) when nobody listens there or it cannot
//!   be reached within `CONNECT_TIMEOUT` (a lone director, or the peer is down:
//!   nothing to resync from); Err when a listing broke off or was refused, which
//!   the daemon retries a few times (`daemon`).
//!
//! The transport is TCP on a kernel interface of the exception path, the same one
//! the sync multicast rides.
//!
//! Who may fetch: the listener answers only the source addresses it is given
//! (`--resync-allow`, else the backup sync daemon's peers: keepalived.conf's
//! `sync_peer`); a connection from any other address gets `ERR not allowed`,
//! is counted (`ResyncStats::refused`) and logged, and sees nothing of the table.
//! With no address given it answers anyone (and says so at start): bind it to
//! the directors' own network then.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use rvs_proto::command::ConnInfo;
use tracing::{info, warn};

use crate::adm::exchange::list_conns;
use crate::transport::ShmTransport;

/// How long a fetch waits for the peer to accept.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a fetch waits for the next line of a listing.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What the serving thread did.
#[derive(Debug, Default)]
pub struct ResyncStats {
    /// Listings sent whole.
    pub served: AtomicU64,
    /// Connections from an address not allowed, answered `ERR not allowed`.
    pub refused: AtomicU64,
    /// Allowed connections whose listing failed (rvs-dp unreachable, peer gone).
    pub failed: AtomicU64,
}

/// Whether `peer` may fetch: it is in `allow`, or `allow` is empty (anyone).
pub fn allowed(allow: &[IpAddr], peer: IpAddr) -> bool {
    let peer = match peer {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4),
        a => a,
    };
    allow.is_empty() || allow.contains(&peer)
}

/// Starts the serving thread on `listen`, listing rvs-dp at `ctl` to the
/// addresses in `allow` (empty: to anyone).
pub fn serve(
    listen: SocketAddr,
    ctl: PathBuf,
    allow: Vec<IpAddr>,
) -> io::Result<(JoinHandle<()>, Arc<ResyncStats>)> {
    let l = TcpListener::bind(listen)?;
    if allow.is_empty() {
        warn!("serving full resync on tcp {listen} to any address (no --resync-allow, no sync_peer)");
    } else {
        let list: Vec<String> = allow.iter().map(|a| a.to_string()).collect();
        info!("serving full resync on tcp {listen} to {}", list.join(", "));
    }
    let stats = Arc::new(ResyncStats::default());
    let st = stats.clone();
    let h = thread::Builder::new().name("resync".into()).spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let Ok(peer) = s.peer_addr() else { continue };
            if !allowed(&allow, peer.ip()) {
                let n = st.refused.fetch_add(1, Ordering::Relaxed) + 1;
                warn!("full resync: refused {peer}: not an allowed peer ({n} refused so far)");
                let mut s = s;
                let _ = s.write_all(b"ERR not allowed\n");
                continue;
            }
            match answer(s, &ctl) {
                Ok(n) => {
                    st.served.fetch_add(1, Ordering::Relaxed);
                    info!("full resync: sent {n} entries to {peer}");
                }
                Err(e) => {
                    st.failed.fetch_add(1, Ordering::Relaxed);
                    warn!("full resync to {peer}: {e}");
                }
            }
        }
    })?;
    Ok((h, stats))
}

/// One listing, written to `s`.
fn answer(s: TcpStream, ctl: &std::path::Path) -> io::Result<usize> {
    let mut w = io::BufWriter::new(s);
    let mut t = ShmTransport::new(ctl);
    match list_conns(&mut t) {
        Ok(conns) => {
            for c in &conns {
                serde_json::to_writer(&mut w, c)?;
                w.write_all(b"\n")?;
            }
            writeln!(w, "END {}", conns.len())?;
            w.flush()?;
            Ok(conns.len())
        }
        Err(e) => {
            writeln!(w, "ERR {e}")?;
            w.flush()?;
            Err(io::Error::other(e.to_string()))
        }
    }
}

/// Reads the peer's listing: see the module doc.
pub fn fetch(peer: SocketAddr) -> Result<Option<Vec<ConnInfo>>, String> {
    let s = match TcpStream::connect_timeout(&peer, CONNECT_TIMEOUT) {
        Ok(s) => s,
        Err(e) => {
            return match e.kind() {
                io::ErrorKind::ConnectionRefused
                | io::ErrorKind::TimedOut
                | io::ErrorKind::HostUnreachable
                | io::ErrorKind::NetworkUnreachable => Ok(None),
                _ => Err(format!("connect to {peer}: {e}")),
            }
        }
    };
    s.set_read_timeout(Some(READ_TIMEOUT))
        .map_err(|e| e.to_string())?;
    read_listing(BufReader::new(s)).map(Some)
}

/// A listing's lines up to `END n`.
pub fn read_listing(r: impl BufRead) -> Result<Vec<ConnInfo>, String> {
    let mut out = Vec::new();
    for line in r.lines() {
        let line = line.map_err(|e| format!("listing broke off after {} entries: {e}", out.len()))?;
        if let Some(n) = line.strip_prefix("END ") {
            return match n.parse::<usize>() {
                Ok(n) if n == out.len() => Ok(out),
                _ => Err(format!("listing ends with '{line}' after {} entries", out.len())),
            };
        }
        if line == "ERR not allowed" {
            return Err("the peer refused this director: not in its --resync-allow (or sync_peer)".into());
        }
        if let Some(e) = line.strip_prefix("ERR ") {
            return Err(format!("the peer could not list its table: {e}"));
        }
        out.push(serde_json::from_str(&line).map_err(|e| format!("bad listing line '{line}': {e}"))?);
    }
    Err(format!("listing broke off after {} entries (no END)", out.len()))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use rvs_proto::types::Proto;

    use super::*;

    fn conn(i: u16) -> ConnInfo {
        ConnInfo {
            proto: Proto::Tcp,
            state: "ESTABLISHED".into(),
            expires_s: 900,
            cip: Ipv4Addr::new(10, 1, 0, 10),
            cport: 40000 + i,
            vip: Ipv4Addr::new(10, 1, 0, 100),
            vport: 80,
            rip: Ipv4Addr::new(10, 2, 0, 11),
            rport: 80,
            laddr: None,
        }
    }

    fn listing(n: u16, end: &str) -> String {
        let mut s = String::new();
        for i in 0..n {
            s += &serde_json::to_string(&conn(i)).unwrap();
            s += "\n";
        }
        s + end
    }

    #[test]
    fn a_whole_listing_is_read() {
        let got = read_listing(listing(3, "END 3\n").as_bytes()).unwrap();
        assert_eq!(got, vec![conn(0), conn(1), conn(2)]);
        assert_eq!(read_listing("END 0\n".as_bytes()).unwrap(), vec![]);
    }

    #[test]
    fn a_broken_listing_is_an_error() {
        for (text, want) in [
            (listing(2, ""), "no END"),
            (listing(2, "END 3\n"), "ends with 'END 3' after 2 entries"),
            (
                listing(0, "ERR rvs-dp is not running\n"),
                "could not list its table",
            ),
            ("{not json\n".to_string(), "bad listing line"),
        ] {
            let e = read_listing(text.as_bytes()).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
    }

    /// A fetch from `from` (a loopback address) to `to`.
    fn fetch_from(from: &str, to: SocketAddr) -> Result<Vec<ConnInfo>, String> {
        let s = socket_from(from, to);
        read_listing(BufReader::new(s))
    }

    fn socket_from(from: &str, to: SocketAddr) -> TcpStream {
        // std has no bind-then-connect: a raw socket bound to `from`, then connected.
        let from: std::net::SocketAddrV4 = format!("{from}:0").parse().unwrap();
        let SocketAddr::V4(to) = to else { panic!("v4") };
        let sin = |a: std::net::SocketAddrV4| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: a.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*a.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: plain socket calls on an fd we own, with live sockaddr_in values.
        unsafe {
            use std::os::fd::FromRawFd;
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            assert!(fd >= 0);
            let a = sin(from);
            assert_eq!(libc::bind(fd, (&a as *const libc::sockaddr_in).cast(), len), 0);
            let b = sin(to);
            assert_eq!(libc::connect(fd, (&b as *const libc::sockaddr_in).cast(), len), 0);
            TcpStream::from_raw_fd(fd)
        }
    }

    #[test]
    fn only_allowed_peers_are_answered_and_others_are_counted() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let ctl = std::env::temp_dir().join(format!("rvs-resync-test-{}.ctl", std::process::id()));
        let (_h, stats) = serve(port, ctl, vec!["127.0.0.2".parse().unwrap()]).unwrap();
        // From 127.0.0.1: refused before any listing is attempted.
        let e = fetch_from("127.0.0.1", port).unwrap_err();
        assert!(e.contains("refused this director"), "{e}");
        let e = fetch_from("127.0.0.3", port).unwrap_err();
        assert!(e.contains("refused this director"), "{e}");
        // From the allowed address: the listing is attempted (no rvs-dp here,
        // so it fails, but for that reason).
        let e = fetch_from("127.0.0.2", port).unwrap_err();
        assert!(!e.contains("refused this director"), "{e}");
        assert!(e.contains("could not list its table"), "{e}");
        let t0 = std::time::Instant::now();
        while stats.failed.load(Ordering::Relaxed) < 1 && t0.elapsed() < Duration::from_secs(5) {
            thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(stats.refused.load(Ordering::Relaxed), 2);
        assert_eq!(stats.failed.load(Ordering::Relaxed), 1);
        assert_eq!(stats.served.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_allow_list() {
        let a: Vec<IpAddr> = vec!["192.0.2.2".parse().unwrap()];
        assert!(allowed(&a, "192.0.2.2".parse().unwrap()));
        assert!(
            allowed(&a, "::ffff:192.0.2.2".parse().unwrap()),
            "a v4-mapped source"
        );
        assert!(!allowed(&a, "192.0.2.3".parse().unwrap()));
        assert!(allowed(&[], "198.51.100.1".parse().unwrap()), "empty: anyone");
    }

    #[test]
    fn nobody_listening_is_nothing_to_resync() {
        // A port just released: connection refused.
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        assert_eq!(fetch(port), Ok(None));
    }
}
