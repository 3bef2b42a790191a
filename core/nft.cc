#include "core/nft.h"

#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <net/if.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <memory>

namespace slr::nft {
namespace {

// ---- RAII for libnftnl objects (nothing outside this file frees them) ----
struct TableFree {
  void operator()(nftnl_table* t) const { nftnl_table_free(t); }
};
struct ChainFree {
  void operator()(nftnl_chain* c) const { nftnl_chain_free(c); }
};
struct SetFree {
  void operator()(nftnl_set* s) const { nftnl_set_free(s); }
};
struct RuleFree {
  void operator()(nftnl_rule* r) const { nftnl_rule_free(r); }
};
using TablePtr = std::unique_ptr<nftnl_table, TableFree>;
using ChainPtr = std::unique_ptr<nftnl_chain, ChainFree>;
using SetPtr = std::unique_ptr<nftnl_set, SetFree>;
using RulePtr = std::unique_ptr<nftnl_rule, RuleFree>;

constexpr uint32_t kFamily = NFPROTO_INET;
constexpr uint32_t kTypeIpAddr = 7;  // nft's datatype id of ipv4_addr (TYPE_IPADDR)
constexpr const char* kVipSet = "vips";
constexpr const char* kPeerSet = "tunnel_peers";
constexpr uint32_t kVipSetId = 1;
constexpr uint32_t kPeerSetId = 2;

// A rule and the nft syntax it was built from (for errors and golden text).
struct BuiltRule {
  RulePtr rule;
  std::string text;
};

// Everything one HostRules turns into.  Built once; then either serialised
// into a batch or printed, so the golden text is exactly what is sent.
struct Objects {
  TablePtr table;
  SetPtr vips;   // with elements
  SetPtr peers;  // with elements
  ChainPtr chain;
  std::vector<BuiltRule> rules;
};

std::string tableWhat(std::string_view table) { return "inet " + std::string(table); }

TablePtr makeTable(std::string_view name) {
  TablePtr t(nftnl_table_alloc());
  nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, std::string(name).c_str());
  nftnl_table_set_u32(t.get(), NFTNL_TABLE_FAMILY, kFamily);
  return t;
}

SetPtr makeSet(std::string_view table, const char* name, uint32_t id, bool interval) {
  SetPtr s(nftnl_set_alloc());
  nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, std::string(table).c_str());
  nftnl_set_set_str(s.get(), NFTNL_SET_NAME, name);
  nftnl_set_set_u32(s.get(), NFTNL_SET_FAMILY, kFamily);
  nftnl_set_set_u32(s.get(), NFTNL_SET_ID, id);
  nftnl_set_set_u32(s.get(), NFTNL_SET_KEY_TYPE, kTypeIpAddr);
  nftnl_set_set_u32(s.get(), NFTNL_SET_KEY_LEN, 4);
  if (interval) nftnl_set_set_u32(s.get(), NFTNL_SET_FLAGS, NFT_SET_INTERVAL);
  return s;
}

// A set handle naming an existing set, for element messages.
SetPtr setRef(std::string_view table, const char* name) {
  SetPtr s(nftnl_set_alloc());
  nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, std::string(table).c_str());
  nftnl_set_set_str(s.get(), NFTNL_SET_NAME, name);
  nftnl_set_set_u32(s.get(), NFTNL_SET_FAMILY, kFamily);
  return s;
}

void addElem(nftnl_set* s, uint32_t host_order, bool interval_end) {
  nftnl_set_elem* e = nftnl_set_elem_alloc();
  uint8_t key[4] = {uint8_t(host_order >> 24), uint8_t(host_order >> 16), uint8_t(host_order >> 8),
                    uint8_t(host_order)};
  nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, key, sizeof key);
  if (interval_end) nftnl_set_elem_set_u32(e, NFTNL_SET_ELEM_FLAGS, NFT_SET_ELEM_INTERVAL_END);
  nftnl_set_elem_add(s, e);  // the set owns it now
}

