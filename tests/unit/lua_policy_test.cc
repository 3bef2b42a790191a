#include "core/lua_policy.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/log.h"

namespace slr {
namespace {

// "s contains sub" / "s starts with prefix", with s printed on failure.
#define EXPECT_CONTAINS(s, sub)                                     \
  do {                                                              \
    const std::string s_ = (s);                                     \
    EXPECT_NE(s_.find(sub), std::string::npos) << "in: " << s_;     \
  } while (0)
#define EXPECT_STARTS_WITH(s, prefix)                               \
  do {                                                              \
    const std::string s_ = (s);                                     \
    EXPECT_EQ(s_.rfind(prefix, 0), 0u) << "in: " << s_;             \
  } while (0)

Candidate host(uint16_t hop, std::string_view name, double load, double route_cost = 0.0,
               uint32_t weight = 1) {
  Candidate c;
  c.next_hop = hop;
  c.name_hash = stableNameHash(name);
  c.name = name;
  c.load = load;
  c.route_cost = route_cost;
  c.weight = weight;
  return c;
}

std::unique_ptr<LuaPolicy> mustLoad(std::string_view src, std::string_view name = "policy.lua") {
  auto r = LuaPolicy::load(src, name);
  EXPECT_TRUE(r.ok()) << r.error().message();
  if (!r.ok()) return nullptr;
  return std::move(r).value();
}

// The error message of a load that must fail.
std::string loadError(std::string_view src, std::string_view name = "policy.lua") {
  auto r = LuaPolicy::load(src, name);
  EXPECT_FALSE(r.ok()) << "loaded: " << src;
  return r.ok() ? std::string() : r.error().message();
}

std::map<uint16_t, size_t> slotCounts(const Selection& s) {
  std::map<uint16_t, size_t> m;
  for (uint16_t h : s.slots) ++m[h];
  return m;
}

// ---- F and G compute what the source says ------------------------------------

TEST(LuaPolicy, CostFollowsTheSource) {
  // Route cost dominates, load only breaks ties: the opposite of defaultCost's
  // preference between these two.
  auto lua = mustLoad("function F(c, ctx) return c.route_cost * 1000 + c.load end");
  ASSERT_TRUE(lua);
  EXPECT_TRUE(lua->hasCost());
  EXPECT_FALSE(lua->hasAggregate());
  const Candidate near_busy = host(1, "near", 0.9, 0.1);
  const Candidate far_idle = host(2, "far", 0.1, 0.5);
  auto a = lua->cost(near_busy, {});
  auto b = lua->cost(far_idle, {});
  ASSERT_TRUE(a.ok()) << a.error().message();
  ASSERT_TRUE(b.ok()) << b.error().message();
  EXPECT_DOUBLE_EQ(*a, 100.9);
  EXPECT_DOUBLE_EQ(*b, 500.1);
  EXPECT_LT(*a, *b);
  EXPECT_GT(defaultCost(near_busy), defaultCost(far_idle));  // built-in would choose "far"
}

TEST(LuaPolicy, CostSeesEveryFieldAndTheContext) {
  auto lua = mustLoad(R"lua(
    local function check(cond, what) if not cond then error("wrong " .. what) end end
    function F(c, ctx)
      check(c.name == "site-1", "name")
      check(c.load == 0.25, "load")
      check(c.route_cost == 0.5, "route_cost")
      check(c.weight == 3 and math.type(c.weight) == "integer", "weight")
      check(c.available == true, "available")
      check(c.standby == true, "standby")
      check(c.proximity == 0.125, "proximity")
      check(c.is_slr == true, "is_slr")
      check(c.next_hop == 7 and math.type(c.next_hop) == "integer", "next_hop")
      check(ctx.subnet == "10.100.0.0/24", "subnet")
      check(ctx.class == "gold", "class")
      check(ctx.region == "east", "region")
      check(ctx.hour == 13 and ctx.minute == 45 and ctx.weekday == 2, "time")
      return 42
    end
  )lua");
  ASSERT_TRUE(lua);
  Candidate c = host(7, "site-1", 0.25, 0.5, 3);
  c.standby = true;
  c.proximity = 0.125;
  c.is_slr = true;
  CostContext ctx;
  ctx.subnet = "10.100.0.0/24";
  ctx.subnet_class = "gold";
  ctx.region = "east";
  ctx.hour = 13;
  ctx.minute = 45;
  ctx.weekday = 2;
  auto r = lua->cost(c, ctx);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(*r, 42.0);

  // And the false/empty side of the same fields.
  auto lua2 = mustLoad(R"lua(
    function F(c, ctx)
      assert(c.available == false and c.standby == false and c.is_slr == false)
      assert(ctx.region == "" and ctx.class == "" and ctx.subnet == "")
      return -1
    end
  )lua");
  ASSERT_TRUE(lua2);
  Candidate d = host(1, "x", 0.0);
  d.available = false;
  auto r2 = lua2->cost(d, {});
  ASSERT_TRUE(r2.ok()) << r2.error().message();
  EXPECT_EQ(*r2, -1.0);
}

TEST(LuaPolicy, CostMayUseTimeOfDay) {
  // The seed's example: a site that is only cheap off-peak.
  auto lua = mustLoad(R"lua(
    function F(c, ctx)
      local peak = ctx.hour >= 9 and ctx.hour < 18
      if c.name == "batch" and peak then return c.load + 10 end
      return c.load
    end
  )lua");
  ASSERT_TRUE(lua);
  const Candidate batch = host(1, "batch", 0.1);
  CostContext night;
  night.hour = 2;
  CostContext day;
  day.hour = 11;
  EXPECT_DOUBLE_EQ(lua->cost(batch, night).value(), 0.1);
  EXPECT_DOUBLE_EQ(lua->cost(batch, day).value(), 10.1);
}

TEST(LuaPolicy, NonFiniteCostPassesThrough) {
  auto lua = mustLoad(R"lua(
    function F(c, ctx)
      if c.name == "nan" then return 0/0 end
      if c.name == "inf" then return math.huge end
      return 1
    end
  )lua");
  ASSERT_TRUE(lua);
  auto n = lua->cost(host(1, "nan", 0), {});
  auto i = lua->cost(host(2, "inf", 0), {});
  ASSERT_TRUE(n.ok() && i.ok());
  EXPECT_TRUE(std::isnan(*n));
  EXPECT_TRUE(std::isinf(*i));
  EXPECT_EQ(lua->health().errors, 0u);
}

TEST(LuaPolicy, AggregateSeesAllCandidates) {
  auto lua = mustLoad(R"lua(
    -- Report the busiest available child, not the mean.
    function G(cands, ctx)
      assert(ctx.subnet == "10.100.0.0/24")
      local worst = 0/0
      for i, c in ipairs(cands) do
        assert(c.next_hop == i * 10)
        if c.available and (worst ~= worst or c.load > worst) then worst = c.load end
      end
      return worst
    end
  )lua");
  ASSERT_TRUE(lua);
  EXPECT_FALSE(lua->hasCost());
  EXPECT_TRUE(lua->hasAggregate());
  std::vector<Candidate> cands = {host(10, "a", 0.2), host(20, "b", 0.7), host(30, "c", 0.9)};
  cands[2].available = false;
  CostContext ctx;
  ctx.subnet = "10.100.0.0/24";
  auto r = lua->aggregate(cands, ctx);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_DOUBLE_EQ(*r, 0.7);

  auto none = lua->aggregate(std::span<const Candidate>(), ctx);
  ASSERT_TRUE(none.ok()) << none.error().message();
  EXPECT_TRUE(std::isnan(*none));

  AggregateFn g = lua->aggregateFn();
  EXPECT_DOUBLE_EQ(g(cands, ctx), 0.7);
}

TEST(LuaPolicy, GlobalsPersistButArgumentsAreFresh) {
  auto lua = mustLoad(R"lua(
    n = 0
    function F(c, ctx)
      n = n + 1
      if c.seen then error("table reused") end
      c.seen = true
      return n
    end
  )lua");
  ASSERT_TRUE(lua);
  const Candidate c = host(1, "a", 0);
  EXPECT_EQ(lua->cost(c, {}).value(), 1.0);
  EXPECT_EQ(lua->cost(c, {}).value(), 2.0);
}

// ---- load errors ------------------------------------------------------------

TEST(LuaPolicyLoad, SyntaxErrorNamesChunkAndLine) {
  const std::string msg = loadError("function F(c, ctx)\n  return c.load +\nend\n", "site.lua");
  EXPECT_CONTAINS(msg, "lua policy site.lua");
  EXPECT_CONTAINS(msg, "site.lua:3:");
}

TEST(LuaPolicyLoad, RuntimeErrorInChunk) {
  const std::string msg = loadError("local x = nil\nlocal y = x.field\nfunction F() return 1 end");
  EXPECT_CONTAINS(msg, "policy.lua:2:");
  EXPECT_CONTAINS(msg, "attempt to index");
}

TEST(LuaPolicyLoad, ChunkInfiniteLoopHitsInstructionLimit) {
  EXPECT_CONTAINS(loadError("while true do end"), "instruction limit exceeded");
}

TEST(LuaPolicyLoad, NeitherFNorG) {
  EXPECT_CONTAINS(loadError("x = 1"), "neither F");
  EXPECT_CONTAINS(loadError(""), "neither F");
  // Locals are not what the SLR looks up.
  EXPECT_CONTAINS(loadError("local function F(c) return 1 end"), "neither F");
}

TEST(LuaPolicyLoad, FOrGNotAFunction) {
  EXPECT_CONTAINS(loadError("F = 3"), "F is a number, expected a function");
  EXPECT_CONTAINS(loadError("function F() return 1 end\nG = 'mean'"),
                  "G is a string, expected a function");
}

TEST(LuaPolicyLoad, RejectsPrecompiledBytecode) {
  // A binary chunk starts with ESC "Lua"; the VM does not verify bytecode.
  EXPECT_CONTAINS(loadError(std::string("\x1bLua\x54\x00", 6)), "binary chunk");
}

// ---- call errors ------------------------------------------------------------

TEST(LuaPolicyCall, RuntimeErrorNamesF) {
  auto lua = mustLoad("function F(c, ctx)\n  return c.lod + 1\nend");
  ASSERT_TRUE(lua);
  auto r = lua->cost(host(1, "a", 0.5), {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().op, "lua policy policy.lua");
  EXPECT_STARTS_WITH(r.error().detail, "F: policy.lua:2:");
  EXPECT_CONTAINS(r.error().detail, "lod");
}

TEST(LuaPolicyCall, RuntimeErrorNamesG) {
  auto lua = mustLoad("function G(cands, ctx) error('no children') end");
  ASSERT_TRUE(lua);
  auto r = lua->aggregate(std::vector<Candidate>{host(1, "a", 0.5)}, {});
  ASSERT_FALSE(r.ok());
  EXPECT_STARTS_WITH(r.error().detail, "G: ");
  EXPECT_CONTAINS(r.error().detail, "no children");
}

TEST(LuaPolicyCall, NonNumberResultIsAnError) {
  auto lua = mustLoad(R"lua(
    function F(c, ctx)
      if c.name == "s" then return "1.5" end
      if c.name == "t" then return {} end
    end
  )lua");
  ASSERT_TRUE(lua);
  auto s = lua->cost(host(1, "s", 0), {});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().detail, "F: returned a string, expected a number");
  auto t = lua->cost(host(1, "t", 0), {});
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.error().detail, "F: returned a table, expected a number");
  auto n = lua->cost(host(1, "n", 0), {});
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.error().detail, "F: returned nil, expected a number");
}

