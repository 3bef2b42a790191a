#include "core/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#ifndef SLR_SOURCE_DIR
#define SLR_SOURCE_DIR "/work/main"
#endif

namespace slr::config {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Lines = std::vector<std::string>;

constexpr std::string_view kSlrBase = R"(
[slr]
name = "slr1"
control_listen = "10.0.2.2:7400"
tunnel_source = "10.0.2.2"

[tls]
ca = "ca.pem"
cert = "slr.pem"
key = "slr.key"

[[vip]]
name = "web"
subnet = "10.100.0.0/24"

[[host]]
name = "host1"
subnets = ["10.100.0.0/24"]
)";

constexpr std::string_view kHostBase = R"(
[host]
name = "host1"
tunnel_address = "10.0.3.11"

[tls]
ca = "ca.pem"
cert = "h.pem"
key = "h.key"

[[slr]]
address = "10.0.2.2:7400"
name = "slr1"

[[subnet]]
prefix = "10.100.0.0/24"
)";

// kSlrBase / kHostBase with one exact substring replaced (must occur).
std::string edit(std::string_view base, std::string_view from, std::string_view to) {
  std::string s(base);
  auto pos = s.find(from);
  EXPECT_NE(pos, std::string::npos) << "test bug: '" << from << "' not in base";
  if (pos != std::string::npos) s.replace(pos, from.size(), to);
  return s;
}

Lines slrErrors(std::string_view text) {
  auto r = loadSlrConfigFromString(text, "t.toml");
  EXPECT_FALSE(r.ok()) << "config unexpectedly valid:\n" << text;
  if (r.ok()) return {};
  return errorLines(r.error());
}

Lines hostErrors(std::string_view text) {
  auto r = loadHostConfigFromString(text, "h.toml");
  EXPECT_FALSE(r.ok()) << "config unexpectedly valid:\n" << text;
  if (r.ok()) return {};
  return errorLines(r.error());
}

// ------------------------------------------------------------ examples ----

TEST(ConfigExamples, SlrExampleParses) {
  std::string path = std::string(SLR_SOURCE_DIR) + "/packaging/examples/slr.toml";
  auto r = loadSlrConfig(path);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->slr.name, "slr1");
  EXPECT_EQ(r->slr.control_listen.str(), "10.0.2.2:7400");
  EXPECT_EQ(r->source_path, path);
  ASSERT_EQ(r->vips.size(), 1u);
  EXPECT_EQ(r->hosts.size(), 2u);
  auto role = detectRole(path);
  ASSERT_TRUE(role.ok());
  EXPECT_EQ(*role, Role::kSlr);
}

TEST(ConfigExamples, HostExampleParses) {
  std::string path = std::string(SLR_SOURCE_DIR) + "/packaging/examples/host.toml";
  auto r = loadHostConfig(path);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->host.name, "host1");
  ASSERT_EQ(r->slrs.size(), 1u);
  EXPECT_EQ(r->slrs[0].tunnel_source.str(), "10.0.2.2");
  ASSERT_EQ(r->subnets.size(), 1u);
  EXPECT_EQ(r->subnets[0].str(), "10.100.0.0/24");
  auto role = detectRole(path);
  ASSERT_TRUE(role.ok());
  EXPECT_EQ(*role, Role::kHost);
}

// The examples claim to show every default; keep them honest.
TEST(ConfigExamples, ExamplesShowTheDefaults) {
  auto ex = loadSlrConfig(std::string(SLR_SOURCE_DIR) + "/packaging/examples/slr.toml");
  auto def = loadSlrConfigFromString(kSlrBase, "t.toml");
  ASSERT_TRUE(ex.ok() && def.ok());
  EXPECT_EQ(ex->slr.status_socket, def->slr.status_socket);
  EXPECT_EQ(ex->slr.tun_name, def->slr.tun_name);
  EXPECT_EQ(ex->slr.workers, def->slr.workers);
  EXPECT_EQ(ex->slr.tunnel_mtu, def->slr.tunnel_mtu);
  EXPECT_EQ(ex->flows.capacity, def->flows.capacity);
  EXPECT_EQ(ex->flows.timeouts.tcp_established, def->flows.timeouts.tcp_established);
  EXPECT_EQ(ex->policy.hold_time, def->policy.hold_time);
  EXPECT_EQ(ex->policy.tie_tolerance, def->policy.tie_tolerance);
  EXPECT_EQ(ex->slr.shortcut, def->slr.shortcut);
  EXPECT_EQ(ex->slr.shortcut_wait, def->slr.shortcut_wait);
  EXPECT_EQ(ex->policy.route_cost_source, def->policy.route_cost_source);
  EXPECT_EQ(ex->policy.route_metric_scale, def->policy.route_metric_scale);
  EXPECT_EQ(ex->policy.spread_connections, def->policy.spread_connections);
  EXPECT_EQ(ex->policy.lua, def->policy.lua);
  EXPECT_EQ(ex->policy.lua_file, def->policy.lua_file);
  EXPECT_EQ(ex->upstreams.size(), def->upstreams.size());
  EXPECT_EQ(ex->regions.size(), def->regions.size());
  EXPECT_EQ(ex->vips[0].cls, def->vips[0].cls);
  EXPECT_EQ(ex->hosts[0].standby, def->hosts[0].standby);
  EXPECT_EQ(ex->hosts[0].drained, def->hosts[0].drained);
  EXPECT_EQ(ex->flows.midstream_wait, def->flows.midstream_wait);

  auto hex = loadHostConfig(std::string(SLR_SOURCE_DIR) + "/packaging/examples/host.toml");
  auto hdef = loadHostConfigFromString(kHostBase, "h.toml");
  ASSERT_TRUE(hex.ok() && hdef.ok());
  EXPECT_EQ(hex->host.status_socket, hdef->host.status_socket);
  EXPECT_EQ(hex->host.tun_name, hdef->host.tun_name);
  EXPECT_EQ(hex->host.update_interval, hdef->host.update_interval);
  EXPECT_EQ(hex->load.max_connections, hdef->load.max_connections);
  EXPECT_EQ(hex->host.shortcut_sources, hdef->host.shortcut_sources);
  EXPECT_EQ(hex->subnet_load_scale, hdef->subnet_load_scale);
  EXPECT_EQ(hex->recovery.enabled, hdef->recovery.enabled);
  EXPECT_EQ(hex->recovery.stall_after, hdef->recovery.stall_after);
  EXPECT_EQ(hex->recovery.give_up, hdef->recovery.give_up);
  EXPECT_EQ(hex->recovery.interval, hdef->recovery.interval);
  EXPECT_EQ(hex->recovery.max_echoes, hdef->recovery.max_echoes);
  EXPECT_EQ(hex->checks.size(), hdef->checks.size());
}

// ------------------------------------------------------------ defaults ----

TEST(ConfigDefaults, Slr) {
  auto r = loadSlrConfigFromString(kSlrBase, "t.toml");
  ASSERT_TRUE(r.ok()) << r.error().detail;
  const SlrConfig& c = *r;
  EXPECT_EQ(c.source_path, "t.toml");
  EXPECT_EQ(c.slr.tunnel_source.str(), "10.0.2.2");
  EXPECT_EQ(c.slr.control_listen.port, 7400);
  EXPECT_EQ(c.slr.status_socket, "/run/slrctl/slr.sock");
  EXPECT_EQ(c.slr.tun_name, "slr0");
  EXPECT_EQ(c.slr.workers, 1u);
  EXPECT_EQ(c.slr.tunnel_mtu, 1500u);
  EXPECT_EQ(c.slr.log_level, log::Level::kInfo);
  EXPECT_EQ(c.tls.ca, "ca.pem");
  EXPECT_EQ(c.flows.capacity, 1048576u);
  EXPECT_EQ(c.flows.on_full, OnFull::kStateless);
  EXPECT_EQ(c.flows.timeouts.tcp_syn, seconds(10));
  EXPECT_EQ(c.flows.timeouts.tcp_established, seconds(300));
  EXPECT_EQ(c.flows.timeouts.tcp_closing, seconds(10));
  EXPECT_EQ(c.flows.timeouts.udp, seconds(30));
  EXPECT_EQ(c.flows.timeouts.other, seconds(30));
  EXPECT_EQ(c.policy.algorithm, kAlgorithmLeastCost);
  EXPECT_EQ(c.policy.recompute_interval, seconds(1));
  EXPECT_EQ(c.policy.hold_time, seconds(3));
  EXPECT_DOUBLE_EQ(c.policy.tie_tolerance, 0.05);
  ASSERT_EQ(c.vips.size(), 1u);
  EXPECT_EQ(c.vips[0].name, "web");
  EXPECT_EQ(c.vips[0].subnet.str(), "10.100.0.0/24");
  ASSERT_EQ(c.hosts.size(), 1u);
  EXPECT_EQ(c.hosts[0].weight, 1u);
  EXPECT_EQ(c.hosts[0].route_cost, 0.0);
  ASSERT_EQ(c.hosts[0].subnets.size(), 1u);
  // Hierarchy keys.
  EXPECT_FALSE(c.slr.shortcut);
  EXPECT_EQ(c.slr.shortcut_wait, milliseconds(20));
  EXPECT_TRUE(c.upstreams.empty());
  EXPECT_TRUE(c.regions.empty());
  EXPECT_EQ(c.policy.route_cost_source, RouteCostSource::kConfig);
  EXPECT_DOUBLE_EQ(c.policy.route_metric_scale, 0.001);
  EXPECT_FALSE(c.policy.spread_connections);
  EXPECT_TRUE(c.policy.lua.empty());
  EXPECT_TRUE(c.policy.lua_file.empty());
  EXPECT_EQ(c.vips[0].cls, "default");
  EXPECT_FALSE(c.hosts[0].standby);
}

TEST(ConfigDefaults, Host) {
  auto r = loadHostConfigFromString(kHostBase, "h.toml");
  ASSERT_TRUE(r.ok()) << r.error().detail;
  const HostConfig& c = *r;
  EXPECT_EQ(c.host.tunnel_address.str(), "10.0.3.11");
  EXPECT_EQ(c.host.status_socket, "/run/slrctl/host.sock");
  EXPECT_EQ(c.host.tunnel_mode, TunnelMode::kAuto);
  EXPECT_EQ(c.host.tun_name, "slrt0");
  EXPECT_EQ(c.host.update_interval, seconds(1));
  EXPECT_EQ(c.host.log_level, log::Level::kInfo);
  ASSERT_EQ(c.slrs.size(), 1u);
  EXPECT_EQ(c.slrs[0].name, "slr1");
  // tunnel_source defaults to the address part of `address`.
  EXPECT_EQ(c.slrs[0].tunnel_source.str(), "10.0.2.2");
  EXPECT_EQ(c.load.source, LoadSource::kCpu);
  EXPECT_EQ(c.load.max_connections, 1000u);
  EXPECT_TRUE(c.load.file.empty());
  EXPECT_TRUE(c.host.shortcut_sources.empty());
  EXPECT_EQ(c.subnet_load_scale, std::vector<double>{1.0});
}