// Interval-set elements the way nft encodes them: each range [lo, hi] is a
// start key plus an end key (hi + 1) flagged INTERVAL_END, and a leading
// end-flagged 0.0.0.0 when the first range does not start at 0 (older rbtree
// sets need it; nft always sends it).  Overlapping/adjacent prefixes merge.
size_t addIntervalElems(nftnl_set* s, const std::vector<Prefix>& prefixes) {
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const Prefix& p : prefixes) {
    uint64_t lo = p.addr.v4HostOrder();
    uint64_t size = uint64_t(1) << (32 - p.len);
    lo &= ~(size - 1);
    ranges.emplace_back(lo, lo + size - 1);
  }
  std::sort(ranges.begin(), ranges.end());
  std::vector<std::pair<uint64_t, uint64_t>> merged;
  for (auto& r : ranges) {
    if (!merged.empty() && r.first <= merged.back().second + 1) {
      merged.back().second = std::max(merged.back().second, r.second);
    } else {
      merged.push_back(r);
    }
  }
  size_t n = 0;
  if (!merged.empty() && merged.front().first != 0) {
    addElem(s, 0, true);
    ++n;
  }
  for (auto& [lo, hi] : merged) {
    addElem(s, uint32_t(lo), false);
    ++n;
    if (hi < 0xFFFFFFFFull) {  // a range up to 255.255.255.255 has no end key
      addElem(s, uint32_t(hi + 1), true);
      ++n;
    }
  }
  return n;
}

// ---- expressions ----
nftnl_expr* expr(const char* name) { return nftnl_expr_alloc(name); }

void metaLoad(nftnl_rule* r, uint32_t key) {
  nftnl_expr* e = expr("meta");
  nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
  nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, NFT_REG_1);
  nftnl_rule_add_expr(r, e);
}

void payloadLoad(nftnl_rule* r, uint32_t offset, uint32_t len) {
  nftnl_expr* e = expr("payload");
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, NFT_PAYLOAD_NETWORK_HEADER);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, offset);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, NFT_REG_1);
  nftnl_rule_add_expr(r, e);
}

void cmp(nftnl_rule* r, uint32_t op, const void* data, uint32_t len) {
  nftnl_expr* e = expr("cmp");
  nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
  nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, op);
  nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
  nftnl_rule_add_expr(r, e);
}

void lookup(nftnl_rule* r, const char* set, uint32_t set_id, bool invert) {
  nftnl_expr* e = expr("lookup");
  nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, NFT_REG_1);
  nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, set);
  nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SET_ID, set_id);
  if (invert) nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_FLAGS, NFT_LOOKUP_F_INV);
  nftnl_rule_add_expr(r, e);
}

void counterDrop(nftnl_rule* r) {
  nftnl_rule_add_expr(r, expr("counter"));
  nftnl_expr* e = expr("immediate");
  nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
  nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, NF_DROP);
  nftnl_rule_add_expr(r, e);
}

// "ip ..." in an inet table: only IPv4 packets.
void matchIpv4(nftnl_rule* r) {
  metaLoad(r, NFT_META_NFPROTO);
  uint8_t v4 = NFPROTO_IPV4;
  cmp(r, NFT_CMP_EQ, &v4, 1);
}

RulePtr newRule(const HostRules& h) {
  RulePtr r(nftnl_rule_alloc());
  nftnl_rule_set_str(r.get(), NFTNL_RULE_TABLE, h.table.c_str());
  nftnl_rule_set_str(r.get(), NFTNL_RULE_CHAIN, h.chain.c_str());
  nftnl_rule_set_u32(r.get(), NFTNL_RULE_FAMILY, kFamily);
  return r;
}

Status validateName(std::string_view what, std::string_view name, size_t max) {
  if (name.empty() || name.size() > max) {
    return Error{EINVAL, "nft " + std::string(what),
                 "name \"" + std::string(name) + "\" must be 1.." + std::to_string(max) + " bytes"};
  }
  return Ok{};
}

Status validate(const HostRules& h) {
  if (auto s = validateName("table", h.table, NFT_NAME_MAXLEN - 1); !s) return s;
  if (auto s = validateName("chain", h.chain, NFT_NAME_MAXLEN - 1); !s) return s;
  if (auto s = validateName("tunnel device", h.tunnel_device, IFNAMSIZ - 1); !s) return s;
  for (const Prefix& p : h.vips) {
    if (!p.addr.isV4() || p.len > 32) {
      return Error{EAFNOSUPPORT, "nft " + tableWhat(h.table) + " set vips",
                   "only IPv4 VIP prefixes are supported, got " + p.str()};
    }
  }
  for (const IpAddress& a : h.tunnel_peers) {
    if (!a.isV4()) {
      return Error{EAFNOSUPPORT, "nft " + tableWhat(h.table) + " set tunnel_peers",
                   "only IPv4 tunnel peers are supported, got " + a.str()};
    }
  }
  return Ok{};
}

