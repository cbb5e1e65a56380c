//! The sync daemons: a master thread that sends what the workers' taps push, and a
//! backup thread that receives and hands each entry to the worker that owns it.
//! Both are ordinary threads with ordinary kernel UDP sockets on a kernel interface
//! (the exception path's tap, e.g. `outside0`), never on a worker's lcore.
//!
//! - Master: a socket sending to the group (default 224.0.0.81:8848) out of the
//!   interface (`IP_MULTICAST_IF` by index, and `SO_BINDTODEVICE`), ttl 1 unless
//!   told, no loopback. Every round it drains every worker's ring into sync v1
//!   messages of at most `sync_maxlen` bytes and sends what it built, then sleeps
//!   1 ms (unless a ring held more than a round takes). So a connection goes out
//!   within about a millisecond of the packet that made it due, in full messages
//!   under load, and the workers push into rings the master is not reading.
//! - Backup: a socket bound to group:port on the interface, member of the group
//!   there. A datagram from a source not in `peers` (when given) is counted and
//!   ignored; the rest go through `SyncDecoder` (refused whole or read to the end,
//!   every refusal counted by reason), and each entry goes to the inbound ring of
//!   `owner_of` its client: that worker installs it between bursts
//!   (`install::worker_tick`).
//!
//! Sockets are opened by `SyncDaemons::start`, on the calling thread, so errors
//! (no such interface, group not joinable) are the command's reply; the threads
//! inherit the caller's network namespace.

use std::ffi::CString;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rvs_proto::command::{DaemonRole, IpvsError, SyncCountersInfo, SyncDaemonSpec};

use super::decode::SyncDecoder;
use super::encode::SyncEncoder;
use super::event::SyncEvent;
use super::threshold::SyncParams;
use super::{sync_maxlen, McastFamily, SyncError, SyncRole};
use crate::core::{owner_of, Shared};

/// Events one master round takes from each worker's ring at most, so one busy
/// worker cannot starve the others' rings.
const MASTER_ROUND: usize = 4096;
/// The master's pause between rounds.
const MASTER_NAP: Duration = Duration::from_millis(1);
/// How long the backup's receive waits before it looks at its stop flag.
const RECV_TIMEOUT: Duration = Duration::from_millis(100);

/// What a daemon thread did. Atomics: the thread writes, listings and tests read.
#[derive(Debug, Default)]
pub struct DaemonCounters {
    /// Master: datagrams and entries sent; failed sends.
    pub messages_sent: AtomicU64,
    pub entries_sent: AtomicU64,
    pub send_errors: AtomicU64,
    /// Backup: datagrams received, whole and accepted; entries handed to workers.
    pub messages_received: AtomicU64,
    pub messages_accepted: AtomicU64,
    pub entries_received: AtomicU64,
    /// Backup: datagrams from a source outside `peers`.
    pub foreign_peer: AtomicU64,
    pub recv_errors: AtomicU64,
    /// Backup: refusals (a datagram, or one entry) by `SyncError` discriminant.
    pub by_reason: [AtomicU64; SyncError::COUNT],
}

impl DaemonCounters {
    pub fn reason(&self, e: SyncError) -> u64 {
        self.by_reason[e as usize].load(Ordering::Relaxed)
    }
}

struct Running {
    spec: SyncDaemonSpec,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<DaemonCounters>,
}

impl Running {
    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The running daemons of one director (at most one per role), owned by its
/// control thread. Stops them when dropped.
pub struct SyncDaemons {
    shared: Arc<Shared>,
    params: SyncParams,
    master: Option<Running>,
    backup: Option<Running>,
}

impl SyncDaemons {
    /// `params`: the master's sync_threshold and sync_refresh_period.
    pub fn new(shared: Arc<Shared>, params: SyncParams) -> Self {
        SyncDaemons {
            shared,
            params,
            master: None,
            backup: None,
        }
    }

