//! The cost of a new connection with and without the SYN proxy, through
//! `Forwarder::process`, one worker, a small table:
//! - `plain_new_conn`: the client's SYN, scheduled, inserted and rewritten;
//! - `proxied_syn`: a SYN answered with a cookie (what a flood costs);
//! - `proxied_new_conn`: the whole proxied opening, three frames: the SYN
//!   (cookie SYN-ACK), the client's ACK (cookie checked, connection made,
//!   SYN to the real server) and the real server's SYN-ACK (answered with
//!   the ACK, translation set up).
//!
//! The ratio of the last to the first is the proxy's price per connection.
//! Each timed batch's connections are removed untimed afterwards.
//!
//! Run: cargo bench -p rvs-dp --bench synproxy -- --warm-up-time 1 --measurement-time 3

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rvs_dp::conn::FlowKey;
use rvs_dp::core::{CoreOptions, Forwarder, Verdict};
use rvs_dp::packet::{PacketBuf, VecBuf};
use rvs_dp::service::{ForwardMethod, Proto};
use rvs_dp::wire::checksum;
use rvs_dp::wire::ethernet::MacAddr;
use rvs_proto::command::Command;

#[path = "../dp/tests/common/lab.rs"]
mod common_lab;
use common_lab::{port, LabDirector};

const P0_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0xd0, 0]);
const P1_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0xd0, 1]);
const GW_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0x99, 0x99]);
const CLIENT_GW: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 254);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 100);
const RIP: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 11);
const PLAIN: u16 = 80;
const PROXIED: u16 = 83;
const BATCH: u32 = 1024;
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

fn client(i: u32) -> (Ipv4Addr, u16) {
    (
        Ipv4Addr::from(0xAC18_0000u32 + (i >> 4) + 1),
        10_000 + (i & 15) as u16,
    )
}

