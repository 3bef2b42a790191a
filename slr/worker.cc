#include "slr/worker.h"

#include <linux/filter.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "core/flow_advert.h"
#include "core/log.h"
#include "core/packet.h"
#include "core/tunnel.h"

namespace slr::router {
namespace {

using namespace flow_flags;

constexpr size_t kHeadroom = IpipCodec::kOverhead;
constexpr uint32_t kIcmpPerSecond = 100;  // rate limit for "fragmentation needed"
constexpr uint8_t kUpstreamMask = 0xF0;   // FlowEntry::flags bits 4..7: [[upstream]] index + 1
constexpr size_t kHoldSlots = 256;            // held packets per worker
constexpr size_t kHoldBuf = 2048;             // larger packets are never held
constexpr size_t kMaxEndpoints = 4096;        // distinct shortcut endpoints per worker
constexpr size_t kTxSlots = Worker::kBatch + kHoldSlots;
// Command rings.  Mirror commands come in bursts (a full resync posts the
// main's whole table): the spare thread retries when a ring is full.
constexpr size_t kShortcutRing = 4096, kResolveRing = 4096, kMirrorRing = 65536;
constexpr size_t kSyncRing = 65536, kWhohasRing = 4096;
constexpr int kShortcutBudget = 1024, kResolveBudget = 1024, kMirrorBudget = 8192;
constexpr uint8_t kTcpSynFlag = FlowTable::kTcpSyn;
constexpr uint8_t kTcpAckFlag = FlowTable::kTcpAck;

uint32_t v4(const std::array<uint8_t, 16>& b) {
  return (uint32_t(b[0]) << 24) | (uint32_t(b[1]) << 16) | (uint32_t(b[2]) << 8) | uint32_t(b[3]);
}

// Classic BPF on the raw IPIP socket: keep a packet only if its inner flow
// hashes to this worker.  The filter sees the packet from the outer IPv4
// header: inner source at 32, destination at 36, protocol at 29 and, for
// TCP and UDP, ports at 40 (inner header without options; anything else
// still lands on exactly one worker, just hashed on other bytes).  Packets too short to hash go to worker 0, which
// counts them as malformed.  Flows, not packets, are split, so a flow's
// state lives in one table.
Status attachShardFilter(int fd, uint16_t shard, uint16_t shards) {
  sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_LEN, 0),              // 0: A = length
      BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 44, 0, 18),     // 1: too short to hash -> 20
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 32),             // 2: A = inner src
      BPF_STMT(BPF_MISC | BPF_TAX, 0),                    // 3: X = A
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 36),             // 4: A = inner dst
      BPF_STMT(BPF_ALU | BPF_XOR | BPF_X, 0),             // 5: A ^= X
      BPF_STMT(BPF_MISC | BPF_TAX, 0),                    // 6: X = src ^ dst
      BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 29),             // 7: A = inner protocol
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 6, 3, 0),       // 8: TCP -> 12
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 17, 2, 0),      // 9: UDP -> 12
      BPF_STMT(BPF_MISC | BPF_TXA, 0),                    // 10: others: addresses only
      BPF_JUMP(BPF_JMP | BPF_JA, 2, 0, 0),                // 11: -> 14
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 40),             // 12: A = sport << 16 | dport
      BPF_STMT(BPF_ALU | BPF_XOR | BPF_X, 0),             // 13: A ^= X
      // Fold the high half (the source port) into the low half: a product's
      // bit 16 depends on the factor's bits 0..16 only, and Linux hands out
      // ephemeral ports of one parity.
      BPF_STMT(BPF_MISC | BPF_TAX, 0),                    // 14
      BPF_STMT(BPF_ALU | BPF_RSH | BPF_K, 16),            // 15
      BPF_STMT(BPF_ALU | BPF_XOR | BPF_X, 0),             // 16: A ^= A >> 16
      BPF_STMT(BPF_ALU | BPF_MUL | BPF_K, 0x9E3779B1u),   // 17: mix (Fibonacci hashing)
      BPF_STMT(BPF_ALU | BPF_RSH | BPF_K, 16),            // 18
      BPF_JUMP(BPF_JMP | BPF_JA, 1, 0, 0),                // 19: -> 21
      BPF_STMT(BPF_LD | BPF_IMM, 0),                      // 20: short: worker 0 counts the drop
      BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, shards),        // 21
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, shard, 0, 1),   // 22
      BPF_STMT(BPF_RET | BPF_K, 0xFFFFFFFFu),             // 23: keep all of it
      BPF_STMT(BPF_RET | BPF_K, 0),                       // 24: another worker's flow
  };
  sock_fprog prog{static_cast<unsigned short>(sizeof code / sizeof code[0]), code};
  if (::setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0)
    return sysError("SO_ATTACH_FILTER on the raw IPIP socket (worker " + std::to_string(shard) + ")");
  return Ok{};
}

}  // namespace


struct Worker::Packet {
  std::byte* frame = nullptr;  // kHeadroom bytes, then the inner packet
  size_t len = 0;              // inner length
  ParseError err = ParseError::kOk;
  PacketInfo info;
  uint64_t hash = 0;
  int8_t upstream = -1;        // arrived tunnelled from [[upstream]] n; -1 = natively
};

struct Worker::Held {
  FlowKey key;
  uint32_t deadline_ms = 0;
  uint16_t len = 0;  // inner length; the frame is held_bufs_ + slot * kHoldBuf
  bool live = false;
};

Worker::Worker(WorkerOptions opts, const SnapshotHolder& snapshots)
    : opts_(std::move(opts)), snapshots_(snapshots) {}

Worker::~Worker() = default;


// ---- pure decisions ----

MidstreamStep midstreamStep(uint32_t age_ms, bool whohas, uint32_t whohas_wait_ms,
                            uint32_t midstream_wait_ms) {
  if (whohas && age_ms < whohas_wait_ms) return MidstreamStep::kHold;
  if (age_ms < midstream_wait_ms) return MidstreamStep::kDrop;
  return MidstreamStep::kGuess;
}

EchoVerdict judgeEchoAdvert(const advert::FlowAdvert& a, uint32_t src, uint32_t dst,
                            const std::vector<NextHop>& next_hops,
                            const std::vector<std::vector<VipMatch>>& host_authorised,
                            const FlowEntry* existing, uint16_t& host_out) {
  // The reply comes from the client toward the VIP, like the flow's packets:
  // an advertisement for another client's or another VIP's flow is not one.
  if (a.client != src || a.vip != dst) return EchoVerdict::kMalformed;
  size_t h = 0;
  while (h < next_hops.size() && h < Worker::kShortcutBase &&
         !(next_hops[h].up && !next_hops[h].is_slr && next_hops[h].tunnel_v4 != 0 &&
           next_hops[h].tunnel_v4 == a.server))
    ++h;
  if (h == next_hops.size() || h >= Worker::kShortcutBase) return EchoVerdict::kRefusedHost;
  bool authorised = false;
  if (h < host_authorised.size()) {
    for (const VipMatch& m : host_authorised[h]) authorised = authorised || (a.vip & m.mask) == m.net;
  }
  if (!authorised) return EchoVerdict::kRefusedSubnet;
  if (existing != nullptr) {
    const uint16_t nh = existing->next_hop;
    const bool live = nh >= Worker::kShortcutBase || (nh < next_hops.size() && next_hops[nh].up);
    // A flow learnt here (from its SYN, a WHOHAS answer, a shortcut) keeps
    // its live next hop: an echo must not move an established connection.
    if (!(existing->flags & kMidstream) && nh != h && live) return EchoVerdict::kConflict;
  }
  host_out = uint16_t(h);
  return EchoVerdict::kApply;
}

