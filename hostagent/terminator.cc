#include "hostagent/terminator.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstring>
#include <memory>

#include "core/log.h"
#include "core/tunnel.h"

namespace slr::host {
namespace {

uint32_t maskOf(uint8_t len) { return len == 0 ? 0 : ~uint32_t(0) << (32 - len); }

void bump(std::atomic<uint64_t>& c, uint64_t n = 1) {
  // Single writer (the worker): load+store is enough and avoids a locked add.
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

}  // namespace

const char* decapVerdictName(DecapVerdict v) {
  switch (v) {
    case DecapVerdict::kForward: return "forward";
    case DecapVerdict::kMalformed: return "malformed";
    case DecapVerdict::kNotFromSlr: return "not_from_slr";
    case DecapVerdict::kNotVip: return "not_vip";
  }
  return "unknown";
}

DecapFilter::DecapFilter(const IpAddress& tunnel_address, const std::vector<IpAddress>& slr_sources,
                         const std::vector<Prefix>& subnets)
    : tunnel_address_(tunnel_address.v4HostOrder()) {
  for (const auto& s : slr_sources)
    if (s.isV4()) sources_.push_back(s.v4HostOrder());
  for (const auto& p : subnets)
    if (p.addr.isV4()) subnets_.push_back({p.addr.v4HostOrder(), maskOf(p.len)});
}

DecapVerdict DecapFilter::classify(std::span<const std::byte> outer,
                                   std::span<const std::byte>& inner) const {
  DecapResult r = IpipCodec::decapsulateV4(outer);
  if (!r.ok()) return DecapVerdict::kMalformed;
  uint32_t src = r.outer_src.v4HostOrder();
  bool from_slr = false;
  for (uint32_t s : sources_) from_slr |= (s == src);
  // A tunnel addressed to another local address is not ours to terminate:
  // count it with the spoofed ones, both mean "not a tunnel an SLR sent us".
  if (!from_slr || r.outer_dst.v4HostOrder() != tunnel_address_) return DecapVerdict::kNotFromSlr;
  // Inner header already validated by the codec: dst at bytes 16..19.
  uint32_t dst = load32(r.inner.data() + 16);
  for (const Net& n : subnets_) {
    if ((dst & n.mask) == n.addr) {
      inner = r.inner;
      return DecapVerdict::kForward;
    }
  }
  return DecapVerdict::kNotVip;
}

Result<std::unique_ptr<UserspaceTerminator>> UserspaceTerminator::create(
    UniqueFd tun_fd, const IpAddress& tunnel_address, DecapFilter filter) {
  UniqueFd raw(::socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_IPIP));
  if (!raw) return sysError("socket(AF_INET, SOCK_RAW, IPPROTO_IPIP) for userspace tunnel termination");
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  std::memcpy(&sa.sin_addr, tunnel_address.bytes.data(), 4);
  // Bound to the tunnel address so only tunnels addressed to us are read.
  if (::bind(raw.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0)
    return sysError("bind raw IPIP socket to tunnel_address " + tunnel_address.str(), errno,
                    errno == EADDRNOTAVAIL ? "tunnel_address is not an address of this host" : "");
  int rcvbuf = 8 << 20;
  (void)::setsockopt(raw.get(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  return std::unique_ptr<UserspaceTerminator>(
      new UserspaceTerminator(std::move(tun_fd), std::move(raw), std::move(filter)));
}

UserspaceTerminator::UserspaceTerminator(UniqueFd tun, UniqueFd raw, DecapFilter filter)
    : tun_(std::move(tun)), raw_(std::move(raw)), filter_(std::move(filter)),
      bufs_(kBatch * kBufSize) {}

UserspaceTerminator::~UserspaceTerminator() { stop(); }

void UserspaceTerminator::start() {
  if (thread_.joinable()) return;
  stop_.store(false);
  running_.store(true);
  thread_ = std::thread([this] { run(); });
}

void UserspaceTerminator::stop() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
  running_.store(false);
}

TerminatorCounters UserspaceTerminator::counters() const {
  TerminatorCounters c;
  c.packets = stats_.packets.load(std::memory_order_relaxed);
  c.bytes = stats_.bytes.load(std::memory_order_relaxed);
  c.malformed = stats_.malformed.load(std::memory_order_relaxed);
  c.not_from_slr = stats_.not_from_slr.load(std::memory_order_relaxed);
  c.not_vip = stats_.not_vip.load(std::memory_order_relaxed);
  c.tun_write_errors = stats_.tun_write_errors.load(std::memory_order_relaxed);
  return c;
}

void UserspaceTerminator::handlePacket(std::span<const std::byte> outer) {
  std::span<const std::byte> inner;
  switch (filter_.classify(outer, inner)) {
    case DecapVerdict::kForward: {
      ssize_t n = ::write(tun_.get(), inner.data(), inner.size());
      if (n == ssize_t(inner.size())) {
        bump(stats_.packets);
        bump(stats_.bytes, inner.size());
      } else {
        bump(stats_.tun_write_errors);
      }
      return;
    }
    case DecapVerdict::kMalformed: bump(stats_.malformed); return;
    case DecapVerdict::kNotFromSlr: bump(stats_.not_from_slr); return;
    case DecapVerdict::kNotVip: bump(stats_.not_vip); return;
  }
}

void UserspaceTerminator::run() {
  mmsghdr msgs[kBatch];
  iovec iov[kBatch];
  for (size_t i = 0; i < kBatch; ++i) {
    iov[i] = {bufs_.data() + i * kBufSize, kBufSize};
    std::memset(&msgs[i], 0, sizeof msgs[i]);
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  int last_errno = 0;
  while (!stop_.load(std::memory_order_relaxed)) {
    pollfd p{raw_.get(), POLLIN, 0};
    // Bounded wait so a stop request is noticed within 200 ms.
    int r = ::poll(&p, 1, 200);
    if (r <= 0) continue;
    for (;;) {
      int n = ::recvmmsg(raw_.get(), msgs, kBatch, MSG_DONTWAIT, nullptr);
      if (n < 0) {
        if (errno != EAGAIN && errno != EINTR && errno != last_errno) {
          last_errno = errno;  // log each distinct error once, not per packet
          LOG_WARN("tunnel", std::string("recvmmsg on raw IPIP socket: ") + std::strerror(errno));
        }
        break;
      }
      for (int i = 0; i < n; ++i) {
        size_t len = msgs[i].msg_len;
        if (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
          bump(stats_.malformed);
          continue;
        }
        handlePacket(std::span<const std::byte>(bufs_.data() + size_t(i) * kBufSize, len));
      }
      if (size_t(n) < kBatch) break;  // drained
    }
  }
  running_.store(false);
}

}  // namespace slr::host
