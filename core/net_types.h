#pragma once
// Addresses, prefixes and flow keys.  Sized for IPv6 from the start: every
// address is 16 bytes with a family tag, IPv4 stored in the first 4 bytes
// (network order) and the rest zero, so an IPv4 and an IPv6 key never collide
// and the flow table, policy and protocol never need a redesign for IPv6.
#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace slr {

enum class Family : uint8_t { kNone = 0, kV4 = 4, kV6 = 6 };

struct IpAddress {
  Family family = Family::kNone;
  std::array<uint8_t, 16> bytes{};  // network order; IPv4 in bytes[0..3]

  static IpAddress v4(uint32_t host_order) {
    IpAddress a;
    a.family = Family::kV4;
    a.bytes[0] = uint8_t(host_order >> 24);
    a.bytes[1] = uint8_t(host_order >> 16);
    a.bytes[2] = uint8_t(host_order >> 8);
    a.bytes[3] = uint8_t(host_order);
    return a;
  }
  static IpAddress v4Bytes(const uint8_t* p) {
    IpAddress a;
    a.family = Family::kV4;
    std::memcpy(a.bytes.data(), p, 4);
    return a;
  }
  uint32_t v4HostOrder() const {
    return (uint32_t(bytes[0]) << 24) | (uint32_t(bytes[1]) << 16) | (uint32_t(bytes[2]) << 8) |
           uint32_t(bytes[3]);
  }
  bool isV4() const { return family == Family::kV4; }
  bool empty() const { return family == Family::kNone; }

  // "10.0.0.1" or "fd00::1"; nullopt when not an address.
  static std::optional<IpAddress> parse(std::string_view text);
  std::string str() const;

  friend bool operator==(const IpAddress&, const IpAddress&) = default;
};

struct Prefix {
  IpAddress addr;  // host bits zero
  uint8_t len = 0;

  // "10.100.0.0/24"; a bare address is a host prefix.  nullopt when malformed
  // or when host bits are set (an operator typo we refuse to guess about).
  static std::optional<Prefix> parse(std::string_view text);
  bool contains(const IpAddress& a) const;
  bool contains(const Prefix& p) const { return p.len >= len && contains(p.addr); }
  std::string str() const;

  friend bool operator==(const Prefix&, const Prefix&) = default;
};

// The 5-tuple of a flow.  Exactly 40 bytes, no implicit padding, so it can be
// compared and hashed as bytes.
struct FlowKey {
  std::array<uint8_t, 16> src{};
  std::array<uint8_t, 16> dst{};
  uint16_t sport = 0;  // host order
  uint16_t dport = 0;  // host order
  uint8_t proto = 0;
  Family family = Family::kNone;
  uint8_t pad[2] = {0, 0};

  IpAddress srcAddr() const {
    IpAddress a;
    a.family = family;
    a.bytes = src;
    return a;
  }
  IpAddress dstAddr() const {
    IpAddress a;
    a.family = family;
    a.bytes = dst;
    return a;
  }
  std::string str() const;  // "tcp 10.0.1.2:40000 -> 10.100.0.1:80"

  friend bool operator==(const FlowKey& a, const FlowKey& b) {
    return std::memcmp(&a, &b, sizeof(FlowKey)) == 0;
  }
};
static_assert(sizeof(FlowKey) == 40);

// Flow hash used by every path that hashes a flow (flow table, consistent
// hashing, stateless forwarding when the table is full).  Seeded so an
// attacker cannot aim collisions at a known function.
uint64_t flowHash(const FlowKey& k, uint64_t seed);

std::string protoName(uint8_t proto);

}  // namespace slr
