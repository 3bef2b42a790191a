// Health checks: the pure parts (rise/fall, HTTP status line, per-subnet
// availability) and real checks against listeners on loopback.
#include "hostagent/health.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <thread>

#include "core/fd.h"

namespace slr::host {
namespace {

using namespace std::chrono_literals;
using config::CheckType;
using config::HealthCheckConfig;

Prefix pfx(const char* s) { return *Prefix::parse(s); }

// A listener on 127.0.0.1, ephemeral port.
struct Listener {
  UniqueFd fd;
  uint16_t port = 0;
  Listener() {
    fd.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), len), 0);
    EXPECT_EQ(::listen(fd.get(), 16), 0);
    EXPECT_EQ(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&sa), &len), 0);
    port = ntohs(sa.sin_port);
  }
};

// A one-request HTTP server: answers `response` to the first connection and
// keeps what the client sent.
struct TinyHttp {
  Listener l;
  std::string response;
  std::string request;
  std::thread t;
  explicit TinyHttp(std::string resp) : response(std::move(resp)) {
    t = std::thread([this] {
      UniqueFd c(::accept4(l.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!c) return;
      char buf[2048];
      while (request.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = ::recv(c.get(), buf, sizeof buf, 0);
        if (n <= 0) break;
        request.append(buf, size_t(n));
      }
      (void)!::send(c.get(), response.data(), response.size(), MSG_NOSIGNAL);
    });
  }
  ~TinyHttp() {
    if (t.joinable()) t.join();
  }
};

HealthCheckConfig tcpCheck(uint16_t port) {
  HealthCheckConfig c;
  c.name = "tcp";
  c.type = CheckType::kTcp;
  c.address = *config::Endpoint::parse("127.0.0.1:" + std::to_string(port));
  c.timeout = 500ms;
  return c;
}

HealthCheckConfig httpCheck(uint16_t port, uint32_t expect = 200) {
  HealthCheckConfig c = tcpCheck(port);
  c.name = "http";
  c.type = CheckType::kHttp;
  c.path = "/health";
  c.expect_status = expect;
  return c;
}

HealthCheckConfig commandCheck(std::string cmd, std::chrono::milliseconds timeout = 2000ms) {
  HealthCheckConfig c;
  c.name = "cmd";
  c.type = CheckType::kCommand;
  c.command = std::move(cmd);
  c.timeout = timeout;
  return c;
}

TEST(RiseFall, FirstResultSetsTheStateThenHysteresis) {
  RiseFall r(2, 3);
  EXPECT_FALSE(r.known());
  EXPECT_FALSE(r.healthy());
  EXPECT_TRUE(r.record(true));  // pending -> healthy at once
  EXPECT_TRUE(r.healthy());
  EXPECT_FALSE(r.record(false));
  EXPECT_FALSE(r.record(false));
  EXPECT_FALSE(r.record(true));  // a pass resets the failure streak
  EXPECT_FALSE(r.record(false));
  EXPECT_FALSE(r.record(false));
  EXPECT_TRUE(r.record(false));  // third consecutive failure
  EXPECT_FALSE(r.healthy());
  EXPECT_FALSE(r.record(true));
  EXPECT_TRUE(r.record(true));  // rise 2
  EXPECT_TRUE(r.healthy());
}

TEST(RiseFall, FirstFailureIsNoChange) {
  RiseFall r(1, 1);
  EXPECT_FALSE(r.record(false));  // pending counted unhealthy already
  EXPECT_TRUE(r.known());
  EXPECT_FALSE(r.healthy());
  EXPECT_TRUE(r.record(true));
  EXPECT_TRUE(r.record(false));
}

TEST(HttpStatus, Parse) {
  EXPECT_EQ(parseHttpStatus("HTTP/1.1 200 OK\r\n"), 200);
  EXPECT_EQ(parseHttpStatus("HTTP/1.0 503 Service Unavailable\r\nServer: x\r\n"), 503);
  EXPECT_EQ(parseHttpStatus("HTTP/1.0 204\r\n"), 204);
  EXPECT_EQ(parseHttpStatus("HTTP/1.0 404\n"), 404);
  EXPECT_EQ(parseHttpStatus("HTTP/1.1 200 OK"), std::nullopt);  // line not complete yet
  EXPECT_EQ(parseHttpStatus("SSH-2.0-OpenSSH\r\n"), std::nullopt);
  EXPECT_EQ(parseHttpStatus("HTTP/1.1 2x0 OK\r\n"), std::nullopt);
  EXPECT_EQ(parseHttpStatus("HTTP/1.1 2000 OK\r\n"), std::nullopt);
  EXPECT_EQ(parseHttpStatus(""), std::nullopt);
}

TEST(HttpStatus, Request) {
  HealthCheckConfig c = httpCheck(8080);
  EXPECT_EQ(httpRequest(c),
            "GET /health HTTP/1.0\r\nHost: 127.0.0.1:8080\r\nUser-Agent: slrctl-health\r\n"
            "Connection: close\r\n\r\n");
  c.host_header = "www.example.com";
  EXPECT_NE(httpRequest(c).find("\r\nHost: www.example.com\r\n"), std::string::npos);
}

TEST(Availability, EveryCoveringCheckMustBeHealthy) {
  std::vector<Prefix> subnets = {pfx("10.100.0.0/24"), pfx("10.101.0.0/24"), pfx("10.102.0.0/24")};
  std::vector<HealthCheckConfig> checks(2);
  checks[0].subnets = {pfx("10.100.0.0/24")};
  checks[1].subnets = {pfx("10.100.0.0/24"), pfx("10.101.0.0/24")};
  using V = std::vector<bool>;
  EXPECT_EQ(subnetAvailability(subnets, checks, V{true, true}, false), (V{true, true, true}));
  EXPECT_EQ(subnetAvailability(subnets, checks, V{false, true}, false), (V{false, true, true}));
  EXPECT_EQ(subnetAvailability(subnets, checks, V{true, false}, false), (V{false, false, true}));
  EXPECT_EQ(subnetAvailability(subnets, checks, V{true, true}, true), (V{false, false, false}));
  // A check without subnets covers them all.
  checks.push_back({});
  EXPECT_EQ(subnetAvailability(subnets, checks, V{true, true, false}, false), (V{false, false, false}));
  // No checks: everything available unless drained.
  EXPECT_EQ(subnetAvailability(subnets, {}, {}, false), (V{true, true, true}));
  EXPECT_EQ(subnetAvailability(subnets, {}, {}, true), (V{false, false, false}));
}

TEST(Check, TcpConnect) {
  Listener l;
  CheckOutcome o = runCheckOnce(tcpCheck(l.port));
  EXPECT_TRUE(o.pass) << o.result;
  EXPECT_EQ(o.result, "ok");
  uint16_t closed = l.port;
  l.fd.reset();  // nothing listens there any more
  o = runCheckOnce(tcpCheck(closed));
  EXPECT_FALSE(o.pass);
  EXPECT_NE(o.result.find("refused"), std::string::npos) << o.result;
}

TEST(Check, HttpExpectedStatus) {
  {
    TinyHttp s("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
    CheckOutcome o = runCheckOnce(httpCheck(s.l.port));
    EXPECT_TRUE(o.pass) << o.result;
    EXPECT_EQ(o.result, "ok: HTTP 200");
    s.t.join();
    EXPECT_EQ(s.request.rfind("GET /health HTTP/1.0\r\n", 0), 0u) << s.request;
  }
  {
    TinyHttp s("HTTP/1.1 503 Service Unavailable\r\n\r\n");
    CheckOutcome o = runCheckOnce(httpCheck(s.l.port));
    EXPECT_FALSE(o.pass);
    EXPECT_NE(o.result.find("HTTP 503"), std::string::npos) << o.result;
    EXPECT_NE(o.result.find("expected 200"), std::string::npos) << o.result;
  }
  {
    TinyHttp s("HTTP/1.1 503 Service Unavailable\r\n\r\n");
    CheckOutcome o = runCheckOnce(httpCheck(s.l.port, 503));  // expecting 503 is allowed
    EXPECT_TRUE(o.pass) << o.result;
  }
  {
    TinyHttp s("SSH-2.0-OpenSSH_9\r\n");
    CheckOutcome o = runCheckOnce(httpCheck(s.l.port));
    EXPECT_FALSE(o.pass);
    EXPECT_NE(o.result.find("not an HTTP response"), std::string::npos) << o.result;
  }
}

TEST(Check, HttpTimeoutWhenTheServerNeverAnswers) {
  Listener l;  // the kernel completes the handshake; nobody accepts or answers
  HealthCheckConfig c = httpCheck(l.port);
  c.timeout = 150ms;
  auto t0 = std::chrono::steady_clock::now();
  CheckOutcome o = runCheckOnce(c);
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_FALSE(o.pass);
  EXPECT_NE(o.result.find("timed out after 150ms"), std::string::npos) << o.result;
  EXPECT_GE(took, 140ms);
  EXPECT_LT(took, 1000ms);
}

TEST(Check, Command) {
  CheckOutcome o = runCheckOnce(commandCheck("true"));
  EXPECT_TRUE(o.pass) << o.result;
  o = runCheckOnce(commandCheck("exit 3"));
  EXPECT_FALSE(o.pass);
  EXPECT_EQ(o.result, "failed: exited with status 3");
  o = runCheckOnce(commandCheck("kill -9 $$"));
  EXPECT_EQ(o.result, "failed: killed by signal 9");
}

TEST(Check, CommandTimeoutKillsTheWholeGroup) {
  char dir[] = "/tmp/slr_health_XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  std::string marker = std::string(dir) + "/ran";
  // The shell's child would create the marker after the timeout: it must be
  // killed with the shell.
  auto t0 = std::chrono::steady_clock::now();
  CheckOutcome o = runCheckOnce(commandCheck("(sleep 0.4; touch " + marker + ") & wait", 100ms));
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_FALSE(o.pass);
  EXPECT_EQ(o.result, "failed: timed out after 100ms");
  EXPECT_LT(took, 350ms);
  std::this_thread::sleep_for(600ms);
  EXPECT_NE(::access(marker.c_str(), F_OK), 0) << "the command's child survived the timeout";
  ::unlink(marker.c_str());
  ::rmdir(dir);
}

// The checker thread: one service going down and up again, rise/fall
// applied, on_change called on each flip, a slow command not delaying it.
TEST(HealthChecker, FollowsTheServiceWithHysteresis) {
  auto l = std::make_unique<Listener>();
  uint16_t port = l->port;
  HealthCheckConfig c = tcpCheck(port);
  c.interval = 20ms;
  c.timeout = 20ms;
  c.rise = 2;
  c.fall = 2;
  HealthCheckConfig slow = commandCheck("sleep 0.3", 1000ms);
  slow.interval = 1000ms;
  std::atomic<int> changes{0};
  HealthChecker h({c, slow}, [&] { ++changes; });
  auto waitFor = [&](bool want) {
    for (int i = 0; i < 200; ++i) {
      if (h.healthy()[0] == want) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  };
  EXPECT_EQ(h.snapshot()[0].last_result, "pending");
  h.start();
  ASSERT_TRUE(waitFor(true));  // while the slow command still runs
  EXPECT_FALSE(h.healthy()[1]);
  EXPECT_GE(changes.load(), 1);
  l.reset();  // service down
  ASSERT_TRUE(waitFor(false));
  auto snap = h.snapshot();
  EXPECT_EQ(snap[0].name, "tcp");
  EXPECT_EQ(snap[0].type, "tcp");
  EXPECT_GE(snap[0].failures, 2u);
  EXPECT_GE(snap[0].passes, 1u);
  EXPECT_NE(snap[0].last_result.find("refused"), std::string::npos) << snap[0].last_result;
  h.stop();
  EXPECT_GE(changes.load(), 2);
}

}  // namespace
}  // namespace slr::host
