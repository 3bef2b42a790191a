#include "slr/worker.h"

#include <poll.h>
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
constexpr uint8_t kFlagFastPath = 0x01;    // FlowEntry::flags: installed in the kernel fast path

uint32_t v4(const std::array<uint8_t, 16>& b) {
  return (uint32_t(b[0]) << 24) | (uint32_t(b[1]) << 16) | (uint32_t(b[2]) << 8) | uint32_t(b[3]);
}

}  // namespace

struct Worker::Packet {
  std::byte* frame = nullptr;  // kHeadroom bytes, then the inner packet
  size_t len = 0;              // inner length
  ParseError err = ParseError::kOk;
  PacketInfo info;
  uint64_t hash = 0;
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
  tx_msgs_.resize(kBatch);
  tx_iov_.resize(kBatch);
  tx_addr_.resize(kBatch);
  counters_ = std::make_unique<WorkerCounters>();
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
      pollfd p{fd, POLLIN, 0};
      (void)::poll(&p, 1, 100);
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

    // TUN has no recvmmsg; drain up to a batch with plain reads.
    size_t n = 0;
    while (n < kBatch) {
      ssize_t r = ::read(fd, pkts_[n].frame + kHeadroom, kBufSize - kHeadroom);
      if (r <= 0) break;
      pkts_[n].len = size_t(r);
      ++n;
    }
    idle = n < kBatch;
    if (n > 0) processBatch(n, now);
    (void)table_->expireSome(now, 256);
    // Counts expiries found by the sweep, by lookups and by full-table reclaim.
    counters_->flows_expired.store(table_->counters().expired, std::memory_order_relaxed);
    counters_->active_flows.store(table_->size(), std::memory_order_relaxed);
  }
}

void Worker::processBatch(size_t n, uint32_t now_ms) {
  tx_count_ = 0;
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
  size_t vip = 0;
  while (vip < opts_.vips.size() && (dst & opts_.vips[vip].mask) != opts_.vips[vip].net) ++vip;
  if (vip == opts_.vips.size()) return drop(Drop::k_not_vip);

  const ForwardingSnapshot& snap = *snap_;
  const uint64_t hash = p.hash;
  uint16_t nh = kNoNextHop;
  FlowEntry* e = table_->lookup(info.key, hash, now_ms);
  auto alive = [&snap](uint16_t h) { return h < snap.next_hops.size() && snap.next_hops[h].up; };
  if (e != nullptr) {
    if (!alive(e->next_hop)) {
      // Its host was withdrawn: the connection is lost there anyway, so give
      // the flow a live host rather than black-holing it.
      const RouteEntry* rt = snap.route(dst);
      if (rt == nullptr || rt->selection.empty()) return drop(Drop::k_no_host);
      e->next_hop = pick(*rt, hash);
      bump(counters_->flows_rerouted);
      if (opts_.fast_path != nullptr) installFastPath(*e, uint16_t(vip));
    }
    FlowTable::touch(*e, info.tcp_flags, now_ms);
    nh = e->next_hop;
  } else {
    const RouteEntry* rt = snap.route(dst);
    if (rt == nullptr || rt->selection.empty()) return drop(Drop::k_no_host);
    if (info.icmp_error) {
      // An error about a flow we do not know: route it like the flow would be
      // without state; never create state for it.
      uint64_t unused = 0;
      nh = rt->stateless.pick(hash, unused);
    } else {
      nh = pick(*rt, hash);
      e = table_->insert(info.key, hash, nh, next_label_,
                         FlowTable::initialState(info.key.proto, info.tcp_flags), now_ms);
      if (e != nullptr) {
        ++next_label_;
        bump(counters_->flows_created);
        bump(vip_counters_[vip].flows);
        bump(host_counters_[nh].flows);
        if (opts_.fast_path != nullptr && alive(nh)) installFastPath(*e, uint16_t(vip));
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
  size_t total = IpipCodec::encapsulateV4(std::span<std::byte>(p.frame, kHeadroom + p.len), p.len,
                                          opts_.tunnel_source, snap.next_hops[nh].tunnel_v4,
                                          ip_id_++);
  if (total == 0) return drop(Drop::k_tx_error);
  bump(host_counters_[nh].packets);
  bump(host_counters_[nh].bytes, p.len);

  sockaddr_in& sa = tx_addr_[tx_count_];
  sa = sockaddr_in{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(snap.next_hops[nh].tunnel_v4);
  tx_iov_[tx_count_] = iovec{p.frame, total};
  msghdr& m = tx_msgs_[tx_count_].msg_hdr;
  m = msghdr{};
  m.msg_name = &sa;
  m.msg_namelen = sizeof sa;
  m.msg_iov = &tx_iov_[tx_count_];
  m.msg_iovlen = 1;
  ++tx_count_;
  return true;
}

// The policy's choice for a new (or re-pointed) flow; round-robin selections
// keep one position per route in this worker.
uint16_t Worker::pick(const RouteEntry& rt, uint64_t hash) {
  return rt.selection.pick(hash, rr_counters_[size_t(&rt - snap_->routes.data())]);
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
void Worker::installFastPath(FlowEntry& e, uint16_t vip) {
  if (!FastPath::eligible(e.key) || e.next_hop >= snap_->next_hops.size()) return;
  FastPathFlow f{opts_.tunnel_source, snap_->next_hops[e.next_hop].tunnel_v4, e.next_hop, vip};
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

void Worker::serveControl(uint32_t now_ms) {
  std::lock_guard lk(req_mu_);
  int req = request_.load(std::memory_order_acquire);
  if (req == int(Request::kDump)) {
    req_flows_.clear();
    table_->forEach([&](const FlowEntry& e) {
      if (req_flows_.size() >= req_limit_) return false;
      if (table_->isExpired(e, now_ms)) return true;
      FlowRecord r{e.key, e.next_hop, e.label, e.state, uint32_t(now_ms - e.last_seen_ms),
                   uint32_t(now_ms - e.first_seen_ms), e.packets};
      if (e.flags & kFlagFastPath) mergeFastPath(r, now_ms);
      req_flows_.push_back(r);
      return true;
    });
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
