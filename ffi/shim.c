#include <stddef.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_cycles.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_ethdev.h>

#include "shim.h"

uint16_t rvs_eth_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_rx_burst(port, queue, pkts, n);
}

uint16_t rvs_eth_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_tx_burst(port, queue, pkts, n);
}

struct rte_mbuf *rvs_pktmbuf_alloc(struct rte_mempool *mp) { return rte_pktmbuf_alloc(mp); }

int rvs_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned int n)
{
	return rte_pktmbuf_alloc_bulk(mp, mbufs, n);
}

void rvs_pktmbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }
char *rvs_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_prepend(m, len); }
char *rvs_pktmbuf_adj(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_adj(m, len); }
char *rvs_pktmbuf_append(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_append(m, len); }
int rvs_pktmbuf_trim(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_trim(m, len); }
uint16_t rvs_mbuf_refcnt_read(const struct rte_mbuf *m) { return rte_mbuf_refcnt_read(m); }
void rvs_mbuf_refcnt_update(struct rte_mbuf *m, int16_t v) { rte_mbuf_refcnt_update(m, v); }

unsigned int rvs_ring_sp_enqueue_burst(struct rte_ring *r, void *const *objs, unsigned int n,
                                       unsigned int *free_space)
{
	return rte_ring_sp_enqueue_burst(r, objs, n, free_space);
}

unsigned int rvs_ring_sc_dequeue_burst(struct rte_ring *r, void **objs, unsigned int n,
                                       unsigned int *available)
{
	return rte_ring_sc_dequeue_burst(r, objs, n, available);
}

unsigned int rvs_ring_count(const struct rte_ring *r) { return rte_ring_count(r); }

unsigned int rvs_lcore_id(void) { return rte_lcore_id(); }
uint64_t rvs_rdtsc(void) { return rte_rdtsc(); }
int rvs_errno(void) { return rte_errno; }
void rvs_set_errno(int e) { rte_errno = e; }

const uint64_t RVS_CHECK_ETH_RSS_IP = RTE_ETH_RSS_IP;
const uint64_t RVS_CHECK_ETH_RSS_TCP = RTE_ETH_RSS_TCP;
const uint64_t RVS_CHECK_ETH_RSS_UDP = RTE_ETH_RSS_UDP;
const uint64_t RVS_CHECK_ETH_TX_OFFLOAD_MBUF_FAST_FREE = RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE;
const uint64_t RVS_CHECK_ETH_RSS_L2TPV2 = RTE_ETH_RSS_L2TPV2;
const uint32_t RVS_CHECK_MBUF_SIZE = sizeof(struct rte_mbuf);
const uint32_t RVS_CHECK_MBUF_OFF_DATA_OFF = offsetof(struct rte_mbuf, data_off);
const uint32_t RVS_CHECK_MBUF_OFF_PKT_LEN = offsetof(struct rte_mbuf, pkt_len);
const uint32_t RVS_CHECK_MBUF_OFF_DATA_LEN = offsetof(struct rte_mbuf, data_len);
const uint32_t RVS_CHECK_MBUF_OFF_BUF_LEN = offsetof(struct rte_mbuf, buf_len);
const uint32_t RVS_CHECK_MBUF_OFF_NEXT = offsetof(struct rte_mbuf, next);
const uint32_t RVS_CHECK_MBUF_OFF_NB_SEGS = offsetof(struct rte_mbuf, nb_segs);
