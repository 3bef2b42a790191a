// SLR <-> SLR peer channels (HELLO role peer): PeerChannel::dial against a
// real ControlServer on loopback TCP with real certificates (made with the
// openssl CLI, as tls_test does), frames both ways, refusals, broken
// streams; and the WHOHAS module end to end between two SLRs with fake
// workers.
#include "slr/peer_channel.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <thread>

#include "slr/control_server.h"
#include "slr/registry.h"
#include "slr/whohas.h"
#include "tests/unit/test_certs.h"

namespace slr::router {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class PeerChannelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    signal(SIGPIPE, SIG_IGN);
    dir_ = testing::makeTempDir("/tmp/slr_peer_test");
    ASSERT_FALSE(dir_.empty());
    auto ca = [](const std::string& n) { testing::makeCa(dir_, n); };
    int serial = 100;
    auto leaf = [&](const std::string& cn, const std::string& ca) {
      testing::makeLeaf(dir_, cn + "-" + ca, cn, ca, std::to_string(serial++));
    };
    ca("good");
    ca("rogue");
    leaf("slr1", "good");
    leaf("slr2", "good");
    leaf("slr3", "good");   // signed, but no [[neighbor]] of slr1
    leaf("slr2", "rogue");  // right name, wrong CA
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  static std::string p(const std::string& name) { return dir_ + "/" + name; }

  // An SLR config for `name` listening on 127.0.0.1 (kernel-picked port).
  static config::SlrConfig slrConfig(const std::string& name, const std::vector<std::string>& neighbors) {
    config::SlrConfig c;
    c.slr.name = name;
    c.slr.control_listen.addr = *IpAddress::parse("127.0.0.1");
    c.slr.control_listen.port = 0;  // the kernel picks; Server::endpoint() says which
    c.slr.tunnel_source = *IpAddress::parse("10.0.2.1");
    c.tls = {p("good-ca.pem"), p(name + "-good.pem"), p(name + "-good.key")};
    for (const auto& n : neighbors) {
      config::NeighborConfig nb;
      nb.name = n;
      nb.address.addr = *IpAddress::parse("127.0.0.1");
      nb.address.port = 1;  // nobody listens: tests set the real one where needed
      c.neighbors.push_back(nb);
    }
    config::HostAuthConfig h;
    h.name = "host1";
    h.subnets = {*Prefix::parse("10.100.0.0/24")};
    c.hosts.push_back(h);
    return c;
  }

  static tls::Context client(const std::string& cn, const std::string& ca = "good") {
    auto c = tls::Context::client(p("good-ca.pem"), p(cn + "-" + ca + ".pem"), p(cn + "-" + ca + ".key"));
    EXPECT_TRUE(c.ok()) << c.error().message();
    return std::move(c).value();
  }

  static proto::Hello peerHello(const std::string& name, uint32_t caps = proto::kCapWhohas) {
    return proto::Hello{proto::Role::kPeer, name, *IpAddress::parse("10.0.2.2"), 1000, caps};
  }

  static inline std::string dir_;
};

// A ControlServer driven by its own thread; accepted peer channels are kept.
struct Server {
  explicit Server(const config::SlrConfig& c) : cfg(c), registry(cfg.hosts) {
    auto ctx = tls::Context::server(cfg.tls.ca, cfg.tls.cert, cfg.tls.key);
    EXPECT_TRUE(ctx.ok()) << ctx.error().message();
    server = std::make_unique<ControlServer>(cfg, std::move(ctx).value(), registry);
    EXPECT_TRUE(server->listen().ok());
  }
  void acceptInto() {
    server->setPeerAcceptor([this](std::unique_ptr<PeerChannel> ch, const proto::Hello& h) {
      std::lock_guard lk(mu);
      hellos.push_back(h);
      accepted.push_back(std::move(ch));
    });
  }
  void start() {
    thread = std::thread([this] {
      while (!stop) server->poll(20);
    });
  }
  ~Server() {
    stop = true;
    if (thread.joinable()) thread.join();
  }
  std::unique_ptr<PeerChannel> take(std::chrono::milliseconds within = 2s) {
    auto until = std::chrono::steady_clock::now() + within;
    while (std::chrono::steady_clock::now() < until) {
      {
        std::lock_guard lk(mu);
        if (!accepted.empty()) {
          auto ch = std::move(accepted.front());
          accepted.erase(accepted.begin());
          return ch;
        }
      }
      std::this_thread::sleep_for(5ms);
    }
    return nullptr;
  }
  config::Endpoint endpoint() const {
    config::Endpoint e = cfg.slr.control_listen;
    e.port = server->port();
    return e;
  }

