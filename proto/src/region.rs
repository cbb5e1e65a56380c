//! The shared-memory control region: one file (default `/run/rvs/rvs.ctl`,
//! mode 0600) that rvs-dp creates and rvsadm / rvs-cp map.
//!
//! ```text
//! 0            Header (magic, ABI version, layout, generation, pid, ready)
//! cmd_off      command ring   (tools -> rvs-dp), see ring.rs
//! reply_off    reply ring     (rvs-dp -> tools), see ring.rs
//! stats_off    one seqlocked stats slot per worker, see statsarea.rs
//! kernel_off   one seqlocked slot for the exception path, see kernelblock.rs
//! ```
//!
//! Every section starts on a 64-byte boundary. A tool never trusts the header:
//! it recomputes the whole geometry from the layout fields and refuses the
//! file unless every offset, length and the file size agree.
//!
//! Restarts: rvs-dp builds the new region in a private temporary file and
//! `rename`s it over the path, so a tool never maps a half-initialised file and
//! never sees the file shrink under its mapping (which would raise SIGBUS). A
//! tool still mapping the old region notices the restart because the path now
//! names another inode (with another `generation`). The one thing we cannot
//! defend against is a third party truncating the file in place.
//!
//! Trust (see trust.rs): both sides open the path without following a symlink
//! and check the descriptor before reading a byte of it: a regular file owned
//! by root or by the process's effective uid, mode 0600. rvs-dp also checks
//! (and if missing creates, mode 0700) the directory. A file that fails is
//! never read: tools refuse to talk to it, and rvs-dp refuses to start rather
//! than adopt or replace it, naming the file, its owner and its mode, so the
//! operator removes it (`Region::create`).

use std::fs::{DirBuilder, File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use memmap2::{MmapOptions, MmapRaw};

use crate::kernelblock::{KernelStatsBlock, KERNEL_PORTS, KERNEL_SLOT_BYTES};
use crate::latency::LATENCY_BUCKETS;
use crate::statsblock::{STATS_REALS, STATS_SERVICES, STATS_SLOT_BYTES};
use crate::trust::{self, Distrust};
use crate::types::DropReason;

pub const MAGIC: [u8; 8] = *b"RVSCTL\0\0";
/// Bump on any change of the header, ring or stats block layout.
pub const ABI_VERSION: u32 = 7;
/// Where rvs-dp serves the region unless `--ctl`, `RVS_CTL` or the config's
/// `dataplane.ctl` say otherwise; every tool's default. Its directory is
/// root's (rvs-dp creates it with mode 0700), not the world-writable
/// `/dev/shm`, where any local user could create the name first.
pub const DEFAULT_PATH: &str = "/run/rvs/rvs.ctl";

const ALIGN: u64 = 64;
/// Ring control block: `head` and `tail` on separate cache lines.
pub(crate) const RING_CTL_BYTES: u64 = 128;
/// Per-slot header: sequence, taken mark, request id, lengths, fragment index.
pub(crate) const SLOT_HDR_BYTES: u64 = 64;

/// Sanity caps, so a corrupt header cannot make a tool map or loop over absurd sizes.
pub const MAX_SLOTS: u32 = 1 << 16;
pub const MAX_SLOT_BYTES: u32 = 1 << 20;
pub const MAX_MSG_BYTES: u32 = 64 << 20;
pub const MAX_WORKERS: u32 = 1024;
const MAX_FILE_BYTES: u64 = 4 << 30;

/// Errors of the control channel, worded for the operator.
#[derive(Debug, thiserror::Error)]
pub enum RegionError {
    #[error("rvs-dp is not running (no control region at {path})")]
    NotRunning { path: String },
    #[error("rvs-dp is not running (control region {path} was left by pid {pid}, which is gone)")]
    Stale { path: String, pid: u32 },
    #[error("rvs-dp (pid {pid}) is starting or stopping (control region {path} not ready)")]
    NotReady { path: String, pid: u32 },
    #[error("another rvs-dp (pid {pid}) already owns the control region {path}")]
    AlreadyRunning { path: String, pid: u32 },
    #[error(
        "control region {path} has ABI version {found}, this tool speaks {ours}: rebuild or restart rvs-dp"
    )]
    Version { path: String, found: u32, ours: u32 },
    #[error("{path} is not an rvs control region (bad magic)")]
    BadMagic { path: String },
    #[error("control region {path} is corrupt: {why}")]
    Corrupt { path: String, why: String },
    /// The file at the path (or its directory) could belong to someone else:
    /// never read, never adopted.
    #[error(transparent)]
    Untrusted(#[from] Box<Distrust>),
    #[error("invalid control region layout: {0}")]
    InvalidLayout(String),
    /// The OS error is part of the message, not a separate cause, so a
    /// tool printing the whole chain says it once.
    #[error("{op} {path}: {err}")]
    Io {
        op: &'static str,
        path: String,
        err: io::Error,
    },
    #[error("message of {len} bytes exceeds the control ring limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("rvs-dp did not answer within {0:?}")]
    Timeout(Duration),
    #[error("rvs-dp did not take the request within {0:?} (command ring full or held by another tool)")]
    Busy(Duration),
    #[error(
        "rvs-dp restarted (generation {old:#x} -> {new:#x}){}; reconnected to the new one, which starts without the old configuration",
        if *.sent { ": the request may have been lost" } else { ": the request was not sent" }
    )]
    Restarted { old: u64, new: u64, sent: bool },
    #[error("the reply was overwritten before it was read (reply ring overrun)")]
    ReplyLost,
    #[error("worker {worker} out of range (region has {workers} workers)")]
    NoSuchWorker { worker: usize, workers: usize },
}

