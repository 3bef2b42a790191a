// libFuzzer target for the packet-path parsers of untrusted bytes:
// parsePacket (everything the SLR receives) and IpipCodec::decapsulate
// (everything the host agent's userspace termination receives).
//
//   clang++ -fsanitize=fuzzer,address -std=c++20 -I. core/packet.cc core/tunnel.cc
//       core/net_types.cc tests/fuzz/fuzz_packet.cc
//   g++ -DSLR_FUZZ_STANDALONE -std=c++20 -I. ... ; ./a.out FILE...   (replay inputs)
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "core/packet.h"
#include "core/tunnel.h"

namespace {

// Invariants that hold for any input; a violation aborts so the fuzzer
// reports it like a crash.
void check(bool cond) {
  if (!cond) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data), size);

  slr::PacketInfo info;
  slr::ParseError e = slr::parsePacket(in, info);
  check(uint8_t(e) < uint8_t(slr::ParseError::kCount));
  if (e == slr::ParseError::kOk) {
    check(info.l3_len <= size);
    check(info.l4_offset >= 20 && info.l4_offset <= info.l3_len);
    check(info.key.family == slr::Family::kV4);
  }

  slr::IpipCodec ipip;
  slr::DecapResult d = ipip.decapsulate(in);
  check(uint8_t(d.error) < uint8_t(slr::ParseError::kCount));
  if (d.ok()) {
    check(d.inner.data() >= in.data() && d.inner.data() + d.inner.size() <= in.data() + in.size());
    // What decapsulates must parse at least as far as its IPv4 header.
    slr::PacketInfo inner_info;
    slr::ParseError ie = slr::parsePacket(d.inner, inner_info);
    check(ie == slr::ParseError::kOk || ie == slr::ParseError::kTruncatedL4 ||
          ie == slr::ParseError::kBadIcmpEmbedded);
  } else {
    check(d.inner.empty());
  }

  // Encapsulating whatever we got must never write out of bounds.
  if (size <= 2048) {
    static std::byte frame[2048 + slr::IpipCodec::kOverhead];
    for (size_t i = 0; i < size; ++i) frame[slr::IpipCodec::kOverhead + i] = in[i];
    size_t n = slr::IpipCodec::encapsulateV4(frame, size, 0x0a000202, 0x0a00030b, 1);
    check(n == 0 || n == size + slr::IpipCodec::kOverhead);
    if (n != 0) check(ipip.decapsulate(std::span<const std::byte>(frame, n)).outer_src.isV4());
  }
  return 0;
}

#ifdef SLR_FUZZ_STANDALONE
#include <cstdio>
#include <fstream>
#include <iterator>
#include <vector>

// Replays files given on the command line through the fuzz entry (g++ builds
// and CI without libFuzzer).
int main(int argc, char** argv) {
  int ran = 0;
  for (int i = 1; i < argc; ++i) {
    std::ifstream f(argv[i], std::ios::binary);
    if (!f) {
      std::fprintf(stderr, "cannot read %s\n", argv[i]);
      return 1;
    }
    std::vector<uint8_t> buf((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    LLVMFuzzerTestOneInput(buf.data(), buf.size());
    ++ran;
  }
  std::printf("ran %d input(s)\n", ran);
  return 0;
}
#endif
