// The SLR's control-plane state: host registry (authorisation, hold time,
// sessions) and the Fig. 9 table builder (who serves which subnet, what the
// policy picks).  Pure code, no sockets.
#include <gtest/gtest.h>

#include "core/policy.h"
#include "slr/registry.h"
#include "slr/table_builder.h"

namespace slr::router {
namespace {

using namespace std::chrono_literals;

Prefix pfx(const char* s) { return *Prefix::parse(s); }
IpAddress ip(const char* s) { return *IpAddress::parse(s); }
proto::Hello hostHello(const char* tunnel_address) {
  proto::Hello h;
  h.tunnel_address = ip(tunnel_address);
  return h;
}

std::vector<config::HostAuthConfig> twoHosts() {
  config::HostAuthConfig a{"host1", {pfx("10.100.0.0/24")}, 1, 0.0};
  config::HostAuthConfig b{"host2", {pfx("10.100.0.0/24"), pfx("10.101.0.0/16")}, 1, 0.0};
  return {a, b};
}

proto::Update update(std::initializer_list<std::pair<const char*, double>> loads) {
  proto::Update u;
  for (auto& [p, l] : loads) u.entries.push_back({pfx(p), l, true});
  return u;
}

TEST(HostRegistry, FindsConfiguredHostsOnly) {
  HostRegistry r(twoHosts());
  EXPECT_EQ(r.find("host1"), 0);
  EXPECT_EQ(r.find("host2"), 1);
  EXPECT_EQ(r.find("rogue"), -1);
}

TEST(HostRegistry, UpOnlyAfterAValidUpdate) {
  HostRegistry r(twoHosts());
  auto t0 = Clock::now();
  uint64_t s = r.hello(0, hostHello("10.0.3.11"), t0);
  EXPECT_EQ(r.snapshot()[0].state, HostState::kConfigured);
  ASSERT_TRUE(r.update(0, s, update({{"10.100.0.0/24", 0.3}}), t0).ok());
  auto h = r.snapshot()[0];
  EXPECT_EQ(h.state, HostState::kUp);
  EXPECT_EQ(h.tunnel_address, ip("10.0.3.11"));
  ASSERT_EQ(h.subnets.size(), 1u);
  EXPECT_DOUBLE_EQ(h.subnets[0].load, 0.3);
}

TEST(HostRegistry, RefusesUnauthorisedSubnetAndWithdraws) {
  HostRegistry r(twoHosts());
  auto t0 = Clock::now();
  uint64_t s = r.hello(0, hostHello("10.0.3.11"), t0);
  ASSERT_TRUE(r.update(0, s, update({{"10.100.0.0/24", 0.1}}), t0).ok());
  // host1 may serve 10.100.0.0/24 (and anything inside it), not 10.101/16.
  EXPECT_TRUE(r.update(0, s, update({{"10.100.0.128/25", 0.1}}), t0).ok());
  auto st = r.update(0, s, update({{"10.100.0.0/24", 0.1}, {"10.101.0.0/16", 0.1}}), t0);
  ASSERT_EQ(st.kind, HostRegistry::UpdateResult::Kind::kSubnetNotAuthorised);
  EXPECT_NE(st.why.find("10.101.0.0/16 not authorised for host host1"), std::string::npos);
  auto h = r.snapshot()[0];
  EXPECT_EQ(h.state, HostState::kWithdrawn);
  EXPECT_TRUE(h.subnets.empty());
}

TEST(HostRegistry, StaleSessionIgnoredAfterReconnect) {
  HostRegistry r(twoHosts());
  auto t0 = Clock::now();
  uint64_t old_session = r.hello(0, hostHello("10.0.3.11"), t0);
  uint64_t new_session = r.hello(0, hostHello("10.0.3.99"), t0);
  EXPECT_NE(old_session, new_session);
  EXPECT_EQ(r.update(0, old_session, update({{"10.100.0.0/24", 0.1}}), t0).kind,
            HostRegistry::UpdateResult::Kind::kStaleSession);
  EXPECT_TRUE(r.update(0, new_session, update({{"10.100.0.0/24", 0.1}}), t0).ok());
  EXPECT_EQ(r.snapshot()[0].tunnel_address, ip("10.0.3.99"));
}

TEST(HostRegistry, SilentHostWithdrawnAfterHoldTime) {
  HostRegistry r(twoHosts());
  auto t0 = Clock::now();
  uint64_t s = r.hello(1, hostHello("10.0.3.12"), t0);
  ASSERT_TRUE(r.update(1, s, update({{"10.100.0.0/24", 0.1}}), t0).ok());
  EXPECT_TRUE(r.expire(t0 + 2999ms, 3s).empty());
  auto gone = r.expire(t0 + 3001ms, 3s);
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone[0], "host2");
  EXPECT_EQ(r.snapshot()[1].state, HostState::kWithdrawn);
  EXPECT_TRUE(r.expire(t0 + 10s, 3s).empty());  // reported once
}

std::vector<HostRecord> upHosts(double load1, double load2) {
  HostRegistry r(twoHosts());
  auto t0 = Clock::now();
  uint64_t s1 = r.hello(0, hostHello("10.0.3.11"), t0);
  uint64_t s2 = r.hello(1, hostHello("10.0.3.12"), t0);
  EXPECT_TRUE(r.update(0, s1, update({{"10.100.0.0/24", load1}}), t0).ok());
  EXPECT_TRUE(r.update(1, s2, update({{"10.100.0.0/24", load2}, {"10.101.0.0/16", 0.5}}), t0).ok());
  return r.snapshot();
}

TEST(TableBuilder, LeastCostFollowsLoads) {
  TableBuilder b(makeLeastCost(0.05), 2);
  auto snap = b.build(upHosts(0.9, 0.1));
  ASSERT_EQ(snap->routes.size(), 2u);
  const RouteEntry* r = snap->route(0x0a64000a);  // 10.100.0.10
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->prefix, pfx("10.100.0.0/24"));
  uint64_t rr = 0;
  for (uint64_t h = 0; h < 1000; ++h) EXPECT_EQ(r->selection.pick(h * 0x9e3779b97f4a7c15ull, rr), 1);

