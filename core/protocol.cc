#include "core/protocol.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace slr::proto {

namespace {

constexpr size_t kAddrSize = 17;  // family u8 + 16 bytes
constexpr size_t kEntrySize = 1 + 1 + 16 + 4 + 1;
constexpr size_t kUpdateFixed = 4 + 2;
constexpr size_t kErrorFixed = 2 + 2;
// Hello without the name: role, name_len, address, interval, capabilities.
constexpr size_t kHelloFixed = 1 + 1 + kAddrSize + 4 + 4;
constexpr size_t kHelloAckFixed = 1 + kAddrSize + 4;
constexpr size_t kShortcutFixed = 2;  // count

Error protoError(std::string detail) { return Error{0, "control protocol", std::move(detail)}; }

std::string hex8(uint8_t v) {
  static const char* x = "0123456789abcdef";
  return std::string("0x") + x[v >> 4] + x[v & 15];
}

std::string charText(char c) {
  auto u = static_cast<unsigned char>(c);
  if (u >= 0x20 && u < 0x7f) return std::string("'") + c + "'";
  return hex8(u);
}

// ---- writer: appends big-endian fields to a byte vector ----
class Writer {
 public:
  explicit Writer(MsgType type) {
    out_.reserve(64);
    u8(kMagic[0]);
    u8(kMagic[1]);
    u8(kVersion);
    u8(static_cast<uint8_t>(type));
    u32(0);  // body length, patched by finish()
  }
  void u8(uint8_t v) { out_.push_back(std::byte{v}); }
  void u16(uint16_t v) {
    u8(uint8_t(v >> 8));
    u8(uint8_t(v));
  }
  void u32(uint32_t v) {
    u16(uint16_t(v >> 16));
    u16(uint16_t(v));
  }
  void bytes(const void* p, size_t n) {
    auto b = static_cast<const std::byte*>(p);
    out_.insert(out_.end(), b, b + n);
  }
  void addr(const IpAddress& a) {
    u8(static_cast<uint8_t>(a.family));
    bytes(a.bytes.data(), a.bytes.size());
  }
  std::vector<std::byte> finish() {
    uint32_t len = uint32_t(out_.size() - kHeaderSize);
    for (int i = 0; i < 4; ++i) out_[4 + i] = std::byte(uint8_t(len >> (24 - 8 * i)));
    return std::move(out_);
  }

 private:
  std::vector<std::byte> out_;
};

// ---- reader: bounds-checked big-endian loads over a body ----
class Reader {
 public:
  explicit Reader(std::span<const std::byte> b) : b_(b) {}
  size_t left() const { return b_.size() - pos_; }
  uint8_t u8() { return uint8_t(b_[pos_++]); }
  uint16_t u16() {
    uint16_t v = uint16_t(u8()) << 8;
    return v | u8();
  }
  uint32_t u32() {
    uint32_t v = uint32_t(u16()) << 16;
    return v | u16();
  }
  std::string str(size_t n) {
    std::string s(reinterpret_cast<const char*>(b_.data() + pos_), n);
    pos_ += n;
    return s;
  }
  void raw(uint8_t* dst, size_t n) {
    std::memcpy(dst, b_.data() + pos_, n);
    pos_ += n;
  }

 private:
  std::span<const std::byte> b_;
  size_t pos_ = 0;
};

std::optional<std::string> checkText(std::string_view text) {
  if (text.size() > kMaxErrorText)
    return "text length " + std::to_string(text.size()) + " > " + std::to_string(kMaxErrorText);
  for (size_t i = 0; i < text.size(); ++i) {
    auto u = static_cast<unsigned char>(text[i]);
    if (u < 0x20 || u >= 0x7f) return "text has non-printable character " + charText(text[i]) +
                                      " at offset " + std::to_string(i);
  }
  return std::nullopt;
}

std::optional<std::string> checkAddress(const IpAddress& a) {
  size_t used;
  if (a.family == Family::kV4) used = 4;
  else if (a.family == Family::kV6) used = 16;
  else return "address family " + std::to_string(int(a.family)) + " is not 4 or 6";
  for (size_t i = used; i < 16; ++i)
    if (a.bytes[i] != 0) return std::string("IPv4 address has non-zero byte ") + std::to_string(i);
  bool all_zero = std::all_of(a.bytes.begin(), a.bytes.end(), [](uint8_t b) { return b == 0; });
  if (all_zero) return "address " + a.str() + " is unspecified";
  return std::nullopt;
}

std::optional<std::string> checkPrefix(const Prefix& p) {
  int max = 0;
  if (p.addr.family == Family::kV4) max = 32;
  else if (p.addr.family == Family::kV6) max = 128;
  else return "address family " + std::to_string(int(p.addr.family)) + " is not 4 or 6";
  if (p.len > max)
    return "prefix length " + std::to_string(p.len) + " > " + std::to_string(max) +
           (max == 32 ? " for IPv4" : " for IPv6");
  for (int i = 0; i < 16; ++i) {
    int bit0 = i * 8;
    uint8_t keep = bit0 >= p.len ? 0 : bit0 + 8 <= p.len ? 0xff : uint8_t(0xff << (8 - (p.len - bit0)));
    if (p.addr.bytes[i] & ~keep) {
      if (i >= 4 && p.addr.family == Family::kV4)
        return std::string("IPv4 address has non-zero byte ") + std::to_string(i);
      return "prefix " + p.str() + " has host bits set";
    }
  }
  return std::nullopt;
}

std::optional<std::string> checkInterval(const char* what, uint32_t ms) {
  if (ms == 0 || ms > kMaxIntervalMs)
    return std::string(what) + " " + std::to_string(ms) + " out of range 1.." + std::to_string(kMaxIntervalMs);
  return std::nullopt;
}

// Reads family + 16 bytes; validation is left to the caller.
IpAddress readAddr(Reader& r) {
  IpAddress a;
  a.family = static_cast<Family>(r.u8());
  r.raw(a.bytes.data(), 16);
  return a;
}

Error lengthError(std::string_view msg, size_t got, size_t expected) {
  return protoError(std::string(msg) + ": body length " + std::to_string(got) + " != expected " +
                    std::to_string(expected));
}
Error shortError(std::string_view msg, size_t got, size_t minimum) {
  return protoError(std::string(msg) + ": body length " + std::to_string(got) + " < minimum " +
                    std::to_string(minimum));
}

template <typename F>
Status firstProblem(const char* msg, F&& checks) {
  if (auto p = checks()) return protoError(std::string(msg) + ": " + *p);
  return Ok{};
}

}  // namespace

