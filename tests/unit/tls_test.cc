// TLS control channel: mutual authentication over socketpair(AF_UNIX), driven
// by a poll loop on non-blocking sockets (and once with blocking sockets and
// two threads).  Certificates are made with the openssl CLI in a temp dir.
#include "core/tls.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include "core/protocol.h"
#include "tests/unit/test_certs.h"

namespace slr::tls {
namespace {

namespace fs = std::filesystem;

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    signal(SIGPIPE, SIG_IGN);
    dir_ = testing::makeTempDir("/tmp/slr_tls_test");
    ASSERT_FALSE(dir_.empty());
    auto ca = [](const std::string& n) { testing::makeCa(dir_, n); };
    auto leaf = [](const std::string& file, const std::string& cn, const std::string& ca) {
      testing::makeLeaf(dir_, file, cn, ca, "0x" + std::to_string(1000 + file.size()));
    };
    ca("good");
    ca("rogue");
    leaf("slr", "slr1", "good");
    leaf("host", "host1", "good");
    leaf("roguehost", "host1", "rogue");
    std::ofstream(p("garbage.pem")) << "this is not a certificate\n";
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  static std::string p(const std::string& name) { return dir_ + "/" + name; }

  static Context serverCtx() {
    auto c = Context::server(p("good-ca.pem"), p("slr.pem"), p("slr.key"));
    EXPECT_TRUE(c.ok()) << c.error().message();
    return std::move(c).value();
  }
  static Context clientCtx(const std::string& leaf = "host") {
    auto c = Context::client(p("good-ca.pem"), p(leaf + ".pem"), p(leaf + ".key"));
    EXPECT_TRUE(c.ok()) << c.error().message();
    return std::move(c).value();
  }

  // A connected non-blocking socket pair.
  static std::pair<UniqueFd, UniqueFd> socketPair(bool nonblocking = true) {
    int sv[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | (nonblocking ? SOCK_NONBLOCK : 0), 0, sv), 0);
    return {UniqueFd(sv[0]), UniqueFd(sv[1])};
  }

  static inline std::string dir_;
};

// Drives two non-blocking steps until neither wants I/O.  Returns the last
// status of each side.
struct Side {
  int fd;
  std::function<IoStatus()> step;
  IoStatus last = IoStatus::kWantRead;
};
void pump(Side& a, Side& b) {
  auto waiting = [](IoStatus s) { return s == IoStatus::kWantRead || s == IoStatus::kWantWrite; };
  for (int i = 0; i < 200 && (waiting(a.last) || waiting(b.last)); ++i) {
    if (waiting(a.last)) a.last = a.step();
    if (waiting(b.last)) b.last = b.step();
    pollfd p[2] = {{a.fd, short(a.last == IoStatus::kWantWrite ? POLLOUT : POLLIN), 0},
                   {b.fd, short(b.last == IoStatus::kWantWrite ? POLLOUT : POLLIN), 0}};
    if (waiting(a.last) || waiting(b.last)) ::poll(p, 2, 50);
  }
}

void handshakeBoth(Connection& s, Connection& c) {
  Side a{s.fd(), [&] { return s.handshake(); }};
  Side b{c.fd(), [&] { return c.handshake(); }};
  pump(a, b);
}

// Reads until `n` bytes or a terminal status.
IoStatus readSome(Connection& c, std::vector<std::byte>& out, size_t n) {
  std::byte buf[4096];
  for (int i = 0; i < 200 && out.size() < n; ++i) {
    auto r = c.read(std::span(buf).first(std::min(sizeof buf, n - out.size())));
    if (r.status == IoStatus::kDone) {
      out.insert(out.end(), buf, buf + r.bytes);
      continue;
    }
    if (r.status != IoStatus::kWantRead && r.status != IoStatus::kWantWrite) return r.status;
    pollfd p{c.fd(), short(r.status == IoStatus::kWantRead ? POLLIN : POLLOUT), 0};
    ::poll(&p, 1, 50);
  }
  return out.size() >= n ? IoStatus::kDone : IoStatus::kWantRead;
}

