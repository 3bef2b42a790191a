#include "hostagent/setup.h"

#include <algorithm>
#include <cstdlib>

#include "core/log.h"
#include "core/netlink.h"
#include "core/nft.h"
#include "core/sysctl.h"
#include "core/tun.h"

namespace slr::host {
namespace {

std::string rpPath(const std::string& dev) { return "net/ipv4/conf/" + dev + "/rp_filter"; }

// Name of the interface holding `addr`, or an error that says it is not local.
Result<std::string> deviceOfAddress(const IpAddress& addr) {
  auto addrs = nl::listAddresses(Family::kV4);
  if (!addrs) return addrs.error();
  auto links = nl::listLinks();
  if (!links) return links.error();
  for (const auto& a : *addrs) {
    if (a.address != addr) continue;
    for (const auto& l : *links)
      if (l.ifindex == a.ifindex) return l.name;
  }
  return sysError("find tunnel_address " + addr.str() + " on a local interface", EADDRNOTAVAIL,
                  "it is not configured on any interface of this host (see `ip -4 addr`); "
                  "SLRs send tunnels to it, so it must be a local address");
}

bool noKernelIpip(const Error& e) {
  return e.code == EOPNOTSUPP || e.detail.find("Unknown device type") != std::string::npos;
}

}  // namespace

const char* tunnelKindName(TunnelKind k) { return k == TunnelKind::kKernel ? "kernel" : "userspace"; }

std::vector<IpAddress> tunnelSources(const config::HostConfig& cfg) {
  std::vector<IpAddress> out;
  for (const auto& s : cfg.slrs) {
    IpAddress a = s.tunnel_source.empty() ? s.address.addr : s.tunnel_source;
    if (std::find(out.begin(), out.end(), a) == out.end()) out.push_back(a);
  }
  // Upper SLRs of the hierarchy that may tunnel shortcut flows straight here.
  for (const auto& a : cfg.host.shortcut_sources) {
    if (std::find(out.begin(), out.end(), a) == out.end()) out.push_back(a);
  }
  return out;
}

void HostSetup::onUndo(std::string what, std::function<void()> fn) {
  undo_.push_back({std::move(what), std::move(fn)});
}

void HostSetup::teardown() {
  while (!undo_.empty()) {
    Undo u = std::move(undo_.back());
    undo_.pop_back();
    LOG_INFO("setup", "undo: " + u.what);
    u.fn();
  }
  tun_fd_.reset();
}

Status HostSetup::setupTunnel(const config::HostConfig& cfg) {
  using config::TunnelMode;
  TunnelMode mode = cfg.host.tunnel_mode;
  if (mode != TunnelMode::kUserspace) {
    LOG_INFO("setup", std::string("tunnel: creating kernel ipip device ") + kKernelTunnelDevice +
                          " local " + cfg.host.tunnel_address.str());
    auto idx = nl::createIpipLink(kKernelTunnelDevice, cfg.host.tunnel_address);
    if (idx) {
      onUndo(std::string("delete ipip device ") + kKernelTunnelDevice, [] {
        if (auto s = nl::deleteLink(kKernelTunnelDevice); !s)
          LOG_WARN("setup", "delete " + std::string(kKernelTunnelDevice) + ": " + s.error().message());
      });
      if (auto s = nl::linkSetUp(*idx); !s) return s;
      kind_ = TunnelKind::kKernel;
      tunnel_device_ = kKernelTunnelDevice;
      kind_reason_ = mode == TunnelMode::kAuto ? "auto: the kernel has ipip" : "tunnel_mode = kernel";
      LOG_INFO("setup", std::string("tunnel: kernel termination on ") + kKernelTunnelDevice + " (" +
                            kind_reason_ + ")");
      return Ok{};
    }
    const Error& e = idx.error();
    if (mode == TunnelMode::kKernel || !noKernelIpip(e)) {
      Error out = e;
      if (mode == TunnelMode::kKernel && noKernelIpip(e))
        out.detail += (out.detail.empty() ? "" : "; ") +
                      std::string("tunnel_mode = \"kernel\" but this kernel has no ipip support; "
                                  "use tunnel_mode = \"auto\" or \"userspace\"");
      else if (e.code == EEXIST)
        out.detail += (out.detail.empty() ? "" : "; ") + std::string("device ") + kKernelTunnelDevice +
                      " already exists (left over from a previous run?): `ip link del " +
                      kKernelTunnelDevice + "`";
      return out;
    }
    kind_reason_ = "auto: the kernel has no ipip (" + e.message() + ")";
    LOG_INFO("setup", "tunnel: kernel ipip unavailable, falling back to userspace termination (" +
                          e.message() + ")");
  } else {
    kind_reason_ = "tunnel_mode = userspace";
  }

  LOG_INFO("setup", "tunnel: opening TUN device " + cfg.host.tun_name);
  auto fd = openTun(cfg.host.tun_name);
  if (!fd) return fd.error();
  tun_fd_ = std::move(*fd);
  // The TUN device disappears when its last queue fd closes (not persistent),
  // so its undo is owning the fd; nothing else to delete.
  auto idx = nl::linkIndex(cfg.host.tun_name);
  if (!idx) return idx.error();
  if (auto s = nl::linkSetUp(*idx); !s) return s;
  kind_ = TunnelKind::kUserspace;
  tunnel_device_ = cfg.host.tun_name;
  LOG_INFO("setup", "tunnel: userspace termination on TUN " + tunnel_device_ + " (" + kind_reason_ + ")");
  return Ok{};
}

Status HostSetup::setRpFilter(const std::string& dev, const char* value, bool only_if_strict) {
  std::string path = rpPath(dev);
  auto old = readSysctl(path);
  if (!old) return old.error();
  if (*old == value || (only_if_strict && *old != "1")) return Ok{};
  if (auto s = writeSysctl(path, value); !s) return s;
  LOG_INFO("setup", "sysctl " + path + ": " + *old + " -> " + value);
  std::string prev = *old;
  onUndo("restore " + path + " = " + prev, [path, prev] {
    if (auto s = writeSysctl(path, prev); !s && s.error().code != ENOENT)
      LOG_WARN("setup", "restore " + path + ": " + s.error().message());
  });
  return Ok{};
}

// Direct server return ARP hygiene (as for LVS-DR): the VIPs are local here
// but belong to the SLR on every link.  arp_ignore 1: answer ARP only for
// addresses configured on the interface asked (the VIPs sit on lo), so no
// host claims a VIP; arp_announce 2: never use a VIP as the sender of our
// own ARP requests (a reply's source is the VIP).  The kernel takes the
// maximum of "all" and the device, so raising "all" is enough; an operator's
// stricter setting is kept.
Status HostSetup::raiseSysctl(const std::string& path, int value) {
  auto old = readSysctl(path);
  if (!old) return old.error();
  if (std::atoi(old->c_str()) >= value) return Ok{};
  if (auto s = writeSysctl(path, std::to_string(value)); !s) return s;
  LOG_INFO("setup", "sysctl " + path + ": " + *old + " -> " + std::to_string(value));
  std::string prev = *old;
  onUndo("restore " + path + " = " + prev, [path, prev] {
    if (auto s = writeSysctl(path, prev); !s && s.error().code != ENOENT)
      LOG_WARN("setup", "restore " + path + ": " + s.error().message());
  });
  return Ok{};
}

Status HostSetup::apply(const config::HostConfig& cfg) {
  auto run = [&]() -> Status {
    auto uplink = deviceOfAddress(cfg.host.tunnel_address);
    if (!uplink) return uplink.error();
    LOG_INFO("setup", "tunnel_address " + cfg.host.tunnel_address.str() + " is on " + *uplink);

    if (auto s = setupTunnel(cfg); !s) return s;

    // Strict rp_filter would drop the decapsulated packet: its client source
    // is routed via the uplink, not via the tunnel device it arrives on.
    for (const std::string& dev : {std::string("all"), std::string("default"), tunnel_device_})
      if (auto s = setRpFilter(dev, "0"); !s) return s;
    // Effective value is max(all, dev): a strict uplink stays strict; make it
    // loose (2) so `slrctl host check` and the outer packets' path agree.
    if (auto s = setRpFilter(*uplink, "2", /*only_if_strict=*/true); !s) return s;
    if (auto s = raiseSysctl("net/ipv4/conf/all/arp_ignore", 1); !s) return s;
    if (auto s = raiseSysctl("net/ipv4/conf/all/arp_announce", 2); !s) return s;

    nft::HostRules rules;
    rules.vips = cfg.subnets;
    rules.tunnel_peers = tunnelSources(cfg);
    rules.tunnel_device = tunnel_device_;
    LOG_INFO("setup", "nftables: table inet " + rules.table + ", VIP traffic only via " +
                          tunnel_device_ + ", tunnels only from the configured SLRs");
    if (auto s = nft::applyHostRules(rules); !s) return s;
    std::string table = rules.table;
    onUndo("delete nftables table inet " + table, [table] {
      if (auto s = nft::deleteTable(table); !s)
        LOG_WARN("setup", "delete nft table " + table + ": " + s.error().message());
    });

    auto lo = nl::linkIndex("lo");
    if (!lo) return lo.error();
    for (const Prefix& p : cfg.subnets) {
      nl::RouteSpec r;
      r.dst = p;
      r.ifindex = *lo;
      r.type = RTN_LOCAL;
      r.table = RT_TABLE_LOCAL;
      r.replace = true;  // a leftover from a crashed run is taken over, then removed
      LOG_INFO("setup", "route: local " + p.str() + " dev lo table local");
      if (auto s = nl::addRoute(r); !s) return s;
      onUndo("delete route local " + p.str() + " dev lo table local", [r] {
        nl::RouteSpec d = r;
        d.replace = false;
        if (auto s = nl::delRoute(d); !s)
          LOG_WARN("setup", "delete local route " + d.dst.str() + ": " + s.error().message());
      });
    }
    return Ok{};
  };
  Status s = run();
  if (!s) teardown();
  return s;
}

}  // namespace slr::host