std::optional<std::string> checkName(std::string_view name) {
  if (name.empty()) return std::string("name is empty");
  if (name.size() > kMaxNameLen)
    return "name length " + std::to_string(name.size()) + " > " + std::to_string(kMaxNameLen);
  for (char c : name) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == '-';
    if (!ok) return "name has invalid character " + charText(c);
  }
  return std::nullopt;
}

std::string sanitizeText(std::string_view text) {
  std::string out(text.substr(0, kMaxErrorText));
  for (auto& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
  return out;
}

std::optional<uint32_t> loadToMicro(double load) {
  if (!std::isfinite(load) || load < 0 || load > kMaxLoad) return std::nullopt;
  double micro = std::round(load * 1e6);
  if (micro > 4294967295.0) micro = 4294967295.0;
  return uint32_t(micro);
}

namespace {
std::optional<std::string> loadProblem(double load) {
  if (loadToMicro(load)) return std::nullopt;
  if (std::isnan(load)) return std::string("load is NaN");
  if (!std::isfinite(load)) return std::string("load is infinite");
  return "load " + std::to_string(load) + " out of range 0..4294.967295";
}

// SHORTCUT addresses travel compactly: 4 bytes for IPv4, 16 for IPv6.
size_t wireAddrLen(Family f) { return f == Family::kV4 ? 4 : 16; }
bool familyOk(uint8_t f) { return f == uint8_t(Family::kV4) || f == uint8_t(Family::kV6); }

std::optional<std::string> checkShortcutCount(size_t count) {
  if (count == 0 || count > kMaxEntries)
    return "entry count " + std::to_string(count) + " out of range 1.." + std::to_string(kMaxEntries);
  return std::nullopt;
}

// Protocols whose flow keys carry ports: TCP and UDP, and ICMP/ICMPv6 whose
// echo identifier parsePacket (core/packet.cc) puts in both ports.
bool hasPorts(uint8_t proto) { return proto == 6 || proto == 17 || proto == 1 || proto == 58; }

// The rules for a flow key on the wire (SHORTCUT, FLOW_SYNC, WHOHAS, IHAVE),
// shared by validate() and the decoders (which check the family first, as
// they need it to find the fields).
std::optional<std::string> checkKey(const FlowKey& k) {
  if (!familyOk(uint8_t(k.family))) return "family " + std::to_string(int(k.family)) + " is not 4 or 6";
  for (size_t i = wireAddrLen(k.family); i < 16; ++i) {
    if (k.src[i] != 0) return "source IPv4 address has non-zero byte " + std::to_string(i);
    if (k.dst[i] != 0) return "destination IPv4 address has non-zero byte " + std::to_string(i);
  }
  if (k.pad[0] != 0 || k.pad[1] != 0) return std::string("flow key padding is not zero");
  if (!hasPorts(k.proto) && (k.sport != 0 || k.dport != 0))
    return "ports must be 0 for protocol " + std::to_string(k.proto) + " (sport " + std::to_string(k.sport) +
           ", dport " + std::to_string(k.dport) + ")";
  return std::nullopt;
}

std::optional<std::string> checkShortcutEntry(const ShortcutEntry& e) {
  if (auto p = checkKey(e.key)) return p;
  if (auto p = checkAddress(e.endpoint)) return "endpoint: " + *p;
  return std::nullopt;
}

// An endpoint that may be absent (FLOW_SYNC remove, IHAVE not found): family
// 0 and no address bytes on the wire.  `present` says which form is required.
std::optional<std::string> checkOptionalEndpoint(const IpAddress& a, bool present, const char* absent_why) {
  if (present) {
    if (auto p = checkAddress(a)) return "endpoint: " + *p;
    return std::nullopt;
  }
  if (a.family != Family::kNone)
    return "endpoint: must be empty (family 0) " + std::string(absent_why) + ", got family " +
           std::to_string(int(a.family));
  if (a != IpAddress{}) return "endpoint: empty (family 0) but address bytes are not zero";
  return std::nullopt;
}

// Entry counts: FLOW_SYNC allows 0 (a marker frame), WHOHAS and IHAVE 1..kMaxEntries.
std::optional<std::string> checkCount(size_t count, size_t min) {
  if (count < min || count > kMaxEntries)
    return "entry count " + std::to_string(count) + " out of range " + std::to_string(min) + ".." +
           std::to_string(kMaxEntries);
  return std::nullopt;
}

constexpr uint8_t kMaxFlowState = 4;  // FlowState::kOther (core/flow_table.h)
constexpr uint8_t kSyncFlagResyncDone = 1u << 0;

std::optional<std::string> checkFlowSyncEntry(const FlowSyncEntry& e) {
  if (e.op != SyncOp::kUpsert && e.op != SyncOp::kRemove)
    return "op " + std::to_string(int(e.op)) + " is not 1 (upsert) or 2 (remove)";
  if (e.state > kMaxFlowState)
    return "state " + std::to_string(e.state) + " out of range 0.." + std::to_string(kMaxFlowState);
  if (auto p = checkKey(e.key)) return p;
  return checkOptionalEndpoint(e.endpoint, e.op == SyncOp::kUpsert, "for remove");
}

std::optional<std::string> checkIhaveEntry(const IhaveEntry& e) {
  if (auto p = checkKey(e.key)) return p;
  return checkOptionalEndpoint(e.endpoint, e.found, "when not found");
}

// Wire sizes of the variable parts.
size_t keyWireSize(const FlowKey& k) { return 2 + 2 * wireAddrLen(k.family) + 4; }
size_t optWireAddrLen(Family f) { return f == Family::kNone ? 0 : wireAddrLen(f); }
constexpr size_t kFlowSyncFixed = 4 + 1 + 2;                // seq, flags, count
constexpr size_t kFlowSyncEntryFixed = 1 + 1 + 2 + 4 + 4;   // op, state, next_hop, label, age_ms
constexpr size_t kSyncAckSize = 4;
constexpr size_t kHeartbeatSize = 4 + 1 + 4 + 8;
constexpr size_t kWhohasFixed = 1 + 2;                      // scope, count
constexpr size_t kIhaveFixed = 2;                           // count
size_t flowSyncEntryWireSize(const FlowSyncEntry& e) {
  return kFlowSyncEntryFixed + keyWireSize(e.key) + 1 + optWireAddrLen(e.endpoint.family);
}
}  // namespace

Status validate(const Hello& m) {
  return firstProblem("hello", [&]() -> std::optional<std::string> {
    if (m.role != Role::kHost && m.role != Role::kSlr && m.role != Role::kPeer)
      return "role " + std::to_string(int(m.role)) + " is not 1 (host), 2 (slr) or 3 (peer)";
    if (auto p = checkName(m.name)) return p;
    if (auto p = checkAddress(m.tunnel_address)) return "tunnel address: " + *p;
    return checkInterval("update interval ms", m.update_interval_ms);
  });
}

Status validate(const HelloAck& m) {
  return firstProblem("hello_ack", [&]() -> std::optional<std::string> {
    if (auto p = checkName(m.name)) return p;
    if (auto p = checkAddress(m.tunnel_source)) return "tunnel source: " + *p;
    return checkInterval("hold time ms", m.hold_time_ms);
  });
}

Status validate(const Update& m) {
  if (m.entries.size() > kMaxEntries)
    return protoError("update: entry count " + std::to_string(m.entries.size()) + " > " +
                      std::to_string(kMaxEntries));
  for (size_t i = 0; i < m.entries.size(); ++i) {
    const auto& e = m.entries[i];
    auto p = checkPrefix(e.prefix);
    if (!p) p = loadProblem(e.load);
    if (p) return protoError("update entry " + std::to_string(i) + ": " + *p);
  }
  return Ok{};
}

Status validate(const ErrorMsg& m) {
  return firstProblem("error", [&] { return checkText(m.text); });
}

Status validate(const Shortcut& m) {
  if (auto p = checkShortcutCount(m.entries.size())) return protoError("shortcut: " + *p);
  for (size_t i = 0; i < m.entries.size(); ++i)
    if (auto p = checkShortcutEntry(m.entries[i]))
      return protoError("shortcut entry " + std::to_string(i) + ": " + *p);
  return Ok{};
}

Status validate(const FlowSync& m) {
  if (auto p = checkCount(m.entries.size(), 0)) return protoError("flow_sync: " + *p);
  size_t body = kFlowSyncFixed;
  for (size_t i = 0; i < m.entries.size(); ++i) {
    if (auto p = checkFlowSyncEntry(m.entries[i]))
      return protoError("flow_sync entry " + std::to_string(i) + ": " + *p);
    body += flowSyncEntryWireSize(m.entries[i]);
  }
  // Only IPv6 flows can get here (1024 IPv4 entries take at most 31 KiB).
  if (body > kMaxBody)
    return protoError("flow_sync: body length " + std::to_string(body) + " > maximum " + std::to_string(kMaxBody) +
                      " (send fewer entries per frame)");
  return Ok{};
}

Status validate(const SyncAck&) { return Ok{}; }

Status validate(const Heartbeat& m) {
  return firstProblem("heartbeat", [&]() -> std::optional<std::string> {
    if (m.state < PairState::kStandby || m.state > PairState::kHandover)
      return "state " + std::to_string(int(m.state)) +
             " is not 1 (standby), 2 (active), 3 (recovering) or 4 (handover)";
    return std::nullopt;
  });
}

Status validate(const Whohas& m) {
  if (m.scope < 1 || m.scope > kMaxWhohasScope)
    return protoError("whohas: scope " + std::to_string(m.scope) + " out of range 1.." +
                      std::to_string(kMaxWhohasScope));
  if (auto p = checkCount(m.entries.size(), 1)) return protoError("whohas: " + *p);
  for (size_t i = 0; i < m.entries.size(); ++i)
    if (auto p = checkKey(m.entries[i].key)) return protoError("whohas entry " + std::to_string(i) + ": " + *p);
  return Ok{};
}

Status validate(const Ihave& m) {
  if (auto p = checkCount(m.entries.size(), 1)) return protoError("ihave: " + *p);
  for (size_t i = 0; i < m.entries.size(); ++i)
    if (auto p = checkIhaveEntry(m.entries[i])) return protoError("ihave entry " + std::to_string(i) + ": " + *p);
  return Ok{};
}

// ---- encoders ----

std::vector<std::byte> encode(const Hello& m) {
  Writer w(MsgType::kHello);
  w.u8(static_cast<uint8_t>(m.role));
  size_t n = std::min(m.name.size(), kMaxNameLen);
  w.u8(uint8_t(n));
  w.bytes(m.name.data(), n);
  w.addr(m.tunnel_address);
  w.u32(m.update_interval_ms);
  w.u32(m.capabilities);
  return w.finish();
}

std::vector<std::byte> encode(const HelloAck& m) {
  Writer w(MsgType::kHelloAck);
  size_t n = std::min(m.name.size(), kMaxNameLen);
  w.u8(uint8_t(n));
  w.bytes(m.name.data(), n);
  w.addr(m.tunnel_source);
  w.u32(m.hold_time_ms);
  return w.finish();
}

std::vector<std::byte> encode(const Update& m) {
  Writer w(MsgType::kUpdate);
  size_t count = std::min(m.entries.size(), kMaxEntries);
  w.u32(m.seq);
  w.u16(uint16_t(count));
  for (size_t i = 0; i < count; ++i) {
    const auto& e = m.entries[i];
    w.u8(static_cast<uint8_t>(e.prefix.addr.family));
    w.u8(e.prefix.len);
    w.bytes(e.prefix.addr.bytes.data(), 16);
    uint32_t micro;
    if (auto v = loadToMicro(e.load)) micro = *v;
    else micro = e.load > kMaxLoad ? 4294967295u : 0;  // clamp; NaN and negatives -> 0
    w.u32(micro);
    w.u8(e.available ? kFlagAvailable : 0);
  }
  return w.finish();
}

std::vector<std::byte> encode(const ErrorMsg& m) {
  Writer w(MsgType::kError);
  size_t n = std::min(m.text.size(), kMaxErrorText);
  w.u16(m.code);
  w.u16(uint16_t(n));
  w.bytes(m.text.data(), n);
  return w.finish();
}

std::vector<std::byte> encode(const Shortcut& m) {
  Writer w(MsgType::kShortcut);
  size_t count = std::min(m.entries.size(), kMaxEntries);
  w.u16(uint16_t(count));
  for (size_t i = 0; i < count; ++i) {
    const auto& k = m.entries[i].key;
    const auto& ep = m.entries[i].endpoint;
    size_t n = wireAddrLen(k.family);
    w.u8(k.proto);
    w.u8(static_cast<uint8_t>(k.family));
    w.bytes(k.src.data(), n);
    w.bytes(k.dst.data(), n);
    w.u16(k.sport);
    w.u16(k.dport);
    w.u8(static_cast<uint8_t>(ep.family));
    w.bytes(ep.bytes.data(), wireAddrLen(ep.family));
  }
  return w.finish();
}

namespace {
// A flow key as SHORTCUT carries it: proto, family, source and destination
// (4 or 16 bytes each), source port, destination port.
void writeKey(Writer& w, const FlowKey& k) {
  size_t n = wireAddrLen(k.family);
  w.u8(k.proto);
  w.u8(static_cast<uint8_t>(k.family));
  w.bytes(k.src.data(), n);
  w.bytes(k.dst.data(), n);
  w.u16(k.sport);
  w.u16(k.dport);
}
// Family, then 0 (absent), 4 or 16 address bytes.
void writeOptAddr(Writer& w, const IpAddress& a) {
  w.u8(static_cast<uint8_t>(a.family));
  w.bytes(a.bytes.data(), optWireAddrLen(a.family));
}
}  // namespace

std::vector<std::byte> encode(const FlowSync& m) {
  Writer w(MsgType::kFlowSync);
  // Cap the entries so the body fits a frame (only all-IPv6 batches need it).
  size_t count = 0, body = kFlowSyncFixed;
  while (count < std::min(m.entries.size(), kMaxEntries) &&
         body + flowSyncEntryWireSize(m.entries[count]) <= kMaxBody)
    body += flowSyncEntryWireSize(m.entries[count++]);
  w.u32(m.seq);
  w.u8(m.resync_done ? kSyncFlagResyncDone : 0);
  w.u16(uint16_t(count));
  for (size_t i = 0; i < count; ++i) {
    const auto& e = m.entries[i];
    w.u8(static_cast<uint8_t>(e.op));
    w.u8(e.state);
    w.u16(e.next_hop);
    w.u32(e.label);
    w.u32(e.age_ms);
    writeKey(w, e.key);
    writeOptAddr(w, e.endpoint);
  }
  return w.finish();
}

std::vector<std::byte> encode(const SyncAck& m) {
  Writer w(MsgType::kSyncAck);
  w.u32(m.seq);
  return w.finish();
}

std::vector<std::byte> encode(const Heartbeat& m) {
  Writer w(MsgType::kHeartbeat);
  w.u32(m.seq);
  w.u8(static_cast<uint8_t>(m.state));
  w.u32(m.flows);
  w.u32(uint32_t(m.hosts_digest >> 32));
  w.u32(uint32_t(m.hosts_digest));
  return w.finish();
}

std::vector<std::byte> encode(const Whohas& m) {
  Writer w(MsgType::kWhohas);
  size_t count = std::min(m.entries.size(), kMaxEntries);
  w.u8(m.scope);
  w.u16(uint16_t(count));
  for (size_t i = 0; i < count; ++i) {
    w.u32(m.entries[i].id);
    writeKey(w, m.entries[i].key);
  }
  return w.finish();
}

std::vector<std::byte> encode(const Ihave& m) {
  Writer w(MsgType::kIhave);
  size_t count = std::min(m.entries.size(), kMaxEntries);
  w.u16(uint16_t(count));
  for (size_t i = 0; i < count; ++i) {
    const auto& e = m.entries[i];
    w.u32(e.id);
    writeKey(w, e.key);
    w.u8(e.found ? 1 : 0);
    writeOptAddr(w, e.endpoint);
  }
  return w.finish();
}

std::vector<std::byte> encode(const Message& m) {
  return std::visit([](const auto& x) { return encode(x); }, m);
}

std::vector<std::byte> encodeFrame(MsgType type, std::span<const std::byte> body) {
  Writer w(type);
  w.bytes(body.data(), std::min(body.size(), kMaxBody));
  return w.finish();
}

// ---- decoders ----

Result<Hello> decodeHello(std::span<const std::byte> body) {
  if (body.size() < kHelloFixed) return shortError("hello", body.size(), kHelloFixed);
  Reader r(body);
  Hello m;
  uint8_t role = r.u8();
  if (role != uint8_t(Role::kHost) && role != uint8_t(Role::kSlr) && role != uint8_t(Role::kPeer))
    return protoError("hello: role " + std::to_string(role) + " is not 1 (host), 2 (slr) or 3 (peer)");
  m.role = static_cast<Role>(role);
  size_t n = r.u8();
  if (body.size() != kHelloFixed + n) return lengthError("hello", body.size(), kHelloFixed + n);
  m.name = r.str(n);
  if (auto p = checkName(m.name)) return protoError("hello: " + *p);
  m.tunnel_address = readAddr(r);
  if (auto p = checkAddress(m.tunnel_address)) return protoError("hello: tunnel address: " + *p);
  m.update_interval_ms = r.u32();
  if (auto p = checkInterval("update interval ms", m.update_interval_ms)) return protoError("hello: " + *p);
  m.capabilities = r.u32();
  return m;
}

Result<HelloAck> decodeHelloAck(std::span<const std::byte> body) {
  if (body.size() < kHelloAckFixed) return shortError("hello_ack", body.size(), kHelloAckFixed);
  Reader r(body);
  HelloAck m;
  size_t n = r.u8();
  if (body.size() != kHelloAckFixed + n) return lengthError("hello_ack", body.size(), kHelloAckFixed + n);
  m.name = r.str(n);
  if (auto p = checkName(m.name)) return protoError("hello_ack: " + *p);
  m.tunnel_source = readAddr(r);
  if (auto p = checkAddress(m.tunnel_source)) return protoError("hello_ack: tunnel source: " + *p);
  m.hold_time_ms = r.u32();
  if (auto p = checkInterval("hold time ms", m.hold_time_ms)) return protoError("hello_ack: " + *p);
  return m;
}

Result<Update> decodeUpdate(std::span<const std::byte> body) {
  if (body.size() < kUpdateFixed) return shortError("update", body.size(), kUpdateFixed);
  Reader r(body);
  Update m;
  m.seq = r.u32();
  size_t count = r.u16();
  if (count > kMaxEntries)
    return protoError("update: entry count " + std::to_string(count) + " > " + std::to_string(kMaxEntries));
  size_t expected = kUpdateFixed + count * kEntrySize;
  if (body.size() != expected) return lengthError("update", body.size(), expected);
  m.entries.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    SubnetLoad e;
    e.prefix.addr.family = static_cast<Family>(r.u8());
    e.prefix.len = r.u8();
    r.raw(e.prefix.addr.bytes.data(), 16);
    if (auto p = checkPrefix(e.prefix)) return protoError("update entry " + std::to_string(i) + ": " + *p);
    e.load = microToLoad(r.u32());
    uint8_t flags = r.u8();
    if (flags & ~kFlagAvailable)
      return protoError("update entry " + std::to_string(i) + ": reserved flag bits set (flags " + hex8(flags) + ")");
    e.available = (flags & kFlagAvailable) != 0;
    m.entries.push_back(e);
  }
  return m;
}

