#include "core/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
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

  auto hex = loadHostConfig(std::string(SLR_SOURCE_DIR) + "/packaging/examples/host.toml");
  auto hdef = loadHostConfigFromString(kHostBase, "h.toml");
  ASSERT_TRUE(hex.ok() && hdef.ok());
  EXPECT_EQ(hex->host.status_socket, hdef->host.status_socket);
  EXPECT_EQ(hex->host.tun_name, hdef->host.tun_name);
  EXPECT_EQ(hex->host.update_interval, hdef->host.update_interval);
  EXPECT_EQ(hex->load.max_connections, hdef->load.max_connections);
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
                  "log_level"});
  EXPECT_EQ(slrErrors(edit(kSlrBase, "[tls]", "[flows.timeouts]\ntcp = \"1s\"\n[tls]")),
            Lines{"t.toml: flows.timeouts.tcp: unknown key; expected one of: tcp_syn, "
                  "tcp_established, tcp_closing, udp, other"});
  EXPECT_EQ(slrErrors(std::string(kSlrBase) + "[[vips]]\nname = \"x\"\n"),
            Lines{"t.toml: vips: unknown key; expected one of: slr, tls, flows, policy, vip, host"});
  EXPECT_EQ(slrErrors(std::string(kSlrBase) + "weigth = 3\n"),
            Lines{"t.toml: host[0].weigth: unknown key; expected one of: name, subnets, weight, "
                  "route_cost"});
  EXPECT_EQ(hostErrors(std::string(kHostBase) + "[load]\nfiles = \"/x\"\n"),
            Lines{"h.toml: load.files: unknown key; expected one of: source, max_connections, file, "
                  "command"});
  // Unknown keys come in document order.
  EXPECT_EQ(slrErrors(edit(kSlrBase, R"(name = "slr1")", "zz = 1\nname = \"slr1\"\naa = 2")),
            (Lines{"t.toml: slr.zz: unknown key; expected one of: name, control_listen, "
                   "tunnel_source, status_socket, tun_name, workers, tunnel_mtu, fast_path_interfaces, "
                   "log_level",
                   "t.toml: slr.aa: unknown key; expected one of: name, control_listen, "
                   "tunnel_source, status_socket, tun_name, workers, tunnel_mtu, fast_path_interfaces, "
                  "log_level"}));
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
                  "log_level"});
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
