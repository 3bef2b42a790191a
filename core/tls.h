#pragma once
// TLS 1.3 with mutual certificate authentication for the control channel
// (OpenSSL 3).  Every OpenSSL handle is owned by a unique_ptr with a custom
// deleter; nothing outside this file frees by hand.
//
// Threads: a Context may be shared by threads (SSL_CTX is thread safe once
// built); a Connection belongs to one thread at a time.
//
// SIGPIPE: OpenSSL writes with write(2); a daemon must ignore SIGPIPE
// (signal(SIGPIPE, SIG_IGN)) or a peer reset kills the process.
#include <openssl/types.h>

#include <chrono>
#include <cstddef>
#include <memory>
#include <span>
#include <string>

#include "core/fd.h"
#include "core/result.h"

namespace slr::tls {

struct SslCtxDeleter { void operator()(SSL_CTX* p) const; };
struct SslDeleter { void operator()(SSL* p) const; };
struct X509Deleter { void operator()(X509* p) const; };
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxDeleter>;
using SslPtr = std::unique_ptr<SSL, SslDeleter>;
using X509Ptr = std::unique_ptr<X509, X509Deleter>;

// What a non-blocking operation needs next, so a poll loop can drive it.
enum class IoStatus {
  kDone,       // handshake finished / bytes transferred
  kWantRead,   // poll for POLLIN, then call again
  kWantWrite,  // poll for POLLOUT, then call again
  kClosed,     // peer closed the connection (close_notify or EOF)
  kError,      // fatal; Connection::lastError() says why
};
std::string_view ioStatusName(IoStatus s);

struct IoResult {
  IoStatus status = IoStatus::kError;
  size_t bytes = 0;  // bytes read/written when status == kDone (> 0)
};

class Connection;

class Context {
 public:
  // TLS 1.3 only, peer certificate required and verified against ca_path.
  // Errors name the file and OpenSSL's reason, e.g. "loading certificate
  // /etc/slrctl/slr.pem" / "...: no start line"; a key that does not match
  // the certificate is refused.
  [[nodiscard]] static Result<Context> server(const std::string& ca_path,
                                              const std::string& cert_path,
                                              const std::string& key_path);
  [[nodiscard]] static Result<Context> client(const std::string& ca_path,
                                              const std::string& cert_path,
                                              const std::string& key_path);

  Context(Context&&) noexcept = default;
  Context& operator=(Context&&) noexcept = default;

  bool isServer() const { return server_; }

  // Wrap a connected socket (blocking or non-blocking; takes ownership).
  // Nothing is sent until Connection::handshake().  The SSL keeps its own
  // reference to the SSL_CTX, so a Connection may outlive this Context.
  [[nodiscard]] Result<Connection> newConnection(UniqueFd fd) const;

  SSL_CTX* native() const { return ctx_.get(); }  // for tests / special set-up

 private:
  Context(SslCtxPtr ctx, bool server) : ctx_(std::move(ctx)), server_(server) {}
  SslCtxPtr ctx_;
  bool server_ = false;
};

class Connection {
 public:
  Connection(Connection&&) noexcept;
  Connection& operator=(Connection&&) noexcept;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection();

  // Client side: the peer certificate's CN must equal `name`, else the
  // handshake fails with lastError() "peer certificate CN 'x' != expected 'y'".
  // Call before handshake(); false if called too late or on an invalid object.
  bool setExpectedPeerName(const std::string& name);

  // Drive the handshake; call again after kWantRead/kWantWrite.
  IoStatus handshake();
  bool handshakeDone() const;

  // Non-blocking I/O.  read: kDone with bytes > 0, kWantRead/kWantWrite,
  // kClosed, kError.  write: may be partial (bytes < data.size()); after
  // kWantWrite retry with the remaining data (the buffer may move).
  IoResult read(std::span<std::byte> buf);
  IoResult write(std::span<const std::byte> data);

  // Convenience for simple callers (works on blocking and non-blocking
  // sockets, waits with poll()).  Errors carry lastError() as detail;
  // timeouts have code ETIMEDOUT.
  [[nodiscard]] Status handshakeFor(std::chrono::milliseconds timeout);
  [[nodiscard]] Status writeAll(std::span<const std::byte> data, std::chrono::milliseconds timeout);

  // Send close_notify (best effort, does not wait for the peer's).
  void shutdown();

  int fd() const { return fd_.get(); }
  // CN of the verified peer certificate ("" before the handshake / no cert).
  std::string peerCommonName() const;
  // X509_verify_cert_error_string of the verify result, e.g. "unable to get
  // local issuer certificate"; "ok" when verification succeeded.
  std::string verifyError() const;
  // Why the last operation returned kError (verify failure, CN mismatch,
  // OpenSSL reason, errno text), e.g. "certificate verify failed: unable to
  // get local issuer certificate".
  const std::string& lastError() const;
  SSL* native() const { return ssl_.get(); }

  struct State;  // heap-pinned so the OpenSSL verify callback can find it

 private:
  friend class Context;
  Connection(UniqueFd fd, SslPtr ssl, std::unique_ptr<State> state);
  IoStatus fail(int ssl_ret, const char* what);

  UniqueFd fd_;  // declared first: destroyed after ssl_ (SSL does not close it)
  SslPtr ssl_;
  std::unique_ptr<State> state_;
};

}  // namespace slr::tls
