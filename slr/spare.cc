#include "slr/spare.h"

#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/log.h"
#include "core/netlink.h"
#include "slr/counters.h"
#include "slr/peer_channel.h"
#include "slr/worker.h"

namespace slr::router {

using proto::PairState;

uint64_t hostsDigest(const std::vector<std::string>& names) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a 64 offset basis
  auto mix = [&h](uint8_t b) {
    h ^= b;
    h *= 0x100000001b3ull;  // FNV prime
  };
  for (const auto& n : names) {
    for (char c : n) mix(uint8_t(c));
    mix(0);
  }
  return h;
}

uint64_t hostsDigest(const std::vector<config::HostAuthConfig>& hosts) {
  std::vector<std::string> names;
  names.reserve(hosts.size());
  for (const auto& h : hosts) names.push_back(h.name);
  return hostsDigest(names);
}

const char* pairStateName(PairState s) {
  switch (s) {
    case PairState::kStandby: return "standby";
    case PairState::kActive: return "active";
    case PairState::kRecovering: return "recovering";
    case PairState::kHandover: return "handover";
  }
  return "unknown";
}

// ------------------------------------------------------------ PairMachine ---

PairMachine::PairMachine(Options o, Ms now)
    : o_(o),
      state_(o.role == config::SpareRole::kMain ? PairState::kRecovering : PairState::kStandby),
      start_ms_(now),
      last_heard_ms_(now) {}

PairMachine::Actions PairMachine::connected(Ms) {
  connected_ = true;
  peer_synced_ = false;  // a new connection may be a restarted peer with an empty table
  peer_state_.reset();
  return {};
}

PairMachine::Actions PairMachine::disconnected(Ms) {
  // Silence is counted from the last frame, not from the loss: a dead peer
  // and a broken connection look the same after dead_after.
  connected_ = false;
  peer_synced_ = false;
  peer_state_.reset();
  return {};
}

PairMachine::Actions PairMachine::heard(Ms now) {
  last_heard_ms_ = now;
  heard_ever_ = true;
  return {};
}

PairMachine::Actions PairMachine::becomeActive(Ms now, bool takeover) {
  Actions a;
  a.silence_ms = now - last_heard_ms_;
  state_ = PairState::kActive;
  a.claim = !claimed_;
  a.takeover = takeover;
  claimed_ = true;
  return a;
}

PairMachine::Actions PairMachine::becomeStandby() {
  Actions a;
  state_ = PairState::kStandby;
  a.release = claimed_;
  claimed_ = false;
  return a;
}

PairMachine::Actions PairMachine::hostsReady(Ms now, bool ready) {
  hosts_ready_ = ready;
  // A forwarding spare handed over while we were not ready: take it now.
  if (ready && state_ == PairState::kRecovering && peer_state_ == PairState::kHandover) {
    peer_synced_ = true;
    return becomeActive(now, false);
  }
  return {};
}

PairMachine::Actions PairMachine::heartbeat(Ms now, PairState peer) {
  heard(now);
  const std::optional<PairState> before = peer_state_;
  peer_state_ = peer;
  const bool peer_passive = peer == PairState::kStandby || peer == PairState::kRecovering;
  Actions a;
  switch (state_) {
    case PairState::kRecovering:
      // Only a main recovers.  The spare (standby or active) first sends us
      // its table and then says handover: a main restarted faster than
      // dead_after gets back the flows its spare mirrored.  A recovering
      // peer (a second main: misconfigured) has nothing for us.
      if (peer == PairState::kRecovering) {
        a = becomeActive(now, false);
        a.resync = true;
        peer_synced_ = true;
      } else if (peer == PairState::kHandover) {
        // A standby spare's marker: nobody forwards, take over at once.  A
        // forwarding spare keeps the traffic until our hosts are up (their
        // agents reconnect with backoff): we would have no next hops.
        if (before == PairState::kStandby || hosts_ready_) {
          a = becomeActive(now, false);
          peer_synced_ = true;  // its table is ours; from now on we stream
        }
      }
      break;
    case PairState::kStandby:
      // The active peer stepped down (a clean exit says standby last): take
      // over now rather than after dead_after.
      if (peer == PairState::kStandby && before == PairState::kActive) {
        a = becomeActive(now, true);
        break;
      }
      // Our mirror is the table a restarted main lost: send it, then the
      // handover marker (one HEARTBEAT saying handover; we stay standby).
      if (peer == PairState::kRecovering && !peer_synced_ && connected_) {
        a.resync = true;
        a.send_handover = true;
        peer_synced_ = true;
      }
      break;
    case PairState::kActive:
      if (peer == PairState::kActive) {
        // Both forward (a partition healed, a stopped main resumed): the
        // main keeps the role, the spare steps back.
        if (o_.role == config::SpareRole::kSpare) a = becomeStandby();
      } else if (peer_passive && !peer_synced_) {
        a.resync = true;
        peer_synced_ = true;
        if (o_.role == config::SpareRole::kSpare && peer == PairState::kRecovering) {
          a.send_handover = true;  // after the table: "take it back"
          state_ = PairState::kHandover;
        }
      }
      break;
    case PairState::kHandover:
      if (peer == PairState::kActive) a = becomeStandby();
      break;
  }
  return a;
}

