// rtnetlink, TUN and sysctl: builders checked without root; what the kernel
// accepts checked as root inside a scratch network namespace.
#include "core/netlink.h"
#include "tests/unit/scratch_netns.h"
#include "tests/unit/veth_fixture.h"

#include <gtest/gtest.h>
#include <libmnl/libmnl.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "core/sysctl.h"
#include "core/tun.h"

namespace slr::nl {
namespace {

Prefix pfx(const char* s) { return *Prefix::parse(s); }
IpAddress ip(const char* s) { return *IpAddress::parse(s); }

// ---------------------------------------------------------------- no root ---

TEST(NetlinkBuild, LocalRouteMessage) {
  RouteSpec r;
  r.dst = pfx("10.100.0.0/24");
  r.type = RTN_LOCAL;
  r.table = RT_TABLE_LOCAL;
  Message m = buildRoute(RTM_NEWROUTE, r);
  EXPECT_EQ(m.what, "RTM_NEWROUTE local 10.100.0.0/24 table local");
  const nlmsghdr* nlh = m.hdr();
  EXPECT_EQ(nlh->nlmsg_len, m.buf.size());
  EXPECT_EQ(nlh->nlmsg_type, RTM_NEWROUTE);
  EXPECT_EQ(nlh->nlmsg_flags, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL);
  auto* rtm = static_cast<const rtmsg*>(mnl_nlmsg_get_payload(nlh));
  EXPECT_EQ(rtm->rtm_family, AF_INET);
  EXPECT_EQ(rtm->rtm_dst_len, 24);
  EXPECT_EQ(rtm->rtm_type, RTN_LOCAL);
  EXPECT_EQ(rtm->rtm_scope, RT_SCOPE_HOST);
  EXPECT_EQ(rtm->rtm_table, RT_TABLE_LOCAL);
  EXPECT_EQ(rtm->rtm_protocol, RTPROT_STATIC);
  // RTA_DST (8 bytes) + RTA_TABLE (8 bytes)
  EXPECT_EQ(m.buf.size(), NLMSG_HDRLEN + sizeof(rtmsg) + 8 + 8);
}

TEST(NetlinkBuild, ReplaceAndDeleteFlags) {
  RouteSpec r;
  r.dst = pfx("10.100.0.0/24");
  r.ifindex = 0;
  r.gateway = ip("10.0.2.2");
  r.replace = true;
  r.metric = 10;
  Message add = buildRoute(RTM_NEWROUTE, r);
  EXPECT_EQ(add.hdr()->nlmsg_flags, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE);
  EXPECT_EQ(add.what, "RTM_NEWROUTE (replace) 10.100.0.0/24 via 10.0.2.2 metric 10");
  auto* rtm = static_cast<const rtmsg*>(mnl_nlmsg_get_payload(add.hdr()));
  EXPECT_EQ(rtm->rtm_scope, RT_SCOPE_UNIVERSE);  // has a gateway

  Message del = buildRoute(RTM_DELROUTE, r);
  EXPECT_EQ(del.hdr()->nlmsg_flags, NLM_F_REQUEST);
  rtm = static_cast<const rtmsg*>(mnl_nlmsg_get_payload(del.hdr()));
  EXPECT_EQ(rtm->rtm_scope, RT_SCOPE_NOWHERE);  // match any scope
  EXPECT_EQ(rtm->rtm_protocol, RTPROT_UNSPEC);  // match any installer
}

TEST(NetlinkBuild, DeviceRouteIsLinkScope) {
  RouteSpec r;
  r.dst = pfx("10.100.0.0/24");
  Message m = buildRoute(RTM_NEWROUTE, r);
  auto* rtm = static_cast<const rtmsg*>(mnl_nlmsg_get_payload(m.hdr()));
  EXPECT_EQ(rtm->rtm_scope, RT_SCOPE_LINK);
}

TEST(NetlinkBuild, IpipLink) {
  Message m = buildIpipLink("slrk0", ip("10.0.3.11"));
  EXPECT_EQ(m.what, "RTM_NEWLINK slrk0 type ipip local 10.0.3.11");
  EXPECT_EQ(m.hdr()->nlmsg_flags, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL);
  std::string dump = dumpMessage(m.hdr());
  EXPECT_NE(dump.find("ipip"), std::string::npos) << dump;
  EXPECT_EQ(dump.find('\x1b'), std::string::npos) << "no terminal colours in logs";
}

TEST(NetlinkBuild, Address) {
  Message m = buildAddress(RTM_NEWADDR, 0, ip("10.100.0.1"), 24);
  EXPECT_EQ(m.what, "RTM_NEWADDR 10.100.0.1/24 dev #0");
  auto* ifa = static_cast<const ifaddrmsg*>(mnl_nlmsg_get_payload(m.hdr()));
  EXPECT_EQ(ifa->ifa_prefixlen, 24);
  EXPECT_EQ(ifa->ifa_family, AF_INET);
}

TEST(Sysctl, ReadsProcSys) {
  // Readable without root; both spellings name the same file.
  auto a = readSysctl("net/ipv4/ip_forward");
  ASSERT_TRUE(a.ok()) << a.error().message();
  auto b = readSysctl("net.ipv4.ip_forward");
  ASSERT_TRUE(b.ok()) << b.error().message();
  EXPECT_EQ(*a, *b);
  EXPECT_TRUE(*a == "0" || *a == "1");
  auto missing = readSysctl("net/ipv4/no_such_knob");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ENOENT);
  EXPECT_NE(missing.error().message().find("/proc/sys/net/ipv4/no_such_knob"), std::string::npos);
}

// ------------------------------------------------------------- as root ---

TEST(NetlinkRoot, LinkIndexAndErrors) {
  REQUIRE_SCRATCH_NETNS();
  auto lo = linkIndex("lo");
  ASSERT_TRUE(lo.ok()) << lo.error().message();
  EXPECT_EQ(*lo, 1);
  auto li = linkGet("lo");
  ASSERT_TRUE(li.ok());
  EXPECT_TRUE(li->up());
  auto missing = linkIndex("nosuchdev0");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ENODEV);
  EXPECT_EQ(missing.error().op, "RTM_GETLINK nosuchdev0");
  auto links = listLinks();
  ASSERT_TRUE(links.ok());
  EXPECT_TRUE(std::any_of(links->begin(), links->end(), [](const LinkInfo& l) { return l.name == "lo"; }));
}

