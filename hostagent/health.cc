#include "hostagent/health.h"

#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/fd.h"
#include "core/log.h"
#include "hostagent/shell.h"

namespace slr::host {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr milliseconds kSlice{200};        // longest poll before re-checking stop
constexpr milliseconds kCommandTick{10};   // command wait without a pidfd
constexpr size_t kHttpHeadLimit = 4096;    // the status line must come within this

uint32_t msSince(Clock::time_point t) {
  return uint32_t(std::chrono::duration_cast<milliseconds>(Clock::now() - t).count());
}

// One check in flight: a small state machine driven by poll readiness (tcp,
// http) or child exit (command).
class CheckRun {
 public:
  explicit CheckRun(const config::HealthCheckConfig& c)
      : c_(c), started_(Clock::now()), deadline_(started_ + c.timeout) {}
  ~CheckRun() { abort(); }
  CheckRun(const CheckRun&) = delete;
  CheckRun& operator=(const CheckRun&) = delete;

  void begin() {
    if (c_.type == config::CheckType::kCommand)
      spawn();
    else
      connect();
  }

  bool done() const { return done_; }
  CheckOutcome outcome() const { return out_; }
  Clock::time_point deadline() const { return deadline_; }

  // What to poll: fd and events (fd -1 = nothing, wake up at tick()).
  int pollFd() const { return done_ ? -1 : fd_.get(); }
  short pollEvents() const { return phase_ == Phase::kConnecting || phase_ == Phase::kSending ? POLLOUT : POLLIN; }
  // Without a pidfd a running command is checked every kCommandTick.
  bool needsTick() const { return !done_ && c_.type == config::CheckType::kCommand && !fd_; }

  // Advances after poll: revents of pollFd() (0 = not ready: only the
  // deadline and, for commands, the child's exit are looked at).
  void step(short revents) {
    if (done_) return;
    switch (phase_) {
      case Phase::kConnecting:
        if (revents) onConnected();
        break;
      case Phase::kSending: onWritable(); break;
      case Phase::kReading: onReadable(); break;
      case Phase::kRunning: reapCommand(false); break;
      case Phase::kIdle: break;
    }
    if (!done_ && Clock::now() >= deadline_)
      fail("timed out after " + std::to_string(c_.timeout.count()) + "ms");
  }

 private:
  enum class Phase { kIdle, kConnecting, kSending, kReading, kRunning };

  void pass(std::string text) { finish(true, std::move(text)); }
  void fail(std::string why) { finish(false, "failed: " + why); }
  void finish(bool ok, std::string text) {
    if (done_) return;
    out_.pass = ok;
    out_.result = std::move(text);
    out_.ms = msSince(started_);
    done_ = true;
    abort();
  }
  // Releases what is in flight: the socket, or the command's process group.
  void abort() {
    fd_.reset();
    if (pid_ > 0) {
      ::kill(-pid_, SIGKILL);
      int ws;
      while (::waitpid(pid_, &ws, 0) < 0 && errno == EINTR) {
      }
      pid_ = -1;
    }
  }

  std::string target() const { return c_.address.str(); }

  void connect() {
    fd_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd_) return fail(std::string("socket: ") + std::strerror(errno));
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(c_.address.port);
    std::memcpy(&sa.sin_addr, c_.address.addr.bytes.data(), 4);
    phase_ = Phase::kConnecting;
    if (::connect(fd_.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) return onConnected();
    if (errno != EINPROGRESS) return fail("connect " + target() + ": " + std::strerror(errno));
  }

  void onConnected() {
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) return fail("connect " + target() + ": " + std::strerror(err));
    if (c_.type == config::CheckType::kTcp) return pass("ok");
    request_ = httpRequest(c_);
    phase_ = Phase::kSending;
    onWritable();
  }

