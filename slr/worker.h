#pragma once
// One forwarding worker: owns a TUN queue, a raw send socket, a flow-table
// shard and its counters.  Per batch: read up to kBatch packets from the TUN
// queue, parse, look up or create the flow, encapsulate in place, one
// sendmmsg.  No allocation, no exceptions, no locks on the packet path.
//
// Multi-queue TUN spreads flows over queues by flow hash, so every packet of
// a flow reaches the same worker and the shards never need to agree.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <netinet/in.h>
#include <sys/socket.h>

#include "core/fd.h"
#include "core/flow_table.h"
#include "core/result.h"
#include "core/spsc_ring.h"
#include "slr/counters.h"
#include "slr/fast_path.h"
#include "slr/forwarding.h"

namespace slr::router {

struct VipMatch {
  uint32_t net = 0, mask = 0;  // IPv4 host order
};

// Control thread -> worker: a lower SLR says where a flow's host is.
struct ShortcutCmd {
  FlowKey key;
  uint32_t endpoint = 0;  // host order: the host's tunnel address
};
// Worker -> upstream session: tell the SLR above where a flow's host is.
struct ShortcutOut {
  FlowKey key;
  uint32_t endpoint = 0;  // host order
};

struct WorkerOptions {
  uint16_t id = 0;
  UniqueFd tun;                 // this worker's TUN queue (non-blocking)
  uint32_t tunnel_source = 0;   // host order
  uint32_t tunnel_mtu = 1500;   // largest outer packet we may send
  size_t flow_capacity = 1 << 20;
  FlowTimeouts timeouts;
  bool stateless_on_full = true;
  uint64_t hash_seed = 0;
  std::vector<VipMatch> vips;   // config order; index = VIP counter slot
  size_t host_count = 0;
  FastPath* fast_path = nullptr;  // kernel fast path, or nullptr (owned by the daemon)

  // Hierarchy.  upstream_sources[u]: tunnel source of [[upstream]] u (host
  // order).  tunnel_rx: this worker terminates tunnels from them on its own
  // raw IPIP socket.  Every raw socket sees every packet, so with
  // tunnel_shards > 1 a socket filter keeps only the flows whose inner
  // addresses and ports hash to tunnel_shard: each flow has one owner.
  std::vector<uint32_t> upstream_sources;
  bool tunnel_rx = false;
  uint16_t tunnel_shard = 0;
  uint16_t tunnel_shards = 1;
  bool shortcut = false;             // [slr].shortcut
  uint32_t shortcut_wait_ms = 20;
  std::vector<int> upstream_wake;    // eventfd per upstream session: "shortcuts queued"
};

// A flow as shown by `slrctl flows`.
struct FlowRecord {
  FlowKey key;
  uint16_t next_hop;
  uint32_t label;
  uint32_t endpoint;  // host order: where packets go (the next hop's or the shortcut's address)
  bool shortcut;      // next_hop is not a configured one: a shortcut to `endpoint`
  FlowState state;
  uint32_t idle_ms;
  uint32_t age_ms;
  uint32_t packets;
};

class Worker {
 public:
  static constexpr size_t kBatch = 32;
  static constexpr size_t kBufSize = 16384;  // TUN MTU is far below

  Worker(WorkerOptions opts, const SnapshotHolder& snapshots);
  ~Worker();
  Status init();
  void run(const std::atomic<bool>& stop);

  const WorkerCounters& counters() const { return *counters_; }
  const std::vector<ObjectCounters>& vipCounters() const { return vip_counters_; }
  const std::vector<ObjectCounters>& hostCounters() const { return host_counters_; }
  size_t flowCapacity() const { return table_ ? table_->capacity() : 0; }

  // Control thread: copy up to `limit` live flows.  Served by the worker
  // between batches (it owns the table); waits at most timeout_ms.
  std::vector<FlowRecord> dumpFlows(size_t limit, int timeout_ms);
  // Control thread: number of live flows per host id (draining/status).
  std::vector<uint64_t> flowsPerHost(int timeout_ms);
  // Control thread: the flow's record if this worker has it.
  std::optional<FlowRecord> lookupFlow(const FlowKey& key, int timeout_ms);

  // Control thread (the only producer): a lower SLR's shortcut.  False when
  // the queue is full (the flow then keeps its path through the lower SLR).
  // kick() wakes the worker once after a batch of posts.
  bool postShortcut(const ShortcutCmd& c) { return cmds_->push(c); }
  void kick();
  // Upstream session u's thread (the only consumer of ring u).
  SpscRing<ShortcutOut>& shortcutsOut(size_t u) { return *out_[u]; }

