// Pure parts of the host agent: load parsing, /proc/stat CPU maths, the
// tunnel acceptance filter, UPDATE building, and check-report rendering.
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "core/packet.h"
#include "core/tunnel.h"
#include "hostagent/check_report.h"
#include "hostagent/load.h"
#include "hostagent/slr_session.h"
#include "hostagent/terminator.h"

namespace slr::host {
namespace {

// ---------------------------------------------------------------- load ---

TEST(HostLoadNumber, AcceptsDecimals) {
  EXPECT_DOUBLE_EQ(*parseLoadNumber("0.25"), 0.25);
  EXPECT_DOUBLE_EQ(*parseLoadNumber("  3\n"), 3.0);
  EXPECT_DOUBLE_EQ(*parseLoadNumber("+1.5"), 1.5);
  EXPECT_DOUBLE_EQ(*parseLoadNumber("1e-3"), 0.001);
  EXPECT_DOUBLE_EQ(*parseLoadNumber("0.5\nignored second line"), 0.5);
  EXPECT_DOUBLE_EQ(*parseLoadNumber("0\r\n"), 0.0);
}

TEST(HostLoadNumber, RejectsGarbageWithReason) {
  struct Case {
    const char* in;
    const char* why_contains;
  } cases[] = {
      {"", "empty"},          {"   \n", "empty"},       {"abc", "\"abc\""},
      {"0.5x", "\"0.5x\""},   {"-1", ">= 0"},          {"nan", "finite"},
      {"inf", "finite"},      {"5000", "<= 4294"},     {"1 2", "\"1 2\""},
  };
  for (const auto& c : cases) {
    std::string why;
    EXPECT_FALSE(parseLoadNumber(c.in, &why).has_value()) << c.in;
    EXPECT_NE(why.find(c.why_contains), std::string::npos) << c.in << " -> " << why;
  }
}

constexpr const char* kStat1 =
    "cpu  100 10 50 1000 40 5 5 0 0 0\n"
    "cpu0 50 5 25 500 20 2 3 0 0 0\n"
    "intr 12345\n";
constexpr const char* kStat2 =
    "cpu  160 10 70 1100 60 5 5 0 7 0\n"
    "cpu0 80 5 35 550 30 2 3 0 0 0\n";

TEST(HostCpuLoad, ParsesAggregateLine) {
  auto t = parseProcStat(kStat1);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->busy, 100u + 10 + 50 + 5 + 5 + 0);
  EXPECT_EQ(t->total, t->busy + 1000 + 40);
}

TEST(HostCpuLoad, DeltaIsBusyShare) {
  auto a = parseProcStat(kStat1), b = parseProcStat(kStat2);
  ASSERT_TRUE(a && b);
  // busy +80 (user 60, system 20), idle +100, iowait +20: 80 / 200.  Guest
  // time is already inside user, so its +7 must not count twice.
  EXPECT_DOUBLE_EQ(*cpuLoadBetween(*a, *b), 0.4);
}

TEST(HostCpuLoad, NoTicksOrBackwardsKeepsPrevious) {
  auto a = parseProcStat(kStat1);
  ASSERT_TRUE(a);
  EXPECT_FALSE(cpuLoadBetween(*a, *a));
  EXPECT_FALSE(cpuLoadBetween(*parseProcStat(kStat2), *a));
}

TEST(HostCpuLoad, FullyBusyAndIdle) {
  CpuTimes a{100, 200};
  EXPECT_DOUBLE_EQ(*cpuLoadBetween(a, CpuTimes{150, 250}), 1.0);
  EXPECT_DOUBLE_EQ(*cpuLoadBetween(a, CpuTimes{100, 250}), 0.0);
}

TEST(HostCpuLoad, RejectsMalformedStat) {
  EXPECT_FALSE(parseProcStat(""));
  EXPECT_FALSE(parseProcStat("cpu0 1 2 3 4\n"));  // per-CPU line only
  EXPECT_FALSE(parseProcStat("cpu  1 2 3\n"));    // too few fields
  EXPECT_FALSE(parseProcStat("cpu  1 2 x 4\n"));
  auto old = parseProcStat("cpu  1 2 3 4\n");     // 2.4-style: 4 fields
  ASSERT_TRUE(old);
  EXPECT_EQ(old->busy, 6u);
  EXPECT_EQ(old->total, 10u);
}

TEST(HostLoad, ConnectionLoad) {
  EXPECT_DOUBLE_EQ(connectionLoad(250, 1000), 0.25);
  EXPECT_DOUBLE_EQ(connectionLoad(3, 0), 3.0);  // guarded, never a division by 0
  EXPECT_DOUBLE_EQ(connectionLoad(2000, 1000), 2.0);
}

TEST(HostLoad, CommandFirstLineAndFailures) {
  auto ok = runCommandFirstLine("echo 0.75; echo second", std::chrono::milliseconds(3000));
  ASSERT_TRUE(ok) << ok.error().message();
  EXPECT_EQ(*ok, "0.75");
  auto status = runCommandFirstLine("exit 3", std::chrono::milliseconds(3000));
  ASSERT_FALSE(status);
  EXPECT_NE(status.error().message().find("exited with status 3"), std::string::npos);
  auto slow = runCommandFirstLine("sleep 5", std::chrono::milliseconds(200));
  ASSERT_FALSE(slow);
  EXPECT_NE(slow.error().message().find("timed out after 200ms"), std::string::npos);
}

TEST(HostLoad, MeterFileSourceKeepsPreviousOnFailure) {
  char path[] = "/tmp/hostagent_load_XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  config::LoadConfig lc;
  lc.source = config::LoadSource::kFile;
  lc.file = path;
  LoadMeter m(lc, {}, std::chrono::milliseconds(1000));
  std::ofstream(path) << "0.6\n";
  ASSERT_TRUE(m.sample().ok());
  EXPECT_DOUBLE_EQ(m.value(), 0.6);
  std::ofstream(path) << "busy\n";
  Status s = m.sample();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.error().message().find("\"busy\""), std::string::npos) << s.error().message();
  EXPECT_DOUBLE_EQ(m.value(), 0.6);
  unlink(path);
  EXPECT_FALSE(m.sample().ok());
  EXPECT_DOUBLE_EQ(m.value(), 0.6);
}

