#include "core/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <poll.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>

namespace slr::tls {

void SslCtxDeleter::operator()(SSL_CTX* p) const { SSL_CTX_free(p); }
void SslDeleter::operator()(SSL* p) const { SSL_free(p); }
void X509Deleter::operator()(X509* p) const { X509_free(p); }

std::string_view ioStatusName(IoStatus s) {
  switch (s) {
    case IoStatus::kDone: return "done";
    case IoStatus::kWantRead: return "want-read";
    case IoStatus::kWantWrite: return "want-write";
    case IoStatus::kClosed: return "closed";
    case IoStatus::kError: return "error";
  }
  return "?";
}

struct Connection::State {
  std::string expected_name;  // client: required peer CN ("" = any verified cert)
  std::string verify_detail;  // set by the verify callback when it refuses a cert
  std::string last_error;
  bool started = false;
  bool done = false;
  bool failed = false;
};

namespace {

// Drains this thread's OpenSSL error queue into one line.
std::string drainErrors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

Error sslError(std::string op) {
  std::string d = drainErrors();
  return Error{0, std::move(op), d.empty() ? "unknown OpenSSL error" : d};
}

// fopen first so a missing or unreadable file is reported with errno rather
// than OpenSSL's "system library" chain.
std::optional<Error> checkReadable(const std::string& op, const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "r");
  if (!f) return sysError(op, errno);
  std::fclose(f);
  return std::nullopt;
}

std::string commonName(X509* cert) {
  if (!cert) return {};
  X509_NAME* subject = X509_get_subject_name(cert);
  int idx = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (idx < 0) return {};
  ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, idx));
  unsigned char* utf8 = nullptr;
  int n = ASN1_STRING_to_UTF8(&utf8, data);
  if (n < 0) return {};
  std::string cn(reinterpret_cast<char*>(utf8), size_t(n));
  OPENSSL_free(utf8);
  return cn;
}

// Runs for every certificate in the peer's chain.  Besides OpenSSL's own
// verdict it enforces the expected CN on the leaf, so a wrong SLR is refused
// inside the handshake (with an alert) rather than after it.
int verifyCallback(int preverify_ok, X509_STORE_CTX* store) {
  auto* ssl = static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  auto* st = ssl ? static_cast<Connection::State*>(SSL_get_app_data(ssl)) : nullptr;
  if (!preverify_ok) {
    if (st && st->verify_detail.empty())
      st->verify_detail = X509_verify_cert_error_string(X509_STORE_CTX_get_error(store));
    return 0;
  }
  if (X509_STORE_CTX_get_error_depth(store) == 0 && st && !st->expected_name.empty()) {
    std::string cn = commonName(X509_STORE_CTX_get_current_cert(store));
    if (cn != st->expected_name) {
      st->verify_detail = "peer certificate CN '" + cn + "' != expected '" + st->expected_name + "'";
      X509_STORE_CTX_set_error(store, X509_V_ERR_HOSTNAME_MISMATCH);
      return 0;
    }
  }
  return 1;
}

Result<SslCtxPtr> buildContext(bool server, const std::string& ca, const std::string& cert,
                               const std::string& key) {
  ERR_clear_error();
  SslCtxPtr ctx(SSL_CTX_new(server ? TLS_server_method() : TLS_client_method()));
  if (!ctx) return sslError("SSL_CTX_new");
  if (SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(ctx.get(), TLS1_3_VERSION) != 1)
    return sslError("setting TLS 1.3 only");
  // Partial writes + moving buffer: a poll loop may retry a write with a
  // different (shifted) buffer after kWantWrite.
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // No session resumption on a long-lived control channel; also keeps the
  // server from sending tickets the client never reads.
  SSL_CTX_set_num_tickets(ctx.get(), 0);
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);

  std::string op = "loading CA certificates " + ca;
  if (auto e = checkReadable(op, ca)) return *e;
  if (SSL_CTX_load_verify_locations(ctx.get(), ca.c_str(), nullptr) != 1) return sslError(op);

  op = "loading certificate " + cert;
  if (auto e = checkReadable(op, cert)) return *e;
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), cert.c_str()) != 1) return sslError(op);

  op = "loading private key " + key;
  if (auto e = checkReadable(op, key)) return *e;
  std::string mismatch = "private key " + key + " does not match certificate " + cert;
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), key.c_str(), SSL_FILETYPE_PEM) != 1) {
    // OpenSSL already compares the key with the loaded certificate here.
    unsigned long e = ERR_peek_last_error();
    bool is_mismatch = ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH;
    return sslError(is_mismatch ? mismatch : op);
  }
  if (SSL_CTX_check_private_key(ctx.get()) != 1) return sslError(mismatch);

  if (server) {
    // Tell clients which CA we accept (helps them pick a cert; cosmetic).
    if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(ca.c_str()))
      SSL_CTX_set_client_CA_list(ctx.get(), names);
    ERR_clear_error();
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, verifyCallback);
  } else {
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, verifyCallback);
  }
  return ctx;
}

}  // namespace

