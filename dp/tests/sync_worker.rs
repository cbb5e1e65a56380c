//! Connection sync at the workers, pure: a master director's forwarder pushes sync
//! events for the packets it forwards (threshold, state changes, templates, a full
//! ring), and a backup director's forwarder installs received entries, or refuses
//! them, and then forwards the synced connections at once.

use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;

use etherparse::{PacketBuilder, SlicedPacket};
use rvs_dp::conn::TcpState;
use rvs_dp::core::{CoreOptions, Forwarder, Verdict};
use rvs_dp::packet::{PacketBuf, VecBuf};
use rvs_dp::service::{ForwardMethod, Proto};
use rvs_dp::sync::bulk::Bulk;
use rvs_dp::sync::install::{install, Installed, Refused};
use rvs_dp::sync::{worker_tick, SyncDecoder, SyncEncoder, SyncEvent, SyncParams, SyncState};
use rvs_dp::wire::ethernet::MacAddr;
use rvs_proto::command::{IpvsError, Reply};
use rvs_proto::resync::{BulkRequest, ListPage};

#[path = "common/lab.rs"]
mod lab;
use lab::{port, rs_ip, LabDirector, CIP, CLIENT_MAC, P0_MAC, P1_MAC, VIP};

/// A director with TCP VIP:80 (NAT to :8080, or DR keeping :80) on real servers 1
/// and 2, and UDP VIP:53 on real server 1; `persistent` makes :80 `-p 300`.
fn director(method: ForwardMethod, persistent: bool) -> LabDirector {
    let mut neighbours = vec![(CIP, MacAddr(CLIENT_MAC))];
    neighbours.extend((1..=3).map(|i| (rs_ip(i), MacAddr([2, 0, 0, 0, 2, i]))));
    let mut d = LabDirector::new(
        vec![
            port(P0_MAC, Ipv4Addr::new(10, 1, 0, 1), 1500),
            port(P1_MAC, Ipv4Addr::new(10, 2, 0, 1), 1500),
        ],
        &[],
        &neighbours,
        1,
        CoreOptions::default(),
    );
    let p = persistent.then_some((300, Ipv4Addr::BROADCAST));
    let k = d.service(Proto::Tcp, VIP, 80, "rr", p);
    let rport = if method == ForwardMethod::Nat { 8080 } else { 80 };
    d.real_server(k, rs_ip(1), rport, 1, method);
    d.real_server(k, rs_ip(2), rport, 1, method);
    let u = d.service(Proto::Udp, VIP, 53, "rr", None);
    d.real_server(u, rs_ip(1), 53, 1, method);
    d
}

fn tcp(sport: u16, flags: &str) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(CLIENT_MAC, P0_MAC.0).ipv4(CIP.octets(), VIP.octets(), 64);
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

fn udp(sport: u16) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(CLIENT_MAC, P0_MAC.0)
        .ipv4(CIP.octets(), VIP.octets(), 64)
        .udp(sport, 53);
    let mut out = Vec::new();
    b.write(&mut out, b"q").unwrap();
    out
}

fn send(fwd: &mut Forwarder, frame: &[u8]) -> (Verdict, Vec<u8>) {
    let mut b = VecBuf::new(frame);
    let v = fwd.process(0, &mut b, false);
    (v, b.data().to_vec())
}

/// Every event worker 0 has pushed so far.
fn drain(d: &LabDirector) -> Vec<SyncEvent> {
    let mut v = Vec::new();
    while let Some(e) = d.shared.sync.out[0].pop() {
        v.push(e);
    }
    v
}

fn master(method: ForwardMethod, persistent: bool) -> (LabDirector, Forwarder) {
    master_with(method, persistent, 1024)
}

fn master_with(method: ForwardMethod, persistent: bool, capacity: u32) -> (LabDirector, Forwarder) {
    let d = director(method, persistent);
    d.shared.sync.set_master(true, SyncParams::default());
    let mut fwd = d.forwarder(0, capacity, 100);
    worker_tick(&mut fwd);
    assert!(fwd.sync.is_some(), "the tap follows the hub's flag");
    (d, fwd)
}

#[test]
fn no_master_no_tap_no_events() {
    let d = director(ForwardMethod::Nat, false);
    let mut fwd = d.forwarder(0, 1024, 100);
    worker_tick(&mut fwd);
    assert!(fwd.sync.is_none());
    for _ in 0..60 {
        assert!(matches!(send(&mut fwd, &udp(5000)).0, Verdict::Forward { .. }));
    }
    assert!(drain(&d).is_empty());
}