TEST(ConfigValues, AllSlrKeysRead) {
  std::string t = edit(kSlrBase, "[tls]", R"(status_socket = "/tmp/s.sock"
tun_name = "lb0"
workers = 4
tunnel_mtu = 9000
fast_path_interfaces = ["eth0", "bond0.100"]
log_level = "debug"

[flows]
capacity = 1024
on_full = "drop"
[flows.timeouts]
tcp_syn = "250ms"
tcp_established = "5m"
tcp_closing = "1h"
udp = "2s"
other = "1s"

[policy]
algorithm = "consistent-hash"
recompute_interval = "500ms"
hold_time = "10s"
tie_tolerance = 0

[tls])");
  t = edit(t, R"(subnets = ["10.100.0.0/24"])", R"(subnets = ["10.100.0.0/25", "10.100.0.128/25"]
weight = 1000
route_cost = 2.5)");
  auto r = loadSlrConfigFromString(t, "t.toml");
  ASSERT_TRUE(r.ok()) << r.error().detail;
  EXPECT_EQ(r->slr.status_socket, "/tmp/s.sock");
  EXPECT_EQ(r->slr.tun_name, "lb0");
  EXPECT_EQ(r->slr.workers, 4u);
  EXPECT_EQ(r->slr.tunnel_mtu, 9000u);
  EXPECT_EQ(r->slr.fast_path_interfaces, (std::vector<std::string>{"eth0", "bond0.100"}));
  EXPECT_EQ(r->slr.log_level, log::Level::kDebug);
  EXPECT_EQ(r->flows.capacity, 1024u);
  EXPECT_EQ(r->flows.on_full, OnFull::kDrop);
  EXPECT_EQ(r->flows.timeouts.tcp_syn, milliseconds(250));
  EXPECT_EQ(r->flows.timeouts.tcp_established, seconds(300));
  EXPECT_EQ(r->flows.timeouts.tcp_closing, seconds(3600));
  EXPECT_EQ(r->policy.algorithm, kAlgorithmConsistentHash);
  EXPECT_EQ(r->policy.recompute_interval, milliseconds(500));
  EXPECT_EQ(r->policy.tie_tolerance, 0.0);  // integer accepted for a number
  ASSERT_EQ(r->hosts[0].subnets.size(), 2u);
  EXPECT_EQ(r->hosts[0].weight, 1000u);
  EXPECT_EQ(r->hosts[0].route_cost, 2.5);
}

TEST(ConfigValues, AllHostKeysRead) {
  std::string t = edit(kHostBase, "[tls]", R"(tunnel_mode = "userspace"
update_interval = "200ms"
decap_interfaces = ["eth0"]
[load]
source = "command"
command = "echo 0.5"
[tls])");
  t = edit(t, R"(name = "slr1")", R"(name = "slr1"
tunnel_source = "10.0.2.9")");
  auto r = loadHostConfigFromString(t, "h.toml");
  ASSERT_TRUE(r.ok()) << r.error().detail;
  EXPECT_EQ(r->host.tunnel_mode, TunnelMode::kUserspace);
  EXPECT_EQ(r->host.update_interval, milliseconds(200));
  EXPECT_EQ(r->host.decap_interfaces, std::vector<std::string>{"eth0"});
  EXPECT_EQ(r->load.source, LoadSource::kCommand);
  EXPECT_EQ(r->load.command, "echo 0.5");
  EXPECT_EQ(r->slrs[0].tunnel_source.str(), "10.0.2.9");
}

// -------------------------------------------------------------- errors ----

TEST(ConfigErrors, MissingRequiredKey) {
  EXPECT_EQ(slrErrors(edit(kSlrBase, R"(name = "slr1")", "")),
            Lines{"t.toml: slr.name: expected a name of 1..64 characters from [A-Za-z0-9._-], "
                  "got nothing"});
}

TEST(ConfigErrors, WrongTypeShowsTheValue) {
  EXPECT_EQ(slrErrors(edit(kSlrBase, R"(name = "slr1")", "name = \"slr1\"\nworkers = \"4\"")),
            Lines{"t.toml: slr.workers: expected an integer 1..64, got \"4\""});
  EXPECT_EQ(slrErrors(edit(kSlrBase, R"(tunnel_source = "10.0.2.2")", "tunnel_source = 10")),
            Lines{"t.toml: slr.tunnel_source: expected an IPv4 address \"a.b.c.d\", got 10"});
  EXPECT_EQ(slrErrors(edit(kSlrBase, R"(key = "slr.key")", "key = [\"a\"]")),
            Lines{"t.toml: tls.key: expected a non-empty file path, got an array"});
}

TEST(ConfigErrors, Ranges) {
  EXPECT_EQ(slrErrors(edit(kSlrBase, R"(name = "slr1")", "name = \"slr1\"\nworkers = 65")),
            Lines{"t.toml: slr.workers: expected an integer 1..64, got 65"});
  EXPECT_EQ(slrErrors(edit(kSlrBase, R"(name = "slr1")", "name = \"slr1\"\ntunnel_mtu = 575")),
            Lines{"t.toml: slr.tunnel_mtu: expected an integer 576..65535, got 575"});
  EXPECT_EQ(slrErrors(edit(kSlrBase, R"(name = "slr1")",
                           "name = \"slr1\"\nfast_path_interfaces = [\"eth0\", \"a/b\", \"eth0\"]")),
            (Lines{"t.toml: slr.fast_path_interfaces[1]: expected an interface name of 1..15 "
                   "characters from [A-Za-z0-9._-], got \"a/b\"",
                   "t.toml: slr.fast_path_interfaces[2]: expected an interface not listed twice, "
                   "got \"eth0\""}));
  EXPECT_EQ(slrErrors(edit(kSlrBase, R"(name = "slr1")", "name = \"slr1\"\nfast_path_interfaces = \"eth0\"")),
            Lines{"t.toml: slr.fast_path_interfaces: expected an array of interface names, got \"eth0\""});
  EXPECT_EQ(slrErrors(edit(kSlrBase, "[tls]", "[flows]\ncapacity = 1023\n[tls]")),
            Lines{"t.toml: flows.capacity: expected an integer 1024..67108864, got 1023"});
  EXPECT_EQ(slrErrors(edit(kSlrBase, "[tls]", "[flows]\ncapacity = 67108865\n[tls]")),
            Lines{"t.toml: flows.capacity: expected an integer 1024..67108864, got 67108865"});
  EXPECT_EQ(slrErrors(edit(kSlrBase, R"(subnets = ["10.100.0.0/24"])",
                           "subnets = [\"10.100.0.0/24\"]\nweight = 0")),
            Lines{"t.toml: host[0].weight: expected an integer 1..1000, got 0"});
  EXPECT_EQ(slrErrors(edit(kSlrBase, "[tls]", "[policy]\ntie_tolerance = -0.5\n[tls]")),
            Lines{"t.toml: policy.tie_tolerance: expected a number 0..1e9, got -0.5"});
  EXPECT_EQ(slrErrors(edit(kSlrBase, "[tls]", "[policy]\ntie_tolerance = nan\n[tls]")),
            Lines{"t.toml: policy.tie_tolerance: expected a number 0..1e9, got nan"});
  EXPECT_EQ(hostErrors(edit(kHostBase, "[tls]", "[load]\nmax_connections = 0\n[tls]")),
            Lines{"h.toml: load.max_connections: expected an integer 1..4294967295, got 0"});
}

TEST(ConfigErrors, Names) {
  EXPECT_EQ(slrErrors(edit(kSlrBase, R"(name = "slr1")", R"(name = "slr 1")")),
            Lines{"t.toml: slr.name: expected a name of 1..64 characters from [A-Za-z0-9._-], "
                  "got \"slr 1\""});
  std::string long_name(65, 'a');
  EXPECT_EQ(slrErrors(edit(kSlrBase, R"(name = "web")", "name = \"" + long_name + "\"")).size(),
            1u);
  EXPECT_EQ(slrErrors(edit(kSlrBase, R"(name = "slr1")", "name = \"slr1\"\ntun_name = \"abcdefghijklmnop\"")),
            Lines{"t.toml: slr.tun_name: expected an interface name of 1..15 characters from "
                  "[A-Za-z0-9._-], got \"abcdefghijklmnop\""});
  EXPECT_TRUE(isValidName("a.b_c-D9"));
  EXPECT_FALSE(isValidName(""));
  EXPECT_FALSE(isValidName("a/b"));
}

TEST(ConfigErrors, Endpoints) {
  const std::string what =
      "t.toml: slr.control_listen: expected an endpoint \"a.b.c.d:port\" with port 1..65535, got ";
  for (std::string bad : {"10.0.2.2", "10.0.2.2:0", "10.0.2.2:65536", "10.0.2.2:", "10.0.2:80",
                          "10.0.2.2:8x", "[::1]:80", ":80"}) {
    EXPECT_EQ(slrErrors(edit(kSlrBase, R"("10.0.2.2:7400")", "\"" + bad + "\"")),
              Lines{what + "\"" + bad + "\""})
        << bad;
  }
  auto ok = Endpoint::parse("10.0.2.2:65535");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->port, 65535);
}

TEST(ConfigErrors, Prefixes) {
  EXPECT_EQ(slrErrors(edit(kSlrBase, R"(subnet = "10.100.0.0/24")", R"(subnet = "10.100.0.1/24")")),
            Lines{"t.toml: vip[0].subnet: expected an IPv4 prefix \"a.b.c.d/len\" with no host bits "
                  "set, got \"10.100.0.1/24\""});
  EXPECT_EQ(slrErrors(edit(kSlrBase, R"(subnets = ["10.100.0.0/24"])",
                           R"(subnets = ["10.100.0.0/24", "10.100.0.0/33"])")),
            Lines{"t.toml: host[0].subnets[1]: expected an IPv4 prefix \"a.b.c.d/len\" with no host "
                  "bits set, got \"10.100.0.0/33\""});
  EXPECT_EQ(slrErrors(edit(kSlrBase, R"(subnets = ["10.100.0.0/24"])", "subnets = []")),
            Lines{"t.toml: host[0].subnets: expected a non-empty array of prefixes, got an empty "
                  "array"});
}

TEST(ConfigErrors, Durations) {
  const std::string what =
      "t.toml: policy.hold_time: expected a duration such as \"250ms\", \"3s\", \"5m\" or \"1h\", "
      "greater than 0, got ";
  for (std::string bad : {"\"3\"", "\"0s\"", "\"1.5s\"", "\"3 s\"", "\"-1s\"", "\"3d\"", "\"s\"",
                          "3", "\"\""}) {
    EXPECT_EQ(slrErrors(edit(kSlrBase, "[tls]", "[policy]\nhold_time = " + bad + "\n[tls]")),
              Lines{what + bad})
        << bad;
  }
  EXPECT_EQ(slrErrors(edit(kSlrBase, "[tls]", "[policy]\nhold_time = \"1001h\"\n[tls]")),
            Lines{"t.toml: policy.hold_time: expected a duration of at most 1000h, got \"1001h\""});
  EXPECT_EQ(parseDuration("1000h"), std::chrono::hours(1000));
  EXPECT_EQ(parseDuration("250ms"), milliseconds(250));
  EXPECT_EQ(parseDuration("999999999999999h"), std::nullopt);
}

