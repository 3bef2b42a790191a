#include "core/config.h"

// Debian's libtomlplusplus-dev ships a compiled library (built with exceptions:
// symbols live in toml::v3::ex); its pkg-config/CMake files add these two
// definitions.  Set them here too so this file links against
// -ltomlplusplus however it is compiled.
#ifndef TOML_HEADER_ONLY
#define TOML_HEADER_ONLY 0
#endif
#ifndef TOML_SHARED_LIB
#define TOML_SHARED_LIB 1
#endif
#include <toml++/toml.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <limits>
#include <system_error>
#include <utility>

namespace slr::config {

// ------------------------------------------------------------ public ----

std::optional<Endpoint> Endpoint::parse(std::string_view text) {
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  auto addr = IpAddress::parse(text.substr(0, colon));
  if (!addr || !addr->isV4()) return std::nullopt;
  auto pt = text.substr(colon + 1);
  if (pt.empty() || pt.size() > 5) return std::nullopt;
  unsigned port = 0;
  auto [p, ec] = std::from_chars(pt.data(), pt.data() + pt.size(), port);
  if (ec != std::errc() || p != pt.data() + pt.size() || port < 1 || port > 65535) {
    return std::nullopt;
  }
  return Endpoint{*addr, uint16_t(port)};
}

std::string Endpoint::str() const { return addr.str() + ":" + std::to_string(port); }

std::string_view roleName(Role r) { return r == Role::kSlr ? "slr" : "host"; }

std::string_view onFullName(OnFull v) { return v == OnFull::kDrop ? "drop" : "stateless"; }

std::string_view tunnelModeName(TunnelMode v) {
  switch (v) {
    case TunnelMode::kKernel: return "kernel";
    case TunnelMode::kUserspace: return "userspace";
    case TunnelMode::kAuto: break;
  }
  return "auto";
}

std::string_view loadSourceName(LoadSource v) {
  switch (v) {
    case LoadSource::kConnections: return "connections";
    case LoadSource::kFile: return "file";
    case LoadSource::kCommand: return "command";
    case LoadSource::kCpu: break;
  }
  return "cpu";
}

std::string_view routeCostSourceName(RouteCostSource v) {
  return v == RouteCostSource::kKernel ? "kernel" : "config";
}

std::string_view spareRoleName(SpareRole r) { return r == SpareRole::kSpare ? "spare" : "main"; }

std::string_view checkTypeName(CheckType t) {
  switch (t) {
    case CheckType::kHttp: return "http";
    case CheckType::kCommand: return "command";
    case CheckType::kTcp: break;
  }
  return "tcp";
}

bool isValidName(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

std::optional<Duration> parseDuration(std::string_view s) {
  size_t digits = 0;
  while (digits < s.size() && s[digits] >= '0' && s[digits] <= '9') ++digits;
  // 12 digits is far beyond any sane duration and keeps the multiply below in range.
  if (digits == 0 || digits > 12) return std::nullopt;
  int64_t n = 0;
  std::from_chars(s.data(), s.data() + digits, n);
  auto unit = s.substr(digits);
  int64_t ms_per_unit = 0;
  if (unit == "ms") ms_per_unit = 1;
  else if (unit == "s") ms_per_unit = 1000;
  else if (unit == "m") ms_per_unit = 60 * 1000;
  else if (unit == "h") ms_per_unit = 3600 * 1000;
  else return std::nullopt;
  if (n <= 0) return std::nullopt;
  return Duration(n * ms_per_unit);
}

std::vector<std::string> errorLines(const Error& e) {
  std::vector<std::string> out;
  std::string_view d = e.detail;
  while (!d.empty()) {
    auto nl = d.find('\n');
    out.emplace_back(d.substr(0, nl));
    if (nl == std::string_view::npos) break;
    d.remove_prefix(nl + 1);
  }
  return out;
}

namespace {

// Protocol fields carry durations as u32 milliseconds; 1000h stays below that.
constexpr int64_t kMaxDurationMs = int64_t(1000) * 3600 * 1000;
constexpr size_t kMaxFileBytes = 1 << 20;
constexpr size_t kSunPathMax = 108;  // sizeof(sockaddr_un::sun_path)
constexpr size_t kIfNameMax = 15;    // IFNAMSIZ - 1

// ------------------------------------------------------- error sink ----

class Ctx {
 public:
  explicit Ctx(std::string_view file) : file_(file) {}

  // The text was read from the file `file()` (not handed over as a string):
  // relative paths in it are relative to that file's directory, and files it
  // names can be checked.  Otherwise they are relative to the current directory.
  void setFromFile(bool v) { from_file_ = v; }
  bool fromFile() const { return from_file_; }

  void expected(const std::string& path, std::string_view what, std::string_view got) {
    std::string line = file_;
    line += ": ";
    if (!path.empty()) {
      line += path;
      line += ": ";
    }
    line += "expected ";
    line += what;
    line += ", got ";
    line += got;
    errors_.push_back(std::move(line));
  }
  void unknownKey(const std::string& path, std::initializer_list<std::string_view> keys) {
    std::string line = file_ + ": " + path + ": unknown key; expected one of: ";
    bool first = true;
    for (auto k : keys) {
      if (!first) line += ", ";
      line += k;
      first = false;
    }
    errors_.push_back(std::move(line));
  }
  void raw(std::string line) { errors_.push_back(std::move(line)); }

  const std::string& file() const { return file_; }
  bool failed() const { return !errors_.empty(); }

  Error toError() const {
    std::string detail;
    for (const auto& e : errors_) {
      if (!detail.empty()) detail += '\n';
      detail += e;
    }
    return Error{0, "config " + file_, std::move(detail)};
  }

 private:
  std::string file_;
  bool from_file_ = false;
  std::vector<std::string> errors_;
};

// ------------------------------------------------- value rendering ----

std::string quote(std::string_view s) {
  constexpr size_t kMax = 80;  // keep one error on one readable line
  std::string out = "\"";
  size_t n = 0;
  for (char c : s) {
    if (++n > kMax) {
      out += "...";
      break;
    }
    auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (u < 0x20 || u == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04X", u);
      out += buf;
    } else {
      out += c;
    }
  }
  out += '"';
  return out;
}

std::string formatDouble(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  char buf[64];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, d);
  std::string s(buf, ec == std::errc() ? p : buf);
  // Show a float as a float: "1" would read like an integer.
  if (s.find_first_of(".eE") == std::string::npos) s += ".0";
  return s;
}

// How a value is shown after "got": TOML syntax for scalars, so the type is visible.
std::string repr(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string: return quote(n.as_string()->get());
    case toml::node_type::integer: return std::to_string(n.as_integer()->get());
    case toml::node_type::floating_point: return formatDouble(n.as_floating_point()->get());
    case toml::node_type::boolean: return n.as_boolean()->get() ? "true" : "false";
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return n.as_array()->empty() ? "an empty array" : "an array";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
    case toml::node_type::none: break;
  }
  return "nothing";
}

std::string keyText(std::string_view k) {
  bool bare = !k.empty() && std::all_of(k.begin(), k.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  });
  return bare ? std::string(k) : quote(k);
}

std::string child(const std::string& base, std::string_view key) {
  return base.empty() ? std::string(key) : base + "." + std::string(key);
}

std::string element(const std::string& base, size_t i) {
  return base + "[" + std::to_string(i) + "]";
}

