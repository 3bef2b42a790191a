// slrbench: a small TCP load tool for tests/bench/netbench.sh.
//
// Standalone on purpose (no project code, one file, libc + pthread only) so
// the very same binary measures every path: direct kernel routing, slrctl
// (tunnel + direct server return) and HAProxy.  A number it prints must mean
// the same thing whichever path the packets took.
//
//   slrbench server --port P [--bulk-bytes N] [--threads T]
//   slrbench crr    --target IP:PORT --duration S --concurrency C [--threads T] [--timeout-ms MS]
//   slrbench bulk   --target IP:PORT --bytes N --streams K [--timeout S]
//
// Wire protocol (one request per connection, the server closes after it):
//   "CRR\n"      -> "OK\n", close
//   "BULK <n>\n" -> n bytes, close      ("BULK\n" -> --bulk-bytes bytes)
//
// Results are one JSON object on stdout; diagnostics go to stderr.
// Exit: 0 ok, 1 runtime failure (nothing measured / a stream failed), 2 usage.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kSendChunk = 256 * 1024;
constexpr size_t kRecvChunk = 1024 * 1024;
constexpr size_t kMaxRequestLine = 128;
constexpr uint64_t kMaxBulkBytes = uint64_t(1) << 40;  // 1 TiB: a typo, not a test

[[noreturn]] void usage(const char* why) {
  if (why != nullptr) std::fprintf(stderr, "slrbench: %s\n", why);
  std::fprintf(stderr,
               "usage:\n"
               "  slrbench server --port P [--bulk-bytes N] [--threads T]\n"
               "  slrbench crr --target IP:PORT --duration S --concurrency C [--threads T]"
               " [--timeout-ms MS]\n"
               "  slrbench bulk --target IP:PORT --bytes N --streams K [--timeout S]\n"
               "sizes take K/M/G suffixes (powers of 1024)\n");
  std::exit(2);
}

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "slrbench: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

// "256M" -> 268435456; nullopt on junk or overflow.
std::optional<uint64_t> parseSize(std::string_view s) {
  if (s.empty()) return std::nullopt;
  uint64_t mult = 1;
  switch (s.back()) {
    case 'K': case 'k': mult = uint64_t(1) << 10; break;
    case 'M': case 'm': mult = uint64_t(1) << 20; break;
    case 'G': case 'g': mult = uint64_t(1) << 30; break;
    default: break;
  }
  if (mult != 1) s.remove_suffix(1);
  if (s.empty() || s.size() > 15) return std::nullopt;
  uint64_t n = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + uint64_t(c - '0');
  }
  if (n > kMaxBulkBytes / mult) return std::nullopt;
  return n * mult;
}

std::optional<sockaddr_in> parseTarget(std::string_view s) {
  auto colon = s.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  std::string host(s.substr(0, colon));
  auto port = parseSize(s.substr(colon + 1));
  if (!port || *port == 0 || *port > 65535) return std::nullopt;
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(uint16_t(*port));
  if (inet_pton(AF_INET, host.c_str(), &sa.sin_addr) != 1) return std::nullopt;
  return sa;
}

struct Options {
  std::string mode;
  uint16_t port = 0;
  uint64_t bulk_bytes = 64ull << 20;  // server: size for a bare "BULK\n"
  unsigned threads = 0;               // 0 = mode default
  std::optional<sockaddr_in> target;
  double duration_s = 0;
  unsigned concurrency = 0;
  uint64_t bytes = 0;
  unsigned streams = 0;
  unsigned timeout_ms = 3000;         // crr: one connection
  double timeout_s = 120;             // bulk: whole run
};

