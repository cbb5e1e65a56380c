//! Benchmark: rvs-cp applying 10,000 real servers end to end, through the
//! real ring, into rvs-dp's real `ControlPlane` (with one worker switching
//! snapshots as a real one does between bursts). Prints the figures; run it
//! with `scripts/bench_apply.sh` (release build). Target: under 2 s.
//!
//! Also prints what one command at a time costs at that table size (how
//! rvs-cp applied before batching: a new service table per real server).

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rvs_cp::daemon::{Daemon, Options, APPLY_BATCH};
use rvs_cp::transport::ShmTransport;
use rvs_proto::command::{Command, DestSpec, Reply};
use rvs_proto::types::{ForwardMethod, Proto, ServiceKey};

#[path = "../tests/common/real_dp.rs"]
mod real_dp;
use real_dp::RealDp;

fn main() {
    let reals: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let dir = std::env::temp_dir().join(format!("rvs-apply-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ctl = PathBuf::from("/dev/shm").join(format!("rvs-apply-bench-{}.ctl", std::process::id()));

    let dp = RealDp::start(ctl.clone(), Duration::from_micros(50));

    let mut cfg = String::from("[control]\nmetrics_listen = \"off\"\nresync_interval = 0\n");
    cfg += "[[virtual_server]]\naddress = \"10.1.0.1\"\nport = 80\nlb_algo = \"wrr\"\n";
    for i in 0..reals {
        let rip = Ipv4Addr::from(0x0b00_0000 + i);
        writeln!(
            cfg,
            "[[virtual_server.real_server]]\naddress = \"{rip}\"\nport = 8080"
        )
        .unwrap();
    }
    let path = dir.join("rvs.toml");
    std::fs::write(&path, cfg).unwrap();

    let key = ServiceKey {
        proto: Proto::Tcp,
        vip: Ipv4Addr::new(10, 1, 0, 1),
        port: 80,
    };
    let mut d = Daemon::start(&Options {
        config: rvs_cp::source::ConfigSource::Rvs(path),
        ctl: Some(ctl.clone()),
        metrics_listen: None,
        ready_file: None,
        resync_listen: None,
        resync_from: None,
        resync_allow: Vec::new(),
    })
    .unwrap();
    let mut probe = ShmTransport::new(&ctl);
    let t0 = Instant::now();
    let applied = d.reconcile().unwrap();
    let took = t0.elapsed();
    let listed = match probe.send(&Command::ListPage {
        generation: None,
        from: Default::default(),
    }) {
        Ok(Reply::ServicesPage { services, .. }) => services.len(),
        other => panic!("{other:?}"),
    };
    assert_eq!(listed, 1);
    println!(
        "rvs-cp apply of {reals} real servers (1 service): {applied} commands in {:.3} s, \
         {} batches of up to {APPLY_BATCH} (target < 2 s)",
        took.as_secs_f64(),
        applied.div_ceil(APPLY_BATCH)
    );

    // One command per request at this table size, as before batching.
    let n = 200;
    let t0 = Instant::now();
    for i in 0..n {
        let d = DestSpec::new(Ipv4Addr::from(0x0c00_0000 + i), 8080, ForwardMethod::Nat);
        assert_eq!(probe.send(&Command::AddDest(key, d)).unwrap(), Reply::Ok);
    }
    let per = t0.elapsed().as_secs_f64() / n as f64;
    println!(
        "one command per request at {reals} real servers: {:.2} ms each ({n} sent), \
         i.e. about {:.0} s for {reals}",
        per * 1e3,
        per * reals as f64
    );

    drop(dp);
    let _ = std::fs::remove_dir_all(&dir);
}
