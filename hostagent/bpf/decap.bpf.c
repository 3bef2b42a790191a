// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// slrctl host: kernel IP-in-IP decapsulation (tc ingress on the uplinks).
//
// Without a kernel ipip device the host agent terminates tunnels in
// userspace: raw IPIP socket -> DecapFilter -> write() to the TUN device, on
// which the kernel then receives the inner packet.  This program does the
// same for the common case without leaving the kernel: it strips the outer
// header and redirects the inner packet to the INGRESS of that TUN device,
// so the stack receives it on the TUN exactly as after the terminator's
// write() (nftables iifname, rp_filter, local route: all unchanged).
//
// Accepted exactly as hostagent/terminator.cc DecapFilter accepts, and only
// in its simple form: outer IPv4 without options, unfragmented, protocol 4,
// header checksum right, outer dst == the tunnel address, outer src one of
// the SLR tunnel sources; inner IPv4 without options, header checksum right,
// total length within the outer packet, inner dst in a served subnet.
//
// Anything else returns TC_ACT_OK untouched and takes the old way (kernel ->
// raw socket -> userspace terminator), which counts and drops what is bad:
// the program never drops a packet.  Options, outer fragments and the like
// are rare enough that the userspace terminator can keep them.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "core/bpf_ipv4.bpf.h"

#define IP_MF 0x2000
#define IP_OFFSET 0x1fff
#define IPV4_LEN 20 /* struct iphdr, no options */

enum {
	CNT_PACKETS = 0,       /* decapsulated and redirected to the TUN device */
	CNT_BYTES = 1,         /* inner bytes of those */
	CNT_PASSED = 2,        /* every packet left to the kernel untouched */
	CNT_PASSED_TUNNEL = 3, /* of which IPv4 protocol 4 (the terminator sees them) */
	CNT_MAX = 4,
};

/* Sizes are placeholders: userspace sets max_entries before loading. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __be32);  /* SLR tunnel source, network order */
	__type(value, __u8);
} sources SEC(".maps");

struct subnet_key {
	__u32 prefixlen;
	__be32 addr;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* required for LPM tries */
	__type(key, struct subnet_key);
	__type(value, __u8);
} subnets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* Set by userspace before load (read-only: constants to the verifier). */
const volatile __be32 tunnel_address = 0;
const volatile __u32 tun_ifindex = 0;

static __always_inline void count(__u32 idx, __u64 n)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &idx);
	if (c)
		*c += n; /* per-CPU: no atomics needed */
}

/* 0 when the packet is not ours to decapsulate; else the inner length. */
static __always_inline __u32 accept(struct __sk_buff *skb, int *tunnel)
{
	const __u32 l3_off = sizeof(struct ethhdr);
	const __u32 need = l3_off + 2 * IPV4_LEN;

	/* Only what the stack would deliver locally reaches the terminator.  A
	 * VLAN tag (accelerated: not in the data) belongs to a VLAN device. */
	if (skb->protocol != bpf_htons(ETH_P_IP) || skb->pkt_type != PACKET_HOST || skb->vlan_present)
		return 0;
	if (skb->len < need)
		return 0;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	if (data + need > data_end) {
		if (bpf_skb_pull_data(skb, need) < 0)
			return 0;
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
	}
	struct ethhdr *eth = data;
	struct iphdr *outer = data + l3_off;
	struct iphdr *inner = data + l3_off + IPV4_LEN;
	if ((void *)(inner + 1) > data_end)
		return 0;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || outer->version != 4 ||
	    outer->protocol != IPPROTO_IPIP)
		return 0;
	*tunnel = 1;
	if (outer->ihl != 5 || (outer->frag_off & bpf_htons(IP_MF | IP_OFFSET)))
		return 0;
	if (outer->daddr != tunnel_address)
		return 0;
	/* A GSO aggregate's tot_len covers the aggregate, like skb->len. */
	const __u32 outer_len = bpf_ntohs(outer->tot_len);
	if (outer_len < 2 * IPV4_LEN || outer_len > skb->len - l3_off || slr_ipv4_checksum(outer) != 0)
		return 0;
	__be32 src = outer->saddr;
	if (!bpf_map_lookup_elem(&sources, &src))
		return 0;
	const __u32 inner_len = bpf_ntohs(inner->tot_len);
	if (inner->version != 4 || inner->ihl != 5 || inner_len < IPV4_LEN ||
	    inner_len > outer_len - IPV4_LEN || slr_ipv4_checksum(inner) != 0)
		return 0;
	struct subnet_key key = {.prefixlen = 32, .addr = inner->daddr};
	if (!bpf_map_lookup_elem(&subnets, &key))
		return 0;
	return inner_len;
}

