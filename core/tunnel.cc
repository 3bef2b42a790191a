#include "core/tunnel.h"

namespace slr {

size_t IpipCodec::encapsulateV4(std::span<std::byte> frame, size_t inner_len, uint32_t src,
                                uint32_t dst, uint16_t ip_id) {
  if (inner_len < kIpv4MinHeader) return 0;
  if (inner_len > kIpv4MaxPacket - kOverhead) return 0;
  if (frame.size() < kOverhead + inner_len) return 0;
  std::byte* outer = frame.data();
  const std::byte* inner = outer + kOverhead;
  // Protocol 4 carries IPv4 only; an IPv6 inner packet would need protocol 41.
  if ((uint8_t(inner[0]) >> 4) != 4) return 0;

  size_t total = kOverhead + inner_len;
  // RFC 2003 3.1: TOS copied (ECN bits included, the "normal" mode of RFC
  // 6040), DF copied so path-MTU discovery of the inner flow keeps working
  // through the tunnel.
  uint16_t inner_ff = load16(inner + 6);
  outer[0] = std::byte(0x45);
  outer[1] = inner[1];
  store16(outer + 2, uint16_t(total));
  store16(outer + 4, ip_id);
  store16(outer + 6, uint16_t(inner_ff & kIpv4FlagDf));
  outer[8] = std::byte(kOuterTtl);
  outer[9] = std::byte(kProtoIpip);
  store16(outer + 10, 0);
  store32(outer + 12, src);
  store32(outer + 16, dst);
  store16(outer + 10, checksumFold(checksumPartial(std::span<const std::byte>(outer, kOverhead))));
  return total;
}

size_t IpipCodec::encapsulate(std::span<std::byte> frame, size_t inner_len, const IpAddress& src,
                              const IpAddress& dst, uint16_t ip_id) const {
  if (!src.isV4() || !dst.isV4()) return 0;
  return encapsulateV4(frame, inner_len, src.v4HostOrder(), dst.v4HostOrder(), ip_id);
}

DecapResult IpipCodec::decapsulateV4(std::span<const std::byte> outer) {
  DecapResult r;
  Ipv4View o(outer);
  r.error = o.check(true);
  if (r.error != ParseError::kOk) return r;
  r.outer_src = o.src();
  r.outer_dst = o.dst();
  if (o.protocol() != kProtoIpip) {
    r.error = ParseError::kNotTunnel;
    return r;
  }
  // We never reassemble: a fragmented tunnel packet means the path MTU to us
  // is below what the sender assumed, and should be visible in the counters.
  if (o.isFragment()) {
    r.error = ParseError::kFragmentedOuter;
    return r;
  }
  std::span<const std::byte> payload = o.payload();
  Ipv4View in(payload);
  ParseError ie = in.check(true);
  if (ie != ParseError::kOk) {
    r.error = ie;
    r.inner_error = true;
    return r;
  }
  r.inner = payload.first(in.totalLength());
  return r;
}

DecapResult IpipCodec::decapsulate(std::span<const std::byte> outer) const {
  return decapsulateV4(outer);
}

std::unique_ptr<TunnelCodec> makeTunnelCodec(std::string_view name) {
  if (name == "ipip") return std::make_unique<IpipCodec>();
  return nullptr;
}

}  // namespace slr
