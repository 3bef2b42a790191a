#include "slr/control_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <vector>

#include "core/log.h"

namespace slr::router {
namespace {

constexpr auto kHandshakeTimeout = std::chrono::seconds(5);
constexpr size_t kMaxConnections = 1024;
constexpr size_t kMaxOutBuffer = 1 << 20;

std::string peerName(const sockaddr_in& sa) {
  char buf[INET_ADDRSTRLEN] = {0};
  inet_ntop(AF_INET, &sa.sin_addr, buf, sizeof buf);
  return std::string(buf) + ":" + std::to_string(ntohs(sa.sin_port));
}

}  // namespace

struct ControlServer::Conn {
  enum class Phase { kHandshake, kWaitHello, kRegistered, kClosing, kDead };
  explicit Conn(tls::Connection c) : tls(std::move(c)) {}
  tls::Connection tls;
  proto::FrameReader reader;
  std::vector<std::byte> out;
  size_t out_off = 0;
  bool want_write = false;
  Phase phase = Phase::kHandshake;
  int host = -1;
  std::string host_name;  // once the HELLO was accepted
  bool role_slr = false;  // registered as a lower-level SLR
  uint64_t session = 0;
  std::string peer;
  Clock::time_point deadline;
};

ControlServer::ControlServer(const config::SlrConfig& cfg, tls::Context ctx, HostRegistry& registry)
    : cfg_(cfg), ctx_(std::move(ctx)), registry_(registry) {}

ControlServer::~ControlServer() = default;

Status ControlServer::listen() {
  const auto& ep = cfg_.slr.control_listen;
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return sysError("socket for control channel");
  int one = 1;
  (void)::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(ep.port);
  sa.sin_addr.s_addr = htonl(ep.addr.v4HostOrder());
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0)
    return sysError("bind control channel to " + ep.str());
  if (::listen(fd.get(), 128) < 0) return sysError("listen on " + ep.str());
  listen_fd_ = std::move(fd);
  wake_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wake_) return sysError("eventfd for the control loop");
  return Ok{};
}

void ControlServer::poll(int timeout_ms) {
  std::vector<pollfd> pfds;
  pfds.reserve(conns_.size() + 1);
  pfds.push_back({listen_fd_.get(), POLLIN, 0});
  pfds.push_back({wake_.get(), POLLIN, 0});
  for (auto& c : conns_) {
    short ev = POLLIN;
    if (c->want_write || c->out_off < c->out.size()) ev |= POLLOUT;
    pfds.push_back({c->tls.fd(), ev, 0});
  }
  int r = ::poll(pfds.data(), pfds.size(), timeout_ms);
  if (r < 0 && errno != EINTR) LOG_WARN("control", std::string("poll: ") + strerror(errno));
  if (r > 0) {
    if (pfds[1].revents & POLLIN) {
      uint64_t v;
      (void)!::read(wake_.get(), &v, sizeof v);
    }
    size_t i = 2;
    for (auto& c : conns_) {
      short rev = pfds[i++].revents;
      if (rev == 0 || c->phase == Conn::Phase::kDead) continue;
      if (c->phase == Conn::Phase::kHandshake) {
        handshake(*c);
        continue;
      }
      if (rev & POLLOUT) flushOut(*c);
      if (rev & (POLLIN | POLLHUP | POLLERR)) onReadable(*c);
    }
    if (pfds[0].revents & POLLIN) accept();
  }
  // Deadlines for connections that never finished the handshake or HELLO.
  auto now = Clock::now();
  for (auto& c : conns_) {
    if ((c->phase == Conn::Phase::kHandshake || c->phase == Conn::Phase::kWaitHello) &&
        now > c->deadline) {
      LOG_WARN("control", "closing " + c->peer + ": no handshake/HELLO within 5s");
      ++counters_.timeout;
      c->phase = Conn::Phase::kDead;
    }
    if (c->phase == Conn::Phase::kClosing && c->out_off >= c->out.size()) {
      c->tls.shutdown();
      c->phase = Conn::Phase::kDead;
    }
  }
  for (auto& c : conns_) {
    // A registered peer that went away (stopped agent or SLR, crash, reset):
    // no new flows for it from now on; the hold time still decides when its
    // established flows move.  A replaced session is left alone.
    if (c->phase == Conn::Phase::kDead && c->host >= 0 && c->session != 0 &&
        registry_.disconnect(uint16_t(c->host), c->session, now)) {
      LOG_WARN("control", (c->role_slr ? "slr " : "host ") + c->host_name +
                              ": control connection closed; no new flows, established ones keep "
                              "their path until the hold time");
    }
  }
  conns_.remove_if([](const auto& c) { return c->phase == Conn::Phase::kDead; });
}

