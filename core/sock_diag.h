#pragma once
// TCP socket inspection over NETLINK_SOCK_DIAG (inet_diag_req_v2 dumps), the
// same source `ss -ti` reads.  Used by the host agent for the "connections"
// load source and stalled-flow detection (hostagent/recovery, Fig. 10).
//
// Addresses are reported as the connection sees them: an IPv4 connection on a
// dual-stack (AF_INET6, "::") listener shows up as ::ffff:a.b.c.d in the
// kernel and is reported here as plain IPv4, so VIP prefixes match either way.
#include <netinet/tcp.h>  // TCP_ESTABLISHED ...

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/net_types.h"
#include "core/result.h"

namespace slr::diag {

inline constexpr uint32_t stateBit(int tcp_state) { return 1u << tcp_state; }
inline constexpr uint32_t kEstablishedOnly = 1u << TCP_ESTABLISHED;
inline constexpr uint32_t kAllStates = 0xFFFu;

struct TcpSockInfo {
  IpAddress local;
  IpAddress remote;
  uint16_t local_port = 0;   // host order
  uint16_t remote_port = 0;  // host order
  uint8_t state = 0;         // TCP_ESTABLISHED, ...
  uint32_t inode = 0;
  uint32_t uid = 0;
  // From INET_DIAG_INFO (struct tcp_info); has_info false if not requested
  // or not supplied by the kernel.
  bool has_info = false;
  uint8_t retransmits = 0;          // tcpi_retransmits (current RTO backoff count)
  uint32_t unacked = 0;             // tcpi_unacked
  uint32_t last_data_recv_ms = 0;   // tcpi_last_data_recv
  uint32_t last_data_sent_ms = 0;   // tcpi_last_data_sent
  uint32_t last_ack_recv_ms = 0;    // tcpi_last_ack_recv: age of the last ACK from the peer
  uint32_t total_retrans = 0;       // tcpi_total_retrans
  uint32_t rtt_us = 0;              // tcpi_rtt
  uint64_t bytes_acked = 0;         // tcpi_bytes_acked
  uint64_t bytes_received = 0;      // tcpi_bytes_received

  std::string str() const;  // "10.100.0.10:80 <- 10.0.1.2:40000 ESTAB unacked=0 ..."
};

struct TcpFilter {
  std::vector<Prefix> local_prefixes;  // empty = any local address
  std::optional<uint16_t> local_port;
  uint32_t states = kEstablishedOnly;  // bit mask of stateBit(TCP_*)
  bool with_info = true;               // ask for INET_DIAG_INFO
};

// Established TCP sockets whose LOCAL address lies in one of the prefixes
// (and, if given, whose local port matches).  Listening sockets never count.
[[nodiscard]] Result<size_t> countEstablished(std::span<const Prefix> local_prefixes,
                                              std::optional<uint16_t> local_port = {});
[[nodiscard]] Result<std::vector<TcpSockInfo>> listTcp(const TcpFilter& filter = {});

const char* tcpStateName(uint8_t state);  // "ESTAB", "SYN-SENT", ... (as ss prints)

}  // namespace slr::diag