  config::SlrConfig cfg;
  HostRegistry registry;
  std::unique_ptr<ControlServer> server;
  std::mutex mu;
  std::vector<std::unique_ptr<PeerChannel>> accepted;
  std::vector<proto::Hello> hellos;
  std::atomic<bool> stop{false};
  std::thread thread;
};

// Reads frames until `pred` holds or the time is up; false if the channel failed.
bool readUntil(PeerChannel& ch, std::vector<proto::Frame>& got, size_t want,
               std::chrono::milliseconds within = 2s) {
  auto until = std::chrono::steady_clock::now() + within;
  while (got.size() < want && std::chrono::steady_clock::now() < until) {
    if (!ch.flush()) return false;
    if (!ch.readFrames([&](const proto::Frame& f) { got.push_back(f); })) return false;
    if (got.size() >= want) break;
    pollfd pf{ch.fd(), POLLIN, 0};
    ::poll(&pf, 1, 20);
  }
  return got.size() >= want;
}

FlowKey tcpKey(const char* src, uint16_t sport, const char* dst, uint16_t dport) {
  FlowKey k{};
  k.family = Family::kV4;
  k.proto = 6;
  k.src = IpAddress::parse(src)->bytes;
  k.dst = IpAddress::parse(dst)->bytes;
  k.sport = sport;
  k.dport = dport;
  return k;
}

TEST_F(PeerChannelTest, DialAcceptAndFramesBothWays) {
  Server s(slrConfig("slr1", {"slr2"}));
  s.acceptInto();
  s.start();
  auto dialed = PeerChannel::dial(client("slr2"), s.endpoint(), "slr1", peerHello("slr2"), 3s);
  ASSERT_TRUE(dialed.ok()) << dialed.error().message();
  auto a = std::move(dialed).value();
  auto b = s.take();
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(a->peerName(), "slr1");
  EXPECT_EQ(b->peerName(), "slr2");
  {
    std::lock_guard lk(s.mu);
    ASSERT_EQ(s.hellos.size(), 1u);
    EXPECT_EQ(s.hellos[0].role, proto::Role::kPeer);
    EXPECT_EQ(s.hellos[0].capabilities, proto::kCapWhohas);
  }
  EXPECT_EQ(s.server->counters().peers.load(), 1u);
  EXPECT_EQ(s.server->connections(), 0u);  // handed over, not the server's any more

  // dialer -> listener: a WHOHAS; listener -> dialer: the IHAVE.
  proto::Whohas q{1, {{7, tcpKey("10.0.1.2", 40000, "10.100.0.10", 80)}}};
  ASSERT_TRUE(a->send(proto::encode(q)));
  std::vector<proto::Frame> got;
  ASSERT_TRUE(readUntil(*b, got, 1)) << b->lastError();
  ASSERT_EQ(got[0].type, proto::MsgType::kWhohas);
  auto dq = proto::decodeWhohas(got[0].body);
  ASSERT_TRUE(dq.ok());
  EXPECT_EQ(*dq, q);

  proto::Ihave r{{{7, q.entries[0].key, true, *IpAddress::parse("10.0.3.11")}}};
  // Many frames at once: all arrive, in order.
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(b->send(proto::encode(r)));
  got.clear();
  ASSERT_TRUE(readUntil(*a, got, 50)) << a->lastError();
  for (const auto& f : got) {
    auto dr = proto::decodeIhave(f.body);
    ASSERT_TRUE(dr.ok());
    EXPECT_EQ(*dr, r);
  }
  EXPECT_FALSE(a->wantsWrite());

  // The dialer goes away: the listener's channel reports it.
  a.reset();
  got.clear();
  EXPECT_FALSE(readUntil(*b, got, 1));
  EXPECT_FALSE(b->lastError().empty());
}

TEST_F(PeerChannelTest, CnThatIsNoNeighborRefused) {
  Server s(slrConfig("slr1", {"slr2"}));
  s.acceptInto();
  s.start();
  auto r = PeerChannel::dial(client("slr3"), s.endpoint(), "slr1", peerHello("slr3"), 3s);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("refused"), std::string::npos) << r.error().message();
  EXPECT_NE(r.error().message().find("slr3"), std::string::npos) << r.error().message();
  EXPECT_EQ(s.server->counters().not_authorised.load(), 1u);
  EXPECT_EQ(s.take(100ms), nullptr);
}

