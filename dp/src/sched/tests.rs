//! Cross-scheduler tests and the helpers the per-file tests share.

use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;

use super::*;
use crate::service::{ForwardMethod, Proto, RealServer, SchedFlags};

/// Real servers 192.168.1.1.. :80 with the given weights, no load.
pub(crate) fn servers(weights: &[u32]) -> Vec<RealServer> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            let rip = Ipv4Addr::from(0xC0A8_0101 + i as u32);
            RealServer::new(rip, 80, w, ForwardMethod::Dr, 1)
        })
        .collect()
}

pub(crate) fn load(d: &RealServer, active: u32, inactive: u32) {
    d.stats.active.store(active, Ordering::Relaxed);
    d.stats.inactive.store(inactive, Ordering::Relaxed);
}

pub(crate) fn overload(d: &RealServer) {
    d.stats.overloaded.store(true, Ordering::Relaxed);
}

pub(crate) fn vip(n: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0A00_0000 + n)
}

/// A connection from client `cip` (as a number) to one fixed VIP:80.
pub(crate) fn key(cip: u32) -> SchedKey {
    key_port(cip, 33000)
}

pub(crate) fn key_port(cip: u32, cport: u16) -> SchedKey {
    SchedKey::new(Proto::Tcp, Ipv4Addr::from(cip), cport, vip(1), 80)
}

/// A connection from client `cip` to VIP number `v`.
pub(crate) fn key_vip(cip: u32, v: u32) -> SchedKey {
    SchedKey {
        dst: vip(v),
        ..key(cip)
    }
}

fn fallback_opts() -> SchedOptions {
    SchedOptions {
        flags: SchedFlags {
            fallback: true,
            port: false,
        },
        ..SchedOptions::default()
    }
}

/// Client/VIP pairs enough to hit every bucket of every hashing scheduler.
fn many_keys() -> impl Iterator<Item = SchedKey> {
    (0..2000u32).map(|n| key_vip(n.wrapping_mul(0x9E37_79B9), n % 97))
}

