//! rvsadm end to end over the in-process transport: the configuration is
//! built with ipvsadm command lines, counters are set by hand, and every
//! listing is compared byte for byte with a golden file. The golden files
//! were written from ipvsadm.c's printf formats (trailing blanks included),
//! not from rvsadm's output.

use std::net::Ipv4Addr;

use rvs_cp::adm::{CtlTransport, DestCounters, LocalTransport};
use rvs_proto::command::{Command, ConnInfo, Rates, Reply, ServiceInfo, WorkerLatency};
use rvs_proto::types::{Proto, ServiceKey, TrafficTotals};

#[path = "common/adm.rs"]
mod adm;
use adm::{golden, ip, key, ok, rvsadm, rvsadm_in};

fn tt(v: [u64; 5]) -> TrafficTotals {
    TrafficTotals {
        conns: v[0],
        inpkts: v[1],
        outpkts: v[2],
        inbytes: v[3],
        outbytes: v[4],
    }
}

fn rates(v: [u64; 5]) -> Rates {
    Rates {
        cps: v[0],
        inpps: v[1],
        outpps: v[2],
        inbps: v[3],
        outbps: v[4],
    }
}

/// Services and real servers are added out of ipvsadm's sort order on purpose.
fn fixture() -> LocalTransport {
    let mut t = LocalTransport::default();
    for line in [
        "-A -u 192.168.1.53:53 -s rr",
        "-a -u 192.168.1.53:53 -r 192.168.1.53:53 -m -w 9",
        "-d -u 192.168.1.53:53 -r 192.168.1.53:53",
        "-a -u 192.168.1.53:53 -r 10.0.2.2:53 -m -w 2",
        "-a -u 192.168.1.53:53 -r 10.0.2.1 -m",
        "-A -t 192.168.1.100:443 -s sh -b sh-fallback,sh-port -p 1800 -M 255.255.255.0",
        "-a -t 192.168.1.100:443 -r 10.0.1.3 -i -w 0",
        "-a -t 192.168.1.100:443 -r 10.0.1.1:443",
        "--add-service --tcp-service 192.168.1.100:80 --scheduler rr",
        "--edit-service --tcp-service 192.168.1.100:80 --scheduler wrr --persistent",
        "-a -t 192.168.1.100:80 -r 10.0.1.2:8080 -m",
        "-a -t 192.168.1.100:80 -r 10.0.1.1:80 -m -w 1",
        "-e -t 192.168.1.100:80 -r 10.0.1.1:80 -m -w 3",
        "-A -t 172.16.0.10:0 -s lc -p 600",
        "-a -t 172.16.0.10:0 -r 10.0.3.1",
        "--set 7200 0 60",
    ] {
        ok(&mut t, line);
    }

    let web = key(Proto::Tcp, "192.168.1.100", 80);
    let tls = key(Proto::Tcp, "192.168.1.100", 443);
    let dns = key(Proto::Udp, "192.168.1.53", 53);
    t.service_counters.insert(
        web,
        (
            tt([1234, 567890, 432100, 123456789012, 987654321]),
            rates([12, 3456, 2345, 123456789, 98765]),
        ),
    );
    t.service_counters
        .insert(tls, (tt([7, 70, 60, 7000, 60000]), rates([1, 2, 3, 400, 5000])));
    t.service_counters.insert(
        dns,
        (
            tt([123456789012345678, 99999999, 100000000, 0, 1]),
            Rates::default(),
        ),
    );
    let dest = |a, i, p, s, r| DestCounters {
        active: a,
        inactive: i,
        persistent: p,
        stats: tt(s),
        rates: rates(r),
    };
    t.dest_counters.insert(
        (web, ip("10.0.1.1"), 80),
        dest(
            5,
            12,
            3,
            [1000, 400000, 300000, 100000000000, 4567890123],
            [10, 3000, 2000, 100000000, 80000],
        ),
    );
    t.dest_counters.insert(
        (web, ip("10.0.1.2"), 8080),
        dest(
            1,
            0,
            1,
            [234, 167890, 132100, 23456789012, 519764198],
            [2, 123456789, 345, 23456789, 18765],
        ),
    );
    t.dest_counters.insert(
        (tls, ip("10.0.1.1"), 443),
        dest(2, 1, 0, [7, 70, 60, 7000, 60000], [1, 2, 3, 400, 5000]),
    );
    t.dest_counters
        .insert((dns, ip("10.0.2.1"), 53), dest(0, 4, 0, [0; 5], [0; 5]));

    let conn = |proto, expires_s, state: &str, c: (&str, u16), v: (&str, u16), r: (&str, u16)| ConnInfo {
        proto,
        state: state.to_string(),
        expires_s,
        cip: ip(c.0),
        cport: c.1,
        vip: ip(v.0),
        vport: v.1,
        rip: ip(r.0),
        rport: r.1,
        laddr: None,
    };
    t.conns = vec![
        conn(
            Proto::Tcp,
            900,
            "ESTABLISHED",
            ("203.0.113.7", 51234),
            ("192.168.1.100", 80),
            ("10.0.1.1", 80),
        ),
        conn(
            Proto::Tcp,
            65,
            "FIN_WAIT",
            ("203.0.113.8", 40000),
            ("192.168.1.100", 80),
            ("10.0.1.2", 8080),
        ),
        conn(
            Proto::Tcp,
            300,
            "NONE",
            ("203.0.113.7", 0),
            ("192.168.1.100", 80),
            ("10.0.1.1", 80),
        ),
        conn(
            Proto::Udp,
            299,
            "UDP",
            ("198.51.100.20", 5353),
            ("192.168.1.53", 53),
            ("10.0.2.2", 53),
        ),
        conn(
            Proto::Tcp,
            3725,
            "ESTABLISHED",
            ("198.51.100.200", 65535),
            ("192.168.1.100", 443),
            ("10.0.1.1", 443),
        ),
    ];
    t
}

