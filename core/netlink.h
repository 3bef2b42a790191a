#pragma once
// rtnetlink (routes, addresses, links) over libmnl.
//
// Shape (see STYLE.md): builders make a Batch of Messages; Socket::transact()
// is the one netlink round trip.  Every message gets its own sequence number,
// every ack is drained, and an error ack is mapped back to the message that
// caused it, with the kernel's extended-ACK text (NETLINK_EXT_ACK), e.g.
//   "RTM_NEWROUTE local 10.100.0.0/24 dev lo table local: File exists".
// At log level trace every message sent and received is dumped.
//
// The free functions (addRoute, linkIndex, ...) each open a short-lived
// socket in the calling thread's network namespace: control-plane only,
// never on the packet path.  Thread-safety: a Socket is used by one thread at
// a time; the free functions are safe to call from any thread.
#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/net_types.h"
#include "core/result.h"

struct mnl_socket;

namespace slr::nl {

// One complete netlink message plus what it is for (used in errors and logs).
struct Message {
  std::vector<uint8_t> buf;  // exactly nlmsg_len bytes once built
  std::string what;          // e.g. "RTM_NEWROUTE 10.100.0.0/24 dev slr0"
  // false for messages the kernel never acks (NFNL_MSG_BATCH_BEGIN/END).
  bool ack = true;
  // An NLM_F_DUMP request: completed by NLMSG_DONE instead of an ack.
  bool dump = false;

  nlmsghdr* hdr() { return reinterpret_cast<nlmsghdr*>(buf.data()); }
  const nlmsghdr* hdr() const { return reinterpret_cast<const nlmsghdr*>(buf.data()); }
};

// An ordered set of messages sent in one sendmsg().  rtnetlink processes each
// message independently; nfnetlink (nft.h) wraps them in BATCH_BEGIN/END and
// applies all or nothing.
struct Batch {
  std::vector<Message> messages;
  size_t size() const { return messages.size(); }
  bool empty() const { return messages.empty(); }
};

// Scratch buffer for building one message in place with libmnl.  finish()
// trims it to nlmsg_len and hands out the Message.
class MessageBuilder {
 public:
  // type/flags as for nlmsghdr; NLM_F_REQUEST is always set; NLM_F_ACK is set
  // by Socket::transact when Message::ack is true.
  MessageBuilder(uint16_t type, uint16_t flags, std::string what, size_t capacity = 16384);
  nlmsghdr* hdr() { return reinterpret_cast<nlmsghdr*>(buf_.data()); }
  // Total buffer size.  Size it for the worst case: mnl_attr_put does not
  // check bounds (mnl_attr_put_check with this value does).
  size_t capacity() const { return buf_.size(); }
  Message finish() &&;

 private:
  std::vector<uint8_t> buf_;
  std::string what_;
};

// Called for every data message received in reply to messages[index].
using ReplyFn = std::function<Status(size_t index, const nlmsghdr* nlh)>;

// RAII mnl_socket: move-only, bound, NETLINK_EXT_ACK and NETLINK_CAP_ACK on,
// a receive timeout so a missing ack is an error, never a hang.
class Socket {
 public:
  // bus: NETLINK_ROUTE, NETLINK_NETFILTER, NETLINK_SOCK_DIAG.
  [[nodiscard]] static Result<Socket> open(int bus = NETLINK_ROUTE);
  Socket(Socket&& o) noexcept;
  Socket& operator=(Socket&& o) noexcept;
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  ~Socket();

  // The round trip: assigns one sequence number per message, sends the whole
  // batch in one sendmsg, then receives until every acked message has its ack
  // (or NLMSG_DONE for NLM_F_DUMP requests).  Data replies go to `on_reply`.
  // Returns the first error ack, named by the message that caused it; later
  // errors of the same batch are logged at debug.
  [[nodiscard]] Status transact(Batch& batch, const ReplyFn& on_reply = {});
  [[nodiscard]] Status transact(Message msg, const ReplyFn& on_reply = {});

  mnl_socket* raw() const { return sock_; }
  uint32_t portId() const;
  int bus() const { return bus_; }

 private:
  Socket(mnl_socket* s, int bus) : sock_(s), bus_(bus) {}
  mnl_socket* sock_ = nullptr;
  int bus_ = NETLINK_ROUTE;
  uint32_t next_seq_ = 0;
};

// Human-readable dump of a message (for trace logs and test failures).
std::string dumpMessage(const nlmsghdr* nlh);

// ---------------------------------------------------------------- routes ---

// "Pick the scope like iproute2 does": host for local routes, link for
// on-link unicast routes without a gateway, universe otherwise; NOWHERE
// (= match any scope) when deleting.
inline constexpr uint8_t kScopeAuto = 0xFE;

struct RouteSpec {
  Prefix dst;                       // family of the route comes from here
  int ifindex = 0;                  // 0 = no RTA_OIF
  IpAddress gateway;                // empty = none
  uint8_t type = RTN_UNICAST;       // RTN_UNICAST / RTN_LOCAL / ...
  uint32_t table = RT_TABLE_MAIN;   // RT_TABLE_MAIN / RT_TABLE_LOCAL / any id
  uint8_t scope = kScopeAuto;
  uint32_t metric = 0;              // 0 = no RTA_PRIORITY
  bool replace = false;             // NLM_F_REPLACE ("ip route replace")
  uint8_t protocol = RTPROT_STATIC; // who installed it (shows in `ip route`)
  IpAddress prefsrc;                // empty = none (RTA_PREFSRC)