TEST(ConfigErrors, EnumsAreSpelledExactly) {
  EXPECT_EQ(slrErrors(edit(kSlrBase, "[tls]", "[flows]\non_full = \"Drop\"\n[tls]")),
            Lines{"t.toml: flows.on_full: expected one of \"stateless\", \"drop\", got \"Drop\""});
  EXPECT_EQ(slrErrors(edit(kSlrBase, "[tls]", "[policy]\nalgorithm = \"round-robin\"\n[tls]")),
            Lines{"t.toml: policy.algorithm: expected one of \"least-cost\", "
                  "\"weighted-round-robin\", \"consistent-hash\", got \"round-robin\""});
  EXPECT_EQ(slrErrors(edit(kSlrBase, R"(name = "slr1")", "name = \"slr1\"\nlog_level = \"verbose\"")),
            Lines{"t.toml: slr.log_level: expected one of \"trace\", \"debug\", \"info\", \"warn\", "
                  "\"error\", got \"verbose\""});
  EXPECT_EQ(hostErrors(edit(kHostBase, "[tls]", "tunnel_mode = \"ipip\"\n[tls]")),
            Lines{"h.toml: host.tunnel_mode: expected one of \"auto\", \"kernel\", \"userspace\", "
                  "got \"ipip\""});
  EXPECT_EQ(hostErrors(edit(kHostBase, "[tls]", "[load]\nsource = \"CPU\"\n[tls]")),
            Lines{"h.toml: load.source: expected one of \"cpu\", \"connections\", \"file\", "
                  "\"command\", got \"CPU\""});
}

TEST(ConfigErrors, UnknownKeys) {
  EXPECT_EQ(slrErrors(edit(kSlrBase, R"(name = "slr1")", "name = \"slr1\"\nworker = 2")),
            Lines{"t.toml: slr.worker: unknown key; expected one of: name, control_listen, "
                  "tunnel_source, status_socket, tun_name, workers, tunnel_mtu, fast_path_interfaces, "
                  "shortcut, shortcut_wait, log_level"});
  EXPECT_EQ(slrErrors(edit(kSlrBase, "[tls]", "[flows.timeouts]\ntcp = \"1s\"\n[tls]")),
            Lines{"t.toml: flows.timeouts.tcp: unknown key; expected one of: tcp_syn, "
                  "tcp_established, tcp_closing, udp, other"});
  EXPECT_EQ(slrErrors(std::string(kSlrBase) + "[[vips]]\nname = \"x\"\n"),
            Lines{"t.toml: vips: unknown key; expected one of: slr, tls, flows, policy, vip, host, "
                  "upstream, region, hot_spare, neighbor, whohas"});
  EXPECT_EQ(slrErrors(std::string(kSlrBase) + "weigth = 3\n"),
            Lines{"t.toml: host[0].weigth: unknown key; expected one of: name, subnets, weight, "
                  "route_cost, standby, drained"});
  EXPECT_EQ(hostErrors(std::string(kHostBase) + "[load]\nfiles = \"/x\"\n"),
            Lines{"h.toml: load.files: unknown key; expected one of: source, max_connections, file, "
                  "command"});
  // Unknown keys come in document order.
  EXPECT_EQ(slrErrors(edit(kSlrBase, R"(name = "slr1")", "zz = 1\nname = \"slr1\"\naa = 2")),
            (Lines{"t.toml: slr.zz: unknown key; expected one of: name, control_listen, "
                   "tunnel_source, status_socket, tun_name, workers, tunnel_mtu, fast_path_interfaces, "
                   "shortcut, shortcut_wait, log_level",
                   "t.toml: slr.aa: unknown key; expected one of: name, control_listen, "
                   "tunnel_source, status_socket, tun_name, workers, tunnel_mtu, fast_path_interfaces, "
                   "shortcut, shortcut_wait, log_level"}));
}

TEST(ConfigErrors, OverlappingVips) {
  std::string t = std::string(kSlrBase) +
                  "[[vip]]\nname = \"api\"\nsubnet = \"10.100.0.128/25\"\n"
                  "[[vip]]\nname = \"web\"\nsubnet = \"10.200.0.0/16\"\n";
  EXPECT_EQ(slrErrors(t),
            (Lines{"t.toml: vip[1].subnet: expected a prefix not overlapping vip[0].subnet "
                   "\"10.100.0.0/24\", got \"10.100.0.128/25\"",
                   "t.toml: vip[2].name: expected a name not used by vip[0], got \"web\""}));
}

TEST(ConfigErrors, HostSubnetOutsideVips) {
  std::string t = std::string(kSlrBase) +
                  "[[host]]\nname = \"host2\"\nsubnets = [\"10.9.0.0/24\", \"10.100.0.0/26\"]\n";
  EXPECT_EQ(slrErrors(t), Lines{"t.toml: host[1].subnets[0]: expected a prefix inside a [[vip]] "
                                "subnet, got \"10.9.0.0/24\""});
  // Wider than the VIP subnet is outside it too.
  EXPECT_EQ(slrErrors(edit(kSlrBase, R"(["10.100.0.0/24"])", R"(["10.100.0.0/23"])")),
            Lines{"t.toml: host[0].subnets[0]: expected a prefix inside a [[vip]] subnet, got "
                  "\"10.100.0.0/23\""});
}

TEST(ConfigErrors, DuplicateHostNames) {
  std::string t = std::string(kSlrBase) + "[[host]]\nname = \"host1\"\nsubnets = [\"10.100.0.0/24\"]\n";
  EXPECT_EQ(slrErrors(t),
            Lines{"t.toml: host[1].name: expected a name not used by host[0], got \"host1\""});
}

TEST(ConfigErrors, SectionsAndArrays) {
  // Missing [[vip]]: one error, and host subnets are not also flagged.
  std::string no_vip = edit(kSlrBase, "[[vip]]\nname = \"web\"\nsubnet = \"10.100.0.0/24\"\n", "");
  EXPECT_EQ(slrErrors(no_vip),
            Lines{"t.toml: vip: expected at least one [[vip]] table, got nothing"});
  EXPECT_EQ(slrErrors(edit(kSlrBase, "[[vip]]", "[vip]")),
            Lines{"t.toml: vip: expected an array of tables [[vip]], got a table"});
  EXPECT_EQ(slrErrors("vip = []\n" + no_vip),
            Lines{"t.toml: vip: expected at least one [[vip]] table, got an empty array"});
  // A missing table is one error, not one per required key inside it.
  EXPECT_EQ(slrErrors(edit(kSlrBase, "[tls]\nca = \"ca.pem\"\ncert = \"slr.pem\"\nkey = \"slr.key\"\n", "")),
            Lines{"t.toml: tls: expected a table [tls], got nothing"});
  EXPECT_EQ(slrErrors(edit(kSlrBase, "[tls]", "flows = 3\n[tls]")),
            Lines{"t.toml: slr.flows: unknown key; expected one of: name, control_listen, "
                  "tunnel_source, status_socket, tun_name, workers, tunnel_mtu, fast_path_interfaces, "
                  "shortcut, shortcut_wait, log_level"});
  EXPECT_EQ(hostErrors(edit(kHostBase, "[[subnet]]\nprefix = \"10.100.0.0/24\"\n", "")),
            Lines{"h.toml: subnet: expected at least one [[subnet]] table, got nothing"});
  EXPECT_EQ(hostErrors(edit(kHostBase, "[[slr]]\naddress = \"10.0.2.2:7400\"\nname = \"slr1\"\n", "")),
            Lines{"h.toml: slr: expected at least one [[slr]] table, got nothing"});
  EXPECT_EQ(slrErrors("vip = [1]\n" + no_vip),
            Lines{"t.toml: vip[0]: expected a table, got 1"});
}

TEST(ConfigErrors, ThreeMistakesThreeLines) {
  std::string t = edit(kSlrBase, R"(name = "slr1")", R"(name = "slr/1")");
  t = edit(t, R"(tunnel_source = "10.0.2.2")", "tunnel_source = \"10.0.2.2\"\nworkers = 0");
  t = edit(t, R"(["10.100.0.0/24"])", R"(["10.9.0.0/24"])");
  auto r = loadSlrConfigFromString(t, "/etc/slrctl/slr.toml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, 0);
  EXPECT_EQ(r.error().op, "config /etc/slrctl/slr.toml");
  EXPECT_EQ(r.error().detail,
            "/etc/slrctl/slr.toml: slr.name: expected a name of 1..64 characters from "
            "[A-Za-z0-9._-], got \"slr/1\"\n"
            "/etc/slrctl/slr.toml: slr.workers: expected an integer 1..64, got 0\n"
            "/etc/slrctl/slr.toml: host[0].subnets[0]: expected a prefix inside a [[vip]] subnet, "
            "got \"10.9.0.0/24\"");
  EXPECT_EQ(errorLines(r.error()).size(), 3u);
}

TEST(ConfigErrors, SyntaxErrorHasLineAndColumn) {
  auto lines = slrErrors("[slr]\nname = \"slr1\"\nworkers = = 2\n");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].rfind("t.toml:3:", 0), 0u) << lines[0];
  // Duplicate keys are a TOML error too.
  lines = slrErrors("[slr]\nname = \"a\"\nname = \"b\"\n");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].rfind("t.toml:3:", 0), 0u) << lines[0];
}

