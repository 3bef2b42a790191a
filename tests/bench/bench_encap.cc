// Packet-path speed: parsePacket and IPIP encapsulation / decapsulation on
// 64-byte and 1400-byte datagrams.
#include <benchmark/benchmark.h>

#include <vector>

#include "core/packet.h"
#include "core/tunnel.h"

namespace slr {
namespace {

// A TCP/IPv4 datagram of `total` bytes (>= 40) at offset `headroom` of the
// returned buffer: client 10.0.1.2:40000 -> VIP 10.100.0.10:80, ACK.
std::vector<std::byte> makeTcp(size_t total, size_t headroom = 0) {
  std::vector<std::byte> b(headroom + total, std::byte(0x5a));
  std::span<std::byte> p(b.data() + headroom, total);
  Ipv4HeaderFields f;
  f.total_length = uint16_t(total);
  f.df = true;
  f.protocol = kProtoTcp;
  f.src = 0x0a000102;
  f.dst = 0x0a64000a;
  writeIpv4Header(p, f);
  store16(p.data() + 20, 40000);
  store16(p.data() + 22, 80);
  p[32] = std::byte(0x50);  // data offset 5
  p[33] = std::byte(kTcpAck);
  return b;
}

void BM_ParsePacket(benchmark::State& state) {
  auto pkt = makeTcp(size_t(state.range(0)));
  PacketInfo info;
  for (auto _ : state) {
    ParseError e = parsePacket(pkt, info);
    benchmark::DoNotOptimize(e);
    benchmark::DoNotOptimize(info);
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * state.range(0));
}
BENCHMARK(BM_ParsePacket)->Arg(64)->Arg(1400);

void BM_ParseIcmpError(benchmark::State& state) {
  // "frag needed" quoting a VIP reply: the embedded-header path.
  std::vector<std::byte> q = makeTcp(1400);
  std::vector<std::byte> b(20 + 8 + 28, std::byte(0));
  Ipv4HeaderFields f;
  f.total_length = uint16_t(b.size());
  f.protocol = kProtoIcmp;
  f.src = 0x0a000201;
  f.dst = 0x0a64000a;
  writeIpv4Header(b, f);
  b[20] = std::byte(3);
  b[21] = std::byte(4);
  std::copy(q.begin(), q.begin() + 28, b.begin() + 28);
  PacketInfo info;
  for (auto _ : state) {
    ParseError e = parsePacket(b, info);
    benchmark::DoNotOptimize(e);
    benchmark::DoNotOptimize(info);
  }
}
BENCHMARK(BM_ParseIcmpError);

void BM_EncapsulateVirtual(benchmark::State& state) {
  size_t len = size_t(state.range(0));
  auto frame = makeTcp(len, IpipCodec::kOverhead);
  IpipCodec ipip;
  const TunnelCodec& codec = ipip;
  benchmark::DoNotOptimize(&codec);
  IpAddress src = IpAddress::v4(0x0a000202), dst = IpAddress::v4(0x0a00030b);
  uint16_t id = 0;
  for (auto _ : state) {
    size_t n = codec.encapsulate(frame, len, src, dst, id++);
    benchmark::DoNotOptimize(n);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * state.range(0));
}
BENCHMARK(BM_EncapsulateVirtual)->Arg(64)->Arg(1400);

void BM_EncapsulateV4(benchmark::State& state) {
  size_t len = size_t(state.range(0));
  auto frame = makeTcp(len, IpipCodec::kOverhead);
  uint16_t id = 0;
  for (auto _ : state) {
    size_t n = IpipCodec::encapsulateV4(frame, len, 0x0a000202, 0x0a00030b, id++);
    benchmark::DoNotOptimize(n);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * state.range(0));
}
BENCHMARK(BM_EncapsulateV4)->Arg(64)->Arg(1400);

void BM_Decapsulate(benchmark::State& state) {
  size_t len = size_t(state.range(0));
  auto frame = makeTcp(len, IpipCodec::kOverhead);
  IpipCodec::encapsulateV4(frame, len, 0x0a000202, 0x0a00030b, 1);
  IpipCodec ipip;
  for (auto _ : state) {
    DecapResult r = ipip.decapsulate(frame);
    benchmark::DoNotOptimize(r);
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * state.range(0));
}
BENCHMARK(BM_Decapsulate)->Arg(64)->Arg(1400);

// The SLR's per-packet work on a tunnelled first packet: parse, then encapsulate.
void BM_ParseThenEncapsulate(benchmark::State& state) {
  size_t len = size_t(state.range(0));
  auto frame = makeTcp(len, IpipCodec::kOverhead);
  std::span<const std::byte> inner(frame.data() + IpipCodec::kOverhead, len);
  PacketInfo info;
  uint16_t id = 0;
  for (auto _ : state) {
    ParseError e = parsePacket(inner, info);
    size_t n = IpipCodec::encapsulateV4(frame, len, 0x0a000202, 0x0a00030b, id++);
    benchmark::DoNotOptimize(e);
    benchmark::DoNotOptimize(n);
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_ParseThenEncapsulate)->Arg(64)->Arg(1400);

void BM_InternetChecksum(benchmark::State& state) {
  std::vector<std::byte> b(size_t(state.range(0)), std::byte(0xa5));
  for (auto _ : state) {
    uint16_t c = internetChecksum(b);
    benchmark::DoNotOptimize(c);
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * state.range(0));
}
BENCHMARK(BM_InternetChecksum)->Arg(20)->Arg(1400);

}  // namespace
}  // namespace slr

// main() comes from benchmark_main (one binary for all benchmarks).
