//! Connection sync over real UDP multicast: a master director's sync thread in one
//! network namespace, a backup director's in another, joined by a veth pair. The
//! master's forwarder opens connections; the backup's workers must end up holding
//! each one, in the worker that owns its client, bound to the same real server, in
//! the same state. Malformed and foreign datagrams are counted and change nothing.
//!
//! Needs root (network namespaces); the namespaces are named `sy-*` and removed
//! by the test, pass or fail.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use etherparse::PacketBuilder;
use rvs_dp::conn::TcpState;
use rvs_dp::core::{owner_of, CoreOptions, Forwarder, Verdict};
use rvs_dp::packet::VecBuf;
use rvs_dp::service::{ForwardMethod, Proto};
use rvs_dp::sync::{worker_tick, SyncDaemons, SyncEncoder, SyncError, SyncEvent, SyncParams, SyncState};
use rvs_dp::wire::ethernet::MacAddr;
use rvs_proto::command::{DaemonRole, IpvsError, SyncDaemonSpec};

#[path = "common/lab.rs"]
mod lab;
use lab::{port, rs_ip, LabDirector, P0_MAC, P1_MAC, VIP};

const MASTER_ADDR: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const SYNCID: u8 = 7;

fn cip(i: u16) -> Ipv4Addr {
    Ipv4Addr::new(10, 1, 1 + (i / 200) as u8, 10 + (i % 200) as u8)
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces joined by a veth pair; removed on drop.
struct Netns {
    master: String,
    backup: String,
}

impl Netns {
    fn new() -> Netns {
        let id = std::process::id() % 100_000;
        let n = Netns {
            master: format!("sy-m{id}"),
            backup: format!("sy-b{id}"),
        };
        for ns in [&n.master, &n.backup] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
            ip(&["netns", "add", ns]);
        }
        ip(&[
            "link", "add", "sym0", "netns", &n.master, "type", "veth", "peer", "name", "syb0", "netns",
            &n.backup,
        ]);
        for (ns, dev, addr) in [
            (&n.master, "sym0", "10.99.0.1/24"),
            (&n.backup, "syb0", "10.99.0.2/24"),
        ] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        n
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in [&self.master, &self.backup] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Runs `f` on a thread that entered namespace `ns` (threads it starts stay there).
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("netns file");
        // SAFETY: a valid namespace fd; only this thread changes namespace.
        let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("netns thread")
}

/// The same configuration on both directors: TCP VIP:80 NAT to real servers 1..=3
/// :8080 (rr), UDP VIP:53 NAT to real server 1.
fn director(workers: u16) -> LabDirector {
    let neighbours: Vec<_> = (1..=3).map(|i| (rs_ip(i), MacAddr([2, 0, 0, 0, 2, i]))).collect();
    let mut d = LabDirector::new(
        vec![
            port(P0_MAC, Ipv4Addr::new(10, 1, 0, 1), 1500),
            port(P1_MAC, Ipv4Addr::new(10, 2, 0, 1), 1500),
        ],
        &[(Ipv4Addr::new(10, 1, 0, 0), 16, Ipv4Addr::new(10, 1, 0, 254))],
        &neighbours,
        workers,
        CoreOptions::default(),
    );
    let k = d.service(Proto::Tcp, VIP, 80, "rr", None);
    for i in 1..=3 {
        d.real_server(k, rs_ip(i), 8080, 1, ForwardMethod::Nat);
    }
    let u = d.service(Proto::Udp, VIP, 53, "rr", None);
    d.real_server(u, rs_ip(1), 53, 1, ForwardMethod::Nat);
    d
}

fn tcp(c: Ipv4Addr, sport: u16, flags: &str) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0x0c], P0_MAC.0).ipv4(c.octets(), VIP.octets(), 64);
    let mut t = b.tcp(sport, 80, 1000, 64240);
    for f in flags.chars() {
        t = match f {
            'S' => t.syn(),
            'A' => t.ack(1),
            'F' => t.fin(),
            _ => t,
        };
    }
    let mut out = Vec::new();
    t.write(&mut out, b"x").unwrap();
    out
}

fn send(fwd: &mut Forwarder, frame: &[u8]) {
    let v = fwd.process(0, &mut VecBuf::new(frame), false);
    assert!(matches!(v, Verdict::Forward { .. }), "{v:?}");
}

fn spec(role: DaemonRole, ifn: &str) -> SyncDaemonSpec {
    let mut s = SyncDaemonSpec::new(role, ifn);
    s.syncid = SYNCID;
    s
}

