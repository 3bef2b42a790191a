#include "hostagent/kernel_decap.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "core/fd.h"
#include "core/log.h"

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
enum Counter : uint32_t { kPackets, kBytes, kPassed, kPassedTunnel };
struct SubnetKey {
  uint32_t prefixlen;
  uint8_t addr[4];  // network order
};
static_assert(sizeof(SubnetKey) == 8);

// libbpf prints to stderr by default; route it to our log.  While attach()
// runs, warnings are also kept so a load failure can say why (the verifier
// log arrives as one warning).
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

// libbpf has one global printer.  The host agent process has no other
// libbpf user; in one process with the SLR fast path (unit_tests) the last
// installer wins, which only moves messages between log components.
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

Result<bool> isEthernet(const std::string& name) {
  UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!s) return sysError("socket(AF_INET, SOCK_DGRAM) for SIOCGIFHWADDR");
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  if (::ioctl(s.get(), SIOCGIFHWADDR, &ifr) != 0) return sysError("SIOCGIFHWADDR " + name);
  return ifr.ifr_hwaddr.sa_family == ARPHRD_ETHER;
}

// Sets the `const volatile` u32 variables of the object's .rodata before
// load, found through BTF so nothing depends on the section's layout.
Status setRodata(bpf_object* obj, const std::vector<std::pair<const char*, uint32_t>>& vars) {
  bpf_map* rodata = nullptr;
  bpf_map* m = nullptr;
  bpf_object__for_each_map(m, obj) {
    const char* mn = bpf_map__name(m);
    size_t len = std::strlen(mn);
    if (bpf_map__is_internal(m) && len >= 7 && std::strcmp(mn + len - 7, ".rodata") == 0) rodata = m;
  }
  const btf* b = bpf_object__btf(obj);
  if (rodata == nullptr || b == nullptr)
    return Error{0, "set .rodata", "object has no .rodata section or no BTF"};
  int sec_id = btf__find_by_name_kind(b, ".rodata", BTF_KIND_DATASEC);
  if (sec_id < 0) return Error{0, "set .rodata", "no .rodata in BTF"};
  size_t size = 0;
  const auto* cur = static_cast<const unsigned char*>(bpf_map__initial_value(rodata, &size));
  if (cur == nullptr) return Error{0, "set .rodata", "no initial value"};
  std::vector<unsigned char> data(cur, cur + size);
  const btf_type* sec = btf__type_by_id(b, uint32_t(sec_id));
  for (const auto& [name, value] : vars) {
    const btf_var_secinfo* vs = btf_var_secinfos(sec);
    bool found = false;
    for (unsigned i = 0; i < btf_vlen(sec); ++i, ++vs) {
      const btf_type* var = btf__type_by_id(b, vs->type);
      if (std::strcmp(btf__name_by_offset(b, var->name_off), name) != 0) continue;
      if (vs->size != sizeof value || vs->offset + sizeof value > size)
        return Error{0, std::string("set ") + name, "unexpected size or offset"};
      std::memcpy(data.data() + vs->offset, &value, sizeof value);
      found = true;
      break;
    }
    if (!found) return Error{0, std::string("set ") + name, "variable not found in .rodata"};
  }
  if (int rc = bpf_map__set_initial_value(rodata, data.data(), data.size()); rc != 0)
    return bpfError("set .rodata", rc);
  return Ok{};
}

}  // namespace

std::pair<const unsigned char*, size_t> KernelDecap::embeddedObject() {
  return {slr_decap_bpf, size_t(slr_decap_bpf_end - slr_decap_bpf)};
}

