//! rvsadm's FULLNAT commands (DPVS's ipvsadm syntax) end to end over the
//! in-process transport: `-b` real servers, `--add-laddr`/`--del-laddr`/
//! `--get-laddr`, `--proxy-protocol`/`--toa`, their listings, `-S | -R`,
//! and their errors. The golden files were written from ipvsadm.c's (and
//! for `-G`, DPVS ipvsadm.c's) printf formats, not from rvsadm's output.

use std::net::SocketAddrV4;

use rvs_cp::adm::{CtlTransport, LocalTransport, WorkerCounters};
use rvs_proto::command::{ClientAddr, Command, ConnInfo, LaddrSpec, Reply};
use rvs_proto::types::{ForwardMethod, Proto};

#[path = "common/adm.rs"]
mod adm;
use adm::{golden, ip, key, ok, rvsadm, rvsadm_in};

/// What `rvsadm -S -n` writes for `fixture()`: services sorted, each
/// followed by its real servers and then its local addresses in the order
/// they were added.
const SAVED: &str = "\
-A -t 192.168.1.100:80 -s wrr --proxy-protocol v2
-a -t 192.168.1.100:80 -r 10.0.1.1:8080 -b -w 3
-a -t 192.168.1.100:80 -r 10.0.1.2:8080 -b -w 2
--add-laddr -z 10.0.9.2 -t 192.168.1.100:80 -F inside
--add-laddr -z 10.0.9.1 -t 192.168.1.100:80 -F inside
-A -t 192.168.1.100:443 -s rr --toa
-a -t 192.168.1.100:443 -r 10.0.1.1:443 -b -w 1
--add-laddr -z 10.0.9.3 -t 192.168.1.100:443 -F inside
-A -u 192.168.1.53:53 -s rr
-a -u 192.168.1.53:53 -r 10.0.2.1:53 -b -w 1
--add-laddr -z 10.0.9.4 -u 192.168.1.53:53 -F outside
";

/// Built with DPVS-style command lines, services out of sort order.
fn fixture() -> LocalTransport {
    let mut t = LocalTransport::default();
    for line in [
        "-A -u 192.168.1.53:53 -s rr",
        "-a -u 192.168.1.53:53 -r 10.0.2.1:53 -b",
        "--add-laddr -z 10.0.9.4 -u 192.168.1.53:53 -F outside",
        "-A -t 192.168.1.100:443 -s rr --toa",
        "-a -t 192.168.1.100:443 -r 10.0.1.1 -b",
        "-P -z 10.0.9.3 -t 192.168.1.100:443 -F inside",
        "-A -t 192.168.1.100:80 -s wrr --proxy-protocol v2",
        "-a -t 192.168.1.100:80 -r 10.0.1.2:8080 -b -w 2",
        "-a -t 192.168.1.100:80 -r 10.0.1.1:8080 -w 3 -b",
        "--add-laddr -z 10.0.9.2 -t 192.168.1.100:80 -F inside",
        "--add-laddr -z 10.0.9.1 -t 192.168.1.100:80 -F inside",
    ] {
        ok(&mut t, line);
    }
    let web = key(Proto::Tcp, "192.168.1.100", 80);
    t.laddr_counters.insert((web, ip("10.0.9.2")), (1200, 7));
    t.laddr_counters.insert((web, ip("10.0.9.1")), (34, 0));
    t.laddr_counters
        .insert((key(Proto::Udp, "192.168.1.53", 53), ip("10.0.9.4")), (5, 0));
    t
}

#[test]
fn the_model_holds_what_the_commands_said() {
    let t = fixture();
    let web = t.config.service(&key(Proto::Tcp, "192.168.1.100", 80)).unwrap();
    assert_eq!(web.spec.client_addr, ClientAddr::ProxyV2);
    assert!(web.dests.iter().all(|d| d.method == ForwardMethod::FullNat));
    assert_eq!(
        web.laddrs,
        vec![
            LaddrSpec {
                addr: ip("10.0.9.2"),
                port_name: "inside".into()
            },
            LaddrSpec {
                addr: ip("10.0.9.1"),
                port_name: "inside".into()
            },
        ]
    );
    let tls = t.config.service(&key(Proto::Tcp, "192.168.1.100", 443)).unwrap();
    assert_eq!(tls.spec.client_addr, ClientAddr::Toa);
    assert_eq!(
        tls.dests[0].port, 443,
        "FULLNAT without a port takes the service's"
    );
}

