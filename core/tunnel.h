#pragma once
// Tunnel encapsulation behind one interface.  IP-in-IP (protocol 4 over IPv4)
// is the first codec; GUE, GRE or an IPv6 outer header can join later as
// further TunnelCodec implementations without touching the callers.
//
// Encapsulation works IN PLACE: the receive path reads each packet at offset
// overhead() of its buffer, so the outer header is written into that headroom
// and the inner bytes are never copied.  No allocation, no exceptions.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "core/net_types.h"
#include "core/packet.h"

namespace slr {

struct DecapResult {
  ParseError error = ParseError::kOk;
  // When error != kOk: true if the outer header was fine and the inner one is
  // the problem (so the two can be counted apart).
  bool inner_error = false;
  IpAddress outer_src;  // set once the outer header parsed
  IpAddress outer_dst;
  // The inner datagram, trimmed to its own total length; empty on error.
  std::span<const std::byte> inner;

  bool ok() const { return error == ParseError::kOk; }
};

class TunnelCodec {
 public:
  virtual ~TunnelCodec() = default;
  virtual const char* name() const = 0;  // "ipip"
  virtual size_t overhead() const = 0;   // bytes prepended (20 for ipip)

  // `frame` holds overhead() bytes of headroom followed by `inner_len` bytes of
  // the inner packet; writes the outer header into the headroom.  Returns the
  // total length (overhead() + inner_len), or 0 when it cannot: frame too
  // small, inner shorter than its minimal header or not of the family the codec
  // carries, src/dst of the wrong family, or result > 65535 bytes.
  virtual size_t encapsulate(std::span<std::byte> frame, size_t inner_len, const IpAddress& src,
                             const IpAddress& dst, uint16_t ip_id) const = 0;

  // Validates the outer header (version, lengths, checksum, protocol, not a
  // fragment) and the inner header; returns the inner packet.
  virtual DecapResult decapsulate(std::span<const std::byte> outer) const = 0;
};

// IPv4-in-IPv4 (RFC 2003).  Outer: IPv4, no options, protocol 4, TTL 64, TOS
// and DF copied from the inner header, id = ip_id, checksum computed.
// Decapsulation accepts outer options (skipped), rejects outer fragments
// (kFragmentedOuter) and requires an IPv4 inner header that passes
// Ipv4View::check(), trailing bytes past its total length trimmed off.
class IpipCodec final : public TunnelCodec {
 public:
  static constexpr size_t kOverhead = 20;
  static constexpr uint8_t kOuterTtl = 64;

  const char* name() const override { return "ipip"; }
  size_t overhead() const override { return kOverhead; }
  size_t encapsulate(std::span<std::byte> frame, size_t inner_len, const IpAddress& src,
                     const IpAddress& dst, uint16_t ip_id) const override;
  DecapResult decapsulate(std::span<const std::byte> outer) const override;

  // The same, callable without a virtual dispatch on the hot path.  src/dst in
  // host order.
  static size_t encapsulateV4(std::span<std::byte> frame, size_t inner_len, uint32_t src,
                              uint32_t dst, uint16_t ip_id);
  static DecapResult decapsulateV4(std::span<const std::byte> outer);
};

// "ipip" -> IpipCodec; nullptr for an unknown name.
std::unique_ptr<TunnelCodec> makeTunnelCodec(std::string_view name);

}  // namespace slr