Result<std::unique_ptr<KernelDecap>> KernelDecap::attach(const std::vector<std::string>& uplinks,
                                                         const IpAddress& tunnel_address,
                                                         const std::vector<IpAddress>& slr_sources,
                                                         const std::vector<Prefix>& subnets,
                                                         const std::string& tun_device) {
  routeLibbpfLogs();
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
  for (const std::string& name : uplinks) {
    Hook h;
    h.name = name;
    h.ifindex = int(if_nametoindex(name.c_str()));
    if (h.ifindex == 0) return sysError(op + "interface " + name);
    if (h.ifindex == tun_ifindex)
      return Error{EINVAL, op + "interface " + name, "is the TUN device itself"};
    auto eth = isEthernet(name);
    if (!eth) return Error{eth.error().code, op + eth.error().op, eth.error().detail};
    if (!*eth)
      return Error{EINVAL, op + "interface " + name,
                   "not an Ethernet device (the program expects a MAC header)"};
    kd->hooks_.push_back(std::move(h));
    kd->names_.push_back(name);
  }

  std::string log;
  g_capture = &log;
  struct Uncapture {
    ~Uncapture() { g_capture = nullptr; }
  } uncapture;

  const auto [data, size] = embeddedObject();
  bpf_object_open_opts open_opts{};
  open_opts.sz = sizeof open_opts;
  open_opts.object_name = "slr_decap";
  kd->obj_ = bpf_object__open_mem(data, size, &open_opts);
  if (kd->obj_ == nullptr) {
    int err = errno;
    return bpfError(op + "open embedded BPF object", err, log);
  }
  bpf_map* src_map = bpf_object__find_map_by_name(kd->obj_, "sources");
  bpf_map* net_map = bpf_object__find_map_by_name(kd->obj_, "subnets");
  if (src_map == nullptr || net_map == nullptr)
    return Error{ENOENT, op + "find maps sources/subnets", "not in the BPF object"};
  if (bpf_map__key_size(src_map) != 4 || bpf_map__key_size(net_map) != sizeof(SubnetKey))
    return Error{EINVAL, op + "check maps", "key sizes differ from the userspace mirrors"};
  if (int rc = bpf_map__set_max_entries(src_map, uint32_t(sources.size())); rc != 0)
    return bpfError(op + "set max_entries of map sources", rc);
  if (int rc = bpf_map__set_max_entries(net_map, uint32_t(nets.size())); rc != 0)
    return bpfError(op + "set max_entries of map subnets", rc);
  uint32_t tunnel_be;
  std::memcpy(&tunnel_be, tunnel_address.bytes.data(), 4);  // stays network order
  if (auto st = setRodata(kd->obj_, {{"tunnel_address", tunnel_be}, {"tun_ifindex", uint32_t(tun_ifindex)}});
      !st)
    return Error{st.error().code, op + st.error().op, st.error().detail};

  if (int rc = bpf_object__load(kd->obj_); rc != 0)
    return bpfError(op + "load BPF object (verifier)", rc, log);

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

  bpf_program* prog = bpf_object__find_program_by_name(kd->obj_, kProgName);
  if (prog == nullptr) return Error{ENOENT, op + "find program " + kProgName, ""};
  const int prog_fd = bpf_program__fd(prog);
  kd->counters_fd_ = bpf_object__find_map_fd_by_name(kd->obj_, "counters");
  if (kd->counters_fd_ < 0) return Error{ENOENT, op + "find map counters", ""};

  for (Hook& h : kd->hooks_) {
    bpf_tc_hook hook{};
    hook.sz = sizeof hook;
    hook.ifindex = h.ifindex;
    hook.attach_point = BPF_TC_INGRESS;
    int rc = bpf_tc_hook_create(&hook);
    if (rc != 0 && rc != -EEXIST) return bpfError(op + "create clsact qdisc on " + h.name, rc, log);
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
                       ", priority " + std::to_string(h.priority) + "): tunnels to " +
                       tunnel_address.str() + " -> ingress of " + tun_device);
  }
  return kd;
}

void KernelDecap::detachAll() {
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
      else
        LOG_INFO(kLog, "detached from " + h.name + " ingress");
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

KernelDecap::~KernelDecap() {
  detachAll();
  if (obj_ != nullptr) bpf_object__close(obj_);
}

KernelDecap::Stats KernelDecap::stats() const {
  Stats s;
  const int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0 || counters_fd_ < 0) return s;
  std::vector<uint64_t> per_cpu(static_cast<size_t>(ncpu));
  auto sum = [&](uint32_t idx) -> uint64_t {
    if (bpf_map_lookup_elem(counters_fd_, &idx, per_cpu.data()) != 0) return 0;
    uint64_t t = 0;
    for (uint64_t v : per_cpu) t += v;
    return t;
  };
  s.packets = sum(kPackets);
  s.bytes = sum(kBytes);
  s.passed = sum(kPassed);
  s.passed_tunnel = sum(kPassedTunnel);
  return s;
}

}  // namespace slr::host
