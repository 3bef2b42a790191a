#include "slr/fast_path.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "core/fd.h"
#include "core/log.h"

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

enum Counter : uint32_t { kForwarded, kBytes, kSlowPath, kFibFail, kTooBig };

// libbpf's messages go to our log at debug level (it is chatty and prints to
// stderr by default).  While attach() runs, warnings are also kept so a load
// failure can say why (the verifier log arrives as one warning).
thread_local std::string* g_capture = nullptr;

int libbpfPrint(enum libbpf_print_level level, const char* fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  char small[512];
  int n = std::vsnprintf(small, sizeof small, fmt, ap);
  std::string msg;
  if (n >= int(sizeof small)) {
    msg.resize(size_t(n) + 1);
    std::vsnprintf(msg.data(), msg.size(), fmt, ap2);
    msg.resize(size_t(n));
  } else if (n > 0) {
    msg.assign(small, size_t(n));
  }
  va_end(ap2);
  while (!msg.empty() && msg.back() == '\n') msg.pop_back();
  if (level <= LIBBPF_WARN && g_capture != nullptr) {
    if (!g_capture->empty()) g_capture->push_back('\n');
    *g_capture += msg;
    constexpr size_t kKeep = 2048;  // the verifier's verdict is at the end
    if (g_capture->size() > kKeep) g_capture->erase(0, g_capture->size() - kKeep);
  }
  if (level == LIBBPF_DEBUG) {
    LOG_TRACE(kLog, msg);
  } else {
    LOG_DEBUG(kLog, msg);
  }
  return 0;
}

void routeLibbpfLogs() {
  static std::once_flag once;
  std::call_once(once, [] { libbpf_set_print(libbpfPrint); });
}

std::string libbpfError(int err) {
  char buf[256];
  if (libbpf_strerror(err, buf, sizeof buf) != 0) std::snprintf(buf, sizeof buf, "error %d", err);
  return buf;
}

Error bpfError(std::string op, int err, std::string extra = {}) {
  err = err < 0 ? -err : err;
  std::string detail = libbpfError(-err);
  if (!extra.empty()) detail += "; " + extra;
  // libbpf-specific codes (>= 4000) are not errnos.
  return Error{err < 4000 ? err : 0, std::move(op), std::move(detail)};
}

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

Result<bool> isEthernet(const std::string& name) {
  UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!s) return sysError("socket(AF_INET, SOCK_DGRAM) for SIOCGIFHWADDR");
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  if (::ioctl(s.get(), SIOCGIFHWADDR, &ifr) != 0) return sysError("SIOCGIFHWADDR " + name);
  return ifr.ifr_hwaddr.sa_family == ARPHRD_ETHER;
}

