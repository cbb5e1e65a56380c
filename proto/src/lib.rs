//! The control ABI between rvs-dp and its tools (rvsadm, rvs-cp). It imports
//! nothing of the forwarding core, so the tools link this crate alone.
//!
//! - `types`: the shared vocabulary (service key, protocol, forward method,
//!   traffic totals, drop reasons).
//! - `command`: the requests and replies (ipvsadm's operations), serde-encoded.
//! - `ipvs`: the virtual-server configuration model and its validation, the
//!   one rvs-dp applies and rvsadm checks against.
//! - `serve`: how a data plane answers commands (queries, changes, paged
//!   listings, staged restores), shared by rvs-dp and rvsadm's local one.
//! - `region`, `ring`, `statsarea`, `statsblock`, `kernelblock`, `latency`:
//!   the shared-memory region;
//!   `trust`: whose file and directory the region may be.
//!
//! Unsafe code: `region` (mapping the file, header atomics), `ring` and
//! `statsarea` (reads and writes into the mapping at offsets `region`
//! validated), `trust` (geteuid, getpwuid_r); each block says why it holds.

pub mod command;
pub mod ipvs;
pub mod kernelblock;
pub mod latency;
pub mod region;
pub mod resync;
pub mod ring;
pub mod serve;
pub mod statsarea;
pub mod statsblock;
pub mod trust;
pub mod types;