Result<Context> Context::server(const std::string& ca_path, const std::string& cert_path,
                                const std::string& key_path) {
  auto ctx = buildContext(true, ca_path, cert_path, key_path);
  if (!ctx) return ctx.error();
  return Context(std::move(ctx).value(), true);
}

Result<Context> Context::client(const std::string& ca_path, const std::string& cert_path,
                                const std::string& key_path) {
  auto ctx = buildContext(false, ca_path, cert_path, key_path);
  if (!ctx) return ctx.error();
  return Context(std::move(ctx).value(), false);
}

Result<Connection> Context::newConnection(UniqueFd fd) const {
  if (!ctx_) return Error{EINVAL, "TLS connection", "context is empty (moved from)"};
  if (!fd) return Error{EBADF, "TLS connection", "invalid socket"};
  ERR_clear_error();
  SslPtr ssl(SSL_new(ctx_.get()));
  if (!ssl) return sslError("SSL_new");
  if (SSL_set_fd(ssl.get(), fd.get()) != 1) return sslError("SSL_set_fd");
  if (server_) SSL_set_accept_state(ssl.get());
  else SSL_set_connect_state(ssl.get());
  auto state = std::make_unique<Connection::State>();
  SSL_set_app_data(ssl.get(), state.get());
  return Connection(std::move(fd), std::move(ssl), std::move(state));
}

// ---- Connection ----

Connection::Connection(UniqueFd fd, SslPtr ssl, std::unique_ptr<State> state)
    : fd_(std::move(fd)), ssl_(std::move(ssl)), state_(std::move(state)) {}
Connection::Connection(Connection&&) noexcept = default;
Connection& Connection::operator=(Connection&&) noexcept = default;
Connection::~Connection() = default;

bool Connection::setExpectedPeerName(const std::string& name) {
  if (!state_ || state_->started) return false;
  state_->expected_name = name;
  return true;
}

bool Connection::handshakeDone() const { return state_ && state_->done; }

const std::string& Connection::lastError() const {
  static const std::string kMoved = "connection is empty (moved from)";
  return state_ ? state_->last_error : kMoved;
}

IoStatus Connection::fail(int ssl_ret, const char* what) {
  int err = SSL_get_error(ssl_.get(), ssl_ret);
  int saved_errno = errno;
  switch (err) {
    case SSL_ERROR_WANT_READ: return IoStatus::kWantRead;
    case SSL_ERROR_WANT_WRITE: return IoStatus::kWantWrite;
    case SSL_ERROR_ZERO_RETURN:
      state_->last_error = "peer closed the connection";
      return IoStatus::kClosed;
    case SSL_ERROR_SYSCALL: {
      std::string q = drainErrors();
      state_->failed = true;
      if (saved_errno == 0 && q.empty()) {
        state_->last_error = std::string(what) + ": peer closed the connection (EOF)";
        return IoStatus::kClosed;
      }
      state_->last_error = std::string(what) + ": " + (saved_errno ? std::strerror(saved_errno) : q);
      return IoStatus::kError;
    }
    case SSL_ERROR_SSL: {
      unsigned long e = ERR_peek_error();
      state_->failed = true;
      if (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        ERR_clear_error();
        state_->last_error = std::string(what) + ": peer closed the connection without close_notify";
        return IoStatus::kClosed;
      }
      if (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
        ERR_clear_error();
        std::string d = state_->verify_detail;
        if (d.empty()) d = verifyError();
        state_->last_error = "certificate verify failed: " + d;
        return IoStatus::kError;
      }
      std::string q = drainErrors();
      state_->last_error = std::string(what) + ": " + (q.empty() ? "unknown OpenSSL error" : q);
      return IoStatus::kError;
    }
    default:
      state_->failed = true;
      state_->last_error = std::string(what) + ": SSL_get_error " + std::to_string(err) + " " + drainErrors();
      return IoStatus::kError;
  }
}

