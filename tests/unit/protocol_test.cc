// Control protocol: round trips, golden wire bytes, and every way a peer can
// send us something wrong.
#include "core/protocol.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "core/packet.h"
#include "tests/unit/hex_bytes.h"

namespace slr::proto {
namespace {

using testing::toHex;

std::span<const std::byte> bodyOf(const std::vector<std::byte>& frame) {
  return std::span<const std::byte>(frame).subspan(kHeaderSize);
}

Hello sampleHello() {
  Hello h;
  h.role = Role::kHost;
  h.name = "host1";
  h.tunnel_address = *IpAddress::parse("10.0.3.11");
  h.update_interval_ms = 1000;
  h.capabilities = kCapKernelTunnel | kCapUserspaceTunnel;
  return h;
}

Update sampleUpdate() {
  Update u;
  u.seq = 7;
  u.entries.push_back({*Prefix::parse("10.100.0.0/24"), 0.5, true});
  return u;
}

IpAddress ip(const char* s) { return *IpAddress::parse(s); }

// A flow key the way parsePacket builds one (unused address bytes zero).
FlowKey flowKey(uint8_t proto, const char* src, uint16_t sport, const char* dst, uint16_t dport) {
  FlowKey k;
  k.family = ip(src).family;
  k.src = ip(src).bytes;
  k.dst = ip(dst).bytes;
  k.sport = sport;
  k.dport = dport;
  k.proto = proto;
  return k;
}

Shortcut sampleShortcut() {
  Shortcut m;
  m.entries.push_back({flowKey(6, "10.0.1.2", 40000, "10.100.0.10", 80), ip("10.0.3.11")});
  return m;
}

// An IPv6 UDP flow to an IPv6 endpoint (55 bytes on the wire), then a GRE
// flow (no ports) to an IPv4 endpoint (19 bytes).
Shortcut twoEntryShortcut() {
  Shortcut m;
  m.entries.push_back({flowKey(17, "fd00:1::2", 5353, "fd00:100::10", 53), ip("fd00:3::b")});
  m.entries.push_back({flowKey(47, "10.0.1.3", 0, "10.100.0.11", 0), ip("10.0.3.12")});
  return m;
}
// Offsets inside twoEntryShortcut()'s body.
constexpr size_t kSc0 = 2, kSc1 = 2 + 55;

// FLOW_SYNC: an IPv4 TCP upsert to host 1, an IPv4 UDP remove.
FlowSync sampleFlowSync() {
  FlowSync m;
  m.seq = 9;
  FlowSyncEntry up;
  up.op = SyncOp::kUpsert;
  up.key = flowKey(6, "10.0.1.2", 40000, "10.100.0.10", 80);
  up.next_hop = 1;
  up.endpoint = ip("10.0.3.11");
  up.label = 0x01020304;
  up.state = 1;  // established
  up.age_ms = 1500;
  FlowSyncEntry rm;
  rm.op = SyncOp::kRemove;
  rm.key = flowKey(17, "10.0.1.3", 5353, "10.100.0.11", 53);
  rm.state = 3;
  m.entries = {up, rm};
  return m;
}
// Offsets inside sampleFlowSync()'s body: entries of 31 and 27 bytes.
constexpr size_t kFs0 = 7, kFs1 = 7 + 31;

Heartbeat sampleHeartbeat() { return Heartbeat{5, PairState::kActive, 1000, 0x0123456789abcdefull}; }

Whohas sampleWhohas() {
  Whohas m;
  m.scope = 2;
  m.entries.push_back({7, flowKey(6, "10.0.1.2", 40000, "10.100.0.10", 80)});
  return m;
}

// IHAVE: one found (IPv4 endpoint), one not found.
Ihave sampleIhave() {
  Ihave m;
  m.entries.push_back({7, flowKey(6, "10.0.1.2", 40000, "10.100.0.10", 80), true, ip("10.0.3.11")});
  m.entries.push_back({8, flowKey(17, "10.0.1.3", 5353, "10.100.0.11", 53), false, IpAddress{}});
  return m;
}
// Offsets inside sampleIhave()'s body: entries of 24 and 20 bytes.
constexpr size_t kIh0 = 2, kIh1 = 2 + 24;

// Offset of entry i's first byte inside an UPDATE body.
constexpr size_t entryOff(size_t i) { return 6 + i * 23; }

void expectError(const Status& s, std::string_view needle) {
  ASSERT_FALSE(s.ok()) << "expected error containing: " << needle;
  EXPECT_NE(s.error().detail.find(needle), std::string::npos) << s.error().detail;
}
template <typename T>
void expectError(const Result<T>& r, std::string_view needle) {
  ASSERT_FALSE(r.ok()) << "expected error containing: " << needle;
  EXPECT_NE(r.error().detail.find(needle), std::string::npos) << r.error().detail;
  EXPECT_EQ(r.error().op, "control protocol");
}

// ---- golden vectors: these bytes ARE the wire format; change them only with a version bump ----

TEST(ProtocolGolden, Hello) {
  auto bytes = encode(sampleHello());
  EXPECT_EQ(toHex(bytes),
            "534c0101" "00000020"                      // magic, v1, HELLO, len 32
            "01" "05" "686f737431"                     // role host, name "host1"
            "04" "0a00030b" "000000000000000000000000" // IPv4 10.0.3.11
            "000003e8"                                 // 1000 ms
            "00000003");                               // kernel | userspace
  auto h = decodeHello(bodyOf(bytes));
  ASSERT_TRUE(h.ok()) << h.error().message();
  EXPECT_EQ(*h, sampleHello());
}

TEST(ProtocolGolden, Update) {
  auto bytes = encode(sampleUpdate());
  EXPECT_EQ(toHex(bytes),
            "534c0103" "0000001d"                      // magic, v1, UPDATE, len 29
            "00000007" "0001"                          // seq 7, 1 entry
            "04" "18" "0a640000" "000000000000000000000000"  // 10.100.0.0/24
            "0007a120"                                 // load 0.5 = 500000 micro
            "01");                                     // available
  auto u = decodeUpdate(bodyOf(bytes));
  ASSERT_TRUE(u.ok()) << u.error().message();
  EXPECT_EQ(*u, sampleUpdate());
}

TEST(ProtocolGolden, ShortcutOneEntry) {
  auto bytes = encode(sampleShortcut());
  EXPECT_EQ(toHex(bytes),
            "534c0105" "00000015"                      // magic, v1, SHORTCUT, len 21
            "0001"                                     // 1 entry
            "06" "04" "0a000102" "0a64000a"            // tcp, IPv4 10.0.1.2 -> 10.100.0.10
            "9c40" "0050"                              // 40000 -> 80
            "04" "0a00030b");                          // endpoint IPv4 10.0.3.11
  auto m = decodeShortcut(bodyOf(bytes));
  ASSERT_TRUE(m.ok()) << m.error().message();
  EXPECT_EQ(*m, sampleShortcut());
}

TEST(ProtocolGolden, ShortcutTwoEntries) {
  auto bytes = encode(twoEntryShortcut());
  EXPECT_EQ(toHex(bytes),
            "534c0105" "0000004c"                      // magic, v1, SHORTCUT, len 76
            "0002"                                     // 2 entries
            "11" "06"                                  // udp, IPv6
            "fd000001000000000000000000000002"         // fd00:1::2
            "fd000100000000000000000000000010"         // fd00:100::10
            "14e9" "0035"                              // 5353 -> 53
            "06" "fd00000300000000000000000000000b"    // endpoint IPv6 fd00:3::b
            "2f" "04" "0a000103" "0a64000b"            // GRE, IPv4 10.0.1.3 -> 10.100.0.11
            "0000" "0000"                              // no ports
            "04" "0a00030c");                          // endpoint IPv4 10.0.3.12
  auto m = decodeShortcut(bodyOf(bytes));
  ASSERT_TRUE(m.ok()) << m.error().message();
  EXPECT_EQ(*m, twoEntryShortcut());
}

TEST(ProtocolGolden, FlowSync) {
  auto bytes = encode(sampleFlowSync());
  EXPECT_EQ(toHex(bytes),
            "534c0106" "00000041"                      // magic, v1, FLOW_SYNC, len 65
            "00000009" "00" "0002"                     // seq 9, flags 0, 2 entries
            "01" "01" "0001" "01020304" "000005dc"     // upsert, established, host 1, label, age 1500 ms
            "06" "04" "0a000102" "0a64000a" "9c40" "0050"  // tcp 10.0.1.2:40000 -> 10.100.0.10:80
            "04" "0a00030b"                            // endpoint IPv4 10.0.3.11
            "02" "03" "ffff" "00000000" "00000000"     // remove, udp state, no host, label 0, age 0
            "11" "04" "0a000103" "0a64000b" "14e9" "0035"  // udp 10.0.1.3:5353 -> 10.100.0.11:53
            "00");                                     // no endpoint
  auto m = decodeFlowSync(bodyOf(bytes));
  ASSERT_TRUE(m.ok()) << m.error().message();
  EXPECT_EQ(*m, sampleFlowSync());
  // An empty frame marking the end of a full resync.
  FlowSync done;
  done.seq = 10;
  done.resync_done = true;
  EXPECT_EQ(toHex(encode(done)), "534c0106" "00000007" "0000000a" "01" "0000");
  auto d = decodeFlowSync(bodyOf(encode(done)));
  ASSERT_TRUE(d.ok()) << d.error().message();
  EXPECT_EQ(*d, done);
}

TEST(ProtocolGolden, SyncAckAndHeartbeat) {
  auto ack = encode(SyncAck{0x01020304});
  EXPECT_EQ(toHex(ack), "534c0107" "00000004" "01020304");
  auto a = decodeSyncAck(bodyOf(ack));
  ASSERT_TRUE(a.ok()) << a.error().message();
  EXPECT_EQ(a->seq, 0x01020304u);
  auto hb = encode(sampleHeartbeat());
  EXPECT_EQ(toHex(hb),
            "534c0108" "00000011"                      // magic, v1, HEARTBEAT, len 17
            "00000005" "02" "000003e8"                 // seq 5, active, 1000 flows
            "0123456789abcdef");                       // hosts digest
  auto h = decodeHeartbeat(bodyOf(hb));
  ASSERT_TRUE(h.ok()) << h.error().message();
  EXPECT_EQ(*h, sampleHeartbeat());
}

TEST(ProtocolGolden, WhohasAndIhave) {
  auto w = encode(sampleWhohas());
  EXPECT_EQ(toHex(w),
            "534c0109" "00000015"                      // magic, v1, WHOHAS, len 21
            "02" "0001"                                // scope 2, 1 entry
            "00000007"                                 // id 7
            "06" "04" "0a000102" "0a64000a" "9c40" "0050");
  auto dw = decodeWhohas(bodyOf(w));
  ASSERT_TRUE(dw.ok()) << dw.error().message();
  EXPECT_EQ(*dw, sampleWhohas());
  auto i = encode(sampleIhave());
  EXPECT_EQ(toHex(i),
            "534c010a" "0000002e"                      // magic, v1, IHAVE, len 46
            "0002"                                     // 2 entries
            "00000007" "06" "04" "0a000102" "0a64000a" "9c40" "0050"
            "01" "04" "0a00030b"                       // found, endpoint 10.0.3.11
            "00000008" "11" "04" "0a000103" "0a64000b" "14e9" "0035"
            "00" "00");                                // not found, no endpoint
  auto di = decodeIhave(bodyOf(i));
  ASSERT_TRUE(di.ok()) << di.error().message();
  EXPECT_EQ(*di, sampleIhave());
}

TEST(ProtocolGolden, PeerHello) {
  Hello h = sampleHello();
  h.role = Role::kPeer;
  h.name = "slr2";
  h.capabilities = kCapSpareSync | kCapWhohas;
  EXPECT_EQ(kCapSpareSync, 8u);
  EXPECT_EQ(kCapWhohas, 16u);
  auto bytes = encode(h);
  EXPECT_EQ(toHex(bytes),
            "534c0101" "0000001f"                      // magic, v1, HELLO, len 31
            "03" "04" "736c7232"                       // role peer, name "slr2"
            "04" "0a00030b" "000000000000000000000000"
            "000003e8"
            "00000018");                               // spare sync | whohas
  ASSERT_TRUE(validate(h).ok());
  auto d = decodeHello(bodyOf(bytes));
  ASSERT_TRUE(d.ok()) << d.error().message();
  EXPECT_EQ(*d, h);
}

// ---- round trips ----

TEST(ProtocolRoundTrip, HelloV6AndSlrRole) {
  Hello h = sampleHello();
  h.role = Role::kSlr;
  h.name = std::string(64, 'a');
  h.name[3] = '.';
  h.name[10] = '_';
  h.name[20] = '-';
  h.tunnel_address = *IpAddress::parse("fd00::1:2");
  h.update_interval_ms = kMaxIntervalMs;
  h.capabilities = 0xffffffff;  // unknown bits are accepted
  ASSERT_TRUE(validate(h).ok());
  auto d = decodeHello(bodyOf(encode(h)));
  ASSERT_TRUE(d.ok()) << d.error().message();
  EXPECT_EQ(*d, h);
}

TEST(ProtocolRoundTrip, HelloAck) {
  HelloAck a{"slr1", *IpAddress::parse("10.0.2.2"), 3000};
  ASSERT_TRUE(validate(a).ok());
  auto bytes = encode(a);
  EXPECT_EQ(bytes.size(), kHeaderSize + 22 + 4);
  EXPECT_EQ(uint8_t(bytes[3]), uint8_t(MsgType::kHelloAck));
  auto d = decodeHelloAck(bodyOf(bytes));
  ASSERT_TRUE(d.ok()) << d.error().message();
  EXPECT_EQ(*d, a);
}

TEST(ProtocolRoundTrip, UpdateManyEntries) {
  Update u;
  u.seq = 0xfffffffe;
  for (size_t i = 0; i < kMaxEntries; ++i) {
    SubnetLoad e;
    if (i % 2) e.prefix = *Prefix::parse("fd00:" + std::to_string(i) + "::/32");
    else e.prefix = *Prefix::parse("10." + std::to_string(i % 256) + ".0.0/16");
    e.load = double(i) * 1.25;
    e.available = i % 3 != 0;
    u.entries.push_back(e);
  }
  u.entries[0].load = kMaxLoad;
  u.entries[2].prefix = *Prefix::parse("0.0.0.0/0");
  u.entries[4].prefix = *Prefix::parse("10.1.2.3/32");
  u.entries[1].prefix = *Prefix::parse("fd00::1/128");
  ASSERT_TRUE(validate(u).ok()) << validate(u).error().message();
  auto bytes = encode(u);
  EXPECT_EQ(bytes.size(), kHeaderSize + 6 + kMaxEntries * 23);
  auto d = decodeUpdate(bodyOf(bytes));
  ASSERT_TRUE(d.ok()) << d.error().message();
  EXPECT_EQ(*d, u);
}

TEST(ProtocolRoundTrip, EmptyUpdateIsAKeepalive) {
  Update u;
  u.seq = 1;
  auto d = decodeUpdate(bodyOf(encode(u)));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, u);
}

TEST(ProtocolRoundTrip, Error) {
  for (ErrorMsg m : {ErrorMsg{kNotAuthorised, "host 'h9' is not configured"}, ErrorMsg{kSubnetNotAuthorised, ""},
                     ErrorMsg{kProtocolError, std::string(kMaxErrorText, '~')},
                     ErrorMsg{kNameMismatch, "hello name 'a' != certificate CN 'b'"}}) {
    ASSERT_TRUE(validate(m).ok());
    auto d = decodeError(bodyOf(encode(m)));
    ASSERT_TRUE(d.ok()) << d.error().message();
    EXPECT_EQ(*d, m);
  }
}

TEST(ProtocolRoundTrip, GenericDecodeDispatches) {
  std::vector<Message> msgs = {sampleHello(), HelloAck{"slr1", *IpAddress::parse("10.0.2.2"), 3000},
                               sampleUpdate(), ErrorMsg{kProtocolError, "bye"}, twoEntryShortcut(),
                               sampleFlowSync(), SyncAck{1}, sampleHeartbeat(), sampleWhohas(),
                               sampleIhave()};
  FrameReader r;
  for (const auto& m : msgs) {
    auto b = encode(m);
    ASSERT_EQ(r.append(b), b.size());
  }
  for (const auto& m : msgs) {
    auto f = r.next();
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE(f->has_value());
    auto d = decode(**f);
    ASSERT_TRUE(d.ok()) << d.error().message();
    EXPECT_EQ(*d, m);
  }
}

TEST(ProtocolRoundTrip, ShortcutDispatchAndName) {
  auto bytes = encode(Message(sampleShortcut()));
  EXPECT_EQ(bytes, encode(sampleShortcut()));
  EXPECT_EQ(MsgType(uint8_t(bytes[3])), MsgType::kShortcut);
  EXPECT_EQ(typeName(MsgType::kShortcut), "SHORTCUT");
  auto body = bodyOf(bytes);
  auto d = decode(Frame{MsgType::kShortcut, {body.begin(), body.end()}});
  ASSERT_TRUE(d.ok()) << d.error().message();
  ASSERT_TRUE(std::holds_alternative<Shortcut>(*d));
  EXPECT_EQ(std::get<Shortcut>(*d), sampleShortcut());
  // The same body under another type is not a shortcut.
  EXPECT_FALSE(decode(Frame{MsgType::kUpdate, {body.begin(), body.end()}}).ok());
  EXPECT_NE(kCapShortcut, kCapKernelTunnel | kCapUserspaceTunnel);
  EXPECT_EQ(kCapShortcut, 4u);
}

TEST(ProtocolRoundTrip, ShortcutManyEntries) {
  Shortcut m;
  for (size_t i = 0; i < kMaxEntries; ++i) {
    ShortcutEntry e;
    std::string n = std::to_string(i % 250 + 1);
    switch (i % 4) {
      case 0: e.key = flowKey(6, ("10.0.1." + n).c_str(), uint16_t(1024 + i), "10.100.0.10", 443); break;
      case 1: e.key = flowKey(17, ("fd00:1::" + n).c_str(), 5353, "fd00:100::10", uint16_t(i)); break;
      case 2: e.key = flowKey(1, ("10.0.2." + n).c_str(), uint16_t(i), "10.100.0.10", uint16_t(i)); break;
      case 3: e.key = flowKey(50, ("fd00:2::" + n).c_str(), 0, "fd00:100::1", 0); break;
    }
    e.endpoint = i % 3 ? ip(("10.0.3." + n).c_str()) : ip(("fd00:3::" + n).c_str());
    m.entries.push_back(e);
  }
  ASSERT_TRUE(validate(m).ok()) << validate(m).error().message();
  auto bytes = encode(m);
  EXPECT_LE(bytes.size(), kHeaderSize + kMaxBody);
  auto d = decodeShortcut(bodyOf(bytes));
  ASSERT_TRUE(d.ok()) << d.error().message();
  EXPECT_EQ(*d, m);
  // The largest possible SHORTCUT (all IPv6) still fits in one frame.
  for (auto& e : m.entries) {
    e.key = flowKey(6, "fd00:1::1", 1, "fd00:100::1", 2);
    e.endpoint = ip("fd00:3::1");
  }
  bytes = encode(m);
  EXPECT_EQ(bytes.size(), kHeaderSize + 2 + kMaxEntries * 55);
  EXPECT_LE(bytes.size() - kHeaderSize, kMaxBody);
  EXPECT_TRUE(decodeShortcut(bodyOf(bytes)).ok());
}

// What the lower SLR sends names a flow exactly as the upper SLR's flow table
// does: keys decoded off the wire equal the ones parsePacket builds.
TEST(ProtocolRoundTrip, ShortcutKeysMatchParsePacket) {
  auto packet = [](uint8_t proto, std::vector<uint8_t> l4) {
    std::vector<std::byte> pkt(20 + l4.size());
    Ipv4HeaderFields f;
    f.total_length = uint16_t(pkt.size());
    f.protocol = proto;
    f.src = IpAddress::parse("10.0.1.2")->v4HostOrder();
    f.dst = IpAddress::parse("10.100.0.10")->v4HostOrder();
    writeIpv4Header(pkt, f);
    for (size_t i = 0; i < l4.size(); ++i) pkt[20 + i] = std::byte(l4[i]);
    PacketInfo info;
    EXPECT_EQ(parsePacket(pkt, info), ParseError::kOk);
    return info.key;
  };
  std::vector<uint8_t> tcp(20, 0);
  tcp[0] = 0x9c, tcp[1] = 0x40, tcp[2] = 0x00, tcp[3] = 0x50, tcp[12] = 0x50, tcp[13] = 0x02;  // SYN
  std::vector<uint8_t> echo = {8, 0, 0, 0, 0x12, 0x34, 0, 1};  // echo request, id 0x1234
  std::vector<uint8_t> gre(8, 0);
  Shortcut m;
  for (const FlowKey& k : {packet(6, tcp), packet(1, echo), packet(47, gre)}) m.entries.push_back({k, ip("10.0.3.11")});
  EXPECT_EQ(m.entries[0].key, flowKey(6, "10.0.1.2", 40000, "10.100.0.10", 80));
  EXPECT_EQ(m.entries[1].key.sport, 0x1234);  // ICMP echo: the identifier in both ports
  ASSERT_TRUE(validate(m).ok()) << validate(m).error().message();
  auto d = decodeShortcut(bodyOf(encode(m)));
  ASSERT_TRUE(d.ok()) << d.error().message();
  ASSERT_EQ(d->entries.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(d->entries[i].key, m.entries[i].key) << d->entries[i].key.str();
}

TEST(ProtocolRoundTrip, NewMessagesDispatchAndNames) {
  struct Case {
    Message m;
    MsgType type;
    std::string_view name;
  } cases[] = {
      {sampleFlowSync(), MsgType::kFlowSync, "FLOW_SYNC"}, {SyncAck{3}, MsgType::kSyncAck, "SYNC_ACK"},
      {sampleHeartbeat(), MsgType::kHeartbeat, "HEARTBEAT"}, {sampleWhohas(), MsgType::kWhohas, "WHOHAS"},
      {sampleIhave(), MsgType::kIhave, "IHAVE"},
  };
  for (const auto& c : cases) {
    auto bytes = encode(c.m);
    EXPECT_EQ(MsgType(uint8_t(bytes[3])), c.type);
    EXPECT_EQ(typeName(c.type), c.name);
    auto body = bodyOf(bytes);
    auto d = decode(Frame{c.type, {body.begin(), body.end()}});
    ASSERT_TRUE(d.ok()) << c.name << ": " << d.error().message();
    EXPECT_EQ(*d, c.m) << c.name;
    EXPECT_TRUE(std::visit([](const auto& x) { return validate(x).ok(); }, c.m)) << c.name;
    // Through a FrameReader too.
    FrameReader r;
    ASSERT_EQ(r.append(bytes), bytes.size());
    auto f = r.next();
    ASSERT_TRUE(f.ok()) << c.name << ": " << f.error().message();
    ASSERT_TRUE(f->has_value());
    EXPECT_EQ((*f)->type, c.type);
  }
  EXPECT_EQ(typeName(MsgType(11)), "UNKNOWN");
  expectError(decode(Frame{MsgType(11), {}}), "unknown message type 11");
}

TEST(ProtocolRoundTrip, FlowSyncManyEntries) {
  FlowSync m;
  m.seq = 0xffffffff;
  m.resync_done = true;
  for (size_t i = 0; i < kMaxEntries; ++i) {
    FlowSyncEntry e;
    std::string n = std::to_string(i % 250 + 1);
    e.op = i % 5 == 4 ? SyncOp::kRemove : SyncOp::kUpsert;
    switch (i % 3) {
      case 0: e.key = flowKey(6, ("10.0.1." + n).c_str(), uint16_t(1024 + i), "10.100.0.10", 443); break;
      case 1: e.key = flowKey(17, ("fd00:1::" + n).c_str(), 5353, "fd00:100::10", uint16_t(i)); break;
      case 2: e.key = flowKey(47, ("10.0.2." + n).c_str(), 0, "10.100.0.10", 0); break;
    }
    if (e.op == SyncOp::kUpsert) e.endpoint = i % 2 ? ip(("10.0.3." + n).c_str()) : ip(("fd00:3::" + n).c_str());
    e.next_hop = i % 7 == 0 ? kNoHostId : uint16_t(i);
    e.label = uint32_t(i * 2654435761u);
    e.state = uint8_t(i % 5);
    e.age_ms = uint32_t(i * 1000);
    m.entries.push_back(e);
  }
  ASSERT_TRUE(validate(m).ok()) << validate(m).error().message();
  auto bytes = encode(m);
  EXPECT_LE(bytes.size() - kHeaderSize, kMaxBody);
  auto d = decodeFlowSync(bodyOf(bytes));
  ASSERT_TRUE(d.ok()) << d.error().message();
  EXPECT_EQ(*d, m);
  // All-IPv4 batches of 1024 always fit (31 bytes an entry).
  for (auto& e : m.entries) {
    e.op = SyncOp::kUpsert;
    e.key = flowKey(6, "10.0.1.1", 1, "10.100.0.1", 2);
    e.endpoint = ip("10.0.3.1");
  }
  EXPECT_EQ(encode(m).size(), kHeaderSize + 7 + kMaxEntries * 31);
  // 1024 all-IPv6 entries (67 bytes each) would not fit in one frame: validate
  // says so, and the encoder sends as many as fit, still a well-formed frame.
  for (auto& e : m.entries) {
    e.key = flowKey(6, "fd00:1::1", 1, "fd00:100::1", 2);
    e.endpoint = ip("fd00:3::1");
  }
  expectError(validate(m), "flow_sync: body length 68615 > maximum 65536");
  bytes = encode(m);
  EXPECT_LE(bytes.size() - kHeaderSize, kMaxBody);
  auto capped = decodeFlowSync(bodyOf(bytes));
  ASSERT_TRUE(capped.ok()) << capped.error().message();
  EXPECT_EQ(capped->entries.size(), (kMaxBody - 7) / 67);
}

TEST(ProtocolRoundTrip, WhohasIhaveManyEntriesAndIpv6) {
  Whohas w;
  w.scope = kMaxWhohasScope;
  Ihave ih;
  for (size_t i = 0; i < kMaxEntries; ++i) {
    std::string n = std::to_string(i % 250 + 1);
    FlowKey k = i % 2 ? flowKey(6, ("fd00:1::" + n).c_str(), uint16_t(i), "fd00:100::10", 443)
                      : flowKey(1, ("10.0.1." + n).c_str(), uint16_t(i), "10.100.0.10", uint16_t(i));
    w.entries.push_back({uint32_t(i), k});
    bool found = i % 3 != 0;
    ih.entries.push_back({uint32_t(i), k, found,
                          found ? (i % 2 ? ip(("fd00:3::" + n).c_str()) : ip(("10.0.3." + n).c_str())) : IpAddress{}});
  }
  ASSERT_TRUE(validate(w).ok()) << validate(w).error().message();
  ASSERT_TRUE(validate(ih).ok()) << validate(ih).error().message();
  auto wb = encode(w), ib = encode(ih);
  EXPECT_LE(wb.size() - kHeaderSize, kMaxBody);
  EXPECT_LE(ib.size() - kHeaderSize, kMaxBody);
  auto dw = decodeWhohas(bodyOf(wb));
  ASSERT_TRUE(dw.ok()) << dw.error().message();
  EXPECT_EQ(*dw, w);
  auto di = decodeIhave(bodyOf(ib));
  ASSERT_TRUE(di.ok()) << di.error().message();
  EXPECT_EQ(*di, ih);
  // The largest possible of each (all IPv6, all found) fits in one frame.
  for (auto& e : ih.entries) {
    e.key = flowKey(6, "fd00:1::1", 1, "fd00:100::1", 2);
    e.found = true;
    e.endpoint = ip("fd00:3::1");
  }
  EXPECT_EQ(encode(ih).size(), kHeaderSize + 2 + kMaxEntries * 60);
  EXPECT_TRUE(decodeIhave(bodyOf(encode(ih))).ok());
}

TEST(ProtocolRoundTrip, LoadResolution) {
  EXPECT_EQ(loadToMicro(0.0), 0u);
  EXPECT_EQ(loadToMicro(1.0), 1000000u);
  EXPECT_EQ(loadToMicro(0.0000004), 0u);
  EXPECT_EQ(loadToMicro(0.0000006), 1u);
  EXPECT_EQ(loadToMicro(kMaxLoad), 4294967295u);
  EXPECT_FALSE(loadToMicro(-0.1));
  EXPECT_FALSE(loadToMicro(4294.9673));
  EXPECT_FALSE(loadToMicro(std::nan("")));
  EXPECT_FALSE(loadToMicro(std::numeric_limits<double>::infinity()));
}

// ---- malformed input ----

TEST(ProtocolMalformed, TruncatedAtEveryLength) {
  std::vector<std::vector<std::byte>> frames = {encode(sampleHello()),
                                                encode(HelloAck{"slr1", *IpAddress::parse("10.0.2.2"), 3000}),
                                                encode(sampleUpdate()), encode(ErrorMsg{3, "nope"}),
                                                encode(sampleShortcut()), encode(twoEntryShortcut()),
                                                encode(sampleFlowSync()), encode(SyncAck{1}),
                                                encode(sampleHeartbeat()), encode(sampleWhohas()),
                                                encode(sampleIhave())};
  for (const auto& f : frames) {
    auto body = bodyOf(f);
    for (size_t n = 0; n < body.size(); ++n) {
      auto part = body.first(n);
      auto type = MsgType(uint8_t(f[3]));
      auto d = decode(Frame{type, {part.begin(), part.end()}});
      EXPECT_FALSE(d.ok()) << typeName(type) << " truncated to " << n;
    }
    // one extra byte is just as wrong
    std::vector<std::byte> longer(body.begin(), body.end());
    longer.push_back(std::byte{0});
    auto d = decode(Frame{MsgType(uint8_t(f[3])), longer});
    ASSERT_FALSE(d.ok());
    EXPECT_NE(d.error().detail.find("!= expected"), std::string::npos) << d.error().detail;

    // And the FrameReader waits (nullopt) for every proper prefix of the frame.
    for (size_t n = 0; n < f.size(); ++n) {
      FrameReader r;
      r.append(std::span(f).first(n));
      auto x = r.next();
      ASSERT_TRUE(x.ok()) << n;
      EXPECT_FALSE(x->has_value()) << n;
    }
  }
}

TEST(ProtocolMalformed, BodyLengthMessages) {
  auto hello = encode(sampleHello());
  auto body = bodyOf(hello);
  std::vector<std::byte> b(body.begin(), body.begin() + 30);
  expectError(decodeHello(b), "hello: body length 30 != expected 32");
  expectError(decodeHello(std::span(b).first(3)), "hello: body length 3 < minimum 27");
  auto update = encode(sampleUpdate());
  auto ub = bodyOf(update);
  expectError(decodeUpdate(ub.first(12)), "update: body length 12 != expected 29");
  expectError(decodeUpdate(ub.first(5)), "update: body length 5 < minimum 6");
}

TEST(ProtocolMalformed, HelloFields) {
  auto mutate = [](auto f) {
    auto bytes = encode(sampleHello());
    std::vector<std::byte> body(bytes.begin() + kHeaderSize, bytes.end());
    f(body);
    return decodeHello(body);
  };
  expectError(mutate([](auto& b) { b[0] = std::byte{4}; }), "hello: role 4 is not 1 (host), 2 (slr) or 3 (peer)");
  expectError(mutate([](auto& b) { b[0] = std::byte{0}; }), "hello: role 0 is not");
  EXPECT_TRUE(mutate([](auto& b) { b[0] = std::byte{3}; }).ok());  // peer
  expectError(mutate([](auto& b) { b[2] = std::byte{'/'}; }), "hello: name has invalid character '/'");
  expectError(mutate([](auto& b) { b[2] = std::byte{0}; }), "invalid character 0x00");
  expectError(mutate([](auto& b) { b[7] = std::byte{5}; }), "address family 5 is not 4 or 6");
  expectError(mutate([](auto& b) { b[7] = std::byte{0}; }), "address family 0");
  expectError(mutate([](auto& b) { b[8 + 4] = std::byte{1}; }), "IPv4 address has non-zero byte 4");
  expectError(mutate([](auto& b) {
                for (int i = 0; i < 4; ++i) b[8 + i] = std::byte{0};
              }),
              "unspecified");
  expectError(mutate([](auto& b) {
                for (int i = 0; i < 4; ++i) b[24 + i] = std::byte{0};
              }),
              "update interval ms 0 out of range");
  expectError(mutate([](auto& b) {
                for (int i = 0; i < 4; ++i) b[24 + i] = std::byte{0xff};
              }),
              "update interval ms 4294967295 out of range 1..3600000000");
  // name_len 0
  Hello h = sampleHello();
  h.name = "";
  expectError(validate(h), "name is empty");
  auto e = encode(h);
  expectError(decodeHello(bodyOf(e)), "name is empty");
  // 65-byte name: validate refuses; on the wire (hand-built) the decoder refuses.
  h.name = std::string(65, 'x');
  expectError(validate(h), "name length 65 > 64");
  std::vector<std::byte> body = {std::byte{1}, std::byte{65}};
  for (int i = 0; i < 65; ++i) body.push_back(std::byte{'x'});
  auto hello = encode(sampleHello());
  auto tail = bodyOf(hello).subspan(2 + 5);
  body.insert(body.end(), tail.begin(), tail.end());
  expectError(decodeHello(body), "name length 65 > 64");
}

TEST(ProtocolMalformed, UpdateFields) {
  Update u = sampleUpdate();
  u.entries.push_back({*Prefix::parse("10.101.0.0/24"), 0.25, false});
  u.entries.push_back({*Prefix::parse("10.102.0.0/24"), 0.25, false});
  u.entries.push_back({*Prefix::parse("fd00::/64"), 0.25, false});
  auto mutate = [&](auto f) {
    auto bytes = encode(u);
    std::vector<std::byte> body(bytes.begin() + kHeaderSize, bytes.end());
    f(body);
    return decodeUpdate(body);
  };
  ASSERT_TRUE(mutate([](auto&) {}).ok());
  expectError(mutate([](auto& b) { b[entryOff(3) + 1] = std::byte{129}; }),
              "update entry 3: prefix length 129 > 128 for IPv6");
  expectError(mutate([](auto& b) {
                b[entryOff(3)] = std::byte{4};
                b[entryOff(3) + 1] = std::byte{40};
              }),
              "update entry 3: prefix length 40 > 32 for IPv4");
  expectError(mutate([](auto& b) { b[entryOff(1)] = std::byte{5}; }),
              "update entry 1: address family 5 is not 4 or 6");
  expectError(mutate([](auto& b) { b[entryOff(2) + 2 + 3] = std::byte{1}; }),
              "update entry 2: prefix 10.102.0.1/24 has host bits set");
  expectError(mutate([](auto& b) { b[entryOff(2) + 2 + 9] = std::byte{1}; }),
              "update entry 2: IPv4 address has non-zero byte 9");
  expectError(mutate([](auto& b) { b[entryOff(0) + 22] = std::byte{3}; }),
              "update entry 0: reserved flag bits set (flags 0x03)");
  // count 1025 with a matching body length is refused for the count.
  std::vector<std::byte> big(6 + 1025 * 23);
  big[4] = std::byte{0x04};
  big[5] = std::byte{0x01};
  expectError(decodeUpdate(big), "update: entry count 1025 > 1024");
  // count says 5 but 4 entries present
  expectError(mutate([](auto& b) { b[5] = std::byte{5}; }), "update: body length 98 != expected 121");

  // Sender-side checks.
  Update bad = sampleUpdate();
  bad.entries[0].load = std::nan("");
  expectError(validate(bad), "update entry 0: load is NaN");
  bad.entries[0].load = -1;
  expectError(validate(bad), "out of range");
  bad.entries[0].load = std::numeric_limits<double>::infinity();
  expectError(validate(bad), "load is infinite");
  bad.entries[0].load = 1;
  bad.entries[0].prefix.len = 40;
  expectError(validate(bad), "update entry 0: prefix length 40 > 32 for IPv4");
  bad.entries[0].prefix = Prefix{*IpAddress::parse("10.100.0.1"), 24};
  expectError(validate(bad), "host bits set");
  bad.entries.assign(1025, sampleUpdate().entries[0]);
  expectError(validate(bad), "update: entry count 1025 > 1024");
  // The encoder never emits something a decoder refuses at the framing level.
  auto enc = encode(bad);
  EXPECT_EQ(enc.size(), kHeaderSize + 6 + 1024 * 23);
  Update nan = sampleUpdate();
  nan.entries[0].load = std::nan("");
  auto d = decodeUpdate(bodyOf(encode(nan)));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->entries[0].load, 0.0);
}

TEST(ProtocolMalformed, ErrorFields) {
  std::vector<std::byte> b = {std::byte{0}, std::byte{3}, std::byte{0}, std::byte{2}, std::byte{'o'},
                              std::byte{'\n'}};
  expectError(decodeError(b), "error: text has non-printable character 0x0a at offset 1");
  std::vector<std::byte> big(4 + 1025, std::byte{'a'});
  big[0] = std::byte{0};
  big[1] = std::byte{3};
  big[2] = std::byte{0x04};
  big[3] = std::byte{0x01};
  expectError(decodeError(big), "error: text length 1025 > 1024");
  expectError(validate(ErrorMsg{3, std::string(1025, 'a')}), "text length 1025 > 1024");
  std::string dirty = "CN 'h\x01\xc3\xa9'\n" + std::string(2000, 'x');
  auto clean = sanitizeText(dirty);
  EXPECT_EQ(clean.size(), kMaxErrorText);
  EXPECT_EQ(clean.substr(0, 10), "CN 'h" + std::string(3, '?') + "'?");
  EXPECT_TRUE(validate(ErrorMsg{3, clean}).ok());
}

TEST(ProtocolMalformed, HelloAckFields) {
  HelloAck a{"slr1", *IpAddress::parse("10.0.2.2"), 3000};
  auto bytes = encode(a);
  std::vector<std::byte> body(bytes.begin() + kHeaderSize, bytes.end());
  body[body.size() - 1] = std::byte{0};
  body[body.size() - 2] = std::byte{0};
  expectError(decodeHelloAck(body), "hello_ack: hold time ms 0 out of range");
  a.tunnel_source = IpAddress{};
  expectError(validate(a), "tunnel source: address family 0");
}

TEST(ProtocolMalformed, ShortcutFields) {
  auto mutate = [](auto f) {
    auto bytes = encode(twoEntryShortcut());
    std::vector<std::byte> body(bytes.begin() + kHeaderSize, bytes.end());
    f(body);
    return decodeShortcut(body);
  };
  ASSERT_TRUE(mutate([](auto&) {}).ok());
  // count
  expectError(mutate([](auto& b) { b.resize(2), b[1] = std::byte{0}; }),
              "shortcut: entry count 0 out of range 1..1024");
  std::vector<std::byte> big(2 + 1025 * 19);
  big[0] = std::byte{0x04};
  big[1] = std::byte{0x01};
  expectError(decodeShortcut(big), "shortcut: entry count 1025 out of range 1..1024");
  expectError(decodeShortcut(std::span(big).first(1)), "shortcut: body length 1 < minimum 2");
  // flow family
  expectError(mutate([](auto& b) { b[kSc1 + 1] = std::byte{5}; }), "shortcut entry 1: family 5 is not 4 or 6");
  expectError(mutate([](auto& b) { b[kSc0 + 1] = std::byte{0}; }), "shortcut entry 0: family 0 is not 4 or 6");
  // ports on a protocol without ports
  expectError(mutate([](auto& b) { b[kSc1 + 2 + 8 + 1] = std::byte{1}; }),
              "shortcut entry 1: ports must be 0 for protocol 47 (sport 1, dport 0)");
  expectError(mutate([](auto& b) { b[kSc1 + 2 + 8 + 3] = std::byte{2}; }),
              "shortcut entry 1: ports must be 0 for protocol 47 (sport 0, dport 2)");
  // endpoint family and address
  expectError(mutate([](auto& b) { b[kSc0 + 2 + 32 + 4] = std::byte{5}; }),
              "shortcut entry 0: endpoint: address family 5 is not 4 or 6");
  expectError(mutate([](auto& b) { b[kSc1 + 2 + 8 + 4] = std::byte{0}; }),
              "shortcut entry 1: endpoint: address family 0 is not 4 or 6");
  expectError(mutate([](auto& b) {
                for (size_t i = 0; i < 4; ++i) b[kSc1 + 2 + 8 + 5 + i] = std::byte{0};
              }),
              "shortcut entry 1: endpoint: address 0.0.0.0 is unspecified");
  expectError(mutate([](auto& b) {
                for (size_t i = 0; i < 16; ++i) b[kSc0 + 2 + 32 + 5 + i] = std::byte{0};
              }),
              "shortcut entry 0: endpoint: address :: is unspecified");
  // body length: one byte too many, one too few, and more entries counted than sent
  expectError(mutate([](auto& b) { b.push_back(std::byte{0}); }), "shortcut: body length 77 != expected 76");
  expectError(mutate([](auto& b) { b.pop_back(); }), "shortcut entry 1: body length 75 < minimum 76");
  expectError(mutate([](auto& b) { b.resize(kSc1 + 1); }), "shortcut entry 1: body length 58 < minimum 59");
  expectError(mutate([](auto& b) { b[1] = std::byte{3}; }), "shortcut entry 2: body length 76 < minimum 78");
  // a v6 entry relabelled v4 reads as a 19-byte entry and leaves bytes over
  expectError(mutate([](auto& b) { b[kSc0 + 1] = std::byte{4}; }), "shortcut entry 0: endpoint: address family");

  // Sender-side checks: the same rules.
  Shortcut bad;
  expectError(validate(bad), "shortcut: entry count 0 out of range 1..1024");
  bad = sampleShortcut();
  bad.entries.assign(1025, sampleShortcut().entries[0]);
  expectError(validate(bad), "shortcut: entry count 1025 out of range 1..1024");
  EXPECT_EQ(encode(bad).size(), kHeaderSize + 2 + 1024 * 19);  // capped, still well formed
  auto entry = [](auto f) {
    Shortcut m = sampleShortcut();
    f(m.entries[0]);
    return validate(m);
  };
  expectError(entry([](ShortcutEntry& e) { e.key.family = Family::kNone; }), "shortcut entry 0: family 0 is not 4 or 6");
  expectError(entry([](ShortcutEntry& e) { e.key.src[5] = 1; }),
              "shortcut entry 0: source IPv4 address has non-zero byte 5");
  expectError(entry([](ShortcutEntry& e) { e.key.dst[15] = 1; }),
              "shortcut entry 0: destination IPv4 address has non-zero byte 15");
  expectError(entry([](ShortcutEntry& e) { e.key.pad[1] = 1; }), "shortcut entry 0: flow key padding is not zero");
  expectError(entry([](ShortcutEntry& e) { e.key.proto = 50; }),
              "shortcut entry 0: ports must be 0 for protocol 50 (sport 40000, dport 80)");
  expectError(entry([](ShortcutEntry& e) { e.endpoint = IpAddress{}; }),
              "shortcut entry 0: endpoint: address family 0 is not 4 or 6");
  expectError(entry([](ShortcutEntry& e) { e.endpoint = ip("::"); }), "shortcut entry 0: endpoint: address :: is unspecified");
  expectError(entry([](ShortcutEntry& e) { e.endpoint.bytes[4] = 1; }),
              "shortcut entry 0: endpoint: IPv4 address has non-zero byte 4");
  // Accepted: ICMP echo identifiers, ports 0 on any protocol, v4 flow to a v6 endpoint.
  EXPECT_TRUE(entry([](ShortcutEntry& e) { e.key.proto = 1; }).ok());
  EXPECT_TRUE(entry([](ShortcutEntry& e) { e.key.proto = 58; }).ok());
  EXPECT_TRUE(entry([](ShortcutEntry& e) { e.key.proto = 50, e.key.sport = e.key.dport = 0; }).ok());
  EXPECT_TRUE(entry([](ShortcutEntry& e) { e.endpoint = ip("fd00:3::b"); }).ok());
  EXPECT_TRUE(entry([](ShortcutEntry& e) { e.key.src = {}; }).ok());  // 0.0.0.0 source (DHCP) is a flow
}

TEST(ProtocolMalformed, FlowSyncFields) {
  auto mutate = [](auto f) {
    auto bytes = encode(sampleFlowSync());
    std::vector<std::byte> body(bytes.begin() + kHeaderSize, bytes.end());
    f(body);
    return decodeFlowSync(body);
  };
  ASSERT_TRUE(mutate([](auto&) {}).ok());
  expectError(decodeFlowSync({}), "flow_sync: body length 0 < minimum 7");
  expectError(mutate([](auto& b) { b[4] = std::byte{2}; }), "flow_sync: reserved flag bits set (flags 0x02)");
  std::vector<std::byte> big(7 + 1025 * 27);
  big[5] = std::byte{0x04};
  big[6] = std::byte{0x01};
  expectError(decodeFlowSync(big), "flow_sync: entry count 1025 out of range 0..1024");
  // op, state
  expectError(mutate([](auto& b) { b[kFs0] = std::byte{0}; }), "flow_sync entry 0: op 0 is not 1 (upsert) or 2 (remove)");
  expectError(mutate([](auto& b) { b[kFs1] = std::byte{3}; }), "flow_sync entry 1: op 3 is not 1 (upsert) or 2 (remove)");
  expectError(mutate([](auto& b) { b[kFs0 + 1] = std::byte{5}; }), "flow_sync entry 0: state 5 out of range 0..4");
  // key
  expectError(mutate([](auto& b) { b[kFs1 + 12 + 1] = std::byte{5}; }), "flow_sync entry 1: family 5 is not 4 or 6");
  expectError(mutate([](auto& b) {
                b[kFs0 + 12] = std::byte{47};  // GRE with ports
              }),
              "flow_sync entry 0: ports must be 0 for protocol 47 (sport 40000, dport 80)");
  // endpoint: upsert needs one, remove has none
  expectError(mutate([](auto& b) { b[kFs0 + 26] = std::byte{5}; }),
              "flow_sync entry 0: endpoint: address family 5 is not 0, 4 or 6");
  expectError(mutate([](auto& b) {
                for (size_t i = 0; i < 4; ++i) b[kFs0 + 27 + i] = std::byte{0};
              }),
              "flow_sync entry 0: endpoint: address 0.0.0.0 is unspecified");
  // Upsert relabelled as remove: the endpoint must then be empty.
  expectError(mutate([](auto& b) { b[kFs0] = std::byte{2}; }),
              "flow_sync entry 0: endpoint: must be empty (family 0) for remove, got family 4");
  // Remove relabelled as upsert: it lacks an endpoint.
  expectError(mutate([](auto& b) { b[kFs1] = std::byte{1}; }),
              "flow_sync entry 1: endpoint: address family 0 is not 4 or 6");
  // lengths
  expectError(mutate([](auto& b) { b.push_back(std::byte{0}); }), "flow_sync: body length 66 != expected 65");
  expectError(mutate([](auto& b) { b.pop_back(); }), "flow_sync entry 1: body length 64 < minimum 65");
  expectError(mutate([](auto& b) { b.resize(kFs1 + 5); }), "flow_sync entry 1: body length 43 < minimum 50");
  expectError(mutate([](auto& b) { b[6] = std::byte{3}; }), "flow_sync entry 2: body length 65 < minimum 77");
  expectError(mutate([](auto& b) { b[6] = std::byte{1}; }), "flow_sync: body length 65 != expected 38");

  // Sender side: the same rules.
  auto entry = [](auto f) {
    FlowSync m = sampleFlowSync();
    f(m.entries[0]);
    return validate(m);
  };
  expectError(entry([](FlowSyncEntry& e) { e.op = SyncOp(7); }), "flow_sync entry 0: op 7 is not 1 (upsert) or 2 (remove)");
  expectError(entry([](FlowSyncEntry& e) { e.state = 9; }), "flow_sync entry 0: state 9 out of range 0..4");
  expectError(entry([](FlowSyncEntry& e) { e.key.family = Family::kNone; }), "flow_sync entry 0: family 0 is not 4 or 6");
  expectError(entry([](FlowSyncEntry& e) { e.key.pad[0] = 1; }), "flow_sync entry 0: flow key padding is not zero");
  expectError(entry([](FlowSyncEntry& e) { e.key.src[4] = 1; }),
              "flow_sync entry 0: source IPv4 address has non-zero byte 4");
  expectError(entry([](FlowSyncEntry& e) { e.endpoint = IpAddress{}; }),
              "flow_sync entry 0: endpoint: address family 0 is not 4 or 6");
  expectError(entry([](FlowSyncEntry& e) { e.op = SyncOp::kRemove; }),
              "flow_sync entry 0: endpoint: must be empty (family 0) for remove, got family 4");
  expectError(entry([](FlowSyncEntry& e) {
                e.op = SyncOp::kRemove;
                e.endpoint.family = Family::kNone;  // bytes left behind
              }),
              "flow_sync entry 0: endpoint: empty (family 0) but address bytes are not zero");
  FlowSync many = sampleFlowSync();
  many.entries.assign(1025, sampleFlowSync().entries[0]);
  expectError(validate(many), "flow_sync: entry count 1025 out of range 0..1024");
  EXPECT_EQ(encode(many).size(), kHeaderSize + 7 + 1024 * 31);  // capped, still well formed
  // Accepted: next_hop any value, state 0..4, a v4 flow to a v6 endpoint.
  EXPECT_TRUE(entry([](FlowSyncEntry& e) { e.next_hop = 0; }).ok());
  EXPECT_TRUE(entry([](FlowSyncEntry& e) { e.state = 4; }).ok());
  EXPECT_TRUE(entry([](FlowSyncEntry& e) { e.endpoint = ip("fd00:3::b"); }).ok());
  EXPECT_TRUE(validate(FlowSync{}).ok());
}

TEST(ProtocolMalformed, SyncAckAndHeartbeatFields) {
  auto ack = encode(SyncAck{1});
  expectError(decodeSyncAck(bodyOf(ack).first(3)), "sync_ack: body length 3 != expected 4");
  std::vector<std::byte> longer(bodyOf(ack).begin(), bodyOf(ack).end());
  longer.push_back(std::byte{0});
  expectError(decodeSyncAck(longer), "sync_ack: body length 5 != expected 4");
  auto hb = encode(sampleHeartbeat());
  std::vector<std::byte> body(hb.begin() + kHeaderSize, hb.end());
  for (uint8_t st : {0, 5, 255}) {
    auto b = body;
    b[4] = std::byte{st};
    expectError(decodeHeartbeat(b), "heartbeat: state " + std::to_string(st) +
                                        " is not 1 (standby), 2 (active), 3 (recovering) or 4 (handover)");
  }
  for (uint8_t st : {1, 2, 3, 4}) {
    auto b = body;
    b[4] = std::byte{st};
    auto d = decodeHeartbeat(b);
    ASSERT_TRUE(d.ok()) << d.error().message();
    EXPECT_EQ(d->state, PairState(st));
  }
  expectError(decodeHeartbeat(std::span(body).first(16)), "heartbeat: body length 16 != expected 17");
  Heartbeat bad = sampleHeartbeat();
  bad.state = PairState(0);
  expectError(validate(bad), "heartbeat: state 0 is not 1 (standby)");
  EXPECT_TRUE(validate(SyncAck{0}).ok());
}

TEST(ProtocolMalformed, WhohasFields) {
  auto mutate = [](auto f) {
    auto bytes = encode(sampleWhohas());
    std::vector<std::byte> body(bytes.begin() + kHeaderSize, bytes.end());
    f(body);
    return decodeWhohas(body);
  };
  ASSERT_TRUE(mutate([](auto&) {}).ok());
  expectError(mutate([](auto& b) { b[0] = std::byte{0}; }), "whohas: scope 0 out of range 1..8");
  expectError(mutate([](auto& b) { b[0] = std::byte{9}; }), "whohas: scope 9 out of range 1..8");
  expectError(mutate([](auto& b) { b.resize(3), b[2] = std::byte{0}; }), "whohas: entry count 0 out of range 1..1024");
  expectError(decodeWhohas(std::vector<std::byte>(2)), "whohas: body length 2 < minimum 3");
  expectError(mutate([](auto& b) { b[3 + 4 + 1] = std::byte{0}; }), "whohas entry 0: family 0 is not 4 or 6");
  expectError(mutate([](auto& b) { b[3 + 4] = std::byte{50}; }),
              "whohas entry 0: ports must be 0 for protocol 50 (sport 40000, dport 80)");
  expectError(mutate([](auto& b) { b.push_back(std::byte{0}); }), "whohas: body length 22 != expected 21");
  expectError(mutate([](auto& b) { b.pop_back(); }), "whohas entry 0: body length 20 < minimum 21");
  expectError(mutate([](auto& b) { b.resize(5); }), "whohas entry 0: body length 5 < minimum 7");
  // An IPv4 key relabelled IPv6 wants 36 address bytes.
  expectError(mutate([](auto& b) { b[3 + 4 + 1] = std::byte{6}; }), "whohas entry 0: body length 21 < minimum 45");
  expectError(mutate([](auto& b) { b[2] = std::byte{2}; }), "whohas entry 1: body length 21 < minimum 25");

  Whohas w = sampleWhohas();
  w.scope = 0;
  expectError(validate(w), "whohas: scope 0 out of range 1..8");
  w = sampleWhohas();
  w.entries.clear();
  expectError(validate(w), "whohas: entry count 0 out of range 1..1024");
  w = sampleWhohas();
  w.entries[0].key.dst[6] = 1;
  expectError(validate(w), "whohas entry 0: destination IPv4 address has non-zero byte 6");
  w.entries.assign(1025, sampleWhohas().entries[0]);
  expectError(validate(w), "whohas: entry count 1025 out of range 1..1024");
  EXPECT_EQ(encode(w).size(), kHeaderSize + 3 + 1024 * 18);
}

TEST(ProtocolMalformed, IhaveFields) {
  auto mutate = [](auto f) {
    auto bytes = encode(sampleIhave());
    std::vector<std::byte> body(bytes.begin() + kHeaderSize, bytes.end());
    f(body);
    return decodeIhave(body);
  };
  ASSERT_TRUE(mutate([](auto&) {}).ok());
  expectError(decodeIhave(std::vector<std::byte>(1)), "ihave: body length 1 < minimum 2");
  expectError(mutate([](auto& b) { b.resize(2), b[1] = std::byte{0}; }), "ihave: entry count 0 out of range 1..1024");
  std::vector<std::byte> big(2 + 1025 * 20);
  big[0] = std::byte{0x04};
  big[1] = std::byte{0x01};
  expectError(decodeIhave(big), "ihave: entry count 1025 out of range 1..1024");
  expectError(mutate([](auto& b) { b[kIh1 + 4 + 1] = std::byte{5}; }), "ihave entry 1: family 5 is not 4 or 6");
  expectError(mutate([](auto& b) { b[kIh0 + 18] = std::byte{2}; }), "ihave entry 0: found 2 is not 0 or 1");
  // found without an endpoint, an endpoint without found
  expectError(mutate([](auto& b) { b[kIh1 + 18] = std::byte{1}; }),
              "ihave entry 1: endpoint: address family 0 is not 4 or 6");
  expectError(mutate([](auto& b) { b[kIh0 + 18] = std::byte{0}; }),
              "ihave entry 0: endpoint: must be empty (family 0) when not found, got family 4");
  expectError(mutate([](auto& b) { b[kIh0 + 19] = std::byte{7}; }),
              "ihave entry 0: endpoint: address family 7 is not 0, 4 or 6");
  expectError(mutate([](auto& b) {
                for (size_t i = 0; i < 4; ++i) b[kIh0 + 20 + i] = std::byte{0};
              }),
              "ihave entry 0: endpoint: address 0.0.0.0 is unspecified");
  expectError(mutate([](auto& b) { b.push_back(std::byte{0}); }), "ihave: body length 47 != expected 46");
  expectError(mutate([](auto& b) { b.pop_back(); }), "ihave entry 1: body length 45 < minimum 46");
  expectError(mutate([](auto& b) { b.resize(kIh1 + 18); }), "ihave entry 1: body length 44 < minimum 45");
  expectError(mutate([](auto& b) { b[1] = std::byte{1}; }), "ihave: body length 46 != expected 26");

  auto entry = [](size_t i, auto f) {
    Ihave m = sampleIhave();
    f(m.entries[i]);
    return validate(m);
  };
  expectError(entry(0, [](IhaveEntry& e) { e.found = false; }),
              "ihave entry 0: endpoint: must be empty (family 0) when not found, got family 4");
  expectError(entry(1, [](IhaveEntry& e) { e.found = true; }), "ihave entry 1: endpoint: address family 0 is not 4 or 6");
  expectError(entry(0, [](IhaveEntry& e) { e.endpoint = ip("::"); }), "ihave entry 0: endpoint: address :: is unspecified");
  expectError(entry(1, [](IhaveEntry& e) { e.key.proto = 4, e.key.sport = 1; }),
              "ihave entry 1: ports must be 0 for protocol 4 (sport 1, dport 53)");
  Ihave none;
  expectError(validate(none), "ihave: entry count 0 out of range 1..1024");
}

// ---- FrameReader ----

Status feedAll(FrameReader& r, std::span<const std::byte> data, std::vector<Frame>& out) {
  while (true) {
    data = data.subspan(r.append(data));
    for (;;) {
      auto f = r.next();
      if (!f.ok()) return f.error();
      if (!f->has_value()) break;
      out.push_back(std::move(**f));
    }
    if (data.empty()) return Ok{};
  }
}

std::vector<std::byte> headerBytes(uint8_t m0, uint8_t m1, uint8_t ver, uint8_t type, uint32_t len) {
  return {std::byte{m0},        std::byte{m1},        std::byte{ver},       std::byte{type},
          std::byte(len >> 24), std::byte(len >> 16), std::byte(len >> 8), std::byte(len)};
}

TEST(FrameReader, BadHeaders) {
  struct Case {
    std::vector<std::byte> bytes;
    std::string_view error;
  } cases[] = {
      {headerBytes('X', 'L', 1, 1, 0), "bad magic byte 0: 0x58"},
      {headerBytes('S', 'X', 1, 1, 0), "bad magic byte 1: 0x58"},
      {headerBytes('S', 'L', 2, 1, 0), "unsupported protocol version 2 (this build speaks version 1)"},
      {headerBytes('S', 'L', 1, 99, 0), "unknown message type 99"},
      {headerBytes('S', 'L', 1, 11, 0), "unknown message type 11"},
      {headerBytes('S', 'L', 1, 0, 0), "unknown message type 0"},
      {headerBytes('S', 'L', 1, 3, 1u << 20), "frame body length 1048576 > maximum 65536"},
      {headerBytes('S', 'L', 1, 3, 65537), "frame body length 65537 > maximum 65536"},
  };
  for (const auto& c : cases) {
    FrameReader r;
    std::vector<Frame> got;
    auto s = feedAll(r, c.bytes, got);
    expectError(s, c.error);
    EXPECT_TRUE(r.failed());
    // sticky: a good frame afterwards does not help
    auto good = encode(sampleUpdate());
    EXPECT_EQ(r.append(good), 0u);
    expectError(r.next(), c.error);
  }
  // Garbage is refused from its first byte, before a whole header arrives.
  FrameReader r;
  std::byte one{0x47};
  r.append(std::span(&one, 1));
  expectError(r.next(), "bad magic byte 0: 0x47");
}

TEST(FrameReader, MaxBodyAccepted) {
  std::vector<std::byte> body(kMaxBody, std::byte{0xab});
  auto f = encodeFrame(MsgType::kUpdate, body);
  ASSERT_EQ(f.size(), FrameReader::kCapacity);
  FrameReader r;
  // preceded by a small frame so the big one straddles a compaction
  auto small = encode(sampleHello());
  std::vector<std::byte> stream(small);
  stream.insert(stream.end(), f.begin(), f.end());
  stream.insert(stream.end(), small.begin(), small.end());
  std::vector<Frame> got;
  ASSERT_TRUE(feedAll(r, stream, got).ok());
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[1].body, body);
  EXPECT_EQ(got[2].type, MsgType::kHello);
  EXPECT_EQ(r.buffered(), 0u);
  auto d = decode(got[1]);
  EXPECT_FALSE(d.ok());  // 65536 bytes is not a valid UPDATE body
}