// Sets `const volatile` variable `name` in the object's .rodata before load.
// Found through BTF so it does not depend on the section's layout.
Status setRodataU32(bpf_object* obj, const char* name, uint32_t value) {
  bpf_map* rodata = nullptr;
  bpf_map* m = nullptr;
  bpf_object__for_each_map(m, obj) {
    const char* mn = bpf_map__name(m);
    size_t len = std::strlen(mn);
    if (bpf_map__is_internal(m) && len >= 7 && std::strcmp(mn + len - 7, ".rodata") == 0) rodata = m;
  }
  const btf* b = bpf_object__btf(obj);
  if (rodata == nullptr || b == nullptr)
    return Error{0, std::string("set ") + name, "object has no .rodata section or no BTF"};
  int sec_id = btf__find_by_name_kind(b, ".rodata", BTF_KIND_DATASEC);
  if (sec_id < 0) return Error{0, std::string("set ") + name, "no .rodata in BTF"};
  const btf_type* sec = btf__type_by_id(b, uint32_t(sec_id));
  const btf_var_secinfo* vs = btf_var_secinfos(sec);
  for (unsigned i = 0; i < btf_vlen(sec); ++i, ++vs) {
    const btf_type* var = btf__type_by_id(b, vs->type);
    if (std::strcmp(btf__name_by_offset(b, var->name_off), name) != 0) continue;
    size_t size = 0;
    const auto* cur = static_cast<const unsigned char*>(bpf_map__initial_value(rodata, &size));
    if (cur == nullptr || vs->size != sizeof value || vs->offset + sizeof value > size)
      return Error{0, std::string("set ") + name, "unexpected size or offset"};
    std::vector<unsigned char> data(cur, cur + size);
    std::memcpy(data.data() + vs->offset, &value, sizeof value);
    if (int rc = bpf_map__set_initial_value(rodata, data.data(), data.size()); rc != 0)
      return bpfError(std::string("set ") + name, rc);
    return Ok{};
  }
  return Error{0, std::string("set ") + name, "variable not found in .rodata"};
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

Result<bool> FastPath::supported() {
  routeLibbpfLogs();
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
  return bpfError("load a trivial BPF_PROG_TYPE_SCHED_CLS program", err);
}

Result<std::unique_ptr<FastPath>> FastPath::attach(const std::vector<std::string>& interfaces,
                                                   uint32_t tunnel_mtu, size_t max_flows,
                                                   size_t vip_count, size_t host_count) {
  routeLibbpfLogs();
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
  for (const std::string& name : interfaces) {
    Hook h;
    h.name = name;
    h.ifindex = int(if_nametoindex(name.c_str()));
    if (h.ifindex == 0) return sysError(op + "interface " + name);
    auto eth = isEthernet(name);
    if (!eth) return Error{eth.error().code, op + eth.error().op, eth.error().detail};
    if (!*eth)
      return Error{EINVAL, op + "interface " + name,
                   "not an Ethernet device (the program expects a MAC header)"};
    fp->hooks_.push_back(std::move(h));
  }

  std::string log;
  g_capture = &log;
  struct Uncapture {
    ~Uncapture() { g_capture = nullptr; }
  } uncapture;

  const auto [data, size] = embeddedObject();
  bpf_object_open_opts open_opts{};
  open_opts.sz = sizeof open_opts;
  open_opts.object_name = "slr_fast_path";
  fp->obj_ = bpf_object__open_mem(data, size, &open_opts);
  if (fp->obj_ == nullptr) {
    int err = errno;
    fp->obj_ = nullptr;
    return bpfError(op + "open embedded BPF object", err, log);
  }
  struct Sizing {
    const char* map;
    size_t entries;
  };
  // A zero-sized array map is not allowed: keep one unused slot.
  const Sizing sizes[] = {{"flows", max_flows},
                          {"vip_stats", std::max<size_t>(vip_count, 1)},
                          {"host_stats", std::max<size_t>(host_count, 1)}};
  for (const Sizing& s : sizes) {
    bpf_map* m = bpf_object__find_map_by_name(fp->obj_, s.map);
    if (m == nullptr) return Error{ENOENT, op + "find map " + s.map, "not in the BPF object"};
    if (int rc = bpf_map__set_max_entries(m, uint32_t(s.entries)); rc != 0)
      return bpfError(op + "set max_entries of map " + s.map, rc);
  }
  bpf_map* flows = bpf_object__find_map_by_name(fp->obj_, "flows");
  if (bpf_map__key_size(flows) != sizeof(FlowKey) ||
      bpf_map__value_size(flows) != sizeof(BpfFlowValue))
    return Error{EINVAL, op + "check map flows", "key/value size differs from FlowKey/BpfFlowValue"};
  if (auto st = setRodataU32(fp->obj_, "tunnel_mtu", tunnel_mtu); !st)
    return Error{st.error().code, op + st.error().op, st.error().detail};

  if (int rc = bpf_object__load(fp->obj_); rc != 0)
    return bpfError(op + "load BPF object (verifier)", rc, log);

  bpf_program* prog = bpf_object__find_program_by_name(fp->obj_, kProgName);
  if (prog == nullptr) return Error{ENOENT, op + "find program " + kProgName, ""};
  const int prog_fd = bpf_program__fd(prog);
  fp->flows_fd_ = bpf_map__fd(flows);
  fp->counters_fd_ = bpf_object__find_map_fd_by_name(fp->obj_, "counters");
  fp->vip_fd_ = bpf_object__find_map_fd_by_name(fp->obj_, "vip_stats");
  fp->host_fd_ = bpf_object__find_map_fd_by_name(fp->obj_, "host_stats");
  if (fp->counters_fd_ < 0 || fp->vip_fd_ < 0 || fp->host_fd_ < 0)
    return Error{ENOENT, op + "find counter maps", ""};

  for (Hook& h : fp->hooks_) {
    bpf_tc_hook hook{};
    hook.sz = sizeof hook;
    hook.ifindex = h.ifindex;
    hook.attach_point = BPF_TC_INGRESS;
    int rc = bpf_tc_hook_create(&hook);
    if (rc != 0 && rc != -EEXIST)
      return bpfError(op + "create clsact qdisc on " + h.name, rc, log);
    h.created_qdisc = rc == 0;
    bpf_tc_opts opts{};
    opts.sz = sizeof opts;
    opts.prog_fd = prog_fd;
    rc = bpf_tc_attach(&hook, &opts);
    if (rc != 0) return bpfError(op + "attach tc ingress filter on " + h.name, rc, log);
    h.handle = opts.handle;
    h.priority = opts.priority;
    h.attached = true;
    LOG_INFO(kLog, "attached to " + h.name + " ingress (tc handle " + std::to_string(h.handle) +
                       ", priority " + std::to_string(h.priority) + ")");
  }
  return fp;
}

void FastPath::detachAll() {
  for (Hook& h : hooks_) {
    bpf_tc_hook hook{};
    hook.sz = sizeof hook;
    hook.ifindex = h.ifindex;
    hook.attach_point = BPF_TC_INGRESS;
    if (h.attached) {
      bpf_tc_opts opts{};
      opts.sz = sizeof opts;
      opts.handle = h.handle;
      opts.priority = h.priority;
      // Fails harmlessly when the interface is already gone.
      if (int rc = bpf_tc_detach(&hook, &opts); rc != 0)
        LOG_DEBUG(kLog, "detach from " + h.name + ": " + libbpfError(rc));
      h.attached = false;
    }
    if (h.created_qdisc) {
      // Both directions: that is what deletes the clsact qdisc itself.
      hook.attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS);
      if (int rc = bpf_tc_hook_destroy(&hook); rc != 0)
        LOG_DEBUG(kLog, "remove clsact qdisc from " + h.name + ": " + libbpfError(rc));
      h.created_qdisc = false;
    }
  }
}

FastPath::~FastPath() {
  detachAll();
  if (obj_ != nullptr) bpf_object__close(obj_);
}

Status FastPath::add(const FlowKey& key, const FastPathFlow& flow) {
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
  if (bpf_map_update_elem(flows_fd_, &k, &v, BPF_NOEXIST) == 0) {
    flows_.fetch_add(1, std::memory_order_relaxed);
    return Ok{};
  }
  int err = errno;
  if (err == EEXIST && bpf_map_update_elem(flows_fd_, &k, &v, BPF_EXIST) == 0) return Ok{};
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
  std::vector<uint64_t> per_cpu(static_cast<size_t>(ncpu));
  auto sum = [&](uint32_t idx) -> uint64_t {
    if (bpf_map_lookup_elem(counters_fd_, &idx, per_cpu.data()) != 0) return 0;
    uint64_t t = 0;
    for (uint64_t v : per_cpu) t += v;
    return t;
  };
  s.packets = sum(kForwarded);
  s.bytes = sum(kBytes);
  s.slow_path = sum(kSlowPath);
  s.fib_fail = sum(kFibFail);
  s.too_big = sum(kTooBig);

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
