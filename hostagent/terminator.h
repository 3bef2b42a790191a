#pragma once
// Userspace IP-in-IP termination, for kernels without the ipip module.
//
// A raw IPv4 socket (IPPROTO_IPIP) bound to the tunnel address receives every
// tunnel packet with its outer IP header; one worker thread decapsulates in
// batches of kBatch (recvmmsg) and writes the inner datagram to a TUN device,
// where the kernel receives it as if it had arrived on a link: the local route
// for the VIP subnet delivers it to the service, and the reply leaves with the
// VIP as source straight to the client (direct server return).
//
// Accepted only when: the outer header is a well-formed, unfragmented IPIP
// packet; outer src is one of the configured SLR tunnel sources; outer dst is
// our tunnel address; inner dst lies in a served subnet.  Everything else is
// dropped and counted by reason.  No allocation and no logging per packet;
// counters are relaxed atomics written only by the worker.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <thread>
#include <vector>

#include "core/fd.h"
#include "core/net_types.h"
#include "core/result.h"

namespace slr::host {

enum class DecapVerdict : uint8_t { kForward, kMalformed, kNotFromSlr, kNotVip };
const char* decapVerdictName(DecapVerdict v);  // "forward", "malformed", "not_from_slr", "not_vip"

// The immutable acceptance rule, precomputed into host-order integers so the
// per-packet check is a few compares.
class DecapFilter {
 public:
  DecapFilter(const IpAddress& tunnel_address, const std::vector<IpAddress>& slr_sources,
              const std::vector<Prefix>& subnets);
  // On kForward, `inner` is the inner datagram (a subspan of `outer`).
  DecapVerdict classify(std::span<const std::byte> outer, std::span<const std::byte>& inner) const;

 private:
  struct Net {
    uint32_t addr, mask;
  };
  uint32_t tunnel_address_ = 0;
  std::vector<uint32_t> sources_;
  std::vector<Net> subnets_;
};

struct TerminatorCounters {
  uint64_t packets = 0;  // forwarded into the TUN device
  uint64_t bytes = 0;    // inner bytes forwarded
  uint64_t malformed = 0;
  uint64_t not_from_slr = 0;
  uint64_t not_vip = 0;
  uint64_t tun_write_errors = 0;
};

class UserspaceTerminator {
 public:
  static constexpr size_t kBatch = 32;
  static constexpr size_t kBufSize = 65536;

  // Takes the TUN queue fd (already up) and opens the raw socket bound to the
  // tunnel address.  Errors say which step failed.
  [[nodiscard]] static Result<std::unique_ptr<UserspaceTerminator>> create(
      UniqueFd tun_fd, const IpAddress& tunnel_address, DecapFilter filter);
  ~UserspaceTerminator();

  void start();
  void stop();  // joins the worker; idempotent
  bool running() const { return running_.load(std::memory_order_relaxed); }
  TerminatorCounters counters() const;

  // One batch worth of packets through the filter into `tun_fd` (exposed for
  // tests: feed buffers without a socket).
  void handlePacket(std::span<const std::byte> outer);

 private:
  UserspaceTerminator(UniqueFd tun, UniqueFd raw, DecapFilter filter);
  void run();

  UniqueFd tun_;
  UniqueFd raw_;
  DecapFilter filter_;
  std::vector<std::byte> bufs_;  // kBatch * kBufSize, allocated once
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> running_{false};

  struct alignas(64) Stats {
    std::atomic<uint64_t> packets{0}, bytes{0}, malformed{0}, not_from_slr{0}, not_vip{0},
        tun_write_errors{0};
  } stats_;
};

}  // namespace slr::host