// [[section]] elements must not share a name / an endpoint: the first
// earlier element with the same one is reported at `path` ("a name not
// used by host[0]").  address_ok[j] false: element j's address did not
// parse, so it cannot clash.
template <typename T>
void requireUniqueName(Ctx& ctx, const std::string& path, const std::string& section,
                       const std::vector<T>& earlier, const std::string& name) {
  for (size_t j = 0; j < earlier.size(); ++j) {
    if (earlier[j].name == name) {
      ctx.expected(path, "a name not used by " + element(section, j), quote(name));
      return;
    }
  }
}
template <typename T>
void requireUniqueAddress(Ctx& ctx, const std::string& path, const std::string& section,
                          const std::vector<T>& earlier, const std::vector<bool>& address_ok,
                          const Endpoint& address) {
  for (size_t j = 0; j < earlier.size(); ++j) {
    if (address_ok[j] && earlier[j].address == address) {
      ctx.expected(path, "an endpoint not used by " + element(section, j), quote(address.str()));
      return;
    }
  }
}

// ------------------------------------------------------------ tables ----

// One TOML table with its allowed keys.  A Section over a missing table (whose
// absence was already reported) reads nothing and reports nothing, so one
// missing [tls] does not also produce "tls.ca missing" and friends.
class Section {
 public:
  Section(Ctx& ctx, const toml::table* tbl, std::string path,
          std::initializer_list<std::string_view> keys)
      : ctx_(ctx), tbl_(tbl), path_(std::move(path)) {
    if (tbl_ == nullptr) return;
    // Report unknown keys in document order (toml::table iterates sorted).
    std::vector<std::pair<toml::source_position, std::string_view>> unknown;
    for (auto&& [k, v] : *tbl_) {
      (void)v;
      if (std::find(keys.begin(), keys.end(), k.str()) == keys.end()) {
        unknown.emplace_back(k.source().begin, k.str());
      }
    }
    std::sort(unknown.begin(), unknown.end(), [](const auto& a, const auto& b) {
      return std::pair(a.first.line, a.first.column) < std::pair(b.first.line, b.first.column);
    });
    for (auto& [pos, k] : unknown) ctx_.unknownKey(child(path_, keyText(k)), keys);
  }

  Ctx& ctx() { return ctx_; }
  bool present() const { return tbl_ != nullptr; }
  const toml::node* at(std::string_view key) const { return tbl_ ? tbl_->get(key) : nullptr; }
  std::string path(std::string_view key) const { return child(path_, key); }

 private:
  Ctx& ctx_;
  const toml::table* tbl_;
  std::string path_;
};

enum class Need { kOptional, kRequired };

// Reads `key`: missing -> error if required (out keeps its default); present
// -> parse(node, what) must yield a value, else "expected WHAT, got VALUE".
// parse may refine `what` to say precisely which rule was broken.
template <typename T, typename Parse>
bool read(Section& s, std::string_view key, Need need, std::string_view what, T& out,
          Parse&& parse) {
  if (!s.present()) return false;
  const toml::node* n = s.at(key);
  if (n == nullptr) {
    if (need == Need::kRequired) s.ctx().expected(s.path(key), what, "nothing");
    return false;
  }
  std::string w(what);
  std::optional<T> v = parse(*n, w);
  if (!v) {
    s.ctx().expected(s.path(key), w, repr(*n));
    return false;
  }
  out = std::move(*v);
  return true;
}

std::optional<std::string_view> asString(const toml::node& n) {
  if (const auto* v = n.as_string()) return std::string_view(v->get());
  return std::nullopt;
}

// ----------------------------------------------------------- parsers ----

constexpr std::string_view kNameWhat = "a name of 1..64 characters from [A-Za-z0-9._-]";
constexpr std::string_view kIpv4What = "an IPv4 address \"a.b.c.d\"";
constexpr std::string_view kEndpointWhat = "an endpoint \"a.b.c.d:port\" with port 1..65535";
constexpr std::string_view kPrefixWhat = "an IPv4 prefix \"a.b.c.d/len\" with no host bits set";
constexpr std::string_view kDurationWhat =
    "a duration such as \"250ms\", \"3s\", \"5m\" or \"1h\", greater than 0";
constexpr std::string_view kZeroDurationWhat =
    "a duration such as \"0s\", \"500ms\" or \"3s\"";
constexpr std::string_view kPathWhat = "a non-empty file path";
constexpr std::string_view kSocketWhat = "an absolute socket path shorter than 108 bytes";
constexpr std::string_view kIfNameWhat = "an interface name of 1..15 characters from [A-Za-z0-9._-]";
constexpr std::string_view kLogLevelWhat =
    "one of \"trace\", \"debug\", \"info\", \"warn\", \"error\"";

std::optional<std::string> parseName(const toml::node& n, std::string&) {
  auto s = asString(n);
  if (!s || !isValidName(*s)) return std::nullopt;
  return std::string(*s);
}

std::optional<IpAddress> parseIpv4(const toml::node& n, std::string&) {
  auto s = asString(n);
  if (!s) return std::nullopt;
  auto a = IpAddress::parse(*s);
  if (!a || !a->isV4()) return std::nullopt;
  return a;
}

std::optional<Endpoint> parseEndpoint(const toml::node& n, std::string&) {
  auto s = asString(n);
  if (!s) return std::nullopt;
  return Endpoint::parse(*s);
}

std::optional<Prefix> parsePrefix(const toml::node& n, std::string&) {
  auto s = asString(n);
  if (!s) return std::nullopt;
  auto p = Prefix::parse(*s);
  if (!p || !p->addr.isV4()) return std::nullopt;
  return p;
}

std::optional<Duration> parseDurationNode(const toml::node& n, std::string& what) {
  auto s = asString(n);
  if (!s) return std::nullopt;
  auto d = parseDuration(*s);
  if (d && d->count() > kMaxDurationMs) {
    what = "a duration of at most 1000h";
    return std::nullopt;
  }
  return d;
}

