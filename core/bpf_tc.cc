#include "core/bpf_tc.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "core/fd.h"
#include "core/log.h"

namespace slr::bpf {
namespace {

constexpr const char* kDefaultComponent = "libbpf";

// The LogCapture alive on this thread, if any.
thread_local std::string* g_capture = nullptr;
thread_local const char* g_component = nullptr;

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
  const char* component = g_component != nullptr ? g_component : kDefaultComponent;
  if (level == LIBBPF_DEBUG) {
    LOG_TRACE(component, msg);
  } else {
    LOG_DEBUG(component, msg);
  }
  return 0;
}

Result<bool> isEthernet(const std::string& name) {
  UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!s) return sysError("socket(AF_INET, SOCK_DGRAM) for SIOCGIFHWADDR");
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  if (::ioctl(s.get(), SIOCGIFHWADDR, &ifr) != 0) return sysError("SIOCGIFHWADDR " + name);
  return ifr.ifr_hwaddr.sa_family == ARPHRD_ETHER;
}

bpf_tc_hook ingressHook(int ifindex) {
  bpf_tc_hook hook{};
  hook.sz = sizeof hook;
  hook.ifindex = ifindex;
  hook.attach_point = BPF_TC_INGRESS;
  return hook;
}

}  // namespace

void ObjectCloser::operator()(bpf_object* obj) const { bpf_object__close(obj); }

void routeLibbpfLogs() {
  static std::once_flag once;
  std::call_once(once, [] { libbpf_set_print(libbpfPrint); });
}

LogCapture::LogCapture(const char* component) : component_(component) {
  g_capture = &text_;
  g_component = component_;
}

LogCapture::~LogCapture() {
  g_capture = nullptr;
  g_component = nullptr;
}

std::string libbpfError(int err) {
  char buf[256];
  if (libbpf_strerror(err, buf, sizeof buf) != 0) std::snprintf(buf, sizeof buf, "error %d", err);
  return buf;
}

Error bpfError(std::string op, int err, std::string extra) {
  err = err < 0 ? -err : err;
  std::string detail = libbpfError(-err);
  if (!extra.empty()) detail += "; " + extra;
  // libbpf-specific codes (>= 4000) are not errnos.
  return Error{err < 4000 ? err : 0, std::move(op), std::move(detail)};
}

Error withPrefix(const std::string& prefix, Error e) {
  e.op = prefix + e.op;
  return e;
}

Result<Object> openEmbedded(std::span<const unsigned char> data, const char* object_name,
                            const LogCapture& log) {
  bpf_object_open_opts open_opts{};
  open_opts.sz = sizeof open_opts;
  open_opts.object_name = object_name;
  Object obj(bpf_object__open_mem(data.data(), data.size(), &open_opts));
  if (!obj) {
    const int err = errno;
    return bpfError("open embedded BPF object", err, log.text());
  }
  return Result<Object>(std::move(obj));
}

Status setRodataU32(bpf_object* obj, const std::vector<std::pair<const char*, uint32_t>>& vars) {
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

Result<int> programFd(bpf_object* obj, const char* name) {
  bpf_program* prog = bpf_object__find_program_by_name(obj, name);
  if (prog == nullptr) return Error{ENOENT, std::string("find program ") + name, ""};
  return bpf_program__fd(prog);
}

std::vector<uint64_t> sumPerCpuU64(int map_fd, uint32_t count) {
  std::vector<uint64_t> sums(count, 0);
  const int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0 || map_fd < 0) return sums;
  std::vector<uint64_t> per_cpu(static_cast<size_t>(ncpu));
  for (uint32_t idx = 0; idx < count; ++idx) {
    if (bpf_map_lookup_elem(map_fd, &idx, per_cpu.data()) != 0) continue;
    for (uint64_t v : per_cpu) sums[idx] += v;
  }
  return sums;
}

Result<int> ethernetIfindex(const std::string& name) {
  const int ifindex = int(if_nametoindex(name.c_str()));
  if (ifindex == 0) return sysError("interface " + name);
  auto eth = isEthernet(name);
  if (!eth) return eth.error();
  if (!*eth)
    return Error{EINVAL, "interface " + name, "not an Ethernet device (the program expects a MAC header)"};
  return ifindex;
}

Result<TcIngress> TcIngress::attach(int ifindex, std::string name, int prog_fd, const char* log_component,
                                    const LogCapture& log, std::string_view note) {
  TcIngress t;
  t.ifindex_ = ifindex;
  t.name_ = std::move(name);
  t.log_component_ = log_component;
  bpf_tc_hook hook = ingressHook(ifindex);
  int rc = bpf_tc_hook_create(&hook);
  if (rc != 0 && rc != -EEXIST) return bpfError("create clsact qdisc on " + t.name_, rc, log.text());
  t.created_qdisc_ = rc == 0;
  bpf_tc_opts opts{};
  opts.sz = sizeof opts;
  opts.prog_fd = prog_fd;
  rc = bpf_tc_attach(&hook, &opts);
  // On failure `t` removes the qdisc it created.
  if (rc != 0) return bpfError("attach tc ingress filter on " + t.name_, rc, log.text());
  t.handle_ = opts.handle;
  t.priority_ = opts.priority;
  t.attached_ = true;
  std::string msg = "attached to " + t.name_ + " ingress (tc handle " + std::to_string(t.handle_) +
                    ", priority " + std::to_string(t.priority_) + ")";
  if (!note.empty()) msg += ": " + std::string(note);
  LOG_INFO(t.log_component_, msg);
  return Result<TcIngress>(std::move(t));
}

TcIngress::TcIngress(TcIngress&& o) noexcept
    : ifindex_(o.ifindex_),
      name_(std::move(o.name_)),
      log_component_(o.log_component_),
      created_qdisc_(std::exchange(o.created_qdisc_, false)),
      attached_(std::exchange(o.attached_, false)),
      handle_(o.handle_),
      priority_(o.priority_) {}

TcIngress& TcIngress::operator=(TcIngress&& o) noexcept {
  if (this != &o) {
    release();
    ifindex_ = o.ifindex_;
    name_ = std::move(o.name_);
    log_component_ = o.log_component_;
    created_qdisc_ = std::exchange(o.created_qdisc_, false);
    attached_ = std::exchange(o.attached_, false);
    handle_ = o.handle_;
    priority_ = o.priority_;
  }
  return *this;
}

TcIngress::~TcIngress() { release(); }

void TcIngress::release() {
  bpf_tc_hook hook = ingressHook(ifindex_);
  if (attached_) {
    bpf_tc_opts opts{};
    opts.sz = sizeof opts;
    opts.handle = handle_;
    opts.priority = priority_;
    // Fails harmlessly when the interface is already gone.
    if (int rc = bpf_tc_detach(&hook, &opts); rc != 0)
      LOG_DEBUG(log_component_, "detach from " + name_ + ": " + libbpfError(rc));
    else
      LOG_INFO(log_component_, "detached from " + name_ + " ingress");
    attached_ = false;
  }
  if (created_qdisc_) {
    // Both directions: that is what deletes the clsact qdisc itself.
    hook.attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS);
    if (int rc = bpf_tc_hook_destroy(&hook); rc != 0)
      LOG_DEBUG(log_component_, "remove clsact qdisc from " + name_ + ": " + libbpfError(rc));
    created_qdisc_ = false;
  }
}

}  // namespace slr::bpf