Result<ErrorMsg> decodeError(std::span<const std::byte> body) {
  if (body.size() < kErrorFixed) return shortError("error", body.size(), kErrorFixed);
  Reader r(body);
  ErrorMsg m;
  m.code = r.u16();
  size_t n = r.u16();
  if (n > kMaxErrorText)
    return protoError("error: text length " + std::to_string(n) + " > " + std::to_string(kMaxErrorText));
  if (body.size() != kErrorFixed + n) return lengthError("error", body.size(), kErrorFixed + n);
  m.text = r.str(n);
  if (auto p = checkText(m.text)) return protoError("error: " + *p);
  return m;
}

Result<Shortcut> decodeShortcut(std::span<const std::byte> body) {
  if (body.size() < kShortcutFixed) return shortError("shortcut", body.size(), kShortcutFixed);
  Reader r(body);
  size_t count = r.u16();
  if (auto p = checkShortcutCount(count)) return protoError("shortcut: " + *p);
  // Entries are 19 (IPv4) to 55 (IPv6) bytes: reserve only what the body can hold.
  constexpr size_t kSmallestEntry = 1 + 1 + 4 + 4 + 2 + 2 + 1 + 4;
  Shortcut m;
  m.entries.reserve(std::min(count, r.left() / kSmallestEntry));
  for (size_t i = 0; i < count; ++i) {
    std::string where = "shortcut entry " + std::to_string(i);
    // The entry's next `n` bytes must be in the body.
    auto truncated = [&](size_t n) { return shortError(where, body.size(), body.size() - r.left() + n); };
    ShortcutEntry e;
    if (r.left() < 2) return truncated(2);
    e.key.proto = r.u8();
    uint8_t family = r.u8();
    if (!familyOk(family)) return protoError(where + ": family " + std::to_string(family) + " is not 4 or 6");
    e.key.family = static_cast<Family>(family);
    size_t n = wireAddrLen(e.key.family);
    if (r.left() < 2 * n + 2 + 2 + 1) return truncated(2 * n + 2 + 2 + 1);
    r.raw(e.key.src.data(), n);
    r.raw(e.key.dst.data(), n);
    e.key.sport = r.u16();
    e.key.dport = r.u16();
    uint8_t ep_family = r.u8();
    if (!familyOk(ep_family))
      return protoError(where + ": endpoint: address family " + std::to_string(ep_family) + " is not 4 or 6");
    e.endpoint.family = static_cast<Family>(ep_family);
    size_t en = wireAddrLen(e.endpoint.family);
    if (r.left() < en) return truncated(en);
    r.raw(e.endpoint.bytes.data(), en);
    if (auto p = checkShortcutEntry(e)) return protoError(where + ": " + *p);
    m.entries.push_back(e);
  }
  if (r.left() != 0) return lengthError("shortcut", body.size(), body.size() - r.left());
  return m;
}

