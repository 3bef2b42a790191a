// Kernel tunnel decapsulation (hostagent/kernel_decap.h, hostagent/bpf/decap.bpf.c).
//
// Without root: the embedded BPF object is there and libbpf can open it.
// As root, inside a scratch network namespace: the program passes this
// kernel's verifier and attaches to a veth; a real IP-in-IP frame addressed
// to the tunnel address is received on the TUN device "slrt0" as its inner
// packet (byte for byte what the userspace terminator's write() delivers)
// and reaches a local socket with slrt0 as its input interface; everything
// the userspace filter would not forward (and the shapes the program leaves
// to userspace) passes untouched and is seen by a raw IPIP socket instead.
//
// Topology (one namespace, IPv6 off so no stray packets are counted):
// veth kda <-> kdb.  kda holds the tunnel address 10.88.0.11/24 and the
// program on its ingress; frames are injected into kdb (AF_PACKET) with
// kda's MAC, so they arrive on kda as PACKET_HOST.  The SLR is 10.88.0.2
// (no address on kdb: a local source would be a martian).  VIP subnet
// 10.100.0.0/24 is a `local` route, like the host agent sets up.  A TCP
// connection through the program (CHECKSUM_PARTIAL SYN, then a GSO
// aggregate written into a TAP device "kdt" with a virtio-net header) shows
// the kernel accepts what comes out of it.
//
// Nothing is read from the TUN fd: redirected packets are RECEIVED on
// slrt0, and a TUN fd only returns what the kernel transmits into it.  An
// AF_PACKET socket bound to slrt0 sees them, and so does the service.
#include "hostagent/kernel_decap.h"
#include "core/sysctl.h"

#include <arpa/inet.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "core/fd.h"
#include "core/packet.h"
#include "core/tun.h"
#include "tests/unit/scratch_netns.h"
#include "tests/unit/veth_fixture.h"