TEST(ConfigErrors, StringsAreQuotedAndEscaped) {
  EXPECT_EQ(slrErrors(edit(kSlrBase, R"(name = "slr1")", R"(name = "a\"b\n")")),
            Lines{"t.toml: slr.name: expected a name of 1..64 characters from [A-Za-z0-9._-], "
                  "got \"a\\\"b\\n\""});
}

TEST(ConfigErrors, HostLoadSourceNeedsItsKey) {
  EXPECT_EQ(hostErrors(std::string(kHostBase) + "[load]\nsource = \"file\"\n"),
            Lines{"h.toml: load.file: expected a non-empty file path (load.source is \"file\"), got "
                  "nothing"});
  EXPECT_EQ(hostErrors(std::string(kHostBase) + "[load]\nsource = \"command\"\ncommand = \"\"\n"),
            Lines{"h.toml: load.command: expected a non-empty command (load.source is \"command\"), "
                  "got \"\""});
  auto ok = loadHostConfigFromString(std::string(kHostBase) + "[load]\nsource = \"file\"\nfile = \"/run/l\"\n",
                                     "h.toml");
  ASSERT_TRUE(ok.ok()) << ok.error().detail;
  EXPECT_EQ(ok->load.file, "/run/l");
}

TEST(ConfigErrors, HostCrossChecks) {
  std::string t = std::string(kHostBase) +
                  "[[slr]]\naddress = \"10.0.2.2:7400\"\nname = \"slr2\"\n"
                  "[[subnet]]\nprefix = \"10.100.0.64/26\"\n";
  EXPECT_EQ(hostErrors(t),
            (Lines{"h.toml: slr[1].address: expected an endpoint not used by slr[0], got "
                   "\"10.0.2.2:7400\"",
                   "h.toml: subnet[1].prefix: expected a prefix not overlapping subnet[0].prefix "
                   "\"10.100.0.0/24\", got \"10.100.0.64/26\""}));
  EXPECT_EQ(hostErrors(edit(kHostBase, R"(name = "host1")", "name = \"host1\"\nstatus_socket = \"run/x\"")),
            Lines{"h.toml: host.status_socket: expected an absolute socket path shorter than 108 "
                  "bytes, got \"run/x\""});
}

// ---------------------------------------------------- hierarchy keys ----

TEST(ConfigHierarchy, AllSlrKeysRead) {
  std::string t = edit(kSlrBase, "[tls]", R"(shortcut = true
shortcut_wait = "10s"

[[upstream]]
address = "10.0.9.1:7400"
name = "net"
tunnel_source = "10.0.9.5"
update_interval = "250ms"
ca = "/etc/slrctl/ca-net.pem"

[[upstream]]
address = "10.0.10.1:7401"
name = "net2"

[policy]
route_cost_source = "kernel"
route_metric_scale = 1e6
spread_connections = true
lua = 'function F(c, ctx) return c.load end'

[tls])");
  t = edit(t, R"(subnet = "10.100.0.0/24")", R"(subnet = "10.100.0.0/24"
class = "gold.v-1_x")");
  t = edit(t, R"(subnets = ["10.100.0.0/24"])", R"(subnets = ["10.100.0.0/24"]
standby = true)");
  t += R"(
[[host]]
name = "host2"
subnets = ["10.100.0.0/25"]

[[region]]
name = "east"
clients = ["10.0.1.0/24", "10.0.1.0/25", "192.168.0.0/16"]
cost = { host2 = 1e9, host1 = 0 }

[[region]]
name = "west"
clients = ["10.0.2.0/24"]
[region.cost]
host1 = 0.5
)";
  auto r = loadSlrConfigFromString(t, "t.toml");
  ASSERT_TRUE(r.ok()) << r.error().detail;
  EXPECT_TRUE(r->slr.shortcut);
  EXPECT_EQ(r->slr.shortcut_wait, seconds(10));
  ASSERT_EQ(r->upstreams.size(), 2u);
  EXPECT_EQ(r->upstreams[0].address.str(), "10.0.9.1:7400");
  EXPECT_EQ(r->upstreams[0].name, "net");
  EXPECT_EQ(r->upstreams[0].tunnel_source.str(), "10.0.9.5");
  EXPECT_EQ(r->upstreams[0].update_interval, milliseconds(250));
  EXPECT_EQ(r->upstreams[0].ca, "/etc/slrctl/ca-net.pem");
  // Defaults: tunnel_source is the address's IP, 1s, no own CA.
  EXPECT_EQ(r->upstreams[1].tunnel_source.str(), "10.0.10.1");
  EXPECT_EQ(r->upstreams[1].update_interval, seconds(1));
  EXPECT_EQ(r->upstreams[1].ca, "");
  EXPECT_EQ(r->policy.route_cost_source, RouteCostSource::kKernel);
  EXPECT_EQ(r->policy.route_metric_scale, 1e6);
  EXPECT_TRUE(r->policy.spread_connections);
  EXPECT_EQ(r->policy.lua, "function F(c, ctx) return c.load end");
  EXPECT_EQ(r->policy.lua_file, "");
  EXPECT_EQ(r->vips[0].cls, "gold.v-1_x");
  ASSERT_EQ(r->hosts.size(), 2u);
  EXPECT_TRUE(r->hosts[0].standby);
  EXPECT_FALSE(r->hosts[1].standby);
  ASSERT_EQ(r->regions.size(), 2u);
  EXPECT_EQ(r->regions[0].name, "east");
  ASSERT_EQ(r->regions[0].clients.size(), 3u);  // overlaps inside one region are fine
  EXPECT_EQ(r->regions[0].clients[2].str(), "192.168.0.0/16");
  // Cost entries in document order; integers are numbers.
  using Cost = std::vector<std::pair<std::string, double>>;
  EXPECT_EQ(r->regions[0].cost, (Cost{{"host2", 1e9}, {"host1", 0.0}}));
  EXPECT_EQ(r->regions[1].name, "west");
  EXPECT_EQ(r->regions[1].cost, (Cost{{"host1", 0.5}}));
  EXPECT_EQ(routeCostSourceName(RouteCostSource::kConfig), "config");
  EXPECT_EQ(routeCostSourceName(RouteCostSource::kKernel), "kernel");
}

TEST(ConfigHierarchy, AllHostKeysRead) {
  std::string t = edit(kHostBase, "[tls]", R"(shortcut_sources = ["10.0.9.1", "10.0.10.1"]
[tls])");
  t = edit(t, R"(prefix = "10.100.0.0/24")", R"(prefix = "10.100.0.0/24"
load_scale = 1000
[[subnet]]
prefix = "10.101.0.0/24"
[[subnet]]
prefix = "10.102.0.0/24"
load_scale = 0.25)");
  auto r = loadHostConfigFromString(t, "h.toml");
  ASSERT_TRUE(r.ok()) << r.error().detail;
  ASSERT_EQ(r->host.shortcut_sources.size(), 2u);
  EXPECT_EQ(r->host.shortcut_sources[0].str(), "10.0.9.1");
  EXPECT_EQ(r->host.shortcut_sources[1].str(), "10.0.10.1");
  ASSERT_EQ(r->subnets.size(), 3u);
  EXPECT_EQ(r->subnet_load_scale, (std::vector<double>{1000.0, 1.0, 0.25}));
}

TEST(ConfigHierarchy, SlrShortcutErrors) {
  EXPECT_EQ(slrErrors(edit(kSlrBase, "[tls]", "shortcut = \"yes\"\n[tls]")),
            Lines{"t.toml: slr.shortcut: expected true or false, got \"yes\""});
  EXPECT_EQ(slrErrors(edit(kSlrBase, "[tls]", "shortcut = 1\n[tls]")),
            Lines{"t.toml: slr.shortcut: expected true or false, got 1"});
  EXPECT_EQ(slrErrors(edit(kSlrBase, "[tls]", "shortcut_wait = \"11s\"\n[tls]")),
            Lines{"t.toml: slr.shortcut_wait: expected a duration of 1ms..10s, got \"11s\""});
  EXPECT_EQ(slrErrors(edit(kSlrBase, "[tls]", "shortcut_wait = \"10001ms\"\n[tls]")),
            Lines{"t.toml: slr.shortcut_wait: expected a duration of 1ms..10s, got \"10001ms\""});
  EXPECT_EQ(slrErrors(edit(kSlrBase, "[tls]", "shortcut_wait = \"0ms\"\n[tls]")),
            Lines{"t.toml: slr.shortcut_wait: expected a duration such as \"250ms\", \"3s\", "
                  "\"5m\" or \"1h\", greater than 0, got \"0ms\""});
  EXPECT_EQ(slrErrors(edit(kSlrBase, "[tls]", "shortcut_wait = 20\n[tls]")),
            Lines{"t.toml: slr.shortcut_wait: expected a duration such as \"250ms\", \"3s\", "
                  "\"5m\" or \"1h\", greater than 0, got 20"});
  auto ok = loadSlrConfigFromString(edit(kSlrBase, "[tls]", "shortcut_wait = \"1ms\"\n[tls]"), "t.toml");
  ASSERT_TRUE(ok.ok()) << ok.error().detail;
  EXPECT_EQ(ok->slr.shortcut_wait, milliseconds(1));
}

TEST(ConfigHierarchy, UpstreamErrors) {
  // Missing required keys; every other key wrong.
  EXPECT_EQ(slrErrors(std::string(kSlrBase) + R"(
[[upstream]]
tunnel_source = "10.0.9"
update_interval = "1x"
ca = ""
)"),
            (Lines{"t.toml: upstream[0].address: expected an endpoint \"a.b.c.d:port\" with port "
                   "1..65535, got nothing",
                   "t.toml: upstream[0].name: expected a name of 1..64 characters from "
                   "[A-Za-z0-9._-], got nothing",
                   "t.toml: upstream[0].tunnel_source: expected an IPv4 address \"a.b.c.d\", got "
                   "\"10.0.9\"",
                   "t.toml: upstream[0].update_interval: expected a duration such as \"250ms\", "
                   "\"3s\", \"5m\" or \"1h\", greater than 0, got \"1x\"",
                   "t.toml: upstream[0].ca: expected a non-empty file path, got \"\""}));
  // Names unique, and not this SLR's own name; invalid names.
  EXPECT_EQ(slrErrors(std::string(kSlrBase) + R"(
[[upstream]]
address = "10.0.9.1:7400"
name = "net"
[[upstream]]
address = "10.0.9.2:7400"
name = "slr1"
[[upstream]]
address = "10.0.9.3:7400"
name = "net"
[[upstream]]
address = "10.0.9.4"
name = "n/t"
)"),
            (Lines{"t.toml: upstream[1].name: expected a name other than slr.name, got \"slr1\"",
                   "t.toml: upstream[2].name: expected a name not used by upstream[0], got \"net\"",
                   "t.toml: upstream[3].address: expected an endpoint \"a.b.c.d:port\" with port "
                   "1..65535, got \"10.0.9.4\"",
                   "t.toml: upstream[3].name: expected a name of 1..64 characters from "
                   "[A-Za-z0-9._-], got \"n/t\""}));
  EXPECT_EQ(slrErrors(std::string(kSlrBase) + "[[upstream]]\naddress = \"10.0.9.1:7400\"\n"
                                              "name = \"net\"\nhold_time = \"3s\"\n"),
            Lines{"t.toml: upstream[0].hold_time: unknown key; expected one of: address, name, "
                  "tunnel_source, update_interval, ca"});
  EXPECT_EQ(slrErrors("upstream = \"net\"\n" + std::string(kSlrBase)),
            Lines{"t.toml: upstream: expected an array of tables [[upstream]], got \"net\""});
  EXPECT_EQ(slrErrors("upstream = [1]\n" + std::string(kSlrBase)),
            Lines{"t.toml: upstream[0]: expected a table, got 1"});
  // An empty array is zero upstreams.
  auto none = loadSlrConfigFromString("upstream = []\n" + std::string(kSlrBase), "t.toml");
  ASSERT_TRUE(none.ok()) << none.error().detail;
  EXPECT_TRUE(none->upstreams.empty());
  // At most 15 (the flow table keeps upstream index + 1 in 4 bits).
  std::string many(kSlrBase);
  for (int i = 0; i < 16; ++i) {
    many += "[[upstream]]\naddress = \"10.0.9." + std::to_string(i + 1) + ":7400\"\nname = \"u" +
            std::to_string(i) + "\"\n";
  }
  EXPECT_EQ(slrErrors(many), Lines{"t.toml: upstream: expected at most 15 [[upstream]] tables, got 16"});
  std::string fifteen = many.substr(0, many.rfind("[[upstream]]"));
  auto ok = loadSlrConfigFromString(fifteen, "t.toml");
  ASSERT_TRUE(ok.ok()) << ok.error().detail;
  EXPECT_EQ(ok->upstreams.size(), 15u);
}

TEST(ConfigHierarchy, PolicyErrors) {
  auto policy = [](std::string_view body) {
    return slrErrors(edit(kSlrBase, "[tls]", "[policy]\n" + std::string(body) + "\n[tls]"));
  };
  EXPECT_EQ(policy("route_cost_source = \"Kernel\""),
            Lines{"t.toml: policy.route_cost_source: expected one of \"config\", \"kernel\", got "
                  "\"Kernel\""});
  EXPECT_EQ(policy("route_metric_scale = -1"),
            Lines{"t.toml: policy.route_metric_scale: expected a number 0..1e6, got -1"});
  EXPECT_EQ(policy("route_metric_scale = 1000000.5"),
            Lines{"t.toml: policy.route_metric_scale: expected a number 0..1e6, got 1000000.5"});
  EXPECT_EQ(policy("route_metric_scale = inf"),
            Lines{"t.toml: policy.route_metric_scale: expected a number 0..1e6, got inf"});
  EXPECT_EQ(policy("route_metric_scale = \"0.1\""),
            Lines{"t.toml: policy.route_metric_scale: expected a number 0..1e6, got \"0.1\""});
  EXPECT_EQ(policy("spread_connections = \"true\""),
            Lines{"t.toml: policy.spread_connections: expected true or false, got \"true\""});
  EXPECT_EQ(policy("lua = \"\""),
            Lines{"t.toml: policy.lua: expected a non-empty string of Lua source, got \"\""});
  EXPECT_EQ(policy("lua = 3"),
            Lines{"t.toml: policy.lua: expected a non-empty string of Lua source, got 3"});
  EXPECT_EQ(policy("lua_file = \"\""),
            Lines{"t.toml: policy.lua_file: expected a non-empty file path, got \"\""});
  EXPECT_EQ(policy("lua = \"function F(c) return 1 end\"\nlua_file = \"/x/p.lua\""),
            Lines{"t.toml: policy: expected at most one of lua, lua_file, got both"});
  // The Lua source is not compiled here (the policy module does it).
  auto ok = loadSlrConfigFromString(edit(kSlrBase, "[tls]", "[policy]\nlua = \"not lua ((\"\n[tls]"),
                                    "t.toml");
  ASSERT_TRUE(ok.ok()) << ok.error().detail;
  EXPECT_EQ(ok->policy.lua, "not lua ((");
}