namespace {
// Reads the variable-length parts of an entry, refusing reads past the body
// with the same "entry i: body length N < minimum M" errors as SHORTCUT.
class EntryReader {
 public:
  EntryReader(Reader& r, std::span<const std::byte> body) : r_(r), body_(body) {}
  void at(std::string where) { where_ = std::move(where); }
  const std::string& where() const { return where_; }
  Error err(const std::string& what) const { return protoError(where_ + ": " + what); }
  // nullopt when the next n bytes are in the body.
  std::optional<Error> need(size_t n) const {
    if (r_.left() >= n) return std::nullopt;
    return shortError(where_, body_.size(), body_.size() - r_.left() + n);
  }
  std::optional<Error> key(FlowKey& k) {
    if (auto e = need(2)) return e;
    k.proto = r_.u8();
    uint8_t family = r_.u8();
    if (!familyOk(family)) return err("family " + std::to_string(family) + " is not 4 or 6");
    k.family = static_cast<Family>(family);
    size_t n = wireAddrLen(k.family);
    if (auto e = need(2 * n + 4)) return e;
    r_.raw(k.src.data(), n);
    r_.raw(k.dst.data(), n);
    k.sport = r_.u16();
    k.dport = r_.u16();
    return std::nullopt;
  }
  // Family 0 (absent), 4 or 6 and that many address bytes; whether it may be
  // absent is the caller's check.
  std::optional<Error> optAddr(IpAddress& a) {
    if (auto e = need(1)) return e;
    uint8_t family = r_.u8();
    if (family != 0 && !familyOk(family))
      return err("endpoint: address family " + std::to_string(family) + " is not 0, 4 or 6");
    a.family = static_cast<Family>(family);
    size_t n = optWireAddrLen(a.family);
    if (auto e = need(n)) return e;
    r_.raw(a.bytes.data(), n);
    return std::nullopt;
  }

