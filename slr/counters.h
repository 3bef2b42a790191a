#pragma once
// Data-path counters.  Each worker owns one cache-line-aligned block and is
// its only writer (relaxed load+store, no lock prefix, no sharing between
// cores); the control thread sums the blocks for status output.
#include <atomic>
#include <cstdint>

#include "core/packet.h"

namespace slr::router {

// Drop reasons beyond parse errors.  Declared once; names are the status
// output's labels.
#define SLR_DROP_REASONS(X)                                                        \
  X(not_vip)      /* destination in no configured VIP subnet */                    \
  X(no_host)      /* VIP has no available next hop */                             \
  X(table_full)   /* flow table full and on_full = "drop" */                       \
  X(too_big)      /* inner + tunnel header exceeds the tunnel MTU (DF: ICMP sent) */ \
  X(tx_error)     /* sendmmsg failed for the packet */                            \
  X(rx_truncated) /* TUN read filled the whole buffer */                          \
  X(tunnel_malformed) /* tunnel packet from above: bad outer header / fragment */ \
  X(tunnel_not_from_upstream) /* tunnel packet not from an [[upstream]] SLR */ \
  X(midstream_wait) /* segment without SYN of an unknown flow, within [flows] midstream_wait */

enum class Drop : uint8_t {
#define SLR_X(name) k_##name,
  SLR_DROP_REASONS(SLR_X)
#undef SLR_X
  kCount
};

inline const char* dropName(Drop d) {
  static constexpr const char* kNames[] = {
#define SLR_X(name) #name,
      SLR_DROP_REASONS(SLR_X)
#undef SLR_X
  };
  return kNames[static_cast<int>(d)];
}

using Counter = std::atomic<uint64_t>;
inline void bump(Counter& c, uint64_t n = 1) {
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}
inline uint64_t read(const Counter& c) { return c.load(std::memory_order_relaxed); }

struct alignas(64) WorkerCounters {
  Counter rx_packets{0}, rx_bytes{0};
  Counter tx_packets{0}, tx_bytes{0};
  Counter flows_created{0};
  Counter flows_rerouted{0};        // flow's host went away; re-selected
  Counter flows_reused{0};          // a SYN on the 5-tuple of an ended flow: scheduled afresh
  Counter flows_midstream{0};       // state created for a TCP segment without SYN (stateless guess)
  Counter stateless_forwarded{0};   // table full, forwarded by consistent hash
  Counter icmp_too_big_sent{0};
  Counter active_flows{0};          // table size after the last batch
  Counter fast_path_installed{0};   // flows handed to the kernel fast path
  Counter fast_path_failed{0};      // could not be installed (map full...): stay in userspace
  Counter flows_expired{0};
  Counter table_full{0};
  Counter tunnel_rx{0};             // packets received tunnelled from an upstream SLR
  // Shortcut signalling (this SLR's part of it).
  Counter shortcut_sent{0};         // signals queued upwards: originated here (host chosen)
  Counter shortcut_relayed{0};      // signals from below passed upwards
  Counter shortcut_out_dropped{0};  // signal lost: upstream queue full
  Counter shortcut_applied{0};      // flows pointed straight at their host
  Counter shortcut_unknown{0};      // signal for a flow this worker does not have
  Counter shortcut_packets{0};      // packets sent straight to a host by a shortcut
  Counter shortcut_delay_ms_sum{0}; // first packet -> shortcut applied, summed over applied
  Counter shortcut_delay_ms_max{0};
  Counter held_packets{0};          // later packets held waiting for a shortcut
  Counter released_packets{0};      // held packets sent on when the shortcut came
  Counter hold_timeouts{0};         // held packets sent the normal way: no shortcut in time
  Counter hold_overflow{0};         // not held (queue full / too big): sent the normal way
  // Flows that survive failures (status.recovery).
  Counter midstream_dropped{0};     // segments of an unknown flow dropped within midstream_wait
  Counter midstream_guessed{0};     // mid-stream flows sent to the stateless guess (once per flow)
  Counter echo_applied{0};          // echo flow advertisements accepted (flow set to their host)
  Counter echo_refused_host{0};     // advertised server is no up [[host]]
  Counter echo_refused_subnet{0};   // that host is not authorised for the VIP
  Counter echo_conflict{0};         // the flow is known here with another live next hop
  Counter echo_malformed{0};        // bad advertisement (decode error, or not this packet's flow)
  Counter echo_post_failed{0};      // advertisement not passed to another worker: its ring was full
  Counter fast_path_reinstalled{0}; // flows re-added to the kernel fast path after it lost them
  Counter shortcut_resignalled{0};  // shortcut signalled again: the flow keeps arriving from above
  Counter whohas_asked{0};          // mid-stream flows queued for the whohas module
  Counter whohas_queue_full{0};     // not queued: the whohas ring was full
  Counter whohas_resolved{0};       // flows set to the host a WHOHAS answer named
  Counter whohas_timeouts{0};       // flows whose WHOHAS hold ended without an answer
  Counter mirror_applied{0};        // kMirror upserts applied (hot spare)
  Counter mirror_removed{0};        // kUnmirror erases applied
  Counter mirror_failed{0};         // kMirror not applied (table full, bad next hop)
  Counter sync_events{0};           // SyncEvents pushed to the spare module
  Counter sync_overflows{0};        // SyncEvents lost: ring full (the module resyncs)
  Counter parse_drops[static_cast<int>(ParseError::kCount)]{};
  Counter drops[static_cast<int>(Drop::kCount)]{};
};

struct alignas(64) ObjectCounters {  // per VIP and per host
  Counter packets{0}, bytes{0}, flows{0};
};

}  // namespace slr::router