Status validatePeers(std::string_view table, std::span<const IpAddress> peers) {
  for (const IpAddress& a : peers) {
    if (!a.isV4()) {
      return Error{EAFNOSUPPORT, "nft " + tableWhat(table) + " set tunnel_peers",
                   "only IPv4 tunnel peers are supported, got " + a.str()};
    }
  }
  return Ok{};
}

std::vector<IpAddress> uniquePeers(std::span<const IpAddress> peers) {
  std::vector<IpAddress> out;
  for (const IpAddress& a : peers) {
    if (std::find(out.begin(), out.end(), a) == out.end()) out.push_back(a);
  }
  return out;
}

Objects buildObjects(const HostRules& h) {
  Objects o;
  o.table = makeTable(h.table);

  o.vips = makeSet(h.table, kVipSet, kVipSetId, true);
  addIntervalElems(o.vips.get(), h.vips);

  o.peers = makeSet(h.table, kPeerSet, kPeerSetId, false);
  for (const IpAddress& a : uniquePeers(h.tunnel_peers)) addElem(o.peers.get(), a.v4HostOrder(), false);

  o.chain.reset(nftnl_chain_alloc());
  nftnl_chain_set_str(o.chain.get(), NFTNL_CHAIN_TABLE, h.table.c_str());
  nftnl_chain_set_str(o.chain.get(), NFTNL_CHAIN_NAME, h.chain.c_str());
  nftnl_chain_set_u32(o.chain.get(), NFTNL_CHAIN_FAMILY, kFamily);
  nftnl_chain_set_u32(o.chain.get(), NFTNL_CHAIN_HOOKNUM, NF_INET_LOCAL_IN);
  nftnl_chain_set_s32(o.chain.get(), NFTNL_CHAIN_PRIO, h.priority);
  nftnl_chain_set_str(o.chain.get(), NFTNL_CHAIN_TYPE, "filter");
  nftnl_chain_set_u32(o.chain.get(), NFTNL_CHAIN_POLICY, NF_ACCEPT);

  // 1: tunnel packets only from registered SLRs.
  {
    RulePtr r = newRule(h);
    matchIpv4(r.get());
    payloadLoad(r.get(), 9, 1);  // ip protocol
    uint8_t ipip = IPPROTO_IPIP;
    cmp(r.get(), NFT_CMP_EQ, &ipip, 1);
    payloadLoad(r.get(), 12, 4);  // ip saddr
    lookup(r.get(), kPeerSet, kPeerSetId, true);
    counterDrop(r.get());
    o.rules.push_back({std::move(r), "ip protocol 4 ip saddr != @tunnel_peers counter drop"});
  }
  // 2: VIP traffic only after tunnel termination.
  {
    RulePtr r = newRule(h);
    matchIpv4(r.get());
    payloadLoad(r.get(), 16, 4);  // ip daddr
    lookup(r.get(), kVipSet, kVipSetId, false);
    metaLoad(r.get(), NFT_META_IIFNAME);
    char ifname[IFNAMSIZ] = {0};  // compared as the kernel stores it: 16 bytes, NUL padded
    std::memcpy(ifname, h.tunnel_device.data(), std::min(h.tunnel_device.size(), sizeof ifname - 1));
    cmp(r.get(), NFT_CMP_NEQ, ifname, sizeof ifname);
    // Loopback can only carry what this host itself sent (health checks,
    // local clients of the service), never a spoofed outside packet.
    metaLoad(r.get(), NFT_META_IIFNAME);
    char lo[IFNAMSIZ] = {'l', 'o'};
    cmp(r.get(), NFT_CMP_NEQ, lo, sizeof lo);
    counterDrop(r.get());
    o.rules.push_back({std::move(r), "ip daddr @vips iifname != \"" + h.tunnel_device +
                                         "\" iifname != \"lo\" counter drop"});
  }
  return o;
}

