#include "hostagent/recovery.h"

#include <linux/icmp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>
#include <unordered_map>

#include "core/log.h"
#include "core/packet.h"

namespace slr::host {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr milliseconds kSlice{200};  // longest poll before re-checking stop

int64_t nowMs() {
  return std::chrono::duration_cast<milliseconds>(Clock::now().time_since_epoch()).count();
}

// Connections are keyed by what both the socket dump and an echo reply's
// advertisement name: VIP, VIP port, client, client port.
struct ConnId {
  uint32_t vip = 0, client = 0;
  uint16_t vip_port = 0, client_port = 0;
  friend bool operator==(const ConnId&, const ConnId&) = default;
};
struct ConnIdHash {
  size_t operator()(const ConnId& c) const {
    uint64_t a = (uint64_t(c.vip) << 32) | c.client;
    uint64_t b = (uint64_t(c.vip_port) << 16) | c.client_port;
    return std::hash<uint64_t>()(a * 0x9E3779B97F4A7C15ull ^ b);
  }
};

std::string connName(const ConnId& c) {
  return IpAddress::v4(c.client).str() + ":" + std::to_string(c.client_port) + " -> " +
         IpAddress::v4(c.vip).str() + ":" + std::to_string(c.vip_port);
}

// Sockets that can still have data in flight to the client: a server that
// wrote its last bytes and closed (FIN-WAIT-1, LAST-ACK, CLOSING) still waits
// for them to be acknowledged.
constexpr uint32_t kWatchedStates = diag::stateBit(TCP_ESTABLISHED) | diag::stateBit(TCP_FIN_WAIT1) |
                                    diag::stateBit(TCP_CLOSE_WAIT) | diag::stateBit(TCP_LAST_ACK) |
                                    diag::stateBit(TCP_CLOSING);

}  // namespace

// ---------------------------------------------------------------- pure ----

StallStep stallStep(ConnTrack& t, const diag::TcpSockInfo& s, int64_t now_ms,
                    const config::RecoveryConfig& cfg) {
  StallStep out;
  const bool in_flight = s.unacked > 0 || s.retransmits > 0;
  const int64_t stall_after = cfg.stall_after.count(), give_up = cfg.give_up.count();
  if (!t.seen) {
    // First sight: only the kernel's ACK age is known.
    t.seen = true;
    t.bytes_acked = s.bytes_acked;
    t.last_progress_ms = in_flight ? now_ms - int64_t(s.last_ack_recv_ms) : now_ms;
  } else {
    if (s.bytes_acked != t.bytes_acked || !in_flight) t.last_progress_ms = now_ms;
    t.bytes_acked = s.bytes_acked;
  }
  const int64_t age = std::min<int64_t>(s.last_ack_recv_ms, now_ms - t.last_progress_ms);

  if (t.stalled) {
    if (s.bytes_acked != t.stall_bytes_acked || !in_flight) {
      out.recovered = true;
      out.stalled_ms = uint32_t(std::max<int64_t>(0, now_ms - t.stall_start_ms));
      t.stalled = false;
      t.gave_up = false;
      t.echoes = 0;
      t.replies = 0;
      return out;
    }
    if (t.gave_up) return out;
    if (now_ms - t.stall_start_ms >= give_up) {
      t.gave_up = true;
      out.gave_up = true;
      out.stalled_ms = uint32_t(now_ms - t.stall_start_ms);
      return out;
    }
    // One echo per interval; scans are `interval` apart, so allow a little
    // jitter rather than skipping every other one.
    if (t.echoes < cfg.max_echoes && now_ms - t.last_echo_ms >= cfg.interval.count() * 3 / 4) {
      out.send_echo = true;
      ++t.echoes;
      t.last_echo_ms = now_ms;
    }
    return out;
  }
  if (!in_flight || age < stall_after || age >= give_up) return out;
  t.stalled = true;
  t.gave_up = false;
  t.stall_start_ms = now_ms - age;
  t.stall_bytes_acked = s.bytes_acked;
  t.echoes = 1;
  t.replies = 0;
  t.last_echo_ms = now_ms;
  out.became_stalled = true;
  out.send_echo = true;
  return out;
}

