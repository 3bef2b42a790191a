#pragma once
// Host-originated flow recovery ([recovery], the seed's Fig. 10).
//
// Every `interval` the watcher dumps the TCP sockets whose local address is a
// VIP (sock_diag with tcp_info).  A connection with data in flight (unacked >
// 0, or an RTO retransmission pending) whose peer has not acknowledged
// anything for stall_after (but less than give_up) is stalled: typically the
// SLR that knew the flow died or the client's packets now reach an SLR with
// no state, so the client's ACKs never come back to us.  For each stalled
// connection the watcher sends, once per interval and at most max_echoes per
// stall, an ICMP echo request FROM THE VIP to the client carrying the flow
// advertisement (core/flow_advert.h).  The client's kernel echoes it toward
// the VIP, so the reply crosses whichever SLR now receives the flow, which
// learns the flow from it and forwards the reply (and the flow) to us.  The
// watcher counts those replies (raw ICMP socket, echo replies with the
// advertisement magic); a reply for a stalled connection also triggers a
// "nudge" (buildNudgePacket) so the client's ACK comes through at once
// instead of after the server's next backed-off retransmission.  A stalled
// connection whose bytes_acked grows again counts as recovered (one log line
// with the stall time).
//
// Threads: one (scan + reply reader, poll on the raw socket).  counters() may
// be read from any thread.  IPv4 only (the advertisement is IPv4).
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "core/config.h"
#include "core/fd.h"
#include "core/flow_advert.h"
#include "core/net_types.h"
#include "core/result.h"
#include "core/sock_diag.h"

namespace slr::host {

// ---- pure parts ----

// What the watcher remembers of one connection between scans.
struct ConnTrack {
  bool seen = false;             // at least one sample taken
  uint64_t bytes_acked = 0;      // at the last sample
  int64_t last_progress_ms = 0;  // last sample with ack progress or nothing in flight
  bool stalled = false;
  int64_t stall_start_ms = 0;    // when acknowledgements stopped (estimated)
  uint64_t stall_bytes_acked = 0;
  uint32_t echoes = 0;           // sent in this stall
  int64_t last_echo_ms = 0;
  bool gave_up = false;          // stalled for give_up: no more echoes
  uint32_t replies = 0;          // advertisement replies seen in this stall
};

struct StallStep {
  bool became_stalled = false;
  bool send_echo = false;
  bool recovered = false;   // was stalled, acknowledgements progress again
  bool gave_up = false;     // crossed give_up in this step
  uint32_t stalled_ms = 0;  // with recovered / gave_up: how long the stall lasted
};

// One sample of a connection (its tcp_info) at now_ms (any monotonic ms
// clock).  The stall age is the shorter of the kernel's "last ACK received"
// age and our own "no progress since" (so a connection idle for minutes that
// just started sending is not stalled at once).
StallStep stallStep(ConnTrack& t, const diag::TcpSockInfo& s, int64_t now_ms,
                    const config::RecoveryConfig& cfg);

// The IPv4 packet of an advertising echo request: 20-byte header (src VIP,
// dst client, TTL 64, DF, protocol ICMP, header checksum filled) + the ICMP
// message.  Returns its size, or 0 when out is too small.
inline constexpr size_t kEchoPacketSize = 20 + advert::kMessageSize;
size_t buildEchoPacket(std::span<std::byte> out, uint16_t ip_id, uint16_t icmp_id, uint16_t seq,
                       const advert::FlowAdvert& a);

// The "nudge": a bare TCP ACK from VIP:port to client:port whose sequence
// number lies outside the client's receive window.  TCP answers such a
// segment with a duplicate ACK carrying its real receive point (RFC 793
// 3.9, Linux tcp_send_dupack), so once an echo reply shows the path through
// the SLRs works again, the client's ACK reaches the server at once instead
// of after the server's next (exponentially backed-off) retransmission
// timeout.  We know neither side's sequence numbers, so two are sent, `seq`
// and seq + 2^31: no receive window spans both, one is out of window.  An
// in-window one is harmless: its random ACK number is old or unsent data,
// which TCP ignores.  Returns its size (40), or 0 when out is too small.
inline constexpr size_t kNudgePacketSize = 40;
size_t buildNudgePacket(std::span<std::byte> out, uint16_t ip_id, uint32_t seq, uint32_t ack,
                        const advert::FlowAdvert& a);

// An IPv4 packet read from a raw ICMP socket: true when it is an echo reply
// (type 0) carrying a valid flow advertisement, filled into out.
bool parseAdvertReply(std::span<const std::byte> ip_packet, advert::FlowAdvert& out);

// The advertisement for a connection (server = our tunnel address; the service
// port is the VIP port).  s must be IPv4.
advert::FlowAdvert advertFor(const diag::TcpSockInfo& s, const IpAddress& tunnel_address);

// ---- the watcher ----

struct RecoveryCounters {
  bool enabled = false;
  std::string state;             // "on" | "off: <reason>"
  uint64_t watched = 0;          // connections in the last scan
  uint64_t stalled = 0;          // stalled now
  uint64_t stalls = 0;           // stalls detected (total)
  uint64_t echoes_sent = 0;
  uint64_t replies_received = 0;
  uint64_t nudges_sent = 0;      // out-of-window ACKs sent after a reply (see buildNudgePacket)
  uint64_t recovered = 0;
  uint64_t gave_up = 0;
  uint64_t send_errors = 0;
  uint64_t scan_errors = 0;
};

class RecoveryWatcher {
 public:
  // Opens the raw ICMP socket (CAP_NET_RAW).  An error leaves recovery off;
  // the agent runs on and says why in status.
  static Result<std::unique_ptr<RecoveryWatcher>> create(const config::RecoveryConfig& cfg,
                                                         std::vector<Prefix> subnets,
                                                         IpAddress tunnel_address);
  ~RecoveryWatcher();
  void start();
  void stop();
  RecoveryCounters counters() const;
  // An SLR session (re)registered: the path to the SLRs may work again, so
  // stalled connections get a fresh echo budget (max_echoes) at the next
  // scan.  An outage longer than max_echoes x interval then still recovers.
  void rearm() { rearm_.store(true, std::memory_order_relaxed); }

 private:
  RecoveryWatcher(const config::RecoveryConfig& cfg, std::vector<Prefix> subnets,
                  IpAddress tunnel_address, UniqueFd raw);
  void run();

  config::RecoveryConfig cfg_;
  std::vector<Prefix> subnets_;
  IpAddress tunnel_address_;
  UniqueFd raw_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> rearm_{false};
  std::thread thread_;
  // Written by the watcher thread only.
  std::atomic<uint64_t> watched_{0}, stalled_{0}, stalls_{0}, echoes_sent_{0}, replies_{0}, nudges_{0},
      recovered_{0}, gave_up_{0}, send_errors_{0}, scan_errors_{0};
};

}  // namespace slr::host
