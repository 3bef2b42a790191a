#include "slr/slr_daemon.h"

#include <linux/rtnetlink.h>

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <sstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>
#include <vector>

#include "core/log.h"
#include "core/lua_policy.h"
#include "core/netlink.h"
#include "core/policy.h"
#include "core/status_server.h"
#include "core/sysctl.h"
#include "core/tls.h"
#include "core/tun.h"
#include "hostagent/slr_session.h"
#include "slr/control_server.h"
#include "slr/fast_path.h"
#include "slr/forwarding.h"
#include "slr/registry.h"
#include "slr/spare.h"
#include "slr/whohas.h"
#include "slr/table_builder.h"
#include "slr/worker.h"

namespace slr::router {
namespace {

using json = nlohmann::json;

FlowTimeouts toTableTimeouts(const config::FlowTimeouts& t) {
  auto ms = [](config::Duration d) { return uint32_t(std::min<int64_t>(d.count(), UINT32_MAX / 2)); };
  return FlowTimeouts{ms(t.tcp_syn), ms(t.tcp_established), ms(t.tcp_closing), ms(t.udp), ms(t.other)};
}

class SlrDaemon {
 public:
  explicit SlrDaemon(const config::SlrConfig& cfg) : cfg_(cfg), registry_(cfg.hosts) {}
  ~SlrDaemon() { teardown(); }

  Status setup();
  void attachFastPath();
  void loop(std::atomic<bool>& stop);
  void teardown();

 private:
  std::string handle(std::string_view req);
  Status setupPolicy();
  Status startUpstreams();
  proto::Update upstreamUpdate(uint32_t seq);
  void drainShortcuts(size_t upstream, std::vector<std::byte>& out);
  std::vector<double> kernelRouteCosts(const std::vector<HostRecord>& hosts);
  json statusJson();
  json explainJson(std::string_view args);
  json hostsJson();
  json flowsJson(size_t limit);

  const config::SlrConfig& cfg_;
  HostRegistry registry_;
  SnapshotHolder snapshots_;
  // The registry version the last published tables were built from.
  std::atomic<uint64_t> built_version_{0};
  std::unique_ptr<TableBuilder> builder_;
  std::unique_ptr<ControlServer> control_;
  std::unique_ptr<FastPath> fast_path_;
  std::string fast_path_note_ = "off: no [slr] fast_path_interfaces";
  std::vector<std::string> csum_restore_;  // veths whose tx checksum offload we turned off
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::thread> threads_;
  std::atomic<bool> workers_stop_{false};
  std::unique_ptr<StatusServer> status_;
  int tun_index_ = 0;
  std::vector<nl::RouteSpec> routes_;
  std::string old_ip_forward_;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::mutex snap_mu_;
  std::shared_ptr<const ForwardingSnapshot> last_snap_ = std::make_shared<ForwardingSnapshot>();
  uint64_t hash_seed_ = 0;

  // Operator F/G.
  std::unique_ptr<LuaPolicy> lua_;
  std::string lua_state_ = "off";  // "off" | "on: F, G (file)" | "error: ..." (built-ins in use)
  LuaPolicy::Health lua_health_;     // copied after each build, under snap_mu_

  // Upper levels.
  std::vector<UniqueFd> upstream_wake_;
  std::vector<std::unique_ptr<host::SlrSession>> upstreams_;
  std::vector<tls::Context> upstream_tls_;
  std::atomic<bool> upstreams_stop_{false};
  std::atomic<double> unused_load_{0};
  std::atomic<uint64_t> shortcut_post_failed_{0};

  // Hot spare ([hot_spare]): the pair module and the flag every worker reads
  // (true while this SLR is a standby spare or a recovering main).
  std::atomic<bool> spare_standby_{false};
  std::unique_ptr<HotSpare> spare_;
  // Accepted peer channels with kCapSpareSync go here (set with spare_).
  std::function<void(std::unique_ptr<PeerChannel>, const proto::Hello&)> spare_acceptor_;

