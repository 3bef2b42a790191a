#pragma once
// What the root tests of the tc BPF data paths (fast_path_test.cc,
// kernel_decap_test.cc) share: shell commands, a veth pair to attach to,
// AF_PACKET sockets to inject frames into its far end and capture what
// comes out, and the virtio-net header for CHECKSUM_PARTIAL/GSO frames.
// Use inside a scratch network namespace (scratch_netns.h).
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/fd.h"

namespace slr::testing {

// Runs `cmd` quietly; true if it succeeded.
inline bool sh(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()) == 0; }

// What `cmd` prints (stdout and stderr).
inline std::string output(const std::string& cmd) {
  std::string out;
  if (FILE* f = ::popen((cmd + " 2>&1").c_str(), "r")) {
    char buf[512];
    while (size_t n = std::fread(buf, 1, sizeof buf, f)) out.append(buf, n);
    ::pclose(f);
  }
  return out;
}

inline std::array<uint8_t, 6> macOf(const char* dev) {
  std::array<uint8_t, 6> mac{};
  UniqueFd s(::socket(AF_INET, SOCK_DGRAM, 0));
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, dev, IFNAMSIZ - 1);
  if (s && ::ioctl(s.get(), SIOCGIFHWADDR, &ifr) == 0) std::memcpy(mac.data(), ifr.ifr_hwaddr.sa_data, 6);
  return mac;
}

// Dotted quad to host order.
inline uint32_t ip4(const char* s) {
  in_addr a{};
  inet_pton(AF_INET, s, &a);
  return ntohl(a.s_addr);
}

// A fresh veth pair a <-> b (a stale `a` from an earlier run removed
// first), both up.
inline bool addVethPair(const std::string& a, const std::string& b) {
  (void)sh("ip link del " + a);
  return sh("ip link add " + a + " type veth peer name " + b) && sh("ip link set " + a + " up") &&
         sh("ip link set " + b + " up");
}

// An AF_PACKET socket of `type` (SOCK_RAW: frames from the MAC header;
// SOCK_DGRAM: from the network header; flags such as SOCK_NONBLOCK may be
// or'ed in) receiving everything on `ifindex`.  Invalid on failure.
inline UniqueFd packetCapture(int ifindex, int type) {
  UniqueFd s(::socket(AF_PACKET, type | SOCK_CLOEXEC, htons(ETH_P_ALL)));
  if (!s) return s;
  sockaddr_ll sll{};
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(ETH_P_ALL);
  sll.sll_ifindex = ifindex;
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&sll), sizeof sll) != 0) return UniqueFd();
  return s;
}

// Sends `frame` (starting with its Ethernet header) out of `ifindex` through
// AF_PACKET socket `fd`, addressed to `dst`; sendto()'s result.
inline ssize_t sendFrame(int fd, int ifindex, const std::array<uint8_t, 6>& dst,
                         const std::vector<uint8_t>& frame) {
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_ifindex = ifindex;
  to.sll_halen = 6;
  std::memcpy(to.sll_addr, dst.data(), 6);
  return ::sendto(fd, frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
}

// struct virtio_net_hdr (linux/virtio_net.h is not valid C++: a member
// named `class`).  Host byte order, as packet sockets expect on x86.
struct VnetHdr {
  uint8_t flags;
  uint8_t gso_type;
  uint16_t hdr_len, gso_size, csum_start, csum_offset;
};
static_assert(sizeof(VnetHdr) == 10);
constexpr uint8_t kVnetNeedsCsum = 1;
constexpr uint8_t kVnetGsoTcpv4 = 1;

// `frame` behind a virtio-net header, for a PACKET_VNET_HDR socket or a TAP
// device with IFF_VNET_HDR.
inline std::vector<uint8_t> withVnetHdr(const VnetHdr& h, const std::vector<uint8_t>& frame) {
  std::vector<uint8_t> buf(sizeof h);
  std::memcpy(buf.data(), &h, sizeof h);
  buf.insert(buf.end(), frame.begin(), frame.end());
  return buf;
}

// An AF_PACKET socket that sends frames behind a virtio-net header.
inline UniqueFd vnetSender() {
  UniqueFd s(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0));
  int one = 1;
  if (s && ::setsockopt(s.get(), SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one) != 0) return UniqueFd();
  return s;
}

}  // namespace slr::testing