    fn slot(&mut self, role: DaemonRole) -> &mut Option<Running> {
        match role {
            DaemonRole::Master => &mut self.master,
            DaemonRole::Backup => &mut self.backup,
        }
    }

    /// `--start-daemon`: opens the socket here, then starts the thread.
    pub fn start(&mut self, spec: &SyncDaemonSpec) -> Result<(), IpvsError> {
        if self.slot(spec.role).is_some() {
            return Err(IpvsError::DaemonRunning);
        }
        let sock_err = |e: io::Error| IpvsError::DaemonSocket(os_text(&e));
        let ifindex = if_index(&spec.mcast_ifn).map_err(sock_err)?;
        let mut spec = spec.clone();
        spec.mcast_group = Some(spec.group());
        spec.mcast_port = spec.port();
        spec.mcast_ttl = spec.ttl();
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(DaemonCounters::default());
        let shared = self.shared.clone();
        let (s, c) = (stop.clone(), counters.clone());
        let thread = match spec.role {
            DaemonRole::Master => {
                spec.sync_maxlen =
                    sync_maxlen(SyncRole::Master, McastFamily::Ipv4, 1500, spec.sync_maxlen) as u32;
                let sock = master_socket(&spec, ifindex).map_err(sock_err)?;
                let (syncid, maxlen) = (spec.syncid, spec.sync_maxlen as usize);
                let to = SocketAddrV4::new(spec.group(), spec.port());
                self.shared.sync.set_master(true, self.params);
                std::thread::Builder::new()
                    .name("rvs-sync-master".into())
                    .spawn(move || master_loop(&shared, &sock, to, syncid, maxlen, &s, &c))
            }
            DaemonRole::Backup => {
                let sock = backup_socket(&spec, ifindex).map_err(sock_err)?;
                let mtu = iface_mtu(&sock, &spec.mcast_ifn).unwrap_or(1500);
                spec.sync_maxlen =
                    sync_maxlen(SyncRole::Backup, McastFamily::Ipv4, mtu, spec.sync_maxlen) as u32;
                let (syncid, peers) = (spec.syncid, spec.peers.clone());
                std::thread::Builder::new()
                    .name("rvs-sync-backup".into())
                    .spawn(move || backup_loop(&shared, &sock, syncid, &peers, &s, &c))
            }
        };
        let thread = thread.map_err(|e| {
            if spec.role == DaemonRole::Master {
                self.shared.sync.set_master(false, self.params);
            }
            sock_err(e)
        })?;
        let role = spec.role;
        *self.slot(role) = Some(Running {
            spec,
            stop,
            thread: Some(thread),
            counters,
        });
        Ok(())
    }

    /// `--stop-daemon`.
    pub fn stop(&mut self, role: DaemonRole) -> Result<(), IpvsError> {
        let mut r = self.slot(role).take().ok_or(IpvsError::NoDaemon)?;
        if role == DaemonRole::Master {
            self.shared.sync.set_master(false, self.params);
        }
        r.halt();
        Ok(())
    }

    /// `-L --daemon`: master first, then backup, every default resolved.
    pub fn list(&self) -> Vec<SyncDaemonSpec> {
        [&self.master, &self.backup]
            .into_iter()
            .flatten()
            .map(|r| r.spec.clone())
            .collect()
    }

