#pragma once
// Wire-format helpers for the packet path: big-endian loads/stores, the
// Internet checksum, a bounds-checked IPv4 header view and parsePacket(), the
// one parse that turns a received datagram into a flow context.
//
// Invariants: no allocation, no exceptions, no casts of bytes onto structs.
// Every read is bounds-checked against the span it came from; the unchecked
// pointer helpers are only for code that has already checked the length.
#include <cstddef>
#include <cstdint>
#include <span>

#include "core/net_types.h"

namespace slr {

// ---------------------------------------------------------------------------
// Big-endian loads and stores.

// Unchecked: the caller has verified that p[0..N) is inside its buffer.
inline uint16_t load16(const std::byte* p) {
  return uint16_t((uint16_t(p[0]) << 8) | uint16_t(p[1]));
}
inline uint32_t load32(const std::byte* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}
inline void store16(std::byte* p, uint16_t v) {
  p[0] = std::byte(v >> 8);
  p[1] = std::byte(v);
}
inline void store32(std::byte* p, uint32_t v) {
  p[0] = std::byte(v >> 24);
  p[1] = std::byte(v >> 16);
  p[2] = std::byte(v >> 8);
  p[3] = std::byte(v);
}

// Checked: false (and `out` / the buffer untouched) when [off, off+N) is not
// inside `s`.
inline bool load16(std::span<const std::byte> s, size_t off, uint16_t& out) {
  if (off > s.size() || s.size() - off < 2) return false;
  out = load16(s.data() + off);
  return true;
}
inline bool load32(std::span<const std::byte> s, size_t off, uint32_t& out) {
  if (off > s.size() || s.size() - off < 4) return false;
  out = load32(s.data() + off);
  return true;
}
inline bool store16(std::span<std::byte> s, size_t off, uint16_t v) {
  if (off > s.size() || s.size() - off < 2) return false;
  store16(s.data() + off, v);
  return true;
}
inline bool store32(std::span<std::byte> s, size_t off, uint32_t v) {
  if (off > s.size() || s.size() - off < 4) return false;
  store32(s.data() + off, v);
  return true;
}

// ---------------------------------------------------------------------------
// Internet checksum (RFC 1071) and incremental update (RFC 1624).

// Unfolded one's-complement sum of `data` (as big-endian 16-bit words, an odd
// trailing byte padded with zero) added to `initial`.  Chain calls only over
// even-length pieces (a pseudo-header, then a segment).
uint32_t checksumPartial(std::span<const std::byte> data, uint32_t initial = 0);
// Folds carries and complements: the value to put into a checksum field.
uint16_t checksumFold(uint32_t sum);
// checksumFold(checksumPartial(data, initial)).  Over data that contains a
// correct checksum field the result is 0.
uint16_t internetChecksum(std::span<const std::byte> data, uint32_t initial = 0);
// New checksum after a 16-bit (or 32-bit) field changed from old_val to
// new_val, without touching the rest of the data (RFC 1624 eqn. 3).
uint16_t checksumUpdate16(uint16_t check, uint16_t old_val, uint16_t new_val);
uint16_t checksumUpdate32(uint16_t check, uint32_t old_val, uint32_t new_val);

// IPv4 header checksum over `header` (exactly IHL*4 bytes).
// ipv4HeaderChecksum computes the value with the checksum field taken as zero;
// ipv4HeaderChecksumValid checks the stored one; setIpv4HeaderChecksum writes
// it (false if the span is shorter than 20 bytes).
uint16_t ipv4HeaderChecksum(std::span<const std::byte> header);
bool ipv4HeaderChecksumValid(std::span<const std::byte> header);
bool setIpv4HeaderChecksum(std::span<std::byte> header);

// ---------------------------------------------------------------------------
// Protocol numbers and header constants used across the packet path.
inline constexpr uint8_t kProtoIcmp = 1;
inline constexpr uint8_t kProtoIpip = 4;
inline constexpr uint8_t kProtoTcp = 6;
inline constexpr uint8_t kProtoUdp = 17;
inline constexpr size_t kIpv4MinHeader = 20;
inline constexpr size_t kIpv4MaxPacket = 65535;
inline constexpr uint16_t kIpv4FlagDf = 0x4000;  // in the flags/fragment-offset word
inline constexpr uint16_t kIpv4FlagMf = 0x2000;
inline constexpr uint16_t kIpv4FragOffsetMask = 0x1fff;

// TCP flag bits as found in PacketInfo::tcp_flags.
inline constexpr uint8_t kTcpFin = 0x01;
inline constexpr uint8_t kTcpSyn = 0x02;
inline constexpr uint8_t kTcpRst = 0x04;
inline constexpr uint8_t kTcpPsh = 0x08;
inline constexpr uint8_t kTcpAck = 0x10;

// ---------------------------------------------------------------------------
// Parse verdicts.  Also the drop-reason labels in status output, so names are
// stable snake_case (parseErrorName).  Add new values before kCount only.
enum class ParseError : uint8_t {
  kOk,
  kTruncated,          // buffer shorter than the IPv4 header or its total length
  kNotIpv4,            // version nibble neither 4 nor 6
  kUnsupportedFamily,  // IPv6 (version 6): not handled yet
  kBadHeaderLength,    // IHL < 5
  kBadTotalLength,     // total length < IHL*4
  kBadChecksum,        // IPv4 header checksum wrong
  kTruncatedL4,        // L4 header (TCP 20, UDP 8, ICMP 8 bytes) not inside total length
  kBadIcmpEmbedded,    // ICMP error whose embedded IPv4 header + 8 bytes do not parse
  kNotTunnel,          // decapsulate: outer protocol is not the codec's (4 for ipip)
  kFragmentedOuter,    // decapsulate: outer packet is a fragment (we never reassemble)
  kCount
};
// "ok", "truncated", "not_ipv4", "unsupported_family", "bad_header_length",
// "bad_total_length", "bad_checksum", "truncated_l4", "bad_icmp_embedded",
// "not_tunnel", "fragmented_outer"; "unknown" out of range.
const char* parseErrorName(ParseError e);

// ---------------------------------------------------------------------------
// Read-only IPv4 header view.  Construction never fails; every accessor is
// bounds-checked and returns 0 / an empty span when its bytes are missing.
// Use check() (or parsePacket) to know whether the header is well formed.
class Ipv4View {
 public:
  Ipv4View() = default;
  explicit Ipv4View(std::span<const std::byte> data) : data_(data) {}