void ControlServer::accept() {
  for (;;) {
    sockaddr_in sa{};
    socklen_t len = sizeof sa;
    UniqueFd fd(::accept4(listen_fd_.get(), reinterpret_cast<sockaddr*>(&sa), &len,
                          SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd) return;
    ++counters_.accepted;
    if (conns_.size() >= kMaxConnections) {
      LOG_WARN("control", "refusing " + peerName(sa) + ": too many control connections");
      continue;
    }
    int one = 1;
    (void)::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    auto c = ctx_.newConnection(std::move(fd));
    if (!c) {
      LOG_WARN("control", "TLS setup for " + peerName(sa) + ": " + c.error().message());
      continue;
    }
    auto conn = std::make_unique<Conn>(std::move(c.value()));
    conn->peer = peerName(sa);
    conn->deadline = Clock::now() + kHandshakeTimeout;
    conns_.push_back(std::move(conn));
    handshake(*conns_.back());
  }
}

void ControlServer::handshake(Conn& c) {
  switch (c.tls.handshake()) {
    case tls::IoStatus::kDone:
      c.phase = Conn::Phase::kWaitHello;
      c.want_write = false;
      LOG_DEBUG("control", c.peer + ": TLS established, peer CN '" + c.tls.peerCommonName() + "'");
      onReadable(c);  // data may already be buffered inside TLS
      return;
    case tls::IoStatus::kWantRead:
      c.want_write = false;
      return;
    case tls::IoStatus::kWantWrite:
      c.want_write = true;
      return;
    default: {
      std::string why = c.tls.lastError();
      std::string verify = c.tls.verifyError();
      if (verify != "ok" && !verify.empty()) {
        ++counters_.untrusted_certificate;
        LOG_WARN("control", "refused " + c.peer + ": untrusted certificate: " + why);
      } else {
        ++counters_.tls_error;
        LOG_WARN("control", "refused " + c.peer + ": TLS handshake failed: " + why);
      }
      c.phase = Conn::Phase::kDead;
    }
  }
}

void ControlServer::onReadable(Conn& c) {
  for (int rounds = 0; rounds < 64 && c.phase != Conn::Phase::kDead; ++rounds) {
    auto space = c.reader.writeSpace();
    if (space.empty()) break;
    auto r = c.tls.read(space);
    if (r.status == tls::IoStatus::kDone) {
      c.reader.commit(r.bytes);
      for (;;) {
        auto f = c.reader.next();
        if (!f) {
          refuse(c, proto::kProtocolError, f.error().detail, counters_.protocol_error);
          return;
        }
        if (!f.value()) break;
        onFrame(c, **f);
        if (c.phase == Conn::Phase::kClosing || c.phase == Conn::Phase::kDead) return;
      }
      continue;
    }
    if (r.status == tls::IoStatus::kWantRead) return;
    if (r.status == tls::IoStatus::kWantWrite) {
      c.want_write = true;
      return;
    }
    if (r.status == tls::IoStatus::kClosed) {
      LOG_INFO("control", c.peer + " closed the control connection");
    } else {
      LOG_WARN("control", c.peer + ": " + c.tls.lastError());
    }
    c.phase = Conn::Phase::kDead;
    return;
  }
}

void ControlServer::onFrame(Conn& c, const proto::Frame& f) {
  auto msg = proto::decode(f);
  if (!msg) {
    refuse(c, proto::kProtocolError, msg.error().detail, counters_.protocol_error);
    return;
  }
  const auto now = Clock::now();
  if (auto* hello = std::get_if<proto::Hello>(&msg.value())) {
    if (c.phase != Conn::Phase::kWaitHello) {
      refuse(c, proto::kProtocolError, "HELLO sent twice", counters_.protocol_error);
      return;
    }
    if (hello->role == proto::Role::kPeer) {
      onPeerHello(c, *hello);
      return;
    }
    std::string cn = c.tls.peerCommonName();
    int id = registry_.find(cn);
    if (id < 0) {
      refuse(c, proto::kNotAuthorised, "certificate CN '" + cn + "' is not a configured [[host]]",
             counters_.not_authorised);
      return;
    }
    if (hello->name != cn) {
      refuse(c, proto::kNameMismatch,
             "HELLO name '" + hello->name + "' != certificate CN '" + cn + "'",
             counters_.name_mismatch);
      registry_.refuse(uint16_t(id), "HELLO name does not match certificate", now);
      return;
    }
    c.host = id;
    c.host_name = cn;
    c.session = registry_.hello(uint16_t(id), *hello, now);
    c.role_slr = hello->role == proto::Role::kSlr;
    c.phase = Conn::Phase::kRegistered;
    ++counters_.registered;
    LOG_INFO("control", std::string(c.role_slr ? "slr " : "host ") + cn + " registered from " +
                            c.peer + ", tunnel address " + hello->tunnel_address.str() +
                            ((hello->capabilities & proto::kCapShortcut) ? ", sends shortcuts" : ""));
    proto::HelloAck ack{cfg_.slr.name, cfg_.slr.tunnel_source,
                        uint32_t(cfg_.policy.hold_time.count())};
    send(c, proto::encode(ack));
    return;
  }
  if (auto* upd = std::get_if<proto::Update>(&msg.value())) {
    if (c.phase != Conn::Phase::kRegistered) {
      refuse(c, proto::kProtocolError, "UPDATE before HELLO", counters_.protocol_error);
      return;
    }
    auto r = registry_.update(uint16_t(c.host), c.session, *upd, now);
    switch (r.kind) {
      case HostRegistry::UpdateResult::Kind::kApplied:
        ++counters_.updates;
        break;
      case HostRegistry::UpdateResult::Kind::kSubnetNotAuthorised:
        refuse(c, proto::kSubnetNotAuthorised, r.why, counters_.subnet_not_authorised);
        break;
      case HostRegistry::UpdateResult::Kind::kStaleSession:
        c.phase = Conn::Phase::kDead;  // a newer connection of this host took over
        break;
    }
    return;
  }
  if (auto* sc = std::get_if<proto::Shortcut>(&msg.value())) {
    if (c.phase != Conn::Phase::kRegistered || !c.role_slr) {
      refuse(c, proto::kProtocolError, "SHORTCUT from a peer that is not a registered lower SLR",
             counters_.protocol_error);
      return;
    }
    onShortcut(c, *sc);
    return;
  }
  if (auto* e = std::get_if<proto::ErrorMsg>(&msg.value())) {
    LOG_WARN("control", c.peer + " reported error " + std::to_string(e->code) + ": " + e->text);
    c.phase = Conn::Phase::kDead;
    return;
  }
  refuse(c, proto::kProtocolError,
         std::string("unexpected ") + std::string(proto::typeName(f.type)) + " from a host",
         counters_.protocol_error);
}

// Another SLR of this level.  Its identity is checked like a host's (CN ==
// HELLO name), against the peers the config allows; then the connection is
// no longer ours: HELLO_ACK goes out on the PeerChannel and the acceptor
// takes it.  The Conn is left dead with no host, so nothing is withdrawn.
void ControlServer::onPeerHello(Conn& c, const proto::Hello& hello) {
  const std::string cn = c.tls.peerCommonName();
  bool allowed = cfg_.hot_spare.enabled && cn == cfg_.hot_spare.peer_name;
  for (const auto& n : cfg_.neighbors) allowed = allowed || cn == n.name;
  if (!allowed) {
    refuse(c, proto::kNotAuthorised,
           "certificate CN '" + cn + "' is neither [hot_spare].peer_name nor a [[neighbor]]",
           counters_.not_authorised);
    return;
  }
  if (hello.name != cn) {
    refuse(c, proto::kNameMismatch, "HELLO name '" + hello.name + "' != certificate CN '" + cn + "'",
           counters_.name_mismatch);
    return;
  }
  if (!peer_acceptor_) {
    refuse(c, proto::kNotAuthorised, "peer SLR " + cn + ": this SLR serves no peer connections",
           counters_.not_authorised);
    return;
  }
  ++counters_.registered;
  ++counters_.peers;
  LOG_INFO("control", "peer slr " + cn + " connected from " + c.peer +
                          ((hello.capabilities & proto::kCapSpareSync) ? ", hot-spare sync" : "") +
                          ((hello.capabilities & proto::kCapWhohas) ? ", whohas" : ""));
  auto ch = std::make_unique<PeerChannel>(std::move(c.tls), cn, std::move(c.reader));
  proto::HelloAck ack{cfg_.slr.name, cfg_.slr.tunnel_source,
                      uint32_t(cfg_.policy.hold_time.count())};
  ch->send(proto::encode(ack));
  c.phase = Conn::Phase::kDead;  // host stays -1: the registry is not touched
  c.reader = proto::FrameReader();
  peer_acceptor_(std::move(ch), hello);
}

uint16_t ControlServer::port() const {
  sockaddr_in sa{};
  socklen_t len = sizeof sa;
  if (!listen_fd_ || ::getsockname(listen_fd_.get(), reinterpret_cast<sockaddr*>(&sa), &len) < 0)
    return cfg_.slr.control_listen.port;
  return ntohs(sa.sin_port);
}

// The seed's tunnel object (Fig. 5).  A lower SLR may only redirect flows
// to the subnets it is authorised for; a refused entry is counted and
// logged (at most once per frame), the session stays up.
void ControlServer::onShortcut(Conn& c, const proto::Shortcut& s) {
  size_t refused = 0;
  std::string first;
  accepted_.clear();
  for (const auto& e : s.entries) {
    Prefix dst{e.key.dstAddr(), uint8_t(e.key.family == Family::kV4 ? 32 : 128)};
    if (!registry_.authorised(uint16_t(c.host), dst) || e.endpoint.family != Family::kV4 ||
        e.key.family != Family::kV4) {
      ++counters_.shortcut_refused;
      if (refused++ == 0) first = e.key.str() + " -> " + e.endpoint.str();
      continue;
    }
    if (!sink_) {
      ++counters_.shortcuts_ignored;
      continue;
    }
    ++counters_.shortcuts;
    accepted_.push_back(e);
  }
  if (sink_ && !accepted_.empty()) sink_(accepted_, uint16_t(c.host));
  if (refused > 0)
    LOG_WARN("control", "slr " + c.host_name + ": refused " + std::to_string(refused) +
                            " shortcut(s) outside its authorised subnets (or not IPv4), first: " + first);
}

void ControlServer::refuse(Conn& c, uint16_t code, const std::string& why,
                           std::atomic<uint64_t>& counter) {
  ++counter;
  LOG_WARN("control", "refused " + c.peer +
                          (c.host_name.empty() ? std::string() : " (host " + c.host_name + ")") +
                          ": " + why);
  send(c, proto::encode(proto::ErrorMsg{code, proto::sanitizeText(why)}));
  c.phase = Conn::Phase::kClosing;
}

void ControlServer::send(Conn& c, std::vector<std::byte> bytes) {
  if (c.out.size() - c.out_off + bytes.size() > kMaxOutBuffer) {
    LOG_WARN("control", c.peer + ": peer does not read; closing");
    c.phase = Conn::Phase::kDead;
    return;
  }
  if (c.out_off == c.out.size()) {
    c.out.clear();
    c.out_off = 0;
  }
  c.out.insert(c.out.end(), bytes.begin(), bytes.end());
  flushOut(c);
}

void ControlServer::flushOut(Conn& c) {
  while (c.out_off < c.out.size()) {
    auto r = c.tls.write(std::span<const std::byte>(c.out).subspan(c.out_off));
    if (r.status == tls::IoStatus::kDone) {
      c.out_off += r.bytes;
      continue;
    }
    if (r.status == tls::IoStatus::kWantWrite || r.status == tls::IoStatus::kWantRead) {
      c.want_write = true;
      return;
    }
    c.phase = Conn::Phase::kDead;
    return;
  }
  c.want_write = false;
}

}  // namespace slr::router
