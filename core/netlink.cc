// <net/if.h> before any <linux/if*.h> so glibc and uapi agree on IFF_*.
#include <net/if.h>

#include "core/netlink.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/if_link.h>
#include <linux/if_tunnel.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <optional>

#include "core/log.h"

namespace slr::nl {
namespace {

constexpr const char* kLog = "netlink";
// Large enough for a dump chunk (the kernel sizes them to the reader's buffer,
// up to 32 KiB) without MSG_TRUNC.
constexpr size_t kRecvBuf = 64 * 1024;

int afOf(Family f) { return f == Family::kV6 ? AF_INET6 : AF_INET; }
size_t addrLen(Family f) { return f == Family::kV6 ? 16 : 4; }
Family familyOf(int af) {
  if (af == AF_INET) return Family::kV4;
  if (af == AF_INET6) return Family::kV6;
  return Family::kNone;
}

IpAddress addrFrom(Family f, const void* p, size_t len) {
  IpAddress a;
  if (len < addrLen(f) || f == Family::kNone) return a;
  a.family = f;
  std::memcpy(a.bytes.data(), p, addrLen(f));
  return a;
}

IpAddress addrAttr(Family f, const nlattr* at) {
  if (at == nullptr) return {};
  return addrFrom(f, mnl_attr_get_payload(at), mnl_attr_get_payload_len(at));
}

void putAddr(nlmsghdr* nlh, uint16_t type, const IpAddress& a) {
  mnl_attr_put(nlh, type, addrLen(a.family), a.bytes.data());
}

// Collects attributes of one level into tb[0..max] (last one wins).
struct AttrTable {
  explicit AttrTable(int max) : tb(size_t(max) + 1, nullptr), max(max) {}
  std::vector<const nlattr*> tb;
  int max;
  const nlattr* operator[](int i) const { return i <= max ? tb[size_t(i)] : nullptr; }
};

int collectAttr(const nlattr* attr, void* data) {
  auto* t = static_cast<AttrTable*>(data);
  int type = mnl_attr_get_type(attr);
  if (type >= 0 && type <= t->max) t->tb[size_t(type)] = attr;
  return MNL_CB_OK;
}

AttrTable parseAttrs(const nlmsghdr* nlh, size_t hdrlen, int max) {
  AttrTable t(max);
  mnl_attr_parse(nlh, unsigned(hdrlen), collectAttr, &t);
  return t;
}

AttrTable parseNested(const nlattr* nest, int max) {
  AttrTable t(max);
  if (nest != nullptr) mnl_attr_parse_nested(nest, collectAttr, &t);
  return t;
}

std::string ifName(int ifindex) {
  char buf[IF_NAMESIZE] = {0};
  if (ifindex > 0 && if_indextoname(unsigned(ifindex), buf) != nullptr) return buf;
  return "#" + std::to_string(ifindex);
}

std::string tableName(uint32_t t) {
  switch (t) {
    case RT_TABLE_MAIN: return "main";
    case RT_TABLE_LOCAL: return "local";
    case RT_TABLE_DEFAULT: return "default";
    default: return std::to_string(t);
  }
}

std::string routeTypeName(uint8_t t) {
  switch (t) {
    case RTN_UNICAST: return "unicast";
    case RTN_LOCAL: return "local";
    case RTN_BROADCAST: return "broadcast";
    case RTN_ANYCAST: return "anycast";
    case RTN_MULTICAST: return "multicast";
    case RTN_BLACKHOLE: return "blackhole";
    case RTN_UNREACHABLE: return "unreachable";
    case RTN_PROHIBIT: return "prohibit";
    case RTN_THROW: return "throw";
    default: return "type" + std::to_string(t);
  }
}

// Extended ACK: the text and the offending attribute offset, if any.
// `sent` is the message the error is about: the offset points into it.
std::string extAckText(const nlmsghdr* nlh, size_t hlen, const Message& sent) {
  if ((nlh->nlmsg_flags & NLM_F_ACK_TLVS) == 0) return {};
  AttrTable tb = parseAttrs(nlh, hlen, NLMSGERR_ATTR_MAX);
  std::string text;
  if (const nlattr* m = tb[NLMSGERR_ATTR_MSG]) {
    const char* s = static_cast<const char*>(mnl_attr_get_payload(m));
    text.assign(s, strnlen(s, mnl_attr_get_payload_len(m)));
  }
  if (text.empty()) {
    if (const nlattr* o = tb[NLMSGERR_ATTR_OFFS]) {
      uint32_t off = mnl_attr_get_u32(o);
      text = "kernel rejected the attribute at offset " + std::to_string(off);
      if (off + sizeof(nlattr) <= sent.buf.size()) {
        nlattr at;
        std::memcpy(&at, sent.buf.data() + off, sizeof at);
        text += " (type " + std::to_string(at.nla_type & NLA_TYPE_MASK) + ")";
      }
    }
  }
  return text;
}

}  // namespace

// ------------------------------------------------------------- messages ---

MessageBuilder::MessageBuilder(uint16_t type, uint16_t flags, std::string what, size_t capacity)
    : buf_(capacity, 0), what_(std::move(what)) {
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf_.data());
  nlh->nlmsg_type = type;
  nlh->nlmsg_flags = uint16_t(flags | NLM_F_REQUEST);
}