TEST(ConfigHierarchy, LuaFileFromStringIsRelativeToCwd) {
  char buf[4096];
  ASSERT_NE(getcwd(buf, sizeof buf), nullptr);
  std::string cwd = buf;
  auto load = [](std::string_view file) {
    return loadSlrConfigFromString(
        edit(kSlrBase, "[tls]", "[policy]\nlua_file = \"" + std::string(file) + "\"\n[tls]"),
        "t.toml");
  };
  // Not checked for existence: there is no file to be relative to.
  auto r = load("policy.lua");
  ASSERT_TRUE(r.ok()) << r.error().detail;
  EXPECT_EQ(r->policy.lua_file, (cwd == "/" ? "" : cwd) + "/policy.lua");
  r = load("./lua/../policy.lua");
  ASSERT_TRUE(r.ok()) << r.error().detail;
  EXPECT_EQ(r->policy.lua_file, (cwd == "/" ? "" : cwd) + "/lua/../policy.lua");
  r = load("/etc/slrctl/policy.lua");
  ASSERT_TRUE(r.ok()) << r.error().detail;
  EXPECT_EQ(r->policy.lua_file, "/etc/slrctl/policy.lua");
}

TEST(ConfigHierarchy, LuaFileFromFileIsRelativeToItsDirectory) {
  char tmpl[] = "/tmp/slr_config_lua_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  std::string cfg = dir + "/slr.toml";
  std::string lua = dir + "/policy.lua";
  auto write = [](const std::string& path, const std::string& text) {
    std::ofstream(path) << text;
  };
  write(cfg, edit(kSlrBase, "[tls]", "[policy]\nlua_file = \"policy.lua\"\n[tls]"));

  // Missing: named with the resolved path.
  auto r = loadSlrConfig(cfg);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(errorLines(r.error()),
            Lines{cfg + ": policy.lua_file: expected a readable file, got \"" + lua + "\""});

  write(lua, "function F(c, ctx) return c.load end\n");
  r = loadSlrConfig(cfg);
  ASSERT_TRUE(r.ok()) << r.error().detail;
  EXPECT_EQ(r->policy.lua_file, lua);
  EXPECT_TRUE(r->policy.lua.empty());  // the file is not read here

  // A config named by a relative path: still its directory.
  char buf[4096];
  ASSERT_NE(getcwd(buf, sizeof buf), nullptr);
  ASSERT_EQ(chdir(dir.c_str()), 0);
  r = loadSlrConfig("slr.toml");
  ASSERT_EQ(chdir(buf), 0);
  ASSERT_TRUE(r.ok()) << r.error().detail;
  EXPECT_EQ(r->policy.lua_file, lua);

  // A directory is not a readable file.
  write(cfg, edit(kSlrBase, "[tls]", "[policy]\nlua_file = \"./\"\n[tls]"));
  r = loadSlrConfig(cfg);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(errorLines(r.error()),
            Lines{cfg + ": policy.lua_file: expected a readable file, got \"" + dir + "\""});

  // Both keys: both problems reported.
  write(cfg, edit(kSlrBase, "[tls]", "[policy]\nlua = \"x\"\nlua_file = \"nope.lua\"\n[tls]"));
  r = loadSlrConfig(cfg);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(errorLines(r.error()),
            (Lines{cfg + ": policy.lua_file: expected a readable file, got \"" + dir + "/nope.lua\"",
                   cfg + ": policy: expected at most one of lua, lua_file, got both"}));

  unlink(lua.c_str());
  unlink(cfg.c_str());
  rmdir(dir.c_str());
}

TEST(ConfigHierarchy, VipClassAndHostStandbyErrors) {
  EXPECT_EQ(slrErrors(edit(kSlrBase, R"(subnet = "10.100.0.0/24")",
                           "subnet = \"10.100.0.0/24\"\nclass = \"best effort\"")),
            Lines{"t.toml: vip[0].class: expected a name of 1..64 characters from [A-Za-z0-9._-], "
                  "got \"best effort\""});
  EXPECT_EQ(slrErrors(edit(kSlrBase, R"(subnet = "10.100.0.0/24")",
                           "subnet = \"10.100.0.0/24\"\nclass = \"\"")),
            Lines{"t.toml: vip[0].class: expected a name of 1..64 characters from [A-Za-z0-9._-], "
                  "got \"\""});
  EXPECT_EQ(slrErrors(edit(kSlrBase, R"(subnet = "10.100.0.0/24")",
                           "subnet = \"10.100.0.0/24\"\nclass = \"" + std::string(65, 'c') + "\"")),
            Lines{"t.toml: vip[0].class: expected a name of 1..64 characters from [A-Za-z0-9._-], "
                  "got \"" + std::string(65, 'c') + "\""});
  EXPECT_EQ(slrErrors(std::string(kSlrBase) + "klass = \"x\"\n"),
            Lines{"t.toml: host[0].klass: unknown key; expected one of: name, subnets, weight, "
                  "route_cost, standby, drained"});
  EXPECT_EQ(slrErrors(edit(kSlrBase, "[[host]]", "class = 5\n[[host]]")),
            Lines{"t.toml: vip[0].class: expected a name of 1..64 characters from [A-Za-z0-9._-], "
                  "got 5"});
  EXPECT_EQ(slrErrors(std::string(kSlrBase) + "standby = \"no\"\n"),
            Lines{"t.toml: host[0].standby: expected true or false, got \"no\""});
}

TEST(ConfigHierarchy, RegionErrors) {
  std::string two_hosts =
      std::string(kSlrBase) + "[[host]]\nname = \"host2\"\nsubnets = [\"10.100.0.0/24\"]\n";
  // Required keys missing, every value wrong.
  EXPECT_EQ(slrErrors(two_hosts + "[[region]]\n"),
            (Lines{"t.toml: region[0].name: expected a name of 1..64 characters from "
                   "[A-Za-z0-9._-], got nothing",
                   "t.toml: region[0].clients: expected a non-empty array of prefixes, got "
                   "nothing"}));
  EXPECT_EQ(slrErrors(two_hosts + R"([[region]]
name = "e st"
clients = []
cost = 1
)"),
            (Lines{"t.toml: region[0].name: expected a name of 1..64 characters from "
                   "[A-Za-z0-9._-], got \"e st\"",
                   "t.toml: region[0].clients: expected a non-empty array of prefixes, got an "
                   "empty array",
                   "t.toml: region[0].cost: expected a table of [[host]] names to numbers 0..1e9, "
                   "got 1"}));
  EXPECT_EQ(slrErrors(two_hosts + R"([[region]]
name = "east"
clients = ["10.0.1.1/24", "10.0.2.0/24", 7]
cost = { host2 = -1, sys9 = 0.5, "a b" = 1, host1 = 1000000001 }
)"),
            (Lines{"t.toml: region[0].clients[0]: expected an IPv4 prefix \"a.b.c.d/len\" with no "
                   "host bits set, got \"10.0.1.1/24\"",
                   "t.toml: region[0].clients[2]: expected an IPv4 prefix \"a.b.c.d/len\" with no "
                   "host bits set, got 7",
                   "t.toml: region[0].cost.host2: expected a number 0..1e9, got -1",
                   "t.toml: region[0].cost.sys9: expected the name of a [[host]], got \"sys9\"",
                   "t.toml: region[0].cost.\"a b\": expected the name of a [[host]], got \"a b\"",
                   "t.toml: region[0].cost.host1: expected a number 0..1e9, got 1000000001"}));
  // Unique names; client prefixes of different regions disjoint (both named).
  EXPECT_EQ(slrErrors(two_hosts + R"([[region]]
name = "east"
clients = ["10.0.1.0/24", "10.0.8.0/24"]
[[region]]
name = "west"
clients = ["10.0.2.0/24", "10.0.8.128/25"]
[[region]]
name = "east"
clients = ["10.0.0.0/8"]
)"),
            (Lines{"t.toml: region[1].clients[1]: expected a prefix not overlapping "
                   "region[0].clients[1] \"10.0.8.0/24\", got \"10.0.8.128/25\"",
                   "t.toml: region[2].name: expected a name not used by region[0], got \"east\"",
                   "t.toml: region[2].clients[0]: expected a prefix not overlapping "
                   "region[0].clients[0] \"10.0.1.0/24\", got \"10.0.0.0/8\""}));
  EXPECT_EQ(slrErrors(two_hosts + "[[region]]\nname = \"e\"\nclients = [\"10.0.1.0/24\"]\nclient = 1\n"),
            Lines{"t.toml: region[0].client: unknown key; expected one of: name, clients, cost"});
  // A broken [[host]] name does not also flag the cost keys naming hosts.
  EXPECT_EQ(slrErrors(edit(kSlrBase, R"(name = "host1")", R"(name = "host 1")") +
                      "[[region]]\nname = \"e\"\nclients = [\"10.0.1.0/24\"]\ncost = { x = 1 }\n"),
            Lines{"t.toml: host[0].name: expected a name of 1..64 characters from [A-Za-z0-9._-], "
                  "got \"host 1\""});
  // At most 256.
  std::string many = two_hosts;
  for (int i = 0; i < 257; ++i) {
    many += "[[region]]\nname = \"r" + std::to_string(i) + "\"\nclients = [\"10.1." +
            std::to_string(i / 256) + "." + std::to_string(i % 256) + "/32\"]\n";
  }
  EXPECT_EQ(slrErrors(many), Lines{"t.toml: region: expected at most 256 [[region]] tables, got 257"});
  auto ok = loadSlrConfigFromString(many.substr(0, many.rfind("[[region]]")), "t.toml");
  ASSERT_TRUE(ok.ok()) << ok.error().detail;
  EXPECT_EQ(ok->regions.size(), 256u);
}

