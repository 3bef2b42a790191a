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
