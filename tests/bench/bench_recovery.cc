// Issue 4 (flows survive failures): the hot-spare sync frame and the host
// echo flow advertisement.
//   - FLOW_SYNC: encode, decode, and encode+decode of one frame of N IPv4
//     upserts (N = 1024 = proto::kMaxEntries is a full frame, what the main
//     sends per sync_interval under load and what a full resync is made of).
//     items_per_second counts entries; `per_entry` is the time per entry.
//   - advert::decode on the SLR's packet path (every ICMP echo reply to a
//     VIP): an advertising echo reply, and plain echoes (the common case),
//     64 bytes (Linux ping default: shorter than an advertisement) and 1480
//     bytes (ping -s 1472: long enough, no magic).
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "core/flow_advert.h"
#include "core/packet.h"
#include "core/protocol.h"

namespace slr {
namespace {

// A FLOW_SYNC of n IPv4 TCP upserts as the main streams them after crr
// traffic: client 10.0.1.2, distinct ports, VIP 10.100.0.10:80, two hosts.
proto::FlowSync makeFlowSync(size_t n) {
  proto::FlowSync m;
  m.seq = 42;
  m.entries.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    proto::FlowSyncEntry e;
    e.op = proto::SyncOp::kUpsert;
    e.key.family = Family::kV4;
    const uint8_t src[4] = {10, 0, 1, 2}, dst[4] = {10, 100, 0, 10};
    for (int b = 0; b < 4; ++b) {
      e.key.src[b] = src[b];
      e.key.dst[b] = dst[b];
    }
    e.key.sport = uint16_t(1024 + i);
    e.key.dport = 80;
    e.key.proto = 6;
    e.next_hop = uint16_t(i % 2);
    e.endpoint = IpAddress::v4(0x0a00030bu + uint32_t(i % 2));  // 10.0.3.11 / .12
    e.label = uint32_t(i);
    e.state = 1;  // established
    e.age_ms = uint32_t(i);
    m.entries.push_back(e);
  }
  return m;
}

// Per-entry time, next to items_per_second.
void perEntry(benchmark::State& state, size_t n) {
  state.SetItemsProcessed(int64_t(state.iterations()) * int64_t(n));
  state.counters["per_entry"] = benchmark::Counter(
      double(n), benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

// The frame must be whole and decode to itself, else the figures mean nothing.
bool checkRoundTrip(benchmark::State& state, const proto::FlowSync& m, const std::vector<std::byte>& frame) {
  if (!proto::validate(m)) {
    state.SkipWithError("FlowSync does not validate");
    return false;
  }
  if (frame.size() < proto::kHeaderSize) {
    state.SkipWithError("short frame");
    return false;
  }
  auto d = proto::decodeFlowSync(std::span<const std::byte>(frame).subspan(proto::kHeaderSize));
  if (!d || *d != m) {
    state.SkipWithError("FlowSync does not decode to itself (entries cut?)");
    return false;
  }
  return true;
}

void BM_FlowSyncEncode(benchmark::State& state) {
  const size_t n = size_t(state.range(0));
  const proto::FlowSync m = makeFlowSync(n);
  if (!checkRoundTrip(state, m, proto::encode(m))) return;
  size_t bytes = 0;
  for (auto _ : state) {
    std::vector<std::byte> f = proto::encode(m);
    bytes = f.size();
    benchmark::DoNotOptimize(f.data());
    benchmark::ClobberMemory();
  }
  perEntry(state, n);
  state.counters["frame_bytes"] = double(bytes);
}
BENCHMARK(BM_FlowSyncEncode)->Arg(1)->Arg(64)->Arg(1024);

void BM_FlowSyncDecode(benchmark::State& state) {
  const size_t n = size_t(state.range(0));
  const proto::FlowSync m = makeFlowSync(n);
  const std::vector<std::byte> frame = proto::encode(m);
  if (!checkRoundTrip(state, m, frame)) return;
  const auto body = std::span<const std::byte>(frame).subspan(proto::kHeaderSize);
  for (auto _ : state) {
    auto d = proto::decodeFlowSync(body);
    benchmark::DoNotOptimize(d);
  }
  perEntry(state, n);
  state.counters["frame_bytes"] = double(frame.size());
}
BENCHMARK(BM_FlowSyncDecode)->Arg(1)->Arg(64)->Arg(1024);

// Encode at the sender, then decode at the receiver: the protocol's CPU cost
// per synced entry (TLS, the worker rings and the table updates are not in it).
void BM_FlowSyncEncodeDecode(benchmark::State& state) {
  const size_t n = size_t(state.range(0));
  const proto::FlowSync m = makeFlowSync(n);
  if (!checkRoundTrip(state, m, proto::encode(m))) return;
  for (auto _ : state) {
    std::vector<std::byte> f = proto::encode(m);
    auto d = proto::decodeFlowSync(std::span<const std::byte>(f).subspan(proto::kHeaderSize));
    benchmark::DoNotOptimize(d);
  }
  perEntry(state, n);
}
BENCHMARK(BM_FlowSyncEncodeDecode)->Arg(1)->Arg(64)->Arg(1024);

// The advertising echo reply the client's kernel sends back: the host's
// request with type 0 and the checksum adjusted.
std::vector<std::byte> advertEchoReply() {
  advert::FlowAdvert a;
  a.proto = 6;
  a.client = 0x0a000102;  // 10.0.1.2
  a.client_port = 40000;
  a.vip = 0x0a64000a;     // 10.100.0.10
  a.vip_port = 80;
  a.server = 0x0a00030b;  // 10.0.3.11
  a.server_port = 80;
  std::vector<std::byte> icmp(advert::kMessageSize);
  if (advert::encodeEchoRequest(icmp, 0x1234, 1, a) != advert::kMessageSize) return {};
  icmp[0] = std::byte{0};  // echo reply
  store16(icmp.data() + 2, 0);
  store16(icmp.data() + 2, internetChecksum(icmp));
  return icmp;
}

// A plain echo reply of `size` ICMP bytes as Linux ping sends it: 8-byte
// header, then a timeval and the 0x10, 0x11, ... pattern.
std::vector<std::byte> plainEchoReply(size_t size) {
  std::vector<std::byte> icmp(size);
  store16(icmp.data() + 4, 0x4321);
  store16(icmp.data() + 6, 7);
  for (size_t i = 8; i < size; ++i) icmp[i] = std::byte(uint8_t(i < 24 ? 0x5a : (i - 8) & 0xff));
  store16(icmp.data() + 2, internetChecksum(icmp));
  return icmp;
}

void BM_AdvertDecode(benchmark::State& state) {
  const std::vector<std::byte> icmp = advertEchoReply();
  advert::FlowAdvert a;
  if (icmp.empty() || advert::decode(icmp, a) != advert::DecodeStatus::kOk) {
    state.SkipWithError("advertising echo does not decode");
    return;
  }
  for (auto _ : state) {
    benchmark::DoNotOptimize(icmp.data());
    advert::DecodeStatus st = advert::decode(icmp, a);
    benchmark::DoNotOptimize(st);
    benchmark::DoNotOptimize(a);
  }
  state.SetItemsProcessed(int64_t(state.iterations()));
}
BENCHMARK(BM_AdvertDecode);

// What the worker does with an advertisement before the table (echoAdvert):
// decode, verify the ICMP checksum, build the flow key.
void BM_AdvertDecodeChecksumKey(benchmark::State& state) {
  const std::vector<std::byte> icmp = advertEchoReply();
  advert::FlowAdvert a;
  if (icmp.empty() || advert::decode(icmp, a) != advert::DecodeStatus::kOk || internetChecksum(icmp) != 0) {
    state.SkipWithError("advertising echo does not decode or checksum");
    return;
  }
  for (auto _ : state) {
    benchmark::DoNotOptimize(icmp.data());
    advert::DecodeStatus st = advert::decode(icmp, a);
    uint16_t sum = internetChecksum(icmp);
    FlowKey k = advert::keyOf(a);
    benchmark::DoNotOptimize(st);
    benchmark::DoNotOptimize(sum);
    benchmark::DoNotOptimize(k);
  }
  state.SetItemsProcessed(int64_t(state.iterations()));
}
BENCHMARK(BM_AdvertDecodeChecksumKey);

// The common case: an ordinary echo reply to a VIP (kNotAdvert, forwarded).
void BM_AdvertDecodePlainEcho(benchmark::State& state) {
  const std::vector<std::byte> icmp = plainEchoReply(size_t(state.range(0)));
  advert::FlowAdvert a;
  if (advert::decode(icmp, a) != advert::DecodeStatus::kNotAdvert) {
    state.SkipWithError("plain echo not classified kNotAdvert");
    return;
  }
  for (auto _ : state) {
    benchmark::DoNotOptimize(icmp.data());
    advert::DecodeStatus st = advert::decode(icmp, a);
    benchmark::DoNotOptimize(st);
  }
  state.SetItemsProcessed(int64_t(state.iterations()));
}
BENCHMARK(BM_AdvertDecodePlainEcho)->Arg(64)->Arg(1480);

}  // namespace
}  // namespace slr
