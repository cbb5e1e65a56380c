//! The rvs-dp binary's start-up: a bad config or command line stops it with a
//! message naming the file, the key and the problem, before EAL starts.
#![cfg(feature = "dpdk")]

use std::process::Command;

fn rvs_dp(config_text: Option<&str>, extra: &[&str]) -> (i32, String) {
    let dir = std::env::temp_dir().join(format!("rvs-dp-binary-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("rvs.toml");
    if let Some(t) = config_text {
        std::fs::write(&cfg, t).unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_rvs-dp"))
        .args(["--no-huge", "-m", "64", "--no-pci", "--no-shconf", "--"])
        .arg("--config")
        .arg(&cfg)
        .args(extra)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

const PORT: &str = "[[port]]\nname = \"p0\"\ndevice = \"net_null0\"\naddress = \"10.9.0.1/24\"\n";

#[test]
fn startup_errors_name_file_key_and_problem() {
    let (code, err) = rvs_dp(None, &[]);
    assert_eq!(code, 1);
    assert!(err.contains("rvs.toml: cannot read"), "{err}");

    let (code, err) = rvs_dp(
        Some("[dataplane]\nworkers = [1]\nconn_capacity = \"many\"\n"),
        &[],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("rvs.toml") && err.contains("conn_capacity") && err.contains("line 3"),
        "{err}"
    );

    let bad_addr = PORT.replace("10.9.0.1/24", "10.9.0.1");
    let (code, err) = rvs_dp(Some(&bad_addr), &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("port[0] (p0).address") && err.contains("ADDRESS/PREFIX"),
        "{err}"
    );

    let (code, err) = rvs_dp(Some("[dataplane]\nworkers = [1]\n"), &[]);
    assert_eq!(code, 1);
    assert!(err.contains("at least one [[port]]"), "{err}");

    let bad_vs =
        format!("{PORT}[[virtual_server]]\naddress = \"10.9.0.100\"\nport = 80\nlb_algo = \"fastest\"\n");
    let (code, err) = rvs_dp(Some(&bad_vs), &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("lb_algo") && err.contains("unknown scheduler 'fastest'"),
        "{err}"
    );

    let (code, err) = rvs_dp(Some(PORT), &["--bogus"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("unknown argument '--bogus'") && err.contains("usage"),
        "{err}"
    );
}

/// Runs rvs-dp with EAL on lcore 0 only (EAL starts: these errors come after it).
fn rvs_dp_eal(cfg: &str) -> (Option<i32>, String) {
    let dir = std::env::temp_dir().join(format!("rvs-dp-dev-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rvs.toml");
    std::fs::write(&path, cfg).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rvs-dp"))
        .args([
            "-l",
            "0",
            "--no-huge",
            "-m",
            "256",
            "--no-pci",
            "--no-shconf",
            "--log-level=lib.eal:error",
            "--",
        ])
        .arg("--config")
        .arg(&path)
        .arg("--ctl")
        .arg(dir.join("ctl"))
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn eal_time_errors_are_named() {
    let (code, err) = rvs_dp_eal(&format!("[dataplane]\nworkers = [7]\n{PORT}"));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("dataplane.workers: lcore 7 is not enabled in EAL"),
        "{err}"
    );

    let nodev = "[dataplane]\nworkers = [0]\n[[port]]\nname = \"p0\"\ndevice = \"net_nosuchdriver0\"\naddress = \"10.9.0.1/24\"\n";
    let (code, err) = rvs_dp_eal(nodev);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("port[0] (p0).device"), "{err}");
}

/// A pcap file of `frames` 60-byte frames (their content does not matter here).
fn write_pcap(path: &std::path::Path, frames: usize) {
    let mut out = Vec::with_capacity(24 + frames * 76);
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0]);
    for i in 0..frames {
        out.extend_from_slice(&(i as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&60u32.to_le_bytes());
        out.extend_from_slice(&60u32.to_le_bytes());
        let mut f = [0u8; 60];
        f[12] = 0x08;
        out.extend_from_slice(&f);
    }
    std::fs::write(path, out).unwrap();
}

/// net_pcap with infinite_rx=1 keeps every frame of its file in an mbuf:
/// a file bigger than the pool must fail with a message naming the config
/// key and the numbers, not DPDK's bare "Invalid argument".
#[test]
fn pcap_bigger_than_the_pool_names_dataplane_mbufs() {
    let dir = std::env::temp_dir().join(format!("rvs-dp-pcap-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("big.pcap");
    write_pcap(&pcap, 5000);
    let cfg = format!(
        "[dataplane]\nworkers = [0]\nmbufs = 4095\n[[port]]\nname = \"gen\"\n\
         device = \"net_pcap0,rx_pcap={},infinite_rx=1\"\naddress = \"10.9.0.1/24\"\n",
        pcap.display()
    );
    let (code, err) = rvs_dp_eal(&cfg);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, Some(1), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("rvs-dp:") && l.contains("port[0] (gen).device"))
        .unwrap_or_else(|| panic!("no port error in: {err}"));
    assert!(
        line.contains("[dataplane] mbufs") && line.contains("5000 frames") && line.contains("4095"),
        "{line}"
    );
}

/// A second rvs-dp on the same EAL runtime directory used to end with
/// "rte_eal_init: Success (errno 0)": it must name the process in the way and
/// the option that avoids it.
#[test]
fn second_primary_on_one_file_prefix_is_named() {
    let dir = std::env::temp_dir().join(format!("rvs-dp-prefix-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("rvs.toml");
    std::fs::write(
        &cfg,
        "[dataplane]\nworkers = [0]\nidle_sleep_us = 100\n[[port]]\nname = \"p0\"\n\
         device = \"net_null0,no-rx=1\"\naddress = \"10.9.0.1/24\"\n",
    )
    .unwrap();
    let prefix = format!("--file-prefix=rvsdup{}", std::process::id());
    let start = |ctl: &str| {
        Command::new(env!("CARGO_BIN_EXE_rvs-dp"))
            .args(["--no-huge", "-m", "128", "--no-pci", "-l", "0", &prefix, "--"])
            .arg("--config")
            .arg(&cfg)
            .arg("--ctl")
            .arg(dir.join(ctl))
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut first = start("first.ctl");
    let t0 = std::time::Instant::now();
    while !dir.join("first.ctl").exists() && t0.elapsed() < std::time::Duration::from_secs(20) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let second = start("second.ctl").wait_with_output().unwrap();
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(first.id() as i32, libc::SIGINT) };
    let _ = first.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{err}");
    let line = err.lines().find(|l| l.starts_with("rvs-dp:")).unwrap_or_default();
    assert!(
        line.contains(&format!("pid {}", first.id()))
            && line.contains("--file-prefix")
            && !line.contains("Success"),
        "{line}"
    );
}

/// A local user (nobody) planted a valid-looking control region naming one of
/// their own live processes: rvs-dp must not take it for another rvs-dp, nor
/// adopt it, but stop with the file, its owner and mode (root only: needs
/// setpriv to act as nobody; skipped otherwise).
#[test]
fn squatted_control_region_stops_rvs_dp_with_the_reason() {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Stdio;

    const SETPRIV: &str = "/usr/bin/setpriv";
    const AS_NOBODY: [&str; 3] = ["--reuid=nobody", "--regid=nogroup", "--clear-groups"];
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !std::path::Path::new(SETPRIV).exists() {
        eprintln!("skipped: needs root and {SETPRIV} to act as the squatter (nobody)");
        return;
    }
    // A world-writable sticky directory, like /dev/shm.
    let dir = std::env::temp_dir().join(format!("rvs-dp-squat-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let ctl = dir.join("rvs.ctl");

    let mut squatter = Command::new(SETPRIV)
        .args(AS_NOBODY)
        .args(["sleep", "60"])
        .spawn()
        .unwrap();
    let built = dir.join("built-by-root.ctl");
    let server = rvs_proto::ring::CtlServer::create(&built, rvs_proto::region::Layout::default()).unwrap();
    let mut bytes = std::fs::read(&built).unwrap();
    drop(server);
    let off = std::mem::offset_of!(rvs_proto::region::Header, dp_pid);
    bytes[off..off + 4].copy_from_slice(&squatter.id().to_ne_bytes());
    let mut plant = Command::new(SETPRIV)
        .args(AS_NOBODY)
        .args(["sh", "-c", "umask 077; cat > \"$1\"", "sh"])
        .arg(&ctl)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    plant.stdin.take().unwrap().write_all(&bytes).unwrap();
    assert!(plant.wait().unwrap().success());

    let cfg = dir.join("rvs.toml");
    std::fs::write(&cfg, format!("[dataplane]\nworkers = [0]\n{PORT}")).unwrap();
    let out = Command::new("timeout")
        .args(["20", env!("CARGO_BIN_EXE_rvs-dp")])
        .args(["-l", "0", "--no-huge", "-m", "256", "--no-pci", "--no-shconf"])
        .args(["--log-level=lib.eal:error", "--", "--config"])
        .arg(&cfg)
        .arg("--ctl")
        .arg(&ctl)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let still_there = std::fs::read(&ctl).unwrap() == bytes;
    let _ = squatter.kill();
    let _ = squatter.wait();
    let _ = std::fs::remove_dir_all(&dir);

    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("refusing control region {}", ctl.display()))
            && err.contains("owner uid 65534 (nobody)")
            && err.contains("mode 0600"),
        "{err}"
    );
    assert!(!err.contains("already owns"), "{err}");
    assert!(still_there, "rvs-dp replaced or wrote the squatter's file");
}