PairMachine::Actions PairMachine::tick(Ms now) {
  Actions a;
  const Ms silence = now - last_heard_ms_;
  switch (state_) {
    case PairState::kRecovering:
      // No peer seen yet: give a restarting spare 2*dead_after to show up.
      if (heard_ever_ ? silence >= o_.dead_after_ms : now - start_ms_ >= 2 * o_.dead_after_ms)
        a = becomeActive(now, heard_ever_);
      break;
    case PairState::kStandby:
      if (silence >= o_.dead_after_ms) a = becomeActive(now, true);
      break;
    case PairState::kHandover:
      // The main that asked for the table went away again: keep forwarding.
      if (silence >= o_.dead_after_ms) state_ = PairState::kActive;
      break;
    case PairState::kActive:
      break;
  }
  return a;
}

// --------------------------------------------------------------- HotSpare ---

namespace {

constexpr int kGarpCount = 3;
constexpr int64_t kGarpSpacingMs = 50;
constexpr int kPostRetries = 100;  // x 100 us: a worker ring that stays full this long drops the entry
constexpr int kDumpTimeoutMs = 2000;
// Frames waiting for a peer that does not read (a stopped spare): beyond
// this the channel is dropped rather than the memory growing.
constexpr size_t kMaxBacklogFrames = 8192;
constexpr int64_t kHostsWaitMs = 12000;  // host agents' reconnect backoff (<= 10 s) + registration

uint64_t msCount(config::Duration d) { return uint64_t(std::max<int64_t>(1, d.count())); }

}  // namespace

HotSpare::HotSpare(const config::SlrConfig& cfg, const std::vector<std::unique_ptr<Worker>>& workers,
                   std::atomic<bool>& standby, HostsUpFn hosts_up)
    : cfg_(cfg), hs_(cfg.hot_spare), workers_(workers), standby_(standby), hosts_up_(std::move(hosts_up)) {}

HotSpare::~HotSpare() { stop(); }

int64_t HotSpare::nowMs() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch()).count();
}

Status HotSpare::init() {
  auto ctx = tls::Context::client(cfg_.tls.ca, cfg_.tls.cert, cfg_.tls.key);
  if (!ctx) return ctx.error();
  tls_.emplace(std::move(ctx.value()));
  digest_ = hostsDigest(cfg_.hosts);
  wake_ = UniqueFd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wake_) return sysError("eventfd for the hot spare");
  // Lease: the kernel drops an address whose owner stopped refreshing it.
  const int64_t dead = int64_t(msCount(hs_.dead_after));
  lease_s_ = uint32_t(std::max<int64_t>(1, (2 * dead + 999) / 1000));
  if (!hs_.claim_addresses.empty()) {
    auto idx = nl::linkIndex(hs_.claim_interface);
    if (!idx) {
      auto e = idx.error();
      e.op = "[hot_spare] claim_interface \"" + hs_.claim_interface + "\": " + e.op;
      return e;
    }
    claim_ifindex_ = *idx;
    // A previous run killed before its lease ran out may have left them:
    // we start without a claim, so nobody may answer ARP for them here.
    for (const auto& a : hs_.claim_addresses) {
      if (auto st = nl::delAddressIfPresent(claim_ifindex_, a); !st)
        LOG_WARN("spare", "removing leftover claim address " + a.str() + ": " + st.error().message());
    }
  }
  start_ms_ = nowMs();
  machine_ = std::make_unique<PairMachine>(
      PairMachine::Options{hs_.role, int64_t(msCount(hs_.dead_after))}, start_ms_);
  standby_.store(machine_->standby());
  std::lock_guard lk(mu_);
  st_.enabled = true;
  st_.role = std::string(config::spareRoleName(hs_.role));
  st_.state = pairStateName(machine_->state());
  st_.peer = hs_.peer_name;
  st_.sync_interval_ms = msCount(hs_.sync_interval);
  for (const auto& a : hs_.claim_addresses) st_.claim_addresses.push_back(a.str());
  return Ok{};
}

