//! The reader end to end on files written to a temporary directory: each
//! keyword, includes, comments, errors and warnings with their lines.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use rvs_proto::types::ForwardMethod;

use super::*;
use crate::config::{CheckKind, StartState};
use crate::reconcile::initial_table;
use crate::source::save_text;

/// A fresh directory under the system temp dir, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "rvs-kconf-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn read(text: &str) -> Result<KeepalivedConf, KeepalivedError> {
    let d = Dir::new();
    let p = d.write("keepalived.conf", text);
    load_as(&p, "lb1")
}

fn ok(text: &str) -> KeepalivedConf {
    read(text).unwrap_or_else(|e| panic!("{e}"))
}

/// The error with the file's directory cut, so that it reads `keepalived.conf:LINE: ...`.
fn error(text: &str) -> String {
    let e = read(text).unwrap_err();
    let file = Path::new(&*e.loc.file)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    format!("{file}:{}: {}", e.loc.line, e.msg)
}

fn rules(k: &KeepalivedConf) -> String {
    save_text(&initial_table(&k.config)).unwrap()
}

#[test]
fn every_virtual_server_keyword() {
    let k = ok(r#"
virtual_server 10.1.0.1 80 {
    delay_loop 2
    lb_algo wrr
    lb_kind DR
    persistence_timeout 600
    persistence_granularity 255.255.255.0
    protocol TCP
    quorum 2
    hysteresis 1
    sorry_server 10.2.0.99 80
    inhibit_on_failure
    sh-port
    omega
    real_server 10.2.0.1 80 {
        weight 3
        uthreshold 100
        lthreshold 50
        TCP_CHECK {
            connect_ip 10.2.0.101
            connect_port 8080
            connect_timeout 2.5
            retry 2
            delay_before_retry 0.5
        }
    }
    real_server 10.2.0.2 80 {
        inhibit_on_failure false
        lb_kind TUN
    }
}
"#);
    assert!(k.warnings.is_empty(), "{:?}", k.warnings);
    let s = &k.config.services[0];
    assert_eq!(s.spec.scheduler, "wrr");
    assert_eq!(s.spec.persistence, Some(600));
    assert_eq!(s.spec.netmask.to_string(), "255.255.255.0");
    assert!(s.spec.flags.port);
    assert_eq!((s.quorum, s.hysteresis), (2, 1));
    assert_eq!(s.sorry.as_ref().unwrap().rip.to_string(), "10.2.0.99");
    let r0 = &s.reals[0];
    assert_eq!(r0.dest.method, ForwardMethod::Dr);
    assert_eq!(
        (r0.dest.weight, r0.dest.u_threshold, r0.dest.l_threshold),
        (3, 100, 50)
    );
    assert!(r0.inhibit_on_failure, "inherited from the virtual server");
    let c = r0.check.as_ref().unwrap();
    assert_eq!(c.kind, CheckKind::Tcp);
    assert_eq!(c.target.to_string(), "10.2.0.101:8080");
    assert_eq!(c.connect_timeout, Duration::from_millis(2500));
    assert_eq!(c.fall, 3, "keepalived's retry 2: down after 1 + 2 failures");
    assert_eq!(c.rise, 1);
    assert_eq!(c.retry_delay, Duration::from_millis(500));
    assert_eq!(
        c.delay,
        Duration::from_secs(2),
        "delay_loop of the virtual server"
    );
    assert_eq!(c.start, StartState::Up, "no alpha: up at start");
    let r1 = &s.reals[1];
    assert_eq!(r1.dest.method, ForwardMethod::Tun);
    assert!(!r1.inhibit_on_failure);
    // ipvsadm names the flags after the scheduler: sh-port is flag-2 for wrr.
    assert_eq!(
        rules(&k),
        "-A -t 10.1.0.1:80 -s wrr -p 600 -M 255.255.255.0 -b flag-2\n\
         -a -t 10.1.0.1:80 -r 10.2.0.1:80 -g -w 3 -x 100 -y 50\n\
         -a -t 10.1.0.1:80 -r 10.2.0.2:80 -i -w 1 --tun-type ipip\n"
    );
}

#[test]
fn keepalived_defaults() {
    let k = ok("virtual_server 10.1.0.1 80 {\n persistence_timeout\n real_server 10.2.0.1 8080 {\n  HTTP_GET {\n   url {\n    path /health\n   }\n  }\n }\n real_server 10.2.0.2 8080 {\n  MISC_CHECK {\n   misc_path \"/bin/check a b\"\n  }\n }\n}\n");
    let s = &k.config.services[0];
    assert_eq!(s.spec.scheduler, "wlc");
    assert_eq!(s.spec.persistence, Some(360));
    assert_eq!(s.quorum, 1);
    let http = s.reals[0].check.as_ref().unwrap();
    assert_eq!(http.delay, Duration::from_secs(60));
    assert_eq!(http.connect_timeout, Duration::from_secs(5));
    assert_eq!(http.fall, 2, "retry 1");
    assert_eq!(http.retry_delay, Duration::from_secs(3), "HTTP_GET: 3 s");
    let CheckKind::Http {
        path, status_codes, ..
    } = &http.kind
    else {
        panic!("{:?}", http.kind)
    };
    assert_eq!(path, "/health");
    assert_eq!(status_codes.len(), 100, "200-299");
    let misc = s.reals[1].check.as_ref().unwrap();
    assert_eq!(misc.fall, 1, "MISC_CHECK: retry 0");
    assert_eq!(misc.retry_delay, Duration::from_secs(1));
    assert_eq!(
        misc.kind,
        CheckKind::Misc {
            command: "/bin/check a b".into(),
            timeout: Duration::from_secs(60)
        }
    );
}

#[test]
fn http_get_url_keywords() {
    let k = ok("virtual_server 10.1.0.1 80 {\n real_server 10.2.0.1 80 {\n  HTTP_GET {\n   url { path /x\n    digest D41D8CD98F00B204E9800998ECF8427E\n    status_code 200 301-302\n    regex ok\n   }\n   nb_get_retry 4\n  }\n }\n}\n");
    let c = k.config.services[0].reals[0].check.as_ref().unwrap();
    assert_eq!(c.fall, 5);
    assert_eq!(
        c.kind,
        CheckKind::Http {
            path: "/x".into(),
            status_codes: vec![200, 301, 302],
            digest: Some("d41d8cd98f00b204e9800998ecf8427e".into()),
            regex: Some("ok".into()),
        }
    );
}

#[test]
fn alpha_starts_down_and_the_quorum_is_judged_at_start() {
    let text = "virtual_server 10.1.0.1 80 {\n alpha\n quorum 2\n sorry_server 10.2.0.99 80\n real_server 10.2.0.1 80 {\n  TCP_CHECK {\n  }\n }\n real_server 10.2.0.2 80 {\n  TCP_CHECK {\n   alpha false\n  }\n }\n}\n";
    let k = ok(text);
    let s = &k.config.services[0];
    assert_eq!(s.reals[0].check.as_ref().unwrap().start, StartState::Down);
    assert_eq!(
        s.reals[1].check.as_ref().unwrap().start,
        StartState::Up,
        "the checker's alpha wins"
    );
    // Alive weight 1 < quorum 2: the sorry server replaces the real servers.
    assert_eq!(
        rules(&k),
        "-A -t 10.1.0.1:80 -s wlc\n-a -t 10.1.0.1:80 -r 10.2.0.99:80 -m -w 1\n"
    );
    let k = ok(&text.replace("quorum 2", "quorum 1"));
    assert_eq!(
        rules(&k),
        "-A -t 10.1.0.1:80 -s wlc\n-a -t 10.1.0.1:80 -r 10.2.0.2:80 -m -w 1\n"
    );
}

#[test]
fn groups_expand_their_ranges() {
    let k = ok("virtual_server_group G {\n 10.0.0.1 80\n 10.0.1.1-3 443\n 10.0.2.254-10.0.3.1 8080\n 10.0.4.8/30 53\n}\nvirtual_server group G {\n lb_algo rr\n real_server 10.2.0.1 {\n }\n}\n");
    let keys: Vec<String> = k.config.services.iter().map(|s| s.key().to_string()).collect();
    assert_eq!(keys.len(), 1 + 3 + 4 + 4, "{keys:?}");
    assert_eq!(keys[0], "TCP 10.0.0.1:80");
    assert_eq!(keys[3], "TCP 10.0.1.3:443");
    assert_eq!(keys[5], "TCP 10.0.2.255:8080");
    assert_eq!(keys[8], "TCP 10.0.4.8:53");
    assert_eq!(keys[11], "TCP 10.0.4.11:53");
    // The real server without a port takes each service's port.
    assert_eq!(k.config.services[3].reals[0].dest.port, 443);
}

#[test]
fn comments_quotes_and_skipped_blocks() {
    let k = ok(r#"! keepalived
global_defs {          # skipped
   router_id LB1
   notification_email { a@b }
}
vrrp_instance VI_1 { state MASTER
   virtual_ipaddress {
      10.1.0.1
   }
}
static_ipaddress {
   10.9.9.9/24 dev eth0
}
virtual_server 10.1.0.1 80 {   ! the web
    lb_algo rr   # round robin
    real_server 10.2.0.1 80 { weight 2 }
}
"#);
    assert_eq!(k.config.services.len(), 1);
    assert_eq!(k.config.services[0].reals[0].dest.weight, 2);
    assert!(k.warnings.is_empty());
}

#[test]
fn unknown_keywords_in_lvs_blocks_are_warnings_with_their_line() {
    let k = ok("virtual_server 10.1.0.1 80 {\n frobnicate 1\n quorum_up /bin/x\n real_server 10.2.0.1 80 {\n  wiggle\n  TCP_CHECK {\n   bindto 10.0.0.1\n   zap { a }\n  }\n }\n}\n");
    let w: Vec<String> = k
        .warnings
        .iter()
        .map(|w| format!("{}: {}", w.loc.line, w.msg))
        .collect();
    assert_eq!(
        w,
        [
            "2: unknown keyword 'frobnicate' in virtual_server ignored",
            "3: quorum_up ignored: rvs-cp runs no notify scripts",
            "5: unknown keyword 'wiggle' in real_server ignored",
            "7: bindto ignored: rvs-cp's checks use the kernel's source address",
            "8: unknown keyword 'zap' in TCP_CHECK ignored",
        ]
    );
    assert!(k.warnings[0].to_string().contains("keepalived.conf:2: warning: "));
}

#[test]
fn errors_name_file_and_line() {
    let vs = |body: &str| format!("global_defs {{\n}}\nvirtual_server 10.1.0.1 80 {{\n{body}\n}}\n");
    let cases: &[(&str, &str)] = &[
        (
            "virtual_servr 10.1.0.1 80 {\n}\n",
            "keepalived.conf:1: unknown keyword 'virtual_servr'",
        ),
        (
            "virtual_server 10.1.0.1 80 {\n lb_algo rr\n",
            "keepalived.conf:1: block 'virtual_server' is not closed",
        ),
        (
            "virtual_server 10.1.0.300 80 {\n}\n",
            "keepalived.conf:1: virtual_server: '10.1.0.300' is not an IPv4 address",
        ),
        (
            "virtual_server 10.1.0.1 80\n",
            "keepalived.conf:1: virtual_server needs a { ... } block",
        ),
        (
            "virtual_server fwmark 1 {\n}\n",
            "keepalived.conf:1: virtual_server fwmark is not supported",
        ),
        (
            "virtual_server fe80::1 80 {\n}\n",
            "keepalived.conf:1: virtual_server: IPv6 address fe80::1 is not supported",
        ),
        (
            "virtual_server group NOPE {\n}\n",
            "keepalived.conf:1: virtual_server group NOPE: no virtual_server_group NOPE",
        ),
        (
            "virtual_server 10.1.0.1 {\n}\n",
            "keepalived.conf:1: virtual server 10.1.0.1 has no port",
        ),
        (
            "virtual_server_group G {\n 10.0.0.1 80\n fwmark 3\n}\n",
            "keepalived.conf:3: virtual_server_group: fwmark entries are not supported",
        ),
        (
            "virtual_server_group G {\n 10.0.0.9-1 80\n}\n",
            "keepalived.conf:2: '10.0.0.9-1': the range ends before it starts",
        ),
        (
            "virtual_server_group G {\n 10.0.0.0/8 80\n}\n",
            "keepalived.conf:2: '10.0.0.0/8': more than 65536 addresses",
        ),
        ("$X=1\n", "keepalived.conf:1: keepalived's parameter definitions"),
        (
            "virtual_server 10.1.0.1 80 {\n}\nvirtual_server 10.1.0.1 80 {\n}\n",
            "keepalived.conf:3: virtual server TCP 10.1.0.1:80 is already defined at ",
        ),
        (
            "misc_path \"/x\n",
            "keepalived.conf:1: a quoted string is not closed on its line",
        ),
    ];
    for (text, want) in cases {
        let e = error(text);
        assert!(e.starts_with(want), "{text:?}\n  got:  {e}\n  want: {want}");
    }
    let in_vs: &[(&str, &str)] = &[
        (" lb_algo xx", "keepalived.conf:4: lb_algo: unknown scheduler 'xx'"),
        (" lb_kind FOO", "keepalived.conf:4: lb_kind: expects NAT, DR, TUN or FNAT"),
        (" lvs_method TUN type gue port 1", "keepalived.conf:4: lvs_method: tunnel type gue is not supported"),
        (" protocol SCTP", "keepalived.conf:4: protocol SCTP is not supported"),
        (" delay_loop soon", "keepalived.conf:4: delay_loop: 'soon' is not a number of seconds"),
        (" persistence_timeout 0", "keepalived.conf:4: persistence_timeout: must be 1..2678400 seconds"),
        (" persistence_granularity 255.0.255.0", "keepalived.conf:4: persistence_granularity: '255.0.255.0' is not a netmask"),
        (" ops", "keepalived.conf:4: ops (one-packet scheduling) is not supported"),
        (" sorry_server 10.2.0.9 81\n lb_kind DR", "keepalived.conf:3: sorry_server: port 81 differs from the virtual port 80"),
        (" real_server 10.2.0.1 80 {\n  weight 70000\n }", "keepalived.conf:5: weight: '70000' is not a whole number 0..65535"),
        (" lb_kind DR\n real_server 10.2.0.1 81 {\n }", "keepalived.conf:5: port: port 81 differs from the virtual port 80"),
        (" real_server 10.2.0.1 80 {\n }\n real_server 10.2.0.1 80 {\n }", "keepalived.conf:6: real server 10.2.0.1 is already listed at "),
        (" real_server 10.2.0.1 80 {\n  SSL_GET {\n  }\n }", "keepalived.conf:5: SSL_GET is not supported"),
        (" real_server 10.2.0.1 80 {\n  SMTP_CHECK {\n  }\n }", "keepalived.conf:5: SMTP_CHECK is not supported"),
        (" real_server 10.2.0.1 80 {\n  TCP_CHECK {\n  }\n  MISC_CHECK {\n   misc_path /x\n  }\n }", "keepalived.conf:7: a second checker (MISC_CHECK after TCP_CHECK at "),
        (" real_server 10.2.0.1 80 {\n  MISC_CHECK {\n  }\n }", "keepalived.conf:4: misc_check.misc_path: is required"),
        (" real_server 10.2.0.1 80 {\n  MISC_CHECK {\n   misc_path /x\n   misc_dynamic\n  }\n }", "keepalived.conf:7: misc_dynamic is not supported"),
        (" real_server 10.2.0.1 80 {\n  HTTP_GET {\n  }\n }", "keepalived.conf:5: HTTP_GET needs a url"),
        (" real_server 10.2.0.1 80 {\n  HTTP_GET {\n   url {\n    path /\n   }\n   url {\n    path /b\n   }\n  }\n }", "keepalived.conf:9: a second url"),
        (" real_server 10.2.0.1 80 {\n  HTTP_GET {\n   url {\n    status_code 200-99\n   }\n  }\n }", "keepalived.conf:7: status_code: '200-99' is not an HTTP status code"),
        (" real_server 10.2.0.1 80 {\n  HTTP_GET {\n   url {\n    digest xyz\n   }\n  }\n }", "keepalived.conf:4: http_get.digest: must be an MD5 in hex"),
        (" real_server 10.2.0.1 80 {\n  TCP_CHECK {\n   connect_ip ::1\n  }\n }", "keepalived.conf:6: connect_ip: IPv6 address ::1 is not supported"),
    ];
    for (body, want) in in_vs {
        let e = error(&vs(body));
        assert!(e.starts_with(want), "{body:?}\n  got:  {e}\n  want: {want}");
    }
}

#[test]
fn includes_with_globs_relative_to_the_including_file() {
    let d = Dir::new();
    let main = d.write(
        "etc/keepalived.conf",
        "global_defs {\n}\ninclude conf.d/*.conf\ninclude other/{b,a}.inc  # braces\n",
    );
    d.write("etc/conf.d/20-b.conf", "virtual_server 10.1.0.2 80 {\n}\n");
    d.write(
        "etc/conf.d/10-a.conf",
        "virtual_server 10.1.0.1 80 {\n include ../rs/*.rs\n}\n",
    );
    d.write("etc/conf.d/ignored.txt", "not read");
    d.write("etc/rs/1.rs", "real_server 10.2.0.1 80 {\n}\n");
    d.write("etc/other/a.inc", "virtual_server 10.1.0.4 80 {\n}\n");
    d.write("etc/other/b.inc", "virtual_server 10.1.0.3 80 {\n}\n");
    let k = load_as(&main, "x").unwrap();
    let keys: Vec<String> = k.config.services.iter().map(|s| s.key().to_string()).collect();
    assert_eq!(
        keys,
        [
            "TCP 10.1.0.1:80",
            "TCP 10.1.0.2:80",
            "TCP 10.1.0.3:80",
            "TCP 10.1.0.4:80"
        ],
        "sorted glob matches, brace alternatives in their written order"
    );
    assert_eq!(k.config.services[0].reals.len(), 1, "include inside a block");

    // An error in an included file names that file and line.
    d.write(
        "etc/conf.d/30-bad.conf",
        "\nvirtual_server 10.1.0.9 80 {\n lb_algo nope\n}\n",
    );
    let e = load_as(&main, "x").unwrap_err();
    assert!(
        e.loc.file.ends_with("conf.d/30-bad.conf") && e.loc.line == 3,
        "{e}"
    );

    // A missing file is an error at the include line; an empty glob a warning.
    let m2 = d.write("etc/two.conf", "\n\ninclude missing.conf\n");
    let e = load_as(&m2, "x").unwrap_err();
    assert_eq!(
        (e.loc.line, e.msg.as_str()),
        (3, "include missing.conf: no such file")
    );
    let m3 = d.write("etc/three.conf", "include none.d/*.conf\n");
    let k = load_as(&m3, "x").unwrap();
    assert_eq!(k.warnings[0].msg, "include none.d/*.conf: no file matches");

    // A loop is refused.
    let l = d.write("etc/loop.conf", "include loop.conf\n");
    assert!(load_as(&l, "x").unwrap_err().msg.contains("include loop"));
}

#[test]
fn a_missing_top_file_is_an_error_naming_it() {
    let e = load_as(Path::new("/nonexistent/keepalived.conf"), "x").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("/nonexistent/keepalived.conf: cannot read"),
        "{e}"
    );
}

/// Pieces of keepalived.conf, put together at random and cut at random:
/// the reader answers Ok or Err, and never panics.
const PIECES: &[&str] = &[
    "virtual_server 10.1.0.1 80 {\n",
    "virtual_server group G {\n",
    "virtual_server_group G {\n 10.0.0.1-3 80\n",
    "virtual_server fwmark 1 {\n",
    "real_server 10.2.0.1 80 {\n",
    "TCP_CHECK {\n",
    "HTTP_GET {\n url {\n path /\n status_code 200-299 1-2\n",
    "MISC_CHECK {\n misc_path \"/bin/true\n",
    "}\n",
    "}}}\n",
    "{\n",
    "lb_algo rr\n",
    "lb_kind DR\n",
    "persistence_timeout\n",
    "persistence_granularity 255.255.255.0\n",
    "quorum 3\nhysteresis 9\n",
    "sorry_server 10.2.0.9\n",
    "alpha\nomega\n",
    "weight 0\n",
    "connect_port 0\n",
    "retry 4294967295\n",
    "delay_loop 1e308\n",
    "10.0.0.0/0 0\n",
    "! comment\n# comment\n",
    "@lb1 quorum 1\n",
    "$X=1\n",
    "include /nonexistent/*\n",
    "global_defs {\n",
    "\"\"\n",
    "\u{0}\u{7f}é\n",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn random_configs_never_panic(picks in prop::collection::vec(0..PIECES.len(), 0..24), cut in 0usize..2000) {
        let mut text: String = picks.iter().map(|i| PIECES[*i]).collect();
        let cut = (0..=cut.min(text.len())).rev().find(|c| text.is_char_boundary(*c)).unwrap_or(0);
        text.truncate(cut);
        let _ = read(&text);
    }

    #[test]
    fn random_bytes_never_panic(text in "[ -~\n{}\"!#]{0,300}") {
        let _ = read(&text);
    }
}

#[test]
fn syn_proxy_as_dpvs_keepalived_writes_it() {
    let k =
        ok("virtual_server 10.1.0.1 80 {\n lb_algo rr\n syn_proxy\n real_server 10.2.0.1 8080 {\n }\n}\n");
    assert!(k.config.services[0].spec.syn_proxy);
    assert!(
        rules(&k).contains("-A -t 10.1.0.1:80 -s rr -j enable\n"),
        "{}",
        rules(&k)
    );
    let e = error("virtual_server 10.1.0.1 80 {\n syn_proxy yes\n}\n");
    assert_eq!(e, "keepalived.conf:2: syn_proxy takes no value");
    let e =
        error("virtual_server 10.1.0.1 80 {\n lb_kind DR\n syn_proxy\n real_server 10.2.0.1 80 {\n }\n}\n");
    assert!(e.contains("SYN proxy") && e.contains("10.2.0.1:80"), "{e}");
}

/// DPVS's keepalived.conf for FULLNAT (its tutorial's shape): `lb_kind
/// FNAT`, a `local_address_group` with a range, `laddr_group_name`,
/// `proxy_protocol`; `--config-test` prints the rules rvsadm -R reads.
#[test]
fn fullnat_as_dpvs_keepalived_writes_it() {
    let k = ok(r#"
local_address_group laddr_g1 {
    10.2.0.200 inside    # use DPDK interface
    10.2.0.210-212 inside
}
local_address_group laddr_g2 {
    10.2.0.220 inside
}
virtual_server 10.1.0.100 80 {
    lb_algo wrr
    lb_kind FNAT
    protocol TCP
    laddr_group_name laddr_g1
    proxy_protocol v2
    real_server 10.2.0.11 8080 {
        weight 3
    }
}
virtual_server 10.1.0.100 443 {
    lb_algo rr
    lb_kind FNAT
    laddr_group_name laddr_g2
    real_server 10.2.0.11 443 {
    }
}
virtual_server 10.1.0.100 53 {
    protocol UDP
    lb_kind FNAT
    real_server 10.2.0.11 53 {
    }
}
"#);
    use rvs_proto::command::ClientAddr;
    let s = &k.config.services;
    assert_eq!(s[0].reals[0].dest.method, ForwardMethod::FullNat);
    assert_eq!(s[0].spec.client_addr, ClientAddr::ProxyV2);
    let lips: Vec<String> = s[0].laddrs.iter().map(|l| l.addr.to_string()).collect();
    assert_eq!(lips, ["10.2.0.200", "10.2.0.210", "10.2.0.211", "10.2.0.212"]);
    assert!(s[0].laddrs.iter().all(|l| l.port_name == "inside"));
    assert_eq!(
        s[1].spec.client_addr,
        ClientAddr::Toa,
        "DPVS writes TOA on FULLNAT TCP"
    );
    assert_eq!(s[2].spec.client_addr, ClientAddr::None, "UDP: no TOA");
    assert!(s[2].laddrs.is_empty());
    assert_eq!(
        rules(&k),
        "\
-A -t 10.1.0.100:80 -s wrr --proxy-protocol v2
-a -t 10.1.0.100:80 -r 10.2.0.11:8080 -b -w 3
--add-laddr -z 10.2.0.200 -t 10.1.0.100:80 -F inside
--add-laddr -z 10.2.0.210 -t 10.1.0.100:80 -F inside
--add-laddr -z 10.2.0.211 -t 10.1.0.100:80 -F inside
--add-laddr -z 10.2.0.212 -t 10.1.0.100:80 -F inside
-A -t 10.1.0.100:443 -s rr --toa
-a -t 10.1.0.100:443 -r 10.2.0.11:443 -b -w 1
--add-laddr -z 10.2.0.220 -t 10.1.0.100:443 -F inside
-A -u 10.1.0.100:53 -s wlc
-a -u 10.1.0.100:53 -r 10.2.0.11:53 -b -w 1
"
    );
    // proxy_protocol disable keeps DPVS's TOA; a NAT real server in the
    // service turns it off (TOA needs FULLNAT throughout).
    let k = ok("virtual_server 10.1.0.1 80 {\n lb_kind FNAT\n proxy_protocol disable\n real_server 10.2.0.1 80 {\n }\n}\n");
    assert_eq!(k.config.services[0].spec.client_addr, ClientAddr::Toa);
    let k = ok("virtual_server 10.1.0.1 80 {\n lb_kind FNAT\n real_server 10.2.0.1 80 {\n }\n real_server 10.2.0.2 80 {\n  lvs_method NAT\n }\n}\n");
    assert_eq!(k.config.services[0].spec.client_addr, ClientAddr::None);
}

#[test]
fn fullnat_errors_name_their_line() {
    let e = error("virtual_server 10.1.0.1 80 {\n lb_kind FNAT\n laddr_group_name g9\n}\n");
    assert_eq!(
        e,
        "keepalived.conf:3: laddr_group_name g9: no local_address_group g9"
    );
    let e = error("local_address_group g {\n 10.2.0.1\n}\n");
    assert!(
        e.starts_with("keepalived.conf:2: local_address_group: an entry is ADDRESS PORT-NAME"),
        "{e}"
    );
    let e = error("local_address_group g {\n 10.2.0.1 inside\n 10.2.0.1 inside\n}\n");
    assert_eq!(
        e,
        "keepalived.conf:3: local_address_group: 10.2.0.1 is listed twice"
    );
    let e = error("local_address_group g {\n 10.2.0.300 inside\n}\n");
    assert!(
        e.starts_with("keepalived.conf:2: ") && e.contains("not an IPv4 address"),
        "{e}"
    );
    let e =
        error("local_address_group g {\n 10.2.0.1 inside\n}\nlocal_address_group g {\n 10.2.0.2 inside\n}\n");
    assert_eq!(e, "keepalived.conf:4: local_address_group g is defined twice");
    let e = error("virtual_server 10.1.0.1 80 {\n lb_kind FNAT\n proxy_protocol v3\n}\n");
    assert_eq!(
        e,
        "keepalived.conf:3: proxy_protocol: 'v3' is not v1, v2 or disable"
    );
    let e = error("virtual_server 10.1.0.1 80 {\n proxy_protocol v2-insecure\n}\n");
    assert!(
        e.starts_with("keepalived.conf:2: proxy_protocol v2-insecure is not supported"),
        "{e}"
    );
    let e = error("virtual_server 10.1.0.1 80 {\n lb_kind FULLNAT\n}\n");
    assert_eq!(e, "keepalived.conf:2: lb_kind: expects NAT, DR, TUN or FNAT");
    let e = error("virtual_server 10.1.0.1 53 {\n protocol UDP\n lb_kind FNAT\n proxy_protocol v1\n}\n");
    assert!(
        e.starts_with("keepalived.conf:1: ") && e.contains("TCP only"),
        "{e}"
    );
    // One service per local address: a group shared by two services.
    let shared = "local_address_group g {\n 10.2.0.1 inside\n}\nvirtual_server 10.1.0.1 80 {\n lb_kind FNAT\n laddr_group_name g\n}\nvirtual_server 10.1.0.1 81 {\n lb_kind FNAT\n laddr_group_name g\n}\n";
    let e = error(shared);
    assert!(
        e.starts_with("keepalived.conf:8: local address 10.2.0.1 of virtual server TCP 10.1.0.1:81 is already used by virtual server TCP 10.1.0.1:80"),
        "{e}"
    );
}

const VI_1: &str = "
vrrp_instance VI_1 {
    interface outside0
    virtual_router_id 51
}
";

#[test]
fn lvs_sync_daemon_starts_master_and_backup_with_the_instance_vrid() {
    use rvs_proto::command::DaemonRole;
    let k = ok(&format!(
        "global_defs {{\n    router_id lb\n    lvs_sync_daemon outside0 VI_1\n}}\n{VI_1}"
    ));
    let s = &k.config.sync;
    assert_eq!(s.len(), 2);
    assert_eq!((s[0].role, s[1].role), (DaemonRole::Master, DaemonRole::Backup));
    for d in s {
        assert_eq!(d.mcast_ifn, "outside0");
        assert_eq!(d.syncid, 51, "id defaults to the instance's virtual_router_id");
        assert_eq!(
            (d.sync_maxlen, d.mcast_group, d.mcast_port, d.mcast_ttl),
            (0, None, 0, 0)
        );
    }
}

#[test]
fn lvs_sync_daemon_options() {
    let k = ok(&format!(
        "global_defs {{\n    lvs_sync_daemon inside0 VI_1 id 7 maxlen 1400 port 8900 ttl 2 group 239.1.2.3\n}}\n{VI_1}"
    ));
    let d = &k.config.sync[1];
    assert_eq!(d.mcast_ifn, "inside0");
    assert_eq!(d.syncid, 7);
    assert_eq!(d.sync_maxlen, 1400);
    assert_eq!(d.mcast_port, 8900);
    assert_eq!(d.mcast_ttl, 2);
    assert_eq!(d.mcast_group, Some("239.1.2.3".parse().unwrap()));
}

#[test]
fn sync_peer_limits_the_backups_sources() {
    let k = ok(&format!(
        "global_defs {{\n    lvs_sync_daemon outside0 VI_1\n    sync_peer 192.0.2.2 192.0.2.3\n    sync_peer 192.0.2.3 198.51.100.7\n}}\n{VI_1}"
    ));
    let s = &k.config.sync;
    assert_eq!(s.len(), 2);
    assert!(s[0].peers.is_empty(), "a master sends, it filters nothing");
    let want: Vec<std::net::Ipv4Addr> = ["192.0.2.2", "192.0.2.3", "198.51.100.7"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    assert_eq!(s[1].peers, want, "the lines add up, each address once");
    // Without it the backup accepts any source, as IPVS.
    let k = ok(&format!(
        "global_defs {{\n    lvs_sync_daemon outside0 VI_1\n}}\n{VI_1}"
    ));
    assert!(k.config.sync[1].peers.is_empty());
}

#[test]
fn sync_peer_hidden_from_keepalived_with_the_rvs_config_id() {
    let text = format!(
        "global_defs {{\n    @rvs lvs_sync_daemon outside0 VI_1\n    @rvs sync_peer 192.0.2.2\n}}\n{VI_1}"
    );
    let d = Dir::new();
    let path = d.write("keepalived.conf", &text);
    let k = load_as(&path, "rvs").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        k.config.sync[1].peers,
        ["192.0.2.2".parse::<std::net::Ipv4Addr>().unwrap()]
    );
    let other = load_as(&path, "lb1").unwrap_or_else(|e| panic!("{e}"));
    assert!(other.config.sync.is_empty(), "other hosts skip both lines");
}

#[test]
fn bad_sync_peer_lines_name_their_line() {
    for (line, want) in [
        ("sync_peer", "needs at least one address"),
        ("sync_peer 192.0.2.300", "'192.0.2.300' is not an IPv4 address"),
        ("sync_peer 224.0.0.81", "224.0.0.81 is no director's address"),
        ("sync_peer 0.0.0.0", "is no director's address"),
    ] {
        let text = format!("global_defs {{\n    lvs_sync_daemon outside0 VI_1\n    {line}\n}}\n{VI_1}");
        let e = error(&text);
        assert!(e.starts_with("keepalived.conf:3: sync_peer"), "{line}: {e}");
        assert!(e.contains(want), "{line}: {e}");
    }
    let e = error("global_defs {\n    sync_peer 192.0.2.2\n}\n");
    assert!(e.contains("sync_peer without lvs_sync_daemon"), "{e}");
}

#[test]
fn no_lvs_sync_daemon_no_daemons() {
    let k = ok(&format!("global_defs {{\n    router_id lb\n}}\n{VI_1}"));
    assert!(k.config.sync.is_empty());
}

#[test]
fn bad_lvs_sync_daemon_lines_name_their_line() {
    let cases = [
        (
            "lvs_sync_daemon outside0",
            "needs an interface and a vrrp_instance",
        ),
        (
            "lvs_sync_daemon outside0 VI_2",
            "no vrrp_instance VI_2 with a virtual_router_id",
        ),
        (
            "lvs_sync_daemon outside0 VI_2 id 3",
            "no vrrp_instance VI_2 in the file",
        ),
        (
            "lvs_sync_daemon outside0 VI_1 id 256",
            "id '256' is not a whole number 0..255",
        ),
        (
            "lvs_sync_daemon outside0 VI_1 maxlen 0",
            "maxlen '0' is not a whole number 1..65507",
        ),
        (
            "lvs_sync_daemon outside0 VI_1 port x",
            "port 'x' is not a whole number 1..65535",
        ),
        (
            "lvs_sync_daemon outside0 VI_1 ttl 0",
            "ttl '0' is not a whole number 1..255",
        ),
        (
            "lvs_sync_daemon outside0 VI_1 group 10.0.0.1",
            "group 10.0.0.1 is not a multicast group",
        ),
        (
            "lvs_sync_daemon outside0 VI_1 group nope",
            "group 'nope' is not an IPv4 address",
        ),
        ("lvs_sync_daemon outside0 VI_1 id", "'id' needs a value"),
        ("lvs_sync_daemon outside0 VI_1 mtu 1500", "unknown option 'mtu'"),
    ];
    for (line, want) in cases {
        let e = error(&format!(
            "global_defs {{\n    router_id lb\n    {line}\n}}\n{VI_1}"
        ));
        assert!(e.starts_with("keepalived.conf:3: lvs_sync_daemon"), "{line}: {e}");
        assert!(e.contains(want), "{line}: {e}");
    }
    let twice = "global_defs {\n    lvs_sync_daemon outside0 VI_1\n    lvs_sync_daemon inside0 VI_1\n}\n";
    let e = error(&format!("{twice}{VI_1}"));
    assert!(
        e.starts_with("keepalived.conf:3: lvs_sync_daemon is already given at "),
        "{e}"
    );
    assert!(e.ends_with("keepalived.conf:2"), "{e}");
}