#[test]
fn list_shows_fullnat_and_the_client_address_option() {
    let mut t = fixture();
    assert_eq!(ok(&mut t, "-Ln"), golden("fullnat_list.txt"));
}

#[test]
fn get_laddr_prints_dpvs_ipvsadms_table() {
    let mut t = fixture();
    assert_eq!(ok(&mut t, "-G"), golden("laddr_all.txt"));
    assert_eq!(ok(&mut t, "--get-laddr"), golden("laddr_all.txt"));
    assert_eq!(
        ok(&mut t, "--get-laddr -t 192.168.1.100:80"),
        golden("laddr_service.txt")
    );
    // No service, no table (as DPVS: the title comes with the first service).
    assert_eq!(ok(&mut LocalTransport::default(), "-G"), "");
    let o = rvsadm(&mut t, "-G -t 192.168.1.100:81");
    assert_eq!(
        (o.code, o.stdout.as_str(), o.stderr.as_str()),
        (1, "", "No such service\n")
    );
}

#[test]
fn get_laddr_json_is_the_reply() {
    let mut t = fixture();
    let v: serde_json::Value = serde_json::from_str(&ok(&mut t, "-G --json -t 192.168.1.100:80")).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    let laddrs = &v[0]["laddrs"];
    assert_eq!(laddrs[0]["spec"]["addr"], "10.0.9.2");
    assert_eq!(laddrs[0]["spec"]["port_name"], "inside");
    assert_eq!(laddrs[0]["conns"], 1200);
    assert_eq!(laddrs[0]["exhausted"], 7);
    assert_eq!(v[0]["service"]["port"], 80);
    let all: serde_json::Value = serde_json::from_str(&ok(&mut t, "-G --json")).unwrap();
    assert_eq!(all.as_array().unwrap().len(), 3);
    // -Ln --json carries the local addresses and the client address mode.
    let l: serde_json::Value = serde_json::from_str(&ok(&mut t, "-Ln --json")).unwrap();
    let web = &l["Services"][0];
    assert_eq!(web["spec"]["client_addr"], "ProxyV2");
    assert_eq!(web["laddrs"][1]["addr"], "10.0.9.1");
}

#[test]
fn save_then_restore_round_trips() {
    let mut t = fixture();
    assert_eq!(ok(&mut t, "-S -n"), SAVED);
    let mut u = LocalTransport::default();
    let o = rvsadm_in(&mut u, "-R", SAVED);
    assert_eq!((o.code, o.stderr.as_str()), (0, ""));
    assert_eq!(ok(&mut u, "-S"), SAVED);
    // The restored table is the fixture's (in save order); local addresses
    // keep the order they were added in.
    for s in t.config.services() {
        let r = u.config.service(&s.spec.key()).unwrap();
        assert_eq!((&r.spec, &r.laddrs), (&s.spec, &s.laddrs));
        let sorted = |d: &[rvs_proto::command::DestSpec]| {
            let mut d = d.to_vec();
            d.sort_by_key(|d| (d.rip, d.port));
            d
        };
        assert_eq!(sorted(&r.dests), sorted(&s.dests));
    }
    assert_eq!(u.config.services().len(), t.config.services().len());
}

#[test]
fn del_laddr_removes_one_address_and_frees_it() {
    let mut t = fixture();
    ok(&mut t, "--del-laddr -z 10.0.9.2 -t 192.168.1.100:80");
    ok(&mut t, "-Q -z 10.0.9.3 -t 192.168.1.100:443 -F inside");
    let saved = ok(&mut t, "-S");
    assert!(!saved.contains("10.0.9.2") && !saved.contains("10.0.9.3"));
    assert!(saved.contains("--add-laddr -z 10.0.9.1 -t 192.168.1.100:80 -F inside"));
    // The freed address can go to another service now.
    ok(&mut t, "--add-laddr -z 10.0.9.2 -t 192.168.1.100:443 -F inside");
}