  snap = b.build(upHosts(0.1, 0.9));
  r = snap->route(0x0a64000a);
  for (uint64_t h = 0; h < 1000; ++h) EXPECT_EQ(r->selection.pick(h * 0x9e3779b97f4a7c15ull, rr), 0);
}

TEST(TableBuilder, OnlyHostsThatServeASubnetAreCandidates) {
  TableBuilder b(makeLeastCost(0.05), 2);
  auto snap = b.build(upHosts(0.0, 0.0));
  const RouteEntry* r = snap->route(0x0a650001);  // 10.101.0.1: host2 only
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->prefix, pfx("10.101.0.0/16"));
  ASSERT_EQ(r->selection.costs.size(), 1u);
  EXPECT_EQ(r->selection.costs[0].next_hop, 1);
  EXPECT_EQ(snap->route(0x0a660001), nullptr);  // 10.102.0.1: nobody
  EXPECT_EQ(snap->next_hops[0].tunnel_v4, 0x0a00030bu);
  EXPECT_TRUE(snap->next_hops[1].up);
}

TEST(TableBuilder, MoreSpecificAdvertisementWinsAndWithdrawnHostsLeave) {
  auto hosts = upHosts(0.2, 0.2);
  // host1 also advertises a /25 with a higher load.
  hosts[0].subnets.push_back({pfx("10.100.0.128/25"), 0.8, true});
  TableBuilder b(makeLeastCost(0.0), 2);
  auto snap = b.build(hosts);
  const RouteEntry* r = snap->route(0x0a640080);  // 10.100.0.128
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->prefix, pfx("10.100.0.128/25"));  // longest first
  ASSERT_EQ(r->selection.costs.size(), 2u);      // host2 serves it through its /24
  uint64_t rr = 0;
  EXPECT_EQ(r->selection.pick(12345, rr), 1);     // host1's /25 load 0.8 > host2's 0.2

  hosts[1].state = HostState::kWithdrawn;
  snap = b.build(hosts);
  EXPECT_FALSE(snap->next_hops[1].up);
  r = snap->route(0x0a640080);
  ASSERT_EQ(r->selection.costs.size(), 1u);
  EXPECT_EQ(r->selection.pick(12345, rr), 0);
  EXPECT_EQ(r->stateless.pick(12345, rr), 0);
}

TEST(HostRegistry, ClosedConnectionStopsNewFlowsButKeepsEstablishedUntilHold) {
  HostRegistry r(twoHosts());
  auto t0 = Clock::now();
  uint64_t s = r.hello(0, hostHello("10.0.3.11"), t0);
  ASSERT_TRUE(r.update(0, s, update({{"10.100.0.0/24", 0.1}}), t0).ok());
  EXPECT_FALSE(r.disconnect(0, s + 1, t0));  // a replaced session: nothing happens
  EXPECT_TRUE(r.disconnect(0, s, t0));
  auto h = r.snapshot()[0];
  EXPECT_EQ(h.state, HostState::kDisconnected);
  ASSERT_EQ(h.subnets.size(), 1u);
  EXPECT_FALSE(h.subnets[0].available);
  // The table keeps it as a next hop (established flows) but never picks it.
  TableBuilder b(makeLeastCost(0.0), 2);
  auto snap = b.build(r.snapshot());
  EXPECT_TRUE(snap->next_hops[0].up);
  const RouteEntry* rt = snap->route(0x0a64000a);
  ASSERT_NE(rt, nullptr);
  EXPECT_TRUE(rt->selection.empty());
  // The hold time still withdraws it; a new session brings it back first.
  EXPECT_EQ(r.expire(t0 + 10s, 3s), std::vector<std::string>{"host1"});
  uint64_t s2 = r.hello(0, hostHello("10.0.3.11"), t0 + 11s);
  ASSERT_TRUE(r.update(0, s2, update({{"10.100.0.0/24", 0.1}}), t0 + 11s).ok());
  EXPECT_EQ(r.snapshot()[0].state, HostState::kUp);
}

