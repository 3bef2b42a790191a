#include "core/flow_table.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>

namespace slr {
namespace {

constexpr uint8_t kProtoTcp = 6;
constexpr uint8_t kProtoUdp = 17;

// Slots beyond the last home slot. Probe distance is capped at kMaxDist, so
// probes and Robin Hood shifts never need to wrap around; the very last slot
// stays empty and ends every scan.
constexpr size_t kTailSlots = 256;

// When insert finds the table full it sweeps this many slots for expired
// entries before giving up: bounded work per refused packet, and it advances
// the regular sweep cursor rather than duplicating it.
constexpr size_t kReclaimSlots = 32;

// Upper bound on capacity so that slots fit the 32-bit home-slot reduction.
constexpr size_t kMaxCapacity = size_t(1) << 30;

// Key equality as five 64-bit words: FlowKey has no padding holes.
inline bool keyEq(const FlowKey& a, const FlowKey& b) {
  uint64_t x[5], y[5];
  std::memcpy(x, &a, sizeof x);
  std::memcpy(y, &b, sizeof y);
  return ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3]) | (x[4] ^ y[4])) == 0;
}

FlowState nextTcpState(FlowState s, uint8_t f) {
  if (s == FlowState::kTcpClosing) return s;  // sticky: only the reply side could reopen it
  if (f & (FlowTable::kTcpFin | FlowTable::kTcpRst)) return FlowState::kTcpClosing;
  if (f & FlowTable::kTcpSyn) {
    // SYN+ACK never comes from the client side; leave the state alone.
    return (f & FlowTable::kTcpAck) ? s : FlowState::kTcpSyn;
  }
  if (f & FlowTable::kTcpAck) return FlowState::kTcpEstablished;
  return s;
}

}  // namespace

const char* flowStateName(FlowState s) {
  switch (s) {
    case FlowState::kTcpSyn: return "syn";
    case FlowState::kTcpEstablished: return "established";
    case FlowState::kTcpClosing: return "closing";
    case FlowState::kUdp: return "udp";
    case FlowState::kOther: return "other";
  }
  return "unknown";
}

FlowTable::FlowTable(size_t capacity, const FlowTimeouts& timeouts, uint64_t hash_seed)
    : seed_(hash_seed) {
  setTimeouts(timeouts);
  size_t cap = std::clamp<size_t>(capacity, 1, kMaxCapacity);
  size_t slots = (cap * 8 + 6) / 7;  // ceil(cap / 0.875)
  size_t total = slots + kTailSlots;
  size_t entry_bytes = total * sizeof(FlowEntry);
  size_t meta_bytes = (total * sizeof(Meta) + 63) & ~size_t(63);
  size_t bytes = entry_bytes + meta_bytes;

  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return;  // ok() == false; create() reports it
  // Huge pages: at 1M flows the table is ~80 MB; 4 KiB pages would make
  // nearly every lookup a TLB miss too. Advisory only.
  (void)madvise(p, bytes, MADV_HUGEPAGE);
  // Pre-fault every page now so the packet path never takes a page fault.
  std::memset(p, 0, bytes);

  entries_ = static_cast<FlowEntry*>(p);
  meta_ = reinterpret_cast<Meta*>(static_cast<char*>(p) + entry_bytes);
  capacity_ = cap;
  slots_ = slots;
  total_ = total;
  map_bytes_ = bytes;
}

FlowTable::~FlowTable() {
  if (entries_ != nullptr) munmap(entries_, map_bytes_);
}

Result<std::unique_ptr<FlowTable>> FlowTable::create(size_t capacity, const FlowTimeouts& timeouts,
                                                     uint64_t hash_seed) {
  auto t = std::unique_ptr<FlowTable>(new (std::nothrow) FlowTable(capacity, timeouts, hash_seed));
  if (!t || !t->ok()) {
    return sysError("allocate flow table for " + std::to_string(capacity) + " flows", ENOMEM);
  }
  return t;
}

void FlowTable::setTimeouts(const FlowTimeouts& t) {
  timeouts_ = t;
  timeout_[size_t(FlowState::kTcpSyn)] = t.tcp_syn_ms;
  timeout_[size_t(FlowState::kTcpEstablished)] = t.tcp_established_ms;
  timeout_[size_t(FlowState::kTcpClosing)] = t.tcp_closing_ms;
  timeout_[size_t(FlowState::kUdp)] = t.udp_ms;
  timeout_[size_t(FlowState::kOther)] = t.other_ms;
}

size_t FlowTable::find(const FlowKey& key, uint64_t hash) const {
  if (entries_ == nullptr) return SIZE_MAX;
  size_t i = home(hash);
  const uint8_t tag = uint8_t(hash);
  // Start fetching the home entry while the tag line is still on its way: a
  // hit is most often there, and then costs one memory round trip, not two.
  __builtin_prefetch(entries_ + i);
  // Robin Hood invariant: once a resident is closer to its home than we would
  // be, the key cannot be further on. Empty slots (dist 0) stop the scan too.
  for (unsigned d = 1;; ++d, ++i) {
    const Meta m = meta_[i];
    if (m.dist < d) return SIZE_MAX;
    if (m.tag == tag && keyEq(entries_[i].key, key)) return i;
  }
}

FlowEntry* FlowTable::lookup(const FlowKey& key, uint64_t hash, uint32_t now_ms) {
  size_t i = find(key, hash);
  if (i == SIZE_MAX) return nullptr;
  if (expiredNow(entries_[i], now_ms)) {
    removeAt(i);
    ++counters_.expired;
    return nullptr;
  }
  return &entries_[i];
}