void HotSpare::start() {
  LOG_INFO("spare", std::string("hot spare: ") + std::string(config::spareRoleName(hs_.role)) +
                        " of pair with " + hs_.peer_name + " (" + hs_.peer.str() + "), heartbeat " +
                        std::to_string(hs_.heartbeat.count()) + " ms, dead after " +
                        std::to_string(hs_.dead_after.count()) + " ms, claim lease " +
                        std::to_string(lease_s_) + " s, state " + pairStateName(machine_->state()));
  thread_ = std::thread([this] { run(); });
}

void HotSpare::stop() {
  stop_ = true;
  if (thread_.joinable()) {
    uint64_t one = 1;
    (void)!::write(wake_.get(), &one, sizeof one);
    thread_.join();
  }
}

void HotSpare::accept(std::unique_ptr<PeerChannel> ch, const proto::Hello& hello) {
  LOG_INFO("spare", "peer " + hello.name + " connected (sync channel)");
  {
    std::lock_guard lk(accept_mu_);
    accepted_ = std::move(ch);
  }
  uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof one);
}

HotSpareStatus HotSpare::status() const {
  HotSpareStatus s;
  {
    std::lock_guard lk(mu_);
    s = st_;
  }
  s.mirrored = activeFlows();
  return s;
}

// Flows this SLR holds.  A mirror is posted to every worker (any of them may
// own the flow after a takeover), so while standby each worker has a copy of
// all of them: the largest table, not the sum.
uint64_t HotSpare::activeFlows() const {
  uint64_t sum = 0, most = 0;
  for (const auto& w : workers_) {
    const uint64_t n = read(w->counters().active_flows);
    sum += n;
    most = std::max(most, n);
  }
  return standby_.load() ? most : sum;
}

// Ready to take the traffic from a forwarding spare: every [[host]] is a
// next hop in the published tables, or at least one is and the agents had
// time to reconnect (their backoff is at most 10 s; a host that is really
// down must not keep the main out for ever).
bool HotSpare::hostsReady(int64_t now) {
  if (!hosts_up_) return true;
  auto [up, configured] = hosts_up_();
  const bool ready = up >= configured || (up > 0 && now - start_ms_ >= kHostsWaitMs);
  if (!ready && machine_->state() == PairState::kRecovering &&
      machine_->peerState() == PairState::kHandover && !waiting_logged_) {
    waiting_logged_ = true;
    LOG_INFO("spare", hs_.peer_name + " hands over; waiting for our hosts before taking the traffic (" +
                          std::to_string(up) + " of " + std::to_string(configured) + " up)");
  }
  {
    std::lock_guard lk(mu_);
    st_.hosts_ready = ready;
  }
  return ready;
}

void HotSpare::setError(const std::string& e) {
  std::lock_guard lk(mu_);
  st_.last_error = e;
}

