#pragma once
// Kernel IP-in-IP decapsulation for hosts without a kernel ipip device (tc
// ingress BPF on the uplinks, hostagent/bpf/decap.bpf.c).
//
// The userspace terminator (terminator.h) costs every client->VIP packet two
// crossings of the user/kernel boundary.  This program strips the outer
// header of the tunnel packets DecapFilter would accept and redirects the
// inner packet to the ingress of the TUN device, where the stack receives it
// exactly as after the terminator's write(): same device, so nftables
// (iifname), rp_filter and the local routes see no difference.  Everything
// else (other traffic, and tunnel packets the program does not take: wrong
// source or destination, not a VIP, options, fragments, bad checksums)
// continues untouched to the kernel and the userspace terminator, which keeps
// running and keeps counting drops.  The program never drops.
//
// Threads: stats() is a few bpf(2) lookups, safe from any thread.  attach()
// and the destructor are not concurrent with anything else.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/bpf_tc.h"
#include "core/net_types.h"
#include "core/result.h"

namespace slr::host {

class KernelDecap {
 public:
  struct Stats {
    uint64_t packets = 0;        // decapsulated into the TUN device (GSO: segments)
    uint64_t bytes = 0;          // inner bytes of those
    uint64_t passed = 0;         // packets left to the kernel untouched (all traffic)
    uint64_t passed_tunnel = 0;  // of which IPIP: the userspace terminator handles them
  };

  // Loads the embedded object with the acceptance rule (IPv4 only: IPv6
  // sources and subnets are ignored, an IPv6 tunnel address is an error),
  // attaches it to the clsact ingress of each uplink (creating the qdisc if
  // absent; the destructor removes what it created).  Uplinks must be
  // Ethernet devices; `tun_device` must exist.  The error names the failing
  // step with libbpf's reason (and the verifier log's tail on a load failure).
  [[nodiscard]] static Result<std::unique_ptr<KernelDecap>> attach(
      const std::vector<std::string>& uplinks, const IpAddress& tunnel_address,
      const std::vector<IpAddress>& slr_sources, const std::vector<Prefix>& subnets,
      const std::string& tun_device);
  ~KernelDecap();
  KernelDecap(const KernelDecap&) = delete;
  KernelDecap& operator=(const KernelDecap&) = delete;

  // Sums the per-CPU counters; read errors leave fields at 0.
  Stats stats() const;
  const std::vector<std::string>& uplinks() const { return names_; }

  // The embedded object (tests, diagnostics).
  static std::pair<const unsigned char*, size_t> embeddedObject();

 private:
  KernelDecap() = default;

  bpf::Object obj_;
  int counters_fd_ = -1;
  std::vector<bpf::TcIngress> hooks_;  // declared after obj_: detached before it closes
  std::vector<std::string> names_;
};

}  // namespace slr::host
