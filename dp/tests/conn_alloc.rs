//! The connection table allocates only in `ConnTable::new`: insert, lookups,
//! state changes, templates and expiry run without touching the heap.
//! A counting global allocator checks it; that is why this is its own test binary.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::Ipv4Addr;
use std::sync::Arc;

use rvs_dp::conn::{client_net, ConnTable, Direction, FlowKey, NewConn, NewTemplate, Timeouts};
use rvs_dp::service::{DestStats, ForwardMethod, Proto, WorkerTraffic};

struct Counting;

thread_local! {
    // Counted per thread, so the test harness's own threads do not interfere.
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        System.alloc(l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        System.alloc_zeroed(l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        System.realloc(p, l, n)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(|c| c.get())
}

#[test]
fn no_allocation_after_construction() {
    let dest = Arc::new(DestStats::new(2));
    let svc = Arc::new(WorkerTraffic::new(2));
    let to = Timeouts::default();
    let vip = Ipv4Addr::new(10, 0, 0, 1);
    let rip = Ipv4Addr::new(192, 168, 0, 1);

    let before = allocs();
    let mut t = ConnTable::new(1 << 20);
    let construction = allocs() - before;
    // The slab and the two bucket arrays; at least 3 also shows the counter works.
    assert!(
        (3..=4).contains(&construction),
        "construction made {construction} allocations"
    );

    let before = allocs();
    let mask = Ipv4Addr::new(255, 255, 255, 0);
    for round in 0..3u32 {
        let now = round * 10_000;
        for i in 0..20_000u32 {
            let cip = Ipv4Addr::from(0x0b00_0000 + i);
            let tmpl =
                match t.lookup_template(FlowKey::new(Proto::Tcp, client_net(cip, mask), 0, vip, 80), now) {
                    Some(id) => id,
                    None => t
                        .insert_template(
                            NewTemplate {
                                flow: FlowKey::new(Proto::Tcp, client_net(cip, mask), 0, vip, 80),
                                rip,
                                rport: 80,
                                method: ForwardMethod::Nat,
                                dest: Some(dest.clone()),
                            },
                            60,
                            now,
                        )
                        .unwrap(),
                };
            let id = t
                .insert(
                    NewConn {
                        flow: FlowKey::new(Proto::Tcp, cip, 1024 + (i % 50_000) as u16, vip, 80),
                        rip,
                        rport: 80,
                        method: ForwardMethod::Nat,
                        dest: Some(dest.clone()),
                        svc: Some(svc.clone()),
                        template: Some(tmpl),
                    },
                    now,
                )
                .unwrap();
            t.on_packet(id, Direction::Input, 0x02, now, &to);
            assert_eq!(
                t.lookup_out(
                    FlowKey::new(Proto::Tcp, rip, 80, cip, 1024 + (i % 50_000) as u16),
                    now
                ),
                Some(id)
            );
            t.on_packet(id, Direction::Output, 0x12, now, &to);
            t.on_packet(id, Direction::Input, 0x10, now, &to);
        }
        // First sweep: conns end, templates still controlling them are re-armed
        // (60 s); the second sweep collects the templates.
        t.expire(now + 5_000, t.capacity());
        t.expire(now + 6_000, t.capacity());
        assert!(t.is_empty());
    }
    let hot = allocs() - before;
    assert_eq!(hot, 0, "the table allocated {hot} times after construction");
    assert_eq!(dest.active(), 0);
}