#[test]
fn list_numeric() {
    let mut t = fixture();
    assert_eq!(ok(&mut t, "-Ln"), golden("list_numeric.txt"));
    // rvsadm never resolves names: -L and -Ln print the same.
    assert_eq!(ok(&mut t, "-L"), golden("list_numeric.txt"));
    assert_eq!(ok(&mut t, "--list --numeric --sort"), golden("list_numeric.txt"));
    // No arguments at all lists, as ipvsadm does.
    assert_eq!(ok(&mut t, ""), golden("list_numeric.txt"));
}

#[test]
fn list_one_service() {
    let mut t = fixture();
    assert_eq!(ok(&mut t, "-Ln -t 192.168.1.100:80"), golden("list_service.txt"));
    let o = rvsadm(&mut t, "-Ln -t 192.168.1.100:81");
    assert_eq!(
        (o.code, o.stderr.as_str(), o.stdout.as_str()),
        (1, "No such service\n", "")
    );
}

#[test]
fn list_stats_rate_exact() {
    let mut t = fixture();
    assert_eq!(ok(&mut t, "-Ln --stats"), golden("list_stats.txt"));
    assert_eq!(ok(&mut t, "-Ln --rate"), golden("list_rate.txt"));
    assert_eq!(ok(&mut t, "-Ln --exact --stats"), golden("list_exact_stats.txt"));
    assert_eq!(ok(&mut t, "-LnX --stats"), golden("list_exact_stats.txt"));
    // --stats wins over --rate, as in ipvsadm's print_title.
    assert_eq!(ok(&mut t, "-Ln --rate --stats"), golden("list_stats.txt"));
}

#[test]
fn list_thresholds_and_persistent_conn() {
    let mut t = fixture();
    assert_eq!(ok(&mut t, "-Ln --thresholds"), golden("list_thresholds.txt"));
    assert_eq!(
        ok(&mut t, "-Ln --persistent-conn"),
        golden("list_persistent_conn.txt")
    );
}