Status Worker::init() {
  if (opts_.upstream_sources.size() > kMaxUpstreams)
    return Error{EINVAL, "worker " + std::to_string(opts_.id),
                 "at most " + std::to_string(kMaxUpstreams) + " [[upstream]] (flow flags keep index + 1 in 4 bits)"};
  auto t = FlowTable::create(opts_.flow_capacity, opts_.timeouts, opts_.hash_seed);
  if (!t) return t.error();
  table_ = std::move(t.value());

  // IPPROTO_RAW implies IP_HDRINCL: we hand the kernel complete outer packets
  // and it only routes them (and fills the checksum, which we already did).
  raw_.reset(::socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW));
  if (!raw_) return sysError("socket(AF_INET, SOCK_RAW, IPPROTO_RAW) for tunnel transmit");
  int sndbuf = 4 << 20;
  (void)::setsockopt(raw_.get(), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);

  bufs_ = std::make_unique<std::byte[]>(kBatch * kBufSize);
  pkts_.resize(kBatch);
  for (size_t i = 0; i < kBatch; ++i) pkts_[i].frame = bufs_.get() + i * kBufSize;
  tx_msgs_.resize(kTxSlots);
  tx_iov_.resize(kTxSlots);
  tx_addr_.resize(kTxSlots);
  counters_ = std::make_unique<WorkerCounters>();

  wake_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wake_) return sysError("eventfd for worker wake-ups");
  shortcut_cmds_ = std::make_unique<SpscRing<WorkerCmd>>(kShortcutRing);
  mirror_cmds_ = std::make_unique<SpscRing<WorkerCmd>>(kMirrorRing);
  resolve_cmds_ = std::make_unique<MpscRing<WorkerCmd>>(kResolveRing);
  sync_ = std::make_unique<SpscRing<SyncEvent>>(opts_.sync_out ? kSyncRing : 2);
  whohas_out_ = std::make_unique<SpscRing<FlowKey>>(opts_.whohas ? kWhohasRing : 2);
  for (size_t u = 0; u < opts_.upstream_sources.size(); ++u)
    out_.push_back(std::make_unique<SpscRing<ShortcutOut>>(4096));
  out_pending_.assign(out_.size(), false);
  endpoints_.reserve(kMaxEndpoints);
  held_ = std::make_unique<Held[]>(kHoldSlots);
  held_bufs_ = std::make_unique<std::byte[]>(kHoldSlots * kHoldBuf);
  if (opts_.tunnel_rx) {
    // Every tunnel packet to our address, outer header included.  The kernel
    // has no ipip module here; with one, the raw socket still sees a copy.
    tunnel_.reset(::socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_IPIP));
    if (!tunnel_) return sysError("socket(AF_INET, SOCK_RAW, IPPROTO_IPIP) for tunnels from upstream SLRs");
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(opts_.tunnel_source);
    if (::bind(tunnel_.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0)
      return sysError("bind raw IPIP socket to tunnel_source");
    int rcvbuf = 8 << 20;
    (void)::setsockopt(tunnel_.get(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    if (opts_.tunnel_shards > 1) {
      if (auto st = attachShardFilter(tunnel_.get(), opts_.tunnel_shard, opts_.tunnel_shards); !st)
        return st;
    }
    rx_msgs_.resize(kBatch);
    rx_iov_.resize(kBatch);
  }
  vip_counters_ = std::vector<ObjectCounters>(opts_.vips.size());
  host_counters_ = std::vector<ObjectCounters>(opts_.host_count);
  // Every expiry passes the hook: fast-path refresh, standby pinning, sync.
  table_->setExpiryHook(&Worker::onExpiry, this);
  return Ok{};
}

uint32_t Worker::nowMs() const {
  using namespace std::chrono;
  return uint32_t(duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count());
}

void Worker::run(const std::atomic<bool>& stop) {
  const int fd = opts_.tun.get();
  bool idle = true;
  while (!stop.load(std::memory_order_relaxed)) {
    if (idle) {
      pollfd p[3] = {{fd, POLLIN, 0}, {wake_.get(), POLLIN, 0}, {tunnel_.get(), POLLIN, 0}};
      // Held packets have deadlines of a few ms: do not sleep past them.
      int timeout = held_count_ > 0 ? 1 : 100;
      (void)::poll(p, tunnel_ ? 3 : 2, timeout);
      if (p[1].revents & POLLIN) {
        uint64_t v;
        (void)!::read(wake_.get(), &v, sizeof v);
      }
    }
    const uint32_t now = nowMs();
    now_ms_ = now;
    checkStandby(now);
    if (snapshots_.generation() != snap_generation_) {
      snap_generation_ = snapshots_.generation();
      auto old = std::move(snap_);
      snap_ = snapshots_.get();
      rr_counters_.assign(snap_->routes.size(), 0);  // control-rate, not per packet
      if (opts_.fast_path != nullptr && old) withdrawFromFastPath(*old);
    }
    if (request_.load(std::memory_order_acquire) != 0) serveControl(now);
    if (!shortcut_cmds_->empty()) applyShortcuts(now);
    if (!resolve_cmds_->empty()) applyResolves(now);
    if (!mirror_cmds_->empty()) applyMirrors(now);
    if (held_count_ > 0) expireHeld(now);
    flush();

    // TUN has no recvmmsg; drain up to a batch with plain reads.
    size_t n = 0;
    while (n < kBatch) {
      pkts_[n].upstream = -1;
      ssize_t r = ::read(fd, pkts_[n].frame + kHeadroom, kBufSize - kHeadroom);
      if (r <= 0) break;
      pkts_[n].len = size_t(r);
      ++n;
    }
    idle = n < kBatch;
    if (n > 0) processBatch(n, now);
    if (tunnel_) {
      size_t t = readTunnel();
      idle = idle && t < kBatch;
      if (t > 0) processBatch(t, now);
    }
    for (size_t u = 0; u < out_pending_.size(); ++u) {
      if (!out_pending_[u]) continue;
      out_pending_[u] = false;
      uint64_t one = 1;
      if (u < opts_.upstream_wake.size()) (void)!::write(opts_.upstream_wake[u], &one, sizeof one);
    }
    if (whohas_pending_) {
      whohas_pending_ = false;
      uint64_t one = 1;
      if (opts_.whohas_wake >= 0) (void)!::write(opts_.whohas_wake, &one, sizeof one);
    }
    (void)table_->expireSome(now, 256);
    // Counts expiries found by the sweep, by lookups and by full-table reclaim.
    counters_->flows_expired.store(table_->counters().expired, std::memory_order_relaxed);
    counters_->active_flows.store(table_->size(), std::memory_order_relaxed);
  }
}

// Standby spare / recovering main: entries are a mirror and never expire
// (onExpiry).  When this SLR starts forwarding, every entry starts its idle
// time afresh: the flows were alive at the other SLR until a moment ago.
void Worker::checkStandby(uint32_t now_ms) {
  if (opts_.standby == nullptr) return;
  const bool sb = opts_.standby->load(std::memory_order_acquire);
  if (standby_ && !sb) table_->forEach([now_ms](FlowEntry& e) { e.last_seen_ms = now_ms; });
  standby_ = sb;
}

// One recvmmsg from the raw IPIP socket.  Each outer header must be a plain
// 20-byte IPv4 header, unfragmented, to our tunnel address and from an
// [[upstream]] SLR; it then sits exactly in the frame's headroom, so the
// inner packet is where a TUN read would have put it and re-encapsulation
// overwrites the old outer header in place.  Returns the packets kept (moved
// to the front of pkts_).
size_t Worker::readTunnel() {
  for (size_t i = 0; i < kBatch; ++i) {
    rx_iov_[i] = iovec{pkts_[i].frame, kBufSize};
    rx_msgs_[i].msg_hdr = msghdr{};
    rx_msgs_[i].msg_hdr.msg_iov = &rx_iov_[i];
    rx_msgs_[i].msg_hdr.msg_iovlen = 1;
  }
  int r = ::recvmmsg(tunnel_.get(), rx_msgs_.data(), kBatch, MSG_DONTWAIT, nullptr);
  if (r <= 0) return 0;
  size_t kept = 0;
  for (size_t i = 0; i < size_t(r); ++i) {
    const std::byte* b = pkts_[i].frame;
    const size_t len = rx_msgs_[i].msg_len;
    auto drop = [&](Drop d) { bump(counters_->drops[int(d)]); };
    bump(counters_->tunnel_rx);
    if (len < kHeadroom + 20 || len >= kBufSize || b[0] != std::byte{0x45} ||
        load16(b + 2) != len || (load16(b + 6) & 0x3FFF) != 0 || b[9] != std::byte{kProtoIpip} ||
        load32(b + 16) != opts_.tunnel_source) {
      drop(Drop::k_tunnel_malformed);
      continue;
    }
    const uint32_t src = load32(b + 12);
    size_t u = 0;
    while (u < opts_.upstream_sources.size() && opts_.upstream_sources[u] != src) ++u;
    if (u == opts_.upstream_sources.size()) {
      drop(Drop::k_tunnel_not_from_upstream);
      continue;
    }
    pkts_[i].len = len - kHeadroom;
    pkts_[i].upstream = int8_t(u);
    if (kept != i) std::swap(pkts_[kept], pkts_[i]);
    ++kept;
  }
  return kept;
}

void Worker::processBatch(size_t n, uint32_t now_ms) {
  // Pass 1: parse and hash the whole batch and prefetch each flow's slot, so
  // the table's cache misses overlap instead of being paid one at a time.
  for (size_t i = 0; i < n; ++i) {
    Packet& p = pkts_[i];
    bump(counters_->rx_packets);
    bump(counters_->rx_bytes, p.len);
    if (p.len + kHeadroom >= kBufSize) {
      p.err = ParseError::kCount;  // marks "truncated by our buffer"
      continue;
    }
    p.err = parsePacket(std::span<const std::byte>(p.frame + kHeadroom, p.len), p.info);
    if (p.err != ParseError::kOk) continue;
    p.hash = table_->hash(p.info.key);
    table_->prefetch(p.hash);
  }
  // Pass 2: look up, select, encapsulate.
  for (size_t i = 0; i < n; ++i) {
    Packet& p = pkts_[i];
    if (p.err == ParseError::kCount) {
      bump(counters_->drops[int(Drop::k_rx_truncated)]);
    } else if (p.err != ParseError::kOk) {
      bump(counters_->parse_drops[static_cast<int>(p.err)]);
    } else {
      forward(p, now_ms);
    }
  }
  flush();
}

bool Worker::forward(Packet& p, uint32_t now_ms) {
  auto drop = [this](Drop d) {
    bump(counters_->drops[static_cast<int>(d)]);
    return false;
  };
  std::span<const std::byte> inner(p.frame + kHeadroom, p.len);
  const PacketInfo& info = p.info;
  const uint32_t dst = v4(info.key.dst);
  const size_t vip = vipOf(dst);
  if (vip == opts_.vips.size()) return drop(Drop::k_not_vip);

  // An echo reply toward a VIP may carry a host's flow advertisement (Fig. 10).
  if (info.key.proto == kProtoIcmp && !info.icmp_error && !info.is_fragment &&
      info.l4_offset < info.l3_len && inner[info.l4_offset] == std::byte{0}) {
    if (echoAdvert(p, vip, now_ms)) return true;
  }

  const ForwardingSnapshot& snap = *snap_;
  const uint64_t hash = p.hash;
  uint16_t nh = kNoNextHop;
  FlowEntry* e = table_->lookup(info.key, hash, now_ms);
  if (e != nullptr && (info.tcp_flags & (kTcpSynFlag | kTcpAckFlag)) == kTcpSynFlag &&
      info.key.proto == kProtoTcp && ((e->flags & kMidstream) || connectionEnded(*e))) {
    // A new connection on the 5-tuple of a mid-stream guess, or of one that
    // ended (FIN/RST seen, the entry lingers for tcp_closing; clients reuse
    // ports at once when the server closed first): the old one is gone, the
    // policy picks for the new one like for any SYN.  Keeping the old next
    // hop would give a drained or unhealthy host new connections.
    if (!(e->flags & kMidstream)) bump(counters_->flows_reused);
    retire(*e, now_ms);
    (void)table_->erase(info.key, hash);
    e = nullptr;
  }
  if (e != nullptr) {
    if (e->flags & kAwaiting) {
      if (e->flags & kMidstream) {
        if (midstreamWait(p, *e, vip, now_ms)) {
          FlowTable::touch(*e, info.tcp_flags, now_ms);
          return false;
        }
      } else if (uint32_t(now_ms - e->first_seen_ms) < opts_.shortcut_wait_ms) {
        // Sent to a lower SLR that will say which host it chose: hold the
        // flow's later packets for that, so they go straight to the host.
        if (hold(p, e->first_seen_ms + opts_.shortcut_wait_ms)) {
          FlowTable::touch(*e, info.tcp_flags, now_ms);
          return false;
        }
        bump(counters_->hold_overflow);
        stopAwaiting(*e, vip, now_ms);
      } else {
        stopAwaiting(*e, vip, now_ms);
      }
    }
    if (!alive(e->next_hop)) {
      // A copy (hot-spare mirror) no packet reached yet: its host may just
      // not have registered here yet (a main taking the traffic back).
      // Moving it would reset a live connection; drop until it is up.
      if (e->packets == 0) return drop(Drop::k_no_host);
      // Its host was withdrawn: the connection is lost there anyway, so give
      // the flow a live host rather than black-holing it.
      const RouteEntry* rt = snap.route(dst);
      if (rt == nullptr || rt->selection.empty()) return drop(Drop::k_no_host);
      e->next_hop = pick(*rt, p);
      e->flags &= uint8_t(~kShortcut);
      bump(counters_->flows_rerouted);
      if (opts_.fast_path != nullptr) installFastPath(*e, uint16_t(vip));
      if (e->packets > 0) sync(*e, proto::SyncOp::kUpsert, now_ms);
    }
    const uint32_t before = e->packets;
    const FlowState state_before = e->state;
    const uint32_t idle_before = now_ms - e->last_seen_ms;  // since this worker last saw it
    FlowTable::touch(*e, info.tcp_flags, now_ms);
    nh = e->next_hop;
    // Flow-state re-creation: the kernel fast path should have forwarded
    // this packet.  It may have lost the flow (or this entry is a mirror /
    // echo copy that never reached it): add it back unless it is there.
    // One bpf call, so rate-limited per flow, because packets the kernel
    // hands back on purpose (too big, no neighbour) keep coming: the first
    // packet here after 50 ms without one (the flow was in the kernel), and
    // every 8th.
    if ((e->flags & kFastPath) && (before <= 1 || idle_before >= 50 || (before & 7) == 0))
      reinstallFastPath(*e, uint16_t(vip), before > 0);
    if (p.upstream >= 0 && (e->flags & kUpstreamMask) != 0 && opts_.shortcut) {
      // A SYN from above for a flow we know: the SLR above lost the flow (a
      // reused 5-tuple after it expired the old connection, a restart) while
      // this level kept it, never having seen the FIN.  Signal the host again,
      // or the ingress would hold the new connection's packets for nothing.
      // Other packets from above mean the shortcut did not take (or the SLR
      // above lost it): say it again on packets 9, 17, 25... of the flow.
      const bool syn = (info.tcp_flags & (kTcpSynFlag | kTcpAckFlag)) == kTcpSynFlag;
      const bool again = !syn && before > 0 && (before & 7) == 0;
      if (syn || again) {
        if (nh >= kShortcutBase) {
          signalUp(*e, endpointOf(nh), again ? Signal::kResignalled : Signal::kRelayed);
        } else if (isHost(nh)) {
          signalUp(*e, snap.next_hops[nh].tunnel_v4, again ? Signal::kResignalled : Signal::kSent);
        }
      }
    }
    // A copy (mirror, echo advertisement) reached by the flow's first packet
    // here: this worker owns the flow, report it.  TCP established: the
    // spare keeps it for the established timeout.
    if (before == 0 || (state_before == FlowState::kTcpSyn && e->state == FlowState::kTcpEstablished))
      sync(*e, proto::SyncOp::kUpsert, now_ms);
  } else {
    const RouteEntry* rt = snap.route(dst);
    if (rt == nullptr || rt->selection.empty()) return drop(Drop::k_no_host);
    if (info.icmp_error) {
      // An error about a flow we do not know: route it like the flow would be
      // without state; never create state for it.
      uint64_t unused = 0;
      nh = rt->stateless.pick(hash, unused);
    } else {
      // A TCP segment without SYN and without state here is the middle of a
      // connection: this SLR lost the flow (restart, failover, the client's
      // ingress moved) or forwarded it statelessly while the table was full.
      // The stateless table is the guess; while a WHOHAS answer or the host's
      // echo advertisement may still name the real host, its packets are
      // held or dropped (the client retransmits) rather than sent to a host
      // that would reset the connection.  Right after the table was full the
      // guess is most likely right (those flows went there statelessly).
      // The policy picks for new connections only.
      uint8_t mid = 0;
      if (info.key.proto == kProtoTcp && !(info.tcp_flags & kTcpSynFlag)) {
        uint64_t unused = 0;
        nh = rt->stateless.pick(hash, unused);
        bump(counters_->flows_midstream);
        // (A RST is never retransmitted: it goes to the guess at once.)
        if (isHost(nh) && !(info.tcp_flags & kTcpRst)) {
          mid = kMidstream;
          const bool recently_full =
              table_was_full_ && uint32_t(now_ms - full_ms_) < opts_.timeouts.tcp_established_ms;
          if (!recently_full && (opts_.whohas || opts_.midstream_wait_ms > 0)) mid |= kAwaiting;
        }
      } else {
        nh = pick(*rt, p);
      }
      e = table_->insert(info.key, hash, nh, next_label_,
                         FlowTable::initialState(info.key.proto, info.tcp_flags), now_ms);
      if (e != nullptr) {
        ++next_label_;
        bump(counters_->flows_created);
        bump(vip_counters_[vip].flows);
        if (nh < host_counters_.size()) bump(host_counters_[nh].flows);
        if (p.upstream >= 0) e->flags |= uint8_t((p.upstream + 1) << kUpstreamShift);
        if (mid & kAwaiting) {
          e->flags |= mid;
          if (opts_.whohas) {
            if (whohas_out_->push(info.key)) {
              bump(counters_->whohas_asked);
              whohas_pending_ = true;
            } else {
              bump(counters_->whohas_queue_full);
            }
          }
          if (midstreamWait(p, *e, vip, now_ms)) return false;
          // (midstream_wait 0 and no hold room: guessed at once)
        } else {
          if (mid != 0) {
            e->flags |= kMidstream;
            bump(counters_->midstream_guessed);
          }
          if (alive(nh)) {
            const NextHop& n = snap.next_hops[nh];
            if (n.awaits_shortcut) {
              e->flags |= kAwaiting;  // no fast path until the shortcut (or the timeout)
            } else if (opts_.fast_path != nullptr) {
              installFastPath(*e, uint16_t(vip));
            }
            // The host is chosen here: tell the SLR above (Fig. 5).
            if (!n.is_slr) signalUp(*e, n.tunnel_v4, Signal::kSent);
          }
          sync(*e, proto::SyncOp::kUpsert, now_ms);
        }
      } else {
        bump(counters_->table_full);
        table_was_full_ = true;
        full_ms_ = now_ms;
        if (!opts_.stateless_on_full) return drop(Drop::k_table_full);
        uint64_t unused = 0;
        nh = rt->stateless.pick(hash, unused);
        bump(counters_->stateless_forwarded);
      }
    }
  }
  return transmit(p, vip, nh);
}

// The tail of forward(): counters, the tunnel MTU, encapsulation.
bool Worker::transmit(Packet& p, size_t vip, uint16_t nh) {
  if (!alive(nh)) {
    bump(counters_->drops[int(Drop::k_no_host)]);
    return false;
  }
  bump(vip_counters_[vip].packets);
  bump(vip_counters_[vip].bytes, p.len);
  if (p.len + kHeadroom > opts_.tunnel_mtu) {
    std::span<const std::byte> inner(p.frame + kHeadroom, p.len);
    Ipv4View ip(inner);
    if (ip.dontFragment() && !p.info.icmp_error) sendTooBig(inner.data(), inner.size());
    bump(counters_->drops[int(Drop::k_too_big)]);
    return false;
  }
  if (nh < host_counters_.size()) {
    bump(host_counters_[nh].packets);
    bump(host_counters_[nh].bytes, p.len);
  } else {
    bump(counters_->shortcut_packets);
  }
  queueTx(p.frame, p.len, endpointOf(nh));
  return true;
}

// A packet of a mid-stream flow whose host is not known yet.  True when it
// was held (for a WHOHAS answer) or dropped (midstream_wait: the client
// retransmits); false when the wait is over: the flow now goes to its guess.
bool Worker::midstreamWait(Packet& p, FlowEntry& e, size_t vip, uint32_t now_ms) {
  const uint32_t age = now_ms - e.first_seen_ms;
  MidstreamStep step = midstreamStep(age, opts_.whohas, opts_.whohas_wait_ms, opts_.midstream_wait_ms);
  if (step == MidstreamStep::kHold) {
    if (hold(p, e.first_seen_ms + opts_.whohas_wait_ms)) return true;
    bump(counters_->hold_overflow);
    step = midstreamStep(age, false, 0, opts_.midstream_wait_ms);
  }
  if (step == MidstreamStep::kDrop) {
    bump(counters_->midstream_dropped);
    bump(counters_->drops[int(Drop::k_midstream_wait)]);
    return true;
  }
  guessMidstream(e, vip, now_ms);
  return false;
}

// Nobody named the mid-stream flow's host in time: from now on it goes to
// the stateless guess (still flagged midstream, so a late WHOHAS answer or an
// echo advertisement may correct it).
void Worker::guessMidstream(FlowEntry& e, size_t vip, uint32_t now_ms) {
  e.flags &= uint8_t(~kAwaiting);
  bump(counters_->midstream_guessed);
  if (opts_.fast_path != nullptr && vip < opts_.vips.size() && alive(e.next_hop))
    installFastPath(e, uint16_t(vip));
  if (isHost(e.next_hop)) signalUp(e, snap_->next_hops[e.next_hop].tunnel_v4, Signal::kSent);
  sync(e, proto::SyncOp::kUpsert, now_ms);
}

// An ICMP echo reply to a VIP.  True when it carried an accepted flow
// advertisement and was sent to the advertised host; false: forward it like
// any ICMP packet (not an advertisement, or refused and counted).
bool Worker::echoAdvert(Packet& p, size_t vip, uint32_t now_ms) {
  const PacketInfo& info = p.info;
  const std::span<const std::byte> icmp(p.frame + kHeadroom + info.l4_offset,
                                        size_t(info.l3_len) - info.l4_offset);
  advert::FlowAdvert a;
  const advert::DecodeStatus st = advert::decode(icmp, a);
  if (st == advert::DecodeStatus::kNotAdvert) return false;
  if (st != advert::DecodeStatus::kOk || internetChecksum(icmp) != 0) {
    bump(counters_->echo_malformed);
    return false;
  }
  const FlowKey key = advert::keyOf(a);
  const FlowEntry* existing = table_->lookup(key, table_->hash(key), now_ms);
  uint16_t host = kNoNextHop;
  switch (judgeEchoAdvert(a, v4(info.key.src), v4(info.key.dst), snap_->next_hops,
                          opts_.host_authorised, existing, host)) {
    case EchoVerdict::kApply: break;
    case EchoVerdict::kMalformed: bump(counters_->echo_malformed); return false;
    case EchoVerdict::kRefusedHost: bump(counters_->echo_refused_host); return false;
    case EchoVerdict::kRefusedSubnet: bump(counters_->echo_refused_subnet); return false;
    case EchoVerdict::kConflict: bump(counters_->echo_conflict); return false;
  }
  bump(counters_->echo_applied);
  (void)applyAdvert(key, host, now_ms);
  // The kernel picked this worker's TUN queue for the echo, not necessarily
  // the flow's: every other worker applies it to its own table too.
  for (Worker* w : peers_) {
    if (w == this) continue;
    WorkerCmd c;
    c.kind = CmdKind::kAdvert;
    c.next_hop = host;
    c.key = key;
    if (w->post(c)) {
      w->kick();
    } else {
      bump(counters_->echo_post_failed);
    }
  }
  // The echo reply itself goes to the host too: its agent counts replies.
  return transmit(p, vip, host);
}

// An accepted advertisement (checked by judgeEchoAdvert at the worker that
// received it): the flow goes to `host`.  An entry that is midstream, already
// there or whose next hop is down is re-pointed; a learnt one elsewhere is
// left alone (counted as a conflict).  Absent, the flow is inserted as a copy
// (packets 0): it may be another worker's flow; its first packet here makes
// it this worker's (sync, fast path).
bool Worker::applyAdvert(const FlowKey& key, uint16_t host, uint32_t now_ms) {
  if (host >= opts_.host_count) return false;
  const uint64_t hash = table_->hash(key);
  FlowEntry* e = table_->lookup(key, hash, now_ms);
  if (e != nullptr) {
    const bool learnt = !(e->flags & kMidstream);  // the same rule as judgeEchoAdvert
    if (learnt && e->next_hop == host) return true;  // nothing to change
    if (learnt && alive(e->next_hop)) {
      bump(counters_->echo_conflict);
      return false;
    }
    repoint(*e, host, now_ms);
    return true;
  }
  // A copy for a flow this worker may never see: the short SYN timeout, so
  // forged advertisements cannot fill every worker's table with long-lived
  // entries; the flow's first packet here makes it established.
  const FlowState state = key.proto == kProtoTcp ? FlowState::kTcpSyn
                          : key.proto == kProtoUdp ? FlowState::kUdp : FlowState::kOther;
  e = table_->insert(key, hash, host, next_label_, state, now_ms);
  if (e == nullptr) {
    bump(counters_->table_full);
    table_was_full_ = true;
    full_ms_ = now_ms;
    return false;
  }
  ++next_label_;
  e->packets = 0;
  if (opts_.fast_path != nullptr && FastPath::eligible(key)) e->flags |= kFastPath;  // added by its first packet
  return true;
}

// Point a flow at the host (or shortcut endpoint) that really has it (WHOHAS
// answer, echo advertisement): it is final now.  Held packets go there, the
// fast path takes it (unless it is a copy no packet reached yet), the SLR
// above and the spare hear of it.
void Worker::repoint(FlowEntry& e, uint16_t nh, uint32_t now_ms) {
  e.next_hop = nh;
  e.flags = uint8_t((e.flags & ~(kAwaiting | kMidstream | kShortcut)) | (nh >= kShortcutBase ? kShortcut : 0));
  // The connection is established at the host: keep it for that timeout.
  if (e.key.proto == kProtoTcp && e.state == FlowState::kTcpSyn) e.state = FlowState::kTcpEstablished;
  const uint32_t ep = endpointOf(nh);
  releaseHeld(e.key, ep, nh >= kShortcutBase);
  const size_t vip = vipOf(v4(e.key.dst));
  if (opts_.fast_path != nullptr && vip < opts_.vips.size()) {
    if (e.packets > 0) {
      installFastPath(e, uint16_t(vip));
    } else if (FastPath::eligible(e.key) && nh < kShortcutBase) {
      e.flags |= kFastPath;  // added by its first packet here
    }
  }
  signalUp(e, ep, Signal::kSent);
  sync(e, proto::SyncOp::kUpsert, now_ms);
}


uint32_t Worker::endpointOf(uint16_t nh) const {
  if (nh >= kShortcutBase) return endpoints_[nh - kShortcutBase];
  return snap_->next_hops[nh].tunnel_v4;
}

uint32_t Worker::endpointOrZero(uint16_t nh) const {
  if (nh >= kShortcutBase) return size_t(nh - kShortcutBase) < endpoints_.size() ? endpoints_[nh - kShortcutBase] : 0;
  return snap_ && nh < snap_->next_hops.size() ? snap_->next_hops[nh].tunnel_v4 : 0;
}

// Encapsulate the frame in place (its headroom takes the outer header) and
// queue it for the next sendmmsg; flushes when the queue is full.
void Worker::queueTx(std::byte* frame, size_t inner_len, uint32_t dst) {
  size_t total = IpipCodec::encapsulateV4(std::span<std::byte>(frame, kHeadroom + inner_len),
                                          inner_len, opts_.tunnel_source, dst, ip_id_++);
  if (total == 0) {
    bump(counters_->drops[int(Drop::k_tx_error)]);
    return;
  }
  if (tx_count_ == kTxSlots) flush();
  sockaddr_in& sa = tx_addr_[tx_count_];
  sa = sockaddr_in{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(dst);
  tx_iov_[tx_count_] = iovec{frame, total};
  msghdr& m = tx_msgs_[tx_count_].msg_hdr;
  m = msghdr{};
  m.msg_name = &sa;
  m.msg_namelen = sizeof sa;
  m.msg_iov = &tx_iov_[tx_count_];
  m.msg_iovlen = 1;
  ++tx_count_;
}

// The policy's choice for a new (or re-pointed) flow.  Clients in a
// [[region]] get that region's selection; with client affinity the client
// address alone decides, so one client's connections share a site.
// Round-robin selections keep one position per route in this worker.
uint16_t Worker::pick(const RouteEntry& rt, const Packet& p) {
  auto c = snap_->newFlowChoice(rt, p.info.key, p.hash, opts_.hash_seed);
  return c.selection.pick(c.hash, rr_counters_[size_t(&rt - snap_->routes.data())]);
}

size_t Worker::vipOf(uint32_t dst) const {
  size_t vip = 0;
  while (vip < opts_.vips.size() && (dst & opts_.vips[vip].mask) != opts_.vips[vip].net) ++vip;
  return vip;
}

bool Worker::alive(uint16_t nh) const {
  return nh >= kShortcutBase || (nh < snap_->next_hops.size() && snap_->next_hops[nh].up);
}

bool Worker::isHost(uint16_t nh) const {
  return nh < kShortcutBase && nh < snap_->next_hops.size() && snap_->next_hops[nh].up &&
         !snap_->next_hops[nh].is_slr;
}

bool Worker::connectionEnded(const FlowEntry& e) const {
  if (e.state == FlowState::kTcpClosing) return true;
  // The kernel forwards a fast-path flow's FIN; it hands a SYN after one up
  // (the BPF program's find_flow).  One map lookup, for a SYN on a known
  // 5-tuple only.  A copy (packets == 0) is not this worker's to ask about.
  if (e.packets == 0) return false;
  auto a = kernelActivity(e);
  return a && (a->tcp_flags & (FlowTable::kTcpFin | FlowTable::kTcpRst)) != 0;
}

void Worker::retire(const FlowEntry& e, uint32_t now_ms) {
  if ((e.flags & kFastPath) && e.packets > 0 && opts_.fast_path != nullptr)
    (void)opts_.fast_path->remove(e.key);
  sync(e, proto::SyncOp::kRemove, now_ms);
}

// A flow sent to a shortcut-capable lower SLR stops waiting for its shortcut
// (it timed out, or the hold queue was full): from now on it goes the normal
// way, and the kernel fast path may take it.
void Worker::stopAwaiting(FlowEntry& e, size_t vip, uint32_t now_ms) {
  e.flags &= uint8_t(~kAwaiting);
  if (opts_.fast_path != nullptr && vip < opts_.vips.size() && alive(e.next_hop))
    installFastPath(e, uint16_t(vip));
  sync(e, proto::SyncOp::kUpsert, now_ms);
}

// ---- commands ----

bool Worker::post(const WorkerCmd& c) {
  switch (c.kind) {
    case CmdKind::kShortcut: return shortcut_cmds_->push(c);
    case CmdKind::kMirror:
    case CmdKind::kUnmirror: return mirror_cmds_->push(c);
    case CmdKind::kResolve:
    case CmdKind::kAdvert: return resolve_cmds_->push(c);
  }
  return false;
}

void Worker::kick() {
  uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof one);
}

uint16_t Worker::internEndpoint(uint32_t endpoint) {
  for (size_t i = 0; i < endpoints_.size(); ++i) {
    if (endpoints_[i] == endpoint) return uint16_t(kShortcutBase + i);
  }
  if (endpoints_.size() >= kMaxEndpoints) return kNoNextHop;
  endpoints_.push_back(endpoint);  // within the reserved capacity: no allocation
  return uint16_t(kShortcutBase + endpoints_.size() - 1);
}

// Tell the upstream SLR the flow came from which host it has (originated
// here, relayed from below, or said again).  Only flows that arrived
// tunnelled.  A TCP flow signalled upwards is kept as established: the SLR
// above sends it straight to the host now, so this level sees no packets of
// it, and may be asked again if the level above loses its copy.
void Worker::signalUp(FlowEntry& e, uint32_t endpoint, Signal kind) {
  const size_t u1 = e.flags >> kUpstreamShift;
  if (!opts_.shortcut || u1 == 0 || u1 > out_.size()) return;
  const size_t u = u1 - 1;
  if (out_[u]->push(ShortcutOut{e.key, endpoint})) {
    bump(kind == Signal::kSent      ? counters_->shortcut_sent
         : kind == Signal::kRelayed ? counters_->shortcut_relayed
                                    : counters_->shortcut_resignalled);
    out_pending_[u] = true;
    if (e.key.proto == kProtoTcp && e.state == FlowState::kTcpSyn) e.state = FlowState::kTcpEstablished;
  } else {
    bump(counters_->shortcut_out_dropped);
  }
}

void Worker::applyShortcuts(uint32_t now_ms) {
  WorkerCmd c;
  for (int budget = kShortcutBudget; budget > 0 && shortcut_cmds_->pop(c); --budget) {
    FlowEntry* e = table_->lookup(c.key, table_->hash(c.key), now_ms);
    if (e == nullptr) {
      bump(counters_->shortcut_unknown);  // another worker's flow, or gone
      continue;
    }
    if ((e->flags & kShortcut) && endpointOf(e->next_hop) == c.endpoint) continue;
    const uint16_t idx = internEndpoint(c.endpoint);
    if (idx == kNoNextHop) continue;  // intern table full: keep the path through the lower SLR
    const uint16_t via = e->next_hop;
    e->next_hop = idx;
    e->flags = uint8_t((e->flags | kShortcut) & ~(kAwaiting | kMidstream));
    bump(counters_->shortcut_applied);
    // How long the flow's first packet took to come back as a shortcut: the
    // round trip down the levels and back up their control channels.
    const uint32_t delay = now_ms - e->first_seen_ms;
    bump(counters_->shortcut_delay_ms_sum, delay);
    if (delay > read(counters_->shortcut_delay_ms_max))
      counters_->shortcut_delay_ms_max.store(delay, std::memory_order_relaxed);
    if (opts_.fast_path != nullptr) {
      const size_t vip = vipOf(v4(c.key.dst));
      if (vip < opts_.vips.size()) installFastPath(*e, uint16_t(vip), via);
    }
    releaseHeld(c.key, c.endpoint, true);
    signalUp(*e, c.endpoint, Signal::kRelayed);
    sync(*e, proto::SyncOp::kUpsert, now_ms);
  }
  flush();
}

// WHOHAS answers (whohas thread) and other workers' echo advertisements.
// An answer re-points a flow still midstream here (held or dropped, or sent
// to its guess); every worker gets it, only the one with the flow acts.
void Worker::applyResolves(uint32_t now_ms) {
  WorkerCmd c;
  for (int budget = kResolveBudget; budget > 0 && resolve_cmds_->pop(c); --budget) {
    if (c.kind == CmdKind::kAdvert) {
      (void)applyAdvert(c.key, c.next_hop, now_ms);
      continue;
    }
    FlowEntry* e = table_->lookup(c.key, table_->hash(c.key), now_ms);
    if (e == nullptr || !(e->flags & kMidstream)) continue;  // not ours, or learnt meanwhile
    uint16_t nh = c.next_hop;
    if (nh == kNoNextHop) {
      nh = internEndpoint(c.endpoint);
      if (nh == kNoNextHop) continue;  // intern table full: the guess stays
    } else if (nh >= opts_.host_count) {
      continue;
    }
    repoint(*e, nh, now_ms);
    bump(counters_->whohas_resolved);
  }
  flush();
}

// Hot spare: the active SLR's flow table, mirrored.  Every worker gets every
// command (the kernel picks the TUN queue of a flow, so any worker may own
// it after a takeover); entries are copies (packets 0) until a packet of the
// flow reaches them.  Mirror commands never produce SyncEvents.
void Worker::applyMirrors(uint32_t now_ms) {
  WorkerCmd c;
  for (int budget = kMirrorBudget; budget > 0 && mirror_cmds_->pop(c); --budget) {
    const uint64_t hash = table_->hash(c.key);
    FlowEntry* e = table_->lookup(c.key, hash, now_ms);
    if (c.kind == CmdKind::kUnmirror) {
      if (e == nullptr) continue;
      if ((e->flags & kFastPath) && opts_.fast_path != nullptr) (void)opts_.fast_path->remove(c.key);
      (void)table_->erase(c.key, hash);
      bump(counters_->mirror_removed);
      continue;
    }
    uint16_t nh = c.next_hop;
    if (nh == kNoNextHop) {
      nh = internEndpoint(c.endpoint);
    } else if (nh >= opts_.host_count) {
      nh = kNoNextHop;
    }
    if (nh == kNoNextHop) {
      bump(counters_->mirror_failed);
      continue;
    }
    bool installed = false;
    if (e == nullptr) {
      e = table_->insert(c.key, hash, nh, c.label, c.state, now_ms);
      if (e == nullptr) {
        bump(counters_->mirror_failed);
        continue;
      }
      e->packets = 0;
    } else {
      installed = (e->flags & kFastPath) && e->next_hop == nh;
      if ((e->flags & kFastPath) && !installed && opts_.fast_path != nullptr)
        (void)opts_.fast_path->remove(c.key);
      e->next_hop = nh;
      e->label = c.label;
      e->state = c.state;
    }
    e->first_seen_ms = now_ms - c.age_ms;
    e->last_seen_ms = now_ms;
    uint8_t f = uint8_t(e->flags & kUpstreamMask);
    if (nh >= kShortcutBase) {
      f |= kShortcut;
    } else if (installed || (opts_.fast_path != nullptr && FastPath::eligible(c.key))) {
      f |= kFastPath;  // added by the flow's first packet here (re-creation)
    }
    e->flags = f;
    bump(counters_->mirror_applied);
  }
}

bool Worker::hold(const Packet& p, uint32_t deadline_ms) {
  if (held_count_ == kHoldSlots || kHeadroom + p.len > kHoldBuf) return false;
  const size_t slot = (held_head_ + held_count_) % kHoldSlots;
  Held& h = held_[slot];
  h.key = p.info.key;
  h.deadline_ms = deadline_ms;
  h.len = uint16_t(p.len);
  h.live = true;
  std::memcpy(held_bufs_.get() + slot * kHoldBuf + kHeadroom, p.frame + kHeadroom, p.len);
  ++held_count_;
  bump(counters_->held_packets);
  return true;
}

void Worker::releaseHeld(const FlowKey& key, uint32_t endpoint, bool shortcut) {
  if (held_count_ == 0) return;
  for (size_t i = 0; i < held_count_; ++i) {
    const size_t slot = (held_head_ + i) % kHoldSlots;
    Held& h = held_[slot];
    if (!h.live || !(h.key == key)) continue;
    queueTx(held_bufs_.get() + slot * kHoldBuf, h.len, endpoint);
    h.live = false;
    bump(counters_->released_packets);
    if (shortcut) bump(counters_->shortcut_packets);
  }
  while (held_count_ > 0 && !held_[held_head_].live) {
    held_head_ = (held_head_ + 1) % kHoldSlots;
    --held_count_;
  }
}

// Held packets whose answer did not come in time.  Deadlines differ by kind
// (shortcut_wait, whohas wait), so the whole FIFO is scanned, not only its head.
void Worker::expireHeld(uint32_t now_ms) {
  for (size_t i = 0; i < held_count_; ++i) {
    const size_t slot = (held_head_ + i) % kHoldSlots;
    if (held_[slot].live && int32_t(now_ms - held_[slot].deadline_ms) >= 0) expireHeldFlow(slot, now_ms);
  }
  while (held_count_ > 0 && !held_[held_head_].live) {
    held_head_ = (held_head_ + 1) % kHoldSlots;
    --held_count_;
  }
  flush();
}

// All held packets of the flow held at `slot`: a shortcut-awaiting flow goes
// the normal way; a mid-stream flow nobody answered for is dropped while
// midstream_wait lasts, else sent to its guess.
void Worker::expireHeldFlow(size_t slot, uint32_t now_ms) {
  const FlowKey key = held_[slot].key;
  FlowEntry* e = table_->lookup(key, table_->hash(key), now_ms);
  bool drop_all = false;
  if (e != nullptr && (e->flags & kAwaiting)) {
    const size_t vip = vipOf(v4(key.dst));
    if (e->flags & kMidstream) {
      bump(counters_->whohas_timeouts);
      if (midstreamStep(now_ms - e->first_seen_ms, false, 0, opts_.midstream_wait_ms) ==
          MidstreamStep::kDrop) {
        drop_all = true;
      } else {
        guessMidstream(*e, vip, now_ms);
      }
    } else {
      stopAwaiting(*e, vip, now_ms);
    }
  }
  for (size_t i = 0; i < held_count_; ++i) {
    const size_t s = (held_head_ + i) % kHoldSlots;
    Held& h = held_[s];
    if (!h.live || !(h.key == key)) continue;
    h.live = false;
    if (drop_all) {
      bump(counters_->midstream_dropped);
      bump(counters_->drops[int(Drop::k_midstream_wait)]);
    } else if (e != nullptr && alive(e->next_hop)) {
      queueTx(held_bufs_.get() + s * kHoldBuf, h.len, endpointOf(e->next_hop));
      bump(counters_->hold_timeouts);
    } else {
      bump(counters_->drops[int(Drop::k_no_host)]);
    }
  }
}

void Worker::flush() {
  size_t sent = 0;
  while (sent < tx_count_) {
    int r = ::sendmmsg(raw_.get(), tx_msgs_.data() + sent, unsigned(tx_count_ - sent), MSG_DONTWAIT);
    if (r <= 0) {
      // The packet at `sent` failed (no route, ENOBUFS...): count it, go on.
      bump(counters_->drops[int(Drop::k_tx_error)]);
      ++sent;
      continue;
    }
    for (int i = 0; i < r; ++i) {
      bump(counters_->tx_packets);
      bump(counters_->tx_bytes, tx_iov_[sent + size_t(i)].iov_len);
    }
    sent += size_t(r);
  }
  tx_count_ = 0;
}


// From its first packet on, the kernel forwards the rest of the flow; this
// worker only sees packets the fast path hands back (too big, TTL, no
// neighbour).  One bpf(2) call per new flow, never per packet.
void Worker::installFastPath(FlowEntry& e, uint16_t vip, uint16_t via) {
  if (!FastPath::eligible(e.key)) return;
  if (e.next_hop < kShortcutBase && e.next_hop >= snap_->next_hops.size()) return;
  // Per-host counters: a shortcut flow is counted on the lower SLR it bypasses.
  const uint16_t slot = e.next_hop < kShortcutBase ? e.next_hop : via;
  if (slot >= opts_.host_count) {
    // (A shortcut whose lower SLR is not known here: userspace only.  The
    // kernel must not keep forwarding it the old way.)
    if (e.flags & kFastPath) (void)opts_.fast_path->remove(e.key);
    e.flags &= uint8_t(~kFastPath);
    return;
  }
  FastPathFlow f{opts_.tunnel_source, endpointOf(e.next_hop), slot, vip};
  if (opts_.fast_path->add(e.key, f).ok()) {
    e.flags |= kFastPath;
    bump(counters_->fast_path_installed);
  } else {
    e.flags &= uint8_t(~kFastPath);
    bump(counters_->fast_path_failed);
  }
}

// Flow-state re-creation: put a fast-path flow back into the kernel map
// unless it is there (then it is left alone, counters and all).
void Worker::reinstallFastPath(FlowEntry& e, uint16_t vip, bool counted) {
  if (opts_.fast_path == nullptr || !FastPath::eligible(e.key) || e.next_hop >= kShortcutBase ||
      e.next_hop >= snap_->next_hops.size() || e.next_hop >= opts_.host_count || !alive(e.next_hop))
    return;
  FastPathFlow f{opts_.tunnel_source, endpointOf(e.next_hop), e.next_hop, vip};
  auto r = opts_.fast_path->addIfAbsent(e.key, f, counted);
  if (!r) {
    e.flags &= uint8_t(~kFastPath);  // (map full): userspace from now on
    bump(counters_->fast_path_failed);
  } else if (*r) {
    bump(counters_->fast_path_reinstalled);
  }
}

// A host went down: the kernel would keep tunnelling its flows into the
// void.  Take them out of the fast path so their next packet reaches this
// worker, which re-points the flow to a live host.
void Worker::withdrawFromFastPath(const ForwardingSnapshot& old) {
  std::vector<bool> lost(old.next_hops.size(), false);
  bool any = false;
  for (size_t h = 0; h < old.next_hops.size(); ++h) {
    lost[h] = old.next_hops[h].up && (h >= snap_->next_hops.size() || !snap_->next_hops[h].up);
    any = any || lost[h];
  }
  if (!any) return;
  table_->forEach([&](FlowEntry& e) {
    if ((e.flags & kFastPath) && e.next_hop < lost.size() && lost[e.next_hop]) {
      (void)opts_.fast_path->remove(e.key);
      e.flags &= uint8_t(~kFastPath);
    }
  });
}

namespace {
// The TCP state a flow has reached given what the kernel forwarded after its
// first packet: FIN/RST -> closing; any packet after the SYN -> established
// (so a quiet established connection gets the established timeout, not the
// SYN one, and is not expired under its peers' feet).
FlowState stateAfter(const FlowKey& key, FlowState s, const FastPathActivity& a) {
  if (key.proto != kProtoTcp) return s;
  if (a.tcp_flags & (kTcpFin | kTcpRst)) return FlowState::kTcpClosing;
  if (a.packets > 0 && s == FlowState::kTcpSyn) return FlowState::kTcpEstablished;
  return s;
}

// The entry as the kernel saw it too: its later last-seen time, and the
// state its FIN/RST or forwarded packets imply.
void foldKernel(FlowEntry& e, const FastPathActivity& a) {
  if (int32_t(a.last_seen_ms - e.last_seen_ms) > 0) e.last_seen_ms = a.last_seen_ms;
  e.state = stateAfter(e.key, e.state, a);
}
}  // namespace

// What the kernel fast path did with a fast-path entry's flow (one bpf
// lookup); nullopt when it is not in the kernel map.
std::optional<FastPathActivity> Worker::kernelActivity(const FlowEntry& e) const {
  if (!(e.flags & kFastPath) || opts_.fast_path == nullptr) return std::nullopt;
  auto act = opts_.fast_path->activity(e.key);
  if (!act.ok()) return std::nullopt;
  return act.value();
}

// For `slrctl flows`: what the kernel forwarded of this flow since it was
// installed (one bpf call per listed flow, on request only).
void Worker::mergeFastPath(FlowRecord& r, uint32_t now_ms) const {
  auto act = opts_.fast_path->activity(r.key);
  if (!act.ok() || !act.value().has_value()) return;
  const FastPathActivity& a = *act.value();
  r.packets += uint32_t(a.packets);
  uint32_t idle = uint32_t(now_ms - a.last_seen_ms);
  if (idle < r.idle_ms) r.idle_ms = idle;
  r.state = stateAfter(r.key, r.state, a);
}


// Expiry hook (control rate: only for entries that look idle).  The kernel
// saw the packets this table did not: take its last-seen time and FIN/RST;
// a flow idle in both places leaves the kernel map as it leaves the table.
// A standby SLR's entries are a mirror: they never expire.  Returns true to
// keep the entry.
bool Worker::onExpiry(void* self, FlowEntry& e, uint32_t now_ms) {
  auto* w = static_cast<Worker*>(self);
  // A copy no packet reached (packets == 0) was never added to the kernel
  // map by this worker: the kernel entry, if any, is the owning worker's.
  // Neither its activity nor its removal belong to the copy.
  const bool in_kernel = (e.flags & kFastPath) && e.packets > 0 && w->opts_.fast_path != nullptr;
  if (in_kernel) {
    if (auto a = w->kernelActivity(e)) {
      const FlowState before = e.state;
      foldKernel(e, *a);
      if (before == FlowState::kTcpSyn && e.state == FlowState::kTcpEstablished &&
          !w->table_->isExpired(e, now_ms))
        w->sync(e, proto::SyncOp::kUpsert, now_ms);
    }
  }
  if (!w->table_->isExpired(e, now_ms)) return true;
  if (w->standby_) {
    e.last_seen_ms = now_ms;
    return true;
  }
  if (in_kernel) (void)w->opts_.fast_path->remove(e.key);
  w->sync(e, proto::SyncOp::kRemove, now_ms);
  return false;
}

// A flow-table change for the spare module.  Not for copies no packet
// reached here (another worker may own the flow and reports it), nor for an
// upsert while the next hop is not final.
void Worker::sync(const FlowEntry& e, proto::SyncOp op, uint32_t now_ms) {
  if (!opts_.sync_out || e.packets == 0) return;
  if (op == proto::SyncOp::kUpsert && (e.flags & kAwaiting)) return;
  SyncEvent ev;
  ev.op = op;
  ev.state = e.state;
  ev.next_hop = e.next_hop >= kShortcutBase ? proto::kNoHostId : e.next_hop;
  ev.key = e.key;
  ev.endpoint = endpointOrZero(e.next_hop);
  ev.label = e.label;
  ev.first_seen_ms = e.first_seen_ms;
  ev.t_ms = now_ms;
  if (sync_->push(ev)) {
    bump(counters_->sync_events);
  } else {
    sync_overflow_.store(true, std::memory_order_release);
    bump(counters_->sync_overflows);
  }
}

// ICMP "fragmentation needed" to the client (RFC 1191, RFC 2003 5.1): the
// tunnel header makes the client's DF packet too big for the path to the host.
void Worker::sendTooBig(const std::byte* inner, size_t inner_len) {
  uint32_t now = nowMs();
  if (uint32_t(now - icmp_refill_ms_) >= 1000) {
    icmp_refill_ms_ = now;
    icmp_tokens_ = kIcmpPerSecond;
  }
  if (icmp_tokens_ == 0) return;
  --icmp_tokens_;
  Ipv4View ip(std::span<const std::byte>(inner, inner_len));
  size_t quote = std::min(inner_len, ip.headerLength() + 8);
  size_t total = 20 + 8 + quote;
  if (total > sizeof icmp_buf_) return;
  Ipv4HeaderFields f;
  f.total_length = uint16_t(total);
  f.protocol = kProtoIcmp;
  f.src = opts_.tunnel_source;
  f.dst = ip.srcRaw();
  std::span<std::byte> out(icmp_buf_, total);
  writeIpv4Header(out, f);
  std::byte* icmp = icmp_buf_ + 20;
  std::memset(icmp, 0, 8);
  icmp[0] = std::byte{3};  // destination unreachable
  icmp[1] = std::byte{4};  // fragmentation needed and DF set
  store16(icmp + 6, uint16_t(opts_.tunnel_mtu - kHeadroom));
  std::memcpy(icmp + 8, inner, quote);
  store16(icmp + 2, internetChecksum(std::span<const std::byte>(icmp, 8 + quote)));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(f.dst);
  if (::sendto(raw_.get(), icmp_buf_, total, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&sa),
               sizeof sa) > 0) {
    bump(counters_->icmp_too_big_sent);
  }
}


