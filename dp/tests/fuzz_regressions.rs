//! The fuzzer's director (fuzz/src/lab.rs, included as is) under the normal
//! test suite: its seed conversations do what they are meant to, and neither
//! arbitrary bytes nor mutated valid frames make the per-packet path panic or
//! break a verdict's contract. Inputs the fuzzer found crashing go here too.

#[path = "../../fuzz/src/lab.rs"]
#[allow(dead_code)]
mod lab;

use std::net::Ipv4Addr;

use lab::{records, seeds, FuzzLab};
use proptest::prelude::*;
use rvs_dp::core::CoreOptions;

fn seed(name: &str) -> Vec<u8> {
    seeds()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| s)
        .expect("seed exists")
}

/// The seeds are only useful to the fuzzer if they reach past the parsers:
/// each must be forwarded where its path forwards.
#[test]
fn seeds_exercise_their_paths() {
    for (name, input, min_forwarded) in [
        ("nat_tcp", seed("nat_tcp"), 7),
        ("udp_nat", seed("udp_nat"), 2),
        ("dr", seed("dr"), 2),
        ("tun", seed("tun"), 3),
        ("icmp_echo", seed("icmp_echo"), 3),
        ("icmp_error", seed("icmp_error"), 3),
        ("fragments", seed("fragments"), 2),
        ("vlan", seed("vlan"), 1),
        ("fnat_proxy", seed("fnat_proxy"), 8),
        ("fnat_toa", seed("fnat_toa"), 5),
        ("fnat_udp", seed("fnat_udp"), 3),
    ] {
        let mut l = FuzzLab::new();
        l.run(&input);
        assert!(l.tally.forwarded >= min_forwarded, "{name}: {:?}", l.tally);
    }
    // The FULLNAT seeds went the FULLNAT way, client hints included.
    let mut l = FuzzLab::new();
    for name in ["fnat_proxy", "fnat_toa", "fnat_udp"] {
        l.run(&seed(name));
    }
    let sum =
        |f: fn(&rvs_dp::core::WorkerCounters) -> u64| l.workers.iter().map(|w| f(&w.counters)).sum::<u64>();
    assert_eq!(sum(|c| c.fnat_in), 5 + 3 + 2, "client -> RS");
    assert_eq!(sum(|c| c.fnat_out), 3 + 2 + 1, "RS -> client");
    assert_eq!(
        sum(|c| c.proxy_inserted),
        2,
        "on the handshake ACK and the first data"
    );
    assert_eq!(sum(|c| c.toa_inserted), 3, "SYN, handshake ACK, first data");
    // The flood fills both workers' tables with embryonic connections: later
    // SYNs take the oldest ones' slots, none is refused.
    let mut l = FuzzLab::new();
    l.run(&seed("flood"));
    let drops: u64 = l
        .workers
        .iter()
        .map(|w| w.drops.get(rvs_dp::stats::DropReason::ConnTableFull))
        .sum();
    let evicted: u64 = l.workers.iter().map(|w| w.conns.embryonic_evicted()).sum();
    assert!(
        evicted > 0 && drops == 0,
        "evicted {evicted}, refused {drops}: {:?}",
        l.tally
    );
    // The proxied handshake: the SYN-ACK, the cookie accepted (the SYN to the
    // RS), the early data held, the RS's handshake answered (the held data goes), then data
    // both ways and the client's last ACK.
    let mut l = FuzzLab::new();
    l.run(&seed("synproxy"));
    let sum = |f: fn(&rvs_dp::core::WorkerCounters) -> u64| -> u64 {
        l.workers.iter().map(|w| f(&w.counters)).sum()
    };
    assert_eq!(
        (
            sum(|c| c.synproxy_syn_acks),
            sum(|c| c.synproxy_accepted),
            sum(|c| c.synproxy_established)
        ),
        (1, 1, 1),
        "{:?}",
        l.tally
    );
    // The early data was held, then forwarded once the RS answered: 7.
    assert_eq!((l.tally.forwarded, l.tally.held), (7, 1), "{:?}", l.tally);
    // ARP: two requests answered, one wanted reply learned.
    let mut l = FuzzLab::new();
    l.run(&seed("arp"));
    assert_eq!(l.tally.forwarded, 2, "{:?}", l.tally);
    // The unresolved real server's SYN waits for ARP.
    let mut l = FuzzLab::new();
    l.run(&records(&[(
        0,
        lab::tcp(
            lab::CLIENT_MAC,
            lab::P0_MAC,
            lab::CIP,
            lab::VIP2,
            6000,
            8443,
            "S",
            b"",
        ),
    )]));
    // Another client of the same /24 (so the same owning worker): VIP2's
    // port-0 service is persistent, as IPVS requires, so the first client's
    // next SYN would follow its template instead.
    l.run(&records(&[(
        0,
        lab::tcp(
            lab::CLIENT_MAC,
            lab::P0_MAC,
            Ipv4Addr::new(10, 1, 0, 11),
            lab::VIP2,
            6001,
            8443,
            "S",
            b"",
        ),
    )]));
    assert_eq!(
        (l.tally.forwarded, l.tally.resolve),
        (1, 1),
        "rr alternates: the second waits for ARP"
    );
}

