#include "slr/fast_path.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "core/fd.h"

// The BPF object, embedded by slr/bpf/CMakeLists.txt.
extern "C" {
extern const unsigned char slr_fast_path_bpf[];
extern const unsigned char slr_fast_path_bpf_end[];
}

namespace slr::router {
namespace {

constexpr const char* kLog = "fastpath";
constexpr const char* kProgName = "slr_fast_path";

// Mirrors of the program's map layouts (slr/bpf/fast_path.bpf.c).
struct BpfFlowValue {
  uint32_t tunnel_dst;  // network order
  uint32_t tunnel_src;  // network order
  uint16_t host;
  uint16_t vip;
  uint8_t tcp_flags_seen;
  uint8_t pad[3];
  uint64_t last_seen_ns;
  uint64_t packets;
  uint64_t bytes;
};
static_assert(sizeof(BpfFlowValue) == 40);
static_assert(sizeof(FlowKey) == 40);

struct BpfObjectStats {
  uint64_t packets, bytes;
};

enum Counter : uint32_t { kForwarded, kBytes, kSlowPath, kFibFail, kTooBig, kCounterCount };

uint64_t monotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1'000'000'000u + uint64_t(ts.tv_nsec);
}

// The key exactly as the program builds it: IPv4 in the first 4 bytes, the
// rest and the padding zero.
FlowKey normalized(const FlowKey& key) {
  FlowKey k = key;
  std::fill(k.src.begin() + 4, k.src.end(), 0);
  std::fill(k.dst.begin() + 4, k.dst.end(), 0);
  k.pad[0] = k.pad[1] = 0;
  return k;
}

}  // namespace

std::pair<const unsigned char*, size_t> FastPath::embeddedObject() {
  return {slr_fast_path_bpf, size_t(slr_fast_path_bpf_end - slr_fast_path_bpf)};
}

bool FastPath::eligible(const FlowKey& key) {
  return key.family == Family::kV4 && (key.proto == IPPROTO_TCP || key.proto == IPPROTO_UDP);
}

Status FastPath::setTxChecksumOffload(const std::string& ifname, bool enabled) {
  const std::string op = std::string("ETHTOOL_STXCSUM ") + (enabled ? "on " : "off ") + ifname;
  UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!s) return sysError("socket(AF_INET, SOCK_DGRAM) for " + op);
  ethtool_value v{};
  v.cmd = ETHTOOL_STXCSUM;
  v.data = enabled ? 1 : 0;
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
  ifr.ifr_data = reinterpret_cast<char*>(&v);
  if (::ioctl(s.get(), SIOCETHTOOL, &ifr) != 0) return sysError(op);
  return Ok{};
}

Result<bool> FastPath::txChecksumOffload(const std::string& ifname) {
  const std::string op = "ETHTOOL_GTXCSUM " + ifname;
  UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!s) return sysError("socket(AF_INET, SOCK_DGRAM) for " + op);
  ethtool_value v{};
  v.cmd = ETHTOOL_GTXCSUM;
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
  ifr.ifr_data = reinterpret_cast<char*>(&v);
  if (::ioctl(s.get(), SIOCETHTOOL, &ifr) != 0) return sysError(op);
  return v.data != 0;
}

Result<bool> FastPath::supported() {
  bpf::routeLibbpfLogs();
  // r0 = 0; exit
  bpf_insn insns[2]{};
  insns[0].code = BPF_ALU64 | BPF_MOV | BPF_K;
  insns[1].code = BPF_JMP | BPF_EXIT;
  int fd = bpf_prog_load(BPF_PROG_TYPE_SCHED_CLS, "slr_probe", "GPL", insns, 2, nullptr);
  if (fd >= 0) {
    ::close(fd);
    return true;
  }
  int err = -fd;
  if (err == EPERM || err == EACCES || err == ENOSYS) return false;
  return bpf::bpfError("load a trivial BPF_PROG_TYPE_SCHED_CLS program", err);
}

