// The worker's pure decisions: the mid-stream wait (hold / drop / guess), the
// ICMP echo flow advertisement's authorisation checks, and the lock-free
// command ring other threads post to.  No sockets, no TUN.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "core/flow_advert.h"
#include "slr/mpsc_ring.h"
#include "slr/worker.h"

namespace slr::router {
namespace {

constexpr uint32_t ip(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  return (uint32_t(a) << 24) | (uint32_t(b) << 16) | (uint32_t(c) << 8) | d;
}

// ---- midstream ----

TEST(MidstreamStep, WhohasHoldsThenWaitDropsThenGuess) {
  // whohas wait 50 ms, midstream wait 3 s.
  EXPECT_EQ(midstreamStep(0, true, 50, 3000), MidstreamStep::kHold);
  EXPECT_EQ(midstreamStep(49, true, 50, 3000), MidstreamStep::kHold);
  EXPECT_EQ(midstreamStep(50, true, 50, 3000), MidstreamStep::kDrop);
  EXPECT_EQ(midstreamStep(2999, true, 50, 3000), MidstreamStep::kDrop);
  EXPECT_EQ(midstreamStep(3000, true, 50, 3000), MidstreamStep::kGuess);
}

TEST(MidstreamStep, NoWhohasNoHold) {
  EXPECT_EQ(midstreamStep(0, false, 50, 3000), MidstreamStep::kDrop);
  EXPECT_EQ(midstreamStep(3000, false, 50, 3000), MidstreamStep::kGuess);
}

TEST(MidstreamStep, ZeroWaitIsTodaysStatelessPick) {
  EXPECT_EQ(midstreamStep(0, false, 50, 0), MidstreamStep::kGuess);
  // With WHOHAS: hold for the answer, then the guess at once.
  EXPECT_EQ(midstreamStep(10, true, 50, 0), MidstreamStep::kHold);
  EXPECT_EQ(midstreamStep(50, true, 50, 0), MidstreamStep::kGuess);
}

TEST(MidstreamStep, WhohasLongerThanWaitGuessesAfterTheHold) {
  EXPECT_EQ(midstreamStep(100, true, 200, 50), MidstreamStep::kHold);
  EXPECT_EQ(midstreamStep(200, true, 200, 50), MidstreamStep::kGuess);
}

// ---- echo advertisement ----

struct EchoFixture : ::testing::Test {
  // host 0: 10.0.3.11 serves 10.100.0.0/24; host 1: 10.0.3.12 serves
  // 10.101.0.0/16; host 2: a lower SLR at 10.0.3.13; host 3: down.
  std::vector<NextHop> hops{{ip(10, 0, 3, 11), true, false, false},
                            {ip(10, 0, 3, 12), true, false, false},
                            {ip(10, 0, 3, 13), true, true, false},
                            {ip(10, 0, 3, 14), false, false, false}};
  std::vector<std::vector<VipMatch>> auth{{{ip(10, 100, 0, 0), 0xFFFFFF00u}},
                                          {{ip(10, 101, 0, 0), 0xFFFF0000u}},
                                          {{ip(10, 100, 0, 0), 0xFFFFFF00u}},
                                          {{ip(10, 100, 0, 0), 0xFFFFFF00u}}};
  advert::FlowAdvert a{6, ip(10, 0, 1, 2), 40000, ip(10, 100, 0, 1), 80, ip(10, 0, 3, 11), 80};
  const uint32_t src = ip(10, 0, 1, 2), dst = ip(10, 100, 0, 1);
  uint16_t host = kNoNextHop;

