// IP-in-IP encapsulation and decapsulation, cross-checked with libtins.
#include "core/tunnel.h"

#include <gtest/gtest.h>
#include <tins/tins.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "tests/unit/tins_bytes.h"

namespace slr {
namespace {

using testing::Bytes;
using testing::serialize;
std::span<const std::byte> cspan(const Bytes& b) { return {b.data(), b.size()}; }
IpAddress addr(const char* s) { return *IpAddress::parse(s); }
void fixChecksum(Bytes& b, size_t at = 0) {
  size_t hlen = size_t(uint8_t(b[at]) & 0x0f) * 4;
  if (hlen < 20 || at + hlen > b.size()) return;
  setIpv4HeaderChecksum(std::span<std::byte>(b.data() + at, hlen));
}

const char* kClient = "10.0.1.2";
const char* kVip = "10.100.0.10";
const char* kSlr = "10.0.2.2";
const char* kHost = "10.0.3.11";

Bytes innerTcp(uint8_t tos = 0, bool df = true, size_t payload = 100) {
  Tins::IP ip = Tins::IP(kVip, kClient) / Tins::TCP(80, 40000) / Tins::RawPDU(std::string(payload, 'p'));
  ip.tos(tos);
  ip.ttl(61);
  ip.flags(df ? Tins::IP::DONT_FRAGMENT : Tins::IP::Flags(0));
  return serialize(ip);
}

// Puts `inner` behind `headroom` bytes of junk, as the receive path would.
Bytes frameFor(const Bytes& inner, size_t headroom = IpipCodec::kOverhead) {
  Bytes f(headroom + inner.size(), std::byte(0xcc));
  std::copy(inner.begin(), inner.end(), f.begin() + ptrdiff_t(headroom));
  return f;
}

// An IPIP packet built entirely by libtins.
Bytes libtinsIpip(const Bytes& inner, const char* src = kSlr, const char* dst = kHost) {
  std::vector<uint8_t> raw(inner.size());
  std::copy(inner.begin(), inner.end(), reinterpret_cast<std::byte*>(raw.data()));
  Tins::IP outer(dst, src);
  outer.protocol(4);
  outer.ttl(64);
  Tins::IP pkt = outer / Tins::RawPDU(raw.begin(), raw.end());
  return serialize(pkt);
}

TEST(IpipCodec, Identity) {
  IpipCodec c;
  EXPECT_STREQ(c.name(), "ipip");
  EXPECT_EQ(c.overhead(), 20u);
  auto p = makeTunnelCodec("ipip");
  ASSERT_NE(p, nullptr);
  EXPECT_STREQ(p->name(), "ipip");
  EXPECT_EQ(makeTunnelCodec("gre"), nullptr);
  EXPECT_EQ(makeTunnelCodec(""), nullptr);
}

TEST(IpipCodec, EncapsulateParsesWithLibtins) {
  struct Variant {
    uint8_t tos;
    bool df;
    size_t payload;
    uint16_t id;
  };
  for (Variant v : {Variant{0, true, 100, 1}, Variant{0xb8, false, 0, 0xffff}, Variant{0x03, true, 1380, 0},
                    Variant{0xfd, false, 1, 4242}}) {
    SCOPED_TRACE(::testing::Message() << "tos " << int(v.tos) << " df " << v.df << " payload " << v.payload);
    Bytes inner = innerTcp(v.tos, v.df, v.payload);
    Bytes frame = frameFor(inner);
    const TunnelCodec& codec = IpipCodec();
    size_t n = codec.encapsulate(std::span<std::byte>(frame), inner.size(), addr(kSlr), addr(kHost), v.id);
    ASSERT_EQ(n, inner.size() + 20);
    frame.resize(n);

    Tins::IP outer(reinterpret_cast<const uint8_t*>(frame.data()), uint32_t(frame.size()));
    EXPECT_EQ(outer.version(), 4);
    EXPECT_EQ(outer.head_len(), 5);
    EXPECT_EQ(outer.src_addr().to_string(), kSlr);
    EXPECT_EQ(outer.dst_addr().to_string(), kHost);
    EXPECT_EQ(outer.protocol(), 4);
    EXPECT_EQ(outer.ttl(), 64);
    EXPECT_EQ(outer.tos(), v.tos);
    EXPECT_EQ(outer.id(), v.id);
    EXPECT_EQ(outer.tot_len(), n);
    EXPECT_EQ(outer.flags(), v.df ? Tins::IP::DONT_FRAGMENT : Tins::IP::Flags(0));
    EXPECT_EQ(uint16_t(outer.fragment_offset()), 0);
    // Checksum: re-serialising makes libtins compute its own; it must match.
    Tins::IP copy = outer;
    Bytes re = serialize(copy);
    EXPECT_EQ(load16(re.data() + 10), load16(frame.data() + 10));
    EXPECT_TRUE(ipv4HeaderChecksumValid(std::span<const std::byte>(frame.data(), 20)));

    // The inner packet: bytes identical, and libtins sees the original flow.
    EXPECT_TRUE(std::equal(inner.begin(), inner.end(), frame.begin() + 20));
    // libtins decodes protocol 4 as IP: it must see the original flow.
    ASSERT_NE(outer.inner_pdu(), nullptr);
    const Tins::IP* in = outer.inner_pdu()->find_pdu<Tins::IP>();
    ASSERT_NE(in, nullptr);
    EXPECT_EQ(in->src_addr().to_string(), kClient);
    EXPECT_EQ(in->dst_addr().to_string(), kVip);
    EXPECT_EQ(in->ttl(), 61);
    EXPECT_EQ(in->tos(), v.tos);
    ASSERT_NE(in->find_pdu<Tins::TCP>(), nullptr);
    EXPECT_EQ(in->find_pdu<Tins::TCP>()->dport(), 80);
  }
}

TEST(IpipCodec, EncapsulateWithExtraRoomAndStaticEntry) {
  // A frame larger than needed is fine: only overhead + inner_len is used.
  Bytes inner = innerTcp();
  Bytes frame = frameFor(inner);
  frame.resize(frame.size() + 64, std::byte(0xee));
  size_t n = IpipCodec::encapsulateV4(std::span<std::byte>(frame), inner.size(), addr(kSlr).v4HostOrder(),
                                      addr(kHost).v4HostOrder(), 7);
  ASSERT_EQ(n, inner.size() + 20);
  EXPECT_EQ(frame[n], std::byte(0xee));
  DecapResult d = IpipCodec::decapsulateV4(std::span<const std::byte>(frame.data(), n));
  ASSERT_TRUE(d.ok()) << parseErrorName(d.error);
}

TEST(IpipCodec, EncapsulateRefusals) {
  IpipCodec c;
  Bytes inner = innerTcp();
  Bytes frame = frameFor(inner);
  auto f = std::span<std::byte>(frame);
  EXPECT_EQ(c.encapsulate(f, inner.size(), addr(kSlr), addr("fd00::1"), 1), 0u) << "v6 outer dst";
  EXPECT_EQ(c.encapsulate(f, inner.size(), IpAddress{}, addr(kHost), 1), 0u) << "no src";
  EXPECT_EQ(c.encapsulate(f.first(f.size() - 1), inner.size(), addr(kSlr), addr(kHost), 1), 0u) << "frame short";
  EXPECT_EQ(c.encapsulate(f, 19, addr(kSlr), addr(kHost), 1), 0u) << "inner < 20";
  EXPECT_EQ(c.encapsulate(f, 0, addr(kSlr), addr(kHost), 1), 0u) << "empty inner";
  Bytes v6 = frame;
  v6[20] = std::byte(0x60);
  EXPECT_EQ(c.encapsulate(std::span<std::byte>(v6), inner.size(), addr(kSlr), addr(kHost), 1), 0u) << "ipv6 inner";
  // Size limit: 65515 bytes of inner is the most that fits in 65535.
  Bytes big(65535 + 10, std::byte(0));
  big[20] = std::byte(0x45);
  auto bs = std::span<std::byte>(big);
  EXPECT_EQ(c.encapsulate(bs, 65516, addr(kSlr), addr(kHost), 1), 0u);
  EXPECT_EQ(c.encapsulate(bs, 65515, addr(kSlr), addr(kHost), 1), 65535u);
  EXPECT_EQ(load16(big.data() + 2), 65535);
  EXPECT_EQ(c.encapsulate(bs, SIZE_MAX - 5, addr(kSlr), addr(kHost), 1), 0u) << "overflow";
}

TEST(IpipCodec, RoundTrip) {
  std::mt19937 rng(2003);
  IpipCodec c;
  for (int iter = 0; iter < 200; ++iter) {
    Bytes inner = innerTcp(uint8_t(rng()), rng() % 2, rng() % 1400);
    Bytes frame = frameFor(inner);
    IpAddress s = IpAddress::v4(rng()), d = IpAddress::v4(rng());
    size_t n = c.encapsulate(std::span<std::byte>(frame), inner.size(), s, d, uint16_t(rng()));
    ASSERT_EQ(n, frame.size());
    DecapResult r = c.decapsulate(cspan(frame));
    ASSERT_TRUE(r.ok()) << parseErrorName(r.error);
    EXPECT_EQ(r.outer_src, s);
    EXPECT_EQ(r.outer_dst, d);
    ASSERT_EQ(r.inner.size(), inner.size());
    EXPECT_EQ(r.inner.data(), frame.data() + 20);  // a view, not a copy
    EXPECT_TRUE(std::equal(inner.begin(), inner.end(), r.inner.begin()));
    PacketInfo info;
    ASSERT_EQ(parsePacket(r.inner, info), ParseError::kOk);
    EXPECT_EQ(info.key.dport, 80);
  }
}

// ---------------------------------------------------------------------------
// Decapsulation table

struct DecapCase {
  std::string description;
  Bytes input;
  ParseError verdict;
  bool inner_error = false;
  size_t inner_len = 0;  // when ok
};

std::vector<DecapCase> decapCases() {
  using E = ParseError;
  std::vector<DecapCase> c;
  Bytes inner = innerTcp();
  Bytes good = libtinsIpip(inner);
  c.push_back({"libtins ipip", good, E::kOk, false, inner.size()});
  {
    Bytes b = good;
    b.resize(b.size() + 30, std::byte(0));
    c.push_back({"outer trailing bytes ignored", b, E::kOk, false, inner.size()});
  }
  {
    // Inner datagram shorter than the outer payload: trimmed to its own length.
    Bytes in = inner;
    in.resize(in.size() + 6, std::byte(0x77));
    c.push_back({"inner trailing bytes trimmed", libtinsIpip(in), E::kOk, false, inner.size()});
  }
  {
    // Outer header with a Router Alert option: skipped.
    Bytes b = good;
    const std::byte ra[4] = {std::byte(0x94), std::byte(4), std::byte(0), std::byte(0)};
    b.insert(b.begin() + 20, ra, ra + 4);
    b[0] = std::byte(0x46);
    store16(b.data() + 2, uint16_t(b.size()));
    fixChecksum(b);
    c.push_back({"outer options skipped", b, E::kOk, false, inner.size()});
  }
  {
    Tins::IP p = Tins::IP(kHost, kSlr) / Tins::UDP(4789, 1234) / Tins::RawPDU(std::string(30, 'v'));
    c.push_back({"outer udp: not a tunnel", serialize(p), E::kNotTunnel});
  }
  {
    Bytes b = good;
    b[9] = std::byte(41);  // 6in4
    fixChecksum(b);
    c.push_back({"outer protocol 41: not ipip", b, E::kNotTunnel});
  }
  {
    Bytes b = good;
    store16(b.data() + 6, kIpv4FlagMf);
    fixChecksum(b);
    c.push_back({"outer first fragment", b, E::kFragmentedOuter});
    b = good;
    store16(b.data() + 6, 185);
    fixChecksum(b);
    c.push_back({"outer last fragment", b, E::kFragmentedOuter});
    b = good;
    store16(b.data() + 6, kIpv4FlagDf);
    fixChecksum(b);
    c.push_back({"outer DF only: not a fragment", b, E::kOk, false, inner.size()});
  }
  {
    Bytes b = good;
    b[11] ^= std::byte(0x01);
    c.push_back({"outer bad checksum", b, E::kBadChecksum});
    b = good;
    b[0] = std::byte(0x60);
    c.push_back({"outer ipv6", b, E::kUnsupportedFamily});
    b = good;
    b[0] = std::byte(0x44);
    c.push_back({"outer ihl 4", b, E::kBadHeaderLength});
    b = good;
    store16(b.data() + 2, uint16_t(b.size() + 1));
    fixChecksum(b);
    c.push_back({"outer total length > buffer", b, E::kTruncated});
    c.push_back({"empty", {}, E::kTruncated});
  }
  {
    Bytes b = good;
    b[20 + 11] ^= std::byte(0x01);
    c.push_back({"inner bad checksum", b, E::kBadChecksum, true});
    b = good;
    b[20] = std::byte(0x60);
    c.push_back({"inner ipv6 (needs protocol 41)", b, E::kUnsupportedFamily, true});
    b = good;
    b[20] = std::byte(0x25);
    c.push_back({"inner version 2", b, E::kNotIpv4, true});
    b = good;
    store16(b.data() + 22, uint16_t(inner.size() + 1));
    fixChecksum(b, 20);
    c.push_back({"inner total length > outer payload", b, E::kTruncated, true});
    b = good;
    store16(b.data() + 22, 10);
    fixChecksum(b, 20);
    c.push_back({"inner total length < header", b, E::kBadTotalLength, true});
  }
  {
    // libtins rewrites the protocol field on these, so it is patched after.
    auto asIpip = [](Bytes b) {
      b[9] = std::byte(4);
      fixChecksum(b);
      return b;
    };
    Tins::IP outer(kHost, kSlr);
    c.push_back({"ipip with no inner bytes", asIpip(serialize(outer)), E::kTruncated, true});
    std::vector<uint8_t> few(12, 0x45);
    Tins::IP o2 = outer / Tins::RawPDU(few.begin(), few.end());
    c.push_back({"ipip with 12 inner bytes", asIpip(serialize(o2)), E::kTruncated, true});
  }
  return c;
}

TEST(IpipCodec, DecapsulateTable) {
  IpipCodec codec;
  for (const DecapCase& tc : decapCases()) {
    SCOPED_TRACE(tc.description);
    DecapResult r = codec.decapsulate(cspan(tc.input));
    EXPECT_STREQ(parseErrorName(r.error), parseErrorName(tc.verdict));
    EXPECT_EQ(r.inner_error, tc.inner_error);
    if (tc.verdict == ParseError::kOk && r.ok()) {
      EXPECT_EQ(r.outer_src.str(), kSlr);
      EXPECT_EQ(r.outer_dst.str(), kHost);
      EXPECT_EQ(r.inner.size(), tc.inner_len);
      EXPECT_EQ(Ipv4View(r.inner).check(), ParseError::kOk);
      EXPECT_EQ(Ipv4View(r.inner).dst().str(), kVip);
    } else {
      EXPECT_TRUE(r.inner.empty());
    }
    if (tc.inner_error || tc.verdict == ParseError::kNotTunnel || tc.verdict == ParseError::kFragmentedOuter) {
      // The outer header parsed: its addresses are known (for counting per sender).
      EXPECT_EQ(r.outer_src.str(), kSlr);
    }
  }
}

TEST(IpipCodec, DecapsulateTruncatedAtEveryLength) {
  Bytes pkt = libtinsIpip(innerTcp());
  IpipCodec c;
  for (size_t len = 0; len < pkt.size(); ++len) {
    DecapResult r = c.decapsulate(std::span<const std::byte>(pkt.data(), len));
    ASSERT_EQ(r.error, ParseError::kTruncated) << len;
    ASSERT_TRUE(r.inner.empty());
  }
  // Outer total length honestly shortened: the inner packet is what is cut.
  for (size_t len = 20; len < pkt.size(); ++len) {
    Bytes b(pkt.begin(), pkt.begin() + len);
    store16(b.data() + 2, uint16_t(len));
    fixChecksum(b);
    DecapResult r = c.decapsulate(cspan(b));
    ASSERT_EQ(r.error, ParseError::kTruncated) << len;
    ASSERT_TRUE(r.inner_error) << len;
  }
}

TEST(IpipCodec, GarbageDoesNotCrash) {
  std::mt19937 rng(4);
  IpipCodec c;
  Bytes seed = libtinsIpip(innerTcp());
  int ok = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    Bytes b;
    if (iter % 2 == 0) {
      b.resize(rng() % 100);
      for (auto& x : b) x = std::byte(rng());
    } else {
      b = seed;
      for (int i = 0, n = 1 + rng() % 3; i < n; ++i) b[rng() % b.size()] = std::byte(rng());
      if (rng() % 2) fixChecksum(b);
      if (rng() % 2) fixChecksum(b, 20);
      if (rng() % 4 == 0) b.resize(rng() % (b.size() + 1));
    }
    DecapResult r = c.decapsulate(cspan(b));
    ASSERT_LT(uint8_t(r.error), uint8_t(ParseError::kCount));
    if (r.ok()) {
      ++ok;
      ASSERT_GE(r.inner.data(), b.data());
      ASSERT_LE(r.inner.data() + r.inner.size(), b.data() + b.size());
    }
  }
  EXPECT_GT(ok, 100);
}

}  // namespace
}  // namespace slr