#[test]
fn every_name_builds_and_reports_its_name() {
    let d = servers(&[1, 2, 3]);
    for &name in SCHEDULER_NAMES {
        let s = build(name, &d, &SchedOptions::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(s.name(), name);
        assert_eq!(s.clone_box().name(), name);
    }
    assert_eq!(SCHEDULER_NAMES.len(), 14);
}

#[test]
fn unknown_names_are_refused() {
    for bad in ["", "RR", "wrr ", "roundrobin", "mhx"] {
        assert_eq!(
            build(bad, &[], &SchedOptions::default()).err(),
            Some(SchedError::Unknown(bad.to_string()))
        );
    }
}

#[test]
fn mh_table_size_is_checked_by_build() {
    let d = servers(&[1, 1, 1]);
    for (size, ok) in [(65537, true), (65536, false), (3, true), (2, false), (1, false)] {
        let o = SchedOptions {
            mh_table_size: size,
            ..SchedOptions::default()
        };
        let r = build("mh", &d, &o);
        assert_eq!(r.is_ok(), ok, "size {size}");
        if !ok {
            assert!(matches!(r.err(), Some(SchedError::BadOption(_))));
        }
    }
}

#[test]
fn empty_list_gives_none_for_all() {
    for &name in SCHEDULER_NAMES {
        for opts in [SchedOptions::default(), fallback_opts()] {
            let mut s = build(name, &[], &opts).unwrap();
            for k in many_keys().take(50) {
                assert_eq!(s.schedule(&[], &k), None, "{name}");
            }
        }
    }
}

#[test]
fn all_quiesced_or_overloaded_gives_none_for_all() {
    let quiesced = servers(&[0, 0, 0]);
    let flagged = servers(&[1, 5, 3]);
    flagged.iter().for_each(overload);
    let mixed = servers(&[0, 4, 0]);
    overload(&mixed[1]);
    for &name in SCHEDULER_NAMES {
        for d in [&quiesced, &flagged, &mixed] {
            for opts in [SchedOptions::default(), fallback_opts()] {
                let mut s = build(name, d, &opts).unwrap();
                for k in many_keys().take(200) {
                    assert_eq!(s.schedule(d, &k), None, "{name}");
                }
            }
        }
    }
}

/// One quiesced, one overloaded, one healthy server, in every position: each
/// scheduler sends only to the healthy one. Hashing schedulers without
/// fallback may refuse a key instead (that is their contract), but must reach
/// the healthy server for some keys; with fallback they must never refuse.
#[test]
fn quiesced_and_overloaded_servers_are_skipped_by_all() {
    let layouts: [[u32; 3]; 3] = [[0, 5, 2], [5, 2, 0], [2, 0, 5]];
    for &name in SCHEDULER_NAMES {
        for (li, w) in layouts.iter().enumerate() {
            // The weight-5 server is the overloaded one; the weight-2 one is healthy.
            let d = servers(w);
            let healthy = w.iter().position(|&x| x == 2).unwrap();
            let flagged = w.iter().position(|&x| x == 5).unwrap();
            overload(&d[flagged]);
            for (oi, opts) in [SchedOptions::default(), fallback_opts()].iter().enumerate() {
                let mut s = build(name, &d, opts).unwrap();
                let may_refuse = matches!(name, "dh") || (matches!(name, "sh" | "mh") && oi == 0);
                let mut reached = 0;
                for k in many_keys() {
                    match s.schedule(&d, &k) {
                        Some(i) => {
                            assert_eq!(i, healthy, "{name} layout {li} opts {oi}");
                            reached += 1;
                        }
                        None => assert!(may_refuse, "{name} layout {li} opts {oi} refused"),
                    }
                }
                assert!(
                    reached > 0,
                    "{name} layout {li} opts {oi} never reached the healthy server"
                );
            }
        }
    }
}

#[test]
fn schedule_tolerates_a_different_list_than_built_for() {
    let built = servers(&[1, 2, 3, 4, 5]);
    let short = servers(&[1, 1]);
    let long = servers(&[1; 9]);
    for &name in SCHEDULER_NAMES {
        let mut s = build(name, &built, &fallback_opts()).unwrap();
        for k in many_keys().take(300) {
            if let Some(i) = s.schedule(&short, &k) {
                assert!(i < short.len(), "{name}");
            }
            if let Some(i) = s.schedule(&long, &k) {
                assert!(i < long.len(), "{name}");
            }
        }
    }
}

#[test]
fn lc_takes_least_overhead() {
    let mut s = lc::Lc;
    let d = servers(&[1, 1, 1]);
    load(&d[0], 1, 0); // 256
    load(&d[1], 0, 300); // 300
    load(&d[2], 1, 1); // 257
    assert_eq!(s.schedule(&d, &key(1)), Some(0));
    // Weight does not scale lc.
    let d = servers(&[1, 100]);
    load(&d[0], 1, 0);
    load(&d[1], 1, 1);
    assert_eq!(s.schedule(&d, &key(1)), Some(0));
    // Ties go to the first in list order.
    let d = servers(&[1, 1, 1]);
    load(&d[0], 2, 0);
    load(&d[1], 1, 5);
    load(&d[2], 1, 5);
    assert_eq!(s.schedule(&d, &key(1)), Some(1));
}

#[test]
fn wlc_and_sed_differ_as_the_kernel_formulas_say() {
    let (mut wlc, mut sed) = (wlc::Wlc, sed::Sed);
    // Inactive connections count for wlc only.
    let d = servers(&[1, 1]);
    load(&d[0], 0, 1000); // wlc 1000, sed 1
    load(&d[1], 1, 0); // wlc 256, sed 2
    assert_eq!(wlc.schedule(&d, &key(1)), Some(1));
    assert_eq!(sed.schedule(&d, &key(1)), Some(0));
    // sed's +1: an idle weight-1 server loses to a busy weight-10 one.
    let d = servers(&[1, 10]);
    load(&d[1], 1, 0); // wlc 0/1 vs 256/10; sed 1/1 vs 2/10
    assert_eq!(wlc.schedule(&d, &key(1)), Some(0));
    assert_eq!(sed.schedule(&d, &key(1)), Some(1));
    // Exact ratio tie keeps the first; one more inactive tips it.
    let d = servers(&[3, 1]);
    load(&d[0], 3, 0); // 768/3 = 256
    load(&d[1], 1, 0); // 256/1
    assert_eq!(wlc.schedule(&d, &key(1)), Some(0));
    load(&d[0], 3, 1);
    assert_eq!(wlc.schedule(&d, &key(1)), Some(1));
    // sed: (2+1)/3 = 1 vs (0+1)/1 = 1: tie, first; then (3+1)/3 > 1.
    load(&d[0], 2, 0);
    load(&d[1], 0, 0);
    assert_eq!(sed.schedule(&d, &key(1)), Some(0));
    load(&d[0], 3, 0);
    assert_eq!(sed.schedule(&d, &key(1)), Some(1));
}

#[test]
fn wlc_counts_survive_huge_values() {
    let d = servers(&[65535, 1]);
    load(&d[0], u32::MAX, u32::MAX);
    load(&d[1], u32::MAX - 1, 0);
    assert_eq!(wlc::Wlc.schedule(&d, &key(1)), Some(0));
}

#[test]
fn nq_prefers_any_idle_server() {
    let mut nq = nq::Nq;
    let d = servers(&[10, 1, 1]);
    load(&d[0], 5, 0); // sed 6/10 = 0.6: sed would take it
    load(&d[1], 0, 50); // idle (inactive does not count)
    assert_eq!(sed::Sed.schedule(&d, &key(1)), Some(0));
    assert_eq!(nq.schedule(&d, &key(1)), Some(1), "first idle server");
    // No idle server: same as sed.
    load(&d[1], 1, 0);
    load(&d[2], 1, 0);
    assert_eq!(nq.schedule(&d, &key(1)), Some(0));
    load(&d[0], 30, 0); // 31/10 > 2/1
    assert_eq!(nq.schedule(&d, &key(1)), Some(1));
    // An idle server that is quiesced does not count.
    let d = servers(&[0, 4]);
    load(&d[1], 3, 0);
    assert_eq!(nq.schedule(&d, &key(1)), Some(1));
}

#[test]
fn fo_takes_the_highest_weight_and_fails_over() {
    let mut fo = fo::Fo;
    let d = servers(&[5, 9, 9, 1]);
    load(&d[1], 1000, 1000); // load does not matter
    assert_eq!(fo.schedule(&d, &key(1)), Some(1), "first of the tied highest");
    overload(&d[1]);
    assert_eq!(fo.schedule(&d, &key(1)), Some(2));
    let mut d = d;
    d[2].weight = 0;
    assert_eq!(fo.schedule(&d, &key(1)), Some(0));
}

#[test]
fn ovf_overflows_past_weight() {
    let mut ovf = ovf::Ovf;
    let d = servers(&[3, 10, 5]);
    assert_eq!(ovf.schedule(&d, &key(1)), Some(1));
    load(&d[1], 10, 99); // at weight: still eligible (kernel skips only active > weight)
    assert_eq!(ovf.schedule(&d, &key(1)), Some(1));
    load(&d[1], 11, 0);
    assert_eq!(ovf.schedule(&d, &key(1)), Some(2));
    load(&d[2], 6, 0);
    assert_eq!(ovf.schedule(&d, &key(1)), Some(0));
    load(&d[0], 4, 0);
    assert_eq!(ovf.schedule(&d, &key(1)), None, "everyone past its weight");
}

/// Counts heap allocations made by the current thread, so a test can prove
/// that `schedule` never allocates. Test builds only; it delegates to System.
mod alloc_count {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static ALLOCS: Cell<u64> = const { Cell::new(0) };
    }

    pub struct Counting;

    fn bump() {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
    }

    // SAFETY: every call is forwarded unchanged to the System allocator.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            bump();
            // SAFETY: the caller upholds GlobalAlloc's contract, which System needs.
            unsafe { System.alloc(l) }
        }
        unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
            bump();
            // SAFETY: the caller upholds GlobalAlloc's contract, which System needs.
            unsafe { System.alloc_zeroed(l) }
        }
        unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
            bump();
            // SAFETY: the caller upholds GlobalAlloc's contract, which System needs.
            unsafe { System.realloc(p, l, n) }
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            // SAFETY: the caller upholds GlobalAlloc's contract, which System needs.
            unsafe { System.dealloc(p, l) }
        }
    }

    #[global_allocator]
    static COUNTING: Counting = Counting;

    pub fn count() -> u64 {
        ALLOCS.with(Cell::get)
    }
}

#[test]
fn schedule_never_allocates() {
    let d = servers(&[3, 0, 2, 5, 1, 4]);
    overload(&d[3]);
    let keys: Vec<SchedKey> = many_keys().collect();
    let c = alloc_count::count();
    std::hint::black_box(vec![0u8; 64]);
    assert!(alloc_count::count() > c, "the counter must see allocations");
    for &name in SCHEDULER_NAMES {
        for opts in [SchedOptions::default(), fallback_opts()] {
            let mut s = build(name, &d, &opts).unwrap();
            let before = alloc_count::count();
            for (n, k) in keys.iter().enumerate() {
                // Shift the load around so lblc/lblcr move, grow and evict.
                if n % 7 == 0 {
                    load(&d[n % 6], (n % 13) as u32, (n % 5) as u32);
                }
                if n % 500 == 0 {
                    s.tick(n as u64 * 100);
                }
                let _ = s.schedule(&d, k);
            }
            assert_eq!(alloc_count::count() - before, 0, "{name} allocated in schedule");
        }
    }
}
