#include "cmd/tables.h"

#include <algorithm>
#include <cstdio>
#include <iomanip>

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

}  // namespace

void Table::print(std::ostream& out) const {
  std::vector<size_t> w(header_.size(), 0);
  for (size_t i = 0; i < header_.size(); ++i) w[i] = header_[i].size();
  for (const auto& r : rows_)
    for (size_t i = 0; i < r.size() && i < w.size(); ++i) w[i] = std::max(w[i], r[i].size());
  auto line = [&](const std::vector<std::string>& r, bool head) {
    for (size_t i = 0; i < w.size(); ++i) {
      const std::string& c = i < r.size() ? r[i] : std::string();
      bool right = !head && numeric(c);
      bool last = i + 1 == w.size();
      // No padding after a left-aligned last column: no trailing blanks.
      out << (right ? std::right : std::left) << std::setw(last && !right ? 0 : int(w[i])) << c;
      out << (last ? "" : "  ");
    }
    out << std::left << '\n';
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
    for (const auto& s : j.value("subnets", json::array())) out << ' ' << str(s);
    out << "\n\n";
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
}

void printHosts(const json& j, std::ostream& out) {
  Table t({"HOST", "TUNNEL", "STATE", "SUBNET", "LOAD", "COST", "SHARE", "ACTIVE", "FLOWS",
           "PACKETS", "LAST UPDATE", "NOTE"});
  for (const auto& h : j.value("hosts", json::array())) {
    std::string ago = h.contains("last_update_ms_ago") && !h["last_update_ms_ago"].is_null()
                          ? str(h["last_update_ms_ago"]) + "ms ago"
                          : "never";
    const json subs = h.value("subnets", json::array());
    std::string note = get(h, "last_error");
    if (note.empty()) note = "-";
    if (subs.empty()) {
      t.add({get(h, "name"), get(h, "tunnel_address"), get(h, "state"), "-", "-", "-", "-",
             get(h, "active_flows"), get(h, "flows"), get(h, "packets"), ago, note});
    }
    bool first = true;
    for (const auto& s : subs) {
      std::string share = "-";
      if (s.contains("share")) {
        char buf[16];
        std::snprintf(buf, sizeof buf, "%.0f%%", s["share"].get<double>() * 100);
        share = buf;
      }
      t.add({first ? get(h, "name") : "", first ? get(h, "tunnel_address") : "",
             first ? get(h, "state") : "", get(s, "prefix"), get(s, "load"), get(s, "cost"), share,
             first ? get(h, "active_flows") : "", first ? get(h, "flows") : "",
             first ? get(h, "packets") : "", first ? ago : "", first ? note : ""});
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

}  // namespace slr::cli
