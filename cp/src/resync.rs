//! Full resync between directors, beyond IPVS (whose sync is incremental only): a
//! director that starts, or whose rvs-dp restarts, fetches its peer's whole
//! connection table and hands it to its rvs-dp before it reports ready
//! (`--ready-file`), so keepalived lets it take the VIPs back (preempt) only once
//! it knows every connection the peer forwards. What changes after the listing
//! reaches it by the sync daemons (the peer's master, this director's backup,
//! which rvs-cp starts before it fetches).
//!
//! - Serving (`--resync-listen ADDR:PORT`): a thread that accepts TCP connections
//!   and answers each with its own rvs-dp's table, a page at a time over its own
//!   control connection (`BulkRequest::List`: IPVS sync v1 messages, which rvs-dp
//!   encodes), each page written as it comes as an `Entries` frame, then `End`
//!   with the count (`rvs_proto::resync` has the framing). If its rvs-dp cannot
//!   be listed it answers an `Error` frame with the reason.
//! - Fetching (`--resync-from ADDR:PORT`, `fetch`): each `Entries` frame goes to
//!   this director's rvs-dp as it arrives (`install_page`: one control round trip
//!   per page of up to 1 MiB, about 29,000 entries), so the two rvs-dp, the two
//!   rvs-cp and the TCP stream work at once. Ok(Some(n)) after `End` with the
//!   count of the entries received; Ok(None) when nobody listens there or it
//!   cannot be reached within `CONNECT_TIMEOUT` (a lone director, or the peer is
//!   down: nothing to resync from); Err when a listing broke off, was refused, or
//!   a frame was malformed (unknown kind, a length over the limit, a count its
//!   bytes cannot hold, a total that is not what came), which the daemon retries
//!   a few times (`daemon`). rvs-dp checks each page whole before installing any
//!   of it (its messages, and that they hold the count stated), and counts what
//!   it refuses (`resync_*` in the sync counters): a page is installed whole or
//!   not at all, an entry never in part. Pages installed before a failure stay
//!   installed; the retry installs them again (an update).
//!
//! The transport is TCP on a kernel interface of the exception path, the same one
//! the sync multicast rides.
//!
//! Who may fetch: the listener answers only the source addresses it is given
//! (`--resync-allow`, else the backup sync daemon's peers: keepalived.conf's
//! `sync_peer`); a connection from any other address gets an `Error` frame
//! `not allowed`, is counted (`ResyncStats::refused`) and logged, and sees
//! nothing of the table. With no address given it answers anyone (and says so
//! at start): bind it to the directors' own network then.