void HotSpare::run() {
  const int64_t hb = int64_t(msCount(hs_.heartbeat));
  const int64_t si = int64_t(msCount(hs_.sync_interval));
  std::string close_reason;
  while (!stop_.load()) {
    int64_t now = nowMs();
    std::unique_ptr<PeerChannel> acc;
    {
      std::lock_guard lk(accept_mu_);
      acc = std::move(accepted_);
    }
    if (acc) setChannel(std::move(acc), now, "accepted");
    if (!ch_ && hs_.role == config::SpareRole::kSpare && now >= next_dial_) {
      // Before the (blocking) dial, so a dead main is noticed on time.
      apply(machine_->tick(now), now);
      dial(now);
      now = nowMs();
      next_dial_ = now + hb;
    }
    if (ch_) {
      // Every round, not only when poll says readable: TLS may hold
      // decrypted records the socket no longer signals.
      close_reason.clear();
      bool ok = ch_->readFrames([&](const proto::Frame& f) {
        last_rx_ms_ = now;
        if (close_reason.empty()) onFrame(f, now, close_reason);
      });
      if (!ok && close_reason.empty()) close_reason = ch_->lastError().empty() ? "closed by the peer" : ch_->lastError();
      // Only the dialling side has TCP keepalive: a peer that stopped
      // (SIGSTOP, hung) but keeps its socket open is noticed by silence.
      if (close_reason.empty() && now - last_rx_ms_ > 2 * int64_t(msCount(hs_.dead_after)))
        close_reason = "no frame from the peer for " + std::to_string(now - last_rx_ms_) + " ms";
      if (close_reason.empty() && backlog_overflow_)
        close_reason = "the peer does not read (" + std::to_string(backlog_.size()) + " frames waiting)";
      if (close_reason.empty() && resync_incomplete_)
        close_reason = "full resync incomplete: a worker did not answer within " +
                       std::to_string(kDumpTimeoutMs) + " ms";
      if (!close_reason.empty()) dropChannel(now, close_reason);
    }
    apply(machine_->hostsReady(now, hostsReady(now)), now);
    apply(machine_->tick(now), now);
    if (now >= next_sync_) {
      drainSync();
      next_sync_ = now + si;
    }
    if (now >= next_heartbeat_) {
      if (ch_) sendHeartbeat();
      if (machine_->claimed()) refreshClaim();
      next_heartbeat_ = now + hb;
    }
    if (garp_left_ > 0 && now >= next_garp_) {
      sendGarp();
      --garp_left_;
      next_garp_ = now + kGarpSpacingMs;
    }
    if (ch_ && !pump()) dropChannel(now, ch_->lastError().empty() ? "write failed" : ch_->lastError());

    int64_t next = std::min(next_sync_, next_heartbeat_);
    if (garp_left_ > 0) next = std::min(next, next_garp_);
    if (!ch_ && hs_.role == config::SpareRole::kSpare) next = std::min(next, next_dial_);
    int timeout = int(std::clamp<int64_t>(next - nowMs(), 0, 100));
    pollfd p[2] = {{wake_.get(), POLLIN, 0}, {-1, 0, 0}};
    if (ch_) p[1] = {ch_->fd(), short(POLLIN | (ch_->wantsWrite() || !backlog_.empty() ? POLLOUT : 0)), 0};
    if (::poll(p, ch_ ? 2 : 1, timeout) > 0 && (p[0].revents & POLLIN)) {
      uint64_t v;
      (void)!::read(wake_.get(), &v, sizeof v);
    }
  }
  // Clean exit: the addresses go now, not when the lease runs out, and the
  // peer hears that we stepped down (a standby spare takes over at once).
  if (machine_ && machine_->claimed()) {
    release();
    if (ch_) {
      sendHeartbeat(PairState::kStandby);
      (void)pump();
      for (int i = 0; i < 20 && ch_->wantsWrite() && ch_->flush(); ++i) {
        pollfd p{ch_->fd(), POLLOUT, 0};
        (void)::poll(&p, 1, 5);
      }
    }
  }
  ch_.reset();
}

void HotSpare::dial(int64_t now) {
  proto::Hello h;
  h.role = proto::Role::kPeer;
  h.name = cfg_.slr.name;
  h.tunnel_address = cfg_.slr.tunnel_source;
  h.update_interval_ms = uint32_t(msCount(hs_.heartbeat));
  h.capabilities = proto::kCapSpareSync;
  // Bounded so the machine keeps ticking while the main is unreachable.
  auto timeout = std::chrono::milliseconds(std::max<int64_t>(200, int64_t(msCount(hs_.dead_after)) / 2));
  auto r = PeerChannel::dial(*tls_, hs_.peer, hs_.peer_name, h, timeout);
  if (!r) {
    std::string e = "connecting to " + hs_.peer_name + " at " + hs_.peer.str() + ": " + r.error().message();
    bool changed;
    {
      std::lock_guard lk(mu_);
      changed = st_.last_error != e;
      st_.last_error = e;
    }
    if (changed) LOG_WARN("spare", e + " (retrying every heartbeat)");
    return;
  }
  setChannel(std::move(r.value()), now, "dialled");
}

