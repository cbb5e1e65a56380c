//! Whom the control region may belong to.
//!
//! The region is a command channel into the director: whoever can write it
//! can answer rvsadm's `-Ln` and read every command root sends, and whoever
//! can create it first can keep rvs-dp from starting. Kernel IPVS lets only
//! CAP_NET_ADMIN do any of that, so we hold the file to the same bar:
//!
//! - the region is a regular file (not a symlink, fifo, socket, device or
//!   directory), owned by root or by the process's effective uid, with mode
//!   exactly 0600;
//! - the directory rvs-dp puts it in is owned by root or the effective uid and
//!   writable by its owner only, or sticky (like `/dev/shm`): then nobody else
//!   can rename or remove our file, and a name squatted before rvs-dp starts
//!   is caught by the file rule.
//!
//! The checks run on the opened descriptor (`fstat`), never on a second look
//! at the path, and the path is opened with `O_PATH | O_NOFOLLOW` first, so a
//! symlink is seen as a symlink and a fifo or device is never really opened.

use std::fmt;
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Why a file or directory at the control path is not trusted.
#[derive(Debug)]
pub struct Distrust {
    /// "control region", "temporary control region" or "control directory".
    pub role: &'static str,
    pub path: String,
    /// What is there: "regular file", "symlink", "fifo", "directory", ...
    pub kind: &'static str,
    pub uid: u32,
    /// The owner's user name, when the password database knows it.
    pub user: Option<String>,
    /// Permission bits, with setuid/setgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub why: String,
    /// What would have been trusted, for the operator.
    pub rule: String,
}

impl fmt::Display for Distrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let owner = match &self.user {
            Some(name) => format!("uid {} ({name})", self.uid),
            None => format!("uid {}", self.uid),
        };
        write!(
            f,
            "refusing {} {}: {} ({}, owner {owner}, mode {:04o}); {}",
            self.role, self.path, self.why, self.kind, self.mode, self.rule
        )
    }
}

impl std::error::Error for Distrust {}

fn kind(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_symlink() {
        "symlink"
    } else if t.is_file() {
        "regular file"
    } else if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "fifo"
    } else if t.is_socket() {
        "socket"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else {
        "special file"
    }
}

pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The user name of `uid`, if the password database has one.
pub fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: passwd is plain data that getpwuid_r fills; all-zero is a valid
    // (empty) value for it.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and `buf` is as long as we
    // say; on success `found` points to `pw`, whose strings live in `buf`.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut pw,
            buf.as_mut_ptr() as *mut libc::c_char,
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() || pw.pw_name.is_null() {
        return None;
    }
    // SAFETY: pw_name is a NUL-terminated string inside `buf`, still alive.
    let name = unsafe { std::ffi::CStr::from_ptr(pw.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

/// Who may own the region and its directory, as the operator reads it.
fn owners() -> String {
    match euid() {
        0 => "root".to_string(),
        me => format!("root or uid {me}"),
    }
}

fn trusted_owner(uid: u32) -> bool {
    uid == 0 || uid == euid()
}

fn distrust(role: &'static str, path: &Path, meta: &Metadata, why: String, rule: String) -> Box<Distrust> {
    Box::new(Distrust {
        role,
        path: path.display().to_string(),
        kind: kind(meta),
        uid: meta.uid(),
        user: user_name(meta.uid()),
        mode: meta.mode() & 0o7777,
        why,
        rule,
    })
}

/// Checks what an `fstat` of the opened region (or rvs-dp's temporary file)
/// says: a regular file, ours or root's, mode 0600.
pub fn check_region_file(role: &'static str, path: &Path, meta: &Metadata) -> Result<(), Box<Distrust>> {
    let rule = format!(
        "a control region must be a regular file owned by {} with mode 0600 (remove it if rvs-dp did not create it)",
        owners()
    );
    let why = if !meta.file_type().is_file() {
        "not a regular file".to_string()
    } else if !trusted_owner(meta.uid()) {
        "owned by another user".to_string()
    } else if meta.mode() & 0o7777 != 0o600 {
        "mode is not 0600".to_string()
    } else {
        return Ok(());
    };
    Err(distrust(role, path, meta, why, rule))
}

/// Checks the directory rvs-dp puts the region in: ours or root's, and
/// writable by nobody else unless sticky.
pub fn check_region_dir(path: &Path, meta: &Metadata) -> Result<(), Box<Distrust>> {
    let rule = format!(
        "the control region's directory must be owned by {} and writable by its owner only (or sticky, like /dev/shm)",
        owners()
    );
    let mode = meta.mode();
    let why = if !meta.file_type().is_dir() {
        "not a directory".to_string()
    } else if !trusted_owner(meta.uid()) {
        "owned by another user".to_string()
    } else if mode & 0o022 != 0 && mode & libc::S_ISVTX == 0 {
        "writable by group or others, and not sticky".to_string()
    } else {
        return Ok(());
    };
    Err(distrust("control directory", path, meta, why, rule))
}

/// A symlink in place of the region's directory (`/var/run` style) is
/// followed only if root or we own it: its owner could point it elsewhere.
pub fn check_dir_link(path: &Path, meta: &Metadata) -> Result<(), Box<Distrust>> {
    if trusted_owner(meta.uid()) {
        return Ok(());
    }
    let rule = format!(
        "a symlink to the control region's directory must be owned by {}",
        owners()
    );
    Err(distrust(
        "control directory",
        path,
        meta,
        "a symlink owned by another user".to_string(),
        rule,
    ))
}

/// A handle on what `path` names, without following a final symlink and
/// without opening it for I/O (`O_PATH`): opening a fifo or a device can block
/// or have effects, and a symlink must be judged as itself. Good for `fstat`.
pub fn open_path_only(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}
