#include "slr/whohas.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "core/log.h"

namespace slr::router {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr milliseconds kDialTimeout{2000};
constexpr milliseconds kBackoffMin{1000};
constexpr milliseconds kBackoffMax{10000};
// Queries in flight at most; beyond that new keys are not asked (counted).
constexpr size_t kMaxPending = 65536;
// A late answer still re-points a flow the worker is keeping as a guess.
constexpr milliseconds kLateAnswers{1000};

void signal(int fd) {
  uint64_t one = 1;
  (void)!::write(fd, &one, sizeof one);
}

void drain(int fd) {
  uint64_t v;
  (void)!::read(fd, &v, sizeof v);
}

}  // namespace

WhohasModule::WhohasModule(const config::SlrConfig& cfg, const HostRegistry& registry,
                           WhohasHooks hooks)
    : cfg_(cfg), registry_(registry), hooks_(std::move(hooks)) {}

WhohasModule::~WhohasModule() { stop(); }

Status WhohasModule::init() {
  for (const auto& n : cfg_.neighbors) {
    auto ctx = tls::Context::client(n.ca.empty() ? cfg_.tls.ca : n.ca, cfg_.tls.cert, cfg_.tls.key);
    if (!ctx) return ctx.error();
    tls_.push_back(std::move(ctx.value()));
    status_.push_back({n.name, n.address.str(), "connecting", "", false});
    dial_wanted_.push_back(true);
  }
  wake_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  inbox_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wake_ || !inbox_) return sysError("eventfd for the whohas module");
  return Ok{};
}

void WhohasModule::start() {
  thread_ = std::thread([this] { run(); });
  if (!cfg_.neighbors.empty()) dialer_thread_ = std::thread([this] { dialer(); });
}

void WhohasModule::stop() {
  stop_ = true;
  dial_cv_.notify_all();
  if (inbox_) signal(inbox_.get());
  if (dialer_thread_.joinable()) dialer_thread_.join();
  if (thread_.joinable()) thread_.join();
}

int WhohasModule::neighborIndex(const std::string& name) const {
  for (size_t i = 0; i < cfg_.neighbors.size(); ++i) {
    if (cfg_.neighbors[i].name == name) return int(i);
  }
  return -1;
}

void WhohasModule::adopt(std::unique_ptr<PeerChannel> ch, const proto::Hello& hello) {
  std::lock_guard lk(mu_);
  int idx = neighborIndex(hello.name);
  if (idx >= 0) status_[size_t(idx)].inbound = true;
  inbox_chans_.push_back(Chan{std::move(ch), idx, false, {}});
  signal(inbox_.get());
}

std::vector<WhohasModule::NeighborStatus> WhohasModule::neighbors() const {
  std::lock_guard lk(mu_);
  return status_;
}

void WhohasModule::setNeighbor(int idx, const char* state, const std::string& err) {
  if (idx < 0) return;
  std::lock_guard lk(mu_);
  status_[size_t(idx)].state = state;
  if (!err.empty()) status_[size_t(idx)].last_error = err;
}

// Blocking dials live here so the module thread never waits on a connect.
void WhohasModule::dialer() {
  const size_t n = cfg_.neighbors.size();
  std::vector<milliseconds> backoff(n, kBackoffMin);
  std::vector<Clock::time_point> next_try(n, Clock::now());
  std::vector<std::string> last_err(n);
  proto::Hello hello;
  hello.role = proto::Role::kPeer;
  hello.name = cfg_.slr.name;
  hello.tunnel_address = cfg_.slr.tunnel_source;
  hello.update_interval_ms = 1000;
  hello.capabilities = proto::kCapWhohas;
  while (!stop_) {
    auto now = Clock::now();
    auto wake_at = now + milliseconds(500);
    for (size_t i = 0; i < n && !stop_; ++i) {
      {
        std::lock_guard lk(mu_);
        if (!dial_wanted_[i]) continue;
      }
      if (now < next_try[i]) {
        wake_at = std::min(wake_at, next_try[i]);
        continue;
      }
      const auto& nb = cfg_.neighbors[i];
      auto ch = PeerChannel::dial(tls_[i], nb.address, nb.name, hello, kDialTimeout);
      now = Clock::now();
      if (!ch) {
        std::string err = ch.error().message();
        if (err != last_err[i])
          LOG_WARN("whohas", "neighbor " + nb.name + " (" + nb.address.str() + "): " + err +
                                 "; retrying every " + std::to_string(backoff[i].count()) + "..." +
                                 std::to_string(kBackoffMax.count()) + " ms");
        last_err[i] = err;
        setNeighbor(int(i), "down", err);
        next_try[i] = now + backoff[i];
        backoff[i] = std::min(backoff[i] * 2, kBackoffMax);
        wake_at = std::min(wake_at, next_try[i]);
        continue;
      }
      LOG_INFO("whohas", "neighbor " + nb.name + " (" + nb.address.str() + ") connected");
      last_err[i].clear();
      backoff[i] = kBackoffMin;
      next_try[i] = now + kBackoffMin;  // a peer that accepts and drops us is not hammered
      {
        std::lock_guard lk(mu_);
        dial_wanted_[i] = false;
        status_[i].state = "up";
        status_[i].last_error.clear();
        inbox_chans_.push_back(Chan{std::move(ch.value()), int(i), true, {}});
      }
      signal(inbox_.get());
    }
    std::unique_lock lk(mu_);
    dial_cv_.wait_until(lk, wake_at, [&] {
      if (stop_) return true;
      for (size_t i = 0; i < n; ++i) {
        if (dial_wanted_[i] && Clock::now() >= next_try[i]) return true;
      }
      return false;
    });
  }
}

