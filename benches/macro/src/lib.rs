//! rvs DPDK macro-benchmarks. `gen` writes the pcaps; the `rvs-bench` binary
//! runs rvs-dp and dpdk-testpmd on them and prints the table.

pub mod gen;
