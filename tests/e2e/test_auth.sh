#!/usr/bin/env bash
# The control channel only admits hosts the SLR trusts and authorises:
#   h1: host1, good cert                          -> up, serves traffic
#   h2: cert CN host2 signed by another CA        -> untrusted_certificate, never up
#       (host2 IS configured at the SLR, so only the CA check can refuse it)
#   h3: host3, advertises 10.100.0.0/24 but is only authorised for 10.100.0.128/25
#                                                 -> subnet_not_authorised, host says why
#   h4: cert CN "stranger", right CA, not a configured host -> not_authorised
# and garbage on the control port does not hurt the SLR.
. "$(dirname "$0")/lib.sh"
require_root
e2e_init
require_slrctl

topo_up 4 || die "topology"
make_pki "$PKI_DIR" 3 || die "PKI"
write_slr_config "$RUN_DIR/slr.toml" host1 host2 host3=10.100.0.128/25
start_slr || die "SLR starts"

refused() { slr_get status "d['control']['refused']['$1']"; }
R_UNTRUSTED0=$(refused untrusted_certificate)
R_SUBNET0=$(refused subnet_not_authorised)
R_NOTAUTH0=$(refused not_authorised)

start_http 1 || die "HTTP in h1"
write_host_config "$RUN_DIR/h1.toml" 1
start_host 1 || die "host agent h1"
wait_for 20 host_is host1 up || die "host1 registers"
ok "host1 (good certificate) is up"

# h2: rogue certificate (CN host2, other CA).
write_host_config "$RUN_DIR/h2.toml" 2 host2 rogue
start_host 2 || die "host agent h2 (rogue cert) starts"
untrusted_up() { (($(refused untrusted_certificate) > R_UNTRUSTED0)); }
if wait_for 15 untrusted_up; then ok "rogue certificate refused: control.refused.untrusted_certificate increased"
else not_ok "rogue certificate refused: control.refused.untrusted_certificate increased ($(refused untrusted_certificate))"; fi

# h3: subnet not authorised.
start_http 3 || die "HTTP in h3"
write_host_config "$RUN_DIR/h3.toml" 3
start_host 3 || die "host agent h3 starts"
subnet_up() { (($(refused subnet_not_authorised) > R_SUBNET0)); }
if wait_for 15 subnet_up; then ok "unauthorised subnet refused: control.refused.subnet_not_authorised increased"
else not_ok "unauthorised subnet refused: control.refused.subnet_not_authorised increased ($(refused subnet_not_authorised))"; fi
h3_says_subnet() {
  local e
  e=$(host_get 3 "next((s['last_error'] or '' for s in d['slrs'] if s['name'] == 'slr1'), '')") || return 1
  grep -qi subnet <<<"$e"
}
if wait_for 10 h3_says_subnet; then ok "host3's status last_error mentions the subnet"
else not_ok "host3's status last_error mentions the subnet (got: $(host_get 3 "d['slrs']"))"; fi
assert_eq "host3's SLR state is refused" refused "$(host_get 3 "d['slrs'][0]['state']")"

# h4: right CA, unknown name.
write_host_config "$RUN_DIR/h4.toml" 4 stranger stranger
start_host 4 || die "host agent h4 (stranger) starts"
notauth_up() { (($(refused not_authorised) > R_NOTAUTH0)); }
if wait_for 15 notauth_up; then ok "unconfigured certificate CN refused: control.refused.not_authorised increased"
else not_ok "unconfigured certificate CN refused: control.refused.not_authorised increased ($(refused not_authorised))"; fi

# Over a few more update intervals, none of the refused hosts ever turns up.
never_up() {
  local st
  for ((k = 0; k < 20; k++)); do
    for h in host2 host3 stranger; do
      st=$(host_state "$h") || return 1
      [[ "$st" == up ]] && { echo "$h is up" >&2; return 1; }
    done
    sleep 0.1
  done
}
check "host2 (rogue), host3 (bad subnet), stranger never become up" never_up
assert_ne "rogue host's SLR state is not registered" registered "$(host_get 2 "d['slrs'][0]['state']")"
assert_eq "hosts_up is 1" 1 "$(slr_get status "d['hosts_up']")"

# Garbage on the control port: plain bytes, a half TLS record, an oversized
# record header, and connections that just close.
ns cli "$PY" - "$SLR_ADDR" "$CONTROL_PORT" <<'EOF'
import os, socket, sys
addr = (sys.argv[1], int(sys.argv[2]))
payloads = [
    b"GET / HTTP/1.0\r\n\r\n",
    os.urandom(4096),
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(20),   # truncated ClientHello
    b"\x16\x03\x03\xff\xff" + os.urandom(64),                           # record longer than sent
    b"SL\x01\x01\x00\x01\x00\x00",                                      # our framing, but no TLS
    b"",
]
# The SLR may reset a connection at any point: only a refused connect (the
# listener is gone) counts as a failure here.
for i in range(3):
    for p in payloads:
        s = socket.create_connection(addr, timeout=3)
        try:
            if p:
                s.sendall(p)
            s.shutdown(socket.SHUT_WR)
            s.settimeout(2)
            s.recv(4096)
        except OSError:
            pass
        finally:
            s.close()
EOF
assert_eq "garbage sender could connect every time (18 connections)" 0 "$?"
check "SLR still running after garbage on the control port" slr_alive
check "SLR still answers status" slr_alive_and_answering
http_tally 10
note "tally: $(tally_str)"
assert_eq "10 requests to the VIP still succeed (all on h1)" 10 "${TALLY[h1]:-0}"
assert_eq "host1 still up" up "$(host_state host1)"
