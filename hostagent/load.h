#pragma once
// Load measurement for the host agent: the load index a host advertises to its
// SLRs in every UPDATE.  Four sources (config [load].source): cpu (busy share
// from /proc/stat deltas, 0..1), connections (established VIP connections /
// max_connections), file (a decimal number read each time), command (first
// stdout line of /bin/sh -c, with a timeout).
//
// The parsing and delta maths are pure functions (unit-tested); LoadMeter
// owns the state between readings.  A failed reading keeps the previous value
// and says why; the caller rate-limits the log line.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.h"
#include "core/net_types.h"
#include "core/result.h"

namespace slr::host {

// ---- pure parts ----

// A load number as written by an operator's file or command: optional
// surrounding whitespace, a finite decimal >= 0 (e.g. "0.25", "3", "1e-3").
// Only the first line counts.  nullopt with `why` set when it is not one.
std::optional<double> parseLoadNumber(std::string_view text, std::string* why = nullptr);

// The aggregate "cpu " line of /proc/stat, in USER_HZ ticks.
struct CpuTimes {
  uint64_t busy = 0;   // user+nice+system+irq+softirq+steal (guest is inside user)
  uint64_t total = 0;  // busy + idle + iowait
};
// Parses the first "cpu " line of /proc/stat content; nullopt when absent or
// with fewer than 4 numeric fields (pre-2.6 kernels had 4; missing later
// fields count as 0).
std::optional<CpuTimes> parseProcStat(std::string_view content);
// Busy share between two readings, clamped to 0..1; nullopt when no tick
// passed (or the counters went backwards, e.g. after CPU hot-unplug), so the
// caller keeps its previous value instead of reporting a fake 0.
std::optional<double> cpuLoadBetween(const CpuTimes& prev, const CpuTimes& cur);

// connections / max_connections, guarded against max == 0.
double connectionLoad(uint64_t established, uint32_t max_connections);

// ---- OS-facing helpers ----

// Whole file (small files only: /proc/stat, the operator's load file).
Result<std::string> readSmallFile(const std::string& path, size_t limit = 1 << 20);

// Runs `/bin/sh -c command` (stdin /dev/null, stderr inherited), returns its
// first stdout line.  On timeout the whole process group is killed.  Errors
// say what happened: "timed out after 2000ms", "exited with status 3",
// "killed by signal 9".
Result<std::string> runCommandFirstLine(const std::string& command,
                                        std::chrono::milliseconds timeout);
// Same, whole stdout (at most `limit` bytes kept).
Result<std::string> runCommandOutput(const std::string& command, std::chrono::milliseconds timeout,
                                     size_t limit = 1 << 20);

// Counts established TCP connections whose local address is inside one of
// `subnets` (sock_diag).  Separate so tests/other builds can swap it.
Result<uint64_t> countVipConnections(const std::vector<Prefix>& subnets);

// ---- stateful meter ----

class LoadMeter {
 public:
  LoadMeter(config::LoadConfig cfg, std::vector<Prefix> subnets,
            std::chrono::milliseconds command_timeout);

  // Takes one reading.  On success updates value(); on failure keeps the
  // previous value and returns the reason (the caller logs it, rate-limited).
  Status sample();

  double value() const { return value_; }
  std::string_view sourceName() const { return config::loadSourceName(cfg_.source); }

 private:
  config::LoadConfig cfg_;
  std::vector<Prefix> subnets_;
  std::chrono::milliseconds command_timeout_;
  std::optional<CpuTimes> prev_cpu_;
  double value_ = 0.0;
};

}  // namespace slr::host
