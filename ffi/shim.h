/* Out-of-line copies of the DPDK static-inline functions rvs calls once per
 * burst, and the RTE_BIT64 constants bindgen cannot evaluate. Per-packet
 * accessors stay in Rust: a call through here per packet costs ~15%. */
#ifndef RVS_DPDK_SHIM_H
#define RVS_DPDK_SHIM_H

#include <stdint.h>

struct rte_mbuf;
struct rte_mempool;
struct rte_ring;

uint16_t rvs_eth_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
uint16_t rvs_eth_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);

struct rte_mbuf *rvs_pktmbuf_alloc(struct rte_mempool *mp);
int rvs_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned int n);
void rvs_pktmbuf_free(struct rte_mbuf *m);
char *rvs_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len);
char *rvs_pktmbuf_adj(struct rte_mbuf *m, uint16_t len);
char *rvs_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
int rvs_pktmbuf_trim(struct rte_mbuf *m, uint16_t len);
uint16_t rvs_mbuf_refcnt_read(const struct rte_mbuf *m);
void rvs_mbuf_refcnt_update(struct rte_mbuf *m, int16_t v);

unsigned int rvs_ring_sp_enqueue_burst(struct rte_ring *r, void *const *objs, unsigned int n,
                                       unsigned int *free_space);
unsigned int rvs_ring_sc_dequeue_burst(struct rte_ring *r, void **objs, unsigned int n,
                                       unsigned int *available);
unsigned int rvs_ring_count(const struct rte_ring *r);

unsigned int rvs_lcore_id(void);
uint64_t rvs_rdtsc(void);
int rvs_errno(void);
void rvs_set_errno(int e);

/* Cross-checks for the bindings, used by dpdk-sys's own tests: the value C
 * computes for a few RTE_BIT64 constants (bindgen gets them through clang's
 * macro fallback), and the rte_mbuf layout the Rust accessors rely on. */
extern const uint64_t RVS_CHECK_ETH_RSS_IP;
extern const uint64_t RVS_CHECK_ETH_RSS_TCP;
extern const uint64_t RVS_CHECK_ETH_RSS_UDP;
extern const uint64_t RVS_CHECK_ETH_TX_OFFLOAD_MBUF_FAST_FREE;
extern const uint64_t RVS_CHECK_ETH_RSS_L2TPV2;
extern const uint32_t RVS_CHECK_MBUF_SIZE;
extern const uint32_t RVS_CHECK_MBUF_OFF_DATA_OFF;
extern const uint32_t RVS_CHECK_MBUF_OFF_PKT_LEN;
extern const uint32_t RVS_CHECK_MBUF_OFF_DATA_LEN;
extern const uint32_t RVS_CHECK_MBUF_OFF_BUF_LEN;
extern const uint32_t RVS_CHECK_MBUF_OFF_NEXT;
extern const uint32_t RVS_CHECK_MBUF_OFF_NB_SEGS;

#endif
