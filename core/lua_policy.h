#pragma once
// The operator-installed cost function F and aggregate function G of the
// seed ([policy].lua / lua_file), as sandboxed Lua 5.4.
//
//   function F(c, ctx) return c.load / c.weight + c.route_cost end
//   function G(cands, ctx) ... return mean end
//
// F(c, ctx) returns the cost m_kj of one candidate (lower is better; NaN or
// +-inf make it ineligible and are passed through).  G(cands, ctx) returns the
// aggregate load M_k reported upwards (NaN = no capacity).  A source may
// define either or both; the built-in defaultCost / aggregateLoad stand in
// for the one it leaves out.
//
// What the Lua code sees:
//   c    = { name, load, route_cost, weight, available, standby, proximity,
//            is_slr, next_hop }            (fresh table per call)
//   cands = { c1, c2, ... }                 (1-based array of such tables)
//   ctx  = { subnet, class, region, hour, minute, weekday }   (region "" = none)
//
// Sandbox.  Each LuaPolicy owns one lua_State that only ever runs this source:
//   - libraries: base, table, string, math, utf8.  No io, os, package, debug,
//     coroutine; dofile, loadfile, load, require, collectgarbage, print and
//     warn are removed; setmetatable refuses metatables with __gc (Lua runs
//     finalizers with hooks off, outside every limit).  Only text chunks are
//     accepted (no precompiled bytecode, which Lua does not verify).
//   - every entry into Lua (the initial chunk run and each F/G call) may run
//     LuaLimits::instructions VM instructions, counted by a LUA_MASKCOUNT
//     hook.  Once tripped the hook fires on every instruction, so a pcall
//     inside the policy cannot swallow the error.
//   - the same hook checks a wall-clock deadline (LuaLimits::time) every
//     1000 instructions.  A backstop, not the primary limit: one instruction
//     can do a lot of C work (comparing or copying multi-MiB strings), so
//     1M instructions alone do not bound time.
//   - C library functions that could loop for a long time inside a single
//     instruction refuse work beyond a fixed bound: string.find/match/gmatch/
//     gsub (estimated backtracking work of pattern x subject), table.move,
//     table.insert and table.remove (elements moved, whatever __len claims).
//   - a custom allocator caps the state at LuaLimits::memory bytes.
//   - no Lua error or C++ exception escapes: every entry goes through
//     lua_pcall and failures come back as Result errors.
// Policies are written by the operator, not by clients: the limits are there
// so that a mistake costs one fallback to the built-in function, not a stuck
// control thread.
//
// Globals persist between calls (a policy may keep state in them), but the
// candidate and context tables are new on every call.
//
// Threads: not thread-safe.  A LuaPolicy is used by the control thread only,
// at table-build time (Policy::build, subnet aggregation), never per packet;
// workers only ever see the Selection it helped build.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>

#include "core/policy.h"
#include "core/result.h"

struct lua_State;

namespace slr {

struct LuaLimits {
  uint64_t instructions = 1'000'000;     // Lua VM instructions per entry (call or chunk run)
  size_t memory = size_t(16) << 20;      // bytes, whole state
  std::chrono::milliseconds time{1000};  // wall clock per entry; 0 = no deadline
};

class LuaPolicy {
 public:
  // Compiles and runs `source` once in a fresh sandboxed state and looks up
  // the globals F and G.  Errors (op "lua policy <chunk_name>"): syntax error
  // (detail "<chunk_name>:<line>: ..."), runtime error in the chunk,
  // instruction, time or memory limit exceeded, neither F nor G defined, F
  // or G defined but not a function.
  static Result<std::unique_ptr<LuaPolicy>> load(std::string_view source,
                                                 std::string_view chunk_name,
                                                 const LuaLimits& limits = {});
  ~LuaPolicy();
  LuaPolicy(const LuaPolicy&) = delete;
  LuaPolicy& operator=(const LuaPolicy&) = delete;

  bool hasCost() const { return has_f_; }       // F defined
  bool hasAggregate() const { return has_g_; }  // G defined
  const std::string& chunkName() const { return chunk_name_; }
  // "F", "G" or "F, G": the functions the source defines.
  std::string functions() const;

  // The operator's source as configured: [policy] lua (inline, returned as
  // is) or else lua_file (read whole).  Empty when neither is set.  An error
  // (op "read lua_file") carries errno and the path.
  static Result<std::string> readConfigured(const std::string& inline_source,
                                            const std::string& file);

  // F(c, ctx) -> number.  The error detail names the function:
  // "F: <lua message>", "F: returned a string, expected a number",
  // "F: instruction limit exceeded ...", "F: memory limit exceeded ...",
  // "F: time limit exceeded ...".
  Result<double> cost(const Candidate& c, const CostContext& ctx);
  // G(cands, ctx) -> number; errors as for cost(), prefixed "G: ".
  Result<double> aggregate(std::span<const Candidate> cands, const CostContext& ctx);

  // Every cost()/aggregate() call, whether direct or through the functions
  // below, and how many of them failed.
  struct Health {
    uint64_t calls = 0, errors = 0;
    std::string last_error;  // Error::message() of the latest failure
  };
  Health health() const { return health_; }

  // CostFn / AggregateFn bound to this object, which must outlive them.  They
  // call Lua; on any error that call falls back to defaultCost /
  // aggregateLoad, the failure is counted in health() and logged
  // (LOG_WARN "policy") once per distinct message.  Without F (G) they are
  // plain defaultCost (aggregateLoad).
  CostFn costFn();
  AggregateFn aggregateFn();

  struct Sandbox;  // limits, allocator accounting, per-entry budget (lua_policy.cc)

 private:
  struct StateCloser {
    void operator()(lua_State* L) const;
  };
  LuaPolicy() = default;

  Result<double> call(int fn_index, const char* fn_name, const Candidate* one,
                      std::span<const Candidate> many, const CostContext& ctx);
  void noteFallback(const Error& e, const char* fallback);

  std::string chunk_name_;
  // Declared before L_: the allocator's state must outlive lua_close().
  std::unique_ptr<Sandbox> sandbox_;
  std::unique_ptr<lua_State, StateCloser> L_;
  bool has_f_ = false;
  bool has_g_ = false;
  Health health_;
  std::unordered_set<std::string> logged_;  // distinct messages already logged (bounded)
  bool log_suppressed_ = false;             // logged_ is full and we said so
};

}  // namespace slr
