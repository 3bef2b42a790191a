// nf_tables host filter: golden text of what is built (no root), and what the
// kernel accepts and enforces (root, scratch network namespace).
#include "core/nft.h"
#include "core/packet.h"
#include "core/tun.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "core/fd.h"
#include "core/netlink.h"
#include "tests/unit/scratch_netns.h"

namespace slr::nft {
namespace {

Prefix pfx(const char* s) { return *Prefix::parse(s); }
IpAddress ip(const char* s) { return *IpAddress::parse(s); }

HostRules sample() {
  HostRules h;
  h.vips = {pfx("10.100.0.0/24"), pfx("10.101.0.0/16"), pfx("10.100.0.128/25")};  // last one merges
  h.tunnel_peers = {ip("10.0.2.2"), ip("10.0.2.2")};                               // duplicate
  h.tunnel_device = "slrt0";
  return h;
}

std::string run(const std::string& cmd) {
  std::string out;
  FILE* f = popen(cmd.c_str(), "r");
  if (f == nullptr) return out;
  char buf[512];
  while (fgets(buf, sizeof buf, f) != nullptr) out += buf;
  pclose(f);
  return out;
}

// ---------------------------------------------------------------- no root ---

// libnftnl prints set keys as host-order u32 words: this golden text is for
// little-endian machines (all we build on).
TEST(NftBuild, GoldenText) {
  const char* expected =
      "table table slrctl_host inet flags 0 use 0 handle 0\n"
      "set vips slrctl_host 4\n"
      "\telement 00000000  : 1 [end]\telement 0000640a  : 0 [end]\telement 0001640a  : 1 [end]"
      "\telement 0000650a  : 0 [end]\telement 0000660a  : 1 [end]\n"
      "set tunnel_peers slrctl_host 0\n"
      "\telement 0202000a  : 0 [end]\n"
      "chain inet slrctl_host input use 0 type filter hook input prio -10 policy accept packets 0 bytes 0\n"
      "rule # ip protocol 4 ip saddr != @tunnel_peers counter drop\n"
      "inet slrctl_host input\n"
      "  [ meta load nfproto => reg 1 ]\n"
      "  [ cmp eq reg 1 0x00000002 ]\n"
      "  [ payload load 1b @ network header + 9 => reg 1 ]\n"
      "  [ cmp eq reg 1 0x00000004 ]\n"
      "  [ payload load 4b @ network header + 12 => reg 1 ]\n"
      "  [ lookup reg 1 set tunnel_peers 0x1 ]\n"
      "  [ counter pkts 0 bytes 0 ]\n"
      "  [ immediate reg 0 drop ]\n"
      "\n"
      "rule # ip daddr @vips iifname != \"slrt0\" iifname != \"lo\" counter drop\n"
      "inet slrctl_host input\n"
      "  [ meta load nfproto => reg 1 ]\n"
      "  [ cmp eq reg 1 0x00000002 ]\n"
      "  [ payload load 4b @ network header + 16 => reg 1 ]\n"
      "  [ lookup reg 1 set vips ]\n"
      "  [ meta load iifname => reg 1 ]\n"
      "  [ cmp neq reg 1 0x74726c73 0x00000030 0x00000000 0x00000000 ]\n"
      "  [ meta load iifname => reg 1 ]\n"
      "  [ cmp neq reg 1 0x00006f6c 0x00000000 0x00000000 0x00000000 ]\n"
      "  [ counter pkts 0 bytes 0 ]\n"
      "  [ immediate reg 0 drop ]\n"
      "\n";
  EXPECT_EQ(describe(sample()), expected);
}

// Interval encoding corner cases: the whole space (no end key, no leading
// zero end), a range up to 255.255.255.255 (no end key), adjacent merge.
TEST(NftBuild, IntervalEdges) {
  HostRules h;
  h.vips = {pfx("0.0.0.0/0")};
  std::string d = describe(h);
  EXPECT_NE(d.find("set vips slrctl_host 4\n\telement 00000000  : 0 [end]\n"), std::string::npos) << d;

  h.vips = {pfx("255.255.255.0/24"), pfx("10.0.0.0/8"), pfx("10.1.0.0/16"), pfx("11.0.0.0/8")};
  d = describe(h);
  EXPECT_NE(d.find("set vips slrctl_host 4\n"
                   "\telement 00000000  : 1 [end]\telement 0000000a  : 0 [end]"
                   "\telement 0000000c  : 1 [end]\telement 00ffffff  : 0 [end]\n"),
            std::string::npos)
      << d;
}

TEST(NftBuild, TunnelDeviceIsAParameter) {
  HostRules h = sample();
  h.tunnel_device = "slrk0";  // kernel ipip device instead of the TUN
  std::string d = describe(h);
  EXPECT_NE(d.find("iifname != \"slrk0\""), std::string::npos);
  // "slrk0" = 73 6c 72 6b 30 as host-order words
  EXPECT_NE(d.find("cmp neq reg 1 0x6b726c73 0x00000030"), std::string::npos) << d;
}

TEST(NftBuild, BatchShapeAndNames) {
  auto b = buildHostRules(sample(), true);
  ASSERT_TRUE(b.ok()) << b.error().message();
  std::vector<std::string> whats;
  for (const nl::Message& m : b->messages) whats.push_back(m.what);
  std::vector<std::string> expected = {
      "NFNL_MSG_BATCH_BEGIN",
      "NFT_MSG_NEWTABLE inet slrctl_host",
      "NFT_MSG_DELTABLE inet slrctl_host",
      "NFT_MSG_NEWTABLE inet slrctl_host",
      "NFT_MSG_NEWSET inet slrctl_host set vips",
      "NFT_MSG_NEWSETELEM inet slrctl_host set vips (5 keys)",
      "NFT_MSG_NEWSET inet slrctl_host set tunnel_peers",
      "NFT_MSG_NEWSETELEM inet slrctl_host set tunnel_peers (1 keys)",
      "NFT_MSG_NEWCHAIN inet slrctl_host chain input (hook input priority -10)",
      "NFT_MSG_NEWRULE inet slrctl_host chain input rule 1 'ip protocol 4 ip saddr != @tunnel_peers counter drop'",
      "NFT_MSG_NEWRULE inet slrctl_host chain input rule 2 'ip daddr @vips iifname != \"slrt0\" iifname != \"lo\" counter drop'",
      "NFNL_MSG_BATCH_END",
  };
  EXPECT_EQ(whats, expected);
  EXPECT_FALSE(b->messages.front().ack);
  EXPECT_FALSE(b->messages.back().ack);
  EXPECT_EQ(b->messages.front().hdr()->nlmsg_type, NFNL_MSG_BATCH_BEGIN);
  for (const nl::Message& m : b->messages) EXPECT_EQ(m.hdr()->nlmsg_len, m.buf.size());
}

TEST(NftBuild, EmptySetsHaveNoElementMessages) {
  HostRules h;
  auto b = buildHostRules(h, false);
  ASSERT_TRUE(b.ok());
  for (const nl::Message& m : b->messages) EXPECT_EQ(m.what.find("NEWSETELEM"), std::string::npos) << m.what;
  EXPECT_EQ(b->messages[1].what, "NFT_MSG_NEWTABLE inet slrctl_host");  // no delete first
}

TEST(NftBuild, RefusesWhatItCannotExpress) {
  HostRules h = sample();
  h.vips.push_back(pfx("fd00::/64"));
  auto b = buildHostRules(h);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.error().code, EAFNOSUPPORT);
  EXPECT_NE(b.error().detail.find("fd00::/64"), std::string::npos);

