//! rvs data plane. The pure forwarding core (wire, sched, conn, xmit, core)
//! needs no DPDK; the poll-mode forwarder sits behind the `dpdk` feature.

#[cfg(feature = "dpdk")]
pub mod addrwatch;
pub mod config;
pub mod conn;
pub mod control;
pub mod core;
pub mod dest;
#[cfg(feature = "dpdk")]
pub mod director;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod exception;
pub mod flow;
pub mod fnat;
#[cfg(feature = "dpdk")]
pub mod kernel;
pub mod neigh;
pub mod ownership;
pub mod packet;
pub mod route;
pub mod sched;
pub mod service;
pub mod stats;
pub mod sync;
pub mod synproxy;
pub mod vdev;
pub mod wire;
#[cfg(feature = "dpdk")]
pub mod worker;
pub mod xmit;