namespace slr::host {
namespace {

// ---------------------------------------------------------------- no root ---

TEST(KernelDecapObject, EmbeddedObjectOpensWithoutLoading) {
  const auto [data, size] = KernelDecap::embeddedObject();
  ASSERT_NE(data, nullptr);
  ASSERT_GT(size, 64u);
  EXPECT_EQ(std::memcmp(data, "\x7f" "ELF", 4), 0);

  bpf::LogCapture log("test");
  auto opened = bpf::openEmbedded({data, size}, "slr_decap", log);
  ASSERT_TRUE(opened.ok()) << opened.error().message();
  bpf_object* obj = opened->get();
  bpf_program* prog = bpf_object__find_program_by_name(obj, "slr_decap");
  ASSERT_NE(prog, nullptr);
  EXPECT_EQ(bpf_program__type(prog), BPF_PROG_TYPE_SCHED_CLS);
  bpf_map* sources = bpf_object__find_map_by_name(obj, "sources");
  ASSERT_NE(sources, nullptr);
  EXPECT_EQ(bpf_map__type(sources), BPF_MAP_TYPE_HASH);
  EXPECT_EQ(bpf_map__key_size(sources), 4u);
  bpf_map* subnets = bpf_object__find_map_by_name(obj, "subnets");
  ASSERT_NE(subnets, nullptr);
  EXPECT_EQ(bpf_map__type(subnets), BPF_MAP_TYPE_LPM_TRIE);
  EXPECT_EQ(bpf_map__key_size(subnets), 8u);
  bpf_map* counters = bpf_object__find_map_by_name(obj, "counters");
  ASSERT_NE(counters, nullptr);
  EXPECT_EQ(bpf_map__type(counters), BPF_MAP_TYPE_PERCPU_ARRAY);
  EXPECT_EQ(bpf_map__max_entries(counters), 4u);
}

TEST(KernelDecapObject, RefusesNonsenseBeforeTouchingTheKernel) {
  const IpAddress tun = IpAddress::v4(0x0a58000b);
  const std::vector<IpAddress> srcs = {IpAddress::v4(0x0a580002)};
  const std::vector<Prefix> nets = {*Prefix::parse("10.100.0.0/24")};
  EXPECT_FALSE(KernelDecap::attach({}, tun, srcs, nets, "slrt0").ok());
  EXPECT_FALSE(KernelDecap::attach({"eth0"}, *IpAddress::parse("fd00::1"), srcs, nets, "slrt0").ok());
  EXPECT_FALSE(KernelDecap::attach({"eth0"}, tun, {}, nets, "slrt0").ok());
  EXPECT_FALSE(KernelDecap::attach({"eth0"}, tun, srcs, {}, "slrt0").ok());
}

// ------------------------------------------------------------------- root ---

using namespace slr::testing;  // veth_fixture.h

void writeSysctl(const std::string& path, const char* v) { std::ofstream("/proc/sys/" + path) << v << "\n"; }

constexpr const char* kTunnel = "10.88.0.11";
constexpr const char* kSlr = "10.88.0.2";
constexpr const char* kClient = "198.51.100.7";
constexpr const char* kVip = "10.100.0.10";
constexpr uint16_t kUdpPort = 7777;

void putIpv4(std::byte* ip, uint16_t total, uint8_t proto, uint32_t src, uint32_t dst) {
  ip[0] = std::byte{0x45};
  store16(ip + 2, total);
  store16(ip + 4, 0x4321);
  store16(ip + 6, kIpv4FlagDf);
  ip[8] = std::byte{64};
  ip[9] = std::byte{proto};
  store32(ip + 12, src);
  store32(ip + 16, dst);
  (void)setIpv4HeaderChecksum(std::span<std::byte>(ip, 20));
}

uint16_t l4Checksum(const std::byte* ip, uint8_t proto, std::span<const std::byte> l4) {
  std::byte pseudo[12];
  std::memcpy(pseudo, ip + 12, 8);
  pseudo[8] = std::byte{0};
  pseudo[9] = std::byte{proto};
  store16(pseudo + 10, uint16_t(l4.size()));
  return internetChecksum(l4, checksumPartial(std::span<const std::byte>(pseudo, 12)));
}

// IPv4 + UDP (client -> dst:kUdpPort) + payload: the inner packet.
std::vector<uint8_t> innerUdp(uint32_t dst, const std::string& payload) {
  std::vector<uint8_t> p(28 + payload.size());
  auto* ip = reinterpret_cast<std::byte*>(p.data());
  putIpv4(ip, uint16_t(p.size()), kProtoUdp, ip4(kClient), dst);
  std::byte* udp = ip + 20;
  store16(udp, 5555);
  store16(udp + 2, kUdpPort);
  store16(udp + 4, uint16_t(8 + payload.size()));
  std::memcpy(udp + 8, payload.data(), payload.size());
  store16(udp + 6, l4Checksum(ip, kProtoUdp, std::span<const std::byte>(udp, 8 + payload.size())));
  return p;
}

// IPv4 + TCP (client:sport -> VIP:dport) + payload; the TCP checksum is
// complete, or with partial=true only the pseudo-header sum a sender
// leaves to the device (CHECKSUM_PARTIAL).
std::vector<uint8_t> innerTcp(uint16_t sport, uint16_t dport, uint32_t seq, uint32_t ack, uint8_t flags,
                              const std::vector<uint8_t>& payload, bool partial) {
  std::vector<uint8_t> p(40 + payload.size());
  auto* ip = reinterpret_cast<std::byte*>(p.data());
  putIpv4(ip, uint16_t(p.size()), kProtoTcp, ip4(kClient), ip4(kVip));
  std::byte* tcp = ip + 20;
  store16(tcp, sport);
  store16(tcp + 2, dport);
  store32(tcp + 4, seq);
  store32(tcp + 8, ack);
  tcp[12] = std::byte{0x50};
  tcp[13] = std::byte{flags};
  store16(tcp + 14, 65535);
  std::memcpy(tcp + 20, payload.data(), payload.size());
  std::byte pseudo[12];
  std::memcpy(pseudo, ip + 12, 8);
  pseudo[8] = std::byte{0};
  pseudo[9] = std::byte{kProtoTcp};
  store16(pseudo + 10, uint16_t(20 + payload.size()));
  if (partial)
    store16(tcp + 16, uint16_t(~checksumFold(checksumPartial(std::span<const std::byte>(pseudo, 12)))));
  else
    store16(tcp + 16, l4Checksum(ip, kProtoTcp, std::span<const std::byte>(tcp, 20 + payload.size())));
  return p;
}

class KernelDecapNetns : public ::testing::Test {
 protected:
  static constexpr const char* kIpv6Switches[] = {"net/ipv6/conf/all/disable_ipv6",
                                                  "net/ipv6/conf/default/disable_ipv6"};
  std::vector<std::string> saved_ipv6_;

