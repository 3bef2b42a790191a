#include "slr/table_builder.h"

#include <algorithm>

namespace slr::router {

TableBuilder::TableBuilder(std::unique_ptr<Policy> policy, size_t host_count)
    : policy_(std::move(policy)), stateless_(makeConsistentHash(4099)), host_count_(host_count) {}

std::shared_ptr<const ForwardingSnapshot> TableBuilder::build(
    const std::vector<HostRecord>& hosts) const {
  auto snap = std::make_shared<ForwardingSnapshot>();
  snap->next_hops.resize(host_count_);
  std::vector<Prefix> prefixes;
  for (const auto& h : hosts) {
    if (h.state != HostState::kUp || h.id >= host_count_) continue;
    snap->next_hops[h.id] = NextHop{h.tunnel_address.v4HostOrder(), true};
    for (const auto& s : h.subnets) {
      if (std::find(prefixes.begin(), prefixes.end(), s.prefix) == prefixes.end())
        prefixes.push_back(s.prefix);
    }
  }
  std::sort(prefixes.begin(), prefixes.end(), [](const Prefix& a, const Prefix& b) {
    return a.len != b.len ? a.len > b.len : a.addr.bytes < b.addr.bytes;
  });
  std::vector<Candidate> cands;
  for (const auto& p : prefixes) {
    cands.clear();
    for (const auto& h : hosts) {
      if (h.state != HostState::kUp || h.id >= host_count_) continue;
      const AdvertisedSubnet* best = nullptr;
      for (const auto& s : h.subnets) {
        if (s.prefix.contains(p) && (best == nullptr || s.prefix.len > best->prefix.len)) best = &s;
      }
      if (best == nullptr) continue;
      cands.push_back(Candidate{h.id, h.name_hash, best->load, h.route_cost, h.weight, best->available});
    }
    RouteEntry r;
    r.prefix = p;
    r.mask = v4Mask(p.len);
    r.net = p.addr.v4HostOrder() & r.mask;
    r.selection = policy_->build(cands);
    r.stateless = stateless_->build(cands);
    snap->routes.push_back(std::move(r));
  }
  return snap;
}

}  // namespace slr::router