  // WHOHAS ([[neighbor]]): asks neighbours about mid-stream flows, answers theirs.
  std::unique_ptr<WhohasModule> whohas_;
  std::atomic<uint64_t> resolve_post_failed_{0};
  void acceptPeer(std::unique_ptr<PeerChannel> ch, const proto::Hello& hello);
  json whohasJson();
  json drainJson(std::string_view name, bool drain);
  std::vector<uint64_t> liveFlowsPerHost();
  json spareJson();
};

// The operator's F and G (Lua), else the built-ins.  A Lua policy that does
// not load is logged as an error and the built-ins keep traffic flowing;
// check-config catches it before a deploy.
Status SlrDaemon::setupPolicy() {
  const auto& pc = cfg_.policy;
  if (!pc.lua.empty() || !pc.lua_file.empty()) {
    const std::string chunk = pc.lua.empty() ? pc.lua_file : cfg_.source_path + ": policy.lua";
    auto source = LuaPolicy::readConfigured(pc.lua, pc.lua_file);
    auto l = source ? LuaPolicy::load(*source, chunk) : Result<std::unique_ptr<LuaPolicy>>(source.error());
    if (!l) {
      lua_state_ = "error: " + l.error().message();
    } else {
      lua_ = std::move(l.value());
      lua_state_ = "on: " + lua_->functions();
      LOG_INFO("policy", "operator policy " + lua_state_ + " from " + chunk);
      if (lua_->hasCost() && pc.algorithm != config::kAlgorithmLeastCost)
        LOG_WARN("policy", "Lua F is used by the least-cost algorithm only; policy is " + pc.algorithm);
    }
  }
  if (lua_state_.rfind("error: ", 0) == 0)
    LOG_ERROR("policy", "operator policy not loaded, using the built-in F and G: " + lua_state_.substr(7));

  std::unique_ptr<Policy> policy;
  if (lua_ && lua_->hasCost() && cfg_.policy.algorithm == config::kAlgorithmLeastCost) {
    policy = makeLeastCost(cfg_.policy.tie_tolerance, lua_->costFn());
  } else {
    auto p = makePolicy(cfg_.policy.algorithm, cfg_.policy.tie_tolerance);
    if (!p) return p.error();
    policy = std::move(p.value());
  }
  BuildOptions o;
  o.vips = cfg_.vips;
  o.regions = cfg_.regions;
  for (const auto& h : cfg_.hosts) o.host_names.push_back(h.name);
  o.spread_connections = cfg_.policy.spread_connections;
  o.shortcut = cfg_.slr.shortcut;
  builder_ = std::make_unique<TableBuilder>(std::move(policy), cfg_.hosts.size(), std::move(o),
                                            lua_ && lua_->hasAggregate() ? lua_->aggregateFn()
                                                                         : AggregateFn{});
  return Ok{};
}

Status SlrDaemon::setup() {
  if (auto st = setupPolicy(); !st) return st;

  auto ctx = tls::Context::server(cfg_.tls.ca, cfg_.tls.cert, cfg_.tls.key);
  if (!ctx) return ctx.error();
  control_ = std::make_unique<ControlServer>(cfg_, std::move(ctx.value()), registry_);
  if (auto st = control_->listen(); !st) return st;
  if (cfg_.slr.shortcut) {
    // A lower SLR's tunnel object: every worker gets it (the flow's owner
    // applies it; the others count it as unknown).  Control thread only, so
    // each worker's queue keeps a single producer.
    control_->setShortcutSink([this](std::span<const proto::ShortcutEntry> entries, uint16_t) {
      for (auto& w : workers_) {
        for (const auto& e : entries) {
          WorkerCmd c;
          c.kind = CmdKind::kShortcut;
          c.key = e.key;
          c.endpoint = e.endpoint.v4HostOrder();
          if (!w->post(c)) ++shortcut_post_failed_;
        }
        w->kick();  // one wake-up per frame, not per entry
      }
    });
  }
  // Role peer connections: the hot-spare partner or a WHOHAS neighbour.
  control_->setPeerAcceptor([this](std::unique_ptr<PeerChannel> ch, const proto::Hello& h) {
    acceptPeer(std::move(ch), h);
  });
  if (!cfg_.neighbors.empty()) {
    // The hooks run on the whohas thread; workers_ is complete before start().
    WhohasHooks hooks;
    hooks.workers = cfg_.slr.workers;
    hooks.pop = [this](size_t w, FlowKey& k) { return w < workers_.size() && workers_[w]->whohasOut().pop(k); };
    hooks.resolve = [this](const FlowKey& key, uint16_t host, uint32_t endpoint) {
      WorkerCmd c;
      c.kind = CmdKind::kResolve;
      c.next_hop = host;
      c.key = key;
      c.endpoint = endpoint;
      for (auto& w : workers_) {
        if (!w->post(c)) ++resolve_post_failed_;
        w->kick();
      }
    };
    hooks.lookup = [this](const FlowKey& key) -> std::optional<uint32_t> {
      for (auto& w : workers_) {
        auto r = w->lookupFlow(key, 50);
        // A guess of our own (midstream, awaiting an answer) is no answer.
        if (r && r->key == key && !r->midstream && !r->awaiting) return r->endpoint;
      }
      return std::nullopt;
    };
    whohas_ = std::make_unique<WhohasModule>(cfg_, registry_, std::move(hooks));
    if (auto st = whohas_->init(); !st) return st;
  }
  for (size_t u = 0; u < cfg_.upstreams.size(); ++u) {
    UniqueFd fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!fd) return sysError("eventfd for upstream session");
    upstream_wake_.push_back(std::move(fd));
  }

  const size_t nworkers = cfg_.slr.workers;
  std::vector<UniqueFd> queues;
  if (nworkers == 1) {
    auto fd = openTun(cfg_.slr.tun_name, false);
    if (!fd) return fd.error();
    queues.push_back(std::move(fd.value()));
  } else {
    auto fds = openTunQueues(cfg_.slr.tun_name, nworkers);
    if (!fds) return fds.error();
    queues = std::move(fds.value());
  }
  auto idx = nl::linkIndex(cfg_.slr.tun_name);
  if (!idx) return idx.error();
  tun_index_ = *idx;
  // The TUN's queue is the SLR's ingress buffer: a burst of new flows must
  // wait there for the workers rather than be dropped by the kernel.
  if (auto st = setTxQueueLength(cfg_.slr.tun_name, 16384); !st)
    LOG_WARN("slr", st.error().message());
  if (auto st = nl::linkSetUp(tun_index_); !st) return st;

  // Packets for the VIPs arrive on the uplink and are forwarded into the TUN.
  if (auto v = readSysctl("net/ipv4/ip_forward"); v) old_ip_forward_ = *v;
  if (auto st = writeSysctl("net/ipv4/ip_forward", "1"); !st) return st;

  std::vector<VipMatch> vips;
  for (const auto& v : cfg_.vips) {
    uint32_t m = v4Mask(v.subnet.len);
    vips.push_back({v.subnet.addr.v4HostOrder() & m, m});
    nl::RouteSpec r;
    r.dst = v.subnet;
    r.ifindex = tun_index_;
    r.replace = true;
    if (auto st = nl::addRoute(r); !st) return st;
    routes_.push_back(r);
    LOG_INFO("slr", "VIP " + v.name + " " + v.subnet.str() + " routed into " + cfg_.slr.tun_name);
  }

  if (!cfg_.slr.fast_path_interfaces.empty()) attachFastPath();

