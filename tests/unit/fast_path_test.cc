// Kernel fast path (slr/fast_path.h, slr/bpf/fast_path.bpf.c).
//
// Without root: the embedded BPF object is there and libbpf can open it.
// As root, inside a scratch network namespace: the program passes this
// kernel's verifier, attaches to a veth, and a crafted TCP packet of an
// installed flow comes out IP-in-IP encapsulated, TTL decremented, with the
// right MACs; a packet of an unknown flow is left to the slow path.
//
// Topology (one namespace): veth fpa <-> fpb.  The program sits on fpa's
// ingress; we inject frames into fpb (AF_PACKET), so they arrive on fpa.
// fpb has 10.77.0.1/24 (the tunnel source) and a permanent neighbour
// 10.77.0.2 (the "host"), so the FIB lookup resolves and the program
// redirects out of fpb, where a second AF_PACKET socket captures it.
#include "slr/fast_path.h"

#include <arpa/inet.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
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
#include "tests/unit/scratch_netns.h"
#include "tests/unit/veth_fixture.h"

namespace slr::router {
namespace {

// ---------------------------------------------------------------- no root ---

TEST(FastPathObject, EmbeddedObjectOpensWithoutLoading) {
  const auto [data, size] = FastPath::embeddedObject();
  ASSERT_NE(data, nullptr);
  ASSERT_GT(size, 64u);
  EXPECT_EQ(std::memcmp(data, "\x7f" "ELF", 4), 0);

  bpf::LogCapture log("test");
  auto opened = bpf::openEmbedded({data, size}, "slr_fast_path", log);
  ASSERT_TRUE(opened.ok()) << opened.error().message();
  bpf_object* obj = opened->get();
  bpf_program* prog = bpf_object__find_program_by_name(obj, "slr_fast_path");
  ASSERT_NE(prog, nullptr);
  EXPECT_EQ(bpf_program__type(prog), BPF_PROG_TYPE_SCHED_CLS);
  bpf_map* flows = bpf_object__find_map_by_name(obj, "flows");
  ASSERT_NE(flows, nullptr);
  EXPECT_EQ(bpf_map__type(flows), BPF_MAP_TYPE_HASH);
  EXPECT_EQ(bpf_map__key_size(flows), sizeof(FlowKey));
  EXPECT_EQ(bpf_map__value_size(flows), 40u);
  for (const char* m : {"counters", "vip_stats", "host_stats"}) {
    bpf_map* map = bpf_object__find_map_by_name(obj, m);
    ASSERT_NE(map, nullptr) << m;
    EXPECT_EQ(bpf_map__type(map), BPF_MAP_TYPE_PERCPU_ARRAY) << m;
  }
}

TEST(FastPathObject, Eligibility) {
  FlowKey k;
  k.family = Family::kV4;
  k.proto = 6;
  EXPECT_TRUE(FastPath::eligible(k));
  k.proto = 17;
  EXPECT_TRUE(FastPath::eligible(k));
  k.proto = 1;
  EXPECT_FALSE(FastPath::eligible(k));
  k.proto = 6;
  k.family = Family::kV6;
  EXPECT_FALSE(FastPath::eligible(k));
}

// ------------------------------------------------------------------- root ---

using namespace slr::testing;  // veth_fixture.h

uint32_t nowMs() {
  using namespace std::chrono;
  return uint32_t(duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count());
}

constexpr const char* kHostMac = "02:00:00:00:00:02";
constexpr std::array<uint8_t, 6> kHostMacBytes = {2, 0, 0, 0, 0, 2};

class FastPathNetns : public ::testing::Test {
 protected:
  void SetUp() override {
    REQUIRE_SCRATCH_NETNS();
    auto sup = FastPath::supported();
    ASSERT_TRUE(sup.ok()) << sup.error().message();
    if (!*sup) GTEST_SKIP() << "BPF not available";
    ASSERT_TRUE(addVethPair("fpa", "fpb"));
    ASSERT_TRUE(sh("ip addr add 10.77.0.1/24 dev fpb"));
    ASSERT_TRUE(sh(std::string("ip neigh replace 10.77.0.2 lladdr ") + kHostMac +
                   " dev fpb nud permanent"));
    // The FIB helper refuses to answer for a device that does not forward;
    // the SLR daemon sets ip_forward=1 itself.
    std::ofstream("/proc/sys/net/ipv4/ip_forward") << "1\n";
    fpa_ = int(if_nametoindex("fpa"));
    fpb_ = int(if_nametoindex("fpb"));
    ASSERT_GT(fpa_, 0);
    ASSERT_GT(fpb_, 0);
    fpa_mac_ = macOf("fpa");
    fpb_mac_ = macOf("fpb");

    inject_.reset(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0));
    ASSERT_TRUE(inject_);
    capture_ = packetCapture(fpb_, SOCK_RAW | SOCK_NONBLOCK);
    ASSERT_TRUE(capture_);