TEST_F(PeerChannelTest, HelloNameMustEqualCertificate) {
  Server s(slrConfig("slr1", {"slr2", "slr3"}));
  s.acceptInto();
  s.start();
  auto r = PeerChannel::dial(client("slr3"), s.endpoint(), "slr1", peerHello("slr2"), 3s);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("certificate CN"), std::string::npos) << r.error().message();
  EXPECT_EQ(s.server->counters().name_mismatch.load(), 1u);
}

TEST_F(PeerChannelTest, ListenerWithWrongCnRefusedByDialer) {
  Server s(slrConfig("slr1", {"slr2"}));
  s.acceptInto();
  s.start();
  // We expect to reach slr9; the listener's certificate says slr1.
  auto r = PeerChannel::dial(client("slr2"), s.endpoint(), "slr9", peerHello("slr2"), 3s);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("slr9"), std::string::npos) << r.error().message();
  EXPECT_EQ(s.take(100ms), nullptr);
}

TEST_F(PeerChannelTest, CertificateFromAnotherCaRefused) {
  Server s(slrConfig("slr1", {"slr2"}));
  s.acceptInto();
  s.start();
  auto r = PeerChannel::dial(client("slr2", "rogue"), s.endpoint(), "slr1", peerHello("slr2"), 3s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(s.take(200ms), nullptr);
}

TEST_F(PeerChannelTest, WithoutAcceptorPeersAreRefused) {
  Server s(slrConfig("slr1", {"slr2"}));
  s.start();
  auto r = PeerChannel::dial(client("slr2"), s.endpoint(), "slr1", peerHello("slr2"), 3s);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("serves no peer"), std::string::npos) << r.error().message();
}

TEST_F(PeerChannelTest, GarbageBreaksTheStream) {
  Server s(slrConfig("slr1", {"slr2"}));
  s.acceptInto();
  s.start();
  auto dialed = PeerChannel::dial(client("slr2"), s.endpoint(), "slr1", peerHello("slr2"), 3s);
  ASSERT_TRUE(dialed.ok()) << dialed.error().message();
  auto a = std::move(dialed).value();
  auto b = s.take();
  ASSERT_NE(b, nullptr);
  // A valid frame, then bytes that are no frame header.
  proto::Whohas q{1, {{1, tcpKey("10.0.1.2", 1, "10.100.0.10", 80)}}};
  ASSERT_TRUE(a->send(proto::encode(q)));
  const char junk[] = "GET / HTTP/1.0\r\n\r\n";
  ASSERT_TRUE(a->send(std::as_bytes(std::span(junk, sizeof junk - 1))));
  std::vector<proto::Frame> got;
  EXPECT_FALSE(readUntil(*b, got, 2));
  EXPECT_EQ(got.size(), 1u);  // the frame before the garbage was delivered
  EXPECT_NE(b->lastError().find("protocol error"), std::string::npos) << b->lastError();
  // Sticky: the stream cannot be resynchronised.
  EXPECT_FALSE(b->readFrames([](const proto::Frame&) {}));
}

TEST_F(PeerChannelTest, SendRefusesBeyondTheQueueLimit) {
  Server s(slrConfig("slr1", {"slr2"}));
  s.acceptInto();
  s.start();
  auto dialed = PeerChannel::dial(client("slr2"), s.endpoint(), "slr1", peerHello("slr2"), 3s);
  ASSERT_TRUE(dialed.ok()) << dialed.error().message();
  auto a = std::move(dialed).value();
  auto b = s.take();  // never reads
  ASSERT_NE(b, nullptr);
  std::vector<std::byte> body(60000, std::byte{0});
  auto frame = proto::encodeFrame(proto::MsgType::kWhohas, body);
  size_t sent = 0;
  while (a->send(frame) && sent < 1000) ++sent;
  EXPECT_LT(sent, 1000u);
  EXPECT_GE(sent * frame.size(), PeerChannel::kMaxQueued - frame.size());
  EXPECT_TRUE(a->wantsWrite());
}

