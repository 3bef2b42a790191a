#include "hostagent/slr_session.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <random>
#include <optional>

#include "core/fd.h"
#include "core/log.h"
#include "core/tcp_connect.h"

namespace slr::host {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr milliseconds kSlice{200};  // longest wait before re-checking stop
// A restarted SLR is back within a second or so, and until its hosts
// re-register it can neither forward new flows nor accept their flow
// advertisements: retry soon, then back off.  Jitter keeps a farm of hosts
// from reconnecting in lockstep.
constexpr milliseconds kBackoffMin{200};
constexpr milliseconds kBackoffMax{10000};

milliseconds jittered(milliseconds d) {
  thread_local std::minstd_rand rng{std::random_device{}()};
  return milliseconds(d.count() * 3 / 4 + int64_t(rng() % uint64_t(d.count() / 2 + 1)));
}

const char* errorCodeName(uint16_t code) {
  switch (code) {
    case proto::kNotAuthorised: return "not authorised";
    case proto::kSubnetNotAuthorised: return "subnet not authorised";
    case proto::kProtocolError: return "protocol error";
    case proto::kNameMismatch: return "name mismatch";
  }
  return "unknown error code";
}

milliseconds left(Clock::time_point deadline) {
  return std::max(milliseconds(0),
                  std::chrono::duration_cast<milliseconds>(deadline - Clock::now()));
}

}  // namespace

const char* sessionStateName(SessionState s) {
  switch (s) {
    case SessionState::kConnecting: return "connecting";
    case SessionState::kRegistered: return "registered";
    case SessionState::kRefused: return "refused";
    case SessionState::kError: return "error";
  }
  return "unknown";
}

bool isRefusal(uint16_t code) {
  return code == proto::kNotAuthorised || code == proto::kSubnetNotAuthorised ||
         code == proto::kNameMismatch;
}

std::string refusalText(const std::string& slr_name, const proto::ErrorMsg& e) {
  return (isRefusal(e.code) ? "refused by " : "error from ") + slr_name + ": " +
         (e.text.empty() ? std::string(errorCodeName(e.code)) : e.text);
}

proto::Update makeUpdate(uint32_t seq, const std::vector<Prefix>& subnets, double load,
                         const std::vector<double>& scales, const std::vector<bool>& available) {
  proto::Update u;
  u.seq = seq;
  u.entries.reserve(subnets.size());
  for (size_t i = 0; i < subnets.size(); ++i) {
    double l = load * (i < scales.size() ? scales[i] : 1.0);
    bool avail = i < available.size() ? bool(available[i]) : true;
    u.entries.push_back({subnets[i], std::clamp(l, 0.0, proto::kMaxLoad), avail});
  }
  return u;
}

SlrSession::SlrSession(SessionParams params, const tls::Context& tls,
                       const std::atomic<double>& load, const std::atomic<bool>& stop)
    : p_(std::move(params)), tls_(tls), load_(load), stop_(stop) {
  snap_.name = p_.peer.name;
  snap_.address = p_.peer.address.str();
  now_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);  // -1: sendNow waits for the next poll slice
}

SlrSession::~SlrSession() {
  join();
  if (now_fd_ >= 0) ::close(now_fd_);
}

void SlrSession::sendNow() {
  send_now_.store(true);
  if (now_fd_ >= 0) {
    uint64_t one = 1;
    (void)!::write(now_fd_, &one, sizeof one);
  }
}

void SlrSession::start() { thread_ = std::thread([this] { run(); }); }

void SlrSession::join() {
  if (thread_.joinable()) thread_.join();
}

SessionSnapshot SlrSession::snapshot() const {
  std::lock_guard lk(mu_);
  return snap_;
}

void SlrSession::setState(SessionState s, std::string err, bool keep_error) {
  std::lock_guard lk(mu_);
  snap_.state = s;
  if (!keep_error) snap_.last_error = std::move(err);
}

bool SlrSession::sleepInterruptible(milliseconds d) const {
  auto deadline = Clock::now() + d;
  while (!stop_.load()) {
    auto l = left(deadline);
    if (l.count() == 0) return true;
    std::this_thread::sleep_for(std::min(l, kSlice));
  }
  return false;
}

void SlrSession::run() {
  milliseconds backoff = kBackoffMin;
  while (!stop_.load()) {
    if (connectOnce()) backoff = kBackoffMin;  // it was up: retry soon
    if (stop_.load()) break;
    {
      std::lock_guard lk(mu_);
      LOG_INFO("control", "slr " + p_.peer.name + ": reconnecting in about " +
                              std::to_string(backoff.count()) + "ms" +
                              (snap_.last_error.empty() ? "" : " (" + snap_.last_error + ")"));
    }
    if (!sleepInterruptible(jittered(backoff))) break;
    backoff = std::min(backoff * 2, kBackoffMax);
  }
}

