#include "cmd/tables.h"

#include <algorithm>
#include <cstdio>
#include <initializer_list>
#include <iomanip>
#include <sstream>
#include <utility>

namespace slr::cli {
namespace {

using json = nlohmann::json;

bool numeric(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || c == '.' || c == '-';
  }) && s != "-";
}

std::string str(const json& v) {
  if (v.is_null()) return "-";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "yes" : "no";
  if (v.is_number_float()) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3f", v.get<double>());
    return buf;
  }
  return v.dump();
}

std::string get(const json& j, const char* key) { return j.contains(key) ? str(j[key]) : "-"; }

// Like get(), but an empty string is shown as "-" too.
std::string getOrDash(const json& j, const char* key) {
  std::string s = get(j, key);
  return s.empty() ? "-" : s;
}

// A share of new flows (0..1) as a percentage; "-" when absent.
std::string percent(const json& j, const char* key) {
  if (!j.contains(key) || !j[key].is_number()) return "-";
  char buf[16];
  std::snprintf(buf, sizeof buf, "%.0f%%", j[key].get<double>() * 100);
  return buf;
}

// A next hop's state, marked when it is a standby (disaster-recovery) one.
std::string hopState(const json& h) {
  std::string s = get(h, "state");
  if (h.contains("standby") && h["standby"].is_boolean() && h["standby"].get<bool>())
    s += " (standby)";
  return s;
}

}  // namespace

void Table::print(std::ostream& out) const {
  std::vector<size_t> w(header_.size(), 0);
  for (size_t i = 0; i < header_.size(); ++i) w[i] = header_[i].size();
  for (const auto& r : rows_)
    for (size_t i = 0; i < r.size() && i < w.size(); ++i) w[i] = std::max(w[i], r[i].size());
  auto line = [&](const std::vector<std::string>& r, bool head) {
    std::ostringstream l;
    for (size_t i = 0; i < w.size(); ++i) {
      const std::string& c = i < r.size() ? r[i] : std::string();
      bool right = !head && numeric(c);
      bool last = i + 1 == w.size();
      l << (right ? std::right : std::left) << std::setw(int(w[i])) << c << (last ? "" : "  ");
    }
    // No trailing blanks (a left-aligned last column, or empty cells at the
    // end of a continuation row).
    std::string text = l.str();
    text.erase(text.find_last_not_of(' ') + 1);
    out << text << '\n';
  };
  line(header_, true);
  for (const auto& r : rows_) line(r, false);
}

