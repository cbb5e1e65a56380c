//! Raw bindings to the system DPDK (>= 22.11, shared libraries via pkg-config).
//!
//! Everything here is `unsafe` C. The `rvs_*` functions come from `shim.c`:
//! out-of-line copies of DPDK's `static inline` burst functions and of the
//! thread-local `rte_errno`. Call them once per burst, not per packet; read
//! per-packet fields (`buf_addr`, `data_off`, `data_len`) straight from
//! [`rte_mbuf`].
#![allow(non_upper_case_globals, non_camel_case_types, non_snake_case)]
#![allow(clippy::all)]
#![allow(rustdoc::all)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// The clang macro fallback must agree with what C computes, and the
    /// per-packet accessors in rvs-dp read these offsets directly.
    #[test]
    fn bindings_agree_with_c() {
        // SAFETY: the RVS_CHECK_* values are plain constants exported by shim.c.
        unsafe {
            assert_eq!(RTE_ETH_RSS_IP, RVS_CHECK_ETH_RSS_IP);
            assert_eq!(RTE_ETH_RSS_TCP, RVS_CHECK_ETH_RSS_TCP);
            assert_eq!(RTE_ETH_RSS_UDP, RVS_CHECK_ETH_RSS_UDP);
            assert_eq!(RTE_ETH_RSS_L2TPV2, RVS_CHECK_ETH_RSS_L2TPV2);
            assert_eq!(
                RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE,
                RVS_CHECK_ETH_TX_OFFLOAD_MBUF_FAST_FREE
            );
            assert_eq!(size_of::<rte_mbuf>() as u32, RVS_CHECK_MBUF_SIZE);
            assert_eq!(offset_of!(rte_mbuf, data_off) as u32, RVS_CHECK_MBUF_OFF_DATA_OFF);
            assert_eq!(offset_of!(rte_mbuf, pkt_len) as u32, RVS_CHECK_MBUF_OFF_PKT_LEN);
            assert_eq!(offset_of!(rte_mbuf, data_len) as u32, RVS_CHECK_MBUF_OFF_DATA_LEN);
            assert_eq!(offset_of!(rte_mbuf, buf_len) as u32, RVS_CHECK_MBUF_OFF_BUF_LEN);
            assert_eq!(offset_of!(rte_mbuf, next) as u32, RVS_CHECK_MBUF_OFF_NEXT);
            assert_eq!(offset_of!(rte_mbuf, nb_segs) as u32, RVS_CHECK_MBUF_OFF_NB_SEGS);
        }
    }
}