#[test]
fn udp_goes_on_the_third_packet_and_every_fiftieth() {
    let (d, mut fwd) = master(ForwardMethod::Nat, false);
    let mut on = Vec::new();
    for i in 1..=110u32 {
        send(&mut fwd, &udp(5000));
        if !drain(&d).is_empty() {
            on.push(i);
        }
    }
    assert_eq!(on, [3, 53, 103]);
    // Stopping the master removes the tap at the next tick; nothing more is pushed.
    d.shared.sync.set_master(false, SyncParams::default());
    worker_tick(&mut fwd);
    assert!(fwd.sync.is_none());
    for _ in 0..60 {
        send(&mut fwd, &udp(5000));
    }
    assert!(drain(&d).is_empty());
    assert_eq!(d.shared.sync.totals().pushed, 3);
}

#[test]
fn tcp_goes_when_established_by_count_and_at_once_on_fin() {
    let (d, mut fwd) = master(ForwardMethod::Nat, false);
    send(&mut fwd, &tcp(40000, "S"));
    assert!(drain(&d).is_empty(), "SYN_RECV is not sent");
    send(&mut fwd, &tcp(40000, "A"));
    assert!(
        drain(&d).is_empty(),
        "ESTABLISHED on packet 2: below the threshold"
    );
    send(&mut fwd, &tcp(40000, "A"));
    let ev = drain(&d);
    assert_eq!(ev.len(), 1);
    let e = ev[0];
    assert_eq!(e.state, SyncState::Tcp(TcpState::Established));
    assert_eq!((e.cip, e.cport, e.vip, e.vport), (CIP, 40000, VIP, 80));
    assert_eq!(e.rport, 8080);
    assert_eq!(e.fwd, ForwardMethod::Nat);
    assert_eq!(e.timeout, 900, "the full ESTABLISHED timeout");
    assert!(!e.inactive);
    send(&mut fwd, &tcp(40000, "A"));
    assert!(drain(&d).is_empty());
    send(&mut fwd, &tcp(40000, "FA"));
    let ev = drain(&d);
    assert_eq!(ev.len(), 1, "the client's FIN is sent at once");
    // IPVS's input table: a client FIN on ESTABLISHED is CLOSE_WAIT.
    assert_eq!(ev[0].state, SyncState::Tcp(TcpState::CloseWait));
    assert!(ev[0].inactive);
    assert_eq!(ev[0].timeout, 60, "the kernel's CLOSE_WAIT timeout");
}

#[test]
fn templates_follow_their_connections() {
    let (d, mut fwd) = master(ForwardMethod::Dr, true);
    for f in ["S", "A", "A"] {
        send(&mut fwd, &tcp(40001, f));
    }
    let ev = drain(&d);
    assert_eq!(ev.len(), 2, "the connection, then its template: {ev:?}");
    assert_eq!(ev[0].state, SyncState::Tcp(TcpState::Established));
    assert_eq!(ev[0].fwd, ForwardMethod::Dr);
    let t = ev[1];
    assert!(t.is_template());
    assert_eq!((t.cip, t.cport, t.vip, t.vport), (CIP, 0, VIP, 80));
    assert_eq!(t.rip, ev[0].rip);
    assert_eq!(t.timeout, 300);
}

#[test]
fn a_full_ring_drops_and_counts() {
    let (d, mut fwd) = master_with(ForwardMethod::Nat, false, 16384);
    let ring = &d.shared.sync.out[0];
    let cap = ring.capacity();
    // A master that stopped draining left room for 10 more.
    let filler = entry(rs_ip(1), 8080, SyncState::Tcp(TcpState::Established));
    while ring.len() < cap - 10 {
        assert!(ring.push(filler).is_ok());
    }
    // Each new client port: its 3rd packet pushes one event.
    for p in 0..20u16 {
        for _ in 0..3 {
            send(&mut fwd, &udp(1024 + p));
        }
    }
    worker_tick(&mut fwd);
    let s = d.shared.sync.stats[0].snapshot();
    assert_eq!(s.pushed, 10);
    assert_eq!(s.dropped, 10);
    assert_eq!(drain(&d).len(), cap);
}