TEST(NetlinkRoot, LocalRouteOnLoopback) {
  REQUIRE_SCRATCH_NETNS();
  RouteSpec r;
  r.dst = pfx("10.100.0.0/24");
  r.ifindex = 1;
  r.type = RTN_LOCAL;
  r.table = RT_TABLE_LOCAL;
  Status s = addRoute(r);
  ASSERT_TRUE(s.ok()) << s.error().message();

  Status again = addRoute(r);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, EEXIST);
  EXPECT_EQ(again.error().message().substr(0, 64),
            std::string("RTM_NEWROUTE local 10.100.0.0/24 dev lo table local: File exists").substr(0, 64));

  auto routes = listRoutes(Family::kV4, RT_TABLE_LOCAL);
  ASSERT_TRUE(routes.ok()) << routes.error().message();
  bool found = false;
  for (const RouteInfo& ri : *routes) {
    if (ri.dst == r.dst && ri.type == RTN_LOCAL && ri.ifindex == 1) found = true;
  }
  EXPECT_TRUE(found);

  // Any address of the subnet is now ours.
  auto got = routeGet(ip("10.100.0.77"));
  ASSERT_TRUE(got.ok()) << got.error().message();
  EXPECT_EQ(got->type, RTN_LOCAL);
  EXPECT_EQ(got->ifindex, 1);

  ASSERT_TRUE(delRoute(r).ok());
  Status gone = delRoute(r);
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.error().code, ESRCH);
  EXPECT_NE(gone.error().op.find("RTM_DELROUTE local 10.100.0.0/24 dev lo table local"), std::string::npos);
}

TEST(NetlinkRoot, ExtendedAckTextIsReported) {
  REQUIRE_SCRATCH_NETNS();
  // A gateway that is not reachable: the kernel explains why in the extack.
  RouteSpec r;
  r.dst = pfx("10.201.0.0/24");
  r.gateway = ip("192.0.2.1");
  Status s = addRoute(r);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().op, "RTM_NEWROUTE 10.201.0.0/24 via 192.0.2.1");
  EXPECT_FALSE(s.error().detail.empty()) << s.error().message();
}

