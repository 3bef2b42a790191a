#include "core/policy.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/net_types.h"

namespace slr {
namespace {

Candidate host(uint16_t hop, std::string_view name, double load, uint32_t weight = 1,
               double route_cost = 0.0, bool available = true) {
  Candidate c;
  c.next_hop = hop;
  c.name_hash = stableNameHash(name);
  c.load = load;
  c.route_cost = route_cost;
  c.weight = weight;
  c.available = available;
  return c;
}

// How many slots point at each next hop.
std::map<uint16_t, size_t> slotCounts(const Selection& s) {
  std::map<uint16_t, size_t> m;
  for (uint16_t h : s.slots) ++m[h];
  return m;
}

// Picks over many pseudo-random flow hashes, like new flows would arrive.
std::map<uint16_t, size_t> pickCounts(const Selection& s, size_t n) {
  std::mt19937_64 rng(42);
  std::map<uint16_t, size_t> m;
  uint64_t rr = 0;
  for (size_t i = 0; i < n; ++i) ++m[s.pick(rng(), rr)];
  return m;
}

std::vector<Candidate> hosts(size_t n, uint32_t weight = 1) {
  std::vector<Candidate> v;
  for (size_t i = 0; i < n; ++i) {
    v.push_back(host(uint16_t(i), "host" + std::to_string(i), 0.5, weight));
  }
  return v;
}

// ---- least-cost -----------------------------------------------------------

TEST(LeastCost, PicksTheLowestLoad) {
  auto p = makeLeastCost(0.0);
  std::vector<Candidate> c = {host(1, "a", 0.5), host(2, "b", 0.2), host(3, "c", 0.9)};
  Selection s = p->build(c);
  EXPECT_EQ(s.mode, Selection::Mode::kHash);
  ASSERT_FALSE(s.empty());
  EXPECT_EQ(pickCounts(s, 1000), (std::map<uint16_t, size_t>{{2, 1000}}));
  ASSERT_EQ(s.costs.size(), 3u);
  EXPECT_EQ(s.costs[0].next_hop, 1);  // input order kept
  EXPECT_DOUBLE_EQ(s.costs[1].cost, 0.2);
  EXPECT_TRUE(s.costs[0].eligible);
  EXPECT_EQ(s.costs[0].slots, 0u);
  EXPECT_EQ(s.costs[1].slots, s.slots.size());
}

TEST(LeastCost, TieToleranceSpreadsNewFlows) {
  std::vector<Candidate> c = {host(1, "a", 0.20), host(2, "b", 0.24), host(3, "c", 0.50)};
  Selection strict = makeLeastCost(0.0)->build(c);
  EXPECT_EQ(slotCounts(strict), (std::map<uint16_t, size_t>{{1, 1}}));

  Selection loose = makeLeastCost(0.05)->build(c);
  EXPECT_EQ(slotCounts(loose), (std::map<uint16_t, size_t>{{1, 1}, {2, 1}}));
  auto picks = pickCounts(loose, 20000);
  EXPECT_EQ(picks.count(3), 0u);
  EXPECT_NEAR(double(picks[1]) / 20000, 0.5, 0.02);
  EXPECT_NEAR(double(picks[2]) / 20000, 0.5, 0.02);

  Selection all = makeLeastCost(1.0)->build(c);
  EXPECT_EQ(slotCounts(all).size(), 3u);
}

TEST(LeastCost, TiedHostsShareByWeight) {
  // Equal cost (load / weight): 0.3/1 == 0.9/3.
  std::vector<Candidate> c = {host(1, "a", 0.3, 1), host(2, "b", 0.9, 3)};
  Selection s = makeLeastCost(0.01)->build(c);
  EXPECT_EQ(slotCounts(s), (std::map<uint16_t, size_t>{{1, 1}, {2, 3}}));
  auto picks = pickCounts(s, 40000);
  EXPECT_NEAR(double(picks[2]) / 40000, 0.75, 0.02);
}

TEST(LeastCost, WeightAndRouteCostFollowTheFormula) {
  // m = s / w + r
  auto p = makeLeastCost(0.0);
  {
    // 0.6/2 = 0.3 beats 0.4/1 = 0.4: the heavier host is less busy per unit.
    std::vector<Candidate> c = {host(1, "a", 0.4, 1), host(2, "b", 0.6, 2)};
    Selection s = p->build(c);
    EXPECT_EQ(slotCounts(s), (std::map<uint16_t, size_t>{{2, 1}}));
    EXPECT_DOUBLE_EQ(s.costs[0].cost, 0.4);
    EXPECT_DOUBLE_EQ(s.costs[1].cost, 0.3);
  }
  {
    // 0.2 + 0.5 = 0.7 loses to 0.5 + 0: a far host must be much less loaded.
    std::vector<Candidate> c = {host(1, "near", 0.5, 1, 0.0), host(2, "far", 0.2, 1, 0.5)};
    Selection s = p->build(c);
    EXPECT_EQ(slotCounts(s), (std::map<uint16_t, size_t>{{1, 1}}));
    EXPECT_DOUBLE_EQ(s.costs[1].cost, 0.7);
  }
  {
    // ... and wins when it is: 0.1 + 0.3 = 0.4 < 0.5.
    std::vector<Candidate> c = {host(1, "near", 0.5, 1, 0.0), host(2, "far", 0.1, 1, 0.3)};
    EXPECT_EQ(slotCounts(p->build(c)), (std::map<uint16_t, size_t>{{2, 1}}));
  }
  EXPECT_DOUBLE_EQ(defaultCost(host(0, "x", 0.8, 4, 0.25)), 0.45);
  EXPECT_TRUE(std::isinf(defaultCost(host(0, "x", 0.8, 0))));
}

TEST(LeastCost, StandbySiteOnlyWhenNothingCheaper) {
  // Disaster-recovery mirror: a large route cost keeps it out while the main
  // site is up, however loaded the main site is.
  auto p = makeLeastCost(0.05);
  std::vector<Candidate> c = {host(1, "main", 0.95), host(2, "mirror", 0.0, 1, 100.0)};
  EXPECT_EQ(slotCounts(p->build(c)), (std::map<uint16_t, size_t>{{1, 1}}));
  c[0].available = false;
  EXPECT_EQ(slotCounts(p->build(c)), (std::map<uint16_t, size_t>{{2, 1}}));
}

TEST(LeastCost, CustomCostFunction) {
  // An operator F that ignores load: nearest wins.
  auto p = makeLeastCost(0.0, [](const Candidate& c, const CostContext&) { return c.route_cost; });
  std::vector<Candidate> c = {host(1, "a", 0.0, 1, 1.5), host(2, "b", 0.99, 1, 1.0)};
  Selection s = p->build(c);
  EXPECT_EQ(slotCounts(s), (std::map<uint16_t, size_t>{{2, 1}}));
  EXPECT_DOUBLE_EQ(s.costs[0].cost, 1.5);
  // A null CostFn falls back to the default (1.5 < 1.99).
  auto d = makeLeastCost(0.0, nullptr);
  EXPECT_EQ(slotCounts(d->build(c)), (std::map<uint16_t, size_t>{{1, 1}}));
}

TEST(LeastCost, NonFiniteCostIsIneligible) {
  auto p = makeLeastCost(0.05);
  std::vector<Candidate> c = {host(1, "nan", NAN), host(2, "inf", 0.1, 1, INFINITY),
                              host(3, "neginf", -INFINITY), host(4, "ok", 0.9)};
  Selection s = p->build(c);
  EXPECT_EQ(slotCounts(s), (std::map<uint16_t, size_t>{{4, 1}}));
  EXPECT_FALSE(s.costs[0].eligible);
  EXPECT_FALSE(s.costs[1].eligible);
  EXPECT_FALSE(s.costs[2].eligible);
  EXPECT_TRUE(s.costs[3].eligible);
}

TEST(LeastCost, DeterministicUnderReordering) {
  std::vector<Candidate> c;
  for (int i = 0; i < 20; ++i) c.push_back(host(uint16_t(i), "h" + std::to_string(i), 0.5, 1 + i % 3));
  auto p = makeLeastCost(0.1);
  Selection a = p->build(c);
  std::mt19937 rng(7);
  for (int round = 0; round < 5; ++round) {
    std::shuffle(c.begin(), c.end(), rng);
    EXPECT_EQ(p->build(c).slots, a.slots);
  }
}

TEST(LeastCost, HugeTieSetIsCapped) {
  // 200 hosts, weights 1000/999 (gcd 1): scaled down, proportions kept.
  std::vector<Candidate> c;
  for (int i = 0; i < 200; ++i) {
    c.push_back(host(uint16_t(i), "h" + std::to_string(i), 0.0, i % 2 ? 999 : 1000));
  }
  Selection s = makeLeastCost(0.0)->build(c);
  EXPECT_LE(s.slots.size(), 65536u + 200u);
  auto counts = slotCounts(s);
  ASSERT_EQ(counts.size(), 200u);
  for (auto& [hop, n] : counts) EXPECT_NEAR(double(n), double(s.slots.size()) / 200, 2.0);
}

// ---- availability and empty input, for every policy ------------------------

std::vector<std::unique_ptr<Policy>> allPolicies() {
  std::vector<std::unique_ptr<Policy>> v;
  v.push_back(makeLeastCost(10.0));  // tolerance wide enough that all would tie
  v.push_back(makeWeightedRoundRobin());
  v.push_back(makeConsistentHash(1009));
  return v;
}

TEST(AllPolicies, UnavailableIsNeverPicked) {
  for (auto& p : allPolicies()) {
    SCOPED_TRACE(p->name());
    std::vector<Candidate> c = {host(1, "a", 0.1, 5, 0.0, false), host(2, "b", 0.5),
                                host(3, "c", 0.6), host(4, "zero-weight", 0.0, 0)};
    Selection s = p->build(c);
    ASSERT_FALSE(s.empty());
    EXPECT_EQ(std::count(s.slots.begin(), s.slots.end(), 1), 0);
    EXPECT_EQ(std::count(s.slots.begin(), s.slots.end(), 4), 0);
    EXPECT_FALSE(s.costs[0].eligible);
    EXPECT_FALSE(s.costs[3].eligible);
    auto picks = pickCounts(s, 5000);
    EXPECT_EQ(picks.count(1), 0u);
    EXPECT_EQ(picks.count(4), 0u);
    EXPECT_GT(picks[2], 0u);
    EXPECT_GT(picks[3], 0u);
  }
}

TEST(AllPolicies, NoCandidateGivesEmptySelection) {
  for (auto& p : allPolicies()) {
    SCOPED_TRACE(p->name());
    Selection s = p->build({});
    EXPECT_TRUE(s.empty());
    EXPECT_TRUE(s.costs.empty());
    uint64_t rr = 3;
    EXPECT_EQ(s.pick(123, rr), kNoNextHop);

    std::vector<Candidate> down = {host(1, "a", 0.1, 1, 0.0, false), host(2, "b", 0.1, 1, 0.0, false)};
    Selection d = p->build(down);
    EXPECT_TRUE(d.empty());
    EXPECT_EQ(d.costs.size(), 2u);
    EXPECT_EQ(d.pick(123, rr), kNoNextHop);
  }
}

TEST(Selection, HashPickUsesTheWholeRange) {
  Selection s;
  s.slots = {10, 11, 12, 13};
  uint64_t rr = 0;
  EXPECT_EQ(s.pick(0, rr), 10);
  EXPECT_EQ(s.pick(~0ull, rr), 13);
  EXPECT_EQ(s.pick(1ull << 63, rr), 12);
  EXPECT_EQ(rr, 0u);  // hash mode leaves the counter alone
}

TEST(Selection, RoundRobinToleratesCounterFromAnOlderTable) {
  Selection s;
  s.mode = Selection::Mode::kRoundRobin;
  s.slots = {1, 2, 3};
  uint64_t rr = 1000;  // left over from a larger table
  EXPECT_EQ(s.pick(0, rr), 1);
  EXPECT_EQ(s.pick(0, rr), 2);
  EXPECT_EQ(s.pick(0, rr), 3);
  EXPECT_EQ(s.pick(0, rr), 1);
  EXPECT_EQ(rr, 1u);
  EXPECT_STREQ(modeName(s.mode), "round-robin");
  EXPECT_STREQ(modeName(Selection::Mode::kHash), "hash");
}

// ---- weighted round robin ---------------------------------------------------

TEST(WeightedRoundRobin, ExactProportionsOverACycle) {
  auto p = makeWeightedRoundRobin();
  std::vector<Candidate> c = {host(1, "a", 0.9, 5), host(2, "b", 0.1, 1), host(3, "c", 0.1, 1)};
  Selection s = p->build(c);
  EXPECT_EQ(s.mode, Selection::Mode::kRoundRobin);
  ASSERT_EQ(s.slots.size(), 7u);
  EXPECT_EQ(slotCounts(s), (std::map<uint16_t, size_t>{{1, 5}, {2, 1}, {3, 1}}));
  EXPECT_EQ(s.costs[0].slots, 5u);

  // Through pick(), over several whole cycles.
  uint64_t rr = 0;
  std::map<uint16_t, size_t> picks;
  for (int i = 0; i < 7 * 11; ++i) ++picks[s.pick(0, rr)];
  EXPECT_EQ(picks, (std::map<uint16_t, size_t>{{1, 55}, {2, 11}, {3, 11}}));
}

TEST(WeightedRoundRobin, Interleaves) {
  auto p = makeWeightedRoundRobin();
  std::vector<Candidate> c = {host(1, "a", 0.0, 5), host(2, "b", 0.0, 1), host(3, "c", 0.0, 1)};
  Selection s = p->build(c);
  // Longest run of one next hop, cyclically (the sequence repeats).
  size_t n = s.slots.size(), longest = 0;
  for (size_t start = 0; start < n; ++start) {
    size_t run = 0;
    while (run < n && s.slots[(start + run) % n] == s.slots[start]) ++run;
    longest = std::max(longest, run);
  }
  EXPECT_LT(longest, 5u);

  // 1:1:1 is a plain rotation.
  std::vector<Candidate> eq = {host(1, "a", 0.0), host(2, "b", 0.0), host(3, "c", 0.0)};
  Selection r = p->build(eq);
  ASSERT_EQ(r.slots.size(), 3u);
  EXPECT_EQ(slotCounts(r).size(), 3u);
}

TEST(WeightedRoundRobin, ReducedByGcd) {
  auto p = makeWeightedRoundRobin();
  std::vector<Candidate> c = {host(1, "a", 0.0, 200), host(2, "b", 0.0, 400), host(3, "c", 0.0, 600)};
  Selection s = p->build(c);
  EXPECT_EQ(s.slots.size(), 6u);
  EXPECT_EQ(slotCounts(s), (std::map<uint16_t, size_t>{{1, 1}, {2, 2}, {3, 3}}));
}

TEST(WeightedRoundRobin, DeterministicUnderReordering) {
  std::vector<Candidate> c;
  for (int i = 0; i < 12; ++i) c.push_back(host(uint16_t(i), "h" + std::to_string(i), 0.0, 1 + i % 4));
  auto p = makeWeightedRoundRobin();
  Selection a = p->build(c);
  std::mt19937 rng(3);
  std::shuffle(c.begin(), c.end(), rng);
  EXPECT_EQ(p->build(c).slots, a.slots);
}

// ---- consistent hashing (Maglev) --------------------------------------------

TEST(ConsistentHash, TableSizeIsPrime) {
  EXPECT_EQ(makeConsistentHash(100)->build(hosts(3)).slots.size(), 101u);
  EXPECT_EQ(makeConsistentHash(65537)->build(hosts(3)).slots.size(), 65537u);
  EXPECT_EQ(makeConsistentHash(0)->build(hosts(3)).slots.size(), 7u);
  Selection s = makeConsistentHash()->build(hosts(3));
  EXPECT_EQ(s.slots.size(), 65537u);
  EXPECT_EQ(s.mode, Selection::Mode::kHash);
  EXPECT_EQ(std::count(s.slots.begin(), s.slots.end(), kNoNextHop), 0);
}

TEST(ConsistentHash, BalancedForEqualWeights) {
  for (size_t n : {2u, 3u, 10u, 100u}) {
    SCOPED_TRACE(n);
    Selection s = makeConsistentHash(65537)->build(hosts(n));
    auto counts = slotCounts(s);
    ASSERT_EQ(counts.size(), n);
    const double fair = 65537.0 / double(n);
    for (auto& [hop, k] : counts) EXPECT_NEAR(double(k) / fair, 1.0, 0.02) << "hop " << hop;
    size_t sum = 0;
    for (const CandidateCost& cc : s.costs) sum += cc.slots;
    EXPECT_EQ(sum, 65537u);
  }
}

TEST(ConsistentHash, ProportionalToWeights) {
  auto p = makeConsistentHash(65537);
  {
    std::vector<Candidate> c = {host(1, "a", 0.0, 1), host(2, "b", 0.0, 2)};
    auto counts = slotCounts(p->build(c));
    EXPECT_NEAR(double(counts[1]) / 65537, 1.0 / 3, 0.02 / 3);
    EXPECT_NEAR(double(counts[2]) / 65537, 2.0 / 3, 0.02 * 2 / 3);
  }
  {
    // 10 hosts, alternating 1:2.
    std::vector<Candidate> c;
    for (int i = 0; i < 10; ++i) c.push_back(host(uint16_t(i), "w" + std::to_string(i), 0.0, 1 + i % 2));
    auto counts = slotCounts(p->build(c));
    for (auto& [hop, k] : counts) {
      const double expect = 65537.0 * (1 + hop % 2) / 15.0;
      EXPECT_NEAR(double(k) / expect, 1.0, 0.02) << "hop " << hop;
    }
  }
}

// Name owning each slot, so tables can be compared across renumbering.
std::vector<uint64_t> slotNames(const Selection& s, std::span<const Candidate> c) {
  std::map<uint16_t, uint64_t> by_hop;
  for (const Candidate& x : c) by_hop[x.next_hop] = x.name_hash;
  std::vector<uint64_t> v;
  v.reserve(s.slots.size());
  for (uint16_t h : s.slots) v.push_back(by_hop.at(h));
  return v;
}

TEST(ConsistentHash, MinimalDisruption) {
  auto p = makeConsistentHash(65537);
  for (size_t n : {5u, 10u, 50u}) {
    SCOPED_TRACE(n);
    std::vector<Candidate> c = hosts(n);
    Selection before = p->build(c);
    for (size_t removed : {size_t(0), n / 2, n - 1}) {
      std::vector<Candidate> fewer = c;
      fewer[removed].available = false;  // withdrawn
      Selection after = p->build(fewer);
      size_t changed = 0, owned = 0;
      for (size_t i = 0; i < before.slots.size(); ++i) {
        if (before.slots[i] == c[removed].next_hop) ++owned;
        if (before.slots[i] != after.slots[i]) ++changed;
      }
      const double m = double(before.slots.size());
      EXPECT_LT(double(changed) / m, 1.5 / double(n) + double(owned) / m);
      // Everything the removed host owned had to move; the excess is small.
      EXPECT_GE(changed, owned);

      // And adding it back restores the original table exactly.
      EXPECT_EQ(p->build(c).slots, before.slots);
    }
  }
  // Adding a host takes ~1/(n+1) of the slots, all of them for itself.
  std::vector<Candidate> c = hosts(10);
  Selection before = p->build(c);
  c.push_back(host(10, "host10", 0.5));
  Selection after = p->build(c);
  size_t changed = 0, to_new = 0;
  for (size_t i = 0; i < before.slots.size(); ++i) {
    if (before.slots[i] != after.slots[i]) {
      ++changed;
      if (after.slots[i] == 10) ++to_new;
    }
  }
  EXPECT_LT(double(changed) / 65537, 1.5 / 11);
  EXPECT_GT(double(to_new) / double(changed), 0.9);
}

TEST(ConsistentHash, DeterministicFromNamesAlone) {
  auto p = makeConsistentHash(65537);
  std::vector<Candidate> c;
  for (int i = 0; i < 16; ++i) c.push_back(host(uint16_t(i), "srv-" + std::to_string(i), 0.1 * (i % 7), 1 + i % 3));
  Selection a = p->build(c);

  // Shuffled input order: same next hop in every slot.
  std::mt19937 rng(11);
  for (int round = 0; round < 3; ++round) {
    std::shuffle(c.begin(), c.end(), rng);
    EXPECT_EQ(p->build(c).slots, a.slots);
  }

  // Renumbered next hops (another SLR's numbering): same NAME in every slot.
  std::vector<Candidate> renum = c;
  for (size_t i = 0; i < renum.size(); ++i) renum[i].next_hop = uint16_t(1000 + (i * 7919) % 500);
  Selection b = p->build(renum);
  EXPECT_EQ(slotNames(b, renum), slotNames(a, c));

  // Loads and route costs do not move consistent-hash slots.
  std::vector<Candidate> loaded = c;
  for (Candidate& x : loaded) x.load = 0.99, x.route_cost = 5;
  EXPECT_EQ(p->build(loaded).slots, a.slots);
}

TEST(ConsistentHash, MoreHostsThanSlots) {
  Selection s = makeConsistentHash(7)->build(hosts(20));
  EXPECT_EQ(s.slots.size(), 7u);
  EXPECT_EQ(std::count(s.slots.begin(), s.slots.end(), kNoNextHop), 0);
}

// ---- the seed's example -----------------------------------------------------

TEST(SeedExample, TwoSubnetsPerHostSite) {
  // Host site A advertises 192.200.*.* with load index 0.30 and 192.201.*.*
  // with 0.87; host site B advertises both at 0.50.  The SLR's Fig. 9 table
  // then sends new 192.200 flows to A and new 192.201 flows to B.
  const Prefix k1 = *Prefix::parse("192.200.0.0/16");
  const Prefix k2 = *Prefix::parse("192.201.0.0/16");
  std::map<std::string, std::vector<Candidate>> per_subnet;  // s_kj by subnet k
  per_subnet[k1.str()] = {host(0, "siteA", 0.30), host(1, "siteB", 0.50)};
  per_subnet[k2.str()] = {host(0, "siteA", 0.87), host(1, "siteB", 0.50)};

  auto p = makeLeastCost(0.05);
  std::map<std::string, Selection> table;
  for (auto& [k, cands] : per_subnet) table[k] = p->build(cands);

  uint64_t rr = 0;
  FlowKey f;
  f.family = Family::kV4;
  f.proto = 6;
  for (uint16_t port = 1000; port < 1100; ++port) {
    f.sport = port;
    const uint64_t h = flowHash(f, 1);
    EXPECT_EQ(table[k1.str()].pick(h, rr), 0);  // site A
    EXPECT_EQ(table[k2.str()].pick(h, rr), 1);  // site B
  }
  EXPECT_DOUBLE_EQ(table[k1.str()].costs[0].cost, 0.30);
  EXPECT_DOUBLE_EQ(table[k2.str()].costs[0].cost, 0.87);

  // Aggregate G reported upward: weighted mean of the loads.
  EXPECT_DOUBLE_EQ(aggregateLoad(per_subnet[k1.str()]), 0.40);
  EXPECT_DOUBLE_EQ(aggregateLoad(per_subnet[k2.str()]), (0.87 + 0.50) / 2);
}

TEST(Aggregate, SkipsUnavailableAndWeighs) {
  std::vector<Candidate> c = {host(0, "a", 0.2, 3), host(1, "b", 0.6, 1), host(2, "c", 0.0, 1, 0, false),
                              host(3, "d", NAN, 1)};
  EXPECT_DOUBLE_EQ(aggregateLoad(c), (0.2 * 3 + 0.6) / 4);
  EXPECT_TRUE(std::isnan(aggregateLoad({})));
}

// ---- factory and names ------------------------------------------------------

TEST(Factory, KnownNames) {
  for (const char* n : {"least-cost", "weighted-round-robin", "consistent-hash"}) {
    auto p = makePolicy(n, 0.05);
    ASSERT_TRUE(p.ok()) << n;
    EXPECT_STREQ((*p)->name(), n);
  }
}

TEST(Factory, RejectsUnknownAndBadTolerance) {
  auto p = makePolicy("round-robin", 0.05);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().op, "policy.algorithm");
  EXPECT_NE(p.error().message().find("got \"round-robin\""), std::string::npos);
  EXPECT_FALSE(makePolicy("least-cost", -0.1).ok());
  EXPECT_FALSE(makePolicy("least-cost", NAN).ok());
  EXPECT_FALSE(makePolicy("least-cost", INFINITY).ok());
  EXPECT_EQ(makePolicy("least-cost", -1).error().op, "policy.tie_tolerance");
}

TEST(StableNameHash, GoldenFnv1a64) {
  EXPECT_EQ(stableNameHash(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(stableNameHash("a"), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(stableNameHash("foobar"), 0x85944171f73967e8ull);
  EXPECT_NE(stableNameHash("host1"), stableNameHash("host2"));
}

}  // namespace
}  // namespace slr