// "250ms", "3s", "1h": how a duration is written back in messages.
std::string durationText(Duration d) {
  int64_t ms = d.count();
  if (ms != 0 && ms % (3600 * 1000) == 0) return std::to_string(ms / (3600 * 1000)) + "h";
  if (ms != 0 && ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

// parseDuration, plus a zero ("0s", "0ms", ...) for the keys where 0 means "off".
std::optional<Duration> parseDurationOrZero(std::string_view s) {
  if (auto d = parseDuration(s)) return d;
  size_t digits = 0;
  while (digits < s.size() && s[digits] == '0') ++digits;
  if (digits == 0 || digits > 12) return std::nullopt;
  // All zeros and a known unit.
  if (!parseDuration("1" + std::string(s.substr(digits)))) return std::nullopt;
  return Duration(0);
}

// A duration in [lo, hi]; a well-formed one outside says the range.  lo == 0
// accepts a zero duration ("0s").
auto durationIn(Duration lo, Duration hi) {
  return [lo, hi](const toml::node& n, std::string& what) -> std::optional<Duration> {
    auto s = asString(n);
    if (!s) return std::nullopt;
    auto d = lo.count() == 0 ? parseDurationOrZero(*s) : parseDuration(*s);
    if (d && (*d < lo || *d > hi)) {
      what = "a duration of " + std::to_string(lo.count()) + "ms.." + durationText(hi);
      return std::nullopt;
    }
    return d;
  };
}

constexpr std::string_view kBoolWhat = "true or false";

std::optional<bool> parseBool(const toml::node& n, std::string&) {
  if (const auto* b = n.as_boolean()) return b->get();
  return std::nullopt;
}

std::optional<std::string> parsePath(const toml::node& n, std::string&) {
  auto s = asString(n);
  if (!s || s->empty()) return std::nullopt;
  return std::string(*s);
}

std::optional<std::string> parseSocketPath(const toml::node& n, std::string&) {
  auto s = asString(n);
  if (!s || s->empty() || s->front() != '/' || s->size() >= kSunPathMax) return std::nullopt;
  return std::string(*s);
}

std::optional<std::string> parseIfName(const toml::node& n, std::string&) {
  auto s = asString(n);
  if (!s || s->size() > kIfNameMax || !isValidName(*s)) return std::nullopt;
  return std::string(*s);
}

std::optional<log::Level> parseLogLevel(const toml::node& n, std::string&) {
  auto s = asString(n);
  log::Level l;
  if (!s || !log::parseLevel(*s, l)) return std::nullopt;
  return l;
}

// Integer in [lo, hi]; the caller's `what` states the range.
template <typename T>
auto intIn(int64_t lo, int64_t hi) {
  return [lo, hi](const toml::node& n, std::string&) -> std::optional<T> {
    const auto* v = n.as_integer();
    if (v == nullptr || v->get() < lo || v->get() > hi) return std::nullopt;
    return static_cast<T>(v->get());
  };
}

// Number (integer or float) in [lo, hi], finite.
auto numberIn(double lo, double hi) {
  return [lo, hi](const toml::node& n, std::string&) -> std::optional<double> {
    double d;
    if (const auto* i = n.as_integer()) d = double(i->get());
    else if (const auto* f = n.as_floating_point()) d = f->get();
    else return std::nullopt;
    if (!std::isfinite(d) || d < lo || d > hi) return std::nullopt;
    return d;
  };
}

template <typename E>
struct EnumName {
  std::string_view name;
  E value;
};

template <typename E, size_t N>
std::string enumWhat(const EnumName<E> (&names)[N]) {
  std::string w = "one of ";
  for (size_t i = 0; i < N; ++i) {
    if (i) w += ", ";
    w += '"';
    w += names[i].name;
    w += '"';
  }
  return w;
}

template <typename E, size_t N>
auto enumIn(const EnumName<E> (&names)[N]) {
  return [&names](const toml::node& n, std::string&) -> std::optional<E> {
    auto s = asString(n);
    if (!s) return std::nullopt;
    for (const auto& e : names) {
      if (e.name == *s) return e.value;  // exact spelling: "Drop" is a typo, not a synonym
    }
    return std::nullopt;
  };
}

constexpr EnumName<OnFull> kOnFullNames[] = {{"stateless", OnFull::kStateless},
                                             {"drop", OnFull::kDrop}};
constexpr EnumName<TunnelMode> kTunnelModeNames[] = {{"auto", TunnelMode::kAuto},
                                                     {"kernel", TunnelMode::kKernel},
                                                     {"userspace", TunnelMode::kUserspace}};
constexpr EnumName<LoadSource> kLoadSourceNames[] = {{"cpu", LoadSource::kCpu},
                                                     {"connections", LoadSource::kConnections},
                                                     {"file", LoadSource::kFile},
                                                     {"command", LoadSource::kCommand}};
constexpr EnumName<SpareRole> kSpareRoleNames[] = {{"main", SpareRole::kMain},
                                                   {"spare", SpareRole::kSpare}};
constexpr EnumName<CheckType> kCheckTypeNames[] = {
    {"tcp", CheckType::kTcp}, {"http", CheckType::kHttp}, {"command", CheckType::kCommand}};
constexpr EnumName<RouteCostSource> kRouteCostSourceNames[] = {
    {"config", RouteCostSource::kConfig}, {"kernel", RouteCostSource::kKernel}};
constexpr EnumName<std::string_view> kAlgorithmNames[] = {
    {kAlgorithmLeastCost, kAlgorithmLeastCost},
    {kAlgorithmWeightedRoundRobin, kAlgorithmWeightedRoundRobin},
    {kAlgorithmConsistentHash, kAlgorithmConsistentHash}};

// -------------------------------------------------- structure helpers ----

// A sub-table such as [tls]; nullptr if missing (reported when required) or not a table.
const toml::table* subTable(Section& s, std::string_view key, Need need, std::string_view header) {
  if (!s.present()) return nullptr;
  std::string what = "a table " + std::string(header);
  const toml::node* n = s.at(key);
  if (n == nullptr) {
    if (need == Need::kRequired) s.ctx().expected(s.path(key), what, "nothing");
    return nullptr;
  }
  if (!n->is_table()) {
    s.ctx().expected(s.path(key), what, repr(*n));
    return nullptr;
  }
  return n->as_table();
}

struct Element {
  const toml::table* table;  // nullptr when the element is not a table (reported)
  std::string path;
};

// An array of tables such as [[vip]]: at least one element (min_one), at most
// `max` (0: no limit); a missing key is an empty array when none is needed.
std::vector<Element> tableArray(Section& s, std::string_view key, bool min_one = true,
                                size_t max = 0) {
  std::vector<Element> out;
  if (!s.present()) return out;
  std::string header = "[[" + std::string(key) + "]]";
  const toml::node* n = s.at(key);
  if (n == nullptr) {
    if (min_one) s.ctx().expected(s.path(key), "at least one " + header + " table", "nothing");
    return out;
  }
  const auto* arr = n->as_array();
  if (arr == nullptr) {
    s.ctx().expected(s.path(key), "an array of tables " + header, repr(*n));
    return out;
  }
  if (arr->empty()) {
    if (min_one) s.ctx().expected(s.path(key), "at least one " + header + " table", repr(*n));
    return out;
  }
  if (max != 0 && arr->size() > max) {
    s.ctx().expected(s.path(key), "at most " + std::to_string(max) + " " + header + " tables",
                     std::to_string(arr->size()));
  }
  for (size_t i = 0; i < arr->size(); ++i) {
    const toml::node& e = (*arr)[i];
    std::string path = element(s.path(key), i);
    if (!e.is_table()) s.ctx().expected(path, "a table", repr(e));
    out.push_back(Element{e.as_table(), std::move(path)});
  }
  return out;
}

void readTls(Section& root, TlsConfig& tls) {
  Section s(root.ctx(), subTable(root, "tls", Need::kRequired, "[tls]"), root.path("tls"),
            {"ca", "cert", "key"});
  read(s, "ca", Need::kRequired, kPathWhat, tls.ca, parsePath);
  read(s, "cert", Need::kRequired, kPathWhat, tls.cert, parsePath);
  read(s, "key", Need::kRequired, kPathWhat, tls.key, parsePath);
}

bool overlaps(const Prefix& a, const Prefix& b) { return a.contains(b) || b.contains(a); }

// ------------------------------------------------------------- parse ----

std::optional<toml::table> parseToml(Ctx& ctx, std::string_view text) {
  try {
    return toml::parse(text, ctx.file());
  } catch (const toml::parse_error& e) {
    // toml++ stops at the first syntax error, so there is exactly one.
    const auto& b = e.source().begin;
    ctx.raw(ctx.file() + ":" + std::to_string(b.line) + ":" + std::to_string(b.column) + ": " +
            std::string(e.description()));
    return std::nullopt;
  }
}

bool readFile(const std::string& path, std::string& out, Error& err) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    int e = errno;
    err = Error{e, "config " + path, path + ": cannot open: " + std::strerror(e)};
    return false;
  }
  char buf[8192];
  size_t n;
  bool too_big = false;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
    out.append(buf, n);
    if (out.size() > kMaxFileBytes) {
      too_big = true;
      break;
    }
  }
  int e = std::ferror(f) ? errno : 0;
  std::fclose(f);
  if (e != 0) {
    err = Error{e, "config " + path, path + ": cannot read: " + std::strerror(e)};
    return false;
  }
  if (too_big) {
    err = Error{EFBIG, "config " + path,
                path + ": expected a file of at most 1 MiB, got a larger one"};
    return false;
  }
  return true;
}