TEST(ConfigHierarchy, HostErrors) {
  EXPECT_EQ(hostErrors(edit(kHostBase, "[tls]",
                            "shortcut_sources = [\"10.0.9.1\", \"10.0.9\", \"10.0.9.1\", 5]\n[tls]")),
            (Lines{"h.toml: host.shortcut_sources[1]: expected an IPv4 address \"a.b.c.d\", got "
                   "\"10.0.9\"",
                   "h.toml: host.shortcut_sources[2]: expected an address not listed twice, got "
                   "\"10.0.9.1\"",
                   "h.toml: host.shortcut_sources[3]: expected an IPv4 address \"a.b.c.d\", got 5"}));
  EXPECT_EQ(hostErrors(edit(kHostBase, "[tls]", "shortcut_sources = \"10.0.9.1\"\n[tls]")),
            Lines{"h.toml: host.shortcut_sources: expected an array of IPv4 addresses, got "
                  "\"10.0.9.1\""});
  EXPECT_EQ(hostErrors(std::string(kHostBase) + "load_scale = 1000.5\n"),
            Lines{"h.toml: subnet[0].load_scale: expected a number 0..1000, got 1000.5"});
  EXPECT_EQ(hostErrors(std::string(kHostBase) + "load_scale = -0.1\n"),
            Lines{"h.toml: subnet[0].load_scale: expected a number 0..1000, got -0.1"});
  EXPECT_EQ(hostErrors(std::string(kHostBase) + "load_scale = \"1\"\n"),
            Lines{"h.toml: subnet[0].load_scale: expected a number 0..1000, got \"1\""});
  EXPECT_EQ(hostErrors(std::string(kHostBase) + "load = 1\n"),
            Lines{"h.toml: subnet[0].load: unknown key; expected one of: prefix, load_scale"});
  EXPECT_EQ(hostErrors(edit(kHostBase, "[tls]", "shortcut = true\n[tls]")),
            Lines{"h.toml: host.shortcut: unknown key; expected one of: name, tunnel_address, "
                  "status_socket, tunnel_mode, tun_name, update_interval, decap_interfaces, "
                  "shortcut_sources, log_level"});
  // 0 is allowed: the subnet always advertises load 0.
  auto ok = loadHostConfigFromString(std::string(kHostBase) + "load_scale = 0\n", "h.toml");
  ASSERT_TRUE(ok.ok()) << ok.error().detail;
  EXPECT_EQ(ok->subnet_load_scale, std::vector<double>{0.0});
}

// ------------------------------------------- flows survive failures ----
// [hot_spare], [[neighbor]], [whohas], flows.midstream_wait, [[host]] drained;
// host [[check]] and [recovery].

TEST(ConfigRecovery, SlrDefaults) {
  auto r = loadSlrConfigFromString(kSlrBase, "t.toml");
  ASSERT_TRUE(r.ok()) << r.error().detail;
  EXPECT_FALSE(r->hot_spare.enabled);
  EXPECT_TRUE(r->neighbors.empty());
  EXPECT_EQ(r->whohas.wait, milliseconds(50));
  EXPECT_EQ(r->whohas.scope, 1);
  EXPECT_EQ(r->flows.midstream_wait, seconds(3));
  EXPECT_FALSE(r->hosts[0].drained);
  EXPECT_EQ(spareRoleName(SpareRole::kMain), "main");
  EXPECT_EQ(spareRoleName(SpareRole::kSpare), "spare");
  EXPECT_EQ(checkTypeName(CheckType::kTcp), "tcp");
  EXPECT_EQ(checkTypeName(CheckType::kHttp), "http");
  EXPECT_EQ(checkTypeName(CheckType::kCommand), "command");
}

TEST(ConfigRecovery, HostDefaults) {
  auto r = loadHostConfigFromString(kHostBase, "h.toml");
  ASSERT_TRUE(r.ok()) << r.error().detail;
  EXPECT_TRUE(r->checks.empty());
  EXPECT_TRUE(r->recovery.enabled);
  EXPECT_EQ(r->recovery.stall_after, milliseconds(1500));
  EXPECT_EQ(r->recovery.give_up, seconds(60));
  EXPECT_EQ(r->recovery.interval, milliseconds(500));
  EXPECT_EQ(r->recovery.max_echoes, 8u);
}

TEST(ConfigRecovery, AllSlrKeysRead) {
  std::string t = edit(kSlrBase, "[tls]", R"([flows]
midstream_wait = "0s"

[hot_spare]
role = "spare"
peer = "10.0.2.3:7400"
peer_name = "slr1b"
heartbeat = "50ms"
dead_after = "300ms"
sync_interval = "5ms"
claim_interface = "eth1"
claim_addresses = ["10.0.2.100/24", "10.0.4.1"]

[[neighbor]]
address = "10.0.5.2:7400"
name = "slr2"
ca = "/etc/slrctl/ca-2.pem"

[[neighbor]]
address = "10.0.6.2:7400"
name = "slr3"

[whohas]
wait = "20ms"
scope = 8

[tls])");
  t = edit(t, R"(subnets = ["10.100.0.0/24"])", "subnets = [\"10.100.0.0/24\"]\ndrained = true");
  auto r = loadSlrConfigFromString(t, "t.toml");
  ASSERT_TRUE(r.ok()) << r.error().detail;
  EXPECT_EQ(r->flows.midstream_wait, milliseconds(0));
  const auto& hs = r->hot_spare;
  EXPECT_TRUE(hs.enabled);
  EXPECT_EQ(hs.role, SpareRole::kSpare);
  EXPECT_EQ(hs.peer.str(), "10.0.2.3:7400");
  EXPECT_EQ(hs.peer_name, "slr1b");
  EXPECT_EQ(hs.heartbeat, milliseconds(50));
  EXPECT_EQ(hs.dead_after, milliseconds(300));
  EXPECT_EQ(hs.sync_interval, milliseconds(5));
  EXPECT_EQ(hs.claim_interface, "eth1");
  ASSERT_EQ(hs.claim_addresses.size(), 2u);
  EXPECT_EQ(hs.claim_addresses[0].str(), "10.0.2.100/24");  // host bits kept: an interface address
  EXPECT_EQ(hs.claim_addresses[1].str(), "10.0.4.1/32");
  ASSERT_EQ(r->neighbors.size(), 2u);
  EXPECT_EQ(r->neighbors[0].address.str(), "10.0.5.2:7400");
  EXPECT_EQ(r->neighbors[0].name, "slr2");
  EXPECT_EQ(r->neighbors[0].ca, "/etc/slrctl/ca-2.pem");
  EXPECT_EQ(r->neighbors[1].name, "slr3");
  EXPECT_EQ(r->neighbors[1].ca, "");
  EXPECT_EQ(r->whohas.wait, milliseconds(20));
  EXPECT_EQ(r->whohas.scope, 8);
  EXPECT_TRUE(r->hosts[0].drained);

  // A minimal [hot_spare]: the three required keys, no claim (e.g. a routing
  // daemon moves the traffic), defaults for the timing.
  auto m = loadSlrConfigFromString(std::string(kSlrBase) + R"(
[hot_spare]
role = "main"
peer = "10.0.2.3:7400"
peer_name = "slr1b"
)", "t.toml");
  ASSERT_TRUE(m.ok()) << m.error().detail;
  EXPECT_TRUE(m->hot_spare.enabled);
  EXPECT_EQ(m->hot_spare.role, SpareRole::kMain);
  EXPECT_EQ(m->hot_spare.heartbeat, milliseconds(100));
  EXPECT_EQ(m->hot_spare.dead_after, milliseconds(500));
  EXPECT_EQ(m->hot_spare.sync_interval, milliseconds(10));
  EXPECT_TRUE(m->hot_spare.claim_interface.empty());
  EXPECT_TRUE(m->hot_spare.claim_addresses.empty());
}

TEST(ConfigRecovery, MidstreamWait) {
  auto wait = [](std::string_view v) {
    return loadSlrConfigFromString(edit(kSlrBase, "[tls]", "[flows]\nmidstream_wait = " + std::string(v) + "\n[tls]"),
                                   "t.toml");
  };
  for (auto [text, ms] : {std::pair{"\"0s\"", 0}, {"\"0ms\"", 0}, {"\"00s\"", 0}, {"\"1ms\"", 1},
                          {"\"60s\"", 60000}, {"\"1m\"", 60000}}) {
    auto r = wait(text);
    ASSERT_TRUE(r.ok()) << text << ": " << r.error().detail;
    EXPECT_EQ(r->flows.midstream_wait, milliseconds(ms)) << text;
  }
  auto err = [&](std::string_view v) {
    auto r = wait(v);
    EXPECT_FALSE(r.ok()) << v;
    return r.ok() ? Lines{} : errorLines(r.error());
  };
  EXPECT_EQ(err("\"61s\""), Lines{"t.toml: flows.midstream_wait: expected a duration of 0ms..60s, got \"61s\""});
  EXPECT_EQ(err("\"0\""), Lines{"t.toml: flows.midstream_wait: expected a duration such as \"0s\", \"500ms\" or "
                                "\"3s\", got \"0\""});
  EXPECT_EQ(err("\"-1s\""), Lines{"t.toml: flows.midstream_wait: expected a duration such as \"0s\", \"500ms\" or "
                                  "\"3s\", got \"-1s\""});
  EXPECT_EQ(err("0"), Lines{"t.toml: flows.midstream_wait: expected a duration such as \"0s\", \"500ms\" or "
                            "\"3s\", got 0"});
  EXPECT_EQ(err("\"0x\""), Lines{"t.toml: flows.midstream_wait: expected a duration such as \"0s\", \"500ms\" or "
                                 "\"3s\", got \"0x\""});
  // Other durations still refuse zero.
  EXPECT_EQ(slrErrors(edit(kSlrBase, "[tls]", "[flows.timeouts]\nudp = \"0s\"\n[tls]")),
            Lines{"t.toml: flows.timeouts.udp: expected a duration such as \"250ms\", \"3s\", \"5m\" or \"1h\", "
                  "greater than 0, got \"0s\""});
  EXPECT_EQ(slrErrors(edit(kSlrBase, "[tls]", "[flows]\nmidstream = \"1s\"\n[tls]")),
            Lines{"t.toml: flows.midstream: unknown key; expected one of: capacity, on_full, timeouts, "
                  "midstream_wait"});
}

TEST(ConfigRecovery, HostDrained) {
  EXPECT_EQ(slrErrors(edit(kSlrBase, R"(subnets = ["10.100.0.0/24"])",
                           "subnets = [\"10.100.0.0/24\"]\ndrained = \"yes\"")),
            Lines{"t.toml: host[0].drained: expected true or false, got \"yes\""});
}