    key_.family = Family::kV4;
    key_.proto = 6;
    key_.src = IpAddress::v4(ip4("10.1.0.5")).bytes;
    key_.dst = IpAddress::v4(ip4("10.100.0.10")).bytes;
    key_.sport = 40000;
    key_.dport = 80;
  }
  void TearDown() override { (void)sh("ip link del fpa"); }

  // Ethernet (fpb -> fpa) + IPv4 (DF, TOS 0x28) + TCP + payload.
  std::vector<uint8_t> frame(const FlowKey& k, uint8_t ttl, uint8_t tcp_flags, size_t payload) {
    const size_t ip_len = 20 + 20 + payload;
    std::vector<uint8_t> f(14 + ip_len, 0);
    std::memcpy(&f[0], fpa_mac_.data(), 6);
    std::memcpy(&f[6], fpb_mac_.data(), 6);
    f[12] = 0x08;
    f[13] = 0x00;
    auto* ip = reinterpret_cast<std::byte*>(&f[14]);
    ip[0] = std::byte{0x45};
    ip[1] = std::byte{0x28};
    store16(ip + 2, uint16_t(ip_len));
    store16(ip + 4, 0x1234);
    store16(ip + 6, kIpv4FlagDf);
    ip[8] = std::byte{ttl};
    ip[9] = std::byte{k.proto};
    std::memcpy(ip + 12, k.src.data(), 4);
    std::memcpy(ip + 16, k.dst.data(), 4);
    (void)setIpv4HeaderChecksum(std::span<std::byte>(ip, 20));
    std::byte* tcp = ip + 20;
    store16(tcp, k.sport);
    store16(tcp + 2, k.dport);
    store32(tcp + 4, 1000);
    store32(tcp + 8, 2000);
    tcp[12] = std::byte{0x50};
    tcp[13] = std::byte{tcp_flags};
    store16(tcp + 14, 65535);
    for (size_t i = 0; i < payload; ++i) tcp[20 + i] = std::byte(uint8_t('a' + i % 26));
    // TCP checksum over the pseudo-header: the inner packet must stay valid.
    std::byte pseudo[12];
    std::memcpy(pseudo, ip + 12, 8);
    pseudo[8] = std::byte{0};
    pseudo[9] = std::byte{k.proto};
    store16(pseudo + 10, uint16_t(20 + payload));
    uint32_t sum = checksumPartial(std::span<const std::byte>(pseudo, 12));
    store16(tcp + 16, internetChecksum(std::span<const std::byte>(tcp, 20 + payload), sum));
    return f;
  }

  void inject(const std::vector<uint8_t>& f) {
    ASSERT_EQ(sendFrame(inject_.get(), fpb_, fpa_mac_, f), ssize_t(f.size()));
  }