  std::random_device rd;
  const uint64_t seed = (uint64_t(rd()) << 32) ^ rd();
  hash_seed_ = seed;
  std::vector<uint32_t> upstream_sources;
  for (const auto& u : cfg_.upstreams)
    upstream_sources.push_back((u.tunnel_source.empty() ? u.address.addr : u.tunnel_source).v4HostOrder());
  spare_standby_ = cfg_.hot_spare.enabled;  // nothing expires before the pair decided
  for (size_t i = 0; i < nworkers; ++i) {
    WorkerOptions o;
    o.id = uint16_t(i);
    o.tun = std::move(queues[i]);
    o.tunnel_source = cfg_.slr.tunnel_source.v4HostOrder();
    o.tunnel_mtu = cfg_.slr.tunnel_mtu;
    // A hot-spare pair mirrors every flow into every worker (the kernel, not
    // we, picks the worker a flow's packets reach after a takeover), so each
    // worker must be able to hold the whole table: memory x workers.
    o.flow_capacity = cfg_.hot_spare.enabled ? size_t(cfg_.flows.capacity)
                                             : std::max<size_t>(1, cfg_.flows.capacity / nworkers);
    o.timeouts = toTableTimeouts(cfg_.flows.timeouts);
    o.stateless_on_full = cfg_.flows.on_full == config::OnFull::kStateless;
    o.hash_seed = seed;
    o.vips = vips;
    o.host_count = cfg_.hosts.size();
    o.fast_path = fast_path_.get();
    o.upstream_sources = upstream_sources;
    o.tunnel_rx = !upstream_sources.empty();
    o.tunnel_shard = uint16_t(i);
    o.tunnel_shards = uint16_t(nworkers);
    o.shortcut = cfg_.slr.shortcut;
    o.shortcut_wait_ms = uint32_t(cfg_.slr.shortcut_wait.count());
    for (const auto& fd : upstream_wake_) o.upstream_wake.push_back(fd.get());
    o.midstream_wait_ms = uint32_t(cfg_.flows.midstream_wait.count());
    for (const auto& h : cfg_.hosts) {  // echo flow advertisements: which VIPs each host may claim
      std::vector<VipMatch> subs;
      for (const auto& p : h.subnets) subs.push_back({p.addr.v4HostOrder() & v4Mask(p.len), v4Mask(p.len)});
      o.host_authorised.push_back(std::move(subs));
    }
    if (cfg_.hot_spare.enabled) {
      o.standby = &spare_standby_;
      o.sync_out = true;
    }
    if (whohas_) {
      o.whohas = true;
      o.whohas_wait_ms = uint32_t(cfg_.whohas.wait.count());
      o.whohas_wake = whohas_->wakeFd();
    }
    auto w = std::make_unique<Worker>(std::move(o), snapshots_);
    if (auto st = w->init(); !st) return st;
    workers_.push_back(std::move(w));
  }
  std::vector<Worker*> peers;  // echo advertisements reach every worker's table
  for (auto& w : workers_) peers.push_back(w.get());
  for (auto& w : workers_) w->setPeers(peers);
  for (auto& w : workers_) {
    Worker* wp = w.get();
    threads_.emplace_back([this, wp] { wp->run(workers_stop_); });
  }
  if (cfg_.hot_spare.enabled) {
    // A restarted main takes the traffic back from its spare only once its
    // hosts are next hops again (the published tables, what workers use).
    auto hosts_up = [this] {
      auto snap = snapshots_.get();
      size_t up = 0;
      for (const auto& nh : snap->next_hops) up += nh.up && nh.tunnel_v4 != 0;
      return std::pair<size_t, size_t>(up, cfg_.hosts.size());
    };
    spare_ = std::make_unique<HotSpare>(cfg_, workers_, spare_standby_, hosts_up);
    if (auto st = spare_->init(); !st) return st;
    spare_acceptor_ = [this](std::unique_ptr<PeerChannel> ch, const proto::Hello& h) {
      spare_->accept(std::move(ch), h);
    };
    spare_->start();
  }
  if (whohas_) whohas_->start();

  if (auto st = startUpstreams(); !st) return st;