// ---- batch serialisation ----
template <typename Fn>
nl::Message nftMessage(uint16_t cmd, uint16_t flags, std::string what, size_t capacity, Fn payload) {
  nl::Message m;
  m.buf.assign(capacity, 0);
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(reinterpret_cast<char*>(m.buf.data()), cmd, kFamily, flags, 0);
  payload(nlh);
  m.buf.resize(nlh->nlmsg_len);
  m.what = std::move(what);
  return m;
}

nl::Message batchMarker(bool begin) {
  nl::Message m;
  m.buf.assign(MNL_NLMSG_HDRLEN + 64, 0);
  nlmsghdr* nlh = begin ? nftnl_batch_begin(reinterpret_cast<char*>(m.buf.data()), 0)
                        : nftnl_batch_end(reinterpret_cast<char*>(m.buf.data()), 0);
  m.buf.resize(nlh->nlmsg_len);
  m.what = begin ? "NFNL_MSG_BATCH_BEGIN" : "NFNL_MSG_BATCH_END";
  m.ack = false;  // the kernel only answers these on error
  return m;
}

size_t elemCapacity(size_t n) { return 1024 + 64 * n; }

void addTableMsgs(nl::Batch& b, const std::string& table, bool remove_existing, uint16_t final_flags,
                  nftnl_table* t) {
  if (remove_existing) {
    // "add table" then "delete table": deleting a table that did not exist
    // would fail the whole batch, adding an existing one does not.
    b.messages.push_back(nftMessage(NFT_MSG_NEWTABLE, NLM_F_CREATE, "NFT_MSG_NEWTABLE " + tableWhat(table),
                                    512, [&](nlmsghdr* nlh) { nftnl_table_nlmsg_build_payload(nlh, t); }));
    b.messages.push_back(nftMessage(NFT_MSG_DELTABLE, 0, "NFT_MSG_DELTABLE " + tableWhat(table), 512,
                                    [&](nlmsghdr* nlh) { nftnl_table_nlmsg_build_payload(nlh, t); }));
  }
  if (final_flags != 0xFFFF) {
    b.messages.push_back(nftMessage(NFT_MSG_NEWTABLE, final_flags, "NFT_MSG_NEWTABLE " + tableWhat(table),
                                    512, [&](nlmsghdr* nlh) { nftnl_table_nlmsg_build_payload(nlh, t); }));
  }
}

std::string snprintObj(const std::function<int(char*, size_t)>& fn) {
  std::vector<char> buf(4096);
  for (;;) {
    int n = fn(buf.data(), buf.size());
    if (n < 0) return "<unprintable>";
    if (size_t(n) < buf.size()) return std::string(buf.data(), size_t(n));
    buf.resize(size_t(n) + 1);
  }
}

Result<nl::Socket> openNft() { return nl::Socket::open(NETLINK_NETFILTER); }

}  // namespace

Result<nl::Batch> buildHostRules(const HostRules& h, bool replace) {
  if (Status s = validate(h); !s) return s.error();
  Objects o = buildObjects(h);
  const std::string tw = tableWhat(h.table);
  nl::Batch b;
  b.messages.push_back(batchMarker(true));
  addTableMsgs(b, h.table, replace, replace ? NLM_F_CREATE : uint16_t(NLM_F_CREATE | NLM_F_EXCL),
               o.table.get());
  for (nftnl_set* s : {o.vips.get(), o.peers.get()}) {
    std::string name = nftnl_set_get_str(s, NFTNL_SET_NAME);
    b.messages.push_back(nftMessage(NFT_MSG_NEWSET, NLM_F_CREATE | NLM_F_EXCL,
                                    "NFT_MSG_NEWSET " + tw + " set " + name, 1024,
                                    [&](nlmsghdr* nlh) { nftnl_set_nlmsg_build_payload(nlh, s); }));
    size_t n = 0;
    if (auto* it = nftnl_set_elems_iter_create(s)) {
      while (nftnl_set_elems_iter_next(it) != nullptr) ++n;
      nftnl_set_elems_iter_destroy(it);
    }
    if (n > 0) {
      b.messages.push_back(nftMessage(NFT_MSG_NEWSETELEM, NLM_F_CREATE | NLM_F_EXCL,
                                      "NFT_MSG_NEWSETELEM " + tw + " set " + name + " (" +
                                          std::to_string(n) + " keys)",
                                      elemCapacity(n),
                                      [&](nlmsghdr* nlh) { nftnl_set_elems_nlmsg_build_payload(nlh, s); }));
    }
  }
  b.messages.push_back(nftMessage(NFT_MSG_NEWCHAIN, NLM_F_CREATE | NLM_F_EXCL,
                                  "NFT_MSG_NEWCHAIN " + tw + " chain " + h.chain + " (hook input priority " +
                                      std::to_string(h.priority) + ")",
                                  1024, [&](nlmsghdr* nlh) { nftnl_chain_nlmsg_build_payload(nlh, o.chain.get()); }));
  for (size_t i = 0; i < o.rules.size(); ++i) {
    nftnl_rule* r = o.rules[i].rule.get();
    b.messages.push_back(nftMessage(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND,
                                    "NFT_MSG_NEWRULE " + tw + " chain " + h.chain + " rule " +
                                        std::to_string(i + 1) + " '" + o.rules[i].text + "'",
                                    4096, [&](nlmsghdr* nlh) { nftnl_rule_nlmsg_build_payload(nlh, r); }));
  }
  b.messages.push_back(batchMarker(false));
  return b;
}

