#pragma once
// `slrctl host`: the host agent (see hostagent/README.md), and
// `slrctl host check`: the point-by-point DSR set-up check.
#include <atomic>
#include <ostream>
#include <string>

#include "core/config.h"
#include "hostagent/check_report.h"

namespace slr::host {

// Sets the host up, registers with every configured SLR, serves the status
// socket and terminates tunnels until `stop` becomes true (SIGTERM/SIGINT),
// then undoes the set-up.  Returns the process exit code: 0 after a clean
// stop, 1 when set-up failed (after undoing what was done).
int runHostAgent(const config::HostConfig& cfg, std::atomic<bool>& stop);

// Runs every check and prints the report (text, or JSON when `json`).
// Returns 0 when all passed, 4 when some failed.
int runHostCheck(const config::HostConfig& cfg, bool json, std::ostream& out);

// The checks themselves (used by runHostCheck; exposed for tests).
CheckReport collectHostChecks(const config::HostConfig& cfg);

}  // namespace slr::host