  // The next IP-in-IP frame leaving fpb, within timeout_ms.
  std::optional<std::vector<uint8_t>> captureIpip(int timeout_ms) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{capture_.get(), POLLIN, 0};
      (void)::poll(&p, 1, 50);
      uint8_t buf[2048];
      ssize_t n;
      while ((n = ::recv(capture_.get(), buf, sizeof buf, 0)) > 0) {
        if (n >= 34 && buf[12] == 0x08 && buf[13] == 0x00 && buf[14 + 9] == 4)
          return std::vector<uint8_t>(buf, buf + n);
      }
    }
    return std::nullopt;
  }

  // The inner frame tunnelled the way an upper SLR does it: Ethernet, then an
  // outer IPv4 header 10.77.0.50 -> outer_dst (TTL 5, DF), then the inner
  // frame's IP packet.
  std::vector<uint8_t> tunnelled(uint32_t outer_dst, const std::vector<uint8_t>& inner_frame) {
    std::vector<uint8_t> f(inner_frame.begin(), inner_frame.begin() + 14);
    std::vector<uint8_t> outer(20, 0);
    auto* o = reinterpret_cast<std::byte*>(outer.data());
    o[0] = std::byte{0x45};
    store16(o + 2, uint16_t(20 + inner_frame.size() - 14));
    store16(o + 6, kIpv4FlagDf);
    o[8] = std::byte{5};
    o[9] = std::byte{kProtoIpip};
    store32(o + 12, ip4("10.77.0.50"));
    store32(o + 16, outer_dst);
    (void)setIpv4HeaderChecksum(std::span<std::byte>(o, 20));
    f.insert(f.end(), outer.begin(), outer.end());
    f.insert(f.end(), inner_frame.begin() + 14, inner_frame.end());
    return f;
  }

  // Like captureIpip, skipping the IP-in-IP frames a test injected itself
  // (outer source 10.77.0.50): the capture on fpb sees them leave.
  std::optional<std::vector<uint8_t>> captureForwarded(int timeout_ms) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < deadline) {
      auto c = captureIpip(50);
      if (c && load32(reinterpret_cast<const std::byte*>(c->data() + 14 + 12)) != ip4("10.77.0.50"))
        return c;
    }
    return std::nullopt;
  }

  void drainCapture() {
    uint8_t buf[2048];
    while (::recv(capture_.get(), buf, sizeof buf, 0) > 0) {
    }
  }

  // Waits until stats() satisfies pred (the packet is processed in softirq,
  // possibly after sendto returned).
  template <typename Pred>
  FastPathStats waitStats(FastPath& fp, Pred pred) {
    FastPathStats s = fp.stats();
    for (int i = 0; i < 100 && !pred(s); ++i) {
      usleep(10'000);
      s = fp.stats();
    }
    return s;
  }

  int fpa_ = 0, fpb_ = 0;
  std::array<uint8_t, 6> fpa_mac_{}, fpb_mac_{};
  UniqueFd inject_, capture_;
  FlowKey key_;
};