#[test]
fn data_plane_refusals_exit_255_and_change_nothing() {
    let mut t = fixture();
    let before = t.config.clone();
    for (line, msg) in [
        (
            "--add-laddr -z 10.0.9.1 -t 192.168.1.100:80 -F inside",
            "Local address 10.0.9.1 already exists for this service",
        ),
        (
            "--add-laddr -z 10.0.9.1 -t 192.168.1.100:443 -F inside",
            "Local address 10.0.9.1 is already used by service TCP 192.168.1.100:80",
        ),
        (
            "--add-laddr -z 10.0.9.9 -t 192.168.1.100:81 -F inside",
            "No such service",
        ),
        (
            "--add-laddr -z 255.255.255.255 -t 192.168.1.100:80 -F inside",
            "Invalid operation.  Possibly wrong module version, address not unicast, ...",
        ),
        (
            "--del-laddr -z 10.0.9.9 -t 192.168.1.100:80",
            "No such local address: 10.0.9.9",
        ),
        (
            "-A -u 192.168.1.54:53 --proxy-protocol v1",
            "PROXY protocol and TOA carry the client address in TCP only, not UDP",
        ),
        (
            "-a -t 192.168.1.100:80 -r 10.0.1.3 -m",
            "PROXY protocol and TOA need FULLNAT (-b) real servers: 10.0.1.3:80 is not",
        ),
        (
            "-e -t 192.168.1.100:443 -r 10.0.1.1 -m",
            "PROXY protocol and TOA need FULLNAT (-b) real servers: 10.0.1.1:443 is not",
        ),
    ] {
        let o = rvsadm(&mut t, line);
        assert_eq!(
            (o.code, o.stderr.trim_end(), o.stdout.as_str()),
            (255, msg, ""),
            "{line}"
        );
    }
    assert_eq!(t.config, before, "no refused command changed the table");
}

#[test]
fn command_line_errors_exit_2_before_any_request() {
    struct Refuse;
    impl CtlTransport for Refuse {
        fn request(&mut self, c: &Command) -> anyhow::Result<Reply> {
            panic!("a bad command line reached the data plane: {c:?}")
        }
    }
    for (line, msg) in [
        (
            "--add-laddr -t 192.168.1.100:80 -F inside",
            "You need to supply the 'local-address' option for the 'add-laddr' command",
        ),
        (
            "--add-laddr -z 10.0.9.5 -t 192.168.1.100:80",
            "You need to supply the 'ifname' option for the 'add-laddr' command",
        ),
        (
            "--add-laddr -z 10.0.9 -t 192.168.1.100:80 -F inside",
            "illegal local address",
        ),
        (
            "--add-laddr -z 10.0.9.5 -t 192.168.1.100:80 -F inside -s rr",
            "Illegal 'scheduler' option with the 'add-laddr' command",
        ),
        (
            "-a -t 192.168.1.100:80 -r 10.0.1.3 -b --proxy-protocol v2",
            "Illegal 'proxy-protocol' option with the 'add-server' command",
        ),
        (
            "-A -t 192.168.1.100:80 --proxy-protocol v9",
            "illegal proxy-protocol specified: disable, v1 or v2",
        ),
    ] {
        let o = rvsadm(&mut Refuse, line);
        assert_eq!((o.code, o.stderr.trim_end()), (2, msg), "{line}");
    }
}

#[test]
fn a_restore_with_a_bad_laddr_line_applies_nothing() {
    let mut t = LocalTransport::default();
    let text = "\
-A -t 10.1.0.100:80 -s rr
-a -t 10.1.0.100:80 -r 10.2.0.11 -b
--add-laddr -z 10.2.0.201 -t 10.1.0.100:80 -F inside
--add-laddr -z 10.2.0.201 -t 10.1.0.100:80 -F inside
";
    let o = rvsadm_in(&mut t, "-R", text);
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (
            255,
            "line 4: Local address 10.2.0.201 already exists for this service\n"
        )
    );
    assert!(t.config.services().is_empty());
    let o = rvsadm_in(
        &mut t,
        "-R",
        "-A -t 10.1.0.100:80\n--add-laddr -t 10.1.0.100:80 -F inside\n",
    );
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (
            2,
            "line 2: You need to supply the 'local-address' option for the 'add-laddr' command\n"
        )
    );
    assert!(t.config.services().is_empty());
}

fn conn(
    state: &str,
    expires_s: u32,
    c: (&str, u16),
    v: (&str, u16),
    r: (&str, u16),
    l: Option<(&str, u16)>,
) -> ConnInfo {
    ConnInfo {
        proto: Proto::Tcp,
        state: state.into(),
        expires_s,
        cip: ip(c.0),
        cport: c.1,
        vip: ip(v.0),
        vport: v.1,
        rip: ip(r.0),
        rport: r.1,
        laddr: l.map(|(a, p)| SocketAddrV4::new(ip(a), p)),
    }
}

