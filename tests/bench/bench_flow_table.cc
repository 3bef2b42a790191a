// Flow table speed: lookup hit / miss, batched lookup with prefetch, and
// insert+erase churn, at 64k and 1M flows with the table filled to capacity
// (the worst case: load factor 0.875). Hashes are precomputed, as in the
// worker, which hashes once per packet and reuses the hash for policy; the
// *WithHash variant includes flowHash. Run with --benchmark_filter as usual;
// each benchmark reports mean/median/stddev over 5 repetitions.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include "core/flow_table.h"

namespace slr {
namespace {

constexpr uint64_t kSeed = 0x243f6a8885a308d3ull;

FlowKey randomKey(std::mt19937_64& rng) {
  FlowKey k;
  k.family = Family::kV4;
  uint64_t r = rng();
  k.src = IpAddress::v4(uint32_t(r)).bytes;
  k.dst = IpAddress::v4(0x0a64000au + uint32_t((r >> 32) & 0xff)).bytes;
  k.sport = uint16_t(r >> 40);
  k.dport = 80;
  k.proto = 6;
  return k;
}

// One full table per size, built once and shared by all benchmarks (building
// a 1M table per repetition would dominate the run time).
struct World {
  std::unique_ptr<FlowTable> table;
  std::vector<FlowKey> present;  // in a random order unrelated to slots
  std::vector<uint64_t> present_hash;
  std::vector<FlowKey> absent;
  std::vector<uint64_t> absent_hash;
};

World& world(size_t n) {
  static std::map<size_t, std::unique_ptr<World>> worlds;
  auto& w = worlds[n];
  if (w) return *w;
  w = std::make_unique<World>();
  w->table = std::make_unique<FlowTable>(n, FlowTimeouts{}, kSeed);
  std::mt19937_64 rng(n);
  while (w->present.size() < n) {
    FlowKey k = randomKey(rng);
    uint64_t h = w->table->hash(k);
    if (w->table->lookup(k, h, 0) != nullptr) continue;
    w->table->insert(k, h, uint16_t(h), uint32_t(h), FlowState::kTcpEstablished, 0);
    w->present.push_back(k);
    w->present_hash.push_back(h);
  }
  std::shuffle(w->present.begin(), w->present.end(), rng);
  for (size_t i = 0; i < n; ++i) w->present_hash[i] = w->table->hash(w->present[i]);
  while (w->absent.size() < n) {
    FlowKey k = randomKey(rng);
    k.dport = 443;  // never inserted
    w->absent.push_back(k);
    w->absent_hash.push_back(w->table->hash(k));
  }
  return *w;
}

void setCounters(benchmark::State& state, const FlowTable& t, int64_t ops) {
  state.counters["ns_per_op"] =
      benchmark::Counter(double(ops), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["flows"] = double(t.size());
  state.counters["bytes_per_flow"] = double(t.memoryBytes()) / double(t.capacity());
}

void BM_LookupHit(benchmark::State& state) {
  World& w = world(size_t(state.range(0)));
  FlowTable& t = *w.table;
  size_t n = w.present.size(), i = 0;
  for (auto _ : state) {
    FlowEntry* e = t.lookup(w.present[i], w.present_hash[i], 1);
    benchmark::DoNotOptimize(e);
    if (++i == n) i = 0;
  }
  setCounters(state, t, state.iterations());
}

void BM_LookupHitWithHash(benchmark::State& state) {
  World& w = world(size_t(state.range(0)));
  FlowTable& t = *w.table;
  size_t n = w.present.size(), i = 0;
  for (auto _ : state) {
    const FlowKey& k = w.present[i];
    FlowEntry* e = t.lookup(k, t.hash(k), 1);
    benchmark::DoNotOptimize(e);
    if (++i == n) i = 0;
  }
  setCounters(state, t, state.iterations());
}

// Dependent lookups: the next key depends on the previous result, so no two
// lookups overlap in the CPU. This is the pure latency of one lookup.
void BM_LookupHitSerial(benchmark::State& state) {
  World& w = world(size_t(state.range(0)));
  FlowTable& t = *w.table;
  size_t n = w.present.size(), i = 0;
  for (auto _ : state) {
    FlowEntry* e = t.lookup(w.present[i], w.present_hash[i], 1);
    i += 1 + (e->packets >> 31);  // always +1, but only known after the lookup
    if (i >= n) i = 0;
  }
  setCounters(state, t, state.iterations());
}

// How the worker uses it: prefetch a receive batch, then look it up.
void BM_LookupHitBatchPrefetch(benchmark::State& state) {
  World& w = world(size_t(state.range(0)));
  FlowTable& t = *w.table;
  constexpr size_t kBatch = 32;
  size_t n = w.present.size() / kBatch * kBatch, i = 0;
  for (auto _ : state) {
    for (size_t b = 0; b < kBatch; ++b) t.prefetch(w.present_hash[i + b]);
    for (size_t b = 0; b < kBatch; ++b) {
      FlowEntry* e = t.lookup(w.present[i + b], w.present_hash[i + b], 1);
      benchmark::DoNotOptimize(e);
    }
    i += kBatch;
    if (i == n) i = 0;
  }
  setCounters(state, t, int64_t(state.iterations() * kBatch));
}

// The full per-packet worker sequence for a batch: hash, prefetch, look up.
void BM_LookupHitBatchWithHash(benchmark::State& state) {
  World& w = world(size_t(state.range(0)));
  FlowTable& t = *w.table;
  constexpr size_t kBatch = 32;
  size_t n = w.present.size() / kBatch * kBatch, i = 0;
  uint64_t h[kBatch];
  for (auto _ : state) {
    for (size_t b = 0; b < kBatch; ++b) {
      h[b] = t.hash(w.present[i + b]);
      t.prefetch(h[b]);
    }
    for (size_t b = 0; b < kBatch; ++b) {
      FlowEntry* e = t.lookup(w.present[i + b], h[b], 1);
      benchmark::DoNotOptimize(e);
    }
    i += kBatch;
    if (i == n) i = 0;
  }
  setCounters(state, t, int64_t(state.iterations() * kBatch));
}

void BM_LookupMiss(benchmark::State& state) {
  World& w = world(size_t(state.range(0)));
  FlowTable& t = *w.table;
  size_t n = w.absent.size(), i = 0;
  for (auto _ : state) {
    FlowEntry* e = t.lookup(w.absent[i], w.absent_hash[i], 1);
    benchmark::DoNotOptimize(e);
    if (++i == n) i = 0;
  }
  setCounters(state, t, state.iterations());
}

// New flow arrives (miss + insert), an old flow leaves (erase): the table
// stays within one entry of full. One iteration = one insert + one erase.
void BM_InsertEraseChurn(benchmark::State& state) {
  World& w = world(size_t(state.range(0)));
  FlowTable& t = *w.table;
  size_t n = w.present.size(), i = 0;
  // Make one slot of room: churn swaps absent[i] in for present[i] and back.
  t.erase(w.present[n - 1], w.present_hash[n - 1]);
  bool forward = true;
  for (auto _ : state) {
    const FlowKey& in = forward ? w.absent[i] : w.present[i];
    uint64_t in_h = forward ? w.absent_hash[i] : w.present_hash[i];
    const FlowKey& out = forward ? w.present[i] : w.absent[i];
    uint64_t out_h = forward ? w.present_hash[i] : w.absent_hash[i];
    FlowEntry* e = t.lookup(in, in_h, 1);
    if (e == nullptr) e = t.insert(in, in_h, 1, 1, FlowState::kTcpSyn, 1);
    benchmark::DoNotOptimize(e);
    t.erase(out, out_h);
    if (++i == n - 1) {
      i = 0;
      forward = !forward;
    }
  }
  // (Not timed: the loop above has ended.) Restore the shared table to exactly `present` for the other benchmarks.
  for (size_t j = 0; j < n; ++j) {
    t.erase(w.absent[j], w.absent_hash[j]);
  }
  for (size_t j = 0; j < n; ++j) {
    if (t.lookup(w.present[j], w.present_hash[j], 1) == nullptr) {
      t.insert(w.present[j], w.present_hash[j], 1, 1, FlowState::kTcpEstablished, 0);
    }
  }
  setCounters(state, t, state.iterations());
}

void BM_ExpireSweep(benchmark::State& state) {
  // Cost of the idle sweep over a full table with nothing to expire, per slot.
  World& w = world(size_t(state.range(0)));
  FlowTable& t = *w.table;
  constexpr size_t kSlots = 256;
  for (auto _ : state) benchmark::DoNotOptimize(t.expireSome(2, kSlots));
  setCounters(state, t, int64_t(state.iterations() * kSlots));
}

void sizes(benchmark::internal::Benchmark* b) {
  b->Arg(64 << 10)->Arg(256 << 10)->Arg(512 << 10)->Arg(1 << 20)->Repetitions(5)->ReportAggregatesOnly(true);
  b->Unit(benchmark::kNanosecond);
}

BENCHMARK(BM_LookupHit)->Apply(sizes);
BENCHMARK(BM_LookupHitWithHash)->Apply(sizes);
BENCHMARK(BM_LookupHitSerial)->Apply(sizes);
BENCHMARK(BM_LookupHitBatchPrefetch)->Apply(sizes);
BENCHMARK(BM_LookupHitBatchWithHash)->Apply(sizes);
BENCHMARK(BM_LookupMiss)->Apply(sizes);
BENCHMARK(BM_InsertEraseChurn)->Apply(sizes);
BENCHMARK(BM_ExpireSweep)->Apply(sizes);

}  // namespace
}  // namespace slr

// main() comes from benchmark_main (one binary for all benchmarks).