namespace {

// Next frame from the connection.  nullopt when `deadline` passed with no
// complete frame (not an error); an error on close, TLS failure, framing
// error or stop.
// wake_fd, now_fd (optional, eventfds): readable = return nullopt at once
// (after resetting it) so the caller can send what was queued.
Result<std::optional<proto::Frame>> readFrame(tls::Connection& c, proto::FrameReader& reader,
                                              Clock::time_point deadline,
                                              const std::atomic<bool>& stop,
                                              const std::string& peer, int wake_fd = -1,
                                              int now_fd = -1) {
  for (;;) {
    auto f = reader.next();
    if (!f) return f.error();
    if (*f) return std::move(*f);
    if (stop.load()) return sysError("read from " + peer, ECANCELED);
    auto space = reader.writeSpace();
    tls::IoResult io = c.read(space);
    short events = 0;
    switch (io.status) {
      case tls::IoStatus::kDone: reader.commit(io.bytes); continue;
      case tls::IoStatus::kWantRead: events = POLLIN; break;
      case tls::IoStatus::kWantWrite: events = POLLOUT; break;
      case tls::IoStatus::kClosed:
        return sysError("read from " + peer, 0, "connection closed by the SLR");
      case tls::IoStatus::kError: return sysError("read from " + peer, 0, c.lastError());
    }
    auto l = left(deadline);
    if (l.count() == 0) return std::optional<proto::Frame>{};
    // Negative fds are ignored by poll.
    pollfd p[3] = {{c.fd(), events, 0}, {wake_fd, POLLIN, 0}, {now_fd, POLLIN, 0}};
    int r = ::poll(p, 3, int(std::min(l, kSlice).count()));
    if (r < 0 && errno != EINTR) return sysError("poll " + peer);
    bool woken = false;
    for (int i = 1; i < 3; ++i) {
      if (p[i].fd >= 0 && (p[i].revents & POLLIN)) {
        uint64_t v;
        (void)!::read(p[i].fd, &v, sizeof v);
        woken = true;
      }
    }
    if (woken) return std::optional<proto::Frame>{};
  }
}

}  // namespace