TEST_F(FastPathNetns, ForwardsInstalledFlowAndPassesUnknownOnes) {
  auto fp = FastPath::attach({"fpa"}, 1500, 1024, 2, 3);
  ASSERT_TRUE(fp.ok()) << fp.error().message();
  FastPath& f = **fp;
  EXPECT_NE(output("tc filter show dev fpa ingress").find("slr_fast_path"), std::string::npos);

  // Unknown flow: left to the slow path, nothing encapsulated.
  drainCapture();
  inject(frame(key_, 64, 0x10, 10));
  FastPathStats s = waitStats(f, [](const FastPathStats& s) { return s.slow_path >= 1; });
  EXPECT_EQ(s.slow_path, 1u);
  EXPECT_EQ(s.packets, 0u);
  EXPECT_FALSE(captureIpip(100).has_value());
  auto none = f.activity(key_);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());

  // Installed flow: encapsulated and redirected out of fpb.
  FastPathFlow flow;
  flow.tunnel_src = ip4("10.77.0.1");
  flow.tunnel_dst = ip4("10.77.0.2");
  flow.vip = 1;
  flow.host = 2;
  ASSERT_TRUE(f.add(key_, flow).ok());
  EXPECT_EQ(f.stats().flows, 1u);
  const std::vector<uint8_t> in = frame(key_, 64, 0x18, 100);
  drainCapture();
  inject(in);
  auto out = captureIpip(2000);
  ASSERT_TRUE(out.has_value()) << "no IP-in-IP packet left fpb; stats: fib_fail=" << f.stats().fib_fail
                               << " too_big=" << f.stats().too_big;
  const std::vector<uint8_t>& o = *out;
  const size_t inner_len = in.size() - 14;
  ASSERT_GE(o.size(), 14 + 20 + inner_len);
  // Ethernet: to the neighbour's MAC, from fpb's.
  EXPECT_EQ(std::memcmp(&o[0], kHostMacBytes.data(), 6), 0);
  EXPECT_EQ(std::memcmp(&o[6], fpb_mac_.data(), 6), 0);
  // Outer IPv4 header.
  auto* outer = reinterpret_cast<const std::byte*>(&o[14]);
  Ipv4View ov(std::span<const std::byte>(outer, o.size() - 14));
  EXPECT_EQ(ov.check(true), ParseError::kOk);
  EXPECT_EQ(ov.ihl(), 5);
  EXPECT_EQ(ov.tos(), 0x28);
  EXPECT_EQ(ov.totalLength(), inner_len + 20);
  EXPECT_EQ(ov.id(), 0);
  EXPECT_TRUE(ov.dontFragment());
  EXPECT_EQ(ov.ttl(), 64);
  EXPECT_EQ(ov.protocol(), kProtoIpip);
  EXPECT_EQ(ov.srcRaw(), ip4("10.77.0.1"));
  EXPECT_EQ(ov.dstRaw(), ip4("10.77.0.2"));
  EXPECT_TRUE(ipv4HeaderChecksumValid(std::span<const std::byte>(outer, 20)));
  // Inner: the original datagram, TTL - 1, header checksum still valid.
  std::vector<uint8_t> expect(in.begin() + 14, in.end());
  expect[8] = 63;
  auto* exp_ip = reinterpret_cast<std::byte*>(expect.data());
  (void)setIpv4HeaderChecksum(std::span<std::byte>(exp_ip, 20));
  std::vector<uint8_t> got(o.begin() + 34, o.begin() + 34 + long(inner_len));
  EXPECT_EQ(got, expect);
  EXPECT_TRUE(ipv4HeaderChecksumValid(std::span<const std::byte>(
      reinterpret_cast<const std::byte*>(got.data()), 20)));

  // Activity: one packet, just now.
  auto act = f.activity(key_);
  ASSERT_TRUE(act.ok()) << act.error().message();
  ASSERT_TRUE(act->has_value());
  EXPECT_EQ((*act)->packets, 1u);
  EXPECT_EQ((*act)->bytes, inner_len);
  EXPECT_EQ((*act)->tcp_flags, 0);
  EXPECT_LT(uint32_t(nowMs() - (*act)->last_seen_ms), 2000u);

  // A FIN is forwarded too and recorded.
  drainCapture();
  inject(frame(key_, 64, 0x11, 0));
  ASSERT_TRUE(captureIpip(2000).has_value());
  act = f.activity(key_);
  ASSERT_TRUE(act.ok() && act->has_value());
  EXPECT_EQ((*act)->packets, 2u);
  EXPECT_EQ((*act)->tcp_flags, 0x01);

  // TTL 1: the kernel must send time-exceeded, so the slow path gets it.
  drainCapture();
  inject(frame(key_, 1, 0x10, 0));
  s = waitStats(f, [](const FastPathStats& s) { return s.too_big >= 1; });
  EXPECT_EQ(s.too_big, 1u);
  EXPECT_FALSE(captureIpip(100).has_value());
  // Inner 1481 + 20 > 1500: too big, slow path (it sends the ICMP).
  inject(frame(key_, 64, 0x10, 1481 - 40));
  s = waitStats(f, [](const FastPathStats& s) { return s.too_big >= 2; });
  EXPECT_EQ(s.too_big, 2u);
  EXPECT_FALSE(captureIpip(100).has_value());
  // Exactly at the tunnel MTU: forwarded.
  inject(frame(key_, 64, 0x10, 1480 - 40));
  ASSERT_TRUE(captureIpip(2000).has_value());

  // Stats add up: three forwarded packets, all on VIP 1 / host 2.
  s = f.stats();
  const uint64_t bytes = inner_len + 40 + 1480;
  EXPECT_EQ(s.packets, 3u);
  EXPECT_EQ(s.bytes, bytes);
  EXPECT_EQ(s.slow_path, 1u);
  EXPECT_EQ(s.fib_fail, 0u);
  ASSERT_EQ(s.vip.size(), 2u);
  ASSERT_EQ(s.host.size(), 3u);
  EXPECT_EQ(s.vip[0], std::make_pair(uint64_t(0), uint64_t(0)));
  EXPECT_EQ(s.vip[1], std::make_pair(uint64_t(3), bytes));
  EXPECT_EQ(s.host[2], std::make_pair(uint64_t(3), bytes));
  EXPECT_EQ(s.host[0].first + s.host[1].first, 0u);
  act = f.activity(key_);
  ASSERT_TRUE(act.ok() && act->has_value());
  EXPECT_EQ((*act)->packets, 3u);
  EXPECT_EQ((*act)->bytes, bytes);

  // Removed: back to the slow path.
  ASSERT_TRUE(f.remove(key_).ok());
  ASSERT_TRUE(f.remove(key_).ok());  // absent is fine
  EXPECT_EQ(f.stats().flows, 0u);
  act = f.activity(key_);
  ASSERT_TRUE(act.ok());
  EXPECT_FALSE(act->has_value());
  drainCapture();
  inject(frame(key_, 64, 0x10, 10));
  s = waitStats(f, [](const FastPathStats& s) { return s.slow_path >= 2; });
  EXPECT_EQ(s.slow_path, 2u);
  EXPECT_EQ(s.packets, 3u);
  EXPECT_FALSE(captureIpip(100).has_value());
}

