// sock_diag: counts and lists real TCP connections inside a scratch netns.
#include "core/sock_diag.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <thread>

#include "core/fd.h"
#include "core/netlink.h"
#include "tests/unit/scratch_netns.h"

namespace slr::diag {
namespace {

Prefix pfx(const char* s) { return *Prefix::parse(s); }
IpAddress ip(const char* s) { return *IpAddress::parse(s); }

sockaddr_in v4(const char* a, uint16_t port) {
  sockaddr_in s{};
  s.sin_family = AF_INET;
  s.sin_port = htons(port);
  inet_pton(AF_INET, a, &s.sin_addr);
  return s;
}

UniqueFd listenV4(const char* a, uint16_t port) {
  UniqueFd l(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  int one = 1;
  setsockopt(l.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in s = v4(a, port);
  if (bind(l.get(), reinterpret_cast<sockaddr*>(&s), sizeof s) != 0) return {};
  if (listen(l.get(), 64) != 0) return {};
  return l;
}

// Client bound to 127.0.0.1 so only the server side has its local address in
// the VIP prefix: N pairs = N matching sockets.
bool connectPairs(int listener, const char* to, uint16_t port, int n, std::vector<UniqueFd>& keep) {
  for (int i = 0; i < n; ++i) {
    UniqueFd c(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in from = v4("127.0.0.1", 0);
    if (bind(c.get(), reinterpret_cast<sockaddr*>(&from), sizeof from) != 0) return false;
    sockaddr_in dst = v4(to, port);
    if (connect(c.get(), reinterpret_cast<sockaddr*>(&dst), sizeof dst) != 0) return false;
    UniqueFd a(accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
    if (!a) return false;
    keep.push_back(std::move(c));
    keep.push_back(std::move(a));
  }
  return true;
}

// countEstablished() or SIZE_MAX on error (Result has no rvalue operator*).
size_t count(std::span<const Prefix> p, std::optional<uint16_t> port = {}) {
  auto r = countEstablished(p, port);
  EXPECT_TRUE(r.ok()) << r.error().message();
  return r.ok() ? r.value() : SIZE_MAX;
}

class SockDiagRoot : public ::testing::Test {
 protected:
  void SetUp() override {
    REQUIRE_SCRATCH_NETNS();
    Status s = nl::addAddress(1, ip("10.100.0.5"), 24);
    ASSERT_TRUE(s.ok() || s.error().code == EEXIST) << s.error().message();
  }
  void TearDown() override {
    if (geteuid() == 0) (void)nl::delAddress(1, ip("10.100.0.5"), 24);
  }
};

TEST(SockDiag, StateNames) {
  EXPECT_STREQ(tcpStateName(TCP_ESTABLISHED), "ESTAB");
  EXPECT_STREQ(tcpStateName(TCP_LISTEN), "LISTEN");
  EXPECT_STREQ(tcpStateName(200), "UNKNOWN");
}

TEST_F(SockDiagRoot, CountsEstablishedByLocalPrefix) {
  UniqueFd l = listenV4("10.100.0.5", 8080);
  ASSERT_TRUE(l.valid());
  const Prefix vips[] = {pfx("10.100.0.0/24")};
  auto before = countEstablished(vips);
  ASSERT_TRUE(before.ok()) << before.error().message();
  EXPECT_EQ(*before, 0u) << "a listener is not a connection";

  constexpr int kPairs = 7;
  std::vector<UniqueFd> keep;
  ASSERT_TRUE(connectPairs(l.get(), "10.100.0.5", 8080, kPairs, keep));

  auto n = countEstablished(vips);
  ASSERT_TRUE(n.ok()) << n.error().message();
  EXPECT_EQ(*n, size_t(kPairs));
  EXPECT_EQ(count(vips, uint16_t(8080)), size_t(kPairs));
  EXPECT_EQ(count(vips, uint16_t(8081)), 0u);

  const Prefix elsewhere[] = {pfx("10.200.0.0/24")};
  EXPECT_EQ(count(elsewhere), 0u);
  // The client ends, by their local address.
  const Prefix loopback[] = {pfx("127.0.0.0/8")};
  EXPECT_EQ(count(loopback), size_t(kPairs));

  keep.clear();
  // Server sides that closed first sit in FIN-WAIT, not ESTABLISHED.
  EXPECT_EQ(count(vips), 0u);
}

TEST_F(SockDiagRoot, DualStackListenerCountsAsIpv4) {
  UniqueFd l(socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!l) GTEST_SKIP() << "no IPv6 in this kernel";
  int zero = 0, one = 1;
  setsockopt(l.get(), IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
  setsockopt(l.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in6 any{};
  any.sin6_family = AF_INET6;
  any.sin6_port = htons(8090);
  ASSERT_EQ(bind(l.get(), reinterpret_cast<sockaddr*>(&any), sizeof any), 0);
  ASSERT_EQ(listen(l.get(), 16), 0);
  std::vector<UniqueFd> keep;
  ASSERT_TRUE(connectPairs(l.get(), "10.100.0.5", 8090, 3, keep));
  const Prefix vips[] = {pfx("10.100.0.0/24")};
  auto n = countEstablished(vips, uint16_t(8090));
  ASSERT_TRUE(n.ok()) << n.error().message();
  EXPECT_EQ(*n, 3u);
}

TEST_F(SockDiagRoot, ListsTcpInfo) {
  UniqueFd l = listenV4("10.100.0.5", 8082);
  ASSERT_TRUE(l.valid());
  std::vector<UniqueFd> keep;
  ASSERT_TRUE(connectPairs(l.get(), "10.100.0.5", 8082, 1, keep));
  // keep[0] client, keep[1] server side: server sends, client reads.
  std::string data(1000, 'x');
  ASSERT_EQ(send(keep[1].get(), data.data(), data.size(), 0), ssize_t(data.size()));
  char buf[2000];
  size_t got = 0;
  while (got < data.size()) {
    ssize_t r = recv(keep[0].get(), buf, sizeof buf, 0);
    ASSERT_GT(r, 0);
    got += size_t(r);
  }

  TcpFilter f;
  f.local_prefixes = {pfx("10.100.0.0/24")};
  f.local_port = 8082;
  std::vector<TcpSockInfo> socks;
  for (int i = 0; i < 50; ++i) {  // the ACK for the data may still be in flight
    auto r = listTcp(f);
    ASSERT_TRUE(r.ok()) << r.error().message();
    socks = *r;
    if (socks.size() == 1 && socks[0].bytes_acked >= data.size()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(socks.size(), 1u);
  const TcpSockInfo& s = socks[0];
  EXPECT_EQ(s.local, ip("10.100.0.5"));
  EXPECT_EQ(s.remote, ip("127.0.0.1"));
  EXPECT_EQ(s.local_port, 8082);
  EXPECT_EQ(s.state, TCP_ESTABLISHED);
  EXPECT_TRUE(s.has_info);
  EXPECT_GE(s.bytes_acked, data.size());
  EXPECT_EQ(s.unacked, 0u);
  EXPECT_EQ(s.retransmits, 0);
  EXPECT_NE(s.str().find("10.100.0.5:8082 <- 127.0.0.1:"), std::string::npos) << s.str();

  // All states: the listener shows up too.
  f.states = kAllStates;
  f.with_info = false;
  auto all = listTcp(f);
  ASSERT_TRUE(all.ok());
  bool listener = false;
  for (const TcpSockInfo& t : *all) listener |= t.state == TCP_LISTEN;
  EXPECT_TRUE(listener);
}

}  // namespace
}  // namespace slr::diag
