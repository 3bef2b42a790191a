#include "slr/worker.h"

#include <linux/filter.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "core/log.h"
#include "core/packet.h"
#include "core/tunnel.h"

namespace slr::router {
namespace {

constexpr size_t kHeadroom = IpipCodec::kOverhead;
constexpr uint32_t kIcmpPerSecond = 100;  // rate limit for "fragmentation needed"
// FlowEntry::flags.
constexpr uint8_t kFlagFastPath = 0x01;       // installed in the kernel fast path
constexpr uint8_t kFlagAwaitShortcut = 0x02;  // sent to a shortcut-capable lower SLR; hold later packets
constexpr uint8_t kFlagShortcut = 0x04;       // next_hop is a shortcut endpoint
constexpr uint8_t kFlagFromUpstream = 0x08;   // arrived tunnelled; the upstream's index is flags >> 4
constexpr size_t kHoldSlots = 256;            // held packets per worker
constexpr size_t kHoldBuf = 2048;             // larger packets are never held
constexpr size_t kMaxEndpoints = 4096;        // distinct shortcut endpoints per worker
constexpr size_t kTxSlots = Worker::kBatch + kHoldSlots;
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

Status Worker::init() {
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
  cmds_ = std::make_unique<SpscRing<ShortcutCmd>>(4096);
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
  if (opts_.fast_path != nullptr) table_->setExpiryHook(&Worker::refreshFromFastPath, this);
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
    if (snapshots_.generation() != snap_generation_) {
      snap_generation_ = snapshots_.generation();
      auto old = std::move(snap_);
      snap_ = snapshots_.get();
      rr_counters_.assign(snap_->routes.size(), 0);  // control-rate, not per packet
      if (opts_.fast_path != nullptr && old) withdrawFromFastPath(*old);
    }
    if (request_.load(std::memory_order_acquire) != 0) serveControl(now);
    if (!cmds_->empty()) applyShortcuts(now);
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
    (void)table_->expireSome(now, 256);
    // Counts expiries found by the sweep, by lookups and by full-table reclaim.
    counters_->flows_expired.store(table_->counters().expired, std::memory_order_relaxed);
    counters_->active_flows.store(table_->size(), std::memory_order_relaxed);
  }
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

  const ForwardingSnapshot& snap = *snap_;
  const uint64_t hash = p.hash;
  uint16_t nh = kNoNextHop;
  FlowEntry* e = table_->lookup(info.key, hash, now_ms);
  if (e != nullptr) {
    if (e->flags & kFlagAwaitShortcut) {
      // Sent to a lower SLR that will say which host it chose: hold the
      // flow's later packets for that, so they go straight to the host.
      if (uint32_t(now_ms - e->first_seen_ms) < opts_.shortcut_wait_ms) {
        if (hold(p, e->first_seen_ms + opts_.shortcut_wait_ms)) {
          FlowTable::touch(*e, info.tcp_flags, now_ms);
          return false;
        }
        bump(counters_->hold_overflow);
      }
      stopAwaiting(*e, vip);
    }
    if (!alive(e->next_hop)) {
      // Its host was withdrawn: the connection is lost there anyway, so give
      // the flow a live host rather than black-holing it.
      const RouteEntry* rt = snap.route(dst);
      if (rt == nullptr || rt->selection.empty()) return drop(Drop::k_no_host);
      e->next_hop = pick(*rt, p);
      bump(counters_->flows_rerouted);
      if (opts_.fast_path != nullptr) installFastPath(*e, uint16_t(vip));
    }
    FlowTable::touch(*e, info.tcp_flags, now_ms);
    nh = e->next_hop;
    // A SYN from above for a flow we know: the SLR above lost the flow (a
    // reused 5-tuple after it expired the old connection, a restart) while
    // this level kept it, never having seen the FIN.  Signal the host again,
    // or the ingress would hold the new connection's packets for nothing.
    if (p.upstream >= 0 && (info.tcp_flags & (kTcpSynFlag | kTcpAckFlag)) == kTcpSynFlag) {
      if (nh >= kShortcutBase) {
        signalUp(*e, endpointOf(nh), true);
      } else if (alive(nh) && !snap.next_hops[nh].is_slr) {
        signalUp(*e, snap.next_hops[nh].tunnel_v4, false);
      }
    }
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
      // connection: it may have been forwarded statelessly while the table
      // was full (or before a restart).  Keep it where stateless forwarding
      // sends it; the policy picks for new connections only.
      if (info.key.proto == kProtoTcp && !(info.tcp_flags & kTcpSynFlag)) {
        uint64_t unused = 0;
        nh = rt->stateless.pick(hash, unused);
        bump(counters_->flows_midstream);
      } else {
        nh = pick(*rt, p);
      }
      e = table_->insert(info.key, hash, nh, next_label_,
                         FlowTable::initialState(info.key.proto, info.tcp_flags), now_ms);
      if (e != nullptr) {
        ++next_label_;
        bump(counters_->flows_created);
        bump(vip_counters_[vip].flows);
        bump(host_counters_[nh].flows);
        if (p.upstream >= 0) e->flags |= uint8_t(kFlagFromUpstream | (p.upstream << 4));
        if (alive(nh)) {
          const NextHop& n = snap.next_hops[nh];
          if (n.awaits_shortcut) {
            e->flags |= kFlagAwaitShortcut;  // no fast path until the shortcut (or the timeout)
          } else if (opts_.fast_path != nullptr) {
            installFastPath(*e, uint16_t(vip));
          }
          // The host is chosen here: tell the SLR above (Fig. 5).
          if (!n.is_slr) signalUp(*e, n.tunnel_v4, false);
        }
      } else {
        bump(counters_->table_full);
        if (!opts_.stateless_on_full) return drop(Drop::k_table_full);
        uint64_t unused = 0;
        nh = rt->stateless.pick(hash, unused);
        bump(counters_->stateless_forwarded);
      }
    }
  }
  if (!alive(nh)) return drop(Drop::k_no_host);

