#pragma once
// Bytes as lowercase hex, for golden-byte assertions (protocol_test,
// flow_advert_test).
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace slr::testing {

inline std::string toHex(std::span<const std::byte> b) {
  static const char* x = "0123456789abcdef";
  std::string s;
  for (auto v : b) {
    s += x[uint8_t(v) >> 4];
    s += x[uint8_t(v) & 15];
  }
  return s;
}

}  // namespace slr::testing
