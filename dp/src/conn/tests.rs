use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

use proptest::prelude::*;

use super::tcp::flags::{ACK, FIN, RST, SYN};
use super::*;
use crate::service::{DestStats, ForwardMethod, Proto, WorkerTraffic};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
const RIP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);

fn client(n: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a01_0000 + n)
}

fn dest() -> Arc<DestStats> {
    Arc::new(DestStats::new(1))
}

fn counts(d: &DestStats) -> (u32, u32, u32) {
    (
        d.active(),
        d.inactive(),
        d.persistent.load(std::sync::atomic::Ordering::Relaxed),
    )
}

fn new_conn(proto: Proto, cip: Ipv4Addr, cport: u16, method: ForwardMethod, d: &Arc<DestStats>) -> NewConn {
    NewConn {
        flow: FlowKey::new(proto, cip, cport, VIP, 80),
        rip: RIP,
        rport: 8080,
        method,
        dest: Some(d.clone()),
        svc: Some(Arc::new(WorkerTraffic::new(1))),
        template: None,
    }
}

fn tcp_nat(cip: Ipv4Addr, cport: u16, d: &Arc<DestStats>) -> NewConn {
    new_conn(Proto::Tcp, cip, cport, ForwardMethod::Nat, d)
}

#[test]
fn nat_conn_found_in_both_directions() {
    let d = dest();
    let mut t = ConnTable::with_seed(16, 1);
    let id = t.insert(tcp_nat(client(1), 40000, &d), 100).unwrap();
    assert_eq!(
        t.lookup_in(FlowKey::new(Proto::Tcp, client(1), 40000, VIP, 80), 100),
        Some(id)
    );
    assert_eq!(
        t.lookup_out(FlowKey::new(Proto::Tcp, RIP, 8080, client(1), 40000), 100),
        Some(id)
    );
    // Any field different: not found.
    assert_eq!(
        t.lookup_in(FlowKey::new(Proto::Udp, client(1), 40000, VIP, 80), 100),
        None
    );
    assert_eq!(
        t.lookup_in(FlowKey::new(Proto::Tcp, client(2), 40000, VIP, 80), 100),
        None
    );
    assert_eq!(
        t.lookup_in(FlowKey::new(Proto::Tcp, client(1), 40001, VIP, 80), 100),
        None
    );
    assert_eq!(
        t.lookup_in(FlowKey::new(Proto::Tcp, client(1), 40000, RIP, 80), 100),
        None
    );
    assert_eq!(
        t.lookup_in(FlowKey::new(Proto::Tcp, client(1), 40000, VIP, 81), 100),
        None
    );
    assert_eq!(
        t.lookup_out(FlowKey::new(Proto::Tcp, RIP, 8081, client(1), 40000), 100),
        None
    );
    assert_eq!(
        t.lookup_out(FlowKey::new(Proto::Tcp, VIP, 8080, client(1), 40000), 100),
        None
    );
    let c = t.get(id).unwrap();
    assert_eq!(
        (c.cip(), c.cport(), c.vip(), c.vport()),
        (client(1), 40000, VIP, 80)
    );
    assert_eq!(
        (c.rip(), c.rport(), c.method(), c.proto()),
        (RIP, 8080, ForwardMethod::Nat, Proto::Tcp)
    );
    assert_eq!(c.state(), TcpState::None);
    assert_eq!(c.expires(), 100 + INITIAL_TIMEOUT);
    assert!(!c.no_output() && !c.is_template() && !c.is_active());
    assert!(Arc::ptr_eq(c.dest().unwrap(), &d));
    assert_eq!(counts(&d), (0, 1, 0), "a new conn counts inactive");
    assert_eq!(t.len(), 1);
}

#[test]
fn dr_and_tun_conns_are_not_in_the_out_index() {
    let d = dest();
    let mut t = ConnTable::with_seed(16, 2);
    for (port, m) in [(1000, ForwardMethod::Dr), (1001, ForwardMethod::Tun)] {
        let id = t.insert(new_conn(Proto::Tcp, client(1), port, m, &d), 0).unwrap();
        assert_eq!(
            t.lookup_in(FlowKey::new(Proto::Tcp, client(1), port, VIP, 80), 0),
            Some(id)
        );
        assert_eq!(
            t.lookup_out(FlowKey::new(Proto::Tcp, RIP, 8080, client(1), port), 0),
            None
        );
        assert!(t.get(id).unwrap().no_output());
    }
}

#[test]
fn lazy_expiry_then_collection_frees_counters_and_slot() {
    let d = dest();
    let mut t = ConnTable::with_seed(4, 3);
    let id = t.insert(tcp_nat(client(1), 1, &d), 100).unwrap();
    let exp = 100 + INITIAL_TIMEOUT;
    assert!(t
        .lookup_in(FlowKey::new(Proto::Tcp, client(1), 1, VIP, 80), exp)
        .is_some());
    assert_eq!(
        t.lookup_in(FlowKey::new(Proto::Tcp, client(1), 1, VIP, 80), exp + 1),
        None
    );
    assert_eq!(
        t.lookup_out(FlowKey::new(Proto::Tcp, RIP, 8080, client(1), 1), exp + 1),
        None
    );
    assert!(t.get(id).unwrap().is_expired(exp + 1));
    // Not collected yet: still counted.
    assert_eq!((t.len(), counts(&d)), (1, (0, 1, 0)));
    assert_eq!(t.expire(exp, 4), 0, "not yet expired at its expiry second");
    assert_eq!(t.expire(exp + 1, 4), 1);
    assert_eq!((t.len(), counts(&d)), (0, (0, 0, 0)));
    assert!(t.get(id).is_none());
    assert_eq!(
        Arc::strong_count(&d),
        1,
        "the freed slot dropped its dest reference"
    );
    // The freed slot is the next one handed out.
    let id2 = t.insert(tcp_nat(client(2), 2, &d), exp + 1).unwrap();
    assert_eq!(id2, id);
    assert_eq!(
        t.lookup_in(FlowKey::new(Proto::Tcp, client(2), 2, VIP, 80), exp + 1),
        Some(id2)
    );
}

#[test]
fn expire_examines_at_most_budget_slots() {
    let d = dest();
    let mut t = ConnTable::with_seed(16, 4);
    for i in 0..10 {
        t.insert(tcp_nat(client(i), 1, &d), 0).unwrap();
    }
    let late = 1000;
    assert_eq!(t.expire(late, 4), 4);
    assert_eq!(t.len(), 6);
    assert_eq!(t.expire(late, 4), 4);
    // Slots 8..12: two live ones.
    assert_eq!(t.expire(late, 4), 2);
    assert_eq!(t.expire(late, 4), 0);
    assert_eq!((t.len(), counts(&d)), (0, (0, 0, 0)));
    // A budget beyond the capacity examines each slot once.
    for i in 0..16 {
        t.insert(tcp_nat(client(i), 1, &d), 0).unwrap();
    }
    assert_eq!(t.expire(late, 1_000_000), 16);
    assert!(t.is_empty());
}

