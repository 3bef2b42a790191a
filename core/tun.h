#pragma once
// TUN devices (/dev/net/tun): IFF_TUN | IFF_NO_PI, non-blocking, close-on-exec.
// The device exists while a queue fd is open (not persistent); bring it up and
// route into it with nl::linkSetUp / nl::addRoute.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "core/fd.h"
#include "core/result.h"

namespace slr {

// One queue of device `name` (created if missing).  multi_queue adds
// IFF_MULTI_QUEUE: every queue of a multi-queue device must be opened with it.
[[nodiscard]] Result<UniqueFd> openTun(std::string_view name, bool multi_queue = false);
// n queues of a multi-queue device (n >= 1; n == 1 still uses IFF_MULTI_QUEUE
// so more queues can be attached later).  The kernel spreads flows by hash.
[[nodiscard]] Result<std::vector<UniqueFd>> openTunQueues(std::string_view name, size_t n);

// Transmit queue length of a device (SIOCSIFTXQLEN).  For a TUN this is the
// backlog of packets waiting for the reader: the SLR's ingress buffer.
[[nodiscard]] Status setTxQueueLength(std::string_view name, uint32_t packets);

}  // namespace slr
