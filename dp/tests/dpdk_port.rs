//! Runs the DPDK layer for real on virtual devices. EAL initialises once per
//! process, so this binary holds a single test that walks through every check
//! in order. Run: `cargo test -p rvs-dp --features dpdk --test dpdk_port`.
#![cfg(feature = "dpdk")]

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rvs_dp::dpdk::{
    lcore_id, rdtsc, spsc_ring, tsc_hz, DpdkError, Eal, EthdevConf, Mbuf, MbufBurst, Mempool, Port,
};

const POOL_SIZE: u32 = 4095;

/// Ethernet + IPv4 + UDP frame of `len` bytes whose payload carries `tag`.
fn frame(len: usize, tag: u8) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0xbb]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0xaa]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    f[16..18].copy_from_slice(&((len - 14) as u16).to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f[26..30].copy_from_slice(&[10, 0, 0, tag]);
    f[30..34].copy_from_slice(&[10, 0, 1, 1]);
    for (i, b) in f[42..].iter_mut().enumerate() {
        *b = tag.wrapping_add(i as u8);
    }
    f
}

fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]); // thiszone, sigfigs
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
    for (i, f) in frames.iter().enumerate() {
        out.extend_from_slice(&(i as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    std::fs::write(path, out).unwrap();
}

fn read_pcap(path: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap();
    assert!(data.len() >= 24, "pcap too short: {}", data.len());
    let micro = u32::from_le_bytes(data[0..4].try_into().unwrap());
    assert!(
        micro == 0xa1b2_c3d4 || micro == 0xa1b2_3c4d,
        "little-endian pcap expected"
    );
    let mut frames = Vec::new();
    let mut at = 24;
    while at + 16 <= data.len() {
        let incl = u32::from_le_bytes(data[at + 8..at + 12].try_into().unwrap()) as usize;
        at += 16;
        frames.push(data[at..at + incl].to_vec());
        at += incl;
    }
    assert_eq!(at, data.len(), "trailing bytes in pcap");
    frames
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rvs-dpdk-port-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn rx_until<const N: usize>(q: &mut rvs_dp::dpdk::RxQueue, burst: &mut MbufBurst<N>, want: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    while burst.len() < want && Instant::now() < deadline {
        q.rx_burst(burst);
    }
    burst.len()
}

#[test]
fn dpdk_layer_on_virtual_devices() {
    let dir = scratch_dir();
    let rx_pcap = dir.join("rx.pcap");
    let tx_pcap = dir.join("tx.pcap");
    let frames: Vec<Vec<u8>> = [60usize, 98, 200, 1000, 1514]
        .iter()
        .enumerate()
        .map(|(i, &l)| frame(l, i as u8 + 1))
        .collect();
    write_pcap(&rx_pcap, &frames);

    let args: Vec<String> = [
        "dpdk_port".to_string(),
        "--no-huge".into(),
        "-m".into(),
        "1024".into(),
        "--no-pci".into(),
        "--no-shconf".into(),
        "-l".into(),
        "0-1".into(),
        "--log-level=lib.eal:warning".into(),
        format!("--vdev=net_pcap0,rx_pcap={}", rx_pcap.display()),
        "--".into(),
        "--app-flag".into(),
    ]
    .into();
    let eal = Eal::init(&args).expect("EAL init");
    assert_eq!(
        &args[1 + eal.args_consumed()..],
        ["--app-flag".to_string()],
        "EAL stops at --"
    );
    assert_eq!(Eal::init(&args).unwrap_err(), DpdkError::AlreadyInitialized);
    assert_eq!(eal.lcore_count(), 2);
    assert_eq!(eal.main_lcore(), 0);
    assert_eq!(eal.worker_lcores(), vec![1]);
    assert_eq!(lcore_id(), 0);
    assert!(tsc_hz() > 0);
    let t0 = rdtsc();
    assert!(rdtsc() >= t0);

    let pool = Mempool::create("rvs_test_pool", POOL_SIZE, 32, 2176).expect("mempool");
    let dup = Mempool::create("rvs_test_pool", 64, 0, 2176).unwrap_err();
    assert_eq!(dup.errno(), Some(libc::EEXIST));
    assert!(dup.to_string().contains("rte_pktmbuf_pool_create"), "{dup}");
    let baseline = pool.available();
    assert_eq!(baseline, POOL_SIZE);

    check_rx_and_mbuf_ops(&pool, &frames, &tx_pcap);
    check_probe_errors_and_rss(&pool);
    check_ring_between_lcores(&eal, &pool);
    check_worker_panic_is_reported(&eal);

    assert_eq!(pool.available(), baseline, "every mbuf went back to the pool");
    drop(eal);
    let _ = std::fs::remove_dir_all(&dir);
}

fn check_rx_and_mbuf_ops(pool: &Mempool, frames: &[Vec<u8>], tx_pcap: &Path) {
    // Port from EAL's --vdev, found by name.
    let rx_port = Port::probe("net_pcap0").expect("pcap rx port");
    assert_eq!(rx_port.driver_name().unwrap(), "net_pcap");
    let mut rxc = rx_port
        .configure(
            &EthdevConf {
                rx_desc: 256,
                tx_desc: 256,
                ..Default::default()
            },
            *pool,
        )
        .unwrap();
    assert_eq!(rxc.rss_hf, 0, "one RX queue: no RSS");
    rx_port.start().unwrap();
    assert_ne!(rx_port.mac_addr().unwrap(), [0u8; 6]);

    // Port hot-plugged at run time.
    let tx_port = Port::probe(&format!("net_pcap1,tx_pcap={}", tx_pcap.display())).expect("pcap tx port");
    assert_ne!(tx_port, rx_port);
    assert_eq!(
        Port::probe("net_pcap1").unwrap(),
        tx_port,
        "probing twice finds the same port"
    );
    assert!(Port::count() >= 2);
    let mut txc = tx_port.configure(&EthdevConf::default(), *pool).unwrap();
    tx_port.start().unwrap();

    let mut burst: MbufBurst = MbufBurst::new();
    // `[dataplane] rx_burst`: a poll takes no more than asked for.
    let first = rxc.rx[0].rx_burst_upto(&mut burst, 2);
    assert_eq!(
        (first, burst.len()),
        (2, 2),
        "rx_burst_upto(2) takes two of five frames"
    );
    assert_eq!(rx_until(&mut rxc.rx[0], &mut burst, frames.len()), frames.len());
    // The file is exhausted: nothing more arrives.
    assert_eq!(rxc.rx[0].rx_burst(&mut burst), 0);
    for (m, f) in burst.as_slice().iter().zip(frames) {
        assert_eq!(m.data(), &f[..]);
        assert_eq!(m.len(), f.len());
        assert_eq!(m.pkt_len(), f.len());
        assert_eq!(m.nb_segs(), 1);
        assert_eq!(m.headroom(), 128);
        assert_eq!(m.port(), rx_port.id());
        assert_eq!(m.refcnt(), 1);
    }

    // Header room games on the first frame.
    let m = &mut burst.as_mut_slice()[0];
    let orig = m.data().to_vec();
    let tail = m.tailroom();
    assert!(m.prepend(129).is_none(), "only 128 bytes of headroom");
    let data = m.prepend(20).expect("prepend 20");
    assert_eq!(data.len(), orig.len() + 20);
    assert_eq!(&data[20..], &orig[..]);
    data[..20].fill(0xee);
    assert_eq!(m.headroom(), 108);
    assert_eq!(m.pkt_len(), orig.len() + 20);
    assert!(m.adj(orig.len() + 21).is_none());
    assert_eq!(m.adj(20).expect("adj 20"), &orig[..]);
    assert_eq!(m.headroom(), 128);
    assert!(m.append(tail + 1).is_none());
    m.append(4).expect("append 4").copy_from_slice(&[1, 2, 3, 4]);
    assert_eq!(&m.data()[orig.len()..], &[1, 2, 3, 4]);
    assert_eq!(m.tailroom(), tail - 4);
    assert!(!m.trim(orig.len() + 5));
    assert!(m.trim(4));
    assert_eq!(m.data(), &orig[..]);

    // Swap MACs on every frame, then send them all to the tx pcap.
    let mut expect = Vec::new();
    for m in burst.iter_mut() {
        let d = m.data_mut();
        let (dst, src) = d.split_at_mut(6);
        dst.swap_with_slice(&mut src[..6]);
        expect.push(d.to_vec());
    }
    let mut sent = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !burst.is_empty() && Instant::now() < deadline {
        sent += txc.tx[0].tx_burst(&mut burst);
    }
    assert_eq!(sent, frames.len());
    assert!(burst.is_empty());

    let bytes: u64 = frames.iter().map(|f| f.len() as u64).sum();
    let rs = rx_port.stats().unwrap();
    assert_eq!((rs.ipackets, rs.ibytes), (frames.len() as u64, bytes));
    let ts = tx_port.stats().unwrap();
    assert_eq!(
        (ts.opackets, ts.obytes, ts.oerrors),
        (frames.len() as u64, bytes, 0)
    );
    rx_port.reset_stats().unwrap();
    assert_eq!(rx_port.stats().unwrap().ipackets, 0);

    // Stopping the pcap port closes (flushes) its dump file.
    tx_port.stop().unwrap();
    rx_port.stop().unwrap();
    assert_eq!(read_pcap(tx_pcap), expect);
    assert!(expect[0][..6] == frames[0][6..12] && expect[0][6..12] == frames[0][..6]);
}

fn check_probe_errors_and_rss(pool: &Mempool) {
    let err = Port::probe("net_nosuchdriver0").unwrap_err();
    assert!(
        matches!(
            err,
            DpdkError::Rte {
                op: "rte_dev_probe",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(matches!(
        Port::probe("net_pcap9\0"),
        Err(DpdkError::InvalidArgument(_))
    ));
    assert!(Port::from_id(u16::MAX).is_err());

    // net_null advertises RSS: with two RX queues it gets IP/TCP/UDP hashing.
    let null = Port::probe("net_null0").expect("null port");
    let cfg = EthdevConf {
        rx_queues: 2,
        tx_queues: 2,
        rx_desc: 128,
        tx_desc: 128,
        mtu: Some(1600),
        rss: true,
    };
    let c = null.configure(&cfg, *pool).unwrap();
    assert_eq!((c.rx.len(), c.tx.len()), (2, 2));
    use rvs_dp::dpdk::sys;
    assert_eq!(
        c.rss_hf,
        sys::RTE_ETH_RSS_IP | sys::RTE_ETH_RSS_TCP | sys::RTE_ETH_RSS_UDP
    );
    let c1 = null.configure(&EthdevConf { rss: false, ..cfg }, *pool).unwrap();
    assert_eq!(c1.rss_hf, 0);
    let too_many = EthdevConf {
        rx_queues: 10_000,
        ..cfg
    };
    assert!(matches!(
        null.configure(&too_many, *pool),
        Err(DpdkError::InvalidArgument(_))
    ));
    null.set_promiscuous(true).unwrap();

    // A PMD without rte_flow (net_null, as af_packet, pcap...): validate and
    // create refuse with ENOSYS, worded, and nothing is left installed.
    use rvs_dp::dpdk::flow::{self, Flow};
    use rvs_dp::fnat::steer::{class_rules, Target};
    use rvs_dp::service::Proto;
    let t = Target {
        lip: std::net::Ipv4Addr::new(10, 2, 0, 200),
        proto: Proto::Tcp,
    };
    let rule = class_rules(t, 2)[1];
    let e = flow::validate(&null, &rule).unwrap_err();
    assert_eq!((e.op, e.errno), ("rte_flow_validate", libc::ENOSYS), "{e}");
    assert!(e.to_string().contains("Function not implemented"), "{e}");
    let e = Flow::create(&null, &rule).unwrap_err();
    assert_eq!((e.op, e.errno), ("rte_flow_create", libc::ENOSYS), "{e}");
}

fn check_ring_between_lcores(eal: &Eal, pool: &Mempool) {
    const COUNT: u32 = 1000;
    let (mut prod, mut cons) = spsc_ring("rvs_test_ring", 64).expect("ring");
    let (tx, rx) = mpsc::channel();
    eal.launch_on(1, move || {
        let mut seen = Vec::new();
        let mut burst: MbufBurst = MbufBurst::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen.len() < COUNT as usize && Instant::now() < deadline {
            cons.dequeue_burst(&mut burst);
            for m in burst.drain() {
                seen.push(u32::from_be_bytes(m.data()[..4].try_into().unwrap()));
            }
        }
        tx.send((lcore_id(), seen)).unwrap();
    })
    .expect("launch on lcore 1");

    let mut burst: MbufBurst = MbufBurst::new();
    let mut next = 0u32;
    let deadline = Instant::now() + Duration::from_secs(10);
    while next < COUNT && Instant::now() < deadline {
        while !burst.is_full() && next < COUNT {
            let mut m = pool.alloc().expect("mbuf");
            m.append(4).unwrap().copy_from_slice(&next.to_be_bytes());
            burst.push(m).unwrap();
            next += 1;
        }
        while !burst.is_empty() && Instant::now() < deadline {
            prod.enqueue_burst(&mut burst);
        }
    }
    assert_eq!(eal.wait(1), 0);
    let (worker, seen) = rx.recv().unwrap();
    assert_eq!(worker, 1);
    assert_eq!(seen, (0..COUNT).collect::<Vec<_>>(), "every mbuf, in order");

    // Single enqueue, and mbufs left in the ring are freed with it.
    let (mut p2, c2) = spsc_ring("rvs_test_ring2", 2).unwrap();
    assert!(p2.enqueue(pool.alloc().unwrap()).is_ok());
    assert!(p2.enqueue(pool.alloc().unwrap()).is_ok());
    let back: Mbuf = p2.enqueue(pool.alloc().unwrap()).expect_err("ring of 2 is full");
    drop(back);
    assert_eq!(c2.len(), 2);
    drop((p2, c2));
}

fn check_worker_panic_is_reported(eal: &Eal) {
    eal.launch_on(1, || panic!("deliberate worker panic")).unwrap();
    assert_eq!(eal.wait(1), -1);
}