#[test]
fn tcp_handshake_makes_conn_active_and_close_makes_it_inactive() {
    let d = dest();
    let to = Timeouts::default();
    let mut t = ConnTable::with_seed(16, 5);
    let id = t.insert(tcp_nat(client(1), 1, &d), 0).unwrap();
    assert!(t.on_packet(id, Direction::Input, SYN, 0, &to));
    assert_eq!(t.get(id).unwrap().state(), TcpState::SynRecv);
    assert_eq!(t.get(id).unwrap().expires(), 60);
    assert_eq!(counts(&d), (0, 1, 0));
    assert!(
        !t.on_packet(id, Direction::Output, SYN | ACK, 1, &to),
        "SYN-ACK keeps SYN_RECV"
    );
    assert!(t.get(id).unwrap().seen_reply());
    assert!(t.on_packet(id, Direction::Input, ACK, 1, &to));
    let c = t.get(id).unwrap();
    assert_eq!(
        (c.state(), c.expires(), c.is_active()),
        (TcpState::Established, 901, true)
    );
    assert_eq!(counts(&d), (1, 0, 0));
    // Data both ways: no change, timer re-armed.
    assert!(!t.on_packet(id, Direction::Output, ACK, 50, &to));
    assert_eq!(t.get(id).unwrap().expires(), 950);
    assert_eq!(counts(&d), (1, 0, 0));
    // Client closes.
    assert!(t.on_packet(id, Direction::Input, FIN | ACK, 60, &to));
    assert_eq!(t.get(id).unwrap().state(), TcpState::CloseWait);
    assert_eq!(counts(&d), (0, 1, 0));
    assert!(t.on_packet(id, Direction::Output, FIN | ACK, 61, &to));
    let c = t.get(id).unwrap();
    assert_eq!(
        (c.state(), c.expires(), c.is_active()),
        (TcpState::TimeWait, 181, false)
    );
    assert!(!t.on_packet(id, Direction::Input, ACK, 61, &to));
    assert_eq!(counts(&d), (0, 1, 0));
    assert_eq!(t.expire(182, 16), 1);
    assert_eq!(counts(&d), (0, 0, 0));
}

#[test]
fn server_close_goes_fin_wait_then_time_wait() {
    let d = dest();
    let to = Timeouts::default();
    let mut t = ConnTable::with_seed(16, 6);
    let id = t.insert(tcp_nat(client(1), 1, &d), 0).unwrap();
    for (dir, f) in [
        (Direction::Input, SYN),
        (Direction::Output, SYN | ACK),
        (Direction::Input, ACK),
    ] {
        t.on_packet(id, dir, f, 0, &to);
    }
    assert_eq!(counts(&d), (1, 0, 0));
    t.on_packet(id, Direction::Output, FIN | ACK, 0, &to);
    assert_eq!(t.get(id).unwrap().state(), TcpState::FinWait);
    assert_eq!(counts(&d), (0, 1, 0));
    t.on_packet(id, Direction::Input, FIN | ACK, 0, &to);
    assert_eq!(t.get(id).unwrap().state(), TcpState::TimeWait);
    assert_eq!(counts(&d), (0, 1, 0));
}

#[test]
fn rst_closes_an_established_conn() {
    let d = dest();
    let to = Timeouts::default();
    let mut t = ConnTable::with_seed(16, 7);
    let id = t.insert(tcp_nat(client(1), 1, &d), 0).unwrap();
    t.on_packet(id, Direction::Input, SYN, 0, &to);
    t.on_packet(id, Direction::Input, ACK, 0, &to);
    assert_eq!(counts(&d), (1, 0, 0));
    assert!(t.on_packet(id, Direction::Output, RST | ACK, 5, &to));
    let c = t.get(id).unwrap();
    assert_eq!((c.state(), c.expires()), (TcpState::Close, 15));
    assert_eq!(counts(&d), (0, 1, 0));
    // A flagless segment changes nothing but the timer.
    assert!(!t.on_packet(id, Direction::Input, 0x08, 6, &to));
    assert_eq!(t.get(id).unwrap().state(), TcpState::Close);
    assert_eq!(t.get(id).unwrap().expires(), 16);
}

#[test]
fn dr_conn_runs_the_input_only_table() {
    let d = dest();
    let mut to = Timeouts::default();
    to.set_ipvsadm(0, 45, 0);
    let mut t = ConnTable::with_seed(16, 8);
    let id = t
        .insert(new_conn(Proto::Tcp, client(1), 1, ForwardMethod::Dr, &d), 0)
        .unwrap();
    t.on_packet(id, Direction::Input, SYN, 0, &to);
    assert_eq!(t.get(id).unwrap().state(), TcpState::SynRecv);
    t.on_packet(id, Direction::Input, ACK, 0, &to);
    assert_eq!(t.get(id).unwrap().state(), TcpState::Established);
    assert_eq!(counts(&d), (1, 0, 0));
    // INPUT would say CLOSE_WAIT; INPUT_ONLY says FIN_WAIT.
    assert!(t.on_packet(id, Direction::Input, FIN | ACK, 10, &to));
    let c = t.get(id).unwrap();
    assert_eq!((c.state(), c.expires()), (TcpState::FinWait, 55));
    assert_eq!(counts(&d), (0, 1, 0));
    assert!(c.no_output());
    t.on_packet(id, Direction::Input, RST, 11, &to);
    assert_eq!(t.get(id).unwrap().state(), TcpState::Close);
}

#[test]
fn timeouts_from_ipvsadm_set_apply_to_new_states() {
    let d = dest();
    let mut to = Timeouts::default();
    to.set_ipvsadm(3600, 30, 45);
    let mut t = ConnTable::with_seed(16, 9);
    let tcp = t.insert(tcp_nat(client(1), 1, &d), 0).unwrap();
    t.on_packet(tcp, Direction::Input, SYN, 0, &to);
    t.on_packet(tcp, Direction::Input, ACK, 10, &to);
    assert_eq!(t.get(tcp).unwrap().expires(), 3610);
    t.on_packet(tcp, Direction::Output, FIN, 20, &to);
    assert_eq!(t.get(tcp).unwrap().expires(), 50);
    let udp = t
        .insert(new_conn(Proto::Udp, client(2), 53, ForwardMethod::Nat, &d), 0)
        .unwrap();
    assert!(!t.on_packet(udp, Direction::Input, 0, 100, &to));
    let c = t.get(udp).unwrap();
    assert_eq!((c.expires(), c.state_name(), c.is_active()), (145, "UDP", false));
    assert!(!t.on_packet(udp, Direction::Output, 0, 120, &to));
    assert_eq!(t.get(udp).unwrap().expires(), 165);
    assert_eq!(
        t.lookup_out(FlowKey::new(Proto::Udp, RIP, 8080, client(2), 53), 165),
        Some(udp)
    );
    assert_eq!(counts(&d), (0, 2, 0), "UDP never counts active");
}