void HotSpare::setChannel(std::unique_ptr<PeerChannel> ch, int64_t now, const std::string& how) {
  if (ch_) dropChannel(now, "replaced by a new connection");
  ch_ = std::move(ch);
  rx_since_resync_ = 0;
  last_rx_ms_ = now;
  LOG_INFO("spare", "sync channel to " + ch_->peerName() + " up (" + how + ")");
  {
    std::lock_guard lk(mu_);
    st_.connected = true;
    st_.peer_state = "none";
    st_.last_error.clear();
  }
  apply(machine_->connected(now), now);
  sendHeartbeat();  // tell the peer our state at once
}

void HotSpare::dropChannel(int64_t now, const std::string& why) {
  if (!ch_) return;
  LOG_WARN("spare", "sync channel to " + ch_->peerName() + " down: " + why);
  ch_.reset();
  backlog_.clear();
  backlog_overflow_ = false;
  resync_incomplete_ = false;
  lag_pending_.clear();
  {
    std::lock_guard lk(mu_);
    st_.connected = false;
    st_.peer_state = "none";
    st_.last_error = why;
  }
  apply(machine_->disconnected(now), now);
}

void HotSpare::onFrame(const proto::Frame& f, int64_t now, std::string& close_reason) {
  auto fail = [&](const std::string& why) {
    proto::ErrorMsg e{proto::kProtocolError, proto::sanitizeText(why)};
    queue(proto::encode(e));
    (void)pump();
    close_reason = why;
  };
  switch (f.type) {
    case proto::MsgType::kHeartbeat: {
      auto m = proto::decodeHeartbeat(f.body);
      if (!m) return fail(m.error().message());
      if (m->hosts_digest != digest_) {
        return fail("[[host]] lists differ between " + cfg_.slr.name + " and " + ch_->peerName() +
                    " (hosts digest mismatch): the pair must share the same [[host]] names in "
                    "the same order");
      }
      {
        std::lock_guard lk(mu_);
        st_.peer_state = pairStateName(m->state);
      }
      apply(machine_->heartbeat(now, m->state), now);
      // Both active (a stopped main resumed): the main keeps the role, and
      // neighbours may have cached the spare's MAC meanwhile (our lease may
      // even have run out while we were stopped): claim and announce again.
      if (hs_.role == config::SpareRole::kMain && machine_->claimed() &&
          m->state == PairState::kActive && now >= next_reannounce_) {
        LOG_WARN("spare", hs_.peer_name + " is active too: announcing the claim again");
        refreshClaim();
        if (!hs_.claim_addresses.empty()) {
          garp_left_ = kGarpCount;
          next_garp_ = now;
        }
        next_reannounce_ = now + int64_t(msCount(hs_.dead_after));
      }
      return;
    }
    case proto::MsgType::kFlowSync: {
      auto m = proto::decodeFlowSync(f.body);
      if (!m) return fail(m.error().message());
      apply(machine_->heard(now), now);
      applySync(*m);
      queue(proto::encode(proto::SyncAck{m->seq}));
      rx_since_resync_ += m->entries.size();
      if (m->resync_done) {
        LOG_INFO("spare", "full table from " + ch_->peerName() + " received: " +
                              std::to_string(rx_since_resync_) + " entries");
        rx_since_resync_ = 0;
      }
      return;
    }
    case proto::MsgType::kSyncAck: {
      auto m = proto::decodeSyncAck(f.body);
      if (!m) return fail(m.error().message());
      apply(machine_->heard(now), now);
      const uint32_t now32 = uint32_t(now);
      std::lock_guard lk(mu_);
      while (!lag_pending_.empty() && int32_t(m->seq - lag_pending_.front().seq) >= 0) {
        const uint64_t lag = uint32_t(now32 - lag_pending_.front().oldest_t_ms);
        lag_pending_.pop_front();
        st_.lag_ms_last = lag;
        st_.lag_ms_max = std::max(st_.lag_ms_max, lag);
        lag_sum_ += lag;
        ++st_.lag_samples;
        st_.lag_ms_avg = double(lag_sum_) / double(st_.lag_samples);
      }
      return;
    }
    case proto::MsgType::kError: {
      auto m = proto::decodeError(f.body);
      close_reason = "error from peer: " + (m ? m->text : m.error().message());
      return;
    }
    default:
      return fail(std::string("unexpected ") + std::string(proto::typeName(f.type)) +
                  " on the hot-spare channel");
  }
}

