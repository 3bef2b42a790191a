#include "core/status_server.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "core/log.h"

namespace slr {
namespace {

Result<sockaddr_un> unixAddr(const std::string& path) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof sa.sun_path) return sysError("socket path " + path, ENAMETOOLONG);
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  return sa;
}

void makeParentDir(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos || slash == 0) return;
  std::string dir = path.substr(0, slash);
  for (size_t i = 1; i <= dir.size(); ++i) {
    if (i == dir.size() || dir[i] == '/') ::mkdir(dir.substr(0, i).c_str(), 0755);
  }
}

// Reads until newline/EOF with a deadline; requests are tiny.
bool readLine(int fd, std::string& out, int timeout_ms) {
  char buf[512];
  while (out.size() < 4096) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return false;
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) return !out.empty();
    out.append(buf, size_t(n));
    auto nl = out.find('\n');
    if (nl != std::string::npos) {
      out.resize(nl);
      return true;
    }
  }
  return false;
}

bool writeAll(int fd, std::string_view data, int timeout_ms) {
  while (!data.empty()) {
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return false;
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(size_t(n));
  }
  return true;
}

}  // namespace

StatusServer::StatusServer(std::string path, Handler handler)
    : path_(std::move(path)), handler_(std::move(handler)) {}

StatusServer::~StatusServer() { stop(); }

Status StatusServer::start() {
  auto sa = unixAddr(path_);
  if (!sa) return sa.error();
  makeParentDir(path_);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return sysError("socket(AF_UNIX) for status socket " + path_);
  ::unlink(path_.c_str());  // a stale socket from a previous run
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&*sa), sizeof(sockaddr_un)) < 0)
    return sysError("bind status socket " + path_);
  ::chmod(path_.c_str(), 0660);
  if (::listen(fd.get(), 16) < 0) return sysError("listen on status socket " + path_);
  UniqueFd ev(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!ev) return sysError("eventfd for status socket");
  listen_fd_ = std::move(fd);
  wake_fd_ = std::move(ev);
  thread_ = std::thread([this] { run(); });
  return Ok{};
}

void StatusServer::stop() {
  if (thread_.joinable()) {
    uint64_t one = 1;
    (void)!::write(wake_fd_.get(), &one, sizeof one);
    thread_.join();
    ::unlink(path_.c_str());
  }
}

void StatusServer::run() {
  for (;;) {
    pollfd p[2] = {{listen_fd_.get(), POLLIN, 0}, {wake_fd_.get(), POLLIN, 0}};
    if (::poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      LOG_ERROR("status", std::string("poll: ") + std::strerror(errno));
      return;
    }
    if (p[1].revents) return;
    if (!(p[0].revents & POLLIN)) continue;
    UniqueFd c(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!c) continue;
    std::string req;
    if (!readLine(c.get(), req, 2000)) continue;  // garbage or silence: drop the client
    while (!req.empty() && (req.back() == '\r' || req.back() == ' ')) req.pop_back();
    std::string resp = handler_(req);
    resp += '\n';
    writeAll(c.get(), resp, 2000);
  }
}

Result<std::string> statusRequest(const std::string& path, std::string_view request,
                                  int timeout_ms) {
  auto sa = unixAddr(path);
  if (!sa) return sa.error();
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return sysError("socket(AF_UNIX)");
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&*sa), sizeof(sockaddr_un)) < 0)
    return sysError("connect to " + path);
  std::string line(request);
  line += '\n';
  if (!writeAll(fd.get(), line, timeout_ms)) return sysError("send request to " + path);
  std::string out;
  char buf[65536];
  for (;;) {
    pollfd p{fd.get(), POLLIN, 0};
    int r = ::poll(&p, 1, timeout_ms);
    if (r == 0) return sysError("waiting for reply from " + path, ETIMEDOUT);
    if (r < 0) return sysError("poll " + path);
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) return sysError("read from " + path);
    if (n == 0) break;
    out.append(buf, size_t(n));
  }
  return out;
}

}  // namespace slr