  // next_hop values >= kShortcutBase name a shortcut endpoint, not a host.
  static constexpr uint16_t kShortcutBase = 0x8000;

 private:
  struct Packet;
  struct Held;
  void processBatch(size_t n, uint32_t now_ms);
  size_t readTunnel();  // recvmmsg from the raw IPIP socket into pkts_; returns count
  bool hold(const Packet& p, uint32_t now_ms);
  void releaseHeld(const FlowKey& key, uint32_t endpoint);
  void expireHeld(uint32_t now_ms);
  void queueTx(std::byte* frame, size_t inner_len, uint32_t dst);
  void applyShortcuts(uint32_t now_ms);
  void signalUp(const FlowEntry& e, uint32_t endpoint, bool relay);
  uint32_t endpointOf(uint16_t nh) const;
  uint16_t internEndpoint(uint32_t endpoint);  // kNoNextHop when the intern table is full
  // Returns true if the packet was queued for transmission.
  bool forward(Packet& p, uint32_t now_ms);
  uint16_t pick(const RouteEntry& rt, const Packet& p);
  size_t vipOf(uint32_t dst) const;  // index into opts_.vips; size() = not a VIP
  bool alive(uint16_t nh) const;     // a shortcut endpoint, or a next hop that is up
  void stopAwaiting(FlowEntry& e, size_t vip);
  FlowRecord record(const FlowEntry& e, uint32_t now_ms) const;
  void sendTooBig(const std::byte* inner, size_t inner_len);
  void flush();
  void serveControl(uint32_t now_ms);
  uint32_t nowMs() const;
  void installFastPath(FlowEntry& e, uint16_t vip, uint16_t via = kNoNextHop);
  void withdrawFromFastPath(const ForwardingSnapshot& old);
  void mergeFastPath(FlowRecord& r, uint32_t now_ms) const;
  static bool refreshFromFastPath(void* self, FlowEntry& e, uint32_t now_ms);

  WorkerOptions opts_;
  const SnapshotHolder& snapshots_;
  std::shared_ptr<const ForwardingSnapshot> snap_;
  uint64_t snap_generation_ = 0;
  std::unique_ptr<FlowTable> table_;
  UniqueFd raw_;
  uint32_t next_label_ = 1;
  uint16_t ip_id_ = 0;
  std::vector<uint64_t> rr_counters_;  // per route index, for round-robin selections

  // Buffers, allocated once.
  std::unique_ptr<std::byte[]> bufs_;
  std::vector<Packet> pkts_;
  UniqueFd tunnel_;  // raw IPPROTO_IPIP socket (tunnel_rx only)
  std::vector<mmsghdr> rx_msgs_;
  std::vector<iovec> rx_iov_;
  std::vector<mmsghdr> tx_msgs_;
  std::vector<iovec> tx_iov_;
  std::vector<sockaddr_in> tx_addr_;
  size_t tx_count_ = 0;
  std::byte icmp_buf_[128];
  uint32_t icmp_tokens_ = 0;
  uint32_t icmp_refill_ms_ = 0;

  // Shortcuts.
  UniqueFd wake_;  // eventfd: postShortcut() wakes the worker
  std::unique_ptr<SpscRing<ShortcutCmd>> cmds_;
  std::vector<std::unique_ptr<SpscRing<ShortcutOut>>> out_;  // per upstream
  std::vector<bool> out_pending_;                            // per upstream, this batch
  std::vector<uint32_t> endpoints_;                          // shortcut endpoint by index
  std::unique_ptr<Held[]> held_;                             // FIFO of held packets
  std::unique_ptr<std::byte[]> held_bufs_;
  size_t held_head_ = 0, held_count_ = 0;

  std::unique_ptr<WorkerCounters> counters_;
  std::vector<ObjectCounters> vip_counters_;
  std::vector<ObjectCounters> host_counters_;

  // Control requests (rare): flag checked once per batch.
  enum class Request { kNone, kDump, kPerHost, kLookup };
  std::atomic<int> request_{0};
  std::mutex req_mu_;
  std::condition_variable req_cv_;
  size_t req_limit_ = 0;
  bool req_done_ = false;
  std::vector<FlowRecord> req_flows_;
  std::vector<uint64_t> req_per_host_;
  FlowKey req_key_;
  std::optional<FlowRecord> req_record_;
};

}  // namespace slr::router
