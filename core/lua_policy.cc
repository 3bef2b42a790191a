#include "core/lua_policy.h"

#include <lua.hpp>

#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>

#include "core/log.h"

namespace slr {

struct LuaPolicy::Sandbox {
  enum class Stop : uint8_t { kNone, kInstructions, kTime };

  LuaLimits limits;
  int stride = 1;                    // instructions between two hook calls
  size_t used = 0;                   // bytes currently allocated by the state
  // Per entry into Lua, reset by arm():
  bool refused = false;              // the allocator said no
  Stop stop = Stop::kNone;           // which limit the hook enforced
  uint64_t instructions = 0;         // executed so far, in strides
  int64_t deadline_ns = 0;           // CLOCK_MONOTONIC; 0 = none
};

namespace {

using Sandbox = LuaPolicy::Sandbox;

// F and G live in these slots of the main thread's stack for the state's
// whole life (nil when the source leaves one out), so no call has to look up
// globals the policy might have reassigned.
constexpr int kFIndex = 1;
constexpr int kGIndex = 2;

// How often the hook runs to count instructions and read the clock.
constexpr int kHookStride = 1000;

// Bounds on the work one C library call may do (see the header).  A 16 MiB
// state holds at most ~1M table slots, so legitimate table operations stay
// far below kMaxTableMove; kMaxPatternWork is ~0.1 s of matching.
constexpr lua_Unsigned kMaxTableMove = lua_Unsigned(1) << 22;
constexpr double kMaxPatternWork = 1e8;

// Distinct failure messages logged by costFn()/aggregateFn() before they go
// quiet; a policy whose error text embeds changing values must not flood.
constexpr size_t kMaxLoggedMessages = 64;

int64_t monotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// Lua reports errors with longjmp (liblua5.4 is built as C).  Every function
// from here to callEntryPoint can be unwound through by Lua (the allocator,
// the hook, the lua_CFunctions), so they hold only trivially destructible
// locals; std::string lives only in code that runs after lua_pcall returned.

void* sandboxAlloc(void* ud, void* ptr, size_t osize, size_t nsize) {
  auto* sb = static_cast<Sandbox*>(ud);
  if (ptr == nullptr) osize = 0;  // osize then encodes the kind of object
  if (nsize == 0) {
    std::free(ptr);
    sb->used -= osize;
    return nullptr;
  }
  // Invariant: used <= limits.memory (after start-up), so no wrap-around.
  if (nsize > osize && nsize - osize > sb->limits.memory - std::min(sb->used, sb->limits.memory)) {
    sb->refused = true;  // Lua runs an emergency GC, retries, then raises LUA_ERRMEM
    return nullptr;
  }
  void* p = std::realloc(ptr, nsize);
  if (p == nullptr) {
    if (nsize <= osize) return ptr;  // Lua assumes shrinking never fails: keep the block
    sb->refused = true;
    return nullptr;
  }
  sb->used = sb->used - osize + nsize;
  return p;
}

Sandbox& sandboxOf(lua_State* L) {
  void* ud = nullptr;
  lua_getallocf(L, &ud);
  return *static_cast<Sandbox*>(ud);
}

void limitHook(lua_State* L, lua_Debug*) {
  Sandbox& sb = sandboxOf(L);
  if (sb.stop == Sandbox::Stop::kNone) {
    sb.instructions += uint64_t(sb.stride);
    if (sb.instructions >= sb.limits.instructions) {
      sb.stop = Sandbox::Stop::kInstructions;
    } else if (sb.deadline_ns != 0 && monotonicNs() >= sb.deadline_ns) {
      sb.stop = Sandbox::Stop::kTime;
    } else {
      return;
    }
    // From now on fire on every instruction: a pcall inside the policy may
    // catch this error, but the next instruction of its caller raises again,
    // all the way out to our lua_pcall.
    lua_sethook(L, limitHook, LUA_MASKCOUNT, 1);
  }
  luaL_error(L, sb.stop == Sandbox::Stop::kTime ? "time limit exceeded"
                                                 : "instruction limit exceeded");
}

// Gives the next entry into Lua a fresh budget and clears the failure flags.
void arm(lua_State* L) {
  Sandbox& sb = sandboxOf(L);
  sb.refused = false;
  sb.stop = Sandbox::Stop::kNone;
  sb.instructions = 0;
  sb.deadline_ns = sb.limits.time.count() > 0
                       ? monotonicNs() + int64_t(sb.limits.time.count()) * 1'000'000
                       : 0;
  lua_sethook(L, limitHook, LUA_MASKCOUNT, sb.stride);
}

// setmetatable without finalizers.  Lua runs __gc metamethods with debug
// hooks switched off, so a finalizer would escape every limit (and could
// hang lua_close).  Lua decides whether a table gets finalized from a raw
// "__gc" field of the metatable at setmetatable time, so checking that same
// field here closes the hole.  Otherwise as luaB_setmetatable.
int safeSetmetatable(lua_State* L) {
  const int t = lua_type(L, 2);
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
  if (t == LUA_TTABLE) {
    lua_pushliteral(L, "__gc");
    const bool has_gc = lua_rawget(L, 2) != LUA_TNIL;
    lua_pop(L, 1);
    if (has_gc) return luaL_error(L, "__gc metamethods are not allowed in a policy");
  }
  if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL) {
    return luaL_error(L, "cannot change a protected metatable");
  }
  lua_settop(L, 2);
  lua_setmetatable(L, 1);
  return 1;
}

// Calls the wrapped library function (upvalue 1) with this call's arguments.
int callOriginal(lua_State* L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

// Upper estimate of the steps Lua's backtracking matcher may take for
// `pattern` on a subject of n bytes: every start position times, per
// quantifier (* + -), balance (%b) or back-reference (%1-%9), another factor
// n, times 2 per optional item (?), times the pattern length.  Characters
// inside a set [...] and after % are literal.  Conservative: it may
// overcount (a leading '*' is a literal), never undercount.
double patternWork(const char* p, size_t m, size_t n) {
  int factors = 1;  // start positions
  int optional = 0;
  size_t i = 0;
  while (i < m) {
    const char ch = p[i];
    if (ch == '%' && i + 1 < m) {
      const char e = p[i + 1];
      if (e == 'b') {
        ++factors;
        i += 4;  // %bxy
        continue;
      }
      if (e >= '1' && e <= '9') ++factors;
      i += 2;  // %f is followed by a set, handled next round
      continue;
    }
    if (ch == '[') {  // as Lua's classEnd: the first character is always literal
      ++i;
      if (i < m && p[i] == '^') ++i;
      do {
        i += (i < m && p[i] == '%') ? 2 : 1;
      } while (i < m && p[i] != ']');
      ++i;
      continue;
    }
    if (ch == '*' || ch == '+' || ch == '-') {
      ++factors;
    } else if (ch == '?') {
      ++optional;
    }
    ++i;
  }
  return std::pow(double(n) + 1.0, factors) * std::pow(2.0, optional) * (double(m) + 1.0);
}

// string.find/match/gmatch/gsub: refuse a pattern whose worst case on this
// subject is too much work for one call.  Upvalue 2: true for find, whose
// fourth argument asks for a plain search (still n * m work).
int guardedPatternFn(lua_State* L) {
  size_t n = 0, m = 0;
  luaL_checklstring(L, 1, &n);
  const char* p = luaL_checklstring(L, 2, &m);
  const bool plain = lua_toboolean(L, lua_upvalueindex(2)) && lua_toboolean(L, 4);
  const double work = plain ? (double(n) + 1.0) * (double(m) + 1.0) : patternWork(p, m, n);
  if (work > kMaxPatternWork) {
    // lua_pushfstring knows no %g: keep the numbers out of the message.
    return luaL_error(L, "pattern too complex for a %I-byte subject (backtracking limit)",
                      lua_Integer(n));
  }
  return callOriginal(L);
}

// table.move: the range is in the arguments, so check it and delegate.
int guardedTableMove(lua_State* L) {
  const lua_Integer f = luaL_checkinteger(L, 2);
  const lua_Integer e = luaL_checkinteger(L, 3);
  if (e >= f && lua_Unsigned(e) - lua_Unsigned(f) >= kMaxTableMove) {
    return luaL_error(L, "table.move of more than %I elements", lua_Integer(kMaxTableMove));
  }
  return callOriginal(L);
}

// The length table.insert/remove work with: asked once (a __len metamethod
// may answer differently each time) and bounded.
lua_Integer boundedLength(lua_State* L, const char* fn) {
  luaL_checktype(L, 1, LUA_TTABLE);
  const lua_Integer n = luaL_len(L, 1);
  if (n < 0 || lua_Unsigned(n) >= kMaxTableMove) {
    luaL_error(L, "table.%s on a table of length %I", fn, n);
  }
  return n;
}

// table.insert as in Lua 5.4's ltablib.c, with the length bounded.
int boundedTableInsert(lua_State* L) {
  const lua_Integer e = boundedLength(L, "insert") + 1;  // first empty element
  lua_Integer pos = e;
  switch (lua_gettop(L)) {
    case 2:
      break;
    case 3:
      pos = luaL_checkinteger(L, 2);
      luaL_argcheck(L, lua_Unsigned(pos) - 1u < lua_Unsigned(e), 2, "position out of bounds");
      for (lua_Integer i = e; i > pos; --i) {
        lua_geti(L, 1, i - 1);
        lua_seti(L, 1, i);
      }
      break;
    default:
      return luaL_error(L, "wrong number of arguments to 'insert'");
  }
  lua_seti(L, 1, pos);
  return 0;
}

// table.remove as in Lua 5.4's ltablib.c, with the length bounded.
int boundedTableRemove(lua_State* L) {
  const lua_Integer size = boundedLength(L, "remove");
  lua_Integer pos = luaL_optinteger(L, 2, size);
  if (pos != size) {
    luaL_argcheck(L, lua_Unsigned(pos) - 1u <= lua_Unsigned(size), 2, "position out of bounds");
  }
  lua_geti(L, 1, pos);
  for (; pos < size; ++pos) {
    lua_geti(L, 1, pos + 1);
    lua_seti(L, 1, pos);
  }
  lua_pushnil(L);
  lua_seti(L, 1, pos);
  return 1;
}

// Replaces lib[name] (lib on top of the stack) with `fn`, which gets the
// original as upvalue 1 and `flag` as upvalue 2.
void wrapField(lua_State* L, const char* name, lua_CFunction fn, bool flag) {
  lua_getfield(L, -1, name);
  lua_pushboolean(L, flag);
  lua_pushcclosure(L, fn, 2);
  lua_setfield(L, -2, name);
}

// lua_CFunction, run under lua_pcall: the libraries a policy may use.
int openSandbox(lua_State* L) {
  static const luaL_Reg kLibs[] = {
      {LUA_GNAME, luaopen_base},          {LUA_TABLIBNAME, luaopen_table},
      {LUA_STRLIBNAME, luaopen_string},   {LUA_MATHLIBNAME, luaopen_math},
      {LUA_UTF8LIBNAME, luaopen_utf8},
  };
  for (const luaL_Reg& lib : kLibs) {
    luaL_requiref(L, lib.name, lib.func, 1);
    lua_pop(L, 1);
  }
  // Base-library functions that reach the file system, compile code at run
  // time, drive the collector or write to stderr.
  static const char* const kRemoved[] = {"dofile", "loadfile",       "load",  "require",
                                         "collectgarbage", "print", "warn"};
  for (const char* name : kRemoved) {
    lua_pushnil(L);
    lua_setglobal(L, name);
  }
  lua_pushcfunction(L, safeSetmetatable);
  lua_setglobal(L, "setmetatable");

  // The string table is also the __index of every string, so s:find() goes
  // through the wrappers too.
  lua_getglobal(L, LUA_STRLIBNAME);
  wrapField(L, "find", guardedPatternFn, true);
  wrapField(L, "match", guardedPatternFn, false);
  wrapField(L, "gmatch", guardedPatternFn, false);
  wrapField(L, "gsub", guardedPatternFn, false);
  lua_pop(L, 1);
  lua_getglobal(L, LUA_TABLIBNAME);
  wrapField(L, "move", guardedTableMove, false);
  lua_pushcfunction(L, boundedTableInsert);
  lua_setfield(L, -2, "insert");
  lua_pushcfunction(L, boundedTableRemove);
  lua_setfield(L, -2, "remove");
  lua_pop(L, 1);
  return 0;
}

// lua_CFunction, run under lua_pcall: leaves the globals F and G.
int fetchEntryPoints(lua_State* L) {
  lua_getglobal(L, "F");
  lua_getglobal(L, "G");
  return 2;
}

void setNumber(lua_State* L, const char* key, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, key);
}
void setInteger(lua_State* L, const char* key, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, key);
}
void setBool(lua_State* L, const char* key, bool v) {
  lua_pushboolean(L, v);
  lua_setfield(L, -2, key);
}
void setString(lua_State* L, const char* key, std::string_view v) {
  lua_pushlstring(L, v.data(), v.size());
  lua_setfield(L, -2, key);
}