void WhohasModule::takeInbox() {
  std::vector<Chan> in;
  {
    std::lock_guard lk(mu_);
    in.swap(inbox_chans_);
  }
  for (auto& c : in) {
    c.serial = next_serial_++;
    chans_.push_back(std::move(c));
    Chan& nc = chans_.back();
    // Frames may already wait inside the reader or TLS: poll would not say so.
    if (!nc.ch->flush() || !nc.ch->readFrames([&](const proto::Frame& f) { onFrame(nc, f); })) {
      if (nc.dead.empty()) nc.dead = nc.ch->lastError();
    }
  }
}

void WhohasModule::run() {
  std::vector<pollfd> pfds;
  while (!stop_) {
    pfds.clear();
    pfds.push_back({wake_.get(), POLLIN, 0});
    pfds.push_back({inbox_.get(), POLLIN, 0});
    for (auto& c : chans_) {
      short ev = POLLIN;
      if (c.ch->wantsWrite()) ev |= POLLOUT;
      pfds.push_back({c.ch->fd(), ev, 0});
    }
    int timeout = 200;
    auto now = Clock::now();
    for (const auto& [id, p] : pending_) {
      auto t = p.timed_out ? p.deadline : p.timeout;
      auto ms = std::chrono::duration_cast<milliseconds>(t - now).count() + 1;
      timeout = int(std::clamp<int64_t>(ms, 1, timeout));
    }
    int r = ::poll(pfds.data(), pfds.size(), timeout);
    if (r < 0 && errno != EINTR) LOG_WARN("whohas", std::string("poll: ") + strerror(errno));
    if (stop_) break;
    if (r > 0) {
      if (pfds[0].revents & POLLIN) drain(wake_.get());
      if (pfds[1].revents & POLLIN) drain(inbox_.get());
      const size_t nchans = chans_.size();  // takeInbox below appends
      for (size_t i = 0; i < nchans; ++i) {
        Chan& c = chans_[i];
        short rev = pfds[i + 2].revents;
        if (rev == 0 || !c.dead.empty()) continue;
        if ((rev & POLLOUT) && !c.ch->flush()) c.dead = c.ch->lastError();
        if (c.dead.empty() && (rev & (POLLIN | POLLHUP | POLLERR)) &&
            !c.ch->readFrames([&](const proto::Frame& f) { onFrame(c, f); })) {
          if (c.dead.empty()) c.dead = c.ch->lastError();
        }
      }
    }
    takeInbox();
    // Keys from the workers: cheap to check every round (one atomic per ring).
    for (size_t w = 0; w < hooks_.workers; ++w) {
      FlowKey k;
      while (hooks_.pop && hooks_.pop(w, k)) fresh_.push_back(k);
    }
    askPending();
    expire(Clock::now());
    // Channels that failed: an outbound one is redialled.
    for (auto& c : chans_) {
      if (c.dead.empty()) continue;
      const std::string who = c.ch->peerName();
      LOG_WARN("whohas", std::string(c.outbound ? "neighbor " : "inbound neighbor ") + who +
                             ": connection lost: " + c.dead);
      std::lock_guard lk(mu_);
      if (c.neighbor >= 0) {
        auto& st = status_[size_t(c.neighbor)];
        if (c.outbound) {
          st.state = "down";
          st.last_error = c.dead;
          dial_wanted_[size_t(c.neighbor)] = true;
        } else {
          st.inbound = false;
        }
      }
    }
    bool redial = false;
    for (const auto& c : chans_) redial = redial || (!c.dead.empty() && c.outbound);
    chans_.erase(std::remove_if(chans_.begin(), chans_.end(),
                                [](const Chan& c) { return !c.dead.empty(); }),
                 chans_.end());
    if (redial) dial_cv_.notify_all();
  }
  chans_.clear();
}