size_t buildEchoPacket(std::span<std::byte> out, uint16_t ip_id, uint16_t icmp_id, uint16_t seq,
                       const advert::FlowAdvert& a) {
  if (out.size() < kEchoPacketSize) return 0;
  std::span<std::byte> ip = out.first(kEchoPacketSize);
  std::fill(ip.begin(), ip.end(), std::byte{0});
  ip[0] = std::byte{0x45};
  store16(ip, 2, uint16_t(kEchoPacketSize));
  store16(ip, 4, ip_id);
  store16(ip, 6, 0x4000);  // DF
  ip[8] = std::byte{64};
  ip[9] = std::byte{kProtoIcmp};
  store32(ip, 12, a.vip);
  store32(ip, 16, a.client);
  if (advert::encodeEchoRequest(ip.subspan(20), icmp_id, seq, a) != advert::kMessageSize) return 0;
  setIpv4HeaderChecksum(ip.first(20));
  return kEchoPacketSize;
}

size_t buildNudgePacket(std::span<std::byte> out, uint16_t ip_id, uint32_t seq, uint32_t ack,
                        const advert::FlowAdvert& a) {
  if (out.size() < kNudgePacketSize) return 0;
  std::span<std::byte> ip = out.first(kNudgePacketSize);
  std::fill(ip.begin(), ip.end(), std::byte{0});
  ip[0] = std::byte{0x45};
  store16(ip, 2, uint16_t(kNudgePacketSize));
  store16(ip, 4, ip_id);
  store16(ip, 6, 0x4000);  // DF
  ip[8] = std::byte{64};
  ip[9] = std::byte{kProtoTcp};
  store32(ip, 12, a.vip);
  store32(ip, 16, a.client);
  setIpv4HeaderChecksum(ip.first(20));
  std::span<std::byte> tcp = ip.subspan(20);
  store16(tcp, 0, a.vip_port);
  store16(tcp, 2, a.client_port);
  store32(tcp, 4, seq);
  store32(tcp, 8, ack);
  tcp[12] = std::byte{5 << 4};  // data offset 5 words, no options
  tcp[13] = std::byte{0x10};    // ACK
  store16(tcp, 14, 0xffff);     // window (ignored by the client: the segment is discarded)
  // Pseudo-header: src, dst, zero + protocol, TCP length.
  std::byte pseudo[12];
  std::memcpy(pseudo, ip.data() + 12, 8);
  pseudo[8] = std::byte{0};
  pseudo[9] = std::byte{kProtoTcp};
  store16(pseudo + 10, 20);
  store16(tcp, 16, internetChecksum(tcp, checksumPartial(pseudo)));
  return kNudgePacketSize;
}

bool parseAdvertReply(std::span<const std::byte> p, advert::FlowAdvert& out) {
  if (p.size() < kIpv4MinHeader || (uint8_t(p[0]) >> 4) != 4) return false;
  size_t ihl = size_t(uint8_t(p[0]) & 0x0f) * 4;
  if (ihl < kIpv4MinHeader || p.size() < ihl + 8 || uint8_t(p[9]) != kProtoIcmp) return false;
  std::span<const std::byte> icmp = p.subspan(ihl);
  if (uint8_t(icmp[0]) != 0 || uint8_t(icmp[1]) != 0) return false;  // echo reply
  advert::FlowAdvert a;
  if (advert::decode(icmp, a) != advert::DecodeStatus::kOk) return false;
  out = a;
  return true;
}

advert::FlowAdvert advertFor(const diag::TcpSockInfo& s, const IpAddress& tunnel_address) {
  advert::FlowAdvert a;
  a.proto = kProtoTcp;
  a.client = s.remote.v4HostOrder();
  a.client_port = s.remote_port;
  a.vip = s.local.v4HostOrder();
  a.vip_port = s.local_port;
  a.server = tunnel_address.v4HostOrder();
  a.server_port = s.local_port;
  return a;
}

// --------------------------------------------------------------- watcher ----