// Two SLRs: slr1 asks slr2 about a flow it does not know; slr2's (fake)
// workers have it going to 10.0.3.11, which is slr1's up host1.
TEST_F(PeerChannelTest, WhohasResolvesThroughANeighbor) {
  Server s2(slrConfig("slr2", {"slr1"}));
  auto cfg1 = slrConfig("slr1", {"slr2"});
  cfg1.neighbors[0].address = s2.endpoint();
  cfg1.whohas.wait = 500ms;
  Server s1(cfg1);

  const FlowKey known = tcpKey("10.0.1.2", 40000, "10.100.0.10", 80);
  const FlowKey unknown = tcpKey("10.0.1.2", 40001, "10.100.0.10", 80);
  const FlowKey elsewhere = tcpKey("10.0.1.2", 40002, "10.100.0.10", 80);

  // slr2 answers from its "workers".
  WhohasHooks h2;
  h2.workers = 0;
  h2.lookup = [&](const FlowKey& k) -> std::optional<uint32_t> {
    if (k == known) return IpAddress::parse("10.0.3.11")->v4HostOrder();
    if (k == elsewhere) return IpAddress::parse("10.9.9.9")->v4HostOrder();  // no host of slr1
    return std::nullopt;
  };
  WhohasModule m2(s2.cfg, s2.registry, h2);
  ASSERT_TRUE(m2.init().ok());
  s2.server->setPeerAcceptor([&](std::unique_ptr<PeerChannel> ch, const proto::Hello& h) {
    m2.adopt(std::move(ch), h);
  });
  s2.start();
  m2.start();

  // slr1: host1 is up at 10.0.3.11.
  auto t0 = Clock::now();
  uint64_t sess = s1.registry.hello(0, proto::Hello{proto::Role::kHost, "host1",
                                                    *IpAddress::parse("10.0.3.11"), 1000, 0}, t0);
  proto::Update u;
  u.entries.push_back({*Prefix::parse("10.100.0.0/24"), 0.1, true});
  ASSERT_TRUE(s1.registry.update(0, sess, u, t0).ok());

  std::mutex mu;
  std::vector<FlowKey> queue = {known, unknown, elsewhere};
  struct Resolved {
    FlowKey key;
    uint16_t host;
    uint32_t endpoint;
  };
  std::vector<Resolved> resolved;
  std::atomic<bool> connected{false};
  WhohasHooks h1;
  h1.workers = 1;
  h1.pop = [&](size_t, FlowKey& k) {
    if (!connected) return false;  // keys wait until the neighbour is up
    std::lock_guard lk(mu);
    if (queue.empty()) return false;
    k = queue.front();
    queue.erase(queue.begin());
    return true;
  };
  h1.resolve = [&](const FlowKey& k, uint16_t host, uint32_t ep) {
    std::lock_guard lk(mu);
    resolved.push_back({k, host, ep});
  };
  WhohasModule m1(cfg1, s1.registry, h1);
  ASSERT_TRUE(m1.init().ok());
  m1.start();

  auto until = Clock::now() + 5s;
  while (Clock::now() < until && m1.neighbors()[0].state != "up") std::this_thread::sleep_for(10ms);
  ASSERT_EQ(m1.neighbors()[0].state, "up") << m1.neighbors()[0].last_error;
  connected = true;
  uint64_t one = 1;
  ASSERT_EQ(::write(m1.wakeFd(), &one, sizeof one), 8);

  until = Clock::now() + 5s;
  while (Clock::now() < until &&
         m1.counters().answered_found.load() + m1.counters().answered_unknown.load() < 3)
    std::this_thread::sleep_for(10ms);
  {
    std::lock_guard lk(mu);
    ASSERT_EQ(resolved.size(), 1u);
    EXPECT_EQ(resolved[0].key, known);
    EXPECT_EQ(resolved[0].host, 0);
    EXPECT_EQ(resolved[0].endpoint, IpAddress::parse("10.0.3.11")->v4HostOrder());
  }
  EXPECT_EQ(m1.counters().asked.load(), 3u);
  EXPECT_EQ(m1.counters().answered_found.load(), 2u);
  EXPECT_EQ(m1.counters().answered_unknown.load(), 1u);
  EXPECT_EQ(m1.counters().resolved.load(), 1u);
  EXPECT_EQ(m1.counters().refused.load(), 1u);  // 10.9.9.9 is no host of slr1
  EXPECT_EQ(m2.counters().queries_served.load(), 3u);
  EXPECT_EQ(m2.counters().served_found.load(), 2u);
  // The unknown and the refused one were not resolved within the wait.
  until = Clock::now() + 3s;
  while (Clock::now() < until && m1.counters().timeouts.load() < 2) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(m1.counters().timeouts.load(), 2u);
  until = Clock::now() + 3s;
  while (Clock::now() < until && !m2.neighbors()[0].inbound) std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(m2.neighbors()[0].inbound);
  // slr2 lists slr1 as a neighbour too, but slr1 does not listen: down, with a reason.
  EXPECT_NE(m2.neighbors()[0].state, "up");
  m1.stop();
  m2.stop();
}

