#include "hostagent/host_agent.h"

#include <signal.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "core/log.h"
#include "core/nft.h"
#include "core/protocol.h"
#include "core/status_server.h"
#include "core/tls.h"
#include "hostagent/health.h"
#include "hostagent/kernel_decap.h"
#include "hostagent/load.h"
#include "hostagent/recovery.h"
#include "hostagent/setup.h"
#include "hostagent/slr_session.h"
#include "hostagent/terminator.h"

namespace slr::host {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using nlohmann::json;

uint64_t readCounterFile(const std::string& path) {
  auto s = readSmallFile(path, 64);
  if (!s) return 0;
  return std::strtoull(s->c_str(), nullptr, 10);
}

// Everything the status handler reads; lives for the whole run.
struct AgentState {
  const config::HostConfig* cfg = nullptr;
  TunnelKind kind = TunnelKind::kUserspace;
  std::string tunnel_device;
  std::string tunnel_reason;
  std::atomic<double> load{0.0};
  std::string load_source;
  std::vector<std::unique_ptr<SlrSession>> sessions;
  UserspaceTerminator* terminator = nullptr;
  KernelDecap* decap = nullptr;  // set when tunnels are decapsulated in the kernel
  std::string decap_state;       // "on: tc ingress on eth0" | "off: <reason>"
  HealthChecker* health = nullptr;
  RecoveryWatcher* recovery = nullptr;
  std::string recovery_state;    // "on" | "off: <reason>"
  // Per-subnet availability advertised in every UPDATE (parallel to
  // cfg->subnets): health checks and drain.  Written by the checker thread
  // and the status thread, read by the session threads.
  std::atomic<bool> drained{false};
  mutable std::mutex avail_mu;
  std::vector<bool> available;
};

std::vector<bool> availability(const AgentState& st) {
  std::lock_guard lk(st.avail_mu);
  return st.available;
}

// Recomputes availability; on a change logs it and makes every session send
// an UPDATE at once (the SLRs stop giving the subnet new flows within
// milliseconds, not an update interval).
void refreshAvailability(AgentState& st, const std::string& why) {
  const auto& cfg = *st.cfg;
  {
    // Computed under the lock: the checker and the status thread may both
    // be here, and the later computation must be the one that stays.
    std::lock_guard lk(st.avail_mu);
    std::vector<bool> healthy = st.health ? st.health->healthy() : std::vector<bool>{};
    std::vector<bool> a = subnetAvailability(cfg.subnets, cfg.checks, healthy, st.drained.load());
    if (a == st.available) return;
    for (size_t i = 0; i < a.size(); ++i)
      if (i >= st.available.size() || a[i] != st.available[i])
        LOG_INFO("host", "subnet " + cfg.subnets[i].str() + " now " +
                             (a[i] ? "available" : "UNAVAILABLE") + " (" + why + ")");
    st.available = a;
  }
  for (auto& s : st.sessions) s->sendNow();
}

std::string joined(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

// Kernel decapsulation in front of the userspace terminator: best effort, a
// failure leaves userspace termination doing all the work.
std::unique_ptr<KernelDecap> attachKernelDecap(const config::HostConfig& cfg, const HostSetup& setup,
                                               std::string& state) {
  if (cfg.host.decap_interfaces.empty()) {
    state = "off: decap_interfaces is empty";
    return nullptr;
  }
  if (setup.kind() != TunnelKind::kUserspace) {
    state = "off: the kernel ipip device " + setup.tunnelDevice() + " terminates tunnels";
    LOG_INFO("tunnel", "decap_interfaces ignored: " + state.substr(5));
    return nullptr;
  }
  auto kd = KernelDecap::attach(cfg.host.decap_interfaces, cfg.host.tunnel_address, tunnelSources(cfg),
                                cfg.subnets, setup.tunnelDevice());
  if (!kd) {
    state = "off: " + kd.error().message();
    LOG_WARN("tunnel", "kernel decapsulation not available, userspace termination only: " +
                           kd.error().message());
    return nullptr;
  }
  state = "on: tc ingress on " + joined(cfg.host.decap_interfaces);
  LOG_INFO("tunnel", "kernel decapsulation " + state + " -> " + setup.tunnelDevice() +
                         "; the userspace terminator handles what it passes");
  return std::move(*kd);
}

std::string statusJson(const AgentState& st) {
  const auto& cfg = *st.cfg;
  json slrs = json::array();
  for (const auto& s : st.sessions) {
    SessionSnapshot snap = s->snapshot();
    slrs.push_back({{"name", snap.name},
                    {"address", snap.address},
                    {"state", sessionStateName(snap.state)},
                    {"last_error", snap.last_error},
                    {"updates_sent", snap.updates_sent},
                    {"hold_time_ms", snap.hold_time_ms},
                    {"tunnel_source", snap.tunnel_source}});
  }
  // Kernel decapsulation works for the terminator: "tunnel" counts every
  // terminated packet, "kernel_decap" the part that never left the kernel.
  KernelDecap::Stats k;
  if (st.decap) k = st.decap->stats();
  json decap = {{"enabled", st.decap != nullptr},
                {"state", st.decap_state},
                {"packets", k.packets},
                {"bytes", k.bytes},
                {"passed_tunnel", k.passed_tunnel}};  // IPIP left to the userspace terminator
  json tunnel, drops;
  if (st.terminator) {
    TerminatorCounters c = st.terminator->counters();
    tunnel = {{"packets", c.packets + k.packets},
              {"bytes", c.bytes + k.bytes},
              {"tun_write_errors", c.tun_write_errors},
              {"running", st.terminator->running()}};
    drops = {{"malformed", c.malformed}, {"not_from_slr", c.not_from_slr}, {"not_vip", c.not_vip}};
  } else {
    // Kernel termination: the ipip device's own receive counters.
    std::string base = "/sys/class/net/" + st.tunnel_device + "/statistics/";
    tunnel = {{"packets", readCounterFile(base + "rx_packets")},
              {"bytes", readCounterFile(base + "rx_bytes")},
              {"running", true}};
    drops = {{"malformed", readCounterFile(base + "rx_errors")}, {"not_from_slr", 0}, {"not_vip", 0}};
  }
  json subnets = json::array();
  std::vector<bool> avail = availability(st);
  for (size_t i = 0; i < cfg.subnets.size(); ++i)
    subnets.push_back({{"prefix", cfg.subnets[i].str()}, {"available", i < avail.size() && avail[i]}});
  json checks = json::array();
  if (st.health)
    for (const auto& c : st.health->snapshot())
      checks.push_back({{"name", c.name},
                        {"type", c.type},
                        {"healthy", c.healthy},
                        {"last_result", c.last_result},
                        {"last_ms", c.last_ms},
                        {"since_s", c.since_s},
                        {"passes", c.passes},
                        {"failures", c.failures}});
  RecoveryCounters rc;
  if (st.recovery) rc = st.recovery->counters();
  json recovery = {{"enabled", st.recovery != nullptr},
                   {"state", st.recovery_state},
                   {"watched", rc.watched},
                   {"stalled", rc.stalled},
                   {"stalls", rc.stalls},
                   {"echoes_sent", rc.echoes_sent},
                   {"replies_received", rc.replies_received},
                   {"nudges_sent", rc.nudges_sent},
                   {"recovered", rc.recovered},
                   {"gave_up", rc.gave_up},
                   {"send_errors", rc.send_errors},
                   {"scan_errors", rc.scan_errors}};
  json doc = {{"role", "host"},
              {"name", cfg.host.name},
              {"tunnel_mode", tunnelKindName(st.kind)},
              {"tunnel_mode_reason", st.tunnel_reason},
              {"tunnel_device", st.tunnel_device},
              {"tunnel_address", cfg.host.tunnel_address.str()},
              {"subnets", std::move(subnets)},
              {"drained", st.drained.load()},
              {"checks", std::move(checks)},
              {"recovery", std::move(recovery)},
              {"load", st.load.load(std::memory_order_relaxed)},
              {"load_source", st.load_source},
              {"slrs", std::move(slrs)},
              {"tunnel", std::move(tunnel)},
              {"drops", std::move(drops)},
              {"kernel_decap", std::move(decap)}};
  // Packets the nftables filter dropped before they reached us.
  if (auto n = nft::readDropCounters(nft::kDefaultTable); n.ok())
    doc["nft_drops"] = {{"tunnel_not_from_slr", n->non_peer_tunnel_packets},
                        {"vip_not_via_tunnel", n->vip_not_via_tunnel_packets}};
  return doc.dump();
}

std::string handleRequest(AgentState& st, std::string_view req) {
  if (req == "status") return statusJson(st);
  // `slrctl drain` / `undrain` on this socket: every subnet unavailable (no
  // new flows from any SLR); established connections carry on.
  if (req == "drain" || req == "undrain") {
    bool d = req == "drain";
    if (st.drained.exchange(d) != d)
      LOG_INFO("host", d ? "drained by request: no new flows" : "undrained by request");
    refreshAvailability(st, d ? "host drained" : "host undrained");
    json flows = nullptr;
    if (auto n = countVipConnections(st.cfg->subnets); n) flows = *n;
    return json{{"ok", true}, {"host", st.cfg->host.name}, {"drained", d}, {"flows", flows}}.dump();
  }
  return json{{"error", "unknown request '" + std::string(req) + "'"}}.dump();
}

}  // namespace

int runHostAgent(const config::HostConfig& cfg, std::atomic<bool>& stop) {
  // OpenSSL writes with write(2): a reset by an SLR must not kill us.
  ::signal(SIGPIPE, SIG_IGN);
  LOG_INFO("host", "host agent " + cfg.host.name + " starting (config " + cfg.source_path + ")");

  // Credentials first: a bad certificate should fail before we touch routes.
  auto tls = tls::Context::client(cfg.tls.ca, cfg.tls.cert, cfg.tls.key);
  if (!tls) {
    LOG_ERROR("host", "loading TLS credentials failed: " + tls.error().message());
    return 1;
  }

  HostSetup setup;
  if (auto s = setup.apply(cfg); !s) {
    LOG_ERROR("setup", "set-up failed, everything done so far was undone: " + s.error().message());
    return 1;
  }

  AgentState st;
  st.cfg = &cfg;
  st.kind = setup.kind();
  st.tunnel_device = setup.tunnelDevice();
  st.tunnel_reason = setup.kindReason();

  std::unique_ptr<UserspaceTerminator> terminator;
  if (setup.kind() == TunnelKind::kUserspace) {
    auto t = UserspaceTerminator::create(
        setup.takeTunFd(), cfg.host.tunnel_address,
        DecapFilter(cfg.host.tunnel_address, tunnelSources(cfg), cfg.subnets));
    if (!t) {
      LOG_ERROR("setup", "userspace tunnel termination failed: " + t.error().message());
      return 1;  // ~HostSetup undoes the set-up
    }
    terminator = std::move(*t);
    terminator->start();
    st.terminator = terminator.get();
    LOG_INFO("tunnel", "userspace terminator running: raw IPIP socket on " +
                           cfg.host.tunnel_address.str() + " -> TUN " + st.tunnel_device);
  }
  // After the TUN device exists (the program redirects into it); destroyed
  // before the terminator and the set-up, so nothing is redirected into a
  // device that is going away.
  std::unique_ptr<KernelDecap> decap = attachKernelDecap(cfg, setup, st.decap_state);
  st.decap = decap.get();

  milliseconds interval = cfg.host.update_interval;
  milliseconds cmd_timeout = std::clamp(interval, milliseconds(1000), milliseconds(5000));
  LoadMeter meter(cfg.load, cfg.subnets, cmd_timeout);
  st.load_source = std::string(meter.sourceName());
  (void)meter.sample();  // cpu: primes the first /proc/stat reading
  st.load.store(meter.value());

  // Health checks: subnets they cover stay unavailable until they pass.
  HealthChecker health(cfg.checks, [&st] { refreshAvailability(st, "health check"); });
  st.health = &health;
  refreshAvailability(st, "start");
  if (!cfg.checks.empty())
    LOG_INFO("health", std::to_string(cfg.checks.size()) +
                           " health check(s); the subnets they cover are advertised once they pass");

  // Flow recovery: best effort, like kernel decapsulation.
  std::unique_ptr<RecoveryWatcher> recovery;
  if (!cfg.recovery.enabled) {
    st.recovery_state = "off: [recovery] enabled = false";
  } else if (auto w = RecoveryWatcher::create(cfg.recovery, cfg.subnets, cfg.host.tunnel_address); !w) {
    st.recovery_state = "off: " + w.error().message();
    LOG_WARN("recovery", "flow recovery not available: " + w.error().message());
  } else {
    recovery = std::move(*w);
    st.recovery = recovery.get();
    st.recovery_state = "on";
    LOG_INFO("recovery", "watching TCP connections on the VIPs every " +
                             std::to_string(cfg.recovery.interval.count()) + "ms, stall after " +
                             std::to_string(cfg.recovery.stall_after.count()) + "ms");
  }

  uint32_t caps = setup.kind() == TunnelKind::kKernel ? proto::kCapKernelTunnel
                                                       : proto::kCapUserspaceTunnel;
  for (const auto& peer : cfg.slrs) {
    SessionParams p;
    p.peer = peer;
    if (p.peer.tunnel_source.empty()) p.peer.tunnel_source = peer.address.addr;
    p.host_name = cfg.host.name;
    p.tunnel_address = cfg.host.tunnel_address;
    p.update_interval = interval;
    p.capabilities = caps;
    p.subnets = cfg.subnets;
    p.subnet_load_scale = cfg.subnet_load_scale;
    p.make_update = [&st, &cfg](uint32_t seq) {
      return makeUpdate(seq, cfg.subnets, st.load.load(std::memory_order_relaxed), cfg.subnet_load_scale,
                        availability(st));
    };
    st.sessions.push_back(std::make_unique<SlrSession>(std::move(p), *tls, st.load, stop));
  }
  // The status socket reads st.sessions: start it once the list is complete.
  StatusServer status(cfg.host.status_socket,
                      [&st](std::string_view req) { return handleRequest(st, req); });
  if (auto s = status.start(); !s) {
    LOG_ERROR("host", "status socket failed, undoing set-up: " + s.error().message());
    if (terminator) terminator->stop();
    return 1;
  }
  LOG_INFO("host", "status socket " + cfg.host.status_socket);
  for (auto& s : st.sessions) s->start();
  // After the sessions exist: a check result may trigger sendNow on them.
  health.start();
  if (recovery) recovery->start();

  // Main loop: one load reading per update interval, shared by all sessions.
  std::string last_load_error;
  auto last_load_log = Clock::now() - std::chrono::hours(1);
  auto next = Clock::now() + interval;
  std::vector<bool> was_registered(st.sessions.size(), false);
  while (!stop.load()) {
    auto now = Clock::now();
    // A session that (re)registers re-arms flow recovery's echoes: the SLR
    // that now gets the clients' packets can accept our advertisements only
    // once it knows this host.
    for (size_t i = 0; i < st.sessions.size(); ++i) {
      const bool reg = st.sessions[i]->snapshot().state == SessionState::kRegistered;
      if (reg && !was_registered[i] && recovery) recovery->rearm();
      was_registered[i] = reg;
    }
    if (now < next) {
      std::this_thread::sleep_for(std::min<Clock::duration>(next - now, milliseconds(100)));
      continue;
    }
    next += interval;
    if (next < now) next = now + interval;
    Status s = meter.sample();
    if (!s) {
      std::string msg = s.error().message();
      // Rate-limited: a new reason at once, the same one at most once a minute.
      if (msg != last_load_error || now - last_load_log > std::chrono::minutes(1)) {
        LOG_WARN("load", "reading " + st.load_source + " load failed, keeping " +
                             std::to_string(meter.value()) + ": " + msg);
        last_load_error = msg;
        last_load_log = now;
      }
    } else if (!last_load_error.empty()) {
      LOG_INFO("load", st.load_source + " load readable again");
      last_load_error.clear();
    }
    st.load.store(meter.value(), std::memory_order_relaxed);
  }

  LOG_INFO("host", "stopping: closing control channels, removing set-up");
  health.stop();
  if (recovery) recovery->stop();
  for (auto& s : st.sessions) s->join();
  status.stop();
  st.recovery = nullptr;
  recovery.reset();
  if (decap) {
    KernelDecap::Stats k = decap->stats();
    LOG_INFO("tunnel", "kernel decapsulated " + std::to_string(k.packets) + " packets (" +
                           std::to_string(k.bytes) + " bytes), passed " + std::to_string(k.passed_tunnel) +
                           " tunnel packets to userspace");
    st.decap = nullptr;
    decap.reset();  // detaches, removes the clsact qdisc it created
  }
  if (terminator) {
    terminator->stop();
    TerminatorCounters c = terminator->counters();
    LOG_INFO("tunnel", "terminated " + std::to_string(c.packets) + " packets, dropped " +
                           std::to_string(c.malformed) + " malformed, " +
                           std::to_string(c.not_from_slr) + " not_from_slr, " +
                           std::to_string(c.not_vip) + " not_vip");
  }
  st.terminator = nullptr;
  terminator.reset();  // closes the TUN fd: the device goes away
  setup.teardown();
  LOG_INFO("host", "stopped");
  return 0;
}

}  // namespace slr::host
