#pragma once
// libtins PDUs as std::byte buffers, for tests that cross-check our packet
// code with libtins (packet_test, tunnel_test).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace slr::testing {

using Bytes = std::vector<std::byte>;

template <class P>
Bytes serialize(P&& pdu) {
  auto v = pdu.serialize();
  Bytes out(v.size());
  std::copy(v.begin(), v.end(), reinterpret_cast<uint8_t*>(out.data()));
  return out;
}

}  // namespace slr::testing