bool isTable(const toml::table& root, std::string_view key) {
  const toml::node* n = root.get(key);
  return n != nullptr && n->is_table();
}

// Loading one role's file with the other role's loader gives dozens of
// confusing errors; say the one thing that matters instead.
bool wrongRole(Ctx& ctx, const toml::table& root, Role want) {
  std::string_view mine = roleName(want);
  std::string_view other = roleName(want == Role::kSlr ? Role::kHost : Role::kSlr);
  if (isTable(root, mine) || !isTable(root, other)) return false;
  std::string_view a_mine = want == Role::kSlr ? "an SLR" : "a host";
  std::string_view a_other = want == Role::kSlr ? "a host" : "an SLR";
  ctx.expected(std::string(mine),
               std::string(a_mine) + " config with a [" + std::string(mine) + "] table",
               std::string(a_other) + " config (it has a [" + std::string(other) + "] table)");
  return true;
}

// An optional array of distinct interface names (fast path / decap uplinks).
void readIfNameList(Ctx& ctx, const Section& s, std::string_view key, std::vector<std::string>& out) {
  const toml::node* n = s.at(key);
  if (n == nullptr) return;
  constexpr std::string_view what = "an array of interface names";
  const auto* arr = n->as_array();
  if (arr == nullptr) {
    ctx.expected(s.path(key), what, repr(*n));
    return;
  }
  for (size_t i = 0; i < arr->size(); ++i) {
    std::string w(kIfNameWhat);
    auto name = parseIfName((*arr)[i], w);
    if (!name) {
      ctx.expected(element(s.path(key), i), w, repr((*arr)[i]));
    } else if (std::find(out.begin(), out.end(), *name) != out.end()) {
      ctx.expected(element(s.path(key), i), "an interface not listed twice", quote(*name));
    } else {
      out.push_back(*name);
    }
  }
}

// An optional array of distinct IPv4 addresses.
void readIpv4List(Ctx& ctx, const Section& s, std::string_view key, std::vector<IpAddress>& out) {
  const toml::node* n = s.at(key);
  if (n == nullptr) return;
  const auto* arr = n->as_array();
  if (arr == nullptr) {
    ctx.expected(s.path(key), "an array of IPv4 addresses", repr(*n));
    return;
  }
  for (size_t i = 0; i < arr->size(); ++i) {
    std::string w(kIpv4What);
    auto a = parseIpv4((*arr)[i], w);
    if (!a) {
      ctx.expected(element(s.path(key), i), w, repr((*arr)[i]));
    } else if (std::find(out.begin(), out.end(), *a) != out.end()) {
      ctx.expected(element(s.path(key), i), "an address not listed twice", quote(a->str()));
    } else {
      out.push_back(*a);
    }
  }
}

// A path named in the config: a relative one is relative to the directory of
// the config file (to the current directory for a config given as a string).
// The result is absolute, without "." components (".." is kept: only the
// kernel knows what it means in the presence of symlinks).
std::string resolvePath(const Ctx& ctx, const std::string& p) {
  namespace fs = std::filesystem;
  fs::path path(p);
  if (path.is_relative()) {
    std::error_code ec;
    fs::path dir = ctx.fromFile() ? fs::path(ctx.file()).parent_path() : fs::path();
    fs::path base = dir.empty() ? fs::current_path(ec) : fs::absolute(dir, ec);
    if (ec) return p;  // no current directory: leave it as written
    path = base / path;
  }
  fs::path out;
  for (const auto& part : path) {
    if (part == "." || part.empty()) continue;
    out /= part;
  }
  return out.string();
}

// Whether `path` is a regular file this process can open for reading.
bool readableFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return false;
  struct stat st;
  bool ok = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  ::close(fd);
  return ok;
}

// ---------------------------------------------------------------- SLR ----

// "10.0.2.100/24" (host bits allowed: it is an interface address with its
// subnet) or a bare address (/32).
std::optional<Prefix> parseInterfaceAddress(const toml::node& n, std::string&) {
  auto s = asString(n);
  if (!s) return std::nullopt;
  auto slash = s->find('/');
  auto addr = IpAddress::parse(s->substr(0, slash));
  if (!addr || !addr->isV4()) return std::nullopt;
  unsigned len = 32;
  if (slash != std::string_view::npos) {
    auto lt = s->substr(slash + 1);
    auto [p, ec] = std::from_chars(lt.data(), lt.data() + lt.size(), len);
    if (lt.empty() || ec != std::errc() || p != lt.data() + lt.size() || len < 1 || len > 32)
      return std::nullopt;
  }
  return Prefix{*addr, uint8_t(len)};
}

constexpr std::string_view kInterfaceAddressWhat =
    "an IPv4 interface address \"a.b.c.d/len\" with len 1..32 (or a bare address)";

// Two durations of one table that must be ordered (both already read,
// defaults or not): `later` greater than `earlier`, or with kAtMost at most
// `earlier`.  Reported on `later`'s key.
enum class Order { kGreater, kAtMost };
void requireOrder(Section& s, std::string_view later_key, Duration later, std::string_view earlier_key,
                  Duration earlier, Order order = Order::kGreater) {
  if (!s.present()) return;
  bool ok = order == Order::kGreater ? later > earlier : later <= earlier;
  std::string_view how = order == Order::kGreater ? "greater than" : "at most";
  if (ok) return;
  const toml::node* n = s.at(later_key);
  std::string got = n ? repr(*n) : quote(durationText(later)) + " (the default)";
  std::string earlier_text = quote(durationText(earlier));
  if (s.at(earlier_key) == nullptr) earlier_text += ", the default";
  s.ctx().expected(s.path(later_key),
                   "a duration " + std::string(how) + " " + s.path(earlier_key) + " (" + earlier_text + ")",
                   got);
}

