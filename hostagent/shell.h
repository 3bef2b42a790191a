#pragma once
// spawnShell: starts `/bin/sh -c command` the way the host agent runs the
// operator's commands (the "command" load source in hostagent/load, command
// health checks in hostagent/health).
#include <sys/types.h>

#include <string>

#include "core/result.h"

namespace slr::host {

// stdin is /dev/null; stdout goes to `stdout_fd` (dup2'ed), or /dev/null when
// it is -1; stderr is inherited.  The child leads its own process group, so
// kill(-pid, SIGKILL) on a timeout takes the shell AND what it started; its
// signal mask is empty and SIGPIPE, SIGTERM and SIGINT are back to default.
// The caller reaps it.  Error: "spawn /bin/sh" with the posix_spawn code.
Result<pid_t> spawnShell(const std::string& command, int stdout_fd = -1);

}  // namespace slr::host