#[test]
fn full_table_refuses_cleanly_and_recovers_after_expiry() {
    const N: u32 = 64;
    let d = dest();
    let to = Timeouts::default();
    let mut t = ConnTable::with_seed(N, 10);
    let mut ids = Vec::new();
    // UDP: never embryonic, so a full table of them refuses (TCP would give way).
    for i in 0..N {
        ids.push(
            t.insert(new_conn(Proto::Udp, client(i), 1000, ForwardMethod::Nat, &d), 0)
                .unwrap(),
        );
    }
    assert_eq!(
        t.insert(tcp_nat(client(N), 1000, &d), 0).unwrap_err(),
        ConnError::TableFull
    );
    assert_eq!(
        t.insert_template(
            NewTemplate {
                flow: FlowKey::new(Proto::Tcp, client(N), 0, VIP, 80),
                rip: RIP,
                rport: 8080,
                method: ForwardMethod::Nat,
                dest: Some(d.clone())
            },
            300,
            0
        )
        .unwrap_err(),
        ConnError::TableFull
    );
    assert_eq!(
        (t.len(), counts(&d)),
        (N as usize, (0, N, 0)),
        "refusals counted nothing"
    );
    // Every earlier conn is intact and updatable; the even ones are refreshed.
    for (i, &id) in ids.iter().enumerate() {
        let cip = client(i as u32);
        assert_eq!(
            t.lookup_in(FlowKey::new(Proto::Udp, cip, 1000, VIP, 80), 0),
            Some(id)
        );
        assert_eq!(
            t.lookup_out(FlowKey::new(Proto::Udp, RIP, 8080, cip, 1000), 0),
            Some(id)
        );
        if i % 2 == 0 {
            t.on_packet(id, Direction::Input, 0, 0, &to);
        }
    }
    assert_eq!(counts(&d), (0, N, 0));
    // The odd ones expire; a new insert on the full table reclaims them itself.
    let later = INITIAL_TIMEOUT + 1;
    let new = t.insert(tcp_nat(client(N), 1000, &d), later).unwrap();
    t.on_packet(new, Direction::Input, SYN, later, &to);
    t.on_packet(new, Direction::Input, ACK, later, &to);
    assert_eq!(t.len(), (N / 2 + 1) as usize);
    assert_eq!(counts(&d), (1, N / 2, 0));
    assert_eq!(
        t.lookup_in(FlowKey::new(Proto::Tcp, client(N), 1000, VIP, 80), later),
        Some(new)
    );
    for i in 0..N / 2 - 1 {
        t.insert(
            new_conn(Proto::Udp, client(1000 + i), 1, ForwardMethod::Nat, &d),
            later,
        )
        .unwrap();
    }
    assert_eq!(t.len(), N as usize);
    assert_eq!(
        t.insert(tcp_nat(client(5000), 1, &d), later).unwrap_err(),
        ConnError::TableFull
    );
    for (i, &id) in ids.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        assert_eq!(
            t.lookup_in(FlowKey::new(Proto::Udp, client(i as u32), 1000, VIP, 80), later),
            Some(id)
        );
    }
    assert_eq!(t.embryonic_evicted(), 0);
}

/// A TCP conn of `cip` through the handshake's first SYN: SYN_RECV.
fn syn_recv(t: &mut ConnTable, cip: Ipv4Addr, d: &Arc<DestStats>, now: u32) -> Result<ConnId, ConnError> {
    let id = t.insert(tcp_nat(cip, 1000, d), now)?;
    t.on_packet(id, Direction::Input, SYN, now, &Timeouts::default());
    assert_eq!(t.get(id).unwrap().state(), TcpState::SynRecv);
    Ok(id)
}

/// Through the whole NAT handshake: ESTABLISHED.
fn established(t: &mut ConnTable, cip: Ipv4Addr, d: &Arc<DestStats>, now: u32) -> Result<ConnId, ConnError> {
    let to = Timeouts::default();
    let id = syn_recv(t, cip, d, now)?;
    t.on_packet(id, Direction::Output, SYN | ACK, now, &to);
    t.on_packet(id, Direction::Input, ACK, now, &to);
    assert_eq!(t.get(id).unwrap().state(), TcpState::Established);
    Ok(id)
}

fn tcp_in(cip: Ipv4Addr) -> FlowKey {
    FlowKey::new(Proto::Tcp, cip, 1000, VIP, 80)
}

#[test]
fn full_table_of_embryonic_conns_takes_a_new_syn_oldest_first() {
    const N: u32 = 64;
    let d = dest();
    let mut t = ConnTable::with_seed(N, 20);
    for i in 0..N {
        syn_recv(&mut t, client(i), &d, 0).unwrap();
        assert!(t
            .get(t.lookup_in(tcp_in(client(i)), 0).unwrap())
            .unwrap()
            .is_embryonic());
    }
    // Each new SYN takes the oldest one's slot, in the order they came.
    for k in 0..3 * N {
        let id = syn_recv(&mut t, client(N + k), &d, 1).unwrap();
        assert_eq!(t.lookup_in(tcp_in(client(N + k)), 1), Some(id));
        assert_eq!(t.lookup_in(tcp_in(client(k)), 1), None, "oldest evicted");
        assert!(
            t.lookup_in(tcp_in(client(k + 1)), 1).is_some(),
            "next oldest kept"
        );
        assert_eq!(t.embryonic_evicted(), u64::from(k + 1));
        assert_eq!(t.len(), N as usize);
        assert_eq!(
            counts(&d),
            (0, N, 0),
            "the evicted conn left its real server's counters"
        );
    }
    // A template (persistence) may take an embryonic slot too.
    t.insert_template(template(client(9999), &d), 60, 1).unwrap();
    assert_eq!(t.embryonic_evicted(), u64::from(3 * N + 1));
}

