#include "slr/registry.h"

#include "core/policy.h"

namespace slr::router {

const char* hostStateName(HostState s) {
  switch (s) {
    case HostState::kConfigured: return "configured";
    case HostState::kUp: return "up";
    case HostState::kWithdrawn: return "withdrawn";
    case HostState::kDisconnected: return "disconnected";
  }
  return "?";
}

HostRegistry::HostRegistry(const std::vector<config::HostAuthConfig>& hosts) {
  hosts_.reserve(hosts.size());
  for (size_t i = 0; i < hosts.size(); ++i) {
    HostRecord r;
    r.id = uint16_t(i);
    r.name = hosts[i].name;
    r.name_hash = stableNameHash(r.name);
    r.weight = hosts[i].weight;
    r.route_cost = hosts[i].route_cost;
    r.standby = hosts[i].standby;
    r.authorised = hosts[i].subnets;
    r.drained = hosts[i].drained;
    hosts_.push_back(std::move(r));
  }
}

int HostRegistry::find(const std::string& name) const {
  for (const auto& h : hosts_) {
    if (h.name == name) return h.id;  // names are immutable after construction
  }
  return -1;
}

uint64_t HostRegistry::hello(uint16_t id, const proto::Hello& hello, Clock::time_point now) {
  std::lock_guard lk(mu_);
  auto& h = hosts_.at(id);
  h.tunnel_address = hello.tunnel_address;
  h.role = hello.role;
  h.capabilities = hello.capabilities;
  h.last_error.clear();
  h.last_update = now;
  return ++h.session;
}

HostRegistry::UpdateResult HostRegistry::update(uint16_t id, uint64_t session,
                                                const proto::Update& u, Clock::time_point now) {
  using Kind = UpdateResult::Kind;
  std::lock_guard lk(mu_);
  auto& h = hosts_.at(id);
  if (session != h.session) {
    // A newer connection of the same host took over; ignore the stale one.
    return {Kind::kStaleSession, "update from a replaced session of host " + h.name};
  }
  for (const auto& e : u.entries) {
    bool ok = false;
    for (const auto& a : h.authorised) ok = ok || a.contains(e.prefix);
    if (!ok) {
      std::string why = "subnet " + e.prefix.str() + " not authorised for host " + h.name;
      h.last_error = why;
      if (forwards(h.state)) {
        h.state = HostState::kWithdrawn;
        h.state_since = now;
      }
      h.subnets.clear();
      markChangedLocked();
      return {Kind::kSubnetNotAuthorised, why};
    }
  }
  // Availability changed (a subnet added, removed or flagged): rebuild now.
  bool changed = h.state != HostState::kUp || h.subnets.size() != u.entries.size();
  for (size_t i = 0; !changed && i < u.entries.size(); ++i) {
    changed = !(h.subnets[i].prefix == u.entries[i].prefix) ||
              h.subnets[i].available != u.entries[i].available;
  }
  if (changed) markChangedLocked();
  h.subnets.clear();
  for (const auto& e : u.entries) h.subnets.push_back({e.prefix, e.load, e.available});
  if (h.state != HostState::kUp) {
    h.state = HostState::kUp;
    h.state_since = now;
  }
  h.last_update = now;
  ++h.updates;
  return {};
}

bool HostRegistry::disconnect(uint16_t id, uint64_t session, Clock::time_point now) {
  std::lock_guard lk(mu_);
  auto& h = hosts_.at(id);
  if (session != h.session || h.state != HostState::kUp) return false;
  h.state = HostState::kDisconnected;
  h.state_since = now;
  h.last_error = "control connection closed";
  for (auto& sub : h.subnets) sub.available = false;
  markChangedLocked();
  return true;
}

bool HostRegistry::authorised(uint16_t id, const Prefix& prefix) const {
  // authorised is immutable after construction: no lock needed.
  for (const auto& a : hosts_.at(id).authorised) {
    if (a.contains(prefix)) return true;
  }
  return false;
}

void HostRegistry::refuse(uint16_t id, const std::string& why, Clock::time_point now) {
  std::lock_guard lk(mu_);
  auto& h = hosts_.at(id);
  h.last_error = why;
  if (forwards(h.state)) {
    h.state = HostState::kWithdrawn;
    h.state_since = now;
  }
  h.subnets.clear();
  markChangedLocked();
}

std::vector<std::string> HostRegistry::expire(Clock::time_point now, Clock::duration hold) {
  std::lock_guard lk(mu_);
  std::vector<std::string> out;
  for (auto& h : hosts_) {
    if (forwards(h.state) && now - h.last_update > hold) {
      h.state = HostState::kWithdrawn;
      h.state_since = now;
      h.last_error = "silent for longer than the hold time";
      h.subnets.clear();
      out.push_back(h.name);
    }
  }
  return out;
}

bool HostRegistry::setDrained(uint16_t id, bool drained) {
  std::lock_guard lk(mu_);
  auto& h = hosts_.at(id);
  if (h.drained == drained) return false;
  h.drained = drained;
  markChangedLocked();
  return true;
}

void HostRegistry::markChangedLocked() {
  ++version_;
  changed_.store(true);
}

uint64_t HostRegistry::version() const {
  std::lock_guard lk(mu_);
  return version_;
}

std::vector<HostRecord> HostRegistry::snapshot(uint64_t* version) const {
  std::vector<HostRecord> out;
  {
    std::lock_guard lk(mu_);
    out = hosts_;
    if (version != nullptr) *version = version_;
  }
  for (auto& h : out) {
    if (!h.drained) continue;
    for (auto& sub : h.subnets) sub.available = false;
  }
  return out;
}

}  // namespace slr::router