#[test]
fn list_connections_and_timeouts() {
    let mut t = fixture();
    assert_eq!(ok(&mut t, "-Lnc"), golden("conns.txt"));
    assert_eq!(ok(&mut t, "-L -c -n"), golden("conns.txt"));
    assert_eq!(ok(&mut t, "-L --timeout"), golden("timeout.txt"));
}

#[test]
fn save_numeric() {
    let mut t = fixture();
    assert_eq!(ok(&mut t, "-S -n"), golden("save_numeric.txt"));
    assert_eq!(ok(&mut t, "--save"), golden("save_numeric.txt"));
}

#[test]
fn nosort_shows_insertion_order() {
    let mut t = fixture();
    let out = ok(&mut t, "-Ln --nosort");
    let services: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("TCP") || l.starts_with("UDP"))
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(
        services,
        [
            "192.168.1.53:53",
            "192.168.1.100:443",
            "192.168.1.100:80",
            "172.16.0.10:0"
        ]
    );
    let first_dest = out.lines().find(|l| l.starts_with("  -> 10.")).unwrap();
    assert!(first_dest.contains("10.0.2.2:53"), "{first_dest}");
}

#[test]
fn zero_clears_traffic_counters_only() {
    let mut t = fixture();
    ok(&mut t, "-Z -t 192.168.1.100:443");
    let stats = ok(&mut t, "-Ln --stats");
    let line = |prefix: &str| stats.lines().find(|l| l.starts_with(prefix)).unwrap().to_string();
    assert!(line("TCP  192.168.1.100:443").ends_with("        0        0        0        0        0"));
    assert!(
        line("TCP  192.168.1.100:80 ").contains("1234"),
        "other services keep theirs"
    );
    ok(&mut t, "--zero");
    let stats = ok(&mut t, "-Ln --stats");
    assert!(!stats.contains("1234"));
    // Connection counts are live state, not counters.
    assert_eq!(ok(&mut t, "-Ln"), golden("list_numeric.txt"));
    let o = rvsadm(&mut t, "-Z -t 10.9.9.9:1");
    assert_eq!((o.code, o.stderr.as_str()), (255, "No such service\n"));
}

/// A save file exactly as `ipvsadm -S -n` writes one.
const IPVSADM_SAVE: &str = "\
-A -t 192.168.1.100:80 -s wrr -p 300
-a -t 192.168.1.100:80 -r 10.0.1.1:80 -m -w 3
-a -t 192.168.1.100:80 -r 10.0.1.2:80 -m -w 1
-A -t 192.168.1.100:443 -s wlc -p 300 -M 255.255.255.0
-a -t 192.168.1.100:443 -r 10.0.1.1:443 -g -w 1
-a -t 192.168.1.100:443 -r 10.0.1.2:443 -g -w 0
-A -t 192.168.1.101:80 -s mh -b mh-fallback,mh-port
-a -t 192.168.1.101:80 -r 10.0.2.1:80 -i -w 1 --tun-type ipip
-A -t 192.168.1.102:8080 -s rr -b flag-1
-a -t 192.168.1.102:8080 -r 10.0.2.5:8080 -m -w 65535
-A -u 192.168.1.53:53 -s rr
-a -u 192.168.1.53:53 -r 10.0.2.1:53 -m -w 1
";

#[test]
fn restore_then_save_round_trips() {
    for text in [IPVSADM_SAVE.to_string(), golden("save_numeric.txt")] {
        let mut t = LocalTransport::default();
        let o = rvsadm_in(&mut t, "-R", &text);
        assert_eq!((o.code, o.stderr.as_str()), (0, ""));
        let saved = ok(&mut t, "-S -n");
        assert_eq!(saved, text);
        // And once more through the saved text.
        let mut u = LocalTransport::default();
        assert_eq!(rvsadm_in(&mut u, "--restore", &saved).code, 0);
        assert_eq!(ok(&mut u, "-S -n"), text);
        assert_eq!(u.config, t.config);
    }
}

