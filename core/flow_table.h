#pragma once
// Per-worker flow table: 5-tuple -> next hop (host id) + flow label.
//
// Threads: owned by ONE worker thread. No locks, no atomics; control requests
// that walk or edit the table (forEach / removeIf) must run on that worker.
//
// Memory: everything is allocated in the constructor (anonymous mmap,
// transparent huge pages requested, pages pre-faulted). The packet path never
// allocates and never throws.
//
// Layout: open addressing, Robin Hood linear probing, backward-shift deletion
// (no tombstones, so churn never degrades the table). Two arrays:
//   - meta_: 2 bytes per slot {probe distance + 1 (0 = empty), 8-bit hash tag}.
//     Small enough to stay in cache; a miss is answered from meta_ alone and a
//     hit touches exactly one 64-byte entry line (plus a tag false positive
//     1 in 256 probes).
//   - entries_: 64-byte, cache-line-aligned FlowEntry per slot.
// Slots = ceil(capacity / 0.875) plus a small overflow tail (so probes never
// wrap), i.e. load factor <= 0.875 at full capacity.
//
// Time: now_ms is a monotonic millisecond clock truncated to uint32_t; every
// comparison is on uint32 differences, so the 49.7-day wrap is harmless.
//
// Pointer validity: a FlowEntry* returned by lookup/insert stays valid only
// until the next non-const call on the table (entries move on insert/erase).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <type_traits>

#include "core/net_types.h"
#include "core/result.h"

namespace slr {

// Idle timeouts, per protocol and TCP state. Defaults match [flows.timeouts].
struct FlowTimeouts {
  uint32_t tcp_syn_ms = 10'000;
  uint32_t tcp_established_ms = 300'000;
  uint32_t tcp_closing_ms = 10'000;
  uint32_t udp_ms = 30'000;
  uint32_t other_ms = 30'000;
};

enum class FlowState : uint8_t { kTcpSyn, kTcpEstablished, kTcpClosing, kUdp, kOther };
inline constexpr size_t kFlowStateCount = 5;

// "syn" | "established" | "closing" | "udp" | "other" (for status / JSON).
const char* flowStateName(FlowState s);

struct alignas(64) FlowEntry {
  FlowKey key;             // 40 bytes; never modify through forEach
  uint32_t last_seen_ms;   // now_ms of the last packet
  uint32_t label;          // flow label chosen at insert
  uint32_t packets;        // client->server packets seen (insert counts the first)
  uint32_t first_seen_ms;  // now_ms at insert
  uint32_t hash_hi;        // upper 32 bits of the flow hash (home slot); for walkers
  uint16_t next_hop;       // host id
  FlowState state;
  uint8_t flags;  // free for the caller; the table sets 0 at insert and never reads it
};
static_assert(sizeof(FlowEntry) == 64, "FlowEntry must be exactly one cache line");
static_assert(alignof(FlowEntry) == 64);

// Plain counters, written by the owning worker only; the daemon copies them.
struct FlowTableCounters {
  uint64_t inserts = 0;      // new entries created
  uint64_t expired = 0;      // removed because idle (lookup, expireSome, reclaim on full)
  uint64_t erased = 0;       // removed by erase() / removeIf()
  uint64_t full = 0;         // insert refused: size() == capacity() and nothing reclaimable
  uint64_t probe_limit = 0;  // insert refused: probe distance limit (should stay 0)
};

class FlowTable {
 public:
  // TCP flag bits as they appear in the TCP header's flags byte.
  static constexpr uint8_t kTcpFin = 0x01;
  static constexpr uint8_t kTcpSyn = 0x02;
  static constexpr uint8_t kTcpRst = 0x04;
  static constexpr uint8_t kTcpAck = 0x10;

  // capacity: max flows (clamped to >= 1). On allocation failure the table is
  // empty and unusable: ok() is false, capacity() is 0, insert() returns nullptr.
  // Prefer create(), which reports that failure as an Error.
  explicit FlowTable(size_t capacity, const FlowTimeouts& timeouts, uint64_t hash_seed);
  ~FlowTable();
  FlowTable(const FlowTable&) = delete;
  FlowTable& operator=(const FlowTable&) = delete;

