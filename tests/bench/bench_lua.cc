// Lua policy speed: what an operator-installed F costs at table-build time
// (control thread, once per recompute per subnet), next to the built-in F.
// Never on the packet path: workers only call Selection::pick().
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "core/lua_policy.h"
#include "core/policy.h"

namespace slr {
namespace {

// Same formula as defaultCost, so the two build benchmarks do the same work.
constexpr std::string_view kDefaultF =
    "function F(c, ctx) if c.weight == 0 then return math.huge end "
    "return c.load / c.weight + c.route_cost + c.proximity end";

constexpr std::string_view kMeanG = R"lua(
  function G(cands, ctx)
    local num, den = 0, 0
    for _, c in ipairs(cands) do
      if c.available and c.weight > 0 then
        num = num + c.load * c.weight
        den = den + c.weight
      end
    end
    if den == 0 then return 0/0 end
    return num / den
  end
)lua";

// Eight next hops with names, as the SLR builds them per subnet.
struct Hosts {
  std::vector<std::string> names;
  std::vector<Candidate> cands;
};

Hosts makeHosts(size_t n) {
  Hosts h;
  h.names.reserve(n);
  for (size_t i = 0; i < n; ++i) h.names.push_back("site" + std::to_string(i));
  for (size_t i = 0; i < n; ++i) {
    Candidate c;
    c.next_hop = uint16_t(i);
    c.name = h.names[i];
    c.name_hash = stableNameHash(c.name);
    c.load = 0.1 * double(i % 10);
    c.weight = 1 + uint32_t(i % 4);
    c.route_cost = 0.01 * double(i % 3);
    h.cands.push_back(c);
  }
  return h;
}

CostContext makeContext() {
  CostContext ctx;
  ctx.subnet = "10.100.0.0/24";
  ctx.subnet_class = "default";
  ctx.region = "east";
  ctx.hour = 12;
  return ctx;
}

std::unique_ptr<LuaPolicy> mustLoad(benchmark::State& state, std::string_view src) {
  auto r = LuaPolicy::load(src, "bench.lua");
  if (!r.ok()) {
    state.SkipWithError(r.error().message().c_str());
    return nullptr;
  }
  return std::move(r).value();
}

// One F call: argument tables, pcall, hook budget.
void BM_LuaCostCall(benchmark::State& state) {
  auto lua = mustLoad(state, kDefaultF);
  if (!lua) return;
  const Hosts h = makeHosts(1);
  const CostContext ctx = makeContext();
  for (auto _ : state) {
    Result<double> r = lua->cost(h.cands[0], ctx);
    benchmark::DoNotOptimize(r.value());
  }
}
BENCHMARK(BM_LuaCostCall);

// The same through the CostFn wrapper Policy::build uses.
void BM_LuaCostFnCall(benchmark::State& state) {
  auto lua = mustLoad(state, kDefaultF);
  if (!lua) return;
  CostFn f = lua->costFn();
  const Hosts h = makeHosts(1);
  const CostContext ctx = makeContext();
  for (auto _ : state) benchmark::DoNotOptimize(f(h.cands[0], ctx));
}
BENCHMARK(BM_LuaCostFnCall);

// Baseline for the two above.
void BM_LuaBaselineBuiltinCostCall(benchmark::State& state) {
  CostFn f = defaultCost;
  const Hosts h = makeHosts(1);
  const CostContext ctx = makeContext();
  for (auto _ : state) benchmark::DoNotOptimize(f(h.cands[0], ctx));
}
BENCHMARK(BM_LuaBaselineBuiltinCostCall);

// A least-cost Selection over 8 candidates with the Lua F...
void BM_LuaBuildLeastCost8(benchmark::State& state) {
  auto lua = mustLoad(state, kDefaultF);
  if (!lua) return;
  auto policy = makeLeastCost(0.05, lua->costFn());
  const Hosts h = makeHosts(8);
  const CostContext ctx = makeContext();
  for (auto _ : state) benchmark::DoNotOptimize(policy->build(h.cands, ctx));
  if (lua->health().errors != 0) state.SkipWithError(lua->health().last_error.c_str());
}
BENCHMARK(BM_LuaBuildLeastCost8)->Unit(benchmark::kMicrosecond);

// ... and with the built-in one.
void BM_LuaBaselineBuiltinBuildLeastCost8(benchmark::State& state) {
  auto policy = makeLeastCost(0.05);
  const Hosts h = makeHosts(8);
  const CostContext ctx = makeContext();
  for (auto _ : state) benchmark::DoNotOptimize(policy->build(h.cands, ctx));
}
BENCHMARK(BM_LuaBaselineBuiltinBuildLeastCost8)->Unit(benchmark::kMicrosecond);

// G over 8 children (the aggregate a lower SLR reports upwards), Lua vs built-in.
void BM_LuaAggregate8(benchmark::State& state) {
  auto lua = mustLoad(state, kMeanG);
  if (!lua) return;
  AggregateFn g = lua->aggregateFn();
  const Hosts h = makeHosts(8);
  const CostContext ctx = makeContext();
  for (auto _ : state) benchmark::DoNotOptimize(g(h.cands, ctx));
  if (lua->health().errors != 0) state.SkipWithError(lua->health().last_error.c_str());
}
BENCHMARK(BM_LuaAggregate8);

void BM_LuaBaselineBuiltinAggregate8(benchmark::State& state) {
  const Hosts h = makeHosts(8);
  const CostContext ctx = makeContext();
  for (auto _ : state) benchmark::DoNotOptimize(aggregateLoad(h.cands, ctx));
}
BENCHMARK(BM_LuaBaselineBuiltinAggregate8);

}  // namespace
}  // namespace slr
