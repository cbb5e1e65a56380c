//! The control channel between rvs-dp and its tools (rvsadm, rvs-cp).
//!
//! - `command`: the requests and replies (ipvsadm's operations), serde-encoded.
//! - `apply`: the pure virtual-server configuration model and its validation.
//! - `region`, `ring`, `statsarea`, `latency`: the shared-memory region.

pub mod apply;
pub mod command;
pub mod latency;
pub mod region;
pub mod ring;
pub mod statsarea;
