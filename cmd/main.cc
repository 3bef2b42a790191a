// slrctl: one binary, subcommands.  This file only turns CLI11 options into
// calls; the work lives in core/, slr/ and hostagent/.
//
// Exit codes (documented in slrctl(8)):
//   0 ok, 1 runtime error, 2 usage or config error, 3 daemon not reachable,
//   4 check failed / `explain`: no next hop would be chosen / `drain --wait`:
//     flows left at the timeout.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "cmd/tables.h"
#include "core/config.h"
#include "core/log.h"
#include "core/lua_policy.h"
#include "core/net_types.h"
#include "core/status_server.h"
#include "hostagent/host_agent.h"
#include "slr/slr_daemon.h"

#ifndef SLR_VERSION
#define SLR_VERSION "dev"
#endif

namespace {

constexpr int kExitOk = 0;
constexpr int kExitRuntime = 1;
constexpr int kExitUsage = 2;
constexpr int kExitUnreachable = 3;
constexpr int kExitNegative = 4;  // a check failed; explain: no next hop (choice null)

std::atomic<bool> g_stop{false};

void onSignal(int) { g_stop.store(true); }

void installSignals() {
  struct sigaction sa {};
  sa.sa_handler = onSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);  // TLS peers that reset must not kill the daemon
}

bool applyLogLevel(const std::string& level, slr::log::Level fallback) {
  slr::log::Level l = fallback;
  if (!level.empty() && !slr::log::parseLevel(level, l)) {
    std::cerr << "slrctl: --log-level: expected trace|debug|info|warn|error, got '" << level << "'\n";
    return false;
  }
  slr::log::setThreshold(l);
  return true;
}

void printConfigError(const slr::Error& e) {
  std::cerr << "slrctl: " << e.op << (e.code ? std::string(": ") + std::strerror(e.code) : "")
            << '\n';
  if (!e.detail.empty()) std::cerr << e.detail << '\n';
}

// check-config: compile the operator's Lua policy ([policy] lua or lua_file,
// which the loader has already resolved to an absolute path) exactly as the
// SLR will load it.  An error is reported in the check-config style,
// "FILE: policy.lua:LINE: message" or "FILE: policy.lua_file: PATH:LINE:
// message", and exits as a configuration error.  `note` describes a policy
// that loaded (", Lua policy: F, G").
int checkLuaPolicy(const std::string& file, const slr::config::PolicyConfig& pc,
                   std::string& note) {
  if (pc.lua.empty() && pc.lua_file.empty()) return kExitOk;
  const bool inline_src = !pc.lua.empty();
  const std::string key = inline_src ? "policy.lua" : "policy.lua_file";
  auto fail = [&](const std::string& what) {
    printConfigError(slr::Error{0, "config " + file, file + ": " + what});
    return kExitUsage;
  };
  // Inline: Lua messages then read "policy.lua:LINE: ...".
  const std::string chunk = inline_src ? "policy.lua" : pc.lua_file;
  auto source = slr::LuaPolicy::readConfigured(pc.lua, pc.lua_file);
  if (!source)
    return fail(key + ": cannot read " + pc.lua_file + ": " + std::strerror(source.error().code));
  auto l = slr::LuaPolicy::load(*source, chunk);
  if (!l) {
    // Syntax and runtime errors already start with "CHUNK:LINE:"; the others
    // (no F or G, F not a function, limits) do not.
    const std::string& d = l.error().detail.empty() ? l.error().op : l.error().detail;
    std::string where = d.rfind(chunk + ":", 0) == 0 ? "" : chunk + ": ";
    return fail(inline_src ? (where.empty() ? d : key + ": " + d)
                           : key + ": " + where + d);
  }
  note = ", Lua policy: " + (*l)->functions();
  return kExitOk;
}