// Hierarchy: a packet an upper SLR tunnelled to this SLR's tunnel source is
// re-tunnelled to the installed flow's next hop by rewriting its outer
// header; the inner datagram is left exactly as it came.  Other IP-in-IP
// (not to us, unknown inner flow, no tunnel source configured) goes to the
// kernel untouched.
TEST_F(FastPathNetns, RetunnelsInstalledFlowsFromAbove) {
  const uint32_t self = ip4("10.77.9.9");
  auto fp = FastPath::attach({"fpa"}, 1500, 16, 1, 1, self);
  ASSERT_TRUE(fp.ok()) << fp.error().message();
  FastPath& f = **fp;

  // Unknown inner flow: the kernel (the worker's raw socket) gets it.
  drainCapture();
  inject(tunnelled(self, frame(key_, 64, 0x10, 10)));
  FastPathStats s = waitStats(f, [](const FastPathStats& s) { return s.slow_path >= 1; });
  EXPECT_EQ(s.slow_path, 1u);
  EXPECT_FALSE(captureForwarded(100).has_value());

  FastPathFlow flow;
  flow.tunnel_src = ip4("10.77.0.1");
  flow.tunnel_dst = ip4("10.77.0.2");
  ASSERT_TRUE(f.add(key_, flow).ok());
  const std::vector<uint8_t> inner = frame(key_, 64, 0x18, 100);
  drainCapture();
  inject(tunnelled(self, inner));
  auto out = captureForwarded(2000);
  ASSERT_TRUE(out.has_value()) << "nothing re-tunnelled; fib_fail=" << f.stats().fib_fail
                               << " too_big=" << f.stats().too_big;
  const std::vector<uint8_t>& o = *out;
  const size_t inner_len = inner.size() - 14;
  ASSERT_EQ(o.size(), 14 + 20 + inner_len);
  EXPECT_EQ(std::memcmp(&o[0], kHostMacBytes.data(), 6), 0);
  auto* outer = reinterpret_cast<const std::byte*>(&o[14]);
  Ipv4View ov(std::span<const std::byte>(outer, o.size() - 14));
  EXPECT_EQ(ov.srcRaw(), ip4("10.77.0.1"));
  EXPECT_EQ(ov.dstRaw(), ip4("10.77.0.2"));
  EXPECT_EQ(ov.ttl(), 64);
  EXPECT_EQ(ov.protocol(), kProtoIpip);
  EXPECT_EQ(ov.totalLength(), inner_len + 20);
  EXPECT_TRUE(ipv4HeaderChecksumValid(std::span<const std::byte>(outer, 20)));
  EXPECT_EQ(std::vector<uint8_t>(o.begin() + 34, o.end()),
            std::vector<uint8_t>(inner.begin() + 14, inner.end()));  // inner TTL too
  auto act = f.activity(key_);
  ASSERT_TRUE(act.ok() && act->has_value());
  EXPECT_EQ((*act)->packets, 1u);
  EXPECT_EQ((*act)->bytes, inner_len);

  // Tunnelled to another address: not ours to re-tunnel.
  drainCapture();
  inject(tunnelled(ip4("10.77.9.10"), inner));
  EXPECT_FALSE(captureForwarded(200).has_value());
  EXPECT_EQ(f.stats().packets, 1u);
}

TEST_F(FastPathNetns, WithoutATunnelSourceIpipIsLeftAlone) {
  auto fp = FastPath::attach({"fpa"}, 1500, 16, 1, 1);
  ASSERT_TRUE(fp.ok()) << fp.error().message();
  FastPathFlow flow;
  flow.tunnel_src = ip4("10.77.0.1");
  flow.tunnel_dst = ip4("10.77.0.2");
  ASSERT_TRUE((*fp)->add(key_, flow).ok());
  // Tunnelled to 0.0.0.0, the unset tunnel source: must still not match.
  std::vector<uint8_t> f = tunnelled(0, frame(key_, 64, 0x18, 10));
  drainCapture();
  inject(f);
  EXPECT_FALSE(captureForwarded(200).has_value());
  EXPECT_EQ((*fp)->stats().packets, 0u);
  EXPECT_EQ((*fp)->stats().slow_path, 0u);  // not even looked up
}