#[test]
fn full_table_of_established_conns_refuses_a_new_syn() {
    const N: u32 = 64;
    let d = dest();
    let mut t = ConnTable::with_seed(N, 21);
    let ids: Vec<_> = (0..N)
        .map(|i| established(&mut t, client(i), &d, 0).unwrap())
        .collect();
    assert!(ids.iter().all(|&id| !t.get(id).unwrap().is_embryonic()));
    assert_eq!(
        t.insert(tcp_nat(client(N), 1000, &d), 1).unwrap_err(),
        ConnError::TableFull
    );
    assert_eq!(
        t.insert_template(template(client(N), &d), 60, 1).unwrap_err(),
        ConnError::TableFull
    );
    assert_eq!(
        (t.len(), t.embryonic_evicted(), counts(&d)),
        (N as usize, 0, (N, 0, 0))
    );
    for (i, &id) in ids.iter().enumerate() {
        assert_eq!(t.lookup_in(tcp_in(client(i as u32)), 1), Some(id));
    }
    // Closing does not make a conn embryonic again: TIME_WAIT holds its slot.
    let to = Timeouts::default();
    t.on_packet(ids[0], Direction::Input, FIN | ACK, 1, &to);
    t.on_packet(ids[0], Direction::Output, FIN | ACK, 1, &to);
    assert_eq!(t.get(ids[0]).unwrap().state(), TcpState::TimeWait);
    assert_eq!(
        t.insert(tcp_nat(client(N), 1000, &d), 1).unwrap_err(),
        ConnError::TableFull
    );
}

#[test]
fn established_conns_survive_a_flood_only_embryonic_ones_give_way() {
    const N: u32 = 256;
    let d = dest();
    let to = Timeouts::default();
    let mut t = ConnTable::with_seed(N, 22);
    let mut est = Vec::new();
    // Interleaved: an established conn, then three embryonic ones; one UDP flow.
    for i in 0..N - 1 {
        if i % 4 == 0 {
            est.push((client(i), established(&mut t, client(i), &d, 0).unwrap()));
        } else {
            syn_recv(&mut t, client(i), &d, 0).unwrap();
        }
    }
    let udp = t
        .insert(new_conn(Proto::Udp, client(N), 1000, ForwardMethod::Nat, &d), 0)
        .unwrap();
    // Some conns get their SYN-ACK (still embryonic: no ACK from the client),
    // one is reset by the server (CLOSE, never established: embryonic).
    let rst = t.lookup_in(tcp_in(client(1)), 0).unwrap();
    t.on_packet(rst, Direction::Output, RST, 0, &to);
    assert_eq!(t.get(rst).unwrap().state(), TcpState::Close);
    assert!(t.get(rst).unwrap().is_embryonic());
    let embryonic = N - 1 - est.len() as u32;
    // A flood of 10 times the table: every SYN gets a slot.
    for k in 0..10 * N {
        syn_recv(&mut t, client(100_000 + k), &d, 1).unwrap();
        // A sweep now and then drops established conns out of the queue.
        if k % 97 == 0 {
            t.expire(1, 16);
        }
    }
    assert_eq!(t.embryonic_evicted(), u64::from(10 * N));
    for &(cip, id) in &est {
        assert_eq!(t.lookup_in(tcp_in(cip), 1), Some(id), "established {cip} kept");
        assert_eq!(t.get(id).unwrap().state(), TcpState::Established);
    }
    assert_eq!(
        t.lookup_in(FlowKey::new(Proto::Udp, client(N), 1000, VIP, 80), 1),
        Some(udp)
    );
    // What is left of the flood: the newest embryonic conns.
    for k in 10 * N - embryonic..10 * N {
        assert!(t.lookup_in(tcp_in(client(100_000 + k)), 1).is_some());
    }
    assert_eq!(counts(&d), (est.len() as u32, N - est.len() as u32, 0));
}

#[test]
fn expired_embryonic_conn_is_reclaimed_not_counted_as_evicted() {
    let d = dest();
    let mut t = ConnTable::with_seed(4, 23);
    let old = syn_recv(&mut t, client(0), &d, 0).unwrap();
    for i in 1..4 {
        established(&mut t, client(i), &d, 100).unwrap();
    }
    // The SYN_RECV conn (60 s) is dead at 100 but not collected: reclaimed.
    assert!(t.get(old).unwrap().is_expired(100));
    syn_recv(&mut t, client(4), &d, 100).unwrap();
    assert_eq!((t.len(), t.embryonic_evicted()), (4, 0));
    // Removing an embryonic conn from the middle of the queue keeps it sound.
    let mut t = ConnTable::with_seed(4, 24);
    let ids: Vec<_> = (0..4)
        .map(|i| syn_recv(&mut t, client(i), &d, 0).unwrap())
        .collect();
    assert!(t.remove(ids[1]));
    assert!(t.remove(ids[3]));
    syn_recv(&mut t, client(10), &d, 0).unwrap();
    syn_recv(&mut t, client(11), &d, 0).unwrap();
    // Full again: the next takes the oldest still there, client 0, then 2, then 10.
    for (k, gone) in [(12, 0), (13, 2), (14, 10)] {
        syn_recv(&mut t, client(k), &d, 0).unwrap();
        assert_eq!(t.lookup_in(tcp_in(client(gone)), 0), None);
    }
    assert_eq!(t.embryonic_evicted(), 3);
}

fn template(cip: Ipv4Addr, d: &Arc<DestStats>) -> NewTemplate {
    NewTemplate {
        flow: FlowKey::new(
            Proto::Tcp,
            client_net(cip, Ipv4Addr::new(255, 255, 255, 0)),
            0,
            VIP,
            80,
        ),
        rip: RIP,
        rport: 8080,
        method: ForwardMethod::Dr,
        dest: Some(d.clone()),
    }
}

#[test]
fn template_lookup_by_client_network() {
    let d = dest();
    let mut t = ConnTable::with_seed(16, 11);
    let cip = Ipv4Addr::new(172, 16, 5, 77);
    let tid = t.insert_template(template(cip, &d), 300, 0).unwrap();
    assert_eq!(counts(&d), (0, 0, 1));
    assert_eq!((t.len(), t.templates()), (1, 1));
    let net = client_net(Ipv4Addr::new(172, 16, 5, 200), Ipv4Addr::new(255, 255, 255, 0));
    assert_eq!(net, Ipv4Addr::new(172, 16, 5, 0));
    assert_eq!(
        t.lookup_template(FlowKey::new(Proto::Tcp, net, 0, VIP, 80), 300),
        Some(tid)
    );
    assert_eq!(
        t.lookup_template(
            FlowKey::new(Proto::Tcp, Ipv4Addr::new(172, 16, 6, 0), 0, VIP, 80),
            0
        ),
        None
    );
    assert_eq!(
        t.lookup_template(FlowKey::new(Proto::Udp, net, 0, VIP, 80), 0),
        None
    );
    assert_eq!(
        t.lookup_template(FlowKey::new(Proto::Tcp, net, 0, VIP, 80), 301),
        None,
        "lazily expired"
    );
    // Neither index mistakes it for a connection, nor a conn for a template.
    assert_eq!(t.lookup_in(FlowKey::new(Proto::Tcp, net, 0, VIP, 80), 0), None);
    let c = t
        .insert(new_conn(Proto::Tcp, net, 0, ForwardMethod::Dr, &d), 0)
        .unwrap();
    assert_eq!(
        t.lookup_template(FlowKey::new(Proto::Tcp, net, 0, VIP, 80), 0),
        Some(tid)
    );
    assert_eq!(t.lookup_in(FlowKey::new(Proto::Tcp, net, 0, VIP, 80), 0), Some(c));
    let tc = t.get(tid).unwrap();
    assert!(tc.is_template());
    assert_eq!(
        (tc.cport(), tc.state_name(), tc.persistence_timeout()),
        (0, "NONE", 300)
    );
    assert!(!t.on_packet(tid, Direction::Input, SYN, 0, &Timeouts::default()));
}

