#pragma once
// The SLR flow advertisement a host carries in an ICMP echo request it sends
// from a VIP to a client whose connection stalled (the seed's Fig. 10).  The
// client's kernel echoes the payload back toward the VIP, so the reply meets
// whichever SLR now receives the flow's packets, and that SLR re-learns which
// host has the connection.
//
// ICMP message (offsets from the ICMP header):
//   0  type 8 (request) / 0 (reply), code 0, checksum, identifier, sequence
//   8  56 bytes of filler (zero): the 64 bytes an echo carries anyway
//  64  the advertisement, 28 bytes, all fields big endian:
//        0 'S' 'L' 'R' 'F'   magic
//        4 version = 1
//        5 type    = 1       (flow advertisement)
//        6 protocol          (6 TCP or 17 UDP)
//        7 flags   = 0
//        8 client IPv4 address
//       12 client port
//       14 VIP port
//       16 VIP IPv4 address
//       20 server IPv4 address (the host's tunnel address)
//       24 server port       (the service port on the host)
//       26 reserved = 0 (2 bytes)
// Anything after the advertisement is ignored.  Documented in
// man/slrctl.toml.5 (FLOW ADVERTISEMENT) and pinned by tests/unit/flow_advert_test.cc.
//
// Decoding is on the SLR's packet path: no allocation, no exceptions.
#include <cstddef>
#include <cstdint>
#include <span>

#include "core/net_types.h"

namespace slr::advert {

inline constexpr size_t kOffset = 64;  // from the ICMP header
inline constexpr size_t kSize = 28;
inline constexpr size_t kMessageSize = kOffset + kSize;  // ICMP bytes of an advertising echo
inline constexpr uint8_t kVersion = 1;
inline constexpr uint8_t kTypeFlow = 1;

struct FlowAdvert {
  uint8_t proto = 6;
  uint32_t client = 0;   // host order
  uint16_t client_port = 0;
  uint32_t vip = 0;      // host order
  uint16_t vip_port = 0;
  uint32_t server = 0;   // host order: the host's tunnel address
  uint16_t server_port = 0;
  friend bool operator==(const FlowAdvert&, const FlowAdvert&) = default;
};

enum class DecodeStatus : uint8_t {
  kOk,
  kNotAdvert,     // shorter than kMessageSize or no magic: an ordinary echo
  kBadVersion,
  kBadType,
  kBadProtocol,   // not TCP or UDP
  kBadReserved,   // flags or reserved not zero
  kBadAddress,    // a zero address or zero port
};
const char* decodeStatusName(DecodeStatus s);  // "ok", "not_advert", "bad_version", ...

// Writes a complete ICMP echo request (header, filler, advertisement,
// checksum) into icmp; returns kMessageSize, or 0 when icmp is too small.
size_t encodeEchoRequest(std::span<std::byte> icmp, uint16_t id, uint16_t seq, const FlowAdvert& a);

// icmp: an ICMP message from its header on (echo request or reply; type and
// checksum are the caller's business).  Fills out only on kOk.
DecodeStatus decode(std::span<const std::byte> icmp, FlowAdvert& out);

// The flow's key as parsePacket builds it for client -> VIP packets.
FlowKey keyOf(const FlowAdvert& a);

}  // namespace slr::advert