  void onWritable() {
    while (sent_ < request_.size()) {
      ssize_t n = ::send(fd_.get(), request_.data() + sent_, request_.size() - sent_, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) return;  // poll POLLOUT again
        return fail("send to " + target() + ": " + std::strerror(errno));
      }
      sent_ += size_t(n);
    }
    phase_ = Phase::kReading;
  }

  void onReadable() {
    char buf[1024];
    for (;;) {
      ssize_t n = ::recv(fd_.get(), buf, sizeof buf, 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) return;
        return fail("read from " + target() + ": " + std::strerror(errno));
      }
      if (n == 0) {
        if (auto s = parseHttpStatus(head_)) return judge(*s);
        return fail("connection closed by " + target() + " before a complete HTTP status line");
      }
      head_.append(buf, size_t(n));
      if (auto s = parseHttpStatus(head_)) return judge(*s);
      if (head_.find('\n') != std::string::npos || head_.size() > kHttpHeadLimit)
        return fail("not an HTTP response from " + target());
    }
  }

  void judge(int status) {
    if (uint32_t(status) == c_.expect_status) return pass("ok: HTTP " + std::to_string(status));
    fail("HTTP " + std::to_string(status) + " from " + target() + c_.path + ", expected " +
         std::to_string(c_.expect_status));
  }

  void spawn() {
    auto pid = spawnShell(c_.command);
    if (!pid) return fail(pid.error().message());
    pid_ = *pid;
    phase_ = Phase::kRunning;
    // A pidfd becomes readable when the child exits (Linux >= 5.3); older
    // kernels fall back to checking every kCommandTick.
#ifdef SYS_pidfd_open
    int pfd = int(::syscall(SYS_pidfd_open, pid_, 0));
    if (pfd >= 0) fd_.reset(pfd);
#endif
    reapCommand(false);
  }

  void reapCommand(bool block) {
    int ws = 0;
    pid_t r;
    while ((r = ::waitpid(pid_, &ws, block ? 0 : WNOHANG)) < 0 && errno == EINTR) {
    }
    if (r == 0) return;  // still running
    pid_ = -1;
    if (r < 0) return fail(std::string("waitpid: ") + std::strerror(errno));
    if (WIFEXITED(ws) && WEXITSTATUS(ws) == 0) return pass("ok");
    if (WIFSIGNALED(ws)) return fail("killed by signal " + std::to_string(WTERMSIG(ws)));
    fail("exited with status " + std::to_string(WEXITSTATUS(ws)));
  }

  const config::HealthCheckConfig& c_;
  Clock::time_point started_, deadline_;
  Phase phase_ = Phase::kIdle;
  UniqueFd fd_;
  pid_t pid_ = -1;
  std::string request_;
  size_t sent_ = 0;
  std::string head_;
  bool done_ = false;
  CheckOutcome out_;
};

}  // namespace

// ---------------------------------------------------------------- pure ----

bool RiseFall::record(bool pass) {
  if (!known_) {
    known_ = true;
    healthy_ = pass;
    streak_ = 0;
    return pass;  // pending counted as unhealthy: only a pass changes anything
  }
  if (pass == healthy_) {
    streak_ = 0;
    return false;
  }
  if (++streak_ < (healthy_ ? fall_ : rise_)) return false;
  healthy_ = pass;
  streak_ = 0;
  return true;
}

std::optional<int> parseHttpStatus(std::string_view head) {
  auto eol = head.find('\n');
  if (eol == std::string_view::npos) return std::nullopt;
  std::string_view line = head.substr(0, eol);
  // "HTTP/1.x NNN[ reason]"
  if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." || line[8] != ' ') return std::nullopt;
  int code = 0;
  for (size_t i = 9; i < 12; ++i) {
    if (line[i] < '0' || line[i] > '9') return std::nullopt;
    code = code * 10 + (line[i] - '0');
  }
  if (line.size() > 12 && line[12] != ' ' && line[12] != '\r') return std::nullopt;
  return code;
}

std::string httpRequest(const config::HealthCheckConfig& c) {
  std::string host = c.host_header.empty() ? c.address.str() : c.host_header;
  return "GET " + c.path + " HTTP/1.0\r\nHost: " + host +
         "\r\nUser-Agent: slrctl-health\r\nConnection: close\r\n\r\n";
}

std::vector<bool> subnetAvailability(const std::vector<Prefix>& subnets,
                                     const std::vector<config::HealthCheckConfig>& checks,
                                     const std::vector<bool>& healthy, bool drained) {
  std::vector<bool> out(subnets.size(), !drained);
  if (drained) return out;
  for (size_t c = 0; c < checks.size(); ++c) {
    if (c < healthy.size() && healthy[c]) continue;
    for (size_t s = 0; s < subnets.size(); ++s) {
      const auto& cov = checks[c].subnets;
      if (cov.empty() || std::find(cov.begin(), cov.end(), subnets[s]) != cov.end()) out[s] = false;
    }
  }
  return out;
}

CheckOutcome runCheckOnce(const config::HealthCheckConfig& c) {
  CheckRun r(c);
  r.begin();
  while (!r.done()) {
    auto left = std::chrono::ceil<milliseconds>(r.deadline() - Clock::now());
    int wait = int(std::clamp<int64_t>(left.count(), 0, r.needsTick() ? kCommandTick.count() : INT32_MAX));
    pollfd p{r.pollFd(), r.pollEvents(), 0};
    if (::poll(&p, 1, wait) <= 0) p.revents = 0;
    r.step(p.revents);
  }
  return r.outcome();
}

// --------------------------------------------------------------- checker ----

struct HealthChecker::State {
  explicit State(const config::HealthCheckConfig& c) : hysteresis(c.rise, c.fall) {}
  RiseFall hysteresis;
  std::string last_result = "pending";
  uint32_t last_ms = 0;
  Clock::time_point since = Clock::now();
  uint64_t passes = 0, failures = 0;
};