TEST(ConfigRecovery, HotSpareErrors) {
  auto spare = [](std::string_view body) { return slrErrors(std::string(kSlrBase) + "[hot_spare]\n" + std::string(body)); };
  // Required keys, named with what they take.
  EXPECT_EQ(spare(""),
            (Lines{"t.toml: hot_spare.role: expected one of \"main\", \"spare\", got nothing",
                   "t.toml: hot_spare.peer: expected an endpoint \"a.b.c.d:port\" with port 1..65535, got nothing",
                   "t.toml: hot_spare.peer_name: expected a name of 1..64 characters from [A-Za-z0-9._-], got "
                   "nothing"}));
  const std::string req = "role = \"main\"\npeer = \"10.0.2.3:7400\"\npeer_name = \"slr1b\"\n";
  EXPECT_EQ(spare("role = \"Main\"\npeer = \"10.0.2.3\"\npeer_name = \"slr1\"\n"),
            (Lines{"t.toml: hot_spare.role: expected one of \"main\", \"spare\", got \"Main\"",
                   "t.toml: hot_spare.peer: expected an endpoint \"a.b.c.d:port\" with port 1..65535, got "
                   "\"10.0.2.3\"",
                   "t.toml: hot_spare.peer_name: expected a name other than slr.name, got \"slr1\""}));
  EXPECT_EQ(spare("role = \"spare\"\npeer = \"10.0.2.2:7400\"\npeer_name = \"slr1b\"\n"),
            Lines{"t.toml: hot_spare.peer: expected an endpoint other than slr.control_listen, got "
                  "\"10.0.2.2:7400\""});
  // Timing ranges and order.
  EXPECT_EQ(spare(req + "heartbeat = \"5ms\"\n"),
            Lines{"t.toml: hot_spare.heartbeat: expected a duration of 10ms..10s, got \"5ms\""});
  EXPECT_EQ(spare(req + "heartbeat = \"11s\"\n"),
            Lines{"t.toml: hot_spare.heartbeat: expected a duration of 10ms..10s, got \"11s\""});
  EXPECT_EQ(spare(req + "dead_after = \"61s\"\n"),
            Lines{"t.toml: hot_spare.dead_after: expected a duration of 1ms..60s, got \"61s\""});
  EXPECT_EQ(spare(req + "heartbeat = \"200ms\"\ndead_after = \"200ms\"\n"),
            Lines{"t.toml: hot_spare.dead_after: expected a duration greater than hot_spare.heartbeat "
                  "(\"200ms\"), got \"200ms\""});
  EXPECT_EQ(spare(req + "dead_after = \"100ms\"\n"),
            Lines{"t.toml: hot_spare.dead_after: expected a duration greater than hot_spare.heartbeat "
                  "(\"100ms\", the default), got \"100ms\""});
  EXPECT_EQ(spare(req + "heartbeat = \"1s\"\n"),
            Lines{"t.toml: hot_spare.dead_after: expected a duration greater than hot_spare.heartbeat "
                  "(\"1s\"), got \"500ms\" (the default)"});
  EXPECT_EQ(spare(req + "sync_interval = \"2s\"\n"),
            Lines{"t.toml: hot_spare.sync_interval: expected a duration of 1ms..1s, got \"2s\""});
  EXPECT_EQ(spare(req + "sync_interval = 10\n"),
            Lines{"t.toml: hot_spare.sync_interval: expected a duration such as \"250ms\", \"3s\", \"5m\" or "
                  "\"1h\", greater than 0, got 10"});
  // claim_interface iff claim_addresses.
  EXPECT_EQ(spare(req + "claim_addresses = [\"10.0.2.100/24\"]\n"),
            Lines{"t.toml: hot_spare.claim_interface: expected an interface name of 1..15 characters from "
                  "[A-Za-z0-9._-] (hot_spare.claim_addresses is not empty), got nothing"});
  EXPECT_EQ(spare(req + "claim_interface = \"eth1\"\n"),
            Lines{"t.toml: hot_spare.claim_addresses: expected a non-empty array of IPv4 interface addresses "
                  "(hot_spare.claim_interface is set), got nothing"});
  EXPECT_EQ(spare(req + "claim_interface = \"eth1\"\nclaim_addresses = []\n"),
            Lines{"t.toml: hot_spare.claim_addresses: expected a non-empty array of IPv4 interface addresses "
                  "(hot_spare.claim_interface is set), got an empty array"});
  EXPECT_EQ(spare(req + "claim_interface = \"an-interface-name-too-long\"\nclaim_addresses = [\"10.0.2.100\"]\n"),
            Lines{"t.toml: hot_spare.claim_interface: expected an interface name of 1..15 characters from "
                  "[A-Za-z0-9._-], got \"an-interface-name-too-long\""});
  EXPECT_EQ(spare(req + "claim_interface = \"eth1\"\n"
                        "claim_addresses = [\"10.0.2.100/33\", \"10.0.2.100/0\", \"fd00::1/64\", 5, \"10.0.2.7/24\", "
                        "\"10.0.2.7/32\"]\n"),
            (Lines{"t.toml: hot_spare.claim_addresses[0]: expected an IPv4 interface address \"a.b.c.d/len\" "
                   "with len 1..32 (or a bare address), got \"10.0.2.100/33\"",
                   "t.toml: hot_spare.claim_addresses[1]: expected an IPv4 interface address \"a.b.c.d/len\" "
                   "with len 1..32 (or a bare address), got \"10.0.2.100/0\"",
                   "t.toml: hot_spare.claim_addresses[2]: expected an IPv4 interface address \"a.b.c.d/len\" "
                   "with len 1..32 (or a bare address), got \"fd00::1/64\"",
                   "t.toml: hot_spare.claim_addresses[3]: expected an IPv4 interface address \"a.b.c.d/len\" "
                   "with len 1..32 (or a bare address), got 5",
                   "t.toml: hot_spare.claim_addresses[5]: expected an address not listed twice, got "
                   "\"10.0.2.7/32\""}));
  EXPECT_EQ(spare(req + "claim_interface = \"eth1\"\nclaim_addresses = \"10.0.2.100/24\"\n"),
            Lines{"t.toml: hot_spare.claim_addresses: expected an array of IPv4 interface addresses, got "
                  "\"10.0.2.100/24\""});
  EXPECT_EQ(spare(req + "peer_address = \"10.0.2.3:7400\"\n"),
            Lines{"t.toml: hot_spare.peer_address: unknown key; expected one of: role, peer, peer_name, "
                  "heartbeat, dead_after, sync_interval, claim_interface, claim_addresses"});
  EXPECT_EQ(slrErrors(std::string(kSlrBase) + "hot_spare = true\n"),
            Lines{"t.toml: host[0].hot_spare: unknown key; expected one of: name, subnets, weight, route_cost, "
                  "standby, drained"});
  EXPECT_EQ(slrErrors("hot_spare = true\n" + std::string(kSlrBase)),
            Lines{"t.toml: hot_spare: expected a table [hot_spare], got true"});
}

TEST(ConfigRecovery, NeighborErrors) {
  EXPECT_EQ(slrErrors(std::string(kSlrBase) + "[[neighbor]]\nca = \"\"\n"),
            (Lines{"t.toml: neighbor[0].address: expected an endpoint \"a.b.c.d:port\" with port 1..65535, got "
                   "nothing",
                   "t.toml: neighbor[0].name: expected a name of 1..64 characters from [A-Za-z0-9._-], got nothing",
                   "t.toml: neighbor[0].ca: expected a non-empty file path, got \"\""}));
  EXPECT_EQ(slrErrors(std::string(kSlrBase) + R"(
[[neighbor]]
address = "10.0.5.2:7400"
name = "slr2"
[[neighbor]]
address = "10.0.6.2:7400"
name = "slr1"
[[neighbor]]
address = "10.0.7.2:7400"
name = "slr2"
[[neighbor]]
address = "10.0.5.2:7400"
name = "slr4"
[[neighbor]]
address = "10.0.8.2:7400"
name = "slr5"
port = 7400
)"),
            (Lines{"t.toml: neighbor[1].name: expected a name other than slr.name, got \"slr1\"",
                   "t.toml: neighbor[2].name: expected a name not used by neighbor[0], got \"slr2\"",
                   "t.toml: neighbor[3].address: expected an endpoint not used by neighbor[0], got "
                   "\"10.0.5.2:7400\"",
                   "t.toml: neighbor[4].port: unknown key; expected one of: address, name, ca"}));
  std::string many(kSlrBase);
  for (int i = 0; i < 33; ++i)
    many += "[[neighbor]]\naddress = \"10.0.5." + std::to_string(i + 1) + ":7400\"\nname = \"n" +
            std::to_string(i) + "\"\n";
  EXPECT_EQ(slrErrors(many), Lines{"t.toml: neighbor: expected at most 32 [[neighbor]] tables, got 33"});
  auto ok = loadSlrConfigFromString(many.substr(0, many.rfind("[[neighbor]]")), "t.toml");
  ASSERT_TRUE(ok.ok()) << ok.error().detail;
  EXPECT_EQ(ok->neighbors.size(), 32u);
  EXPECT_EQ(slrErrors("neighbor = \"slr2\"\n" + std::string(kSlrBase)),
            Lines{"t.toml: neighbor: expected an array of tables [[neighbor]], got \"slr2\""});
}

TEST(ConfigRecovery, WhohasErrors) {
  auto whohas = [](std::string_view body) {
    return slrErrors(std::string(kSlrBase) + "[whohas]\n" + std::string(body));
  };
  EXPECT_EQ(whohas("wait = \"11s\"\n"), Lines{"t.toml: whohas.wait: expected a duration of 1ms..10s, got \"11s\""});
  EXPECT_EQ(whohas("wait = \"0ms\"\n"),
            Lines{"t.toml: whohas.wait: expected a duration such as \"250ms\", \"3s\", \"5m\" or \"1h\", greater "
                  "than 0, got \"0ms\""});
  EXPECT_EQ(whohas("scope = 0\n"), Lines{"t.toml: whohas.scope: expected an integer 1..8, got 0"});
  EXPECT_EQ(whohas("scope = 9\n"), Lines{"t.toml: whohas.scope: expected an integer 1..8, got 9"});
  EXPECT_EQ(whohas("scope = \"1\"\n"), Lines{"t.toml: whohas.scope: expected an integer 1..8, got \"1\""});
  EXPECT_EQ(whohas("timeout = \"1s\"\n"),
            Lines{"t.toml: whohas.timeout: unknown key; expected one of: wait, scope"});
}

TEST(ConfigRecovery, AllHostKeysRead) {
  std::string t = std::string(kHostBase) + R"(
[[subnet]]
prefix = "10.101.0.0/24"

[[check]]
name = "web"
type = "http"
address = "127.0.0.1:80"
path = "/healthz?x=1"
expect_status = 204
host_header = "www.example.com:80"
interval = "2s"
timeout = "2s"
rise = 3
fall = 2
subnets = ["10.100.0.0/24"]

[[check]]
name = "db"
type = "tcp"
address = "127.0.0.1:5432"

[[check]]
name = "disk"
type = "command"
command = "test -w /var/lib/app"
subnets = ["10.101.0.0/24", "10.100.0.0/24"]

[recovery]
enabled = false
stall_after = "2s"
give_up = "24h"
interval = "250ms"
max_echoes = 1000
)";
  auto r = loadHostConfigFromString(t, "h.toml");
  ASSERT_TRUE(r.ok()) << r.error().detail;
  ASSERT_EQ(r->checks.size(), 3u);
  const auto& web = r->checks[0];
  EXPECT_EQ(web.name, "web");
  EXPECT_EQ(web.type, CheckType::kHttp);
  EXPECT_EQ(web.address.str(), "127.0.0.1:80");
  EXPECT_EQ(web.path, "/healthz?x=1");
  EXPECT_EQ(web.expect_status, 204u);
  EXPECT_EQ(web.host_header, "www.example.com:80");
  EXPECT_EQ(web.interval, seconds(2));
  EXPECT_EQ(web.timeout, seconds(2));
  EXPECT_EQ(web.rise, 3u);
  EXPECT_EQ(web.fall, 2u);
  ASSERT_EQ(web.subnets.size(), 1u);
  EXPECT_EQ(web.subnets[0].str(), "10.100.0.0/24");
  const auto& db = r->checks[1];
  EXPECT_EQ(db.type, CheckType::kTcp);
  EXPECT_EQ(db.address.str(), "127.0.0.1:5432");
  EXPECT_EQ(db.path, "/");  // defaults
  EXPECT_EQ(db.expect_status, 200u);
  EXPECT_EQ(db.interval, seconds(1));
  EXPECT_EQ(db.timeout, milliseconds(500));
  EXPECT_EQ(db.rise, 1u);
  EXPECT_EQ(db.fall, 1u);
  EXPECT_TRUE(db.subnets.empty());  // all subnets
  const auto& disk = r->checks[2];
  EXPECT_EQ(disk.type, CheckType::kCommand);
  EXPECT_EQ(disk.command, "test -w /var/lib/app");
  EXPECT_EQ(disk.subnets.size(), 2u);
  EXPECT_FALSE(r->recovery.enabled);
  EXPECT_EQ(r->recovery.stall_after, seconds(2));
  EXPECT_EQ(r->recovery.give_up, std::chrono::hours(24));
  EXPECT_EQ(r->recovery.interval, milliseconds(250));
  EXPECT_EQ(r->recovery.max_echoes, 1000u);
}