void pushCandidate(lua_State* L, const Candidate& c) {
  lua_createtable(L, 0, 9);
  setString(L, "name", c.name);
  setNumber(L, "load", c.load);
  setNumber(L, "route_cost", c.route_cost);
  setInteger(L, "weight", lua_Integer(c.weight));
  setBool(L, "available", c.available);
  setBool(L, "standby", c.standby);
  setNumber(L, "proximity", c.proximity);
  setBool(L, "is_slr", c.is_slr);
  setInteger(L, "next_hop", lua_Integer(c.next_hop));
}

void pushContext(lua_State* L, const CostContext& ctx) {
  lua_createtable(L, 0, 6);
  setString(L, "subnet", ctx.subnet);
  setString(L, "class", ctx.subnet_class);
  setString(L, "region", ctx.region);
  setInteger(L, "hour", ctx.hour);
  setInteger(L, "minute", ctx.minute);
  setInteger(L, "weekday", ctx.weekday);
}

// What one F or G call gets; passed to callEntryPoint as a light userdata.
struct CallArgs {
  const Candidate* one;              // F: the candidate; G: nullptr
  std::span<const Candidate> many;   // G: all candidates
  const CostContext* ctx;
};

// lua_CFunction, run under lua_pcall with (function, CallArgs*): builds the
// argument tables inside the protected call, so running out of memory while
// building them is an ordinary error, and calls the function.
int callEntryPoint(lua_State* L) {
  const auto* a = static_cast<const CallArgs*>(lua_touserdata(L, 2));
  lua_settop(L, 1);
  if (a->one != nullptr) {
    pushCandidate(L, *a->one);
  } else {
    lua_createtable(L, int(a->many.size()), 0);
    for (size_t i = 0; i < a->many.size(); ++i) {
      pushCandidate(L, a->many[i]);
      lua_rawseti(L, -2, lua_Integer(i) + 1);
    }
  }
  pushContext(L, *a->ctx);
  lua_call(L, 2, 1);
  return 1;
}