HealthChecker::HealthChecker(std::vector<config::HealthCheckConfig> checks, OnChange on_change)
    : checks_(std::move(checks)), on_change_(std::move(on_change)) {
  for (const auto& c : checks_) st_.emplace_back(c);
}

HealthChecker::~HealthChecker() { stop(); }

void HealthChecker::start() {
  if (checks_.empty() || thread_.joinable()) return;
  stop_ = false;
  thread_ = std::thread([this] { run(); });
}

void HealthChecker::stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

std::vector<bool> HealthChecker::healthy() const {
  std::lock_guard lk(mu_);
  std::vector<bool> out;
  for (const auto& s : st_) out.push_back(s.hysteresis.healthy());
  return out;
}

std::vector<CheckSnapshot> HealthChecker::snapshot() const {
  std::lock_guard lk(mu_);
  std::vector<CheckSnapshot> out;
  auto now = Clock::now();
  for (size_t i = 0; i < checks_.size(); ++i) {
    const State& s = st_[i];
    CheckSnapshot c;
    c.name = checks_[i].name;
    c.type = std::string(config::checkTypeName(checks_[i].type));
    c.healthy = s.hysteresis.healthy();
    c.last_result = s.last_result;
    c.last_ms = s.last_ms;
    c.since_s = uint64_t(std::chrono::duration_cast<std::chrono::seconds>(now - s.since).count());
    c.passes = s.passes;
    c.failures = s.failures;
    out.push_back(std::move(c));
  }
  return out;
}

void HealthChecker::finish(size_t i, CheckOutcome o) {
  const auto& c = checks_[i];
  bool changed = false, healthy = false;
  std::string prev;
  {
    std::lock_guard lk(mu_);
    State& s = st_[i];
    bool was_known = s.hysteresis.known();
    changed = s.hysteresis.record(o.pass);
    healthy = s.hysteresis.healthy();
    (o.pass ? s.passes : s.failures)++;
    prev = s.last_result;
    s.last_result = o.result;
    s.last_ms = o.ms;
    if (changed || !was_known) s.since = Clock::now();
  }
  if (changed) {
    LOG_INFO("health", "check " + c.name + " (" + std::string(config::checkTypeName(c.type)) + ") is now " +
                           (healthy ? "healthy" : "UNHEALTHY") + ": " + o.result);
  } else if (!o.pass && o.result != prev) {
    // A failure not (yet) enough to flip the state: say so once per new reason.
    LOG_INFO("health", "check " + c.name + ": " + o.result);
  }
  if (changed && on_change_) on_change_();
}

void HealthChecker::run() {
  const size_t n = checks_.size();
  std::vector<std::unique_ptr<CheckRun>> runs(n);
  std::vector<Clock::time_point> next(n, Clock::now());  // first round at once
  std::vector<pollfd> pfds;
  std::vector<size_t> who;
  while (!stop_.load()) {
    auto now = Clock::now();
    for (size_t i = 0; i < n; ++i) {
      if (runs[i] || now < next[i]) continue;
      // Start to start: the schedule does not drift by the checks' duration.
      next[i] += checks_[i].interval;
      if (next[i] < now) next[i] = now + checks_[i].interval;
      runs[i] = std::make_unique<CheckRun>(checks_[i]);
      runs[i]->begin();
    }
    // Finished ones (at once, or after step()) report; the wait is until the
    // earliest deadline or next start.
    auto wake = now + kSlice;
    pfds.clear();
    who.clear();
    for (size_t i = 0; i < n; ++i) {
      if (runs[i] && runs[i]->done()) {
        finish(i, runs[i]->outcome());
        runs[i].reset();
      }
      if (!runs[i]) {
        wake = std::min(wake, next[i]);
        continue;
      }
      wake = std::min(wake, runs[i]->deadline());
      if (runs[i]->needsTick()) wake = std::min(wake, now + kCommandTick);
      if (runs[i]->pollFd() >= 0) {
        pfds.push_back({runs[i]->pollFd(), runs[i]->pollEvents(), 0});
        who.push_back(i);
      }
    }
    auto left = std::chrono::ceil<milliseconds>(wake - Clock::now());
    int r = ::poll(pfds.data(), nfds_t(pfds.size()), int(std::max<int64_t>(0, left.count())));
    if (r < 0 && errno != EINTR) {
      LOG_WARN("health", std::string("poll: ") + std::strerror(errno));
      std::this_thread::sleep_for(milliseconds(10));
    }
    // Step everything in flight: ready fds advance, the rest notice their
    // deadline or (commands without a pidfd) their exit.
    std::vector<short> rev(n, 0);
    if (r > 0)
      for (size_t k = 0; k < who.size(); ++k) rev[who[k]] = pfds[k].revents;
    for (size_t i = 0; i < n; ++i)
      if (runs[i]) runs[i]->step(rev[i]);
  }
  runs.clear();  // kills commands in flight
}

}  // namespace slr::host