void printStatus(const json& j, std::ostream& out) {
  if (get(j, "role") == "host") {
    out << "host " << get(j, "name") << "  tunnel " << get(j, "tunnel_mode") << " ("
        << get(j, "tunnel_device") << ", " << get(j, "tunnel_address") << ")  load "
        << get(j, "load") << " (" << get(j, "load_source") << ")\n";
    out << "subnets:";
    // {prefix, available} (older agents: plain prefix strings).
    for (const auto& s : j.value("subnets", json::array())) {
      if (!s.is_object()) {
        out << ' ' << str(s);
        continue;
      }
      out << ' ' << get(s, "prefix") << (s.value("available", true) ? "" : " (unavailable)");
    }
    if (j.value("drained", false)) out << "  DRAINED";
    out << "\n\n";
    if (!j.value("checks", json::array()).empty()) {
      Table c({"CHECK", "TYPE", "HEALTHY", "FOR", "PASSES", "FAILURES", "LAST RESULT"});
      for (const auto& k : j["checks"])
        c.add({get(k, "name"), get(k, "type"), get(k, "healthy"), get(k, "since_s") + "s", get(k, "passes"),
               get(k, "failures"), get(k, "last_result")});
      c.print(out);
      out << '\n';
    }
    Table t({"SLR", "ADDRESS", "STATE", "UPDATES", "LAST ERROR"});
    for (const auto& s : j.value("slrs", json::array()))
      t.add({get(s, "name"), get(s, "address"), get(s, "state"), get(s, "updates_sent"),
             get(s, "last_error")});
    t.print(out);
    out << "\ntunnel: " << get(j.value("tunnel", json::object()), "packets") << " packets, "
        << get(j.value("tunnel", json::object()), "bytes") << " bytes\n";
    if (j.contains("kernel_decap")) {
      const json kd = j["kernel_decap"];
      out << "kernel decapsulation: " << get(kd, "state");
      if (kd.value("enabled", false)) out << "; " << get(kd, "packets") << " packets in the kernel";
      out << '\n';
    }
    if (j.contains("recovery")) {
      const json r = j["recovery"];
      out << "flow recovery: " << get(r, "state");
      if (r.value("enabled", false))
        out << "; " << get(r, "watched") << " watched, " << get(r, "stalled") << " stalled, "
            << get(r, "echoes_sent") << " echoes sent, " << get(r, "replies_received") << " replies, "
            << get(r, "recovered") << " recovered";
      out << '\n';
    }
    Table d({"DROP REASON", "PACKETS"});
    const json drops = j.value("drops", json::object());  // items() borrows: keep it alive
    for (auto& [k, v] : drops.items()) d.add({k, str(v)});
    d.print(out);
    return;
  }
  out << "slr " << get(j, "name") << "  policy " << get(j, "policy") << "  workers "
      << get(j, "workers") << "  uptime " << get(j, "uptime_s") << "s  hosts up "
      << get(j, "hosts_up") << "/" << get(j, "hosts_configured") << "\n\n";
  Table v({"VIP", "SUBNET", "FLOWS", "PACKETS", "BYTES"});
  for (const auto& e : j.value("vips", json::array()))
    v.add({get(e, "name"), get(e, "subnet"), get(e, "flows"), get(e, "packets"), get(e, "bytes")});
  v.print(out);
  const json f = j.value("flows", json::object());
  const json p = j.value("packets", json::object());
  out << "\nflows: " << get(f, "active") << " active / " << get(f, "capacity") << " capacity, "
      << get(f, "created") << " created, " << get(f, "expired") << " expired, "
      << get(f, "table_full") << " table-full (" << get(f, "on_full") << ": "
      << get(f, "stateless_forwarded") << " forwarded without state)\n";
  out << "packets: rx " << get(p, "rx") << " (" << get(p, "rx_bytes") << " bytes), tx "
      << get(p, "tx") << " (" << get(p, "tx_bytes") << " bytes), icmp too-big sent "
      << get(p, "icmp_too_big_sent") << "\n";
  const json fp = j.value("fast_path", json::object());
  out << "fast path: " << get(fp, "state");
  if (fp.value("enabled", false)) {
    out << "; " << get(fp, "flows") << " flows installed, " << get(p, "fast_path")
        << " packets forwarded in the kernel, " << get(p, "userspace") << " in userspace";
  }
  out << "\n\n";
  Table d({"DROP REASON", "PACKETS"});
  const json drops = j.value("drops", json::object());  // items() borrows: keep it alive
  for (auto& [k, val] : drops.items()) {
    if (val.is_number() && val.get<uint64_t>() > 0) d.add({k, str(val)});
  }
  if (d.empty()) {
    out << "drops: none\n";
  } else {
    d.print(out);
  }
  const json c = j.value("control", json::object());
  out << "\ncontrol " << get(c, "listen") << ": " << get(c, "connections") << " connections, "
      << get(c, "registered") << " registrations, " << get(c, "updates") << " updates; refused:";
  bool any = false;
  const json refused = c.value("refused", json::object());
  for (auto& [k, val] : refused.items()) {
    if (val.is_number() && val.get<uint64_t>() > 0) {
      out << ' ' << k << '=' << str(val);
      any = true;
    }
  }
  out << (any ? "" : " none") << '\n';
  // Hierarchy (absent from daemons that predate it: then nothing is shown).
  if (j.contains("level") && j["level"].is_object()) {
    const json lv = j["level"];
    const json ups = lv.value("upstreams", json::array());
    out << '\n';
    if (ups.empty()) {
      out << "upstream SLRs: none (top level)\n";
    } else {
      Table u({"UPSTREAM", "ADDRESS", "STATE", "UPDATES", "LAST ERROR"});
      for (const auto& e : ups)
        u.add({get(e, "name"), get(e, "address"), get(e, "state"), get(e, "updates_sent"),
               getOrDash(e, "last_error")});
      u.print(out);
    }
    out << "lower SLRs up: " << get(lv, "children_slr");
    if (lv.contains("tunnel_rx")) out << "; packets tunnelled from upstream SLRs: " << get(lv, "tunnel_rx");
    out << '\n';
  }
  if (j.contains("shortcut") && j["shortcut"].is_object()) {
    const json sc = j["shortcut"];
    out << "\nshortcut: " << (sc.value("enabled", false) ? "on" : "off");
    if (sc.contains("wait_ms")) out << " (wait " << get(sc, "wait_ms") << "ms)";
    out << '\n';
    // Only the counters this daemon reports, in a fixed order.
    auto counters = [&](const char* title, std::initializer_list<std::pair<const char*, const char*>> keys) {
      std::string line;
      for (const auto& [key, label] : keys) {
        if (!sc.contains(key)) continue;
        line += (line.empty() ? "" : ", ") + std::string(label) + ' ' + str(sc[key]);
      }
      if (!line.empty()) out << "  " << title << ": " << line << '\n';
    };
    counters("signals", {{"sent", "sent"},
                         {"send_dropped", "send dropped"},
                         {"relayed", "relayed"},
                         {"received", "received"},
                         {"ignored", "ignored"},
                         {"refused", "refused"},
                         {"queue_full", "queue full"},
                         {"applied", "applied"},
                         {"unknown", "unknown"}});
    counters("packets", {{"packets", "sent by shortcut"},
                         {"held_packets", "held"},
                         {"released_packets", "released"},
                         {"hold_timeouts", "hold timeouts"},
                         {"hold_overflow", "not held (overflow)"}});
  }
  if (j.contains("whohas") && j["whohas"].is_object() && j["whohas"].value("enabled", false)) {
    const json w = j["whohas"];
    out << "\nwhohas: wait " << get(w, "wait_ms") << "ms, scope " << get(w, "scope") << "; asked "
        << get(w, "asked") << ", resolved " << get(w, "resolved") << ", answers found "
        << get(w, "answered_found") << " / unknown " << get(w, "answered_unknown") << ", refused "
        << get(w, "refused") << ", timeouts " << get(w, "timeouts") << "; served "
        << get(w, "queries_served") << " (found " << get(w, "served_found") << ")\n";
    Table n({"NEIGHBOR", "ADDRESS", "STATE", "ASKS US", "LAST ERROR"});
    for (const auto& e : w.value("neighbors", json::array()))
      n.add({get(e, "name"), get(e, "address"), get(e, "state"), get(e, "inbound"),
             getOrDash(e, "last_error")});
    n.print(out);
  }
  if (j.contains("policy_functions") && j["policy_functions"].is_object()) {
    const json pf = j["policy_functions"];
    std::string state = getOrDash(pf, "lua");
    const bool off = state == "-" || state == "off";
    out << "\nLua policy: " << (off ? "off (built-in F and G)" : state);
    if (!off && pf.contains("calls"))
      out << "; " << get(pf, "calls") << " calls, " << get(pf, "errors") << " errors";
    std::string last = getOrDash(pf, "last_error");
    if (last != "-") out << "; last error: " << last;
    out << '\n';
  }
}

