#include "core/tcp_connect.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <string>

namespace slr {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr milliseconds kStopSlice{200};  // longest wait before re-checking stop

milliseconds left(Clock::time_point deadline) {
  return std::max(milliseconds(0),
                  std::chrono::duration_cast<milliseconds>(deadline - Clock::now()));
}

}  // namespace

Result<UniqueFd> tcpConnect(const config::Endpoint& ep, Clock::time_point deadline,
                            milliseconds user_timeout, const std::atomic<bool>* stop) {
  const std::string op = "connect to " + ep.str();
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return sysError("socket(AF_INET, SOCK_STREAM)");
  int one = 1;
  (void)::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  (void)::setsockopt(fd.get(), SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  int idle = 5, intvl = 2, cnt = 3;
  (void)::setsockopt(fd.get(), IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  (void)::setsockopt(fd.get(), IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
  (void)::setsockopt(fd.get(), IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
  unsigned ut = unsigned(user_timeout.count());
  (void)::setsockopt(fd.get(), IPPROTO_TCP, TCP_USER_TIMEOUT, &ut, sizeof ut);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(ep.port);
  std::memcpy(&sa.sin_addr, ep.addr.bytes.data(), 4);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) return fd;
  if (errno != EINPROGRESS) return sysError(op);
  for (;;) {
    if (stop != nullptr && stop->load()) return sysError(op, ECANCELED);
    auto l = left(deadline);
    if (l.count() == 0) return sysError(op, ETIMEDOUT);
    if (stop != nullptr) l = std::min(l, kStopSlice);
    pollfd p{fd.get(), POLLOUT, 0};
    int r = ::poll(&p, 1, int(l.count()));
    if (r < 0 && errno != EINTR) return sysError(op + ": poll");
    if (r > 0) break;
  }
  int err = 0;
  socklen_t len = sizeof err;
  ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) return sysError(op, err);
  return fd;
}

}  // namespace slr
