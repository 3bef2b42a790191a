// Hot spare: the pair state machine (pure, fed with events and time), the
// hosts digest, and claim addresses as leases (root: scratch netns).
#include "slr/spare.h"
#include "tests/unit/scratch_netns.h"

#include <gtest/gtest.h>
#include <libmnl/libmnl.h>

#include <chrono>
#include <thread>

#include "core/netlink.h"

namespace slr::router {
namespace {

using proto::PairState;
using Ms = PairMachine::Ms;
constexpr Ms kDead = 500;

PairMachine spare(Ms now = 0) { return PairMachine({config::SpareRole::kSpare, kDead}, now); }
PairMachine mainSlr(Ms now = 0) { return PairMachine({config::SpareRole::kMain, kDead}, now); }

TEST(HostsDigest, Fnv1aOverNamesWithSeparator) {
  EXPECT_EQ(hostsDigest(std::vector<std::string>{}), 0xcbf29ce484222325ull);  // FNV-1a offset basis
  // FNV-1a 64 of the bytes "a\0".
  uint64_t h = 0xcbf29ce484222325ull;
  for (uint8_t b : {uint8_t('a'), uint8_t(0)}) {
    h ^= b;
    h *= 0x100000001b3ull;
  }
  EXPECT_EQ(hostsDigest(std::vector<std::string>{"a"}), h);
  EXPECT_NE(hostsDigest(std::vector<std::string>{"ab", "c"}), hostsDigest(std::vector<std::string>{"a", "bc"}));
  EXPECT_NE(hostsDigest(std::vector<std::string>{"h1", "h2"}), hostsDigest(std::vector<std::string>{"h2", "h1"}));
  EXPECT_EQ(hostsDigest(std::vector<std::string>{"h1", "h2"}), hostsDigest(std::vector<std::string>{"h1", "h2"}));
  std::vector<config::HostAuthConfig> hosts(2);
  hosts[0].name = "h1";
  hosts[1].name = "h2";
  EXPECT_EQ(hostsDigest(hosts), hostsDigest(std::vector<std::string>{"h1", "h2"}));
}

TEST(PairMachine, SpareAloneTakesOverAfterDeadAfter) {
  auto m = spare(1000);
  EXPECT_EQ(m.state(), PairState::kStandby);
  EXPECT_TRUE(m.standby());
  EXPECT_FALSE(m.claimed());
  auto a = m.tick(1000 + kDead - 1);
  EXPECT_FALSE(a.claim);
  EXPECT_EQ(m.state(), PairState::kStandby);
  a = m.tick(1000 + kDead);
  EXPECT_TRUE(a.claim);
  EXPECT_TRUE(a.takeover);
  EXPECT_EQ(a.silence_ms, kDead);
  EXPECT_EQ(m.state(), PairState::kActive);
  EXPECT_FALSE(m.standby());
  EXPECT_TRUE(m.claimed());
  a = m.tick(5000);  // claims once
  EXPECT_FALSE(a.claim);
}

TEST(PairMachine, MainAloneClaimsAfterTwiceDeadAfter) {
  auto m = mainSlr(0);
  EXPECT_EQ(m.state(), PairState::kRecovering);
  EXPECT_TRUE(m.standby());
  EXPECT_FALSE(m.tick(2 * kDead - 1).claim);
  auto a = m.tick(2 * kDead);
  EXPECT_TRUE(a.claim);
  EXPECT_FALSE(a.takeover);
  EXPECT_EQ(m.state(), PairState::kActive);
}

TEST(PairMachine, NormalStartSpareSendsItsMirrorThenMainClaims) {
  auto main = mainSlr(0), sp = spare(0);
  main.connected(10);
  sp.connected(10);
  // Both send a heartbeat at once.  The main waits for the spare's table.
  auto ma = main.heartbeat(11, PairState::kStandby);
  EXPECT_FALSE(ma.claim || ma.resync);
  EXPECT_EQ(main.state(), PairState::kRecovering);
  // The standby spare sends what it mirrors (empty on a first start, the
  // flows of a main restarted faster than dead_after otherwise) + handover.
  auto sa = sp.heartbeat(11, PairState::kRecovering);
  EXPECT_TRUE(sa.resync);
  EXPECT_TRUE(sa.send_handover);
  EXPECT_FALSE(sa.claim || sa.release);
  EXPECT_EQ(sp.state(), PairState::kStandby);  // the marker is one heartbeat, not a state
  EXPECT_FALSE(sp.streaming());
  EXPECT_FALSE(sp.heartbeat(50, PairState::kRecovering).resync);  // once per connection
  ma = main.heartbeat(12, PairState::kHandover);
  EXPECT_TRUE(ma.claim);
  EXPECT_FALSE(ma.resync);  // the spare has this table already
  EXPECT_FALSE(ma.takeover);
  EXPECT_EQ(main.state(), PairState::kActive);
  EXPECT_TRUE(main.streaming());
  EXPECT_FALSE(sp.streaming());
  // Steady state: heartbeats every 100 ms, nobody changes.
  for (Ms t = 100; t < 3000; t += 100) {
    auto x = sp.heartbeat(t, PairState::kActive);
    auto y = main.heartbeat(t, PairState::kStandby);
    auto z = sp.tick(t + 50);
    EXPECT_FALSE(x.claim || x.release || x.resync || y.claim || y.resync || z.claim) << t;
  }
  EXPECT_EQ(sp.state(), PairState::kStandby);
  EXPECT_EQ(main.state(), PairState::kActive);
}

TEST(PairMachine, MainDiesSpareTakesOverDeadAfterLastHeartbeat) {
  auto sp = spare(0);
  sp.connected(0);
  sp.heartbeat(100, PairState::kActive);
  sp.heartbeat(200, PairState::kActive);
  // Connection loss does not restart the clock: silence counts from 200.
  sp.disconnected(250);
  EXPECT_FALSE(sp.isConnected());
  EXPECT_FALSE(sp.tick(200 + kDead - 1).claim);
  auto a = sp.tick(200 + kDead + 7);
  EXPECT_TRUE(a.claim);
  EXPECT_TRUE(a.takeover);
  EXPECT_EQ(a.silence_ms, kDead + 7);
  EXPECT_EQ(sp.state(), PairState::kActive);
}

TEST(PairMachine, RecoveredMainGetsTheTableBackThenTakesOver) {
  // The spare is active (the main died); the main restarts.
  auto sp = spare(0);
  sp.tick(kDead);
  ASSERT_EQ(sp.state(), PairState::kActive);
  auto main = mainSlr(10000);
  sp.connected(10010);
  main.connected(10010);
  // The main sees an active spare: it waits (no claim, still pinned).
  auto ma = main.heartbeat(10011, PairState::kActive);
  EXPECT_FALSE(ma.claim || ma.resync);
  EXPECT_EQ(main.state(), PairState::kRecovering);
  // The spare sees a recovering main: sends its table, then handover.
  auto sa = sp.heartbeat(10011, PairState::kRecovering);
  EXPECT_TRUE(sa.resync);
  EXPECT_TRUE(sa.send_handover);
  EXPECT_FALSE(sa.release);
  EXPECT_EQ(sp.state(), PairState::kHandover);
  EXPECT_TRUE(sp.claimed());    // still forwarding until the main has it
  EXPECT_TRUE(sp.streaming());  // changes after the table go to the main too
  // Its heartbeat again: no second resync.
  sa = sp.heartbeat(10100, PairState::kRecovering);
  EXPECT_FALSE(sa.resync || sa.send_handover);
  // Longer than 2*dead_after since the main's start, but the spare is heard
  // (its table arriving): no claim.
  main.heard(10950);
  EXPECT_FALSE(main.tick(10000 + 2 * kDead).claim);
  EXPECT_EQ(main.state(), PairState::kRecovering);
  // The main gets the handover heartbeat (after the table): claims.
  ma = main.heartbeat(11200, PairState::kHandover);
  EXPECT_TRUE(ma.claim);
  EXPECT_FALSE(ma.resync);  // the spare has the table already
  EXPECT_EQ(main.state(), PairState::kActive);
  EXPECT_TRUE(main.streaming());
  // The spare sees the main active: releases and goes back to standby.
  sa = sp.heartbeat(11210, PairState::kActive);
  EXPECT_TRUE(sa.release);
  EXPECT_EQ(sp.state(), PairState::kStandby);
  EXPECT_FALSE(sp.claimed());
  EXPECT_TRUE(sp.standby());
  // And the main, seeing the spare standby, does not resync again.
  EXPECT_FALSE(main.heartbeat(11300, PairState::kStandby).resync);
}

TEST(PairMachine, HandoverAbandonedWhenTheMainGoesSilent) {
  auto sp = spare(0);
  sp.tick(kDead);
  sp.connected(1000);
  sp.heartbeat(1000, PairState::kRecovering);
  ASSERT_EQ(sp.state(), PairState::kHandover);
  sp.disconnected(1100);
  auto a = sp.tick(1000 + kDead);
  EXPECT_FALSE(a.claim);  // never released
  EXPECT_EQ(sp.state(), PairState::kActive);
  EXPECT_TRUE(sp.claimed());
}

TEST(PairMachine, BothActiveTheSpareStepsBack) {
  auto sp = spare(0);
  sp.connected(0);
  sp.heartbeat(0, PairState::kActive);
  auto a = sp.tick(kDead);  // the main stopped (SIGSTOP), connection still up
  ASSERT_TRUE(a.takeover);
  a = sp.heartbeat(2000, PairState::kActive);  // it resumed
  EXPECT_TRUE(a.release);
  EXPECT_EQ(sp.state(), PairState::kStandby);

  auto main = mainSlr(0);
  main.tick(2 * kDead);
  main.connected(2000);
  a = main.heartbeat(2001, PairState::kActive);  // the main keeps the role
  EXPECT_FALSE(a.release);
  EXPECT_EQ(main.state(), PairState::kActive);
  EXPECT_FALSE(main.streaming());
  a = main.heartbeat(2100, PairState::kStandby);  // the spare stepped back: it gets our table
  EXPECT_TRUE(a.resync);
  EXPECT_TRUE(main.streaming());
}

TEST(PairMachine, RestartedSpareGetsAFullResyncOnEveryNewConnection) {
  auto main = mainSlr(0);
  main.tick(2 * kDead);
  ASSERT_EQ(main.state(), PairState::kActive);
  EXPECT_FALSE(main.streaming());  // nobody to stream to
  main.connected(2000);
  EXPECT_FALSE(main.streaming());  // not before the peer's state is known
  EXPECT_TRUE(main.heartbeat(2001, PairState::kStandby).resync);
  EXPECT_FALSE(main.heartbeat(2101, PairState::kStandby).resync);
  main.disconnected(2200);
  EXPECT_FALSE(main.streaming());
  main.connected(3000);
  EXPECT_TRUE(main.heartbeat(3001, PairState::kStandby).resync);
  // The active main never gives up its role on silence.
  EXPECT_FALSE(main.tick(100000).release);
  EXPECT_EQ(main.state(), PairState::kActive);
}

TEST(PairMachine, MainRecoveringWhosePeerDiesMidwayClaims) {
  auto main = mainSlr(0);
  main.connected(10);
  main.heartbeat(20, PairState::kActive);  // spare active: wait for its table
  main.disconnected(30);
  EXPECT_FALSE(main.tick(20 + kDead - 1).claim);
  auto a = main.tick(20 + kDead);
  EXPECT_TRUE(a.claim);
  EXPECT_TRUE(a.takeover);
  EXPECT_EQ(main.state(), PairState::kActive);
}

TEST(PairMachine, RecoveringMainWaitsForItsHostsBeforeTakingTrafficFromAForwardingSpare) {
  auto main = mainSlr(0);
  main.connected(10);
  main.hostsReady(10, false);  // no host registered yet
  main.heartbeat(11, PairState::kActive);
  // The spare sent its table and says handover, but we have no next hops.
  auto a = main.heartbeat(20, PairState::kHandover);
  EXPECT_FALSE(a.claim);
  EXPECT_EQ(main.state(), PairState::kRecovering);
  for (Ms t = 100; t < 5000; t += 100) {
    EXPECT_FALSE(main.heartbeat(t, PairState::kHandover).claim) << t;
    EXPECT_FALSE(main.tick(t + 1).claim) << t;
    EXPECT_FALSE(main.hostsReady(t + 2, false).claim) << t;
  }
  a = main.hostsReady(5000, true);
  EXPECT_TRUE(a.claim);
  EXPECT_FALSE(a.resync);
  EXPECT_EQ(main.state(), PairState::kActive);
  EXPECT_TRUE(main.streaming());
  EXPECT_FALSE(main.hostsReady(5001, true).claim);  // once
}

TEST(PairMachine, StandbySparesMarkerOrSilenceDoNotWaitForHosts) {
  auto main = mainSlr(0);
  main.connected(10);
  main.hostsReady(10, false);
  main.heartbeat(11, PairState::kStandby);
  EXPECT_TRUE(main.heartbeat(12, PairState::kHandover).claim);  // nobody forwards: take it

  auto m2 = mainSlr(0);
  m2.connected(10);
  m2.hostsReady(10, false);
  m2.heartbeat(11, PairState::kHandover);  // forwarding spare, we wait...
  m2.disconnected(20);
  EXPECT_TRUE(m2.tick(11 + kDead).claim);  // ...until it goes silent
}

TEST(PairMachine, CleanExitOfTheActivePeerIsTakenOverAtOnce) {
  auto sp = spare(0);
  sp.connected(0);
  sp.heartbeat(100, PairState::kActive);
  sp.heartbeat(200, PairState::kStandby);  // the main's last word before exit
  EXPECT_EQ(sp.state(), PairState::kActive);
  EXPECT_TRUE(sp.claimed());
  // A peer that was never active saying standby changes nothing.
  auto s2 = spare(0);
  s2.connected(0);
  EXPECT_FALSE(s2.heartbeat(100, PairState::kStandby).claim);
  EXPECT_EQ(s2.state(), PairState::kStandby);
}

TEST(PairMachine, TwoMainsDoNotWaitForEachOther) {
  auto m = mainSlr(0);
  m.connected(1);
  auto a = m.heartbeat(2, PairState::kRecovering);
  EXPECT_TRUE(a.claim);
  EXPECT_TRUE(a.resync);
}

TEST(PairMachine, StateNames) {
  EXPECT_STREQ(pairStateName(PairState::kStandby), "standby");
  EXPECT_STREQ(pairStateName(PairState::kActive), "active");
  EXPECT_STREQ(pairStateName(PairState::kRecovering), "recovering");
  EXPECT_STREQ(pairStateName(PairState::kHandover), "handover");
}

// ------------------------------------------------------- address leases ---

TEST(AddressLease, BuildHasReplaceFlagsAndCacheInfo) {
  auto m = nl::buildAddressLease(1, *IpAddress::parse("10.0.2.100"), 24, 2, 5);
  EXPECT_EQ(m.hdr()->nlmsg_flags, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE);
  EXPECT_EQ(m.hdr()->nlmsg_type, RTM_NEWADDR);
  const ifa_cacheinfo* ci = nullptr;
  mnl_attr_parse(
      m.hdr(), sizeof(ifaddrmsg),
      [](const nlattr* at, void* data) {
        if (mnl_attr_get_type(at) == IFA_CACHEINFO && mnl_attr_get_payload_len(at) == sizeof(ifa_cacheinfo))
          *static_cast<const ifa_cacheinfo**>(data) = static_cast<const ifa_cacheinfo*>(mnl_attr_get_payload(at));
        return int(MNL_CB_OK);
      },
      &ci);
  ASSERT_NE(ci, nullptr);
  EXPECT_EQ(ci->ifa_valid, 2u);
  EXPECT_EQ(ci->ifa_prefered, 2u);  // clamped to valid
}

std::optional<nl::AddrInfo> findAddr(const char* a) {
  auto list = nl::listAddresses(Family::kV4);
  if (!list) return std::nullopt;
  for (const auto& x : *list)
    if (x.address.str() == a) return x;
  return std::nullopt;
}

TEST(AddressLease, AddRefreshDeleteInScratchNetns) {
  REQUIRE_SCRATCH_NETNS();
  auto lo = nl::linkIndex("lo");
  ASSERT_TRUE(lo.ok());
  auto p = *Prefix::parse("10.77.0.1/32");
  ASSERT_TRUE(nl::replaceAddress(*lo, p, 30, 30).ok());
  auto a = findAddr("10.77.0.1");
  ASSERT_TRUE(a);
  EXPECT_LE(a->valid_lft, 30u);
  EXPECT_GE(a->valid_lft, 28u);
  // Refresh: same address, longer lease, no EEXIST.
  ASSERT_TRUE(nl::replaceAddress(*lo, p, 100, 100).ok());
  a = findAddr("10.77.0.1");
  ASSERT_TRUE(a);
  EXPECT_GT(a->valid_lft, 30u);
  ASSERT_TRUE(nl::delAddressIfPresent(*lo, p).ok());
  EXPECT_FALSE(findAddr("10.77.0.1"));
  EXPECT_TRUE(nl::delAddressIfPresent(*lo, p).ok());  // already gone: fine
  EXPECT_FALSE(nl::delAddress(*lo, p).ok());
  EXPECT_FALSE(nl::replaceAddress(*lo, p, 0, 0).ok());  // a lease of 0 is a mistake
}

TEST(AddressLease, KernelRemovesAnExpiredLease) {
  REQUIRE_SCRATCH_NETNS();
  auto lo = nl::linkIndex("lo");
  ASSERT_TRUE(lo.ok());
  auto p = *Prefix::parse("10.77.0.2/32");
  ASSERT_TRUE(nl::replaceAddress(*lo, p, 1, 1).ok());
  ASSERT_TRUE(findAddr("10.77.0.2"));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (findAddr("10.77.0.2") && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_FALSE(findAddr("10.77.0.2")) << "a 1 s lease still there after 5 s";
}

}  // namespace
}  // namespace slr::router