  [[nodiscard]] static Result<std::unique_ptr<FlowTable>> create(size_t capacity,
                                                                 const FlowTimeouts& timeouts,
                                                                 uint64_t hash_seed);
  bool ok() const { return entries_ != nullptr; }

  // The hash every caller must pass: flowHash(key, hashSeed()). Hash once per
  // packet and reuse it for policy / stateless forwarding.
  uint64_t hash(const FlowKey& key) const { return flowHash(key, seed_); }
  uint64_t hashSeed() const { return seed_; }

  // Prefetch the entry line the flow would occupy. Call for a whole receive
  // batch before looking the batch up, so the entries' cache misses overlap.
  // Reads meta_ (2 bytes/slot, normally cache-resident) to find the candidate
  // slot; prefetches nothing for a flow that is clearly absent.
  void prefetch(uint64_t hash) const {
    if (meta_ == nullptr) return;
    size_t i = home(hash);
    const uint8_t tag = uint8_t(hash);
    for (unsigned d = 1;; ++d, ++i) {
      const Meta m = meta_[i];
      if (m.dist < d) return;
      if (m.tag == tag) {
        __builtin_prefetch(entries_ + i);
        return;
      }
    }
  }

  // The live entry for key, or nullptr when absent or idle past its timeout
  // (an expired entry is removed here and counted in counters().expired).
  // Does not touch the entry: call touch() for the packet.
  FlowEntry* lookup(const FlowKey& key, uint64_t hash, uint32_t now_ms);

  // Inserts a new flow (packets = 1, last_seen = first_seen = now_ms, flags 0).
  // If the key is already present its entry is reset to these values.
  // nullptr when the table is full (size() == capacity()) after trying to
  // reclaim a few expired entries; live flows are never evicted. The caller
  // then applies [flows].on_full.
  FlowEntry* insert(const FlowKey& key, uint64_t hash, uint16_t next_hop, uint32_t label,
                    FlowState state, uint32_t now_ms);

  // Removes key; false if absent. Counted in counters().erased.
  bool erase(const FlowKey& key, uint64_t hash);

  // Incremental idle sweep: advances an internal cursor (wrapping) over up to
  // max_slots slots, removes expired entries, returns how many it removed.
  // expireSome(now, slotCount()) sweeps the whole table. Work is bounded by
  // max_slots + removed entries.
  size_t expireSome(uint32_t now_ms, size_t max_slots);

  // Removes every entry for which pred(const FlowEntry&) is true (e.g. flows
  // of a withdrawn host). Counted in counters().erased. Returns count.
  template <typename Pred>
  size_t removeIf(Pred&& pred);

  // Calls fn(const FlowEntry&) (or fn(FlowEntry&) on a non-const table) for
  // every stored entry, in slot order. Entries idle past their timeout but not
  // yet swept are included: filter with isExpired(). If fn returns bool,
  // returning false stops the walk. fn must not insert or erase.
  template <typename Fn>
  void forEach(Fn&& fn) const;
  template <typename Fn>
  void forEach(Fn&& fn);

  // Removes everything (counters are kept).
  void clear();

  // Called for an entry that looks idle past its timeout, just before it
  // would be removed (by lookup, expireSome or the full-table reclaim).  The
  // hook may refresh the entry (last_seen, state) from activity the table did
  // not see -- e.g. packets a kernel fast path forwarded -- and return true;
  // the entry is then kept if it is no longer expired.  Control-rate only:
  // never called for live entries.
  using ExpiryHook = bool (*)(void* ctx, FlowEntry& entry, uint32_t now_ms);
  void setExpiryHook(ExpiryHook hook, void* ctx) {
    hook_ = hook;
    hook_ctx_ = ctx;
  }

  // Per-packet update: last_seen, packet count and, for TCP (key.proto == 6),
  // the state. Client->server only (DSR): FIN or RST -> kTcpClosing (sticky);
  // SYN without ACK -> kTcpSyn; ACK without SYN/FIN/RST -> kTcpEstablished.
  static void touch(FlowEntry& e, uint8_t tcp_flags, uint32_t now_ms);
  // State for a flow's first packet (same rules; proto 17 -> kUdp, else kOther).
  static FlowState initialState(uint8_t proto, uint8_t tcp_flags);