#[test]
fn children_keep_the_template_alive_then_it_expires() {
    let d = dest();
    let to = Timeouts::default();
    let mut t = ConnTable::with_seed(16, 12);
    let cip = Ipv4Addr::new(172, 16, 5, 77);
    let net = client_net(cip, Ipv4Addr::new(255, 255, 255, 0));
    let tid = t.insert_template(template(cip, &d), 300, 0).unwrap();
    let mut p = new_conn(Proto::Tcp, cip, 5555, ForwardMethod::Dr, &d);
    p.template = Some(tid);
    let cid = t.insert(p, 10).unwrap();
    assert_eq!(t.get(cid).unwrap().template(), Some(tid));
    let tc = t.get(tid).unwrap();
    assert_eq!(
        (tc.children(), tc.expires()),
        (1, 310),
        "use refreshes the template"
    );
    t.on_packet(cid, Direction::Input, SYN, 10, &to);
    t.on_packet(cid, Direction::Input, ACK, 10, &to); // ESTABLISHED until 910
    assert_eq!(counts(&d), (1, 0, 1));
    // Past the template's own expiry: kept, and re-armed by expire.
    assert_eq!(
        t.lookup_template(FlowKey::new(Proto::Tcp, net, 0, VIP, 80), 400),
        Some(tid)
    );
    assert_eq!(t.expire(400, 16), 0);
    assert_eq!(t.get(tid).unwrap().expires(), 700);
    // The conn ends; the template outlives it by its timeout.
    assert_eq!(t.expire(911, 16), 1);
    assert_eq!(counts(&d), (0, 0, 1));
    let tc = t.get(tid).unwrap();
    assert_eq!((tc.children(), tc.expires()), (0, 1211));
    assert_eq!(
        t.lookup_template(FlowKey::new(Proto::Tcp, net, 0, VIP, 80), 1211),
        Some(tid)
    );
    assert_eq!(
        t.lookup_template(FlowKey::new(Proto::Tcp, net, 0, VIP, 80), 1212),
        None
    );
    assert_eq!(t.expire(1212, 16), 1);
    assert_eq!((t.len(), t.templates(), counts(&d)), (0, 0, (0, 0, 0)));
}

#[test]
fn link_template_after_insert() {
    let d = dest();
    let mut t = ConnTable::with_seed(16, 13);
    let cip = Ipv4Addr::new(172, 16, 5, 77);
    let tid = t.insert_template(template(cip, &d), 60, 0).unwrap();
    let cid = t
        .insert(new_conn(Proto::Tcp, cip, 1, ForwardMethod::Dr, &d), 5)
        .unwrap();
    assert!(!t.link_template(tid, tid, 5), "a template is not its own child");
    assert!(!t.link_template(cid, cid, 5), "a conn is not a template");
    assert!(t.link_template(cid, tid, 5));
    assert!(!t.link_template(cid, tid, 5), "already linked");
    assert_eq!(t.get(tid).unwrap().children(), 1);
    assert_eq!(t.get(tid).unwrap().expires(), 65);
    assert!(t.touch_template(tid, 30));
    assert_eq!(t.get(tid).unwrap().expires(), 90);
    assert!(!t.touch_template(cid, 30));
    assert!(t.remove(cid));
    assert_eq!(t.get(tid).unwrap().children(), 0);
}

#[test]
fn removing_a_template_with_children_unhashes_it_until_the_last_child_ends() {
    let d = dest();
    let mut t = ConnTable::with_seed(16, 14);
    let cip = Ipv4Addr::new(172, 16, 5, 77);
    let net = client_net(cip, Ipv4Addr::new(255, 255, 255, 0));
    let tid = t.insert_template(template(cip, &d), 300, 0).unwrap();
    let mut ids = Vec::new();
    for port in [1, 2] {
        let mut p = new_conn(Proto::Tcp, cip, port, ForwardMethod::Dr, &d);
        p.template = Some(tid);
        ids.push(t.insert(p, 0).unwrap());
    }
    assert!(t.remove(tid));
    assert_eq!(
        t.lookup_template(FlowKey::new(Proto::Tcp, net, 0, VIP, 80), 0),
        None
    );
    assert!(!t.remove(tid), "already gone from lookups");
    assert!(t.get(tid).is_some(), "kept for its children");
    // A new conn cannot join an unhashed template.
    let mut p = new_conn(Proto::Tcp, cip, 3, ForwardMethod::Dr, &d);
    p.template = Some(tid);
    let orphan = t.insert(p, 0).unwrap();
    assert_eq!(t.get(orphan).unwrap().template(), None);
    assert!(t.remove(ids[0]));
    assert!(t.get(tid).is_some());
    assert_eq!(counts(&d), (0, 2, 1));
    assert!(t.remove(ids[1]));
    assert!(t.get(tid).is_none(), "freed with its last child");
    assert_eq!((t.len(), t.templates(), counts(&d)), (1, 0, (0, 1, 0)));
}

#[test]
fn remove_and_stale_ids_never_panic() {
    let d = dest();
    let to = Timeouts::default();
    let mut t = ConnTable::with_seed(4, 15);
    let id = t.insert(tcp_nat(client(1), 1, &d), 0).unwrap();
    t.on_packet(id, Direction::Input, SYN, 0, &to);
    t.on_packet(id, Direction::Input, ACK, 0, &to);
    assert_eq!(counts(&d), (1, 0, 0));
    assert!(t.remove(id));
    assert_eq!(
        counts(&d),
        (0, 0, 0),
        "removing an active conn settles the active counter"
    );
    assert!(!t.remove(id));
    assert!(t.get(id).is_none());
    assert!(t.get_mut(id).is_none());
    assert!(!t.on_packet(id, Direction::Input, ACK, 0, &to));
    assert_eq!(
        t.lookup_in(FlowKey::new(Proto::Tcp, client(1), 1, VIP, 80), 0),
        None
    );
    assert_eq!(
        t.lookup_out(FlowKey::new(Proto::Tcp, RIP, 8080, client(1), 1), 0),
        None
    );
    for bad in [ConnId(4), ConnId(u32::MAX), ConnId(u32::MAX - 1)] {
        assert!(t.get(bad).is_none());
        assert!(!t.remove(bad));
        assert!(!t.on_packet(bad, Direction::Output, RST, 0, &to));
        assert!(!t.link_template(bad, bad, 0));
    }
    let mut empty = ConnTable::with_seed(0, 0);
    assert_eq!(
        empty.insert(tcp_nat(client(1), 1, &d), 0).unwrap_err(),
        ConnError::TableFull
    );
    assert_eq!(empty.expire(0, 10), 0);
    assert_eq!(
        empty.lookup_in(FlowKey::new(Proto::Tcp, client(1), 1, VIP, 80), 0),
        None
    );
}