// One WHOHAS per connected neighbour for every key the workers queued.
void WhohasModule::askPending() {
  if (fresh_.empty()) return;
  std::vector<Chan*> to;
  for (auto& c : chans_) {
    if (c.outbound && c.dead.empty()) to.push_back(&c);
  }
  if (to.empty()) {
    counters_.not_asked += fresh_.size();
    fresh_.clear();
    return;
  }
  const auto now = Clock::now();
  const auto wait = std::chrono::duration_cast<milliseconds>(cfg_.whohas.wait);
  const auto keep = std::max({wait, std::chrono::duration_cast<milliseconds>(cfg_.flows.midstream_wait),
                              kLateAnswers});
  proto::Whohas q;
  q.scope = cfg_.whohas.scope;
  auto emit = [&] {
    if (q.entries.empty()) return;
    auto frame = proto::encode(q);
    for (Chan* c : to) {
      if (!c->ch->send(frame)) c->dead = "send queue full (the neighbour does not read)";
    }
    q.entries.clear();
  };
  for (const auto& k : fresh_) {
    if (pending_.size() >= kMaxPending) {
      ++counters_.not_asked;
      continue;
    }
    uint32_t id = newId();
    pending_[id] = Pending{k, now + wait, now + keep, uint32_t(to.size()), false, 0, 0};
    q.entries.push_back({id, k});
    ++counters_.asked;
    if (q.entries.size() == proto::kMaxEntries) emit();
  }
  emit();
  fresh_.clear();
}

uint32_t WhohasModule::newId() {
  for (;;) {
    uint32_t id = next_id_++;
    if (id != 0 && pending_.count(id) == 0) return id;
  }
}

// A relayed question is answered once: found, or not found when every
// neighbour said no or the wait passed.
void WhohasModule::answerRelay(const Pending& p, bool found, const IpAddress& endpoint) {
  for (auto& c : chans_) {
    if (c.serial != p.relay_chan || !c.dead.empty()) continue;
    proto::Ihave a;
    a.entries.push_back({p.relay_id, p.key, found, found ? endpoint : IpAddress{}});
    if (!c.ch->send(proto::encode(a))) c.dead = "send queue full (the neighbour does not read)";
    return;
  }
}

void WhohasModule::expire(Clock::time_point now) {
  for (auto it = pending_.begin(); it != pending_.end();) {
    Pending& p = it->second;
    if (p.relay_chan != 0 && now >= p.timeout) {
      answerRelay(p, false, {});
      it = pending_.erase(it);
      continue;
    }
    if (!p.timed_out && now >= p.timeout) {
      p.timed_out = true;
      ++counters_.timeouts;
    }
    if (now >= p.deadline) {
      it = pending_.erase(it);
    } else {
      ++it;
    }
  }
}

void WhohasModule::onFrame(Chan& c, const proto::Frame& f) {
  if (!c.dead.empty()) return;
  auto msg = proto::decode(f);
  if (!msg) {
    c.dead = "protocol error: " + msg.error().detail;
    c.ch->send(proto::encode(proto::ErrorMsg{proto::kProtocolError, proto::sanitizeText(c.dead)}));
    (void)c.ch->flush();
    return;
  }
  if (auto* w = std::get_if<proto::Whohas>(&msg.value())) {
    onWhohas(c, *w);
  } else if (auto* h = std::get_if<proto::Ihave>(&msg.value())) {
    onIhave(*h);
  } else if (auto* e = std::get_if<proto::ErrorMsg>(&msg.value())) {
    c.dead = "peer reported error " + std::to_string(e->code) + ": " + e->text;
  } else {
    c.dead = "unexpected " + std::string(proto::typeName(f.type)) + " on a whohas channel";
    c.ch->send(proto::encode(proto::ErrorMsg{proto::kProtocolError, proto::sanitizeText(c.dead)}));
    (void)c.ch->flush();
  }
}