void printHosts(const json& j, std::ostream& out) {
  // FLOWS: live flows now; TOTAL: assigned since start.  A daemon from
  // before `flows_total` reported live flows as active_flows.
  Table t({"HOST", "ROLE", "TUNNEL", "STATE", "DRAINED", "SUBNET", "LOAD", "COST", "SHARE", "FLOWS",
           "TOTAL", "PACKETS", "LAST UPDATE", "NOTE"});
  for (const auto& h : j.value("hosts", json::array())) {
    std::string ago = h.contains("last_update_ms_ago") && !h["last_update_ms_ago"].is_null()
                          ? str(h["last_update_ms_ago"]) + "ms ago"
                          : "never";
    const json subs = h.value("subnets", json::array());
    std::string note = getOrDash(h, "last_error");
    std::string state = hopState(h);
    const bool new_keys = h.contains("flows_total");
    const std::string live = new_keys ? get(h, "flows") : get(h, "active_flows");
    const std::string total = new_keys ? get(h, "flows_total") : get(h, "flows");
    const std::string drained = get(h, "drained");
    if (subs.empty()) {
      t.add({get(h, "name"), get(h, "role"), get(h, "tunnel_address"), state, drained, "-", "-", "-",
             "-", live, total, get(h, "packets"), ago, note});
    }
    bool first = true;
    for (const auto& s : subs) {
      t.add({first ? get(h, "name") : "", first ? get(h, "role") : "",
             first ? get(h, "tunnel_address") : "", first ? state : "", first ? drained : "",
             get(s, "prefix"), get(s, "load"), get(s, "cost"), percent(s, "share"),
             first ? live : "", first ? total : "", first ? get(h, "packets") : "",
             first ? ago : "", first ? note : ""});
      first = false;
    }
  }
  t.print(out);
}