    /// Every sync counter: the workers' summed, the running daemons'.
    pub fn totals(&self) -> SyncCountersInfo {
        let mut t = SyncCountersInfo::default();
        let mut refused = |k: &str, n: u64| {
            if n > 0 {
                *t.refused.entry(k.to_string()).or_default() += n;
            }
        };
        let w = self
            .shared
            .sync
            .stats
            .iter()
            .map(|s| s.snapshot())
            .fold(Default::default(), |a: super::hub::SyncStatsSnapshot, b| a + b);
        refused("unknown_service", w.unknown_service);
        refused("unknown_dest", w.unknown_dest);
        refused("table_full", w.table_full);
        refused("fullnat", w.fullnat);
        refused("inbound_full", w.inbound_dropped);
        if let Some(b) = self.counters(DaemonRole::Backup) {
            refused("foreign_peer", b.foreign_peer.load(Ordering::Relaxed));
            for e in SyncError::ALL {
                refused(&snake(&format!("{e:?}")), b.reason(e));
            }
        }
        let (sent, dropped, installed, updated) = (w.pushed, w.dropped, w.installed, w.updated);
        let (mut messages_sent, mut send_errors, mut messages_received, mut messages_accepted) = (0, 0, 0, 0);
        if let Some(m) = self.counters(DaemonRole::Master) {
            messages_sent = m.messages_sent.load(Ordering::Relaxed);
            send_errors = m.send_errors.load(Ordering::Relaxed);
        }
        if let Some(b) = self.counters(DaemonRole::Backup) {
            messages_received = b.messages_received.load(Ordering::Relaxed);
            messages_accepted = b.messages_accepted.load(Ordering::Relaxed);
        }
        SyncCountersInfo {
            sent,
            dropped,
            installed,
            updated,
            messages_sent,
            send_errors,
            messages_received,
            messages_accepted,
            ..t
        }
    }

    pub fn counters(&self, role: DaemonRole) -> Option<Arc<DaemonCounters>> {
        match role {
            DaemonRole::Master => &self.master,
            DaemonRole::Backup => &self.backup,
        }
        .as_ref()
        .map(|r| r.counters.clone())
    }
}

/// `WrongSyncId` -> `wrong_sync_id`.
fn snake(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

impl Drop for SyncDaemons {
    fn drop(&mut self) {
        let _ = self.stop(DaemonRole::Master);
        let _ = self.stop(DaemonRole::Backup);
    }
}

/// The text ipvsadm would print for an errno: strerror's, without Rust's suffix.
fn os_text(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn if_index(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::ENODEV))?;
    // SAFETY: a NUL-terminated string that outlives the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(io::Error::from_raw_os_error(libc::ENODEV));
    }
    Ok(i)
}

fn setsockopt<T>(sock: &UdpSocket, level: libc::c_int, name: libc::c_int, val: &T) -> io::Result<()> {
    // SAFETY: `val` points to a live T of the size passed.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (val as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn bind_to_device(sock: &UdpSocket, name: &str) -> io::Result<()> {
    // SAFETY: the name's bytes, with its length.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            name.as_ptr().cast(),
            name.len() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn mreqn(group: Ipv4Addr, ifindex: u32) -> libc::ip_mreqn {
    libc::ip_mreqn {
        imr_multiaddr: libc::in_addr {
            s_addr: u32::from(group).to_be(),
        },
        imr_address: libc::in_addr { s_addr: 0 },
        imr_ifindex: ifindex as libc::c_int,
    }
}

fn master_socket(spec: &SyncDaemonSpec, ifindex: u32) -> io::Result<UdpSocket> {
    let sock = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
    bind_to_device(&sock, &spec.mcast_ifn)?;
    setsockopt(
        &sock,
        libc::IPPROTO_IP,
        libc::IP_MULTICAST_IF,
        &mreqn(Ipv4Addr::UNSPECIFIED, ifindex),
    )?;
    sock.set_multicast_ttl_v4(u32::from(spec.ttl()))?;
    sock.set_multicast_loop_v4(false)?;
    Ok(sock)
}

fn backup_socket(spec: &SyncDaemonSpec, ifindex: u32) -> io::Result<UdpSocket> {
    let sock = UdpSocket::bind(SocketAddrV4::new(spec.group(), spec.port()))?;
    bind_to_device(&sock, &spec.mcast_ifn)?;
    setsockopt(
        &sock,
        libc::IPPROTO_IP,
        libc::IP_ADD_MEMBERSHIP,
        &mreqn(spec.group(), ifindex),
    )?;
    sock.set_read_timeout(Some(RECV_TIMEOUT))?;
    Ok(sock)
}

/// The interface's MTU (SIOCGIFMTU), which sizes a backup's receive limit.
fn iface_mtu(sock: &UdpSocket, name: &str) -> io::Result<u32> {
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes().take(libc::IFNAMSIZ - 1)) {
        *d = s as libc::c_char;
    }
    // SAFETY: SIOCGIFMTU reads the name and writes the MTU into `req`.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFMTU as _, &mut req) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the ioctl filled the MTU member.
    Ok(unsafe { req.ifr_ifru.ifru_mtu }.max(0) as u32)
}

