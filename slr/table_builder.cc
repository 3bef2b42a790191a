#include "slr/table_builder.h"

#include <algorithm>
#include <cmath>

namespace slr::router {

TableBuilder::TableBuilder(std::unique_ptr<Policy> policy, size_t host_count, BuildOptions opts,
                           AggregateFn g)
    : policy_(std::move(policy)),
      stateless_(makeConsistentHash(4099)),
      host_count_(host_count),
      opts_(std::move(opts)),
      g_(std::move(g)) {
  if (!g_) g_ = [](std::span<const Candidate> c, const CostContext& ctx) { return aggregateLoad(c, ctx); };
  for (const auto& r : opts_.regions) {
    std::vector<double> cost(host_count_, 0.0);
    for (const auto& [name, c] : r.cost) {
      auto it = std::find(opts_.host_names.begin(), opts_.host_names.end(), name);
      if (it != opts_.host_names.end() && size_t(it - opts_.host_names.begin()) < host_count_)
        cost[size_t(it - opts_.host_names.begin())] = c;
    }
    region_cost_.push_back(std::move(cost));
  }
}

std::shared_ptr<const ForwardingSnapshot> TableBuilder::build(
    const std::vector<HostRecord>& hosts, std::span<const double> route_cost_extra,
    const std::tm* now) const {
  auto snap = std::make_shared<ForwardingSnapshot>();
  snap->next_hops.resize(host_count_);
  snap->route_cost_extra.assign(host_count_, 0.0);
  for (size_t i = 0; i < route_cost_extra.size() && i < host_count_; ++i)
    snap->route_cost_extra[i] = route_cost_extra[i];
  std::vector<Prefix> prefixes;
  for (const auto& h : hosts) {
    if (!forwards(h.state) || h.id >= host_count_) continue;
    NextHop& nh = snap->next_hops[h.id];
    nh.tunnel_v4 = h.tunnel_address.v4HostOrder();
    nh.up = true;
    nh.is_slr = h.role == proto::Role::kSlr;
    nh.awaits_shortcut = nh.is_slr && opts_.shortcut && (h.capabilities & proto::kCapShortcut);
    for (const auto& s : h.subnets) {
      if (std::find(prefixes.begin(), prefixes.end(), s.prefix) == prefixes.end())
        prefixes.push_back(s.prefix);
    }
  }
  std::sort(prefixes.begin(), prefixes.end(), [](const Prefix& a, const Prefix& b) {
    return a.len != b.len ? a.len > b.len : a.addr.bytes < b.addr.bytes;
  });
  for (size_t r = 0; r < opts_.regions.size(); ++r) {
    for (const auto& p : opts_.regions[r].clients) {
      uint32_t m = v4Mask(p.len);
      snap->regions.push_back({p.addr.v4HostOrder() & m, m, uint16_t(r + 1)});
    }
  }
  std::stable_sort(snap->regions.begin(), snap->regions.end(),
                   [](const RegionMatch& a, const RegionMatch& b) { return a.mask > b.mask; });

  CostContext ctx;
  if (now != nullptr) {
    ctx.hour = now->tm_hour;
    ctx.minute = now->tm_min;
    ctx.weekday = now->tm_wday;
  }
  std::vector<Candidate> cands;
  for (const auto& p : prefixes) {
    cands.clear();
    bool any_slr = false;
    for (const auto& h : hosts) {
      if (!forwards(h.state) || h.id >= host_count_) continue;
      const AdvertisedSubnet* best = nullptr;
      for (const auto& s : h.subnets) {
        if (s.prefix.contains(p) && (best == nullptr || s.prefix.len > best->prefix.len)) best = &s;
      }
      if (best == nullptr) continue;
      Candidate c{h.id, h.name_hash, best->load, h.route_cost, h.weight, best->available};
      if (h.id < route_cost_extra.size()) c.route_cost += route_cost_extra[h.id];
      c.standby = h.standby;
      c.is_slr = h.role == proto::Role::kSlr;
      c.name = h.name;
      any_slr = any_slr || c.is_slr;
      cands.push_back(c);
    }
    // Disaster recovery: standby next hops take new flows only when no
    // primary one can.
    const bool primary = std::any_of(cands.begin(), cands.end(), [](const Candidate& c) {
      return c.available && c.weight > 0 && !c.standby;
    });
    if (primary) {
      for (auto& c : cands) c.available = c.available && !c.standby;
    }

    RouteEntry r;
    r.prefix = p;
    r.mask = v4Mask(p.len);
    r.net = p.addr.v4HostOrder() & r.mask;
    const std::string subnet = p.str();
    ctx.subnet = subnet;
    ctx.subnet_class = "default";
    for (const auto& v : opts_.vips) {
      if (v.subnet.contains(p)) ctx.subnet_class = v.cls;
    }
    ctx.region = "";
    r.selection = policy_->build(cands, ctx);
    for (size_t reg = 0; reg < opts_.regions.size(); ++reg) {
      std::vector<Candidate> rc = cands;
      for (auto& c : rc) c.proximity = region_cost_[reg][c.next_hop];
      ctx.region = opts_.regions[reg].name;
      r.by_region.push_back(policy_->build(rc, ctx));
    }
    ctx.region = "";
    r.stateless = stateless_->build(cands);
    r.client_affinity = any_slr && !opts_.spread_connections;
    r.available = !r.selection.empty();
    double g = g_(cands, ctx);
    r.aggregate_load = std::isfinite(g) ? g : 0.0;
    r.available = r.available && std::isfinite(g);
    snap->routes.push_back(std::move(r));
  }
  return snap;
}

}  // namespace slr::router