/// Ethernet + IPv4 + TCP (no options), seq/ack as given, valid checksums.
fn frame(
    dst_mac: MacAddr,
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    seq: u32,
    ack: u32,
    flags: u8,
) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[..6].copy_from_slice(&dst_mac.0);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0x77, 0x77]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    ip.copy_from_slice(&[0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    ip[12..16].copy_from_slice(&src.0.octets());
    ip[16..20].copy_from_slice(&dst.0.octets());
    let c = checksum::finish(checksum::sum(ip));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let tcp = &mut f[34..54];
    tcp[0..2].copy_from_slice(&src.1.to_be_bytes());
    tcp[2..4].copy_from_slice(&dst.1.to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&ack.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
    let pseudo = checksum::pseudo_header_sum(src.0, dst.0, 6, 20);
    let c = checksum::finish(pseudo + checksum::sum(tcp));
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    f
}

fn forwarder() -> Forwarder {
    let mut dir = LabDirector::new(
        vec![
            port(P0_MAC, Ipv4Addr::new(10, 1, 0, 1), 1500),
            port(P1_MAC, Ipv4Addr::new(10, 2, 0, 1), 1500),
        ],
        &[(Ipv4Addr::new(172, 16, 0, 0), 12, CLIENT_GW)],
        &[(CLIENT_GW, GW_MAC), (RIP, MacAddr([2, 0, 0, 0, 2, 1]))],
        1,
        CoreOptions::default(),
    );
    for (vport, proxy) in [(PLAIN, false), (PROXIED, true)] {
        let mut spec = common_lab::service(Proto::Tcp, VIP, vport, "rr", None);
        spec.syn_proxy = proxy;
        dir.apply(Command::AddService(spec.clone()));
        dir.real_server(spec.key(), RIP, 8080, 1, ForwardMethod::Nat);
    }
    dir.forwarder(0, 4 * BATCH, 100)
}

fn clear(f: &mut Forwarder, vport: u16, k: u32) {
    for j in 0..k {
        let (cip, cport) = client(j);
        if let Some(id) = f
            .conns
            .lookup_in(FlowKey::new(Proto::Tcp, cip, cport, VIP, vport), 100)
        {
            f.conns.remove(id);
        }
    }
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("synproxy");
    g.throughput(Throughput::Elements(1));
    let syns = |vport: u16| -> Vec<Vec<u8>> {
        (0..BATCH)
            .map(|j| frame(P0_MAC, client(j), (VIP, vport), 1000, 0, SYN))
            .collect()
    };

    let plain = syns(PLAIN);
    let mut f = forwarder();
    g.bench_function("plain_new_conn", |b| {
        b.iter_custom(|iters| {
            let mut t = Duration::ZERO;
            let mut done = 0u64;
            let mut buf = VecBuf::new(&plain[0]);
            while done < iters {
                let k = (iters - done).min(u64::from(BATCH)) as usize;
                let start = Instant::now();
                for fr in &plain[..k] {
                    buf.reset(fr);
                    black_box(f.process(0, &mut buf, false));
                }
                t += start.elapsed();
                assert_eq!(f.conns.len(), k);
                clear(&mut f, PLAIN, k as u32);
                done += k as u64;
            }
            t
        })
    });

    let proxied = syns(PROXIED);
    let mut f = forwarder();
    g.bench_function("proxied_syn", |b| {
        b.iter_custom(|iters| {
            let mut buf = VecBuf::new(&proxied[0]);
            let start = Instant::now();
            for i in 0..iters {
                buf.reset(&proxied[(i % u64::from(BATCH)) as usize]);
                black_box(f.process(0, &mut buf, false));
            }
            let t = start.elapsed();
            assert_eq!(f.conns.len(), 0, "a SYN leaves no entry");
            t
        })
    });

    // The client's ACKs and the RS's SYN-ACKs, patched per connection with
    // the cookie the director chose (an incremental checksum fix, untimed
    // work kept small: two words per frame).
    let acks: Vec<Vec<u8>> = (0..BATCH)
        .map(|j| frame(P0_MAC, client(j), (VIP, PROXIED), 1001, 0, ACK))
        .collect();
    let rs_synacks: Vec<Vec<u8>> = (0..BATCH)
        .map(|j| frame(P1_MAC, (RIP, 8080), client(j), 777_000, 1001, SYN | ACK))
        .collect();
    let mut f = forwarder();
    let mut opened = 0u64;
    g.bench_function("proxied_new_conn", |b| {
        b.iter_custom(|iters| {
            let mut t = Duration::ZERO;
            let mut done = 0u64;
            let mut buf = VecBuf::new(&proxied[0]);
            let mut ack = acks[0].clone();
            while done < iters {
                let k = (iters - done).min(u64::from(BATCH)) as usize;
                let start = Instant::now();
                for j in 0..k {
                    buf.reset(&proxied[j]);
                    let v = f.process(0, &mut buf, false);
                    debug_assert_eq!(v, Verdict::Forward { port: 0 });
                    let d = buf.data();
                    let cookie = u32::from_be_bytes([d[38], d[39], d[40], d[41]]);
                    ack.copy_from_slice(&acks[j]);
                    let new = cookie.wrapping_add(1).to_be_bytes();
                    ack[42..46].copy_from_slice(&new);
                    let c = u16::from_be_bytes([ack[50], ack[51]]);
                    let c = checksum::update32(c, 0, cookie.wrapping_add(1));
                    ack[50..52].copy_from_slice(&c.to_be_bytes());
                    buf.reset(&ack);
                    black_box(f.process(0, &mut buf, false));
                    buf.reset(&rs_synacks[j]);
                    black_box(f.process(1, &mut buf, false));
                }
                t += start.elapsed();
                assert_eq!(f.conns.len(), k, "every handshake made a connection");
                clear(&mut f, PROXIED, k as u32);
                done += k as u64;
            }
            opened += iters;
            t
        })
    });
    assert_eq!(
        f.counters.synproxy_established, opened,
        "every proxied handshake completed"
    );
    assert_eq!(f.drops.total(), 0);
    g.finish();
}

criterion_group!(synproxy, benches);
criterion_main!(synproxy);