Options parseArgs(int argc, char** argv) {
  if (argc < 2) usage(nullptr);
  Options o;
  o.mode = argv[1];
  if (o.mode == "-h" || o.mode == "--help") usage(nullptr);
  for (int i = 2; i < argc; ++i) {
    std::string_view k = argv[i];
    if (k == "-h" || k == "--help") usage(nullptr);
    if (i + 1 >= argc) usage(("missing value for " + std::string(k)).c_str());
    std::string_view v = argv[++i];
    auto num = [&](uint64_t lo, uint64_t hi) -> uint64_t {
      auto n = parseSize(v);
      if (!n || *n < lo || *n > hi) {
        usage((std::string(k) + ": expected a number " + std::to_string(lo) + ".." +
               std::to_string(hi) + ", got \"" + std::string(v) + "\"")
                  .c_str());
      }
      return *n;
    };
    auto seconds = [&]() -> double {
      char* end = nullptr;
      std::string t(v);
      double d = std::strtod(t.c_str(), &end);
      if (end == t.c_str() || *end != '\0' || !(d > 0) || d > 86400) {
        usage((std::string(k) + ": expected seconds > 0, got \"" + t + "\"").c_str());
      }
      return d;
    };
    if (k == "--port") o.port = uint16_t(num(1, 65535));
    else if (k == "--bulk-bytes") o.bulk_bytes = num(0, kMaxBulkBytes);
    else if (k == "--threads") o.threads = unsigned(num(1, 64));
    else if (k == "--target") {
      o.target = parseTarget(v);
      if (!o.target) usage(("--target: expected IP:PORT, got \"" + std::string(v) + "\"").c_str());
    } else if (k == "--duration") o.duration_s = seconds();
    else if (k == "--concurrency") o.concurrency = unsigned(num(1, 100000));
    else if (k == "--bytes") o.bytes = num(1, kMaxBulkBytes);
    else if (k == "--streams") o.streams = unsigned(num(1, 10000));
    else if (k == "--timeout-ms") o.timeout_ms = unsigned(num(1, 600000));
    else if (k == "--timeout") o.timeout_s = seconds();
    else usage(("unknown option " + std::string(k)).c_str());
  }
  return o;
}

void setInt(int fd, int level, int opt, int value) {
  (void)setsockopt(fd, level, opt, &value, sizeof value);
}

// --------------------------------------------------------------- server ----

struct ServerConn {
  char req[kMaxRequestLine];
  size_t req_len = 0;
  bool sending = false;
  uint64_t remaining = 0;
};

void closeConn(int ep, std::vector<std::unique_ptr<ServerConn>>& conns, int fd) {
  epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
  close(fd);
  if (size_t(fd) < conns.size()) conns[size_t(fd)].reset();
}

// Returns false when the connection is finished (and closed by the caller).
bool serverSend(int fd, ServerConn& c, const char* pattern) {
  while (c.remaining > 0) {
    size_t n = size_t(std::min<uint64_t>(c.remaining, kSendChunk));
    ssize_t w = send(fd, pattern, n, MSG_NOSIGNAL);
    if (w > 0) {
      c.remaining -= uint64_t(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    return false;  // peer gone
  }
  return false;  // all sent: close, the FIN follows the data
}

// Returns false when the connection should be closed.
bool serverRead(int ep, int fd, ServerConn& c, const char* pattern, uint64_t default_bulk) {
  for (;;) {
    ssize_t r = recv(fd, c.req + c.req_len, sizeof c.req - c.req_len, 0);
    if (r == 0) return false;
    if (r < 0) {
      if (errno == EINTR) continue;
      return errno == EAGAIN || errno == EWOULDBLOCK;
    }
    c.req_len += size_t(r);
    auto* nl = static_cast<char*>(std::memchr(c.req, '\n', c.req_len));
    if (nl == nullptr) {
      if (c.req_len == sizeof c.req) return false;  // no request line: not our client
      continue;
    }
    std::string_view line(c.req, size_t(nl - c.req));
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line == "CRR") {
      // 3 bytes always fit an empty send buffer; then close: the FIN rides along.
      (void)send(fd, "OK\n", 3, MSG_NOSIGNAL);
      return false;
    }
    if (line == "BULK" || line.substr(0, 5) == "BULK ") {
      uint64_t n = default_bulk;
      if (line.size() > 5) {
        auto v = parseSize(line.substr(5));
        if (!v) return false;
        n = *v;
      }
      c.sending = true;
      c.remaining = n;
      if (!serverSend(fd, c, pattern)) return false;
      epoll_event ev{};
      ev.events = EPOLLOUT;
      ev.data.fd = fd;
      epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
      return true;
    }
    return false;  // unknown request
  }
}

void serverThread(uint16_t port, uint64_t default_bulk) {
  // One listening socket per thread (SO_REUSEPORT): the kernel spreads
  // connections, no shared accept queue, no locks.
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (lfd < 0) die("socket");
  setInt(lfd, SOL_SOCKET, SO_REUSEADDR, 1);
  setInt(lfd, SOL_SOCKET, SO_REUSEPORT, 1);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_ANY);  // VIP traffic arrives for a non-interface address
  if (bind(lfd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) die("bind");
  if (listen(lfd, 4096) != 0) die("listen");

  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = lfd;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) != 0) die("epoll_ctl");

  std::vector<char> pattern(kSendChunk);
  for (size_t i = 0; i < pattern.size(); ++i) pattern[i] = char('a' + i % 26);
  std::vector<std::unique_ptr<ServerConn>> conns;
  epoll_event events[256];
  for (;;) {
    int n = epoll_wait(ep, events, 256, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      if (fd == lfd) {
        for (;;) {
          int cfd = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (cfd < 0) break;  // EAGAIN, or a connection reset before accept
          setInt(cfd, IPPROTO_TCP, TCP_NODELAY, 1);
          if (size_t(cfd) >= conns.size()) conns.resize(size_t(cfd) * 2 + 64);
          conns[size_t(cfd)] = std::make_unique<ServerConn>();
          epoll_event cev{};
          cev.events = EPOLLIN;
          cev.data.fd = cfd;
          if (epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &cev) != 0) closeConn(ep, conns, cfd);
        }
        continue;
      }
      if (size_t(fd) >= conns.size() || !conns[size_t(fd)]) continue;
      ServerConn& c = *conns[size_t(fd)];
      bool keep = c.sending ? serverSend(fd, c, pattern.data())
                            : serverRead(ep, fd, c, pattern.data(), default_bulk);
      if (!keep) closeConn(ep, conns, fd);
    }
  }
}

