//! rvs-cp's daemon against a fake rvs-dp (real ring code) and real local
//! servers on 127.0.0.1: health checks, inhibit_on_failure, quorum and sorry
//! server, reload by difference, rvs-dp restart, concurrent writers,
//! /metrics and the latency interval log.

mod common;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{http_get, wait_for, FakeDp, HttpUp, TcpUp, TempDir};
use rvs_cp::adm::run;
use rvs_cp::check::http::md5_hex;
use rvs_cp::daemon::{Daemon, Options};
use rvs_cp::source::ConfigSource;
use rvs_cp::transport::ShmTransport;
use rvs_proto::command::Command;
use rvs_proto::statsarea::WorkerStatsBlock;
use rvs_proto::types::DropReason;
use rvs_proto::types::{Proto, ServiceKey};

const LOCAL: Ipv4Addr = Ipv4Addr::LOCALHOST;

fn key(vip: &str, port: u16) -> ServiceKey {
    ServiceKey {
        proto: Proto::Tcp,
        vip: vip.parse().unwrap(),
        port,
    }
}

fn start(dir: &TempDir, dp: &FakeDp, text: &str) -> Daemon {
    let cfg = dir.path("rvs.toml");
    std::fs::write(&cfg, text).unwrap();
    Daemon::start(&Options {
        config: ConfigSource::Rvs(cfg),
        ctl: Some(dp.path.clone()),
        metrics_listen: None,
        ready_file: None,
        resync_listen: None,
        resync_from: None,
        resync_allow: Vec::new(),
    })
    .unwrap()
}

/// Weight of real server (rip, port) in rvs-dp's table; None if absent.
fn weight(dp: &FakeDp, k: &ServiceKey, port: u16) -> Option<u32> {
    dp.service(k)?.dest(LOCAL, port).map(|d| d.weight)
}

const HEAD: &str = r#"
[control]
metrics_listen = "off"
resync_interval = 0
"#;

#[test]
fn tcp_check_removes_and_restores_within_fall_and_rise() {
    let dir = TempDir::new("tcp");
    let dp = FakeDp::start("tcp");
    let up = TcpUp::start(0);
    let port = up.port;
    let cfg = format!(
        r#"{HEAD}
[[virtual_server]]
address = "10.1.0.100"
port = 80
lb_algo = "wrr"
delay_loop = 0.2
[[virtual_server.real_server]]
address = "127.0.0.1"
port = {port}
weight = 3
[virtual_server.real_server.tcp_check]
connect_timeout = 0.5
fall = 3
rise = 2
"#
    );
    let mut d = start(&dir, &dp, &cfg);
    let k = key("10.1.0.100", 80);
    // Starts DOWN (absent), comes UP after 2 successes.
    assert_eq!(weight(&dp, &k, port), None);
    assert!(d.run_until(Duration::from_secs(3), |_| weight(&dp, &k, port) == Some(3)));

    let t0 = Instant::now();
    up.close();
    assert!(d.run_until(Duration::from_secs(3), |_| weight(&dp, &k, port).is_none()));
    let took = t0.elapsed();
    // 3 failures 0.2 s apart, the first at most 0.2 s after the close.
    assert!(
        took >= Duration::from_millis(350),
        "removed after {took:?}: before fall 3"
    );
    assert!(took <= Duration::from_millis(600 + 700), "removed after {took:?}");
    assert_eq!(d.is_up(&(k, LOCAL, port)), Some(false));
    assert!(dp.service(&k).is_some(), "the service stays");

    let t0 = Instant::now();
    let _again = TcpUp::start(port);
    assert!(d.run_until(Duration::from_secs(3), |_| weight(&dp, &k, port) == Some(3)));
    let took = t0.elapsed();
    assert!(
        took <= Duration::from_millis(400 + 700),
        "restored after {took:?}"
    );
}