void printFlows(const json& j, std::ostream& out) {
  Table t({"PROTO", "SOURCE", "DESTINATION", "HOST", "LABEL", "STATE", "IDLE", "PACKETS"});
  for (const auto& f : j.value("flows", json::array()))
    t.add({get(f, "proto"), get(f, "src"), get(f, "dst"), get(f, "host"), get(f, "label"),
           get(f, "state"), get(f, "idle_ms") + "ms", get(f, "packets")});
  t.print(out);
  out << "(" << j.value("flows", json::array()).size() << " shown, " << get(j, "total")
      << " active)\n";
}

void printExplain(const json& j, std::ostream& out) {
  auto orNone = [&](const char* key) {
    std::string s = j.contains(key) && !j[key].is_null() ? str(j[key]) : "";
    return s.empty() ? std::string("none") : s;
  };
  out << "flow:      " << get(j, "flow") << '\n'
      << "vip:       " << orNone("vip") << '\n'
      << "route:     " << orNone("route") << '\n'
      << "region:    " << orNone("region") << '\n'
      << "class:     " << get(j, "class") << '\n'
      << "affinity:  " << get(j, "affinity") << '\n'
      << "policy:    " << get(j, "policy") << '\n'
      << "mode:      " << get(j, "mode") << '\n';
  out << "existing:  ";
  if (j.contains("existing") && j["existing"].is_object()) {
    const json& e = j["existing"];
    out << get(e, "next_hop") << " -> " << get(e, "endpoint") << ", " << get(e, "state");
    if (e.value("shortcut", false)) out << ", shortcut";
    out << '\n';
  } else {
    out << "none (new flow)\n";
  }
  out << '\n';
  Table t({"NEXT HOP", "ROLE", "TUNNEL", "LOAD", "ROUTE COST", "PROXIMITY", "WEIGHT", "STANDBY",
           "AVAILABLE", "COST", "ELIGIBLE", "SHARE"});
  for (const auto& c : j.value("candidates", json::array()))
    t.add({get(c, "name"), get(c, "role"), get(c, "tunnel_address"), get(c, "load"),
           get(c, "route_cost"), get(c, "proximity"), get(c, "weight"), get(c, "standby"),
           get(c, "available"), get(c, "cost"), get(c, "eligible"), percent(c, "share")});
  if (t.empty()) {
    out << "candidates: none\n";
  } else {
    t.print(out);
  }
  out << "\nchoice:    ";
  if (j.contains("choice") && j["choice"].is_object()) {
    const json& c = j["choice"];
    out << get(c, "next_hop") << " -> " << get(c, "endpoint") << '\n'
        << "reason:    " << get(c, "reason") << '\n';
    if (j.contains("error")) out << "error:     " << str(j["error"]) << '\n';
  } else {
    out << "none\n"
        << "reason:    " << (j.contains("error") ? str(j["error"]) : "no next hop can take this flow now")
        << '\n';
  }
}

}  // namespace slr::cli