/// Writes the seeds as the fuzzer's starting corpus:
/// `cargo test -p rvs-dp --test fuzz_regressions -- --ignored write_seed_corpus`
#[test]
#[ignore]
fn write_seed_corpus() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/packet_path");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, input) in seeds() {
        std::fs::write(dir.join(format!("seed_{name}")), input).unwrap();
    }
}

/// A seed with some bytes flipped, cut short, or with bytes inserted.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    let all = seeds();
    let n = all.len();
    (
        0..n,
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..8),
        any::<prop::sample::Index>(),
    )
        .prop_map(move |(i, edits, cut)| {
            let mut s = all[i].1.clone();
            for (at, byte, kind) in edits {
                if s.is_empty() {
                    break;
                }
                let at = at.index(s.len());
                match kind {
                    0 => s[at] ^= byte.max(1),
                    1 => s[at] = byte,
                    2 => s.insert(at, byte),
                    _ => {
                        s.remove(at);
                    }
                }
            }
            // One case in four is also cut short.
            if cut.index(4) == 0 && !s.is_empty() {
                let len = cut.index(s.len());
                s.truncate(len);
            }
            s
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..700)) {
        let mut l = FuzzLab::new();
        l.run(&data);
    }

    /// Arbitrary frames wrapped as records on both ports: each reaches
    /// `process` whole rather than being cut by the record format.
    #[test]
    fn arbitrary_frames_never_panic(
        frames in prop::collection::vec((any::<u8>(), prop::collection::vec(any::<u8>(), 0..200)), 1..12)
    ) {
        let mut l = FuzzLab::new();
        l.run(&records(&frames));
        let t = l.tally;
        prop_assert_eq!(
            t.forwarded + t.resolve + t.consumed + t.dropped,
            frames.iter().map(|(ctl, _)| if ctl & 0x80 != 0 { 2 } else { 1 }).sum::<u64>()
        );
    }

    #[test]
    fn mutated_valid_frames_never_panic(inputs in prop::collection::vec(mutated(), 1..4)) {
        // Several mutated conversations on one director: state carries over,
        // as it does in the fuzzer.
        let mut l = FuzzLab::new();
        for i in &inputs {
            l.run(i);
        }
    }
}

/// Runs `inputs` through two identical directors, one with the fast path
/// and one without, and checks they did exactly the same: every frame's
/// verdict and bytes, every counter and drop, every connection's state.
/// Returns how many frames the fast path took.
fn fast_and_general_paths_agree(opts: CoreOptions, inputs: &[Vec<u8>]) -> u64 {
    fast_and_general_paths_agree_after(opts, |_| {}, inputs)
}