 private:
  Reader& r_;
  std::span<const std::byte> body_;
  std::string where_;
};
}  // namespace

Result<FlowSync> decodeFlowSync(std::span<const std::byte> body) {
  if (body.size() < kFlowSyncFixed) return shortError("flow_sync", body.size(), kFlowSyncFixed);
  Reader r(body);
  FlowSync m;
  m.seq = r.u32();
  uint8_t flags = r.u8();
  if (flags & ~kSyncFlagResyncDone)
    return protoError("flow_sync: reserved flag bits set (flags " + hex8(flags) + ")");
  m.resync_done = (flags & kSyncFlagResyncDone) != 0;
  size_t count = r.u16();
  if (auto p = checkCount(count, 0)) return protoError("flow_sync: " + *p);
  constexpr size_t kSmallestEntry = kFlowSyncEntryFixed + 2 + 4 + 4 + 4 + 1;
  m.entries.reserve(std::min(count, r.left() / kSmallestEntry));
  EntryReader er(r, body);
  for (size_t i = 0; i < count; ++i) {
    er.at("flow_sync entry " + std::to_string(i));
    FlowSyncEntry e;
    if (auto x = er.need(kFlowSyncEntryFixed)) return *x;
    e.op = static_cast<SyncOp>(r.u8());
    e.state = r.u8();
    e.next_hop = r.u16();
    e.label = r.u32();
    e.age_ms = r.u32();
    if (e.op != SyncOp::kUpsert && e.op != SyncOp::kRemove)
      return er.err("op " + std::to_string(int(e.op)) + " is not 1 (upsert) or 2 (remove)");
    if (auto x = er.key(e.key)) return *x;
    if (auto x = er.optAddr(e.endpoint)) return *x;
    if (auto p = checkFlowSyncEntry(e)) return er.err(*p);
    m.entries.push_back(e);
  }
  if (r.left() != 0) return lengthError("flow_sync", body.size(), body.size() - r.left());
  return m;
}

