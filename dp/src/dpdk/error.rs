use std::ffi::CStr;
use std::fmt;

use dpdk_sys as sys;

/// A failed DPDK call, with the errno it reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DpdkError {
    /// `op` failed with `errno` (a libc errno or a DPDK `E_RTE_*` code).
    Rte { op: &'static str, errno: i32 },
    /// `rte_eal_init` was already called in this process (it works only once).
    AlreadyInitialized,
    /// An argument could not be passed to C (interior NUL, out of range...).
    InvalidArgument(String),
    /// No ethdev port has this name after probing.
    NoSuchPort(String),
    /// `rte_eal_init` failed; why, as far as it can be told.
    EalInit(String),
}

impl DpdkError {
    /// Captures `rte_errno` for `op`, right after the failing call.
    pub(crate) fn last(op: &'static str) -> Self {
        // SAFETY: reads a thread-local int.
        let errno = unsafe { sys::rvs_errno() };
        DpdkError::Rte { op, errno }
    }

    /// For the many calls that return `-errno` rather than setting rte_errno.
    pub(crate) fn from_ret(op: &'static str, ret: i32) -> Self {
        DpdkError::Rte {
            op,
            errno: ret.saturating_neg(),
        }
    }

    /// `Ok(ret)` if `ret >= 0`, else the `-errno` it carries.
    pub(crate) fn check(op: &'static str, ret: i32) -> Result<i32, Self> {
        if ret < 0 {
            Err(Self::from_ret(op, ret))
        } else {
            Ok(ret)
        }
    }

    pub fn errno(&self) -> Option<i32> {
        match self {
            DpdkError::Rte { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

fn strerror(errno: i32) -> String {
    // SAFETY: rte_strerror returns a NUL-terminated string (static, or in a
    // per-lcore buffer we copy out before any other call can reuse it).
    unsafe {
        let p = sys::rte_strerror(errno);
        if p.is_null() {
            return format!("errno {errno}");
        }
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

impl fmt::Display for DpdkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DpdkError::Rte { op, errno } => write!(f, "{op}: {} (errno {errno})", strerror(*errno)),
            DpdkError::AlreadyInitialized => f.write_str("DPDK EAL already initialised in this process"),
            DpdkError::InvalidArgument(what) => write!(f, "invalid DPDK argument: {what}"),
            DpdkError::NoSuchPort(name) => write!(f, "no DPDK port named {name:?}"),
            DpdkError::EalInit(why) => write!(f, "rte_eal_init: {why}"),
        }
    }
}

impl std::error::Error for DpdkError {}
