#pragma once
// The seed's Fig. 9 table update: from what the hosts (or lower SLRs)
// advertised, for every advertised virtual subnet the candidates that serve
// it and the policy's selection among them, as one immutable snapshot for the
// workers; plus, per subnet, the aggregate M_k = G(...) this SLR advertises
// upwards.  Runs on the control thread every recompute interval, never per
// packet.
#include <cstdint>
#include <ctime>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/policy.h"
#include "slr/forwarding.h"
#include "slr/registry.h"

namespace slr::router {

inline uint32_t v4Mask(uint8_t len) { return len == 0 ? 0 : ~uint32_t(0) << (32 - len); }

// What the builder takes from the config (fixed for the daemon's lifetime).
struct BuildOptions {
  std::vector<config::VipConfig> vips;        // service class per VIP subnet
  std::vector<config::RegionConfig> regions;  // client proximity
  std::vector<std::string> host_names;        // [[host]] names in config order (region costs)
  bool spread_connections = false;
  bool shortcut = false;                      // this SLR takes shortcuts from below
};

class TableBuilder {
 public:
  // g: the aggregate G; empty = aggregateLoad.
  TableBuilder(std::unique_ptr<Policy> policy, size_t host_count, BuildOptions opts = {},
               AggregateFn g = {});

  // Only hosts that are up take part.  A host serves an advertised prefix P
  // if one of its own advertisements covers P; its load for P is that of its
  // most specific covering advertisement.  Routes come longest prefix first.
  // route_cost_extra[id] is added to host id's configured route cost (the
  // kernel metric term; may be empty).  now: local time handed to F and G.
  std::shared_ptr<const ForwardingSnapshot> build(const std::vector<HostRecord>& hosts,
                                                  std::span<const double> route_cost_extra = {},
                                                  const std::tm* now = nullptr) const;

  const Policy& policy() const { return *policy_; }

 private:
  std::unique_ptr<Policy> policy_;
  std::unique_ptr<Policy> stateless_;  // Maglev from host names: the on_full fallback
  size_t host_count_;
  BuildOptions opts_;
  AggregateFn g_;
  std::vector<std::vector<double>> region_cost_;  // [region][host id]
};

}  // namespace slr::router
