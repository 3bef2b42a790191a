#include "core/sock_diag.h"

#include <libmnl/libmnl.h>
#include <linux/inet_diag.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>

#include "core/netlink.h"

namespace slr::diag {
namespace {

// struct tcp_info field offsets (uapi <linux/tcp.h>; the struct only ever
// grows at the end).  Read by offset because glibc's <netinet/tcp.h> copy of
// the struct stops before tcpi_bytes_acked and the two headers conflict.
constexpr size_t kOffRetransmits = 2;     // u8
constexpr size_t kOffUnacked = 24;        // u32
constexpr size_t kOffLastDataSent = 44;   // u32
constexpr size_t kOffLastDataRecv = 52;   // u32
constexpr size_t kOffLastAckRecv = 56;    // u32
constexpr size_t kOffRtt = 68;            // u32
constexpr size_t kOffTotalRetrans = 100;  // u32
constexpr size_t kOffBytesAcked = 120;    // u64
constexpr size_t kOffBytesReceived = 128; // u64

template <typename T>
bool loadAt(const uint8_t* p, size_t len, size_t off, T& out) {
  if (off + sizeof(T) > len) return false;
  std::memcpy(&out, p + off, sizeof(T));
  return true;
}

// Addresses of an AF_INET6 socket that carries IPv4 (::ffff:a.b.c.d) are
// reported as IPv4, so one VIP prefix matches on v4 and dual-stack listeners.
IpAddress fromDiag(uint8_t family, const uint32_t* words) {
  const auto* b = reinterpret_cast<const uint8_t*>(words);
  IpAddress a;
  if (family == AF_INET) return IpAddress::v4Bytes(b);
  static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(b, kMapped, 12) == 0) return IpAddress::v4Bytes(b + 12);
  a.family = Family::kV6;
  std::memcpy(a.bytes.data(), b, 16);
  return a;
}

bool matches(const TcpFilter& f, const TcpSockInfo& s) {
  if (f.local_port && s.local_port != *f.local_port) return false;
  if (f.local_prefixes.empty()) return true;
  for (const Prefix& p : f.local_prefixes) {
    if (p.contains(s.local)) return true;
  }
  return false;
}

nl::Message dumpRequest(int af, const TcpFilter& f) {
  nl::MessageBuilder b(SOCK_DIAG_BY_FAMILY, NLM_F_DUMP,
                       std::string("SOCK_DIAG_BY_FAMILY tcp dump ") + (af == AF_INET6 ? "inet6" : "inet"), 512);
  auto* req = static_cast<inet_diag_req_v2*>(mnl_nlmsg_put_extra_header(b.hdr(), sizeof(inet_diag_req_v2)));
  req->sdiag_family = uint8_t(af);
  req->sdiag_protocol = IPPROTO_TCP;
  req->idiag_states = f.states;
  if (f.with_info) req->idiag_ext = uint8_t(1u << (INET_DIAG_INFO - 1));
  return std::move(b).finish();
}

Status parseOne(const nlmsghdr* nlh, const TcpFilter& f, std::vector<TcpSockInfo>& out) {
  if (nlh->nlmsg_type != SOCK_DIAG_BY_FAMILY) return Ok{};
  if (mnl_nlmsg_get_payload_len(nlh) < sizeof(inet_diag_msg)) return Ok{};
  auto* m = static_cast<const inet_diag_msg*>(mnl_nlmsg_get_payload(nlh));
  TcpSockInfo s;
  s.local = fromDiag(m->idiag_family, m->id.idiag_src);
  s.remote = fromDiag(m->idiag_family, m->id.idiag_dst);
  s.local_port = ntohs(m->id.idiag_sport);
  s.remote_port = ntohs(m->id.idiag_dport);
  s.state = m->idiag_state;
  s.inode = m->idiag_inode;
  s.uid = m->idiag_uid;
  if ((f.states & stateBit(s.state)) == 0 || !matches(f, s)) return Ok{};
  if (f.with_info) {
    // mnl_attr_for_each assigns a void*, which C++ refuses: spelled out.
    const auto* tail = static_cast<const char*>(mnl_nlmsg_get_payload_tail(nlh));
    for (auto* attr = static_cast<const nlattr*>(mnl_nlmsg_get_payload_offset(nlh, sizeof(inet_diag_msg)));
         mnl_attr_ok(attr, int(tail - reinterpret_cast<const char*>(attr))); attr = mnl_attr_next(attr)) {
      if (mnl_attr_get_type(attr) != INET_DIAG_INFO) continue;
      const auto* p = static_cast<const uint8_t*>(mnl_attr_get_payload(attr));
      size_t len = mnl_attr_get_payload_len(attr);
      s.has_info = loadAt(p, len, kOffRetransmits, s.retransmits);
      loadAt(p, len, kOffUnacked, s.unacked);
      loadAt(p, len, kOffLastDataSent, s.last_data_sent_ms);
      loadAt(p, len, kOffLastDataRecv, s.last_data_recv_ms);
      loadAt(p, len, kOffLastAckRecv, s.last_ack_recv_ms);
      loadAt(p, len, kOffRtt, s.rtt_us);
      loadAt(p, len, kOffTotalRetrans, s.total_retrans);
      loadAt(p, len, kOffBytesAcked, s.bytes_acked);
      loadAt(p, len, kOffBytesReceived, s.bytes_received);
    }
  }
  out.push_back(s);
  return Ok{};
}

}  // namespace

