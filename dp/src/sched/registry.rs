//! Maps ipvsadm's scheduler names to constructors (kernel ip_vs_sched.c).

use super::{dh, fo, lblc, lblcr, lc, mh, nq, ovf, rr, sed, sh, twos, wlc, wrr};
use super::{SchedOptions, Scheduler};
use crate::dest::RealServer;

/// The names are the control ABI's (`rvs_proto::ipvs`), so rvsadm checks a
/// scheduler name without linking the schedulers.
pub use rvs_proto::ipvs::SCHEDULER_NAMES;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SchedError {
    #[error("Scheduler not found: {0}")]
    Unknown(String),
    #[error("invalid scheduler option: {0}")]
    BadOption(String),
}

/// Builds scheduler `name` for `dests`. Names are matched exactly, as the
/// kernel matches them.
pub fn build(
    name: &str,
    dests: &[RealServer],
    opts: &SchedOptions,
) -> Result<Box<dyn Scheduler>, SchedError> {
    Ok(match name {
        "rr" => Box::new(rr::Rr::new()),
        "wrr" => Box::new(wrr::Wrr::new(dests)),
        "lc" => Box::new(lc::Lc),
        "wlc" => Box::new(wlc::Wlc),
        "lblc" => Box::new(lblc::Lblc::new()),
        "lblcr" => Box::new(lblcr::Lblcr::new()),
        "dh" => Box::new(dh::Dh::new(dests)),
        "sh" => Box::new(sh::Sh::new(dests, opts.flags)),
        "sed" => Box::new(sed::Sed),
        "nq" => Box::new(nq::Nq),
        "fo" => Box::new(fo::Fo),
        "ovf" => Box::new(ovf::Ovf),
        "mh" => Box::new(mh::Mh::new(dests, opts)?),
        "twos" => Box::new(twos::Twos::new()),
        other => return Err(SchedError::Unknown(other.to_string())),
    })
}
