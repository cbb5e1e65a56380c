//! A driver for profilers (callgrind, perf): one case of the core benchmark
//! in a plain loop, no criterion around it.
//!
//! cargo bench -p rvs-dp --bench profile_core --no-run, then run the binary
//! with: <nat_in|nat_out|nat_new|dr_in|tun_in> <connections> <packets> [thp]
//!
//! `thp` backs the large anonymous mappings (the connection table) with 2 MiB
//! pages after they are built (MADV_COLLAPSE), to measure what TLB misses cost
//! at 1M connections: the DPDK build allocates from hugepages anyway.

mod lab;

use lab::*;
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
        _ => NAT_PORT,
    };
    let rs = open_flows(&mut f, n, vport);
    if args.get(3).is_some_and(|a| a == "thp") {
        let (ok, total) = collapse_large_mappings(32 << 20);
        println!("thp: collapsed {ok} of {total} large anonymous mappings");
    }
    let (ins, outs) = flow_frames(n, vport, (vport == NAT_PORT).then_some(&rs[..]));
    let mut cur = 0;
    let t = match case {
        "nat_out" => run(&mut f, 1, outs.as_ref().expect("NAT replies"), &mut cur, packets),
        "nat_new" => {
            let mut t = std::time::Duration::ZERO;
            let mut buf = VecBuf::new(&[0u8; FRAME_LEN]);
            let mut fr = [0u8; 64];
            let mut done = 0;
            while done < packets {
                let k = (packets - done).min(u64::from(SLACK)) as u32;
                let start = std::time::Instant::now();
                for j in 0..k {
                    let (cip, cport) = client(j, true);
                    tcp_frame(P0_MAC, cip, VIP, cport, NAT_PORT, SYN, &mut fr);
                    std::hint::black_box(send(&mut f, 0, &fr, &mut buf));
                }
                t += start.elapsed();
                for j in 0..k {
                    let (cip, cport) = client(j, true);
                    if let Some(id) =
                        f.conns
                            .lookup_in(rvs_dp::service::Proto::Tcp, cip, cport, VIP, NAT_PORT, NOW)
                    {
                        f.conns.remove(id);
                    }
                }
                done += u64::from(k);
            }
            t
        }
        // What a burst API with a lookup-ahead stage could gain: the
        // lookups of 32 packets, independent of each other, overlap their
        // cache misses; then `process` finds the entries in cache.
        "nat_in_burst" | "dr_in_burst" => {
            let mut buf = VecBuf::new(&[0u8; FRAME_LEN]);
            let start = std::time::Instant::now();
            let mut i = 0usize;
            let mut done = 0u64;
            while done < packets {
                let k = 32.min(ins.n - i);
                for j in i..i + k {
                    let fr = ins.get(j);
                    let cip = std::net::Ipv4Addr::new(fr[26], fr[27], fr[28], fr[29]);
                    let cport = u16::from_be_bytes([fr[34], fr[35]]);
                    std::hint::black_box(f.conns.lookup_in(
                        rvs_dp::service::Proto::Tcp,
                        cip,
                        cport,
                        VIP,
                        vport,
                        NOW,
                    ));
                }
                for j in i..i + k {
                    std::hint::black_box(send(&mut f, 0, ins.get(j), &mut buf));
                }
                i += k;
                if i == ins.n {
                    i = 0;
                }
                done += k as u64;
            }
            start.elapsed()
        }
        _ => run(&mut f, 0, &ins, &mut cur, packets),
    };
    println!(
        "{case} n={n}: {packets} packets, {:.1} ns/packet, drops {}",
        t.as_nanos() as f64 / packets as f64,
        f.drops.total()
    );
}

/// Asks the kernel to back every anonymous read-write mapping of at least
/// `min` bytes with transparent huge pages, now. Returns (succeeded, tried).
fn collapse_large_mappings(min: usize) -> (usize, usize) {
    const MADV_COLLAPSE: libc::c_int = 25;
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let (mut ok, mut tried) = (0, 0);
    for line in maps.lines() {
        let mut it = line.split_whitespace();
        let (Some(range), Some(perms)) = (it.next(), it.next()) else {
            continue;
        };
        // Anonymous mappings have no path (sixth field).
        if !perms.starts_with("rw") || it.nth(3).is_some() {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) else {
            continue;
        };
        if b - a < min {
            continue;
        }
        tried += 1;
        // SAFETY: advice only, on whole mappings of this process; no memory is freed.
        let r = unsafe {
            let p = a as *mut libc::c_void;
            libc::madvise(p, b - a, libc::MADV_HUGEPAGE);
            libc::madvise(p, b - a, MADV_COLLAPSE)
        };
        if r == 0 {
            ok += 1;
        }
    }
    (ok, tried)
}
