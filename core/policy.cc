#include "core/policy.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

namespace slr {
namespace {

// Upper bound for the weight-expanded tables of least-cost and WRR.  Weights
// are 1..1000 per host, so a large tie set could otherwise ask for millions of
// slots; above this the weights are scaled down (each keeps at least 1).
constexpr uint64_t kMaxWeightedSlots = 65536;
constexpr size_t kMaxMaglevSize = size_t(1) << 24;

// An eligible candidate in canonical order: by stable name first so the
// result never depends on the input order or on how next hops are numbered.
struct Entry {
  uint64_t name_hash;
  uint16_t next_hop;
  uint32_t weight;
  size_t input_index;  // where its CandidateCost lives
};

bool canonicalLess(const Entry& a, const Entry& b) {
  if (a.name_hash != b.name_hash) return a.name_hash < b.name_hash;
  if (a.next_hop != b.next_hop) return a.next_hop < b.next_hop;
  return a.input_index < b.input_index;  // only for exact duplicates
}

// splitmix64 finaliser: FNV-1a has weak avalanche in its high bits, and
// Maglev's offset/skip must look independent per name.
uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Reduce weights by their gcd and, if their sum still exceeds `cap`, scale
// them down proportionally (minimum 1, so nobody eligible disappears).
void normaliseWeights(std::vector<Entry>& es, uint64_t cap) {
  uint64_t g = 0;
  for (const Entry& e : es) g = std::gcd(g, uint64_t(e.weight));
  if (g > 1) {
    for (Entry& e : es) e.weight = uint32_t(e.weight / g);
  }
  uint64_t sum = 0;
  for (const Entry& e : es) sum += e.weight;
  if (sum <= cap) return;
  for (Entry& e : es) {
    e.weight = uint32_t(std::max<uint64_t>(1, uint64_t(e.weight) * cap / sum));
  }
  g = 0;
  for (const Entry& e : es) g = std::gcd(g, uint64_t(e.weight));
  if (g > 1) {
    for (Entry& e : es) e.weight = uint32_t(e.weight / g);
  }
}

bool isPrime(size_t n) {
  if (n < 2) return false;
  if (n % 2 == 0) return n == 2;
  for (size_t d = 3; d * d <= n; d += 2) {
    if (n % d == 0) return false;
  }
  return true;
}

size_t nextPrime(size_t n) {
  n = std::clamp<size_t>(n, 7, kMaxMaglevSize);
  while (!isPrime(n)) ++n;
  return n;
}

// Costs for display plus the eligible entries in canonical order.
std::vector<Entry> collect(std::span<const Candidate> cands, const CostFn& f,
                           const CostContext& ctx, bool cost_decides,
                           std::vector<CandidateCost>& costs) {
  costs.clear();
  costs.reserve(cands.size());
  std::vector<Entry> es;
  es.reserve(cands.size());
  for (size_t i = 0; i < cands.size(); ++i) {
    const Candidate& c = cands[i];
    CandidateCost cc;
    cc.next_hop = c.next_hop;
    cc.cost = f(c, ctx);
    cc.eligible = c.available && c.weight > 0 && c.next_hop != kNoNextHop &&
                  (!cost_decides || std::isfinite(cc.cost));
    costs.push_back(cc);
    if (cc.eligible) es.push_back(Entry{c.name_hash, c.next_hop, c.weight, i});
  }
  std::sort(es.begin(), es.end(), canonicalLess);
  return es;
}

void countSlots(Selection& sel, const std::vector<Entry>& es, const std::vector<uint32_t>& n) {
  for (size_t i = 0; i < es.size(); ++i) sel.costs[es[i].input_index].slots = n[i];
}

class LeastCost final : public Policy {
 public:
  LeastCost(double tol, CostFn f) : tol_(tol), f_(std::move(f)) {}
  const char* name() const override { return "least-cost"; }

  Selection build(std::span<const Candidate> cands, const CostContext& ctx) const override {
    Selection sel;
    sel.mode = Selection::Mode::kHash;
    std::vector<Entry> es = collect(cands, f_, ctx, true, sel.costs);
    if (es.empty()) return sel;

    double best = INFINITY;
    for (const Entry& e : es) best = std::min(best, sel.costs[e.input_index].cost);
    // Everything within the tolerance of the best shares new flows; this keeps
    // one momentarily-cheapest host from taking every new flow of an interval.
    std::erase_if(es, [&](const Entry& e) { return sel.costs[e.input_index].cost > best + tol_; });

    normaliseWeights(es, kMaxWeightedSlots);
    std::vector<uint32_t> n(es.size());
    for (size_t i = 0; i < es.size(); ++i) {
      sel.slots.insert(sel.slots.end(), es[i].weight, es[i].next_hop);
      n[i] = es[i].weight;
    }
    countSlots(sel, es, n);
    return sel;
  }

 private:
  double tol_;
  CostFn f_;
};

class WeightedRoundRobin final : public Policy {
 public:
  const char* name() const override { return "weighted-round-robin"; }