Result<std::unique_ptr<FastPath>> FastPath::attach(const std::vector<std::string>& interfaces,
                                                   uint32_t tunnel_mtu, size_t max_flows,
                                                   size_t vip_count, size_t host_count,
                                                   uint32_t tunnel_source) {
  bpf::routeLibbpfLogs();
  const std::string op = "fast path: ";
  if (interfaces.empty()) return Error{EINVAL, op + "attach", "no interfaces given"};
  if (tunnel_mtu < 68 + 20 || tunnel_mtu > 65535)
    return Error{EINVAL, op + "attach", "tunnel MTU " + std::to_string(tunnel_mtu) + " out of range"};
  if (max_flows == 0 || max_flows > (size_t(1) << 28))
    return Error{EINVAL, op + "attach", "max_flows " + std::to_string(max_flows) + " out of range"};
  if (vip_count > 65536 || host_count > 65536)
    return Error{EINVAL, op + "attach", "more than 65536 VIP or host counter slots"};

  std::unique_ptr<FastPath> fp(new FastPath());
  fp->vip_count_ = vip_count;
  fp->host_count_ = host_count;
  fp->max_flows_ = max_flows;
  std::vector<int> ifindexes;
  for (const std::string& name : interfaces) {
    auto ifindex = bpf::ethernetIfindex(name);
    if (!ifindex) return bpf::withPrefix(op, ifindex.error());
    ifindexes.push_back(*ifindex);
  }

  bpf::LogCapture log(kLog);
  const auto [data, size] = embeddedObject();
  auto obj = bpf::openEmbedded({data, size}, kProgName, log);
  if (!obj) return bpf::withPrefix(op, obj.error());
  fp->obj_ = std::move(*obj);
  struct Sizing {
    const char* map;
    size_t entries;
  };
  // A zero-sized array map is not allowed: keep one unused slot.
  const Sizing sizes[] = {{"flows", max_flows},
                          {"vip_stats", std::max<size_t>(vip_count, 1)},
                          {"host_stats", std::max<size_t>(host_count, 1)}};
  for (const Sizing& s : sizes) {
    bpf_map* m = bpf_object__find_map_by_name(fp->obj_.get(), s.map);
    if (m == nullptr) return Error{ENOENT, op + "find map " + s.map, "not in the BPF object"};
    if (int rc = bpf_map__set_max_entries(m, uint32_t(s.entries)); rc != 0)
      return bpf::bpfError(op + "set max_entries of map " + s.map, rc);
  }
  bpf_map* flows = bpf_object__find_map_by_name(fp->obj_.get(), "flows");
  if (bpf_map__key_size(flows) != sizeof(FlowKey) ||
      bpf_map__value_size(flows) != sizeof(BpfFlowValue))
    return Error{EINVAL, op + "check map flows", "key/value size differs from FlowKey/BpfFlowValue"};
  if (auto st = bpf::setRodataU32(fp->obj_.get(), {{"tunnel_mtu", tunnel_mtu},
                                                    {"tunnel_source", htonl(tunnel_source)}});
      !st)
    return bpf::withPrefix(op, st.error());

  if (int rc = bpf_object__load(fp->obj_.get()); rc != 0)
    return bpf::bpfError(op + "load BPF object (verifier)", rc, log.text());

  auto prog_fd = bpf::programFd(fp->obj_.get(), kProgName);
  if (!prog_fd) return bpf::withPrefix(op, prog_fd.error());
  fp->flows_fd_ = bpf_map__fd(flows);
  fp->counters_fd_ = bpf_object__find_map_fd_by_name(fp->obj_.get(), "counters");
  fp->vip_fd_ = bpf_object__find_map_fd_by_name(fp->obj_.get(), "vip_stats");
  fp->host_fd_ = bpf_object__find_map_fd_by_name(fp->obj_.get(), "host_stats");
  if (fp->counters_fd_ < 0 || fp->vip_fd_ < 0 || fp->host_fd_ < 0)
    return Error{ENOENT, op + "find counter maps", ""};

  for (size_t i = 0; i < interfaces.size(); ++i) {
    auto hook = bpf::TcIngress::attach(ifindexes[i], interfaces[i], *prog_fd, kLog, log);
    if (!hook) return bpf::withPrefix(op, hook.error());
    fp->hooks_.push_back(std::move(*hook));
  }
  return fp;
}

FastPath::~FastPath() = default;

Status FastPath::add(const FlowKey& key, const FastPathFlow& flow) {
  auto added = install(key, flow, BPF_ANY);
  if (!added) return added.error();
  return Ok{};
}