TEST(LuaPolicyCall, NonStringErrorObjects) {
  auto lua = mustLoad(R"lua(
    function F(c, ctx)
      if c.name == "t" then error({}) end
      error(17)
    end
  )lua");
  ASSERT_TRUE(lua);
  EXPECT_EQ(lua->cost(host(1, "t", 0), {}).error().detail, "F: (error object is a table value)");
  EXPECT_EQ(lua->cost(host(1, "n", 0), {}).error().detail, "F: 17");
}

TEST(LuaPolicyCall, MissingFunctionIsAnError) {
  auto lua = mustLoad("function G(cands, ctx) return 0 end");
  ASSERT_TRUE(lua);
  auto r = lua->cost(host(1, "a", 0), {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().detail, "F: not defined");
}

// ---- limits -----------------------------------------------------------------

TEST(LuaPolicyLimits, InfiniteLoopIsStopped) {
  auto lua = mustLoad("function F(c, ctx) while true do end end");
  ASSERT_TRUE(lua);
  auto r = lua->cost(host(1, "a", 0), {});
  ASSERT_FALSE(r.ok());
  EXPECT_STARTS_WITH(r.error().detail, "F: instruction limit exceeded");
  // The budget is per call: the state is still usable and the next call gets
  // a full budget again (and trips again).
  auto again = lua->cost(host(1, "a", 0), {});
  ASSERT_FALSE(again.ok());
  EXPECT_CONTAINS(again.error().detail, "instruction limit exceeded");
}

TEST(LuaPolicyLimits, PcallInsidePolicyCannotSwallowTheLimit) {
  auto lua = mustLoad(R"lua(
    function F(c, ctx)
      while true do pcall(function() while true do end end) end
    end
  )lua");
  ASSERT_TRUE(lua);
  auto r = lua->cost(host(1, "a", 0), {});
  ASSERT_FALSE(r.ok());
  EXPECT_CONTAINS(r.error().detail, "instruction limit exceeded");
}

TEST(LuaPolicyLimits, BudgetIsPerCallNotCumulative) {
  // ~200k instructions per call: many calls in a row must all succeed.
  auto lua = mustLoad(R"lua(
    function F(c, ctx)
      local s = 0
      for i = 1, 50000 do s = s + i end
      return s
    end
  )lua");
  ASSERT_TRUE(lua);
  for (int i = 0; i < 20; ++i) {
    auto r = lua->cost(host(1, "a", 0), {});
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(*r, 50000.0 * 50001.0 / 2);
  }
}

TEST(LuaPolicyLimits, HugeAllocationHitsMemoryLimit) {
  auto lua = mustLoad(R"lua(
    function F(c, ctx)
      if c.name == "table" then
        -- a table of 1 MiB strings: 100 MiB if nothing stopped it
        local t = {}
        for i = 1, 100 do t[i] = string.rep("x", 1 << 20) .. i end
        return #t
      end
      if c.name == "string" then return #string.rep("x", 1 << 30) end
      return 1
    end
  )lua");
  ASSERT_TRUE(lua);
  auto t = lua->cost(host(1, "table", 0), {});
  ASSERT_FALSE(t.ok());
  EXPECT_STARTS_WITH(t.error().detail, "F: memory limit exceeded");
  auto s = lua->cost(host(1, "string", 0), {});
  ASSERT_FALSE(s.ok());
  EXPECT_CONTAINS(s.error().detail, "memory limit exceeded");
  // The garbage is collectable: the state keeps working.
  auto ok = lua->cost(host(1, "other", 0), {});
  ASSERT_TRUE(ok.ok()) << ok.error().message();
  EXPECT_EQ(*ok, 1.0);
}

TEST(LuaPolicyLimits, ChunkMemoryLimit) {
  EXPECT_CONTAINS(loadError("big = string.rep('x', 64 << 20)\nfunction F() return 1 end"),
                  "memory limit exceeded");
}

TEST(LuaPolicyLimits, ExpensiveInstructionsHitTheTimeLimit) {
  // Comparing two distinct 3 MiB strings is one instruction but ~0.2 ms of
  // memcmp: 1M instructions of it would take minutes.
  LuaLimits limits;
  limits.time = std::chrono::milliseconds(50);
  auto r = LuaPolicy::load(R"lua(
    function F(c, ctx)
      local a, b = string.rep("x", 3 << 20), string.rep("x", 3 << 20)
      local n = 0
      while true do if a == b then n = n + 1 end end
    end
  )lua", "slow.lua", limits);
  ASSERT_TRUE(r.ok()) << r.error().message();
  auto c = r.value()->cost(host(1, "a", 0), {});
  ASSERT_FALSE(c.ok());
  EXPECT_STARTS_WITH(c.error().detail, "F: time limit exceeded (50 ms)");
}

TEST(LuaPolicyLimits, CustomLimits) {
  LuaLimits limits;
  limits.instructions = 5000;
  limits.memory = size_t(1) << 20;
  auto r = LuaPolicy::load(R"lua(
    function F(c, ctx)
      if c.name == "loop" then for i = 1, 100000 do end end
      if c.name == "big" then return #string.rep("x", 2 << 20) end
      return 1
    end
  )lua", "small.lua", limits);
  ASSERT_TRUE(r.ok()) << r.error().message();
  LuaPolicy& lua = *r.value();
  EXPECT_CONTAINS(lua.cost(host(1, "loop", 0), {}).error().detail,
                  "instruction limit exceeded (5000 Lua instructions)");
  EXPECT_CONTAINS(lua.cost(host(1, "big", 0), {}).error().detail,
                  "memory limit exceeded (1 MiB)");
  EXPECT_EQ(lua.cost(host(1, "ok", 0), {}).value(), 1.0);
}

TEST(LuaPolicyLimits, PathologicalPatternIsRefused) {
  // Lua's matcher backtracks inside one C call, where the instruction hook
  // never runs: ".-.-.-b" on 3000 bytes would take hours.
  auto lua = mustLoad(R"lua(
    function F(c, ctx)
      if c.name == "bad" then return string.find(string.rep("a", 3000), ".-.-.-b") or 0 end
      -- Ordinary patterns on names still work, as functions and as methods.
      local site = ("site-12"):match("^site%-(%d+)$")
      local n = 0
      for _ in ("a b c"):gmatch("%a") do n = n + 1 end
      local s = string.gsub("a,b", ",", ";")
      assert(s == "a;b" and string.find("x.y", ".", 1, true) == 2)
      return tonumber(site) + n
    end
  )lua");
  ASSERT_TRUE(lua);
  auto bad = lua->cost(host(1, "bad", 0), {});
  ASSERT_FALSE(bad.ok());
  EXPECT_CONTAINS(bad.error().detail, "pattern too complex for a 3000-byte subject");
  auto ok = lua->cost(host(1, "ok", 0), {});
  ASSERT_TRUE(ok.ok()) << ok.error().message();
  EXPECT_EQ(*ok, 15.0);
}

TEST(LuaPolicyLimits, TableLoopsInsideOneCallAreBounded) {
  auto lua = mustLoad(R"lua(
    local fake = {__len = function() return 1 << 40 end}
    function F(c, ctx)
      if c.name == "move" then table.move({}, 1, 1 << 40, 1, {}) end
      if c.name == "insert" then table.insert(setmetatable({}, fake), 1, 5) end
      if c.name == "remove" then table.remove(setmetatable({}, fake), 1) end
      local t = {1, 2, 3}
      table.insert(t, 1, 0)
      assert(table.remove(t) == 3 and table.remove(t, 1) == 0 and #t == 2)
      assert(table.move({7, 8}, 1, 2, 2)[3] == 8)
      return #t
    end
  )lua");
  ASSERT_TRUE(lua);
  EXPECT_CONTAINS(lua->cost(host(1, "move", 0), {}).error().detail, "table.move of more than");
  EXPECT_CONTAINS(lua->cost(host(1, "insert", 0), {}).error().detail, "table.insert on a table");
  EXPECT_CONTAINS(lua->cost(host(1, "remove", 0), {}).error().detail, "table.remove on a table");
  auto ok = lua->cost(host(1, "ok", 0), {});
  ASSERT_TRUE(ok.ok()) << ok.error().message();
  EXPECT_EQ(*ok, 2.0);
}

// ---- sandbox ----------------------------------------------------------------

TEST(LuaPolicySandbox, FinalizersAreRefused) {
  // Lua runs __gc with hooks off: it would escape the limits (and could hang
  // the destructor).  Ordinary metatables are fine.
  auto lua = mustLoad(R"lua(
    function F(c, ctx)
      if c.name == "gc" then setmetatable({}, {__gc = function() while true do end end}) end
      local v = setmetatable({}, {__index = function(t, k) return 2 end})
      return v.anything
    end
  )lua");
  ASSERT_TRUE(lua);
  auto gc = lua->cost(host(1, "gc", 0), {});
  ASSERT_FALSE(gc.ok());
  EXPECT_CONTAINS(gc.error().detail, "__gc metamethods are not allowed");
  EXPECT_EQ(lua->cost(host(1, "ok", 0), {}).value(), 2.0);
}

TEST(LuaPolicySandbox, DangerousGlobalsAreNil) {
  auto lua = mustLoad(R"lua(
    function F(c, ctx)
      local names = {"io", "os", "package", "debug", "coroutine", "require", "load",
                     "loadfile", "dofile", "collectgarbage", "print", "loadstring"}
      for _, n in ipairs(names) do
        if _G[n] ~= nil then error(n .. " is reachable") end
      end
      -- What a policy is meant to use is there.
      assert(type(math.floor) == "function" and type(string.format) == "function")
      assert(type(table.sort) == "function" and type(utf8.len) == "function")
      assert(type(pairs) == "function" and type(pcall) == "function")
      return 0
    end
  )lua");
  ASSERT_TRUE(lua);
  auto r = lua->cost(host(1, "a", 0), {});
  ASSERT_TRUE(r.ok()) << r.error().message();
}

TEST(LuaPolicySandbox, ChunkCannotReachTheSystem) {
  EXPECT_CONTAINS(loadError("io.open('/etc/passwd')"), "global 'io'");
  EXPECT_CONTAINS(loadError("os.execute('true')"), "global 'os'");
  EXPECT_CONTAINS(loadError("require('socket')"), "global 'require'");
  EXPECT_CONTAINS(loadError("dofile('/etc/passwd')"), "global 'dofile'");
  EXPECT_CONTAINS(loadError("load('return 1')()"), "global 'load'");
}

// ---- costFn / aggregateFn fallbacks -------------------------------------------

TEST(LuaPolicyFallback, CostFnFallsBackToDefaultCostAndCounts) {
  auto lua = mustLoad(R"lua(
    function F(c, ctx)
      if c.name == "bad" then error("cannot price " .. c.name) end
      return 5
    end
  )lua");
  ASSERT_TRUE(lua);
  CostFn f = lua->costFn();
  const Candidate good = host(1, "good", 0.3);
  const Candidate bad = host(2, "bad", 0.4, 0.1, 2);

  ::testing::internal::CaptureStderr();
  EXPECT_EQ(f(good, {}), 5.0);
  EXPECT_DOUBLE_EQ(f(bad, {}), defaultCost(bad));
  EXPECT_DOUBLE_EQ(f(bad, {}), defaultCost(bad));
  EXPECT_DOUBLE_EQ(f(bad, {}), defaultCost(bad));
  const std::string logged = ::testing::internal::GetCapturedStderr();

  LuaPolicy::Health h = lua->health();
  EXPECT_EQ(h.calls, 4u);
  EXPECT_EQ(h.errors, 3u);
  EXPECT_CONTAINS(h.last_error, "F: ");
  EXPECT_CONTAINS(h.last_error, "cannot price bad");
  if (log::enabled(log::Level::kWarn)) {
    // Logged once, not once per call.
    size_t n = 0;
    for (size_t pos = logged.find("cannot price bad"); pos != std::string::npos;
         pos = logged.find("cannot price bad", pos + 1)) {
      ++n;
    }
    EXPECT_EQ(n, 1u) << logged;
    EXPECT_CONTAINS(logged, "policy");
  }
}

TEST(LuaPolicyFallback, AggregateFnFallsBackToAggregateLoad) {
  auto lua = mustLoad("function G(cands, ctx) return 'high' end");
  ASSERT_TRUE(lua);
  std::vector<Candidate> cands = {host(1, "a", 0.2, 0, 1), host(2, "b", 0.8, 0, 3)};
  ::testing::internal::CaptureStderr();
  const double m = lua->aggregateFn()(cands, {});
  ::testing::internal::GetCapturedStderr();
  EXPECT_DOUBLE_EQ(m, aggregateLoad(cands));
  EXPECT_EQ(lua->health().errors, 1u);
  EXPECT_CONTAINS(lua->health().last_error, "G: returned a string, expected a number");
}

TEST(LuaPolicyFallback, LoopingFBecomesDefaultCost) {
  auto lua = mustLoad("function F(c, ctx) while true do end end");
  ASSERT_TRUE(lua);
  CostFn f = lua->costFn();
  const Candidate c = host(1, "a", 0.6, 0.1, 2);
  ::testing::internal::CaptureStderr();
  EXPECT_DOUBLE_EQ(f(c, {}), defaultCost(c));
  ::testing::internal::GetCapturedStderr();
  EXPECT_CONTAINS(lua->health().last_error, "instruction limit exceeded");
}

TEST(LuaPolicyFallback, WithoutFCostFnIsDefaultCost) {
  auto lua = mustLoad("function G(cands, ctx) return 0 end");
  ASSERT_TRUE(lua);
  const Candidate c = host(1, "a", 0.6, 0.1, 2);
  EXPECT_DOUBLE_EQ(lua->costFn()(c, {}), defaultCost(c));
  EXPECT_EQ(lua->health().calls, 0u);  // Lua was not involved
}

// ---- integration with core/policy.h --------------------------------------------

TEST(LuaPolicyIntegration, LeastCostPicksWhatFPrefers) {
  // Prefer the nearest site outright; load only among equally near ones.
  auto lua = mustLoad("function F(c, ctx) return c.route_cost * 100 + c.load / c.weight end");
  ASSERT_TRUE(lua);
  std::vector<Candidate> cands = {host(1, "idle-far", 0.0, 0.5), host(2, "busy-near", 0.8, 0.0),
                                  host(3, "mid", 0.3, 0.2)};

  Selection builtin = makeLeastCost(0.0)->build(cands);
  ASSERT_FALSE(builtin.empty());
  EXPECT_EQ(slotCounts(builtin).begin()->first, 1);  // defaultCost: 0.5 < 0.8 < 0.5

  Selection s = makeLeastCost(0.0, lua->costFn())->build(cands);
  ASSERT_FALSE(s.empty());
  auto counts = slotCounts(s);
  ASSERT_EQ(counts.size(), 1u);
  EXPECT_EQ(counts.begin()->first, 2);
  ASSERT_EQ(s.costs.size(), 3u);
  EXPECT_DOUBLE_EQ(s.costs[0].cost, 50.0);
  EXPECT_DOUBLE_EQ(s.costs[1].cost, 0.8);
  EXPECT_DOUBLE_EQ(s.costs[2].cost, 20.3);
  EXPECT_EQ(lua->health().calls, 3u);
  EXPECT_EQ(lua->health().errors, 0u);
}

TEST(LuaPolicyIntegration, NaNFromFMakesCandidateIneligible) {
  auto lua = mustLoad(R"lua(
    function F(c, ctx)
      if c.standby then return 0/0 end
      return c.load
    end
  )lua");
  ASSERT_TRUE(lua);
  std::vector<Candidate> cands = {host(1, "dr", 0.0), host(2, "main", 0.5)};
  cands[0].standby = true;
  Selection s = makeLeastCost(0.0, lua->costFn())->build(cands);
  ASSERT_EQ(s.costs.size(), 2u);
  EXPECT_FALSE(s.costs[0].eligible);
  EXPECT_TRUE(s.costs[1].eligible);
  ASSERT_EQ(slotCounts(s).size(), 1u);
  EXPECT_EQ(slotCounts(s).begin()->first, 2);
}

}  // namespace
}  // namespace slr