void HotSpare::apply(const PairMachine::Actions& a, int64_t now) {
  if (a.release) release();
  if (a.claim) {
    standby_.store(false);  // takeover: workers refresh every entry's last_seen once
    claim(now);
    if (a.takeover) {
      const int64_t took = a.silence_ms + (nowMs() - now);
      LOG_WARN("spare", "takeover after " + std::to_string(took) + " ms without " + hs_.peer_name +
                            (machine_->isConnected() ? "" : " (no connection)") + ": now active");
      std::lock_guard lk(mu_);
      ++st_.takeovers;
      st_.last_takeover_ms = took;
    } else {
      LOG_INFO("spare", std::string("now active (peer ") +
                            (machine_->peerState() ? pairStateName(*machine_->peerState()) : "absent") + ")");
    }
  }
  const bool table_sent = !a.resync || fullResync();
  if (a.send_handover && !table_sent) {
    // "Take it back" promises the peer a whole table.  The channel is
    // dropped (resync_incomplete_); we go on forwarding (kHandover reverts
    // to active on the silence) and the next connection hands over again.
    LOG_WARN("spare", "not handing over to " + hs_.peer_name + ": the table was not sent whole");
  } else if (a.send_handover) {
    sendHeartbeat(PairState::kHandover);  // queued after the table: the peer applies it all first
    LOG_INFO("spare", "table sent to the recovering " + hs_.peer_name + ": handing over");
  }
  standby_.store(machine_->standby());
  std::lock_guard lk(mu_);
  st_.state = pairStateName(machine_->state());
  st_.claimed = machine_->claimed();
}

void HotSpare::sendHeartbeat(std::optional<PairState> state) {
  if (!ch_) return;
  proto::Heartbeat h;
  h.seq = ++hb_seq_;
  h.state = state.value_or(machine_->state());
  h.flows = uint32_t(std::min<uint64_t>(activeFlows(), UINT32_MAX));
  h.hosts_digest = digest_;
  queue(proto::encode(h));
}

void HotSpare::queue(std::vector<std::byte> frame) {
  backlog_.push_back(std::move(frame));
  if (backlog_.size() > kMaxBacklogFrames) backlog_overflow_ = true;
}

// Hand queued frames to the channel, in order, as far as it takes them.
bool HotSpare::pump() {
  if (!ch_) return true;
  while (!backlog_.empty()) {
    if (!ch_->send(backlog_.front())) break;  // its own queue is full: later
    backlog_.pop_front();
  }
  return ch_->flush();
}

void HotSpare::discardSync() {
  SyncEvent e;
  for (const auto& w : workers_) {
    while (w->syncOut().pop(e)) {
    }
  }
}

// Every sync_interval: what the workers changed, to the peer (while we are
// the active side and the peer has our table), else thrown away.
void HotSpare::drainSync() {
  bool overflow = false;
  for (const auto& w : workers_) overflow |= w->takeSyncOverflow();
  if (overflow) {
    std::lock_guard lk(mu_);
    ++st_.overflows;
  }
  if (!ch_ || !machine_->streaming()) {
    discardSync();
    return;
  }
  if (overflow) {
    LOG_WARN("spare", "a worker's sync ring overflowed: full resync to " + hs_.peer_name);
    fullResync();
    return;
  }
  const uint32_t now32 = uint32_t(nowMs());
  proto::FlowSync msg;
  uint32_t oldest_age = 0;
  auto emit = [&] {
    if (msg.entries.empty()) return;
    msg.seq = ++sync_seq_;
    queue(proto::encode(msg));
    std::lock_guard lk(mu_);
    st_.sent += msg.entries.size();
    lag_pending_.push_back({msg.seq, now32 - oldest_age});
    msg.entries.clear();
    oldest_age = 0;
  };
  SyncEvent e;
  for (const auto& w : workers_) {
    while (w->syncOut().pop(e)) {
      proto::FlowSyncEntry s;
      s.op = e.op;
      s.key = e.key;
      if (e.op == proto::SyncOp::kUpsert) {
        if (e.endpoint == 0) continue;  // nowhere to send it: nothing to mirror
        s.next_hop = e.next_hop;
        s.endpoint = IpAddress::v4(e.endpoint);
        s.label = e.label;
        s.state = uint8_t(e.state);
        s.age_ms = e.t_ms - e.first_seen_ms;
      }
      oldest_age = std::max(oldest_age, now32 - e.t_ms);
      msg.entries.push_back(std::move(s));
      if (msg.entries.size() == proto::kMaxEntries) emit();
    }
  }
  emit();
}