fn entry(rip: Ipv4Addr, rport: u16, state: SyncState) -> SyncEvent {
    SyncEvent {
        cip: CIP,
        vip: VIP,
        rip,
        timeout: 600,
        fwmark: 0,
        cport: 41000,
        vport: 80,
        rport,
        proto: Proto::Tcp,
        fwd: ForwardMethod::Nat,
        state,
        inactive: false,
        proxy: None,
    }
}

#[test]
fn backup_installs_bound_to_its_real_server_and_forwards_at_once() {
    let d = director(ForwardMethod::Nat, false);
    let mut fwd = d.forwarder(0, 1024, 100);
    let e = entry(rs_ip(2), 8080, SyncState::Tcp(TcpState::Established));
    assert_eq!(install(&mut fwd, &e), Ok(Installed::New));
    let (_, c) = fwd.conns.iter().next().expect("installed");
    assert_eq!((c.cip(), c.cport(), c.vip(), c.vport()), (CIP, 41000, VIP, 80));
    assert_eq!((c.rip(), c.rport()), (rs_ip(2), 8080));
    assert_eq!(c.state(), TcpState::Established);
    assert_eq!(c.remaining(100), 600);
    assert_eq!(c.method(), ForwardMethod::Nat);
    // Counted active on its real server, as the master's.
    let snap = fwd.services().clone();
    let svc = snap.get(snap.lookup(Proto::Tcp, VIP, 80).unwrap()).unwrap();
    assert_eq!(svc.dests[1].stats.active.load(Ordering::Relaxed), 1);
    // The client's next packet (no SYN) goes to real server 2, NAT'ed, at once.
    let (v, out) = send(&mut fwd, &tcp(41000, "A"));
    assert!(matches!(v, Verdict::Forward { port: 1 }), "{v:?}");
    let p = SlicedPacket::from_ethernet(&out).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else {
        panic!("not IPv4")
    };
    assert_eq!(ip.header().destination_addr(), rs_ip(2));
    // The same entry again refreshes it; a closing state moves it to inactive.
    let fin = SyncEvent {
        timeout: 0,
        ..entry(rs_ip(2), 8080, SyncState::Tcp(TcpState::FinWait))
    };
    assert_eq!(install(&mut fwd, &fin), Ok(Installed::Updated));
    let (_, c) = fwd.conns.iter().next().unwrap();
    assert_eq!(c.state(), TcpState::FinWait);
    assert_eq!(
        c.remaining(100),
        120,
        "timeout 0: this director's FIN_WAIT timeout"
    );
    assert_eq!(svc.dests[1].stats.active.load(Ordering::Relaxed), 0);
    assert_eq!(fwd.conns.len(), 1);
}

#[test]
fn backup_uses_its_own_forwarding_method() {
    let d = director(ForwardMethod::Dr, false);
    let mut fwd = d.forwarder(0, 1024, 100);
    // The master said NAT to :80; this director's real server is DR.
    let e = entry(rs_ip(1), 80, SyncState::Tcp(TcpState::Established));
    assert_eq!(install(&mut fwd, &e), Ok(Installed::New));
    let (_, c) = fwd.conns.iter().next().unwrap();
    assert_eq!(c.method(), ForwardMethod::Dr);
    assert!(c.no_output());
}

#[test]
fn backup_refuses_unknown_services_real_servers_and_a_full_table() {
    let d = director(ForwardMethod::Nat, false);
    let mut fwd = d.forwarder(0, 2, 100);
    let est = SyncState::Tcp(TcpState::Established);
    let other_vip = SyncEvent {
        vip: Ipv4Addr::new(10, 1, 0, 200),
        ..entry(rs_ip(1), 8080, est)
    };
    assert_eq!(install(&mut fwd, &other_vip), Err(Refused::UnknownService));
    let other_port = SyncEvent {
        vport: 443,
        ..entry(rs_ip(1), 8080, est)
    };
    assert_eq!(install(&mut fwd, &other_port), Err(Refused::UnknownService));
    assert_eq!(
        install(&mut fwd, &entry(rs_ip(3), 8080, est)),
        Err(Refused::UnknownDest),
        "real server 3 is not in the service"
    );
    assert_eq!(
        install(&mut fwd, &entry(rs_ip(1), 9999, est)),
        Err(Refused::UnknownDest)
    );
    let tmpl = SyncEvent {
        cport: 0,
        ..entry(rs_ip(1), 8080, SyncState::Template { assured: false })
    };
    assert_eq!(
        install(&mut fwd, &tmpl),
        Err(Refused::UnknownService),
        "a template for a service without persistence"
    );
    assert!(fwd.conns.is_empty(), "nothing of a refused entry is kept");
    // Two slots, two established connections: the third is refused, the two stay.
    for p in [1, 2] {
        let e = SyncEvent {
            cport: p,
            ..entry(rs_ip(1), 8080, est)
        };
        assert_eq!(install(&mut fwd, &e), Ok(Installed::New));
    }
    let e = SyncEvent {
        cport: 3,
        ..entry(rs_ip(1), 8080, est)
    };
    assert_eq!(install(&mut fwd, &e), Err(Refused::TableFull));
    assert_eq!(fwd.conns.len(), 2);
}