#[test]
fn http_get_with_inhibit_sets_weight_zero_then_restores() {
    let dir = TempDir::new("http");
    let dp = FakeDp::start("http");
    let srv = HttpUp::start("all good\n");
    let digest = md5_hex(b"all good\n");
    let cfg = format!(
        r#"{HEAD}
[[virtual_server]]
address = "10.1.0.100"
port = 80
delay_loop = 0.2
inhibit_on_failure = true
[[virtual_server.real_server]]
address = "127.0.0.1"
port = {port}
weight = 2
[virtual_server.real_server.http_get]
path = "/health"
status_code = [200]
digest = "{digest}"
regex = "good"
connect_timeout = 1.0
retry = 2
"#,
        port = srv.port
    );
    let mut d = start(&dir, &dp, &cfg);
    let k = key("10.1.0.100", 80);
    // While DOWN before its first success, inhibit keeps it at weight 0.
    assert!(d.run_until(Duration::from_secs(3), |_| weight(&dp, &k, srv.port) == Some(2)));
    srv.status.store(503, Ordering::Relaxed);
    let t0 = Instant::now();
    assert!(d.run_until(Duration::from_secs(3), |_| weight(&dp, &k, srv.port) == Some(0)));
    assert!(
        t0.elapsed() <= Duration::from_millis(400 + 700),
        "{:?}",
        t0.elapsed()
    );
    srv.status.store(200, Ordering::Relaxed);
    assert!(d.run_until(Duration::from_secs(3), |_| weight(&dp, &k, srv.port) == Some(2)));
    let edits = dp
        .take_log()
        .iter()
        .filter(|c| matches!(c, Command::EditDest(..)))
        .count();
    assert!(edits >= 2, "weight changes are EditDest, not delete + add");
    assert!(srv.hits.load(Ordering::Relaxed) >= 4);
}

#[test]
fn misc_check_quorum_and_sorry_server() {
    let dir = TempDir::new("misc");
    let dp = FakeDp::start("misc");
    let flag = dir.path("healthy");
    std::fs::write(&flag, "").unwrap();
    let cfg = format!(
        r#"{HEAD}
[[virtual_server]]
address = "10.1.0.100"
port = 80
delay_loop = 0.2
quorum = 2
sorry_server = "127.0.0.1 9999"
[[virtual_server.real_server]]
address = "127.0.0.1"
port = 1001
[[virtual_server.real_server]]
address = "127.0.0.1"
port = 1002
[virtual_server.real_server.misc_check]
misc_path = "test -f '{}'"
misc_timeout = 2.0
"#,
        flag.display()
    );
    let mut d = start(&dir, &dp, &cfg);
    let k = key("10.1.0.100", 80);
    let ports = |dp: &FakeDp| -> Vec<u16> {
        let mut v: Vec<u16> = dp
            .service(&k)
            .map(|s| s.dests.iter().map(|d| d.port).collect())
            .unwrap_or_default();
        v.sort();
        v
    };
    assert!(d.run_until(Duration::from_secs(3), |_| ports(&dp) == vec![1001, 1002]));
    assert!(
        dp.take_log().iter().all(|c| !format!("{c:?}").contains("9999")),
        "no sorry server while settling"
    );

    // The script fails: alive weight 1 < quorum 2. The sorry server replaces
    // the alive real servers (keepalived's behaviour).
    std::fs::remove_file(&flag).unwrap();
    assert!(d.run_until(Duration::from_secs(3), |_| ports(&dp) == vec![9999]));
    assert_eq!(d.quorum_up(&k), Some(false));
    let sorry = dp.service(&k).unwrap().dests[0].clone();
    assert_eq!(sorry.weight, 1);

    std::fs::write(&flag, "").unwrap();
    assert!(d.run_until(Duration::from_secs(3), |_| ports(&dp) == vec![1001, 1002]));
    assert_eq!(d.quorum_up(&k), Some(true));
}

const V1: &str = r#"
[[virtual_server]]
address = "10.1.0.1"
port = 80
lb_algo = "wrr"
delay_loop = 0.2
[[virtual_server.real_server]]
address = "127.0.0.1"
port = 2001
weight = 1
[virtual_server.real_server.tcp_check]
connect_port = PORT_A
[[virtual_server.real_server]]
address = "127.0.0.1"
port = 2002
weight = 2
[[virtual_server.real_server]]
address = "127.0.0.1"
port = 2003
[virtual_server.real_server.tcp_check]
connect_port = PORT_A
rise = 1