  h = sample();
  h.tunnel_device = "a-much-too-long-ifname";
  b = buildHostRules(h);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.error().code, EINVAL);

  std::vector<IpAddress> v6 = {ip("fd00::1")};
  EXPECT_FALSE(buildSetTunnelPeers("slrctl_host", v6).ok());
}

TEST(NftBuild, PeerUpdateIsFlushThenAdd) {
  std::vector<IpAddress> peers = {ip("10.0.2.2"), ip("10.0.2.3")};
  auto b = buildSetTunnelPeers("slrctl_host", peers);
  ASSERT_TRUE(b.ok());
  ASSERT_EQ(b->size(), 4u);
  EXPECT_EQ(b->messages[1].what, "NFT_MSG_DELSETELEM inet slrctl_host set tunnel_peers (flush)");
  EXPECT_EQ(b->messages[2].what, "NFT_MSG_NEWSETELEM inet slrctl_host set tunnel_peers { 10.0.2.2, 10.0.2.3 }");
  auto empty = buildSetTunnelPeers("slrctl_host", {});
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->size(), 3u);  // flush only
}

// ------------------------------------------------------------- as root ---

TEST(NftRoot, ApplyListReapplyDelete) {
  REQUIRE_SCRATCH_NETNS();
  HostRules h = sample();
  ASSERT_TRUE(deleteTable(h.table).ok());  // idempotent on a missing table
  auto ex = tableExists(h.table);
  ASSERT_TRUE(ex.ok()) << ex.error().message();
  EXPECT_FALSE(*ex);

  Status s = applyHostRules(h);
  ASSERT_TRUE(s.ok()) << s.error().message();
  ex = tableExists(h.table);
  ASSERT_TRUE(ex.ok());
  EXPECT_TRUE(*ex);

  std::string listing = run("nft list table inet slrctl_host 2>&1");
  EXPECT_NE(listing.find("flags interval"), std::string::npos) << listing;
  EXPECT_NE(listing.find("elements = { 10.100.0.0/24, 10.101.0.0/16 }"), std::string::npos) << listing;
  EXPECT_NE(listing.find("elements = { 10.0.2.2 }"), std::string::npos) << listing;
  EXPECT_NE(listing.find("type filter hook input priority filter - 10; policy accept;"), std::string::npos)
      << listing;
  EXPECT_NE(listing.find("ip protocol ipencap ip saddr != @tunnel_peers counter packets 0 bytes 0 drop"),
            std::string::npos)
      << listing;
  EXPECT_NE(listing.find("ip daddr @vips iifname != \"slrt0\" iifname != \"lo\" counter packets 0 bytes 0 drop"),
            std::string::npos)
      << listing;

  // Reapply: same result, not doubled rules.
  s = applyHostRules(h);
  ASSERT_TRUE(s.ok()) << s.error().message();
  EXPECT_EQ(run("nft list table inet slrctl_host 2>&1"), listing);

  // Peers change in place.
  std::vector<IpAddress> peers = {ip("10.0.2.3"), ip("10.0.2.4")};
  ASSERT_TRUE(setTunnelPeers(h.table, peers).ok());
  std::string after = run("nft list set inet slrctl_host tunnel_peers 2>&1");
  EXPECT_NE(after.find("10.0.2.3"), std::string::npos) << after;
  EXPECT_NE(after.find("10.0.2.4"), std::string::npos) << after;
  EXPECT_EQ(after.find("10.0.2.2"), std::string::npos) << after;

  ASSERT_TRUE(deleteTable(h.table).ok());
  ex = tableExists(h.table);
  ASSERT_TRUE(ex.ok());
  EXPECT_FALSE(*ex);
  EXPECT_TRUE(deleteTable(h.table).ok());
}