// Packets forwarded from local sockets over veth arrive CHECKSUM_PARTIAL and
// as GSO aggregates (injected here with a virtio-net header).  The program
// keeps them so (FIXED_GSO: each segment's inner packet is what the client
// sent); an egress device without TX checksum offload then segments and
// completes checksums in software, so what leaves is a set of ordinary
// IP-in-IP packets.  Egress here is a second veth pair, fpc (10.78.0.1/24).
TEST_F(FastPathNetns, GsoAndPartialChecksumLeaveAsFinishedSegments) {
  ASSERT_TRUE(addVethPair("fpc", "fpd"));
  ASSERT_TRUE(sh("ip addr add 10.78.0.1/24 dev fpc"));
  ASSERT_TRUE(sh(std::string("ip neigh replace 10.78.0.2 lladdr ") + kHostMac +
                 " dev fpc nud permanent"));
  const int fpc = int(if_nametoindex("fpc"));
  const auto fpc_mac = macOf("fpc");
  capture_ = packetCapture(fpc, SOCK_RAW | SOCK_NONBLOCK);
  ASSERT_TRUE(capture_);
  UniqueFd vnet = vnetSender();
  ASSERT_TRUE(vnet);

  auto fp = FastPath::attach({"fpa"}, 1500, 16, 1, 1);
  ASSERT_TRUE(fp.ok()) << fp.error().message();
  FastPathFlow flow;
  flow.tunnel_src = ip4("10.78.0.1");
  flow.tunnel_dst = ip4("10.78.0.2");
  ASSERT_TRUE((*fp)->add(key_, flow).ok());

  // Sends `f` with its TCP checksum left to the "device" (pseudo-header sum
  // only), as GSO of mss-byte segments when mss != 0.
  auto sendPartial = [&](std::vector<uint8_t> f, uint16_t mss) {
    auto* ip = reinterpret_cast<std::byte*>(&f[14]);
    std::byte pseudo[12];
    std::memcpy(pseudo, ip + 12, 8);
    pseudo[8] = std::byte{0};
    pseudo[9] = std::byte{6};
    store16(pseudo + 10, uint16_t(f.size() - 34));
    store16(ip + 20 + 16, uint16_t(~checksumFold(checksumPartial(std::span<const std::byte>(pseudo, 12)))));
    VnetHdr h{};
    h.flags = kVnetNeedsCsum;
    h.csum_start = 34;
    h.csum_offset = 16;
    if (mss != 0) {
      h.gso_type = kVnetGsoTcpv4;
      h.gso_size = mss;
      h.hdr_len = 54;
    }
    const std::vector<uint8_t> buf = withVnetHdr(h, f);
    ASSERT_EQ(sendFrame(vnet.get(), fpb_, fpa_mac_, buf), ssize_t(buf.size()));
  };
  // Inner TCP checksum of a captured IPIP frame is right.
  auto innerTcpValid = [](const std::vector<uint8_t>& o) {
    auto* in = reinterpret_cast<const std::byte*>(&o[34]);
    const uint16_t len = load16(in + 2);
    std::byte pseudo[12];
    std::memcpy(pseudo, in + 12, 8);
    pseudo[8] = std::byte{0};
    pseudo[9] = std::byte{6};
    store16(pseudo + 10, uint16_t(len - 20));
    uint32_t sum = checksumPartial(std::span<const std::byte>(pseudo, 12));
    return internetChecksum(std::span<const std::byte>(in + 20, len - 20u), sum) == 0;
  };

  // With offloads on, the aggregate stays one skb all the way (proof that the
  // program saw GSO): 3 x 540-byte inner segments in one 1580-byte IPIP skb.
  const std::vector<uint8_t> agg = frame(key_, 64, 0x18, 1500);
  drainCapture();
  sendPartial(agg, 500);
  auto whole = captureIpip(2000);
  ASSERT_TRUE(whole.has_value());
  EXPECT_EQ(whole->size(), 14u + 20 + 40 + 1500);

  Status off = FastPath::setTxChecksumOffload("fpc", false);
  ASSERT_TRUE(off.ok()) << off.error().message();
  EXPECT_FALSE(FastPath::setTxChecksumOffload("nosuchdev0", false).ok());

  // One CHECKSUM_PARTIAL packet.
  drainCapture();
  sendPartial(frame(key_, 64, 0x18, 200), 0);
  auto one_out = captureIpip(2000);
  ASSERT_TRUE(one_out.has_value());
  EXPECT_EQ(std::memcmp(&(*one_out)[6], fpc_mac.data(), 6), 0);
  EXPECT_EQ((*one_out)[34 + 8], 63);
  EXPECT_TRUE(innerTcpValid(*one_out));

  // The same aggregate, now segmented and finished on the way out.
  sendPartial(agg, 500);
  std::vector<uint8_t> payload;
  for (int i = 0; i < 3; ++i) {
    auto o = captureIpip(2000);
    ASSERT_TRUE(o.has_value()) << "segment " << i;
    Ipv4View ov(std::span<const std::byte>(reinterpret_cast<const std::byte*>(&(*o)[14]), o->size() - 14));
    EXPECT_EQ(ov.check(true), ParseError::kOk);
    EXPECT_EQ(ov.totalLength(), 20 + 40 + 500);
    EXPECT_EQ(ov.protocol(), kProtoIpip);
    Ipv4View iv(std::span<const std::byte>(reinterpret_cast<const std::byte*>(&(*o)[34]), o->size() - 34));
    EXPECT_EQ(iv.check(true), ParseError::kOk);
    EXPECT_EQ(iv.ttl(), 63);
    EXPECT_EQ(iv.totalLength(), 40 + 500);
    EXPECT_TRUE(innerTcpValid(*o)) << "segment " << i;
    payload.insert(payload.end(), o->begin() + 74, o->begin() + 74 + 500);
  }
  EXPECT_TRUE(std::equal(payload.begin(), payload.end(), agg.begin() + 54));
  auto act = (*fp)->activity(key_);
  ASSERT_TRUE(act.ok() && act->has_value());
  EXPECT_EQ((*act)->packets, 7u);
  EXPECT_EQ((*act)->bytes, 240u + 6 * 540u);
  (void)sh("ip link del fpc");
}