/// As `fast_and_general_paths_agree`, with `setup` run on both directors first.
fn fast_and_general_paths_agree_after(
    opts: CoreOptions,
    setup: impl Fn(&mut FuzzLab),
    inputs: &[Vec<u8>],
) -> u64 {
    let mut fast = FuzzLab::with_options(opts);
    let mut general = FuzzLab::with_options(opts);
    setup(&mut fast);
    setup(&mut general);
    for w in general.workers.iter_mut() {
        w.fast_path = false;
    }
    fast.log = Some(Vec::new());
    general.log = Some(Vec::new());
    for i in inputs {
        fast.run(i);
        general.run(i);
    }
    let (a, b) = (fast.log.take().unwrap(), general.log.take().unwrap());
    assert_eq!(a.len(), b.len());
    for (n, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(x, y, "frame {n}: fast path vs general path");
    }
    assert_eq!(fast.tally, general.tally);
    assert_eq!(fast.traffic_report(), general.traffic_report());
    let mut hits = 0;
    for (x, y) in fast.workers.iter().zip(&general.workers) {
        hits += x.counters.fast_path;
        assert_eq!(y.counters.fast_path, 0);
        let mut cx = x.counters.clone();
        cx.fast_path = 0;
        assert_eq!(cx, y.counters, "worker {} counters", x.worker);
        assert_eq!(x.drops.by_reason, y.drops.by_reason, "worker {} drops", x.worker);
        assert_eq!(conn_states(x), conn_states(y), "worker {} connections", x.worker);
    }
    hits
}

fn conn_states(f: &rvs_dp::core::Forwarder) -> Vec<String> {
    let mut v: Vec<String> = f
        .conns
        .iter()
        .map(|(_, c)| {
            format!(
                "{:?} {}:{} {}:{} {}:{} {} exp {} tpl {} active {} no_output {} reply {}",
                c.proto(),
                c.cip(),
                c.cport(),
                c.vip(),
                c.vport(),
                c.rip(),
                c.rport(),
                c.state_name(),
                c.expires(),
                c.is_template(),
                c.is_active(),
                c.no_output(),
                c.seen_reply()
            )
        })
        .collect();
    v.sort();
    v
}

const BOTH_OPTIONS: [CoreOptions; 2] = [
    CoreOptions {
        expire_nodest_conn: true,
        tcp_rst_no_dest: true,
        conn_reuse_mode: 3,
        expire_quiescent_template: true,
    },
    CoreOptions {
        expire_nodest_conn: false,
        tcp_rst_no_dest: false,
        conn_reuse_mode: 0,
        expire_quiescent_template: false,
    },
];

