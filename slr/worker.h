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
#include "core/flow_advert.h"
#include "core/flow_table.h"
#include "core/policy.h"
#include "core/protocol.h"
#include "core/result.h"
#include "core/spsc_ring.h"
#include "slr/counters.h"
#include "slr/fast_path.h"
#include "slr/forwarding.h"
#include "slr/mpsc_ring.h"

namespace slr::router {

struct VipMatch {
  uint32_t net = 0, mask = 0;  // IPv4 host order
};

// FlowEntry::flags, as the workers use them.
namespace flow_flags {
inline constexpr uint8_t kFastPath = 0x01;   // installed (or to be re-added) in the kernel fast path
inline constexpr uint8_t kAwaiting = 0x02;   // next_hop is only a fallback: hold (or drop) later packets
inline constexpr uint8_t kShortcut = 0x04;   // next_hop is a shortcut endpoint
inline constexpr uint8_t kMidstream = 0x08;  // next hop guessed for a segment without SYN, not learnt
inline constexpr uint8_t kUpstreamShift = 4; // bits 4..7: [[upstream]] index + 1; 0 = arrived natively
inline constexpr size_t kMaxUpstreams = 15;
}  // namespace flow_flags

// What the control side asks a worker to do.
//   kShortcut  a lower SLR says the flow's host is `endpoint` (control thread)
//   kResolve   WHOHAS answer: the flow's host is next_hop, or `endpoint` as a
//              shortcut endpoint when next_hop is kNoNextHop (whohas thread)
//   kMirror    hot spare: the active SLR has this flow (spare thread)
//   kUnmirror  hot spare: it no longer has it (spare thread)
//   kAdvert    another worker accepted an ICMP echo flow advertisement for
//              host next_hop (workers; the kernel picks the TUN queue, so the
//              flow's owner may be any worker)
enum class CmdKind : uint8_t { kShortcut, kResolve, kMirror, kUnmirror, kAdvert };
struct WorkerCmd {
  CmdKind kind = CmdKind::kShortcut;
  FlowState state = FlowState::kOther;  // kMirror: the flow's state at the main
  uint16_t next_hop = kNoNextHop;       // kResolve/kMirror/kAdvert: [[host]] id; kNoNextHop = `endpoint` is a shortcut endpoint
  FlowKey key;
  uint32_t endpoint = 0;                // host order tunnel address
  uint32_t label = 0;                   // kMirror
  uint32_t age_ms = 0;                  // kMirror: how long ago the flow started (first_seen = now - age)
};

// Worker -> spare module: flow-table changes (sync_out).  Mirror commands
// never produce events (no echo between the pair); neither do copies of a
// flow another worker may own (FlowEntry::packets == 0) until a packet
// reaches them.
struct SyncEvent {
  proto::SyncOp op = proto::SyncOp::kUpsert;  // kUpsert (new flow / next hop or state changed) or kRemove (expired)
  FlowState state = FlowState::kOther;
  uint16_t next_hop = proto::kNoHostId;  // host id, or proto::kNoHostId for a shortcut endpoint
  FlowKey key;
  uint32_t endpoint = 0;  // host order (0 when the next hop has no address now)
  uint32_t label = 0;
  uint32_t first_seen_ms = 0, t_ms = 0;  // worker clock (steady ms): flow start, event time
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
  // order; at most flow_flags::kMaxUpstreams).  tunnel_rx: this worker
  // terminates tunnels from them on its own raw IPIP socket.  Every raw
  // socket sees every packet, so with tunnel_shards > 1 a socket filter keeps
  // only the flows whose inner addresses and ports hash to tunnel_shard:
  // each flow has one owner.
  std::vector<uint32_t> upstream_sources;
  bool tunnel_rx = false;
  uint16_t tunnel_shard = 0;
  uint16_t tunnel_shards = 1;
  bool shortcut = false;             // [slr].shortcut
  uint32_t shortcut_wait_ms = 20;
  std::vector<int> upstream_wake;    // eventfd per upstream session: "shortcuts queued"

