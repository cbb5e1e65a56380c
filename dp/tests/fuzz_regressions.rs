//! The fuzzer's director (fuzz/src/lab.rs, included as is) under the normal
//! test suite: its seed conversations do what they are meant to, and neither
//! arbitrary bytes nor mutated valid frames make the per-packet path panic or
//! break a verdict's contract. Inputs the fuzzer found crashing go here too.

#[path = "../../fuzz/src/lab.rs"]
#[allow(dead_code)]
mod lab;

use lab::{records, seeds, FuzzLab};
use proptest::prelude::*;

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
    ] {
        let mut l = FuzzLab::new();
        l.run(&input);
        assert!(l.tally.forwarded >= min_forwarded, "{name}: {:?}", l.tally);
    }
    // The flood fills both workers' tables: some SYNs are refused.
    let mut l = FuzzLab::new();
    l.run(&seed("flood"));
    let drops: u64 = l
        .workers
        .iter()
        .map(|w| w.drops.get(rvs_dp::stats::DropReason::ConnTableFull))
        .sum();
    assert!(drops > 0, "{:?}", l.tally);
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
    l.run(&records(&[(
        0,
        lab::tcp(
            lab::CLIENT_MAC,
            lab::P0_MAC,
            lab::CIP,
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
