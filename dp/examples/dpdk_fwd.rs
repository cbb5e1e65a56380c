//! Forwarding sanity check: rx burst -> swap MACs -> tx burst, on one lcore,
//! printing Mpps. Compare with `dpdk-testpmd --forward-mode=macswap` on the
//! same vdevs.
//!
//! cargo run -p rvs-dp --features dpdk --example dpdk_fwd [-- EAL args -- SECONDS]
//!
//! With no EAL args it replays a generated 64-byte-frame pcap
//! (`net_pcap0,infinite_rx=1`) into `net_null0`, with --no-huge.

#[cfg(not(feature = "dpdk"))]
fn main() {
    eprintln!("dpdk_fwd needs --features dpdk");
}

#[cfg(feature = "dpdk")]
fn main() {
    if let Err(e) = fwd::run() {
        eprintln!("dpdk_fwd: {e}");
        std::process::exit(1);
    }
}

#[cfg(feature = "dpdk")]
mod fwd {
    use rvs_dp::dpdk::{rdtsc, tsc_hz, Eal, EthdevConf, MbufBurst, Mempool, Port};

    fn write_pcap(path: &str) -> std::io::Result<()> {
        let mut out = Vec::new();
        for w in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65535, 1] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        for i in 0..64u8 {
            let mut f = [0u8; 60];
            f[..12].copy_from_slice(&[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]);
            f[12..14].copy_from_slice(&[0x08, 0x00]);
            f[14] = 0x45;
            f[29] = i;
            for w in [0u32, 0, 60, 60] {
                out.extend_from_slice(&w.to_le_bytes());
            }
            out.extend_from_slice(&f);
        }
        std::fs::write(path, out)
    }

    pub fn run() -> Result<(), Box<dyn std::error::Error>> {
        let mut args: Vec<String> = std::env::args().collect();
        if args.len() == 1 {
            let pcap = std::env::temp_dir()
                .join("rvs_dpdk_fwd.pcap")
                .display()
                .to_string();
            write_pcap(&pcap)?;
            let eal = ["--no-huge", "-m", "1024", "--no-pci", "--no-shconf", "-l", "0"];
            args.extend(eal.iter().map(|s| s.to_string()));
            args.push(format!("--vdev=net_pcap0,rx_pcap={pcap},infinite_rx=1"));
            args.push("--vdev=net_null0".into());
        }
        let eal = Eal::init(&args)?;
        let secs: f64 = args
            .get(1 + eal.args_consumed())
            .map(|s| s.parse())
            .transpose()?
            .unwrap_or(5.0);

        if Port::count() < 2 {
            return Err("need two ports (rx first, tx second)".into());
        }
        let (rx_port, tx_port) = (Port::from_id(0)?, Port::from_id(1)?);
        let pool = Mempool::create("fwd_pool", 16383, 256, 2176)?;
        let mut rx = rx_port.configure(&EthdevConf::default(), pool)?.rx.remove(0);
        let mut tx = tx_port.configure(&EthdevConf::default(), pool)?.tx.remove(0);
        rx_port.start()?;
        tx_port.start()?;

        let hz = tsc_hz();
        let end = rdtsc() + (secs * hz as f64) as u64;
        let (mut fwd, mut dropped) = (0u64, 0u64);
        let mut burst: MbufBurst = MbufBurst::new();
        let start = rdtsc();
        while rdtsc() < end {
            if rx.rx_burst(&mut burst) == 0 {
                continue;
            }
            for m in burst.iter_mut() {
                let d = m.data_mut();
                if d.len() >= 12 {
                    let (dst, src) = d.split_at_mut(6);
                    dst.swap_with_slice(&mut src[..6]);
                }
            }
            fwd += tx.tx_burst(&mut burst) as u64;
            dropped += burst.len() as u64;
            burst.free_all();
        }
        let elapsed = (rdtsc() - start) as f64 / hz as f64;
        println!(
            "forwarded {fwd} packets in {elapsed:.2} s: {:.2} Mpps (tx drops {dropped})",
            fwd as f64 / elapsed / 1e6
        );
        println!("rx {:?}\ntx {:?}", rx_port.stats()?, tx_port.stats()?);
        rx_port.stop()?;
        tx_port.stop()?;
        Ok(())
    }
}