// [hot_spare]: the pair's other member, heartbeat timing, addresses to claim.
void readHotSpare(Section& root, SlrConfig& c, bool slr_name_ok) {
  Ctx& ctx = root.ctx();
  Section s(ctx, subTable(root, "hot_spare", Need::kOptional, "[hot_spare]"), "hot_spare",
            {"role", "peer", "peer_name", "heartbeat", "dead_after", "sync_interval", "claim_interface",
             "claim_addresses"});
  if (!s.present()) return;
  auto& o = c.hot_spare;
  o.enabled = true;
  read(s, "role", Need::kRequired, enumWhat(kSpareRoleNames), o.role, enumIn(kSpareRoleNames));
  if (read(s, "peer", Need::kRequired, kEndpointWhat, o.peer, parseEndpoint) &&
      o.peer == c.slr.control_listen) {
    ctx.expected(s.path("peer"), "an endpoint other than slr.control_listen", quote(o.peer.str()));
  }
  if (read(s, "peer_name", Need::kRequired, kNameWhat, o.peer_name, parseName) && slr_name_ok &&
      o.peer_name == c.slr.name) {
    ctx.expected(s.path("peer_name"), "a name other than slr.name", quote(o.peer_name));
  }
  bool hb_ok = true, dead_ok = true;
  if (s.at("heartbeat"))
    hb_ok = read(s, "heartbeat", Need::kOptional, kDurationWhat, o.heartbeat,
                 durationIn(Duration(10), Duration(10 * 1000)));
  if (s.at("dead_after"))
    dead_ok = read(s, "dead_after", Need::kOptional, kDurationWhat, o.dead_after,
                   durationIn(Duration(1), Duration(60 * 1000)));
  if (hb_ok && dead_ok) requireOrder(s, "dead_after", o.dead_after, "heartbeat", o.heartbeat);
  read(s, "sync_interval", Need::kOptional, kDurationWhat, o.sync_interval,
       durationIn(Duration(1), Duration(1000)));

  bool if_ok = read(s, "claim_interface", Need::kOptional, kIfNameWhat, o.claim_interface, parseIfName);
  bool addrs_given = false;
  if (const toml::node* n = s.at("claim_addresses"); n != nullptr) {
    const auto* arr = n->as_array();
    if (arr == nullptr) {
      ctx.expected(s.path("claim_addresses"), "an array of IPv4 interface addresses", repr(*n));
    } else {
      addrs_given = !arr->empty();
      for (size_t i = 0; i < arr->size(); ++i) {
        const toml::node& e = (*arr)[i];
        std::string path = element(s.path("claim_addresses"), i);
        std::string w(kInterfaceAddressWhat);
        auto p = parseInterfaceAddress(e, w);
        if (!p) {
          ctx.expected(path, w, repr(e));
        } else if (std::any_of(o.claim_addresses.begin(), o.claim_addresses.end(),
                               [&](const Prefix& q) { return q.addr == p->addr; })) {
          ctx.expected(path, "an address not listed twice", quote(p->str()));
        } else {
          o.claim_addresses.push_back(*p);
        }
      }
    }
  }
  // The interface is where the claimed addresses go: one without the other is a mistake.
  if (addrs_given && s.at("claim_interface") == nullptr) {
    ctx.expected(s.path("claim_interface"),
                 std::string(kIfNameWhat) + " (hot_spare.claim_addresses is not empty)", "nothing");
  } else if (if_ok && !addrs_given) {
    // Absent or an empty array (a non-array was reported above).
    const toml::node* n = s.at("claim_addresses");
    if (n == nullptr || n->is_array()) {
      ctx.expected(s.path("claim_addresses"),
                   "a non-empty array of IPv4 interface addresses (hot_spare.claim_interface is set)",
                   n == nullptr ? "nothing" : repr(*n));
    }
  }
}

// [[neighbor]]: SLRs asked WHOHAS.  Names and addresses unique, not this SLR.
void readNeighbors(Section& root, SlrConfig& c, bool slr_name_ok) {
  Ctx& ctx = root.ctx();
  std::vector<bool> addr_ok_list;
  for (auto& el : tableArray(root, "neighbor", false, 32)) {
    Section s(ctx, el.table, el.path, {"address", "name", "ca"});
    NeighborConfig nb;
    bool addr_ok = read(s, "address", Need::kRequired, kEndpointWhat, nb.address, parseEndpoint);
    bool name_ok = read(s, "name", Need::kRequired, kNameWhat, nb.name, parseName);
    read(s, "ca", Need::kOptional, kPathWhat, nb.ca, parsePath);
    if (name_ok) {
      if (slr_name_ok && nb.name == c.slr.name) {
        ctx.expected(s.path("name"), "a name other than slr.name", quote(nb.name));
      }
      requireUniqueName(ctx, s.path("name"), "neighbor", c.neighbors, nb.name);
    }
    if (addr_ok) requireUniqueAddress(ctx, s.path("address"), "neighbor", c.neighbors, addr_ok_list, nb.address);
    addr_ok_list.push_back(addr_ok);
    c.neighbors.push_back(std::move(nb));
  }
}