TEST(NftRoot, KernelAgreesWithIntervalEncoding) {
  REQUIRE_SCRATCH_NETNS();
  HostRules h;
  h.vips = {pfx("255.255.255.0/24"), pfx("10.0.0.0/8"), pfx("10.1.0.0/16"), pfx("11.0.0.0/8"),
            pfx("10.100.0.7/32")};
  ASSERT_TRUE(applyHostRules(h).ok());
  std::string set = run("nft list set inet slrctl_host vips 2>&1");
  EXPECT_NE(set.find("elements = { 10.0.0.0/7, 255.255.255.0/24 }"), std::string::npos) << set;
  ASSERT_TRUE(deleteTable(h.table).ok());
}

TEST(NftRoot, ErrorsNameTheObjectAndBatchesAreAtomic) {
  REQUIRE_SCRATCH_NETNS();
  HostRules h = sample();
  ASSERT_TRUE(applyHostRules(h).ok());

  // Valid peer update followed by a flush of a set in a missing table: the
  // error names the second object, and the first change is rolled back.
  std::vector<IpAddress> peers = {ip("10.0.2.9")};
  auto b = buildSetTunnelPeers(h.table, peers);
  ASSERT_TRUE(b.ok());
  auto bad = buildSetTunnelPeers("nosuchtable", {});
  ASSERT_TRUE(bad.ok());
  b->messages.insert(b->messages.end() - 1, std::move(bad->messages[1]));
  auto sock = nl::Socket::open(NETLINK_NETFILTER);
  ASSERT_TRUE(sock.ok());
  Status s = sock->transact(*b);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ENOENT);
  EXPECT_EQ(s.error().op, "NFT_MSG_DELSETELEM inet nosuchtable set tunnel_peers (flush)");
  std::string set = run("nft list set inet slrctl_host tunnel_peers 2>&1");
  EXPECT_NE(set.find("10.0.2.2"), std::string::npos) << set;
  EXPECT_EQ(set.find("10.0.2.9"), std::string::npos) << set;

  // Creating without replace when the table exists: EEXIST on the table.
  auto create = buildHostRules(h, false);
  ASSERT_TRUE(create.ok());
  s = sock->transact(*create);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, EEXIST);
  EXPECT_EQ(s.error().op, "NFT_MSG_NEWTABLE inet slrctl_host");

  std::vector<IpAddress> any = {ip("10.0.2.2")};
  Status missing = setTunnelPeers("nosuchtable", any);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ENOENT);
  ASSERT_TRUE(deleteTable(h.table).ok());
}

