// Flow advertisement in an ICMP echo (core/flow_advert.h): golden bytes of a
// whole echo request, round trips, every decode status, and keys equal to
// what parsePacket builds for the flow's client -> VIP packets.
#include "core/flow_advert.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/packet.h"
#include "tests/unit/hex_bytes.h"

namespace slr::advert {
namespace {

using testing::toHex;

uint32_t v4(const char* s) { return IpAddress::parse(s)->v4HostOrder(); }

FlowAdvert sample() {
  FlowAdvert a;
  a.proto = 6;
  a.client = v4("10.0.1.2");
  a.client_port = 40000;
  a.vip = v4("10.100.0.10");
  a.vip_port = 80;
  a.server = v4("10.0.3.11");
  a.server_port = 8080;
  return a;
}

std::vector<std::byte> encoded(const FlowAdvert& a = sample()) {
  std::vector<std::byte> icmp(kMessageSize);
  EXPECT_EQ(encodeEchoRequest(icmp, 0x1234, 1, a), kMessageSize);
  return icmp;
}

// ---- golden bytes: these ARE the format; change them only with a version bump ----

TEST(FlowAdvertGolden, EchoRequest) {
  auto icmp = encoded();
  EXPECT_EQ(kMessageSize, 92u);
  EXPECT_EQ(toHex(icmp),
            "08" "00" "5a9b" "1234" "0001"            // echo request, code 0, checksum, id, seq
            + std::string(56 * 2, '0') +              // filler
            "534c5246"                                // 'S' 'L' 'R' 'F'
            "01" "01" "06" "00"                       // version 1, type flow, TCP, flags 0
            "0a000102" "9c40" "0050"                  // client 10.0.1.2, client port 40000, VIP port 80
            "0a64000a"                                // VIP 10.100.0.10
            "0a00030b" "1f90"                         // server 10.0.3.11, server port 8080
            "0000");                                  // reserved
  // The checksum covers the whole message: summing it with the field in gives 0.
  EXPECT_EQ(internetChecksum(icmp), 0);
  FlowAdvert out;
  ASSERT_EQ(decode(icmp, out), DecodeStatus::kOk);
  EXPECT_EQ(out, sample());
}

TEST(FlowAdvertGolden, ChecksumOverOtherValues) {
  FlowAdvert a = sample();
  a.proto = 17;
  a.client = 0xfffffffe;
  a.client_port = 65535;
  std::vector<std::byte> icmp(kMessageSize);
  ASSERT_EQ(encodeEchoRequest(icmp, 0xffff, 0xffff, a), kMessageSize);
  EXPECT_EQ(internetChecksum(icmp), 0);
  EXPECT_EQ(uint8_t(icmp[0]), 8);
  EXPECT_EQ(uint8_t(icmp[1]), 0);
}

// ---- encode ----

TEST(FlowAdvertEncode, BufferTooSmall) {
  std::vector<std::byte> small(kMessageSize - 1, std::byte{0xaa});
  EXPECT_EQ(encodeEchoRequest(small, 1, 1, sample()), 0u);
  // Untouched.
  for (auto b : small) EXPECT_EQ(uint8_t(b), 0xaa);
  EXPECT_EQ(encodeEchoRequest({}, 1, 1, sample()), 0u);
}

TEST(FlowAdvertEncode, LargerBufferOnlyFirst92Written) {
  std::vector<std::byte> big(200, std::byte{0xaa});
  ASSERT_EQ(encodeEchoRequest(big, 0x1234, 1, sample()), kMessageSize);
  EXPECT_EQ(std::vector<std::byte>(big.begin(), big.begin() + kMessageSize), encoded());
  for (size_t i = kMessageSize; i < big.size(); ++i) EXPECT_EQ(uint8_t(big[i]), 0xaa) << i;
}

// ---- decode ----

TEST(FlowAdvertDecode, RoundTripUdpAndReply) {
  FlowAdvert a = sample();
  a.proto = 17;
  auto icmp = encoded(a);
  // The client's reply: type 0, checksum adjusted; decode ignores both.
  icmp[0] = std::byte{0};
  FlowAdvert out;
  ASSERT_EQ(decode(icmp, out), DecodeStatus::kOk);
  EXPECT_EQ(out, a);
}

TEST(FlowAdvertDecode, TrailingBytesIgnored) {
  auto icmp = encoded();
  icmp.resize(icmp.size() + 100, std::byte{0x5a});
  FlowAdvert out;
  ASSERT_EQ(decode(icmp, out), DecodeStatus::kOk);
  EXPECT_EQ(out, sample());
}

TEST(FlowAdvertDecode, EveryStatus) {
  auto status = [](auto f) {
    auto icmp = encoded();
    f(icmp);
    FlowAdvert out;
    out.client = 0x11111111;  // must stay untouched on failure
    auto st = decode(icmp, out);
    if (st != DecodeStatus::kOk) {
      EXPECT_EQ(out.client, 0x11111111u) << decodeStatusName(st);
    }
    return st;
  };
  auto at = [](size_t off) { return kOffset + off; };
  EXPECT_EQ(status([](auto&) {}), DecodeStatus::kOk);
  // Too short at every length, or no magic: an ordinary echo.
  for (size_t n = 0; n < kMessageSize; ++n) {
    auto icmp = encoded();
    FlowAdvert out;
    EXPECT_EQ(decode(std::span<const std::byte>(icmp).first(n), out), DecodeStatus::kNotAdvert) << n;
  }
  for (size_t i = 0; i < 4; ++i)
    EXPECT_EQ(status([&](auto& b) { b[at(i)] = std::byte{'x'}; }), DecodeStatus::kNotAdvert) << i;
  // An ordinary ping (zero payload).
  EXPECT_EQ(status([](auto& b) { std::fill(b.begin() + 8, b.end(), std::byte{0}); }), DecodeStatus::kNotAdvert);
  EXPECT_EQ(status([&](auto& b) { b[at(4)] = std::byte{2}; }), DecodeStatus::kBadVersion);
  EXPECT_EQ(status([&](auto& b) { b[at(4)] = std::byte{0}; }), DecodeStatus::kBadVersion);
  EXPECT_EQ(status([&](auto& b) { b[at(5)] = std::byte{2}; }), DecodeStatus::kBadType);
  EXPECT_EQ(status([&](auto& b) { b[at(5)] = std::byte{0}; }), DecodeStatus::kBadType);
  for (uint8_t p : {0, 1, 4, 47, 58, 255})
    EXPECT_EQ(status([&](auto& b) { b[at(6)] = std::byte{p}; }), DecodeStatus::kBadProtocol) << int(p);
  EXPECT_EQ(status([&](auto& b) { b[at(7)] = std::byte{1}; }), DecodeStatus::kBadReserved);
  EXPECT_EQ(status([&](auto& b) { b[at(26)] = std::byte{1}; }), DecodeStatus::kBadReserved);
  EXPECT_EQ(status([&](auto& b) { b[at(27)] = std::byte{0x80}; }), DecodeStatus::kBadReserved);
  // Each address and port zero in turn.
  struct Field {
    size_t off, len;
  } fields[] = {{8, 4}, {12, 2}, {14, 2}, {16, 4}, {20, 4}, {24, 2}};
  for (auto f : fields)
    EXPECT_EQ(status([&](auto& b) { std::fill_n(b.begin() + at(f.off), f.len, std::byte{0}); }),
              DecodeStatus::kBadAddress)
        << f.off;
  // Checks come in the documented order: version before type before protocol ...
  EXPECT_EQ(status([&](auto& b) {
              b[at(4)] = std::byte{9};
              b[at(5)] = std::byte{9};
            }),
            DecodeStatus::kBadVersion);
  EXPECT_EQ(status([&](auto& b) {
              b[at(6)] = std::byte{9};
              b[at(7)] = std::byte{9};
            }),
            DecodeStatus::kBadProtocol);
}

TEST(FlowAdvertDecode, StatusNames) {
  EXPECT_STREQ(decodeStatusName(DecodeStatus::kOk), "ok");
  EXPECT_STREQ(decodeStatusName(DecodeStatus::kNotAdvert), "not_advert");
  EXPECT_STREQ(decodeStatusName(DecodeStatus::kBadVersion), "bad_version");
  EXPECT_STREQ(decodeStatusName(DecodeStatus::kBadType), "bad_type");
  EXPECT_STREQ(decodeStatusName(DecodeStatus::kBadProtocol), "bad_protocol");
  EXPECT_STREQ(decodeStatusName(DecodeStatus::kBadReserved), "bad_reserved");
  EXPECT_STREQ(decodeStatusName(DecodeStatus::kBadAddress), "bad_address");
}

// ---- keys ----

// keyOf(a) is the key parsePacket builds for the flow's client -> VIP packets,
// so the SLR finds (or inserts) exactly the flow-table entry of the connection.
TEST(FlowAdvertKey, MatchesParsePacket) {
  for (uint8_t proto : {uint8_t(6), uint8_t(17)}) {
    FlowAdvert a = sample();
    a.proto = proto;
    size_t l4len = proto == 6 ? 20 : 8;
    std::vector<std::byte> pkt(20 + l4len);
    Ipv4HeaderFields f;
    f.total_length = uint16_t(pkt.size());
    f.protocol = proto;
    f.src = a.client;
    f.dst = a.vip;
    ASSERT_GT(writeIpv4Header(pkt, f), 0u);
    store16(pkt.data() + 20, a.client_port);
    store16(pkt.data() + 22, a.vip_port);
    if (proto == 6) pkt[20 + 12] = std::byte{0x50};  // data offset 5
    PacketInfo info;
    ASSERT_EQ(parsePacket(pkt, info), ParseError::kOk);
    EXPECT_EQ(keyOf(a), info.key) << keyOf(a).str() << " vs " << info.key.str();
  }
  FlowKey k = keyOf(sample());
  EXPECT_EQ(k.str(), "tcp 10.0.1.2:40000 -> 10.100.0.10:80");
  EXPECT_EQ(k.family, Family::kV4);
  EXPECT_EQ(k.srcAddr(), *IpAddress::parse("10.0.1.2"));
  EXPECT_EQ(k.dstAddr(), *IpAddress::parse("10.100.0.10"));
}

TEST(FlowAdvertKey, DecodedEchoGivesTheFlowKey) {
  auto icmp = encoded();
  FlowAdvert out;
  ASSERT_EQ(decode(icmp, out), DecodeStatus::kOk);
  FlowKey k;
  k.family = Family::kV4;
  k.proto = 6;
  k.src = IpAddress::parse("10.0.1.2")->bytes;
  k.dst = IpAddress::parse("10.100.0.10")->bytes;
  k.sport = 40000;
  k.dport = 80;
  EXPECT_EQ(keyOf(out), k);
}

}  // namespace
}  // namespace slr::advert
