#include "hostagent/load.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "core/fd.h"
#include "core/protocol.h"
#include "core/sock_diag.h"
#include "hostagent/shell.h"

namespace slr::host {
namespace {

bool isSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && isSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && isSpace(s.back())) s.remove_suffix(1);
  return s;
}

std::string quoted(std::string_view s) {
  std::string out = "\"";
  for (char c : s.substr(0, 40)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > 40) out += "...";
  return out + "\"";
}

}  // namespace

std::optional<double> parseLoadNumber(std::string_view text, std::string* why) {
  auto nl = text.find('\n');
  if (nl != std::string_view::npos) text = text.substr(0, nl);
  std::string_view t = trim(text);
  auto fail = [&](std::string reason) -> std::optional<double> {
    if (why) *why = std::move(reason);
    return std::nullopt;
  };
  if (t.empty()) return fail("expected a number, got an empty line");
  double v = 0;
  // from_chars accepts no leading '+'; operators may write one.
  std::string_view num = t.front() == '+' ? t.substr(1) : t;
  auto [end, ec] = std::from_chars(num.data(), num.data() + num.size(), v);
  if (ec != std::errc() || end != num.data() + num.size())
    return fail("expected a decimal number, got " + quoted(t));
  if (!std::isfinite(v)) return fail("expected a finite number, got " + quoted(t));
  if (v < 0) return fail("expected a number >= 0, got " + quoted(t));
  if (v > proto::kMaxLoad) return fail("expected a number <= 4294.967295, got " + quoted(t));
  return v;
}

std::optional<CpuTimes> parseProcStat(std::string_view content) {
  while (!content.empty()) {
    auto nl = content.find('\n');
    std::string_view line = content.substr(0, nl);
    content = nl == std::string_view::npos ? std::string_view{} : content.substr(nl + 1);
    if (line.size() < 4 || line.substr(0, 4) != "cpu ") continue;
    line.remove_prefix(4);
    // user nice system idle iowait irq softirq steal guest guest_nice
    uint64_t f[8] = {};
    int n = 0;
    while (n < 8) {
      line = trim(line);
      if (line.empty()) break;
      uint64_t v = 0;
      auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), v);
      if (ec != std::errc()) return std::nullopt;
      f[n++] = v;
      line.remove_prefix(size_t(end - line.data()));
      if (!line.empty() && !isSpace(line.front())) return std::nullopt;
    }
    if (n < 4) return std::nullopt;
    CpuTimes t;
    t.busy = f[0] + f[1] + f[2] + f[5] + f[6] + f[7];
    t.total = t.busy + f[3] + f[4];
    return t;
  }
  return std::nullopt;
}

std::optional<double> cpuLoadBetween(const CpuTimes& prev, const CpuTimes& cur) {
  if (cur.total <= prev.total || cur.busy < prev.busy) return std::nullopt;
  double busy = double(cur.busy - prev.busy);
  double total = double(cur.total - prev.total);
  double v = busy / total;
  return v < 0 ? 0.0 : (v > 1 ? 1.0 : v);
}

double connectionLoad(uint64_t established, uint32_t max_connections) {
  if (max_connections == 0) max_connections = 1;
  double v = double(established) / double(max_connections);
  return v > proto::kMaxLoad ? proto::kMaxLoad : v;
}

Result<std::string> readSmallFile(const std::string& path, size_t limit) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return sysError("open " + path);
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return sysError("read " + path);
    }
    if (n == 0) break;
    out.append(buf, size_t(n));
    if (out.size() > limit) return sysError("read " + path, EFBIG);
  }
  return out;
}

Result<std::string> runCommandFirstLine(const std::string& command,
                                        std::chrono::milliseconds timeout) {
  auto out = runCommandOutput(command, timeout, 4096);
  if (!out) return out.error();
  auto nl = out->find('\n');
  if (nl != std::string::npos) out->resize(nl);
  return out;
}

Result<std::string> runCommandOutput(const std::string& command, std::chrono::milliseconds timeout,
                                     size_t limit) {
  const std::string op = "command `" + command + "`";
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) < 0) return sysError(op + ": pipe");
  UniqueFd rd(pipefd[0]), wr(pipefd[1]);

  auto spawned = spawnShell(command, wr.get());
  if (!spawned) return sysError(op + ": " + spawned.error().op, spawned.error().code);
  const pid_t pid = *spawned;
  wr.reset();

  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string out;
  bool timed_out = false;
  char buf[1024];
  // Read until EOF; keep at most a few KiB (only the first line matters).
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{rd.get(), POLLIN, 0};
    int r = ::poll(&p, 1, int(left.count()));
    if (r < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (r == 0) {
      timed_out = true;
      break;
    }
    ssize_t n = ::read(rd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (out.size() < limit) out.append(buf, std::min(size_t(n), limit - out.size()));
  }
  if (timed_out) ::kill(-pid, SIGKILL);
  int wstatus = 0;
  while (::waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  if (timed_out)
    return sysError(op, ETIMEDOUT, "timed out after " + std::to_string(timeout.count()) + "ms");
  if (WIFSIGNALED(wstatus))
    return sysError(op, 0, "killed by signal " + std::to_string(WTERMSIG(wstatus)));
  if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) != 0)
    return sysError(op, 0, "exited with status " + std::to_string(WEXITSTATUS(wstatus)));
  return out;
}

Result<uint64_t> countVipConnections(const std::vector<Prefix>& subnets) {
  return diag::countEstablished(subnets);
}

LoadMeter::LoadMeter(config::LoadConfig cfg, std::vector<Prefix> subnets,
                     std::chrono::milliseconds command_timeout)
    : cfg_(std::move(cfg)), subnets_(std::move(subnets)), command_timeout_(command_timeout) {}

Status LoadMeter::sample() {
  switch (cfg_.source) {
    case config::LoadSource::kCpu: {
      auto content = readSmallFile("/proc/stat");
      if (!content) return content.error();
      auto cur = parseProcStat(*content);
      if (!cur) return sysError("load cpu: parse /proc/stat", 0, "no usable \"cpu \" line");
      std::optional<double> v;
      if (prev_cpu_) v = cpuLoadBetween(*prev_cpu_, *cur);
      prev_cpu_ = cur;
      // The first reading (or a tick-less interval) has no delta: not an
      // error, the previous value simply stands.
      if (v) value_ = *v;
      return Ok{};
    }
    case config::LoadSource::kConnections: {
      auto n = countVipConnections(subnets_);
      if (!n) return n.error();
      value_ = connectionLoad(*n, cfg_.max_connections);
      return Ok{};
    }
    case config::LoadSource::kFile: {
      auto content = readSmallFile(cfg_.file, 4096);
      if (!content) return content.error();
      std::string why;
      auto v = parseLoadNumber(*content, &why);
      if (!v) return sysError("load file " + cfg_.file, 0, why);
      value_ = *v;
      return Ok{};
    }
    case config::LoadSource::kCommand: {
      auto line = runCommandFirstLine(cfg_.command, command_timeout_);
      if (!line) return line.error();
      std::string why;
      auto v = parseLoadNumber(*line, &why);
      if (!v) return sysError("command `" + cfg_.command + "`", 0, "stdout: " + why);
      value_ = *v;
      return Ok{};
    }
  }
  return Ok{};
}

}  // namespace slr::host