IoStatus Connection::handshake() {
  if (!ssl_ || !state_) return IoStatus::kError;
  if (state_->failed) return IoStatus::kError;
  if (state_->done) return IoStatus::kDone;
  state_->started = true;
  ERR_clear_error();
  errno = 0;
  int ret = SSL_do_handshake(ssl_.get());
  if (ret != 1) return fail(ret, "TLS handshake");
  // Belt and braces: the verify callback already enforced both of these.
  if (SSL_get_verify_result(ssl_.get()) != X509_V_OK || !SSL_get0_peer_certificate(ssl_.get())) {
    state_->failed = true;
    state_->last_error = "certificate verify failed: " + verifyError();
    return IoStatus::kError;
  }
  if (!state_->expected_name.empty() && peerCommonName() != state_->expected_name) {
    state_->failed = true;
    state_->last_error =
        "peer certificate CN '" + peerCommonName() + "' != expected '" + state_->expected_name + "'";
    return IoStatus::kError;
  }
  state_->done = true;
  return IoStatus::kDone;
}

IoResult Connection::read(std::span<std::byte> buf) {
  if (!ssl_ || !state_ || state_->failed) return {IoStatus::kError, 0};
  if (buf.empty()) return {IoStatus::kDone, 0};
  state_->started = true;
  ERR_clear_error();
  errno = 0;
  size_t got = 0;
  int ret = SSL_read_ex(ssl_.get(), buf.data(), buf.size(), &got);
  if (ret == 1) return {IoStatus::kDone, got};
  return {fail(ret, "TLS read"), 0};
}

IoResult Connection::write(std::span<const std::byte> data) {
  if (!ssl_ || !state_ || state_->failed) return {IoStatus::kError, 0};
  if (data.empty()) return {IoStatus::kDone, 0};
  state_->started = true;
  ERR_clear_error();
  errno = 0;
  size_t put = 0;
  int ret = SSL_write_ex(ssl_.get(), data.data(), data.size(), &put);
  if (ret == 1) return {IoStatus::kDone, put};
  return {fail(ret, "TLS write"), 0};
}

namespace {
using Clock = std::chrono::steady_clock;

// Waits for the direction OpenSSL asked for; false on timeout or poll error.
Status waitFor(int fd, IoStatus want, Clock::time_point deadline, const char* op) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  if (left <= 0) return Error{ETIMEDOUT, op, {}};
  pollfd p{fd, short(want == IoStatus::kWantRead ? POLLIN : POLLOUT), 0};
  int n = ::poll(&p, 1, int(left));
  if (n < 0 && errno != EINTR) return sysError(std::string(op) + ": poll");
  if (n == 0) return Error{ETIMEDOUT, op, {}};
  return Ok{};
}
}  // namespace

Status Connection::handshakeFor(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    IoStatus s = handshake();
    if (s == IoStatus::kDone) return Ok{};
    if (s == IoStatus::kClosed) return Error{0, "TLS handshake", lastError()};
    if (s == IoStatus::kError) return Error{0, "TLS handshake", lastError()};
    if (auto w = waitFor(fd(), s, deadline, "TLS handshake"); !w) return w;
  }
}

Status Connection::writeAll(std::span<const std::byte> data, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (!data.empty()) {
    IoResult r = write(data);
    if (r.status == IoStatus::kDone) {
      data = data.subspan(r.bytes);
      continue;
    }
    if (r.status == IoStatus::kClosed || r.status == IoStatus::kError)
      return Error{0, "TLS write", lastError()};
    if (auto w = waitFor(fd(), r.status, deadline, "TLS write"); !w) return w;
  }
  return Ok{};
}

void Connection::shutdown() {
  if (!ssl_ || !state_ || state_->failed || !state_->done) return;
  ERR_clear_error();
  SSL_shutdown(ssl_.get());  // sends close_notify; we do not wait for the peer's
  ERR_clear_error();
}

std::string Connection::peerCommonName() const {
  if (!ssl_) return {};
  return commonName(SSL_get0_peer_certificate(ssl_.get()));
}

std::string Connection::verifyError() const {
  if (!ssl_) return {};
  return X509_verify_cert_error_string(SSL_get_verify_result(ssl_.get()));
}

}  // namespace slr::tls
