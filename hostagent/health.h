#pragma once
// Health checks of the services on this host ([[check]]): tcp (connect),
// http (HTTP/1.0 GET, expected status), command (/bin/sh -c, exit 0 = pass),
// each with a timeout, on its own schedule, with rise/fall hysteresis.  A
// subnet is advertised available only while every check covering it is
// healthy and the host is not drained (subnetAvailability).
//
// Threads: HealthChecker runs every check on ONE thread (non-blocking
// sockets + poll; commands are spawned and watched through a pidfd, killed
// with their process group on timeout), so a slow check never delays
// another.  snapshot()/healthy() may be called from any thread; on_change
// runs on the checker thread.
//
// Initial state: a check is unhealthy ("pending") until its first result,
// which sets the state directly; after that `rise` consecutive passes make it
// healthy and `fall` consecutive failures unhealthy.  So a restarted agent
// advertises a working service after one check, never a dead one.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/config.h"
#include "core/net_types.h"

namespace slr::host {

// ---- pure parts ----

// Rise/fall hysteresis over successive check results.
class RiseFall {
 public:
  RiseFall(uint32_t rise, uint32_t fall) : rise_(rise ? rise : 1), fall_(fall ? fall : 1) {}
  // Records one result; true when healthy() changed (the first result always
  // sets the state: true when it is a pass, since "pending" counts as unhealthy).
  bool record(bool pass);
  bool healthy() const { return healthy_; }
  bool known() const { return known_; }

 private:
  uint32_t rise_, fall_;
  bool known_ = false;
  bool healthy_ = false;
  uint32_t streak_ = 0;  // consecutive results against the current state
};

// Status code of an HTTP response head ("HTTP/1.1 200 OK\r\n..."), once the
// status line is complete; nullopt when it is not (yet) a status line.
std::optional<int> parseHttpStatus(std::string_view head);
// The HTTP/1.0 request an http check sends.
std::string httpRequest(const config::HealthCheckConfig& c);

// available[i] for subnets[i]: not drained and every check covering it
// (its `subnets`, empty = all) healthy.  healthy parallel to checks.
std::vector<bool> subnetAvailability(const std::vector<Prefix>& subnets,
                                     const std::vector<config::HealthCheckConfig>& checks,
                                     const std::vector<bool>& healthy, bool drained);

// ---- running checks ----

struct CheckOutcome {
  bool pass = false;
  std::string result;  // "ok", "ok: HTTP 200", "failed: ...": what an operator needs
  uint32_t ms = 0;     // how long it took
};

// Runs one check to completion, blocking up to its timeout (tests, one-shot use).
CheckOutcome runCheckOnce(const config::HealthCheckConfig& c);

struct CheckSnapshot {
  std::string name;
  std::string type;         // "tcp" | "http" | "command"
  bool healthy = false;
  std::string last_result;  // "pending" before the first result
  uint32_t last_ms = 0;
  uint64_t since_s = 0;     // seconds in the current state (since start while pending)
  uint64_t passes = 0;
  uint64_t failures = 0;
};

class HealthChecker {
 public:
  // Called on the checker thread after any check's healthy state flipped.
  using OnChange = std::function<void()>;
  HealthChecker(std::vector<config::HealthCheckConfig> checks, OnChange on_change);
  ~HealthChecker();
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  void start();  // no thread when there are no checks
  void stop();   // kills checks in flight, joins

  std::vector<bool> healthy() const;  // parallel to the configured checks
  std::vector<CheckSnapshot> snapshot() const;

 private:
  struct State;
  void run();
  void finish(size_t i, CheckOutcome o);

  std::vector<config::HealthCheckConfig> checks_;
  OnChange on_change_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  mutable std::mutex mu_;
  std::vector<State> st_;  // guarded by mu_
};

}  // namespace slr::host