[[virtual_server]]
address = "10.1.0.2"
port = 80
lb_algo = "rr"
[[virtual_server.real_server]]
address = "127.0.0.1"
port = 2010
"#;

#[test]
fn reload_applies_only_the_difference_and_refuses_a_bad_file() {
    let dir = TempDir::new("reload");
    let dp = FakeDp::start("reload");
    let a = TcpUp::start(0);
    let v1 = format!("{HEAD}{}", V1.replace("PORT_A", &a.port.to_string()));
    let mut d = start(&dir, &dp, &v1);
    let (k1, k2, k3) = (key("10.1.0.1", 80), key("10.1.0.2", 80), key("10.1.0.3", 80));
    let all_in =
        |dp: &FakeDp| dp.service(&k1).is_some_and(|s| s.dests.len() == 3) && dp.service(&k2).is_some();
    assert!(d.run_until(Duration::from_secs(3), |_| all_in(&dp)));
    dp.take_log();

    // v2: scheduler of 10.1.0.1 changed, 2002's weight changed, 2003's check
    // changed (rise), 10.1.0.2 removed, 10.1.0.3 added. 2001 is untouched.
    let v2 = v1
        .replace("lb_algo = \"wrr\"", "lb_algo = \"wlc\"")
        .replace("weight = 2", "weight = 5")
        .replace("rise = 1", "rise = 2")
        .replace("10.1.0.2", "10.1.0.3");
    std::fs::write(dir.path("rvs.toml"), &v2).unwrap();
    d.reload().unwrap();
    assert_eq!(
        d.is_up(&(k1, LOCAL, 2001)),
        Some(true),
        "unchanged check keeps its verdict"
    );
    assert_eq!(
        d.is_up(&(k1, LOCAL, 2003)),
        Some(false),
        "changed check starts over"
    );
    let settled = |dp: &FakeDp| {
        dp.service(&k1)
            .is_some_and(|s| s.spec.scheduler == "wlc" && s.dests.len() == 3)
            && dp.service(&k2).is_none()
            && dp.service(&k3).is_some_and(|s| s.dests.len() == 1)
    };
    assert!(d.run_until(Duration::from_secs(3), |_| settled(&dp)));
    let log = dp.take_log();
    let text: Vec<String> = log.iter().map(|c| format!("{c:?}")).collect();
    assert!(
        log.iter()
            .any(|c| matches!(c, Command::EditService(s) if s.scheduler == "wlc")),
        "{text:?}"
    );
    assert!(
        log.iter()
            .any(|c| matches!(c, Command::EditDest(_, dd) if dd.port == 2002 && dd.weight == 5)),
        "{text:?}"
    );
    assert!(log.contains(&Command::DelService(k2)), "{text:?}");
    assert!(
        log.iter()
            .any(|c| matches!(c, Command::AddService(s) if s.key() == k3)),
        "{text:?}"
    );
    assert!(
        !text.iter().any(|t| t.contains("port: 2001")),
        "2001 untouched: {text:?}"
    );
    assert!(
        !log.contains(&Command::Clear) && !log.contains(&Command::DelService(k1)),
        "{text:?}"
    );

    // An invalid file: refused, with file and key named; nothing changes.
    let bad = v2.replace("weight = 5", "weight = 70000");
    std::fs::write(dir.path("rvs.toml"), &bad).unwrap();
    let before = d.config().clone();
    let e = d.reload().unwrap_err();
    assert!(
        e.contains("rvs.toml") && e.contains("real_server[1] (127.0.0.1).weight"),
        "{e}"
    );
    let e = {
        std::fs::write(
            dir.path("rvs.toml"),
            v2.replace("lb_algo = \"wlc\"", "lb_algo = \"wlc\"\nbogus = 1"),
        )
        .unwrap();
        d.reload().unwrap_err()
    };
    assert!(e.contains("bogus") && e.contains("line"), "{e}");
    assert_eq!(d.config(), &before);
    d.run_until(Duration::from_millis(500), |_| false);
    assert_eq!(dp.take_log(), Vec::new(), "nothing sent after a refused reload");
    assert!(settled(&dp));
}