fn master_loop(
    shared: &Shared,
    sock: &UdpSocket,
    to: SocketAddrV4,
    syncid: u8,
    maxlen: usize,
    stop: &AtomicBool,
    c: &DaemonCounters,
) {
    let mut enc = SyncEncoder::new(syncid, maxlen);
    let mut send = |m: &[u8]| match sock.send_to(m, to) {
        Ok(_) => {
            c.messages_sent.fetch_add(1, Ordering::Relaxed);
        }
        Err(_) => {
            c.send_errors.fetch_add(1, Ordering::Relaxed);
        }
    };
    while !stop.load(Ordering::Relaxed) {
        // Whether some ring still held events when its round's share ended.
        let mut behind = false;
        for ring in &shared.sync.out {
            for k in 0..MASTER_ROUND {
                let Some(e) = ring.pop() else { break };
                behind |= k + 1 == MASTER_ROUND;
                // Cannot fail: our entries carry no persistence engine data.
                if enc.push(&e.to_sync(), &mut send).is_ok() {
                    c.entries_sent.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        enc.flush(&mut send);
        // Sleep after every round that emptied the rings, busy or not:
        // a master that kept popping while the workers push would pull each
        // ring's slots over to its core one event at a time, and every push
        // would then wait for the line to come back (measured: 0.61x the new
        // connection rate without sync, against 8 K-event rings that take
        // several milliseconds of new connections).
        if !behind {
            std::thread::sleep(MASTER_NAP);
        }
    }
}

fn backup_loop(
    shared: &Shared,
    sock: &UdpSocket,
    syncid: u8,
    peers: &[Ipv4Addr],
    stop: &AtomicBool,
    c: &DaemonCounters,
) {
    let mut dec = SyncDecoder::new(syncid);
    let mut seen = [0u64; SyncError::COUNT];
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => continue,
            Err(_) => {
                c.recv_errors.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        c.messages_received.fetch_add(1, Ordering::Relaxed);
        let ip = match from.ip() {
            std::net::IpAddr::V4(a) => a,
            std::net::IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
        };
        if !peers.is_empty() && !peers.contains(&ip) {
            c.foreign_peer.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let Some(datagram) = buf.get(..n) else { continue };
        if let Ok(entries) = dec.decode(datagram) {
            c.messages_accepted.fetch_add(1, Ordering::Relaxed);
            let mask = shared.services.load().owner_mask();
            for e in entries.flatten() {
                let e = SyncEvent::from_sync(&e);
                let w = owner_of(e.cip, mask, shared.workers) as usize;
                c.entries_received.fetch_add(1, Ordering::Relaxed);
                let (Some(ring), Some(st)) = (shared.sync.inbound.get(w), shared.sync.stats.get(w)) else {
                    continue;
                };
                if ring.push(e).is_err() {
                    st.inbound_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        // Publish what the decoder counted since the last datagram.
        for (i, (reason, n)) in dec.counters().iter().enumerate() {
            if let (Some(s), Some(a)) = (seen.get_mut(i), c.by_reason.get(reason as usize)) {
                if n > *s {
                    a.fetch_add(n - *s, Ordering::Relaxed);
                    *s = n;
                }
            }
        }
    }
}
