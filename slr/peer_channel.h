#pragma once
// A framed, bidirectional TLS connection between two SLRs (HELLO role peer):
// the hot-spare pair's sync channel and the WHOHAS neighbour channel.  The
// dialling side builds one with dial(); the listening side gets one from the
// ControlServer after it checked the HELLO (certificate CN == HELLO name ==
// an allowed peer) and sent HELLO_ACK.  Either side then sends and receives
// any frames; the owner drives it from its own poll loop.
//
// Threads: one owner thread at a time.  Non-blocking after dial().
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/protocol.h"
#include "core/result.h"
#include "core/tls.h"

namespace slr::router {

class PeerChannel {
 public:
  // Most bytes queued for sending before send() refuses (a stuck peer).
  static constexpr size_t kMaxQueued = 8u << 20;

  // TCP connect to `to`, TLS (the peer's certificate CN must be peer_name),
  // send `hello` (role kPeer), wait for HELLO_ACK (an ERROR is returned as
  // the error's detail).  Blocking, at most `timeout` in total.
  [[nodiscard]] static Result<std::unique_ptr<PeerChannel>> dial(
      const tls::Context& ctx, const config::Endpoint& to, const std::string& peer_name,
      const proto::Hello& hello, std::chrono::milliseconds timeout);

  // The listening side: a connection whose HELLO was accepted and answered.
  PeerChannel(tls::Connection conn, std::string peer_name);
  // Same, keeping bytes the listener already read past the HELLO (frames the
  // peer sent without waiting for HELLO_ACK).  The owner must call
  // readFrames() once right after taking the channel: those frames, and any
  // data already decrypted inside TLS, do not make the socket poll readable.
  PeerChannel(tls::Connection conn, std::string peer_name, proto::FrameReader buffered);
  ~PeerChannel();

  int fd() const;
  const std::string& peerName() const { return peer_name_; }

  // Queue one whole frame and write as much as the socket takes now.  False
  // (nothing queued) when more than kMaxQueued bytes are already waiting.
  bool send(std::span<const std::byte> frame);
  // Write queued bytes; false when the connection failed.
  bool flush();
  bool wantsWrite() const { return out_off_ < out_.size(); }
  // Read what the socket has and hand each complete frame to on_frame.
  // False when the peer closed or the stream is broken (lastError() says why).
  bool readFrames(const std::function<void(const proto::Frame&)>& on_frame);

  const std::string& lastError() const { return error_; }

 private:
  tls::Connection conn_;
  std::string peer_name_;
  proto::FrameReader reader_;
  std::vector<std::byte> out_;
  size_t out_off_ = 0;
  std::string error_;
};

}  // namespace slr::router