TEST_F(TlsTest, MutualHandshakeAndEchoOfAFrame) {
  auto [sfd, cfd] = socketPair();
  auto server = serverCtx().newConnection(std::move(sfd));
  auto client = clientCtx().newConnection(std::move(cfd));
  ASSERT_TRUE(server.ok() && client.ok());
  ASSERT_TRUE(client->setExpectedPeerName("slr1"));
  handshakeBoth(*server, *client);
  ASSERT_TRUE(server->handshakeDone()) << server->lastError();
  ASSERT_TRUE(client->handshakeDone()) << client->lastError();
  EXPECT_FALSE(client->setExpectedPeerName("late"));
  EXPECT_EQ(server->peerCommonName(), "host1");
  EXPECT_EQ(client->peerCommonName(), "slr1");
  EXPECT_EQ(server->verifyError(), "ok");

  proto::Hello hello{proto::Role::kHost, "host1", *IpAddress::parse("10.0.3.11"), 1000, 3};
  auto bytes = proto::encode(hello);
  ASSERT_TRUE(client->writeAll(bytes, std::chrono::seconds(2)).ok());

  // Server: read through a FrameReader, decode, echo the frame back.
  proto::FrameReader reader;
  std::optional<proto::Frame> frame;
  for (int i = 0; i < 100 && !frame; ++i) {
    auto r = server->read(reader.writeSpace());
    if (r.status == IoStatus::kDone) reader.commit(r.bytes);
    else ASSERT_EQ(r.status, IoStatus::kWantRead) << server->lastError();
    auto f = reader.next();
    ASSERT_TRUE(f.ok());
    frame = std::move(*f);
    if (!frame) {
      pollfd p{server->fd(), POLLIN, 0};
      ::poll(&p, 1, 50);
    }
  }
  ASSERT_TRUE(frame.has_value());
  auto decoded = proto::decodeHello(frame->body);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(*decoded, hello);
  ASSERT_TRUE(server->writeAll(proto::encode(*decoded), std::chrono::seconds(2)).ok());

  std::vector<std::byte> echoed;
  ASSERT_EQ(readSome(*client, echoed, bytes.size()), IoStatus::kDone) << client->lastError();
  EXPECT_EQ(echoed, bytes);

  // Orderly close: server sees kClosed.
  client->shutdown();
  std::vector<std::byte> more;
  EXPECT_EQ(readSome(*server, more, 1), IoStatus::kClosed);
}

TEST_F(TlsTest, BlockingSocketsTwoThreads) {
  auto [sfd, cfd] = socketPair(/*nonblocking=*/false);
  auto server = serverCtx().newConnection(std::move(sfd));
  auto client = clientCtx().newConnection(std::move(cfd));
  ASSERT_TRUE(server.ok() && client.ok());
  ASSERT_TRUE(client->setExpectedPeerName("slr1"));
  std::vector<std::byte> big(200000);
  for (size_t i = 0; i < big.size(); ++i) big[i] = std::byte(uint8_t(i * 7));
  std::thread t([&] {
    ASSERT_TRUE(server->handshakeFor(std::chrono::seconds(5)).ok()) << server->lastError();
    ASSERT_TRUE(server->writeAll(big, std::chrono::seconds(5)).ok());
  });
  auto hs = client->handshakeFor(std::chrono::seconds(5));
  ASSERT_TRUE(hs.ok()) << hs.error().message();
  std::vector<std::byte> got;
  EXPECT_EQ(readSome(*client, got, big.size()), IoStatus::kDone);
  t.join();
  EXPECT_EQ(got, big);
}