  uint32_t timeoutFor(FlowState s) const { return timeout_[static_cast<size_t>(s)]; }
  bool isExpired(const FlowEntry& e, uint32_t now_ms) const {
    return uint32_t(now_ms - e.last_seen_ms) > timeoutFor(e.state);
  }
  const FlowTimeouts& timeouts() const { return timeouts_; }
  void setTimeouts(const FlowTimeouts& t);

  size_t size() const { return size_; }
  size_t capacity() const { return capacity_; }
  size_t slotCount() const { return total_; }      // slots incl. overflow tail
  size_t memoryBytes() const { return map_bytes_ + sizeof(*this); }
  const FlowTableCounters& counters() const { return counters_; }

  // Full structural check (tests, debug builds): every entry sits at its
  // recorded probe distance from its home slot, Robin Hood ordering holds,
  // the count matches size(). O(slots).
  bool verify() const;

 private:
  struct Meta {
    uint8_t dist;  // probe distance + 1; 0 = empty
    uint8_t tag;   // low 8 bits of the hash
  };
  static constexpr unsigned kMaxDist = 255;  // max Meta::dist

  // Home slot from the upper 32 bits of the hash (multiply-shift range
  // reduction, so slots_ needs not be a power of two).
  size_t home(uint64_t hash) const { return size_t((uint64_t(uint32_t(hash >> 32)) * slots_) >> 32); }
  size_t find(const FlowKey& key, uint64_t hash) const;  // slot or SIZE_MAX
  void removeAt(size_t pos);                             // backward-shift delete
  bool reclaim(uint32_t now_ms);                         // bounded sweep when full

  FlowEntry* entries_ = nullptr;
  Meta* meta_ = nullptr;
  size_t capacity_ = 0;
  size_t slots_ = 0;  // home slots
  size_t total_ = 0;  // slots_ + overflow tail
  size_t size_ = 0;
  size_t cursor_ = 0;
  size_t map_bytes_ = 0;
  uint64_t seed_ = 0;
  FlowTimeouts timeouts_;
  uint32_t timeout_[kFlowStateCount] = {};
  FlowTableCounters counters_;
  ExpiryHook hook_ = nullptr;
  void* hook_ctx_ = nullptr;

  // isExpired(), after giving the expiry hook a chance to refresh the entry.
  bool expiredNow(FlowEntry& e, uint32_t now_ms) {
    if (!isExpired(e, now_ms)) return false;
    return hook_ == nullptr || !hook_(hook_ctx_, e, now_ms) || isExpired(e, now_ms);
  }
};

// ---- templates ----

template <typename Pred>
size_t FlowTable::removeIf(Pred&& pred) {
  size_t removed = 0;
  size_t i = 0;
  while (i < total_) {
    // Backward shift moves later entries into slot i: re-examine it.
    if (meta_[i].dist != 0 && pred(static_cast<const FlowEntry&>(entries_[i]))) {
      removeAt(i);
      ++removed;
    } else {
      ++i;
    }
  }
  counters_.erased += removed;
  return removed;
}

template <typename Fn>
void FlowTable::forEach(Fn&& fn) const {
  for (size_t i = 0; i < total_; ++i) {
    if (meta_[i].dist == 0) continue;
    const FlowEntry& e = entries_[i];
    if constexpr (std::is_same_v<std::invoke_result_t<Fn&, const FlowEntry&>, bool>) {
      if (!fn(e)) return;
    } else {
      fn(e);
    }
  }
}

template <typename Fn>
void FlowTable::forEach(Fn&& fn) {
  for (size_t i = 0; i < total_; ++i) {
    if (meta_[i].dist == 0) continue;
    FlowEntry& e = entries_[i];
    if constexpr (std::is_same_v<std::invoke_result_t<Fn&, FlowEntry&>, bool>) {
      if (!fn(e)) return;
    } else {
      fn(e);
    }
  }
}

}  // namespace slr
