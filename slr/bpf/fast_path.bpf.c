// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// slrctl kernel fast path for ESTABLISHED flows (tc ingress on the uplinks).
//
// The SLR process (slow path) picks a host for a flow's first packet and then
// installs the flow here (slr/fast_path.cc).  For every later packet of an
// installed flow this program does what the worker would have done:
// decrement the inner TTL (the packet is being routed), prepend an IPv4
// outer header (IP-in-IP, RFC 2003: TOS and DF copied, TTL 64) and redirect
// it to the egress device the FIB chooses for the tunnel destination.
//
// In a hierarchy it also re-tunnels: a packet an upper SLR tunnelled to this
// SLR's tunnel source, whose inner flow is installed, gets its outer header
// pointed at the flow's next hop (retunnel()).
//
// Anything it cannot do exactly like the slow path is returned TC_ACT_OK,
// untouched, and continues to the kernel -> TUN -> worker: flow misses,
// fragments, IP options, TTL <= 1 (the kernel sends time-exceeded), too big
// for the tunnel MTU (the worker sends fragmentation-needed), unresolved
// neighbours (the worker's send resolves them), anything not IPv4 TCP/UDP.
// It never drops a packet.
//
// The key and value layouts are shared with userspace (slr/fast_path.cc
// static_asserts them): the key is byte-for-byte core/net_types.h FlowKey.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "core/bpf_ipv4.bpf.h"

#ifndef AF_INET
#define AF_INET 2
#endif

#define IP_DF 0x4000
#define IP_MF 0x2000
#define IP_OFFSET 0x1fff
#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10
#define OUTER_TTL 64
#define OUTER_LEN 20 /* struct iphdr, no options */

/* core/net_types.h FlowKey: 40 bytes, IPv4 in the first 4 bytes of each
 * address (network order), ports in HOST order, family 4, pad zero. */
struct flow_key {
	__be32 src[4];
	__be32 dst[4];
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 family;
	__u8 pad[2];
};

struct flow_value {
	__be32 tunnel_dst;
	__be32 tunnel_src;
	__u16 host;
	__u16 vip;
	__u8 tcp_flags_seen; /* OR of FIN|RST seen by the fast path */
	__u8 pad[3];
	__u64 last_seen_ns; /* bpf_ktime_get_ns: CLOCK_MONOTONIC */
	__u64 packets;      /* forwarded by the fast path */
	__u64 bytes;        /* inner (client datagram) bytes forwarded */
};

struct object_stats {
	__u64 packets;
	__u64 bytes;
};

enum {
	CNT_FORWARDED = 0,
	CNT_BYTES = 1,
	CNT_SLOW_PATH = 2, /* IPv4 TCP/UDP flow miss */
	CNT_FIB_FAIL = 3,  /* FIB/neighbour lookup or encapsulation failed */
	CNT_TOO_BIG = 4,   /* inner + 20 > tunnel MTU, TTL <= 1 or malformed header */
	CNT_MAX = 5,
};

/* Sizes are placeholders: userspace sets max_entries before loading. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* memory for live flows only */
	__type(key, struct flow_key);
	__type(value, struct flow_value);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct object_stats);
} vip_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct object_stats);
} host_stats SEC(".maps");

/* Set by userspace before load (read-only to the program, so the verifier
 * treats it as a constant). Largest outer packet we may send. */
const volatile __u32 tunnel_mtu = 1500;
/* This SLR's tunnel address (network order), or 0: SLRs one level up tunnel
 * to it, and installed flows arriving so are re-tunnelled (see retunnel). */
const volatile __be32 tunnel_source = 0;

static __always_inline void count(__u32 idx, __u64 n)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &idx);
	if (c)
		*c += n; /* per-CPU: no atomics needed */
}

static __always_inline void count_object(void *map, __u32 idx, __u64 packets, __u64 bytes)
{
	struct object_stats *s = bpf_map_lookup_elem(map, &idx);
	if (s) {
		s->packets += packets;
		s->bytes += bytes;
	}
}