#[test]
fn restore_accepts_what_ipvsadm_restore_accepts() {
    // ipvsadm-restore input: a leading program name, comments, blank lines,
    // port names, and any command that changes the table.
    let text = "\
# Generated by hand
ipvsadm -C

ipvsadm -A -t 192.168.1.100:http -s wrr -p   # web
-a -t 192.168.1.100:80 -r 10.0.1.1 -m -w 3
--set 900 120 300
-Z
";
    let mut t = fixture();
    let o = rvsadm_in(&mut t, "-R", text);
    assert_eq!((o.code, o.stderr.as_str()), (0, ""));
    assert_eq!(
        ok(&mut t, "-S -n"),
        "-A -t 192.168.1.100:80 -s wrr -p 300\n-a -t 192.168.1.100:80 -r 10.0.1.1:80 -m -w 3\n"
    );
    assert_eq!(
        ok(&mut t, "-L --timeout"),
        "Timeout (tcp tcpfin udp): 900 120 300\n"
    );
}

#[test]
fn a_failed_restore_changes_nothing() {
    let mut t = fixture();
    let before = ok(&mut t, "-S -n");
    // Line 4 adds a real server twice: the kernel's "Destination already exists".
    let text = "-C\n-A -t 10.1.1.1:80 -s rr\n-a -t 10.1.1.1:80 -r 10.0.0.1:80 -m\n-a -t 10.1.1.1:80 -r 10.0.0.1:80 -m\n";
    let o = rvsadm_in(&mut t, "-R", text);
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (255, "line 4: Destination already exists\n")
    );
    assert_eq!(ok(&mut t, "-S -n"), before);
    // A line rvsadm cannot parse: refused before anything is sent.
    let o = rvsadm_in(&mut t, "-R", "-C\n\n-A -t 10.1.1.1:80 -s rr -w 3\n");
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (
            2,
            "line 3: Illegal 'weight' option with the 'add-service' command\n"
        )
    );
    let o = rvsadm_in(&mut t, "-R", "-C\n-A -t 10.1.1.1:80 -s nosuch\n");
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (255, "line 2: Scheduler or persistence engine not found\n")
    );
    assert_eq!(ok(&mut t, "-S -n"), before);
}

#[test]
fn data_plane_refusals_print_ipvsadms_text_and_exit_255() {
    let mut t = fixture();
    let before = ok(&mut t, "-S -n");
    for (line, msg) in [
        ("-A -t 192.168.1.100:80", "Service already exists"),
        (
            "-A -t 10.9.9.9:80 -s nosuch",
            "Scheduler or persistence engine not found",
        ),
        ("-E -t 10.9.9.9:80", "No such service"),
        ("-D -t 10.9.9.9:80", "No such service"),
        ("-a -t 10.9.9.9:80 -r 10.0.0.1", "Service not defined"),
        ("-e -t 10.9.9.9:80 -r 10.0.0.1", "Service not defined"),
        ("-d -t 10.9.9.9:80 -r 10.0.0.1", "Service not defined"),
        (
            "-a -t 192.168.1.100:80 -r 10.0.1.1:80 -m",
            "Destination already exists",
        ),
        ("-e -t 192.168.1.100:80 -r 10.0.1.9:80 -m", "No such destination"),
        ("-d -t 192.168.1.100:80 -r 10.0.1.1:81", "No such destination"),
        (
            "-a -t 192.168.1.100:80 -r 10.0.1.7 -m -y 5",
            "Numerical result out of range",
        ),
        (
            "-a -t 192.168.1.100:80 -r 255.255.255.255 -m",
            "Invalid operation.  Possibly wrong module version, address not unicast, ...",
        ),
    ] {
        let o = rvsadm(&mut t, line);
        assert_eq!((o.code, o.stderr.trim_end()), (255, msg), "{line}");
        assert_eq!(o.stdout, "", "{line}");
    }
    assert_eq!(
        ok(&mut t, "-S -n"),
        before,
        "no refused command changed the table"
    );
}