/// The seeds, whole: established NAT (both ways), DR and TUN traffic goes
/// the fast path, with the same outcome as without it.
#[test]
fn fast_path_takes_the_seeds_established_traffic() {
    for opts in BOTH_OPTIONS {
        let seeds: Vec<Vec<u8>> = seeds().into_iter().map(|(_, s)| s).collect();
        let hits = fast_and_general_paths_agree(opts, &seeds);
        assert!(hits >= 10, "fast path took only {hits} frames");
        // The TUN seed's packets all end in "fragmentation needed" or a
        // drop; a plain exchange stands in for it.
        let tun_frame = |flags, payload: &[u8]| {
            lab::tcp(
                lab::CLIENT_MAC,
                lab::P0_MAC,
                lab::CIP,
                lab::VIP,
                40002,
                82,
                flags,
                payload,
            )
        };
        let tun = records(&[(0, tun_frame("S", b"")), (0, tun_frame("A", b"x"))]);
        for (name, input) in [
            ("nat_tcp", seed("nat_tcp")),
            ("udp_nat", seed("udp_nat")),
            ("dr", seed("dr")),
            ("tun", tun),
            ("fnat_udp", seed("fnat_udp")),
            ("fnat_proxy", seed("fnat_proxy")),
        ] {
            let h = fast_and_general_paths_agree(opts, &[input]);
            assert!(h > 0, "{name}: no frame took the fast path");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Mutated conversations (flipped, overwritten, inserted and removed
    /// bytes, cut frames, clock steps, table swaps, a removed real server):
    /// whatever the fast path accepts, it handles as the general path does.
    #[test]
    fn fast_path_matches_general_path(inputs in prop::collection::vec(mutated(), 1..4), opt in 0usize..2) {
        fast_and_general_paths_agree(BOTH_OPTIONS[opt], &inputs);
    }
}

/// Established traffic of every kind the fast path takes: NAT TCP both
/// ways (the replies from each real server, as rr's pick is not fixed
/// here), NAT UDP, DR, TUN. The first frames open the connections.
fn established_frames() -> Vec<(u8, Vec<u8>)> {
    use lab::{rs_ip, rs_mac, tcp, udp, CIP, CIP_FAR, CLIENT_MAC as C, P0_MAC as P0, P1_MAC as P1, VIP};
    let mut v = Vec::new();
    // A client whose MAC the director learns from its ARP request, not from
    // the configuration: replies to it go through a neighbour entry that ages
    // (a 400 s clock step makes it stale: forwarded, and ARPed again).
    let learned = std::net::Ipv4Addr::new(10, 1, 0, 20);
    let learned_mac = [2, 0, 0, 0, 0, 0x20];
    v.push((0, lab::arp(1, learned_mac, learned, lab::DIP0, [0xff; 6])));
    v.push((0, tcp(learned_mac, P0, learned, VIP, 41004, 80, "S", b"")));
    for i in 1..=3 {
        v.push((1, tcp(rs_mac(i), P1, rs_ip(i), learned, 8080, 41004, "SA", b"")));
    }
    v.push((0, tcp(learned_mac, P0, learned, VIP, 41004, 80, "A", b"est")));
    for i in 1..=3 {
        v.push((
            1,
            tcp(rs_mac(i), P1, rs_ip(i), learned, 8080, 41004, "A", b"reply"),
        ));
    }
    // Its MAC changes (a new NIC, a failover to another host): the replies
    // follow the neighbour table, not what was resolved before.
    let moved_mac = [2, 0, 0, 0, 0, 0x21];
    v.push((0, lab::arp(1, moved_mac, learned, lab::DIP0, [0xff; 6])));
    for i in 1..=3 {
        v.push((
            1,
            tcp(rs_mac(i), P1, rs_ip(i), learned, 8080, 41004, "A", b"moved"),
        ));
    }
    for cip in [CIP, CIP_FAR] {
        v.push((0, tcp(C, P0, cip, VIP, 41000, 80, "S", b"")));
        for i in 1..=3 {
            v.push((1, tcp(rs_mac(i), P1, rs_ip(i), cip, 8080, 41000, "SA", b"")));
        }
        v.push((0, tcp(C, P0, cip, VIP, 41000, 80, "A", b"GET /")));
        v.push((0, udp(C, P0, cip, VIP, 41001, 53, b"query")));
        // UDP may go without a checksum (0): it must stay without.
        let mut bare = udp(C, P0, cip, VIP, 41001, 53, b"no checksum");
        bare[40..42].copy_from_slice(&[0, 0]);
        v.push((0, bare));
        for i in 1..=2 {
            v.push((1, udp(rs_mac(i), P1, rs_ip(i), cip, 5353, 41001, b"answer")));
        }
        v.push((0, tcp(C, P0, cip, VIP, 41002, 81, "S", b"")));
        v.push((0, tcp(C, P0, cip, VIP, 41002, 81, "A", b"dr")));
        v.push((0, tcp(C, P0, cip, VIP, 41003, 82, "S", b"")));
        v.push((0, tcp(C, P0, cip, VIP, 41003, 82, "PA", b"tun")));
        // Past the egress MTU (600 toward the real servers, 1500 toward the
        // clients), DF set and clear, both NAT directions and DR.
        for (port, f) in [
            (0, tcp(C, P0, cip, VIP, 41000, 80, "A", &[0x55; 600])),
            (0, udp(C, P0, cip, VIP, 41001, 53, &[0x55; 600])),
            (0, tcp(C, P0, cip, VIP, 41002, 81, "A", &[0x55; 600])),
            (
                1,
                tcp(rs_mac(1), P1, rs_ip(1), cip, 8080, 41000, "A", &[0x55; 1500]),
            ),
            (1, udp(rs_mac(1), P1, rs_ip(1), cip, 5353, 41001, &[0x55; 1500])),
        ] {
            let mut no_df = f.clone();
            no_df[20] &= !0x40;
            fix_ip_checksum(&mut no_df);
            v.push((port, f));
            v.push((port, no_df));
        }
        // A wrong TCP checksum on an established NAT connection, both ways.
        let mut bad = tcp(C, P0, cip, VIP, 41000, 80, "A", b"bad");
        bad[50] ^= 0x01;
        v.push((0, bad));
        let mut bad = tcp(rs_mac(1), P1, rs_ip(1), cip, 8080, 41000, "A", b"bad");
        bad[50] ^= 0x01;
        v.push((1, bad));
        // A closed NAT connection, then a SYN from its port (conn_reuse_mode).
        v.push((0, tcp(C, P0, cip, VIP, 41005, 80, "S", b"")));
        for i in 1..=3 {
            v.push((1, tcp(rs_mac(i), P1, rs_ip(i), cip, 8080, 41005, "SA", b"")));
        }
        v.push((0, tcp(C, P0, cip, VIP, 41005, 80, "A", b"GET /")));
        for i in 1..=3 {
            v.push((1, tcp(rs_mac(i), P1, rs_ip(i), cip, 8080, 41005, "FA", b"")));
        }
        v.push((0, tcp(C, P0, cip, VIP, 41005, 80, "FA", b"")));
        v.push((0, tcp(C, P0, cip, VIP, 41005, 80, "S", b"")));
        v.push((0, tcp(C, P0, cip, VIP, 41005, 80, "A", b"again")));
        v.extend(fnat_frames(cip));
    }
    v
}

/// FULLNAT without a client hint, TCP and UDP, for client `cip`; replies to
/// the first local ports of both workers (those not leased: no connection).
fn fnat_frames(cip: std::net::Ipv4Addr) -> Vec<(u8, Vec<u8>)> {
    use lab::{rs_ip, rs_mac, tcp, udp, CLIENT_MAC as C, P0_MAC as P0, P1_MAC as P1, VIP};
    let mut v = Vec::new();
    let (fp, up) = (lab::FNAT_PLAIN_PORT, lab::FNAT_UDP_PORT);
    v.push((0, tcp(C, P0, cip, VIP, 41006, fp, "S", b"")));
    v.push((0, udp(C, P0, cip, VIP, 41007, up, b"query")));
    for lport in lab::LPORT_FIRST..lab::LPORT_FIRST + 4 {
        let rs = (rs_mac(1), P1, rs_ip(1));
        v.push((
            1,
            tcp(
                rs.0,
                rs.1,
                rs.2,
                lab::LIP_PLAIN,
                lab::FNAT_RS_PORT,
                lport,
                "SA",
                b"",
            ),
        ));
        v.push((
            1,
            tcp(
                rs.0,
                rs.1,
                rs.2,
                lab::LIP_PLAIN,
                lab::FNAT_RS_PORT,
                lport,
                "A",
                b"data",
            ),
        ));
        v.push((
            1,
            udp(
                rs.0,
                rs.1,
                rs.2,
                lab::LIP_UDP,
                lab::FNAT_RS_PORT,
                lport,
                b"answer",
            ),
        ));
        v.push((
            1,
            tcp(
                rs.0,
                rs.1,
                rs.2,
                lab::LIP_PLAIN,
                lab::FNAT_RS_PORT,
                lport,
                "A",
                &[0x55; 1500],
            ),
        ));
    }
    v.push((0, tcp(C, P0, cip, VIP, 41006, fp, "A", b"GET /")));
    v.push((0, tcp(C, P0, cip, VIP, 41006, fp, "A", &[0x55; 600])));
    v.push((0, udp(C, P0, cip, VIP, 41007, up, b"again")));
    v
}

/// The fast path takes FULLNAT's established traffic both ways, as the
/// general path would.
#[test]
fn fast_path_takes_fullnat_established_frames() {
    for opts in BOTH_OPTIONS {
        let hits = fast_and_general_paths_agree(opts, &[records(&fnat_frames(lab::CIP))]);
        assert!(hits >= 4, "fast path took only {hits} FULLNAT frames");
    }
}

/// The established frames in order, whole: the fast path takes part of
/// them, and what it takes it handles as the general path does (MTU,
/// checksum and port-reuse cases included).
#[test]
fn fast_path_matches_general_path_on_established_frames() {
    for opts in BOTH_OPTIONS {
        let hits = fast_and_general_paths_agree(opts, &[records(&established_frames())]);
        assert!(hits >= 10, "fast path took only {hits} frames");
    }
}

/// A VIP whose address moved to the peer director (kernel interfaces, the
/// address gone from ours) after its connections opened: their packets drop
/// as `VipNotOwned` on both paths alike, and the replies still go.
#[test]
fn fast_path_matches_general_path_on_vips_no_longer_owned() {
    use rvs_dp::ownership::Owned;
    use rvs_dp::stats::DropReason;
    let input = records(&established_frames());
    for opts in BOTH_OPTIONS {
        let mut fast = FuzzLab::with_options(opts);
        let mut general = FuzzLab::with_options(opts);
        for w in general.workers.iter_mut() {
            w.fast_path = false;
        }
        fast.run(&input);
        general.run(&input);
        for l in [&mut fast, &mut general] {
            l.shared.owned.store(std::sync::Arc::new(Owned::only(1, [])));
            for w in l.workers.iter_mut() {
                w.refresh();
            }
            l.log = Some(Vec::new());
            l.run(&input);
        }
        let (a, b) = (fast.log.take().unwrap(), general.log.take().unwrap());
        assert_eq!(a, b, "fast path vs general path");
        assert_eq!(fast.tally, general.tally);
        let not_owned: u64 = general
            .workers
            .iter()
            .map(|w| w.drops.get(DropReason::VipNotOwned))
            .sum();
        assert!(not_owned > 0, "no packet to the VIP was dropped");
        for (x, y) in fast.workers.iter().zip(&general.workers) {
            assert_eq!(x.drops.by_reason, y.drops.by_reason, "worker {} drops", x.worker);
            let mut cx = x.counters.clone();
            cx.fast_path = 0;
            let mut cy = y.counters.clone();
            cy.fast_path = 0;
            assert_eq!(cx, cy, "worker {} counters", x.worker);
        }
    }
}

/// Connections no packet of ours would have opened, as a sync from another
/// director can bring them: a client, or a real server, at one of the
/// director's own addresses (a martian source). Their packets are dropped,
/// whichever path looks at them, however many there are.
#[test]
fn fast_path_drops_martians_of_synced_connections() {
    use lab::{rs_mac, tcp, CIP_FAR, CLIENT_MAC as C, DIP1, P0_MAC as P0, P1_MAC as P1, VIP};
    use rvs_dp::conn::{FlowKey, NewConn};
    use rvs_dp::service::{ForwardMethod, Proto};
    let setup = |l: &mut FuzzLab| {
        for w in l.workers.iter_mut() {
            for (cip, cport, rip) in [(DIP1, 41010, lab::rs_ip(1)), (CIP_FAR, 41011, DIP1)] {
                let now = w.now();
                w.conns
                    .insert(
                        NewConn {
                            flow: FlowKey::new(Proto::Tcp, cip, cport, VIP, 80),
                            rip,
                            rport: 8080,
                            method: ForwardMethod::Nat,
                            dest: None,
                            svc: None,
                            template: None,
                        },
                        now,
                    )
                    .expect("room");
            }
        }
    };
    // To the worker that owns each client: elsewhere the martian is dropped
    // before it could be redirected, and the fast path never sees it.
    let mask = FuzzLab::new().workers[0].services().owner_mask();
    let owner = |cip| (rvs_dp::core::owner_of(cip, mask, lab::WORKERS) as u8) << 1;
    let frames = || {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push((owner(DIP1), tcp(C, P0, DIP1, VIP, 41010, 80, "A", b"in")));
            v.push((
                1 | owner(CIP_FAR),
                tcp(rs_mac(1), P1, DIP1, CIP_FAR, 8080, 41011, "A", b"out"),
            ));
        }
        records(&v)
    };
    for opts in BOTH_OPTIONS {
        fast_and_general_paths_agree_after(opts, setup, &[frames()]);
        let mut l = FuzzLab::with_options(opts);
        setup(&mut l);
        l.run(&frames());
        let martians: u64 = l
            .workers
            .iter()
            .map(|w| w.drops.get(rvs_dp::stats::DropReason::Martian))
            .sum();
        assert_eq!((martians, l.tally.forwarded), (6, 0), "{:?}", l.tally);
    }
}

/// Where the NIC gives a verdict on the IPv4 header checksum
/// (RTE_MBUF_F_RX_IP_CKSUM_GOOD/BAD), both paths go by it instead of their
/// own sum: BAD drops a right header (`BadIpChecksum`), GOOD takes a wrong
/// one as it would a right one, on the fast path as on the general path.
#[test]
fn nic_checksum_verdicts_rule_both_paths() {
    use rvs_dp::stats::DropReason;
    let frames = established_frames();
    // Every IPv4 frame's header checksum made wrong.
    let wrong: Vec<(u8, Vec<u8>)> = frames
        .iter()
        .map(|(p, f)| {
            let mut f = f.clone();
            if f.get(12..14) == Some(&[0x08, 0x00]) {
                f[24] ^= 0x01;
            }
            (*p, f)
        })
        .collect();
    for opts in BOTH_OPTIONS {
        for status in [Some(true), Some(false)] {
            for input in [&frames, &wrong] {
                fast_and_general_paths_agree_after(opts, |l| l.rx_ip_csum = status, &[records(input)]);
            }
        }
        let run = |status, input: &[(u8, Vec<u8>)]| {
            let mut l = FuzzLab::with_options(opts);
            l.rx_ip_csum = status;
            l.run(&records(input));
            let bad: u64 = l
                .workers
                .iter()
                .map(|w| w.drops.get(DropReason::BadIpChecksum))
                .sum();
            let fast: u64 = l.workers.iter().map(|w| w.counters.fast_path).sum();
            (l.tally, bad, fast)
        };
        let (plain, bad, fast) = run(None, &frames);
        assert_eq!(bad, 0);
        assert!(fast >= 10, "{fast}");
        // GOOD: the wrong sums go through as the right ones do.
        assert_eq!(run(Some(true), &wrong), (plain, 0, fast));
        // BAD: nothing IPv4 gets past the header check.
        let ipv4 = frames
            .iter()
            .filter(|(_, f)| f.get(12..14) == Some(&[0x08, 0x00]))
            .count() as u64;
        let (t, bad, fast) = run(Some(false), &frames);
        assert_eq!((bad, fast), (ipv4, 0), "{t:?}");
        // Unreported: the software check drops every wrong sum.
        let (_, bad, _) = run(None, &wrong);
        assert_eq!(bad, ipv4);
    }
}

/// As `nic_checksum_verdicts_rule_both_paths`, for the TCP/UDP checksum a
/// packet opening an LVS-NAT connection must have
/// (RTE_MBUF_F_RX_L4_CKSUM_GOOD/BAD): the NIC's verdict, where it gives
/// one, decides instead of the sum.
#[test]
fn nic_l4_checksum_verdicts_rule_new_nat_connections() {
    use lab::{tcp, CIP, CLIENT_MAC as C, P0_MAC as P0, VIP};
    use rvs_dp::stats::DropReason;
    let syn = tcp(C, P0, CIP, VIP, 41020, 80, "S", b"");
    let mut wrong = syn.clone();
    wrong[50] ^= 0x01;
    for opts in BOTH_OPTIONS {
        let run = |status, frame: &Vec<u8>| {
            let input = records(&[(0, frame.clone())]);
            fast_and_general_paths_agree_after(opts, |l| l.rx_l4_csum = status, std::slice::from_ref(&input));
            let mut l = FuzzLab::with_options(opts);
            l.rx_l4_csum = status;
            l.run(&input);
            let bad: u64 = l
                .workers
                .iter()
                .map(|w| w.drops.get(DropReason::BadL4Checksum))
                .sum();
            let made: u64 = l.workers.iter().map(|w| w.counters.conns_created).sum();
            (made, bad)
        };
        assert_eq!(run(None, &syn), (1, 0));
        assert_eq!(run(None, &wrong), (0, 1));
        assert_eq!(run(Some(true), &wrong), (1, 0), "GOOD opens whatever the sum");
        assert_eq!(run(Some(false), &syn), (0, 1), "BAD refuses whatever the sum");
    }
}

fn set(f: &mut [u8], at: usize, b: u8) {
    if let Some(x) = f.get_mut(at) {
        *x = b;
    }
}

fn set16(f: &mut [u8], at: usize, v: u16) {
    let [hi, lo] = v.to_be_bytes();
    set(f, at, hi);
    set(f, at + 1, lo);
}

/// Recomputes the IPv4 header checksum of an Ethernet frame (20-byte header).
fn fix_ip_checksum(f: &mut [u8]) {
    if let Some(h) = f.get_mut(14..34) {
        h[10..12].copy_from_slice(&[0, 0]);
        let mut s: u32 = h
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum();
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        h[10..12].copy_from_slice(&(!(s as u16)).to_be_bytes());
    }
}

/// One of the established frames with one header field set from `value`,
/// delivered to either worker (so some are redirected) after a clock step. `fix` recomputes the IP header checksum, so the frame gets past it
/// and the field itself is what the two paths must agree on.
fn header_mutated() -> impl Strategy<Value = Vec<u8>> {
    const IP: usize = 14;
    let base = established_frames();
    let n = base.len();
    (
        prop::collection::vec(
            (0..n, 0usize..15, any::<u16>(), any::<bool>(), 0u8..8, any::<u8>()),
            1..24,
        ),
        any::<bool>(),
    )
        .prop_map(move |(edits, fix_all)| {
            let mut out = base.clone();
            for (i, field, value, fix, ctl, extra) in edits {
                let (port, mut f) = base[i].clone();
                let l4 = IP + usize::from(f[IP] & 0x0f) * 4;
                let lo = value as u8;
                let mut later_fragment = None;
                match field {
                    // Destination MAC; ethertype.
                    0 => set(&mut f, 5, lo),
                    1 => set16(&mut f, 12, value),
                    // Version and IHL; total length; flags and offset; TTL 0..=2.
                    2 => set(&mut f, IP, lo),
                    3 => set16(&mut f, IP + 2, value),
                    4 => set16(&mut f, IP + 6, value),
                    5 => set(&mut f, IP + 8, lo % 3),
                    // Protocol; source and destination addresses.
                    6 => set(&mut f, IP + 9, lo),
                    7 => set(&mut f, IP + 15, lo),
                    8 => set(&mut f, IP + 19, lo),
                    // TCP data offset and flags; UDP length.
                    9 => set(&mut f, l4 + 12, lo),
                    10 => set(&mut f, l4 + 13, lo),
                    11 => set16(&mut f, l4 + 4, value),
                    // A first fragment, then a later one of the same datagram.
                    12 => {
                        set(&mut f, IP + 6, 0x20);
                        set(&mut f, IP + 7, 0);
                        let mut g = f.clone();
                        g[IP + 6] = 0;
                        g[IP + 7] = lo | 1;
                        fix_ip_checksum(&mut g);
                        later_fragment = Some(g);
                    }
                    // Cut short; Ethernet padding.
                    13 => f.truncate(usize::from(value) % (f.len() + 1)),
                    _ => f.extend_from_slice(&[0; 6]),
                }
                if fix || fix_all {
                    fix_ip_checksum(&mut f);
                }
                // The port of the base frame; from `ctl` the worker and a clock
                // step of 0, 1, 10 or 400 s (neighbours age, UDP connections
                // expire); from `extra`, one time in four, one of: housekeeping,
                // the service-table swap that removes a real server, a buffer
                // without headroom, the frame delivered twice.
                let more = if extra & 3 == 0 {
                    0x10 << ((extra >> 2) & 3)
                } else {
                    0
                };
                let ctl = (port & 1) | (ctl & 1) << 1 | (ctl >> 1) << 2 | more;
                out.push((ctl, f));
                if let Some(g) = later_fragment {
                    out.push((ctl & 3, g));
                }
            }
            records(&out)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Established frames with one header field changed (checksum fixed or
    /// not): the fast path refuses what it must, and what it takes, it
    /// handles as the general path does.
    #[test]
    fn fast_path_matches_general_path_on_edited_headers(input in header_mutated(), opt in 0usize..2) {
        fast_and_general_paths_agree(BOTH_OPTIONS[opt], &[input]);
    }
}