#[test]
fn get_mut_sets_seen_reply_only() {
    let d = dest();
    let mut t = ConnTable::with_seed(4, 16);
    let id = t.insert(tcp_nat(client(1), 1, &d), 0).unwrap();
    t.get_mut(id).unwrap().set_seen_reply();
    assert!(t.get(id).unwrap().seen_reply());
}

#[test]
fn iter_lists_live_entries() {
    let d = dest();
    let mut t = ConnTable::with_seed(8, 17);
    let a = t.insert(tcp_nat(client(1), 1, &d), 0).unwrap();
    let b = t.insert(tcp_nat(client(2), 1, &d), 0).unwrap();
    let tid = t.insert_template(template(client(3), &d), 60, 0).unwrap();
    t.remove(a);
    let ids: Vec<_> = t.iter().map(|(id, _)| id).collect();
    assert_eq!(ids, [b, tid]);
}

#[test]
fn conn_fits_a_cache_line_and_the_index_overhead_is_small() {
    assert_eq!(std::mem::size_of::<Conn>(), 64);
    assert_eq!(std::mem::align_of::<Conn>(), 64);
    for cap in [1u32 << 20, (1 << 20) + 1, 1000] {
        let t = ConnTable::with_seed(cap, 0);
        let b = t.bytes_per_conn();
        println!("capacity {cap}: {b} bytes per connection (entry 64 + buckets)");
        assert!(b <= 96, "{b}");
    }
    assert_eq!(ConnTable::with_seed(1 << 20, 0).bytes_per_conn(), 72);
}

#[test]
fn million_entry_table_constructs_quickly() {
    let start = Instant::now();
    let mut t = ConnTable::new(1_000_000);
    let took = start.elapsed();
    println!("ConnTable::new(1_000_000): {took:?}");
    assert_eq!(t.capacity(), 1_000_000);
    // Generous for a loaded debug build; per-entry allocation would be far slower.
    assert!(took.as_secs() < 5, "{took:?}");
    let d = dest();
    let id = t.insert(tcp_nat(client(1), 1, &d), 0).unwrap();
    assert_eq!(
        t.lookup_in(FlowKey::new(Proto::Tcp, client(1), 1, VIP, 80), 0),
        Some(id)
    );
}

#[test]
fn hash_spreads_sequential_clients_and_ports() {
    let d = dest();
    let mut t = ConnTable::with_seed(4096, 18);
    for i in 0..4096u32 {
        // Worst case for a weak hash: one client network, sequential ports.
        t.insert(tcp_nat(client(i / 64), 1024 + (i % 64) as u16, &d), 0)
            .unwrap();
    }
    let (in_max, out_max) = t.longest_chains();
    println!("longest chains at load 1.0: IN {in_max}, OUT {out_max}");
    assert!(in_max <= 10 && out_max <= 10, "{in_max} {out_max}");
}

// ---- model check against a HashMap ----

#[derive(Clone, Debug)]
enum Op {
    Insert {
        c: u8,
        port: u8,
        vip: u8,
        nat: bool,
        udp: bool,
    },
    Packet {
        c: u8,
        port: u8,
        vip: u8,
        udp: bool,
        out: bool,
        flags: u8,
    },
    Remove {
        c: u8,
        port: u8,
        vip: u8,
        udp: bool,
    },
    Tick(u8),
    Expire(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..4u8, 0..3u8, 0..2u8, any::<bool>(), any::<bool>())
            .prop_map(|(c, port, vip, nat, udp)| Op::Insert { c, port, vip, nat, udp }),
        4 => (0..4u8, 0..3u8, 0..2u8, any::<bool>(), any::<bool>(), prop::sample::select(vec![SYN, SYN | ACK, ACK, FIN | ACK, RST, 0x08]))
            .prop_map(|(c, port, vip, udp, out, flags)| Op::Packet { c, port, vip, udp, out, flags }),
        1 => (0..4u8, 0..3u8, 0..2u8, any::<bool>()).prop_map(|(c, port, vip, udp)| Op::Remove { c, port, vip, udp }),
        2 => (0..40u8).prop_map(Op::Tick),
        1 => (1..12u8).prop_map(Op::Expire),
    ]
}

type InKey = (Proto, Ipv4Addr, u16, Ipv4Addr);

/// What the model knows of one table entry. Keyed by id: a key may have an
/// expired, uncollected entry and a newer live one at the same time.
#[derive(Clone, Debug)]
struct Model {
    key: InKey,
    nat: bool,
    expires: u32,
    active: bool,
    rip: Ipv4Addr,
    /// Insertion order.
    seq: u64,
    /// TCP and never ESTABLISHED: may be evicted for a new entry.
    embryonic: bool,
}

type Models = HashMap<ConnId, Model>;

fn key(c: u8, port: u8, vip: u8, udp: bool) -> InKey {
    let proto = if udp { Proto::Udp } else { Proto::Tcp };
    (
        proto,
        client(c as u32),
        1000 + port as u16,
        Ipv4Addr::new(10, 0, 0, vip),
    )
}

fn alive_with_key(model: &Models, k: InKey, now: u32) -> Option<ConnId> {
    let mut alive = model.iter().filter(|(_, m)| m.key == k && now <= m.expires);
    let first = alive.next().map(|(id, _)| *id);
    assert!(alive.next().is_none(), "two live entries for {k:?}");
    first
}

/// Drops from the model what the table collected, which must have been
/// expired, or be `evicted` (then returns whether it was alive).
fn reconcile_evicting(t: &ConnTable, model: &mut Models, now: u32, evicted: Option<ConnId>) -> bool {
    let mut alive_evicted = false;
    model.retain(|id, m| {
        // A collected slot may already hold a newer conn: match the key too.
        if t.get(*id)
            .is_some_and(|c| (c.proto(), c.cip(), c.cport(), c.vip()) == m.key)
        {
            return true;
        }
        if Some(*id) == evicted && now <= m.expires {
            alive_evicted = true;
            return false;
        }
        assert!(now > m.expires, "{:?} lost while alive", m.key);
        false
    });
    alive_evicted
}