int runServer(const Options& o) {
  if (o.port == 0) usage("server: --port is required");
  unsigned threads = o.threads ? o.threads : 2;
  std::fprintf(stderr, "slrbench: serving on 0.0.0.0:%u with %u threads\n", o.port, threads);
  std::vector<std::thread> ts;
  for (unsigned i = 0; i < threads; ++i) ts.emplace_back(serverThread, o.port, o.bulk_bytes);
  for (auto& t : ts) t.join();
  return 0;
}

// ------------------------------------------------------------------ crr ----

struct CrrSlot {
  int fd = -1;
  bool connected = false;
  Clock::time_point start;
  Clock::time_point retry_at;  // idle slot after an error: start again then
  char buf[8];
  size_t got = 0;
};

struct CrrResult {
  uint64_t done = 0;
  uint64_t errors = 0;
  std::vector<uint32_t> latencies_us;
  uint64_t error_kinds[4] = {};  // diagnostics: refused, timeout, reset, other
};

// Closing with linger 0 sends RST instead of FIN: no TIME_WAIT on the client,
// so a long run never runs out of ephemeral ports.
void abortClose(int fd) {
  linger l{1, 0};
  (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  close(fd);
}

void crrThread(sockaddr_in target, unsigned concurrency, Clock::time_point end,
               std::chrono::milliseconds timeout, CrrResult* out) {
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  std::vector<CrrSlot> slots(concurrency);
  out->latencies_us.reserve(1 << 20);

  auto fail = [&](CrrSlot& s, int err) {
    ++out->errors;
    int k = err == ECONNREFUSED ? 0 : err == ETIMEDOUT ? 1 : err == ECONNRESET ? 2 : 3;
    ++out->error_kinds[k];
    if (s.fd >= 0) abortClose(s.fd);  // close() also removes it from the epoll set
    s.fd = -1;
    // Back off a little so a refusing target does not turn into a busy loop.
    s.retry_at = Clock::now() + std::chrono::milliseconds(10);
  };

  auto start = [&](uint32_t idx) {
    CrrSlot& s = slots[idx];
    s.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s.fd < 0) {
      fail(s, errno);
      return;
    }
    setInt(s.fd, IPPROTO_TCP, TCP_NODELAY, 1);
    s.connected = false;
    s.got = 0;
    s.start = Clock::now();
    int r = connect(s.fd, reinterpret_cast<const sockaddr*>(&target), sizeof target);
    if (r != 0 && errno != EINPROGRESS) {
      fail(s, errno);
      return;
    }
    epoll_event ev{};
    ev.events = EPOLLOUT;
    ev.data.u64 = (uint64_t(idx) << 32) | uint32_t(s.fd);
    if (epoll_ctl(ep, EPOLL_CTL_ADD, s.fd, &ev) != 0) fail(s, errno);
  };

  auto finish = [&](CrrSlot& s) {
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - s.start).count();
    out->latencies_us.push_back(uint32_t(std::min<int64_t>(us, UINT32_MAX)));
    ++out->done;
    abortClose(s.fd);
    s.fd = -1;
  };

  for (uint32_t i = 0; i < concurrency; ++i) start(i);

  epoll_event events[512];
  auto last_scan = Clock::now();
  for (;;) {
    auto now = Clock::now();
    if (now >= end) break;
    int wait_ms = int(std::min<int64_t>(
        10, std::chrono::duration_cast<std::chrono::milliseconds>(end - now).count() + 1));
    int n = epoll_wait(ep, events, 512, wait_ms);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
      uint32_t idx = uint32_t(events[i].data.u64 >> 32);
      int fd = int(uint32_t(events[i].data.u64));
      CrrSlot& s = slots[idx];
      if (s.fd != fd) continue;  // stale event for a closed socket
      if (!s.connected) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
          fail(s, err);
          continue;
        }
        s.connected = true;
        if (send(fd, "CRR\n", 4, MSG_NOSIGNAL) != 4) {
          fail(s, errno);
          continue;
        }
        epoll_event ev = events[i];
        ev.events = EPOLLIN;
        if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) != 0) fail(s, errno);
        continue;
      }
      ssize_t r = recv(fd, s.buf + s.got, sizeof s.buf - s.got, 0);
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (r <= 0) {
        fail(s, r == 0 ? ECONNRESET : errno);
        continue;
      }
      s.got += size_t(r);
      if (s.got >= 3) {
        if (std::memcmp(s.buf, "OK\n", 3) == 0) finish(s);
        else fail(s, EPROTO);
      }
    }
    now = Clock::now();
    if (now >= end) break;
    // Restart finished/failed slots and time out stuck ones (a lost SYN is
    // retransmitted after 1 s, so the default 3 s timeout means "really lost").
    bool scan = now - last_scan >= std::chrono::milliseconds(10);
    for (uint32_t i = 0; i < concurrency; ++i) {
      CrrSlot& s = slots[i];
      if (s.fd < 0) {
        if (now >= s.retry_at) start(i);
      } else if (scan && now - s.start > timeout) {
        fail(s, ETIMEDOUT);
      }
    }
    if (scan) last_scan = now;
  }
  // Connections still in flight at the deadline count as neither.
  for (auto& s : slots) {
    if (s.fd >= 0) abortClose(s.fd);
  }
  close(ep);
}

