#include "core/net_types.h"

#include <arpa/inet.h>

#include <charconv>

namespace slr {

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  std::string s(text);
  IpAddress a;
  if (inet_pton(AF_INET, s.c_str(), a.bytes.data()) == 1) {
    a.family = Family::kV4;
    return a;
  }
  if (inet_pton(AF_INET6, s.c_str(), a.bytes.data()) == 1) {
    a.family = Family::kV6;
    return a;
  }
  return std::nullopt;
}

std::string IpAddress::str() const {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (family == Family::kV4) {
    inet_ntop(AF_INET, bytes.data(), buf, sizeof buf);
  } else if (family == Family::kV6) {
    inet_ntop(AF_INET6, bytes.data(), buf, sizeof buf);
  } else {
    return "-";
  }
  return buf;
}

namespace {
int maxLen(Family f) { return f == Family::kV4 ? 32 : 128; }
bool bitsMatch(const IpAddress& a, const IpAddress& b, int len) {
  int full = len / 8, rest = len % 8;
  if (std::memcmp(a.bytes.data(), b.bytes.data(), full) != 0) return false;
  if (rest == 0) return true;
  uint8_t mask = uint8_t(0xff << (8 - rest));
  return (a.bytes[full] & mask) == (b.bytes[full] & mask);
}
}  // namespace

std::optional<Prefix> Prefix::parse(std::string_view text) {
  auto slash = text.find('/');
  auto addr = IpAddress::parse(text.substr(0, slash));
  if (!addr) return std::nullopt;
  int len = maxLen(addr->family);
  if (slash != std::string_view::npos) {
    auto lt = text.substr(slash + 1);
    auto [p, ec] = std::from_chars(lt.data(), lt.data() + lt.size(), len);
    if (ec != std::errc() || p != lt.data() + lt.size() || lt.empty()) return std::nullopt;
    if (len < 0 || len > maxLen(addr->family)) return std::nullopt;
  }
  Prefix pr{*addr, uint8_t(len)};
  // refuse host bits
  IpAddress masked = *addr;
  for (int i = 0; i < 16; ++i) {
    int bit0 = i * 8;
    if (bit0 >= len) masked.bytes[i] = 0;
    else if (bit0 + 8 > len) masked.bytes[i] &= uint8_t(0xff << (8 - (len - bit0)));
  }
  if (!(masked == *addr)) return std::nullopt;
  return pr;
}

bool Prefix::contains(const IpAddress& a) const {
  return a.family == addr.family && bitsMatch(a, addr, len);
}

std::string Prefix::str() const { return addr.str() + "/" + std::to_string(len); }

std::string protoName(uint8_t proto) {
  switch (proto) {
    case 6: return "tcp";
    case 17: return "udp";
    case 1: return "icmp";
    case 58: return "icmp6";
    default: return std::to_string(proto);
  }
}

std::string FlowKey::str() const {
  auto ep = [this](const IpAddress& a, uint16_t port) {
    std::string s = family == Family::kV6 ? "[" + a.str() + "]" : a.str();
    if (proto == 6 || proto == 17) s += ":" + std::to_string(port);
    return s;
  };
  return protoName(proto) + " " + ep(srcAddr(), sport) + " -> " + ep(dstAddr(), dport);
}

uint64_t flowHash(const FlowKey& k, uint64_t seed) {
  // 40 bytes as five 64-bit words, mixed with a multiply-xorshift round each
  // (wyhash-style folding).  Fast, seeded and good enough for table indexing.
  uint64_t w[5];
  std::memcpy(w, &k, sizeof w);
  uint64_t h = seed ^ 0x9e3779b97f4a7c15ull;
  for (uint64_t x : w) {
    h ^= x;
    __uint128_t m = __uint128_t(h ^ 0xa0761d6478bd642full) * (x ^ 0xe7037ed1a0b428dbull ^ h);
    h = uint64_t(m) ^ uint64_t(m >> 64);
  }
  h ^= h >> 29;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 32;
  return h;
}

}  // namespace slr