pub type Result<T, E = RegionError> = std::result::Result<T, E>;

/// Sizes rvs-dp chooses when it creates the region. The per-worker stats slot
/// size is not a field: it follows from the fixed `WorkerStatsBlock`
/// (`STATS_SLOT_BYTES`), and the header records it for the tools to check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Slots in the command ring (tools -> rvs-dp).
    pub cmd_slots: u32,
    /// Slots in the reply ring (rvs-dp -> tools).
    pub reply_slots: u32,
    /// Payload bytes per slot (a multiple of 8). Longer messages span several slots.
    pub slot_bytes: u32,
    /// Largest message either way; at most `slots * slot_bytes` of each ring.
    pub max_msg_bytes: u32,
    /// Workers publishing stats.
    pub workers: u32,
}

impl Default for Layout {
    /// 2 MiB of commands, 4 MiB of replies, messages up to 2 MiB: a `-L`
    /// reply costs about 300 bytes per real server, so a director with a few
    /// thousand real servers still lists in one reply, and a restore of a
    /// save file of that size fits one command. (Connection listings come in
    /// pages, whatever the table size.)
    fn default() -> Self {
        Layout {
            cmd_slots: 256,
            reply_slots: 512,
            slot_bytes: 8192,
            max_msg_bytes: 2 << 20,
            workers: 1,
        }
    }
}

impl Layout {
    pub fn with_workers(workers: u32) -> Self {
        Layout {
            workers,
            ..Layout::default()
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        let Layout {
            cmd_slots,
            reply_slots,
            slot_bytes,
            max_msg_bytes,
            workers,
        } = *self;
        for (name, n) in [("cmd_slots", cmd_slots), ("reply_slots", reply_slots)] {
            if n == 0 || n > MAX_SLOTS {
                return Err(format!("{name} = {n}, must be 1..={MAX_SLOTS}"));
            }
        }
        if !(64..=MAX_SLOT_BYTES).contains(&slot_bytes) || !slot_bytes.is_multiple_of(8) {
            return Err(format!(
                "slot_bytes = {slot_bytes}, must be a multiple of 8 in 64..={MAX_SLOT_BYTES}"
            ));
        }
        let ring_min = cmd_slots.min(reply_slots) as u64 * slot_bytes as u64;
        if max_msg_bytes == 0 || max_msg_bytes > MAX_MSG_BYTES || max_msg_bytes as u64 > ring_min {
            return Err(format!(
                "max_msg_bytes = {max_msg_bytes}, must be 1..={} and fit in the smaller ring ({ring_min} bytes)",
                MAX_MSG_BYTES
            ));
        }
        if workers == 0 || workers > MAX_WORKERS {
            return Err(format!("workers = {workers}, must be 1..={MAX_WORKERS}"));
        }
        Ok(())
    }
}

fn align_up(v: u64, a: u64) -> Option<u64> {
    v.checked_add(a - 1).map(|x| x / a * a)
}

/// Where everything lives, derived from a validated `Layout`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub layout: Layout,
    pub slot_stride: u64,
    pub cmd_off: u64,
    pub cmd_len: u64,
    pub reply_off: u64,
    pub reply_len: u64,
    pub stats_off: u64,
    pub stats_len: u64,
    pub kernel_off: u64,
    pub kernel_len: u64,
    pub file_size: u64,
}