Result<SyncAck> decodeSyncAck(std::span<const std::byte> body) {
  if (body.size() != kSyncAckSize) return lengthError("sync_ack", body.size(), kSyncAckSize);
  Reader r(body);
  return SyncAck{r.u32()};
}

Result<Heartbeat> decodeHeartbeat(std::span<const std::byte> body) {
  if (body.size() != kHeartbeatSize) return lengthError("heartbeat", body.size(), kHeartbeatSize);
  Reader r(body);
  Heartbeat m;
  m.seq = r.u32();
  m.state = static_cast<PairState>(r.u8());
  m.flows = r.u32();
  uint64_t hi = r.u32();
  m.hosts_digest = (hi << 32) | r.u32();
  if (auto s = validate(m); !s.ok()) return s.error();
  return m;
}

Result<Whohas> decodeWhohas(std::span<const std::byte> body) {
  if (body.size() < kWhohasFixed) return shortError("whohas", body.size(), kWhohasFixed);
  Reader r(body);
  Whohas m;
  m.scope = r.u8();
  if (m.scope < 1 || m.scope > kMaxWhohasScope)
    return protoError("whohas: scope " + std::to_string(m.scope) + " out of range 1.." +
                      std::to_string(kMaxWhohasScope));
  size_t count = r.u16();
  if (auto p = checkCount(count, 1)) return protoError("whohas: " + *p);
  constexpr size_t kSmallestEntry = 4 + 2 + 4 + 4 + 4;
  m.entries.reserve(std::min(count, r.left() / kSmallestEntry));
  EntryReader er(r, body);
  for (size_t i = 0; i < count; ++i) {
    er.at("whohas entry " + std::to_string(i));
    WhohasEntry e;
    if (auto x = er.need(4)) return *x;
    e.id = r.u32();
    if (auto x = er.key(e.key)) return *x;
    if (auto p = checkKey(e.key)) return er.err(*p);
    m.entries.push_back(e);
  }
  if (r.left() != 0) return lengthError("whohas", body.size(), body.size() - r.left());
  return m;
}