// The error object on top of the stack, without converting it in place
// (lua_tostring on a number would allocate, outside any protected call).
std::string errorObjectText(lua_State* L) {
  switch (lua_type(L, -1)) {
    case LUA_TSTRING: {
      size_t n = 0;
      const char* s = lua_tolstring(L, -1, &n);
      return std::string(s, n);
    }
    case LUA_TNUMBER: {
      if (lua_isinteger(L, -1)) return std::to_string(lua_tointeger(L, -1));
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.14g", lua_tonumber(L, -1));
      return buf;
    }
    default:
      return std::string("(error object is a ") + luaL_typename(L, -1) + " value)";
  }
}

// Why the entry into Lua that returned `rc` failed; the limits first, since
// the policy may have caught and re-raised their errors with its own text.
std::string failureText(lua_State* L, int rc) {
  const Sandbox& sb = sandboxOf(L);
  if (sb.stop == Sandbox::Stop::kInstructions) {
    return "instruction limit exceeded (" + std::to_string(sb.limits.instructions) +
           " Lua instructions)";
  }
  if (sb.stop == Sandbox::Stop::kTime) {
    return "time limit exceeded (" + std::to_string(sb.limits.time.count()) + " ms)";
  }
  std::string text = errorObjectText(L);
  if (rc == LUA_ERRMEM || (sb.refused && text.find("not enough memory") != std::string::npos)) {
    const size_t mib = sb.limits.memory >> 20;
    return "memory limit exceeded (" +
           (mib << 20 == sb.limits.memory ? std::to_string(mib) + " MiB"
                                          : std::to_string(sb.limits.memory) + " bytes") +
           ")";
  }
  return text;
}