  // Flows that survive failures.
  const std::atomic<bool>* standby = nullptr;  // true while this SLR is a standby spare / recovering main:
                                               // entries never expire (mirror pinned); on true->false every
                                               // entry's last_seen is set to now (takeover), once.
  bool sync_out = false;        // push SyncEvents
  bool whohas = false;          // [[neighbor]] configured
  uint32_t whohas_wait_ms = 50;
  int whohas_wake = -1;         // eventfd written after pushing whohas keys in a batch
  uint32_t midstream_wait_ms = 3000;
  std::vector<std::vector<VipMatch>> host_authorised;  // [host id] = its [[host]].subnets (echo checks)
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
  uint16_t host_id;   // [[host]] id; kNoNextHop for a shortcut endpoint
  bool midstream;     // next hop guessed (or still being looked for), not learnt from a SYN
  bool awaiting;      // next hop not final yet (shortcut, WHOHAS answer or midstream wait pending)
};

// ---- pure decisions (unit-tested) ----

// A segment without SYN of a flow this SLR does not know, `age_ms` after its
// first packet: hold it for a WHOHAS answer, drop it (the client retransmits)
// while an answer or a flow advertisement may still come, or send it to the
// stateless table's guess.
enum class MidstreamStep : uint8_t { kHold, kDrop, kGuess };
MidstreamStep midstreamStep(uint32_t age_ms, bool whohas, uint32_t whohas_wait_ms,
                            uint32_t midstream_wait_ms);

// ICMP echo flow advertisement checks (the packet decoded with advert::decode == kOk).
enum class EchoVerdict : uint8_t {
  kApply,          // host_out is the [[host]] id the flow goes to
  kMalformed,      // the advertisement does not describe this packet (client / VIP differ)
  kRefusedHost,    // server is no up [[host]] (unknown, down, or a lower SLR)
  kRefusedSubnet,  // that host is not authorised for the VIP
  kConflict,       // the flow exists here, learnt, with another live next hop
};
// src/dst: the echo reply's addresses (host order).  existing: this worker's
// entry for advert::keyOf(a), or nullptr.  An existing entry may be re-pointed
// when it is midstream, already points at that host, or its next hop is down.
EchoVerdict judgeEchoAdvert(const advert::FlowAdvert& a, uint32_t src, uint32_t dst,
                            const std::vector<NextHop>& next_hops,
                            const std::vector<std::vector<VipMatch>>& host_authorised,
                            const FlowEntry* existing, uint16_t& host_out);

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
  // *complete (optional) is false when the worker did not answer in time
  // (the result is then empty, not the worker's table).
  std::vector<FlowRecord> dumpFlows(size_t limit, int timeout_ms, bool* complete = nullptr);
  // Control thread: number of live flows per host id (draining/status).
  // Copies that never saw a packet here (packets == 0) are not counted.
  std::vector<uint64_t> flowsPerHost(int timeout_ms);
  // Control thread: the flow's record if this worker has it.
  std::optional<FlowRecord> lookupFlow(const FlowKey& key, int timeout_ms);

  // Commands, routed by kind to one ring per producer (after init()):
  //   kShortcut          SPSC, the control thread
  //   kMirror/kUnmirror  SPSC, the spare thread
  //   kResolve/kAdvert   MPSC, the whohas thread and the other workers
  // False when the ring is full (counted by the caller).  kick() wakes the
  // worker once after a batch of posts.
  bool post(const WorkerCmd& c);
  void kick();
  // The other workers (all of them, this one included or not), for echo
  // advertisements: a flow's owner is whichever worker the kernel picks.
  // Call before run(); not changed afterwards.
  void setPeers(std::vector<Worker*> peers) { peers_ = std::move(peers); }

  // Upstream session u's thread (the only consumer of ring u).
  SpscRing<ShortcutOut>& shortcutsOut(size_t u) { return *out_[u]; }
  // Spare module thread (the only consumer): flow-table changes (sync_out).
  SpscRing<SyncEvent>& syncOut() { return *sync_; }
  // True once after the sync ring overflowed (events were lost: resync).
  bool takeSyncOverflow() { return sync_overflow_.exchange(false, std::memory_order_acq_rel); }
  // Whohas module thread (the only consumer): keys of mid-stream flows to ask about.
  SpscRing<FlowKey>& whohasOut() { return *whohas_out_; }

  // next_hop values >= kShortcutBase name a shortcut endpoint, not a host.
  static constexpr uint16_t kShortcutBase = 0x8000;

