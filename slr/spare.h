#pragma once
// Hot spare ([hot_spare]): two SLRs, a main and a spare, keep the same flow
// table so that the one that takes over forwards every established flow to
// the host it had.
//
// - The spare dials the main's control_listen (PeerChannel, HELLO role peer,
//   kCapSpareSync); the main gets the channel from its ControlServer.  Both
//   send HEARTBEAT every `heartbeat` (state, flows, hosts_digest); different
//   [[host]] lists => ERROR and close (next hops are host ids on the wire).
// - The active side drains every worker's syncOut every `sync_interval` into
//   FLOW_SYNC frames; the other side posts kMirror/kUnmirror to all its
//   workers and acknowledges (SYNC_ACK) -> lag statistics at the sender.  A
//   new peer or a worker ring overflow => full resync (every worker's table,
//   then a frame with resync_done).
// - PairMachine (pure: events and time in, actions out) decides who is
//   active.  The active side claims the [hot_spare] claim_addresses on
//   claim_interface as leases (valid for max(1 s, ceil(2 * dead_after)),
//   refreshed every heartbeat) plus 3 gratuitous ARPs, so a main killed with
//   -9 loses its claim by itself; release and clean exit delete them.
//
// Threads: one "spare" thread owns the channel, the machine and the claim;
// accept() is called by the control thread (hand-over through a mutex and
// an eventfd); status() by the status thread.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/config.h"
#include "core/fd.h"
#include "core/protocol.h"
#include "core/result.h"
#include "core/tls.h"

namespace slr::router {

class PeerChannel;
class Worker;

// FNV-1a 64 over the [[host]] names in config order, each followed by a zero
// byte (so ["ab","c"] != ["a","bc"]).  Both SLRs of a pair must agree.
uint64_t hostsDigest(const std::vector<config::HostAuthConfig>& hosts);
uint64_t hostsDigest(const std::vector<std::string>& names);

// "standby" | "active" | "recovering" | "handover"
const char* pairStateName(proto::PairState s);

// Who forwards, decided from heartbeats and time alone (unit-tested).
//   main:  starts recovering (workers pinned, no claim).  The spare, standby
//          or active, sends its whole table and then a HEARTBEAT handover ->
//          claim, active (a main restarted faster than dead_after gets back
//          what its spare mirrored, not only one restarted after a
//          takeover).  No peer heard within 2*dead_after of start (or a peer
//          heard, then silent for dead_after) -> claim, active.
//   spare: starts standby.  Silence for dead_after (since start, or since
//          the last frame) -> takeover: claim, active.  The peer says
//          recovering -> full resync to it, then handover (an active spare
//          keeps forwarding in state handover; a standby one sends one
//          HEARTBEAT handover and stays standby).  Active/handover and the
//          peer says active -> release, standby (the table stays as the
//          mirror).  Once the main is active, it streams and the spare mirrors.
// The active side (active or handover) streams its changes once the peer got
// a full resync on this connection (or took the table over from us).
class PairMachine {
 public:
  using Ms = int64_t;  // steady clock, milliseconds
  struct Options {
    config::SpareRole role = config::SpareRole::kMain;
    Ms dead_after_ms = 500;
  };
  struct Actions {
    bool claim = false;          // add the claim addresses (+ gratuitous ARP)
    bool release = false;        // delete them
    bool resync = false;         // queue our whole table to the peer (then stream changes)
    bool send_handover = false;  // right after the resync: HEARTBEAT handover
    bool takeover = false;       // the claim follows the peer's silence (count it)
    Ms silence_ms = 0;           // takeover: ms since the peer was last heard (or since start)
  };

  PairMachine(Options o, Ms now);

  Actions connected(Ms now);     // a new channel to the peer is up
  Actions disconnected(Ms now);  // it is gone
  Actions heard(Ms now);         // any frame from the peer
  Actions heartbeat(Ms now, proto::PairState peer);  // implies heard()
  // Whether our next hops are up (default true).  A recovering main takes
  // the traffic from a forwarding (handover) spare only when ready; from a
  // standby spare's handover marker, or a silent peer, at once.
  Actions hostsReady(Ms now, bool ready);
  Actions tick(Ms now);          // time passes (call at least every heartbeat)

  proto::PairState state() const { return state_; }
  // Workers keep every entry (mirror) and never expire: standby or recovering.
  bool standby() const { return state_ == proto::PairState::kStandby || state_ == proto::PairState::kRecovering; }
  bool active() const { return state_ == proto::PairState::kActive || state_ == proto::PairState::kHandover; }
  bool claimed() const { return claimed_; }
  bool isConnected() const { return connected_; }
  // Send our changes to the peer now.
  bool streaming() const { return active() && connected_ && peer_synced_; }
  std::optional<proto::PairState> peerState() const { return peer_state_; }

 private:
  Actions becomeActive(Ms now, bool takeover);
  Actions becomeStandby();

