//! rvsadm over the shared-memory transport against a fake rvs-dp that runs
//! the real ring code: commands, listings, errors, exit codes, restarts,
//! and concurrent writers.

mod common;

use std::net::Ipv4Addr;
use std::process::Command as Proc;

use common::FakeDp;
use rvs_cp::adm::run;
use rvs_cp::transport::ShmTransport;
use rvs_proto::types::{Proto, ServiceKey};

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn rvsadm(t: &mut ShmTransport, line: &str) -> Out {
    let args: Vec<String> = line.split_whitespace().map(String::from).collect();
    let (mut o, mut e) = (Vec::new(), Vec::new());
    let code = run(&args, t, &mut "".as_bytes(), &mut o, &mut e);
    Out {
        code,
        stdout: String::from_utf8(o).unwrap(),
        stderr: String::from_utf8(e).unwrap(),
    }
}

fn key(vip: &str, port: u16) -> ServiceKey {
    ServiceKey {
        proto: Proto::Tcp,
        vip: vip.parse().unwrap(),
        port,
    }
}

#[test]
fn add_list_errors_and_exit_codes() {
    let dp = FakeDp::start("adm");
    let mut t = ShmTransport::new(&dp.path);
    assert_eq!(rvsadm(&mut t, "-A -t 10.1.0.100:80 -s wrr").code, 0);
    assert_eq!(
        rvsadm(&mut t, "-a -t 10.1.0.100:80 -r 10.2.0.11:8080 -m -w 3").code,
        0
    );
    assert_eq!(
        rvsadm(&mut t, "-a -t 10.1.0.100:80 -r 10.2.0.12:8080 -m -w 1").code,
        0
    );
    let s = dp.service(&key("10.1.0.100", 80)).unwrap();
    assert_eq!(s.spec.scheduler, "wrr");
    assert_eq!(s.dests.len(), 2);

    let o = rvsadm(&mut t, "-Ln");
    assert_eq!((o.code, o.stderr.as_str()), (0, ""));
    let want = "IP Virtual Server version 1.2.1 (size=4096)\n\
                Prot LocalAddress:Port Scheduler Flags\n  \
                -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
                TCP  10.1.0.100:80 wrr\n  \
                -> 10.2.0.11:8080               Masq    3      0          0         \n  \
                -> 10.2.0.12:8080               Masq    1      0          0         \n";
    assert_eq!(o.stdout, want);

    // The data plane refuses: ipvsadm's message, exit 255.
    let o = rvsadm(&mut t, "-A -t 10.1.0.100:80");
    assert_eq!((o.code, o.stderr.as_str()), (255, "Service already exists\n"));
    let o = rvsadm(&mut t, "-d -t 10.1.0.100:80 -r 10.2.0.99:8080");
    assert_eq!((o.code, o.stderr.as_str()), (255, "No such destination\n"));
    // A command line ipvsadm refuses never reaches it: exit 2 (option
    // misuse), 255 (popt's own errors), as ipvsadm.
    let o = rvsadm(&mut t, "-A -t 10.1.0.100:81 -w 1");
    assert_eq!(o.code, 2, "{}", o.stderr);
    let o = rvsadm(&mut t, "-A -t 10.1.0.100:81 -s wrr -w");
    assert_eq!((o.code, o.stderr.as_str()), (255, "-w: missing argument\n"));
    assert!(dp.service(&key("10.1.0.100", 81)).is_none());
    // Listing one missing service: exit 1.
    assert_eq!(rvsadm(&mut t, "-L -n -t 10.9.9.9:1").code, 1);

    assert_eq!(rvsadm(&mut t, "-D -t 10.1.0.100:80").code, 0);
    assert!(dp.services().is_empty());
}

#[test]
fn no_data_plane_and_restart() {
    let mut dp = FakeDp::start("restart");
    let path = dp.path.clone();
    let mut t = ShmTransport::new(&path);
    assert_eq!(rvsadm(&mut t, "-A -t 10.1.0.1:80").code, 0);
    let g1 = dp.generation();

    // rvs-dp restarts: the client notices before sending and retries once.
    dp.restart();
    assert_ne!(dp.generation(), g1);
    let o = rvsadm(&mut t, "-A -t 10.1.0.2:80");
    assert_eq!((o.code, o.stderr.as_str()), (0, ""));
    assert_eq!(t.generation(), Some(dp.generation()));
    let keys: Vec<_> = dp.services().iter().map(|s| s.spec.key()).collect();
    assert_eq!(keys, vec![key("10.1.0.2", 80)], "the new rvs-dp starts empty");

    // rvs-dp gone: a clear message, exit 2.
    drop(dp);
    let o = rvsadm(&mut t, "-Ln");
    assert_eq!(o.code, 2);
    assert_eq!(
        o.stderr,
        format!(
            "rvsadm: cannot reach the data plane: rvs-dp is not running (no control region at {})\n",
            path.display()
        )
    );
}