Message MessageBuilder::finish() && {
  buf_.resize(hdr()->nlmsg_len);
  Message m;
  // NLM_F_DUMP is two bits (ROOT|MATCH); MATCH alone is NLM_F_EXCL on NEW*.
  m.dump = (hdr()->nlmsg_flags & NLM_F_DUMP) == NLM_F_DUMP;
  m.buf = std::move(buf_);
  m.what = std::move(what_);
  return m;
}

std::string dumpMessage(const nlmsghdr* nlh) {
  // Header fields, then the payload as hex + ASCII, 16 bytes a row (like
  // `nlmon` + tcpdump -X); no colours, so it reads fine in journald.
  char line[160];
  std::snprintf(line, sizeof line, "nlmsg len=%u type=%u flags=0x%x seq=%u pid=%u\n", nlh->nlmsg_len,
                nlh->nlmsg_type, nlh->nlmsg_flags, nlh->nlmsg_seq, nlh->nlmsg_pid);
  std::string out = line;
  const auto* p = static_cast<const uint8_t*>(mnl_nlmsg_get_payload(nlh));
  size_t len = nlh->nlmsg_len >= NLMSG_HDRLEN ? nlh->nlmsg_len - NLMSG_HDRLEN : 0;
  for (size_t off = 0; off < len; off += 16) {
    int w = std::snprintf(line, sizeof line, "  %04zx:", off);
    std::string ascii;
    for (size_t i = off; i < off + 16; ++i) {
      if (i < len) {
        w += std::snprintf(line + w, sizeof line - size_t(w), " %02x", p[i]);
        ascii += (p[i] >= 0x20 && p[i] < 0x7f) ? char(p[i]) : '.';
      } else {
        w += std::snprintf(line + w, sizeof line - size_t(w), "   ");
      }
    }
    out += line;
    out += "  " + ascii + "\n";
  }
  return out;
}

// --------------------------------------------------------------- socket ---

