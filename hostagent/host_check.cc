// `slrctl host check`: is this host set up for direct server return?  Every
// check reads state (netlink dumps, a route lookup, sysctls, the agent's
// status socket); nothing is changed and no packet is sent.
#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/netlink.h"
#include "core/nft.h"
#include "core/status_server.h"
#include "core/sysctl.h"
#include "hostagent/host_agent.h"
#include "hostagent/load.h"
#include "hostagent/setup.h"

namespace slr::host {
namespace {

using nlohmann::json;

std::string linkName(const std::vector<nl::LinkInfo>& links, int ifindex) {
  for (const auto& l : links)
    if (l.ifindex == ifindex) return l.name;
  return "if" + std::to_string(ifindex);
}

std::optional<int> rpValue(const std::string& dev) {
  auto v = readSysctl("net/ipv4/conf/" + dev + "/rp_filter");
  if (!v) return std::nullopt;
  try {
    return std::stoi(*v);
  } catch (...) {
    return std::nullopt;
  }
}

void checkRpFilter(CheckReport& r, const std::string& dev, const std::string& role) {
  std::string name = "rp_filter " + dev + " (" + role + ")";
  auto all = rpValue("all");
  auto d = rpValue(dev);
  if (!all || !d) {
    r.add(name, false, "cannot read net.ipv4.conf." + (!all ? std::string("all") : dev) +
                           ".rp_filter (does the device exist?)");
    return;
  }
  int eff = std::max(*all, *d);
  std::string vals = "effective " + std::to_string(eff) + " = max(all " + std::to_string(*all) +
                     ", " + dev + " " + std::to_string(*d) + ")";
  if (eff == 0 || eff == 2) {
    r.add(name, true, vals + (eff == 0 ? ", off" : ", loose"));
  } else {
    r.add(name, false, vals + ", strict: decapsulated packets carry the client's source, which is "
                              "not routed via the tunnel device, so the kernel drops them; fix: "
                              "sysctl -w net.ipv4.conf.all.rp_filter=0 net.ipv4.conf." + dev +
                              ".rp_filter=0 (the agent does this while it runs)");
  }
}

// Elements of the tunnel_peers set, via the nft CLI (read-only listing).
std::optional<std::vector<std::string>> nftTunnelPeers(std::string* why) {
  auto out = runCommandOutput(std::string("nft -j list set inet ") + std::string(nft::kDefaultTable) +
                                  " tunnel_peers 2>/dev/null",
                              std::chrono::milliseconds(3000));
  if (!out) {
    *why = out.error().message();
    return std::nullopt;
  }
  json doc = json::parse(*out, nullptr, false);
  if (doc.is_discarded() || !doc.contains("nftables")) {
    *why = "unparsable `nft -j` output";
    return std::nullopt;
  }
  std::vector<std::string> elems;
  for (const auto& item : doc["nftables"]) {
    if (!item.contains("set") || !item["set"].contains("elem")) continue;
    for (const auto& e : item["set"]["elem"])
      if (e.is_string()) elems.push_back(e.get<std::string>());
  }
  return elems;
}

}  // namespace

CheckReport collectHostChecks(const config::HostConfig& cfg) {
  CheckReport r;
  const std::string start_hint = "start it: slrctl host --config " +
                                 (cfg.source_path.empty() ? std::string("FILE") : cfg.source_path);

  // 1. The agent and its view (tunnel mode, sessions).
  json status;
  std::string status_err;
  auto reply = statusRequest(cfg.host.status_socket, "status", 3000);
  if (reply) {
    status = json::parse(*reply, nullptr, false);
    if (status.is_discarded() || !status.is_object() || status.value("role", "") != "host") {
      status_err = "unexpected reply on " + cfg.host.status_socket;
      status = json();
    }
  } else {
    status_err = reply.error().message();
  }
  bool running = status.is_object();
  r.add("host agent running", running,
        running ? "status socket " + cfg.host.status_socket + " answers"
                : "the agent is not running (" + status_err + "); " + start_hint);

  auto links = nl::listLinks();
  std::vector<nl::LinkInfo> no_links;
  const auto& ls = links ? *links : no_links;

  // 2. Local routes: the VIPs are accepted as the host's own addresses.
  auto local = nl::listRoutes(Family::kV4, RT_TABLE_LOCAL);
  for (const Prefix& p : cfg.subnets) {
    std::string name = "local route " + p.str();
    if (!local) {
      r.add(name, false, "cannot list table local: " + local.error().message());
      continue;
    }
    auto it = std::find_if(local->begin(), local->end(), [&](const nl::RouteInfo& ri) {
      return ri.type == RTN_LOCAL && ri.dst == p;
    });
    if (it != local->end())
      r.add(name, true, "local " + p.str() + " dev " + linkName(ls, it->ifindex) + " table local");
    else
      r.add(name, false, "missing from table local: the host will not accept packets to these VIPs; "
                         "the agent adds it while it runs (by hand: ip route add local " + p.str() +
                         " dev lo table local)");
  }

  // 3. Tunnel termination.
  std::string dev;
  std::string mode;
  if (running) {
    dev = status.value("tunnel_device", "");
    mode = status.value("tunnel_mode", "");
  } else if (cfg.host.tunnel_mode == config::TunnelMode::kKernel) {
    dev = kKernelTunnelDevice;
  } else if (cfg.host.tunnel_mode == config::TunnelMode::kUserspace) {
    dev = cfg.host.tun_name;
  } else {
    dev = nl::linkGet(kKernelTunnelDevice).ok() ? kKernelTunnelDevice : cfg.host.tun_name;
  }
  {
    auto li = nl::linkGet(dev);
    std::string name = "tunnel termination";
    if (!running) {
      r.add(name, false, "nothing terminates tunnels: the agent is not running (device " + dev +
                             (li ? " exists but is left over" : " absent") + "); " + start_hint);
    } else if (!li) {
      r.add(name, false, mode + " mode, but device " + dev + " is missing: " + li.error().message() +
                             "; restart the agent");
    } else if (!li->up()) {
      r.add(name, false, mode + " mode, device " + dev + " is down; `ip link set " + dev +
                             " up` or restart the agent");
    } else if (mode == "userspace") {
      bool t_running = status.contains("tunnel") && status["tunnel"].value("running", false);
      r.add(name, t_running,
            t_running ? "userspace: TUN " + dev + " up, terminator thread running"
                      : "userspace: TUN " + dev + " up but the terminator thread stopped; see "
                        "the agent's log and restart it");
    } else {
      bool ipip = li->kind == "ipip";
      r.add(name, ipip, ipip ? "kernel: ipip device " + dev + " up"
                             : "kernel mode, but " + dev + " is of kind '" + li->kind + "', not ipip");
    }
  }

  // Kernel decapsulation, when configured for userspace termination: it is an
  // accelerator, so "off" is reported as a failure with the agent's reason
  // (the host still works, slower).
  if (running && mode == "userspace" && !cfg.host.decap_interfaces.empty()) {
    const auto kd = status.value("kernel_decap", nlohmann::json::object());
    bool on = kd.value("enabled", false);
    r.add("kernel decapsulation", on,
          on ? kd.value("state", std::string("on")) + ", " +
                   std::to_string(kd.value("packets", 0ull)) + " packets so far"
             : kd.value("state", std::string("off")) +
                   "; tunnels are terminated in userspace only (see the agent's log)");
  }

  // 4. rp_filter on the tunnel device and the uplink.
  if (nl::linkGet(dev).ok()) {
    checkRpFilter(r, dev, "tunnel device");
  } else {
    r.add("rp_filter " + dev + " (tunnel device)", false,
          "device " + dev + " does not exist, cannot check; " + start_hint);
  }
  {
    std::string uplink;
    if (auto addrs = nl::listAddresses(Family::kV4); addrs) {
      for (const auto& a : *addrs)
        if (a.address == cfg.host.tunnel_address) uplink = linkName(ls, a.ifindex);
    }
    if (uplink.empty())
      r.add("tunnel_address " + cfg.host.tunnel_address.str(), false,
            "not configured on any interface (see `ip -4 addr`); SLRs send tunnels to it");
    else
      checkRpFilter(r, uplink, "uplink");
  }

  // 5. nftables filter with the SLR tunnel sources.
  {
    std::string name = "nftables table inet " + std::string(nft::kDefaultTable);
    auto exists = nft::tableExists(nft::kDefaultTable);
    if (!exists) {
      r.add(name, false, "cannot query nftables: " + exists.error().message());
    } else if (!*exists) {
      r.add(name, false, "missing: VIP traffic is not restricted to tunnels from the SLRs; " +
                             start_hint);
    } else {
      std::string why;
      auto peers = nftTunnelPeers(&why);
      if (!peers) {
        r.add(name, true, "present (tunnel sources not verified: " + why + ")");
      } else {
        std::vector<std::string> missing;
        for (const auto& src : tunnelSources(cfg))
          if (std::find(peers->begin(), peers->end(), src.str()) == peers->end())
            missing.push_back(src.str());
        std::string have;
        for (const auto& p : *peers) have += (have.empty() ? "" : ", ") + p;
        if (missing.empty()) {
          r.add(name, true, "present, tunnel sources {" + have + "}");
        } else {
          std::string m;
          for (const auto& x : missing) m += (m.empty() ? "" : ", ") + x;
          r.add(name, false, "present, but tunnels from " + m + " are dropped (set has {" + have +
                                 "}); restart the agent after changing [[slr]]");
        }
      }
    }
  }

  // 6. Return path: the control channel reaches each SLR; replies to clients
  // leave by the default route (never back through the SLR).
  for (const auto& s : cfg.slrs) {
    std::string name = "route to slr " + s.name + " (" + s.address.addr.str() + ")";
    auto rt = nl::routeGet(s.address.addr);
    if (!rt) {
      r.add(name, false, "no route: " + rt.error().message() + "; the control channel cannot connect");
      continue;
    }
    std::string d = "dev " + linkName(ls, rt->ifindex);
    if (!rt->gateway.empty()) d = "via " + rt->gateway.str() + " " + d;
    if (!rt->prefsrc.empty()) d += " src " + rt->prefsrc.str();
    r.add(name, true, d);
  }
  {
    auto main = nl::listRoutes(Family::kV4, RT_TABLE_MAIN);
    std::optional<nl::RouteInfo> def;
    if (main)
      for (const auto& ri : *main)
        if (ri.dst.len == 0 && ri.type == RTN_UNICAST) def = ri;
    if (!main)
      r.add("default route", false, "cannot list routes: " + main.error().message());
    else if (!def)
      r.add("default route", false, "none: replies to clients leave directly from the VIP, "
                                    "not through the SLR, and need a way out; add one: "
                                    "ip route add default via ROUTER");
    else
      r.add("default route", true, (def->gateway.empty() ? std::string() : "via " + def->gateway.str() + " ") +
                                       "dev " + linkName(ls, def->ifindex));
  }

  // 7. Registration with each SLR (from the agent's status).
  for (const auto& s : cfg.slrs) {
    std::string name = "registered with slr " + s.name;
    if (!running) {
      r.add(name, false, "unknown: the agent is not running; " + start_hint);
      continue;
    }
    const json* found = nullptr;
    if (status.contains("slrs"))
      for (const auto& j : status["slrs"])
        if (j.value("name", "") == s.name) found = &j;
    if (!found) {
      r.add(name, false, "the running agent does not know this SLR (config changed? restart it)");
      continue;
    }
    std::string state = found->value("state", "");
    std::string err = found->value("last_error", "");
    if (state == "registered")
      r.add(name, true, "registered, " + std::to_string(found->value("updates_sent", 0ull)) +
                            " updates sent");
    else
      r.add(name, false, state + (err.empty() ? "" : ": " + err) +
                             (state == "refused" ? " (fix the SLR's [[host]] entry for " +
                                                       cfg.host.name + ")"
                                                 : ""));
  }
  return r;
}

int runHostCheck(const config::HostConfig& cfg, bool json_out, std::ostream& out) {
  CheckReport r = collectHostChecks(cfg);
  if (json_out)
    renderJson(r, out);
  else
    renderText(r, out);
  return r.allOk() ? 0 : 4;
}

}  // namespace slr::host
