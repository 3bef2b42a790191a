#pragma once
// The libbpf plumbing shared by the kernel data paths that attach an
// embedded tc BPF program to the clsact ingress of interfaces (the SLR's
// fast path, slr/fast_path.h; the host's decapsulation,
// hostagent/kernel_decap.h): libbpf's messages into our log, opening an
// embedded object, errors with libbpf's reason and the verifier log's tail,
// and the attachment itself as a move-only RAII type.
//
// The objects are compiled and embedded by slr_embed_bpf() in the
// top-level CMakeLists.txt.
//
// Threads: libbpf has one global printer, installed once; a LogCapture
// keeps the messages of its own thread only.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/result.h"

struct bpf_object;

namespace slr::bpf {

struct ObjectCloser {
  void operator()(bpf_object* obj) const;
};
// An opened (and, once bpf_object__load() succeeded, loaded) BPF object.
using Object = std::unique_ptr<bpf_object, ObjectCloser>;

// Routes libbpf's messages (it prints to stderr by default) to our log:
// its debug output at trace level, everything else at debug level, under
// component "libbpf" unless a LogCapture names another.  Idempotent.
void routeLibbpfLogs();

// While alive, libbpf's warnings on this thread are also kept (the last
// 2 KiB: the verifier log arrives as one warning and its verdict is at the
// end), so a failure can say why, and all its messages on this thread are
// logged under `component`.  Not nestable.
class LogCapture {
 public:
  explicit LogCapture(const char* component);
  ~LogCapture();
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  const std::string& text() const { return text_; }

 private:
  const char* component_;
  std::string text_;
};

// libbpf_strerror() of a libbpf return value (negative errno or libbpf's
// own codes >= 4000).
std::string libbpfError(int err);
// An Error for a failed libbpf call: errno if it is one, libbpf's reason and
// `extra` (a LogCapture's text, say) in the detail.
Error bpfError(std::string op, int err, std::string extra = {});
// `e` with `prefix` in front of its operation ("fast path: ").
Error withPrefix(const std::string& prefix, Error e);

// Opens an object embedded in the binary (not loaded yet: maps can still be
// sized and .rodata set).
[[nodiscard]] Result<Object> openEmbedded(std::span<const unsigned char> data, const char* object_name,
                                          const LogCapture& log);

// Sets the `const volatile` u32 variables of the object's .rodata before
// load, found through BTF so nothing depends on the section's layout.
[[nodiscard]] Status setRodataU32(bpf_object* obj,
                                  const std::vector<std::pair<const char*, uint32_t>>& vars);

// The fd of loaded program `name`.
[[nodiscard]] Result<int> programFd(bpf_object* obj, const char* name);

// The sums over all CPUs of entries 0..count-1 of a per-CPU array of u64;
// entries that cannot be read (or all, when the CPU count is unknown) are 0.
std::vector<uint64_t> sumPerCpuU64(int map_fd, uint32_t count);

// The ifindex of interface `name`, which must be Ethernet-like (the
// programs expect a MAC header).
[[nodiscard]] Result<int> ethernetIfindex(const std::string& name);

// A program attached to the clsact ingress of one interface.  attach()
// creates the clsact qdisc if absent; destruction detaches the filter and
// removes the qdisc again only if attach() created it.
class TcIngress {
 public:
  // `log_component` names the module in our log; `note` (if any) is added
  // to the "attached" message.  Errors carry `log`'s text.
  [[nodiscard]] static Result<TcIngress> attach(int ifindex, std::string name, int prog_fd,
                                                const char* log_component, const LogCapture& log,
                                                std::string_view note = {});
  ~TcIngress();
  TcIngress(TcIngress&& o) noexcept;
  TcIngress& operator=(TcIngress&& o) noexcept;
  TcIngress(const TcIngress&) = delete;
  TcIngress& operator=(const TcIngress&) = delete;

  const std::string& name() const { return name_; }
  bool createdQdisc() const { return created_qdisc_; }

 private:
  TcIngress() = default;
  void release();

  int ifindex_ = 0;
  std::string name_;
  const char* log_component_ = "libbpf";
  bool created_qdisc_ = false;
  bool attached_ = false;
  uint32_t handle_ = 0, priority_ = 0;
};

}  // namespace slr::bpf
