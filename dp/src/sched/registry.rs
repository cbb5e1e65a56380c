//! Maps ipvsadm's scheduler names to constructors.

use super::{SchedOptions, Scheduler};
use crate::service::RealServer;

/// Every scheduler ipvsadm knows, in the kernel's order.
pub const SCHEDULER_NAMES: &[&str] = &[
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos",
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SchedError {
    #[error("Scheduler not found: {0}")]
    Unknown(String),
    #[error("invalid scheduler option: {0}")]
    BadOption(String),
}

/// Builds scheduler `name` for `dests`.
pub fn build(name: &str, dests: &[RealServer], opts: &SchedOptions) -> Result<Box<dyn Scheduler>, SchedError> {
    let _ = (dests, opts);
    Err(SchedError::Unknown(name.to_string()))
}