#[test]
fn connections_show_the_local_address_of_fullnat_entries() {
    let mut t = fixture();
    t.conns = vec![
        conn(
            "ESTABLISHED",
            900,
            ("203.0.113.7", 51234),
            ("192.168.1.100", 80),
            ("10.0.1.1", 8080),
            Some(("10.0.9.1", 1025)),
        ),
        conn(
            "TIME_WAIT",
            65,
            ("203.0.113.8", 40000),
            ("192.168.1.100", 80),
            ("10.0.1.2", 8080),
            Some(("10.0.9.2", 65535)),
        ),
        // A NAT entry in the same listing: `-` in the local column.
        conn(
            "ESTABLISHED",
            300,
            ("203.0.113.9", 1234),
            ("192.168.1.100", 81),
            ("10.0.1.1", 81),
            None,
        ),
    ];
    assert_eq!(ok(&mut t, "-Lnc"), golden("conns-fullnat.txt"));
    assert_eq!(ok(&mut t, "-L -c -n"), golden("conns-fullnat.txt"));
    let persistent = ok(&mut t, "-Lnc --persistent-conn");
    assert_eq!(
        persistent.lines().nth(1),
        Some(
            "pro expire state       source             virtual            local              destination        pe name          pe_data"
        )
    );
    // --json: the FULLNAT entries carry `laddr`, the NAT one has no such key.
    let v: serde_json::Value = serde_json::from_str(&ok(&mut t, "-Lnc --json")).unwrap();
    let conns = v["Conns"].as_array().unwrap();
    assert_eq!(conns[0]["laddr"], "10.0.9.1:1025");
    assert_eq!(conns[1]["laddr"], "10.0.9.2:65535");
    assert!(conns[2].get("laddr").is_none(), "{}", conns[2]);
    // Without a FULLNAT entry the listing is ipvsadm's, no local column.
    t.conns.truncate(0);
    t.conns.push(conn(
        "ESTABLISHED",
        300,
        ("203.0.113.9", 1234),
        ("192.168.1.100", 81),
        ("10.0.1.1", 81),
        None,
    ));
    assert_eq!(
        ok(&mut t, "-Lnc"),
        "IPVS connection entries\n\
         pro expire state       source             virtual            destination\n\
         TCP 05:00  ESTABLISHED 203.0.113.9:1234   192.168.1.100:81   10.0.1.1:81\n"
    );
}

#[test]
fn workers_show_fullnat_replies_by_path() {
    let mut t = fixture();
    let w = |worker: u32, direct: u64, redirected: u64| WorkerCounters {
        worker,
        rx_pkts: 1000 + u64::from(worker),
        tx_pkts: 990,
        redirects_sent: 7,
        redirects_received: 8,
        conns_created: 100,
        conn_table_used: 40,
        fnat_in: 700,
        fnat_out: direct + redirected,
        fnat_replies_direct: direct,
        fnat_replies_redirected: redirected,
        fnat_replies_steered: 3 * u64::from(worker),
        toa_inserted: 300,
        toa_skipped: 1,
        proxy_inserted: 0,
    };
    t.workers = vec![w(0, 245, 255), w(1, 250, 250)];
    assert_eq!(
        ok(&mut t, "--workers"),
        "\
Worker         RxPkts         TxPkts     RedirOut      RedirIn     ConnsNew   ConnsNow
0                1000            990            7            8          100         40
1                1001            990            7            8          100         40
FNAT               In            Out    RepDirect     RepRedir   RepSteered       ToaIns    ToaSkip   ProxyHdr
0                 700            500          245          255            0          300          1          0
1                 700            500          250          250            3          300          1          0
"
    );
    let v: serde_json::Value = serde_json::from_str(&ok(&mut t, "--workers --json")).unwrap();
    assert_eq!(v[1]["fnat_replies_direct"], 250);
    assert_eq!(v[0]["fnat_replies_redirected"], 255);
    assert_eq!(v[1]["fnat_replies_steered"], 3);
    // With another listing option, or on a command that is not a listing: refused.
    assert_eq!(rvsadm(&mut t, "--workers --drops").code, 2);
    assert_eq!(rvsadm(&mut t, "-A -t 10.0.0.1:80 --workers").code, 2);
}
