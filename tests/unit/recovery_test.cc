// Flow recovery: the stall detector as a pure function over successive
// tcp_info samples, and the advertising echo packet built and parsed.
#include "hostagent/recovery.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "core/fd.h"
#include "core/netlink.h"
#include "core/packet.h"
#include "tests/unit/scratch_netns.h"

namespace slr::host {
namespace {

using namespace std::chrono_literals;

config::RecoveryConfig cfg() {
  config::RecoveryConfig c;
  c.stall_after = 1500ms;
  c.give_up = 10000ms;
  c.interval = 500ms;
  c.max_echoes = 3;
  return c;
}

diag::TcpSockInfo sample(uint32_t unacked, uint64_t bytes_acked, uint32_t ack_age_ms,
                         uint8_t retransmits = 0) {
  diag::TcpSockInfo s;
  s.local = *IpAddress::parse("10.100.0.10");
  s.remote = *IpAddress::parse("10.0.1.2");
  s.local_port = 80;
  s.remote_port = 40000;
  s.has_info = true;
  s.unacked = unacked;
  s.bytes_acked = bytes_acked;
  s.last_ack_recv_ms = ack_age_ms;
  s.retransmits = retransmits;
  return s;
}

TEST(StallStep, IdleConnectionIsNeverStalled) {
  ConnTrack t;
  auto c = cfg();
  for (int64_t now = 0; now < 20000; now += 500) {
    StallStep s = stallStep(t, sample(0, 1000, uint32_t(now)), now, c);
    EXPECT_FALSE(s.became_stalled || s.send_echo || s.recovered || s.gave_up) << now;
  }
}

TEST(StallStep, StallEchoesThenRecovers) {
  ConnTrack t;
  auto c = cfg();
  // Acks stop at t=0 with data in flight; scans every 500ms.
  EXPECT_FALSE(stallStep(t, sample(10, 5000, 0), 0, c).send_echo);
  EXPECT_FALSE(stallStep(t, sample(10, 5000, 500, 1), 500, c).send_echo);
  EXPECT_FALSE(stallStep(t, sample(10, 5000, 1000, 2), 1000, c).send_echo);
  StallStep s = stallStep(t, sample(10, 5000, 1500, 2), 1500, c);
  EXPECT_TRUE(s.became_stalled);
  EXPECT_TRUE(s.send_echo);
  EXPECT_EQ(t.stall_start_ms, 0);
  s = stallStep(t, sample(10, 5000, 2000, 3), 2000, c);
  EXPECT_FALSE(s.became_stalled);
  EXPECT_TRUE(s.send_echo);
  EXPECT_TRUE(stallStep(t, sample(10, 5000, 2500, 3), 2500, c).send_echo);  // third = max_echoes
  EXPECT_FALSE(stallStep(t, sample(10, 5000, 3000, 3), 3000, c).send_echo);
  EXPECT_EQ(t.echoes, 3u);
  // The client's ACKs are back: bytes_acked moved.
  s = stallStep(t, sample(8, 9000, 10), 3500, c);
  EXPECT_TRUE(s.recovered);
  EXPECT_EQ(s.stalled_ms, 3500u);
  EXPECT_FALSE(t.stalled);
  EXPECT_FALSE(stallStep(t, sample(8, 12000, 20), 4000, c).send_echo);
}

TEST(StallStep, OneEchoPerIntervalEvenWhenScannedMoreOften) {
  ConnTrack t;
  auto c = cfg();
  c.max_echoes = 100;
  stallStep(t, sample(10, 5000, 0), 0, c);
  EXPECT_TRUE(stallStep(t, sample(10, 5000, 1600), 1600, c).send_echo);
  EXPECT_FALSE(stallStep(t, sample(10, 5000, 1700), 1700, c).send_echo);
  EXPECT_FALSE(stallStep(t, sample(10, 5000, 1900), 1900, c).send_echo);
  EXPECT_TRUE(stallStep(t, sample(10, 5000, 2100), 2100, c).send_echo);
}

TEST(StallStep, IdleThenSendingIsNotAStall) {
  ConnTrack t;
  auto c = cfg();
  // Nothing in flight for a minute: the kernel's ACK age is huge.
  stallStep(t, sample(0, 1000, 60000), 0, c);
  // New data sent just now: in flight, ACK age still huge, but progress
  // (nothing in flight) was seen at the last scan.
  StallStep s = stallStep(t, sample(5, 1000, 60500), 500, c);
  EXPECT_FALSE(s.became_stalled);
  EXPECT_FALSE(stallStep(t, sample(5, 1000, 61000), 1000, c).became_stalled);
  // ... until it really has been unacknowledged for stall_after.
  EXPECT_TRUE(stallStep(t, sample(5, 1000, 62000), 2000, c).became_stalled);
}

TEST(StallStep, FirstSightOfAnAlreadyStalledConnection) {
  ConnTrack t;
  auto c = cfg();
  StallStep s = stallStep(t, sample(10, 5000, 4000, 4), 100000, c);
  EXPECT_TRUE(s.became_stalled);
  EXPECT_TRUE(s.send_echo);
  EXPECT_EQ(t.stall_start_ms, 96000);
}

TEST(StallStep, GivesUpAfterGiveUpAndStillCountsALateRecovery) {
  ConnTrack t;
  auto c = cfg();
  c.max_echoes = 1000;
  stallStep(t, sample(10, 5000, 0), 0, c);
  int echoes = 0, gave_up = 0;
  for (int64_t now = 500; now <= 15000; now += 500) {
    StallStep s = stallStep(t, sample(10, 5000, uint32_t(now)), now, c);
    echoes += s.send_echo;
    gave_up += s.gave_up;
    if (now >= 10000) {
      EXPECT_FALSE(s.send_echo) << now;
    }
  }
  EXPECT_EQ(gave_up, 1);
  EXPECT_EQ(echoes, 17);  // 1500 .. 9500 every 500ms
  StallStep s = stallStep(t, sample(0, 9000, 0), 15500, c);
  EXPECT_TRUE(s.recovered);
  EXPECT_EQ(s.stalled_ms, 15500u);
}

TEST(StallStep, BeyondGiveUpOnFirstSightIsLeftAlone) {
  ConnTrack t;
  auto c = cfg();
  StallStep s = stallStep(t, sample(10, 5000, 20000), 50000, c);
  EXPECT_FALSE(s.became_stalled || s.send_echo);
}

TEST(EchoPacket, BuildAndParse) {
  diag::TcpSockInfo s = sample(1, 1, 1);
  advert::FlowAdvert a = advertFor(s, *IpAddress::parse("10.0.2.11"));
  EXPECT_EQ(a.proto, 6);
  EXPECT_EQ(IpAddress::v4(a.client).str(), "10.0.1.2");
  EXPECT_EQ(a.client_port, 40000);
  EXPECT_EQ(IpAddress::v4(a.vip).str(), "10.100.0.10");
  EXPECT_EQ(a.vip_port, 80);
  EXPECT_EQ(IpAddress::v4(a.server).str(), "10.0.2.11");
  EXPECT_EQ(a.server_port, 80);

  std::byte pkt[kEchoPacketSize + 8];
  std::byte small[kEchoPacketSize - 1];
  EXPECT_EQ(buildEchoPacket(small, 1, 2, 3, a), 0u);
  ASSERT_EQ(buildEchoPacket(pkt, 0x1234, 0x4242, 7, a), kEchoPacketSize);
  std::span<const std::byte> p(pkt, kEchoPacketSize);
  EXPECT_EQ(uint8_t(p[0]), 0x45);
  EXPECT_EQ(load16(p.data() + 2), kEchoPacketSize);
  EXPECT_EQ(load16(p.data() + 4), 0x1234);
  EXPECT_EQ(load16(p.data() + 6), 0x4000);  // DF
  EXPECT_EQ(uint8_t(p[8]), 64);
  EXPECT_EQ(uint8_t(p[9]), kProtoIcmp);
  EXPECT_TRUE(ipv4HeaderChecksumValid(p.first(20)));
  EXPECT_EQ(load32(p.data() + 12), a.vip);     // from the VIP
  EXPECT_EQ(load32(p.data() + 16), a.client);  // to the client
  std::span<const std::byte> icmp = p.subspan(20);
  EXPECT_EQ(uint8_t(icmp[0]), 8);  // echo request
  EXPECT_EQ(load16(icmp.data() + 4), 0x4242);
  EXPECT_EQ(load16(icmp.data() + 6), 7);
  EXPECT_EQ(internetChecksum(icmp), 0);  // ICMP checksum right
  advert::FlowAdvert back;
  ASSERT_EQ(advert::decode(icmp, back), advert::DecodeStatus::kOk);
  EXPECT_EQ(back, a);

  // The request itself is not a reply.
  advert::FlowAdvert out;
  EXPECT_FALSE(parseAdvertReply(p, out));
  // What the client's kernel sends back: swapped addresses, type 0.
  std::byte reply[kEchoPacketSize];
  std::memcpy(reply, pkt, kEchoPacketSize);
  store32(reply + 12, a.client);
  store32(reply + 16, a.vip);
  reply[20] = std::byte{0};
  ASSERT_TRUE(parseAdvertReply(std::span<const std::byte>(reply, kEchoPacketSize), out));
  EXPECT_EQ(out, a);
  // Truncated, or not ICMP, or a plain ping reply: no.
  EXPECT_FALSE(parseAdvertReply(std::span<const std::byte>(reply, kEchoPacketSize - 1), out));
  reply[9] = std::byte{kProtoTcp};
  EXPECT_FALSE(parseAdvertReply(std::span<const std::byte>(reply, kEchoPacketSize), out));
  reply[9] = std::byte{kProtoIcmp};
  reply[20 + 64] = std::byte{'X'};  // magic broken
  EXPECT_FALSE(parseAdvertReply(std::span<const std::byte>(reply, kEchoPacketSize), out));
}

sockaddr_in v4(const char* a, uint16_t port) {
  sockaddr_in s{};
  s.sin_family = AF_INET;
  s.sin_port = htons(port);
  inet_pton(AF_INET, a, &s.sin_addr);
  return s;
}

TEST(NudgePacket, Build) {
  diag::TcpSockInfo s = sample(1, 1, 1);
  advert::FlowAdvert a = advertFor(s, *IpAddress::parse("10.0.2.11"));
  std::byte small[kNudgePacketSize - 1];
  EXPECT_EQ(buildNudgePacket(small, 1, 2, 3, a), 0u);
  std::byte pkt[kNudgePacketSize];
  ASSERT_EQ(buildNudgePacket(pkt, 0x0102, 0xdeadbeef, 0x01020304, a), kNudgePacketSize);
  std::span<const std::byte> p(pkt, kNudgePacketSize);
  EXPECT_EQ(uint8_t(p[0]), 0x45);
  EXPECT_EQ(load16(p.data() + 2), kNudgePacketSize);
  EXPECT_EQ(uint8_t(p[9]), kProtoTcp);
  EXPECT_TRUE(ipv4HeaderChecksumValid(p.first(20)));
  EXPECT_EQ(load32(p.data() + 12), a.vip);
  EXPECT_EQ(load32(p.data() + 16), a.client);
  std::span<const std::byte> tcp = p.subspan(20);
  EXPECT_EQ(load16(tcp.data()), 80);          // from the VIP port
  EXPECT_EQ(load16(tcp.data() + 2), 40000);   // to the client port
  EXPECT_EQ(load32(tcp.data() + 4), 0xdeadbeefu);
  EXPECT_EQ(load32(tcp.data() + 8), 0x01020304u);
  EXPECT_EQ(uint8_t(tcp[12]), 0x50);
  EXPECT_EQ(uint8_t(tcp[13]), 0x10);  // ACK only: never RST, SYN or FIN
  // TCP checksum over pseudo-header + segment comes out 0 when right.
  std::byte pseudo[12] = {};
  std::memcpy(pseudo, p.data() + 12, 8);
  pseudo[9] = std::byte{kProtoTcp};
  store16(pseudo + 10, 20);
  EXPECT_EQ(internetChecksum(tcp, checksumPartial(pseudo)), 0);
}

// A real connection in a scratch netns: a "VIP" subnet local on lo, a server
// on it sending to a client at 127.0.0.2 whose packets to the VIP an
// nftables rule drops (the path through the SLR is gone).
// Each test its own subnet: sockets of an earlier test may linger (FIN-WAIT)
// on its VIP.
struct StalledConn {
  explicit StalledConn(int net) : net_(std::to_string(net)) {}
  std::string net_;
  std::string vipText() const { return "10." + net_ + ".0.10"; }
  Prefix subnet() const { return *Prefix::parse("10." + net_ + ".0.0/24"); }
  nl::RouteSpec route;
  UniqueFd listener, client, server;
  std::unique_ptr<RecoveryWatcher> w;

