//! The rvs-cp binary as a process: a real SIGHUP reloads (a bad file is
//! refused and the running state kept), SIGTERM stops it cleanly and leaves
//! rvs-dp's table in place; transitions are logged with their reason.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{wait_for, FakeDp, TcpUp, TempDir};
use rvs_proto::types::{Proto, ServiceKey};

fn key(vip: &str) -> ServiceKey {
    ServiceKey {
        proto: Proto::Tcp,
        vip: vip.parse().unwrap(),
        port: 80,
    }
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on the child we spawned.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, sig) }, 0);
}

#[test]
fn sighup_reloads_and_sigterm_stops() {
    let dir = TempDir::new("proc");
    let dp = FakeDp::start("proc");
    let up = TcpUp::start(0);
    let port = up.port;
    let cfg = dir.path("rvs.toml");
    let v1 = format!(
        r#"
[control]
metrics_listen = "off"
[[virtual_server]]
address = "10.1.0.1"
port = 80
delay_loop = 0.2
[[virtual_server.real_server]]
address = "127.0.0.1"
port = {port}
[virtual_server.real_server.tcp_check]
"#
    );
    std::fs::write(&cfg, &v1).unwrap();
    let log = dir.path("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rvs-cp"))
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "--ctl",
            dp.path.to_str().unwrap(),
        ])
        .env("RVS_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id();
    let stderr = || std::fs::read_to_string(&log).unwrap_or_default();
    let has_real = |dp: &FakeDp| dp.service(&key("10.1.0.1")).is_some_and(|s| s.dests.len() == 1);
    let ok = wait_for(Duration::from_secs(5), || has_real(&dp));
    if !ok {
        let _ = child.kill();
        panic!("rvs-cp did not apply its config: {}", stderr());
    }

    // The real server fails: logged with its reason and count.
    up.close();
    assert!(
        wait_for(Duration::from_secs(3), || !has_real(&dp)),
        "{}",
        stderr()
    );
    let want = format!(
        "real server 127.0.0.1:{port} of TCP 10.1.0.1:80 DOWN: TCP_CHECK connect to 127.0.0.1:{port}:"
    );
    assert!(
        wait_for(Duration::from_secs(2), || stderr().contains(&want)),
        "{}",
        stderr()
    );
    assert!(stderr().contains("(fall 1/1)"), "{}", stderr());

    // SIGHUP with a new service.
    let v2 = format!("{v1}\n[[virtual_server]]\naddress = \"10.1.0.2\"\nport = 80\n");
    std::fs::write(&cfg, &v2).unwrap();
    dp.take_log();
    signal(pid, libc::SIGHUP);
    assert!(
        wait_for(Duration::from_secs(3), || dp.service(&key("10.1.0.2")).is_some()),
        "{}",
        stderr()
    );
    assert!(
        wait_for(Duration::from_secs(2), || stderr().contains("reloaded")),
        "{}",
        stderr()
    );
    assert_eq!(dp.take_log().len(), 1, "only the new service was sent");

    // SIGHUP with a broken file: refused, state kept.
    std::fs::write(&cfg, v2.replace("delay_loop = 0.2", "delay_loop = \"often\"")).unwrap();
    signal(pid, libc::SIGHUP);
    assert!(
        wait_for(Duration::from_secs(3), || stderr().contains("reload refused")),
        "{}",
        stderr()
    );
    assert!(
        stderr().contains(cfg.to_str().unwrap()),
        "the error names the file: {}",
        stderr()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(dp.service(&key("10.1.0.1")).is_some() && dp.service(&key("10.1.0.2")).is_some());
    assert!(dp.take_log().is_empty());

    // SIGTERM: clean exit, rvs-dp's table left as it is.
    signal(pid, libc::SIGTERM);
    let mut status = None;
    assert!(wait_for(Duration::from_secs(5), || {
        status = child.try_wait().unwrap();
        status.is_some()
    }));
    assert!(status.unwrap().success(), "{}", stderr());
    assert_eq!(dp.services().len(), 2);
    assert!(stderr().contains("rvs-dp keeps its table"));
}

#[test]
fn bad_start_and_check_mode() {
    let dir = TempDir::new("proc-bad");
    let cfg = dir.path("rvs.toml");
    std::fs::write(&cfg, "[control]\nstats_interval = 0\n").unwrap();
    let exe = env!("CARGO_BIN_EXE_rvs-cp");
    let out = Command::new(exe)
        .args(["--config", cfg.to_str().unwrap(), "--check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("control.stats_interval"));
    let out = Command::new(exe)
        .args(["--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "a bad file at start is fatal");
    std::fs::write(&cfg, "[[virtual_server]]\naddress = \"10.1.0.1\"\nport = 80\n").unwrap();
    let out = Command::new(exe)
        .args(["-f", cfg.to_str().unwrap(), "--check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK, 1 virtual services, 0 real servers"));
    let out = Command::new(exe).arg("--bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// `--keepalived-conf F --config-test`: the start rules as `ipvsadm -S -n`,
/// or FILE:LINE and the problem with a non-zero exit, as `keepalived -t`.
#[test]
fn keepalived_conf_config_test() {
    let dir = TempDir::new("proc-kconf");
    let kc = dir.path("keepalived.conf");
    std::fs::write(
        &kc,
        "global_defs {\n  router_id LB1\n}\nvrrp_instance VI_1 {\n  state MASTER\n}\n\
         virtual_server 10.1.0.1 80 {\n  lb_algo rr\n  lb_kind DR\n  persistence_timeout\n\
           real_server 10.2.0.2 80 {\n    weight 2\n    TCP_CHECK {\n      connect_timeout 3\n    }\n  }\n\
           real_server 10.2.0.1 80 {\n    notify_up /bin/true\n  }\n}\n",
    )
    .unwrap();
    let exe = env!("CARGO_BIN_EXE_rvs-cp");
    let out = Command::new(exe)
        .args(["--keepalived-conf", kc.to_str().unwrap(), "--config-test"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "-A -t 10.1.0.1:80 -s rr -p 360\n\
         -a -t 10.1.0.1:80 -r 10.2.0.1:80 -g -w 1\n\
         -a -t 10.1.0.1:80 -r 10.2.0.2:80 -g -w 2\n"
    );
    assert!(
        stderr.contains(&format!("{}:18: warning: notify_up ignored", kc.display())),
        "{stderr}"
    );
    let out = Command::new(exe)
        .args(["--keepalived-conf", kc.to_str().unwrap(), "--check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK, 1 virtual services, 2 real servers"));

    std::fs::write(
        &kc,
        "virtual_server 10.1.0.1 80 {\n  lb_algo rr\n  real_server 10.2.0.300 80 {\n  }\n}\n",
    )
    .unwrap();
    let out = Command::new(exe)
        .args(["--keepalived-conf", kc.to_str().unwrap(), "-t"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "no partial rules");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "{}:3: real_server: '10.2.0.300' is not an IPv4 address\n",
            kc.display()
        )
    );

    let out = Command::new(exe)
        .args(["--keepalived-conf", "k.conf", "--config", "rvs.toml", "--check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--config and --keepalived-conf exclude each other")
    );
}

/// rvs-cp on a keepalived.conf: applied at start; at SIGHUP a bad file is
/// refused with its file:line and the running configuration kept, through
/// the same reload as rvs.toml.
#[test]
fn keepalived_conf_runs_and_a_bad_reload_changes_nothing() {
    let dir = TempDir::new("proc-kconf-run");
    let dp = FakeDp::start("proc-kconf-run");
    let kc = dir.path("keepalived.conf");
    let v1 = "virtual_server 10.1.0.1 80 {\n  lb_algo rr\n  real_server 10.2.0.1 80 {\n  }\n}\n";
    std::fs::write(&kc, v1).unwrap();
    let log = dir.path("stderr.log");
    // Off: the default 127.0.0.1:9280 may be taken by another run.
    let mut child = Command::new(env!("CARGO_BIN_EXE_rvs-cp"))
        .args([
            "--keepalived-conf",
            kc.to_str().unwrap(),
            "--ctl",
            dp.path.to_str().unwrap(),
            "--metrics-listen",
            "off",
        ])
        .env("RVS_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id();
    let stderr = || std::fs::read_to_string(&log).unwrap_or_default();
    if !wait_for(Duration::from_secs(5), || {
        dp.service(&key("10.1.0.1")).is_some_and(|s| s.dests.len() == 1)
    }) {
        let _ = child.kill();
        let _ = child.wait();
        panic!("rvs-cp did not apply its keepalived.conf: {}", stderr());
    }
    std::fs::write(&kc, v1.replace("  }\n}\n", "  }\n")).unwrap();
    dp.take_log();
    signal(pid, libc::SIGHUP);
    assert!(
        wait_for(Duration::from_secs(3), || stderr().contains("reload refused")),
        "{}",
        stderr()
    );
    assert!(
        stderr().contains(&format!(
            "{}:1: block 'virtual_server' is not closed",
            kc.display()
        )),
        "{}",
        stderr()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(dp.take_log().is_empty(), "nothing sent after a refused reload");
    assert_eq!(dp.service(&key("10.1.0.1")).map(|s| s.dests.len()), Some(1));
    signal(pid, libc::SIGTERM);
    let mut status = None;
    assert!(wait_for(Duration::from_secs(5), || {
        status = child.try_wait().unwrap();
        status.is_some()
    }));
    assert!(status.unwrap().success(), "{}", stderr());
}

#[test]
fn an_unappliable_file_is_logged_once_and_retried_with_backoff() {
    // rvs-dp's table takes one real server per service; the file has two.
    // Before: "retrying in 1s" and the refusal logged every ~0.1 s (180
    // lines in 6 s). Now each once, and the retries back off.
    let dir = TempDir::new("proc-unappliable");
    let dp = FakeDp::start_with_limits(
        "proc-unappliable",
        rvs_proto::ipvs::Limits {
            max_services: 10,
            max_dests_per_service: 1,
        },
    );
    let cfg = dir.path("rvs.toml");
    let text = "[control]\nmetrics_listen = \"off\"\n[[virtual_server]]\naddress = \"10.1.0.1\"\nport = 80\n\
                [[virtual_server.real_server]]\naddress = \"10.2.0.1\"\n\
                [[virtual_server.real_server]]\naddress = \"10.2.0.2\"\n";
    std::fs::write(&cfg, text).unwrap();
    let log = dir.path("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rvs-cp"))
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "--ctl",
            dp.path.to_str().unwrap(),
        ])
        .env("RVS_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(3500));
    signal(child.id(), libc::SIGTERM);
    let status = child.wait().unwrap();
    let err = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{err}");
    let count = |s: &str| err.matches(s).count();
    assert_eq!(count("refused to add 10.2.0.2:80"), 1, "{err}");
    assert_eq!(count("reconcile incomplete, retrying in 1s"), 1, "{err}");
    assert_eq!(count("reconcile incomplete"), 1, "{err}");
    assert!(
        dp.changes() <= 5,
        "{} change requests in 3.5 s: {err}",
        dp.changes()
    );
}
