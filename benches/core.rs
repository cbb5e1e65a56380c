//! Per-packet cost of `Forwarder::process` with 1K and 1M live connections:
//! NAT in (client → real server) and out (reply), NAT new connection (SYN:
//! schedule + insert + rewrite), DR and TUN established.
//!
//! Every timed loop refills one reused `VecBuf` from a precomputed frame and
//! calls `process`; the frames rotate over every live flow in a shuffled order,
//! so lookups land on table entries all over the slab as real traffic does.
//! `reset_only` times the refill alone, so it can be subtracted.
//!
//! Run: cargo bench -p rvs-dp --bench core -- --warm-up-time 1 --measurement-time 3

mod lab;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lab::*;
use rvs_dp::conn::FlowKey;
use rvs_dp::core::{Forwarder, Verdict};
use rvs_dp::packet::VecBuf;
use rvs_dp::service::Proto;

fn label(n: u32) -> &'static str {
    if n >= 1 << 20 {
        "1M"
    } else {
        "1K"
    }
}

fn bench_size(c: &mut Criterion, n: u32) {
    let s = shared();
    let name = label(n);

    // NAT: in, out and new connections share one table of n flows.
    let rss0 = rss_bytes();
    let mut nat = forwarder(&s, n);
    let rss1 = rss_bytes();
    let rs = open_flows(&mut nat, n, NAT_PORT);
    let rss2 = rss_bytes();
    println!(
        "[{name}] ConnTable capacity {} ({} live): bytes_per_conn() = {}",
        nat.conns.capacity(),
        nat.conns.len(),
        nat.conns.bytes_per_conn()
    );
    if let (Some(a), Some(b), Some(c2)) = (rss0, rss1, rss2) {
        // The list of real servers kept for building the reply frames is ours, not the table's.
        let list = (rs.capacity() * std::mem::size_of::<(std::net::Ipv4Addr, u16)>()) as u64;
        let mib = |x: u64| x as f64 / (1 << 20) as f64;
        println!(
            "[{name}] RSS growth: Forwarder::new {:.1} MiB, opening the flows {:.1} MiB \
             (less the bench's own {:.1} MiB list); {:.1} bytes per live connection",
            mib(b.saturating_sub(a)),
            mib(c2.saturating_sub(b).saturating_sub(list)),
            mib(list),
            c2.saturating_sub(a).saturating_sub(list) as f64 / f64::from(n)
        );
    }
    let (ins, outs) = flow_frames(n, NAT_PORT, Some(&rs));
    let outs = outs.expect("NAT has replies");
    drop(rs);
    check_all(&mut nat, 0, &ins, Verdict::Forward { port: 1 });
    check_all(&mut nat, 1, &outs, Verdict::Forward { port: 0 });

    let mut g = c.benchmark_group(format!("core/{name}"));
    g.throughput(Throughput::Elements(1));

    let mut cur = 0;
    g.bench_function("reset_only", |b| {
        b.iter_custom(|iters| run_reset_only(&ins, &mut cur, iters))
    });
    let mut cur = 0;
    g.bench_function("nat_in_established", |b| {
        b.iter_custom(|iters| run(&mut nat, 0, &ins, &mut cur, iters))
    });
    let mut cur = 0;
    g.bench_function("nat_in_established_burst", |b| {
        b.iter_custom(|iters| run_burst(&mut nat, 0, &ins, &mut cur, iters))
    });
    let mut cur = 0;
    g.bench_function("nat_out_established", |b| {
        b.iter_custom(|iters| run(&mut nat, 1, &outs, &mut cur, iters))
    });

    // New connections: SLACK unique SYNs per batch, removed again untimed so
    // the table stays at n live flows plus at most one batch.
    let mut syns = Frames::with_capacity(SLACK as usize);
    for j in 0..SLACK {
        let (cip, cport) = client(j, true);
        syns.push(|b| tcp_frame(P0_MAC, cip, VIP, cport, NAT_PORT, SYN, b));
    }
    let created0 = nat.counters.conns_created;
    let mut total_syns = 0u64;
    g.bench_function("nat_new_conn", |b| {
        b.iter_custom(|iters| {
            let mut t = Duration::ZERO;
            let mut done = 0u64;
            let mut buf = VecBuf::new(syns.get(0));
            while done < iters {
                let k = (iters - done).min(u64::from(SLACK)) as usize;
                let start = Instant::now();
                for j in 0..k {
                    buf.reset(syns.get(j));
                    black_box(nat.process(0, &mut buf, false));
                }
                t += start.elapsed();
                assert_eq!(nat.conns.len(), n as usize + k, "every SYN made a connection");
                for j in 0..k {
                    let (cip, cport) = client(j as u32, true);
                    let id = nat
                        .conns
                        .lookup_in(FlowKey::new(Proto::Tcp, cip, cport, VIP, NAT_PORT), NOW)
                        .expect("new connection present");
                    nat.conns.remove(id);
                }
                done += k as u64;
            }
            total_syns += iters;
            t
        })
    });
    assert_eq!(nat.counters.conns_created - created0, total_syns);
    assert_eq!(nat.drops.total(), 0, "no drops in the NAT benches");
    drop(nat);
    drop((ins, outs, syns));

    for (vport, what, want) in [
        (
            DR_PORT,
            "dr_in_established",
            &dr_counter as &dyn Fn(&Forwarder) -> u64,
        ),
        (TUN_PORT, "tun_in_established", &tun_counter),
    ] {
        let mut f = forwarder(&s, n);
        open_flows(&mut f, n, vport);
        let (ins, _) = flow_frames(n, vport, None);
        check_all(&mut f, 0, &ins, Verdict::Forward { port: 1 });
        let before = want(&f);
        let mut cur = 0;
        let mut sent = 0u64;
        g.bench_function(what, |b| {
            b.iter_custom(|iters| {
                sent += iters;
                run(&mut f, 0, &ins, &mut cur, iters)
            })
        });
        assert_eq!(want(&f) - before, sent, "{what}: every packet forwarded");
        assert_eq!(f.drops.total(), 0);
    }
    g.finish();
}

fn dr_counter(f: &Forwarder) -> u64 {
    f.counters.dr_out
}
fn tun_counter(f: &Forwarder) -> u64 {
    f.counters.tun_out
}

fn benches(c: &mut Criterion) {
    bench_size(c, 1 << 10);
    bench_size(c, 1 << 20);
}

criterion_group!(core, benches);
criterion_main!(core);