bool SlrSession::connectOnce() {
  const std::string& name = p_.peer.name;
  const std::string peer = "slr " + name + " (" + p_.peer.address.str() + ")";
  setState(SessionState::kConnecting, {}, /*keep_error=*/true);
  LOG_DEBUG("control", "connecting to " + peer);
  auto fail = [&](SessionState s, const std::string& err) {
    LOG_WARN("control", peer + ": " + err);
    setState(s, err);
    return false;
  };

  // Keepalive and a user timeout so a dead SLR is noticed even though the
  // SLR never sends periodic messages.
  const milliseconds user_timeout{std::max<int64_t>(10000, 3 * p_.update_interval.count())};
  auto fd = tcpConnect(p_.peer.address, Clock::now() + p_.connect_timeout, user_timeout, &stop_);
  if (!fd) return fail(SessionState::kError, fd.error().message());
  auto conn = tls_.newConnection(std::move(*fd));
  if (!conn) return fail(SessionState::kError, conn.error().message());
  tls::Connection& c = *conn;
  if (!c.setExpectedPeerName(name)) return fail(SessionState::kError, "TLS: cannot set expected peer name");
  if (auto s = c.handshakeFor(p_.handshake_timeout); !s)
    return fail(SessionState::kError, "TLS handshake with " + p_.peer.address.str() + ": " +
                                          s.error().message());

  proto::Hello hello;
  hello.role = p_.role;
  hello.name = p_.host_name;
  hello.tunnel_address = p_.tunnel_address;
  hello.update_interval_ms = uint32_t(p_.update_interval.count());
  hello.capabilities = p_.capabilities;
  if (auto v = proto::validate(hello); !v) return fail(SessionState::kError, v.error().message());
  if (auto s = c.writeAll(proto::encode(hello), p_.handshake_timeout); !s)
    return fail(SessionState::kError, "send HELLO: " + s.error().message());

  proto::FrameReader reader;
  auto f = readFrame(c, reader, Clock::now() + p_.handshake_timeout, stop_, peer);
  if (!f) return fail(SessionState::kError, "waiting for HELLO_ACK: " + f.error().message());
  if (!*f) return fail(SessionState::kError, "no HELLO_ACK within " +
                                                 std::to_string(p_.handshake_timeout.count()) + "ms");
  auto msg = proto::decode(**f);
  if (!msg) return fail(SessionState::kError, "bad reply to HELLO: " + msg.error().message());
  if (auto* e = std::get_if<proto::ErrorMsg>(&*msg)) {
    std::string text = refusalText(name, *e);
    std::string line = peer + " refused registration: code " + std::to_string(e->code) + " (" +
                       errorCodeName(e->code) + "): " + e->text;
    // Same refusal on every retry: error once, then debug.
    if (snapshot().last_error != text)
      LOG_ERROR("control", line);
    else
      LOG_DEBUG("control", line);
    setState(isRefusal(e->code) ? SessionState::kRefused : SessionState::kError,
             refusalText(name, *e));
    return false;
  }
  auto* ack = std::get_if<proto::HelloAck>(&*msg);
  if (!ack) {
    std::string err = std::string("expected HELLO_ACK, got ") +
                      std::string(proto::typeName((*f)->type));
    (void)c.writeAll(proto::encode(proto::ErrorMsg{proto::kProtocolError, err}), milliseconds(500));
    return fail(SessionState::kError, err);
  }
  if (ack->name != name)
    LOG_WARN("control", peer + ": HELLO_ACK names itself '" + ack->name + "'");
  if (ack->tunnel_source != p_.peer.tunnel_source)
    LOG_WARN("control", peer + ": SLR says its tunnel source is " + ack->tunnel_source.str() +
                            " but the config accepts tunnels from " + p_.peer.tunnel_source.str() +
                            " only; set [[slr]].tunnel_source, or its tunnels are dropped");
  if (ack->hold_time_ms <= p_.update_interval.count())
    LOG_WARN("control", peer + ": hold time " + std::to_string(ack->hold_time_ms) +
                            "ms is not longer than our update interval " +
                            std::to_string(p_.update_interval.count()) +
                            "ms; the SLR will withdraw us between updates");
  {
    std::lock_guard lk(mu_);
    snap_.state = SessionState::kRegistered;
    snap_.last_error.clear();
    snap_.hold_time_ms = ack->hold_time_ms;
    snap_.tunnel_source = ack->tunnel_source.str();
  }
  LOG_INFO("control", "registered with " + peer + ", hold time " +
                          std::to_string(ack->hold_time_ms) + "ms, tunnel source " +
                          ack->tunnel_source.str());

  // First UPDATE at once so the SLR can use us without waiting an interval.
  auto next_update = Clock::now();
  send_now_.store(false);
  for (;;) {
    if (stop_.load()) {
      c.shutdown();
      return true;
    }
    // sendNow(): availability changed, the SLR must know within milliseconds.
    if (send_now_.exchange(false)) next_update = std::min(next_update, Clock::now());
    if (Clock::now() >= next_update) {
      proto::Update u = p_.make_update ? p_.make_update(++seq_)
                                       : makeUpdate(++seq_, p_.subnets,
                                                    load_.load(std::memory_order_relaxed),
                                                    p_.subnet_load_scale);
      if (auto s = c.writeAll(proto::encode(u), p_.update_interval + milliseconds(1000)); !s) {
        fail(SessionState::kError, "send UPDATE: " + s.error().message());
        return true;
      }
      {
        std::lock_guard lk(mu_);
        ++snap_.updates_sent;
      }
      next_update += p_.update_interval;
      if (next_update < Clock::now()) next_update = Clock::now() + p_.update_interval;
    }
    if (p_.drain) {
      std::vector<std::byte> out;
      p_.drain(out);
      if (!out.empty()) {
        if (auto s = c.writeAll(out, p_.update_interval + milliseconds(1000)); !s) {
          fail(SessionState::kError, "send: " + s.error().message());
          return true;
        }
      }
    }
    auto in = readFrame(c, reader, next_update, stop_, peer, p_.wake_fd, now_fd_);
    if (!in) {
      if (stop_.load()) continue;
      fail(SessionState::kError, in.error().message());
      return true;
    }
    if (!*in) continue;  // time for the next UPDATE
    auto m = proto::decode(**in);
    if (!m) {
      (void)c.writeAll(proto::encode(proto::ErrorMsg{proto::kProtocolError, "undecodable frame"}),
                       milliseconds(500));
      fail(SessionState::kError, "bad frame from SLR: " + m.error().message());
      return true;
    }
    if (auto* e = std::get_if<proto::ErrorMsg>(&*m)) {
      LOG_ERROR("control", peer + " sent ERROR code " + std::to_string(e->code) + " (" +
                               errorCodeName(e->code) + "): " + e->text);
      setState(isRefusal(e->code) ? SessionState::kRefused : SessionState::kError, refusalText(name, *e));
      return true;
    }
    LOG_DEBUG("control", peer + ": ignoring unexpected " +
                             std::string(proto::typeName((*in)->type)));
  }
}

}  // namespace slr::host
