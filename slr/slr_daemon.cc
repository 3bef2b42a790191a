#include "slr/slr_daemon.h"

#include <linux/rtnetlink.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>
#include <vector>

#include "core/log.h"
#include "core/netlink.h"
#include "core/policy.h"
#include "core/status_server.h"
#include "core/sysctl.h"
#include "core/tls.h"
#include "core/tun.h"
#include "slr/control_server.h"
#include "slr/fast_path.h"
#include "slr/forwarding.h"
#include "slr/registry.h"
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
  json statusJson();
  json hostsJson();
  json flowsJson(size_t limit);

  const config::SlrConfig& cfg_;
  HostRegistry registry_;
  SnapshotHolder snapshots_;
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
};

Status SlrDaemon::setup() {
  auto policy = makePolicy(cfg_.policy.algorithm, cfg_.policy.tie_tolerance);
  if (!policy) return policy.error();
  builder_ = std::make_unique<TableBuilder>(std::move(policy.value()), cfg_.hosts.size());

  auto ctx = tls::Context::server(cfg_.tls.ca, cfg_.tls.cert, cfg_.tls.key);
  if (!ctx) return ctx.error();
  control_ = std::make_unique<ControlServer>(cfg_, std::move(ctx.value()), registry_);
  if (auto st = control_->listen(); !st) return st;

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
  for (size_t i = 0; i < nworkers; ++i) {
    WorkerOptions o;
    o.id = uint16_t(i);
    o.tun = std::move(queues[i]);
    o.tunnel_source = cfg_.slr.tunnel_source.v4HostOrder();
    o.tunnel_mtu = cfg_.slr.tunnel_mtu;
    o.flow_capacity = std::max<size_t>(1, cfg_.flows.capacity / nworkers);
    o.timeouts = toTableTimeouts(cfg_.flows.timeouts);
    o.stateless_on_full = cfg_.flows.on_full == config::OnFull::kStateless;
    o.hash_seed = seed;
    o.vips = vips;
    o.host_count = cfg_.hosts.size();
    o.fast_path = fast_path_.get();
    auto w = std::make_unique<Worker>(std::move(o), snapshots_);
    if (auto st = w->init(); !st) return st;
    workers_.push_back(std::move(w));
  }
  for (auto& w : workers_) {
    Worker* wp = w.get();
    threads_.emplace_back([this, wp] { wp->run(workers_stop_); });
  }

  status_ = std::make_unique<StatusServer>(cfg_.slr.status_socket,
                                           [this](std::string_view r) { return handle(r); });
  if (auto st = status_->start(); !st) return st;
  LOG_INFO("slr", "SLR " + cfg_.slr.name + " up: control on " + cfg_.slr.control_listen.str() +
                      ", " + std::to_string(nworkers) + " worker(s), flow capacity " +
                      std::to_string(cfg_.flows.capacity) + ", policy " + cfg_.policy.algorithm);
  return Ok{};
}

// The kernel fast path is an accelerator, never a requirement: when it
// cannot be attached the SLR says why and forwards everything in userspace.
void SlrDaemon::attachFastPath() {
  std::string ifs;
  for (const auto& i : cfg_.slr.fast_path_interfaces) ifs += (ifs.empty() ? "" : ",") + i;
  auto fp = FastPath::attach(cfg_.slr.fast_path_interfaces, cfg_.slr.tunnel_mtu,
                             cfg_.flows.capacity, cfg_.vips.size(), cfg_.hosts.size());
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
    if (now < next_rebuild) continue;
    next_rebuild = now + cfg_.policy.recompute_interval;
    for (const auto& name : registry_.expire(now, cfg_.policy.hold_time)) {
      LOG_WARN("slr", "host " + name + " withdrawn: no update within the hold time (" +
                          std::to_string(cfg_.policy.hold_time.count()) + " ms)");
    }
    auto snap = builder_->build(registry_.snapshot());
    {
      std::lock_guard lk(snap_mu_);
      last_snap_ = snap;
    }
    snapshots_.publish(std::move(snap));
  }
}

void SlrDaemon::teardown() {
  if (status_) status_->stop();
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
  uint64_t rx = 0, tx = 0, rxb = 0, txb = 0, created = 0, expired = 0, full = 0, stateless = 0,
           active = 0, rerouted = 0, icmp = 0;
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
                {"rerouted", rerouted}, {"on_full", std::string(config::onFullName(cfg_.flows.on_full))}};
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
  j["control"] = {{"listen", cfg_.slr.control_listen.str()},
                  {"connections", control_->connections()},
                  {"accepted", cc.accepted.load()},
                  {"registered", cc.registered.load()},
                  {"updates", cc.updates.load()},
                  {"refused", refused}};
  return j;
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
               {"tunnel_address", h.tunnel_address.empty() ? std::string("-") : h.tunnel_address.str()},
               {"state", hostStateName(h.state)},
               {"weight", h.weight},
               {"route_cost", h.route_cost},
               {"subnets", subs},
               {"flows", fl[h.id]},
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
                     {"host", f.next_hop < hosts.size() ? hosts[f.next_hop].name : std::string("?")},
                     {"label", f.label},
                     {"state", flowStateName(f.state)},
                     {"idle_ms", f.idle_ms},
                     {"age_ms", f.age_ms},
                     {"packets", f.packets}});
    }
  }
  return json{{"total", total}, {"flows", arr}};
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