Result<Ihave> decodeIhave(std::span<const std::byte> body) {
  if (body.size() < kIhaveFixed) return shortError("ihave", body.size(), kIhaveFixed);
  Reader r(body);
  Ihave m;
  size_t count = r.u16();
  if (auto p = checkCount(count, 1)) return protoError("ihave: " + *p);
  constexpr size_t kSmallestEntry = 4 + 2 + 4 + 4 + 4 + 1 + 1;
  m.entries.reserve(std::min(count, r.left() / kSmallestEntry));
  EntryReader er(r, body);
  for (size_t i = 0; i < count; ++i) {
    er.at("ihave entry " + std::to_string(i));
    IhaveEntry e;
    if (auto x = er.need(4)) return *x;
    e.id = r.u32();
    if (auto x = er.key(e.key)) return *x;
    if (auto x = er.need(1)) return *x;
    uint8_t found = r.u8();
    if (found > 1) return er.err("found " + std::to_string(found) + " is not 0 or 1");
    e.found = found == 1;
    if (auto x = er.optAddr(e.endpoint)) return *x;
    if (auto p = checkIhaveEntry(e)) return er.err(*p);
    m.entries.push_back(e);
  }
  if (r.left() != 0) return lengthError("ihave", body.size(), body.size() - r.left());
  return m;
}