#[test]
fn the_binary_takes_ctl_and_env() {
    let dp = FakeDp::start("bin");
    let exe = env!("CARGO_BIN_EXE_rvsadm");
    let st = Proc::new(exe)
        .args([
            "--ctl",
            dp.path.to_str().unwrap(),
            "-A",
            "-t",
            "10.1.0.5:443",
            "-s",
            "rr",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let out = Proc::new(exe)
        .args(["-S", "-n"])
        .env("RVS_CTL", &dp.path)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "-A -t 10.1.0.5:443 -s rr\n");
    let out = Proc::new(exe)
        .args(["-Ln", "--ctl", "/nonexistent/rvs.ctl"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("rvs-dp is not running (no control region at /nonexistent/rvs.ctl)"));
}

#[test]
fn four_concurrent_writers_never_corrupt_the_table() {
    let dp = FakeDp::start("conc");
    let path = dp.path.clone();
    let threads: Vec<_> = (0..4u8)
        .map(|i| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut t = ShmTransport::new(&path);
                let vs = format!("10.9.0.{}:53", i + 1);
                for round in 0..20 {
                    for line in [
                        format!("-A -u {vs} -s rr"),
                        format!("-a -u {vs} -r 10.8.{i}.1:53 -w 2"),
                        format!("-a -u {vs} -r 10.8.{i}.2:53 -w 3"),
                        format!("-e -u {vs} -r 10.8.{i}.1:53 -w {}", round + 1),
                        format!("-d -u {vs} -r 10.8.{i}.2:53"),
                        format!("-D -u {vs}"),
                    ] {
                        let o = rvsadm(&mut t, &line);
                        assert_eq!((o.code, o.stderr.as_str()), (0, ""), "thread {i}: {line}");
                    }
                }
                assert_eq!(rvsadm(&mut t, &format!("-A -u {vs} -s wrr")).code, 0);
                assert_eq!(
                    rvsadm(&mut t, &format!("-a -u {vs} -r 10.8.{i}.7:53 -w 7")).code,
                    0
                );
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut got: Vec<(Ipv4Addr, Vec<(Ipv4Addr, u32)>)> = dp
        .services()
        .iter()
        .map(|s| (s.spec.vip, s.dests.iter().map(|d| (d.rip, d.weight)).collect()))
        .collect();
    got.sort();
    let want: Vec<_> = (0..4u8)
        .map(|i| {
            (
                Ipv4Addr::new(10, 9, 0, i + 1),
                vec![(Ipv4Addr::new(10, 8, i, 7), 7)],
            )
        })
        .collect();
    assert_eq!(got, want);
}

/// `rvsadm --drops` sums the workers' drop counters from the stats area: the
/// README promised drop reasons through rvsadm, and only /metrics and the exit
/// report had them.
#[test]
fn drops_are_listed_by_reason_over_all_workers() {
    use rvs_proto::statsarea::WorkerStatsBlock;
    use rvs_proto::types::DropReason;

    let dp = FakeDp::start("drops");
    let mut t = ShmTransport::new(&dp.path);
    let mut b = WorkerStatsBlock::new_boxed();
    b.drops[DropReason::NoService as usize] = 7;
    b.drops[DropReason::BadIpChecksum as usize] = 2;
    dp.publish(0, &b);
    let mut b = WorkerStatsBlock::new_boxed();
    b.drops[DropReason::NoService as usize] = 5;
    dp.publish(1, &b);

    let o = rvsadm(&mut t, "--drops");
    assert_eq!((o.code, o.stderr.as_str()), (0, ""));
    assert_eq!(
        o.stdout,
        "Drop reason                 Packets\n\
         bad_ip_checksum                   2\n\
         no_service                       12\n\
         total                            14\n"
    );
    let o = rvsadm(&mut t, "--drops --json");
    assert_eq!(o.code, 0);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["no_service"], 12);
    assert_eq!(v["conn_table_full"], 0);
    assert_eq!(v.as_object().unwrap().len(), DropReason::COUNT);
    let o = rvsadm(&mut t, "--drops --latency");
    assert_eq!(o.code, 2, "{}", o.stderr);
}

/// `rvsadm --kernel` reads the exception path's counters from the stats
/// area and asks which addresses are owned; `-Ln --json` says per service.
#[test]
fn kernel_interfaces_and_vip_ownership() {
    use rvs_proto::command::OwnedAddrs;
    use rvs_proto::statsarea::{ExceptionCounters, KernelPortStats, KernelStatsBlock};

    let dp = FakeDp::start("kernel");
    let mut t = ShmTransport::new(&dp.path);
    assert_eq!(rvsadm(&mut t, "-A -t 10.1.0.100:80").code, 0);
    assert_eq!(rvsadm(&mut t, "-A -t 10.1.0.100:443").code, 0);
    assert_eq!(rvsadm(&mut t, "-A -u 10.1.0.101:53").code, 0);

    // No kernel interface (nothing published, every VIP owned).
    let o = rvsadm(&mut t, "--kernel");
    assert_eq!((o.code, o.stderr.as_str()), (0, ""));
    assert_eq!(
        o.stdout,
        "No kernel interface\n\
         Owned: every VIP (no kernel interface decides)\n\
         VIP              Owned\n\
         10.1.0.100       yes\n\
         10.1.0.101       yes\n"
    );

    let mut b = KernelStatsBlock {
        timestamp_ns: 1,
        ..KernelStatsBlock::default()
    };
    let c = ExceptionCounters {
        up: 120,
        down: 80,
        up_ratelimited: 7,
        up_txfull: 1,
        down_bad: 2,
        down_txfull: 3,
    };
    b.push(KernelPortStats::new(0, "outside0", c)).unwrap();
    b.push(KernelPortStats::new(1, "inside0", ExceptionCounters::default()))
        .unwrap();
    dp.publish_kernel(&b);
    let vip = "10.1.0.100".parse::<Ipv4Addr>().unwrap();
    dp.set_owned(OwnedAddrs::only(["10.1.0.1".parse().unwrap(), vip]));

    let o = rvsadm(&mut t, "--kernel");
    assert_eq!((o.code, o.stderr.as_str()), (0, ""));
    let want = "\
Kernel iface     Port           Up         Down      Dropped up_ratelimited      up_txfull       down_bad    down_txfull
outside0            0          120           80           13              7              1              2              3
inside0             1            0            0            0              0              0              0              0
Owned: 10.1.0.1 10.1.0.100
VIP              Owned
10.1.0.100       yes
10.1.0.101       no
";
    assert_eq!(o.stdout, want);

    let o = rvsadm(&mut t, "--kernel --json");
    assert_eq!((o.code, o.stderr.as_str()), (0, ""));
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["ports"].as_array().map(Vec::len), Some(2));
    let p = &v["ports"][0];
    assert_eq!(
        (p["port"].as_u64(), p["iface"].as_str()),
        (Some(0), Some("outside0"))
    );
    for (k, n) in [
        ("up", 120),
        ("down", 80),
        ("dropped", 13),
        ("up_ratelimited", 7),
        ("up_txfull", 1),
        ("down_bad", 2),
        ("down_txfull", 3),
    ] {
        assert_eq!(p[k].as_u64(), Some(n), "{k}");
    }
    assert_eq!(v["ports"][1]["iface"], "inside0");
    assert_eq!(v["owned"]["all"], false);
    assert_eq!(
        v["owned"]["addresses"],
        serde_json::json!(["10.1.0.1", "10.1.0.100"])
    );
    assert_eq!(
        v["vips"],
        serde_json::json!({"10.1.0.100": true, "10.1.0.101": false})
    );

    // The listing says it per service.
    let o = rvsadm(&mut t, "-Ln --json");
    assert_eq!(o.code, 0, "{}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let owned: Vec<(String, u64, bool)> = v["Services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["spec"]["vip"].as_str().unwrap().to_string(),
                s["spec"]["port"].as_u64().unwrap(),
                s["owned"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        owned,
        vec![
            ("10.1.0.100".into(), 80, true),
            ("10.1.0.100".into(), 443, true),
            ("10.1.0.101".into(), 53, false),
        ]
    );

    // Ownership moves: the next query says so.
    dp.set_owned(OwnedAddrs::only(["10.1.0.1".parse().unwrap()]));
    let v: serde_json::Value = serde_json::from_str(&rvsadm(&mut t, "--kernel --json").stdout).unwrap();
    assert_eq!(v["vips"]["10.1.0.100"], false);

    assert_eq!(rvsadm(&mut t, "--kernel --latency").code, 2);
}