void readSlr(Ctx& ctx, const toml::table& doc, SlrConfig& c) {
  Section root(ctx, &doc, "",
               {"slr", "tls", "flows", "policy", "vip", "host", "upstream", "region", "hot_spare",
                "neighbor", "whohas"});

  bool slr_name_ok = false;
  {
    Section s(ctx, subTable(root, "slr", Need::kRequired, "[slr]"), "slr",
              {"name", "control_listen", "tunnel_source", "status_socket", "tun_name", "workers",
               "tunnel_mtu", "fast_path_interfaces", "shortcut", "shortcut_wait", "log_level"});
    auto& o = c.slr;
    slr_name_ok = read(s, "name", Need::kRequired, kNameWhat, o.name, parseName);
    read(s, "control_listen", Need::kRequired, kEndpointWhat, o.control_listen, parseEndpoint);
    read(s, "tunnel_source", Need::kRequired, kIpv4What, o.tunnel_source, parseIpv4);
    read(s, "status_socket", Need::kOptional, kSocketWhat, o.status_socket, parseSocketPath);
    read(s, "tun_name", Need::kOptional, kIfNameWhat, o.tun_name, parseIfName);
    read(s, "workers", Need::kOptional, "an integer 1..64", o.workers, intIn<uint32_t>(1, 64));
    read(s, "tunnel_mtu", Need::kOptional, "an integer 576..65535", o.tunnel_mtu,
         intIn<uint32_t>(576, 65535));
    read(s, "shortcut", Need::kOptional, kBoolWhat, o.shortcut, parseBool);
    read(s, "shortcut_wait", Need::kOptional, kDurationWhat, o.shortcut_wait,
         durationIn(Duration(1), Duration(10 * 1000)));
    read(s, "log_level", Need::kOptional, kLogLevelWhat, o.log_level, parseLogLevel);
    readIfNameList(ctx, s, "fast_path_interfaces", o.fast_path_interfaces);
  }

  readTls(root, c.tls);

  {
    Section s(ctx, subTable(root, "flows", Need::kOptional, "[flows]"), "flows",
              {"capacity", "on_full", "timeouts", "midstream_wait"});
    read(s, "capacity", Need::kOptional, "an integer 1024..67108864", c.flows.capacity,
         intIn<uint32_t>(1024, int64_t(1) << 26));
    read(s, "on_full", Need::kOptional, enumWhat(kOnFullNames), c.flows.on_full,
         enumIn(kOnFullNames));
    read(s, "midstream_wait", Need::kOptional, kZeroDurationWhat, c.flows.midstream_wait,
         durationIn(Duration(0), Duration(60 * 1000)));
    Section t(ctx, subTable(s, "timeouts", Need::kOptional, "[flows.timeouts]"), "flows.timeouts",
              {"tcp_syn", "tcp_established", "tcp_closing", "udp", "other"});
    auto& o = c.flows.timeouts;
    read(t, "tcp_syn", Need::kOptional, kDurationWhat, o.tcp_syn, parseDurationNode);
    read(t, "tcp_established", Need::kOptional, kDurationWhat, o.tcp_established,
         parseDurationNode);
    read(t, "tcp_closing", Need::kOptional, kDurationWhat, o.tcp_closing, parseDurationNode);
    read(t, "udp", Need::kOptional, kDurationWhat, o.udp, parseDurationNode);
    read(t, "other", Need::kOptional, kDurationWhat, o.other, parseDurationNode);
  }

  {
    Section s(ctx, subTable(root, "policy", Need::kOptional, "[policy]"), "policy",
              {"algorithm", "recompute_interval", "hold_time", "tie_tolerance", "route_cost_source",
               "route_metric_scale", "spread_connections", "lua", "lua_file"});
    auto& o = c.policy;
    std::string_view algo = o.algorithm;
    if (read(s, "algorithm", Need::kOptional, enumWhat(kAlgorithmNames), algo,
             enumIn(kAlgorithmNames))) {
      o.algorithm = std::string(algo);
    }
    read(s, "recompute_interval", Need::kOptional, kDurationWhat, o.recompute_interval,
         parseDurationNode);
    read(s, "hold_time", Need::kOptional, kDurationWhat, o.hold_time, parseDurationNode);
    read(s, "tie_tolerance", Need::kOptional, "a number 0..1e9", o.tie_tolerance,
         numberIn(0, 1e9));
    read(s, "route_cost_source", Need::kOptional, enumWhat(kRouteCostSourceNames),
         o.route_cost_source, enumIn(kRouteCostSourceNames));
    read(s, "route_metric_scale", Need::kOptional, "a number 0..1e6", o.route_metric_scale,
         numberIn(0, 1e6));
    read(s, "spread_connections", Need::kOptional, kBoolWhat, o.spread_connections, parseBool);
    // The Lua source is compiled by the policy module, not here.
    read(s, "lua", Need::kOptional, "a non-empty string of Lua source", o.lua, parsePath);
    std::string file;
    if (read(s, "lua_file", Need::kOptional, kPathWhat, file, parsePath)) {
      o.lua_file = resolvePath(ctx, file);
      if (ctx.fromFile() && !readableFile(o.lua_file)) {
        ctx.expected(s.path("lua_file"), "a readable file", quote(o.lua_file));
      }
    }
    if (s.present() && s.at("lua") != nullptr && s.at("lua_file") != nullptr) {
      ctx.expected("policy", "at most one of lua, lua_file", "both");
    }
  }

  // [[upstream]]: SLRs one level up.  Names unique and not this SLR's own.
  // At most 15: a flow-table entry keeps the upstream index + 1 in 4 bits.
  for (auto& el : tableArray(root, "upstream", false, 15)) {
    Section s(ctx, el.table, el.path,
              {"address", "name", "tunnel_source", "update_interval", "ca"});
    UpstreamConfig u;
    bool addr_ok = read(s, "address", Need::kRequired, kEndpointWhat, u.address, parseEndpoint);
    bool name_ok = read(s, "name", Need::kRequired, kNameWhat, u.name, parseName);
    if (!read(s, "tunnel_source", Need::kOptional, kIpv4What, u.tunnel_source, parseIpv4) &&
        addr_ok) {
      u.tunnel_source = u.address.addr;
    }
    read(s, "update_interval", Need::kOptional, kDurationWhat, u.update_interval,
         parseDurationNode);
    read(s, "ca", Need::kOptional, kPathWhat, u.ca, parsePath);
    if (name_ok) {
      if (slr_name_ok && u.name == c.slr.name) {
        ctx.expected(s.path("name"), "a name other than slr.name", quote(u.name));
      }
      requireUniqueName(ctx, s.path("name"), "upstream", c.upstreams, u.name);
    }
    c.upstreams.push_back(std::move(u));
  }

  // [[vip]]: names unique, subnets disjoint.
  bool all_vip_subnets_ok = true;
  for (auto& el : tableArray(root, "vip")) {
    Section s(ctx, el.table, el.path, {"name", "subnet", "class"});
    if (el.table == nullptr) all_vip_subnets_ok = false;
    VipConfig v;
    bool name_ok = read(s, "name", Need::kRequired, kNameWhat, v.name, parseName);
    bool subnet_ok = read(s, "subnet", Need::kRequired, kPrefixWhat, v.subnet, parsePrefix);
    read(s, "class", Need::kOptional, kNameWhat, v.cls, parseName);
    if (!subnet_ok) all_vip_subnets_ok = false;
    for (size_t j = 0; j < c.vips.size(); ++j) {
      const auto& prev = c.vips[j];
      std::string prev_path = element("vip", j);
      if (name_ok && prev.name == v.name) {
        ctx.expected(s.path("name"), "a name not used by " + prev_path, quote(v.name));
      }
      if (subnet_ok && !prev.subnet.addr.empty() && overlaps(prev.subnet, v.subnet)) {
        ctx.expected(s.path("subnet"),
                     "a prefix not overlapping " + prev_path + ".subnet " + quote(prev.subnet.str()),
                     quote(v.subnet.str()));
      }
    }
    c.vips.push_back(std::move(v));  // kept even if broken so indexes match paths
  }

  // [[host]]: names unique, every subnet inside some VIP subnet.
  bool all_host_names_ok = true;
  for (auto& el : tableArray(root, "host")) {
    Section s(ctx, el.table, el.path,
              {"name", "subnets", "weight", "route_cost", "standby", "drained"});
    HostAuthConfig h;
    bool name_ok = read(s, "name", Need::kRequired, kNameWhat, h.name, parseName);
    if (!name_ok) all_host_names_ok = false;
    if (name_ok) {
      requireUniqueName(ctx, s.path("name"), "host", c.hosts, h.name);
    }
    if (s.present()) {
      const toml::node* n = s.at("subnets");
      constexpr std::string_view what = "a non-empty array of prefixes";
      if (n == nullptr) {
        ctx.expected(s.path("subnets"), what, "nothing");
      } else if (const auto* arr = n->as_array(); arr == nullptr || arr->empty()) {
        ctx.expected(s.path("subnets"), what, repr(*n));
      } else {
        for (size_t i = 0; i < arr->size(); ++i) {
          const toml::node& e = (*arr)[i];
          std::string path = element(s.path("subnets"), i);
          std::string w(kPrefixWhat);
          auto p = parsePrefix(e, w);
          if (!p) {
            ctx.expected(path, w, repr(e));
            continue;
          }
          // Only judge containment against a complete VIP list, else one
          // broken [[vip]] would also flag every host subnet inside it.
          if (all_vip_subnets_ok && !c.vips.empty() &&
              std::none_of(c.vips.begin(), c.vips.end(),
                           [&](const VipConfig& v) { return v.subnet.contains(*p); })) {
            ctx.expected(path, "a prefix inside a [[vip]] subnet", quote(p->str()));
          }
          h.subnets.push_back(*p);
        }
      }
    }
    read(s, "weight", Need::kOptional, "an integer 1..1000", h.weight, intIn<uint32_t>(1, 1000));
    read(s, "route_cost", Need::kOptional, "a number 0..1e9", h.route_cost, numberIn(0, 1e9));
    read(s, "standby", Need::kOptional, kBoolWhat, h.standby, parseBool);
    read(s, "drained", Need::kOptional, kBoolWhat, h.drained, parseBool);
    c.hosts.push_back(std::move(h));
  }

  // [[region]]: names unique, client prefixes of different regions disjoint,
  // cost keys name [[host]] entries.
  std::vector<std::pair<Prefix, std::string>> clients_seen;  // valid prefixes and their paths
  std::vector<size_t> clients_region;                         // ... and their region's index
  for (auto& el : tableArray(root, "region", false, 256)) {
    Section s(ctx, el.table, el.path, {"name", "clients", "cost"});
    RegionConfig r;
    size_t index = c.regions.size();
    if (read(s, "name", Need::kRequired, kNameWhat, r.name, parseName)) {
      requireUniqueName(ctx, s.path("name"), "region", c.regions, r.name);
    }
    if (s.present()) {
      const toml::node* n = s.at("clients");
      constexpr std::string_view what = "a non-empty array of prefixes";
      if (n == nullptr) {
        ctx.expected(s.path("clients"), what, "nothing");
      } else if (const auto* arr = n->as_array(); arr == nullptr || arr->empty()) {
        ctx.expected(s.path("clients"), what, repr(*n));
      } else {
        for (size_t i = 0; i < arr->size(); ++i) {
          const toml::node& e = (*arr)[i];
          std::string path = element(s.path("clients"), i);
          std::string w(kPrefixWhat);
          auto p = parsePrefix(e, w);
          if (!p) {
            ctx.expected(path, w, repr(e));
            continue;
          }
          // A client in two regions would have two proximities.
          for (size_t k = 0; k < clients_seen.size(); ++k) {
            const auto& [q, qpath] = clients_seen[k];
            if (clients_region[k] != index && overlaps(*p, q)) {
              ctx.expected(path, "a prefix not overlapping " + qpath + " " + quote(q.str()),
                           quote(p->str()));
              break;
            }
          }
          clients_seen.emplace_back(*p, path);
          clients_region.push_back(index);
          r.clients.push_back(*p);
        }
      }
    }
    if (const toml::node* n = s.at("cost"); n != nullptr) {
      const auto* tbl = n->as_table();
      if (tbl == nullptr) {
        ctx.expected(s.path("cost"), "a table of [[host]] names to numbers 0..1e9", repr(*n));
      } else {
        // Document order (toml::table iterates sorted).
        std::vector<std::pair<toml::source_position, std::string_view>> keys;
        for (auto&& [k, v] : *tbl) {
          (void)v;
          keys.emplace_back(k.source().begin, k.str());
        }
        std::sort(keys.begin(), keys.end(), [](const auto& a, const auto& b) {
          return std::pair(a.first.line, a.first.column) < std::pair(b.first.line, b.first.column);
        });
        for (const auto& [pos, k] : keys) {
          std::string path = child(s.path("cost"), keyText(k));
          bool known = std::any_of(c.hosts.begin(), c.hosts.end(),
                                   [&](const HostAuthConfig& h) { return h.name == k; });
          // Only judge names against a complete [[host]] list.
          if (!known && all_host_names_ok && !c.hosts.empty()) {
            ctx.expected(path, "the name of a [[host]]", quote(k));
          }
          const toml::node& v = *tbl->get(k);
          std::string w = "a number 0..1e9";
          auto d = numberIn(0, 1e9)(v, w);
          if (!d) {
            ctx.expected(path, w, repr(v));
            continue;
          }
          r.cost.emplace_back(std::string(k), *d);
        }
      }
    }
    c.regions.push_back(std::move(r));
  }

  readHotSpare(root, c, slr_name_ok);
  readNeighbors(root, c, slr_name_ok);

  {
    Section s(ctx, subTable(root, "whohas", Need::kOptional, "[whohas]"), "whohas", {"wait", "scope"});
    read(s, "wait", Need::kOptional, kDurationWhat, c.whohas.wait,
         durationIn(Duration(1), Duration(10 * 1000)));
    read(s, "scope", Need::kOptional, "an integer 1..8", c.whohas.scope, intIn<uint8_t>(1, 8));
  }
}