uint32_t percentile(std::vector<uint32_t>& v, double p) {
  if (v.empty()) return 0;
  size_t k = size_t(p * double(v.size() - 1) + 0.5);
  std::nth_element(v.begin(), v.begin() + ptrdiff_t(k), v.end());
  return v[k];
}

int runCrr(const Options& o) {
  if (!o.target) usage("crr: --target is required");
  if (o.duration_s <= 0) usage("crr: --duration is required");
  if (o.concurrency == 0) usage("crr: --concurrency is required");
  unsigned threads = std::min(o.threads ? o.threads : 1, o.concurrency);
  std::vector<CrrResult> results(threads);
  std::vector<std::thread> ts;
  auto t0 = Clock::now();
  auto end = t0 + std::chrono::duration_cast<Clock::duration>(
                      std::chrono::duration<double>(o.duration_s));
  for (unsigned i = 0; i < threads; ++i) {
    unsigned c = o.concurrency / threads + (i < o.concurrency % threads ? 1 : 0);
    ts.emplace_back(crrThread, *o.target, c, end, std::chrono::milliseconds(o.timeout_ms),
                    &results[i]);
  }
  for (auto& t : ts) t.join();
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();

  CrrResult all;
  for (auto& r : results) {
    all.done += r.done;
    all.errors += r.errors;
    for (int k = 0; k < 4; ++k) all.error_kinds[k] += r.error_kinds[k];
    all.latencies_us.insert(all.latencies_us.end(), r.latencies_us.begin(), r.latencies_us.end());
  }
  uint32_t p50 = percentile(all.latencies_us, 0.50);
  uint32_t p99 = percentile(all.latencies_us, 0.99);
  std::printf(
      "{\"connections_per_s\":%.1f,\"errors\":%" PRIu64 ",\"p50_us\":%u,\"p99_us\":%u,"
      "\"connections\":%" PRIu64 ",\"seconds\":%.3f,\"concurrency\":%u,"
      "\"error_kinds\":{\"refused\":%" PRIu64 ",\"timeout\":%" PRIu64 ",\"reset\":%" PRIu64
      ",\"other\":%" PRIu64 "}}\n",
      double(all.done) / secs, all.errors, p50, p99, all.done, secs, o.concurrency,
      all.error_kinds[0], all.error_kinds[1], all.error_kinds[2],
      all.error_kinds[3]);
  return all.done > 0 ? 0 : 1;
}