  void SetUp() override {
    REQUIRE_SCRATCH_NETNS();
    // IPv6 off while this fixture runs (no autoconf noise on the veths);
    // TearDown puts it back for the other tests sharing the scratch netns.
    // Read both first: writing "all" also sets "default".
    for (const char* k : kIpv6Switches) {
      auto old = readSysctl(k);
      saved_ipv6_.push_back(old ? *old : "0");
    }
    for (const char* k : kIpv6Switches) writeSysctl(k, "1");
    ASSERT_TRUE(addVethPair("kda", "kdb"));
    ASSERT_TRUE(sh(std::string("ip addr add ") + kTunnel + "/24 dev kda"));
    kda_ = int(if_nametoindex("kda"));
    kdb_ = int(if_nametoindex("kdb"));
    ASSERT_GT(kda_, 0);
    ASSERT_GT(kdb_, 0);
    kda_mac_ = macOf("kda");
    kdb_mac_ = macOf("kdb");

    auto tun = openTun("slrt0");
    ASSERT_TRUE(tun.ok()) << tun.error().message();
    tun_ = std::move(*tun);
    ASSERT_TRUE(sh("ip link set slrt0 up"));
    slrt0_ = int(if_nametoindex("slrt0"));
    ASSERT_GT(slrt0_, 0);
    // What HostSetup does: rp_filter off, the VIP subnet local.
    for (const char* d : {"all", "default", "slrt0", "kda"})
      writeSysctl(std::string("net/ipv4/conf/") + d + "/rp_filter", "0");
    ASSERT_TRUE(sh("ip route replace local 10.100.0.0/24 dev lo table local"));
    ASSERT_TRUE(sh("ip route replace local 10.200.0.0/16 dev lo table local"));

    inject_.reset(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0));
    ASSERT_TRUE(inject_);
    // Everything received on slrt0, from its network header.
    tap_ = packetCapture(slrt0_, SOCK_DGRAM | SOCK_NONBLOCK);
    ASSERT_TRUE(tap_);
    // The service: any local address, port kUdpPort, tells the input device.
    udp_.reset(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    ASSERT_TRUE(udp_);
    int one = 1;
    ASSERT_EQ(::setsockopt(udp_.get(), IPPROTO_IP, IP_PKTINFO, &one, sizeof one), 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(kUdpPort);
    ASSERT_EQ(::bind(udp_.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    // What the userspace terminator reads: tunnels the program passed on.
    raw_.reset(::socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_IPIP));
    ASSERT_TRUE(raw_);
    sockaddr_in ra{};
    ra.sin_family = AF_INET;
    ra.sin_addr.s_addr = htonl(ip4(kTunnel));
    ASSERT_EQ(::bind(raw_.get(), reinterpret_cast<sockaddr*>(&ra), sizeof ra), 0);
  }
  void TearDown() override {
    for (size_t i = 0; i < saved_ipv6_.size(); ++i) writeSysctl(kIpv6Switches[i], saved_ipv6_[i].c_str());
    (void)sh("ip link del kda");
    (void)sh("ip route del local 10.100.0.0/24 dev lo table local");
    (void)sh("ip route del local 10.200.0.0/16 dev lo table local");
    tun_.reset();
  }

  Result<std::unique_ptr<KernelDecap>> attach(std::vector<std::string> uplinks = {"kda"}) {
    return KernelDecap::attach(uplinks, IpAddress::v4(ip4(kTunnel)),
                               {IpAddress::v4(ip4(kSlr)), IpAddress::v4(ip4("10.99.0.1"))},
                               {*Prefix::parse("10.100.0.0/24"), *Prefix::parse("10.200.0.0/16")},
                               "slrt0");
  }

  // Ethernet (kdb -> kda) + outer IPv4 (protocol 4) + inner.
  std::vector<uint8_t> frame(const std::vector<uint8_t>& inner, uint32_t src, uint32_t dst,
                             uint8_t proto = kProtoIpip) {
    std::vector<uint8_t> f(14 + 20);
    std::memcpy(&f[0], kda_mac_.data(), 6);
    std::memcpy(&f[6], kdb_mac_.data(), 6);
    f[12] = 0x08;
    f[13] = 0x00;
    f.insert(f.end(), inner.begin(), inner.end());
    putIpv4(reinterpret_cast<std::byte*>(&f[14]), uint16_t(20 + inner.size()), proto, src, dst);
    return f;
  }
  std::vector<uint8_t> goodFrame(const std::vector<uint8_t>& inner) {
    return frame(inner, ip4(kSlr), ip4(kTunnel));
  }

  void inject(const std::vector<uint8_t>& f) {
    ASSERT_EQ(sendFrame(inject_.get(), kdb_, kda_mac_, f), ssize_t(f.size()));
  }

  // Next datagram on `fd` within timeout_ms.
  static std::optional<std::vector<uint8_t>> recvOne(int fd, int timeout_ms) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return std::nullopt;
    std::vector<uint8_t> buf(70000);
    ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
    if (n < 0) return std::nullopt;
    buf.resize(size_t(n));
    return buf;
  }
  // Next UDP payload and the interface it arrived on.
  std::optional<std::pair<std::string, int>> recvUdp(int timeout_ms) {
    pollfd p{udp_.get(), POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return std::nullopt;
    char data[2048];
    char control[256];
    iovec iov{data, sizeof data};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(udp_.get(), &msg, 0);
    if (n < 0) return std::nullopt;
    int ifindex = -1;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c))
      if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO)
        ifindex = reinterpret_cast<in_pktinfo*>(CMSG_DATA(c))->ipi_ifindex;
    return std::make_pair(std::string(data, size_t(n)), ifindex);
  }
  void drain() {
    for (int fd : {tap_.get(), udp_.get(), raw_.get()}) {
      uint8_t buf[2048];
      while (::recv(fd, buf, sizeof buf, MSG_DONTWAIT) > 0) {
      }
    }
  }

