#pragma once
// Result<T>: the return type of every OS, netlink, nft and TLS call in slrctl.
// Carries errno, the operation that was attempted and, for netlink, the
// kernel's extended-ACK text.  No exceptions below the CLI boundary.
#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <variant>

namespace slr {

struct Error {
  int code = 0;            // errno-style value, 0 if not from the OS
  std::string op;          // what was attempted, e.g. "RTM_NEWROUTE local 10.100.0.0/24 dev lo"
  std::string detail;      // extack text, OpenSSL error string, parser message...

  std::string message() const {
    std::string m = op;
    if (code != 0) {
      m += ": ";
      m += std::strerror(code);
    }
    if (!detail.empty()) {
      m += " (";
      m += detail;
      m += ")";
    }
    return m;
  }
};

inline Error sysError(std::string op, int code = errno, std::string detail = {}) {
  return Error{code, std::move(op), std::move(detail)};
}

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}
  Result(Error e) : v_(std::move(e)) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }
  T& operator*() & { return value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

struct Ok {};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Ok) {}
  Result(Error e) : err_(std::move(e)), ok_(false) {}
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return err_; }

 private:
  Error err_;
  bool ok_ = true;
};

using Status = Result<void>;

}  // namespace slr
