#pragma once
// What the workers forward by: an immutable snapshot built by the control
// thread every recompute interval (the seed's Fig. 9 table update) and handed
// to the workers without locks on the packet path: a worker compares one
// atomic generation number per batch and takes the mutex only when it
// changed, i.e. once per rebuild.
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/net_types.h"
#include "core/policy.h"

namespace slr::router {

// One advertised virtual subnet and how new flows to it are spread.
struct RouteEntry {
  Prefix prefix;
  uint32_t net = 0, mask = 0;  // IPv4 host order, for the per-packet match
  Selection selection;         // the policy's choice (least cost, WRR, Maglev) for clients in no region
  std::vector<Selection> by_region;  // [r] = the choice for clients of [[region]] r
  Selection stateless;         // Maglev over the same hosts: used when the flow table is full
  // New flows of one client address share a next hop (hash on the client
  // address, not the 5-tuple): the route has SLR candidates and
  // [policy].spread_connections is off.
  bool client_affinity = false;
  // G over the candidates: what this SLR advertises upwards for the prefix.
  double aggregate_load = 0;
  bool available = false;      // some candidate can take new flows

  // region: 0 = none, r + 1 = [[region]] r (ForwardingSnapshot::regionOf).
  const Selection& selectionFor(size_t region) const {
    return region == 0 || region > by_region.size() ? selection : by_region[region - 1];
  }
};

struct NextHop {
  uint32_t tunnel_v4 = 0;  // host order; 0 = not reachable now
  bool up = false;
  bool is_slr = false;     // a lower-level SLR (registered with role slr)
  // A lower SLR that signals shortcuts, and this SLR takes them: hold the
  // later packets of a new flow sent there until its shortcut arrives.
  bool awaits_shortcut = false;
};

// Client proximity: source prefix -> region (index + 1; 0 = none).
struct RegionMatch {
  uint32_t net = 0, mask = 0;
  uint16_t region = 0;
};

struct ForwardingSnapshot {
  uint64_t generation = 0;
  // Longest prefix first, so the first match is the most specific.
  std::vector<RouteEntry> routes;
  // Indexed by host id (config order).
  std::vector<NextHop> next_hops;
  // Longest prefix first.  Looked up for new flows only.
  std::vector<RegionMatch> regions;
  // Indexed by host id: the route cost added from the kernel's routing table
  // at this rebuild ([policy] route_cost_source = "kernel"), for status.
  std::vector<double> route_cost_extra;

  uint16_t regionOf(uint32_t src) const {
    for (const auto& r : regions) {
      if ((src & r.mask) == r.net) return r.region;
    }
    return 0;
  }

  // What a new flow of `key` on route `rt` is picked from and by: its
  // client's region's selection, and the flow's hash or, with client
  // affinity, the client address's.  The workers and `slrctl explain` both
  // use it, so explain shows what a worker would do.
  struct NewFlowChoice {
    const Selection& selection;
    uint64_t hash;
  };
  NewFlowChoice newFlowChoice(const RouteEntry& rt, const FlowKey& key, uint64_t flow_hash,
                              uint64_t seed) const {
    const Selection& sel =
        regions.empty() ? rt.selection : rt.selectionFor(regionOf(key.srcAddr().v4HostOrder()));
    if (!rt.client_affinity) return {sel, flow_hash};
    FlowKey client{};
    client.src = key.src;
    client.family = key.family;
    return {sel, flowHash(client, seed)};
  }

  const RouteEntry* route(uint32_t dst) const {
    for (const auto& r : routes) {
      if ((dst & r.mask) == r.net) return &r;
    }
    return nullptr;
  }
};

class SnapshotHolder {
 public:
  void publish(std::shared_ptr<const ForwardingSnapshot> s) {
    std::lock_guard lk(mu_);
    current_ = std::move(s);
    generation_.fetch_add(1, std::memory_order_release);
  }
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }
  std::shared_ptr<const ForwardingSnapshot> get() const {
    std::lock_guard lk(mu_);
    return current_;
  }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const ForwardingSnapshot> current_ = std::make_shared<ForwardingSnapshot>();
  std::atomic<uint64_t> generation_{1};
};

}  // namespace slr::router
