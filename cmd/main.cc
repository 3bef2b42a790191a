// slrctl: one binary, subcommands.  This file only turns CLI11 options into
// calls; the work lives in core/, slr/ and hostagent/.
//
// Exit codes (documented in slrctl(8)):
//   0 ok, 1 runtime error, 2 usage or config error, 3 daemon not reachable,
//   4 check failed.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "cmd/tables.h"
#include "core/config.h"
#include "core/log.h"
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

// status / hosts / flows: ask a daemon, print a table or the JSON.
int query(const std::string& socket_opt, const std::string& request, bool as_json,
          void (*print)(const nlohmann::json&, std::ostream&)) {
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
    nlohmann::json j = nlohmann::json::parse(r.value(), nullptr, false);
    if (j.is_discarded()) {
      std::cerr << "slrctl: " << p << " answered something that is not JSON\n";
      return kExitRuntime;
    }
    if (j.contains("error")) {
      std::cerr << "slrctl: " << p << ": " << j["error"].get<std::string>() << '\n';
      return kExitRuntime;
    }
    if (as_json) {
      std::cout << j.dump(2) << '\n';
    } else {
      print(j, std::cout);
    }
    return kExitOk;
  }
  std::cerr << "slrctl: no daemon reachable: " << last.message()
            << "\n(is `slrctl slr` or `slrctl host` running? use --socket PATH)\n";
  return kExitUnreachable;
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
      std::cout << check_file << ": valid SLR configuration (" << c->vips.size() << " VIP subnet(s), "
                << c->hosts.size() << " host(s))\n";
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