  // kOk when: >= 20 bytes, version 4, IHL >= 5, IHL*4 <= total length <=
  // buffer size, and (if verify_checksum) the header checksum is right.
  ParseError check(bool verify_checksum = true) const;

  std::span<const std::byte> bytes() const { return data_; }
  uint8_t version() const { return uint8_t(u8(0) >> 4); }
  uint8_t ihl() const { return uint8_t(u8(0) & 0x0f); }
  size_t headerLength() const { return size_t(ihl()) * 4; }
  uint8_t tos() const { return u8(1); }
  uint16_t totalLength() const { return u16(2); }
  uint16_t id() const { return u16(4); }
  uint16_t flagsFragment() const { return u16(6); }  // raw word: flags + offset
  bool dontFragment() const { return (flagsFragment() & kIpv4FlagDf) != 0; }
  bool moreFragments() const { return (flagsFragment() & kIpv4FlagMf) != 0; }
  uint16_t fragmentOffset() const { return flagsFragment() & kIpv4FragOffsetMask; }  // 8-byte units
  bool isFragment() const { return moreFragments() || fragmentOffset() != 0; }
  uint8_t ttl() const { return u8(8); }
  uint8_t protocol() const { return u8(9); }
  uint16_t checksum() const { return u16(10); }
  uint32_t srcRaw() const { return u32(12); }  // host order
  uint32_t dstRaw() const { return u32(16); }  // host order
  IpAddress src() const { return IpAddress::v4(srcRaw()); }
  IpAddress dst() const { return IpAddress::v4(dstRaw()); }
  // Header bytes (IHL*4, clipped to the buffer) and options (after byte 20).
  std::span<const std::byte> header() const;
  std::span<const std::byte> options() const;
  // From IHL*4 to min(total length, buffer size); empty if the header is
  // longer than that.  Trailing bytes past the total length are not included.
  std::span<const std::byte> payload() const;

 private:
  uint8_t u8(size_t off) const { return off < data_.size() ? uint8_t(data_[off]) : 0; }
  uint16_t u16(size_t off) const {
    uint16_t v = 0;
    return load16(data_, off, v) ? v : 0;
  }
  uint32_t u32(size_t off) const {
    uint32_t v = 0;
    return load32(data_, off, v) ? v : 0;
  }
  std::span<const std::byte> data_;
};

// ---------------------------------------------------------------------------
// One parse, one flow context.
struct PacketInfo {
  FlowKey key;               // family kV4; ports host order; see parsePacket
  uint8_t tcp_flags = 0;     // TCP only (0 otherwise)
  bool is_fragment = false;  // MF set or fragment offset != 0: ports are 0
  uint16_t l3_len = 0;       // IPv4 total length
  uint16_t l4_offset = 0;    // IHL*4
  bool icmp_error = false;   // ICMP 3/11/12: key is the embedded flow reversed
};

// Parses an IPv4 datagram (no link-layer header).  Fills `out` only on kOk.
// Rules:
//  - IPv4 header validated (version, IHL >= 5, IHL*4 <= total length <= buffer,
//    checksum).  Trailing bytes past the total length are ignored.
//  - fragments (MF or offset != 0): ports 0, is_fragment; every fragment of a
//    datagram maps to one 3-tuple flow (the first one's ports are ignored too).
//  - TCP: needs the full 20-byte header; ports and flags.  UDP: 8 bytes; ports.
//  - ICMP echo request/reply: sport = dport = identifier.
//  - ICMP errors (3, 11, 12): key = the embedded flow REVERSED, so an error about
//    a packet the VIP sent maps to the flow of the client's packets;
//    icmp_error = true.  The embedded header's checksum and total length are not
//    checked (it is quoted, often cut short).
//  - other ICMP types and other protocols: ports 0.
ParseError parsePacket(std::span<const std::byte> pkt, PacketInfo& out);

// ---------------------------------------------------------------------------
// Builders (tests, host agent ICMP).

struct Ipv4HeaderFields {
  uint8_t tos = 0;
  uint16_t total_length = 20;  // header + payload
  uint16_t id = 0;
  bool df = false;
  bool mf = false;
  uint16_t frag_offset = 0;  // 8-byte units
  uint8_t ttl = 64;
  uint8_t protocol = 0;
  uint32_t src = 0;  // host order
  uint32_t dst = 0;  // host order
};
// Writes a 20-byte IPv4 header (no options) with a correct checksum at the
// start of `out`.  Returns 20, or 0 when `out` is shorter than 20 bytes.
size_t writeIpv4Header(std::span<std::byte> out, const Ipv4HeaderFields& f);

// Decrements the TTL of the IPv4 header at the start of `pkt` and patches the
// checksum incrementally.  False (nothing changed) if shorter than 20 bytes or
// the TTL is already 0 or 1 (the caller should then drop / send time exceeded).
bool decrementTtl(std::span<std::byte> pkt);

}  // namespace slr
