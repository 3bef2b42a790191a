#pragma once
// Kernel fast path for established flows (tc ingress BPF on the uplinks).
//
// The worker handles a flow's first packet (slow path: TUN -> userspace) and
// then installs the flow here with add(); from then on the flow's packets
// are encapsulated (IP-in-IP) and redirected by slr/bpf/fast_path.bpf.c
// without leaving the kernel.  Packets the program cannot handle exactly
// like the worker (misses, fragments, IP options, TTL <= 1, too big for the
// tunnel MTU, unresolved neighbour...) continue untouched to the slow path;
// the program never drops.
//
// Flow activity lives in the BPF map: before expiring a flow the worker
// asks activity() (last packet time on the worker's own clock, FIN/RST seen,
// packets/bytes forwarded in the kernel) and removes the flow when it is
// really gone.
//
// Threads: add/remove/activity/stats are single bpf(2) syscalls on shared
// maps and safe from any thread.  attach() and the destructor are not
// concurrent with anything else.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/bpf_tc.h"
#include "core/net_types.h"
#include "core/result.h"

namespace slr::router {

struct FastPathFlow {
  uint32_t tunnel_src = 0, tunnel_dst = 0;  // host order
  uint16_t host = 0, vip = 0;               // counter slots (< host_count / vip_count)
};

struct FastPathActivity {
  uint32_t last_seen_ms = 0;  // CLOCK_MONOTONIC ms truncated to u32 (the worker's nowMs());
                              // the time of add() until the kernel sees a packet
  uint8_t tcp_flags = 0;      // FIN (0x01) | RST (0x04) seen by the kernel
  uint64_t packets = 0, bytes = 0;  // forwarded by the kernel (inner bytes)
};

struct FastPathStats {
  uint64_t packets = 0, bytes = 0;  // forwarded by the kernel (inner datagram bytes)
  uint64_t slow_path = 0;           // IPv4 TCP/UDP packets whose flow was not installed
  uint64_t fib_fail = 0;            // installed flow, but no route/neighbour for the tunnel
                                    // (or encapsulation refused): passed to the slow path
  uint64_t too_big = 0;             // installed flow, but TTL <= 1, too big for the tunnel or
                                    // a malformed header: slow path
  std::vector<std::pair<uint64_t, uint64_t>> vip, host;  // {packets, bytes} per slot
  size_t flows = 0;                                      // flows installed
};

class FastPath {
 public:
  // Loads the embedded BPF object, sizes its maps, attaches it to the clsact
  // ingress of each interface (creating the clsact qdisc if absent and
  // removing it again on destruction).  Interfaces must be Ethernet-like.
  // The error names the failing step and carries libbpf's reason (and the
  // tail of the verifier log when loading fails).
  // tunnel_source (host order, 0 = none): this SLR's tunnel address; packets
  // tunnelled to it from above whose inner flow is installed are re-tunnelled
  // to the flow's next hop in the kernel too.
  [[nodiscard]] static Result<std::unique_ptr<FastPath>> attach(
      const std::vector<std::string>& interfaces, uint32_t tunnel_mtu, size_t max_flows,
      size_t vip_count, size_t host_count, uint32_t tunnel_source = 0);
  ~FastPath();
  FastPath(const FastPath&) = delete;
  FastPath& operator=(const FastPath&) = delete;

  // Only IPv4 TCP/UDP flows can be installed (add() refuses others).
  static bool eligible(const FlowKey& key);

  // Installs (or replaces, restarting its counters) a flow.  Fails with
  // E2BIG when max_flows flows are installed.
  [[nodiscard]] Status add(const FlowKey& key, const FastPathFlow& flow);
  // Installs a flow only if the kernel does not have it (flow-state
  // re-creation): true when it was added, false when it was there already
  // (its counters untouched).  Fails like add().
  // counted: the caller had added this key before (the kernel lost it, e.g.
  // an operator or a map reset deleted it), so re-adding it must not count
  // it twice in stats().flows.
  [[nodiscard]] Result<bool> addIfAbsent(const FlowKey& key, const FastPathFlow& flow,
                                         bool counted = false);
  // Removes a flow; absent is not an error.
  [[nodiscard]] Status remove(const FlowKey& key);
  // nullopt when the flow is not installed.
  [[nodiscard]] Result<std::optional<FastPathActivity>> activity(const FlowKey& key) const;
  // Sums the per-CPU counters.  Read errors leave fields at 0.
  FastPathStats stats() const;

  // Can this process load a BPF tc program at all?  false when BPF is
  // unavailable or not permitted (not root); an Error for anything else.
  [[nodiscard]] static Result<bool> supported();

  // Switches a device's transmit checksum offload (and with it TSO) on or
  // off.  Off, the kernel completes checksums and segments GSO packets in
  // software before the device.  Needed on the fast path's EGRESS device
  // when it is a veth whose far end terminates tunnels in userspace (one
  // kernel, e.g. the e2e topology): packets forwarded from local sockets
  // arrive with CHECKSUM_PARTIAL (and as GSO aggregates), the program keeps
  // them so, and a raw IPIP socket on the far end would read an inner
  // TCP/UDP checksum that was never filled in.  A real wire never shows that.
  [[nodiscard]] static Status setTxChecksumOffload(const std::string& ifname, bool enabled);
  // Whether transmit checksum offload is on (to restore it on exit).
  [[nodiscard]] static Result<bool> txChecksumOffload(const std::string& ifname);

  // The embedded object (tests, diagnostics).
  static std::pair<const unsigned char*, size_t> embeddedObject();

 private:
  FastPath() = default;
  // add() (flags BPF_ANY: replace an existing entry) and addIfAbsent()
  // (BPF_NOEXIST: leave it): true when the flow was new, and counted.
  [[nodiscard]] Result<bool> install(const FlowKey& key, const FastPathFlow& flow, uint64_t flags);

  bpf::Object obj_;
  int flows_fd_ = -1, counters_fd_ = -1, vip_fd_ = -1, host_fd_ = -1;
  size_t vip_count_ = 0, host_count_ = 0, max_flows_ = 0;
  std::vector<bpf::TcIngress> hooks_;  // declared after obj_: detached before it closes
  // Installed flows.  The program never creates or deletes entries, so
  // counting our own successful inserts and deletes is exact (and cheaper
  // than walking a map of a million keys).
  std::atomic<size_t> flows_{0};
};

}  // namespace slr::router