TEST_F(FastPathNetns, BadHeadersGoToTheSlowPathAndDfIsCopied) {
  auto fp = FastPath::attach({"fpa"}, 1500, 16, 1, 1);
  ASSERT_TRUE(fp.ok()) << fp.error().message();
  FastPathFlow flow;
  flow.tunnel_src = ip4("10.77.0.1");
  flow.tunnel_dst = ip4("10.77.0.2");
  ASSERT_TRUE((*fp)->add(key_, flow).ok());

  // Bad inner header checksum: the kernel drops it, so do not forward it.
  std::vector<uint8_t> bad = frame(key_, 64, 0x10, 10);
  bad[14 + 10] ^= 0xff;
  drainCapture();
  inject(bad);
  FastPathStats s = waitStats(**fp, [](const FastPathStats& s) { return s.too_big >= 1; });
  EXPECT_EQ(s.too_big, 1u);
  EXPECT_FALSE(captureIpip(100).has_value());

  // DF clear: copied as clear, TOS copied, checksum right.
  std::vector<uint8_t> nodf = frame(key_, 64, 0x10, 10);
  nodf[14 + 6] = 0;
  (void)setIpv4HeaderChecksum(std::span<std::byte>(reinterpret_cast<std::byte*>(&nodf[14]), 20));
  inject(nodf);
  auto o = captureIpip(2000);
  ASSERT_TRUE(o.has_value());
  Ipv4View ov(std::span<const std::byte>(reinterpret_cast<const std::byte*>(&(*o)[14]), o->size() - 14));
  EXPECT_EQ(ov.check(true), ParseError::kOk);
  EXPECT_FALSE(ov.dontFragment());
  EXPECT_EQ(ov.tos(), 0x28);
  EXPECT_EQ((*fp)->stats().packets, 1u);
}

// The usual SLR set-up: one uplink, tunnels leave where clients came in.
TEST_F(FastPathNetns, HairpinsOutOfTheIngressDevice) {
  ASSERT_TRUE(sh("ip addr add 10.79.0.1/24 dev fpa"));
  ASSERT_TRUE(sh(std::string("ip neigh replace 10.79.0.2 lladdr ") + kHostMac +
                 " dev fpa nud permanent"));
  auto fp = FastPath::attach({"fpa"}, 1500, 16, 1, 1);
  ASSERT_TRUE(fp.ok()) << fp.error().message();
  FastPathFlow flow;
  flow.tunnel_src = ip4("10.79.0.1");
  flow.tunnel_dst = ip4("10.79.0.2");
  ASSERT_TRUE((*fp)->add(key_, flow).ok());
  drainCapture();
  inject(frame(key_, 64, 0x10, 10));
  auto o = captureIpip(2000);  // fpa's egress arrives on fpb
  ASSERT_TRUE(o.has_value());
  EXPECT_EQ(std::memcmp(&(*o)[0], kHostMacBytes.data(), 6), 0);
  EXPECT_EQ(std::memcmp(&(*o)[6], fpa_mac_.data(), 6), 0);
  EXPECT_EQ(load32(reinterpret_cast<const std::byte*>(&(*o)[14 + 16])), ip4("10.79.0.2"));
}