  // Replies leave (DSR) via kda to the client: captured on kdb.
  void routeRepliesAndCapture() {
    ASSERT_TRUE(sh(std::string("ip neigh replace ") + kSlr + " lladdr 02:00:00:00:00:02 dev kda nud permanent"));
    ASSERT_TRUE(sh(std::string("ip route replace 198.51.100.0/24 via ") + kSlr + " dev kda"));
    capture_ = packetCapture(kdb_, SOCK_RAW | SOCK_NONBLOCK);
    ASSERT_TRUE(capture_);
  }
  // The next TCP packet VIP:80 -> client:dport with exactly `flags`, as
  // {seq, ack}.
  std::optional<std::pair<uint32_t, uint32_t>> tcpReply(uint16_t dport, uint8_t flags, int timeout_ms) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < deadline) {
      auto o = recvOne(capture_.get(), 50);
      if (!o || o->size() < 54 || (*o)[12] != 0x08 || (*o)[13] != 0x00 || (*o)[14 + 9] != kProtoTcp) continue;
      auto* r = reinterpret_cast<const std::byte*>(o->data() + 14);
      if (load32(r + 12) == ip4(kVip) && load32(r + 16) == ip4(kClient) && load16(r + 22) == dport &&
          uint8_t(r[33]) == flags)
        return std::make_pair(load32(r + 24), load32(r + 28));
    }
    return std::nullopt;
  }
  // Sends an IPIP frame with a virtio-net header: the inner TCP checksum
  // left to the "device", as a GSO aggregate of mss-byte segments if mss.
  void injectPartial(const std::vector<uint8_t>& f, uint16_t mss) {
    UniqueFd vnet = vnetSender();
    ASSERT_TRUE(vnet);
    VnetHdr h{};
    h.flags = kVnetNeedsCsum;
    h.csum_start = 14 + 20 + 20;
    h.csum_offset = 16;
    if (mss != 0) {
      h.gso_type = kVnetGsoTcpv4;
      h.gso_size = mss;
      h.hdr_len = 14 + 20 + 20 + 20;
    }
    const std::vector<uint8_t> buf = withVnetHdr(h, f);
    ASSERT_EQ(sendFrame(vnet.get(), kdb_, kda_mac_, buf), ssize_t(buf.size())) << std::strerror(errno);
  }
  UniqueFd listenOnVip(uint16_t port) {
    UniqueFd l(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(ip4(kVip));
    if (!l || ::bind(l.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || ::listen(l.get(), 8) != 0)
      return UniqueFd();
    return l;
  }

  // Waits until stats() satisfies pred (softirq may run after sendto returns).
  template <typename Pred>
  KernelDecap::Stats waitStats(KernelDecap& kd, Pred pred) {
    KernelDecap::Stats s = kd.stats();
    for (int i = 0; i < 100 && !pred(s); ++i) {
      usleep(10'000);
      s = kd.stats();
    }
    return s;
  }

  int kda_ = 0, kdb_ = 0, slrt0_ = 0;
  std::array<uint8_t, 6> kda_mac_{}, kdb_mac_{};
  UniqueFd tun_, inject_, tap_, udp_, raw_, capture_;
};

TEST_F(KernelDecapNetns, DeliversTheInnerPacketOnTheTunDevice) {
  auto kd = attach();
  ASSERT_TRUE(kd.ok()) << kd.error().message();
  EXPECT_NE(output("tc filter show dev kda ingress").find("slr_decap"), std::string::npos);

  // Reference: what the userspace terminator does, write() to the TUN fd.
  const std::vector<uint8_t> ref = innerUdp(ip4(kVip), "by write()");
  drain();
  ASSERT_EQ(::write(tun_.get(), ref.data(), ref.size()), ssize_t(ref.size()));
  auto ref_tap = recvOne(tap_.get(), 2000);
  ASSERT_TRUE(ref_tap.has_value());
  EXPECT_EQ(*ref_tap, ref);
  auto ref_udp = recvUdp(2000);
  ASSERT_TRUE(ref_udp.has_value());
  EXPECT_EQ(ref_udp->first, "by write()");
  EXPECT_EQ(ref_udp->second, slrt0_);

  // The same through the kernel decapsulation: the same view from slrt0.
  const std::vector<uint8_t> inner = innerUdp(ip4(kVip), "by the kernel");
  inject(goodFrame(inner));
  auto got = recvOne(tap_.get(), 2000);
  ASSERT_TRUE(got.has_value()) << "nothing received on slrt0; passed=" << (*kd)->stats().passed;
  EXPECT_EQ(*got, inner);
  auto udp = recvUdp(2000);
  ASSERT_TRUE(udp.has_value());
  EXPECT_EQ(udp->first, "by the kernel");
  EXPECT_EQ(udp->second, slrt0_);
  EXPECT_FALSE(recvOne(raw_.get(), 50).has_value()) << "the userspace terminator saw it too";

  // Trailing bytes after the outer packet (Ethernet padding, say) stay on
  // the skb (a tap on slrt0 sees them) but the stack trims to the inner
  // total length: the service gets exactly the datagram.
  const std::vector<uint8_t> tiny = innerUdp(ip4("10.200.3.4"), "x");  // second subnet
  std::vector<uint8_t> padded = goodFrame(tiny);
  padded.resize(padded.size() + 9, 0);
  inject(padded);
  auto got_tiny = recvOne(tap_.get(), 2000);
  ASSERT_TRUE(got_tiny.has_value());
  ASSERT_EQ(got_tiny->size(), tiny.size() + 9);
  EXPECT_EQ(std::vector<uint8_t>(got_tiny->begin(), got_tiny->begin() + long(tiny.size())), tiny);
  auto udp_tiny = recvUdp(2000);
  ASSERT_TRUE(udp_tiny.has_value());
  EXPECT_EQ(udp_tiny->first, "x");

  KernelDecap::Stats s = (*kd)->stats();
  EXPECT_EQ(s.packets, 2u);
  EXPECT_EQ(s.bytes, inner.size() + tiny.size());
  EXPECT_EQ(s.passed_tunnel, 0u);
}

TEST_F(KernelDecapNetns, LeavesEverythingElseToTheKernel) {
  auto kd = attach();
  ASSERT_TRUE(kd.ok()) << kd.error().message();
  const std::vector<uint8_t> inner = innerUdp(ip4(kVip), "payload");

  struct Case {
    const char* what;
    std::vector<uint8_t> frame;
    bool tunnel;       // IPv4 protocol 4: counted in passed_tunnel
    bool terminator;   // the raw IPIP socket on the tunnel address gets it
  };
  std::vector<Case> cases;
  cases.push_back({"outer src not an SLR", frame(inner, ip4("10.88.0.3"), ip4(kTunnel)), true, true});
  cases.push_back({"outer dst not the tunnel address", frame(inner, ip4(kSlr), ip4("10.88.0.12")), true,
                   false});
  cases.push_back({"inner dst not in a served subnet",
                   goodFrame(innerUdp(ip4("10.101.0.10"), "payload")), true, true});
  cases.push_back({"not IPIP", frame(inner, ip4(kSlr), ip4(kTunnel), kProtoUdp), false, false});
  {
    std::vector<uint8_t> f = goodFrame(inner);
    f[14 + 10] ^= 0x5a;  // outer header checksum
    cases.push_back({"bad outer checksum", f, true, false});
  }
  {
    std::vector<uint8_t> f = goodFrame(inner);
    store16(reinterpret_cast<std::byte*>(&f[14 + 6]), kIpv4FlagMf);
    (void)setIpv4HeaderChecksum(std::span<std::byte>(reinterpret_cast<std::byte*>(&f[14]), 20));
    cases.push_back({"outer fragment", f, true, false});  // waits for reassembly
  }
  {
    std::vector<uint8_t> f = goodFrame(inner);
    f[34 + 10] ^= 0x5a;  // inner header checksum: userspace counts it malformed
    cases.push_back({"bad inner checksum", f, true, true});
  }
  {
    std::vector<uint8_t> f = goodFrame(inner);
    store16(reinterpret_cast<std::byte*>(&f[34 + 2]), uint16_t(inner.size() + 1));
    (void)setIpv4HeaderChecksum(std::span<std::byte>(reinterpret_cast<std::byte*>(&f[34]), 20));
    cases.push_back({"inner longer than the tunnel payload", f, true, true});
  }
  {
    // Inner options (ihl 6): the userspace terminator forwards them.
    std::vector<uint8_t> in(inner.begin(), inner.begin() + 20);
    in.insert(in.end(), {1, 1, 1, 0});  // NOP NOP NOP EOL
    in.insert(in.end(), inner.begin() + 20, inner.end());
    auto* ip = reinterpret_cast<std::byte*>(in.data());
    ip[0] = std::byte{0x46};
    store16(ip + 2, uint16_t(in.size()));
    (void)setIpv4HeaderChecksum(std::span<std::byte>(ip, 24));
    cases.push_back({"inner IP options", goodFrame(in), true, true});
  }

  uint64_t passed = 0, passed_tunnel = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    drain();
    inject(c.frame);
    passed++;
    passed_tunnel += c.tunnel ? 1 : 0;
    KernelDecap::Stats s = waitStats(**kd, [&](const KernelDecap::Stats& s) { return s.passed >= passed; });
    EXPECT_EQ(s.passed, passed);
    EXPECT_EQ(s.passed_tunnel, passed_tunnel);
    EXPECT_EQ(s.packets, 0u);
    if (c.terminator) {
      // Untouched: the raw socket reads the outer packet as it was sent.
      auto raw = recvOne(raw_.get(), 2000);
      ASSERT_TRUE(raw.has_value());
      EXPECT_EQ(*raw, std::vector<uint8_t>(c.frame.begin() + 14, c.frame.end()));
    }
    EXPECT_FALSE(recvOne(tap_.get(), 100).has_value()) << "received on slrt0";
  }
}

// Packets from local sockets over veth carry CHECKSUM_PARTIAL (the inner TCP
// checksum not filled in) and come as GSO aggregates (injected here with a
// virtio-net header).  After decapsulation the checksum offsets still point
// into the inner packet, which does not move, and FIXED_GSO keeps the
// segment size: TCP accepts both.  A whole connection through the program:
// SYN (partial checksum) -> SYN-ACK, ACK, then one 3 x 500-byte aggregate
// that the service reads as 1500 bytes.
TEST_F(KernelDecapNetns, PartialChecksumAndGsoTcpIsAccepted) {
  routeRepliesAndCapture();
  UniqueFd listener = listenOnVip(80);
  ASSERT_TRUE(listener);
  auto kd = attach();
  ASSERT_TRUE(kd.ok()) << kd.error().message();

  constexpr uint16_t kPort = 40000;
  const std::vector<uint8_t> syn = innerTcp(kPort, 80, 1000, 0, kTcpSyn, {}, /*partial=*/true);
  ASSERT_NE(l4Checksum(reinterpret_cast<const std::byte*>(syn.data()), kProtoTcp,
                       std::span<const std::byte>(reinterpret_cast<const std::byte*>(syn.data()) + 20, 20)),
            0)
      << "the SYN's checksum must be unfinished";
  injectPartial(goodFrame(syn), 0);
  auto syn_ack = tcpReply(kPort, kTcpSyn | kTcpAck, 3000);
  ASSERT_TRUE(syn_ack.has_value()) << "no SYN-ACK; decapsulated " << (*kd)->stats().packets;
  EXPECT_EQ(syn_ack->second, 1001u);
  const uint32_t server_seq = syn_ack->first + 1;
  inject(goodFrame(innerTcp(kPort, 80, 1001, server_seq, kTcpAck, {}, false)));
  pollfd p{listener.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 3000), 1) << "handshake did not complete";
  UniqueFd conn(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(conn);

  std::vector<uint8_t> data(1500);
  for (size_t i = 0; i < data.size(); ++i) data[i] = uint8_t(i * 7 + 3);
  // The aggregate comes in through a TAP device with a virtio-net header
  // (as a VM's or a GRO'ing NIC's would): a TCPV4 GSO skb with the IPIP
  // header in front, CHECKSUM_PARTIAL, segment count not yet computed.  (A
  // veth cannot carry it: the sender's GSO checks drop a TCPV4 aggregate
  // whose IP header is not the TCP one's.)
  UniqueFd tap(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(tap);
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "kdt", IFNAMSIZ - 1);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  ASSERT_EQ(::ioctl(tap.get(), TUNSETIFF, &ifr), 0) << std::strerror(errno);
  ASSERT_TRUE(sh("ip link set kdt up"));
  const auto kdt_mac = macOf("kdt");
  auto kd2 = attach({"kdt"});
  ASSERT_TRUE(kd2.ok()) << kd2.error().message();
  std::vector<uint8_t> f = goodFrame(innerTcp(kPort, 80, 1001, server_seq, kTcpAck | kTcpPsh, data, true));
  std::memcpy(&f[0], kdt_mac.data(), 6);
  VnetHdr h{};
  h.flags = kVnetNeedsCsum;
  h.gso_type = kVnetGsoTcpv4;
  h.gso_size = 500;
  h.hdr_len = 14 + 20 + 20 + 20;
  h.csum_start = 14 + 20 + 20;
  h.csum_offset = 16;
  const std::vector<uint8_t> buf = withVnetHdr(h, f);
  drain();
  ASSERT_EQ(::write(tap.get(), buf.data(), buf.size()), ssize_t(buf.size())) << std::strerror(errno);
  std::vector<uint8_t> got;
  while (got.size() < data.size()) {
    pollfd q{conn.get(), POLLIN, 0};
    if (::poll(&q, 1, 3000) != 1) break;
    uint8_t buf[4096];
    ssize_t n = ::recv(conn.get(), buf, sizeof buf, 0);
    if (n <= 0) break;
    got.insert(got.end(), buf, buf + n);
  }
  EXPECT_EQ(got, data);
  // What slrt0 received: one aggregate, the inner packet of 1500 bytes.
  auto agg = recvOne(tap_.get(), 100);
  ASSERT_TRUE(agg.has_value());
  EXPECT_EQ(agg->size(), 40u + 1500u);
  // SYN + ACK on kda; the aggregate's 3 segments on kdt, their inner bytes
  // as on a wire.
  KernelDecap::Stats s = (*kd)->stats();
  EXPECT_EQ(s.packets, 2u);
  EXPECT_EQ(s.bytes, 40u + 40u);
  s = (*kd2)->stats();
  EXPECT_EQ(s.packets, 3u);
  EXPECT_EQ(s.bytes, 3 * 540u);
  EXPECT_EQ(s.passed_tunnel, 0u);
}

TEST_F(KernelDecapNetns, QdiscLifecycleAndErrors) {
  {
    auto kd = attach();
    ASSERT_TRUE(kd.ok()) << kd.error().message();
    EXPECT_NE(output("tc qdisc show dev kda").find("clsact"), std::string::npos);
    EXPECT_EQ((*kd)->uplinks(), std::vector<std::string>{"kda"});
  }
  // We created it, so it is gone with us.
  EXPECT_EQ(output("tc qdisc show dev kda").find("clsact"), std::string::npos);

  // A clsact that was there before stays, minus our filter.
  ASSERT_TRUE(sh("tc qdisc add dev kdb clsact"));
  {
    auto kd = attach({"kda", "kdb"});
    ASSERT_TRUE(kd.ok()) << kd.error().message();
    EXPECT_NE(output("tc filter show dev kdb ingress").find("slr_decap"), std::string::npos);
  }
  EXPECT_NE(output("tc qdisc show dev kdb").find("clsact"), std::string::npos);
  EXPECT_EQ(output("tc filter show dev kdb ingress").find("slr_decap"), std::string::npos);
  EXPECT_EQ(output("tc qdisc show dev kda").find("clsact"), std::string::npos);

  auto missing = attach({"kda", "nosuchdev0"});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message().find("nosuchdev0"), std::string::npos);
  auto lo = attach({"lo"});
  ASSERT_FALSE(lo.ok());
  EXPECT_NE(lo.error().message().find("Ethernet"), std::string::npos) << lo.error().message();
  auto tun_itself = attach({"slrt0"});
  ASSERT_FALSE(tun_itself.ok());
  auto no_tun = KernelDecap::attach({"kda"}, IpAddress::v4(ip4(kTunnel)), {IpAddress::v4(ip4(kSlr))},
                                    {*Prefix::parse("10.100.0.0/24")}, "nosuchtun0");
  ASSERT_FALSE(no_tun.ok());
  EXPECT_NE(no_tun.error().message().find("nosuchtun0"), std::string::npos);
  EXPECT_EQ(output("tc qdisc show dev kda").find("clsact"), std::string::npos);
}

}  // namespace
}  // namespace slr::host