  Selection build(std::span<const Candidate> cands, const CostContext& ctx) const override {
    Selection sel;
    sel.mode = Selection::Mode::kRoundRobin;
    std::vector<Entry> es = collect(cands, defaultCost, ctx, false, sel.costs);
    if (es.empty()) return sel;
    normaliseWeights(es, kMaxWeightedSlots);

    // Smooth weighted round robin (nginx): every step each entry gains its
    // weight, the richest is picked and pays the total.  Over one cycle of
    // sum(w) steps each entry is picked exactly w times, interleaved.
    int64_t total = 0;
    for (const Entry& e : es) total += e.weight;
    std::vector<int64_t> current(es.size(), 0);
    std::vector<uint32_t> n(es.size(), 0);
    sel.slots.reserve(size_t(total));
    for (int64_t step = 0; step < total; ++step) {
      size_t best = 0;
      for (size_t i = 0; i < es.size(); ++i) {
        current[i] += es[i].weight;
        if (current[i] > current[best]) best = i;  // ties: canonical order
      }
      current[best] -= total;
      sel.slots.push_back(es[best].next_hop);
      ++n[best];
    }
    countSlots(sel, es, n);
    return sel;
  }
};

class ConsistentHash final : public Policy {
 public:
  explicit ConsistentHash(size_t m) : m_(nextPrime(m)) {}
  const char* name() const override { return "consistent-hash"; }

  Selection build(std::span<const Candidate> cands, const CostContext& ctx) const override {
    Selection sel;
    sel.mode = Selection::Mode::kHash;
    std::vector<Entry> es = collect(cands, defaultCost, ctx, false, sel.costs);
    if (es.empty()) return sel;

    const uint64_t m = m_;
    struct Perm {
      uint64_t pos;   // current preferred slot (offset + k * skip) mod M
      uint64_t skip;  // 1..M-1, coprime with prime M: the walk visits every slot
      uint64_t credit;
    };
    std::vector<Perm> perm(es.size());
    uint32_t wmax = 0;
    for (size_t i = 0; i < es.size(); ++i) {
      perm[i].pos = mix64(es[i].name_hash ^ 0x6d61676c65763031ull) % m;           // "maglev01"
      perm[i].skip = mix64(es[i].name_hash ^ 0x736b697070657231ull) % (m - 1) + 1;  // "skipper1"
      perm[i].credit = 0;
      wmax = std::max(wmax, es[i].weight);
    }

    sel.slots.assign(m, kNoNextHop);
    std::vector<uint32_t> n(es.size(), 0);
    uint64_t filled = 0;
    // Weighted Maglev: per round each entry earns `weight` credit and takes
    // one turn per `wmax` credit, so the heaviest entry takes exactly one turn
    // per round and the others proportionally fewer.  The heaviest always
    // progresses, so the loop ends.
    while (filled < m) {
      for (size_t i = 0; i < es.size() && filled < m; ++i) {
        Perm& p = perm[i];
        p.credit += es[i].weight;
        while (p.credit >= wmax && filled < m) {
          p.credit -= wmax;
          while (sel.slots[p.pos] != kNoNextHop) {
            p.pos += p.skip;
            if (p.pos >= m) p.pos -= m;
          }
          sel.slots[p.pos] = es[i].next_hop;
          ++n[i];
          ++filled;
        }
      }
    }
    countSlots(sel, es, n);
    return sel;
  }

 private:
  size_t m_;
};

}  // namespace

const char* modeName(Selection::Mode m) {
  return m == Selection::Mode::kHash ? "hash" : "round-robin";
}

double defaultCost(const Candidate& c, const CostContext&) {
  if (c.weight == 0) return INFINITY;
  return c.load / double(c.weight) + c.route_cost + c.proximity;
}

double aggregateLoad(std::span<const Candidate> candidates, const CostContext&) {
  double num = 0.0;
  double den = 0.0;
  for (const Candidate& c : candidates) {
    if (!c.available || c.weight == 0 || !std::isfinite(c.load)) continue;
    num += c.load * c.weight;
    den += c.weight;
  }
  return den > 0.0 ? num / den : NAN;
}

std::unique_ptr<Policy> makeLeastCost(double tie_tolerance, CostFn f) {
  if (!(tie_tolerance >= 0.0)) tie_tolerance = 0.0;  // also catches NaN
  if (!f) f = [](const Candidate& c, const CostContext& ctx) { return defaultCost(c, ctx); };
  return std::make_unique<LeastCost>(tie_tolerance, std::move(f));
}

std::unique_ptr<Policy> makeWeightedRoundRobin() { return std::make_unique<WeightedRoundRobin>(); }

std::unique_ptr<Policy> makeConsistentHash(size_t table_size) {
  return std::make_unique<ConsistentHash>(table_size);
}

Result<std::unique_ptr<Policy>> makePolicy(std::string_view algorithm, double tie_tolerance) {
  if (!std::isfinite(tie_tolerance) || tie_tolerance < 0.0) {
    return Error{0, "policy.tie_tolerance",
                 "expected a finite number >= 0, got " + std::to_string(tie_tolerance)};
  }
  if (algorithm == "least-cost") return makeLeastCost(tie_tolerance);
  if (algorithm == "weighted-round-robin") return makeWeightedRoundRobin();
  if (algorithm == "consistent-hash") return makeConsistentHash();
  return Error{0, "policy.algorithm",
               "expected \"least-cost\", \"weighted-round-robin\" or \"consistent-hash\", got \"" +
                   std::string(algorithm) + "\""};
}

uint64_t stableNameHash(std::string_view name) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (char ch : name) {
    h ^= uint8_t(ch);
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace slr