impl Geometry {
    pub fn of(layout: Layout) -> Result<Geometry, String> {
        layout.validate()?;
        let overflow = || "sizes overflow".to_string();
        let slot_stride = SLOT_HDR_BYTES + align_up(layout.slot_bytes as u64, ALIGN).ok_or_else(overflow)?;
        let ring_len = |slots: u32| RING_CTL_BYTES + slots as u64 * slot_stride;
        let cmd_off = align_up(std::mem::size_of::<Header>() as u64, ALIGN).ok_or_else(overflow)?;
        let cmd_len = ring_len(layout.cmd_slots);
        let reply_off = cmd_off + cmd_len;
        let reply_len = ring_len(layout.reply_slots);
        let stats_off = reply_off + reply_len;
        let stats_len = layout.workers as u64 * STATS_SLOT_BYTES as u64;
        // Slots are whole cache lines, so this stays 64-byte aligned.
        let kernel_off = stats_off + stats_len;
        let kernel_len = KERNEL_SLOT_BYTES as u64;
        let file_size = align_up(kernel_off + kernel_len, 4096).ok_or_else(overflow)?;
        if file_size > MAX_FILE_BYTES {
            return Err(format!(
                "region would be {file_size} bytes, over the {MAX_FILE_BYTES} cap"
            ));
        }
        Ok(Geometry {
            layout,
            slot_stride,
            cmd_off,
            cmd_len,
            reply_off,
            reply_len,
            stats_off,
            stats_len,
            kernel_off,
            kernel_len,
            file_size,
        })
    }
}

/// The region header. Every bit pattern is a valid `Header`, so a tool can view
/// any mapped file of at least this size as one and then validate it.
#[repr(C)]
pub struct Header {
    pub magic: [u8; 8],
    pub abi_version: u32,
    pub header_bytes: u32,
    pub file_size: u64,
    /// New on every creation by rvs-dp (wall-clock ns, never equal to the
    /// previous region's), so tools tell a restarted rvs-dp from the old one.
    pub generation: AtomicU64,
    pub created_unix_ns: u64,
    pub dp_pid: u32,
    /// 1 while rvs-dp serves the region; 0 once it stops.
    pub ready: AtomicU32,
    pub cmd_slots: u32,
    pub reply_slots: u32,
    pub slot_bytes: u32,
    pub max_msg_bytes: u32,
    pub workers: u32,
    pub stats_slot_bytes: u32,
    pub stats_services: u32,
    pub stats_reals: u32,
    pub latency_buckets: u32,
    pub drop_reasons: u32,
    /// Ports the kernel block has room for (`KERNEL_PORTS`).
    pub kernel_ports: u32,
    /// Size of `KernelStatsBlock`.
    pub kernel_block_bytes: u32,
    pub cmd_off: u64,
    pub cmd_len: u64,
    pub reply_off: u64,
    pub reply_len: u64,
    pub stats_off: u64,
    pub stats_len: u64,
    pub kernel_off: u64,
    pub kernel_len: u64,
    /// Command fragments rvs-dp discarded as malformed or left incomplete by a dead tool.
    pub cmd_dropped: AtomicU64,
    /// Reply fragments overwritten before the tool they were for took them.
    pub replies_lost: AtomicU64,
}

/// A mapped control region, shared by `Arc` between the ring endpoints and
/// the stats readers/writers that use it.
pub struct Region {
    path: PathBuf,
    file: File,
    map: MmapRaw,
    geom: Geometry,
    dev: u64,
    ino: u64,
    owner: bool,
}

