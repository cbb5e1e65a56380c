//! A local user squats the control region path before rvs-dp starts, in every
//! way we know: a fake region with a live pid of theirs, loose modes, a
//! symlink, a fifo, a directory, the temporary file's name, the directory.
//! rvs-dp (`CtlServer::create`) must refuse with the reason, and root's tools
//! (`CtlClient::open`, `Region::open`) must never talk to such a file.
//!
//! The squatter is `nobody`, via `setpriv`; that needs root (as in CI). Run
//! as another user, each test says it is skipped and passes.

use std::io::Write;
use std::mem::offset_of;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rvs_proto::region::{Header, Layout, Region, RegionError, DEFAULT_PATH};
use rvs_proto::ring::{CtlClient, CtlServer};

const NOBODY_UID: u32 = 65534;
const SETPRIV: &str = "/usr/bin/setpriv";
const AS_NOBODY: [&str; 3] = ["--reuid=nobody", "--regid=nogroup", "--clear-groups"];

/// Whether we can act as `nobody` (root and setpriv), else say why we skip.
fn can_squat() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let ok = root && Path::new(SETPRIV).exists();
    if !ok {
        eprintln!("skipped: needs root and {SETPRIV} to act as the squatter (nobody)");
    }
    ok
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// A fresh directory removed with everything in it on drop. `Shared` is
/// root's and world-writable with the sticky bit, like /dev/shm: where a
/// squatter can create names. `Private` is root's, mode 0700.
struct TestDir(PathBuf);

enum Access {
    Shared,
    Private,
}