/// Sends raw datagrams to the group from `from` (an address of `sym0`).
fn send_raw(from: Ipv4Addr, datagrams: Vec<Vec<u8>>) {
    let s = UdpSocket::bind(SocketAddrV4::new(from, 0)).unwrap();
    let ifaddr = libc::in_addr {
        s_addr: u32::from(from).to_be(),
    };
    // SAFETY: a live in_addr of the size passed.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            (&ifaddr as *const libc::in_addr).cast(),
            std::mem::size_of::<libc::in_addr>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0);
    s.set_multicast_loop_v4(false).unwrap();
    for d in datagrams {
        s.send_to(&d, SocketAddrV4::new(Ipv4Addr::new(224, 0, 0, 81), 8848))
            .unwrap();
    }
}

#[test]
fn master_to_backup_over_multicast() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root for network namespaces");
        return;
    }
    let ns = Netns::new();

    let master = director(1);
    let backup = director(2);
    let mut backup_peer = spec(DaemonRole::Backup, "syb0");
    backup_peer.peers = vec![MASTER_ADDR];

    let bshared = backup.shared.clone();
    let mut bd = in_netns(&ns.backup, move || {
        let mut d = SyncDaemons::new(bshared, SyncParams::default());
        d.start(&backup_peer).map(|_| d)
    })
    .expect("backup daemon starts");
    let mshared = master.shared.clone();
    let mut md = in_netns(&ns.master, move || {
        let mut d = SyncDaemons::new(mshared, SyncParams::default());
        let r = d.start(&spec(DaemonRole::Master, "sym0"));
        // Both roles at once, and ipvsadm's errors.
        let again = d.start(&spec(DaemonRole::Master, "sym0"));
        let nodev = d.start(&spec(DaemonRole::Backup, "nosuchdev0"));
        r.map(|_| (d, again, nodev))
    })
    .map(|(d, again, nodev)| {
        assert_eq!(again, Err(IpvsError::DaemonRunning));
        assert_eq!(again.unwrap_err().to_string(), "Daemon has already run");
        assert_eq!(nodev, Err(IpvsError::DaemonSocket("No such device".into())));
        d
    })
    .expect("master daemon starts");
    let listed: Vec<String> = md.list().iter().map(|s| s.ipvsadm_line()).collect();
    assert_eq!(
        listed,
        ["master sync daemon (mcast=sym0, syncid=7, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)"]
    );
    assert_eq!(
        bd.list()[0].ipvsadm_line(),
        "backup sync daemon (mcast=syb0, syncid=7, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)"
    );

    // The master forwards: N connections to ESTABLISHED (sent on their 3rd packet),
    // every 4th then closed by the client (CLOSE_WAIT, sent at once).
    let mut mf = master.forwarder(0, 4096, 100);
    worker_tick(&mut mf);
    assert!(mf.sync.is_some());
    const N: u16 = 300;
    for i in 0..N {
        let c = cip(i);
        send(&mut mf, &tcp(c, 20000 + i, "S"));
        send(&mut mf, &tcp(c, 20000 + i, "A"));
        send(&mut mf, &tcp(c, 20000 + i, "A"));
        if i % 4 == 0 {
            send(&mut mf, &tcp(c, 20000 + i, "FA"));
        }
    }
    // Noise from a foreign source and malformed datagrams, from the master's
    // namespace: none of it may install anything.
    let good_syncid_bad_size = vec![0, SYNCID, 0, 99, 0, 1, 0, 0];
    let wrong_syncid = vec![0, SYNCID + 1, 0, 8, 0, 1, 0, 0];
    let version0 = vec![1, SYNCID, 0, 8, 0, 0, 0, 0];
    let count_past_end = vec![0, SYNCID, 0, 8, 3, 1, 0, 0];
    // A well-formed message for a connection of its own, from an address that is
    // not the configured peer.
    let mut foreign = Vec::new();
    let intruder = SyncEvent {
        cip: Ipv4Addr::new(10, 1, 9, 9),
        vip: VIP,
        rip: rs_ip(1),
        timeout: 900,
        fwmark: 0,
        cport: 1234,
        vport: 80,
        rport: 8080,
        proto: Proto::Tcp,
        fwd: ForwardMethod::Nat,
        state: SyncState::Tcp(TcpState::Established),
        inactive: false,
        proxy: None,
    };
    SyncEncoder::new(SYNCID, 1472)
        .encode_all(&[intruder.to_sync()], |m| foreign.push(m.to_vec()))
        .unwrap();
    ip(&["-n", &ns.master, "addr", "add", "10.99.0.3/24", "dev", "sym0"]);
    in_netns(&ns.master, move || {
        send_raw(
            MASTER_ADDR,
            vec![good_syncid_bad_size, wrong_syncid, version0, count_past_end],
        );
        send_raw(Ipv4Addr::new(10, 99, 0, 3), foreign);
    });

    let mut workers: Vec<Forwarder> = (0..2).map(|w| backup.forwarder(w, 4096, 100)).collect();
    let expected = u64::from(N) + u64::from(N.div_ceil(4));
    let t0 = Instant::now();
    while bshared_total(&backup) < expected && t0.elapsed() < Duration::from_secs(10) {
        for w in workers.iter_mut() {
            worker_tick(w);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let s = backup.shared.sync.totals();
    assert_eq!(
        s.installed,
        u64::from(N),
        "every connection installed once: {s:?}"
    );
    assert_eq!(
        s.updated,
        u64::from(N.div_ceil(4)),
        "the CLOSE_WAIT updates: {s:?}"
    );
    assert_eq!(
        (s.unknown_service, s.unknown_dest, s.table_full, s.inbound_dropped),
        (0, 0, 0, 0)
    );
    worker_tick(&mut mf); // publishes the tap's counts
    let m = master.shared.sync.totals();
    assert_eq!(m.pushed, expected);
    assert_eq!(m.dropped, 0);

    // Each connection sits in the worker that owns its client, with the master's
    // real server and state.
    let mask = backup.shared.services.load().owner_mask();
    let mut by_worker = [0usize; 2];
    for (_, mc) in mf.conns.iter() {
        let w = owner_of(mc.cip(), mask, 2) as usize;
        by_worker[w] += 1;
        let bc = workers[w]
            .conns
            .iter()
            .map(|(_, c)| c)
            .find(|c| c.flow() == mc.flow())
            .unwrap_or_else(|| panic!("{:?} not on backup worker {w}", mc.flow()));
        assert_eq!((bc.rip(), bc.rport()), (mc.rip(), mc.rport()));
        assert_eq!(bc.state(), mc.state());
        assert!(matches!(bc.state(), TcpState::Established | TcpState::CloseWait));
        assert_eq!(bc.method(), ForwardMethod::Nat);
        let other = &workers[1 - w];
        assert!(other.conns.iter().all(|(_, c)| c.flow() != mc.flow()));
    }
    assert!(
        by_worker.iter().all(|&n| n > 0),
        "both backup workers hold some: {by_worker:?}"
    );
    assert_eq!(workers[0].conns.len() + workers[1].conns.len(), usize::from(N));

    // What was refused, by reason; the foreign sender (not in `peers`) first.
    let bc = bd.counters(DaemonRole::Backup).unwrap();
    let mc = md.counters(DaemonRole::Master).unwrap();
    let sent = mc.messages_sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(sent >= 1);
    let t0 = Instant::now();
    while bc.messages_received.load(std::sync::atomic::Ordering::Relaxed) < sent + 5
        && t0.elapsed() < Duration::from_secs(2)
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(bc.foreign_peer.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert!(workers
        .iter()
        .all(|w| w.conns.iter().all(|(_, c)| c.cip() != intruder.cip)));
    // From the master's address the malformed datagrams pass the peer filter, and
    // each is refused by its reason.
    assert_eq!(bc.reason(SyncError::BadSize), 1);
    assert_eq!(bc.reason(SyncError::WrongSyncId), 1);
    assert_eq!(bc.reason(SyncError::Version0), 1);
    assert_eq!(bc.reason(SyncError::CountPastEnd), 1);

    // Stop: errors as ipvsadm's, both ways.
    assert_eq!(md.stop(DaemonRole::Backup), Err(IpvsError::NoDaemon));
    assert_eq!(md.stop(DaemonRole::Master), Ok(()));
    assert!(md.list().is_empty());
    worker_tick(&mut mf);
    assert!(mf.sync.is_none(), "no master: the tap is gone");
    assert_eq!(bd.stop(DaemonRole::Backup), Ok(()));
    drop(ns);
}

fn bshared_total(d: &LabDirector) -> u64 {
    let s = d.shared.sync.totals();
    s.installed + s.updated + s.unknown_service + s.unknown_dest + s.table_full
}