use std::io::{self, BufWriter, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use rvs_proto::command::Reply;
use rvs_proto::resync::{
    BulkRequest, FrameHeader, FrameKind, ListPage, FRAME_HEADER_LEN, MAX_FRAME_BYTES, NOT_ALLOWED,
    STREAM_MAGIC,
};
use tracing::{info, warn};

use crate::transport::ShmTransport;

/// How long a fetch waits for the peer to accept.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a fetch waits for the next bytes of a listing.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one page may take at rvs-dp (a listing's first page gathers every
/// worker's table; an install page may wait for the workers' rings).
pub const PAGE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the serving thread did, and what this director's own fetches did
/// (`/metrics`: `rvs_resync_listings_total`, `rvs_resync_fetches_total`).
#[derive(Debug, Default)]
pub struct ResyncStats {
    /// Listings sent whole.
    pub served: AtomicU64,
    /// Connections from an address not allowed, answered `not allowed`.
    pub refused: AtomicU64,
    /// Allowed connections whose listing failed (rvs-dp unreachable, peer gone).
    pub failed: AtomicU64,
    /// Fetches that installed the peer's table.
    pub fetched: AtomicU64,
    /// Fetches that found no peer listening (nothing to resync from).
    pub fetch_no_peer: AtomicU64,
    /// Fetches that broke off or were refused (each retried).
    pub fetch_failed: AtomicU64,
    /// Resyncs given up after the last retry (the director went ready
    /// without the peer's table).
    pub fetch_gave_up: AtomicU64,
    /// Entries installed by the fetches.
    pub fetched_entries: AtomicU64,
}

impl ResyncStats {
    /// Counts one fetch's outcome (`fetch`'s result); `last_try`: a failure
    /// is not retried (ignored for a success).
    pub fn count_fetch(&self, r: &Result<Option<usize>, String>, last_try: bool) {
        let bump = |c: &AtomicU64, n: u64| {
            c.fetch_add(n, Ordering::Relaxed);
        };
        match r {
            Ok(Some(n)) => {
                bump(&self.fetched, 1);
                bump(&self.fetched_entries, *n as u64);
            }
            Ok(None) => bump(&self.fetch_no_peer, 1),
            Err(_) => {
                bump(&self.fetch_failed, 1);
                if last_try {
                    bump(&self.fetch_gave_up, 1);
                }
            }
        }
    }
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
/// addresses in `allow` (empty: to anyone), counting into `stats`.
pub fn serve(
    listen: SocketAddr,
    ctl: PathBuf,
    allow: Vec<IpAddr>,
    stats: Arc<ResyncStats>,
) -> io::Result<JoinHandle<()>> {
    let l = TcpListener::bind(listen)?;
    if allow.is_empty() {
        warn!("serving full resync on tcp {listen} to any address (no --resync-allow, no sync_peer)");
    } else {
        let list: Vec<String> = allow.iter().map(|a| a.to_string()).collect();
        info!("serving full resync on tcp {listen} to {}", list.join(", "));
    }
    let st = stats;
    let h = thread::Builder::new().name("resync".into()).spawn(move || {
        let mut t = ShmTransport::new(&ctl).with_timeout(PAGE_TIMEOUT);
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let Ok(peer) = s.peer_addr() else { continue };
            if !allowed(&allow, peer.ip()) {
                let n = st.refused.fetch_add(1, Ordering::Relaxed) + 1;
                warn!("full resync: refused {peer}: not an allowed peer ({n} refused so far)");
                let mut w = BufWriter::new(s);
                let _ = w.write_all(&STREAM_MAGIC);
                let _ = write_error(&mut w, NOT_ALLOWED);
                let _ = w.flush();
                continue;
            }
            match answer(s, &mut t) {
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
    Ok(h)
}

fn write_error(w: &mut impl Write, why: &str) -> io::Result<()> {
    let why = &why.as_bytes()[..why.len().min(4096)];
    let h = FrameHeader {
        kind: FrameKind::Error,
        count: 0,
        len: why.len() as u32,
    };
    w.write_all(&h.to_bytes())?;
    w.write_all(why)
}

/// One page of rvs-dp's listing `listing` from `offset`, as the reply's bytes.
fn list_page(t: &mut ShmTransport, listing: u64, offset: u32) -> Result<Vec<u8>, String> {
    let req = BulkRequest::List {
        listing,
        offset,
        max_bytes: MAX_FRAME_BYTES,
    };
    t.request_bytes_within(&req.to_bytes(), PAGE_TIMEOUT)
        .map_err(|e| e.to_string())
}

/// The JSON reply in `bytes`, as the error it carries.
fn reply_error(bytes: &[u8]) -> String {
    match serde_json::from_slice::<Reply>(bytes) {
        Ok(Reply::Error(e)) => e.to_string(),
        Ok(r) => format!("unexpected reply {r:?}"),
        Err(e) => format!("unreadable reply: {e}"),
    }
}

/// One listing, written to `s` as it is read from rvs-dp.
fn answer(s: TcpStream, t: &mut ShmTransport) -> io::Result<usize> {
    let mut w = BufWriter::with_capacity(256 << 10, s);
    w.write_all(&STREAM_MAGIC)?;
    let (mut listing, mut offset) = (0u64, 0u32);
    let fail = |w: &mut BufWriter<TcpStream>, e: String| {
        let _ = write_error(w, &e);
        let _ = w.flush();
        Err(io::Error::other(e))
    };
    loop {
        let bytes = match list_page(t, listing, offset) {
            Ok(b) => b,
            Err(e) => return fail(&mut w, format!("rvs-dp: {e}")),
        };
        let page = match ListPage::parse(&bytes) {
            Some(Ok(p)) => p,
            Some(Err(e)) => return fail(&mut w, format!("rvs-dp sent a bad page: {e}")),
            None => return fail(&mut w, format!("rvs-dp: {}", reply_error(&bytes))),
        };
        if page.offset != offset || (page.count == 0 && offset < page.total) {
            return fail(&mut w, format!("rvs-dp's page at {offset} did not advance"));
        }
        if page.count > 0 {
            w.write_all(&FrameHeader::entries(page.count, page.entries.len()).to_bytes())?;
            w.write_all(page.entries)?;
        }
        listing = page.listing;
        offset += page.count;
        if offset >= page.total {
            let end = FrameHeader {
                kind: FrameKind::End,
                count: offset,
                len: 0,
            };
            w.write_all(&end.to_bytes())?;
            w.flush()?;
            return Ok(offset as usize);
        }
    }
}

/// Hands one page of `count` entries (sync v1 messages) to rvs-dp.
pub fn install_page(t: &mut ShmTransport, count: u32, entries: &[u8]) -> Result<(), String> {
    let req = BulkRequest::Install { count, entries };
    let bytes = t
        .request_bytes_within(&req.to_bytes(), PAGE_TIMEOUT)
        .map_err(|e| format!("rvs-dp: {e}"))?;
    match serde_json::from_slice::<Reply>(&bytes) {
        Ok(Reply::Ok) => Ok(()),
        _ => Err(format!("rvs-dp: {}", reply_error(&bytes))),
    }
}

/// Reads the peer's listing, handing each page to `install`: see the module doc.
pub fn fetch(
    peer: SocketAddr,
    install: impl FnMut(u32, &[u8]) -> Result<(), String>,
) -> Result<Option<usize>, String> {
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
    read_stream(io::BufReader::with_capacity(256 << 10, s), install).map(Some)
}

/// A listing's frames up to `End`, each page handed to `install` as it comes;
/// the number of entries.
pub fn read_stream(
    mut r: impl Read,
    mut install: impl FnMut(u32, &[u8]) -> Result<(), String>,
) -> Result<usize, String> {
    let mut total = 0u64;
    let broke = |total: u64, e: io::Error| format!("listing broke off after {total} entries: {e}");
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic).map_err(|e| broke(0, e))?;
    if magic != STREAM_MAGIC {
        return Err("the peer does not speak this resync protocol (another rvs version?)".into());
    }
    let mut buf = Vec::new();
    loop {
        let mut h = [0u8; FRAME_HEADER_LEN];
        r.read_exact(&mut h).map_err(|e| broke(total, e))?;
        let h = FrameHeader::parse(&h).map_err(|e| format!("bad frame after {total} entries: {e}"))?;
        buf.resize(h.len as usize, 0);
        r.read_exact(&mut buf).map_err(|e| broke(total, e))?;
        match h.kind {
            FrameKind::Entries => {
                install(h.count, &buf)?;
                total += u64::from(h.count);
            }
            FrameKind::End if u64::from(h.count) == total => return Ok(total as usize),
            FrameKind::End => {
                return Err(format!(
                    "listing ends with a count of {} after {total} entries",
                    h.count
                ))
            }
            FrameKind::Error if buf == NOT_ALLOWED.as_bytes() => {
                return Err("the peer refused this director: not in its --resync-allow (or sync_peer)".into())
            }
            FrameKind::Error => {
                return Err(format!(
                    "the peer could not list its table: {}",
                    String::from_utf8_lossy(&buf)
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream of `pages` (entry counts), each page `count` fixed-size
    /// entries of zeros (rvs-cp never reads inside them), then `end`.
    fn stream(pages: &[u32], end: Option<u32>) -> Vec<u8> {
        let mut s = STREAM_MAGIC.to_vec();
        for &n in pages {
            s.extend_from_slice(&FrameHeader::entries(n, n as usize * 36).to_bytes());
            s.extend(std::iter::repeat_n(0u8, n as usize * 36));
        }
        if let Some(count) = end {
            let h = FrameHeader {
                kind: FrameKind::End,
                count,
                len: 0,
            };
            s.extend_from_slice(&h.to_bytes());
        }
        s
    }

    fn read(bytes: &[u8]) -> (Result<usize, String>, Vec<(u32, usize)>) {
        let mut got = Vec::new();
        let r = read_stream(bytes, |n, b| {
            got.push((n, b.len()));
            Ok(())
        });
        (r, got)
    }

    #[test]
    fn a_whole_listing_is_read_page_by_page() {
        let (r, got) = read(&stream(&[3, 1], Some(4)));
        assert_eq!(r, Ok(4));
        assert_eq!(got, vec![(3, 108), (1, 36)]);
        assert_eq!(read(&stream(&[], Some(0))).0, Ok(0));
    }

    #[test]
    fn a_broken_or_malformed_listing_is_an_error_never_a_panic() {
        let mut error = STREAM_MAGIC.to_vec();
        error.extend_from_slice(
            &FrameHeader {
                kind: FrameKind::Error,
                count: 0,
                len: 18,
            }
            .to_bytes(),
        );
        error.extend_from_slice(b"rvs-dp not running");
        let mut bad_kind = stream(&[1], None);
        bad_kind.extend_from_slice(&[9; 12]);
        let mut too_many = STREAM_MAGIC.to_vec();
        too_many.extend_from_slice(&FrameHeader::entries(5, 36 * 4).to_bytes());
        too_many.extend(std::iter::repeat_n(0u8, 36 * 4));
        let mut too_long = STREAM_MAGIC.to_vec();
        too_long.extend_from_slice(&FrameHeader::entries(1, MAX_FRAME_BYTES as usize + 1).to_bytes());
        let whole = stream(&[2], Some(2));
        let truncated = &whole[..whole.len() - 20];
        for (text, want) in [
            (stream(&[2], None), "broke off after 2 entries"),
            (stream(&[2], Some(3)), "count of 3 after 2 entries"),
            (error, "could not list its table: rvs-dp not running"),
            (
                b"{\"proto\":\"Tcp\"}\n".to_vec(),
                "does not speak this resync protocol",
            ),
            (bad_kind, "unknown frame kind 9"),
            (too_many, "claims 5 entries in 144 bytes"),
            (too_long, "over the"),
            (truncated.to_vec(), "broke off after 0 entries"),
        ] {
            let (r, got) = read(&text);
            let e = r.unwrap_err();
            assert!(e.contains(want), "{e}");
            // A malformed page never reaches the installer.
            assert!(got.iter().all(|&(n, len)| len == n as usize * 36));
        }
        // Every prefix of a good stream: an error, never a panic.
        for n in 0..whole.len() {
            assert!(read(&whole[..n]).0.is_err());
        }
        // The installer's refusal ends the fetch.
        let r = read_stream(
            &stream(&[1, 1], Some(2))[..],
            |_, _| Err("rvs-dp: refused".into()),
        );
        assert_eq!(r, Err("rvs-dp: refused".into()));
    }

    /// A fetch from `from` (a loopback address) to `to`.
    fn fetch_from(from: &str, to: SocketAddr) -> Result<usize, String> {
        let s = socket_from(from, to);
        read_stream(s, |_, _| Ok(()))
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
        let stats = Arc::new(ResyncStats::default());
        let _h = serve(port, ctl, vec!["127.0.0.2".parse().unwrap()], stats.clone()).unwrap();
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
    fn fetch_outcomes_are_counted() {
        let s = ResyncStats::default();
        s.count_fetch(&Ok(Some(900)), false);
        s.count_fetch(&Ok(Some(5)), true);
        s.count_fetch(&Ok(None), false);
        s.count_fetch(&Err("broke off".into()), false);
        s.count_fetch(&Err("broke off".into()), true);
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        assert_eq!(
            (get(&s.fetched), get(&s.fetched_entries), get(&s.fetch_no_peer)),
            (2, 905, 1)
        );
        assert_eq!((get(&s.fetch_failed), get(&s.fetch_gave_up)), (2, 1));
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
        assert_eq!(fetch(port, |_, _| Ok(())), Ok(None));
    }
}