Result<nl::Batch> buildSetTunnelPeers(std::string_view table, std::span<const IpAddress> peers) {
  if (Status s = validateName("table", table, NFT_NAME_MAXLEN - 1); !s) return s.error();
  if (Status s = validatePeers(table, peers); !s) return s.error();
  const std::string tw = tableWhat(table);
  nl::Batch b;
  b.messages.push_back(batchMarker(true));
  // DELSETELEM without elements flushes the set.
  SetPtr flush = setRef(table, kPeerSet);
  b.messages.push_back(nftMessage(NFT_MSG_DELSETELEM, 0, "NFT_MSG_DELSETELEM " + tw + " set tunnel_peers (flush)",
                                  1024, [&](nlmsghdr* nlh) { nftnl_set_elems_nlmsg_build_payload(nlh, flush.get()); }));
  std::vector<IpAddress> uniq = uniquePeers(peers);
  if (!uniq.empty()) {
    SetPtr add = setRef(table, kPeerSet);
    std::string list;
    for (const IpAddress& a : uniq) {
      addElem(add.get(), a.v4HostOrder(), false);
      list += (list.empty() ? "" : ", ") + a.str();
    }
    b.messages.push_back(nftMessage(NFT_MSG_NEWSETELEM, NLM_F_CREATE,
                                    "NFT_MSG_NEWSETELEM " + tw + " set tunnel_peers { " + list + " }",
                                    elemCapacity(uniq.size()),
                                    [&](nlmsghdr* nlh) { nftnl_set_elems_nlmsg_build_payload(nlh, add.get()); }));
  }
  b.messages.push_back(batchMarker(false));
  return b;
}

std::string describe(const HostRules& h) {
  if (Status s = validate(h); !s) return "invalid: " + s.error().message() + "\n";
  Objects o = buildObjects(h);
  std::string out;
  out += "table " + snprintObj([&](char* b, size_t n) {
           return nftnl_table_snprintf(b, n, o.table.get(), NFTNL_OUTPUT_DEFAULT, 0);
         }) + "\n";
  for (nftnl_set* s : {o.vips.get(), o.peers.get()}) {
    out += "set " + snprintObj([&](char* b, size_t n) {
             return nftnl_set_snprintf(b, n, s, NFTNL_OUTPUT_DEFAULT, 0);
           }) + "\n";
  }
  out += "chain " + snprintObj([&](char* b, size_t n) {
           return nftnl_chain_snprintf(b, n, o.chain.get(), NFTNL_OUTPUT_DEFAULT, 0);
         }) + "\n";
  for (const BuiltRule& r : o.rules) {
    out += "rule # " + r.text + "\n";
    out += snprintObj([&](char* b, size_t n) {
      return nftnl_rule_snprintf(b, n, r.rule.get(), NFTNL_OUTPUT_DEFAULT, 0);
    }) + "\n";
  }
  return out;
}

Status applyHostRules(const HostRules& h) {
  auto b = buildHostRules(h, true);
  if (!b) return b.error();
  auto s = openNft();
  if (!s) return s.error();
  return s->transact(*b);
}

