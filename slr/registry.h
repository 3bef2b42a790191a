#pragma once
// The SLR's view of the level below: every host allowed by config, whether it
// is registered, what it advertised and when.  Control plane only: guarded by
// one mutex, never touched by workers (they see immutable snapshots built
// from it, see forwarding.h).
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/net_types.h"
#include "core/protocol.h"
#include "core/result.h"

namespace slr::router {

using Clock = std::chrono::steady_clock;

enum class HostState : uint8_t {
  kConfigured,  // allowed by config, never registered (or registration refused)
  kUp,          // registered and advertising within the hold time
  kWithdrawn,   // was up, then silent for the hold time or refused
  // Its control connection closed: no new flows (every subnet unavailable),
  // established flows still forwarded until the hold time withdraws it.
  kDisconnected,
};
// Next hops that still carry their established flows.
inline bool forwards(HostState s) { return s == HostState::kUp || s == HostState::kDisconnected; }
const char* hostStateName(HostState s);  // "configured" | "up" | "withdrawn" | "disconnected"

struct AdvertisedSubnet {
  Prefix prefix;
  double load = 0;
  bool available = true;
};

struct HostRecord {
  uint16_t id = 0;  // index in config order; stable for the process lifetime
  std::string name;
  uint64_t name_hash = 0;
  uint32_t weight = 1;
  double route_cost = 0;
  bool standby = false;
  std::vector<Prefix> authorised;
  // Operator drain (`slrctl drain`, [[host]] drained): no new flows; its
  // established flows stay (the host is still up).
  bool drained = false;

  // From the HELLO: a host, or a lower-level SLR registering like one.
  proto::Role role = proto::Role::kHost;
  uint32_t capabilities = 0;

  HostState state = HostState::kConfigured;
  IpAddress tunnel_address;
  std::vector<AdvertisedSubnet> subnets;
  Clock::time_point last_update{};
  Clock::time_point state_since{};
  uint64_t updates = 0;
  uint64_t session = 0;  // bumps on every accepted HELLO: identifies the live connection
  std::string last_error;
};

class HostRegistry {
 public:
  explicit HostRegistry(const std::vector<config::HostAuthConfig>& hosts);

  // -1 when no [[host]] has this name.
  int find(const std::string& name) const;

  // Accepted HELLO: records the tunnel address, role and capabilities;
  // returns the new session id.  The host is not "up" until its first valid
  // UPDATE.
  uint64_t hello(uint16_t id, const proto::Hello& hello, Clock::time_point now);

  // A control connection that carried a live session closed: no new flows
  // for it at once (a stopped SLR or agent says so by closing), but its
  // established flows keep their path until the hold time withdraws it (an
  // agent restarted within the hold time loses none).  No-op when `session`
  // was already replaced.
  bool disconnect(uint16_t id, uint64_t session, Clock::time_point now);

  // Whether `prefix` lies inside one of the host's authorised subnets.
  bool authorised(uint16_t id, const Prefix& prefix) const;

  struct UpdateResult {
    enum class Kind : uint8_t {
      kApplied,              // the host is up with these loads
      kStaleSession,         // a newer HELLO of the same host replaced this session
      kSubnetNotAuthorised,  // refused; the host is withdrawn
    };
    Kind kind = Kind::kApplied;
    std::string why;  // for refusals: which subnet, which host
    bool ok() const { return kind == Kind::kApplied; }
  };

  // Validates every advertised prefix against the host's authorised subnets.
  // On success the host is up with these loads.  On a refusal nothing changes
  // except that the host is withdrawn.
  UpdateResult update(uint16_t id, uint64_t session, const proto::Update& u, Clock::time_point now);

  // Refusal of a known host (bad subnet, name mismatch...): withdraw it.
  void refuse(uint16_t id, const std::string& why, Clock::time_point now);

  // Withdraws up hosts silent for longer than hold; returns their names.
  std::vector<std::string> expire(Clock::time_point now, Clock::duration hold);

  // Drain (true) or undrain a host.  Returns whether the flag changed.
  bool setDrained(uint16_t id, bool drained);

  // True once after anything that changes which next hops may take new
  // flows (a host up, down, drained, a subnet's availability): the daemon
  // rebuilds the tables at once instead of at the next recompute_interval.
  bool takeChanged() { return changed_.exchange(false); }
  void markChanged() { changed_.store(true); }

  // Bumps with every such change.  A table built from a snapshot of version
  // v reflects every change up to v: `slrctl drain` answers once the
  // published tables have caught up with its change.
  uint64_t version() const;

  // Copy for building snapshots and status output.  A drained host's
  // subnets read as unavailable, so the table builder gives it no new flows.
  // `version` (optional) receives the version of this copy.
  std::vector<HostRecord> snapshot(uint64_t* version = nullptr) const;
  size_t size() const { return hosts_.size(); }

 private:
  void markChangedLocked();  // with mu_ held

  mutable std::mutex mu_;
  std::vector<HostRecord> hosts_;
  uint64_t version_ = 0;  // under mu_
  std::atomic<bool> changed_{false};
};

}  // namespace slr::router