Result<Socket> Socket::open(int bus) {
  mnl_socket* s = mnl_socket_open2(bus, SOCK_CLOEXEC);
  if (s == nullptr) return sysError("netlink socket(bus " + std::to_string(bus) + ")");
  Socket sock(s, bus);
  if (mnl_socket_bind(s, 0, MNL_SOCKET_AUTOPID) < 0) return sysError("netlink bind");
  int one = 1;
  // Best effort: old kernels lack these; errors still work without the text.
  (void)mnl_socket_setsockopt(s, NETLINK_EXT_ACK, &one, sizeof one);
  (void)mnl_socket_setsockopt(s, NETLINK_CAP_ACK, &one, sizeof one);
  timeval tv{5, 0};  // a missing ack must surface as an error, not a hang
  if (setsockopt(mnl_socket_get_fd(s), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0) {
    return sysError("netlink SO_RCVTIMEO");
  }
  int rcvbuf = 1 << 20;
  (void)setsockopt(mnl_socket_get_fd(s), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  sock.next_seq_ = uint32_t(time(nullptr));
  return sock;
}

Socket::Socket(Socket&& o) noexcept
    : sock_(std::exchange(o.sock_, nullptr)), bus_(o.bus_), next_seq_(o.next_seq_) {}

Socket& Socket::operator=(Socket&& o) noexcept {
  if (this != &o) {
    if (sock_ != nullptr) mnl_socket_close(sock_);
    sock_ = std::exchange(o.sock_, nullptr);
    bus_ = o.bus_;
    next_seq_ = o.next_seq_;
  }
  return *this;
}

Socket::~Socket() {
  if (sock_ != nullptr) mnl_socket_close(sock_);
}

uint32_t Socket::portId() const { return sock_ ? mnl_socket_get_portid(sock_) : 0; }

Status Socket::transact(Message msg, const ReplyFn& on_reply) {
  Batch b;
  b.messages.push_back(std::move(msg));
  return transact(b, on_reply);
}

Status Socket::transact(Batch& batch, const ReplyFn& on_reply) {
  if (batch.empty()) return Ok{};
  if (sock_ == nullptr) return Error{EBADF, "netlink transact on a closed socket", {}};
  const size_t n = batch.size();
  const uint32_t base = next_seq_;
  next_seq_ += uint32_t(n);

  // What each message waits for: an ack, the end of a dump, or nothing.
  enum class Wait : uint8_t { kNothing, kAck, kDone };
  std::vector<Wait> wait(n, Wait::kNothing);
  size_t pending = 0;
  std::vector<uint8_t> out;
  for (size_t i = 0; i < n; ++i) {
    Message& m = batch.messages[i];
    nlmsghdr* nlh = m.hdr();
    nlh->nlmsg_seq = base + uint32_t(i);
    nlh->nlmsg_pid = 0;
    if (m.dump) {
      wait[i] = Wait::kDone;
    } else if (m.ack) {
      nlh->nlmsg_flags |= NLM_F_ACK;
      wait[i] = Wait::kAck;
    }
    if (wait[i] != Wait::kNothing) ++pending;
    if (log::enabled(log::Level::kTrace)) {
      std::string d = dumpMessage(nlh);
      d.pop_back();  // the log adds its own newline
      LOG_TRACE(kLog, "send " + m.what + "\n" + d);
    }
    out.insert(out.end(), m.buf.begin(), m.buf.end());
  }

  ssize_t sent = mnl_socket_sendto(sock_, out.data(), out.size());
  if (sent < 0) {
    return sysError(n == 1 ? batch.messages[0].what : "netlink send of " + std::to_string(n) + " messages");
  }

  std::optional<Error> first;
  size_t extra_errors = 0;
  auto fail = [&](size_t idx, int code, std::string detail) {
    Error e{code, batch.messages[idx].what, std::move(detail)};
    if (!first) {
      first = std::move(e);
    } else {
      ++extra_errors;
      LOG_DEBUG(kLog, "also failed: " + e.message());
    }
  };
  auto complete = [&](size_t idx) {
    if (wait[idx] != Wait::kNothing) {
      wait[idx] = Wait::kNothing;
      --pending;
    }
  };

  std::vector<uint8_t> rbuf(kRecvBuf);
  const uint32_t portid = portId();
  while (pending > 0) {
    ssize_t len = mnl_socket_recvfrom(sock_, rbuf.data(), rbuf.size());
    if (len < 0) {
      int code = errno;
      // Name the first message still waiting: that is what we did not hear about.
      size_t idx = 0;
      while (idx < n && wait[idx] == Wait::kNothing) ++idx;
      std::string what = idx < n ? batch.messages[idx].what : "netlink receive";
      if (code == EAGAIN || code == EWOULDBLOCK) {
        return Error{ETIMEDOUT, what, "no reply from the kernel"};
      }
      return sysError(what + " (receive)", code);
    }
    const nlmsghdr* nlh = reinterpret_cast<const nlmsghdr*>(rbuf.data());
    int left = int(len);
    for (; mnl_nlmsg_ok(nlh, left); nlh = mnl_nlmsg_next(nlh, &left)) {
      if (nlh->nlmsg_pid != portid && nlh->nlmsg_pid != 0) continue;
      uint32_t rel = nlh->nlmsg_seq - base;
      if (rel >= n) {
        LOG_DEBUG(kLog, "dropping stale reply seq " + std::to_string(nlh->nlmsg_seq));
        continue;
      }
      size_t idx = rel;
      if (log::enabled(log::Level::kTrace)) {
        std::string d = dumpMessage(nlh);
        d.pop_back();
        LOG_TRACE(kLog, "recv for " + batch.messages[idx].what + "\n" + d);
      }
      if (nlh->nlmsg_type == NLMSG_ERROR) {
        if (mnl_nlmsg_get_payload_len(nlh) < sizeof(nlmsgerr)) {
          fail(idx, EBADMSG, "truncated error message");
          complete(idx);
          continue;
        }
        auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
        if (err->error != 0) {
          size_t hlen = sizeof(nlmsgerr);
          if ((nlh->nlmsg_flags & NLM_F_CAPPED) == 0) hlen += mnl_nlmsg_get_payload_len(&err->msg);
          fail(idx, -err->error, extAckText(nlh, hlen, batch.messages[idx]));
          if (wait[idx] == Wait::kNothing) {
            // An error on a message that is never acked (a batch header):
            // the kernel drops the rest, so nothing else will come.
            for (size_t j = 0; j < n; ++j) complete(j);
          }
        }
        complete(idx);
      } else if (nlh->nlmsg_type == NLMSG_DONE) {
        if (mnl_nlmsg_get_payload_len(nlh) >= sizeof(int)) {
          int code = *static_cast<const int*>(mnl_nlmsg_get_payload(nlh));
          if (code < 0) fail(idx, -code, extAckText(nlh, sizeof(int), batch.messages[idx]));
        }
        complete(idx);
      } else if (nlh->nlmsg_type == NLMSG_NOOP) {
        continue;
      } else if (nlh->nlmsg_type == NLMSG_OVERRUN) {
        fail(idx, ENOBUFS, "netlink overrun");
        for (size_t j = 0; j < n; ++j) complete(j);
      } else if (on_reply) {
        Status s = on_reply(idx, nlh);
        if (!s.ok()) {
          // Keep draining (a dump must be read to its end), report the first.
          Error e = s.error();
          if (e.op.empty()) e.op = batch.messages[idx].what;
          if (!first) first = std::move(e);
        }
      }
    }
  }
  if (first) {
    if (extra_errors > 0) {
      std::string more = "+" + std::to_string(extra_errors) + " more error(s) in the batch";
      first->detail = first->detail.empty() ? more : first->detail + "; " + more;
    }
    return std::move(*first);
  }
  return Ok{};
}

namespace {

Result<Socket> openRoute() { return Socket::open(NETLINK_ROUTE); }

Status roundTrip(Message m, const ReplyFn& fn = {}) {
  auto s = openRoute();
  if (!s) return s.error();
  return s->transact(std::move(m), fn);
}

}  // namespace

// --------------------------------------------------------------- routes ---

namespace {

uint8_t autoScope(uint16_t rtm_type, const RouteSpec& r) {
  if (r.scope != kScopeAuto) return r.scope;
  if (rtm_type == RTM_DELROUTE) return RT_SCOPE_NOWHERE;
  switch (r.type) {
    case RTN_LOCAL:
    case RTN_NAT: return RT_SCOPE_HOST;
    case RTN_BROADCAST:
    case RTN_MULTICAST:
    case RTN_ANYCAST: return RT_SCOPE_LINK;
    case RTN_UNICAST:
    case RTN_UNSPEC: return r.gateway.empty() ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE;
    default: return RT_SCOPE_UNIVERSE;
  }
}

std::string routeWhat(uint16_t rtm_type, const RouteSpec& r) {
  std::string s = rtm_type == RTM_DELROUTE ? "RTM_DELROUTE " : "RTM_NEWROUTE ";
  if (r.replace && rtm_type != RTM_DELROUTE) s += "(replace) ";
  return s + r.str();
}

RouteInfo parseRoute(const nlmsghdr* nlh) {
  auto* rtm = static_cast<const rtmsg*>(mnl_nlmsg_get_payload(nlh));
  AttrTable tb = parseAttrs(nlh, sizeof(rtmsg), RTA_MAX);
  RouteInfo ri;
  ri.family = familyOf(rtm->rtm_family);
  ri.type = rtm->rtm_type;
  ri.scope = rtm->rtm_scope;
  ri.protocol = rtm->rtm_protocol;
  ri.table = tb[RTA_TABLE] ? mnl_attr_get_u32(tb[RTA_TABLE]) : rtm->rtm_table;
  ri.dst.len = rtm->rtm_dst_len;
  if (tb[RTA_DST]) {
    ri.dst.addr = addrAttr(ri.family, tb[RTA_DST]);
  } else {
    ri.dst.addr.family = ri.family;  // default route: all-zero address
  }
  if (tb[RTA_OIF]) ri.ifindex = int(mnl_attr_get_u32(tb[RTA_OIF]));
  ri.gateway = addrAttr(ri.family, tb[RTA_GATEWAY]);
  ri.prefsrc = addrAttr(ri.family, tb[RTA_PREFSRC]);
  if (tb[RTA_PRIORITY]) ri.metric = mnl_attr_get_u32(tb[RTA_PRIORITY]);
  if (ri.ifindex == 0 && tb[RTA_MULTIPATH]) {
    // First nexthop of a multipath route.
    auto* nh = static_cast<const rtnexthop*>(mnl_attr_get_payload(tb[RTA_MULTIPATH]));
    if (mnl_attr_get_payload_len(tb[RTA_MULTIPATH]) >= sizeof(rtnexthop)) ri.ifindex = nh->rtnh_ifindex;
  }
  return ri;
}

}  // namespace

std::string RouteSpec::str() const {
  std::string s;
  if (type != RTN_UNICAST) s += routeTypeName(type) + " ";
  s += dst.str();
  if (!gateway.empty()) s += " via " + gateway.str();
  if (ifindex != 0) s += " dev " + ifName(ifindex);
  if (table != RT_TABLE_MAIN) s += " table " + tableName(table);
  if (metric != 0) s += " metric " + std::to_string(metric);
  if (!prefsrc.empty()) s += " src " + prefsrc.str();
  return s;
}

std::string RouteInfo::str() const {
  std::string s;
  if (type != RTN_UNICAST) s += routeTypeName(type) + " ";
  s += dst.len == 0 ? std::string("default") : dst.str();
  if (!gateway.empty()) s += " via " + gateway.str();
  if (ifindex != 0) s += " dev " + ifName(ifindex);
  if (table != RT_TABLE_MAIN) s += " table " + tableName(table);
  if (!prefsrc.empty()) s += " src " + prefsrc.str();
  if (metric != 0) s += " metric " + std::to_string(metric);
  return s;
}

Message buildRoute(uint16_t rtm_type, const RouteSpec& r) {
  const bool del = rtm_type == RTM_DELROUTE;
  uint16_t flags = del ? 0 : uint16_t(NLM_F_CREATE | (r.replace ? NLM_F_REPLACE : NLM_F_EXCL));
  MessageBuilder b(rtm_type, flags, routeWhat(rtm_type, r), 1024);
  auto* rtm = static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(b.hdr(), sizeof(rtmsg)));
  rtm->rtm_family = uint8_t(afOf(r.dst.addr.family));
  rtm->rtm_dst_len = r.dst.len;
  rtm->rtm_table = r.table < 256 ? uint8_t(r.table) : uint8_t(RT_TABLE_UNSPEC);
  // On delete, protocol 0 matches whoever installed the route.
  rtm->rtm_protocol = del ? RTPROT_UNSPEC : r.protocol;
  rtm->rtm_type = r.type;
  rtm->rtm_scope = autoScope(rtm_type, r);
  if (r.dst.len > 0) putAddr(b.hdr(), RTA_DST, r.dst.addr);
  mnl_attr_put_u32(b.hdr(), RTA_TABLE, r.table);
  if (r.ifindex != 0) mnl_attr_put_u32(b.hdr(), RTA_OIF, uint32_t(r.ifindex));
  if (!r.gateway.empty()) putAddr(b.hdr(), RTA_GATEWAY, r.gateway);
  if (r.metric != 0) mnl_attr_put_u32(b.hdr(), RTA_PRIORITY, r.metric);
  if (!r.prefsrc.empty()) putAddr(b.hdr(), RTA_PREFSRC, r.prefsrc);
  return std::move(b).finish();
}

Status addRoute(const RouteSpec& r) {
  if (r.dst.addr.empty()) return Error{EINVAL, "RTM_NEWROUTE " + r.str(), "route without a destination family"};
  return roundTrip(buildRoute(RTM_NEWROUTE, r));
}

Status delRoute(const RouteSpec& r) {
  if (r.dst.addr.empty()) return Error{EINVAL, "RTM_DELROUTE " + r.str(), "route without a destination family"};
  return roundTrip(buildRoute(RTM_DELROUTE, r));
}

Result<std::vector<RouteInfo>> listRoutes(Family family, uint32_t table) {
  auto s = openRoute();
  if (!s) return s.error();
  std::vector<RouteInfo> out;
  std::vector<Family> fams;
  if (family == Family::kNone) fams = {Family::kV4, Family::kV6};
  else fams = {family};
  for (Family f : fams) {
    MessageBuilder b(RTM_GETROUTE, NLM_F_DUMP,
                     std::string("RTM_GETROUTE dump ") + (f == Family::kV6 ? "inet6" : "inet"), 256);
    auto* rtm = static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(b.hdr(), sizeof(rtmsg)));
    rtm->rtm_family = uint8_t(afOf(f));
    Status st = s->transact(std::move(b).finish(), [&](size_t, const nlmsghdr* nlh) -> Status {
      if (nlh->nlmsg_type != RTM_NEWROUTE) return Ok{};
      auto* r = static_cast<const rtmsg*>(mnl_nlmsg_get_payload(nlh));
      if (r->rtm_flags & RTM_F_CLONED) return Ok{};  // cache entries, not routes
      RouteInfo ri = parseRoute(nlh);
      if (table == 0 || ri.table == table) out.push_back(std::move(ri));
      return Ok{};
    });
    if (!st) return st.error();
  }
  return out;
}