#[test]
fn command_line_errors_exit_2_or_255_before_any_request() {
    struct Refuse;
    impl CtlTransport for Refuse {
        fn request(&mut self, _: &Command) -> anyhow::Result<Reply> {
            panic!("a bad command line reached the transport");
        }
    }
    for (line, code) in [
        ("-A -t 10.0.0.1:80 -w 1", 2),
        ("-a -t 10.0.0.1:80 -r 10.0.0.2:81 -g", 2),
        ("-A -t 10.0.0.1:0", 2),
        ("-L --bogus", 255),
        ("-n", 255),
    ] {
        let o = rvsadm(&mut Refuse, line);
        assert_eq!(o.code, code, "{line}: {}", o.stderr);
        assert!(!o.stderr.is_empty());
    }
}

#[test]
fn transport_failure_is_reported() {
    struct Down;
    impl CtlTransport for Down {
        fn request(&mut self, _: &Command) -> anyhow::Result<Reply> {
            anyhow::bail!("no shared-memory region at /dev/hugepages/rvs")
        }
    }
    let o = rvsadm(&mut Down, "-Ln");
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("no shared-memory region"), "{}", o.stderr);
}

#[test]
fn json_is_the_reply() {
    let mut t = fixture();
    let out = ok(&mut t, "-Ln --json");
    let Reply::Services(s) = serde_json::from_str::<Reply>(&out).unwrap() else {
        panic!("{out}")
    };
    let order: Vec<u16> = s.iter().map(|s: &ServiceInfo| s.spec.port).collect();
    assert_eq!(order, [0, 80, 443, 53], "sorted as the listing");
    assert_eq!(s[1].stats.inbytes, 123456789012);
    assert_eq!(s[1].dests[1].rates.inpps, 123456789);

    let one = ok(&mut t, "-L -t 192.168.1.100:443 --json");
    let Reply::Services(s) = serde_json::from_str::<Reply>(&one).unwrap() else {
        panic!("{one}")
    };
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].spec.netmask, ip("255.255.255.0"));

    let c = ok(&mut t, "-Lc --json");
    let Reply::Conns(c) = serde_json::from_str::<Reply>(&c).unwrap() else {
        panic!()
    };
    assert_eq!(c.len(), 5);
    let tmo = ok(&mut t, "-L --timeout --json");
    assert_eq!(
        serde_json::from_str::<Reply>(&tmo).unwrap(),
        Reply::Timeouts {
            tcp: 7200,
            tcpfin: 120,
            udp: 60
        }
    );
}

#[test]
fn latency_listing() {
    let mut t = fixture();
    t.latency = vec![
        WorkerLatency {
            worker: 0,
            p50: 850,
            p90: 1200,
            p99: 4100,
            p999: 9800,
            max: 120000,
            count: 1000000,
        },
        WorkerLatency {
            worker: 1,
            count: 0,
            ..Default::default()
        },
    ];
    let out = ok(&mut t, "--latency");
    assert_eq!(ok(&mut t, "-L --latency"), out);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["0", "1000000", "850", "1200", "4100", "9800", "120000"]
    );
    let j = ok(&mut t, "--latency --json");
    assert_eq!(
        serde_json::from_str::<Reply>(&j).unwrap(),
        Reply::Latency(t.latency.clone())
    );
}

#[test]
fn help_and_version() {
    let mut t = LocalTransport::default();
    let h = ok(&mut t, "-h");
    assert!(h.starts_with("Usage:") && h.contains("--add-service"));
    assert!(ok(&mut t, "--version").starts_with("rvsadm "));
}

