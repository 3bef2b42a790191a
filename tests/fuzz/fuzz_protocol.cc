// libFuzzer target for the control protocol: the input is a byte stream as a
// peer could send it.  It is fed to a FrameReader in chunks whose sizes come
// from the input itself, every frame is decoded, and the whole input is also
// handed to each decoder directly as a body.  Any decoded message must
// validate and re-encode to the very same body (the format is canonical).
//
// Build with clang: -fsanitize=fuzzer,address.  With g++: -DSLR_FUZZ_STANDALONE
// gives a main() that runs the files named on the command line.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

#include "core/protocol.h"

namespace {

using namespace slr::proto;

void fail(const char* what) {
  std::fprintf(stderr, "fuzz_protocol: invariant broken: %s\n", what);
  std::abort();
}

template <typename T>
void checkCanonical(const T& m, std::span<const std::byte> body) {
  if (!validate(m).ok()) fail("decoded message does not validate");
  auto again = encode(m);
  if (again.size() != kHeaderSize + body.size() ||
      std::memcmp(again.data() + kHeaderSize, body.data(), body.size()) != 0)
    fail("re-encoded body differs");
}

void decodeAll(MsgType type, std::span<const std::byte> body) {
  switch (type) {
    case MsgType::kHello:
      if (auto m = decodeHello(body); m.ok()) checkCanonical(*m, body);
      break;
    case MsgType::kHelloAck:
      if (auto m = decodeHelloAck(body); m.ok()) checkCanonical(*m, body);
      break;
    case MsgType::kUpdate:
      if (auto m = decodeUpdate(body); m.ok()) checkCanonical(*m, body);
      break;
    case MsgType::kError:
      if (auto m = decodeError(body); m.ok()) checkCanonical(*m, body);
      break;
    case MsgType::kShortcut:
      if (auto m = decodeShortcut(body); m.ok()) checkCanonical(*m, body);
      break;
    case MsgType::kFlowSync:
      if (auto m = decodeFlowSync(body); m.ok()) checkCanonical(*m, body);
      break;
    case MsgType::kSyncAck:
      if (auto m = decodeSyncAck(body); m.ok()) checkCanonical(*m, body);
      break;
    case MsgType::kHeartbeat:
      if (auto m = decodeHeartbeat(body); m.ok()) checkCanonical(*m, body);
      break;
    case MsgType::kWhohas:
      if (auto m = decodeWhohas(body); m.ok()) checkCanonical(*m, body);
      break;
    case MsgType::kIhave:
      if (auto m = decodeIhave(body); m.ok()) checkCanonical(*m, body);
      break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data), size);

  // 1. Every decoder on the raw input.
  for (auto t : {MsgType::kHello, MsgType::kHelloAck, MsgType::kUpdate, MsgType::kError, MsgType::kShortcut})
    decodeAll(t, in);

  // 2. The stream through a FrameReader, chunk sizes taken from the data.
  FrameReader reader;
  size_t off = 0, frames = 0;
  bool failed = false;
  while (off < size && !failed) {
    size_t chunk = 1 + (size_t(data[off]) * 37) % 4096;
    auto piece = in.subspan(off, std::min(chunk, size - off));
    while (!piece.empty() && !failed) {
      size_t took = reader.append(piece);
      piece = piece.subspan(took);
      off += took;
      for (;;) {
        auto f = reader.next();
        if (!f.ok()) {
          failed = true;
          break;
        }
        if (!f->has_value()) break;
        ++frames;
        if ((*f)->body.size() > kMaxBody) fail("frame body over kMaxBody");
        decodeAll((*f)->type, (*f)->body);
        if (auto m = decode(**f); m.ok() && encode(*m).size() != kHeaderSize + (*f)->body.size())
          fail("decode/encode size mismatch");
      }
      if (reader.buffered() > FrameReader::kCapacity) fail("reader buffer over capacity");
      if (took == 0 && !failed) fail("reader full but no frame and no error");
    }
  }
  if (failed && (!reader.failed() || reader.append(in) != 0 || reader.next().ok()))
    fail("reader error is not sticky");
  (void)frames;
  return 0;
}

#ifdef SLR_FUZZ_STANDALONE
int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::ifstream f(argv[i], std::ios::binary);
    if (!f) {
      std::fprintf(stderr, "cannot open %s\n", argv[i]);
      return 1;
    }
    std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  }
  std::printf("fuzz_protocol: ran %d input(s)\n", argc - 1);
  return 0;
}
#endif
