#include "hostagent/kernel_decap.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <net/if.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

// The BPF object, embedded by hostagent/bpf/CMakeLists.txt.
extern "C" {
extern const unsigned char slr_decap_bpf[];
extern const unsigned char slr_decap_bpf_end[];
}

namespace slr::host {
namespace {

constexpr const char* kLog = "decap";
constexpr const char* kProgName = "slr_decap";

// Mirrors hostagent/bpf/decap.bpf.c.
enum Counter : uint32_t { kPackets, kBytes, kPassed, kPassedTunnel, kCounterCount };
struct SubnetKey {
  uint32_t prefixlen;
  uint8_t addr[4];  // network order
};
static_assert(sizeof(SubnetKey) == 8);

}  // namespace

std::pair<const unsigned char*, size_t> KernelDecap::embeddedObject() {
  return {slr_decap_bpf, size_t(slr_decap_bpf_end - slr_decap_bpf)};
}

Result<std::unique_ptr<KernelDecap>> KernelDecap::attach(const std::vector<std::string>& uplinks,
                                                         const IpAddress& tunnel_address,
                                                         const std::vector<IpAddress>& slr_sources,
                                                         const std::vector<Prefix>& subnets,
                                                         const std::string& tun_device) {
  bpf::routeLibbpfLogs();
  const std::string op = "kernel decap: ";
  if (uplinks.empty()) return Error{EINVAL, op + "attach", "no uplink interfaces given"};
  if (!tunnel_address.isV4())
    return Error{EAFNOSUPPORT, op + "attach", "tunnel_address " + tunnel_address.str() + " is not IPv4"};

  std::vector<IpAddress> sources;
  for (const IpAddress& a : slr_sources)
    if (a.isV4() && std::find(sources.begin(), sources.end(), a) == sources.end()) sources.push_back(a);
  std::vector<Prefix> nets;
  for (const Prefix& p : subnets)
    if (p.addr.isV4() && p.len <= 32) nets.push_back(p);
  // Nothing could ever be accepted: say so rather than attach a no-op.
  if (sources.empty()) return Error{EINVAL, op + "attach", "no IPv4 SLR tunnel source"};
  if (nets.empty()) return Error{EINVAL, op + "attach", "no IPv4 subnet"};

  std::unique_ptr<KernelDecap> kd(new KernelDecap());
  const int tun_ifindex = int(if_nametoindex(tun_device.c_str()));
  if (tun_ifindex == 0) return sysError(op + "TUN device " + tun_device);
  std::vector<int> ifindexes;
  for (const std::string& name : uplinks) {
    if (int(if_nametoindex(name.c_str())) == tun_ifindex)
      return Error{EINVAL, op + "interface " + name, "is the TUN device itself"};
    auto ifindex = bpf::ethernetIfindex(name);
    if (!ifindex) return bpf::withPrefix(op, ifindex.error());
    ifindexes.push_back(*ifindex);
    kd->names_.push_back(name);
  }

  bpf::LogCapture log(kLog);
  const auto [data, size] = embeddedObject();
  auto obj = bpf::openEmbedded({data, size}, kProgName, log);
  if (!obj) return bpf::withPrefix(op, obj.error());
  kd->obj_ = std::move(*obj);
  bpf_map* src_map = bpf_object__find_map_by_name(kd->obj_.get(), "sources");
  bpf_map* net_map = bpf_object__find_map_by_name(kd->obj_.get(), "subnets");
  if (src_map == nullptr || net_map == nullptr)
    return Error{ENOENT, op + "find maps sources/subnets", "not in the BPF object"};
  if (bpf_map__key_size(src_map) != 4 || bpf_map__key_size(net_map) != sizeof(SubnetKey))
    return Error{EINVAL, op + "check maps", "key sizes differ from the userspace mirrors"};
  if (int rc = bpf_map__set_max_entries(src_map, uint32_t(sources.size())); rc != 0)
    return bpf::bpfError(op + "set max_entries of map sources", rc);
  if (int rc = bpf_map__set_max_entries(net_map, uint32_t(nets.size())); rc != 0)
    return bpf::bpfError(op + "set max_entries of map subnets", rc);
  uint32_t tunnel_be;
  std::memcpy(&tunnel_be, tunnel_address.bytes.data(), 4);  // stays network order
  if (auto st = bpf::setRodataU32(kd->obj_.get(),
                                  {{"tunnel_address", tunnel_be}, {"tun_ifindex", uint32_t(tun_ifindex)}});
      !st)
    return bpf::withPrefix(op, st.error());

  if (int rc = bpf_object__load(kd->obj_.get()); rc != 0)
    return bpf::bpfError(op + "load BPF object (verifier)", rc, log.text());

  // The acceptance rule, before anything is attached.
  const uint8_t one = 1;
  for (const IpAddress& a : sources) {
    if (bpf_map_update_elem(bpf_map__fd(src_map), a.bytes.data(), &one, BPF_ANY) != 0)
      return sysError(op + "add SLR tunnel source " + a.str());
  }
  for (const Prefix& p : nets) {
    SubnetKey k{};
    k.prefixlen = p.len;
    std::memcpy(k.addr, p.addr.bytes.data(), 4);
    if (bpf_map_update_elem(bpf_map__fd(net_map), &k, &one, BPF_ANY) != 0)
      return sysError(op + "add subnet " + p.str());
  }

  auto prog_fd = bpf::programFd(kd->obj_.get(), kProgName);
  if (!prog_fd) return bpf::withPrefix(op, prog_fd.error());
  kd->counters_fd_ = bpf_object__find_map_fd_by_name(kd->obj_.get(), "counters");
  if (kd->counters_fd_ < 0) return Error{ENOENT, op + "find map counters", ""};

  const std::string note = "tunnels to " + tunnel_address.str() + " -> ingress of " + tun_device;
  for (size_t i = 0; i < uplinks.size(); ++i) {
    auto hook = bpf::TcIngress::attach(ifindexes[i], uplinks[i], *prog_fd, kLog, log, note);
    if (!hook) return bpf::withPrefix(op, hook.error());
    kd->hooks_.push_back(std::move(*hook));
  }
  return kd;
}

KernelDecap::~KernelDecap() = default;

KernelDecap::Stats KernelDecap::stats() const {
  Stats s;
  const std::vector<uint64_t> c = bpf::sumPerCpuU64(counters_fd_, kCounterCount);
  s.packets = c[kPackets];
  s.bytes = c[kBytes];
  s.passed = c[kPassed];
  s.passed_tunnel = c[kPassedTunnel];
  return s;
}

}  // namespace slr::host