  ~StalledConn() {
    if (w) w->stop();
    (void)!std::system("nft delete table ip slrtest 2>/dev/null");
    nl::RouteSpec d = route;
    d.replace = false;
    (void)nl::delRoute(d);
  }
  // Connection up, watcher running; "" or what failed.
  std::string setUp(const config::RecoveryConfig& rc) {
    auto lo = nl::linkIndex("lo");
    if (!lo) return "no lo";
    route.dst = subnet();
    route.ifindex = *lo;
    route.type = RTN_LOCAL;
    route.table = RT_TABLE_LOCAL;
    route.replace = true;
    if (!nl::addRoute(route).ok()) return "local route";
    listener.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    int one = 1;
    ::setsockopt(listener.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in vip = v4(vipText().c_str(), 8080);
    if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&vip), sizeof vip) != 0) return "bind VIP";
    if (::listen(listener.get(), 4) != 0) return "listen";
    client.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in from = v4("127.0.0.2", 0);
    if (::bind(client.get(), reinterpret_cast<sockaddr*>(&from), sizeof from) != 0) return "bind client";
    if (::connect(client.get(), reinterpret_cast<sockaddr*>(&vip), sizeof vip) != 0) return "connect";
    server.reset(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!server) return "accept";
    auto made = RecoveryWatcher::create(rc, {subnet()}, *IpAddress::parse("10.0.2.11"));
    if (!made) return made.error().message();
    w = std::move(*made);
    w->start();
    return "";
  }
  // Drops client -> VIP packets: `what` = "tcp dport 8080" (ACKs only) or "" (everything).
  bool block(const std::string& what) const {
    return std::system(("nft add table ip slrtest && nft add chain ip slrtest in "
                        "'{ type filter hook input priority 0; }' && "
                        "nft add rule ip slrtest in ip daddr " + vipText() + " " + what + " drop")
                           .c_str()) == 0;
  }
  static bool unblock() { return std::system("nft delete table ip slrtest") == 0; }
  bool sendData() {
    char data[4096] = {};
    return ::send(server.get(), data, sizeof data, MSG_NOSIGNAL) == ssize_t(sizeof data);
  }
  template <typename Pred>
  bool waitFor(Pred pred, std::chrono::milliseconds limit) {
    auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
      if (pred(w->counters())) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
};

bool haveNft() { return std::system("nft --version >/dev/null 2>&1") == 0; }

// Stalled after 0.4 s, an echo every 0.1 s, up to `max_echoes`.
config::RecoveryConfig quickRecovery(uint32_t max_echoes) {
  config::RecoveryConfig rc;
  rc.stall_after = 400ms;
  rc.give_up = 30000ms;
  rc.interval = 100ms;
  rc.max_echoes = max_echoes;
  return rc;
}

// ACKs dropped, ICMP not: the watcher sees the stall, sends max_echoes
// advertising echoes from the VIP, the client's kernel answers every one;
// the ACKs flowing again make it count the connection recovered.
TEST(RecoveryWatcher, RealStalledConnection) {
  REQUIRE_SCRATCH_NETNS();
  if (!haveNft()) GTEST_SKIP() << "needs the nft command";
  const config::RecoveryConfig rc = quickRecovery(3);
  StalledConn t(199);
  ASSERT_EQ(t.setUp(rc), "");
  ASSERT_TRUE(t.block("tcp dport 8080"));
  ASSERT_TRUE(t.sendData());

  EXPECT_TRUE(t.waitFor([](const RecoveryCounters& k) { return k.stalled == 1; }, 5000ms));
  EXPECT_TRUE(t.waitFor([](const RecoveryCounters& k) { return k.echoes_sent >= 3 && k.replies_received >= 3; },
                        5000ms))
      << "sent " << t.w->counters().echoes_sent << " replies " << t.w->counters().replies_received;
  std::this_thread::sleep_for(300ms);
  RecoveryCounters k = t.w->counters();
  EXPECT_EQ(k.echoes_sent, 3u);  // max_echoes
  EXPECT_EQ(k.nudges_sent, 6u);  // two per reply
  EXPECT_EQ(k.stalls, 1u);
  EXPECT_EQ(k.watched, 1u);  // only the server side is on the VIP
  EXPECT_EQ(k.send_errors, 0u);
  EXPECT_EQ(k.recovered, 0u);  // the nudges' duplicate ACKs were dropped too

  ASSERT_TRUE(StalledConn::unblock());
  // The next RTO retransmission is ACKed: progress.
  EXPECT_TRUE(t.waitFor([](const RecoveryCounters& k) { return k.recovered == 1 && k.stalled == 0; }, 10000ms));
}

// Everything to the VIP dropped (ACKs and echo replies) until the server's
// retransmission timer has backed off to seconds; then the path comes back.
// The next echo's reply triggers the nudge, whose duplicate ACK acknowledges
// the data at once: recovered long before the next retransmission.
TEST(RecoveryWatcher, NudgeRecoversBeforeTheNextRetransmission) {
  REQUIRE_SCRATCH_NETNS();
  if (!haveNft()) GTEST_SKIP() << "needs the nft command";
  const config::RecoveryConfig rc = quickRecovery(1000);
  StalledConn t(198);
  ASSERT_EQ(t.setUp(rc), "");
  ASSERT_TRUE(t.block(""));
  ASSERT_TRUE(t.sendData());
  // RTOs on lo: 0.2 0.6 1.4 3.0 6.2 s after the send.  At 3.4 s the next
  // retransmission is ~2.8 s away.
  std::this_thread::sleep_for(3400ms);
  RecoveryCounters k = t.w->counters();
  EXPECT_EQ(k.stalled, 1u);
  EXPECT_GE(k.echoes_sent, 20u);
  EXPECT_EQ(k.replies_received, 0u);
  ASSERT_TRUE(StalledConn::unblock());
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(t.waitFor([](const RecoveryCounters& k) { return k.recovered == 1; }, 5000ms));
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_LT(took, 1500ms) << "recovered only by the retransmission timer";
  k = t.w->counters();
  EXPECT_GE(k.replies_received, 1u);
  EXPECT_GE(k.nudges_sent, 2u);
}

}  // namespace
}  // namespace slr::host