/* A GSO aggregate (GRO on the uplink, or a veth from a local sender) counts
 * as the packets it stands for: segments, and their inner bytes with the
 * headers each segment carries.  Called before the outer header goes. */
static __always_inline __u32 gso_segments(struct __sk_buff *skb, __u64 *bytes, __u32 inner_len)
{
	const __u32 l4_off = sizeof(struct ethhdr) + 2 * IPV4_LEN;
	const __u32 gso_size = skb->gso_size;
	*bytes = inner_len;
	if (!gso_size)
		return 1;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct iphdr *inner = data + sizeof(struct ethhdr) + IPV4_LEN;
	if ((void *)(inner + 1) > data_end)
		return 1;
	__u32 l4_hdr;
	if (inner->protocol == IPPROTO_TCP) {
		__u8 *th = data + l4_off;
		if ((void *)(th + 13) > data_end)
			return 1;
		l4_hdr = (th[12] >> 4) * 4;
	} else if (inner->protocol == IPPROTO_UDP) {
		l4_hdr = 8;
	} else {
		return 1;
	}
	const __u32 hdrs = l4_off + l4_hdr;
	if (skb->len <= hdrs)
		return 1;
	__u32 segs = skb->gso_segs;
	if (segs == 0) /* not computed yet (untrusted source, e.g. virtio) */
		segs = (skb->len - hdrs + gso_size - 1) / gso_size;
	if (segs == 0)
		segs = 1;
	*bytes = (__u64)(skb->len - l4_off + IPV4_LEN) + (__u64)(segs - 1) * (IPV4_LEN + l4_hdr);
	return segs;
}

SEC("tc")
int slr_decap(struct __sk_buff *skb)
{
	int tunnel = 0;
	const __u32 inner_len = accept(skb, &tunnel);
	if (inner_len == 0)
		goto pass;

	__u64 bytes;
	const __u32 segs = gso_segments(skb, &bytes, inner_len);

	/* Remove the outer header between MAC and inner IP.  FIXED_GSO: the
	 * inner segments keep their size (without it the kernel would grow
	 * gso_size by the 20 bytes removed).  BPF_F_ADJ_ROOM_DECAP_L3_IPV4
	 * (kernel >= 6.3) only switches skb->protocol from IPv6 to IPv4; for
	 * 4-in-4 it changes nothing, so it is left out and older kernels work.
	 * A CHECKSUM_COMPLETE csum is adjusted by the helper; CHECKSUM_PARTIAL
	 * offsets are relative to the head and still point into the inner
	 * packet, which does not move. */
	if (bpf_skb_adjust_room(skb, -IPV4_LEN, BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_FIXED_GSO) < 0)
		goto pass; /* untouched on failure */

	count(CNT_PACKETS, segs);
	count(CNT_BYTES, bytes);
	/* The TUN device is an L3 device: the kernel drops the MAC header and
	 * the stack receives the inner packet on it (as after a write()). */
	return bpf_redirect(tun_ifindex, BPF_F_INGRESS);

pass:
	count(CNT_PASSED, 1);
	if (tunnel)
		count(CNT_PASSED_TUNNEL, 1);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
