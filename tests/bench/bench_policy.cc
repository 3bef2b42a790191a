// Policy speed: pick() is on the new-flow path of every worker, build() runs
// on the control thread once per recompute_interval per virtual subnet.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "core/policy.h"

namespace slr {
namespace {

std::vector<Candidate> makeHosts(size_t n) {
  std::vector<Candidate> v;
  v.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    Candidate c;
    c.next_hop = uint16_t(i);
    c.name_hash = stableNameHash("host" + std::to_string(i));
    c.load = 0.01 * double(i % 100);
    c.weight = 1 + uint32_t(i % 4);
    c.route_cost = 0.0;
    v.push_back(c);
  }
  return v;
}

// Flow hashes differ per call like new flows do; a cheap LCG keeps the
// generator out of the measurement.
void pickLoop(benchmark::State& state, const Selection& s) {
  uint64_t h = 0x123456789abcdefull, rr = 0, sink = 0;
  for (auto _ : state) {
    h = h * 6364136223846793005ull + 1442695040888963407ull;
    sink += s.pick(h, rr);
  }
  benchmark::DoNotOptimize(sink);
}

void BM_PickMaglev(benchmark::State& state) {
  Selection s = makeConsistentHash(65537)->build(makeHosts(100));
  pickLoop(state, s);
}
BENCHMARK(BM_PickMaglev);

void BM_PickLeastCost(benchmark::State& state) {
  Selection s = makeLeastCost(0.05)->build(makeHosts(100));
  pickLoop(state, s);
}
BENCHMARK(BM_PickLeastCost);

void BM_PickWeightedRoundRobin(benchmark::State& state) {
  Selection s = makeWeightedRoundRobin()->build(makeHosts(100));
  pickLoop(state, s);
}
BENCHMARK(BM_PickWeightedRoundRobin);

void BM_BuildMaglev(benchmark::State& state) {
  auto p = makeConsistentHash(65537);
  auto hosts = makeHosts(size_t(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(p->build(hosts));
}
BENCHMARK(BM_BuildMaglev)->Arg(10)->Arg(100)->Arg(1000)->Unit(benchmark::kMicrosecond);

void BM_BuildLeastCost(benchmark::State& state) {
  auto p = makeLeastCost(0.05);
  auto hosts = makeHosts(size_t(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(p->build(hosts));
}
BENCHMARK(BM_BuildLeastCost)->Arg(100)->Arg(1000)->Unit(benchmark::kMicrosecond);

void BM_BuildWeightedRoundRobin(benchmark::State& state) {
  auto p = makeWeightedRoundRobin();
  auto hosts = makeHosts(size_t(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(p->build(hosts));
}
BENCHMARK(BM_BuildWeightedRoundRobin)->Arg(100)->Arg(1000)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace slr