Result<bool> FastPath::addIfAbsent(const FlowKey& key, const FastPathFlow& flow, bool counted) {
  auto r = install(key, flow, BPF_NOEXIST);
  if (r && *r && counted) flows_.fetch_sub(1, std::memory_order_relaxed);
  return r;
}

Result<bool> FastPath::install(const FlowKey& key, const FastPathFlow& flow, uint64_t flags) {
  if (!eligible(key)) return Error{EPROTONOSUPPORT, "fast path: add " + key.str(), "IPv4 TCP/UDP only"};
  if (flow.vip >= std::max<size_t>(vip_count_, 1) || flow.host >= std::max<size_t>(host_count_, 1))
    return Error{EINVAL, "fast path: add " + key.str(), "VIP or host slot out of range"};
  const FlowKey k = normalized(key);
  BpfFlowValue v{};
  v.tunnel_dst = htonl(flow.tunnel_dst);
  v.tunnel_src = htonl(flow.tunnel_src);
  v.host = flow.host;
  v.vip = flow.vip;
  // "Now" rather than 0, so a flow that has not seen a packet yet is not
  // taken as idle since boot.
  v.last_seen_ns = monotonicNs();
  // BPF_NOEXIST first, so only a new entry is counted; an existing one is
  // then replaced (BPF_ANY) or left alone (BPF_NOEXIST).
  if (bpf_map_update_elem(flows_fd_, &k, &v, BPF_NOEXIST) == 0) {
    flows_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  int err = errno;
  if (err == EEXIST && flags == BPF_NOEXIST) return false;
  if (err == EEXIST && bpf_map_update_elem(flows_fd_, &k, &v, BPF_EXIST) == 0) return false;
  if (err == EEXIST) err = errno;
  return sysError("fast path: add " + key.str(), err,
                  err == E2BIG ? "flow map full (" + std::to_string(max_flows_) + ")" : "");
}

Status FastPath::remove(const FlowKey& key) {
  if (!eligible(key)) return Ok{};
  const FlowKey k = normalized(key);
  if (bpf_map_delete_elem(flows_fd_, &k) == 0) {
    flows_.fetch_sub(1, std::memory_order_relaxed);
    return Ok{};
  }
  if (errno == ENOENT) return Ok{};
  return sysError("fast path: remove " + key.str());
}

Result<std::optional<FastPathActivity>> FastPath::activity(const FlowKey& key) const {
  if (!eligible(key)) return std::optional<FastPathActivity>{};
  const FlowKey k = normalized(key);
  BpfFlowValue v{};
  if (bpf_map_lookup_elem(flows_fd_, &k, &v) != 0) {
    if (errno == ENOENT) return std::optional<FastPathActivity>{};
    return sysError("fast path: look up " + key.str());
  }
  FastPathActivity a;
  a.last_seen_ms = uint32_t(v.last_seen_ns / 1'000'000u);
  a.tcp_flags = v.tcp_flags_seen;
  a.packets = v.packets;
  a.bytes = v.bytes;
  return std::optional<FastPathActivity>(a);
}

FastPathStats FastPath::stats() const {
  FastPathStats s;
  s.flows = flows_.load(std::memory_order_relaxed);
  const int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return s;
  const std::vector<uint64_t> c = bpf::sumPerCpuU64(counters_fd_, kCounterCount);
  s.packets = c[kForwarded];
  s.bytes = c[kBytes];
  s.slow_path = c[kSlowPath];
  s.fib_fail = c[kFibFail];
  s.too_big = c[kTooBig];

  std::vector<BpfObjectStats> objs(static_cast<size_t>(ncpu));
  auto objects = [&](int fd, size_t n, std::vector<std::pair<uint64_t, uint64_t>>& out) {
    out.assign(n, {0, 0});
    for (uint32_t i = 0; i < n; ++i) {
      if (bpf_map_lookup_elem(fd, &i, objs.data()) != 0) continue;
      for (const BpfObjectStats& o : objs) {
        out[i].first += o.packets;
        out[i].second += o.bytes;
      }
    }
  };
  objects(vip_fd_, vip_count_, s.vip);
  objects(host_fd_, host_count_, s.host);
  return s;
}

}  // namespace slr::router