TEST(FrameReader, BufferIsBounded) {
  FrameReader r;
  std::vector<std::byte> lots(3 * FrameReader::kCapacity);
  // valid header claiming max body, then zeros
  auto h = headerBytes('S', 'L', 1, 4, kMaxBody);
  std::copy(h.begin(), h.end(), lots.begin());
  EXPECT_EQ(r.append(lots), FrameReader::kCapacity);
  EXPECT_EQ(r.buffered(), FrameReader::kCapacity);
  EXPECT_EQ(r.append(lots), 0u);
  EXPECT_TRUE(r.writeSpace().empty());
  auto f = r.next();
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE(f->has_value());
  EXPECT_EQ(r.buffered(), 0u);
  EXPECT_EQ(r.writeSpace().size(), FrameReader::kCapacity);
}

std::vector<std::byte> severalFrames() {
  std::vector<std::byte> s;
  auto add = [&](std::vector<std::byte> b) { s.insert(s.end(), b.begin(), b.end()); };
  add(encode(sampleHello()));
  add(encode(HelloAck{"slr1", *IpAddress::parse("10.0.2.2"), 3000}));
  for (uint32_t i = 0; i < 50; ++i) {
    Update u = sampleUpdate();
    u.seq = i;
    for (uint32_t k = 0; k < i; ++k) u.entries.push_back({*Prefix::parse("fd00::/16"), k * 0.001, k % 2 == 0});
    add(encode(u));
  }
  add(encode(ErrorMsg{kNameMismatch, "bye"}));
  return s;
}