TEST(HostLoad, MeterCpuSourceFromProc) {
  config::LoadConfig lc;  // cpu
  LoadMeter m(lc, {}, std::chrono::milliseconds(1000));
  ASSERT_TRUE(m.sample().ok());
  usleep(50 * 1000);
  ASSERT_TRUE(m.sample().ok());
  EXPECT_GE(m.value(), 0.0);
  EXPECT_LE(m.value(), 1.0);
  EXPECT_EQ(m.sourceName(), "cpu");
}

// -------------------------------------------------------- decap filter ---

IpAddress ip(const char* s) { return *IpAddress::parse(s); }

// An IPIP packet outer src->dst carrying a UDP datagram csrc->cdst.
std::vector<std::byte> tunnelPacket(const char* src, const char* dst, const char* csrc,
                                    const char* cdst) {
  std::vector<std::byte> buf(20 + 28);
  Ipv4HeaderFields in;
  in.total_length = 28;
  in.protocol = kProtoUdp;
  in.src = ip(csrc).v4HostOrder();
  in.dst = ip(cdst).v4HostOrder();
  EXPECT_EQ(writeIpv4Header(std::span(buf).subspan(20), in), 20u);
  store16(buf.data() + 40, 40000);
  store16(buf.data() + 42, 80);
  store16(buf.data() + 44, 8);
  size_t n = IpipCodec::encapsulateV4(buf, 28, ip(src).v4HostOrder(), ip(dst).v4HostOrder(), 7);
  EXPECT_EQ(n, buf.size());
  return buf;
}

TEST(HostDecapFilter, Verdicts) {
  DecapFilter f(ip("10.0.3.11"), {ip("10.0.2.2"), ip("10.0.2.3")},
                {*Prefix::parse("10.100.0.0/24"), *Prefix::parse("10.101.0.0/16")});
  struct Case {
    const char* what;
    std::vector<std::byte> pkt;
    DecapVerdict want;
  } cases[] = {
      {"vip via slr", tunnelPacket("10.0.2.2", "10.0.3.11", "10.0.1.2", "10.100.0.10"),
       DecapVerdict::kForward},
      {"second slr, second subnet",
       tunnelPacket("10.0.2.3", "10.0.3.11", "10.0.1.2", "10.101.7.1"), DecapVerdict::kForward},
      {"spoofed outer source", tunnelPacket("10.9.9.9", "10.0.3.11", "10.0.1.2", "10.100.0.10"),
       DecapVerdict::kNotFromSlr},
      {"other tunnel address", tunnelPacket("10.0.2.2", "10.0.3.12", "10.0.1.2", "10.100.0.10"),
       DecapVerdict::kNotFromSlr},
      {"inner dst not a vip", tunnelPacket("10.0.2.2", "10.0.3.11", "10.0.1.2", "10.0.3.11"),
       DecapVerdict::kNotVip},
      {"just outside the subnet", tunnelPacket("10.0.2.2", "10.0.3.11", "10.0.1.2", "10.100.1.1"),
       DecapVerdict::kNotVip},
  };
  for (auto& c : cases) {
    std::span<const std::byte> inner;
    EXPECT_EQ(f.classify(c.pkt, inner), c.want) << c.what;
    if (c.want == DecapVerdict::kForward) {
      EXPECT_EQ(inner.size(), 28u) << c.what;
      EXPECT_EQ(inner.data(), c.pkt.data() + 20) << c.what;  // no copy
    }
  }
}

