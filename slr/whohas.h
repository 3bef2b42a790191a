#pragma once
// WHOHAS: ask neighbour SLRs ([[neighbor]]) which host a mid-stream flow
// belongs to, and answer their questions.
//
// A worker that meets a TCP segment without SYN for a flow it does not know
// holds the packet and pushes the key on its whohasOut ring (wakes wakeFd()).
// This module's thread batches the keys into one WHOHAS per neighbour; an
// IHAVE naming an endpoint that is the tunnel address of one of our up next
// hops resolves the flow (kResolve to every worker, through the hooks).
// Unknown answers change nothing: the worker's hold timeout and
// flows.midstream_wait decide what happens then.
//
// Serving: a neighbour that dials us (HELLO role peer, kCapWhohas) is handed
// over by the ControlServer (adopt()); its WHOHAS entries are looked up in
// the workers' tables and answered with one IHAVE (found: the flow's
// endpoint).  Entries a worker itself only guesses (awaiting an answer) are
// not "found".  scope > 1: entries not found here are relayed to our own
// connected neighbours (except the asker) with scope - 1; the first found
// answer goes back to the asker, else not-found once all answered or
// whohas.wait passed.
//
// Threads: one module thread owns every channel and the pending queries; a
// dialer thread connects to the neighbours (blocking TLS) and passes the
// channels in.  adopt() and status() may be called from any thread.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/config.h"
#include "core/fd.h"
#include "core/net_types.h"
#include "core/protocol.h"
#include "core/result.h"
#include "core/tls.h"
#include "slr/peer_channel.h"
#include "slr/registry.h"

namespace slr::router {

struct WhohasCounters {
  std::atomic<uint64_t> asked{0};             // flow keys sent in WHOHAS (once per key, any neighbours)
  std::atomic<uint64_t> answered_found{0};    // IHAVE entries: found
  std::atomic<uint64_t> answered_unknown{0};  // IHAVE entries: not found
  std::atomic<uint64_t> resolved{0};          // flows pointed at the host an IHAVE named
  std::atomic<uint64_t> timeouts{0};          // asked, not resolved within the wait (no answer, unknown, refused)
  std::atomic<uint64_t> refused{0};           // found, but the endpoint is no up next hop of ours
  std::atomic<uint64_t> not_asked{0};         // key from a worker but no neighbour connected
  std::atomic<uint64_t> queries_served{0};    // WHOHAS entries answered for neighbours
  std::atomic<uint64_t> served_found{0};      // ... of which found here
  std::atomic<uint64_t> relayed{0};           // ... of which asked further (scope > 1)
  std::atomic<uint64_t> relayed_found{0};     // ... and found there
};

// What the module needs from the workers (the daemon wires them; tests fake them).
struct WhohasHooks {
  // Pop one key a worker queued (worker index < workers); false when empty.
  std::function<bool(size_t worker, FlowKey& key)> pop;
  size_t workers = 0;
  // Point the flow at next hop `host` (tunnel address `endpoint`, host order)
  // in every worker and release its held packets.
  std::function<void(const FlowKey& key, uint16_t host, uint32_t endpoint)> resolve;
  // The flow's tunnel endpoint (host order) when a worker forwards it for
  // sure (not a guess of its own); nullopt otherwise.
  std::function<std::optional<uint32_t>(const FlowKey& key)> lookup;
};

class WhohasModule {
 public:
  WhohasModule(const config::SlrConfig& cfg, const HostRegistry& registry, WhohasHooks hooks);
  ~WhohasModule();

  // TLS client contexts for the neighbours, eventfds.  Before start().
  Status init();
  // The eventfd workers write after queueing keys (WorkerOptions::whohas_wake).
  int wakeFd() const { return wake_.get(); }
  void start();
  void stop();

  // A neighbour's accepted connection (control thread); the module thread owns it from now on.
  void adopt(std::unique_ptr<PeerChannel> ch, const proto::Hello& hello);

  struct NeighborStatus {
    std::string name, address, state;  // state: "connecting" | "up" | "down"
    std::string last_error;
    bool inbound = false;  // it has a connection to us (it asks us)
  };
  std::vector<NeighborStatus> neighbors() const;
  const WhohasCounters& counters() const { return counters_; }

 private:
  struct Chan {
    std::unique_ptr<PeerChannel> ch;
    int neighbor = -1;  // index in cfg.neighbors (-1: a peer that is no [[neighbor]])
    bool outbound = false;
    uint64_t serial = 0;  // names the channel in relayed queries (set on arrival)
    std::string dead;   // non-empty: close it (why)
  };
  struct Pending {
    FlowKey key;
    std::chrono::steady_clock::time_point timeout;   // whohas.wait: counted as a timeout
    std::chrono::steady_clock::time_point deadline;  // forgotten (a late answer still helps until then)
    uint32_t outstanding = 0;  // neighbours that have not answered yet
    bool timed_out = false;
    // A neighbour's question we passed on: answer it on channel relay_chan
    // with its id (0: our own question).
    uint64_t relay_chan = 0;
    uint32_t relay_id = 0;
  };
  void run();
  void dialer();
  void takeInbox();
  void askPending();
  void onFrame(Chan& c, const proto::Frame& f);
  void onWhohas(Chan& c, const proto::Whohas& w);
  void onIhave(const proto::Ihave& h);
  void answerRelay(const Pending& p, bool found, const IpAddress& endpoint);
  uint32_t newId();
  void expire(std::chrono::steady_clock::time_point now);
  void setNeighbor(int idx, const char* state, const std::string& err);
  int neighborIndex(const std::string& name) const;

  const config::SlrConfig& cfg_;
  const HostRegistry& registry_;
  WhohasHooks hooks_;
  WhohasCounters counters_;
  std::vector<tls::Context> tls_;  // per neighbour
  UniqueFd wake_;   // workers: keys queued
  UniqueFd inbox_;  // channels handed in (adopt, dialer)

  std::atomic<bool> stop_{false};
  std::thread thread_, dialer_thread_;

  mutable std::mutex mu_;  // guards inbox_chans_, status_, dial_wanted_
  std::condition_variable dial_cv_;
  std::vector<Chan> inbox_chans_;
  std::vector<NeighborStatus> status_;
  std::vector<bool> dial_wanted_;  // per neighbour: no outbound channel, dialer should connect

  // Module thread only.
  std::vector<Chan> chans_;
  std::vector<FlowKey> fresh_;  // keys popped from the workers, not asked yet
  std::unordered_map<uint32_t, Pending> pending_;
  uint32_t next_id_ = 1;
  uint64_t next_serial_ = 1;
};

}  // namespace slr::router