std::string typePhrase(lua_State* L, int idx) {
  if (lua_isnil(L, idx)) return "nil";
  return std::string("a ") + luaL_typename(L, idx);
}

}  // namespace

void LuaPolicy::StateCloser::operator()(lua_State* L) const {
  lua_close(L);
}

LuaPolicy::~LuaPolicy() = default;

Result<std::unique_ptr<LuaPolicy>> LuaPolicy::load(std::string_view source,
                                                   std::string_view chunk_name,
                                                   const LuaLimits& limits) {
  std::unique_ptr<LuaPolicy> p(new LuaPolicy());
  p->chunk_name_ = std::string(chunk_name);
  auto fail = [&](std::string detail) {
    return Error{0, "lua policy " + p->chunk_name_, std::move(detail)};
  };
  p->sandbox_ = std::make_unique<Sandbox>();
  p->sandbox_->limits = limits;
  p->sandbox_->stride = int(std::clamp<uint64_t>(limits.instructions, 1, kHookStride));
  p->L_.reset(lua_newstate(sandboxAlloc, p->sandbox_.get()));
  if (!p->L_) return fail("cannot create a Lua state");
  lua_State* L = p->L_.get();

  arm(L);
  lua_pushcfunction(L, openSandbox);
  if (int rc = lua_pcall(L, 0, 0, 0); rc != LUA_OK) {
    return fail("opening the libraries: " + failureText(L, rc));
  }

  // '@': messages read "<chunk_name>:<line>: ..." (long names keep their tail).
  // Mode "t": precompiled bytecode is not verified by Lua, so refuse it.
  const std::string lua_name = "@" + p->chunk_name_;
  arm(L);
  int rc = luaL_loadbufferx(L, source.data(), source.size(), lua_name.c_str(), "t");
  if (rc == LUA_OK) {
    arm(L);
    rc = lua_pcall(L, 0, 0, 0);
  }
  if (rc != LUA_OK) return fail(failureText(L, rc));

  lua_settop(L, 0);
  arm(L);
  lua_pushcfunction(L, fetchEntryPoints);
  rc = lua_pcall(L, 0, 2, 0);
  if (rc != LUA_OK) return fail(failureText(L, rc));
  // Stack: kFIndex = F, kGIndex = G.
  for (int idx : {kFIndex, kGIndex}) {
    const char* fn = idx == kFIndex ? "F" : "G";
    const int t = lua_type(L, idx);
    if (t == LUA_TNIL || t == LUA_TFUNCTION) continue;
    return fail(std::string(fn) + " is " + typePhrase(L, idx) + ", expected a function");
  }
  p->has_f_ = lua_type(L, kFIndex) == LUA_TFUNCTION;
  p->has_g_ = lua_type(L, kGIndex) == LUA_TFUNCTION;
  if (!p->has_f_ && !p->has_g_) {
    return fail("defines neither F (cost) nor G (aggregate)");
  }
  return p;
}