fn reconcile(t: &ConnTable, model: &mut Models, now: u32) {
    reconcile_evicting(t, model, now, None);
}

fn check(t: &ConnTable, model: &mut Models, dests: &[Arc<DestStats>; 2], now: u32) {
    reconcile(t, model, now);
    assert_eq!(t.len(), model.len(), "phantom entries in the table");
    for (id, m) in model.iter() {
        let k = m.key;
        let c = t.get(*id).expect("model entry in table");
        assert_eq!(c.expires(), m.expires);
        assert_eq!(c.is_active(), m.active);
        assert_eq!(c.is_embryonic(), m.embryonic);
        assert_eq!(
            t.lookup_in(FlowKey::new(k.0, k.1, k.2, k.3, 80), now),
            alive_with_key(model, k, now),
            "lookup_in {k:?}"
        );
        // Two VIPs may share an OUT key; any live NAT owner of it is a right answer.
        let owners: Vec<ConnId> = model
            .iter()
            .filter(|(_, o)| {
                o.nat && now <= o.expires && o.rip == m.rip && (o.key.0, o.key.1, o.key.2) == (k.0, k.1, k.2)
            })
            .map(|(id, _)| *id)
            .collect();
        match t.lookup_out(FlowKey::new(k.0, m.rip, 8080, k.1, k.2), now) {
            Some(found) => assert!(
                owners.contains(&found),
                "lookup_out {k:?}: {found:?} not in {owners:?}"
            ),
            None => assert!(owners.is_empty(), "lookup_out {k:?} missed {owners:?}"),
        }
    }
    for (i, d) in dests.iter().enumerate() {
        let of = |active: bool| {
            model
                .values()
                .filter(|m| (m.rip.octets()[3] as usize) == i && m.active == active)
                .count() as u32
        };
        assert_eq!(
            (d.active(), d.inactive()),
            (of(true), of(false)),
            "dest {i} counters"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn table_matches_a_hashmap_model(ops in prop::collection::vec(op(), 1..120)) {
        let dests = [dest(), dest()];
        let to = Timeouts::default();
        let mut t = ConnTable::with_seed(8, 99);
        let mut model = Models::new();
        let mut now = 0u32;
        let mut seq = 0u64;
        for op in ops {
            match op {
                Op::Insert { c, port, vip, nat, udp } => {
                    let k = key(c, port, vip, udp);
                    if alive_with_key(&model, k, now).is_some() {
                        continue;
                    }
                    let di = (c as usize + port as usize) % 2;
                    let rip = Ipv4Addr::new(192, 168, 1, di as u8);
                    let p = NewConn { flow: FlowKey::new(k.0, k.1, k.2, k.3, 80), rip, rport: 8080, method: if nat { ForwardMethod::Nat } else { ForwardMethod::Dr }, dest: Some(dests[di].clone()), svc: None, template: None };
                    // On a full table the one that may give way: the oldest
                    // embryonic conn, expired or not.
                    let oldest = model
                        .iter()
                        .filter(|(_, m)| m.embryonic)
                        .min_by_key(|(_, m)| m.seq)
                        .map(|(id, _)| *id);
                    let (full, evicted_before) = (t.len() == t.capacity(), t.embryonic_evicted());
                    match t.insert(p, now) {
                        Ok(id) => {
                            // Insert may have reclaimed expired entries, this slot
                            // among them, or evicted the oldest embryonic conn.
                            let evicted = reconcile_evicting(&t, &mut model, now, oldest);
                            prop_assert!(!evicted || full);
                            prop_assert_eq!(t.embryonic_evicted() - evicted_before, u64::from(evicted));
                            seq += 1;
                            model.insert(id, Model { key: k, nat, expires: now + INITIAL_TIMEOUT, active: false, rip, seq, embryonic: !udp });
                        }
                        Err(ConnError::TableFull) => {
                            prop_assert_eq!(t.len(), t.capacity());
                            // Refused only when no conn could give way.
                            reconcile(&t, &mut model, now);
                            prop_assert!(model.values().all(|m| !m.embryonic), "refused with an embryonic conn in the table");
                        }
                        Err(ConnError::NoLocalAddress) => prop_assert!(false, "NAT/DR refused for a local address"),
                    }
                }
                Op::Packet { c, port, vip, udp, out, flags } => {
                    let k = key(c, port, vip, udp);
                    if let Some(id) = alive_with_key(&model, k, now) {
                        let dir = if out { Direction::Output } else { Direction::Input };
                        t.on_packet(id, dir, flags, now, &to);
                        let conn = t.get(id).unwrap();
                        let m = model.get_mut(&id).unwrap();
                        m.active = conn.state() == TcpState::Established;
                        m.embryonic &= !m.active;
                        m.expires = now + match k.0 {
                            Proto::Udp => to.udp,
                            Proto::Tcp => to.tcp(conn.state()),
                        };
                    }
                }
                Op::Remove { c, port, vip, udp } => {
                    if let Some(id) = alive_with_key(&model, key(c, port, vip, udp), now) {
                        prop_assert!(t.remove(id));
                        model.remove(&id);
                    }
                }
                Op::Tick(s) => now += s as u32,
                Op::Expire(b) => {
                    t.expire(now, b as usize);
                }
            }
            check(&t, &mut model, &dests, now);
        }
        // Everything collected eventually, all counters back to zero.
        now += 10_000;
        t.expire(now, t.capacity());
        check(&t, &mut model, &dests, now);
        prop_assert!(t.is_empty());
        for d in &dests {
            prop_assert_eq!((d.active(), d.inactive()), (0, 0));
        }
    }
}

/// A flood on a persistent service: every spoofed client leaves a template
/// and an embryonic connection. Evicting the connection must take its
/// template along (it controls nothing any more), or the table fills with
/// orphan templates and refuses every new client.
#[test]
fn a_flood_on_a_persistent_service_does_not_fill_the_table_with_templates() {
    const N: u32 = 64;
    let d = dest();
    let to = Timeouts::default();
    let mut t = ConnTable::with_seed(N, 23);
    let pair = |t: &mut ConnTable, i: u32, now: u32| -> Result<ConnId, ConnError> {
        let mut tm = template(client(i), &d);
        tm.flow = FlowKey::new(Proto::Tcp, client(i), 0, VIP, 80);
        let tid = t.insert_template(tm, 300, now)?;
        let mut c = tcp_nat(client(i), 1000, &d);
        c.template = Some(tid);
        let id = t.insert(c, now)?;
        t.on_packet(id, Direction::Input, SYN, now, &to);
        Ok(id)
    };
    for i in 0..8 * N {
        pair(&mut t, i, 1).unwrap_or_else(|e| panic!("flood SYN {i}: {e:?}"));
        assert!(t.len() <= N as usize);
    }
    assert!(t.templates() <= (N / 2) as usize, "{} templates", t.templates());
    // A real client still gets in and completes its handshake.
    let id = pair(&mut t, 100_000, 2).unwrap();
    t.on_packet(id, Direction::Output, SYN | ACK, 2, &to);
    t.on_packet(id, Direction::Input, ACK, 2, &to);
    assert_eq!(t.get(id).unwrap().state(), TcpState::Established);
}

mod fullnat {
    use super::*;
    use crate::fnat::laddr::LocalAddr;
    use crate::fnat::side::{ClientHint, FnatSide};

    const LIP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 200);

    fn side(lport: u16) -> FnatSide {
        FnatSide {
            laddr: LocalAddr { lip: LIP, lport },
            hint: ClientHint::None,
        }
    }

    fn fnat(cip: Ipv4Addr, cport: u16, d: &Arc<DestStats>) -> NewConn {
        new_conn(Proto::Tcp, cip, cport, ForwardMethod::FullNat, d)
    }

    #[test]
    fn needs_its_local_address_and_the_side_array() {
        let d = dest();
        let mut t = ConnTable::with_seed(16, 1);
        assert_eq!(
            t.insert(fnat(client(1), 1, &d), 100),
            Err(ConnError::NoLocalAddress)
        );
        assert_eq!(
            t.insert_fnat(fnat(client(1), 1, &d), side(5000), 100),
            Err(ConnError::NoLocalAddress),
            "before enable_fnat"
        );
        t.enable_fnat();
        assert_eq!(
            t.insert_fnat(tcp_nat(client(1), 1, &d), side(5000), 100),
            Err(ConnError::NoLocalAddress),
            "a NAT conn has no side"
        );
        assert!(t.is_empty());
        assert!(t.insert_fnat(fnat(client(1), 1, &d), side(5000), 100).is_ok());
    }

    #[test]
    fn out_index_keyed_by_local_address() {
        let d = dest();
        let mut t = ConnTable::with_seed(64, 7);
        t.enable_fnat();
        let f = t
            .insert_fnat(fnat(client(1), 40000, &d), side(5000), 100)
            .unwrap();
        // A NAT conn of the same client port and real server beside it.
        let n = t.insert(tcp_nat(client(2), 40000, &d), 100).unwrap();
        let out = |cip, cport| FlowKey::new(Proto::Tcp, RIP, 8080, cip, cport);
        assert_eq!(t.lookup_out(out(LIP, 5000), 100), Some(f));
        assert_eq!(
            t.lookup_out(out(client(1), 40000), 100),
            None,
            "not by the client"
        );
        assert_eq!(t.lookup_out(out(LIP, 5001), 100), None);
        assert_eq!(t.lookup_out(out(client(2), 40000), 100), Some(n));
        assert_eq!(
            t.lookup_in(FlowKey::new(Proto::Tcp, client(1), 40000, VIP, 80), 100),
            Some(f)
        );
        assert_eq!(t.fnat(f).map(|s| s.laddr.lport), Some(5000));
        assert_eq!(t.fnat(n), None, "NAT has no side");
        // Freed: out of OUT, its local address queued for its pool.
        assert!(!t.has_fnat_freed());
        assert!(t.remove(f));
        assert_eq!(t.lookup_out(out(LIP, 5000), 100), None);
        assert_eq!(
            t.take_fnat_freed().collect::<Vec<_>>(),
            vec![LocalAddr {
                lip: LIP,
                lport: 5000
            }]
        );
        assert!(!t.has_fnat_freed());
        assert!(t.remove(n));
        assert!(!t.has_fnat_freed(), "NAT frees no local address");
    }

    #[test]
    fn expiry_and_eviction_queue_local_addresses() {
        let d = dest();
        let mut t = ConnTable::with_seed(8, 3);
        t.enable_fnat();
        for i in 0..8u16 {
            t.insert_fnat(fnat(client(1), 1000 + i, &d), side(6000 + i), 100)
                .unwrap();
        }
        // Full of embryonic conns: the next one evicts the oldest.
        t.insert_fnat(fnat(client(1), 2000, &d), side(7000), 100).unwrap();
        assert_eq!(
            t.take_fnat_freed().map(|a| a.lport).collect::<Vec<_>>(),
            vec![6000]
        );
        // Everything expires.
        assert_eq!(t.expire(1000, 64), 8);
        let mut ports: Vec<u16> = t.take_fnat_freed().map(|a| a.lport).collect();
        ports.sort();
        assert_eq!(ports, (6001..6008).chain([7000]).collect::<Vec<_>>());
        assert_eq!(t.fnat_freed_lost(), 0);
    }

    proptest! {
        /// NAT and FULLNAT entries of one real server, inserted and removed in
        /// any order: every live one is found by its own OUT key only, and
        /// every FULLNAT one removed gives back exactly its local address.
        #[test]
        fn out_lookups_match_a_model(ops in proptest::collection::vec((any::<bool>(), 0u16..24, any::<bool>()), 1..200)) {
            let d = dest();
            let mut t = ConnTable::with_seed(32, 11);
            t.enable_fnat();
            let mut live: HashMap<u16, (ConnId, bool)> = HashMap::new();
            for (add, k, is_fnat) in ops {
                if add && !live.contains_key(&k) {
                    let id = if is_fnat {
                        t.insert_fnat(fnat(client(1), k, &d), side(5000 + k), 100).unwrap()
                    } else {
                        t.insert(tcp_nat(client(1), k, &d), 100).unwrap()
                    };
                    live.insert(k, (id, is_fnat));
                } else if let Some((id, f)) = live.remove(&k) {
                    prop_assert!(t.remove(id));
                    let freed: Vec<u16> = t.take_fnat_freed().map(|a| a.lport).collect();
                    prop_assert_eq!(freed, if f { vec![5000 + k] } else { vec![] });
                }
                for k in 0..24u16 {
                    let by_lip = t.lookup_out(FlowKey::new(Proto::Tcp, RIP, 8080, LIP, 5000 + k), 100);
                    let by_cip = t.lookup_out(FlowKey::new(Proto::Tcp, RIP, 8080, client(1), k), 100);
                    match live.get(&k) {
                        Some(&(id, true)) => prop_assert_eq!((by_lip, by_cip), (Some(id), None)),
                        Some(&(id, false)) => prop_assert_eq!((by_lip, by_cip), (None, Some(id))),
                        None => prop_assert_eq!((by_lip, by_cip), (None, None)),
                    }
                }
            }
        }
    }
}