  Options o_;
  proto::PairState state_;
  Ms start_ms_;
  Ms last_heard_ms_;
  bool heard_ever_ = false;
  bool connected_ = false;
  bool peer_synced_ = false;
  bool claimed_ = false;
  bool hosts_ready_ = true;
  std::optional<proto::PairState> peer_state_;
};

struct HotSpareStatus {
  bool enabled = false;
  std::string role, state, peer, peer_state = "none", last_error;
  bool connected = false, claimed = false;
  bool hosts_ready = true;  // our next hops are up (see HotSpare::hostsReady)
  uint64_t sent = 0, received = 0, mirrored = 0, resyncs = 0, overflows = 0, takeovers = 0;
  uint64_t post_failed = 0;  // kMirror/kUnmirror a worker ring did not take
  uint64_t lag_ms_last = 0, lag_ms_max = 0, lag_samples = 0;
  double lag_ms_avg = 0;
  int64_t last_takeover_ms = -1;  // -1: never
  uint64_t sync_interval_ms = 0;
  std::vector<std::string> claim_addresses;
};

class HotSpare {
 public:
  // {next hops up in the published tables, [[host]]s configured}; any thread.
  using HostsUpFn = std::function<std::pair<size_t, size_t>()>;
  // workers: the daemon's, alive until stop() returned.  standby: the flag
  // every WorkerOptions::standby points at.  hosts_up: empty = always ready.
  HotSpare(const config::SlrConfig& cfg, const std::vector<std::unique_ptr<Worker>>& workers,
           std::atomic<bool>& standby, HostsUpFn hosts_up = {});
  ~HotSpare();

  // TLS client context (spare), claim interface, leftovers of an earlier
  // run's claim removed.  Sets the standby flag to the start state.
  Status init();
  void start();
  // Stop the thread and release the claim (clean exit).
  void stop();

  // Control thread: an accepted peer channel with kCapSpareSync.  Replaces
  // the current channel (a restarted peer).
  void accept(std::unique_ptr<PeerChannel> ch, const proto::Hello& hello);

  HotSpareStatus status() const;

 private:
  using Clock = std::chrono::steady_clock;
  struct PendingLag {
    uint32_t seq;
    uint32_t oldest_t_ms;
  };

  void run();
  int64_t nowMs() const;
  void apply(const PairMachine::Actions& a, int64_t now);
  void dial(int64_t now);
  void setChannel(std::unique_ptr<PeerChannel> ch, int64_t now, const std::string& how);
  void dropChannel(int64_t now, const std::string& why);
  void onFrame(const proto::Frame& f, int64_t now, std::string& close_reason);
  void sendHeartbeat(std::optional<proto::PairState> state = std::nullopt);  // default: the machine's
  void queue(std::vector<std::byte> frame);
  bool pump();  // false: the connection failed
  void drainSync();
  void discardSync();
  bool fullResync();  // false, and resync_incomplete_, when a worker did not answer
  void applySync(const proto::FlowSync& m);
  void claim(int64_t now);
  void refreshClaim();
  void release();
  void sendGarp();
  uint64_t activeFlows() const;
  bool hostsReady(int64_t now);
  void setError(const std::string& e);

  const config::SlrConfig& cfg_;
  const config::HotSpareConfig& hs_;
  const std::vector<std::unique_ptr<Worker>>& workers_;
  std::atomic<bool>& standby_;
  HostsUpFn hosts_up_;
  std::optional<tls::Context> tls_;
  uint64_t digest_ = 0;
  int claim_ifindex_ = 0;
  uint32_t lease_s_ = 1;

  std::thread thread_;
  std::atomic<bool> stop_{false};
  UniqueFd wake_;  // eventfd: accept() handed over a channel

  std::mutex accept_mu_;
  std::unique_ptr<PeerChannel> accepted_;

  // Spare thread only.
  std::unique_ptr<PairMachine> machine_;
  std::unique_ptr<PeerChannel> ch_;
  std::deque<std::vector<std::byte>> backlog_;  // frames the channel did not take yet
  // Set by queue() / fullResync(); the run loop then drops the channel (the
  // next connection starts with a full resync).
  bool backlog_overflow_ = false;
  bool resync_incomplete_ = false;
  int64_t last_rx_ms_ = 0;  // last frame from the peer on this channel
  uint32_t hb_seq_ = 0, sync_seq_ = 0;
  std::deque<PendingLag> lag_pending_;
  uint64_t lag_sum_ = 0;
  int64_t next_heartbeat_ = 0, next_sync_ = 0, next_dial_ = 0;
  int garp_left_ = 0;
  int64_t next_garp_ = 0;
  int64_t next_reannounce_ = 0;  // main: earliest re-claim when the spare is active too
  int64_t start_ms_ = 0;
  bool waiting_logged_ = false;
  uint64_t rx_since_resync_ = 0;  // entries received on this channel since the last resync_done

  mutable std::mutex mu_;  // guards st_
  HotSpareStatus st_;
};

}  // namespace slr::router