#[test]
fn dp_restart_reapplies_everything() {
    let dir = TempDir::new("gen");
    let mut dp = FakeDp::start("gen");
    let cfg = format!("{HEAD}{}", V1.replace("PORT_A", "1"));
    let mut d = start(&dir, &dp, &cfg);
    let k2 = key("10.1.0.2", 80);
    assert!(d.run_until(Duration::from_secs(3), |_| dp.service(&k2).is_some()));
    dp.restart();
    assert!(dp.services().is_empty());
    assert!(d.run_until(Duration::from_secs(3), |_| dp.service(&k2).is_some()));
    // 10.1.0.1 is back too, with the server that has no check (the checked
    // ones point at a closed port and stay out).
    let s = dp.service(&key("10.1.0.1", 80)).unwrap();
    assert_eq!(s.dests.iter().map(|d| d.port).collect::<Vec<_>>(), vec![2002]);
}

#[test]
fn concurrent_rvsadm_writers_while_reconciling() {
    let dir = TempDir::new("conc");
    let dp = FakeDp::start("conc");
    let flag = dir.path("flag");
    // A check that flips every time keeps the reconcile busy.
    let cfg = format!(
        r#"
[control]
metrics_listen = "off"
resync_interval = 0.1
[[virtual_server]]
address = "10.1.0.100"
port = 80
delay_loop = 0.05
[[virtual_server.real_server]]
address = "127.0.0.1"
port = 3001
[[virtual_server.real_server]]
address = "127.0.0.1"
port = 3002
[virtual_server.real_server.misc_check]
misc_path = "if [ -f '{f}' ]; then rm -f '{f}'; else touch '{f}'; exit 1; fi"
"#,
        f = flag.display()
    );
    let mut d = start(&dir, &dp, &cfg);
    let path = dp.path.clone();
    let threads: Vec<_> = (0..4u8)
        .map(|i| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut t = ShmTransport::new(&path);
                let vs = format!("10.9.0.{}:53", i + 1);
                let mut failures = Vec::new();
                for round in 0..15 {
                    for line in [
                        format!("-A -u {vs} -s rr"),
                        format!("-a -u {vs} -r 10.8.{i}.1:53 -w 2"),
                        format!("-a -u {vs} -r 10.8.{i}.2:53 -w 3"),
                        format!("-e -u {vs} -r 10.8.{i}.1:53 -w {}", round + 1),
                        format!("-d -u {vs} -r 10.8.{i}.2:53"),
                        format!("-D -u {vs}"),
                        format!("-A -u {vs} -s wrr"),
                        format!("-a -u {vs} -r 10.8.{i}.7:53 -w 7"),
                    ] {
                        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
                        let (mut o, mut e) = (Vec::new(), Vec::new());
                        let code = run(&args, &mut t, &mut "".as_bytes(), &mut o, &mut e);
                        if code != 0 {
                            failures.push(format!("{line}: {code} {}", String::from_utf8_lossy(&e)));
                        }
                    }
                    let args: Vec<String> = format!("-D -u {vs}")
                        .split_whitespace()
                        .map(String::from)
                        .collect();
                    if round < 14 {
                        let code = run(
                            &args,
                            &mut t,
                            &mut "".as_bytes(),
                            &mut Vec::new(),
                            &mut Vec::new(),
                        );
                        assert_eq!(code, 0);
                    }
                }
                failures
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !threads.iter().all(|t| t.is_finished()) && Instant::now() < deadline {
        d.step(Duration::from_millis(10));
    }
    for t in threads {
        assert_eq!(t.join().unwrap(), Vec::<String>::new());
    }
    let k = key("10.1.0.100", 80);
    // The managed service matches what rvs-cp wants; the writers' services are intact.
    assert!(d.run_until(Duration::from_secs(3), |d| {
        let want = d.desired();
        let w = &want[&k];
        dp.service(&k)
            .is_some_and(|s| s.spec == w.spec && s.dests == w.dests)
    }));
    let others: BTreeSet<(Ipv4Addr, Vec<(Ipv4Addr, u32)>)> = dp
        .services()
        .iter()
        .filter(|s| s.spec.key() != k)
        .map(|s| (s.spec.vip, s.dests.iter().map(|d| (d.rip, d.weight)).collect()))
        .collect();
    let want: BTreeSet<_> = (0..4u8)
        .map(|i| {
            (
                Ipv4Addr::new(10, 9, 0, i + 1),
                vec![(Ipv4Addr::new(10, 8, i, 7), 7)],
            )
        })
        .collect();
    assert_eq!(others, want);
}

fn metric(text: &str, series: &str) -> Option<String> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|r| r.strip_prefix(' '))
            .map(String::from)
    })
}