// scope 2: slr1 asks slr2, which does not know the flow and passes the
// question on to slr3, which does; slr2 relays the answer back.
TEST_F(PeerChannelTest, WhohasScopeTwoIsRelayed) {
  Server s3(slrConfig("slr3", {"slr2"}));
  auto cfg2 = slrConfig("slr2", {"slr1", "slr3"});
  cfg2.neighbors[1].address = s3.endpoint();
  Server s2(cfg2);
  auto cfg1 = slrConfig("slr1", {"slr2"});
  cfg1.neighbors[0].address = s2.endpoint();
  cfg1.whohas.scope = 2;
  cfg1.whohas.wait = 1s;
  Server s1(cfg1);

  const FlowKey far = tcpKey("10.0.1.2", 40000, "10.100.0.10", 80);
  const FlowKey nowhere = tcpKey("10.0.1.2", 40001, "10.100.0.10", 80);
  WhohasHooks h3;
  h3.lookup = [&](const FlowKey& k) -> std::optional<uint32_t> {
    if (k == far) return IpAddress::parse("10.0.3.11")->v4HostOrder();
    return std::nullopt;
  };
  WhohasModule m3(s3.cfg, s3.registry, h3);
  ASSERT_TRUE(m3.init().ok());
  s3.server->setPeerAcceptor([&](std::unique_ptr<PeerChannel> ch, const proto::Hello& h) { m3.adopt(std::move(ch), h); });
  WhohasHooks h2;
  h2.lookup = [](const FlowKey&) -> std::optional<uint32_t> { return std::nullopt; };
  WhohasModule m2(s2.cfg, s2.registry, h2);
  ASSERT_TRUE(m2.init().ok());
  s2.server->setPeerAcceptor([&](std::unique_ptr<PeerChannel> ch, const proto::Hello& h) { m2.adopt(std::move(ch), h); });
  s3.start();
  s2.start();
  m3.start();
  m2.start();

  auto t0 = Clock::now();
  uint64_t sess = s1.registry.hello(0, proto::Hello{proto::Role::kHost, "host1",
                                                    *IpAddress::parse("10.0.3.11"), 1000, 0}, t0);
  proto::Update u;
  u.entries.push_back({*Prefix::parse("10.100.0.0/24"), 0.1, true});
  ASSERT_TRUE(s1.registry.update(0, sess, u, t0).ok());

  std::mutex mu;
  std::vector<FlowKey> queue = {far, nowhere};
  std::vector<FlowKey> resolved;
  std::atomic<bool> go{false};
  WhohasHooks h1;
  h1.workers = 1;
  h1.pop = [&](size_t, FlowKey& k) {
    std::lock_guard lk(mu);
    if (!go || queue.empty()) return false;
    k = queue.front();
    queue.erase(queue.begin());
    return true;
  };
  h1.resolve = [&](const FlowKey& k, uint16_t, uint32_t) {
    std::lock_guard lk(mu);
    resolved.push_back(k);
  };
  WhohasModule m1(cfg1, s1.registry, h1);
  ASSERT_TRUE(m1.init().ok());
  m1.start();
  auto until = Clock::now() + 5s;
  while (Clock::now() < until && (m1.neighbors()[0].state != "up" || m2.neighbors()[1].state != "up"))
    std::this_thread::sleep_for(10ms);
  ASSERT_EQ(m1.neighbors()[0].state, "up");
  ASSERT_EQ(m2.neighbors()[1].state, "up");
  go = true;
  uint64_t one = 1;
  ASSERT_EQ(::write(m1.wakeFd(), &one, sizeof one), 8);

  until = Clock::now() + 5s;
  while (Clock::now() < until &&
         m1.counters().answered_found.load() + m1.counters().answered_unknown.load() < 2)
    std::this_thread::sleep_for(10ms);
  {
    std::lock_guard lk(mu);
    ASSERT_EQ(resolved.size(), 1u);
    EXPECT_EQ(resolved[0], far);
  }
  EXPECT_EQ(m1.counters().answered_unknown.load(), 1u);
  EXPECT_EQ(m2.counters().relayed.load(), 2u);
  EXPECT_EQ(m2.counters().relayed_found.load(), 1u);
  EXPECT_EQ(m3.counters().queries_served.load(), 2u);
  EXPECT_EQ(m3.counters().relayed.load(), 0u);  // scope 1 when it reached slr3
  m1.stop();
  m2.stop();
  m3.stop();
}

}  // namespace
}  // namespace slr::router