impl TestDir {
    fn new(name: &str, access: Access) -> TestDir {
        let dir = std::env::temp_dir().join(format!("rvs-squat-{}-{name}-{}", std::process::id(), nanos()));
        std::fs::create_dir(&dir).unwrap();
        let mode = match access {
            Access::Shared => 0o1777,
            Access::Private => 0o700,
        };
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
        TestDir(dir)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `sh -c script` as nobody with `$1...` = `args` and `stdin`; must succeed.
fn as_nobody(script: &str, args: &[&Path], stdin: &[u8]) {
    let mut child = Command::new("timeout")
        .arg("10")
        .arg(SETPRIV)
        .args(AS_NOBODY)
        .args(["sh", "-c", script, "sh"])
        .args(args)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let st = child.wait().unwrap();
    assert!(st.success(), "as nobody: {script}: {st}");
}

/// A process of nobody's that stays alive while the test runs: the squatter's
/// fake "rvs-dp".
struct NobodyProcess(Child);

impl NobodyProcess {
    fn start() -> NobodyProcess {
        let c = Command::new(SETPRIV)
            .args(AS_NOBODY)
            .args(["sleep", "60"])
            .spawn()
            .unwrap();
        // setpriv execs sleep: same pid.
        std::thread::sleep(Duration::from_millis(50));
        NobodyProcess(c)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for NobodyProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The bytes of a valid, ready region whose header names `dp_pid`: what a
/// squatter builds with this crate's own types.
fn fake_region(dp_pid: u32) -> Vec<u8> {
    let dir = TestDir::new("fake", Access::Private);
    let path = dir.join("real.ctl");
    let server = CtlServer::create(&path, Layout::default()).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    drop(server);
    let off = offset_of!(Header, dp_pid);
    bytes[off..off + 4].copy_from_slice(&dp_pid.to_ne_bytes());
    bytes
}

/// Runs `f` on its own thread and fails the test if it takes over 5 s (a fifo
/// opened for real would block forever).
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(5))
        .unwrap_or_else(|_| panic!("{what} did not return within 5 s"))
}

fn client_err(path: &Path) -> String {
    let p = path.to_path_buf();
    let e = bounded("CtlClient::open", move || CtlClient::open(&p).err());
    let Some(e) = e else {
        panic!("root's CtlClient opened the squatted {}", path.display())
    };
    let p = path.to_path_buf();
    let e2 = bounded("Region::open", move || Region::open(&p).err());
    assert!(e2.is_some(), "Region::open accepted {}", path.display());
    e.to_string()
}

fn server_err(path: &Path) -> String {
    let p = path.to_path_buf();
    match bounded("CtlServer::create", move || {
        CtlServer::create(&p, Layout::default()).err()
    }) {
        Some(e) => e.to_string(),
        None => panic!("rvs-dp adopted the squatted {}", path.display()),
    }
}

/// The error names the file, its owner and mode, and why, and is not the
/// squatter's story ("another rvs-dp ... already owns").
fn assert_refusal(msg: &str, path: &Path, parts: &[&str]) {
    let path = path.display().to_string();
    assert!(msg.contains(&format!("refusing control region {path}")), "{msg}");
    for p in parts {
        assert!(msg.contains(p), "missing {p:?} in: {msg}");
    }
    assert!(!msg.contains("already owns"), "{msg}");
}

#[test]
fn fake_region_with_a_live_pid_of_the_squatter_is_refused() {
    if !can_squat() {
        return;
    }
    let dir = TestDir::new("fake-live", Access::Shared);
    let path = dir.join("rvs.ctl");
    let squatter = NobodyProcess::start();
    as_nobody("umask 077; cat > \"$1\"", &[&path], &fake_region(squatter.pid()));
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (NOBODY_UID, 0o600));

    let owner = format!("owner uid {NOBODY_UID} (nobody)");
    let why = ["owned by another user", "regular file", &owner, "mode 0600"];
    assert_refusal(&client_err(&path), &path, &why);
    assert_refusal(&server_err(&path), &path, &why);
    // rvs-dp neither adopted nor replaced it.
    assert_eq!(std::fs::symlink_metadata(&path).unwrap().ino(), meta.ino());
}

#[test]
fn loose_modes_are_refused_whoever_owns_the_file() {
    if !can_squat() {
        return;
    }
    let dir = TestDir::new("modes", Access::Shared);
    let squatter = NobodyProcess::start();
    for mode in ["0644", "0666"] {
        let path = dir.join(&format!("rvs-{mode}.ctl"));
        as_nobody(
            &format!("cat > \"$1\"; chmod {mode} \"$1\""),
            &[&path],
            &fake_region(squatter.pid()),
        );
        let mode_part = format!("mode {mode}");
        let why = ["owner uid 65534 (nobody)", mode_part.as_str()];
        assert_refusal(&client_err(&path), &path, &why);
        assert_refusal(&server_err(&path), &path, &why);
    }
    // Root's own, live region made group/world-readable: refused by tools too.
    let path = dir.join("root.ctl");
    let _server = CtlServer::create(&path, Layout::default()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_refusal(
        &client_err(&path),
        &path,
        &["mode is not 0600", "owner uid 0 (root)", "mode 0644"],
    );
}

#[test]
fn symlink_to_a_root_file_is_refused_and_never_followed() {
    if !can_squat() {
        return;
    }
    let private = TestDir::new("link-target", Access::Private);
    let real = private.join("real.ctl");
    let server = CtlServer::create(&real, Layout::default()).unwrap();
    let secret = private.join("secret");
    std::fs::write(&secret, b"root's data").unwrap();

    let dir = TestDir::new("link", Access::Shared);
    for (name, target) in [("to-region.ctl", &real), ("to-secret.ctl", &secret)] {
        let path = dir.join(name);
        as_nobody("ln -s \"$1\" \"$2\"", &[target, &path], b"");
        let why = ["not a regular file (symlink, owner uid 65534 (nobody)"];
        assert_refusal(&client_err(&path), &path, &why);
        assert_refusal(&server_err(&path), &path, &why);
    }
    assert_eq!(std::fs::read(&secret).unwrap(), b"root's data");
    // The real region behind the link is untouched and still served.
    assert_eq!(CtlClient::open(&real).unwrap().generation(), server.generation());
}

#[test]
fn fifo_and_directory_are_refused_without_blocking() {
    if !can_squat() {
        return;
    }
    let dir = TestDir::new("special", Access::Shared);
    let fifo = dir.join("fifo.ctl");
    let sub = dir.join("dir.ctl");
    as_nobody("mkfifo -m 600 \"$1\" && mkdir \"$2\"", &[&fifo, &sub], b"");
    for (path, kind) in [(&fifo, "fifo"), (&sub, "directory")] {
        let why = format!("not a regular file ({kind}, owner uid 65534 (nobody)");
        assert_refusal(&client_err(path), path, &[&why]);
        assert_refusal(&server_err(path), path, &[&why]);
    }
}

#[test]
fn squatted_temporary_file_is_refused_not_followed() {
    if !can_squat() {
        return;
    }
    let private = TestDir::new("tmp-target", Access::Private);
    let secret = private.join("secret");
    std::fs::write(&secret, b"root's data").unwrap();
    let dir = TestDir::new("tmp", Access::Shared);
    let path = dir.join("rvs.ctl");
    // rvs-dp builds the region in PATH.<its pid>.tmp; we are that rvs-dp.
    let tmp = dir.join(&format!("rvs.ctl.{}.tmp", std::process::id()));

    as_nobody("ln -s \"$1\" \"$2\"", &[&secret, &tmp], b"");
    let msg = server_err(&path);
    let tmp_s = tmp.display().to_string();
    assert!(
        msg.contains(&format!("refusing temporary control region {tmp_s}")),
        "{msg}"
    );
    assert!(
        msg.contains("symlink") && msg.contains("owner uid 65534 (nobody)"),
        "{msg}"
    );
    assert_eq!(std::fs::read(&secret).unwrap(), b"root's data");
    assert!(!path.exists());

    std::fs::remove_file(&tmp).unwrap();
    as_nobody("umask 077; : > \"$1\"", &[&tmp], b"");
    let msg = server_err(&path);
    assert!(
        msg.contains(&format!("refusing temporary control region {tmp_s}")),
        "{msg}"
    );
    assert!(msg.contains("owned by another user"), "{msg}");

    // Our own leftover (a crashed rvs-dp with this pid) is simply replaced.
    std::fs::remove_file(&tmp).unwrap();
    std::fs::write(&tmp, b"").unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).unwrap();
    let server = CtlServer::create(&path, Layout::default()).unwrap();
    assert!(!tmp.exists());
    drop(server);
}

#[test]
fn region_directory_rules() {
    if !can_squat() {
        return;
    }
    let base = TestDir::new("dirs", Access::Private);

    // Missing: created, mode 0700, like /run/rvs on a fresh boot.
    let fresh = base.join("rvs");
    let server = CtlServer::create(&fresh.join("rvs.ctl"), Layout::default()).unwrap();
    let meta = std::fs::metadata(&fresh).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o7777), (0, 0o700));
    let meta = std::fs::metadata(fresh.join("rvs.ctl")).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o600);
    drop(server);

    // Group/world-writable without the sticky bit: others could swap the file.
    let open = base.join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let msg = server_err(&open.join("rvs.ctl"));
    assert!(
        msg.contains(&format!("refusing control directory {}", open.display())),
        "{msg}"
    );
    assert!(
        msg.contains("writable by group or others, and not sticky") && msg.contains("mode 0777"),
        "{msg}"
    );

    // Sticky and world-writable, like /dev/shm: fine.
    let shared = TestDir::new("dirs-shared", Access::Shared);
    drop(CtlServer::create(&shared.join("rvs.ctl"), Layout::default()).unwrap());

    // A squatter's directory, and a squatter's symlink to root's directory.
    let theirs = shared.join("rvs");
    let link = shared.join("rvs-link");
    as_nobody(
        "mkdir -m 700 \"$1\" && ln -s \"$2\" \"$3\"",
        &[&theirs, &fresh, &link],
        b"",
    );
    for d in [&theirs, &link] {
        let msg = server_err(&d.join("rvs.ctl"));
        assert!(
            msg.contains(&format!("refusing control directory {}", d.display())),
            "{msg}"
        );
        assert!(msg.contains("owner uid 65534 (nobody)"), "{msg}");
    }
}

#[test]
fn default_path_is_in_a_directory_of_its_own() {
    assert_eq!(DEFAULT_PATH, "/run/rvs/rvs.ctl");
    // Not a world-writable directory like /dev/shm or /tmp.
    let dir = Path::new(DEFAULT_PATH).parent().unwrap();
    assert!(!dir.starts_with("/dev/shm") && !dir.starts_with("/tmp"));
}

#[test]
fn refusals_are_the_untrusted_error() {
    if !can_squat() {
        return;
    }
    let dir = TestDir::new("variant", Access::Shared);
    let path = dir.join("rvs.ctl");
    as_nobody("umask 077; : > \"$1\"", &[&path], b"");
    assert!(matches!(Region::open(&path), Err(RegionError::Untrusted(_))));
}