TEST_F(TlsTest, ClientCertFromOtherCaRefused) {
  auto [sfd, cfd] = socketPair();
  auto server = serverCtx().newConnection(std::move(sfd));
  // Client trusts the right CA but presents a cert signed by the rogue CA.
  auto cctx = Context::client(p("good-ca.pem"), p("roguehost.pem"), p("roguehost.key"));
  ASSERT_TRUE(cctx.ok()) << cctx.error().message();
  auto client = cctx->newConnection(std::move(cfd));
  ASSERT_TRUE(server.ok() && client.ok());
  handshakeBoth(*server, *client);
  EXPECT_EQ(server->handshake(), IoStatus::kError);
  EXPECT_EQ(server->lastError(), "certificate verify failed: unable to get local issuer certificate");
  EXPECT_EQ(server->verifyError(), "unable to get local issuer certificate");
  // TLS 1.3: the client finishes its side before the server checks its
  // certificate, so it learns of the refusal from the alert on its next read.
  IoStatus cs = client->handshake();
  if (cs == IoStatus::kDone) {
    std::vector<std::byte> got;
    cs = readSome(*client, got, 1);
  }
  EXPECT_EQ(cs, IoStatus::kError);
  EXPECT_NE(client->lastError().find("unknown ca"), std::string::npos) << client->lastError();
}

TEST_F(TlsTest, ServerCnMismatchRefusedByClient) {
  auto [sfd, cfd] = socketPair();
  auto server = serverCtx().newConnection(std::move(sfd));
  auto client = clientCtx().newConnection(std::move(cfd));
  ASSERT_TRUE(server.ok() && client.ok());
  ASSERT_TRUE(client->setExpectedPeerName("slr2"));
  handshakeBoth(*server, *client);
  EXPECT_EQ(client->handshake(), IoStatus::kError);
  EXPECT_EQ(client->lastError(), "certificate verify failed: peer certificate CN 'slr1' != expected 'slr2'");
  EXPECT_FALSE(client->handshakeDone());
  EXPECT_EQ(server->handshake(), IoStatus::kError);  // got the client's alert
  EXPECT_FALSE(server->lastError().empty());
  auto hs = client->handshakeFor(std::chrono::milliseconds(100));
  ASSERT_FALSE(hs.ok());
  EXPECT_NE(hs.error().message().find("!= expected 'slr2'"), std::string::npos);
}

TEST_F(TlsTest, ServerCertFromOtherCaRefusedByClient) {
  auto [sfd, cfd] = socketPair();
  auto sctx = Context::server(p("good-ca.pem"), p("roguehost.pem"), p("roguehost.key"));
  ASSERT_TRUE(sctx.ok());
  auto server = sctx->newConnection(std::move(sfd));
  auto client = clientCtx().newConnection(std::move(cfd));
  ASSERT_TRUE(server.ok() && client.ok());
  handshakeBoth(*server, *client);
  EXPECT_EQ(client->handshake(), IoStatus::kError);
  EXPECT_EQ(client->lastError(), "certificate verify failed: unable to get local issuer certificate");
}

// One SSL_do_handshake step of a raw OpenSSL peer, as an IoStatus (for
// clients our Context would never build: no certificate, TLS 1.2 only).
IoStatus rawHandshakeStep(SSL* ssl) {
  int r = SSL_do_handshake(ssl);
  if (r == 1) return IoStatus::kDone;
  int e = SSL_get_error(ssl, r);
  ERR_clear_error();
  return e == SSL_ERROR_WANT_READ ? IoStatus::kWantRead
         : e == SSL_ERROR_WANT_WRITE ? IoStatus::kWantWrite
                                     : IoStatus::kError;
}

