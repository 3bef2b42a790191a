#include "slr/peer_channel.h"

#include <poll.h>

#include <algorithm>

#include "core/fd.h"
#include "core/tcp_connect.h"

namespace slr::router {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

milliseconds left(Clock::time_point deadline) {
  return std::max(milliseconds(0),
                  std::chrono::duration_cast<milliseconds>(deadline - Clock::now()));
}

}  // namespace

Result<std::unique_ptr<PeerChannel>> PeerChannel::dial(const tls::Context& ctx,
                                                       const config::Endpoint& to,
                                                       const std::string& peer_name,
                                                       const proto::Hello& hello,
                                                       std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  const std::string who = "peer " + peer_name + " at " + to.str();
  if (auto v = proto::validate(hello); !v) return v.error();
  // Keepalive and a user timeout so a peer that vanished without a FIN is
  // noticed even when no frame is due.
  auto fd = tcpConnect(to, deadline, milliseconds(10000));
  if (!fd) return fd.error();
  auto conn = ctx.newConnection(std::move(fd.value()));
  if (!conn) return conn.error();
  tls::Connection c = std::move(conn.value());
  if (!c.setExpectedPeerName(peer_name))
    return Error{0, "TLS to " + who, "cannot set the expected peer name"};
  if (auto s = c.handshakeFor(left(deadline)); !s)
    return Error{s.error().code, "TLS handshake with " + who, s.error().detail};
  if (auto s = c.writeAll(proto::encode(hello), std::max(left(deadline), milliseconds(1))); !s)
    return Error{s.error().code, "send HELLO to " + who, s.error().detail};

  // Wait for HELLO_ACK (or the ERROR that refuses us).  The reader goes into
  // the channel: the peer may send its first frames right behind the ack.
  proto::FrameReader reader;
  for (;;) {
    auto f = reader.next();
    if (!f) return Error{0, "reply to HELLO from " + who, f.error().detail};
    if (*f) {
      auto msg = proto::decode(**f);
      if (!msg) return Error{0, "reply to HELLO from " + who, msg.error().detail};
      if (auto* e = std::get_if<proto::ErrorMsg>(&msg.value()))
        return Error{0, who + " refused the HELLO", "code " + std::to_string(e->code) + ": " + e->text};
      auto* ack = std::get_if<proto::HelloAck>(&msg.value());
      if (ack == nullptr)
        return Error{0, "reply to HELLO from " + who,
                     "expected HELLO_ACK, got " + std::string(proto::typeName((*f)->type))};
      if (ack->name != peer_name)
        return Error{0, "reply to HELLO from " + who,
                     "HELLO_ACK name '" + ack->name + "' != expected '" + peer_name + "'"};
      auto ch = std::make_unique<PeerChannel>(std::move(c), peer_name, std::move(reader));
      return ch;
    }
    auto r = c.read(reader.writeSpace());
    if (r.status == tls::IoStatus::kDone) {
      reader.commit(r.bytes);
      continue;
    }
    if (r.status == tls::IoStatus::kClosed)
      return Error{0, "waiting for HELLO_ACK from " + who, "connection closed by the peer"};
    if (r.status == tls::IoStatus::kError)
      return Error{0, "waiting for HELLO_ACK from " + who, c.lastError()};
    auto l = left(deadline);
    if (l.count() == 0) return Error{ETIMEDOUT, "waiting for HELLO_ACK from " + who, ""};
    pollfd p{c.fd(), short(r.status == tls::IoStatus::kWantWrite ? POLLOUT : POLLIN), 0};
    int pr = ::poll(&p, 1, int(l.count()));
    if (pr < 0 && errno != EINTR) return sysError("poll " + who);
  }
}

PeerChannel::PeerChannel(tls::Connection conn, std::string peer_name)
    : conn_(std::move(conn)), peer_name_(std::move(peer_name)) {}

PeerChannel::PeerChannel(tls::Connection conn, std::string peer_name, proto::FrameReader buffered)
    : conn_(std::move(conn)), peer_name_(std::move(peer_name)), reader_(std::move(buffered)) {}

PeerChannel::~PeerChannel() { conn_.shutdown(); }

int PeerChannel::fd() const { return conn_.fd(); }

bool PeerChannel::send(std::span<const std::byte> frame) {
  if (out_.size() - out_off_ + frame.size() > kMaxQueued) return false;
  if (out_off_ == out_.size()) {
    out_.clear();
    out_off_ = 0;
  } else if (out_off_ > (1u << 20) && out_off_ * 2 > out_.size()) {
    // Drop the sent prefix now and then so a busy channel's buffer stays small.
    out_.erase(out_.begin(), out_.begin() + ptrdiff_t(out_off_));
    out_off_ = 0;
  }
  out_.insert(out_.end(), frame.begin(), frame.end());
  (void)flush();  // a failure shows in the next flush()/readFrames()
  return true;
}

bool PeerChannel::flush() {
  if (!error_.empty()) return false;
  while (out_off_ < out_.size()) {
    auto r = conn_.write(std::span<const std::byte>(out_).subspan(out_off_));
    if (r.status == tls::IoStatus::kDone) {
      out_off_ += r.bytes;
      continue;
    }
    if (r.status == tls::IoStatus::kWantWrite || r.status == tls::IoStatus::kWantRead) return true;
    error_ = r.status == tls::IoStatus::kClosed ? "connection closed by the peer"
                                                : "write: " + conn_.lastError();
    return false;
  }
  out_.clear();
  out_off_ = 0;
  return true;
}

// Reads until TLS has nothing more: data already decrypted inside TLS does
// not make the socket readable again, so stopping early could strand frames.
bool PeerChannel::readFrames(const std::function<void(const proto::Frame&)>& on_frame) {
  if (!error_.empty()) return false;
  for (;;) {
    for (;;) {
      auto f = reader_.next();
      if (!f) {
        error_ = "protocol error: " + f.error().detail;
        return false;
      }
      if (!*f) break;
      on_frame(**f);
      if (!error_.empty()) return false;  // the callback's send() found the link broken
    }
    auto space = reader_.writeSpace();
    if (space.empty()) {
      error_ = "protocol error: frame reader full";
      return false;
    }
    auto r = conn_.read(space);
    switch (r.status) {
      case tls::IoStatus::kDone:
        reader_.commit(r.bytes);
        continue;
      case tls::IoStatus::kWantRead:
      case tls::IoStatus::kWantWrite:
        return true;
      case tls::IoStatus::kClosed:
        error_ = "connection closed by the peer";
        return false;
      case tls::IoStatus::kError:
        error_ = conn_.lastError().empty() ? std::string("TLS read failed") : conn_.lastError();
        return false;
    }
  }
}

}  // namespace slr::router