// The whole table to the peer: every worker's flows as upserts, then a frame
// with resync_done.  Changes drained afterwards are newer than the dump.
// false (and resync_incomplete_) when a worker did not answer.
bool HotSpare::fullResync() {
  for (const auto& w : workers_) (void)w->takeSyncOverflow();
  discardSync();
  proto::FlowSync msg;
  size_t total = 0;
  auto emit = [&](bool done) {
    msg.seq = ++sync_seq_;
    msg.resync_done = done;
    total += msg.entries.size();
    queue(proto::encode(msg));
    msg.entries.clear();
  };
  for (const auto& w : workers_) {
    // Between workers: heartbeats must not stop for a long dump, or a
    // standby spare would take this for a dead main.
    if (&w != &workers_.front()) {
      sendHeartbeat();
      (void)pump();
    }
    bool complete = false;
    auto flows = w->dumpFlows(std::numeric_limits<size_t>::max(), kDumpTimeoutMs, &complete);
    if (!complete) {
      // An empty answer is not an empty table: never tell the peer its
      // mirror is whole.  The run loop drops the channel; the next one
      // starts with a full resync again.
      LOG_WARN("spare", "full resync to " + hs_.peer_name + " abandoned: a worker did not answer");
      resync_incomplete_ = true;
      return false;
    }
    for (const auto& f : flows) {
      if (f.endpoint == 0) continue;
      proto::FlowSyncEntry s;
      s.op = proto::SyncOp::kUpsert;
      s.key = f.key;
      s.next_hop = f.host_id;  // kNoNextHop == kNoHostId: a shortcut endpoint
      s.endpoint = IpAddress::v4(f.endpoint);
      s.label = f.label;
      s.state = uint8_t(f.state);
      s.age_ms = f.age_ms;
      msg.entries.push_back(std::move(s));
      if (msg.entries.size() == proto::kMaxEntries) emit(false);
    }
  }
  emit(true);
  LOG_INFO("spare", "full resync to " + hs_.peer_name + ": " + std::to_string(total) + " flows");
  std::lock_guard lk(mu_);
  ++st_.resyncs;
  st_.sent += total;
  return true;
}

// The peer's changes: to every worker (the kernel picks the TUN queue, so
// after a takeover any worker may see the flow).
void HotSpare::applySync(const proto::FlowSync& m) {
  uint64_t failed = 0, applied = 0;
  for (const auto& e : m.entries) {
    WorkerCmd c;
    c.key = e.key;
    if (e.op == proto::SyncOp::kUpsert) {
      if (!e.endpoint.isV4()) continue;
      if (e.next_hop != proto::kNoHostId && e.next_hop >= cfg_.hosts.size()) continue;
      c.kind = CmdKind::kMirror;
      c.state = e.state < kFlowStateCount ? FlowState(e.state) : FlowState::kOther;
      c.next_hop = e.next_hop == proto::kNoHostId ? kNoNextHop : e.next_hop;
      c.endpoint = e.endpoint.v4HostOrder();
      c.label = e.label;
      c.age_ms = e.age_ms;
    } else {
      c.kind = CmdKind::kUnmirror;
    }
    ++applied;
    for (const auto& w : workers_) {
      int tries = 0;
      while (!w->post(c)) {
        if (++tries > kPostRetries) {
          ++failed;
          break;
        }
        w->kick();
        std::this_thread::sleep_for(std::chrono::microseconds(100));
      }
    }
  }
  for (const auto& w : workers_) w->kick();
  std::lock_guard lk(mu_);
  st_.received += applied;
  st_.post_failed += failed;
}