#[test]
fn backup_installs_templates_and_new_connections_follow_them() {
    let d = director(ForwardMethod::Dr, true);
    let mut fwd = d.forwarder(0, 1024, 100);
    let t = SyncEvent {
        cport: 0,
        timeout: 300,
        rport: 80,
        ..entry(rs_ip(2), 80, SyncState::Template { assured: false })
    };
    assert_eq!(install(&mut fwd, &t), Ok(Installed::New));
    assert_eq!(fwd.conns.templates(), 1);
    assert_eq!(install(&mut fwd, &t), Ok(Installed::Updated));
    assert_eq!(fwd.conns.templates(), 1);
    // New connections of that client all go where the template says, not by rr.
    for p in 0..4 {
        let (v, out) = send(&mut fwd, &tcp(42000 + p, "S"));
        assert!(matches!(v, Verdict::Forward { port: 1 }), "{v:?}");
        assert_eq!(&out[..6], &[2, 0, 0, 0, 2, 2], "to real server 2's MAC");
    }
}

#[test]
fn worker_tick_installs_from_the_inbound_ring_and_counts() {
    let d = director(ForwardMethod::Nat, false);
    let mut fwd = d.forwarder(0, 1024, 100);
    let est = SyncState::Tcp(TcpState::Established);
    let ring = &d.shared.sync.inbound[0];
    ring.push(entry(rs_ip(1), 8080, est)).unwrap();
    ring.push(entry(rs_ip(1), 8080, est)).unwrap();
    ring.push(entry(rs_ip(3), 8080, est)).unwrap();
    ring.push(SyncEvent {
        vport: 81,
        ..entry(rs_ip(1), 8080, est)
    })
    .unwrap();
    worker_tick(&mut fwd);
    let s = d.shared.sync.stats[0].snapshot();
    assert_eq!(
        (s.installed, s.updated, s.unknown_dest, s.unknown_service),
        (1, 1, 1, 1)
    );
    assert!(ring.is_empty());
    assert_eq!(fwd.conns.len(), 1);
}

// ---------------------------------------------------------------------------------
// Sync and full resync end to end, at the workers: what a master's tap sends (or
// what its listing pages out) is encoded, decoded on the backup and installed there.

/// The master's events through the sync v1 codec, as a backup thread reads them.
fn over_the_wire(events: &[SyncEvent]) -> Vec<SyncEvent> {
    let conns: Vec<_> = events.iter().map(|e| e.to_sync()).collect();
    let mut msgs = Vec::new();
    SyncEncoder::new(9, 1472)
        .encode_all(&conns, |m| msgs.push(m.to_vec()))
        .unwrap();
    let mut dec = SyncDecoder::new(9);
    let mut out = Vec::new();
    for m in &msgs {
        for c in dec.decode(m).unwrap() {
            out.push(SyncEvent::from_sync(&c.unwrap()));
        }
    }
    out
}