 private:
  struct Packet;
  struct Held;
  enum class Signal : uint8_t { kSent, kRelayed, kResignalled };
  void processBatch(size_t n, uint32_t now_ms);
  size_t readTunnel();  // recvmmsg from the raw IPIP socket into pkts_; returns count
  bool hold(const Packet& p, uint32_t now_ms);
  void releaseHeld(const FlowKey& key, uint32_t endpoint, bool shortcut);
  void expireHeld(uint32_t now_ms);
  void expireHeldFlow(size_t slot, uint32_t now_ms);
  void queueTx(std::byte* frame, size_t inner_len, uint32_t dst);
  void applyShortcuts(uint32_t now_ms);
  void applyResolves(uint32_t now_ms);
  void applyMirrors(uint32_t now_ms);
  void signalUp(FlowEntry& e, uint32_t endpoint, Signal kind);
  uint32_t endpointOf(uint16_t nh) const;
  uint32_t endpointOrZero(uint16_t nh) const;  // endpointOf, 0 when the next hop is unknown now
  uint16_t internEndpoint(uint32_t endpoint);  // kNoNextHop when the intern table is full
  // Returns true if the packet was queued for transmission.
  bool forward(Packet& p, uint32_t now_ms);
  bool transmit(Packet& p, size_t vip, uint16_t nh);
  bool midstreamWait(Packet& p, FlowEntry& e, size_t vip, uint32_t now_ms);
  bool echoAdvert(Packet& p, size_t vip, uint32_t now_ms);
  bool applyAdvert(const FlowKey& key, uint16_t host, uint32_t now_ms);
  void repoint(FlowEntry& e, uint16_t nh, uint32_t now_ms);
  void guessMidstream(FlowEntry& e, size_t vip, uint32_t now_ms);
  uint16_t pick(const RouteEntry& rt, const Packet& p);
  size_t vipOf(uint32_t dst) const;  // index into opts_.vips; size() = not a VIP
  bool alive(uint16_t nh) const;     // a shortcut endpoint, or a next hop that is up
  bool isHost(uint16_t nh) const;    // an up next hop that is a host (not a lower SLR)
  void stopAwaiting(FlowEntry& e, size_t vip, uint32_t now_ms);
  // A TCP flow whose FIN or RST this worker or the kernel fast path saw.
  bool connectionEnded(const FlowEntry& e) const;
  // Before erasing an entry out of turn: out of the kernel map, and the
  // spare told.
  void retire(const FlowEntry& e, uint32_t now_ms);
  void sync(const FlowEntry& e, proto::SyncOp op, uint32_t now_ms);
  FlowRecord record(const FlowEntry& e, uint32_t now_ms) const;
  void sendTooBig(const std::byte* inner, size_t inner_len);
  void flush();
  void serveControl(uint32_t now_ms);
  uint32_t nowMs() const;
  void installFastPath(FlowEntry& e, uint16_t vip, uint16_t via = kNoNextHop);
  bool liveNow(const FlowEntry& e, uint32_t now_ms) const;
  std::optional<FastPathActivity> kernelActivity(const FlowEntry& e) const;
  // counted: the flow was added to the kernel map before (not a copy).
  void reinstallFastPath(FlowEntry& e, uint16_t vip, bool counted);
  void withdrawFromFastPath(const ForwardingSnapshot& old);
  void mergeFastPath(FlowRecord& r, uint32_t now_ms) const;
  static bool onExpiry(void* self, FlowEntry& e, uint32_t now_ms);
  void checkStandby(uint32_t now_ms);

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

  // Commands and shortcuts.
  UniqueFd wake_;  // eventfd: post() + kick() wake the worker
  std::unique_ptr<SpscRing<WorkerCmd>> shortcut_cmds_;
  std::unique_ptr<SpscRing<WorkerCmd>> mirror_cmds_;
  std::unique_ptr<MpscRing<WorkerCmd>> resolve_cmds_;
  std::vector<Worker*> peers_;
  std::vector<std::unique_ptr<SpscRing<ShortcutOut>>> out_;  // per upstream
  std::vector<bool> out_pending_;                            // per upstream, this batch
  std::vector<uint32_t> endpoints_;                          // shortcut endpoint by index
  std::unique_ptr<Held[]> held_;                             // FIFO of held packets
  std::unique_ptr<std::byte[]> held_bufs_;
  size_t held_head_ = 0, held_count_ = 0;

  // Recovery.
  std::unique_ptr<SpscRing<SyncEvent>> sync_;
  std::atomic<bool> sync_overflow_{false};
  std::unique_ptr<SpscRing<FlowKey>> whohas_out_;
  bool whohas_pending_ = false;   // keys pushed this iteration: wake the whohas thread
  bool standby_ = false;          // opts_.standby as of this iteration
  bool table_was_full_ = false;   // an insert was refused at full_ms_
  uint32_t full_ms_ = 0;
  uint32_t now_ms_ = 0;           // this iteration's clock, for the expiry hook

  std::unique_ptr<WorkerCounters> counters_;
  std::vector<ObjectCounters> vip_counters_;
  std::vector<ObjectCounters> host_counters_;

  // Control requests (rare): flag checked once per batch.
  enum class Request { kNone, kDump, kPerHost, kLookup };
  std::atomic<int> request_{0};
  std::mutex req_mu_;
  // One request at a time: the status, whohas and spare threads all ask, and
  // the request slot (req_key_, req_done_...) is single.
  std::mutex req_caller_mu_;
  std::condition_variable req_cv_;
  size_t req_limit_ = 0;
  bool req_done_ = false;
  std::vector<FlowRecord> req_flows_;
  std::vector<uint64_t> req_per_host_;
  FlowKey req_key_;
  std::optional<FlowRecord> req_record_;
};

}  // namespace slr::router