  bump(vip_counters_[vip].packets);
  bump(vip_counters_[vip].bytes, p.len);
  if (p.len + kHeadroom > opts_.tunnel_mtu) {
    Ipv4View ip(inner);
    if (ip.dontFragment() && !info.icmp_error) sendTooBig(inner.data(), inner.size());
    return drop(Drop::k_too_big);
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

uint32_t Worker::endpointOf(uint16_t nh) const {
  if (nh >= kShortcutBase) return endpoints_[nh - kShortcutBase];
  return snap_->next_hops[nh].tunnel_v4;
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

// A flow sent to a shortcut-capable lower SLR stops waiting for its shortcut
// (it timed out, or the hold queue was full): from now on it goes the normal
// way, and the kernel fast path may take it.
void Worker::stopAwaiting(FlowEntry& e, size_t vip) {
  e.flags &= uint8_t(~kFlagAwaitShortcut);
  if (opts_.fast_path != nullptr && vip < opts_.vips.size() && alive(e.next_hop))
    installFastPath(e, uint16_t(vip));
}

// ---- shortcuts ----

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
// here, or relayed from below).  Only flows that arrived tunnelled.
void Worker::signalUp(const FlowEntry& e, uint32_t endpoint, bool relay) {
  if (!opts_.shortcut || !(e.flags & kFlagFromUpstream)) return;
  const size_t u = e.flags >> 4;
  if (u >= out_.size()) return;
  if (out_[u]->push(ShortcutOut{e.key, endpoint})) {
    bump(relay ? counters_->shortcut_relayed : counters_->shortcut_sent);
    out_pending_[u] = true;
  } else {
    bump(counters_->shortcut_out_dropped);
  }
}

void Worker::applyShortcuts(uint32_t now_ms) {
  ShortcutCmd c;
  for (int budget = 1024; budget > 0 && cmds_->pop(c); --budget) {
    FlowEntry* e = table_->lookup(c.key, table_->hash(c.key), now_ms);
    if (e == nullptr) {
      bump(counters_->shortcut_unknown);  // another worker's flow, or gone
      continue;
    }
    if ((e->flags & kFlagShortcut) && endpointOf(e->next_hop) == c.endpoint) continue;
    const uint16_t idx = internEndpoint(c.endpoint);
    if (idx == kNoNextHop) continue;  // intern table full: keep the path through the lower SLR
    const uint16_t via = e->next_hop;
    e->next_hop = idx;
    e->flags = uint8_t((e->flags | kFlagShortcut) & ~kFlagAwaitShortcut);
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
    releaseHeld(c.key, c.endpoint);
    signalUp(*e, c.endpoint, true);
  }
  flush();
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

void Worker::releaseHeld(const FlowKey& key, uint32_t endpoint) {
  for (size_t i = 0; i < held_count_; ++i) {
    const size_t slot = (held_head_ + i) % kHoldSlots;
    Held& h = held_[slot];
    if (!h.live || !(h.key == key)) continue;
    queueTx(held_bufs_.get() + slot * kHoldBuf, h.len, endpoint);
    h.live = false;
    bump(counters_->released_packets);
    bump(counters_->shortcut_packets);
  }
  while (held_count_ > 0 && !held_[held_head_].live) {
    held_head_ = (held_head_ + 1) % kHoldSlots;
    --held_count_;
  }
}

// Held packets whose shortcut did not come in time go the normal way.
void Worker::expireHeld(uint32_t now_ms) {
  while (held_count_ > 0) {
    Held& h = held_[held_head_];
    if (h.live) {
      if (int32_t(now_ms - h.deadline_ms) < 0) break;
      FlowEntry* e = table_->lookup(h.key, table_->hash(h.key), now_ms);
      if (e != nullptr && (e->flags & kFlagAwaitShortcut)) stopAwaiting(*e, vipOf(v4(h.key.dst)));
      if (e != nullptr && alive(e->next_hop)) {
        queueTx(held_bufs_.get() + held_head_ * kHoldBuf, h.len, endpointOf(e->next_hop));
        bump(counters_->hold_timeouts);
      } else {
        bump(counters_->drops[int(Drop::k_no_host)]);
      }
      h.live = false;
    }
    held_head_ = (held_head_ + 1) % kHoldSlots;
    --held_count_;
  }
  flush();
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
  if (slot >= opts_.host_count) return;
  FastPathFlow f{opts_.tunnel_source, endpointOf(e.next_hop), slot, vip};
  if (opts_.fast_path->add(e.key, f).ok()) {
    e.flags |= kFlagFastPath;
    bump(counters_->fast_path_installed);
  } else {
    e.flags &= uint8_t(~kFlagFastPath);
    bump(counters_->fast_path_failed);
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
    if ((e.flags & kFlagFastPath) && e.next_hop < lost.size() && lost[e.next_hop]) {
      (void)opts_.fast_path->remove(e.key);
      e.flags &= uint8_t(~kFlagFastPath);
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
}  // namespace

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
bool Worker::refreshFromFastPath(void* self, FlowEntry& e, uint32_t now_ms) {
  auto* w = static_cast<Worker*>(self);
  if (!(e.flags & kFlagFastPath)) return false;
  auto act = w->opts_.fast_path->activity(e.key);
  if (act.ok() && act.value().has_value()) {
    const FastPathActivity& a = *act.value();
    if (int32_t(a.last_seen_ms - e.last_seen_ms) > 0) e.last_seen_ms = a.last_seen_ms;
    e.state = stateAfter(e.key, e.state, a);
  }
  if (w->table_->isExpired(e, now_ms)) {
    (void)w->opts_.fast_path->remove(e.key);
    return false;
  }
  return true;
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
  FlowRecord r{e.key,   e.next_hop, e.label, endpointOf(e.next_hop), e.next_hop >= kShortcutBase,
               e.state, uint32_t(now_ms - e.last_seen_ms), uint32_t(now_ms - e.first_seen_ms),
               e.packets};
  if (e.flags & kFlagFastPath) mergeFastPath(r, now_ms);
  return r;
}

void Worker::serveControl(uint32_t now_ms) {
  std::lock_guard lk(req_mu_);
  int req = request_.load(std::memory_order_acquire);
  if (req == int(Request::kDump)) {
    req_flows_.clear();
    table_->forEach([&](const FlowEntry& e) {
      if (req_flows_.size() >= req_limit_) return false;
      if (table_->isExpired(e, now_ms)) return true;
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
      if (!table_->isExpired(e, now_ms) && e.next_hop < req_per_host_.size())
        ++req_per_host_[e.next_hop];
    });
  }
  request_.store(0, std::memory_order_release);
  req_done_ = true;
  req_cv_.notify_all();
}

std::vector<FlowRecord> Worker::dumpFlows(size_t limit, int timeout_ms) {
  std::unique_lock lk(req_mu_);
  req_limit_ = limit;
  req_done_ = false;
  request_.store(int(Request::kDump), std::memory_order_release);
  if (!req_cv_.wait_for(lk, std::chrono::milliseconds(timeout_ms), [this] { return req_done_; })) {
    request_.store(0, std::memory_order_release);
    return {};
  }
  return std::move(req_flows_);
}

std::optional<FlowRecord> Worker::lookupFlow(const FlowKey& key, int timeout_ms) {
  std::unique_lock lk(req_mu_);
  req_key_ = key;
  req_done_ = false;
  request_.store(int(Request::kLookup), std::memory_order_release);
  if (!req_cv_.wait_for(lk, std::chrono::milliseconds(timeout_ms), [this] { return req_done_; })) {
    request_.store(0, std::memory_order_release);
    return std::nullopt;
  }
  return req_record_;
}

std::vector<uint64_t> Worker::flowsPerHost(int timeout_ms) {
  std::unique_lock lk(req_mu_);
  req_done_ = false;
  request_.store(int(Request::kPerHost), std::memory_order_release);
  if (!req_cv_.wait_for(lk, std::chrono::milliseconds(timeout_ms), [this] { return req_done_; })) {
    request_.store(0, std::memory_order_release);
    return std::vector<uint64_t>(opts_.host_count, 0);
  }
  return req_per_host_;
}

}  // namespace slr::router