#[test]
fn metrics_endpoint_and_histogram_log() {
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;
    use hdrhistogram::Histogram;
    use rvs_proto::latency::{bucket_index, bucket_mid, LatencyHist};

    let dir = TempDir::new("metrics");
    let dp = FakeDp::start("metrics");
    let hlog = dir.path("latency.hlog");
    let cfg = format!(
        r#"
[control]
metrics_listen = "127.0.0.1:0"
histogram_log = "{}"
stats_interval = 0.1
[[virtual_server]]
address = "10.1.0.100"
port = 80
[[virtual_server.real_server]]
address = "127.0.0.1"
port = 4001
weight = 4
"#,
        hlog.display()
    );
    let k = key("10.1.0.100", 80);
    {
        let mut c = dp.counters();
        c.services.insert(
            k,
            rvs_proto::types::TrafficTotals {
                conns: 7,
                inpkts: 100,
                outpkts: 90,
                inbytes: 6400,
                outbytes: 128000,
            },
        );
        c.dests.insert(
            (k, LOCAL, 4001),
            (
                3,
                2,
                rvs_proto::types::TrafficTotals {
                    conns: 5,
                    ..Default::default()
                },
            ),
        );
    }
    let mut published = LatencyHist::default();
    let mut b = WorkerStatsBlock::new_boxed();
    b.timestamp_ns = 1_000_000_000;
    b.rx_pkts = 1000;
    b.drops[DropReason::NoService as usize] = 5;
    b.redirects_sent = 9;
    b.fnat_replies_direct = 12;
    b.fnat_replies_redirected = 13;
    for (v, n) in [(100u64, 5), (2000, 3)] {
        for _ in 0..n {
            b.latency.record(v);
            published.record(v);
        }
    }
    dp.publish(0, &b);
    let mut b1 = WorkerStatsBlock::new_boxed();
    b1.timestamp_ns = 1_000_000_000;
    b1.latency.record(40_000);
    published.record(40_000);
    dp.publish(1, &b1);
    // The exception path of a director with one kernel interface, which
    // holds the VIP.
    let mut kb = rvs_proto::statsarea::KernelStatsBlock::default();
    let kc = rvs_proto::statsarea::ExceptionCounters {
        up: 31,
        down: 29,
        up_ratelimited: 4,
        ..Default::default()
    };
    kb.push(rvs_proto::statsarea::KernelPortStats::new(0, "k0", kc))
        .unwrap();
    dp.publish_kernel(&kb);
    dp.set_owned(rvs_proto::command::OwnedAddrs::only([k.vip]));

    let mut d = start(&dir, &dp, &cfg);
    let addr = d.metrics_addr().unwrap();
    assert!(d.run_until(Duration::from_secs(3), |_| weight(&dp, &k, 4001) == Some(4)));
    let scrape = || http_get(addr, "/metrics").1;
    assert!(wait_for(Duration::from_secs(3), || scrape()
        .contains("rvs_worker_rx_packets_total{worker=\"0\"} 1000")));

    // A second publish, one second (of block time) later: 1000 pps.
    b.timestamp_ns += 1_000_000_000;
    b.rx_pkts = 2000;
    b.latency.record(2000);
    published.record(2000);
    dp.publish(0, &b);
    let real = "{proto=\"TCP\",vip=\"10.1.0.100\",port=\"80\",rip=\"127.0.0.1\",rport=\"4001\"}";
    // The List and the blocks of one snapshot are read one after the other:
    // wait for a snapshot taken wholly after both changes.
    assert!(wait_for(Duration::from_secs(3), || {
        let t = scrape();
        t.contains("rvs_worker_rx_packets_total{worker=\"0\"} 2000")
            && t.contains(&format!("rvs_real_server_connections_total{real} 5"))
    }));
    d.step(Duration::from_millis(10));
    let text = scrape();
    let svc = "{proto=\"TCP\",vip=\"10.1.0.100\",port=\"80\"}";
    assert_eq!(
        metric(&text, &format!("rvs_service_connections_total{svc}")).as_deref(),
        Some("7"),
        "{text}"
    );
    assert_eq!(
        metric(&text, &format!("rvs_service_out_bytes_total{svc}")).as_deref(),
        Some("128000")
    );
    assert_eq!(
        metric(&text, &format!("rvs_real_server_connections_total{real}")).as_deref(),
        Some("5")
    );
    assert_eq!(
        metric(&text, &format!("rvs_real_server_active_connections{real}")).as_deref(),
        Some("3")
    );
    assert_eq!(
        metric(&text, &format!("rvs_real_server_inactive_connections{real}")).as_deref(),
        Some("2")
    );
    assert_eq!(
        metric(&text, &format!("rvs_real_server_weight{real}")).as_deref(),
        Some("4")
    );
    assert_eq!(
        metric(&text, &format!("rvs_real_server_up{real}")).as_deref(),
        Some("1")
    );
    assert_eq!(
        metric(&text, "rvs_drops_total{reason=\"no_service\"}").as_deref(),
        Some("5")
    );
    assert_eq!(
        metric(&text, "rvs_drops_total{reason=\"ttl_expired\"}").as_deref(),
        Some("0")
    );
    assert_eq!(
        metric(&text, "rvs_worker_rx_pps{worker=\"0\"}").as_deref(),
        Some("1000.0")
    );
    assert_eq!(
        metric(&text, "rvs_worker_redirects_sent_total{worker=\"0\"}").as_deref(),
        Some("9")
    );
    // The stats block's FULLNAT counters reach /metrics as read.
    assert_eq!(
        metric(&text, "rvs_fnat_replies_total{worker=\"0\",path=\"direct\"}").as_deref(),
        Some("12")
    );
    assert_eq!(
        metric(&text, "rvs_fnat_replies_total{worker=\"0\",path=\"redirected\"}").as_deref(),
        Some("13")
    );
    assert_eq!(
        metric(&text, "rvs_packet_latency_seconds_count").as_deref(),
        Some("10")
    );
    // 100 ns x5 below 128 ns; 2000 ns x4 below 2048 ns; 40 us x1 below 65536 ns.
    assert_eq!(
        metric(&text, "rvs_packet_latency_seconds_bucket{le=\"1.28e-7\"}").as_deref(),
        Some("5"),
        "{text}"
    );
    assert_eq!(
        metric(&text, "rvs_packet_latency_seconds_bucket{le=\"0.000002048\"}").as_deref(),
        Some("9")
    );
    assert_eq!(
        metric(&text, "rvs_packet_latency_seconds_bucket{le=\"+Inf\"}").as_deref(),
        Some("10")
    );
    assert!(metric(&text, "rvs_packet_latency_quantile_seconds{quantile=\"0.5\"}").is_some());
    let k0 = "port=\"0\",iface=\"k0\"";
    assert_eq!(
        metric(
            &text,
            &format!("rvs_kernel_packets_total{{{k0},direction=\"up\"}}")
        )
        .as_deref(),
        Some("31"),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            &format!("rvs_kernel_packets_total{{{k0},direction=\"down\"}}")
        )
        .as_deref(),
        Some("29")
    );
    assert_eq!(
        metric(
            &text,
            &format!("rvs_kernel_dropped_total{{{k0},reason=\"up_ratelimited\"}}")
        )
        .as_deref(),
        Some("4")
    );
    assert_eq!(
        metric(&text, "rvs_vip_owned{vip=\"10.1.0.100\"}").as_deref(),
        Some("1")
    );
    assert!(text.contains("# TYPE rvs_packet_latency_seconds histogram"));
    assert!(text.ends_with("# EOF\n"));
    assert_eq!(http_get(addr, "/").0, 404);
    assert_eq!(http_get(addr, "/metricsx").0, 404);
    drop(d); // stops the stats thread: the log is complete

    let bytes = std::fs::read(&hlog).unwrap();
    let mut de = Deserializer::new();
    let mut sum = Histogram::<u64>::new(3).unwrap();
    let mut intervals = 0;
    for e in IntervalLogIterator::new(&bytes) {
        if let LogEntry::Interval(i) = e.unwrap() {
            let raw =
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, i.encoded_histogram())
                    .unwrap();
            let h: Histogram<u64> = de.deserialize(&mut raw.as_slice()).unwrap();
            sum.add(&h).unwrap();
            intervals += 1;
        }
    }
    assert!(intervals >= 2, "one interval per stats_interval");
    assert_eq!(sum.len(), published.total);
    for v in [100u64, 2000, 40_000] {
        let mid = bucket_mid(bucket_index(v)).unwrap();
        let want = published.counts[bucket_index(v)];
        assert_eq!(sum.count_at(mid), want, "bucket of {v} ns");
    }
}

