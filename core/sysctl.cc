#include "core/sysctl.h"

#include <fcntl.h>
#include <unistd.h>

#include "core/fd.h"

namespace slr {

namespace {

std::string procPath(std::string_view path) {
  std::string p(path);
  if (p.rfind("/proc/sys/", 0) == 0) return p;
  if (p.find('/') == std::string::npos) {
    for (char& c : p) {
      if (c == '.') c = '/';
    }
  }
  while (!p.empty() && p.front() == '/') p.erase(p.begin());
  return "/proc/sys/" + p;
}

}  // namespace

Result<std::string> readSysctl(std::string_view path) {
  std::string p = procPath(path);
  UniqueFd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return sysError("read sysctl " + p);
  std::string out;
  char buf[512];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return sysError("read sysctl " + p);
    }
    if (n == 0) break;
    out.append(buf, size_t(n));
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ' || out.back() == '\t')) out.pop_back();
  return out;
}

Status writeSysctl(std::string_view path, std::string_view value) {
  std::string p = procPath(path);
  std::string what = "write sysctl " + p + " = " + std::string(value);
  UniqueFd fd(::open(p.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return sysError(what);
  std::string v(value);
  v += '\n';
  // procfs takes the value in one write; a short write means it was refused.
  ssize_t n = ::write(fd.get(), v.data(), v.size());
  if (n < 0) return sysError(what);
  if (size_t(n) != v.size()) return Error{EIO, what, "short write"};
  return Ok{};
}

}  // namespace slr
