#pragma once
// Next-hop selection (the seed's Fig. 9).  For one virtual subnet k the control
// thread gathers the candidates j (hosts now, lower-level SLRs later) with their
// load index s_kj, route cost r_j, weight w_j and availability, and a Policy
// turns them into an immutable Selection: a table of next hops plus the costs
// it compared.  Workers hold the Selection through a shared_ptr<const
// Selection> snapshot and call pick() once per NEW flow: O(1), no allocation,
// no locks, no exceptions.  Nothing here is ever evaluated per packet except
// pick(); the cost function F runs only in build().
//
// Three built-in policies:
//   least-cost            m_kj = F(s_kj, r_j, w_j); every eligible candidate
//                         within tie_tolerance of the minimum cost shares new
//                         flows by flow hash, in proportion to its weight.
//   weighted-round-robin  smooth interleaved WRR (nginx) by weight.
//   consistent-hash       weighted Maglev table (Eisenbud et al., NSDI'16),
//                         built from the candidates' stable NAME hashes only,
//                         so every SLR with the same hosts builds the same
//                         table and stateless forwarding survives failover.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace slr {

// next_hop value meaning "nothing to pick" (returned by pick() on an empty
// Selection).  Callers must never number a real next hop with it.
inline constexpr uint16_t kNoNextHop = 0xFFFF;

struct Candidate {
  uint16_t next_hop = kNoNextHop;  // caller's index of the host / lower SLR
  uint64_t name_hash = 0;          // stableNameHash(name): identity independent of numbering
  double load = 0.0;               // s_kj, the load index advertised for this subnet
  double route_cost = 0.0;         // r_j
  uint32_t weight = 1;             // w_j, relative capacity; 0 = never chosen
  bool available = true;           // false: withdrawn / flagged unavailable, never chosen
  double proximity = 0.0;          // extra cost of this next hop for the client's region
  bool standby = false;            // disaster-recovery next hop (the builder filters; F may look)
  bool is_slr = false;             // a lower-level SLR rather than a host
  std::string_view name;           // configured name; valid during build() only
};

// What F and G may look at besides the candidates (seed: "proximity, time of
// day, service class...").  Valid during build() only.
struct CostContext {
  std::string_view subnet;        // the virtual subnet being built, "10.100.0.0/24"
  std::string_view subnet_class;  // [[vip]].class of the VIP that contains it
  std::string_view region;        // client region ([[region]].name), "" = no region
  int hour = 0, minute = 0, weekday = 0;  // local time of the rebuild; weekday 0 = Sunday
};

// One line of "what was compared" (status, `slrctl hosts`, explain).
struct CandidateCost {
  uint16_t next_hop = kNoNextHop;
  double cost = 0.0;      // m_kj as computed by the policy's F (least-cost) or defaultCost (others)
  bool eligible = false;  // available, weight > 0 and (least-cost) finite cost
  uint32_t slots = 0;     // entries of Selection::slots that point at this candidate
};

struct Selection {
  enum class Mode : uint8_t { kHash, kRoundRobin };

  std::vector<uint16_t> slots;        // next hops; empty = no candidate (drop, count "no_host")
  Mode mode = Mode::kHash;
  std::vector<CandidateCost> costs;   // one per input candidate, in input order

  bool empty() const { return slots.empty(); }

  // O(1), allocation-free.  kHash: slots[range(flow_hash, n)], using the
  // multiply-high range reduction (uses the hash's high bits; flowHash mixes
  // all of them).  kRoundRobin: slots[rr_counter], then advance rr_counter
  // modulo n with a compare instead of a division; rr_counter is the caller's
  // (per worker, per subnet) and may come from an older Selection of another
  // size, which is tolerated.  Returns kNoNextHop when empty.
  uint16_t pick(uint64_t flow_hash, uint64_t& rr_counter) const {
    const uint64_t n = slots.size();
    if (n == 0) return kNoNextHop;
    if (mode == Mode::kHash) {
      __extension__ using U128 = unsigned __int128;  // __extension__: quiet under -Wpedantic
      return slots[uint64_t((U128(flow_hash) * n) >> 64)];
    }
    const uint64_t i = rr_counter < n ? rr_counter : 0;
    rr_counter = i + 1 == n ? 0 : i + 1;
    return slots[i];
  }
};

const char* modeName(Selection::Mode m);  // "hash" | "round-robin"

class Policy {
 public:
  virtual ~Policy() = default;
  virtual const char* name() const = 0;  // the config spelling, e.g. "least-cost"
  // Deterministic; does not depend on the order of `candidates` (except for
  // the order of Selection::costs, which mirrors the input).
  virtual Selection build(std::span<const Candidate> candidates,
                          const CostContext& ctx = {}) const = 0;
};

// The cost function F of the seed, installed by the operator (here: by code).
// Evaluated only at build time.  A NaN or infinite result makes the candidate
// ineligible.
using CostFn = std::function<double(const Candidate&, const CostContext&)>;
// G: the aggregate load of one subnet reported upwards.  NaN = "no capacity"
// (the subnet is advertised unavailable).
using AggregateFn = std::function<double(std::span<const Candidate>, const CostContext&)>;

// Default F:  m = s / w + r + proximity.
// The weight is a relative capacity: a weight-2 host at load 0.6 is as busy as
// a weight-1 host at load 0.3.  The route cost is added in the same units as
// the load index, so r = 0.2 means "prefer a host 0.2 busier but nearer".
// A large r makes a standby (disaster-recovery) site that only takes new flows
// when nothing cheaper is available.  weight 0 gives +inf (ineligible).
double defaultCost(const Candidate& c, const CostContext& ctx = {});

// Aggregate G for reporting this subnet upwards (seed steps 9310/9320):
// weight-weighted mean load of the available, weight>0 candidates with a
// finite load; NaN when there are none.
double aggregateLoad(std::span<const Candidate> candidates, const CostContext& ctx = {});

// tie_tolerance: absolute, in cost units; negative or NaN is treated as 0.
std::unique_ptr<Policy> makeLeastCost(double tie_tolerance, CostFn f = defaultCost);
std::unique_ptr<Policy> makeWeightedRoundRobin();
// table_size is rounded up to the next prime (Maglev needs M prime), min 7.
std::unique_ptr<Policy> makeConsistentHash(size_t table_size = 65537);

// algorithm: "least-cost" | "weighted-round-robin" | "consistent-hash".
// Error (code 0) for an unknown name or a tie_tolerance that is not a finite
// value >= 0.
Result<std::unique_ptr<Policy>> makePolicy(std::string_view algorithm, double tie_tolerance);

// 64-bit FNV-1a of the candidate's configured name.  Stable across runs,
// machines and releases: it is what makes Maglev tables identical on every SLR.
uint64_t stableNameHash(std::string_view name);

}  // namespace slr
