// <net/if.h> before <linux/if_tun.h> (which pulls <linux/if.h>) so IFF_* agree.
#include <net/if.h>

#include "core/tun.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cstring>
#include <string>

namespace slr {

namespace {

Result<UniqueFd> openQueue(const std::string& name, bool multi_queue) {
  std::string what = "open TUN " + name + (multi_queue ? " (multi-queue)" : "");
  if (name.empty() || name.size() >= IFNAMSIZ) {
    return Error{EINVAL, what, "interface names are 1..15 bytes"};
  }
  UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (!fd) return sysError(what + ": /dev/net/tun");
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, name.data(), name.size());
  // IFF_NO_PI: packets are bare IP datagrams, no 4-byte packet-info prefix.
  ifr.ifr_flags = short(IFF_TUN | IFF_NO_PI | (multi_queue ? IFF_MULTI_QUEUE : 0));
  if (ioctl(fd.get(), TUNSETIFF, &ifr) < 0) {
    int code = errno;
    std::string hint;
    if (code == EINVAL && multi_queue) hint = "existing device was created without multi-queue (or vice versa)";
    if (code == EBUSY) hint = "device exists and is in use (single-queue, or queue limit reached)";
    return sysError(what + ": TUNSETIFF", code, hint);
  }
  return fd;
}

}  // namespace

Result<UniqueFd> openTun(std::string_view name, bool multi_queue) {
  return openQueue(std::string(name), multi_queue);
}

Result<std::vector<UniqueFd>> openTunQueues(std::string_view name, size_t n) {
  if (n == 0) return Error{EINVAL, "open TUN " + std::string(name), "needs at least one queue"};
  std::vector<UniqueFd> fds;
  fds.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    auto fd = openQueue(std::string(name), true);
    if (!fd) {
      Error e = fd.error();
      e.op += " queue " + std::to_string(i) + " of " + std::to_string(n);
      return e;
    }
    fds.push_back(std::move(fd).value());
  }
  return fds;
}

Status setTxQueueLength(std::string_view name, uint32_t packets) {
  std::string what = "set txqueuelen " + std::to_string(packets) + " on " + std::string(name);
  if (name.empty() || name.size() >= IFNAMSIZ) return sysError(what, EINVAL);
  UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!s) return sysError(what + ": socket");
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, name.data(), name.size());
  ifr.ifr_qlen = int(packets);
  if (::ioctl(s.get(), SIOCSIFTXQLEN, &ifr) < 0) return sysError(what);
  return Ok{};
}

}  // namespace slr