// --------------------------------------------------------------- host ----

// An HTTP request path: starts with '/', printable ASCII without spaces (it
// goes into the request line as is).
std::optional<std::string> parseHttpPath(const toml::node& n, std::string&) {
  auto s = asString(n);
  if (!s || s->empty() || s->front() != '/' || s->size() > 1024) return std::nullopt;
  for (char c : *s)
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f) return std::nullopt;
  return std::string(*s);
}

// A Host header value: 1..255 printable ASCII characters without spaces.
std::optional<std::string> parseHostHeader(const toml::node& n, std::string&) {
  auto s = asString(n);
  if (!s || s->empty() || s->size() > 255) return std::nullopt;
  for (char c : *s)
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f) return std::nullopt;
  return std::string(*s);
}

// [[check]]: health checks.  Keys that do not apply to the check's type are
// errors (an "address" on a command check is a mistake, not a no-op).
void readChecks(Section& root, HostConfig& c) {
  Ctx& ctx = root.ctx();
  for (auto& el : tableArray(root, "check", false, 64)) {
    Section s(ctx, el.table, el.path,
              {"name", "type", "address", "path", "expect_status", "host_header", "command", "interval",
               "timeout", "rise", "fall", "subnets"});
    HealthCheckConfig k;
    if (read(s, "name", Need::kRequired, kNameWhat, k.name, parseName)) {
      requireUniqueName(ctx, s.path("name"), "check", c.checks, k.name);
    }
    bool type_ok = read(s, "type", Need::kRequired, enumWhat(kCheckTypeNames), k.type, enumIn(kCheckTypeNames));
    if (type_ok) {
      std::string tn(checkTypeName(k.type));
      bool net = k.type == CheckType::kTcp || k.type == CheckType::kHttp;
      bool http = k.type == CheckType::kHttp;
      bool cmd = k.type == CheckType::kCommand;
      // A key the type has no use for.
      auto notFor = [&](std::string_view key, std::string_view who) {
        if (const toml::node* n = s.at(key))
          ctx.expected(s.path(key), "no " + std::string(key) + " on a \"" + tn + "\" check (" + std::string(who) + ")",
                       repr(*n));
      };
      if (net) {
        read(s, "address", Need::kRequired,
             std::string(kEndpointWhat) + " (check.type is \"" + tn + "\")", k.address, parseEndpoint);
      } else {
        notFor("address", "only tcp and http checks connect");
      }
      if (http) {
        read(s, "path", Need::kOptional, "an HTTP path starting with '/', without spaces or control characters",
             k.path, parseHttpPath);
        read(s, "expect_status", Need::kOptional, "an integer 100..599", k.expect_status,
             intIn<uint32_t>(100, 599));
        read(s, "host_header", Need::kOptional, "a Host header of 1..255 characters without spaces",
             k.host_header, parseHostHeader);
      } else {
        notFor("path", "only http checks have one");
        notFor("expect_status", "only http checks have one");
        notFor("host_header", "only http checks have one");
      }
      if (cmd) {
        read(s, "command", Need::kRequired, "a non-empty command (check.type is \"command\")", k.command,
             parsePath);
      } else {
        notFor("command", "only command checks run one");
      }
    }
    bool interval_ok = true, timeout_ok = true;
    if (s.at("interval"))
      interval_ok = read(s, "interval", Need::kOptional, kDurationWhat, k.interval,
                         durationIn(Duration(10), Duration(3600 * 1000)));
    if (s.at("timeout"))
      timeout_ok = read(s, "timeout", Need::kOptional, kDurationWhat, k.timeout,
                        durationIn(Duration(1), Duration(3600 * 1000)));
    if (interval_ok && timeout_ok) requireOrder(s, "timeout", k.timeout, "interval", k.interval, Order::kAtMost);
    read(s, "rise", Need::kOptional, "an integer 1..100", k.rise, intIn<uint32_t>(1, 100));
    read(s, "fall", Need::kOptional, "an integer 1..100", k.fall, intIn<uint32_t>(1, 100));
    if (const toml::node* n = s.at("subnets"); n != nullptr) {
      const auto* arr = n->as_array();
      if (arr == nullptr) {
        ctx.expected(s.path("subnets"), "an array of [[subnet]] prefixes", repr(*n));
      } else {
        for (size_t i = 0; i < arr->size(); ++i) {
          const toml::node& e = (*arr)[i];
          std::string path = element(s.path("subnets"), i);
          std::string w(kPrefixWhat);
          auto p = parsePrefix(e, w);
          if (!p) {
            ctx.expected(path, w, repr(e));
          } else if (std::find(c.subnets.begin(), c.subnets.end(), *p) == c.subnets.end()) {
            ctx.expected(path, "the prefix of a [[subnet]]", quote(p->str()));
          } else if (std::find(k.subnets.begin(), k.subnets.end(), *p) != k.subnets.end()) {
            ctx.expected(path, "a prefix not listed twice", quote(p->str()));
          } else {
            k.subnets.push_back(*p);
          }
        }
      }
    }
    c.checks.push_back(std::move(k));
  }
}