/// A full resync from `master` to `backup` through both ends' `Bulk`, as the
/// two rvs-cp carry it (the TCP stream between them only frames the pages):
/// the master's worker answers the listing on a thread of its own, pages of
/// at most `max_bytes` go to the backup, whose worker installs them. Returns
/// the entries listed.
fn resync(
    master: &LabDirector,
    mfwd: &mut Forwarder,
    backup: &LabDirector,
    bfwd: &mut Forwarder,
    max_bytes: u32,
) -> u32 {
    let (mut src, mut dst) = (Bulk::default(), Bulk::default());
    let stop = std::sync::atomic::AtomicBool::new(false);
    let pages = std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                worker_tick(mfwd);
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        });
        let (mut listing, mut offset, mut pages) = (0, 0, Vec::new());
        loop {
            let req = BulkRequest::List {
                listing,
                offset,
                max_bytes,
            }
            .to_bytes();
            let reply = src.serve(&master.shared, BulkRequest::parse(&req).unwrap());
            let p = ListPage::parse(&reply).expect("a page").unwrap();
            assert_eq!(p.offset, offset);
            pages.push((p.count, p.entries.to_vec()));
            (listing, offset) = (p.listing, offset + p.count);
            if offset >= p.total {
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        pages
    });
    let ok = serde_json::to_vec(&Reply::Ok).unwrap();
    for (count, entries) in &pages {
        let req = BulkRequest::Install {
            count: *count,
            entries,
        }
        .to_bytes();
        assert_eq!(dst.serve(&backup.shared, BulkRequest::parse(&req).unwrap()), ok);
        worker_tick(bfwd);
    }
    assert!(dst.refused().is_empty(), "{:?}", dst.refused());
    offset_of(&pages)
}

fn offset_of(pages: &[(u32, Vec<u8>)]) -> u32 {
    pages.iter().map(|(n, _)| n).sum()
}

/// The IPv4 header of a frame: (source, destination, protocol).
fn ip_of(frame: &[u8]) -> (Ipv4Addr, Ipv4Addr, u8) {
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else {
        panic!("not IPv4")
    };
    let h = ip.header();
    (h.source_addr(), h.destination_addr(), h.protocol().0)
}

/// On a backup that received them: a persistent TUN service's connection and
/// its template are in the table, bound to the backup's own real server (its
/// counters, its method), the connection's next packet goes out IPIP to that
/// real server at once, and a new connection of the client follows the
/// template.
fn check_tun_backup(bfwd: &mut Forwarder, rip: Ipv4Addr) {
    let t = (bfwd.conns.iter())
        .map(|(_, c)| c)
        .find(|c| c.is_template() && c.cip() == CIP)
        .expect("the template");
    assert_eq!((t.rip(), t.method()), (rip, ForwardMethod::Tun));
    let c = (bfwd.conns.iter())
        .map(|(_, c)| c)
        .find(|c| !c.is_template() && c.cip() == CIP)
        .expect("the connection");
    assert_eq!((c.cip(), c.cport(), c.rip()), (CIP, 43000, rip));
    assert_eq!(c.method(), ForwardMethod::Tun);
    assert_eq!(c.state(), TcpState::Established);
    let snap = bfwd.services().clone();
    let svc = snap.get(snap.lookup(Proto::Tcp, VIP, 80).unwrap()).unwrap();
    let d = svc.dests.iter().find(|d| d.rip == rip).unwrap();
    assert_eq!(
        d.stats.active.load(Ordering::Relaxed),
        1,
        "the backup's real server counts it"
    );
    let (v, out) = send(bfwd, &tcp(43000, "A"));
    assert!(matches!(v, Verdict::Forward { port: 1 }), "{v:?}");
    assert_eq!(
        ip_of(&out),
        (Ipv4Addr::new(10, 2, 0, 1), rip, 4),
        "IPIP to the real server"
    );
    for p in 0..3 {
        let (v, out) = send(bfwd, &tcp(44000 + p, "S"));
        assert!(matches!(v, Verdict::Forward { port: 1 }), "{v:?}");
        assert_eq!(ip_of(&out).1, rip, "a new connection follows the template");
    }
}

/// A persistent TUN service: a connection and its template on the master.
fn tun_master() -> (LabDirector, Forwarder, Vec<SyncEvent>, Ipv4Addr) {
    let (d, mut fwd) = master(ForwardMethod::Tun, true);
    for f in ["S", "A", "A"] {
        send(&mut fwd, &tcp(43000, f));
    }
    let ev = drain(&d);
    assert_eq!(ev.len(), 2, "the connection and its template: {ev:?}");
    assert!(ev[1].is_template());
    assert_eq!(ev[0].fwd, ForwardMethod::Tun);
    let rip = ev[0].rip;
    (d, fwd, ev, rip)
}

#[test]
fn templates_and_tun_connections_survive_sync() {
    let (_m, _mfwd, ev, rip) = tun_master();
    let got = over_the_wire(&ev);
    assert_eq!(got, ev, "through the codec unchanged");
    let b = director(ForwardMethod::Tun, true);
    let mut bfwd = b.forwarder(0, 1024, 100);
    for e in &got {
        b.shared.sync.inbound[0].push(*e).unwrap();
    }
    worker_tick(&mut bfwd);
    assert_eq!(b.shared.sync.stats[0].snapshot().installed, 2);
    assert_eq!(bfwd.conns.templates(), 1);
    check_tun_backup(&mut bfwd, rip);
}