TEST(NetlinkRoot, AddressesAndRouteGetSource) {
  REQUIRE_SCRATCH_NETNS();
  ASSERT_TRUE(addAddress(1, ip("10.0.9.1"), 24).ok());
  Status dup = addAddress(1, ip("10.0.9.1"), 24);
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error().code, EEXIST);

  auto addrs = listAddresses(Family::kV4);
  ASSERT_TRUE(addrs.ok()) << addrs.error().message();
  bool found = false;
  for (const AddrInfo& a : *addrs) {
    if (a.address == ip("10.0.9.1") && a.prefix_len == 24 && a.ifindex == 1) found = true;
  }
  EXPECT_TRUE(found);

  auto rg = routeGet(ip("10.0.9.1"));
  ASSERT_TRUE(rg.ok()) << rg.error().message();
  EXPECT_EQ(rg->ifindex, 1);

  ASSERT_TRUE(delAddress(1, ip("10.0.9.1"), 24).ok());
  Status gone = delAddress(1, ip("10.0.9.1"), 24);
  EXPECT_FALSE(gone.ok());
}

TEST(NetlinkRoot, TunDeviceTakesVipRoute) {
  REQUIRE_SCRATCH_NETNS();
  auto fds = openTunQueues("slrtest0", 2);
  ASSERT_TRUE(fds.ok()) << fds.error().message();
  EXPECT_EQ(fds->size(), 2u);
  auto li = linkGet("slrtest0");
  ASSERT_TRUE(li.ok()) << li.error().message();
  EXPECT_EQ(li->kind, "tun");
  ASSERT_TRUE(linkSetUp(li->ifindex).ok());
  ASSERT_TRUE(linkSetMtu(li->ifindex, 1400).ok());

  RouteSpec r;
  r.dst = pfx("10.100.0.0/24");
  r.ifindex = li->ifindex;
  r.replace = true;  // "ip route replace": idempotent
  ASSERT_TRUE(addRoute(r).ok());
  Status again = addRoute(r);
  ASSERT_TRUE(again.ok()) << again.error().message();
  auto got = routeGet(ip("10.100.0.10"));
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->ifindex, li->ifindex);
  EXPECT_EQ(linkGet("slrtest0")->mtu, 1400u);

  // A single-queue open of a multi-queue device is refused with a reason.
  auto single = openTun("slrtest0", false);
  EXPECT_FALSE(single.ok());

  fds->clear();  // last queue closed: the device goes away
  EXPECT_FALSE(linkIndex("slrtest0").ok());
}

TEST(NetlinkRoot, IpipDetectedNotAssumed) {
  REQUIRE_SCRATCH_NETNS();
  auto sup = ipipSupported();
  ASSERT_TRUE(sup.ok()) << sup.error().message();
  auto made = createIpipLink("slrk0", ip("10.0.3.11"));
  if (*sup) {
    ASSERT_TRUE(made.ok()) << made.error().message();
    EXPECT_EQ(linkGet("slrk0")->kind, "ipip");
    EXPECT_TRUE(deleteLink("slrk0").ok());
  } else {
    ASSERT_FALSE(made.ok());
    EXPECT_EQ(made.error().code, EOPNOTSUPP);
    EXPECT_EQ(made.error().op, "RTM_NEWLINK slrk0 type ipip local 10.0.3.11");
    std::cerr << "[ info ] kernel has no ipip: " << made.error().message() << "\n";
  }
  EXPECT_FALSE(linkIndex("slrk0").ok());
}

TEST(NetlinkRoot, SysctlWriteInNamespace) {
  REQUIRE_SCRATCH_NETNS();
  ASSERT_TRUE(writeSysctl("net/ipv4/conf/lo/rp_filter", "2").ok());
  auto v = readSysctl("net.ipv4.conf.lo.rp_filter");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, "2");
  ASSERT_TRUE(writeSysctl("net/ipv4/conf/lo/rp_filter", "0").ok());
  Status bad = writeSysctl("net/ipv4/conf/lo/rp_filter", "banana");
  EXPECT_FALSE(bad.ok());
}