  status_ = std::make_unique<StatusServer>(cfg_.slr.status_socket,
                                           [this](std::string_view r) { return handle(r); });
  if (auto st = status_->start(); !st) return st;
  LOG_INFO("slr", "SLR " + cfg_.slr.name + " up: control on " + cfg_.slr.control_listen.str() +
                      ", " + std::to_string(nworkers) + " worker(s), flow capacity " +
                      std::to_string(cfg_.flows.capacity) + ", policy " + cfg_.policy.algorithm);
  return Ok{};
}

// Register with every SLR one level up, as a host would: HELLO role slr,
// then UPDATEs of our aggregated tables, plus the shortcuts the workers queue.
Status SlrDaemon::startUpstreams() {
  for (size_t u = 0; u < cfg_.upstreams.size(); ++u) {
    const auto& up = cfg_.upstreams[u];
    auto ctx = tls::Context::client(up.ca.empty() ? cfg_.tls.ca : up.ca, cfg_.tls.cert, cfg_.tls.key);
    if (!ctx) return ctx.error();
    upstream_tls_.push_back(std::move(ctx.value()));
  }
  for (size_t u = 0; u < cfg_.upstreams.size(); ++u) {
    const auto& up = cfg_.upstreams[u];
    host::SessionParams p;
    p.peer.address = up.address;
    p.peer.name = up.name;
    p.peer.tunnel_source = up.tunnel_source.empty() ? up.address.addr : up.tunnel_source;
    p.host_name = cfg_.slr.name;
    p.role = proto::Role::kSlr;
    p.tunnel_address = cfg_.slr.tunnel_source;
    p.update_interval = up.update_interval;
    p.capabilities = proto::kCapUserspaceTunnel | (cfg_.slr.shortcut ? proto::kCapShortcut : 0);
    p.make_update = [this](uint32_t seq) { return upstreamUpdate(seq); };
    p.wake_fd = upstream_wake_[u].get();
    p.drain = [this, u](std::vector<std::byte>& out) { drainShortcuts(u, out); };
    upstreams_.push_back(std::make_unique<host::SlrSession>(std::move(p), upstream_tls_[u],
                                                            unused_load_, upstreams_stop_));
    LOG_INFO("slr", "upstream SLR " + up.name + " at " + up.address.str() +
                        (cfg_.slr.shortcut ? ", shortcut signalling on" : ""));
  }
  for (auto& s : upstreams_) s->start();
  return Ok{};
}

// M_k = G(...) for every subnet our children serve (seed steps 9310/9320).
proto::Update SlrDaemon::upstreamUpdate(uint32_t seq) {
  auto snap = snapshots_.get();
  proto::Update u;
  u.seq = seq;
  for (const auto& r : snap->routes) {
    if (u.entries.size() >= proto::kMaxEntries) break;
    double load = std::clamp(r.aggregate_load, 0.0, proto::kMaxLoad);
    u.entries.push_back({r.prefix, r.available ? load : 0.0, r.available});
  }
  return u;
}

// Session thread of upstream u: everything the workers queued for it, in
// SHORTCUT frames of at most kMaxEntries.
void SlrDaemon::drainShortcuts(size_t upstream, std::vector<std::byte>& out) {
  proto::Shortcut msg;
  auto emit = [&] {
    if (msg.entries.empty()) return;
    auto f = proto::encode(msg);
    out.insert(out.end(), f.begin(), f.end());
    msg.entries.clear();
  };
  for (auto& w : workers_) {
    ShortcutOut o;
    while (w->shortcutsOut(upstream).pop(o)) {
      IpAddress ep = IpAddress::v4(o.endpoint);
      msg.entries.push_back({o.key, ep});
      if (msg.entries.size() == proto::kMaxEntries) emit();
    }
  }
  emit();
}

// r_j from the kernel: the metric of the route to each next hop's tunnel
// address (`ip route get fibmatch`), times route_metric_scale.
std::vector<double> SlrDaemon::kernelRouteCosts(const std::vector<HostRecord>& hosts) {
  std::vector<double> extra(cfg_.hosts.size(), 0.0);
  for (const auto& h : hosts) {
    if (!forwards(h.state) || h.id >= extra.size() || h.tunnel_address.empty()) continue;
    auto r = nl::routeGetFibMatch(h.tunnel_address);
    if (r) extra[h.id] = double(r->metric) * cfg_.policy.route_metric_scale;
  }
  return extra;
}

// The kernel fast path is an accelerator, never a requirement: when it
// cannot be attached the SLR says why and forwards everything in userspace.
void SlrDaemon::attachFastPath() {
  std::string ifs;
  for (const auto& i : cfg_.slr.fast_path_interfaces) ifs += (ifs.empty() ? "" : ",") + i;
  // With upstreams, tunnels from above are re-tunnelled in the kernel too.
  auto fp = FastPath::attach(cfg_.slr.fast_path_interfaces, cfg_.slr.tunnel_mtu,
                             cfg_.flows.capacity, cfg_.vips.size(), cfg_.hosts.size(),
                             cfg_.upstreams.empty() ? 0 : cfg_.slr.tunnel_source.v4HostOrder());
  if (!fp) {
    fast_path_note_ = "off: " + fp.error().message();
    LOG_WARN("slr", "kernel fast path not available, forwarding in userspace only: " +
                        fp.error().message());
    return;
  }
  fast_path_ = std::move(fp.value());
  fast_path_note_ = "on: tc ingress on " + ifs;
  for (const auto& i : cfg_.slr.fast_path_interfaces) {
    // A veth's far end is this same kernel: packets from local sockets still
    // carry CHECKSUM_PARTIAL (and GSO) and would leave the fast path so.
    // Without tx checksum offload the kernel finishes them before the wire.
    auto link = nl::linkGet(i);
    if (link && link->kind == "veth") {
      auto was = FastPath::txChecksumOffload(i);
      if (auto st = FastPath::setTxChecksumOffload(i, false); !st) {
        LOG_WARN("slr", "fast path: " + st.error().message());
      } else {
        LOG_INFO("slr", "fast path: tx checksum offload off on veth " + i);
        if (was && *was) csum_restore_.push_back(i);  // put back on exit
      }
    }
  }
  LOG_INFO("slr", "kernel fast path " + fast_path_note_);
}

void SlrDaemon::loop(std::atomic<bool>& stop) {
  auto next_rebuild = std::chrono::steady_clock::now();
  while (!stop.load()) {
    control_->poll(50);
    auto now = std::chrono::steady_clock::now();
    // A host up or down, drained or undrained, a subnet's availability
    // flipped: new flows must follow at once, not at the next interval.
    const bool changed = registry_.takeChanged();
    if (now < next_rebuild && !changed) continue;
    next_rebuild = now + cfg_.policy.recompute_interval;
    for (const auto& name : registry_.expire(now, cfg_.policy.hold_time)) {
      LOG_WARN("slr", "host " + name + " withdrawn: no update within the hold time (" +
                          std::to_string(cfg_.policy.hold_time.count()) + " ms)");
    }
    uint64_t version = 0;
    auto hosts = registry_.snapshot(&version);
    std::vector<double> extra;
    if (cfg_.policy.route_cost_source == config::RouteCostSource::kKernel) extra = kernelRouteCosts(hosts);
    std::time_t t = std::time(nullptr);
    std::tm local{};
    localtime_r(&t, &local);
    auto snap = builder_->build(hosts, extra, &local);
    {
      std::lock_guard lk(snap_mu_);
      last_snap_ = snap;
      if (lua_) lua_health_ = lua_->health();
    }
    snapshots_.publish(std::move(snap));
    built_version_.store(version, std::memory_order_release);
  }
}

void SlrDaemon::teardown() {
  if (status_) status_->stop();
  if (whohas_) whohas_->stop();  // its hooks use the workers
  if (spare_) spare_->stop();  // releases a claim now rather than when its lease runs out
  upstreams_stop_ = true;
  for (auto& s : upstreams_) s->join();
  upstreams_.clear();
  workers_stop_ = true;
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
  for (const auto& r : routes_) {
    if (auto st = nl::delRoute(r); !st) LOG_WARN("slr", "removing route: " + st.error().message());
  }
  routes_.clear();
  if (!old_ip_forward_.empty()) {
    (void)writeSysctl("net/ipv4/ip_forward", old_ip_forward_);
    old_ip_forward_.clear();
  }
  spare_.reset();
  workers_.clear();  // closes the TUN queues: the device goes away
  fast_path_.reset();  // detaches the tc programs
  for (const auto& i : csum_restore_) {
    if (auto st = FastPath::setTxChecksumOffload(i, true); !st)
      LOG_WARN("slr", "restoring tx checksum offload: " + st.error().message());
  }
  csum_restore_.clear();
}

std::string SlrDaemon::handle(std::string_view req) {
  try {
    if (req == "status") return statusJson().dump();
    if (req == "hosts") return hostsJson().dump();
    if (req.substr(0, 6) == "drain ") return drainJson(req.substr(6), true).dump();
    if (req.substr(0, 8) == "undrain ") return drainJson(req.substr(8), false).dump();
    if (req == "drain" || req == "undrain")
      return json{{"error", "bad request: expected '" + std::string(req) + " NAME' ([[host]] name or id)"}}.dump();
    if (req.substr(0, 8) == "explain ") return explainJson(req.substr(8)).dump();
    if (req.substr(0, 5) == "flows") {
      size_t limit = 1000;
      if (req.size() > 6) limit = std::stoul(std::string(req.substr(6)));
      return flowsJson(limit).dump();
    }
  } catch (const std::exception& e) {
    return json{{"error", std::string("bad request: ") + e.what()}}.dump();
  }
  return json{{"error", "unknown request '" + std::string(req) + "'"}}.dump();
}

json SlrDaemon::statusJson() {
  json j;
  j["role"] = "slr";
  j["name"] = cfg_.slr.name;
  j["uptime_s"] = std::chrono::duration_cast<std::chrono::seconds>(
                      std::chrono::steady_clock::now() - started_).count();
  j["policy"] = cfg_.policy.algorithm;
  j["workers"] = workers_.size();
  {
    std::lock_guard lk(snap_mu_);
    // Bumps at every rebuild: scripts wait for "a rebuild after X" on it.
    j["tables"] = {{"generation", snapshots_.generation()}, {"routes", last_snap_->routes.size()}};
  }
  uint64_t rx = 0, tx = 0, rxb = 0, txb = 0, created = 0, expired = 0, full = 0, stateless = 0,
           active = 0, rerouted = 0, reused = 0, icmp = 0, midstream = 0;
  std::vector<uint64_t> parse(size_t(ParseError::kCount), 0), drops(size_t(Drop::kCount), 0);
  std::vector<uint64_t> vp(cfg_.vips.size()), vb(cfg_.vips.size()), vf(cfg_.vips.size());
  size_t capacity = 0;
  for (const auto& w : workers_) {
    const auto& c = w->counters();
    rx += read(c.rx_packets);
    tx += read(c.tx_packets);
    rxb += read(c.rx_bytes);
    txb += read(c.tx_bytes);
    created += read(c.flows_created);
    expired += read(c.flows_expired);
    full += read(c.table_full);
    stateless += read(c.stateless_forwarded);
    active += read(c.active_flows);
    rerouted += read(c.flows_rerouted);
    reused += read(c.flows_reused);
    midstream += read(c.flows_midstream);
    icmp += read(c.icmp_too_big_sent);
    for (size_t i = 1; i < parse.size(); ++i) parse[i] += read(c.parse_drops[i]);
    for (size_t i = 0; i < drops.size(); ++i) drops[i] += read(c.drops[i]);
    for (size_t i = 0; i < cfg_.vips.size(); ++i) {
      vp[i] += read(w->vipCounters()[i].packets);
      vb[i] += read(w->vipCounters()[i].bytes);
      vf[i] += read(w->vipCounters()[i].flows);
    }
    capacity += w->flowCapacity();
  }
  // Packets the kernel fast path forwarded never reached a worker: count them
  // in rx and tx so rx - drops == tx holds for the SLR as a whole.
  FastPathStats fps;
  if (fast_path_) fps = fast_path_->stats();
  for (size_t i = 0; i < cfg_.vips.size() && i < fps.vip.size(); ++i) {
    vp[i] += fps.vip[i].first;
    vb[i] += fps.vip[i].second;
  }
  j["packets"] = {{"rx", rx + fps.packets},       {"tx", tx + fps.packets},
                  {"rx_bytes", rxb + fps.bytes},  {"tx_bytes", txb + fps.bytes + 20 * fps.packets},
                  {"userspace", rx},              {"fast_path", fps.packets},
                  {"icmp_too_big_sent", icmp}};
  uint64_t installed = 0, install_failed = 0;
  for (const auto& w : workers_) {
    installed += read(w->counters().fast_path_installed);
    install_failed += read(w->counters().fast_path_failed);
  }
  j["fast_path"] = {{"enabled", fast_path_ != nullptr}, {"state", fast_path_note_},
                    {"flows", fps.flows},                {"packets", fps.packets},
                    {"bytes", fps.bytes},                {"misses", fps.slow_path},
                    {"no_route", fps.fib_fail},          {"too_big_or_ttl", fps.too_big},
                    {"installed", installed},            {"install_failed", install_failed}};
  j["flows"] = {{"active", active},   {"capacity", capacity},   {"created", created},
                {"expired", expired}, {"table_full", full},     {"stateless_forwarded", stateless},
                {"rerouted", rerouted}, {"reused", reused}, {"midstream", midstream}, {"on_full", std::string(config::onFullName(cfg_.flows.on_full))}};
  json d = json::object();
  uint64_t total = 0;
  for (size_t i = 1; i < parse.size(); ++i) {
    d[parseErrorName(ParseError(i))] = parse[i];
    total += parse[i];
  }
  for (size_t i = 0; i < drops.size(); ++i) {
    d[dropName(Drop(i))] = drops[i];
    total += drops[i];
  }
  j["drops"] = d;
  j["drops_total"] = total;
  json vips = json::array();
  for (size_t i = 0; i < cfg_.vips.size(); ++i) {
    vips.push_back({{"name", cfg_.vips[i].name}, {"subnet", cfg_.vips[i].subnet.str()},
                    {"packets", vp[i]}, {"bytes", vb[i]}, {"flows", vf[i]}});
  }
  j["vips"] = vips;
  size_t up = 0;
  for (const auto& h : registry_.snapshot()) up += h.state == HostState::kUp;
  j["hosts_up"] = up;
  j["hosts_configured"] = cfg_.hosts.size();
  const auto& cc = control_->counters();
  json refused;
#define SLR_X(name) refused[#name] = cc.name.load();
  SLR_CONTROL_REFUSALS(SLR_X)
#undef SLR_X
  uint64_t sc_relayed = 0, sc_delay_sum = 0, sc_delay_max = 0;
  uint64_t sc_sent = 0, sc_out_dropped = 0, sc_applied = 0, sc_unknown = 0, sc_packets = 0, held = 0,
           released = 0, hold_timeouts = 0, hold_overflow = 0, tunnel_rx = 0;
  for (const auto& w : workers_) {
    const auto& c = w->counters();
    sc_sent += read(c.shortcut_sent);
    sc_relayed += read(c.shortcut_relayed);
    sc_delay_sum += read(c.shortcut_delay_ms_sum);
    sc_delay_max = std::max(sc_delay_max, read(c.shortcut_delay_ms_max));
    sc_out_dropped += read(c.shortcut_out_dropped);
    sc_applied += read(c.shortcut_applied);
    sc_unknown += read(c.shortcut_unknown);
    sc_packets += read(c.shortcut_packets);
    held += read(c.held_packets);
    released += read(c.released_packets);
    hold_timeouts += read(c.hold_timeouts);
    hold_overflow += read(c.hold_overflow);
    tunnel_rx += read(c.tunnel_rx);
  }
  // A shortcut is applied by the worker that owns the flow; the others count
  // it unknown, so unknown is per worker, not per signal.
  j["shortcut"] = {{"enabled", cfg_.slr.shortcut},
                   {"wait_ms", cfg_.slr.shortcut_wait.count()},
                   {"sent", sc_sent},
                   {"relayed", sc_relayed},
                   {"send_dropped", sc_out_dropped},
                   {"received", cc.shortcuts.load()},
                   {"ignored", cc.shortcuts_ignored.load()},
                   {"refused", cc.shortcut_refused.load()},
                   {"queue_full", shortcut_post_failed_.load()},
                   {"applied", sc_applied},
                   {"delay_ms_avg", sc_applied ? double(sc_delay_sum) / double(sc_applied) : 0.0},
                   {"delay_ms_max", sc_delay_max},
                   {"unknown", sc_unknown},
                   {"packets", sc_packets},
                   {"held_packets", held},
                   {"released_packets", released},
                   {"hold_timeouts", hold_timeouts},
                   {"hold_overflow", hold_overflow}};
  json ups = json::array();
  for (const auto& u : upstreams_) {
    auto sn = u->snapshot();
    ups.push_back({{"name", sn.name},
                   {"address", sn.address},
                   {"state", host::sessionStateName(sn.state)},
                   {"updates_sent", sn.updates_sent},
                   {"hold_time_ms", sn.hold_time_ms},
                   {"last_error", sn.last_error}});
  }
  size_t slr_children = 0;
  for (const auto& h : registry_.snapshot())
    slr_children += h.state == HostState::kUp && h.role == proto::Role::kSlr;
  json per_worker = json::array();
  for (const auto& w : workers_) per_worker.push_back(read(w->counters().tunnel_rx));
  j["level"] = {{"upstreams", ups},
                {"children_slr", slr_children},
                {"tunnel_rx", tunnel_rx},
                {"tunnel_rx_per_worker", per_worker}};
  {
    std::lock_guard lk(snap_mu_);
    j["policy_functions"] = {{"lua", lua_state_},
                             {"calls", lua_health_.calls},
                             {"errors", lua_health_.errors},
                             {"last_error", lua_health_.last_error}};
  }
  j["control"] = {{"listen", cfg_.slr.control_listen.str()},
                  {"connections", control_->connections()},
                  {"accepted", cc.accepted.load()},
                  {"registered", cc.registered.load()},
                  {"peers", cc.peers.load()},
                  {"updates", cc.updates.load()},
                  {"refused", refused}};
  {
    // Flows that survive failures: the workers' part (summed), plus the
    // worker-side WHOHAS and hot-spare counters per worker.
    json rec = json::object();
    json per = json::array();
#define SLR_RECOVERY_COUNTERS(X)                                                           \
  X(midstream_dropped) X(midstream_guessed) X(echo_applied) X(echo_refused_host)           \
  X(echo_refused_subnet) X(echo_conflict) X(echo_malformed) X(fast_path_reinstalled)       \
  X(shortcut_resignalled) X(echo_post_failed) X(whohas_asked) X(whohas_queue_full)         \
  X(whohas_resolved) X(whohas_timeouts) X(mirror_applied) X(mirror_removed) X(mirror_failed) \
  X(sync_events) X(sync_overflows)
#define SLR_X(name) rec[#name] = uint64_t(0);
    SLR_RECOVERY_COUNTERS(SLR_X)
#undef SLR_X
    for (const auto& w : workers_) {
      const auto& c = w->counters();
      json pw = json::object();
#define SLR_X(name) rec[#name] = rec[#name].get<uint64_t>() + read(c.name); pw[#name] = read(c.name);
      SLR_RECOVERY_COUNTERS(SLR_X)
#undef SLR_X
      per.push_back(pw);
    }
#undef SLR_RECOVERY_COUNTERS
    rec["midstream_wait_ms"] = cfg_.flows.midstream_wait.count();
    rec["per_worker"] = per;
    j["recovery"] = rec;
  }
  j["hot_spare"] = spareJson();
  j["whohas"] = whohasJson();
  return j;
}

// Dispatch by what the peer says it is for.  A channel nobody takes is
// dropped (closed) with a log line.
void SlrDaemon::acceptPeer(std::unique_ptr<PeerChannel> ch, const proto::Hello& hello) {
  if ((hello.capabilities & proto::kCapSpareSync) && cfg_.hot_spare.enabled &&
      hello.name == cfg_.hot_spare.peer_name) {
    if (spare_acceptor_) {
      spare_acceptor_(std::move(ch), hello);
      return;
    }
  } else if (hello.capabilities & proto::kCapWhohas) {
    if (whohas_) {
      whohas_->adopt(std::move(ch), hello);
      return;
    }
  }
  LOG_WARN("control", "peer slr " + hello.name + ": nothing here serves capabilities 0x" +
                          [&] {
                            char b[16];
                            std::snprintf(b, sizeof b, "%x", hello.capabilities);
                            return std::string(b);
                          }() + " (no [hot_spare] with it, no [[neighbor]]): closing");
}

json SlrDaemon::whohasJson() {
  json nbs = json::array();
  if (!whohas_) {
    return json{{"enabled", false}, {"neighbors", nbs}, {"asked", 0}, {"answered_found", 0},
                {"answered_unknown", 0}, {"resolved", 0}, {"timeouts", 0}, {"refused", 0},
                {"not_asked", 0}, {"queries_served", 0}, {"served_found", 0}, {"relayed", 0},
                {"relayed_found", 0},
                {"resolve_queue_full", 0}, {"wait_ms", cfg_.whohas.wait.count()},
                {"scope", cfg_.whohas.scope}};
  }
  for (const auto& n : whohas_->neighbors())
    nbs.push_back({{"name", n.name}, {"address", n.address}, {"state", n.state},
                   {"inbound", n.inbound}, {"last_error", n.last_error}});
  const auto& c = whohas_->counters();
  return json{{"enabled", true},
              {"neighbors", nbs},
              {"asked", c.asked.load()},
              {"answered_found", c.answered_found.load()},
              {"answered_unknown", c.answered_unknown.load()},
              {"resolved", c.resolved.load()},
              {"timeouts", c.timeouts.load()},
              {"refused", c.refused.load()},
              {"not_asked", c.not_asked.load()},
              {"queries_served", c.queries_served.load()},
              {"served_found", c.served_found.load()},
              {"relayed", c.relayed.load()},
              {"relayed_found", c.relayed_found.load()},
              {"resolve_queue_full", resolve_post_failed_.load()},
              {"wait_ms", cfg_.whohas.wait.count()},
              {"scope", cfg_.whohas.scope}};
}

std::vector<uint64_t> SlrDaemon::liveFlowsPerHost() {
  std::vector<uint64_t> live(cfg_.hosts.size(), 0);
  for (const auto& w : workers_) {
    auto per = w->flowsPerHost(1000);
    for (size_t i = 0; i < live.size() && i < per.size(); ++i) live[i] += per[i];
  }
  return live;
}

// `drain NAME` / `undrain NAME` (status thread).  NAME is a [[host]] name or
// its id.  The control loop is woken so the tables are rebuilt at once, and
// the answer waits (at most 2 s) until the workers have those tables: once
// `slrctl drain` returns, no new flow goes to the host.  "applied" says
// whether that wait ended in time.
json SlrDaemon::drainJson(std::string_view arg, bool drain) {
  std::string name(arg);
  while (!name.empty() && name.back() == ' ') name.pop_back();
  while (!name.empty() && name.front() == ' ') name.erase(name.begin());
  int id = registry_.find(name);
  if (id < 0 && !name.empty() && name.size() <= 5 &&
      std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    unsigned long n = std::stoul(name);
    if (n < cfg_.hosts.size()) id = int(n);
  }
  if (id < 0) return json{{"error", "no [[host]] named '" + name + "'"}};
  const std::string& hname = cfg_.hosts[size_t(id)].name;
  if (registry_.setDrained(uint16_t(id), drain)) {
    LOG_INFO("slr", "host " + hname + (drain ? " drained: no new flows, established ones stay"
                                              : " undrained: takes new flows again"));
    uint64_t one = 1;
    (void)!::write(control_->wakeFd(), &one, sizeof one);
  }
  const uint64_t want = registry_.version();
  const auto deadline = Clock::now() + std::chrono::seconds(2);
  bool applied = built_version_.load(std::memory_order_acquire) >= want;
  while (!applied && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    applied = built_version_.load(std::memory_order_acquire) >= want;
  }
  auto live = liveFlowsPerHost();
  return json{{"ok", true}, {"host", hname}, {"drained", drain}, {"applied", applied},
              {"flows", live[size_t(id)]}};
}

json SlrDaemon::spareJson() {
  if (!spare_) return json{{"enabled", false}};
  auto s = spare_->status();
  return json{{"enabled", s.enabled},
              {"role", s.role},
              {"state", s.state},
              {"peer", s.peer},
              {"peer_address", cfg_.hot_spare.peer.str()},
              {"connected", s.connected},
              {"peer_state", s.peer_state},
              {"sent", s.sent},
              {"received", s.received},
              {"mirrored", s.mirrored},
              {"resyncs", s.resyncs},
              {"overflows", s.overflows},
              {"post_failed", s.post_failed},
              {"lag_ms_last", s.lag_ms_last},
              {"lag_ms_avg", s.lag_ms_avg},
              {"lag_ms_max", s.lag_ms_max},
              {"lag_samples", s.lag_samples},
              {"sync_interval_ms", s.sync_interval_ms},
              {"takeovers", s.takeovers},
              {"last_takeover_ms", s.last_takeover_ms < 0 ? json(nullptr) : json(s.last_takeover_ms)},
              {"claimed", s.claimed},
              {"hosts_ready", s.hosts_ready},
              {"claim_addresses", s.claim_addresses},
              {"last_error", s.last_error}};
}

json SlrDaemon::hostsJson() {
  auto hosts = registry_.snapshot();
  std::shared_ptr<const ForwardingSnapshot> snap;
  {
    std::lock_guard lk(snap_mu_);
    snap = last_snap_;
  }
  std::vector<uint64_t> active(hosts.size(), 0), pk(hosts.size(), 0), by(hosts.size(), 0),
      fl(hosts.size(), 0);
  for (const auto& w : workers_) {
    auto per = w->flowsPerHost(1000);
    for (size_t i = 0; i < hosts.size() && i < per.size(); ++i) active[i] += per[i];
    for (size_t i = 0; i < hosts.size(); ++i) {
      pk[i] += read(w->hostCounters()[i].packets);
      by[i] += read(w->hostCounters()[i].bytes);
      fl[i] += read(w->hostCounters()[i].flows);
    }
  }
  if (fast_path_) {
    auto fps = fast_path_->stats();
    for (size_t i = 0; i < hosts.size() && i < fps.host.size(); ++i) {
      pk[i] += fps.host[i].first;
      by[i] += fps.host[i].second;
    }
  }
  auto now = Clock::now();
  json arr = json::array();
  for (const auto& h : hosts) {
    json subs = json::array();
    for (const auto& s : h.subnets) {
      json e = {{"prefix", s.prefix.str()}, {"load", s.load}, {"available", s.available}};
      // The cost the last table rebuild compared for this host on this subnet.
      for (const auto& r : snap->routes) {
        if (!(r.prefix == s.prefix)) continue;
        for (const auto& c : r.selection.costs) {
          if (c.next_hop == h.id) {
            e["cost"] = std::isfinite(c.cost) ? json(c.cost) : json(nullptr);
            e["eligible"] = c.eligible;
            e["share"] = r.selection.slots.empty() ? 0.0 : double(c.slots) / double(r.selection.slots.size());
          }
        }
      }
      subs.push_back(e);
    }
    json jh = {{"id", h.id},
               {"name", h.name},
               {"role", h.role == proto::Role::kSlr ? "slr" : "host"},
               {"standby", h.standby},
               {"tunnel_address", h.tunnel_address.empty() ? std::string("-") : h.tunnel_address.str()},
               {"state", hostStateName(h.state)},
               {"weight", h.weight},
               {"route_cost", h.route_cost},
               {"route_cost_kernel", h.id < snap->route_cost_extra.size() ? snap->route_cost_extra[h.id] : 0.0},
               {"subnets", subs},
               {"drained", h.drained},
               {"flows", active[h.id]},
               {"flows_total", fl[h.id]},
               {"active_flows", active[h.id]},
               {"packets", pk[h.id]},
               {"bytes", by[h.id]},
               {"updates", h.updates},
               {"last_error", h.last_error}};
    if (h.last_update != Clock::time_point{})
      jh["last_update_ms_ago"] =
          std::chrono::duration_cast<std::chrono::milliseconds>(now - h.last_update).count();
    else
      jh["last_update_ms_ago"] = nullptr;
    arr.push_back(jh);
  }
  return json{{"hosts", arr}};
}

json SlrDaemon::flowsJson(size_t limit) {
  auto hosts = registry_.snapshot();
  json arr = json::array();
  uint64_t total = 0;
  for (const auto& w : workers_) total += read(w->counters().active_flows);
  for (const auto& w : workers_) {
    if (arr.size() >= limit) break;
    for (const auto& f : w->dumpFlows(limit - arr.size(), 1000)) {
      auto ep = [&](const IpAddress& a, uint16_t port) {
        return (f.key.proto == 6 || f.key.proto == 17) ? a.str() + ":" + std::to_string(port) : a.str();
      };
      arr.push_back({{"proto", protoName(f.key.proto)},
                     {"src", ep(f.key.srcAddr(), f.key.sport)},
                     {"dst", ep(f.key.dstAddr(), f.key.dport)},
                     {"host", f.shortcut ? std::string("shortcut")
                              : f.next_hop < hosts.size() ? hosts[f.next_hop].name : std::string("?")},
                     {"endpoint", IpAddress::v4(f.endpoint).str()},
                     {"shortcut", f.shortcut},
                     {"label", f.label},
                     {"state", flowStateName(f.state)},
                     {"idle_ms", f.idle_ms},
                     {"age_ms", f.age_ms},
                     {"packets", f.packets}});
    }
  }
  return json{{"total", total}, {"flows", arr}};
}

// `slrctl explain`: what this SLR would do with a packet of the given flow
// right now, and the costs it compared.  Reads the published snapshot and
// asks the workers whether the flow exists; sends nothing.
json SlrDaemon::explainJson(std::string_view args) {
  std::istringstream in{std::string(args)};
  std::string proto_s, src_s, dst_s;
  in >> proto_s >> src_s >> dst_s;
  auto endpoint = [](const std::string& t, IpAddress& a, uint16_t& port) {
    auto colon = t.rfind(':');
    std::string host = colon == std::string::npos ? t : t.substr(0, colon);
    port = 0;
    if (colon != std::string::npos) {
      unsigned long p = std::stoul(t.substr(colon + 1));
      if (p > 65535) return false;
      port = uint16_t(p);
    }
    auto ip = IpAddress::parse(host);
    if (!ip || !ip->isV4()) return false;
    a = *ip;
    return true;
  };
  FlowKey key{};
  IpAddress src, dst;
  if (proto_s == "tcp") key.proto = kProtoTcp;
  else if (proto_s == "udp") key.proto = kProtoUdp;
  else if (proto_s == "icmp") key.proto = kProtoIcmp;
  else key.proto = uint8_t(std::stoul(proto_s));
  if (!endpoint(src_s, src, key.sport) || !endpoint(dst_s, dst, key.dport))
    return json{{"error", "bad request: expected PROTO SRC[:PORT] DST[:PORT] (IPv4)"}};
  key.family = Family::kV4;
  key.src = src.bytes;
  key.dst = dst.bytes;
  // ICMP echo flows are keyed on the identifier in both ports (parsePacket).
  if (key.proto == kProtoIcmp) key.dport = key.sport;
  else if (key.proto != kProtoTcp && key.proto != kProtoUdp) key.sport = key.dport = 0;

  json j;
  j["flow"] = key.str();
  const uint32_t d = dst.v4HostOrder();
  const config::VipConfig* vip = nullptr;
  for (const auto& v : cfg_.vips) {
    uint32_t m = v4Mask(v.subnet.len);
    if ((d & m) == (v.subnet.addr.v4HostOrder() & m)) vip = &v;
  }
  j["vip"] = vip ? json(vip->name) : json(nullptr);
  j["class"] = vip ? vip->cls : std::string("default");
  j["policy"] = cfg_.policy.algorithm;
  j["existing"] = nullptr;
  j["choice"] = nullptr;
  j["candidates"] = json::array();
  if (vip == nullptr) {
    j["route"] = nullptr;
    j["error"] = "not a VIP: " + dst.str() + " is in no [[vip]] subnet";
    return j;
  }
  auto hosts = registry_.snapshot();
  auto name = [&](uint16_t id) { return id < hosts.size() ? hosts[id].name : std::string("?"); };
  for (const auto& w : workers_) {
    auto r = w->lookupFlow(key, 1000);
    if (!r) continue;
    std::string via = r->shortcut ? "shortcut" : name(r->next_hop);
    j["existing"] = {{"next_hop", via},
                     {"endpoint", IpAddress::v4(r->endpoint).str()},
                     {"shortcut", r->shortcut},
                     {"state", flowStateName(r->state)}};
    j["choice"] = {{"next_hop", via}, {"endpoint", IpAddress::v4(r->endpoint).str()},
                   {"reason", "existing flow"}};
    break;
  }
  std::shared_ptr<const ForwardingSnapshot> snap;
  {
    std::lock_guard lk(snap_mu_);
    snap = last_snap_;
  }
  const RouteEntry* rt = snap->route(d);
  j["route"] = rt ? json(rt->prefix.str()) : json(nullptr);
  const uint16_t region = snap->regionOf(src.v4HostOrder());
  j["region"] = region == 0 || region > cfg_.regions.size() ? std::string() : cfg_.regions[region - 1].name;
  if (rt == nullptr) {
    if (j["choice"].is_null()) j["error"] = "no route: no next hop advertises " + dst.str();
    return j;
  }
  j["affinity"] = rt->client_affinity ? "client" : "flow";
  const Selection& sel = rt->selectionFor(region);
  j["mode"] = modeName(sel.mode);
  for (const auto& c : sel.costs) {
    if (c.next_hop >= hosts.size()) continue;
    const HostRecord& h = hosts[c.next_hop];
    double load = 0;
    bool available = false;
    for (const auto& sub : h.subnets) {
      if (sub.prefix.contains(rt->prefix)) {
        load = sub.load;
        available = sub.available;
      }
    }
    double prox = 0;
    if (region != 0 && region <= cfg_.regions.size()) {
      for (const auto& [n, v] : cfg_.regions[region - 1].cost) {
        if (n == h.name) prox = v;
      }
    }
    j["candidates"].push_back(
        {{"name", h.name},
         {"role", h.role == proto::Role::kSlr ? "slr" : "host"},
         {"tunnel_address", h.tunnel_address.empty() ? std::string("-") : h.tunnel_address.str()},
         {"load", load},
         {"route_cost", h.route_cost + (c.next_hop < snap->route_cost_extra.size()
                                             ? snap->route_cost_extra[c.next_hop] : 0.0)},
         {"proximity", prox},
         {"weight", h.weight},
         {"standby", h.standby},
         {"available", available},
         {"cost", std::isfinite(c.cost) ? json(c.cost) : json(nullptr)},
         {"eligible", c.eligible},
         {"share", sel.slots.empty() ? 0.0 : double(c.slots) / double(sel.slots.size())}});
  }
  if (!j["choice"].is_null()) return j;
  if (sel.empty()) {
    j["error"] = "no next hop: no candidate for " + rt->prefix.str() + " is eligible";
    return j;
  }
  auto choice = snap->newFlowChoice(*rt, key, flowHash(key, hash_seed_), hash_seed_);
  uint64_t rr = 0;  // round-robin: the next in turn depends on the worker; show the first
  uint16_t nh = choice.selection.pick(choice.hash, rr);
  j["choice"] = {{"next_hop", name(nh)},
                 {"endpoint", nh < snap->next_hops.size() ? IpAddress::v4(snap->next_hops[nh].tunnel_v4).str()
                                                           : std::string("-")},
                 {"reason", sel.mode == Selection::Mode::kHash ? "policy" : "policy (round-robin: next in turn)"}};
  return j;
}

}  // namespace

int runSlr(const config::SlrConfig& cfg, std::atomic<bool>& stop) {
  SlrDaemon d(cfg);
  if (auto st = d.setup(); !st) {
    LOG_ERROR("slr", st.error().message());
    return 1;
  }
  d.loop(stop);
  LOG_INFO("slr", "shutting down: removing VIP routes and the TUN device");
  d.teardown();
  return 0;
}

}  // namespace slr::router