namespace {

// The one RTM_GETROUTE for one destination.  rtm_flags 0: the route the
// kernel would use for a packet (interface, gateway, the source it would
// pick); RTM_F_FIB_MATCH: the FIB entry that matched (its prefix, table and
// RTA_PRIORITY), as `ip route get fibmatch`.
Result<RouteInfo> getRoute(const IpAddress& dst, const IpAddress& src, uint32_t rtm_flags) {
  std::string what = "RTM_GETROUTE";
  if (rtm_flags & RTM_F_FIB_MATCH) what += " fibmatch";
  if (dst.empty()) return Error{EINVAL, what, "no destination address"};
  what += " " + dst.str();
  if (!src.empty()) what += " from " + src.str();
  MessageBuilder b(RTM_GETROUTE, 0, what, 512);
  auto* rtm = static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(b.hdr(), sizeof(rtmsg)));
  rtm->rtm_family = uint8_t(afOf(dst.family));
  rtm->rtm_dst_len = uint8_t(addrLen(dst.family) * 8);
  rtm->rtm_flags = rtm_flags;
  putAddr(b.hdr(), RTA_DST, dst);
  if (!src.empty()) {
    rtm->rtm_src_len = uint8_t(addrLen(src.family) * 8);
    putAddr(b.hdr(), RTA_SRC, src);
  }
  std::optional<RouteInfo> got;
  Status st = roundTrip(std::move(b).finish(), [&](size_t, const nlmsghdr* nlh) -> Status {
    if (nlh->nlmsg_type == RTM_NEWROUTE && !got) got = parseRoute(nlh);
    return Ok{};
  });
  if (!st) return st.error();
  if (!got) return Error{ENOENT, what, "kernel sent no route"};
  return *got;
}

}  // namespace