  EchoVerdict judge(const FlowEntry* existing = nullptr) {
    host = kNoNextHop;
    return judgeEchoAdvert(a, src, dst, hops, auth, existing, host);
  }
  FlowEntry entry(uint16_t next_hop, uint8_t flags) {
    FlowEntry e{};
    e.key = advert::keyOf(a);
    e.next_hop = next_hop;
    e.flags = flags;
    return e;
  }
};

TEST_F(EchoFixture, AcceptsAKnownHostForItsSubnet) {
  EXPECT_EQ(judge(), EchoVerdict::kApply);
  EXPECT_EQ(host, 0);
}

TEST_F(EchoFixture, MustDescribeThePacketItCameIn) {
  a.client = ip(10, 0, 1, 3);  // another client's flow
  EXPECT_EQ(judge(), EchoVerdict::kMalformed);
  a.client = src;
  a.vip = ip(10, 100, 0, 2);  // another VIP
  EXPECT_EQ(judge(), EchoVerdict::kMalformed);
  EXPECT_EQ(host, kNoNextHop);
}

TEST_F(EchoFixture, RefusesUnknownDownAndSlrServers) {
  a.server = ip(192, 0, 2, 1);  // nobody
  EXPECT_EQ(judge(), EchoVerdict::kRefusedHost);
  a.server = ip(10, 0, 3, 14);  // host 3 is down
  EXPECT_EQ(judge(), EchoVerdict::kRefusedHost);
  a.server = ip(10, 0, 3, 13);  // a lower SLR is not a host
  EXPECT_EQ(judge(), EchoVerdict::kRefusedHost);
  a.server = 0;
  hops[0].tunnel_v4 = 0;  // a host without an address now never matches 0
  EXPECT_EQ(judge(), EchoVerdict::kRefusedHost);
}

TEST_F(EchoFixture, RefusesAHostNotAuthorisedForTheVip) {
  a.server = ip(10, 0, 3, 12);  // host 1 serves 10.101/16 only: a forged echo
  EXPECT_EQ(judge(), EchoVerdict::kRefusedSubnet);
  auth.resize(1);  // no authorisation list for host 1 at all
  EXPECT_EQ(judge(), EchoVerdict::kRefusedSubnet);
}

TEST_F(EchoFixture, ExistingEntries) {
  using namespace flow_flags;
  // A learnt flow on another live host: refused, the connection stays.
  FlowEntry learnt = entry(1, 0);
  EXPECT_EQ(judge(&learnt), EchoVerdict::kConflict);
  // ... also when it is a shortcut endpoint (always live).
  FlowEntry sc = entry(Worker::kShortcutBase, kShortcut);
  EXPECT_EQ(judge(&sc), EchoVerdict::kConflict);
  // Midstream (a guess, or still waiting): corrected.
  FlowEntry guess = entry(1, kMidstream);
  EXPECT_EQ(judge(&guess), EchoVerdict::kApply);
  FlowEntry waiting = entry(1, kMidstream | kAwaiting);
  EXPECT_EQ(judge(&waiting), EchoVerdict::kApply);
  // Already there: fine.
  FlowEntry same = entry(0, kFastPath);
  EXPECT_EQ(judge(&same), EchoVerdict::kApply);
  // Its next hop went down: the connection is lost there anyway.
  FlowEntry dead = entry(3, 0);
  EXPECT_EQ(judge(&dead), EchoVerdict::kApply);
  EXPECT_EQ(host, 0);
}

TEST_F(EchoFixture, AuthorisationIsCheckedBeforeConflicts) {
  a.server = ip(10, 0, 3, 12);
  FlowEntry guess = entry(0, flow_flags::kMidstream);
  EXPECT_EQ(judge(&guess), EchoVerdict::kRefusedSubnet);
}

TEST(EchoAdvert, KeyMatchesTheFlowsPackets) {
  advert::FlowAdvert a{6, ip(10, 0, 1, 2), 40000, ip(10, 100, 0, 1), 80, ip(10, 0, 3, 11), 80};
  FlowKey k = advert::keyOf(a);
  EXPECT_EQ(k.proto, 6);
  EXPECT_EQ(k.sport, 40000);
  EXPECT_EQ(k.dport, 80);
  EXPECT_EQ(k.srcAddr().v4HostOrder(), a.client);
  EXPECT_EQ(k.dstAddr().v4HostOrder(), a.vip);
}

// ---- flags ----

TEST(FlowFlags, UpstreamIndexFitsInFourBits) {
  using namespace flow_flags;
  EXPECT_EQ(kMaxUpstreams, 15u);
  const uint8_t f = uint8_t((kMaxUpstreams) << kUpstreamShift) | kFastPath | kAwaiting | kShortcut | kMidstream;
  EXPECT_EQ(f >> kUpstreamShift, 15);
  EXPECT_EQ(f & 0x0F, 0x0F);
}

// ---- MPSC ring ----

TEST(MpscRing, FifoAndFull) {
  MpscRing<int> r(4);
  EXPECT_EQ(r.capacity(), 4u);
  EXPECT_TRUE(r.empty());
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(r.push(i));
  EXPECT_FALSE(r.push(99));
  int v = -1;
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(r.pop(v));
    EXPECT_EQ(v, i);
  }
  EXPECT_FALSE(r.pop(v));
  EXPECT_TRUE(r.empty());
  // Wraps around.
  for (int round = 0; round < 10; ++round) {
    EXPECT_TRUE(r.push(round));
    ASSERT_TRUE(r.pop(v));
    EXPECT_EQ(v, round);
  }
}

TEST(MpscRing, ManyProducersOneConsumerLoseNothing) {
  constexpr int kProducers = 3, kEach = 20000;
  MpscRing<uint64_t> r(256);
  std::atomic<bool> go{false};
  std::vector<std::thread> ts;
  for (int p = 0; p < kProducers; ++p) {
    ts.emplace_back([&, p] {
      while (!go.load()) {
      }
      for (int i = 0; i < kEach; ++i) {
        while (!r.push((uint64_t(p) << 32) | uint64_t(i))) std::this_thread::yield();
      }
    });
  }
  go = true;
  std::vector<int> next(kProducers, 0);
  int got = 0;
  uint64_t v;
  while (got < kProducers * kEach) {
    if (!r.pop(v)) continue;
    const int p = int(v >> 32), i = int(v & 0xFFFFFFFF);
    ASSERT_LT(p, kProducers);
    ASSERT_EQ(i, next[p]) << "each producer's items arrive in order, once";
    ++next[p];
    ++got;
  }
  for (auto& t : ts) t.join();
  EXPECT_FALSE(r.pop(v));
}

}  // namespace
}  // namespace slr::router
