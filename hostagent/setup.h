#pragma once
// Host-side DSR set-up, each step undone on exit (or when a later step fails):
//   1. tunnel termination: kernel ipip device "slrip0", or a TUN device
//      (userspace termination) when the kernel has no ipip;
//   2. rp_filter = 0 on "all", "default" and the tunnel device (the inner
//      packet's client source is not routed via the tunnel device, so strict
//      reverse-path filtering would drop it); a strict uplink is set loose;
//      arp_ignore >= 1 and arp_announce >= 2 on "all" (no host answers ARP
//      for a VIP or uses one as its ARP sender);
//   3. nftables: VIP traffic only via the tunnel device, tunnels only from
//      the configured SLRs;
//   4. one `local` route per virtual subnet in table local, dev lo.
// The order makes the VIPs local only once the filter is in place.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/fd.h"
#include "core/result.h"

namespace slr::host {

inline constexpr const char* kKernelTunnelDevice = "slrip0";

enum class TunnelKind { kKernel, kUserspace };
const char* tunnelKindName(TunnelKind k);  // "kernel" | "userspace"

// The configured SLR tunnel sources plus [host].shortcut_sources, deduplicated.
std::vector<IpAddress> tunnelSources(const config::HostConfig& cfg);

class HostSetup {
 public:
  HostSetup() = default;
  ~HostSetup() { teardown(); }
  HostSetup(const HostSetup&) = delete;
  HostSetup& operator=(const HostSetup&) = delete;

  // Runs every step; on failure undoes what was done and returns the error
  // (op says what was attempted, detail why / what to do).
  [[nodiscard]] Status apply(const config::HostConfig& cfg);
  // Reverse order, best effort, each failure logged.  Idempotent.
  void teardown();

  TunnelKind kind() const { return kind_; }
  const std::string& tunnelDevice() const { return tunnel_device_; }
  std::string kindReason() const { return kind_reason_; }
  // Userspace mode: the TUN queue fd (moved out to the terminator).
  UniqueFd takeTunFd() { return std::move(tun_fd_); }

 private:
  Status setupTunnel(const config::HostConfig& cfg);
  Status raiseSysctl(const std::string& path, int value);
  Status setRpFilter(const std::string& dev, const char* value, bool only_if_strict = false);
  void onUndo(std::string what, std::function<void()> fn);

  struct Undo {
    std::string what;
    std::function<void()> fn;
  };
  std::vector<Undo> undo_;
  TunnelKind kind_ = TunnelKind::kUserspace;
  std::string tunnel_device_;
  std::string kind_reason_;
  UniqueFd tun_fd_;
};

}  // namespace slr::host
