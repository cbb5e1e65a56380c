//! Creating and opening the control region, and refusing bad ones without panicking.

use std::fs::OpenOptions;
use std::mem::offset_of;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;

use rvs_proto::region::{Header, Layout, Region, RegionError, ABI_VERSION};
use rvs_proto::ring::{CtlClient, CtlServer};

mod common;
use common::TempPath;

fn poke(path: &Path, off: usize, bytes: &[u8]) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, off as u64).unwrap();
}

fn open_err(path: &Path) -> RegionError {
    match Region::open(path) {
        Ok(_) => panic!("{} opened", path.display()),
        Err(e) => e,
    }
}

/// A pid that certainly belongs to no process: a child that has been reaped.
fn dead_pid() -> u32 {
    let mut c = std::process::Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

#[test]
fn create_then_open_agrees_on_everything() {
    let p = TempPath::new("create");
    let layout = Layout::with_workers(4);
    let server = CtlServer::create(&p.0, layout).unwrap();
    let mode = std::fs::metadata(&p.0).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let client = CtlClient::open(&p.0).unwrap();
    assert_eq!(client.generation(), server.generation());
    assert_ne!(client.generation(), 0);
    let r = client.region();
    assert_eq!(r.layout(), layout);
    assert_eq!(r.dp_pid(), std::process::id());
    assert!(r.is_ready());
    assert!(r.is_current());
    assert_eq!(r.header().abi_version, ABI_VERSION);

    // rvs-dp stopping removes the region; tools then say it is not running.
    drop(server);
    assert!(!r.is_ready());
    drop(client);
    assert!(!p.0.exists());
    let msg = open_err(&p.0).to_string();
    assert_eq!(
        msg,
        format!("rvs-dp is not running (no control region at {})", p.0.display())
    );
}

#[test]
fn missing_file_says_not_running() {
    let p = TempPath::new("missing");
    let e = CtlClient::open(&p.0).err().unwrap();
    assert!(matches!(e, RegionError::NotRunning { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!("rvs-dp is not running (no control region at {})", p.0.display())
    );
}

#[test]
fn other_abi_version_is_refused_with_a_clear_message() {
    let p = TempPath::new("version");
    let _server = CtlServer::create(&p.0, Layout::default()).unwrap();
    poke(
        &p.0,
        offset_of!(Header, abi_version),
        &(ABI_VERSION + 2).to_ne_bytes(),
    );
    let e = open_err(&p.0);
    assert!(
        matches!(e, RegionError::Version { found, ours, .. } if found == ABI_VERSION + 2 && ours == ABI_VERSION)
    );
    assert_eq!(
        e.to_string(),
        format!(
            "control region {} has ABI version {}, this tool speaks {}: rebuild or restart rvs-dp",
            p.0.display(),
            ABI_VERSION + 2,
            ABI_VERSION
        )
    );
    assert!(CtlClient::open(&p.0).is_err());
}

#[test]
fn bad_magic_is_refused() {
    let p = TempPath::new("magic");
    let _server = CtlServer::create(&p.0, Layout::default()).unwrap();
    poke(&p.0, 0, b"NOTRVS!!");
    assert!(matches!(open_err(&p.0), RegionError::BadMagic { .. }));
}

/// Copies a valid region's bytes to another path, truncated to `len`, with
/// the mode rvs-dp gives it (tools refuse anything but 0600).
fn truncated_copy(src: &Path, dst: &Path, len: usize) {
    let bytes = std::fs::read(src).unwrap();
    std::fs::write(dst, &bytes[..len.min(bytes.len())]).unwrap();
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn truncated_files_are_refused() {
    let p = TempPath::new("trunc-src");
    let _server = CtlServer::create(&p.0, Layout::default()).unwrap();
    let full = std::fs::metadata(&p.0).unwrap().len() as usize;
    let hdr = std::mem::size_of::<Header>();
    let q = TempPath::new("trunc");
    for len in [0, 7, 8, 12, hdr - 1, hdr, hdr + 64, full / 2, full - 1] {
        truncated_copy(&p.0, &q.0, len);
        let e = open_err(&q.0);
        assert!(
            matches!(e, RegionError::Corrupt { .. } | RegionError::BadMagic { .. }),
            "len {len}: {e:?}"
        );
        assert!(e.to_string().contains(&q.0.display().to_string()), "{e}");
    }
    // A longer file than the header says is refused too.
    truncated_copy(&p.0, &q.0, full);
    OpenOptions::new()
        .write(true)
        .open(&q.0)
        .unwrap()
        .set_len(full as u64 + 4096)
        .unwrap();
    assert!(matches!(open_err(&q.0), RegionError::Corrupt { .. }));
    // The unmodified copy is fine.
    truncated_copy(&p.0, &q.0, full);
    Region::open(&q.0).unwrap();
}

#[test]
fn corrupt_layout_fields_are_refused() {
    let p = TempPath::new("layout-src");
    let _server = CtlServer::create(&p.0, Layout::default()).unwrap();
    let full = std::fs::metadata(&p.0).unwrap().len() as usize;
    let q = TempPath::new("layout");
    let u32s = [
        (offset_of!(Header, cmd_slots), u32::MAX),
        (offset_of!(Header, cmd_slots), 0),
        (offset_of!(Header, reply_slots), 3),
        (offset_of!(Header, slot_bytes), 7),
        (offset_of!(Header, slot_bytes), 1 << 30),
        (offset_of!(Header, max_msg_bytes), u32::MAX),
        (offset_of!(Header, workers), 100_000),
        (offset_of!(Header, workers), 2),
        (offset_of!(Header, header_bytes), 16),
        (offset_of!(Header, stats_slot_bytes), 64),
        (offset_of!(Header, drop_reasons), 3),
    ];
    for (off, v) in u32s {
        truncated_copy(&p.0, &q.0, full);
        poke(&q.0, off, &v.to_ne_bytes());
        let e = open_err(&q.0);
        assert!(
            matches!(e, RegionError::Corrupt { .. }),
            "u32 at {off} = {v}: {e:?}"
        );
    }
    let u64s = [
        (offset_of!(Header, cmd_off), 0u64),
        (offset_of!(Header, reply_off), u64::MAX),
        (offset_of!(Header, stats_off), full as u64),
        (offset_of!(Header, stats_len), u64::MAX - 10),
        (offset_of!(Header, file_size), 1 << 40),
    ];
    for (off, v) in u64s {
        truncated_copy(&p.0, &q.0, full);
        poke(&q.0, off, &v.to_ne_bytes());
        assert!(
            matches!(open_err(&q.0), RegionError::Corrupt { .. }),
            "u64 at {off} = {v}"
        );
    }
}

#[test]
fn random_header_garbage_never_panics() {
    let p = TempPath::new("fuzz-src");
    let _server = CtlServer::create(&p.0, Layout::default()).unwrap();
    let full = std::fs::metadata(&p.0).unwrap().len() as usize;
    let q = TempPath::new("fuzz");
    let hdr = std::mem::size_of::<Header>();
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut rng = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut refused = 0;
    for _ in 0..300 {
        truncated_copy(&p.0, &q.0, full);
        // Keep magic and version so the checks behind them are exercised.
        for _ in 0..1 + rng() % 4 {
            let off = 16 + (rng() as usize) % (hdr - 16);
            poke(&q.0, off, &[rng() as u8]);
        }
        if Region::open(&q.0).is_err() {
            refused += 1;
        }
    }
    assert!(
        refused > 100,
        "most mutations must be caught, only {refused} were"
    );
}

#[test]
fn region_left_by_a_dead_rvs_dp_is_stale() {
    let p = TempPath::new("stale");
    let server = CtlServer::create(&p.0, Layout::default()).unwrap();
    // Keep a copy of the file as a crashed rvs-dp would leave it.
    let q = TempPath::new("stale-copy");
    std::fs::copy(&p.0, &q.0).unwrap();
    drop(server);
    let pid = dead_pid();
    poke(&q.0, offset_of!(Header, dp_pid), &pid.to_ne_bytes());
    let e = CtlClient::open(&q.0).err().unwrap();
    assert!(
        matches!(e, RegionError::Stale { pid: p, .. } if p == pid),
        "{e:?}"
    );
    assert!(e.to_string().starts_with("rvs-dp is not running"), "{e}");

    // A new rvs-dp takes over a stale region.
    let s2 = CtlServer::create(&q.0, Layout::default()).unwrap();
    CtlClient::open(&q.0).unwrap();
    drop(s2);
}

#[test]
fn create_refuses_a_region_served_by_another_live_rvs_dp() {
    let p = TempPath::new("owned");
    let server = CtlServer::create(&p.0, Layout::default()).unwrap();
    // Pretend pid 1 (always alive) serves it.
    poke(&p.0, offset_of!(Header, dp_pid), &1u32.to_ne_bytes());
    let e = CtlServer::create(&p.0, Layout::default()).err().unwrap();
    assert!(matches!(e, RegionError::AlreadyRunning { pid: 1, .. }), "{e:?}");
    drop(server);
}

#[test]
fn not_ready_region_is_refused() {
    let p = TempPath::new("notready");
    let _server = CtlServer::create(&p.0, Layout::default()).unwrap();
    poke(&p.0, offset_of!(Header, ready), &0u32.to_ne_bytes());
    let e = open_err(&p.0);
    assert!(matches!(e, RegionError::NotReady { .. }), "{e:?}");
}

#[test]
fn invalid_layout_is_refused_at_creation() {
    let p = TempPath::new("badlayout");
    let e = CtlServer::create(
        &p.0,
        Layout {
            slot_bytes: 100,
            ..Layout::default()
        },
    )
    .err()
    .unwrap();
    assert!(matches!(e, RegionError::InvalidLayout(_)), "{e:?}");
    assert!(!p.0.exists());
}