FlowEntry* FlowTable::insert(const FlowKey& key, uint64_t hash, uint16_t next_hop, uint32_t label,
                             FlowState state, uint32_t now_ms) {
  auto fill = [&](FlowEntry& e) {
    e.key = key;
    e.last_seen_ms = now_ms;
    e.label = label;
    e.packets = 1;
    e.first_seen_ms = now_ms;
    e.hash_hi = uint32_t(hash >> 32);
    e.next_hop = next_hop;
    e.state = state;
    e.flags = 0;
  };
  if (entries_ == nullptr) {
    ++counters_.full;
    return nullptr;
  }
  if (size_ >= capacity_) {
    // Re-inserting a present key needs no room.
    size_t i = find(key, hash);
    if (i != SIZE_MAX) {
      fill(entries_[i]);
      return &entries_[i];
    }
    if (!reclaim(now_ms)) {
      ++counters_.full;
      return nullptr;
    }
  }

  // Find the insertion point p: the first slot whose resident is closer to
  // its home than we would be (or an empty slot).
  const uint8_t tag = uint8_t(hash);
  size_t p = home(hash);
  unsigned d = 1;
  for (;; ++d, ++p) {
    const Meta m = meta_[p];
    if (m.dist < d) break;
    if (m.tag == tag && keyEq(entries_[p].key, key)) {
      fill(entries_[p]);
      return &entries_[p];
    }
  }
  if (d > kMaxDist) {
    ++counters_.probe_limit;
    return nullptr;
  }
  // Shift the run [p, q) up by one slot into the first empty slot q (each
  // shifted entry gets one further from home), then place the new entry at p.
  size_t q = p;
  for (; meta_[q].dist != 0; ++q) {
    if (meta_[q].dist == kMaxDist) {
      ++counters_.probe_limit;
      return nullptr;
    }
  }
  if (q > p) {
    std::memmove(static_cast<void*>(entries_ + p + 1), entries_ + p, (q - p) * sizeof(FlowEntry));
    for (size_t k = q; k > p; --k) meta_[k] = Meta{uint8_t(meta_[k - 1].dist + 1), meta_[k - 1].tag};
  }
  meta_[p] = Meta{uint8_t(d), tag};
  fill(entries_[p]);
  ++size_;
  ++counters_.inserts;
  return &entries_[p];
}

bool FlowTable::erase(const FlowKey& key, uint64_t hash) {
  size_t i = find(key, hash);
  if (i == SIZE_MAX) return false;
  removeAt(i);
  ++counters_.erased;
  return true;
}

void FlowTable::removeAt(size_t pos) {
  // Backward shift: pull the following run of displaced entries (dist > 1)
  // one slot closer to home; no tombstones, so probe lengths stay as if the
  // removed entry had never been inserted.
  size_t j = pos + 1;
  while (meta_[j].dist > 1) ++j;
  size_t n = j - pos - 1;
  if (n > 0) {
    std::memmove(static_cast<void*>(entries_ + pos), entries_ + pos + 1, n * sizeof(FlowEntry));
    for (size_t k = pos; k < j - 1; ++k) meta_[k] = Meta{uint8_t(meta_[k + 1].dist - 1), meta_[k + 1].tag};
  }
  meta_[j - 1] = Meta{0, 0};
  --size_;
}

size_t FlowTable::expireSome(uint32_t now_ms, size_t max_slots) {
  if (size_ == 0 || total_ == 0) return 0;
  size_t removed = 0;
  size_t advanced = 0;
  while (advanced < max_slots && size_ > 0) {
    if (cursor_ >= total_) cursor_ = 0;
    if (meta_[cursor_].dist != 0 && expiredNow(entries_[cursor_], now_ms)) {
      // A later entry may have shifted into the cursor slot: look again
      // (bounded: each repeat removes an entry).
      removeAt(cursor_);
      ++removed;
    } else {
      ++cursor_;
      ++advanced;
    }
  }
  counters_.expired += removed;
  return removed;
}

bool FlowTable::reclaim(uint32_t now_ms) {
  expireSome(now_ms, kReclaimSlots);
  return size_ < capacity_;
}

bool FlowTable::verify() const {
  if (entries_ == nullptr) return size_ == 0;
  size_t count = 0;
  for (size_t i = 0; i < total_; ++i) {
    const Meta m = meta_[i];
    if (i + 1 < total_ && meta_[i + 1].dist > m.dist + 1) return false;  // RH ordering
    if (m.dist == 0) continue;
    ++count;
    size_t h = size_t((uint64_t(entries_[i].hash_hi) * slots_) >> 32);
    if (i < h || i - h + 1 != m.dist) return false;
  }
  return count == size_ && meta_[total_ - 1].dist == 0 && size_ <= capacity_;
}

void FlowTable::clear() {
  if (meta_ != nullptr) std::memset(static_cast<void*>(meta_), 0, total_ * sizeof(Meta));
  size_ = 0;
  cursor_ = 0;
}

void FlowTable::touch(FlowEntry& e, uint8_t tcp_flags, uint32_t now_ms) {
  e.last_seen_ms = now_ms;
  if (e.packets != UINT32_MAX) ++e.packets;  // saturate rather than wrap
  if (e.key.proto == kProtoTcp) e.state = nextTcpState(e.state, tcp_flags);
}

FlowState FlowTable::initialState(uint8_t proto, uint8_t tcp_flags) {
  if (proto == kProtoTcp) {
    // A first packet without SYN is a flow picked up mid-stream (e.g. after an
    // SLR restart): nextTcpState makes a plain ACK established.
    return nextTcpState(FlowState::kTcpSyn, tcp_flags);
  }
  if (proto == kProtoUdp) return FlowState::kUdp;
  return FlowState::kOther;
}

}  // namespace slr
