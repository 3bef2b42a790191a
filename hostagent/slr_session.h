#pragma once
// The control channel to one SLR, on its own thread: TCP connect, TLS 1.3
// with our certificate (peer CN must be the configured SLR name), HELLO,
// wait for HELLO_ACK, then an UPDATE every update_interval until the
// connection fails or the SLR sends ERROR.  Reconnects with exponential
// backoff (0.2 s .. 10 s with jitter, reset after a successful registration).
//
// Threads: run() is the session thread; snapshot() may be called from any
// thread (status socket).  The load value is read from a shared atomic the
// agent's main loop refreshes.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/config.h"
#include "core/net_types.h"
#include "core/protocol.h"
#include "core/result.h"
#include "core/tls.h"

namespace slr::host {

enum class SessionState { kConnecting, kRegistered, kRefused, kError };
const char* sessionStateName(SessionState s);  // "connecting" | "registered" | "refused" | "error"

struct SessionSnapshot {
  std::string name;     // configured SLR name
  std::string address;  // "10.0.2.2:7400"
  SessionState state = SessionState::kConnecting;
  std::string last_error;
  uint64_t updates_sent = 0;
  uint32_t hold_time_ms = 0;   // from HELLO_ACK (0 before)
  std::string tunnel_source;   // from HELLO_ACK ("" before)
};

struct SessionParams {
  config::SlrPeerConfig peer;
  std::string host_name;       // our name (HELLO): a host's, or a lower SLR's
  proto::Role role = proto::Role::kHost;
  IpAddress tunnel_address;
  std::chrono::milliseconds update_interval{1000};
  uint32_t capabilities = 0;
  std::vector<Prefix> subnets;
  std::vector<double> subnet_load_scale;  // parallel to subnets; empty = all 1
  // Builds each UPDATE instead of subnets x load (a lower SLR: its aggregated
  // tables).  Called on the session thread.
  std::function<proto::Update(uint32_t seq)> make_update;
  // Messages queued by other threads (a lower SLR's shortcuts): when wake_fd
  // (an eventfd) becomes readable the session calls drain(), which appends
  // whole frames to send at once.
  int wake_fd = -1;
  std::function<void(std::vector<std::byte>&)> drain;
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds handshake_timeout{5000};
};

// ERROR codes 1, 2, 4 are refusals (the SLR will not take us as configured).
bool isRefusal(uint16_t code);
// "refused by slr1: <text>" for refusals, "error from slr1: <text>" otherwise
// (the code's meaning when the text is empty).
std::string refusalText(const std::string& slr_name, const proto::ErrorMsg& e);
// The UPDATE a host sends: one entry per subnet, with the load times that
// subnet's scale (scales parallel to subnets; missing = 1) and its
// availability (available parallel to subnets; missing = available).
proto::Update makeUpdate(uint32_t seq, const std::vector<Prefix>& subnets, double load,
                         const std::vector<double>& scales = {},
                         const std::vector<bool>& available = {});

class SlrSession {
 public:
  SlrSession(SessionParams params, const tls::Context& tls, const std::atomic<double>& load,
             const std::atomic<bool>& stop);
  ~SlrSession();

  void start();
  void join();
  SessionSnapshot snapshot() const;
  // Send an UPDATE now instead of at the next interval (availability
  // changed).  Any thread; while not registered it is a no-op (the first
  // UPDATE after registration goes out at once anyway).
  void sendNow();

 private:
  void run();
  // One connection lifetime; returns true if it reached "registered".
  bool connectOnce();
  void setState(SessionState s, std::string err = {}, bool keep_error = false);
  bool sleepInterruptible(std::chrono::milliseconds d) const;

  SessionParams p_;
  const tls::Context& tls_;
  const std::atomic<double>& load_;
  const std::atomic<bool>& stop_;
  std::thread thread_;
  uint32_t seq_ = 0;
  std::atomic<bool> send_now_{false};
  int now_fd_ = -1;  // eventfd: wakes the session thread for sendNow()

  mutable std::mutex mu_;
  SessionSnapshot snap_;
};

}  // namespace slr::host