Status deleteTable(std::string_view table) {
  if (Status s = validateName("table", table, NFT_NAME_MAXLEN - 1); !s) return s;
  TablePtr t = makeTable(table);
  nl::Batch b;
  b.messages.push_back(batchMarker(true));
  addTableMsgs(b, std::string(table), true, 0xFFFF, t.get());
  b.messages.push_back(batchMarker(false));
  auto s = openNft();
  if (!s) return s.error();
  return s->transact(b);
}

Status setTunnelPeers(std::string_view table, std::span<const IpAddress> peers) {
  auto b = buildSetTunnelPeers(table, peers);
  if (!b) return b.error();
  auto s = openNft();
  if (!s) return s.error();
  return s->transact(*b);
}

Result<bool> tableExists(std::string_view table) {
  if (Status s = validateName("table", table, NFT_NAME_MAXLEN - 1); !s) return s.error();
  TablePtr t = makeTable(table);
  nl::Message m = nftMessage(NFT_MSG_GETTABLE, 0, "NFT_MSG_GETTABLE " + tableWhat(table), 512,
                             [&](nlmsghdr* nlh) { nftnl_table_nlmsg_build_payload(nlh, t.get()); });
  auto s = openNft();
  if (!s) return s.error();
  bool seen = false;
  Status st = s->transact(std::move(m), [&](size_t, const nlmsghdr*) -> Status {
    seen = true;
    return Ok{};
  });
  if (!st) {
    if (st.error().code == ENOENT) return false;
    return st.error();
  }
  return seen;
}

Result<DropCounters> readDropCounters(std::string_view table, std::string_view chain) {
  if (Status s = validateName("table", table, NFT_NAME_MAXLEN - 1); !s) return s.error();
  RulePtr q(nftnl_rule_alloc());
  nftnl_rule_set_str(q.get(), NFTNL_RULE_TABLE, std::string(table).c_str());
  nftnl_rule_set_str(q.get(), NFTNL_RULE_CHAIN, std::string(chain).c_str());
  nftnl_rule_set_u32(q.get(), NFTNL_RULE_FAMILY, kFamily);
  nl::Message m = nftMessage(NFT_MSG_GETRULE, NLM_F_DUMP,
                             "NFT_MSG_GETRULE " + tableWhat(table) + " chain " + std::string(chain), 1024,
                             [&](nlmsghdr* nlh) { nftnl_rule_nlmsg_build_payload(nlh, q.get()); });
  m.dump = true;
  auto s = openNft();
  if (!s) return s.error();
  std::vector<std::pair<uint64_t, uint64_t>> counters;  // per rule, in chain order
  Status st = s->transact(std::move(m), [&](size_t, const nlmsghdr* nlh) -> Status {
    RulePtr r(nftnl_rule_alloc());
    if (nftnl_rule_nlmsg_parse(nlh, r.get()) < 0) return sysError("parse NFT_MSG_NEWRULE");
    // The dump filter by table/chain is honoured by the kernel, but be sure.
    if (std::string_view(nftnl_rule_get_str(r.get(), NFTNL_RULE_CHAIN)) != chain) return Ok{};
    std::pair<uint64_t, uint64_t> c{0, 0};
    nftnl_expr_foreach(
        r.get(),
        [](nftnl_expr* e, void* data) -> int {
          if (std::string_view(nftnl_expr_get_str(e, NFTNL_EXPR_NAME)) == "counter") {
            auto* p = static_cast<std::pair<uint64_t, uint64_t>*>(data);
            p->first = nftnl_expr_get_u64(e, NFTNL_EXPR_CTR_PACKETS);
            p->second = nftnl_expr_get_u64(e, NFTNL_EXPR_CTR_BYTES);
          }
          return 0;
        },
        &c);
    counters.push_back(c);
    return Ok{};
  });
  if (!st) return st.error();
  DropCounters d;
  if (counters.size() >= 1) {
    d.non_peer_tunnel_packets = counters[0].first;
    d.non_peer_tunnel_bytes = counters[0].second;
  }
  if (counters.size() >= 2) {
    d.vip_not_via_tunnel_packets = counters[1].first;
    d.vip_not_via_tunnel_bytes = counters[1].second;
  }
  return d;
}

}  // namespace slr::nft