TEST(NetlinkRoot, RouteGetFibMatchReportsTheMetric) {
  REQUIRE_SCRATCH_NETNS();
  // The kernel here may lack the dummy module; a veth pair is always there.
  ASSERT_TRUE(slr::testing::addVethPair("slrfm0", "slrfm1"));
  auto dev = linkIndex("slrfm0");
  ASSERT_TRUE(dev.ok()) << dev.error().message();
  RouteSpec wide, narrow;
  wide.dst = pfx("10.60.0.0/16");
  wide.ifindex = *dev;
  wide.metric = 300;
  narrow = wide;
  narrow.dst = pfx("10.60.1.0/24");
  narrow.metric = 7;
  ASSERT_TRUE(addRoute(wide).ok());
  ASSERT_TRUE(addRoute(narrow).ok());

  // Longest match wins, with its own metric, prefix and table.
  auto in_narrow = routeGetFibMatch(ip("10.60.1.5"));
  ASSERT_TRUE(in_narrow.ok()) << in_narrow.error().message();
  EXPECT_EQ(in_narrow->metric, 7u);
  EXPECT_EQ(in_narrow->dst, narrow.dst);
  EXPECT_EQ(in_narrow->ifindex, *dev);
  EXPECT_EQ(in_narrow->table, uint32_t(RT_TABLE_MAIN));
  auto in_wide = routeGetFibMatch(ip("10.60.2.5"));
  ASSERT_TRUE(in_wide.ok()) << in_wide.error().message();
  EXPECT_EQ(in_wide->metric, 300u);
  EXPECT_EQ(in_wide->dst, wide.dst);
  // The plain lookup still answers the same destination (by interface).
  auto plain = routeGet(ip("10.60.1.5"));
  ASSERT_TRUE(plain.ok()) << plain.error().message();
  EXPECT_EQ(plain->ifindex, *dev);

  // IPv6 goes through the same request.
  RouteSpec v6 = wide;
  v6.dst = pfx("fd00:60::/32");
  v6.metric = 300;
  RouteSpec v6narrow = v6;
  v6narrow.dst = pfx("fd00:60:1::/48");
  v6narrow.metric = 7;
  for (const RouteSpec* r : {&v6, &v6narrow}) {
    auto st = addRoute(*r);
    ASSERT_TRUE(st.ok()) << st.error().message();
  }
  auto v6got = routeGetFibMatch(ip("fd00:60:1::5"));
  ASSERT_TRUE(v6got.ok()) << v6got.error().message();
  EXPECT_EQ(v6got->metric, 7u);
  EXPECT_EQ(v6got->dst, v6narrow.dst);

  // No route at all: an error naming the request, not a zero metric.
  auto none = routeGetFibMatch(ip("10.99.0.1"));
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().code, ENETUNREACH) << none.error().message();
  EXPECT_EQ(none.error().op, "RTM_GETROUTE fibmatch 10.99.0.1");
  auto empty = routeGetFibMatch(IpAddress{});
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error().code, EINVAL);

  EXPECT_TRUE(deleteLink("slrfm0").ok());  // takes its peer and routes along
  EXPECT_FALSE(routeGetFibMatch(ip("10.60.1.5")).ok());
}

TEST(NetlinkRoot, BatchOfRoutesReportsTheFailingOne) {
  REQUIRE_SCRATCH_NETNS();
  auto s = Socket::open();
  ASSERT_TRUE(s.ok());
  RouteSpec a, b;
  a.dst = pfx("10.150.0.0/24");
  a.ifindex = 1;
  a.type = RTN_LOCAL;
  a.table = RT_TABLE_LOCAL;
  b = a;
  b.dst = pfx("10.151.0.0/24");
  Batch batch;
  batch.messages.push_back(buildRoute(RTM_NEWROUTE, a));
  batch.messages.push_back(buildRoute(RTM_NEWROUTE, a));  // duplicate: EEXIST
  batch.messages.push_back(buildRoute(RTM_NEWROUTE, b));
  Status st = s->transact(batch);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, EEXIST);
  EXPECT_NE(st.error().op.find("10.150.0.0/24"), std::string::npos);
  // rtnetlink is not transactional: the third message was applied.
  EXPECT_TRUE(delRoute(b).ok());
  EXPECT_TRUE(delRoute(a).ok());
}

}  // namespace
}  // namespace slr::nl