  std::string str() const;  // "local 10.100.0.0/24 dev 1 table local"
};

struct RouteInfo {
  Family family = Family::kNone;
  Prefix dst;  // 0.0.0.0/0 for the default route
  uint8_t type = 0;
  uint8_t scope = 0;
  uint8_t protocol = 0;
  uint32_t table = 0;
  int ifindex = 0;  // RTA_OIF (first nexthop for multipath)
  IpAddress gateway;
  IpAddress prefsrc;  // RTA_PREFSRC (routeGet: the source the kernel would pick)
  uint32_t metric = 0;

  std::string str() const;
};

[[nodiscard]] Message buildRoute(uint16_t rtm_type /*RTM_NEWROUTE/RTM_DELROUTE*/, const RouteSpec& r);
[[nodiscard]] Status addRoute(const RouteSpec& r);
[[nodiscard]] Status delRoute(const RouteSpec& r);
// All routes of `family` (kNone = v4 and v6); table 0 = every table.
[[nodiscard]] Result<std::vector<RouteInfo>> listRoutes(Family family = Family::kV4,
                                                       uint32_t table = RT_TABLE_MAIN);
// RTM_GETROUTE for one destination: which interface, gateway and source.
[[nodiscard]] Result<RouteInfo> routeGet(const IpAddress& dst, const IpAddress& src = {});
// RTM_GETROUTE with RTM_F_FIB_MATCH ("ip route get fibmatch DST"): the FIB
// entry the longest-prefix match picks, as it is stored: its prefix, table
// and metric (RTA_PRIORITY, 0 when the route has none).  No matching route:
// an error (ENETUNREACH).
[[nodiscard]] Result<RouteInfo> routeGetFibMatch(const IpAddress& dst);

// ------------------------------------------------------------- addresses ---

struct AddrInfo {
  int ifindex = 0;
  IpAddress address;
  uint8_t prefix_len = 0;
  uint8_t scope = 0;
  std::string label;
  // IFA_CACHEINFO, seconds left; kForever (0xFFFFFFFF) = permanent.
  uint32_t valid_lft = 0xFFFFFFFFu;
  uint32_t preferred_lft = 0xFFFFFFFFu;

  std::string str() const;  // "10.0.3.11/24 dev 2"
};

// address with its prefix length, e.g. 10.100.0.1/24 (host bits are the point).
[[nodiscard]] Message buildAddress(uint16_t rtm_type /*RTM_NEWADDR/RTM_DELADDR*/, int ifindex,
                                   const IpAddress& address, uint8_t prefix_len);
[[nodiscard]] Status addAddress(int ifindex, const IpAddress& address, uint8_t prefix_len);
// Same, from a Prefix built by hand whose addr may have host bits set.
[[nodiscard]] Status addAddress(int ifindex, const Prefix& address_with_len);
[[nodiscard]] Status delAddress(int ifindex, const IpAddress& address, uint8_t prefix_len);
[[nodiscard]] Status delAddress(int ifindex, const Prefix& address_with_len);
[[nodiscard]] Result<std::vector<AddrInfo>> listAddresses(Family family = Family::kNone);

// Addresses as leases ("ip addr replace A/L dev D valid_lft V preferred_lft P"):
// RTM_NEWADDR with NLM_F_CREATE|NLM_F_REPLACE and IFA_CACHEINFO, so the same
// call adds the address or refreshes the lifetime of the one already there.
// The kernel removes it by itself when valid_s runs out: a process that dies
// without cleaning up loses the address within that time.  Lifetimes in
// seconds; kForever = permanent.
inline constexpr uint32_t kForever = 0xFFFFFFFFu;
[[nodiscard]] Message buildAddressLease(int ifindex, const IpAddress& address, uint8_t prefix_len,
                                        uint32_t valid_s, uint32_t preferred_s);
[[nodiscard]] Status replaceAddress(int ifindex, const Prefix& address_with_len, uint32_t valid_s,
                                    uint32_t preferred_s);
// delAddress, but an address that is not there (EADDRNOTAVAIL) is success.
[[nodiscard]] Status delAddressIfPresent(int ifindex, const Prefix& address_with_len);

// ----------------------------------------------------------------- links ---

struct LinkInfo {
  int ifindex = 0;
  std::string name;
  uint32_t flags = 0;  // IFF_UP, IFF_RUNNING, ...
  uint32_t mtu = 0;
  std::string kind;  // IFLA_INFO_KIND: "tun", "veth", "ipip", "" ...
  bool up() const;
};

[[nodiscard]] Result<int> linkIndex(std::string_view name);
[[nodiscard]] Result<LinkInfo> linkGet(std::string_view name);
[[nodiscard]] Result<std::vector<LinkInfo>> listLinks();
[[nodiscard]] Status linkSetUp(int ifindex);
[[nodiscard]] Status linkSetDown(int ifindex);
[[nodiscard]] Status linkSetMtu(int ifindex, uint32_t mtu);

// Kernel IP-in-IP device ("ip link add NAME type ipip local LOCAL"), created
// down; returns its ifindex.  Fails with EOPNOTSUPP (extack "Unknown device
// type") on kernels without the ipip module.
[[nodiscard]] Message buildIpipLink(std::string_view name, const IpAddress& local);
[[nodiscard]] Result<int> createIpipLink(std::string_view name, const IpAddress& local);
[[nodiscard]] Status deleteLink(std::string_view name);
// Detect, don't assume: tries to create (and removes) a throw-away ipip
// device in the current netns.  false = the kernel has no ipip support
// (EOPNOTSUPP); an error for anything else (e.g. EPERM without CAP_NET_ADMIN).
[[nodiscard]] Result<bool> ipipSupported();

}  // namespace slr::nl
