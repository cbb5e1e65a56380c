//! A driver for profilers (callgrind, perf): one case of the core benchmark
//! in a plain loop, no criterion around it.
//!
//! cargo bench -p rvs-dp --bench profile_core --no-run, then run the binary
//! with: <nat_in|nat_out|nat_new|dr_in|tun_in|nat_in_burst|dr_in_burst|nat_in_hwcsum|nat_new_hwcsum
//! |fnat_in|fnat_out|fnat_new|nat_in_udp>
//! <connections> <packets>
//!
//! The `_burst` cases go through `Forwarder::process_burst` in bursts of 32,
//! as the DPDK worker does; the others call `process` one packet at a time.
//! `nat_in_hwcsum` is `nat_in` with the IPv4 header checksum reported good
//! by the "NIC" (`RTE_MBUF_F_RX_IP_CKSUM_GOOD`), so not summed again;
//! `nat_new_hwcsum` is `nat_new` with the IPv4 and TCP checksums so.
//! `nat_in_udp` is `nat_in` on UDP datagrams (60-byte frames, a UDP NAT
//! service), the traffic of `scripts/bench.sh`.

mod lab;

use lab::*;
use rvs_dp::conn::FlowKey;
use rvs_dp::packet::VecBuf;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let case = args.first().map_or("nat_in", String::as_str);
    let n: u32 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1024);
    let packets: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let s = shared();
    let mut f = forwarder(&s, n);
    let vport = match case {
        "dr_in" | "dr_in_burst" => DR_PORT,
        "tun_in" => TUN_PORT,
        "fnat_in" | "fnat_out" | "fnat_new" => FNAT_PORT,
        _ => NAT_PORT,
    };
    if case == "nat_in_udp" {
        // UDP, as `scripts/bench.sh` forwards: one datagram opens a flow.
        let ins = open_udp_flows(&mut f, n);
        let mut cur = 0;
        let t = run(&mut f, 0, &ins, &mut cur, packets);
        println!(
            "{case} n={n}: {packets} packets, {:.1} ns/packet, drops {}",
            t.as_nanos() as f64 / packets as f64,
            f.drops.total()
        );
        return;
    }
    let rs = open_flows(&mut f, n, vport);
    let (ins, outs) = flow_frames(n, vport, (vport == NAT_PORT).then_some(&rs[..]));
    let mut cur = 0;
    let t = match case {
        "nat_out" => run(&mut f, 1, outs.as_ref().expect("NAT replies"), &mut cur, packets),
        "fnat_out" => {
            let outs = fnat_replies(&f, n, &rs);
            run(&mut f, 1, &outs, &mut cur, packets)
        }
        "nat_new" | "nat_new_hwcsum" | "fnat_new" => {
            let mut t = std::time::Duration::ZERO;
            let mut buf = VecBuf::new(&[0u8; FRAME_LEN]);
            if case == "nat_new_hwcsum" {
                buf.set_rx_ip_csum(Some(true));
                buf.set_rx_l4_csum(Some(true));
            }
            let mut fr = [0u8; 64];
            let mut done = 0;
            while done < packets {
                let k = (packets - done).min(u64::from(SLACK)) as u32;
                let start = std::time::Instant::now();
                for j in 0..k {
                    let (cip, cport) = client(j, true);
                    tcp_frame(P0_MAC, cip, VIP, cport, vport, SYN, &mut fr);
                    std::hint::black_box(send(&mut f, 0, &fr, &mut buf));
                }
                t += start.elapsed();
                for j in 0..k {
                    let (cip, cport) = client(j, true);
                    if let Some(id) = f.conns.lookup_in(
                        FlowKey::new(rvs_dp::service::Proto::Tcp, cip, cport, VIP, vport),
                        NOW,
                    ) {
                        f.conns.remove(id);
                    }
                }
                // FULLNAT's freed ports back to the pool, untimed too.
                f.housekeeping(0);
                done += u64::from(k);
            }
            t
        }
        "nat_in_burst" | "dr_in_burst" => run_burst(&mut f, 0, &ins, &mut cur, packets),
        "nat_in_hwcsum" => run_with_csum(&mut f, 0, &ins, &mut cur, packets, Some(true)),
        _ => run(&mut f, 0, &ins, &mut cur, packets),
    };
    println!(
        "{case} n={n}: {packets} packets, {:.1} ns/packet, drops {}",
        t.as_nanos() as f64 / packets as f64,
        f.drops.total()
    );
}
