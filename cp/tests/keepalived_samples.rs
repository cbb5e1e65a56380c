//! keepalived's own sample configurations (installed with keepalived, in
//! /usr/share/doc/keepalived/samples) read by rvs-cp's keepalived.conf
//! reader: every sample is listed below with what rvs-cp must make of it,
//! the rules as `ipvsadm -S -n` would show them right after keepalived
//! started (derived by hand from the sample), or the refusal with its line;
//! and the real keepalived is asked (`keepalived -t -f SAMPLE`) whether it
//! accepts the file, on this host.

use std::path::{Path, PathBuf};
use std::process::Command;

use rvs_cp::keepalived::load_as;
use rvs_cp::reconcile::initial_table;
use rvs_cp::source::save_text;

const SAMPLES: &str = "/usr/share/doc/keepalived/samples";
const KEEPALIVED: &str = "/usr/sbin/keepalived";

enum Expect {
    /// Parses; the rules at start, as `ipvsadm -S -n`.
    Rules(&'static str),
    /// Refused at this line with a message containing this text.
    Refused(usize, &'static str),
    /// No LVS section: zero services.
    NoLvs,
}
use Expect::*;

/// What keepalived -t says on this host (exit 0, or its config-error exit
/// 5). Its refusals are keepalived's own: interfaces the sample names that
/// this host lacks (eth1, eth2, ...), AH with an initial MASTER state, a
/// protocol given for a fwmark service.
#[derive(PartialEq, Debug)]
enum Keepalived {
    Accepts,
    Refuses,
}

const HTTP_1358: &str =
    "-A -t 10.10.10.2:1358 -s rr -p 50\n-a -t 10.10.10.2:1358 -r 192.168.200.2:1358 -m -w 1\n";
const MISC_1358: &str =
    "-A -t 10.10.10.2:1358 -s rr -p 50\n-a -t 10.10.10.2:1358 -r 192.168.200.6:1358 -m -w 1\n";

fn expected() -> Vec<(&'static str, Expect, Keepalived)> {
    use Keepalived::*;
    vec![
        // SSL_GET needs TLS, which rvs-cp's HTTP check does not speak.
        ("keepalived.conf.HTTP_GET.port", Refused(22, "SSL_GET is not supported"), Accepts),
        // Its virtual_server_group (line 7) opens with ae00::2-9 at line 8.
        ("keepalived.conf.IPv6", Refused(8, "IPv6 address ae00::2 is not supported"), Accepts),
        ("keepalived.conf.PING_CHECK", Refused(23, "PING_CHECK is not supported"), Accepts),
        ("keepalived.conf.SMTP_CHECK", Refused(39, "SMTP_CHECK is not supported"), Accepts),
        ("keepalived.conf.SSL_GET", Refused(39, "SSL_GET is not supported"), Refuses),
        ("keepalived.conf.UDP_CHECK", Refused(23, "UDP_CHECK is not supported"), Accepts),
        ("keepalived.conf.conditional_conf", NoLvs, Refuses),
        ("keepalived.conf.fwmark", Refused(7, "virtual_server fwmark is not supported"), Refuses),
        // inhibit_on_failure matters only once the check fails.
        ("keepalived.conf.inhibit", Rules(HTTP_1358), Accepts),
        ("keepalived.conf.misc_check", Rules(MISC_1358), Accepts),
        ("keepalived.conf.misc_check_arg", Rules(MISC_1358), Accepts),
        // alpha: the ten servers start down, so the quorum (7) is lost at
        // start and, without a sorry server, the service has no real server.
        ("keepalived.conf.quorum", Rules("-A -t 10.0.1.1:80 -s wrr -p 900\n"), Accepts),
        // The sorry server stays out: weight 1 alive >= quorum 1.
        ("keepalived.conf.sample", Rules(HTTP_1358), Accepts),
        ("keepalived.conf.status_code", Refused(23, "SSL_GET is not supported"), Accepts),
        ("keepalived.conf.track_interface", NoLvs, Refuses),
        ("keepalived.conf.virtual_server_group", Refused(18, "fwmark entries are not supported"), Accepts),
        ("keepalived.conf.virtualhost", Refused(24, "SSL_GET is not supported"), Accepts),
        ("keepalived.conf.vrrp", NoLvs, Refuses),
        ("keepalived.conf.vrrp.localcheck", NoLvs, Refuses),
        (
            "keepalived.conf.vrrp.lvs_syncd",
            Rules("-A -t 192.168.200.19:80 -s rr -p 50\n-a -t 192.168.200.19:80 -r 192.168.201.100:80 -m -w 1\n"),
            Refuses,
        ),
        ("keepalived.conf.vrrp.routes", NoLvs, Refuses),
        ("keepalived.conf.vrrp.rules", NoLvs, Refuses),
        ("keepalived.conf.vrrp.scripts", NoLvs, Accepts),
        ("keepalived.conf.vrrp.static_ipaddress", NoLvs, Refuses),
        ("keepalived.conf.vrrp.sync", NoLvs, Refuses),
    ]
}

fn samples_dir() -> PathBuf {
    let d = PathBuf::from(SAMPLES);
    assert!(
        d.is_dir() && Path::new(KEEPALIVED).exists(),
        "{SAMPLES} or {KEEPALIVED} is missing: install keepalived (scripts/install-deps.sh does: apt-get install keepalived)"
    );
    d
}

#[test]
fn every_sample_parses_to_its_rules_or_is_refused_with_its_line() {
    let dir = samples_dir();
    let want = expected();
    // Every configuration sample on disk is in the table: none is skipped.
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("keepalived.conf"))
        .collect();
    on_disk.sort();
    let listed: Vec<String> = want.iter().map(|(n, _, _)| n.to_string()).collect();
    assert_eq!(
        on_disk, listed,
        "a sample was added or removed: list it in expected()"
    );

    let mut failures = Vec::new();
    for (name, expect, _) in &want {
        let path = dir.join(name);
        let has_lvs = std::fs::read_to_string(&path).unwrap().contains("virtual_server");
        let got = load_as(&path, "rvs-test");
        match (expect, got) {
            (Rules(text), Ok(k)) => {
                assert!(has_lvs, "{name}");
                let rules = save_text(&initial_table(&k.config)).unwrap();
                if rules != *text {
                    failures.push(format!("{name}: rules\n{rules}want\n{text}"));
                }
            }
            (NoLvs, Ok(k)) => {
                assert!(!has_lvs, "{name}");
                if !k.config.services.is_empty() {
                    failures.push(format!(
                        "{name}: {} services from a file without LVS",
                        k.config.services.len()
                    ));
                }
            }
            (Refused(line, text), Err(e)) => {
                let ok = e.loc.file.ends_with(name) && e.loc.line == *line && e.msg.contains(text);
                if !ok {
                    failures.push(format!("{name}: refused as '{e}', want line {line} and '{text}'"));
                }
            }
            (_, Ok(_)) => failures.push(format!("{name}: parsed, but should be refused")),
            (_, Err(e)) => failures.push(format!("{name}: refused: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_quorum_sample_warns_about_its_notify_scripts() {
    let k = load_as(&samples_dir().join("keepalived.conf.quorum"), "x").unwrap();
    let w: Vec<String> = k
        .warnings
        .iter()
        .map(|w| format!("{}: {}", w.loc.line, w.msg))
        .collect();
    assert_eq!(
        w,
        [
            "33: quorum_up ignored: rvs-cp runs no notify scripts",
            "34: quorum_down ignored: rvs-cp runs no notify scripts"
        ]
    );
}

/// `keepalived -t` ("check the configuration for obvious errors") exits 0
/// for a good file and non-zero (5) otherwise.
#[test]
fn keepalived_itself_accepts_the_samples_it_accepts_here() {
    let dir = samples_dir();
    let mut wrong = Vec::new();
    for (name, _, verdict) in expected() {
        let out = Command::new(KEEPALIVED)
            .args(["-t", "-f"])
            .arg(dir.join(name))
            .output()
            .expect("run keepalived -t");
        let got = if out.status.success() {
            Keepalived::Accepts
        } else {
            Keepalived::Refuses
        };
        if got != verdict {
            wrong.push(format!(
                "{name}: keepalived -t exit {:?}, want {verdict:?}: {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
