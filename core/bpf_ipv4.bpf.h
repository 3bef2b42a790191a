/* IPv4 helpers shared by the kernel data paths' BPF programs
 * (slr/bpf/fast_path.bpf.c, hostagent/bpf/decap.bpf.c).  BPF C, not C++:
 * included only by programs compiled with clang -target bpf. */
#pragma once
#include <linux/ip.h>
#include <linux/types.h>

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

#define SLR_IPV4_HDR_LEN 20 /* struct iphdr, no options */

/* Header checksum of a 20-byte IPv4 header (check field as it is: 0 to
 * compute one, the stored value to verify one -> 0 when right). */
static __always_inline __u16 slr_ipv4_checksum(const struct iphdr *iph)
{
	const __u16 *w = (const __u16 *)iph;
	__u32 sum = 0;
#pragma unroll
	for (int i = 0; i < SLR_IPV4_HDR_LEN / 2; i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}
