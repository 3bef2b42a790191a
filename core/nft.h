#pragma once
// The host agent's nf_tables filter, built with libnftnl and sent with the
// nl::Socket round trip (libmnl).  One NFNL batch per logical change (all or
// nothing in the kernel); every error ack is mapped back to the object that
// caused it, e.g. "NFT_MSG_NEWTABLE inet slrctl_host: File exists" or
// "NFT_MSG_DELSETELEM inet nosuch set tunnel_peers (flush): No such file or
// directory (kernel rejected the attribute at offset 40 (type 1))".
//
// The ruleset (table name configurable):
//   table inet slrctl_host {
//     set vips { type ipv4_addr; flags interval; elements = { <VIP subnets> } }
//     set tunnel_peers { type ipv4_addr; elements = { <SLR tunnel sources> } }
//     chain input {
//       type filter hook input priority -10; policy accept;
//       ip protocol 4 ip saddr != @tunnel_peers counter drop
//       ip daddr @vips iifname != "<tunnel_device>" counter drop
//     }
//   }
// i.e. VIP traffic is accepted only after tunnel termination (on the TUN of
// userspace termination, or the kernel ipip device), and tunnel packets only
// from registered SLRs.  IPv4 only for now (IPv6 entries are refused).
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/net_types.h"
#include "core/netlink.h"
#include "core/result.h"

namespace slr::nft {

inline constexpr std::string_view kDefaultTable = "slrctl_host";

struct HostRules {
  std::string table = std::string(kDefaultTable);  // family inet
  std::string chain = "input";
  int priority = -10;
  std::vector<Prefix> vips;              // overlaps and duplicates are merged
  std::vector<IpAddress> tunnel_peers;   // SLR tunnel sources
  std::string tunnel_device = "slrt0";   // iifname allowed to carry VIP traffic
};

// Builders (no kernel, no root).  `replace`: the batch first removes any
// existing table of that name (add-then-delete, so a missing table is not an
// error), so the new ruleset replaces the old one atomically.
[[nodiscard]] Result<nl::Batch> buildHostRules(const HostRules& r, bool replace = true);
[[nodiscard]] Result<nl::Batch> buildSetTunnelPeers(std::string_view table,
                                                    std::span<const IpAddress> peers);

// Golden-text rendering of what buildHostRules() builds: the table, sets with
// their elements, chain and rules as libnftnl prints them (nftnl_*_snprintf).
std::string describe(const HostRules& r);

// Kernel operations (CAP_NET_ADMIN, current netns).
[[nodiscard]] Status applyHostRules(const HostRules& r);  // atomic replace
[[nodiscard]] Status deleteTable(std::string_view table);  // ok if it does not exist
[[nodiscard]] Status setTunnelPeers(std::string_view table, std::span<const IpAddress> peers);
[[nodiscard]] Result<bool> tableExists(std::string_view table);

// Packet/byte counters of the two drop rules, for status output.
struct DropCounters {
  uint64_t non_peer_tunnel_packets = 0, non_peer_tunnel_bytes = 0;
  uint64_t vip_not_via_tunnel_packets = 0, vip_not_via_tunnel_bytes = 0;
};
[[nodiscard]] Result<DropCounters> readDropCounters(std::string_view table,
                                                    std::string_view chain = "input");

}  // namespace slr::nft