namespace {
template <typename T>
Result<Message> widen(Result<T> r) {
  if (!r) return r.error();
  return Message(std::move(r).value());
}
}  // namespace

Result<Message> decode(const Frame& frame) {
  switch (frame.type) {
    case MsgType::kHello: return widen(decodeHello(frame.body));
    case MsgType::kHelloAck: return widen(decodeHelloAck(frame.body));
    case MsgType::kUpdate: return widen(decodeUpdate(frame.body));
    case MsgType::kError: return widen(decodeError(frame.body));
    case MsgType::kShortcut: return widen(decodeShortcut(frame.body));
    case MsgType::kFlowSync: return widen(decodeFlowSync(frame.body));
    case MsgType::kSyncAck: return widen(decodeSyncAck(frame.body));
    case MsgType::kHeartbeat: return widen(decodeHeartbeat(frame.body));
    case MsgType::kWhohas: return widen(decodeWhohas(frame.body));
    case MsgType::kIhave: return widen(decodeIhave(frame.body));
  }
  return protoError("unknown message type " + std::to_string(int(frame.type)));
}

std::string_view typeName(MsgType t) {
  switch (t) {
    case MsgType::kHello: return "HELLO";
    case MsgType::kHelloAck: return "HELLO_ACK";
    case MsgType::kUpdate: return "UPDATE";
    case MsgType::kError: return "ERROR";
    case MsgType::kShortcut: return "SHORTCUT";
    case MsgType::kFlowSync: return "FLOW_SYNC";
    case MsgType::kSyncAck: return "SYNC_ACK";
    case MsgType::kHeartbeat: return "HEARTBEAT";
    case MsgType::kWhohas: return "WHOHAS";
    case MsgType::kIhave: return "IHAVE";
  }
  return "UNKNOWN";
}

// ---- FrameReader ----

FrameReader::FrameReader() : buf_(kCapacity) {}

void FrameReader::compact() {
  if (start_ == 0) return;
  if (end_ > start_) std::memmove(buf_.data(), buf_.data() + start_, end_ - start_);
  end_ -= start_;
  start_ = 0;
}

size_t FrameReader::append(std::span<const std::byte> data) {
  auto space = writeSpace();
  size_t n = std::min(space.size(), data.size());
  if (n) std::memcpy(space.data(), data.data(), n);
  commit(n);
  return n;
}

std::span<std::byte> FrameReader::writeSpace() {
  if (error_) return {};
  if (end_ == kCapacity) compact();
  else if (start_ > 0 && start_ == end_) start_ = end_ = 0;
  return std::span<std::byte>(buf_).subspan(end_);
}

void FrameReader::commit(size_t n) { end_ = std::min(end_ + n, kCapacity); }

// Checks whatever part of the header is buffered, so garbage is refused as
// soon as its first byte arrives rather than after 8.
std::optional<Error> FrameReader::checkHeader() {
  size_t have = end_ - start_;
  const std::byte* h = buf_.data() + start_;
  auto byte = [&](size_t i) { return uint8_t(h[i]); };
  for (size_t i = 0; i < 2 && i < have; ++i)
    if (byte(i) != kMagic[i])
      return protoError("bad magic byte " + std::to_string(i) + ": " + hex8(byte(i)) +
                        " (not an slrctl control stream)");
  if (have > 2 && byte(2) != kVersion)
    return protoError("unsupported protocol version " + std::to_string(byte(2)) + " (this build speaks version " +
                      std::to_string(kVersion) + ")");
  if (have > 3 && (byte(3) < uint8_t(MsgType::kHello) || byte(3) > uint8_t(MsgType::kIhave)))
    return protoError("unknown message type " + std::to_string(byte(3)));
  if (have >= kHeaderSize) {
    uint32_t len = (uint32_t(byte(4)) << 24) | (uint32_t(byte(5)) << 16) | (uint32_t(byte(6)) << 8) | byte(7);
    if (len > kMaxBody)
      return protoError("frame body length " + std::to_string(len) + " > maximum " + std::to_string(kMaxBody));
  }
  return std::nullopt;
}

Result<std::optional<Frame>> FrameReader::next() {
  if (error_) return *error_;
  if (auto e = checkHeader()) {
    error_ = std::move(e);
    return *error_;
  }
  size_t have = end_ - start_;
  if (have < kHeaderSize) return std::optional<Frame>();
  const std::byte* h = buf_.data() + start_;
  size_t len = (size_t(uint8_t(h[4])) << 24) | (size_t(uint8_t(h[5])) << 16) | (size_t(uint8_t(h[6])) << 8) |
               uint8_t(h[7]);
  if (have < kHeaderSize + len) return std::optional<Frame>();
  Frame f;
  f.type = static_cast<MsgType>(uint8_t(h[3]));
  f.body.assign(h + kHeaderSize, h + kHeaderSize + len);
  start_ += kHeaderSize + len;
  if (start_ == end_) start_ = end_ = 0;
  return std::optional<Frame>(std::move(f));
}

}  // namespace slr::proto
