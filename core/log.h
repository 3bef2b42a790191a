#pragma once
// Levelled, per-component logging to stderr (journald picks it up under
// systemd).  Never call on the packet path except through SLR_LOG_RATELIMITED.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <string_view>

namespace slr::log {

enum class Level : int { kTrace = 0, kDebug = 1, kInfo = 2, kWarn = 3, kError = 4 };

Level threshold();
void setThreshold(Level l);
// "trace" | "debug" | "info" | "warn" | "error"; false if unknown.
bool parseLevel(std::string_view s, Level& out);
void write(Level l, std::string_view component, std::string_view msg);

inline bool enabled(Level l) { return static_cast<int>(l) >= static_cast<int>(threshold()); }

}  // namespace slr::log

#define SLR_LOG(level, component, msg)                                            \
  do {                                                                           \
    if (::slr::log::enabled(::slr::log::Level::level))                           \
      ::slr::log::write(::slr::log::Level::level, component, (msg));             \
  } while (0)
#define LOG_TRACE(c, m) SLR_LOG(kTrace, c, m)
#define LOG_DEBUG(c, m) SLR_LOG(kDebug, c, m)
#define LOG_INFO(c, m) SLR_LOG(kInfo, c, m)
#define LOG_WARN(c, m) SLR_LOG(kWarn, c, m)
#define LOG_ERROR(c, m) SLR_LOG(kError, c, m)
