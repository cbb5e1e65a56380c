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
use rvs_dp::sync::install::{install, Installed, Refused};
use rvs_dp::sync::{worker_tick, SyncEvent, SyncParams, SyncState};
use rvs_dp::wire::ethernet::MacAddr;

#[path = "common/lab.rs"]
mod lab;
use lab::{port, LabDirector};

const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x0c];
const P0_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0xd0, 0]);
const P1_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0xd0, 1]);
const CIP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 100);

fn rs_ip(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 2, 0, 10 + i)
}

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
    let cap = d.shared.sync.out[0].capacity();
    // Each new client port: its 3rd packet pushes one event.
    let flows = cap + 10;
    for p in 0..flows {
        for _ in 0..3 {
            send(&mut fwd, &udp(1024 + p as u16));
        }
    }
    worker_tick(&mut fwd);
    let s = d.shared.sync.stats[0].snapshot();
    assert_eq!(s.pushed, cap as u64);
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
