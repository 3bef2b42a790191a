#pragma once
// Control protocol between hosts and SLRs, and between a lower SLR and the
// SLR above it (runs inside TLS, see core/tls.h).  This header and
// core/protocol.cc are the authoritative definition of the wire format; it is
// documented byte by byte in man/slrctl.toml.5, section WIRE FORMAT, and
// pinned by golden vectors in tests/unit/protocol_test.cc.
//
// Frame: magic 'S''L' | version u8 (=1) | type u8 | body length u32 BE (<= kMaxBody) | body.
// Decoders take the BODY of one frame (what FrameReader hands out) and
// validate every field; a body must be consumed exactly.  Encoders return a
// whole frame (header + body) ready to write.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "core/net_types.h"
#include "core/result.h"

namespace slr::proto {

inline constexpr uint8_t kMagic[2] = {0x53, 0x4C};  // "SL"
inline constexpr uint8_t kVersion = 1;
inline constexpr size_t kHeaderSize = 8;
inline constexpr size_t kMaxBody = 65536;
inline constexpr size_t kMaxEntries = 1024;
inline constexpr size_t kMaxNameLen = 64;
inline constexpr size_t kMaxErrorText = 1024;
// Update/hold intervals: 1 ms .. 1000 h (the config's duration limit).
inline constexpr uint32_t kMaxIntervalMs = 3'600'000'000u;
// Load index travels as u32 micro-units, so 0 .. 4294.967295.
inline constexpr double kMaxLoad = 4294.967295;

enum class MsgType : uint8_t {
  kHello = 1, kHelloAck = 2, kUpdate = 3, kError = 4, kShortcut = 5,
  // SLR <-> SLR (HELLO role peer): hot-spare sync and WHOHAS.
  kFlowSync = 6, kSyncAck = 7, kHeartbeat = 8, kWhohas = 9, kIhave = 10,
};
// kPeer: another SLR at the same level (a hot-spare partner or a WHOHAS
// neighbour), allowed by [hot_spare].peer_name or [[neighbor]].name, not by [[host]].
enum class Role : uint8_t { kHost = 1, kSlr = 2, kPeer = 3 };

// Hello.capabilities bits.  Unknown bits are accepted and ignored (they are
// advertisements; a newer peer may offer more).
inline constexpr uint32_t kCapKernelTunnel = 1u << 0;
inline constexpr uint32_t kCapUserspaceTunnel = 1u << 1;
// "I send SHORTCUT for flows you tunnel to me" (a lower SLR with shortcut on).
inline constexpr uint32_t kCapShortcut = 1u << 2;
// Role peer: what the peer connection is for.
inline constexpr uint32_t kCapSpareSync = 1u << 3;  // hot-spare pair (FLOW_SYNC, SYNC_ACK, HEARTBEAT)
inline constexpr uint32_t kCapWhohas = 1u << 4;     // WHOHAS neighbour (WHOHAS, IHAVE)

// SubnetLoad flags bits (other bits must be zero in version 1).
inline constexpr uint8_t kFlagAvailable = 1u << 0;

// ErrorMsg codes.
inline constexpr uint16_t kNotAuthorised = 1;        // cert CN not configured
inline constexpr uint16_t kSubnetNotAuthorised = 2;  // advertised subnet not allowed
inline constexpr uint16_t kProtocolError = 3;
inline constexpr uint16_t kNameMismatch = 4;         // HELLO name != cert CN

struct Hello {
  Role role = Role::kHost;
  std::string name;            // 1..64 of [A-Za-z0-9._-]
  IpAddress tunnel_address;    // v4 or v6, not unspecified
  uint32_t update_interval_ms = 1000;  // 1..kMaxIntervalMs
  uint32_t capabilities = 0;
  friend bool operator==(const Hello&, const Hello&) = default;
};

struct HelloAck {
  std::string name;            // the SLR's name, same rules as Hello.name
  IpAddress tunnel_source;     // outer source of tunnels from this SLR
  uint32_t hold_time_ms = 3000;  // 1..kMaxIntervalMs
  friend bool operator==(const HelloAck&, const HelloAck&) = default;
};

struct SubnetLoad {
  Prefix prefix;               // host bits zero, len <= 32 (v4) / 128 (v6)
  double load = 0;             // finite, 0..kMaxLoad; resolution 1e-6
  bool available = true;
  friend bool operator==(const SubnetLoad&, const SubnetLoad&) = default;
};

struct Update {
  uint32_t seq = 0;
  std::vector<SubnetLoad> entries;  // <= kMaxEntries
  friend bool operator==(const Update&, const Update&) = default;
};

struct ErrorMsg {
  uint16_t code = kProtocolError;
  std::string text;            // <= 1024 bytes, printable ASCII 0x20..0x7e
  friend bool operator==(const ErrorMsg&, const ErrorMsg&) = default;
};

// SHORTCUT (lower SLR -> upper SLR): for each flow the upper SLR tunnelled
// down, the tunnel termination point the flow should go to from now on (the
// host's tunnel address), so later packets skip the lower SLR.
struct ShortcutEntry {
  // family 4 or 6 (src and dst share it); an IPv4 address in src/dst[0..3],
  // the other bytes and pad zero, as parsePacket builds keys.  Ports are zero
  // unless proto is TCP (6), UDP (17), or ICMP (1) / ICMPv6 (58), whose echo
  // identifier parsePacket puts in both ports.
  FlowKey key;
  IpAddress endpoint;          // v4 or v6, not unspecified
  friend bool operator==(const ShortcutEntry&, const ShortcutEntry&) = default;
};

struct Shortcut {
  std::vector<ShortcutEntry> entries;  // 1..kMaxEntries
  friend bool operator==(const Shortcut&, const Shortcut&) = default;
};

// FLOW_SYNC (main -> spare, or an active spare -> the recovering main): flow
// table changes, in order.  seq bumps per frame; the receiver acknowledges
// with SYNC_ACK.  A full resync is a stream of upserts.
enum class SyncOp : uint8_t { kUpsert = 1, kRemove = 2 };
inline constexpr uint16_t kNoHostId = 0xFFFF;  // next_hop: endpoint is a shortcut endpoint, not a [[host]]
struct FlowSyncEntry {
  SyncOp op = SyncOp::kUpsert;
  FlowKey key;                 // same rules as ShortcutEntry::key
  uint16_t next_hop = kNoHostId;  // [[host]] index in config order (both SLRs share the list)
  IpAddress endpoint;          // upsert: v4/v6 tunnel endpoint, not unspecified; remove: empty (family 0 on the wire)
  uint32_t label = 0;
  uint8_t state = 0;           // FlowState value 0..4
  uint32_t age_ms = 0;         // since the flow's first packet at the sender
  friend bool operator==(const FlowSyncEntry&, const FlowSyncEntry&) = default;
};
// On the wire an entry is 27..67 bytes (31 for an IPv4 upsert), so 1024 IPv4
// entries always fit a frame; validate() refuses a body over kMaxBody (only
// all-IPv6 batches of more than 978 entries), and encode() then sends as many
// leading entries as fit.
struct FlowSync {
  uint32_t seq = 0;
  std::vector<FlowSyncEntry> entries;  // 0..kMaxEntries (0: a pure marker, e.g. end of resync)
  bool resync_done = false;            // last frame of a full resync (flags bit 0)
  friend bool operator==(const FlowSync&, const FlowSync&) = default;
};
struct SyncAck {
  uint32_t seq = 0;  // highest FLOW_SYNC seq applied
  friend bool operator==(const SyncAck&, const SyncAck&) = default;
};
// HEARTBEAT (both ways, every [hot_spare].heartbeat).
enum class PairState : uint8_t { kStandby = 1, kActive = 2, kRecovering = 3, kHandover = 4 };
struct Heartbeat {
  uint32_t seq = 0;
  PairState state = PairState::kStandby;
  uint32_t flows = 0;          // flows the sender holds
  uint64_t hosts_digest = 0;   // hash of the [[host]] names in order: both sides must agree
  friend bool operator==(const Heartbeat&, const Heartbeat&) = default;
};
// WHOHAS (asker -> neighbour): who forwards these flows?  scope 1..8 = hops left.
inline constexpr uint8_t kMaxWhohasScope = 8;
struct WhohasEntry {
  uint32_t id = 0;
  FlowKey key;
  friend bool operator==(const WhohasEntry&, const WhohasEntry&) = default;
};
struct Whohas {
  uint8_t scope = 1;
  std::vector<WhohasEntry> entries;  // 1..kMaxEntries
  friend bool operator==(const Whohas&, const Whohas&) = default;
};
// IHAVE (neighbour -> asker): one answer per asked entry (found or not).
struct IhaveEntry {
  uint32_t id = 0;
  FlowKey key;
  bool found = false;
  IpAddress endpoint;  // found: the tunnel endpoint the flow goes to; else empty (family 0)
  friend bool operator==(const IhaveEntry&, const IhaveEntry&) = default;
};
struct Ihave {
  std::vector<IhaveEntry> entries;  // 1..kMaxEntries
  friend bool operator==(const Ihave&, const Ihave&) = default;
};

using Message = std::variant<Hello, HelloAck, Update, ErrorMsg, Shortcut, FlowSync, SyncAck,
                             Heartbeat, Whohas, Ihave>;

struct Frame {
  MsgType type = MsgType::kError;
  std::vector<std::byte> body;
};

// ---- field rules, usable by config validation and before encoding ----
// nullopt when valid, else the reason ("has invalid character '/'", "is empty", ...).
std::optional<std::string> checkName(std::string_view name);
// ErrorMsg text from arbitrary text (log lines, peer-supplied names): bytes
// outside 0x20..0x7e become '?', truncated to kMaxErrorText.  Always validates.
std::string sanitizeText(std::string_view text);
// Load index -> wire micro-units; nullopt when NaN/inf/negative/> kMaxLoad.
std::optional<uint32_t> loadToMicro(double load);
inline double microToLoad(uint32_t micro) { return double(micro) / 1e6; }

// Validate a message before sending it: the same rules the decoder enforces,
// so a message that passes always decodes to itself (modulo load rounding).
[[nodiscard]] Status validate(const Hello& m);
[[nodiscard]] Status validate(const HelloAck& m);
[[nodiscard]] Status validate(const Update& m);
[[nodiscard]] Status validate(const ErrorMsg& m);
[[nodiscard]] Status validate(const Shortcut& m);
[[nodiscard]] Status validate(const FlowSync& m);
[[nodiscard]] Status validate(const SyncAck& m);
[[nodiscard]] Status validate(const Heartbeat& m);
[[nodiscard]] Status validate(const Whohas& m);
[[nodiscard]] Status validate(const Ihave& m);

// ---- encoders: header + body.  Precondition: validate(m).ok().  Out-of-range
// values are clamped (name/text truncated, entries capped at kMaxEntries, load
// clamped, NaN -> 0) so the framing is always well formed. ----
std::vector<std::byte> encode(const Hello& m);
std::vector<std::byte> encode(const HelloAck& m);
std::vector<std::byte> encode(const Update& m);
std::vector<std::byte> encode(const ErrorMsg& m);
std::vector<std::byte> encode(const Shortcut& m);
std::vector<std::byte> encode(const FlowSync& m);
std::vector<std::byte> encode(const SyncAck& m);
std::vector<std::byte> encode(const Heartbeat& m);
std::vector<std::byte> encode(const Whohas& m);
std::vector<std::byte> encode(const Ihave& m);
std::vector<std::byte> encode(const Message& m);
// Frame header + arbitrary body (body.size() must be <= kMaxBody).
std::vector<std::byte> encodeFrame(MsgType type, std::span<const std::byte> body);

// ---- decoders: body of one frame -> message.  Errors have op "control
// protocol" and a precise detail, e.g. "update entry 3: prefix length 40 > 32
// for IPv4", "hello: name has invalid character '/'", "hello: body length 12
// != expected 17", "shortcut entry 2: family 5 is not 4 or 6". ----
Result<Hello> decodeHello(std::span<const std::byte> body);
Result<HelloAck> decodeHelloAck(std::span<const std::byte> body);
Result<Update> decodeUpdate(std::span<const std::byte> body);
Result<ErrorMsg> decodeError(std::span<const std::byte> body);
Result<Shortcut> decodeShortcut(std::span<const std::byte> body);
Result<FlowSync> decodeFlowSync(std::span<const std::byte> body);
Result<SyncAck> decodeSyncAck(std::span<const std::byte> body);
Result<Heartbeat> decodeHeartbeat(std::span<const std::byte> body);
Result<Whohas> decodeWhohas(std::span<const std::byte> body);
Result<Ihave> decodeIhave(std::span<const std::byte> body);
// Dispatch on frame.type.
Result<Message> decode(const Frame& frame);

// "HELLO", "HELLO_ACK", "UPDATE", "ERROR", "SHORTCUT", "FLOW_SYNC", "SYNC_ACK",
// "HEARTBEAT", "WHOHAS", "IHAVE"
std::string_view typeName(MsgType t);

// Incremental frame splitter for a byte stream.  Validates each header as soon
// as its bytes arrive (magic, version, type, length <= kMaxBody).  The
// internal buffer never holds more than kHeaderSize + kMaxBody bytes: append()
// takes what fits and returns how many bytes it took; call next() to drain
// complete frames, then append the rest.  Once next() reports an error the
// reader stays in that error (the stream cannot be resynchronised).
//
//   while (!data.empty()) {
//     data = data.subspan(reader.append(data));
//     for (;;) { auto f = reader.next(); if (!f) fail(f.error()); if (!*f) break; handle(**f); }
//   }
class FrameReader {
 public:
  FrameReader();

  // Copy in as much of `data` as fits; returns the number of bytes taken
  // (0 when full or in error).
  size_t append(std::span<const std::byte> data);

  // Zero-copy alternative for socket reads: read into writeSpace(), then
  // commit(n).  writeSpace() is empty when full or in error.
  std::span<std::byte> writeSpace();
  void commit(size_t n);

  // A complete frame, nullopt when more bytes are needed, or the (sticky) error.
  Result<std::optional<Frame>> next();

  bool failed() const { return error_.has_value(); }
  size_t buffered() const { return end_ - start_; }
  static constexpr size_t kCapacity = kHeaderSize + kMaxBody;

 private:
  void compact();
  std::optional<Error> checkHeader();

  std::vector<std::byte> buf_;  // fixed size kCapacity
  size_t start_ = 0;            // first unconsumed byte
  size_t end_ = 0;              // one past the last buffered byte
  std::optional<Error> error_;
};

}  // namespace slr::proto