/* Make the first `need` bytes linear (headers split across fragments), when
 * the packet is long enough to hold `min_len`.  0 on success; the caller
 * reloads its packet pointers. */
static __always_inline int pull_headers(struct __sk_buff *skb, __u32 need, __u32 min_len)
{
	if ((void *)(long)skb->data + need <= (void *)(long)skb->data_end)
		return 0;
	if (skb->len < min_len)
		return -1;
	return bpf_skb_pull_data(skb, skb->len < need ? skb->len : need) < 0 ? -1 : 0;
}

/* The flow key's ports (host order), the TCP flags and the L4 header length
 * of the TCP or UDP header at data + l4_off.  -1 for anything else. */
static __always_inline int parse_l4(void *data, void *data_end, __u32 l4_off, __u8 proto,
				    struct flow_key *key, __u8 *tcp_flags, __u32 *l4_hdr)
{
	if (proto == IPPROTO_TCP) {
		struct tcphdr *th = data + l4_off;
		if ((void *)th + 14 > data_end)
			return -1;
		key->sport = bpf_ntohs(th->source);
		key->dport = bpf_ntohs(th->dest);
		*tcp_flags = ((__u8 *)th)[13];
		*l4_hdr = th->doff * 4;
		return 0;
	}
	if (proto == IPPROTO_UDP) {
		struct udphdr *uh = data + l4_off;
		if ((void *)(uh + 1) > data_end)
			return -1;
		key->sport = bpf_ntohs(uh->source);
		key->dport = bpf_ntohs(uh->dest);
		*l4_hdr = sizeof(struct udphdr);
		return 0;
	}
	return -1;
}

/* Activity first: a packet the slow path handles still shows the flow is
 * alive, and the FIN/RST bits drive the worker's timeouts. */
static __always_inline void touch_flow(struct flow_value *v, __u8 tcp_flags)
{
	v->last_seen_ns = bpf_ktime_get_ns();
	__u8 fin_rst = tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST);
	if (fin_rst & ~v->tcp_flags_seen)
		v->tcp_flags_seen |= fin_rst; /* written once or twice per flow */
}

/* The installed flow of the IPv4 packet `iph` (its TCP/UDP header at
 * data + l4_off), touched (touch_flow), or NULL: not TCP/UDP, or not
 * installed (counted as a slow-path miss), or a new connection on the
 * 5-tuple of one that ended (a SYN after FIN/RST): the worker schedules
 * that one afresh, as the old host may be drained or unhealthy by now. */