Result<RouteInfo> routeGet(const IpAddress& dst, const IpAddress& src) { return getRoute(dst, src, 0); }

Result<RouteInfo> routeGetFibMatch(const IpAddress& dst) { return getRoute(dst, {}, RTM_F_FIB_MATCH); }

// ------------------------------------------------------------ addresses ---

std::string AddrInfo::str() const {
  return address.str() + "/" + std::to_string(prefix_len) + " dev " + ifName(ifindex);
}

namespace {

// What every RTM_NEWADDR/RTM_DELADDR carries: the ifaddrmsg header (universe
// scope) and the address as both IFA_LOCAL and IFA_ADDRESS.
void putAddressHeader(MessageBuilder& b, int ifindex, const IpAddress& address, uint8_t prefix_len) {
  auto* ifa = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(b.hdr(), sizeof(ifaddrmsg)));
  ifa->ifa_family = uint8_t(afOf(address.family));
  ifa->ifa_prefixlen = prefix_len;
  ifa->ifa_index = uint32_t(ifindex);
  ifa->ifa_scope = RT_SCOPE_UNIVERSE;
  putAddr(b.hdr(), IFA_LOCAL, address);
  putAddr(b.hdr(), IFA_ADDRESS, address);
}

}  // namespace

Message buildAddress(uint16_t rtm_type, int ifindex, const IpAddress& address, uint8_t prefix_len) {
  const bool del = rtm_type == RTM_DELADDR;
  std::string what = std::string(del ? "RTM_DELADDR " : "RTM_NEWADDR ") + address.str() + "/" +
                     std::to_string(prefix_len) + " dev " + ifName(ifindex);
  MessageBuilder b(rtm_type, del ? 0 : uint16_t(NLM_F_CREATE | NLM_F_EXCL), std::move(what), 512);
  putAddressHeader(b, ifindex, address, prefix_len);
  return std::move(b).finish();
}