#[test]
fn templates_and_tun_connections_survive_a_full_resync() {
    let (m, mut mfwd, _, rip) = tun_master();
    // More than one page: 40 more connections of other clients.
    for i in 0..40u8 {
        let f = PacketBuilder::ethernet2(CLIENT_MAC, P0_MAC.0)
            .ipv4([10, 1, 1, i], VIP.octets(), 64)
            .tcp(50000, 80, 1, 64240)
            .syn();
        let mut out = Vec::new();
        f.write(&mut out, b"x").unwrap();
        send(&mut mfwd, &out);
    }
    let b = director(ForwardMethod::Tun, true);
    let mut bfwd = b.forwarder(0, 1024, 100);
    let n = resync(&m, &mut mfwd, &b, &mut bfwd, 1);
    assert_eq!(n as usize, mfwd.conns.len(), "every entry listed");
    let s = b.shared.sync.stats[0].snapshot();
    assert_eq!(s.installed, u64::from(n));
    assert_eq!(bfwd.conns.len(), mfwd.conns.len());
    // The entries keep the seconds they had left on the master.
    let left = |f: &Forwarder| {
        let mut v: Vec<_> = f
            .conns
            .iter()
            .map(|(_, c)| (c.cip(), c.cport(), c.remaining(100)))
            .collect();
        v.sort();
        v
    };
    assert_eq!(left(&bfwd), left(&mfwd));
    check_tun_backup(&mut bfwd, rip);
}

#[test]
fn a_malformed_resync_page_is_refused_whole_and_counted() {
    let (m, mut mfwd) = master(ForwardMethod::Nat, false);
    for p in 0..3 {
        for f in ["S", "A"] {
            send(&mut mfwd, &tcp(45000 + p, f));
        }
    }
    let events: Vec<SyncEvent> = (mfwd.conns.iter())
        .map(|(_, c)| SyncEvent::from_conn(c, 900))
        .collect();
    assert_eq!(events.len(), 3);
    let (n, page) = rvs_dp::sync::bulk::encode_page(&events, 1 << 20);
    assert_eq!(n, 3);
    let _ = m;
    let b = director(ForwardMethod::Nat, false);
    let mut bulk = Bulk::default();
    let try_page = |bulk: &mut Bulk, count: u32, entries: &[u8]| -> Result<(), IpvsError> {
        let req = BulkRequest::Install { count, entries }.to_bytes();
        let reply = bulk.serve(&b.shared, BulkRequest::parse(&req).unwrap());
        match serde_json::from_slice::<Reply>(&reply).unwrap() {
            Reply::Ok => Ok(()),
            Reply::Error(e) => Err(e),
            r => panic!("{r:?}"),
        }
    };
    let refused = |r: Result<(), IpvsError>| matches!(r, Err(IpvsError::SyncPageRefused(_)));
    // A count the messages do not hold, either way (4 cannot even be in its bytes).
    assert!(refused(try_page(&mut bulk, 2, &page)));
    assert!(refused(try_page(&mut bulk, 3 + 1, &page)));
    assert!(refused(try_page(&mut bulk, 0, &page)));
    // A truncated page: its message's size field runs past the end.
    assert!(refused(try_page(&mut bulk, 3, &page[..page.len() - 1])));
    // A page of two messages, the second corrupt (an entry size past its end):
    // the first is not installed either.
    let mut two = page.clone();
    let mut bad = page.clone();
    bad[8 + 2] = 0x0f; // the first entry's ver_size: a size of 0xf24 bytes
    two.extend_from_slice(&bad);
    assert!(refused(try_page(&mut bulk, 6, &two)));
    // Bytes that are no sync message at all.
    assert!(refused(try_page(&mut bulk, 1, &[0xff; 40])));
    for n in 0..page.len() {
        // Every cut of a good page: refused, never a panic.
        assert!(try_page(&mut bulk, 3, &page[..n]).is_err());
    }
    assert!(b.shared.sync.inbound[0].is_empty(), "nothing of a refused page");
    let counted = bulk.refused();
    assert_eq!(counted.get("resync_count_mismatch"), Some(&1));
    assert!(counted["resync_malformed"] >= 2, "{counted:?}");
    assert!(counted["resync_pages_refused"] >= 5, "{counted:?}");
    assert!(counted.contains_key("resync_bad_size"), "{counted:?}");
    assert!(counted.contains_key("resync_entry_too_large"), "{counted:?}");
    // The good page, whole: installed.
    assert_eq!(try_page(&mut bulk, 3, &page), Ok(()));
    let mut bfwd = b.forwarder(0, 1024, 100);
    worker_tick(&mut bfwd);
    assert_eq!(bfwd.conns.len(), 3);
    assert_eq!(bulk.handed(), 3);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// A resync page damaged anywhere (a byte changed, bytes cut off, a count
    /// off by some): refused whole with nothing handed to the workers, or
    /// accepted whole with exactly the entries it states. Never a panic,
    /// never part of a page.
    #[test]
    fn a_damaged_page_is_refused_whole_or_installed_whole(
        at in 0usize..400, byte: u8, cut in 0usize..8, skew in -2i64..=2,
    ) {
        let events: Vec<SyncEvent> = (0..8u16)
            .map(|p| SyncEvent { cport: 46000 + p, ..entry(rs_ip(1), 8080, SyncState::Tcp(TcpState::Established)) })
            .collect();
        let (n, mut page) = rvs_dp::sync::bulk::encode_page(&events, 1 << 20);
        let i = at % page.len();
        page[i] = byte;
        page.truncate(page.len() - cut);
        let count = (i64::from(n) + skew).max(0) as u32;
        let b = director(ForwardMethod::Nat, false);
        let mut bulk = Bulk::default();
        let req = BulkRequest::Install { count, entries: &page }.to_bytes();
        let reply = bulk.serve(&b.shared, BulkRequest::parse(&req).unwrap());
        let ring = &b.shared.sync.inbound[0];
        match serde_json::from_slice::<Reply>(&reply).unwrap() {
            Reply::Ok => {
                // Entries the decoder skipped one by one (a damaged protocol or
                // state) are counted; the rest are whole.
                let skipped: u64 = bulk.refused().iter()
                    .filter(|(k, _)| !k.ends_with("pages_refused")).map(|(_, v)| *v).sum();
                proptest::prop_assert_eq!(ring.len() as u64 + skipped, u64::from(count));
            }
            Reply::Error(IpvsError::SyncPageRefused(_)) => {
                proptest::prop_assert!(ring.is_empty());
                proptest::prop_assert!(bulk.refused()["resync_pages_refused"] == 1);
            }
            r => proptest::prop_assert!(false, "{r:?}"),
        }
    }
}

