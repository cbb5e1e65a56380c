//! Thin safe layer over DPDK (crate `dpdk-sys`). Every call into DPDK, and so
//! nearly every `unsafe` block of rvs-dp, lives under this module; the only
//! others are `conn/mem.rs` (huge-page advice for the connection table) and
//! the signal handler in `main.rs`. The control region's unsafe code is in
//! rvs-proto. Each block carries a `SAFETY:` comment.
//!
//! Lifetimes: DPDK objects (mempools, rings, ports) live in EAL memory, which
//! [`Eal`]'s drop releases. Keep the [`Eal`] value alive in `main` for as long
//! as any [`Mbuf`], [`Mempool`], [`Port`] or ring half is in use.

mod eal;
mod error;
pub mod flow;
mod mbuf;
mod port;
mod ring;

pub use eal::{lcore_id, rdtsc, tsc_hz, Eal, Lcore};
pub use error::DpdkError;
pub use mbuf::{Drain, Mbuf, MbufBurst, Mempool, BURST};
pub use port::{Configured, EthdevConf, Port, PortStats, RxQueue, TxQueue};
pub use ring::{spsc_ring, RingConsumer, RingProducer};

/// Raw bindings, for the rare field the safe layer does not cover.
pub use dpdk_sys as sys;
