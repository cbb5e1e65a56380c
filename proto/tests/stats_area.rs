//! Workers publish stats through the seqlock while tools read them: no torn reads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rvs_proto::latency::LatencyHist;
use rvs_proto::region::Layout;
use rvs_proto::ring::{CtlClient, CtlServer};
use rvs_proto::statsarea::{monotonic_ns, WorkerStatsBlock, STATS_REALS, STATS_SERVICES};
use rvs_proto::types::DropReason;

mod common;
use common::TempPath;

const WORDS: usize = std::mem::size_of::<WorkerStatsBlock>() / 8;

/// The block as its words (it is all u64 with no padding, by construction).
fn words(b: &WorkerStatsBlock) -> &[u64; WORDS] {
    unsafe { &*(b as *const WorkerStatsBlock as *const [u64; WORDS]) }
}

fn fill(b: &mut WorkerStatsBlock, v: u64) {
    let w = unsafe { &mut *(b as *mut WorkerStatsBlock as *mut [u64; WORDS]) };
    w.fill(v);
}

#[test]
fn readers_never_see_a_torn_block() {
    let p = TempPath::new("seqlock");
    let server = CtlServer::create(&p.0, Layout::with_workers(2)).unwrap();
    let writers = [server.stats_writer(0).unwrap(), server.stats_writer(1).unwrap()];
    let client = CtlClient::open(&p.0).unwrap();
    let stop = Arc::new(AtomicBool::new(false));

    // Each worker publishes blocks whose every word equals a counter that goes
    // up by one per publish (worker 1 uses odd values, worker 0 even ones).
    let hammer: Vec<_> = writers
        .into_iter()
        .map(|w| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut b = WorkerStatsBlock::new_boxed();
                let mut v = w.worker() as u64;
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    v += 2;
                    fill(&mut b, v);
                    w.publish(&b);
                    n += 1;
                    // Real workers publish about every millisecond; back to
                    // back, on a loaded 2-core machine, two writers can keep
                    // every read of the reader's short window retrying.
                    if n.is_multiple_of(16) {
                        thread::sleep(Duration::from_micros(20));
                    }
                }
                n
            })
        })
        .collect();

    let reader = client.stats();
    assert_eq!(reader.workers(), 2);
    let mut b = WorkerStatsBlock::new_boxed();
    let mut last = [0u64; 2];
    let mut ok_reads = 0;
    let mut changes = 0;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(1500) {
        for (worker, last) in last.iter_mut().enumerate() {
            if !reader.read_into(worker, &mut b) {
                continue;
            }
            ok_reads += 1;
            let w = words(&b);
            let v = w[0];
            assert!(
                w.iter().all(|x| *x == v),
                "worker {worker}: torn block (first word {v})"
            );
            // 0 is the zeroed slot before the worker's first publish.
            assert!(
                v == 0 || v % 2 == worker as u64 % 2,
                "worker {worker} read another worker's slot ({v})"
            );
            assert!(v >= *last, "worker {worker}: went back from {} to {v}", *last);
            if v != *last {
                changes += 1;
            }
            *last = v;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let published: Vec<u64> = hammer.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(published.iter().all(|n| *n > 10), "writers ran: {published:?}");
    assert!(
        ok_reads > 10,
        "reader got consistent copies while writers ran: {ok_reads}"
    );
    assert!(changes > 2, "reader saw the values move: {changes}");

    // Once writers are quiet, a read returns exactly the last publish.
    let final0 = reader.read(0).unwrap();
    assert_eq!(words(&final0)[0], published[0] * 2);
    let final1 = reader.read(1).unwrap();
    assert_eq!(words(&final1)[0], 1 + published[1] * 2);
    assert!(reader.read(2).is_none());
}

#[test]
fn a_published_block_reads_back_field_by_field() {
    let p = TempPath::new("fields");
    let server = CtlServer::create(&p.0, Layout::with_workers(1)).unwrap();
    let w = server.stats_writer(0).unwrap();
    let mut b = WorkerStatsBlock::new_boxed();
    b.timestamp_ns = monotonic_ns();
    b.rx_pkts = 10;
    b.tx_bytes = 1500;
    b.drops[DropReason::NoService as usize] = 3;
    b.redirects_sent = 4;
    b.conn_table_used = 5;
    b.fnat_replies_direct = 8;
    b.fnat_replies_redirected = 9;
    b.fnat_replies_steered = 10;
    b.proxy_inserted = 11;
    b.services[STATS_SERVICES - 1].inpkts = 6;
    b.reals[STATS_REALS - 1].outbytes = 7;
    let mut h = LatencyHist::default();
    h.record(250);
    b.latency = h;
    w.publish(&b);

    let r = CtlClient::open(&p.0).unwrap().stats().read(0).unwrap();
    assert_eq!(r, *b);
    assert_eq!(r.drop_count(DropReason::NoService), 3);
    assert_eq!(
        (
            r.fnat_replies_direct,
            r.fnat_replies_redirected,
            r.fnat_replies_steered,
            r.proxy_inserted
        ),
        (8, 9, 10, 11)
    );
    assert_eq!(r.service(STATS_SERVICES - 1).unwrap().inpkts, 6);
    assert_eq!(r.real(STATS_REALS - 1).unwrap().outbytes, 7);
    // Bucket [248, 256) capped by the exact max.
    assert_eq!(r.latency.value_at_quantile(0.5), Some(250));
}