Result<double> LuaPolicy::call(int fn_index, const char* fn_name, const Candidate* one,
                               std::span<const Candidate> many, const CostContext& ctx) {
  ++health_.calls;
  lua_State* L = L_.get();
  std::string detail;
  double value = NAN;
  if (lua_type(L, fn_index) != LUA_TFUNCTION) {
    detail = "not defined";
  } else if (!lua_checkstack(L, 3)) {
    detail = "out of Lua stack";
  } else {
    CallArgs args{one, many, &ctx};
    arm(L);
    lua_pushcfunction(L, callEntryPoint);
    lua_pushvalue(L, fn_index);
    lua_pushlightuserdata(L, &args);
    const int rc = lua_pcall(L, 2, 1, 0);
    if (rc != LUA_OK) {
      detail = failureText(L, rc);
    } else if (lua_type(L, -1) != LUA_TNUMBER) {
      detail = "returned " + typePhrase(L, -1) + ", expected a number";
    } else {
      value = lua_tonumber(L, -1);  // NaN and +-inf pass through: "ineligible"
    }
    lua_settop(L, kGIndex);
  }
  if (detail.empty()) return value;
  ++health_.errors;
  Error e{0, "lua policy " + chunk_name_, std::string(fn_name) + ": " + detail};
  health_.last_error = e.message();
  return e;
}