TEST_F(FastPathNetns, NoNeighbourGoesToTheSlowPath) {
  auto fp = FastPath::attach({"fpa"}, 1500, 16, 1, 1);
  ASSERT_TRUE(fp.ok()) << fp.error().message();
  FastPathFlow flow;
  flow.tunnel_src = ip4("10.77.0.1");
  flow.tunnel_dst = ip4("10.77.0.3");  // on link, no neighbour entry
  ASSERT_TRUE((*fp)->add(key_, flow).ok());
  drainCapture();
  inject(frame(key_, 64, 0x10, 10));
  FastPathStats s = waitStats(**fp, [](const FastPathStats& s) { return s.fib_fail >= 1; });
  EXPECT_EQ(s.fib_fail, 1u);
  EXPECT_EQ(s.packets, 0u);
  EXPECT_FALSE(captureIpip(100).has_value());
  // The flow is alive anyway (the slow path forwards it).
  auto act = (*fp)->activity(key_);
  ASSERT_TRUE(act.ok() && act->has_value());
  EXPECT_EQ((*act)->packets, 0u);
  EXPECT_LT(uint32_t(nowMs() - (*act)->last_seen_ms), 2000u);
}

TEST_F(FastPathNetns, MapFullAndBadInput) {
  auto fp = FastPath::attach({"fpa"}, 1500, 2, 1, 1);
  ASSERT_TRUE(fp.ok()) << fp.error().message();
  FastPath& f = **fp;
  FastPathFlow flow;
  flow.tunnel_src = ip4("10.77.0.1");
  flow.tunnel_dst = ip4("10.77.0.2");
  FlowKey a = key_, b = key_, c = key_;
  b.sport = 1;
  c.sport = 2;
  ASSERT_TRUE(f.add(a, flow).ok());
  ASSERT_TRUE(f.add(b, flow).ok());
  ASSERT_TRUE(f.add(b, flow).ok());  // replace: not a new flow
  EXPECT_EQ(f.stats().flows, 2u);
  Status full = f.add(c, flow);
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.error().code, E2BIG) << full.error().message();
  FlowKey icmp = key_;
  icmp.proto = 1;
  EXPECT_FALSE(f.add(icmp, flow).ok());
  FastPathFlow bad = flow;
  bad.vip = 1;  // only one VIP slot
  EXPECT_FALSE(f.add(c, bad).ok());
}

TEST_F(FastPathNetns, QdiscLifecycleAndErrors) {
  {
    auto fp = FastPath::attach({"fpa"}, 1500, 16, 1, 1);
    ASSERT_TRUE(fp.ok()) << fp.error().message();
    EXPECT_NE(output("tc qdisc show dev fpa").find("clsact"), std::string::npos);
  }
  // We created it, so it is gone with us.
  EXPECT_EQ(output("tc qdisc show dev fpa").find("clsact"), std::string::npos);

  // A clsact that was there before stays, minus our filter.
  ASSERT_TRUE(sh("tc qdisc add dev fpb clsact"));
  {
    auto fp = FastPath::attach({"fpa", "fpb"}, 1500, 16, 1, 1);
    ASSERT_TRUE(fp.ok()) << fp.error().message();
    EXPECT_NE(output("tc filter show dev fpb ingress").find("slr_fast_path"), std::string::npos);
  }
  EXPECT_NE(output("tc qdisc show dev fpb").find("clsact"), std::string::npos);
  EXPECT_EQ(output("tc filter show dev fpb ingress").find("slr_fast_path"), std::string::npos);
  EXPECT_EQ(output("tc qdisc show dev fpa").find("clsact"), std::string::npos);

  auto missing = FastPath::attach({"fpa", "nosuchdev0"}, 1500, 16, 1, 1);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message().find("nosuchdev0"), std::string::npos);
  auto lo = FastPath::attach({"lo"}, 1500, 16, 1, 1);
  ASSERT_FALSE(lo.ok());
  EXPECT_NE(lo.error().message().find("Ethernet"), std::string::npos) << lo.error().message();
  EXPECT_FALSE(FastPath::attach({"fpa"}, 40, 16, 1, 1).ok());
  EXPECT_EQ(output("tc qdisc show dev fpa").find("clsact"), std::string::npos);
}

}  // namespace
}  // namespace slr::router
