#!/usr/bin/env bash
# Operator policy in Lua at the network SLR ([policy] lua = F).
#   - F prefers sysB (cost 0 vs 1): every new flow goes to AS B; status says
#     the Lua policy is on and F was called; `slrctl explain` at net picks
#     sysB with the costs F returned.
#   - net restarted with an F that throws at run time (calls nil): the log
#     names F and the error, status counts Lua errors, traffic keeps flowing
#     on the built-in cost (spread over both ASs again), explain still answers.
#   - `slrctl check-config` on a config whose Lua has a syntax error exits 2
#     and names policy.lua; on the runtime-broken one (compiles) it exits 0.
. "$(dirname "$0")/lib_hier.sh"
require_root
e2e_init
require_slrctl

N_REQ=20
GOOD_F='function F(c, ctx) if c.name == "sysB" then return 0 end return 1 end'
BROKEN_F='function F(c, ctx) local missing = nil; return missing(c) end'
SYNTAX_F='function F(c, ctx) return c.load + end'
HIER_LUA[net]=$GOOD_F
note "shortcut ${HIER_SHORTCUT:-0}, host decap ${HOST_DECAP:-none}"
hier_bring_up

# --- good F: AS B only -------------------------------------------------------
LUA_STATE=$(counter net "d['policy_functions']['lua']")
assert_contains "net status: Lua policy on with F ($LUA_STATE)" "on: F" "$LUA_STATE"
f_called() { (( $(counter net "d['policy_functions']['calls']") > 0 )); }
check "net status: F has been called" wait_for 5 f_called
assert_eq "net status: no Lua errors" 0 "$(counter net "d['policy_functions']['errors']")"

http_tally "$N_REQ"
note "F prefers sysB: $(tally_str)"
assert_eq "$N_REQ requests succeed" "$N_REQ" "$TALLY_OK"
assert_eq "all $N_REQ in AS B (F returns 0 for sysB, 1 for sysA)" "$N_REQ" "$(tally_of sysB)"

explain() {  # SLR: explain a fixed 5-tuple at that SLR (JSON); EXPLAIN_RC
  EXPLAIN_JSON=$("$SLRCTL" explain tcp "$CLI_ADDR:40000" "$VIP:80" --json --socket "$(hsock "$1")" 2>&1)
  EXPLAIN_RC=$?
}
ex_get() { json_get - "$1" <<<"$EXPLAIN_JSON"; }
explain net
note "explain at net: $(tr -d '\n ' <<<"$EXPLAIN_JSON" | head -c 1500)"
assert_eq "explain at net exits 0" 0 "$EXPLAIN_RC"
assert_eq "explain at net: vip web" web "$(ex_get "d.get('vip')")"
assert_eq "explain at net: the choice is sysB, as F says" sysB "$(ex_get "(d.get('choice') or {}).get('next_hop')")"
assert_eq "explain at net: choice by policy" policy "$(ex_get "(d.get('choice') or {}).get('reason')")"
assert_eq "explain at net: candidate sysB cost 0 (F)" 0.0 "$(ex_get "next(float(c['cost']) for c in d['candidates'] if c['name'] == 'sysB')")"
assert_eq "explain at net: candidate sysA cost 1 (F)" 1.0 "$(ex_get "next(float(c['cost']) for c in d['candidates'] if c['name'] == 'sysA')")"
assert_eq "explain at net: sysA gets no share of new flows" 0.0 "$(ex_get "next(float(c['share']) for c in d['candidates'] if c['name'] == 'sysA')")"
assert_eq "explain at net: sysB gets all new flows" 1.0 "$(ex_get "next(float(c['share']) for c in d['candidates'] if c['name'] == 'sysB')")"

# --- broken F: reported, built-in fallback keeps traffic flowing -------------
HIER_LUA[net]=$BROKEN_F
hier_slr_config net >"$RUN_DIR/net-broken.toml"
out=$("$SLRCTL" check-config "$RUN_DIR/net-broken.toml" 2>&1); rc=$?
note "check-config on the runtime-broken F: exit $rc: $(head -c 300 <<<"$out" | tr '\n' ' ')"
hier_stop_slr net
assert_eq "net exited 0 on SIGTERM" 0 "$HIER_STOP_RC"
LOG_MARK=$(wc -l <"$(hlog net)")
hier_start_slr net "$RUN_DIR/net-broken.toml" || die "net restarts with the broken F"
T0=$(now_s)
if wait_for 30 children_up net; then
  ok "sysA and sysB re-registered with the restarted net ($(elapsed_s "$T0")s)"
else
  not_ok "sysA and sysB re-registered with the restarted net (sysA $(child_state net sysA), sysB $(child_state net sysB))"
fi
lua_errors() { (( $(counter net "d['policy_functions']['errors']") > 0 )); }
check "net status: Lua error count > 0" wait_for 5 lua_errors
note "net policy_functions: $(counter net "json.dumps(d['policy_functions'], sort_keys=True)")"
assert_contains "net status: last_error names F" "F:" "$(counter net "d['policy_functions']['last_error']")"
NEWLOG=$(tail -n "+$((LOG_MARK + 1))" "$(hlog net)")
ERRLINE=$(grep -i 'lua' <<<"$NEWLOG" | grep -i -m1 'nil')
note "net log: $ERRLINE"
assert_contains "net log names F" "F:" "$ERRLINE"
assert_contains "net log gives the Lua error" "attempt to call a nil value" "$ERRLINE"
assert_contains "net log says it falls back to the built-in" "built-in" "$ERRLINE"

wait_rebuilt net || not_ok "net rebuilt its tables with the fallback"
http_tally "$N_REQ"
note "broken F, built-in fallback: $(tally_str)"
assert_eq "$N_REQ requests succeed on the fallback" "$N_REQ" "$TALLY_OK"
assert_ge "fallback is the built-in cost: AS A gets flows again" "$(tally_of sysA)" 1
assert_ge "fallback is the built-in cost: AS B gets flows too" "$(tally_of sysB)" 1
explain net
assert_eq "explain at net with the broken F exits 0" 0 "$EXPLAIN_RC"
assert_ne "explain at net with the broken F still chooses a next hop" None \
  "$(ex_get "str((d.get('choice') or {}).get('next_hop'))")"
check "net still running" kill -0 "${SPID[net]}"

# --- check-config on a Lua syntax error ----------------------------------------
HIER_LUA[net]=$SYNTAX_F
hier_slr_config net >"$RUN_DIR/net-syntax.toml"
out=$("$SLRCTL" check-config "$RUN_DIR/net-syntax.toml" 2>&1); rc=$?
note "check-config on a Lua syntax error: exit $rc: $(head -c 400 <<<"$out" | tr '\n' ' ')"
assert_eq "check-config rejects a Lua syntax error with exit 2" 2 "$rc"
assert_contains "check-config names policy.lua" "policy.lua" "$out"
assert_contains "check-config names the file" "net-syntax.toml" "$out"