static __always_inline struct flow_value *find_flow(void *data, void *data_end, __u32 l4_off,
						     struct iphdr *iph, __u8 *tcp_flags, __u32 *l4_hdr)
{
	struct flow_key key = {};
	if (parse_l4(data, data_end, l4_off, iph->protocol, &key, tcp_flags, l4_hdr) < 0)
		return 0;
	key.src[0] = iph->saddr;
	key.dst[0] = iph->daddr;
	key.proto = iph->protocol;
	key.family = 4;
	struct flow_value *v = bpf_map_lookup_elem(&flows, &key);
	if (!v) {
		count(CNT_SLOW_PATH, 1);
		return 0;
	}
	if ((*tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN &&
	    (v->tcp_flags_seen & (TCP_FLAG_FIN | TCP_FLAG_RST))) {
		count(CNT_SLOW_PATH, 1);
		return 0;
	}
	touch_flow(v, *tcp_flags);
	return v;
}

/* FIB lookup for an outer IP-in-IP packet of tot_len bytes from src to dst,
 * input mode from skb's device (see the caller's comment).  0 with fib
 * filled, or -1 counted (too big for the egress MTU, or no route/neighbour). */
static __always_inline int route_outer(struct __sk_buff *skb, struct bpf_fib_lookup *fib, __u8 tos,
				       __u32 tot_len, __be32 src, __be32 dst)
{
	fib->family = AF_INET;
	fib->tos = tos;
	fib->l4_protocol = IPPROTO_IPIP;
	fib->tot_len = tot_len;
	fib->ifindex = skb->ifindex;
	fib->ipv4_src = src;
	fib->ipv4_dst = dst;
	long rc = bpf_fib_lookup(skb, fib, sizeof(*fib), 0);
	if (rc == BPF_FIB_LKUP_RET_SUCCESS)
		return 0;
	count(rc == BPF_FIB_LKUP_RET_FRAG_NEEDED ? CNT_TOO_BIG : CNT_FIB_FAIL, 1);
	return -1;
}

/* Segments a GSO aggregate leaves as (1 for a plain packet); hdrs = the bytes
 * before the L4 payload. */
static __always_inline __u32 gso_segments(struct __sk_buff *skb, __u32 gso_size, __u32 hdrs)
{
	if (!gso_size)
		return 1;
	__u32 segs = skb->gso_segs;
	if (segs == 0) { /* not computed yet (untrusted source, e.g. virtio) */
		__u32 payload = skb->len > hdrs ? skb->len - hdrs : 0;
		segs = (payload + gso_size - 1) / gso_size;
	}
	return segs ? segs : 1;
}

static __always_inline void count_forwarded(struct flow_value *v, __u32 segs, __u64 bytes,
					    __u32 vip, __u32 host)
{
	__sync_fetch_and_add(&v->packets, segs);
	__sync_fetch_and_add(&v->bytes, bytes);
	count(CNT_FORWARDED, segs);
	count(CNT_BYTES, bytes);
	count_object(&vip_stats, vip, segs, bytes);
	count_object(&host_stats, host, segs, bytes);
}

/* A packet tunnelled to us by an SLR one level up (the hierarchy): if its
 * inner flow is installed, point the existing outer header at the flow's
 * next hop (our tunnel source, its tunnel address, TTL 64) and redirect it;
 * the inner datagram is not touched, as the worker does not touch it.  No
 * room to make, so GSO aggregates stay as they are.  Anything else goes to
 * the kernel (the worker's raw socket) unchanged. */
static __always_inline int retunnel(struct __sk_buff *skb)
{
	const __u32 l3_off = sizeof(struct ethhdr);
	const __u32 in_off = l3_off + sizeof(struct iphdr);
	const __u32 l4_off = in_off + sizeof(struct iphdr);
	const __u32 need = l4_off + 14;

	if (pull_headers(skb, need, l4_off + sizeof(struct udphdr)) < 0)
		return TC_ACT_OK;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *outer = data + l3_off;
	struct iphdr *inner = data + in_off;
	if ((void *)(inner + 1) > data_end)
		return TC_ACT_OK;
	if (outer->daddr != tunnel_source || inner->version != 4 || inner->ihl != 5)
		return TC_ACT_OK;
	if (inner->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return TC_ACT_OK;

	__u8 tcp_flags = 0;
	__u32 l4_hdr = 0;
	struct flow_value *v = find_flow(data, data_end, l4_off, inner, &tcp_flags, &l4_hdr);
	if (!v)
		return TC_ACT_OK;

	const __u32 outer_len = bpf_ntohs(outer->tot_len);
	const __u32 gso_size = skb->gso_size;
	const __u32 seg_len = gso_size ? OUTER_LEN + sizeof(struct iphdr) + l4_hdr + gso_size : outer_len;
	const __u32 segs = gso_segments(skb, gso_size, l4_off + l4_hdr);
	/* As in the worker: never forward what it would not (too big for the
	 * tunnel, a header the kernel would drop). */
	if (seg_len > tunnel_mtu || outer_len < OUTER_LEN + sizeof(struct iphdr) ||
	    (!gso_size && outer_len > skb->len - l3_off) || slr_ipv4_checksum(outer) != 0) {
		count(CNT_TOO_BIG, 1);
		return TC_ACT_OK;
	}

	const __be32 tunnel_src = v->tunnel_src;
	const __be32 tunnel_dst = v->tunnel_dst;
	const __u32 vip = v->vip;
	const __u32 host = v->host;
	const __u64 bytes = gso_size ? (__u64)(skb->len - in_off) +
					       (__u64)(segs - 1) * (sizeof(struct iphdr) + l4_hdr)
				     : outer_len - OUTER_LEN;

	struct bpf_fib_lookup fib = {};
	if (route_outer(skb, &fib, outer->tos, seg_len, tunnel_src, tunnel_dst) < 0)
		return TC_ACT_OK;

	/* The header's one's-complement sum is zero before and after, so a
	 * CHECKSUM_COMPLETE skb->csum stays right. */
	outer->saddr = tunnel_src;
	outer->daddr = tunnel_dst;
	outer->ttl = OUTER_TTL;
	outer->check = 0;
	outer->check = slr_ipv4_checksum(outer);
	__builtin_memcpy(eth->h_dest, fib.dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);

	count_forwarded(v, segs, bytes, vip, host);
	return bpf_redirect(fib.ifindex, 0);
}

SEC("tc")
int slr_fast_path(struct __sk_buff *skb)
{
	/* Ethernet + IPv4 (no options) + the L4 bytes we read: TCP flags sit at
	 * offset 13, so 14 bytes of TCP; UDP needs its 8-byte header. */
	const __u32 l3_off = sizeof(struct ethhdr);
	const __u32 l4_off = l3_off + sizeof(struct iphdr);
	const __u32 need = l4_off + 14;

	if (skb->protocol != bpf_htons(ETH_P_IP) || skb->pkt_type != PACKET_HOST)
		return TC_ACT_OK;

	/* Headers outside the linear area (or a short UDP datagram): only pull
	 * when the packet really is that long. */
	if (pull_headers(skb, need, l4_off + sizeof(struct udphdr)) < 0)
		return TC_ACT_OK;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph = data + l3_off;
	if ((void *)(iph + 1) > data_end)
		return TC_ACT_OK;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || iph->version != 4 || iph->ihl != 5)
		return TC_ACT_OK;
	if (iph->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return TC_ACT_OK;
	if (iph->protocol == IPPROTO_IPIP)
		return tunnel_source ? retunnel(skb) : TC_ACT_OK;

	__u8 tcp_flags = 0;
	__u32 l4_hdr = 0;
	struct flow_value *v = find_flow(data, data_end, l4_off, iph, &tcp_flags, &l4_hdr);
	if (!v)
		return TC_ACT_OK;

	const __u32 inner_len = bpf_ntohs(iph->tot_len);
	/* A GRO/GSO aggregate leaves as segments of gso_size payload each: the
	 * per-segment size is what must fit the tunnel. */
	const __u32 gso_size = skb->gso_size;
	const __u32 seg_len = gso_size ? sizeof(struct iphdr) + l4_hdr + gso_size : inner_len;
	const __u32 segs = gso_segments(skb, gso_size, l3_off + sizeof(struct iphdr) + l4_hdr);
	/* Left to the kernel, like the worker would not forward them either:
	 * TTL expiring here (time-exceeded), too big for the tunnel (the worker
	 * sends fragmentation-needed), a header the kernel will drop (bad
	 * checksum, total length beyond the frame; BIG TCP's tot_len 0). */
	if (iph->ttl <= 1 || seg_len + OUTER_LEN > tunnel_mtu || inner_len < sizeof(struct iphdr) ||
	    (!gso_size && inner_len > skb->len - l3_off) || slr_ipv4_checksum(iph) != 0) {
		count(CNT_TOO_BIG, 1);
		return TC_ACT_OK;
	}

	const __be32 tunnel_src = v->tunnel_src;
	const __be32 tunnel_dst = v->tunnel_dst;
	const __u32 vip = v->vip;
	const __u32 host = v->host;
	const __u8 tos = iph->tos;
	const __be16 df = iph->frag_off & bpf_htons(IP_DF);
	const __u16 old_ttl_proto = *(__u16 *)&iph->ttl;
	/* Bytes: the client's datagrams, like the worker counts them; a GSO
	 * aggregate carries its headers once in the skb but once per segment
	 * on the wire. */
	const __u64 bytes = gso_size ? (__u64)(skb->len - l3_off) +
					       (__u64)(segs - 1) * (sizeof(struct iphdr) + l4_hdr)
				     : inner_len;

	/* Route the OUTER packet before touching anything: after adjust_room
	 * there is no clean way back to the slow path.  Input-mode lookup, as
	 * if the outer packet arrived on this device and were forwarded:
	 * BPF_FIB_LOOKUP_OUTPUT would pin the result to params.ifindex as the
	 * output device, which is wrong when the hosts sit behind another
	 * interface.  tot_len makes the helper check the egress MTU as well. */
	struct bpf_fib_lookup fib = {};
	if (route_outer(skb, &fib, tos, seg_len + OUTER_LEN, tunnel_src, tunnel_dst) < 0)
		return TC_ACT_OK;

	/* Grow room for the outer header between MAC and IP.  With the ENCAP
	 * flag the kernel marks the skb encapsulated (inner headers, GSO type
	 * IPXIP4), so GSO aggregates are segmented correctly on the way out;
	 * FIXED_GSO keeps each segment's inner packet exactly as it arrived. */
	__u64 flags = BPF_F_ADJ_ROOM_ENCAP_L3_IPV4;
	if (gso_size)
		flags |= BPF_F_ADJ_ROOM_FIXED_GSO;
	if (bpf_skb_adjust_room(skb, OUTER_LEN, BPF_ADJ_ROOM_MAC, flags) < 0) {
		count(CNT_FIB_FAIL, 1);
		return TC_ACT_OK;
	}

	/* Packet pointers are invalid after adjust_room: reload. */
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	eth = data;
	struct iphdr *outer = data + l3_off;
	struct iphdr *inner = data + l4_off;
	if ((void *)(inner + 1) > data_end) {
		/* Cannot happen (the bytes were linear before the push), and a
		 * half-built packet must not go anywhere. */
		count(CNT_FIB_FAIL, 1);
		return TC_ACT_SHOT;
	}

	/* Inner TTL - 1, header checksum updated incrementally (RFC 1624) by
	 * direct writes: bpf_l3_csum_replace would invalidate the packet
	 * pointers once more.  The TTL word and the checksum change by opposite
	 * amounts, so a CHECKSUM_COMPLETE skb->csum stays right; the same holds
	 * for the outer header below, whose one's-complement sum is zero. */
	inner->ttl -= 1;
	const __u16 new_ttl_proto = *(__u16 *)&inner->ttl;
	__u32 hc = (__u16)~inner->check; /* RFC 1624: HC' = ~(~HC + ~m + m') */
	hc += (__u16)~old_ttl_proto;
	hc += new_ttl_proto;
	hc = (hc & 0xffff) + (hc >> 16);
	hc = (hc & 0xffff) + (hc >> 16);
	inner->check = (__u16)~hc;

	outer->version = 4;
	outer->ihl = 5;
	outer->tos = tos;
	outer->tot_len = bpf_htons(inner_len + OUTER_LEN);
	/* DF set: no reassembly will look at the ID (RFC 6864), so 0.  DF
	 * clear: the outer packet may be fragmented on the way; give
	 * reassembly distinct IDs. */
	outer->id = df ? 0 : (__u16)bpf_get_prandom_u32();
	outer->frag_off = df;
	outer->ttl = OUTER_TTL;
	outer->protocol = IPPROTO_IPIP;
	outer->check = 0;
	outer->saddr = tunnel_src;
	outer->daddr = tunnel_dst;
	outer->check = slr_ipv4_checksum(outer);

	__builtin_memcpy(eth->h_dest, fib.dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);

	count_forwarded(v, segs, bytes, vip, host);
	return bpf_redirect(fib.ifindex, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