// ----------------------------------------------------------------- bulk ----

struct BulkStream {
  int fd = -1;
  bool connected = false;
  uint64_t received = 0;
};

int runBulk(const Options& o) {
  if (!o.target) usage("bulk: --target is required");
  if (o.bytes == 0) usage("bulk: --bytes is required");
  if (o.streams == 0) usage("bulk: --streams is required");
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  std::vector<BulkStream> streams(o.streams);
  std::vector<char> buf(kRecvChunk);
  char req[64];
  int req_len = std::snprintf(req, sizeof req, "BULK %" PRIu64 "\n", o.bytes);

  uint64_t errors = 0;
  unsigned open = 0;
  auto t0 = Clock::now();
  auto deadline = t0 + std::chrono::duration_cast<Clock::duration>(
                           std::chrono::duration<double>(o.timeout_s));
  auto closeStream = [&](BulkStream& s, bool ok) {
    if (!ok) {
      ++errors;
      std::fprintf(stderr, "slrbench: bulk stream failed after %" PRIu64 " bytes: %s\n",
                   s.received, std::strerror(errno));
    }
    close(s.fd);
    s.fd = -1;
    --open;
  };

  for (uint32_t i = 0; i < o.streams; ++i) {
    BulkStream& s = streams[i];
    s.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s.fd < 0) die("socket");
    ++open;
    int r = connect(s.fd, reinterpret_cast<const sockaddr*>(&*o.target), sizeof *o.target);
    if (r != 0 && errno != EINPROGRESS) {
      closeStream(s, false);
      continue;
    }
    epoll_event ev{};
    ev.events = EPOLLOUT;
    ev.data.u32 = i;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, s.fd, &ev) != 0) die("epoll_ctl");
  }

  epoll_event events[256];
  while (open > 0) {
    if (Clock::now() > deadline) {
      std::fprintf(stderr, "slrbench: bulk: timeout after %.1f s\n", o.timeout_s);
      errno = ETIMEDOUT;
      for (auto& s : streams) {
        if (s.fd >= 0) closeStream(s, false);
      }
      break;
    }
    int n = epoll_wait(ep, events, 256, 100);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
      BulkStream& s = streams[events[i].data.u32];
      if (s.fd < 0) continue;
      if (!s.connected) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0 || send(s.fd, req, size_t(req_len), MSG_NOSIGNAL) != req_len) {
          if (err != 0) errno = err;
          closeStream(s, false);
          continue;
        }
        s.connected = true;
        epoll_event ev = events[i];
        ev.events = EPOLLIN;
        epoll_ctl(ep, EPOLL_CTL_MOD, s.fd, &ev);
        continue;
      }
      for (;;) {
        ssize_t r = recv(s.fd, buf.data(), buf.size(), 0);
        if (r > 0) {
          s.received += uint64_t(r);
          continue;
        }
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (r == 0) errno = s.received == o.bytes ? 0 : EPIPE;
        closeStream(s, r == 0 && s.received == o.bytes);
        break;
      }
    }
  }
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  uint64_t total = 0;
  for (auto& s : streams) total += s.received;
  std::printf(
      "{\"throughput_mbps\":%.1f,\"bytes\":%" PRIu64 ",\"seconds\":%.3f,\"streams\":%u,"
      "\"errors\":%" PRIu64 "}\n",
      double(total) * 8 / secs / 1e6, total, secs, o.streams, errors);
  close(ep);
  return errors == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  Options o = parseArgs(argc, argv);
  if (o.mode == "server") return runServer(o);
  if (o.mode == "crr") return runCrr(o);
  if (o.mode == "bulk") return runBulk(o);
  usage(("unknown mode \"" + o.mode + "\"").c_str());
}