void checkSeveral(const std::vector<Frame>& got) {
  ASSERT_EQ(got.size(), 53u);
  EXPECT_EQ(got[0].type, MsgType::kHello);
  EXPECT_EQ(got[1].type, MsgType::kHelloAck);
  for (uint32_t i = 0; i < 50; ++i) {
    auto u = decodeUpdate(got[2 + i].body);
    ASSERT_TRUE(u.ok()) << u.error().message();
    EXPECT_EQ(u->seq, i);
    EXPECT_EQ(u->entries.size(), i + 1);
  }
  auto e = decodeError(got[52].body);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->code, kNameMismatch);
}

TEST(FrameReader, OneByteAtATime) {
  auto s = severalFrames();
  FrameReader r;
  std::vector<Frame> got;
  for (auto b : s) ASSERT_TRUE(feedAll(r, std::span(&b, 1), got).ok());
  checkSeveral(got);
}

TEST(FrameReader, BigChunks) {
  auto s = severalFrames();
  for (size_t chunk : {size_t(7), size_t(100), size_t(4096), s.size()}) {
    FrameReader r;
    std::vector<Frame> got;
    for (size_t off = 0; off < s.size(); off += chunk)
      ASSERT_TRUE(feedAll(r, std::span(s).subspan(off, std::min(chunk, s.size() - off)), got).ok());
    checkSeveral(got);
  }
}

