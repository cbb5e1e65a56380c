//! Bindings to the system DPDK. Filled in by the data-plane work.