// Send one request to the status socket (--socket, or the SLR's and then the
// host agent's default) and parse the JSON reply.  Returns kExitOk with `j`
// and `path` (the socket that answered) set, or the exit code after printing
// why not.  A reply with "error" is returned as is: the caller decides.
int fetch(const std::string& socket_opt, const std::string& request, nlohmann::json& j,
          std::string& path) {
  std::vector<std::string> paths;
  if (!socket_opt.empty()) {
    paths.push_back(socket_opt);
  } else {
    paths = {"/run/slrctl/slr.sock", "/run/slrctl/host.sock"};
  }
  slr::Error last;
  for (const auto& p : paths) {
    auto r = slr::statusRequest(p, request);
    if (!r) {
      last = r.error();
      continue;
    }
    j = nlohmann::json::parse(r.value(), nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      std::cerr << "slrctl: " << p << " answered something that is not a JSON object\n";
      return kExitRuntime;
    }
    path = p;
    return kExitOk;
  }
  std::cerr << "slrctl: no daemon reachable: " << last.message()
            << "\n(is `slrctl slr` or `slrctl host` running? use --socket PATH)\n";
  return kExitUnreachable;
}

std::string errorText(const nlohmann::json& e) {
  return e.is_string() ? e.get<std::string>() : e.dump();
}

// status / hosts / flows: ask a daemon, print a table or the JSON.
int query(const std::string& socket_opt, const std::string& request, bool as_json,
          void (*print)(const nlohmann::json&, std::ostream&)) {
  nlohmann::json j;
  std::string p;
  if (int rc = fetch(socket_opt, request, j, p); rc != kExitOk) return rc;
  if (j.contains("error")) {
    std::cerr << "slrctl: " << p << ": " << errorText(j["error"]) << '\n';
    return kExitRuntime;
  }
  if (as_json) {
    std::cout << j.dump(2) << '\n';
  } else {
    print(j, std::cout);
  }
  return kExitOk;
}