TEST(FrameReader, ZeroCopyWriteSpace) {
  auto s = severalFrames();
  FrameReader r;
  std::vector<Frame> got;
  size_t off = 0;
  while (off < s.size()) {
    auto space = r.writeSpace();
    size_t n = std::min<size_t>({space.size(), s.size() - off, 333});
    std::copy_n(s.begin() + off, n, space.begin());
    r.commit(n);
    off += n;
    for (;;) {
      auto f = r.next();
      ASSERT_TRUE(f.ok());
      if (!f->has_value()) break;
      got.push_back(std::move(**f));
    }
  }
  checkSeveral(got);
}

TEST(FrameReader, RandomGarbageNeverCrashes) {
  std::mt19937 rng(42);
  for (int iter = 0; iter < 2000; ++iter) {
    std::vector<std::byte> g(rng() % 200);
    for (auto& b : g) b = std::byte(uint8_t(rng()));
    if (iter % 2) {  // make half of them look like frames so bodies get decoded
      auto h = headerBytes('S', 'L', 1, uint8_t(1 + rng() % 10), uint32_t(g.size()));
      g.insert(g.begin(), h.begin(), h.end());
    }
    FrameReader r;
    std::vector<Frame> got;
    (void)feedAll(r, g, got);
    for (const auto& f : got) (void)decode(f);
    for (auto fn : {decodeHello}) (void)fn(g);
    (void)decodeHelloAck(g);
    (void)decodeUpdate(g);
    (void)decodeError(g);
    (void)decodeShortcut(g);
    (void)decodeFlowSync(g);
    (void)decodeSyncAck(g);
    (void)decodeHeartbeat(g);
    (void)decodeWhohas(g);
    (void)decodeIhave(g);
  }
}

}  // namespace
}  // namespace slr::proto
