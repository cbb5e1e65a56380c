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
//! the sync multicast rides. The listener answers whoever reaches it: bind it to
//! the directors' own network.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
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

/// Starts the serving thread on `listen`, listing rvs-dp at `ctl`.
pub fn serve(listen: SocketAddr, ctl: PathBuf) -> io::Result<JoinHandle<()>> {
    let l = TcpListener::bind(listen)?;
    info!("serving full resync on tcp {listen}");
    thread::Builder::new().name("resync".into()).spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let peer = s.peer_addr().map(|a| a.to_string()).unwrap_or_default();
            match answer(s, &ctl) {
                Ok(n) => info!("full resync: sent {n} entries to {peer}"),
                Err(e) => warn!("full resync to {peer}: {e}"),
            }
        }
    })
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

    #[test]
    fn nobody_listening_is_nothing_to_resync() {
        // A port just released: connection refused.
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        assert_eq!(fetch(port), Ok(None));
    }
}