// Answer every entry from our own tables.  A guess of our own is no answer:
// the hook reports only flows whose host is known.
void WhohasModule::onWhohas(Chan& c, const proto::Whohas& w) {
  // Where a question not answered here may go on to: our connected
  // neighbours except the one asking.
  std::vector<Chan*> further;
  if (w.scope > 1) {
    for (auto& o : chans_) {
      if (o.outbound && o.dead.empty() && o.ch->peerName() != c.ch->peerName()) further.push_back(&o);
    }
  }
  const auto now = Clock::now();
  const auto wait = std::chrono::duration_cast<milliseconds>(cfg_.whohas.wait);
  proto::Ihave reply;
  proto::Whohas relay;
  relay.scope = uint8_t(w.scope - 1);
  reply.entries.reserve(w.entries.size());
  for (const auto& e : w.entries) {
    ++counters_.queries_served;
    proto::IhaveEntry a{e.id, e.key, false, {}};
    if (hooks_.lookup) {
      if (auto ep = hooks_.lookup(e.key)) {
        a.found = true;
        a.endpoint = IpAddress::v4(*ep);
        ++counters_.served_found;
      }
    }
    if (!a.found && !further.empty() && pending_.size() < kMaxPending) {
      uint32_t id = newId();
      pending_[id] = Pending{e.key, now + wait, now + wait, uint32_t(further.size()), false, c.serial, e.id};
      relay.entries.push_back({id, e.key});
      ++counters_.relayed;
      continue;  // answered when they answer
    }
    reply.entries.push_back(a);
  }
  if (!relay.entries.empty()) {
    auto frame = proto::encode(relay);
    for (Chan* o : further) {
      if (!o->ch->send(frame)) o->dead = "send queue full (the neighbour does not read)";
    }
  }
  if (reply.entries.empty()) return;
  if (!c.ch->send(proto::encode(reply))) c.dead = "send queue full (the neighbour does not read)";
}

void WhohasModule::onIhave(const proto::Ihave& h) {
  std::vector<HostRecord> hosts;
  bool have_hosts = false;
  for (const auto& e : h.entries) {
    auto it = pending_.find(e.id);
    if (it == pending_.end() || !(it->second.key == e.key)) continue;  // late, or not ours
    Pending& p = it->second;
    if (p.outstanding > 0) --p.outstanding;
    if (p.relay_chan != 0) {
      // Someone else's question: pass the first found answer back as is
      // (the asker checks it against its own next hops).
      if (e.found) {
        ++counters_.relayed_found;
        answerRelay(p, true, e.endpoint);
        pending_.erase(it);
      } else if (p.outstanding == 0) {
        answerRelay(p, false, {});
        pending_.erase(it);
      }
      continue;
    }
    if (!e.found) {
      ++counters_.answered_unknown;
    } else {
      ++counters_.answered_found;
      if (!have_hosts) {
        hosts = registry_.snapshot();
        have_hosts = true;
      }
      // The endpoint must be one of our next hops, up: a neighbour can only
      // tell us which of our hosts, never make us tunnel somewhere new.
      const HostRecord* match = nullptr;
      if (e.endpoint.isV4()) {
        for (const auto& hr : hosts) {
          if (hr.state != HostState::kUp || !(hr.tunnel_address == e.endpoint)) continue;
          if (match == nullptr || (match->role != proto::Role::kHost && hr.role == proto::Role::kHost))
            match = &hr;
        }
      }
      if (match == nullptr) {
        ++counters_.refused;
        LOG_DEBUG("whohas", "IHAVE for " + e.key.str() + " names " + e.endpoint.str() +
                                ", which is no up next hop here: ignored");
      } else {
        if (hooks_.resolve) hooks_.resolve(e.key, match->id, e.endpoint.v4HostOrder());
        ++counters_.resolved;
        pending_.erase(it);
        continue;
      }
    }
    // Everyone answered and nobody had it: the worker's timeout takes over;
    // it counts as a timeout when the wait runs out (not resolved in time),
    // and no late answer can come, so it is forgotten then.
    if (p.outstanding == 0) p.deadline = std::min(p.deadline, p.timeout);
  }
}

}  // namespace slr::router