TEST(NftRoot, RulesDropWhatTheyShould) {
  REQUIRE_SCRATCH_NETNS();
  HostRules h = sample();
  ASSERT_TRUE(applyHostRules(h).ok());
  // The VIP subnet is local here (as on a host).  A datagram to a VIP sent
  // over loopback was sent by this host itself: accepted.
  nl::RouteSpec local;
  local.dst = pfx("10.100.0.0/24");
  local.ifindex = 1;
  local.type = RTN_LOCAL;
  local.table = RT_TABLE_LOCAL;
  ASSERT_TRUE(nl::addRoute(local).ok());

  UniqueFd udp(socket(AF_INET, SOCK_DGRAM, 0));
  ASSERT_TRUE(udp.valid());
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(9);
  inet_pton(AF_INET, "10.100.0.10", &to.sin_addr);
  ASSERT_EQ(sendto(udp.get(), "x", 1, 0, reinterpret_cast<sockaddr*>(&to), sizeof to), 1);

  // The same datagram arriving from outside on an interface that is not the
  // tunnel device (a TUN standing in for an uplink): dropped and counted.
  auto tun = openTun("probe0");
  ASSERT_TRUE(tun.ok()) << tun.error().message();
  auto probe = nl::linkIndex("probe0");
  ASSERT_TRUE(probe.ok());
  ASSERT_TRUE(nl::linkSetUp(*probe).ok());
  std::byte pkt[29] = {};
  Ipv4HeaderFields f;
  f.total_length = sizeof pkt;
  f.protocol = kProtoUdp;
  f.src = 0x0a090909;  // 10.9.9.9
  f.dst = 0x0a64000a;  // 10.100.0.10
  ASSERT_EQ(writeIpv4Header(pkt, f), 20u);
  store16(pkt + 20, 4000);
  store16(pkt + 22, 9);
  store16(pkt + 24, 9);
  ASSERT_EQ(write(tun->get(), pkt, sizeof pkt), ssize_t(sizeof pkt));

  // An IP-in-IP packet from 127.0.0.1, which is not a registered SLR.
  UniqueFd raw(socket(AF_INET, SOCK_RAW, IPPROTO_IPIP));
  ASSERT_TRUE(raw.valid());
  inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
  to.sin_port = 0;
  uint8_t inner[20] = {0x45};
  ASSERT_EQ(sendto(raw.get(), inner, sizeof inner, 0, reinterpret_cast<sockaddr*>(&to), sizeof to),
            ssize_t(sizeof inner));

  auto c = readDropCounters(h.table);
  ASSERT_TRUE(c.ok()) << c.error().message();
  EXPECT_EQ(c->vip_not_via_tunnel_packets, 1u);
  EXPECT_EQ(c->non_peer_tunnel_packets, 1u);
  EXPECT_GT(c->non_peer_tunnel_bytes, 0u);

  ASSERT_TRUE(nl::delRoute(local).ok());
  ASSERT_TRUE(deleteTable(h.table).ok());
}

}  // namespace
}  // namespace slr::nft
