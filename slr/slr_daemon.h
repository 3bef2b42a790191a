#pragma once
// `slrctl slr`: wires the pieces of a Service Level Router together.
//
// Threads:
//   - N forwarding workers (slr/worker.h), one TUN queue and flow shard each;
//   - the control thread (the caller of runSlr): TLS control channel poll
//     loop, hold-time expiry and the periodic selection-table rebuild that it
//     publishes to the workers as an immutable snapshot;
//   - the status-socket thread (core/status_server.h).
// Shared state: the HostRegistry (mutex, control plane only), the snapshot
// holder (one atomic per batch on the workers), counters (single writer).
#include <atomic>

#include "core/config.h"

namespace slr::router {

// Runs until `stop` becomes true; returns the process exit code (0 clean
// shutdown, 1 set-up failure).  Everything it installed in the kernel (VIP
// routes, TUN device, sysctls) is removed or restored before it returns.
int runSlr(const config::SlrConfig& cfg, std::atomic<bool>& stop);

}  // namespace slr::router