// Hierarchy: a lower SLR registered like a host, standby next hops,
// client regions, client affinity and the aggregate G reported upwards.
TEST(TableBuilder, StandbyTakesNewFlowsOnlyWhenNoPrimaryCan) {
  auto hosts = upHosts(0.9, 0.1);
  hosts[1].standby = true;  // the lighter one is the disaster-recovery site
  TableBuilder b(makeLeastCost(0.0), 2);
  auto snap = b.build(hosts);
  const RouteEntry* r = snap->route(0x0a64000a);
  ASSERT_NE(r, nullptr);
  uint64_t rr = 0;
  for (uint64_t h = 0; h < 100; ++h) EXPECT_EQ(r->selection.pick(h * 0x9e3779b97f4a7c15ull, rr), 0);
  hosts[0].state = HostState::kWithdrawn;
  snap = b.build(hosts);
  r = snap->route(0x0a64000a);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->selection.pick(42, rr), 1);
}

TEST(TableBuilder, RegionCostsSteerTheirClientsOnly) {
  BuildOptions o;
  config::RegionConfig east;
  east.name = "east";
  east.clients = {pfx("10.0.1.0/24")};
  east.cost = {{"host1", 1.0}};  // far from east: east clients prefer host2
  o.regions = {east};
  o.host_names = {"host1", "host2"};
  TableBuilder b(makeLeastCost(0.0), 2, o);
  auto snap = b.build(upHosts(0.2, 0.4));
  const RouteEntry* r = snap->route(0x0a64000a);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(snap->regionOf(0x0a000102), 1);  // 10.0.1.2
  EXPECT_EQ(snap->regionOf(0x0a000202), 0);  // 10.0.2.2
  uint64_t rr = 0;
  EXPECT_EQ(r->selectionFor(0).pick(7, rr), 0);  // no region: lighter host1
  EXPECT_EQ(r->selectionFor(1).pick(7, rr), 1);  // east: 0.2 + 1.0 > 0.4
}

TEST(TableBuilder, LowerSlrsGetClientAffinityAndShortcutWaitUnlessSpread) {
  auto hosts = upHosts(0.3, 0.5);
  hosts[0].role = proto::Role::kSlr;
  hosts[0].capabilities = proto::kCapShortcut;
  BuildOptions o;
  o.shortcut = true;
  TableBuilder b(makeLeastCost(0.05), 2, o);
  auto snap = b.build(hosts);
  EXPECT_TRUE(snap->next_hops[0].is_slr);
  EXPECT_TRUE(snap->next_hops[0].awaits_shortcut);
  EXPECT_FALSE(snap->next_hops[1].awaits_shortcut);
  EXPECT_TRUE(snap->route(0x0a64000a)->client_affinity);
  o.spread_connections = true;
  o.shortcut = false;
  TableBuilder spread(makeLeastCost(0.05), 2, o);
  snap = spread.build(hosts);
  EXPECT_FALSE(snap->route(0x0a64000a)->client_affinity);
  EXPECT_FALSE(snap->next_hops[0].awaits_shortcut);
}

TEST(TableBuilder, AggregateIsReportedPerSubnetAndUnavailableWithoutCapacity) {
  auto hosts = upHosts(0.2, 0.6);
  TableBuilder b(makeLeastCost(0.05), 2);
  auto snap = b.build(hosts);
  const RouteEntry* r = snap->route(0x0a64000a);
  ASSERT_NE(r, nullptr);
  EXPECT_TRUE(r->available);
  EXPECT_DOUBLE_EQ(r->aggregate_load, 0.4);  // weighted mean of 0.2 and 0.6
  for (auto& h : hosts) {
    for (auto& s : h.subnets) s.available = false;
  }
  snap = b.build(hosts);
  EXPECT_FALSE(snap->route(0x0a64000a)->available);
  // An operator G replaces the mean.
  TableBuilder g(makeLeastCost(0.05), 2, {}, [](std::span<const Candidate> c, const CostContext&) {
    double m = 0;
    for (const auto& x : c) m = std::max(m, x.load);
    return m;
  });
  EXPECT_DOUBLE_EQ(g.build(upHosts(0.2, 0.6))->route(0x0a64000a)->aggregate_load, 0.6);
}

}  // namespace
}  // namespace slr::router
