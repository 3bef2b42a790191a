#pragma once
// tcpConnect: the control-plane TCP dial shared by the SLR's peer channels
// (slr/peer_channel) and the host agent's SLR sessions
// (hostagent/slr_session).  Non-blocking connect with a deadline; keepalive
// (idle 5 s, interval 2 s, 3 probes) and TCP_USER_TIMEOUT so a peer that
// vanished without a FIN is noticed even when no frame is due.
#include <atomic>
#include <chrono>

#include "core/config.h"
#include "core/fd.h"
#include "core/result.h"

namespace slr {

// Connects to `ep` (IPv4) before `deadline`; the socket stays non-blocking
// with TCP_NODELAY set.  `user_timeout` goes to TCP_USER_TIMEOUT.  With
// `stop`, the wait polls in slices of at most 200 ms and gives up with
// ECANCELED once *stop is true; without it, one poll waits until the
// deadline.  Errors: "connect to ADDR:PORT" with ETIMEDOUT, ECANCELED or the
// connect error.
Result<UniqueFd> tcpConnect(const config::Endpoint& ep,
                            std::chrono::steady_clock::time_point deadline,
                            std::chrono::milliseconds user_timeout,
                            const std::atomic<bool>* stop = nullptr);

}  // namespace slr