TEST(HostDecapFilter, MalformedOuterAndInner) {
  DecapFilter f(ip("10.0.3.11"), {ip("10.0.2.2")}, {*Prefix::parse("10.100.0.0/24")});
  std::span<const std::byte> inner;
  auto good = tunnelPacket("10.0.2.2", "10.0.3.11", "10.0.1.2", "10.100.0.10");

  auto truncated = good;
  truncated.resize(30);
  EXPECT_EQ(f.classify(truncated, inner), DecapVerdict::kMalformed);

  auto bad_outer_csum = good;
  bad_outer_csum[10] ^= std::byte{0xff};
  EXPECT_EQ(f.classify(bad_outer_csum, inner), DecapVerdict::kMalformed);

  auto bad_inner_csum = good;
  bad_inner_csum[30] ^= std::byte{0xff};
  EXPECT_EQ(f.classify(bad_inner_csum, inner), DecapVerdict::kMalformed);

  auto not_ipip = good;  // protocol 17 in the outer header, checksum fixed
  not_ipip[9] = std::byte{17};
  setIpv4HeaderChecksum(std::span(not_ipip).first(20));
  EXPECT_EQ(f.classify(not_ipip, inner), DecapVerdict::kMalformed);

  EXPECT_EQ(f.classify({}, inner), DecapVerdict::kMalformed);
  EXPECT_STREQ(decapVerdictName(DecapVerdict::kNotFromSlr), "not_from_slr");
}

// ------------------------------------------------------------- session ---

TEST(HostSession, UpdateHasOneEntryPerSubnet) {
  std::vector<Prefix> subnets = {*Prefix::parse("10.100.0.0/24"), *Prefix::parse("10.101.0.0/24")};
  proto::Update u = makeUpdate(42, subnets, 0.125);
  EXPECT_EQ(u.seq, 42u);
  ASSERT_EQ(u.entries.size(), 2u);
  EXPECT_EQ(u.entries[1].prefix, subnets[1]);
  EXPECT_DOUBLE_EQ(u.entries[0].load, 0.125);
  EXPECT_TRUE(u.entries[0].available);
  EXPECT_TRUE(proto::validate(u).ok());
}

TEST(HostSession, RefusalText) {
  EXPECT_EQ(refusalText("slr1", {proto::kSubnetNotAuthorised, "subnet 10.200.0.0/24 not authorised"}),
            "refused by slr1: subnet 10.200.0.0/24 not authorised");
  EXPECT_EQ(refusalText("slr1", {proto::kNotAuthorised, ""}), "refused by slr1: not authorised");
  EXPECT_EQ(refusalText("slr2", {proto::kProtocolError, "bad frame"}),
            "error from slr2: bad frame");
  EXPECT_STREQ(sessionStateName(SessionState::kRegistered), "registered");
}

// -------------------------------------------------------- check report ---

CheckReport sampleReport() {
  CheckReport r;
  r.add("local route 10.100.0.0/24", true, "local 10.100.0.0/24 dev lo table local");
  r.add("default route", false, "none: add one");
  return r;
}

TEST(HostCheckReport, Text) {
  std::ostringstream os;
  renderText(sampleReport(), os);
  EXPECT_EQ(os.str(),
            "[ok]   local route 10.100.0.0/24 \u2014 local 10.100.0.0/24 dev lo table local\n"
            "[FAIL] default route \u2014 none: add one\n"
            "2 checks, 1 failed\n");
}

TEST(HostCheckReport, Json) {
  std::ostringstream os;
  renderJson(sampleReport(), os);
  EXPECT_EQ(os.str(),
            R"({"checks":[{"detail":"local 10.100.0.0/24 dev lo table local","name":"local route 10.100.0.0/24","ok":true},)"
            R"({"detail":"none: add one","name":"default route","ok":false}],"ok":false})"
            "\n");
  CheckReport all_ok;
  all_ok.add("x", true, "");
  EXPECT_TRUE(all_ok.allOk());
  EXPECT_FALSE(sampleReport().allOk());
  std::ostringstream empty;
  renderJson(CheckReport{}, empty);
  EXPECT_EQ(empty.str(), "{\"checks\":[],\"ok\":true}\n");
}

}  // namespace
}  // namespace slr::host