// A flow as `slrctl flows` / explain show it, with what the kernel did of it.
FlowRecord Worker::record(const FlowEntry& e, uint32_t now_ms) const {
  FlowRecord r{e.key,
               e.next_hop,
               e.label,
               endpointOrZero(e.next_hop),
               e.next_hop >= kShortcutBase,
               e.state,
               uint32_t(now_ms - e.last_seen_ms),
               uint32_t(now_ms - e.first_seen_ms),
               e.packets,
               e.next_hop >= kShortcutBase ? kNoNextHop : e.next_hop,
               (e.flags & kMidstream) != 0,
               (e.flags & kAwaiting) != 0};
  if ((e.flags & kFastPath) && opts_.fast_path != nullptr) mergeFastPath(r, now_ms);
  return r;
}

// For status and draining: whether the flow is alive, counting what the
// kernel fast path forwarded of it.  A fast-path flow whose only userspace
// packet was its SYN looks expired here after tcp_syn while its download
// runs in the kernel; the expiry hook would keep it, so must we.  One bpf
// lookup per such entry, on request only.
bool Worker::liveNow(const FlowEntry& e, uint32_t now_ms) const {
  if (!table_->isExpired(e, now_ms)) return true;
  auto a = kernelActivity(e);
  if (!a) return false;
  FlowEntry merged = e;
  foldKernel(merged, *a);
  return !table_->isExpired(merged, now_ms);
}