fn pstr(p: &Path) -> String {
    p.display().to_string()
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> RegionError + 'a {
    move |err| RegionError::Io {
        op,
        path: pstr(path),
        err,
    }
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Whether a process with this pid exists (EPERM means it exists, under another user).
pub(crate) fn pid_alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// (device, inode) of what `path` names now, if anything. A symlink is itself,
/// not its target: a region put back behind a symlink is not current.
pub(crate) fn path_identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Opens the region at `path` for reading and writing, only if it is a file we
/// trust (trust.rs). The first open is `O_PATH | O_NOFOLLOW`, which neither
/// follows a symlink nor opens a fifo or device; the real open must then find
/// the same inode, and is checked again.
fn open_trusted(path: &Path) -> Result<(File, Metadata)> {
    let not_found = |op| {
        move |e: io::Error| match e.kind() {
            io::ErrorKind::NotFound => RegionError::NotRunning { path: pstr(path) },
            _ => io_err(op, path)(e),
        }
    };
    let handle = trust::open_path_only(path).map_err(not_found("open"))?;
    let seen = handle.metadata().map_err(io_err("stat", path))?;
    trust::check_region_file("control region", path, &seen)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
        .map_err(not_found("open"))?;
    let meta = file.metadata().map_err(io_err("stat", path))?;
    if (meta.dev(), meta.ino()) != (seen.dev(), seen.ino()) {
        return Err(RegionError::Corrupt {
            path: pstr(path),
            why: "replaced while being opened: try again".to_string(),
        });
    }
    trust::check_region_file("control region", path, &meta)?;
    Ok((file, meta))
}

/// The directory `path` lives in, created (mode 0700) if missing, and checked
/// (trust.rs): a final symlink is followed only if root or we own it.
fn prepare_dir(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_err("create directory", dir)(e)),
    }
    let link = trust::open_path_only(dir).map_err(io_err("open directory", dir))?;
    let meta = link.metadata().map_err(io_err("stat", dir))?;
    let meta = if meta.file_type().is_symlink() {
        trust::check_dir_link(dir, &meta)?;
        std::fs::metadata(dir).map_err(io_err("stat", dir))?
    } else {
        meta
    };
    trust::check_region_dir(dir, &meta)?;
    Ok(())
}