Result<double> LuaPolicy::cost(const Candidate& c, const CostContext& ctx) {
  return call(kFIndex, "F", &c, {}, ctx);
}

Result<double> LuaPolicy::aggregate(std::span<const Candidate> cands, const CostContext& ctx) {
  return call(kGIndex, "G", nullptr, cands, ctx);
}

void LuaPolicy::noteFallback(const Error& e, const char* fallback) {
  std::string msg = e.message();
  if (logged_.count(msg) != 0) return;
  if (logged_.size() >= kMaxLoggedMessages) {
    if (!log_suppressed_) {
      log_suppressed_ = true;
      LOG_WARN("policy", "lua policy " + chunk_name_ + ": " + std::to_string(kMaxLoggedMessages) +
                             " distinct errors logged, not logging new ones (see health)");
    }
    return;
  }
  LOG_WARN("policy", msg + "; falling back to the built-in " + fallback +
                         " (each distinct error is logged once)");
  logged_.insert(std::move(msg));
}

CostFn LuaPolicy::costFn() {
  if (!has_f_) {
    return [](const Candidate& c, const CostContext& ctx) { return defaultCost(c, ctx); };
  }
  return [this](const Candidate& c, const CostContext& ctx) {
    Result<double> r = cost(c, ctx);
    if (r.ok()) return r.value();
    noteFallback(r.error(), "cost (defaultCost)");
    return defaultCost(c, ctx);
  };
}

AggregateFn LuaPolicy::aggregateFn() {
  if (!has_g_) {
    return [](std::span<const Candidate> cands, const CostContext& ctx) {
      return aggregateLoad(cands, ctx);
    };
  }
  return [this](std::span<const Candidate> cands, const CostContext& ctx) {
    Result<double> r = aggregate(cands, ctx);
    if (r.ok()) return r.value();
    noteFallback(r.error(), "aggregate (aggregateLoad)");
    return aggregateLoad(cands, ctx);
  };
}

std::string LuaPolicy::functions() const {
  if (has_f_ && has_g_) return "F, G";
  return has_f_ ? "F" : "G";
}

Result<std::string> LuaPolicy::readConfigured(const std::string& inline_source,
                                              const std::string& file) {
  if (!inline_source.empty() || file.empty()) return inline_source;
  std::ifstream in(file, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (!in) return sysError("read lua_file", errno ? errno : EIO, file);
  return ss.str();
}

}  // namespace slr