void Worker::serveControl(uint32_t now_ms) {
  std::lock_guard lk(req_mu_);
  int req = request_.load(std::memory_order_acquire);
  if (req == int(Request::kDump)) {
    req_flows_.clear();
    table_->forEach([&](const FlowEntry& e) {
      if (req_flows_.size() >= req_limit_) return false;
      if (!standby_ && !liveNow(e, now_ms)) return true;
      req_flows_.push_back(record(e, now_ms));
      return true;
    });
  } else if (req == int(Request::kLookup)) {
    req_record_.reset();
    FlowEntry* e = table_->lookup(req_key_, table_->hash(req_key_), now_ms);
    if (e != nullptr) req_record_ = record(*e, now_ms);
  } else if (req == int(Request::kPerHost)) {
    req_per_host_.assign(opts_.host_count, 0);
    table_->forEach([&](const FlowEntry& e) {
      if (e.packets > 0 && e.next_hop < req_per_host_.size() && liveNow(e, now_ms))
        ++req_per_host_[e.next_hop];
    });
  }
  request_.store(0, std::memory_order_release);
  req_done_ = true;
  req_cv_.notify_all();
}

std::vector<FlowRecord> Worker::dumpFlows(size_t limit, int timeout_ms, bool* complete) {
  std::lock_guard caller(req_caller_mu_);
  std::unique_lock lk(req_mu_);
  req_limit_ = limit;
  req_done_ = false;
  request_.store(int(Request::kDump), std::memory_order_release);
  kick();  // an idle worker sleeps in poll() up to 100 ms
  const bool done =
      req_cv_.wait_for(lk, std::chrono::milliseconds(timeout_ms), [this] { return req_done_; });
  if (complete != nullptr) *complete = done;
  if (!done) {
    request_.store(0, std::memory_order_release);
    return {};
  }
  return std::move(req_flows_);
}

std::optional<FlowRecord> Worker::lookupFlow(const FlowKey& key, int timeout_ms) {
  std::lock_guard caller(req_caller_mu_);
  std::unique_lock lk(req_mu_);
  req_key_ = key;
  req_done_ = false;
  request_.store(int(Request::kLookup), std::memory_order_release);
  kick();  // an idle worker sleeps in poll() up to 100 ms
  if (!req_cv_.wait_for(lk, std::chrono::milliseconds(timeout_ms), [this] { return req_done_; })) {
    request_.store(0, std::memory_order_release);
    return std::nullopt;
  }
  return req_record_;
}

std::vector<uint64_t> Worker::flowsPerHost(int timeout_ms) {
  std::lock_guard caller(req_caller_mu_);
  std::unique_lock lk(req_mu_);
  req_done_ = false;
  request_.store(int(Request::kPerHost), std::memory_order_release);
  kick();  // an idle worker sleeps in poll() up to 100 ms
  if (!req_cv_.wait_for(lk, std::chrono::milliseconds(timeout_ms), [this] { return req_done_; })) {
    request_.store(0, std::memory_order_release);
    return std::vector<uint64_t>(opts_.host_count, 0);
  }
  return req_per_host_;
}

}  // namespace slr::router