impl Region {
    /// rvs-dp's side: builds a fresh region and atomically puts it at `path`.
    /// Refuses if a live rvs-dp of another pid serves the current one.
    /// `init_sections` lays out what lives behind the header (the rings)
    /// while the file is still private; the region is marked ready after it.
    pub fn create(path: &Path, layout: Layout, init_sections: impl FnOnce(&Region)) -> Result<Region> {
        let geom = Geometry::of(layout).map_err(RegionError::InvalidLayout)?;
        let my_pid = std::process::id();

        prepare_dir(path)?;

        // Only a file we trust is read (for its pid and generation) or
        // replaced; anything else at the path stops us with its owner and mode.
        let mut old_generation = 0;
        match Region::open(path) {
            Ok(old) => {
                let h = old.header();
                if h.dp_pid != my_pid && pid_alive(h.dp_pid) {
                    return Err(RegionError::AlreadyRunning {
                        path: pstr(path),
                        pid: h.dp_pid,
                    });
                }
                old_generation = old.generation();
            }
            Err(e @ RegionError::Untrusted(_)) => return Err(e),
            Err(_) => {}
        }

        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".{my_pid}.tmp"));
        let tmp = PathBuf::from(tmp);
        // A temporary file of ours left by a crashed rvs-dp with the same pid
        // goes; anything else there (a squatter's file or symlink) is refused.
        match trust::open_path_only(&tmp) {
            Ok(left) => {
                let meta = left.metadata().map_err(io_err("stat", &tmp))?;
                trust::check_region_file("temporary control region", &tmp, &meta)?;
                std::fs::remove_file(&tmp).map_err(io_err("remove", &tmp))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("open", &tmp)(e)),
        }
        // O_EXCL never follows a symlink; if one appeared since, this fails.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        // The umask may have taken bits away; tools want exactly 0600.
        if let Err(e) = file.set_permissions(std::fs::Permissions::from_mode(0o600)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(io_err("chmod", &tmp)(e));
        }
        let built = Region::init(file, &tmp, geom, old_generation, init_sections);
        let mut region = match built {
            Ok(r) => r,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        // On failure, dropping `region` (still named after tmp) removes tmp.
        std::fs::rename(&tmp, path).map_err(io_err("rename into place", path))?;
        region.path = path.to_path_buf();
        Ok(region)
    }

    fn init(
        file: File,
        tmp: &Path,
        geom: Geometry,
        old_generation: u64,
        init_sections: impl FnOnce(&Region),
    ) -> Result<Region> {
        file.set_len(geom.file_size).map_err(io_err("size", tmp))?;
        let map = MmapOptions::new()
            .len(geom.file_size as usize)
            .map_raw(&file)
            .map_err(io_err("map", tmp))?;
        let meta = file.metadata().map_err(io_err("stat", tmp))?;
        let region = Region {
            path: tmp.to_path_buf(),
            file,
            map,
            geom,
            dev: meta.dev(),
            ino: meta.ino(),
            owner: true,
        };
        let l = geom.layout;
        let mut generation = unix_ns();
        if generation <= old_generation {
            generation = old_generation.wrapping_add(1);
        }
        // SAFETY: the map is at least a header long, page aligned, and nobody
        // else can see the file before the rename.
        unsafe {
            let h = region.base() as *mut Header;
            std::ptr::write(
                h,
                Header {
                    magic: MAGIC,
                    abi_version: ABI_VERSION,
                    header_bytes: std::mem::size_of::<Header>() as u32,
                    file_size: geom.file_size,
                    generation: AtomicU64::new(generation),
                    created_unix_ns: unix_ns(),
                    dp_pid: std::process::id(),
                    ready: AtomicU32::new(0),
                    cmd_slots: l.cmd_slots,
                    reply_slots: l.reply_slots,
                    slot_bytes: l.slot_bytes,
                    max_msg_bytes: l.max_msg_bytes,
                    workers: l.workers,
                    stats_slot_bytes: STATS_SLOT_BYTES as u32,
                    stats_services: STATS_SERVICES as u32,
                    stats_reals: STATS_REALS as u32,
                    latency_buckets: LATENCY_BUCKETS as u32,
                    drop_reasons: DropReason::COUNT as u32,
                    kernel_ports: KERNEL_PORTS as u32,
                    kernel_block_bytes: std::mem::size_of::<KernelStatsBlock>() as u32,
                    cmd_off: geom.cmd_off,
                    cmd_len: geom.cmd_len,
                    reply_off: geom.reply_off,
                    reply_len: geom.reply_len,
                    stats_off: geom.stats_off,
                    stats_len: geom.stats_len,
                    kernel_off: geom.kernel_off,
                    kernel_len: geom.kernel_len,
                    cmd_dropped: AtomicU64::new(0),
                    replies_lost: AtomicU64::new(0),
                },
            );
        }
        init_sections(&region);
        region.header().ready.store(1, Ordering::Release);
        Ok(region)
    }

    /// A tool's side: maps the region rvs-dp serves at `path`, after checking
    /// everything in its header against this build and the file's real size.
    /// Refuses a file it does not trust (`RegionError::Untrusted`) before
    /// reading it.
    pub fn open(path: &Path) -> Result<Region> {
        let (file, meta) = open_trusted(path)?;
        let corrupt = |why: String| RegionError::Corrupt {
            path: pstr(path),
            why,
        };
        let len = meta.len();
        let hdr_len = std::mem::size_of::<Header>() as u64;
        if len < hdr_len {
            return Err(corrupt(format!(
                "truncated to {len} bytes, the header alone needs {hdr_len}"
            )));
        }
        if len > MAX_FILE_BYTES {
            return Err(corrupt(format!("{len} bytes, over the {MAX_FILE_BYTES} cap")));
        }
        let map = MmapOptions::new()
            .len(len as usize)
            .map_raw(&file)
            .map_err(io_err("map", path))?;
        let mut region = Region {
            path: path.to_path_buf(),
            file,
            map,
            // Placeholder until the header is validated; never used before.
            geom: Geometry::of(Layout::default()).map_err(RegionError::InvalidLayout)?,
            dev: meta.dev(),
            ino: meta.ino(),
            owner: false,
        };
        let h = region.header();
        if h.magic != MAGIC {
            return Err(RegionError::BadMagic { path: pstr(path) });
        }
        if h.abi_version != ABI_VERSION {
            return Err(RegionError::Version {
                path: pstr(path),
                found: h.abi_version,
                ours: ABI_VERSION,
            });
        }
        if h.header_bytes as u64 != hdr_len {
            return Err(corrupt(format!(
                "header is {} bytes, expected {hdr_len}",
                h.header_bytes
            )));
        }
        let ours = [
            ("stats slot bytes", h.stats_slot_bytes, STATS_SLOT_BYTES as u32),
            ("stats services", h.stats_services, STATS_SERVICES as u32),
            ("stats real servers", h.stats_reals, STATS_REALS as u32),
            ("latency buckets", h.latency_buckets, LATENCY_BUCKETS as u32),
            ("drop reasons", h.drop_reasons, DropReason::COUNT as u32),
            ("kernel ports", h.kernel_ports, KERNEL_PORTS as u32),
            (
                "kernel block bytes",
                h.kernel_block_bytes,
                std::mem::size_of::<KernelStatsBlock>() as u32,
            ),
        ];
        for (what, theirs, mine) in ours {
            if theirs != mine {
                return Err(corrupt(format!(
                    "{what} is {theirs}, this tool expects {mine} (same ABI version, different build: rebuild)"
                )));
            }
        }
        let layout = Layout {
            cmd_slots: h.cmd_slots,
            reply_slots: h.reply_slots,
            slot_bytes: h.slot_bytes,
            max_msg_bytes: h.max_msg_bytes,
            workers: h.workers,
        };
        let geom = Geometry::of(layout).map_err(|e| corrupt(format!("bad layout: {e}")))?;
        let claimed = [
            ("cmd_off", h.cmd_off, geom.cmd_off),
            ("cmd_len", h.cmd_len, geom.cmd_len),
            ("reply_off", h.reply_off, geom.reply_off),
            ("reply_len", h.reply_len, geom.reply_len),
            ("stats_off", h.stats_off, geom.stats_off),
            ("stats_len", h.stats_len, geom.stats_len),
            ("kernel_off", h.kernel_off, geom.kernel_off),
            ("kernel_len", h.kernel_len, geom.kernel_len),
            ("file_size", h.file_size, geom.file_size),
            ("file length", len, geom.file_size),
        ];
        for (what, got, want) in claimed {
            if got != want {
                return Err(corrupt(format!("{what} is {got}, the layout implies {want}")));
            }
        }
        let pid = h.dp_pid;
        if h.ready.load(Ordering::Acquire) != 1 {
            if !pid_alive(pid) {
                return Err(RegionError::Stale {
                    path: pstr(path),
                    pid,
                });
            }
            return Err(RegionError::NotReady {
                path: pstr(path),
                pid,
            });
        }
        region.geom = geom;
        Ok(region)
    }

    #[inline]
    pub(crate) fn base(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    pub fn header(&self) -> &Header {
        // SAFETY: the map is page aligned and at least a header long (checked
        // in open, sized in create); every bit pattern is a valid Header.
        unsafe { &*(self.base() as *const Header) }
    }

    pub(crate) fn geometry(&self) -> &Geometry {
        &self.geom
    }

    pub fn layout(&self) -> Layout {
        self.geom.layout
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn generation(&self) -> u64 {
        self.header().generation.load(Ordering::Acquire)
    }

    pub fn dp_pid(&self) -> u32 {
        self.header().dp_pid
    }

    pub fn is_ready(&self) -> bool {
        self.header().ready.load(Ordering::Acquire) == 1
    }

    /// Whether `path` still names this region's file (false after a restart or removal).
    pub fn is_current(&self) -> bool {
        path_identity(&self.path) == Some((self.dev, self.ino))
    }

    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// Fragments rvs-dp dropped as malformed or incomplete (diagnostics).
    pub fn cmd_dropped(&self) -> u64 {
        self.header().cmd_dropped.load(Ordering::Relaxed)
    }

    /// Reply fragments overwritten before their tool read them (diagnostics).
    pub fn replies_lost(&self) -> u64 {
        self.header().replies_lost.load(Ordering::Relaxed)
    }
}

impl Drop for Region {
    /// rvs-dp going away marks the region not ready and removes it, unless a
    /// newer rvs-dp has already put its own region at the path.
    fn drop(&mut self) {
        if self.owner {
            self.header().ready.store(0, Ordering::Release);
            if self.is_current() {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_layout_is_valid_and_sections_are_aligned() {
        let g = Geometry::of(Layout::with_workers(8)).unwrap();
        for off in [g.cmd_off, g.reply_off, g.stats_off, g.kernel_off] {
            assert_eq!(off % ALIGN, 0);
        }
        assert!(g.cmd_off >= std::mem::size_of::<Header>() as u64);
        assert_eq!(g.file_size % 4096, 0);
        assert_eq!(g.kernel_off, g.stats_off + g.stats_len, "sections do not overlap");
        assert!(g.kernel_len as usize >= 64 + std::mem::size_of::<KernelStatsBlock>());
        assert!(g.file_size >= g.kernel_off + g.kernel_len);
    }

    #[test]
    fn bad_layouts_are_refused() {
        let ok = Layout::default();
        for bad in [
            Layout { cmd_slots: 0, ..ok },
            Layout {
                reply_slots: MAX_SLOTS + 1,
                ..ok
            },
            Layout {
                slot_bytes: 100,
                ..ok
            },
            Layout { slot_bytes: 8, ..ok },
            Layout {
                max_msg_bytes: 0,
                ..ok
            },
            Layout {
                max_msg_bytes: ok.cmd_slots * ok.slot_bytes + 1,
                ..ok
            },
            Layout { workers: 0, ..ok },
            Layout {
                workers: MAX_WORKERS + 1,
                ..ok
            },
        ] {
            assert!(Geometry::of(bad).is_err(), "{bad:?}");
        }
    }
}
