// Stands in for the ipip module on a TUN real server whose kernel lacks it:
// strips the outer IPv4 header of IP-in-IP packets addressed to this host and
// lets the kernel stack handle the inner packet (addressed to the VIP on lo).
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

SEC("xdp")
int xdp_ipip_decap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *outer = data + sizeof(*eth);
	struct ethhdr saved;

	if ((void *)(outer + 1) > end)
		return XDP_PASS;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || outer->protocol != IPPROTO_IPIP)
		return XDP_PASS;
	if (outer->ihl != 5)
		return XDP_DROP; /* the director never sends outer options */
	if ((void *)outer + sizeof(*outer) + sizeof(struct iphdr) > end)
		return XDP_DROP;

	__builtin_memcpy(&saved, eth, sizeof(saved));
	if (bpf_xdp_adjust_head(ctx, (int)sizeof(struct iphdr)))
		return XDP_DROP;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > end)
		return XDP_DROP;
	__builtin_memcpy(eth, &saved, sizeof(saved));
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