#[test]
fn conn_table_size_comes_from_the_data_plane() {
    let mut t = fixture();
    t.conn_tab_size = 1 << 20;
    assert!(ok(&mut t, "-Ln").starts_with("IP Virtual Server version 1.2.1 (size=1048576)\n"));
}

#[test]
fn big_connection_listing_comes_in_pages_and_is_complete() {
    // More connections than one reply may carry: rvsadm reads every page.
    let mut t = LocalTransport {
        conns: Vec::new(),
        ..LocalTransport::default()
    };
    t.conns.extend((0..1234u32).map(|i| ConnInfo {
        proto: Proto::Tcp,
        state: "ESTABLISHED".into(),
        expires_s: 899,
        cip: Ipv4Addr::from(0x0a01_0000 + i),
        cport: 40000,
        vip: Ipv4Addr::new(10, 1, 0, 100),
        vport: 80,
        rip: Ipv4Addr::new(10, 2, 0, 11),
        rport: 80,
        laddr: None,
    }));
    let out = ok(&mut t, "-Lnc");
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("TCP ")).collect();
    assert_eq!(lines.len(), 1234);
    assert!(lines[0].contains("10.1.0.0:40000"));
    assert!(lines[1233].contains(&format!("{}:40000", Ipv4Addr::from(0x0a01_0000u32 + 1233))));
}

#[test]
fn the_local_data_plane_answers_as_rvs_dp_does() {
    // rvsadm's fixture and rvs-dp's ControlPlane answer through one piece of
    // code (rvs_proto::serve): same paging caps, same query/change split.
    // (The fixture used to hand back a whole connection listing in one page
    // whatever the limit, where rvs-dp caps a page at CONNS_PAGE.)
    use rvs_dp::control::ControlPlane;
    use rvs_dp::core::{CoreOptions, Shared};
    use rvs_dp::route::RouteTable;
    use rvs_proto::command::ListCursor;
    use std::sync::Arc;

    let conns: Vec<ConnInfo> = (0..1234u32)
        .map(|i| ConnInfo {
            proto: Proto::Tcp,
            state: "ESTABLISHED".into(),
            expires_s: 899,
            cip: Ipv4Addr::from(0x0a01_0000 + i),
            cport: 40000,
            vip: Ipv4Addr::new(10, 1, 0, 100),
            vport: 80,
            rip: Ipv4Addr::new(10, 2, 0, 11),
            rport: 80,
            laddr: None,
        })
        .collect();
    let mut local = LocalTransport {
        conns: conns.clone(),
        conn_tab_size: 1024,
        ..LocalTransport::default()
    };
    let shared = Arc::new(Shared::new(vec![], RouteTable::new(), 1, CoreOptions::default()));
    let mut dp = ControlPlane::new(shared, 1024);
    let script = rvs_cp::adm::save::parse_restore(&golden("save_numeric.txt")).unwrap();
    let Command::Restore(mut cmds) = script.command else {
        panic!()
    };
    cmds.extend([
        Command::ListConnsPage {
            listing: 0,
            offset: 0,
            limit: 5000,
        },
        Command::ListPage {
            generation: None,
            from: ListCursor::default(),
        },
        Command::GetTimeouts,
        Command::GetInfo,
        Command::Zero(None),
        Command::RestoreCommit { restore: 9 },
        Command::DelService(ServiceKey {
            proto: Proto::Tcp,
            vip: Ipv4Addr::new(1, 2, 3, 4),
            port: 1,
        }),
    ]);
    for c in &cmds {
        let want = dp.handle(c, || conns.clone(), Vec::new).0;
        let mut got = local.request(c).unwrap();
        // Generations count differently (rvs-dp also counts its start-up).
        if let (Reply::ServicesPage { generation: g, .. }, Reply::ServicesPage { generation, .. }) =
            (&want, &mut got)
        {
            *generation = *g;
        }
        assert_eq!(got, want, "{c:?}");
    }
}