void readHost(Ctx& ctx, const toml::table& doc, HostConfig& c) {
  Section root(ctx, &doc, "", {"host", "tls", "slr", "subnet", "load", "check", "recovery"});

  {
    Section s(ctx, subTable(root, "host", Need::kRequired, "[host]"), "host",
              {"name", "tunnel_address", "status_socket", "tunnel_mode", "tun_name",
               "update_interval", "decap_interfaces", "shortcut_sources", "log_level"});
    auto& o = c.host;
    read(s, "name", Need::kRequired, kNameWhat, o.name, parseName);
    read(s, "tunnel_address", Need::kRequired, kIpv4What, o.tunnel_address, parseIpv4);
    read(s, "status_socket", Need::kOptional, kSocketWhat, o.status_socket, parseSocketPath);
    read(s, "tunnel_mode", Need::kOptional, enumWhat(kTunnelModeNames), o.tunnel_mode,
         enumIn(kTunnelModeNames));
    read(s, "tun_name", Need::kOptional, kIfNameWhat, o.tun_name, parseIfName);
    read(s, "update_interval", Need::kOptional, kDurationWhat, o.update_interval,
         parseDurationNode);
    read(s, "log_level", Need::kOptional, kLogLevelWhat, o.log_level, parseLogLevel);
    readIfNameList(ctx, s, "decap_interfaces", o.decap_interfaces);
    readIpv4List(ctx, s, "shortcut_sources", o.shortcut_sources);
  }

  readTls(root, c.tls);

  std::vector<bool> slr_address_ok;
  for (auto& el : tableArray(root, "slr")) {
    Section s(ctx, el.table, el.path, {"address", "name", "tunnel_source"});
    SlrPeerConfig p;
    bool addr_ok = read(s, "address", Need::kRequired, kEndpointWhat, p.address, parseEndpoint);
    read(s, "name", Need::kRequired, kNameWhat, p.name, parseName);
    if (!read(s, "tunnel_source", Need::kOptional, kIpv4What, p.tunnel_source, parseIpv4) &&
        addr_ok) {
      p.tunnel_source = p.address.addr;
    }
    if (addr_ok) requireUniqueAddress(ctx, s.path("address"), "slr", c.slrs, slr_address_ok, p.address);
    slr_address_ok.push_back(addr_ok);
    c.slrs.push_back(std::move(p));
  }

  std::vector<std::pair<Prefix, std::string>> seen;  // valid prefixes and their paths
  for (auto& el : tableArray(root, "subnet")) {
    Section s(ctx, el.table, el.path, {"prefix", "load_scale"});
    Prefix p;
    double scale = 1.0;
    read(s, "load_scale", Need::kOptional, "a number 0..1000", scale, numberIn(0, 1000));
    if (!read(s, "prefix", Need::kRequired, kPrefixWhat, p, parsePrefix)) continue;
    // Overlapping advertisements would make the SLR's choice ambiguous.
    for (const auto& [q, qpath] : seen) {
      if (overlaps(p, q)) {
        ctx.expected(s.path("prefix"), "a prefix not overlapping " + qpath + " " + quote(q.str()),
                     quote(p.str()));
        break;
      }
    }
    seen.emplace_back(p, s.path("prefix"));
    c.subnets.push_back(p);
    c.subnet_load_scale.push_back(scale);  // parallel to subnets
  }

  {
    Section s(ctx, subTable(root, "load", Need::kOptional, "[load]"), "load",
              {"source", "max_connections", "file", "command"});
    auto& o = c.load;
    bool source_ok = read(s, "source", Need::kOptional, enumWhat(kLoadSourceNames), o.source,
                          enumIn(kLoadSourceNames));
    read(s, "max_connections", Need::kOptional, "an integer 1..4294967295", o.max_connections,
         intIn<uint32_t>(1, std::numeric_limits<uint32_t>::max()));
    bool need_file = source_ok && o.source == LoadSource::kFile;
    bool need_command = source_ok && o.source == LoadSource::kCommand;
    read(s, "file", need_file ? Need::kRequired : Need::kOptional,
         need_file ? "a non-empty file path (load.source is \"file\")" : kPathWhat, o.file,
         parsePath);
    read(s, "command", need_command ? Need::kRequired : Need::kOptional,
         need_command ? "a non-empty command (load.source is \"command\")" : "a non-empty command",
         o.command, parsePath);
  }

  readChecks(root, c);

  {
    Section s(ctx, subTable(root, "recovery", Need::kOptional, "[recovery]"), "recovery",
              {"enabled", "stall_after", "give_up", "interval", "max_echoes"});
    auto& o = c.recovery;
    read(s, "enabled", Need::kOptional, kBoolWhat, o.enabled, parseBool);
    bool stall_ok = true, give_up_ok = true;
    if (s.at("stall_after"))
      stall_ok = read(s, "stall_after", Need::kOptional, kDurationWhat, o.stall_after,
                      durationIn(Duration(10), Duration(3600 * 1000)));
    if (s.at("give_up"))
      give_up_ok = read(s, "give_up", Need::kOptional, kDurationWhat, o.give_up,
                        durationIn(Duration(1), Duration(24 * 3600 * 1000)));
    if (stall_ok && give_up_ok) requireOrder(s, "give_up", o.give_up, "stall_after", o.stall_after);
    read(s, "interval", Need::kOptional, kDurationWhat, o.interval,
         durationIn(Duration(10), Duration(3600 * 1000)));
    read(s, "max_echoes", Need::kOptional, "an integer 1..1000", o.max_echoes, intIn<uint32_t>(1, 1000));
  }
}

template <typename Config, typename Reader>
Result<Config> load(std::string_view text, std::string_view source, Role role, Reader reader,
                    bool from_file) {
  Ctx ctx(source);
  ctx.setFromFile(from_file);
  auto doc = parseToml(ctx, text);
  if (!doc) return ctx.toError();
  if (wrongRole(ctx, *doc, role)) return ctx.toError();
  Config c;
  reader(ctx, *doc, c);
  if (ctx.failed()) return ctx.toError();
  c.source_path = std::string(source);
  return c;
}

}  // namespace

// ------------------------------------------------------------ loaders ----

Result<SlrConfig> loadSlrConfigFromString(std::string_view toml, std::string_view source_name) {
  return load<SlrConfig>(toml, source_name, Role::kSlr, readSlr, false);
}

Result<HostConfig> loadHostConfigFromString(std::string_view toml, std::string_view source_name) {
  return load<HostConfig>(toml, source_name, Role::kHost, readHost, false);
}

Result<SlrConfig> loadSlrConfig(const std::string& path) {
  std::string text;
  Error err;
  if (!readFile(path, text, err)) return err;
  return load<SlrConfig>(text, path, Role::kSlr, readSlr, true);
}

Result<HostConfig> loadHostConfig(const std::string& path) {
  std::string text;
  Error err;
  if (!readFile(path, text, err)) return err;
  return load<HostConfig>(text, path, Role::kHost, readHost, true);
}

Result<Role> detectRoleFromString(std::string_view toml, std::string_view source_name) {
  Ctx ctx(source_name);
  auto doc = parseToml(ctx, toml);
  if (!doc) return ctx.toError();
  bool slr = isTable(*doc, "slr");
  bool host = isTable(*doc, "host");
  if (slr && !host) return Role::kSlr;
  if (host && !slr) return Role::kHost;
  ctx.expected("", "either a [slr] or a [host] table", slr ? "both" : "neither");
  return ctx.toError();
}

Result<Role> detectRole(const std::string& path) {
  std::string text;
  Error err;
  if (!readFile(path, text, err)) return err;
  return detectRoleFromString(text, path);
}

}  // namespace slr::config