TEST(ConfigRecovery, CheckErrors) {
  auto check = [](std::string_view body) { return hostErrors(std::string(kHostBase) + "[[check]]\n" + std::string(body)); };
  EXPECT_EQ(check(""),
            (Lines{"h.toml: check[0].name: expected a name of 1..64 characters from [A-Za-z0-9._-], got nothing",
                   "h.toml: check[0].type: expected one of \"tcp\", \"http\", \"command\", got nothing"}));
  EXPECT_EQ(check("name = \"a\"\ntype = \"ping\"\n"),
            Lines{"h.toml: check[0].type: expected one of \"tcp\", \"http\", \"command\", got \"ping\""});
  // Type-specific required keys.
  EXPECT_EQ(check("name = \"a\"\ntype = \"tcp\"\n"),
            Lines{"h.toml: check[0].address: expected an endpoint \"a.b.c.d:port\" with port 1..65535 "
                  "(check.type is \"tcp\"), got nothing"});
  EXPECT_EQ(check("name = \"a\"\ntype = \"http\"\naddress = \"127.0.0.1\"\n"),
            Lines{"h.toml: check[0].address: expected an endpoint \"a.b.c.d:port\" with port 1..65535 "
                  "(check.type is \"http\"), got \"127.0.0.1\""});
  EXPECT_EQ(check("name = \"a\"\ntype = \"command\"\n"),
            Lines{"h.toml: check[0].command: expected a non-empty command (check.type is \"command\"), got nothing"});
  EXPECT_EQ(check("name = \"a\"\ntype = \"command\"\ncommand = \"\"\n"),
            Lines{"h.toml: check[0].command: expected a non-empty command (check.type is \"command\"), got \"\""});
  // Keys that do not apply to the type.
  EXPECT_EQ(check("name = \"a\"\ntype = \"tcp\"\naddress = \"127.0.0.1:80\"\npath = \"/x\"\nexpect_status = 200\n"
                  "host_header = \"x\"\ncommand = \"true\"\n"),
            (Lines{"h.toml: check[0].path: expected no path on a \"tcp\" check (only http checks have one), got \"/x\"",
                   "h.toml: check[0].expect_status: expected no expect_status on a \"tcp\" check (only http checks "
                   "have one), got 200",
                   "h.toml: check[0].host_header: expected no host_header on a \"tcp\" check (only http checks have "
                   "one), got \"x\"",
                   "h.toml: check[0].command: expected no command on a \"tcp\" check (only command checks run one), "
                   "got \"true\""}));
  EXPECT_EQ(check("name = \"a\"\ntype = \"command\"\ncommand = \"true\"\naddress = \"127.0.0.1:80\"\n"),
            Lines{"h.toml: check[0].address: expected no address on a \"command\" check (only tcp and http checks "
                  "connect), got \"127.0.0.1:80\""});
  // http fields.
  const std::string http = "name = \"a\"\ntype = \"http\"\naddress = \"127.0.0.1:80\"\n";
  EXPECT_EQ(check(http + "path = \"healthz\"\n"),
            Lines{"h.toml: check[0].path: expected an HTTP path starting with '/', without spaces or control "
                  "characters, got \"healthz\""});
  EXPECT_EQ(check(http + "path = \"/a b\"\n"),
            Lines{"h.toml: check[0].path: expected an HTTP path starting with '/', without spaces or control "
                  "characters, got \"/a b\""});
  EXPECT_EQ(check(http + "expect_status = 600\n"),
            Lines{"h.toml: check[0].expect_status: expected an integer 100..599, got 600"});
  EXPECT_EQ(check(http + "expect_status = 99\n"),
            Lines{"h.toml: check[0].expect_status: expected an integer 100..599, got 99"});
  EXPECT_EQ(check(http + "host_header = \"a\\r\\nX: y\"\n"),
            Lines{"h.toml: check[0].host_header: expected a Host header of 1..255 characters without spaces, got "
                  "\"a\\u000D\\nX: y\""});
  // Timing.
  EXPECT_EQ(check(http + "interval = \"5ms\"\n"),
            Lines{"h.toml: check[0].interval: expected a duration of 10ms..1h, got \"5ms\""});
  EXPECT_EQ(check(http + "interval = \"2h\"\n"),
            Lines{"h.toml: check[0].interval: expected a duration of 10ms..1h, got \"2h\""});
  EXPECT_EQ(check(http + "timeout = \"2s\"\n"),
            Lines{"h.toml: check[0].timeout: expected a duration at most check[0].interval (\"1s\", the default), "
                  "got \"2s\""});
  EXPECT_EQ(check(http + "interval = \"100ms\"\n"),
            Lines{"h.toml: check[0].timeout: expected a duration at most check[0].interval (\"100ms\"), got "
                  "\"500ms\" (the default)"});
  EXPECT_EQ(check(http + "rise = 0\nfall = 101\n"),
            (Lines{"h.toml: check[0].rise: expected an integer 1..100, got 0",
                   "h.toml: check[0].fall: expected an integer 1..100, got 101"}));
  // Subnets must be [[subnet]] prefixes.
  EXPECT_EQ(check(http + "subnets = [\"10.100.0.0/25\", \"10.100.0.0/24\", \"10.100.0.0/24\", \"x\"]\n"),
            (Lines{"h.toml: check[0].subnets[0]: expected the prefix of a [[subnet]], got \"10.100.0.0/25\"",
                   "h.toml: check[0].subnets[2]: expected a prefix not listed twice, got \"10.100.0.0/24\"",
                   "h.toml: check[0].subnets[3]: expected an IPv4 prefix \"a.b.c.d/len\" with no host bits set, got "
                   "\"x\""}));
  EXPECT_EQ(check(http + "subnets = \"10.100.0.0/24\"\n"),
            Lines{"h.toml: check[0].subnets: expected an array of [[subnet]] prefixes, got \"10.100.0.0/24\""});
  EXPECT_EQ(check(http + "port = 80\n"),
            Lines{"h.toml: check[0].port: unknown key; expected one of: name, type, address, path, expect_status, "
                  "host_header, command, interval, timeout, rise, fall, subnets"});
  // Names unique; at most 64.
  EXPECT_EQ(check(http + "[[check]]\n" + http),
            Lines{"h.toml: check[1].name: expected a name not used by check[0], got \"a\""});
  std::string many(kHostBase);
  for (int i = 0; i < 65; ++i)
    many += "[[check]]\nname = \"c" + std::to_string(i) + "\"\ntype = \"tcp\"\naddress = \"127.0.0.1:80\"\n";
  EXPECT_EQ(hostErrors(many), Lines{"h.toml: check: expected at most 64 [[check]] tables, got 65"});
  auto ok = loadHostConfigFromString(many.substr(0, many.rfind("[[check]]")), "h.toml");
  ASSERT_TRUE(ok.ok()) << ok.error().detail;
  EXPECT_EQ(ok->checks.size(), 64u);
}

TEST(ConfigRecovery, RecoveryErrors) {
  auto rec = [](std::string_view body) { return hostErrors(std::string(kHostBase) + "[recovery]\n" + std::string(body)); };
  EXPECT_EQ(rec("enabled = \"no\"\n"), Lines{"h.toml: recovery.enabled: expected true or false, got \"no\""});
  EXPECT_EQ(rec("stall_after = \"5ms\"\n"),
            Lines{"h.toml: recovery.stall_after: expected a duration of 10ms..1h, got \"5ms\""});
  EXPECT_EQ(rec("give_up = \"25h\"\n"),
            Lines{"h.toml: recovery.give_up: expected a duration of 1ms..24h, got \"25h\""});
  EXPECT_EQ(rec("stall_after = \"2s\"\ngive_up = \"2s\"\n"),
            Lines{"h.toml: recovery.give_up: expected a duration greater than recovery.stall_after (\"2s\"), got "
                  "\"2s\""});
  EXPECT_EQ(rec("stall_after = \"2m\"\n"),
            Lines{"h.toml: recovery.give_up: expected a duration greater than recovery.stall_after (\"120s\"), got "
                  "\"60s\" (the default)"});
  EXPECT_EQ(rec("give_up = \"1s\"\n"),
            Lines{"h.toml: recovery.give_up: expected a duration greater than recovery.stall_after (\"1500ms\", the "
                  "default), got \"1s\""});
  EXPECT_EQ(rec("interval = \"0ms\"\n"),
            Lines{"h.toml: recovery.interval: expected a duration such as \"250ms\", \"3s\", \"5m\" or \"1h\", "
                  "greater than 0, got \"0ms\""});
  EXPECT_EQ(rec("max_echoes = 0\n"), Lines{"h.toml: recovery.max_echoes: expected an integer 1..1000, got 0"});
  EXPECT_EQ(rec("max_echoes = 1001\n"), Lines{"h.toml: recovery.max_echoes: expected an integer 1..1000, got 1001"});
  EXPECT_EQ(rec("echoes = 3\n"),
            Lines{"h.toml: recovery.echoes: unknown key; expected one of: enabled, stall_after, give_up, interval, "
                  "max_echoes"});
  EXPECT_EQ(hostErrors(std::string(kHostBase) + "[[recovery]]\n"),
            Lines{"h.toml: recovery: expected a table [recovery], got an array"});
  EXPECT_EQ(hostErrors(std::string(kHostBase) + "[checks]\n"),
            Lines{"h.toml: checks: unknown key; expected one of: host, tls, slr, subnet, load, check, recovery"});
}

// ------------------------------------------------------- role and files ----

TEST(ConfigRole, Detect) {
  auto s = detectRoleFromString(kSlrBase, "t.toml");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(*s, Role::kSlr);
  auto h = detectRoleFromString(kHostBase, "h.toml");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(*h, Role::kHost);

  auto none = detectRoleFromString("[tls]\nca = \"x\"\n", "x.toml");
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().detail, "x.toml: expected either a [slr] or a [host] table, got neither");
  auto both = detectRoleFromString("[slr]\n[host]\n", "x.toml");
  ASSERT_FALSE(both.ok());
  EXPECT_EQ(both.error().detail, "x.toml: expected either a [slr] or a [host] table, got both");
  auto bad = detectRoleFromString("[slr\n", "x.toml");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().detail.rfind("x.toml:1:", 0), 0u) << bad.error().detail;
}

TEST(ConfigRole, WrongLoaderSaysSo) {
  EXPECT_EQ(slrErrors(kHostBase),
            Lines{"t.toml: slr: expected an SLR config with a [slr] table, got a host config (it "
                  "has a [host] table)"});
  EXPECT_EQ(hostErrors(kSlrBase),
            Lines{"h.toml: host: expected a host config with a [host] table, got an SLR config (it "
                  "has a [slr] table)"});
}

TEST(ConfigFiles, MissingFile) {
  auto r = loadSlrConfig("/nonexistent/slr.toml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ENOENT);
  EXPECT_EQ(r.error().detail, "/nonexistent/slr.toml: cannot open: No such file or directory");
  EXPECT_FALSE(detectRole("/nonexistent/slr.toml").ok());
}

TEST(ConfigFiles, ErrorsNameTheFile) {
  char path[] = "/tmp/slr_config_test_XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  std::string text = edit(kSlrBase, R"(name = "slr1")", "name = 5");
  ASSERT_EQ(write(fd, text.data(), text.size()), ssize_t(text.size()));
  close(fd);
  auto r = loadSlrConfig(path);
  unlink(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().detail, std::string(path) + ": slr.name: expected a name of 1..64 "
                                                  "characters from [A-Za-z0-9._-], got 5");
}

}  // namespace
}  // namespace slr::config