// explain PROTO SRC[:SPORT] DST[:DPORT]: the request line the SLR expects,
// normalised ("explain tcp 10.0.1.2:40000 10.100.0.10:80"), or an error
// message for the operator.  PROTO: tcp, udp, icmp (any case) or 0..255;
// sent as the name for those three, as the number otherwise.  Ports are
// required for TCP and UDP, optional for ICMP (the echo identifier; default
// 0) and must be absent or 0 for protocols without ports.  IPv4 only, like
// the data path.
bool explainRequest(const std::string& proto_text, const std::string& src_text,
                    const std::string& dst_text, std::string& request, std::string& err) {
  std::string lower;
  for (char c : proto_text) lower += char(std::tolower(static_cast<unsigned char>(c)));
  int proto = -1;
  if (lower == "tcp") {
    proto = 6;
  } else if (lower == "udp") {
    proto = 17;
  } else if (lower == "icmp") {
    proto = 1;
  } else if (!lower.empty() && lower.size() <= 3 &&
             std::all_of(lower.begin(), lower.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    proto = std::stoi(lower);
    if (proto > 255) proto = -1;
  }
  if (proto < 0) {
    err = "PROTO: expected tcp, udp, icmp or a protocol number 0..255, got '" + proto_text + "'";
    return false;
  }
  const bool has_ports = proto == 6 || proto == 17;
  const std::string pname = proto == 6 ? "tcp" : proto == 17 ? "udp" : proto == 1 ? "icmp"
                                                                                   : std::to_string(proto);
  auto endpoint = [&](const std::string& what, const std::string& text, std::string& out) {
    std::string addr = text, port;
    if (auto colon = text.rfind(':'); colon != std::string::npos) {
      addr = text.substr(0, colon);
      port = text.substr(colon + 1);
      if (port.empty()) {
        err = what + ": empty port in '" + text + "'";
        return false;
      }
    }
    auto a = slr::IpAddress::parse(addr);
    if (!a || !a->isV4()) {
      err = what + ": expected an IPv4 address" + (has_ports ? ":port" : "[:port]") + ", got '" +
            text + "'";
      return false;
    }
    unsigned long n = 0;
    if (port.empty()) {
      if (has_ports) {
        err = what + ": " + pname + " needs a port: expected ADDRESS:PORT, got '" + text + "'";
        return false;
      }
    } else {
      if (port.size() > 5 ||
          !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
          (n = std::stoul(port)) > 65535) {
        err = what + ": expected a port 0..65535, got '" + port + "'";
        return false;
      }
      if (!has_ports && proto != 1 && n != 0) {
        err = what + ": protocol " + pname + " has no ports, got port " + port;
        return false;
      }
    }
    out = a->str() + ":" + std::to_string(n);
    return true;
  };
  std::string src, dst;
  if (!endpoint("SRC", src_text, src) || !endpoint("DST", dst_text, dst)) return false;
  request = "explain " + pname + " " + src + " " + dst;
  return true;
}

// Exit: 0 with a choice; kExitNegative when the flow is for a VIP but no next
// hop can take it (the SLR explains why in "error": no route, none
// eligible); kExitRuntime when the request itself failed ("error" and no
// VIP: bad request, not a VIP, or a daemon that does not know `explain`).
int explain(const std::string& socket_opt, const std::string& request, bool as_json) {
  nlohmann::json j;
  std::string p;
  if (int rc = fetch(socket_opt, request, j, p); rc != kExitOk) return rc;
  const bool chosen = j.contains("choice") && j["choice"].is_object();
  const bool for_vip = j.contains("vip") && j["vip"].is_string();
  const bool failed = j.contains("error") && !chosen && !for_vip;
  if (as_json) {
    std::cout << j.dump(2) << '\n';
  } else if (!failed) {
    slr::cli::printExplain(j, std::cout);
  }
  if (failed) {
    std::cerr << "slrctl: " << p << ": " << errorText(j["error"]) << '\n';
    return kExitRuntime;
  }
  return chosen ? kExitOk : kExitNegative;
}

// The live flows the SLR reports for host `name` (hosts[i].flows); -1 when
// the host is not in the answer.
long long hostFlows(const nlohmann::json& hosts, const std::string& name) {
  for (const auto& h : hosts.value("hosts", nlohmann::json::array())) {
    if (h.value("name", std::string()) == name || (h.contains("id") && h["id"].dump() == name))
      return h.value("flows", 0LL);
  }
  return -1;
}

// drain / undrain NAME on an SLR (NAME: [[host]] name or id), or without NAME
// on a host agent (the host drains itself).  --wait (drain only): poll
// `hosts` once a second until the host has no flows left (exit 0) or the
// timeout passes (exit kExitNegative), printing the remaining count.
int drainCmd(const std::string& socket_opt, bool drain, const std::string& name, bool wait,
             double wait_s, bool as_json) {
  const std::string verb = drain ? "drain" : "undrain";
  if (wait && name.empty()) {
    std::cerr << "slrctl " << verb << ": --wait needs NAME (a host of an SLR)\n";
    return kExitUsage;
  }
  if (wait && !(wait_s > 0)) {
    std::cerr << "slrctl " << verb << ": --wait: expected SECONDS > 0\n";
    return kExitUsage;
  }
  nlohmann::json j;
  std::string p;
  if (int rc = fetch(socket_opt, name.empty() ? verb : verb + " " + name, j, p); rc != kExitOk) return rc;
  if (j.contains("error")) {
    std::cerr << "slrctl " << verb << ": " << p << ": " << errorText(j["error"]) << '\n';
    return kExitRuntime;
  }
  const std::string host = j.value("host", name.empty() ? std::string("this host") : name);
  if (!j.value("applied", true)) {
    std::cerr << "slrctl " << verb << ": " << p << ": warning: the SLR's tables had not caught up "
              << "after 2 s; new flows follow at its next rebuild\n";
  }
  if (!wait) {
    if (as_json) {
      std::cout << j.dump(2) << '\n';
    } else {
      std::cout << host << (drain ? " drained: no new flows" : " undrained: takes new flows again");
      if (j.contains("flows")) std::cout << "; " << j["flows"].dump() << " flow(s) now";
      std::cout << '\n';
    }
    return kExitOk;
  }
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::milliseconds(static_cast<long long>(wait_s * 1000));
  long long flows = j.value("flows", -1LL);
  long long shown = -2;
  for (;;) {
    if (flows >= 0 && flows != shown && !as_json) {
      std::cout << host << ": " << flows << " flow(s) remaining" << std::endl;
      shown = flows;
    }
    if (flows == 0) break;
    if (Clock::now() >= deadline) {
      if (as_json) {
        j["flows"] = flows;
        j["timeout"] = true;
        std::cout << j.dump(2) << '\n';
      }
      std::cerr << "slrctl drain: " << host << " still has " << flows << " flow(s) after " << wait_s
                << "s\n";
      return kExitNegative;
    }
    std::this_thread::sleep_for(std::chrono::seconds(1));
    nlohmann::json hj;
    std::string hp;
    if (int rc = fetch(p, "hosts", hj, hp); rc != kExitOk) return rc;
    flows = hostFlows(hj, host);
    if (flows < 0) {
      std::cerr << "slrctl drain: " << p << ": host " << host << " is not in the `hosts` answer\n";
      return kExitRuntime;
    }
  }
  const auto waited = std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - start).count();
  if (as_json) {
    j["flows"] = 0;
    j["waited_s"] = waited;
    std::cout << j.dump(2) << '\n';
  } else {
    std::cout << host << ": drained, no flows left (waited " << waited << "s)\n";
  }
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"slrctl: service-level routing - a layer-4 load balancer with tunnels and direct "
               "server return"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("slrctl ") + SLR_VERSION);

  std::string config_path, log_level, socket_path;
  bool as_json = false;
  size_t limit = 100;

  auto* slr_cmd = app.add_subcommand("slr", "run a Service Level Router");
  slr_cmd->add_option("-c,--config", config_path, "SLR configuration file (TOML)")->required();
  slr_cmd->add_option("--log-level", log_level, "trace|debug|info|warn|error (overrides the config)");

  auto* host_cmd = app.add_subcommand("host", "run the host agent (or `host check`)");
  host_cmd->add_option("-c,--config", config_path, "host configuration file (TOML)");
  host_cmd->add_option("--log-level", log_level, "trace|debug|info|warn|error (overrides the config)");
  auto* check_cmd = host_cmd->add_subcommand("check", "check point by point that this host is set up for direct server return");
  check_cmd->add_option("-c,--config", config_path, "host configuration file (TOML)")->required();
  check_cmd->add_flag("--json", as_json, "machine-readable output");

  std::string check_file;
  auto* cc_cmd = app.add_subcommand("check-config", "validate a configuration file without running it");
  cc_cmd->add_option("file", check_file, "configuration file")->required();

  auto* status_cmd = app.add_subcommand("status", "summary of a running daemon");
  auto* hosts_cmd = app.add_subcommand("hosts", "hosts known to a running SLR: state, load, cost, flows");
  auto* flows_cmd = app.add_subcommand("flows", "flow table of a running SLR");
  for (auto* c : {status_cmd, hosts_cmd, flows_cmd}) {
    c->add_option("-s,--socket", socket_path, "status socket (default: /run/slrctl/slr.sock, then host.sock)");
    c->add_flag("--json", as_json, "print the daemon's JSON document");
  }
  flows_cmd->add_option("-n,--limit", limit, "show at most this many flows (default 100)");
  std::string ex_proto, ex_src, ex_dst;
  auto* explain_cmd = app.add_subcommand(
      "explain", "which next hop a running SLR would give a flow now, and why (sends no traffic)");
  explain_cmd->add_option("-s,--socket", socket_path, "status socket (default: /run/slrctl/slr.sock, then host.sock)");
  explain_cmd->add_flag("--json", as_json, "print the daemon's JSON document");
  explain_cmd->add_option("PROTO", ex_proto, "tcp, udp, icmp or a protocol number")->required();
  explain_cmd->add_option("SRC", ex_src, "client ADDRESS[:PORT] (port required for tcp and udp)")->required();
  explain_cmd->add_option("DST", ex_dst, "destination (VIP) ADDRESS[:PORT] (port required for tcp and udp)")
      ->required();
  std::string drain_name;
  std::string drain_wait = "300";
  auto* drain_cmd = app.add_subcommand(
      "drain", "stop giving new flows to a host (SLR: NAME; host agent: no NAME, drains itself)");
  auto* undrain_cmd = app.add_subcommand("undrain", "give a drained host new flows again");
  for (auto* c : {drain_cmd, undrain_cmd}) {
    c->add_option("-s,--socket", socket_path, "status socket (default: /run/slrctl/slr.sock, then host.sock)");
    c->add_flag("--json", as_json, "print the daemon's JSON document");
    c->add_option("NAME", drain_name, "the SLR's [[host]] name (or id); omit on a host agent");
  }
  auto* wait_opt = drain_cmd
                       ->add_option("--wait", drain_wait,
                                    "wait until the host has no flows left (at most SECONDS, default 300); "
                                    "exit 4 on timeout")
                       ->expected(0, 1)
                       ->default_str("300")
                       ->type_name("[=SECONDS]");
  auto* version_cmd = app.add_subcommand("version", "print the version");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : kExitUsage;
  }

  if (version_cmd->parsed()) {
    std::cout << "slrctl " << SLR_VERSION << '\n';
    return kExitOk;
  }
  if (cc_cmd->parsed()) {
    auto role = slr::config::detectRole(check_file);
    if (!role) {
      printConfigError(role.error());
      return kExitUsage;
    }
    if (*role == slr::config::Role::kSlr) {
      auto c = slr::config::loadSlrConfig(check_file);
      if (!c) {
        printConfigError(c.error());
        return kExitUsage;
      }
      std::string lua_note;
      if (int rc = checkLuaPolicy(check_file, c->policy, lua_note); rc != kExitOk) return rc;
      std::cout << check_file << ": valid SLR configuration (" << c->vips.size() << " VIP subnet(s), "
                << c->hosts.size() << " host(s)" << lua_note << ")\n";
    } else {
      auto c = slr::config::loadHostConfig(check_file);
      if (!c) {
        printConfigError(c.error());
        return kExitUsage;
      }
      std::cout << check_file << ": valid host configuration (" << c->subnets.size()
                << " subnet(s), " << c->slrs.size() << " SLR(s))\n";
    }
    return kExitOk;
  }
  if (status_cmd->parsed()) return query(socket_path, "status", as_json, slr::cli::printStatus);
  if (hosts_cmd->parsed()) return query(socket_path, "hosts", as_json, slr::cli::printHosts);
  if (flows_cmd->parsed())
    return query(socket_path, "flows " + std::to_string(limit), as_json, slr::cli::printFlows);
  if (drain_cmd->parsed()) {
    // `drain --wait host1`: the optional value took the name.
    double wait_s = 300;
    if (!drain_wait.empty()) {
      char* end = nullptr;
      wait_s = std::strtod(drain_wait.c_str(), &end);
      if (end == drain_wait.c_str() || *end != '\0') {
        if (!drain_name.empty()) {
          std::cerr << "slrctl drain: --wait: expected SECONDS, got '" << drain_wait << "'\n";
          return kExitUsage;
        }
        drain_name = drain_wait;
        wait_s = 300;
      }
    }
    return drainCmd(socket_path, true, drain_name, wait_opt->count() > 0, wait_s, as_json);
  }
  if (undrain_cmd->parsed()) return drainCmd(socket_path, false, drain_name, false, 0, as_json);
  if (explain_cmd->parsed()) {
    std::string request, err;
    if (!explainRequest(ex_proto, ex_src, ex_dst, request, err)) {
      std::cerr << "slrctl explain: " << err << '\n';
      return kExitUsage;
    }
    return explain(socket_path, request, as_json);
  }

  if (slr_cmd->parsed()) {
    auto cfg = slr::config::loadSlrConfig(config_path);
    if (!cfg) {
      printConfigError(cfg.error());
      return kExitUsage;
    }
    if (!applyLogLevel(log_level, cfg->slr.log_level)) return kExitUsage;
    installSignals();
    return slr::router::runSlr(*cfg, g_stop);
  }
  if (host_cmd->parsed()) {
    if (config_path.empty()) {
      std::cerr << "slrctl host: --config is required\n";
      return kExitUsage;
    }
    auto cfg = slr::config::loadHostConfig(config_path);
    if (!cfg) {
      printConfigError(cfg.error());
      return kExitUsage;
    }
    if (check_cmd->parsed()) return slr::host::runHostCheck(*cfg, as_json, std::cout);
    if (!applyLogLevel(log_level, cfg->host.log_level)) return kExitUsage;
    installSignals();
    return slr::host::runHostAgent(*cfg, g_stop);
  }
  return kExitUsage;
}