/// Sync v1 has no field for a FULLNAT entry's local address: a master sends
/// none of its FULLNAT connections, and a backup refuses (and counts) entries
/// for a real server it forwards by FULLNAT.
#[test]
fn fullnat_connections_are_neither_sent_nor_installed() {
    let with_lip = |d: &mut LabDirector| {
        let key = rvs_dp::service::ServiceKey {
            proto: Proto::Tcp,
            vip: VIP,
            port: 80,
        };
        d.apply(rvs_proto::command::Command::AddLaddr(
            key,
            rvs_proto::command::LaddrSpec {
                addr: Ipv4Addr::new(10, 2, 0, 200),
                port_name: "port1".into(),
            },
        ));
    };
    let (mut d, mut fwd) = master(ForwardMethod::FullNat, false);
    with_lip(&mut d);
    fwd.refresh();
    assert!(matches!(
        send(&mut fwd, &tcp(41000, "S")).0,
        Verdict::Forward { port: 1 }
    ));
    for _ in 0..60 {
        assert!(matches!(
            send(&mut fwd, &tcp(41000, "A")).0,
            Verdict::Forward { port: 1 }
        ));
    }
    send(&mut fwd, &tcp(41000, "AF"));
    assert!(drain(&d).is_empty(), "no FULLNAT entry sent");

    let mut b = director(ForwardMethod::FullNat, false);
    with_lip(&mut b);
    let mut bf = b.forwarder(0, 1024, 100);
    let e = entry(rs_ip(1), 80, SyncState::Tcp(TcpState::Established));
    assert_eq!(install(&mut bf, &e), Err(Refused::FullNat));
    assert!(bf.conns.is_empty());
    b.shared.sync.inbound[0].push(e).unwrap();
    worker_tick(&mut bf);
    assert_eq!(b.shared.sync.stats[0].snapshot().fullnat, 1);
    assert!(bf.conns.is_empty());
}
