#pragma once
// The SLR's side of the control channel: a TLS 1.3 listener with mutual
// certificate authentication, driven by one poll loop on the control thread.
// Hosts and lower-level SLRs say HELLO (identity = certificate CN, which must
// be a configured [[host]] and equal the HELLO name), then send periodic
// UPDATEs whose subnets must be authorised for them; lower SLRs may also send
// SHORTCUTs for flows inside those subnets (handed to the ShortcutSink).  Every refusal is counted by reason,
// answered with an ERROR frame where the peer can still read one, and logged
// with the peer's address.  Garbage never reaches the registry.
// Other SLRs of the same level say HELLO role peer (a hot-spare partner or a
// WHOHAS neighbour): their CN must be [hot_spare].peer_name or a
// [[neighbor]].name; after HELLO_ACK the connection leaves this server as a
// PeerChannel, handed to the PeerAcceptor.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <span>
#include <string>

#include "core/config.h"
#include "core/fd.h"
#include "core/protocol.h"
#include "core/tls.h"
#include "slr/peer_channel.h"
#include "slr/registry.h"

namespace slr::router {

#define SLR_CONTROL_REFUSALS(X) \
  X(untrusted_certificate)      \
  X(not_authorised)             \
  X(subnet_not_authorised)      \
  X(name_mismatch)              \
  X(protocol_error)             \
  X(tls_error)                  \
  X(timeout)                    \
  X(shortcut_refused)

struct ControlCounters {
#define SLR_X(name) std::atomic<uint64_t> name{0};
  SLR_CONTROL_REFUSALS(SLR_X)
#undef SLR_X
  std::atomic<uint64_t> accepted{0};     // TCP connections accepted
  std::atomic<uint64_t> registered{0};   // HELLOs accepted
  std::atomic<uint64_t> updates{0};      // UPDATEs applied
  std::atomic<uint64_t> shortcuts{0};    // SHORTCUT entries accepted from lower SLRs
  std::atomic<uint64_t> shortcuts_ignored{0};  // accepted, but [slr].shortcut is off here
  std::atomic<uint64_t> peers{0};        // role peer HELLOs accepted and handed over
};

// A lower SLR's shortcuts from one frame, accepted (authorised subnet, role slr).
using ShortcutSink =
    std::function<void(std::span<const proto::ShortcutEntry> entries, uint16_t child)>;

// A peer SLR's accepted connection (HELLO_ACK already queued on it) and its
// HELLO.  Called on the control thread; the callee takes the channel to the
// thread that owns it (and must call readFrames() once there, see PeerChannel).
using PeerAcceptor = std::function<void(std::unique_ptr<PeerChannel>, const proto::Hello&)>;

class ControlServer {
 public:
  ControlServer(const config::SlrConfig& cfg, tls::Context ctx, HostRegistry& registry);
  ~ControlServer();

  Status listen();
  // Where accepted shortcuts go (the workers).  Without a sink they are
  // counted as ignored.
  void setShortcutSink(ShortcutSink sink) { sink_ = std::move(sink); }
  // Where role peer connections go.  Without one they are refused.
  void setPeerAcceptor(PeerAcceptor fn) { peer_acceptor_ = std::move(fn); }
  // The bound port (control_listen's, or the kernel's pick for port 0).
  uint16_t port() const;
  // Wake the poll loop from another thread (e.g. the workers).
  int wakeFd() const { return wake_.get(); }
  // One poll round: waits at most timeout_ms for socket activity.
  void poll(int timeout_ms);
  const ControlCounters& counters() const { return counters_; }
  size_t connections() const { return conns_.size(); }

 private:
  struct Conn;
  void accept();
  void onReadable(Conn& c);
  void onFrame(Conn& c, const proto::Frame& f);
  void handshake(Conn& c);
  void send(Conn& c, std::vector<std::byte> bytes);
  void refuse(Conn& c, uint16_t code, const std::string& why, std::atomic<uint64_t>& counter);
  void flushOut(Conn& c);
  void onShortcut(Conn& c, const proto::Shortcut& s);
  void onPeerHello(Conn& c, const proto::Hello& hello);

  const config::SlrConfig& cfg_;
  tls::Context ctx_;
  HostRegistry& registry_;
  UniqueFd listen_fd_;
  std::list<std::unique_ptr<Conn>> conns_;
  ControlCounters counters_;
  ShortcutSink sink_;
  PeerAcceptor peer_acceptor_;
  std::vector<proto::ShortcutEntry> accepted_;  // reused per SHORTCUT frame
  UniqueFd wake_;
};

}  // namespace slr::router