Status addAddress(int ifindex, const IpAddress& address, uint8_t prefix_len) {
  if (address.empty()) return Error{EINVAL, "RTM_NEWADDR", "no address"};
  return roundTrip(buildAddress(RTM_NEWADDR, ifindex, address, prefix_len));
}
Status addAddress(int ifindex, const Prefix& p) { return addAddress(ifindex, p.addr, p.len); }

Status delAddress(int ifindex, const IpAddress& address, uint8_t prefix_len) {
  if (address.empty()) return Error{EINVAL, "RTM_DELADDR", "no address"};
  return roundTrip(buildAddress(RTM_DELADDR, ifindex, address, prefix_len));
}
Status delAddress(int ifindex, const Prefix& p) { return delAddress(ifindex, p.addr, p.len); }

Message buildAddressLease(int ifindex, const IpAddress& address, uint8_t prefix_len, uint32_t valid_s,
                          uint32_t preferred_s) {
  std::string what = "RTM_NEWADDR replace " + address.str() + "/" + std::to_string(prefix_len) +
                     " dev " + ifName(ifindex) + " valid_lft " +
                     (valid_s == kForever ? std::string("forever") : std::to_string(valid_s));
  MessageBuilder b(RTM_NEWADDR, uint16_t(NLM_F_CREATE | NLM_F_REPLACE), std::move(what), 512);
  putAddressHeader(b, ifindex, address, prefix_len);
  ifa_cacheinfo ci{};
  // The kernel refuses preferred > valid (EINVAL).
  ci.ifa_valid = valid_s;
  ci.ifa_prefered = std::min(preferred_s, valid_s);
  mnl_attr_put(b.hdr(), IFA_CACHEINFO, sizeof ci, &ci);
  return std::move(b).finish();
}

Status replaceAddress(int ifindex, const Prefix& p, uint32_t valid_s, uint32_t preferred_s) {
  if (p.addr.empty()) return Error{EINVAL, "RTM_NEWADDR", "no address"};
  if (valid_s == 0) return Error{EINVAL, "RTM_NEWADDR", "valid lifetime 0"};
  return roundTrip(buildAddressLease(ifindex, p.addr, p.len, valid_s, preferred_s));
}

Status delAddressIfPresent(int ifindex, const Prefix& p) {
  auto st = delAddress(ifindex, p);
  if (!st && st.error().code == EADDRNOTAVAIL) return Ok{};
  return st;
}

