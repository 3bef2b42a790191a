#pragma once
// Configuration of the two roles, read from TOML into plain structs with
// defaults.  Loading validates everything and reports EVERY mistake at once,
// one per line, as `FILE: KEY.PATH: expected WHAT, got WHAT`, so an operator
// fixes a config in one round instead of one error per restart.  Unknown keys
// are errors: a typo must never silently fall back to a default.
//
// Nothing here touches the OS beyond reading the file: certificate files are
// checked when the TLS context is built, interfaces when they are created.
// toml++ stays out of this header (it is heavy to compile).
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/log.h"
#include "core/net_types.h"
#include "core/result.h"

namespace slr::config {

using Duration = std::chrono::milliseconds;

// "a.b.c.d:port", port 1..65535.
struct Endpoint {
  IpAddress addr;
  uint16_t port = 0;

  static std::optional<Endpoint> parse(std::string_view text);  // IPv4 only in v1
  std::string str() const;                                      // "10.0.2.2:7400"
  friend bool operator==(const Endpoint&, const Endpoint&) = default;
};

enum class Role { kSlr, kHost };
// What the SLR does with a new flow when its flow table is full.
enum class OnFull { kStateless, kDrop };
enum class TunnelMode { kAuto, kKernel, kUserspace };
enum class LoadSource { kCpu, kConnections, kFile, kCommand };

// Spellings used in the config file (and in status output).
std::string_view roleName(Role r);            // "slr" | "host"
std::string_view onFullName(OnFull v);        // "stateless" | "drop"
std::string_view tunnelModeName(TunnelMode v);  // "auto" | "kernel" | "userspace"
std::string_view loadSourceName(LoadSource v);  // "cpu" | "connections" | "file" | "command"

// policy.algorithm is kept as a string (validated to be one of these) so the
// policy module owns the mapping to implementations.
inline constexpr std::string_view kAlgorithmLeastCost = "least-cost";
inline constexpr std::string_view kAlgorithmWeightedRoundRobin = "weighted-round-robin";
inline constexpr std::string_view kAlgorithmConsistentHash = "consistent-hash";

struct TlsConfig {
  std::string ca;    // PEM CA bundle that signs the peers' certificates
  std::string cert;  // own certificate (CN = own name)
  std::string key;   // own private key
};

// ---------------------------------------------------------------- SLR ----

struct SlrSection {
  std::string name;                 // required, [A-Za-z0-9._-]{1,64}
  Endpoint control_listen;          // required, TLS control channel
  IpAddress tunnel_source;          // required, outer source of tunnels
  std::string status_socket = "/run/slrctl/slr.sock";
  std::string tun_name = "slr0";    // VIP subnets are routed into it
  uint32_t workers = 1;             // 1..64, one flow-table shard each
  // Uplinks VIP traffic arrives on: a tc BPF fast path attached to their
  // ingress forwards packets of established flows without userspace.  Empty:
  // no fast path (every packet goes through the workers).
  std::vector<std::string> fast_path_interfaces;
  uint32_t tunnel_mtu = 1500;       // 576..65535, largest outer (encapsulated) packet sent
  // Shortcut signalling (the seed's Fig. 5 "tunnel object"): this SLR tells
  // its [[upstream]] SLRs which host it chose for a flow that came from them,
  // relays such signals from the SLRs below it, and applies them to its own
  // flows (later packets go straight to the host).  Off: it does none of it.
  bool shortcut = false;
  // How long an SLR holds the later packets of a new flow it sent to a
  // shortcut-capable lower SLR, waiting for the shortcut (1ms..10s).
  Duration shortcut_wait{std::chrono::milliseconds(20)};
  log::Level log_level = log::Level::kInfo;
};

// An SLR one level up ([[upstream]]): this SLR registers with it exactly as a
// host registers with a site SLR, and advertises the union of its children's
// virtual subnets with aggregated loads.
struct UpstreamConfig {
  Endpoint address;          // required, the upper SLR's control endpoint
  std::string name;          // required, expected certificate CN of the upper SLR
  IpAddress tunnel_source;   // default address.addr; tunnels accepted only from it
  Duration update_interval{std::chrono::seconds(1)};
  std::string ca;            // optional: CA verifying this peer (default [tls].ca)
};

struct FlowTimeouts {
  Duration tcp_syn{std::chrono::seconds(10)};
  Duration tcp_established{std::chrono::seconds(300)};
  Duration tcp_closing{std::chrono::seconds(10)};
  Duration udp{std::chrono::seconds(30)};
  Duration other{std::chrono::seconds(30)};
};

struct FlowsConfig {
  uint32_t capacity = 1048576;      // per SLR, split across workers; 1024..(1<<26)
  OnFull on_full = OnFull::kStateless;
  FlowTimeouts timeouts;
  // A TCP segment without SYN for a flow this SLR does not know, whose next
  // hop would be a host (not a lower SLR): its packets are dropped and
  // counted for up to this long after the first one (the client retransmits),
  // waiting for WHOHAS or a host's flow advertisement (ICMP echo) to say
  // which host has the connection; then the stateless table's choice.
  // 0 = no wait: the stateless choice at once (0..60s, default 3s).
  Duration midstream_wait{std::chrono::seconds(3)};
};

// [hot_spare]: this SLR and one peer SLR form a main/spare pair.  The main
// streams its flow-table changes to the spare over the TLS control channel
// (the spare dials the main's control_listen); the spare mirrors them and,
// when the main's heartbeats stop for dead_after, claims the addresses the
// VIP traffic is routed to and forwards with the mirrored flows.
enum class SpareRole { kMain, kSpare };
std::string_view spareRoleName(SpareRole r);  // "main" | "spare"

struct HotSpareConfig {
  bool enabled = false;            // the [hot_spare] table is present
  SpareRole role = SpareRole::kMain;  // key "role", required
  Endpoint peer;                   // required: the other SLR's control_listen
  std::string peer_name;           // required: its certificate CN (!= own name)
  Duration heartbeat{std::chrono::milliseconds(100)};   // 10ms..10s
  Duration dead_after{std::chrono::milliseconds(500)};  // > heartbeat, <= 60s
  Duration sync_interval{std::chrono::milliseconds(10)};  // 1ms..1s: batching delay (sync lag bound)
  std::string claim_interface;     // required when claim_addresses is non-empty
  std::vector<Prefix> claim_addresses;  // "10.0.2.100/24": added on claim (+ gratuitous ARP), removed on release
};

// [[neighbor]]: SLRs asked WHOHAS for mid-stream flows this SLR does not know.
struct NeighborConfig {
  Endpoint address;   // required: its control_listen
  std::string name;   // required: its certificate CN; unique, != own name
  std::string ca;     // optional, default [tls].ca
};

struct WhohasConfig {
  Duration wait{std::chrono::milliseconds(50)};  // [whohas] wait, 1ms..10s: hold before giving up
  uint8_t scope = 1;  // [whohas] scope 1..8: hops a query travels (1 = direct neighbours only)
};

enum class RouteCostSource { kConfig, kKernel };
std::string_view routeCostSourceName(RouteCostSource v);  // "config" | "kernel"

struct PolicyConfig {
  std::string algorithm{kAlgorithmLeastCost};  // one of kAlgorithm*
  Duration recompute_interval{std::chrono::seconds(1)};
  Duration hold_time{std::chrono::seconds(3)};  // host silent this long is withdrawn
  double tie_tolerance = 0.05;                   // 0..1e9
  // r_j: [[host]].route_cost alone ("config"), or plus the metric of the
  // kernel's route to the next hop's tunnel address times route_metric_scale
  // ("kernel"; looked up at every table rebuild).
  RouteCostSource route_cost_source = RouteCostSource::kConfig;
  double route_metric_scale = 0.001;             // 0..1e6
  // Off (default): new flows of one client address to next hops that are
  // SLRs hash on the client address, so its concurrent connections share one
  // site.  On: every connection is placed on its own (spread over sites).
  bool spread_connections = false;
  // Operator-installed F and G (Lua 5.4, sandboxed): inline source, or a file
  // (a relative path is relative to the config file's directory; loadSlrConfig
  // resolves it).  At most one of the two.  Defines F(c, ctx) and/or G(cands, ctx).
  std::string lua;
  std::string lua_file;
};

struct VipConfig {
  std::string name;  // unique among [[vip]]
  Prefix subnet;     // IPv4, no host bits, overlaps no other [[vip]]
  std::string cls = "default";  // key "class": service class handed to F and G ([A-Za-z0-9._-]{1,64})
};

// A host allowed to register; identity = certificate CN = name.
struct HostAuthConfig {
  std::string name;              // unique among [[host]]
  std::vector<Prefix> subnets;   // >= 1, each inside some VipConfig::subnet
  uint32_t weight = 1;           // 1..1000
  double route_cost = 0.0;       // r_j, 0..1e9
  // Disaster-recovery next hop: gets new flows only when no primary (non-
  // standby) next hop of the subnet is available.
  bool standby = false;
  // Start drained: no new flows until `slrctl undrain NAME`.
  bool drained = false;
};

// Client proximity ([[region]]): clients whose source address lies in one of
// `clients` belong to this region; `cost` adds a per-next-hop cost (by
// [[host]] name) to F's input for their new flows.
struct RegionConfig {
  std::string name;                                   // unique among [[region]]
  std::vector<Prefix> clients;                        // >= 1, IPv4
  std::vector<std::pair<std::string, double>> cost;   // [[host]] name -> 0..1e9; names must exist
};

struct SlrConfig {
  SlrSection slr;
  TlsConfig tls;
  FlowsConfig flows;
  PolicyConfig policy;
  std::vector<VipConfig> vips;        // >= 1
  std::vector<HostAuthConfig> hosts;  // >= 1
  std::vector<UpstreamConfig> upstreams;  // [[upstream]], 0..16
  std::vector<RegionConfig> regions;      // [[region]], 0..256
  HotSpareConfig hot_spare;               // [hot_spare]
  std::vector<NeighborConfig> neighbors;  // [[neighbor]], 0..32
  WhohasConfig whohas;                    // [whohas]
  std::string source_path;            // file (or source name) it was loaded from
};

// --------------------------------------------------------------- host ----

struct HostSection {
  std::string name;                 // required, must equal own certificate CN
  IpAddress tunnel_address;         // required, local address SLRs tunnel to
  std::string status_socket = "/run/slrctl/host.sock";
  TunnelMode tunnel_mode = TunnelMode::kAuto;
  std::string tun_name = "slrt0";   // userspace termination TUN device
  Duration update_interval{std::chrono::seconds(1)};
  // Uplinks tunnels arrive on: with userspace termination, a tc BPF program
  // there decapsulates accepted tunnel packets in the kernel and hands them
  // to tun_name, as the userspace terminator would.  Empty: off.
  std::vector<std::string> decap_interfaces;
  // Tunnel sources accepted besides the [[slr]] peers' (SLRs higher in the
  // hierarchy that may send shortcut tunnels straight to this host).
  std::vector<IpAddress> shortcut_sources;
  log::Level log_level = log::Level::kInfo;
};

struct SlrPeerConfig {
  Endpoint address;          // required, SLR control endpoint
  std::string name;          // required, expected SLR certificate CN
  IpAddress tunnel_source;   // default: address.addr; tunnels accepted only from it
};

struct LoadConfig {
  LoadSource source = LoadSource::kCpu;
  uint32_t max_connections = 1000;  // >= 1; source "connections": load = conns / max
  std::string file;                 // required (non-empty) when source == kFile
  std::string command;              // required (non-empty) when source == kCommand; /bin/sh -c
};

// [[check]]: a health check of a service on this host.  A subnet is
// advertised available only while every check that covers it passes.
enum class CheckType { kTcp, kHttp, kCommand };
std::string_view checkTypeName(CheckType t);  // "tcp" | "http" | "command"

struct HealthCheckConfig {
  std::string name;              // required, [A-Za-z0-9._-]{1,64}, unique
  CheckType type = CheckType::kTcp;  // key "type", required
  Endpoint address;              // tcp/http: required ("127.0.0.1:80")
  std::string path = "/";        // http: request path, starts with '/'
  uint32_t expect_status = 200;  // http: 100..599
  std::string host_header;       // http: Host header (default: the address)
  std::string command;           // command: /bin/sh -c, exit 0 = healthy; required for type command
  Duration interval{std::chrono::seconds(1)};        // 10ms..1h
  Duration timeout{std::chrono::milliseconds(500)};  // 1ms..1h, <= interval
  uint32_t rise = 1;             // 1..100 consecutive passes to become healthy
  uint32_t fall = 1;             // 1..100 consecutive failures to become unhealthy
  std::vector<Prefix> subnets;   // subset of [[subnet]] prefixes; empty = all
};

// [recovery]: host-originated flow recovery (the seed's Fig. 10).  The agent
// watches the TCP connections on its VIPs; one whose sent data has gone
// unacknowledged for stall_after (but less than give_up) gets an ICMP echo
// request from the VIP to the client carrying a flow advertisement
// (man slrctl.toml(5), FLOW ADVERTISEMENT); the client's reply reaches
// whichever SLR now gets the flow's packets, which re-learns the flow.
struct RecoveryConfig {
  bool enabled = true;                                  // key "enabled"
  Duration stall_after{std::chrono::milliseconds(1500)};  // 10ms..1h
  Duration give_up{std::chrono::seconds(60)};            // > stall_after, <= 24h
  Duration interval{std::chrono::milliseconds(500)};     // 10ms..1h: scan period and echo repeat
  uint32_t max_echoes = 8;                               // 1..1000 per stalled connection
};

struct HostConfig {
  HostSection host;
  TlsConfig tls;
  std::vector<SlrPeerConfig> slrs;  // >= 1, from [[slr]]
  std::vector<Prefix> subnets;      // >= 1, from [[subnet]] prefix = ...; no overlaps
  // Parallel to subnets ([[subnet]] load_scale, 0..1e3, default 1): the load
  // index advertised for that subnet is the measured load times this, so one
  // host can advertise a priority and a best-effort subnet differently.
  std::vector<double> subnet_load_scale;
  LoadConfig load;
  std::vector<HealthCheckConfig> checks;  // [[check]], 0..64
  RecoveryConfig recovery;                // [recovery]
  std::string source_path;
};

// ------------------------------------------------------------ loading ----
// On failure Error::detail holds every problem, one per line:
//   FILE: KEY.PATH: expected WHAT, got WHAT      (arrays: host[1].subnets[0], 0-based)
//   FILE: KEY.PATH: unknown key; expected one of: a, b, c
//   FILE:LINE:COL: <TOML syntax error>
// Error::op is "config FILE"; Error::code is errno when the file could not be
// read, else 0.

[[nodiscard]] Result<SlrConfig> loadSlrConfig(const std::string& path);
[[nodiscard]] Result<HostConfig> loadHostConfig(const std::string& path);
[[nodiscard]] Result<SlrConfig> loadSlrConfigFromString(std::string_view toml,
                                                        std::string_view source_name);
[[nodiscard]] Result<HostConfig> loadHostConfigFromString(std::string_view toml,
                                                          std::string_view source_name);

// Role of a config file: a [slr] table means SLR, a [host] table means host
// (an SLR config's [[host]] is an array, not a table).  Neither or both is an error.
[[nodiscard]] Result<Role> detectRole(const std::string& path);
[[nodiscard]] Result<Role> detectRoleFromString(std::string_view toml, std::string_view source_name);

// Error::detail split into its lines (for callers that list or count errors).
std::vector<std::string> errorLines(const Error& e);

// Building blocks, shared with code that validates the same things elsewhere.
bool isValidName(std::string_view s);                   // [A-Za-z0-9._-]{1,64}
std::optional<Duration> parseDuration(std::string_view s);  // "250ms" "3s" "5m" "1h", > 0

}  // namespace slr::config