Result<std::unique_ptr<RecoveryWatcher>> RecoveryWatcher::create(const config::RecoveryConfig& cfg,
                                                                 std::vector<Prefix> subnets,
                                                                 IpAddress tunnel_address) {
  // One raw ICMP socket: IP_HDRINCL so the echo's source is the VIP (not an
  // address of the outgoing interface), and it receives every ICMP message
  // delivered locally, the echo replies to the VIPs included.
  UniqueFd fd(::socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_ICMP));
  if (!fd) return sysError("socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)", errno, "needs CAP_NET_RAW");
  int one = 1;
  if (::setsockopt(fd.get(), IPPROTO_IP, IP_HDRINCL, &one, sizeof one) < 0)
    return sysError("setsockopt IP_HDRINCL");
  // Only echo replies reach us (bits set = types filtered out).
  icmp_filter f{};
  f.data = ~(1u << ICMP_ECHOREPLY);
  if (::setsockopt(fd.get(), SOL_RAW, ICMP_FILTER, &f, sizeof f) < 0)
    return sysError("setsockopt ICMP_FILTER");
  return std::unique_ptr<RecoveryWatcher>(
      new RecoveryWatcher(cfg, std::move(subnets), tunnel_address, std::move(fd)));
}

RecoveryWatcher::RecoveryWatcher(const config::RecoveryConfig& cfg, std::vector<Prefix> subnets,
                                 IpAddress tunnel_address, UniqueFd raw)
    : cfg_(cfg), subnets_(std::move(subnets)), tunnel_address_(tunnel_address), raw_(std::move(raw)) {}

RecoveryWatcher::~RecoveryWatcher() { stop(); }

void RecoveryWatcher::start() {
  if (thread_.joinable()) return;
  stop_ = false;
  thread_ = std::thread([this] { run(); });
}

void RecoveryWatcher::stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

RecoveryCounters RecoveryWatcher::counters() const {
  RecoveryCounters c;
  c.enabled = true;
  c.state = "on";
  auto r = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  c.watched = r(watched_);
  c.stalled = r(stalled_);
  c.stalls = r(stalls_);
  c.echoes_sent = r(echoes_sent_);
  c.replies_received = r(replies_);
  c.nudges_sent = r(nudges_);
  c.recovered = r(recovered_);
  c.gave_up = r(gave_up_);
  c.send_errors = r(send_errors_);
  c.scan_errors = r(scan_errors_);
  return c;
}