Result<std::vector<AddrInfo>> listAddresses(Family family) {
  MessageBuilder b(RTM_GETADDR, NLM_F_DUMP, "RTM_GETADDR dump", 256);
  auto* ifa = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(b.hdr(), sizeof(ifaddrmsg)));
  ifa->ifa_family = family == Family::kNone ? AF_UNSPEC : uint8_t(afOf(family));
  std::vector<AddrInfo> out;
  Status st = roundTrip(std::move(b).finish(), [&](size_t, const nlmsghdr* nlh) -> Status {
    if (nlh->nlmsg_type != RTM_NEWADDR) return Ok{};
    auto* m = static_cast<const ifaddrmsg*>(mnl_nlmsg_get_payload(nlh));
    Family f = familyOf(m->ifa_family);
    if (f == Family::kNone || (family != Family::kNone && f != family)) return Ok{};
    AttrTable tb = parseAttrs(nlh, sizeof(ifaddrmsg), IFA_MAX);
    AddrInfo ai;
    ai.ifindex = int(m->ifa_index);
    ai.prefix_len = m->ifa_prefixlen;
    ai.scope = m->ifa_scope;
    // IFA_LOCAL is the interface's own address (IFA_ADDRESS is the peer on p2p links).
    ai.address = addrAttr(f, tb[IFA_LOCAL] ? tb[IFA_LOCAL] : tb[IFA_ADDRESS]);
    if (tb[IFA_LABEL]) ai.label = mnl_attr_get_str(tb[IFA_LABEL]);
    if (tb[IFA_CACHEINFO] && mnl_attr_get_payload_len(tb[IFA_CACHEINFO]) >= sizeof(ifa_cacheinfo)) {
      ifa_cacheinfo ci;
      std::memcpy(&ci, mnl_attr_get_payload(tb[IFA_CACHEINFO]), sizeof ci);
      ai.valid_lft = ci.ifa_valid;
      ai.preferred_lft = ci.ifa_prefered;
    }
    out.push_back(std::move(ai));
    return Ok{};
  });
  if (!st) return st.error();
  return out;
}

// ---------------------------------------------------------------- links ---

namespace {

LinkInfo parseLink(const nlmsghdr* nlh) {
  auto* ifi = static_cast<const ifinfomsg*>(mnl_nlmsg_get_payload(nlh));
  AttrTable tb = parseAttrs(nlh, sizeof(ifinfomsg), IFLA_MAX);
  LinkInfo li;
  li.ifindex = ifi->ifi_index;
  li.flags = ifi->ifi_flags;
  if (tb[IFLA_IFNAME]) li.name = mnl_attr_get_str(tb[IFLA_IFNAME]);
  if (tb[IFLA_MTU]) li.mtu = mnl_attr_get_u32(tb[IFLA_MTU]);
  if (tb[IFLA_LINKINFO]) {
    AttrTable info = parseNested(tb[IFLA_LINKINFO], IFLA_INFO_MAX);
    if (info[IFLA_INFO_KIND]) li.kind = mnl_attr_get_str(info[IFLA_INFO_KIND]);
  }
  return li;
}

Status linkChange(int ifindex, uint32_t change, uint32_t flags, uint32_t mtu, std::string what) {
  MessageBuilder b(RTM_NEWLINK, 0, std::move(what), 512);
  auto* ifi = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(b.hdr(), sizeof(ifinfomsg)));
  ifi->ifi_family = AF_UNSPEC;
  ifi->ifi_index = ifindex;
  ifi->ifi_change = change;
  ifi->ifi_flags = flags;
  if (mtu != 0) mnl_attr_put_u32(b.hdr(), IFLA_MTU, mtu);
  return roundTrip(std::move(b).finish());
}

}  // namespace

bool LinkInfo::up() const { return (flags & IFF_UP) != 0; }

Result<LinkInfo> linkGet(std::string_view name) {
  std::string n(name);
  if (n.empty() || n.size() >= IFNAMSIZ) {
    return Error{EINVAL, "RTM_GETLINK " + n, "interface names are 1.." + std::to_string(IFNAMSIZ - 1) + " bytes"};
  }
  MessageBuilder b(RTM_GETLINK, 0, "RTM_GETLINK " + n, 512);
  auto* ifi = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(b.hdr(), sizeof(ifinfomsg)));
  ifi->ifi_family = AF_UNSPEC;
  mnl_attr_put_strz(b.hdr(), IFLA_IFNAME, n.c_str());
  std::optional<LinkInfo> got;
  Status st = roundTrip(std::move(b).finish(), [&](size_t, const nlmsghdr* nlh) -> Status {
    if (nlh->nlmsg_type == RTM_NEWLINK && !got) got = parseLink(nlh);
    return Ok{};
  });
  if (!st) return st.error();
  if (!got) return Error{ENODEV, "RTM_GETLINK " + n, "kernel sent no link"};
  return *got;
}

