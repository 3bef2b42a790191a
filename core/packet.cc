#include "core/packet.h"

namespace slr {

// ---------------------------------------------------------------------------
// Checksum

uint32_t checksumPartial(std::span<const std::byte> data, uint32_t initial) {
  // 64-bit accumulator over 32-bit big-endian words: one's-complement addition
  // is associative, so summing 32-bit words and folding later is the same as
  // summing 16-bit words, with half the iterations and no overflow for any
  // datagram size.
  uint64_t sum = initial;
  const std::byte* p = data.data();
  size_t n = data.size();
  while (n >= 4) {
    sum += load32(p);
    p += 4;
    n -= 4;
  }
  if (n >= 2) {
    sum += load16(p);
    p += 2;
    n -= 2;
  }
  if (n == 1) sum += uint32_t(uint8_t(p[0])) << 8;  // pad the odd byte with zero
  while (sum >> 32) sum = (sum & 0xffffffffu) + (sum >> 32);
  // Fold to at most 17 bits so callers can keep adding without overflow.
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return uint32_t(sum);
}

uint16_t checksumFold(uint32_t sum) {
  uint64_t s = sum;
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return uint16_t(~s);
}

uint16_t internetChecksum(std::span<const std::byte> data, uint32_t initial) {
  return checksumFold(checksumPartial(data, initial));
}

uint16_t checksumUpdate16(uint16_t check, uint16_t old_val, uint16_t new_val) {
  // RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')
  uint32_t sum = uint32_t(uint16_t(~check)) + uint32_t(uint16_t(~old_val)) + new_val;
  return checksumFold(sum);
}

uint16_t checksumUpdate32(uint16_t check, uint32_t old_val, uint32_t new_val) {
  check = checksumUpdate16(check, uint16_t(old_val >> 16), uint16_t(new_val >> 16));
  return checksumUpdate16(check, uint16_t(old_val), uint16_t(new_val));
}

uint16_t ipv4HeaderChecksum(std::span<const std::byte> header) {
  if (header.size() < kIpv4MinHeader) return internetChecksum(header);
  // Sum around the checksum field (bytes 10-11) instead of copying the header.
  uint32_t s = checksumPartial(header.first(10));
  s = checksumPartial(header.subspan(12), s);
  return checksumFold(s);
}

bool ipv4HeaderChecksumValid(std::span<const std::byte> header) {
  return internetChecksum(header) == 0;
}

bool setIpv4HeaderChecksum(std::span<std::byte> header) {
  if (header.size() < kIpv4MinHeader) return false;
  store16(header.data() + 10, ipv4HeaderChecksum(header));
  return true;
}

// ---------------------------------------------------------------------------
// Names

const char* parseErrorName(ParseError e) {
  switch (e) {
    case ParseError::kOk: return "ok";
    case ParseError::kTruncated: return "truncated";
    case ParseError::kNotIpv4: return "not_ipv4";
    case ParseError::kUnsupportedFamily: return "unsupported_family";
    case ParseError::kBadHeaderLength: return "bad_header_length";
    case ParseError::kBadTotalLength: return "bad_total_length";
    case ParseError::kBadChecksum: return "bad_checksum";
    case ParseError::kTruncatedL4: return "truncated_l4";
    case ParseError::kBadIcmpEmbedded: return "bad_icmp_embedded";
    case ParseError::kNotTunnel: return "not_tunnel";
    case ParseError::kFragmentedOuter: return "fragmented_outer";
    case ParseError::kCount: break;
  }
  return "unknown";
}

// ---------------------------------------------------------------------------
// Ipv4View

ParseError Ipv4View::check(bool verify_checksum) const {
  if (data_.empty()) return ParseError::kTruncated;
  uint8_t v = version();
  // The version is decided on the first byte so an IPv6 packet is reported as
  // such even when shorter than an IPv4 header.
  if (v == 6) return ParseError::kUnsupportedFamily;
  if (v != 4) return ParseError::kNotIpv4;
  if (data_.size() < kIpv4MinHeader) return ParseError::kTruncated;
  if (ihl() < 5) return ParseError::kBadHeaderLength;
  size_t hlen = headerLength();
  size_t tot = totalLength();
  if (tot < hlen) return ParseError::kBadTotalLength;
  // A buffer shorter than the header or than the stated total length means
  // bytes are missing, whichever field points past the end.
  if (tot > data_.size()) return ParseError::kTruncated;
  if (verify_checksum && !ipv4HeaderChecksumValid(data_.first(hlen))) return ParseError::kBadChecksum;
  return ParseError::kOk;
}

std::span<const std::byte> Ipv4View::header() const {
  size_t h = headerLength();
  return data_.first(h < data_.size() ? h : data_.size());
}

std::span<const std::byte> Ipv4View::options() const {
  auto h = header();
  return h.size() > kIpv4MinHeader ? h.subspan(kIpv4MinHeader) : std::span<const std::byte>{};
}

std::span<const std::byte> Ipv4View::payload() const {
  size_t h = headerLength();
  size_t end = totalLength();
  if (end > data_.size()) end = data_.size();
  if (h < kIpv4MinHeader || h >= end) return {};
  return data_.subspan(h, end - h);
}

// ---------------------------------------------------------------------------
// parsePacket

namespace {

bool isIcmpError(uint8_t type) { return type == 3 || type == 11 || type == 12; }
bool isIcmpEcho(uint8_t type) { return type == 0 || type == 8; }

void setAddrs(FlowKey& k, const std::byte* src, const std::byte* dst) {
  // IPv4 in the first 4 bytes, the rest stays zero (FlowKey is value-initialised).
  for (int i = 0; i < 4; ++i) {
    k.src[i] = uint8_t(src[i]);
    k.dst[i] = uint8_t(dst[i]);
  }
}

// Ports of the L4 header at `l4` (at least 8 bytes; the caller checked).
// Echo messages give their identifier as both ports so request and reply of
// one ping session land on one flow.
void l4Ports(uint8_t proto, const std::byte* l4, uint16_t& sport, uint16_t& dport) {
  sport = dport = 0;
  if (proto == kProtoTcp || proto == kProtoUdp) {
    sport = load16(l4);
    dport = load16(l4 + 2);
  } else if (proto == kProtoIcmp && isIcmpEcho(uint8_t(l4[0]))) {
    sport = dport = load16(l4 + 4);
  }
}

// The quoted datagram inside an ICMP error: an IPv4 header plus (RFC 792) at
// least 8 bytes of its payload.  Fills `k` with that flow reversed.
bool parseEmbedded(std::span<const std::byte> q, FlowKey& k) {
  if (q.size() < kIpv4MinHeader) return false;
  uint8_t vihl = uint8_t(q[0]);
  if ((vihl >> 4) != 4) return false;
  size_t hlen = size_t(vihl & 0x0f) * 4;
  if (hlen < kIpv4MinHeader || q.size() < hlen) return false;
  const std::byte* h = q.data();
  uint8_t proto = uint8_t(h[9]);
  uint16_t frag = load16(h + 6);
  uint16_t sport = 0, dport = 0;
  if ((frag & (kIpv4FlagMf | kIpv4FragOffsetMask)) == 0) {
    // Ports are needed only when this protocol has them; otherwise a bare
    // header is enough.
    bool has_ports = proto == kProtoTcp || proto == kProtoUdp || proto == kProtoIcmp;
    if (has_ports) {
      if (q.size() - hlen < 8) return false;
      l4Ports(proto, h + hlen, sport, dport);
    }
  }
  // Reversed: the quoted packet travelled the other way.
  setAddrs(k, h + 16, h + 12);
  k.sport = dport;
  k.dport = sport;
  k.proto = proto;
  return true;
}

}  // namespace

ParseError parsePacket(std::span<const std::byte> pkt, PacketInfo& out) {
  Ipv4View ip(pkt);
  ParseError e = ip.check(true);
  if (e != ParseError::kOk) return e;

  const std::byte* h = pkt.data();
  size_t hlen = ip.headerLength();
  size_t tot = ip.totalLength();
  uint8_t proto = ip.protocol();

  PacketInfo info;
  info.key.family = Family::kV4;
  info.key.proto = proto;
  info.l3_len = uint16_t(tot);
  info.l4_offset = uint16_t(hlen);
  setAddrs(info.key, h + 12, h + 16);

  if (ip.isFragment()) {
    // Only the first fragment carries ports; ignoring them on every fragment
    // keeps all pieces of one datagram on one flow (and one host).
    info.is_fragment = true;
    out = info;
    return ParseError::kOk;
  }

  const std::byte* l4 = h + hlen;
  size_t l4len = tot - hlen;
  switch (proto) {
    case kProtoTcp:
      if (l4len < 20) return ParseError::kTruncatedL4;
      l4Ports(proto, l4, info.key.sport, info.key.dport);
      info.tcp_flags = uint8_t(l4[13]);
      break;
    case kProtoUdp:
      if (l4len < 8) return ParseError::kTruncatedL4;
      l4Ports(proto, l4, info.key.sport, info.key.dport);
      break;
    case kProtoIcmp: {
      if (l4len < 8) return ParseError::kTruncatedL4;
      uint8_t type = uint8_t(l4[0]);
      if (isIcmpError(type)) {
        FlowKey k;
        k.family = Family::kV4;
        if (!parseEmbedded(std::span<const std::byte>(l4 + 8, l4len - 8), k))
          return ParseError::kBadIcmpEmbedded;
        info.key = k;
        info.icmp_error = true;
      } else {
        l4Ports(proto, l4, info.key.sport, info.key.dport);
      }
      break;
    }
    default:
      break;
  }
  out = info;
  return ParseError::kOk;
}

// ---------------------------------------------------------------------------
// Builders

size_t writeIpv4Header(std::span<std::byte> out, const Ipv4HeaderFields& f) {
  if (out.size() < kIpv4MinHeader) return 0;
  std::byte* p = out.data();
  p[0] = std::byte(0x45);
  p[1] = std::byte(f.tos);
  store16(p + 2, f.total_length);
  store16(p + 4, f.id);
  uint16_t ff = uint16_t(f.frag_offset & kIpv4FragOffsetMask);
  if (f.df) ff |= kIpv4FlagDf;
  if (f.mf) ff |= kIpv4FlagMf;
  store16(p + 6, ff);
  p[8] = std::byte(f.ttl);
  p[9] = std::byte(f.protocol);
  store16(p + 10, 0);
  store32(p + 12, f.src);
  store32(p + 16, f.dst);
  store16(p + 10, ipv4HeaderChecksum(out.first(kIpv4MinHeader)));
  return kIpv4MinHeader;
}

bool decrementTtl(std::span<std::byte> pkt) {
  if (pkt.size() < kIpv4MinHeader) return false;
  uint8_t ttl = uint8_t(pkt[8]);
  if (ttl <= 1) return false;
  // TTL shares a 16-bit word with the protocol.
  uint16_t old_word = load16(pkt.data() + 8);
  pkt[8] = std::byte(ttl - 1);
  uint16_t new_word = load16(pkt.data() + 8);
  store16(pkt.data() + 10, checksumUpdate16(load16(pkt.data() + 10), old_word, new_word));
  return true;
}

}  // namespace slr
