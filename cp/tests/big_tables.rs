//! Tables at the model's limits through the real ring and rvs-dp's real
//! `ControlPlane`: listings and saves of 65,536 real servers, and restores
//! of 100,000 lines, all or nothing. One message must fit the ring (2 MiB),
//! so these need the paged listing and the staged restore.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rvs_cp::adm::run;
use rvs_cp::transport::ShmTransport;

#[path = "common/real_dp.rs"]
mod real_dp;
use real_dp::RealDp;

static N: AtomicU64 = AtomicU64::new(0);

/// A region path of its own for each test.
fn real_dp() -> RealDp {
    let path = PathBuf::from("/dev/shm").join(format!(
        "rvs-big-{}-{}.ctl",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    RealDp::start(path, Duration::from_micros(200))
}

fn rvsadm(t: &mut ShmTransport, line: &str, stdin: &str) -> (i32, String, String) {
    let args: Vec<String> = line.split_whitespace().map(String::from).collect();
    let (mut o, mut e) = (Vec::new(), Vec::new());
    let code = run(&args, t, &mut stdin.as_bytes(), &mut o, &mut e);
    (code, String::from_utf8(o).unwrap(), String::from_utf8(e).unwrap())
}

/// A save file: `services` services, the first with `dests` real servers.
fn save_text(services: u32, dests: u32) -> String {
    let mut s = String::new();
    for v in 0..services {
        let vip = Ipv4Addr::from(0x0a01_0000 + v);
        writeln!(s, "-A -t {vip}:80 -s wrr").unwrap();
        if v == 0 {
            for d in 0..dests {
                let rip = Ipv4Addr::from(0x0b00_0000 + d);
                writeln!(s, "-a -t {vip}:80 -r {rip}:8080 -m -w 1").unwrap();
            }
        }
    }
    s
}

#[test]
fn list_and_save_65536_real_servers_through_the_ring() {
    let dp = real_dp();
    let mut t = ShmTransport::new(&dp.path).with_timeout(Duration::from_secs(20));
    let text = save_text(1, 65536);
    let t0 = Instant::now();
    let (code, _, err) = rvsadm(&mut t, "-R", &text);
    assert_eq!((code, err.as_str()), (0, ""));
    eprintln!("restore of 65,537 lines: {:?}", t0.elapsed());

    let t0 = Instant::now();
    let (code, saved, err) = rvsadm(&mut t, "-S -n", "");
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(saved, text, "-S lists every real server, in order");
    eprintln!("save: {:?}", t0.elapsed());

    let (code, listed, err) = rvsadm(&mut t, "-Ln", "");
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(
        listed.lines().filter(|l| l.starts_with("  -> 11.")).count(),
        65536
    );
    let (code, json, err) = rvsadm(&mut t, "-Ln --json", "");
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(json.matches("\"rip\"").count(), 65536);
    let (code, stats, _) = rvsadm(&mut t, "-Ln --stats", "");
    assert_eq!((code, stats.lines().count()), (0, 3 + 1 + 65536));
}

#[test]
fn list_65536_services_through_the_ring() {
    let dp = real_dp();
    let mut t = ShmTransport::new(&dp.path).with_timeout(Duration::from_secs(20));
    let text = save_text(65536, 0);
    let (code, _, err) = rvsadm(&mut t, "-R", &text);
    assert_eq!((code, err.as_str()), (0, ""));
    let (code, saved, err) = rvsadm(&mut t, "-S -n", "");
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(saved.lines().count(), 65536);
    let (code, listed, _) = rvsadm(&mut t, "-Ln", "");
    assert_eq!((code, listed.lines().count()), (0, 3 + 65536));
}

#[test]
fn restore_100000_lines_is_all_or_nothing() {
    let dp = real_dp();
    let mut t = ShmTransport::new(&dp.path).with_timeout(Duration::from_secs(20));
    assert_eq!(rvsadm(&mut t, "-A -t 10.9.9.9:53 -s rr", "").0, 0);
    let before = rvsadm(&mut t, "-S -n", "").1;

    // 40 services of 2,499 real servers: 100,000 lines; then the same real
    // server twice, on line 99,998.
    let mut text = String::new();
    for v in 0..40u32 {
        let vip = Ipv4Addr::from(0x0a01_0000 + v);
        writeln!(text, "-A -t {vip}:80 -s wrr").unwrap();
        for d in 0..2499u32 {
            let rip = Ipv4Addr::from(0x0b00_0000 + v * 4096 + d);
            writeln!(text, "-a -t {vip}:80 -r {rip}:8080 -m -w 1").unwrap();
        }
    }
    assert_eq!(text.lines().count(), 100_000);
    let mut bad: Vec<&str> = text.lines().collect();
    let dup = bad[99_996].to_string();
    bad[99_997] = &dup;
    let bad = bad.join("\n") + "\n";

    let t0 = Instant::now();
    let (code, _, err) = rvsadm(&mut t, "-R", &bad);
    eprintln!("refused restore of 100,000 lines: {:?}", t0.elapsed());
    assert_eq!(
        (code, err.as_str()),
        (255, "line 99998: Destination already exists\n")
    );
    assert_eq!(rvsadm(&mut t, "-S -n", "").1, before, "nothing of it applied");

    let t0 = Instant::now();
    let (code, _, err) = rvsadm(&mut t, "-R", &text);
    eprintln!("restore of 100,000 lines: {:?}", t0.elapsed());
    assert_eq!((code, err.as_str()), (0, ""));
    let saved = rvsadm(&mut t, "-S -n", "").1;
    assert_eq!(saved.lines().count(), 100_001);
    assert!(saved.contains(&before), "the restore added to the table");
}