/// A config of one service with `n` real servers and no checks (all up).
fn many_reals(n: u32) -> String {
    let mut t = format!("{HEAD}[[virtual_server]]\naddress = \"10.1.0.1\"\nport = 80\nlb_algo = \"wrr\"\n");
    for i in 0..n {
        let rip = std::net::Ipv4Addr::from(0x0b00_0000 + i);
        t += &format!("[[virtual_server.real_server]]\naddress = \"{rip}\"\nport = 8080\n");
    }
    t
}

#[test]
fn ten_thousand_real_servers_go_in_batches() {
    // One request (one new table in rvs-dp) per batch of APPLY_BATCH, not
    // one per real server (10,001 before).
    let dir = TempDir::new("batch");
    let dp = FakeDp::start("batch");
    let mut d = start(&dir, &dp, &many_reals(10_000));
    let k = key("10.1.0.1", 80);
    assert!(d.run_until(Duration::from_secs(20), |_| dp
        .service(&k)
        .is_some_and(|s| s.dests.len() == 10_000)));
    assert_eq!(
        dp.restores(),
        10_001u64.div_ceil(rvs_cp::daemon::APPLY_BATCH as u64)
    );
    assert_eq!(dp.take_log().len(), 10_001);
}

#[test]
fn a_stop_request_ends_a_long_apply_between_batches() {
    let dir = TempDir::new("stop");
    let dp = FakeDp::start("stop");
    let mut d = start(&dir, &dp, &many_reals(10_000));
    d.stop_flag().store(true, Ordering::Relaxed);
    let t0 = std::time::Instant::now();
    let e = d.reconcile().unwrap_err();
    assert!(e.starts_with("stopped after 0 of 10001 commands"), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert!(dp.services().is_empty(), "nothing sent after the stop request");
}

#[test]
fn an_unappliable_file_is_retried_with_backoff() {
    // rvs-dp refuses the second real server (its table is full): the
    // retries come after 1 s, then 2 s, ... (before: every step, ~0.1 s,
    // because the periodic resync counted as due while nothing had succeeded).
    let dir = TempDir::new("backoff");
    let dp = FakeDp::start_with_limits(
        "backoff",
        rvs_proto::ipvs::Limits {
            max_services: 10,
            max_dests_per_service: 1,
        },
    );
    let cfg = many_reals(2).replace("resync_interval = 0\n", "resync_interval = 5\n");
    let mut d = start(&dir, &dp, &cfg);
    d.run_until(Duration::from_millis(3500), |_| false);
    // At 0 s the batch, refused at the second real server, then the part
    // before it (2 requests); retries of the refused one at 1 s and 3 s.
    let sent = dp.changes();
    assert!((3..=5).contains(&sent), "{sent} change requests in 3.5 s");
    assert_eq!(dp.service(&key("10.1.0.1", 80)).unwrap().dests.len(), 1);
}

fn start_ready(dir: &TempDir, ctl: &std::path::Path, text: &str, ready: &std::path::Path) -> Daemon {
    let cfg = dir.path("rvs.toml");
    std::fs::write(&cfg, text).unwrap();
    Daemon::start(&Options {
        config: ConfigSource::Rvs(cfg),
        ctl: Some(ctl.to_path_buf()),
        metrics_listen: None,
        ready_file: Some(ready.to_path_buf()),
        resync_listen: None,
        resync_from: None,
        resync_allow: Vec::new(),
    })
    .unwrap()
}

fn ready_value(path: &std::path::Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[test]
fn ready_file_is_0_only_while_rvs_dp_holds_the_configuration() {
    let dir = TempDir::new("ready");
    let ready = dir.path("ready");
    let cfg = many_reals(2);

    // No rvs-dp at all: not ready.
    let mut d = start_ready(&dir, &dir.path("absent.ctl"), &cfg, &ready);
    d.run_until(Duration::from_millis(300), |_| false);
    assert_eq!(ready_value(&ready), "1", "no rvs-dp");
    assert!(!d.is_ready());
    drop(d);

    // rvs-dp refuses part of the table: not ready, however long it runs.
    let full = FakeDp::start_with_limits(
        "ready-full",
        rvs_proto::ipvs::Limits {
            max_services: 10,
            max_dests_per_service: 1,
        },
    );
    let mut d = start_ready(&dir, &full.path, &cfg, &ready);
    d.run_until(Duration::from_millis(1500), |_| false);
    assert_eq!(full.service(&key("10.1.0.1", 80)).unwrap().dests.len(), 1);
    assert_eq!(ready_value(&ready), "1", "a partial table is not ready");
    drop(d);

    // Everything applied: ready; an rvs-dp restart empties the table, and
    // the file says 0 again only once the table is back.
    let mut dp = FakeDp::start("ready-ok");
    let mut d = start_ready(&dir, &dp.path, &cfg, &ready);
    assert!(d.run_until(Duration::from_secs(3), |_| ready_value(&ready) == "0"));
    assert_eq!(dp.service(&key("10.1.0.1", 80)).unwrap().dests.len(), 2);
    dp.restart();
    assert!(dp.services().is_empty());
    let back = |dp: &FakeDp| {
        dp.service(&key("10.1.0.1", 80))
            .is_some_and(|s| s.dests.len() == 2)
    };
    assert!(d.run_until(Duration::from_secs(3), |_| back(&dp)));
    assert!(d.is_ready());
    assert_eq!(ready_value(&ready), "0");
}

#[test]
fn ready_file_is_1_while_a_service_has_lost_its_quorum_without_a_sorry_server() {
    let dir = TempDir::new("ready-quorum");
    let ready = dir.path("ready");
    let dp = FakeDp::start("ready-quorum");
    let up = TcpUp::start(0);
    let port = up.port;
    let cfg = |sorry: &str| {
        format!(
            r#"{HEAD}
[[virtual_server]]
address = "10.1.0.100"
port = 80
delay_loop = 0.1
{sorry}
[[virtual_server.real_server]]
address = "127.0.0.1"
port = {}
[virtual_server.real_server.tcp_check]
connect_timeout = 0.5
fall = 1
rise = 1
"#,
            port
        )
    };
    let mut d = start_ready(&dir, &dp.path, &cfg(""), &ready);
    assert!(d.run_until(Duration::from_secs(3), |_| ready_value(&ready) == "0"));
    drop(up);
    let k = key("10.1.0.100", 80);
    assert!(d.run_until(Duration::from_secs(3), |d| d.quorum_up(&k) == Some(false)));
    d.run_until(Duration::from_millis(300), |_| false);
    assert_eq!(ready_value(&ready), "1", "no real server alive: not ready");
    // With a sorry server the service still serves: ready.
    std::fs::write(dir.path("rvs.toml"), cfg("sorry_server = \"127.0.0.1 9999\"")).unwrap();
    d.reload().unwrap();
    assert!(d.run_until(Duration::from_secs(3), |_| ready_value(&ready) == "0"));
    // The real server back, without the sorry server: ready again.
    let _up = TcpUp::start(port);
    std::fs::write(dir.path("rvs.toml"), cfg("")).unwrap();
    d.reload().unwrap();
    assert!(d.run_until(Duration::from_secs(3), |d| d.quorum_up(&k) == Some(true)));
    assert!(d.run_until(Duration::from_secs(3), |_| ready_value(&ready) == "0"));
}
