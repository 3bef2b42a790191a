// Operator drain in the host registry: a drained host stays up (its
// established flows keep their next hop) but its subnets read as unavailable,
// so the table builder gives it no new flows; every availability change asks
// for an immediate table rebuild (takeChanged).
#include <gtest/gtest.h>

#include <set>

#include "core/policy.h"
#include "slr/registry.h"
#include "slr/table_builder.h"

namespace slr::router {
namespace {

Prefix pfx(const char* s) { return *Prefix::parse(s); }

proto::Hello hello(const char* tunnel) {
  proto::Hello h;
  h.tunnel_address = *IpAddress::parse(tunnel);
  return h;
}

proto::Update update(double load, bool available = true) {
  proto::Update u;
  u.entries.push_back({pfx("10.100.0.0/24"), load, available});
  return u;
}

std::vector<config::HostAuthConfig> hosts(bool second_drained = false) {
  config::HostAuthConfig a{"host1", {pfx("10.100.0.0/24")}, 1, 0.0};
  config::HostAuthConfig b{"host2", {pfx("10.100.0.0/24")}, 1, 0.0};
  b.drained = second_drained;
  return {a, b};
}

// Both hosts up with the given loads; returns the sessions.
std::pair<uint64_t, uint64_t> bringUp(HostRegistry& r, double l1 = 0.5, double l2 = 0.5) {
  auto t = Clock::now();
  uint64_t s1 = r.hello(0, hello("10.0.3.11"), t);
  uint64_t s2 = r.hello(1, hello("10.0.3.12"), t);
  EXPECT_TRUE(r.update(0, s1, update(l1), t).ok());
  EXPECT_TRUE(r.update(1, s2, update(l2), t).ok());
  return {s1, s2};
}

// Which host new flows to 10.100.0.10 get, over many flow hashes.
std::set<uint16_t> picks(const std::vector<HostRecord>& hs) {
  TableBuilder b(makeLeastCost(0.05), 2);
  auto snap = b.build(hs);
  std::set<uint16_t> out;
  const RouteEntry* r = snap->route(0x0a64000a);
  if (r == nullptr) return out;
  uint64_t rr = 0;
  for (uint64_t h = 0; h < 1000; ++h) {
    if (!r->selection.empty()) out.insert(r->selection.pick(h * 0x9e3779b97f4a7c15ull, rr));
  }
  return out;
}

TEST(RegistryDrain, DrainedHostGetsNoNewFlowsButStaysUp) {
  HostRegistry r(hosts());
  bringUp(r, 0.1, 0.9);  // host1 would get everything
  EXPECT_EQ(picks(r.snapshot()), (std::set<uint16_t>{0}));

  EXPECT_TRUE(r.setDrained(0, true));
  EXPECT_FALSE(r.setDrained(0, true));  // no change the second time
  auto s = r.snapshot();
  EXPECT_TRUE(s[0].drained);
  EXPECT_EQ(s[0].state, HostState::kUp);  // established flows keep it
  ASSERT_EQ(s[0].subnets.size(), 1u);
  EXPECT_FALSE(s[0].subnets[0].available);
  EXPECT_TRUE(s[1].subnets[0].available);
  EXPECT_EQ(picks(s), (std::set<uint16_t>{1}));

  // A drained host's own updates do not make it available again.
  auto t = Clock::now();
  EXPECT_TRUE(r.update(0, s[0].session, update(0.0), t).ok());
  EXPECT_FALSE(r.snapshot()[0].subnets[0].available);

  EXPECT_TRUE(r.setDrained(0, false));
  EXPECT_TRUE(r.snapshot()[0].subnets[0].available);
  EXPECT_EQ(picks(r.snapshot()), (std::set<uint16_t>{0}));
}

TEST(RegistryDrain, AllDrainedMeansNoNextHop) {
  HostRegistry r(hosts());
  bringUp(r);
  r.setDrained(0, true);
  r.setDrained(1, true);
  EXPECT_TRUE(picks(r.snapshot()).empty());
}

TEST(RegistryDrain, ConfigStartsDrained) {
  HostRegistry r(hosts(/*second_drained=*/true));
  EXPECT_FALSE(r.snapshot()[0].drained);
  EXPECT_TRUE(r.snapshot()[1].drained);
  bringUp(r, 0.9, 0.1);  // host2 would be the least loaded
  EXPECT_EQ(picks(r.snapshot()), (std::set<uint16_t>{0}));
  r.setDrained(1, false);
  EXPECT_EQ(picks(r.snapshot()), (std::set<uint16_t>{1}));
}

TEST(RegistryDrain, AvailabilityChangesAskForARebuild) {
  HostRegistry r(hosts());
  EXPECT_FALSE(r.takeChanged());
  auto [s1, s2] = bringUp(r);
  EXPECT_TRUE(r.takeChanged());  // hosts came up
  EXPECT_FALSE(r.takeChanged());  // once

  auto t = Clock::now();
  // Same availability, other load: the periodic rebuild is enough.
  EXPECT_TRUE(r.update(0, s1, update(0.7), t).ok());
  EXPECT_FALSE(r.takeChanged());
  // The host says its subnet is unavailable (a failed health check).
  EXPECT_TRUE(r.update(0, s1, update(0.7, false), t).ok());
  EXPECT_TRUE(r.takeChanged());
  EXPECT_TRUE(r.update(0, s1, update(0.7, true), t).ok());
  EXPECT_TRUE(r.takeChanged());

  EXPECT_TRUE(r.setDrained(1, true));
  EXPECT_TRUE(r.takeChanged());
  EXPECT_FALSE(r.setDrained(1, true));
  EXPECT_FALSE(r.takeChanged());

  EXPECT_TRUE(r.disconnect(1, s2, t));
  EXPECT_TRUE(r.takeChanged());
}

// The version tells a waiter (slrctl drain) whether a table was built after
// its change: it moves with every change that asks for a rebuild, only then,
// and a snapshot carries the version it was taken at.
TEST(RegistryDrain, VersionMovesWithEveryChange) {
  HostRegistry r(hosts());
  const uint64_t v0 = r.version();
  auto [s1, s2] = bringUp(r);
  const uint64_t v1 = r.version();
  EXPECT_GT(v1, v0);
  uint64_t seen = 0;
  (void)r.snapshot(&seen);
  EXPECT_EQ(seen, v1);

  auto t = Clock::now();
  EXPECT_TRUE(r.update(0, s1, update(0.7), t).ok());  // load only: no rebuild asked
  EXPECT_EQ(r.version(), v1);
  EXPECT_TRUE(r.setDrained(0, true));
  const uint64_t v2 = r.version();
  EXPECT_GT(v2, v1);
  EXPECT_FALSE(r.setDrained(0, true));
  EXPECT_EQ(r.version(), v2);
  EXPECT_TRUE(r.update(1, s2, update(0.5, false), t).ok());
  EXPECT_GT(r.version(), v2);
  (void)r.snapshot(&seen);
  EXPECT_EQ(seen, r.version());
}

}  // namespace
}  // namespace slr::router
