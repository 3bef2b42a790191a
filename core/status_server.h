#pragma once
// The local control socket both roles serve.  Unix stream socket; a client
// sends one request line ("status", "hosts", "flows 100", ...) and reads one
// JSON document until EOF.  Runs its own thread; the handler is called on
// that thread and must be thread-safe with respect to the daemon.
#include <atomic>
#include <functional>
#include <string>
#include <string_view>
#include <thread>

#include "core/fd.h"
#include "core/result.h"

namespace slr {

class StatusServer {
 public:
  using Handler = std::function<std::string(std::string_view request)>;

  StatusServer(std::string path, Handler handler);
  ~StatusServer();
  StatusServer(const StatusServer&) = delete;
  StatusServer& operator=(const StatusServer&) = delete;

  // Binds (replacing a stale socket file, creating the parent directory with
  // mode 0755) and starts the serving thread.
  Status start();
  void stop();
  const std::string& path() const { return path_; }

 private:
  void run();

  std::string path_;
  Handler handler_;
  UniqueFd listen_fd_;
  UniqueFd wake_fd_;  // eventfd to stop the thread
  std::thread thread_;
};

// Client side: send one request, return the whole response.  Error code
// ECONNREFUSED/ENOENT means "daemon not running".
Result<std::string> statusRequest(const std::string& path, std::string_view request,
                                  int timeout_ms = 5000);

}  // namespace slr