void RecoveryWatcher::run() {
  std::unordered_map<ConnId, ConnTrack, ConnIdHash> conns;
  std::unordered_map<ConnId, bool, ConnIdHash> present;
  const uint16_t icmp_id = uint16_t(::getpid());
  uint16_t seq = 0, ip_id = 1;
  std::string last_scan_error;
  auto bump = [](std::atomic<uint64_t>& a, uint64_t n = 1) {
    a.store(a.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  };

  auto sendEcho = [&](const ConnId& id, const diag::TcpSockInfo& s) {
    std::byte pkt[kEchoPacketSize];
    advert::FlowAdvert a = advertFor(s, tunnel_address_);
    size_t n = buildEchoPacket(pkt, ip_id++, icmp_id, ++seq, a);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_addr.s_addr = htonl(a.client);
    if (n == 0 || ::sendto(raw_.get(), pkt, n, 0, reinterpret_cast<sockaddr*>(&to), sizeof to) < 0) {
      bump(send_errors_);
      LOG_DEBUG("recovery", "echo to " + connName(id) + ": " + std::strerror(errno));
      return;
    }
    bump(echoes_sent_);
  };

  // Two out-of-window ACKs (see buildNudgePacket), on the same raw socket:
  // with IP_HDRINCL the header we write is sent as is, protocol included.
  std::mt19937 rng(std::random_device{}());
  auto nudge = [&](const advert::FlowAdvert& a) {
    uint32_t seq = uint32_t(rng()), ack = uint32_t(rng());
    for (uint32_t s : {seq, seq + 0x80000000u}) {
      std::byte pkt[kNudgePacketSize];
      size_t n = buildNudgePacket(pkt, ip_id++, s, ack, a);
      sockaddr_in to{};
      to.sin_family = AF_INET;
      to.sin_addr.s_addr = htonl(a.client);
      if (n == 0 || ::sendto(raw_.get(), pkt, n, 0, reinterpret_cast<sockaddr*>(&to), sizeof to) < 0) {
        bump(send_errors_);
        return;
      }
      bump(nudges_);
    }
  };

  auto scan = [&] {
    diag::TcpFilter f;
    f.local_prefixes = subnets_;
    f.states = kWatchedStates;
    f.with_info = true;
    auto socks = diag::listTcp(f);
    if (!socks) {
      bump(scan_errors_);
      std::string msg = socks.error().message();
      if (msg != last_scan_error) LOG_WARN("recovery", "socket dump failed: " + msg);
      last_scan_error = msg;
      return;
    }
    last_scan_error.clear();
    const int64_t now = nowMs();
    if (rearm_.exchange(false, std::memory_order_relaxed)) {
      for (auto& [id, t] : conns) {
        if (t.stalled && !t.gave_up) {
          t.echoes = 0;
          t.last_echo_ms = 0;
        }
      }
    }
    present.clear();
    uint64_t stalled = 0, watched = 0;
    for (const auto& s : *socks) {
      if (!s.local.isV4() || !s.remote.isV4() || !s.has_info) continue;
      ConnId id{s.local.v4HostOrder(), s.remote.v4HostOrder(), s.local_port, s.remote_port};
      ++watched;
      present[id] = true;
      ConnTrack& t = conns[id];
      StallStep st = stallStep(t, s, now, cfg_);
      if (st.became_stalled) {
        bump(stalls_);
        LOG_INFO("recovery", "connection " + connName(id) + " stalled for " +
                                 std::to_string(now - t.stall_start_ms) + "ms (unacked " +
                                 std::to_string(s.unacked) + ", retransmits " +
                                 std::to_string(s.retransmits) + "): advertising it to the client");
      }
      if (st.recovered) {
        bump(recovered_);
        LOG_INFO("recovery", "connection " + connName(id) + " recovered after " +
                                 std::to_string(st.stalled_ms) + "ms stalled");
      }
      if (st.gave_up) {
        bump(gave_up_);
        LOG_INFO("recovery", "connection " + connName(id) + " still stalled after " +
                                 std::to_string(st.stalled_ms) + "ms: no more echoes");
      }
      if (st.send_echo) sendEcho(id, s);
      if (t.stalled && !t.gave_up) ++stalled;
    }
    // Forget connections that are gone.
    for (auto it = conns.begin(); it != conns.end();) {
      if (!present.count(it->first))
        it = conns.erase(it);
      else
        ++it;
    }
    watched_.store(watched, std::memory_order_relaxed);
    stalled_.store(stalled, std::memory_order_relaxed);
  };

  auto readReplies = [&] {
    std::byte buf[2048];
    for (;;) {
      ssize_t n = ::recv(raw_.get(), buf, sizeof buf, 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        return;  // EAGAIN: drained
      }
      advert::FlowAdvert a;
      if (!parseAdvertReply(std::span<const std::byte>(buf, size_t(n)), a)) continue;
      // Replies to another host's echoes (a shared VIP) are not ours.
      if (a.server != tunnel_address_.v4HostOrder()) continue;
      bump(replies_);
      ConnId id{a.vip, a.client, a.vip_port, a.client_port};
      if (auto it = conns.find(id); it != conns.end() && it->second.stalled) {
        if (it->second.replies++ == 0)
          LOG_INFO("recovery", "echo reply for " + connName(id) +
                                   " received through the SLRs: nudging the client for an ACK");
        // The reply came through an SLR that now forwards the flow to us
        // (it applied the advertisement before forwarding the reply).
        nudge(a);
      }
    }
  };

  int64_t next_scan = nowMs();
  while (!stop_.load()) {
    int64_t now = nowMs();
    if (now >= next_scan) {
      scan();
      next_scan += cfg_.interval.count();
      if (next_scan <= now) next_scan = now + cfg_.interval.count();
      continue;
    }
    pollfd p{raw_.get(), POLLIN, 0};
    int wait = int(std::min<int64_t>(next_scan - now, kSlice.count()));
    if (::poll(&p, 1, wait) > 0 && (p.revents & POLLIN)) readReplies();
  }
}

}  // namespace slr::host
