//! rvs data plane. The pure forwarding core (wire, sched, conn, xmit, core)
//! needs no DPDK; the poll-mode forwarder sits behind the `dpdk` feature.

pub mod conn;
pub mod ctl;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod sched;
pub mod service;
pub mod stats;
pub mod wire;
pub mod xmit;