TEST_F(TlsTest, ClientWithoutCertificateRefused) {
  auto [sfd, cfd] = socketPair();
  auto server = serverCtx().newConnection(std::move(sfd));
  ASSERT_TRUE(server.ok());
  SslCtxPtr raw(SSL_CTX_new(TLS_client_method()));
  SSL_CTX_set_verify(raw.get(), SSL_VERIFY_NONE, nullptr);
  SslPtr ssl(SSL_new(raw.get()));
  SSL_set_fd(ssl.get(), cfd.get());
  SSL_set_connect_state(ssl.get());
  Side a{server->fd(), [&] { return server->handshake(); }};
  Side b{cfd.get(), [&] { return rawHandshakeStep(ssl.get()); }};
  pump(a, b);
  EXPECT_EQ(a.last, IoStatus::kError);
  EXPECT_NE(server->lastError().find("peer did not return a certificate"), std::string::npos)
      << server->lastError();
}

TEST_F(TlsTest, Tls12OnlyClientRefused) {
  auto [sfd, cfd] = socketPair();
  auto server = serverCtx().newConnection(std::move(sfd));
  ASSERT_TRUE(server.ok());
  SslCtxPtr raw(SSL_CTX_new(TLS_client_method()));
  SSL_CTX_set_max_proto_version(raw.get(), TLS1_2_VERSION);
  ASSERT_EQ(SSL_CTX_use_certificate_chain_file(raw.get(), p("host.pem").c_str()), 1);
  ASSERT_EQ(SSL_CTX_use_PrivateKey_file(raw.get(), p("host.key").c_str(), SSL_FILETYPE_PEM), 1);
  SslPtr ssl(SSL_new(raw.get()));
  SSL_set_fd(ssl.get(), cfd.get());
  SSL_set_connect_state(ssl.get());
  Side a{server->fd(), [&] { return server->handshake(); }};
  Side b{cfd.get(), [&] { return rawHandshakeStep(ssl.get()); }};
  pump(a, b);
  EXPECT_EQ(a.last, IoStatus::kError);
  EXPECT_EQ(b.last, IoStatus::kError);
  EXPECT_NE(server->lastError().find("unsupported protocol"), std::string::npos) << server->lastError();
}

TEST_F(TlsTest, LoadErrorsNameTheFile) {
  auto missing = Context::server(p("good-ca.pem"), p("nope.pem"), p("slr.key"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().op, "loading certificate " + p("nope.pem"));
  EXPECT_EQ(missing.error().code, ENOENT);

  auto garbage = Context::client(p("good-ca.pem"), p("garbage.pem"), p("host.key"));
  ASSERT_FALSE(garbage.ok());
  EXPECT_EQ(garbage.error().op, "loading certificate " + p("garbage.pem"));
  EXPECT_NE(garbage.error().detail.find("no start line"), std::string::npos) << garbage.error().message();

  auto badca = Context::server(p("garbage.pem"), p("slr.pem"), p("slr.key"));
  ASSERT_FALSE(badca.ok());
  EXPECT_EQ(badca.error().op, "loading CA certificates " + p("garbage.pem"));

  auto badkey = Context::server(p("good-ca.pem"), p("slr.pem"), p("garbage.pem"));
  ASSERT_FALSE(badkey.ok());
  EXPECT_EQ(badkey.error().op, "loading private key " + p("garbage.pem"));

  auto mismatch = Context::server(p("good-ca.pem"), p("slr.pem"), p("host.key"));
  ASSERT_FALSE(mismatch.ok());
  EXPECT_NE(mismatch.error().op.find("does not match certificate"), std::string::npos)
      << mismatch.error().message();
}

TEST_F(TlsTest, PeerVanishesMidHandshake) {
  auto [sfd, cfd] = socketPair();
  auto server = serverCtx().newConnection(std::move(sfd));
  ASSERT_TRUE(server.ok());
  EXPECT_EQ(server->handshake(), IoStatus::kWantRead);
  cfd.reset();
  auto s = server->handshake();
  EXPECT_TRUE(s == IoStatus::kClosed || s == IoStatus::kError) << ioStatusName(s);
  EXPECT_EQ(server->handshake(), IoStatus::kError);  // sticky
}

}  // namespace
}  // namespace slr::tls
