#include "core/log.h"

#include <ctime>
#include <mutex>

namespace slr::log {
namespace {
std::atomic<int> g_threshold{static_cast<int>(Level::kInfo)};
std::mutex g_write_mu;  // control-plane only: keeps lines whole
const char* name(Level l) {
  switch (l) {
    case Level::kTrace: return "trace";
    case Level::kDebug: return "debug";
    case Level::kInfo: return "info";
    case Level::kWarn: return "warn";
    case Level::kError: return "error";
  }
  return "?";
}
}  // namespace

Level threshold() { return static_cast<Level>(g_threshold.load(std::memory_order_relaxed)); }
void setThreshold(Level l) { g_threshold.store(static_cast<int>(l), std::memory_order_relaxed); }

bool parseLevel(std::string_view s, Level& out) {
  static constexpr std::pair<std::string_view, Level> kNames[] = {
      {"trace", Level::kTrace}, {"debug", Level::kDebug}, {"info", Level::kInfo},
      {"warn", Level::kWarn},   {"error", Level::kError}};
  for (auto& [n, l] : kNames) {
    if (n == s) {
      out = l;
      return true;
    }
  }
  return false;
}

void write(Level l, std::string_view component, std::string_view msg) {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  tm t{};
  gmtime_r(&ts.tv_sec, &t);
  char when[32];
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &t);
  std::lock_guard lk(g_write_mu);
  std::fprintf(stderr, "%s.%03ldZ %-5s %.*s: %.*s\n", when, ts.tv_nsec / 1000000, name(l),
               int(component.size()), component.data(), int(msg.size()), msg.data());
  std::fflush(stderr);
}

}  // namespace slr::log