const char* tcpStateName(uint8_t state) {
  static constexpr const char* kNames[] = {"UNKNOWN",   "ESTAB",    "SYN-SENT",   "SYN-RECV",
                                           "FIN-WAIT-1", "FIN-WAIT-2", "TIME-WAIT", "UNCONN",
                                           "CLOSE-WAIT", "LAST-ACK", "LISTEN",     "CLOSING",
                                           "NEW-SYN-RECV"};
  return state < sizeof kNames / sizeof kNames[0] ? kNames[state] : "UNKNOWN";
}

std::string TcpSockInfo::str() const {
  auto ep = [](const IpAddress& a, uint16_t port) {
    return (a.family == Family::kV6 ? "[" + a.str() + "]" : a.str()) + ":" + std::to_string(port);
  };
  std::string s = ep(local, local_port) + " <- " + ep(remote, remote_port) + " " + tcpStateName(state);
  if (has_info) {
    s += " unacked=" + std::to_string(unacked) + " retrans=" + std::to_string(retransmits) +
         " last_recv_ms=" + std::to_string(last_data_recv_ms) + " bytes_acked=" + std::to_string(bytes_acked);
  }
  return s;
}

Result<std::vector<TcpSockInfo>> listTcp(const TcpFilter& filter) {
  auto sock = nl::Socket::open(NETLINK_SOCK_DIAG);
  if (!sock) return sock.error();
  std::vector<TcpSockInfo> out;
  // Both families always: IPv4 connections on dual-stack listeners live in
  // the AF_INET6 table.
  for (int af : {AF_INET, AF_INET6}) {
    Status st = sock->transact(dumpRequest(af, filter), [&](size_t, const nlmsghdr* nlh) {
      return parseOne(nlh, filter, out);
    });
    if (!st) {
      // A kernel without IPv6 has no AF_INET6 table: nothing to count there.
      if (af == AF_INET6 && (st.error().code == ENOENT || st.error().code == EAFNOSUPPORT)) continue;
      return st.error();
    }
  }
  return out;
}

Result<size_t> countEstablished(std::span<const Prefix> local_prefixes, std::optional<uint16_t> local_port) {
  TcpFilter f;
  f.local_prefixes.assign(local_prefixes.begin(), local_prefixes.end());
  f.local_port = local_port;
  f.states = kEstablishedOnly;
  f.with_info = false;
  auto l = listTcp(f);
  if (!l) return l.error();
  return l->size();
}

}  // namespace slr::diag
