#include "core/flow_advert.h"

#include <cstring>

#include "core/packet.h"

namespace slr::advert {

namespace {

constexpr uint8_t kMagic[4] = {'S', 'L', 'R', 'F'};
constexpr uint8_t kIcmpEchoRequest = 8;

// Field offsets inside the advertisement (see the header comment).
constexpr size_t kOffVersion = 4;
constexpr size_t kOffType = 5;
constexpr size_t kOffProto = 6;
constexpr size_t kOffFlags = 7;
constexpr size_t kOffClient = 8;
constexpr size_t kOffClientPort = 12;
constexpr size_t kOffVipPort = 14;
constexpr size_t kOffVip = 16;
constexpr size_t kOffServer = 20;
constexpr size_t kOffServerPort = 24;
constexpr size_t kOffReserved = 26;

}  // namespace

const char* decodeStatusName(DecodeStatus s) {
  switch (s) {
    case DecodeStatus::kOk: return "ok";
    case DecodeStatus::kNotAdvert: return "not_advert";
    case DecodeStatus::kBadVersion: return "bad_version";
    case DecodeStatus::kBadType: return "bad_type";
    case DecodeStatus::kBadProtocol: return "bad_protocol";
    case DecodeStatus::kBadReserved: return "bad_reserved";
    case DecodeStatus::kBadAddress: return "bad_address";
  }
  return "unknown";
}

size_t encodeEchoRequest(std::span<std::byte> icmp, uint16_t id, uint16_t seq, const FlowAdvert& a) {
  if (icmp.size() < kMessageSize) return 0;
  std::byte* p = icmp.data();
  std::memset(p, 0, kMessageSize);  // code, checksum, filler, flags and reserved are zero
  p[0] = std::byte{kIcmpEchoRequest};
  store16(p + 4, id);
  store16(p + 6, seq);
  std::byte* f = p + kOffset;
  std::memcpy(f, kMagic, sizeof kMagic);
  f[kOffVersion] = std::byte{kVersion};
  f[kOffType] = std::byte{kTypeFlow};
  f[kOffProto] = std::byte{a.proto};
  store32(f + kOffClient, a.client);
  store16(f + kOffClientPort, a.client_port);
  store16(f + kOffVipPort, a.vip_port);
  store32(f + kOffVip, a.vip);
  store32(f + kOffServer, a.server);
  store16(f + kOffServerPort, a.server_port);
  // Checksum over the whole ICMP message with the field zero (RFC 792).
  store16(p + 2, internetChecksum(std::span<const std::byte>(p, kMessageSize)));
  return kMessageSize;
}

DecodeStatus decode(std::span<const std::byte> icmp, FlowAdvert& out) {
  if (icmp.size() < kMessageSize) return DecodeStatus::kNotAdvert;
  const std::byte* f = icmp.data() + kOffset;
  if (std::memcmp(f, kMagic, sizeof kMagic) != 0) return DecodeStatus::kNotAdvert;
  if (uint8_t(f[kOffVersion]) != kVersion) return DecodeStatus::kBadVersion;
  if (uint8_t(f[kOffType]) != kTypeFlow) return DecodeStatus::kBadType;
  uint8_t proto = uint8_t(f[kOffProto]);
  if (proto != kProtoTcp && proto != kProtoUdp) return DecodeStatus::kBadProtocol;
  if (uint8_t(f[kOffFlags]) != 0 || load16(f + kOffReserved) != 0) return DecodeStatus::kBadReserved;
  FlowAdvert a;
  a.proto = proto;
  a.client = load32(f + kOffClient);
  a.client_port = load16(f + kOffClientPort);
  a.vip_port = load16(f + kOffVipPort);
  a.vip = load32(f + kOffVip);
  a.server = load32(f + kOffServer);
  a.server_port = load16(f + kOffServerPort);
  if (a.client == 0 || a.vip == 0 || a.server == 0 || a.client_port == 0 || a.vip_port == 0 ||
      a.server_port == 0)
    return DecodeStatus::kBadAddress;
  out = a;
  return DecodeStatus::kOk;
}

FlowKey keyOf(const FlowAdvert& a) {
  // As parsePacket does for an IPv4 TCP/UDP packet client -> VIP: IPv4 in
  // bytes 0..3 (network order), the rest and the padding zero, ports host order.
  FlowKey k;
  k.family = Family::kV4;
  k.proto = a.proto;
  for (int i = 0; i < 4; ++i) {
    k.src[i] = uint8_t(a.client >> (24 - 8 * i));
    k.dst[i] = uint8_t(a.vip >> (24 - 8 * i));
  }
  k.sport = a.client_port;
  k.dport = a.vip_port;
  return k;
}

}  // namespace slr::advert