Result<int> linkIndex(std::string_view name) {
  auto li = linkGet(name);
  if (!li) return li.error();
  return li->ifindex;
}

Result<std::vector<LinkInfo>> listLinks() {
  MessageBuilder b(RTM_GETLINK, NLM_F_DUMP, "RTM_GETLINK dump", 256);
  auto* ifi = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(b.hdr(), sizeof(ifinfomsg)));
  ifi->ifi_family = AF_UNSPEC;
  std::vector<LinkInfo> out;
  Status st = roundTrip(std::move(b).finish(), [&](size_t, const nlmsghdr* nlh) -> Status {
    if (nlh->nlmsg_type == RTM_NEWLINK) out.push_back(parseLink(nlh));
    return Ok{};
  });
  if (!st) return st.error();
  return out;
}

Status linkSetUp(int ifindex) {
  return linkChange(ifindex, IFF_UP, IFF_UP, 0, "RTM_NEWLINK dev " + ifName(ifindex) + " up");
}

Status linkSetDown(int ifindex) {
  return linkChange(ifindex, IFF_UP, 0, 0, "RTM_NEWLINK dev " + ifName(ifindex) + " down");
}

Status linkSetMtu(int ifindex, uint32_t mtu) {
  if (mtu == 0) return Error{EINVAL, "RTM_NEWLINK dev " + ifName(ifindex) + " mtu 0", "mtu must be > 0"};
  return linkChange(ifindex, 0, 0, mtu,
                    "RTM_NEWLINK dev " + ifName(ifindex) + " mtu " + std::to_string(mtu));
}

Message buildIpipLink(std::string_view name, const IpAddress& local) {
  std::string n(name);
  std::string what = "RTM_NEWLINK " + n + " type ipip";
  if (!local.empty()) what += " local " + local.str();
  MessageBuilder b(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, std::move(what), 1024);
  auto* ifi = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(b.hdr(), sizeof(ifinfomsg)));
  ifi->ifi_family = AF_UNSPEC;
  mnl_attr_put_strz(b.hdr(), IFLA_IFNAME, n.c_str());
  nlattr* linkinfo = mnl_attr_nest_start(b.hdr(), IFLA_LINKINFO);
  mnl_attr_put_strz(b.hdr(), IFLA_INFO_KIND, "ipip");
  nlattr* data = mnl_attr_nest_start(b.hdr(), IFLA_INFO_DATA);
  if (local.isV4()) mnl_attr_put(b.hdr(), IFLA_IPTUN_LOCAL, 4, local.bytes.data());
  mnl_attr_put_u8(b.hdr(), IFLA_IPTUN_PMTUDISC, 1);
  mnl_attr_nest_end(b.hdr(), data);
  mnl_attr_nest_end(b.hdr(), linkinfo);
  return std::move(b).finish();
}

Result<int> createIpipLink(std::string_view name, const IpAddress& local) {
  std::string n(name);
  if (n.empty() || n.size() >= IFNAMSIZ) {
    return Error{EINVAL, "RTM_NEWLINK " + n + " type ipip", "interface names are 1..15 bytes"};
  }
  if (!local.empty() && !local.isV4()) {
    return Error{EINVAL, "RTM_NEWLINK " + n + " type ipip", "ipip needs an IPv4 local address"};
  }
  Status st = roundTrip(buildIpipLink(name, local));
  if (!st) return st.error();
  return linkIndex(name);
}

Status deleteLink(std::string_view name) {
  std::string n(name);
  MessageBuilder b(RTM_DELLINK, 0, "RTM_DELLINK " + n, 512);
  auto* ifi = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(b.hdr(), sizeof(ifinfomsg)));
  ifi->ifi_family = AF_UNSPEC;
  mnl_attr_put_strz(b.hdr(), IFLA_IFNAME, n.c_str());
  return roundTrip(std::move(b).finish());
}

Result<bool> ipipSupported() {
  // A local address nobody uses (TEST-NET-1), so the probe cannot collide with
  // the fallback device tunl0 (local/remote any) or a configured tunnel.
  std::string name = "slrpb" + std::to_string(getpid() % 10000000);
  auto local = IpAddress::parse("192.0.2.254");
  auto r = createIpipLink(name, *local);
  if (r) {
    Status del = deleteLink(name);
    if (!del) LOG_WARN(kLog, "ipip probe device left behind: " + del.error().message());
    return true;
  }
  int code = r.error().code;
  if (code == EOPNOTSUPP) {
    LOG_DEBUG(kLog, "kernel has no ipip support: " + r.error().message());
    return false;
  }
  if (code == EEXIST) return true;  // the kind exists; a tunnel with these parameters too
  return r.error();
}

}  // namespace slr::nl
