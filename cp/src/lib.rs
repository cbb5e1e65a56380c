//! rvs control plane library: rvsadm (ipvsadm's command line) and rvs-cp (a
//! keepalived-like daemon: health checks, reconcile, metrics, latency log).

pub mod adm;
pub mod check;
pub mod config;
pub mod daemon;
pub mod hlog;
pub mod keepalived;
pub mod metrics;
pub mod ready;
pub mod reconcile;
pub mod source;
pub mod stats;
pub mod transport;