// ------------------------------------------------------------------ claim ---

void HotSpare::claim(int64_t now) {
  std::string list;
  for (const auto& a : hs_.claim_addresses) {
    if (auto st = nl::replaceAddress(claim_ifindex_, a, lease_s_, lease_s_); !st) {
      LOG_ERROR("spare", "claiming " + a.str() + " on " + hs_.claim_interface + ": " + st.error().message());
      setError(st.error().message());
    }
    list += (list.empty() ? "" : ", ") + a.str();
  }
  if (!list.empty()) {
    LOG_INFO("spare", "claimed " + list + " on " + hs_.claim_interface + " (lease " +
                          std::to_string(lease_s_) + " s, refreshed every heartbeat)");
    sendGarp();
    garp_left_ = kGarpCount - 1;
    next_garp_ = now + kGarpSpacingMs;
  }
}

void HotSpare::refreshClaim() {
  for (const auto& a : hs_.claim_addresses) {
    if (auto st = nl::replaceAddress(claim_ifindex_, a, lease_s_, lease_s_); !st)
      setError("refreshing " + a.str() + ": " + st.error().message());
  }
}

void HotSpare::release() {
  garp_left_ = 0;
  std::string list;
  for (const auto& a : hs_.claim_addresses) {
    if (auto st = nl::delAddressIfPresent(claim_ifindex_, a); !st)
      LOG_WARN("spare", "releasing " + a.str() + ": " + st.error().message());
    list += (list.empty() ? "" : ", ") + a.str();
  }
  if (!list.empty()) LOG_INFO("spare", "released " + list + " on " + hs_.claim_interface);
}

// Gratuitous ARP (a request for our own address, sender = target) from the
// claim interface's MAC: neighbours that cached the other SLR's MAC for the
// claimed address update it at once instead of after their cache timeout.
void HotSpare::sendGarp() {
  if (claim_ifindex_ == 0) return;
  UniqueFd fd(::socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_ARP)));
  if (!fd) {
    setError("gratuitous ARP: socket(AF_PACKET): " + std::string(std::strerror(errno)));
    return;
  }
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, hs_.claim_interface.c_str(), IFNAMSIZ - 1);
  if (::ioctl(fd.get(), SIOCGIFHWADDR, &ifr) != 0) {
    setError("gratuitous ARP: SIOCGIFHWADDR " + hs_.claim_interface + ": " + std::strerror(errno));
    return;
  }
  if (ifr.ifr_hwaddr.sa_family != ARPHRD_ETHER) return;  // no ARP on this link type
  const auto* mac = reinterpret_cast<const uint8_t*>(ifr.ifr_hwaddr.sa_data);
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_protocol = htons(ETH_P_ARP);
  to.sll_ifindex = claim_ifindex_;
  to.sll_halen = ETH_ALEN;
  std::memset(to.sll_addr, 0xff, ETH_ALEN);
  for (const auto& a : hs_.claim_addresses) {
    if (!a.addr.isV4()) continue;
    uint8_t pkt[28];
    const uint16_t hw = htons(ARPHRD_ETHER), pro = htons(ETH_P_IP), op = htons(ARPOP_REQUEST);
    std::memcpy(pkt, &hw, 2);
    std::memcpy(pkt + 2, &pro, 2);
    pkt[4] = ETH_ALEN;
    pkt[5] = 4;
    std::memcpy(pkt + 6, &op, 2);
    std::memcpy(pkt + 8, mac, ETH_ALEN);            // sender MAC
    std::memcpy(pkt + 14, a.addr.bytes.data(), 4);  // sender IP
    std::memset(pkt + 18, 0, ETH_ALEN);             // target MAC (unknown)
    std::memcpy(pkt + 24, a.addr.bytes.data(), 4);  // target IP = sender IP
    if (::sendto(fd.get(), pkt, sizeof pkt, 0, reinterpret_cast<const sockaddr*>(&to), sizeof to) < 0)
      setError("gratuitous ARP for " + a.addr.str() + ": " + std::strerror(errno));
  }
}

}  // namespace slr::router
