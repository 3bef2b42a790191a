#!/usr/bin/env bash
# SHORTCUT messages are only taken from registered lower SLRs, and only for
# their authorised subnets; bad ones are counted, never applied, and never
# hurt the SLR or its traffic.  A scripted TLS peer (python ssl, real
# certificates) speaks the control protocol byte by byte:
#   host2 (authorised for 10.100.0.0/25) registers as a lower SLR, advertises
#     its /25, then signals a flow to 10.100.0.200 (outside)  -> refused, counted,
#     session kept; then a flow to 10.100.0.10 (inside)     -> accepted (ignored:
#     shortcut is off at this SLR); then a SHORTCUT whose address family is 5
#     -> protocol error, connection closed;
#   host3 registers as a HOST and sends a SHORTCUT          -> protocol error.
# Meanwhile host1 (a real agent) serves the VIP and keeps serving it.
. "$(dirname "$0")/lib.sh"
require_root
e2e_init
require_slrctl

topo_up 3 || die "topology"
make_pki "$PKI_DIR" 3 || die "PKI"
write_slr_config "$RUN_DIR/slr.toml" host1 host2=10.100.0.0/25 host3
start_slr || die "SLR starts"
start_http 1 || die "HTTP in h1"
write_host_config "$RUN_DIR/h1.toml" 1
start_host 1 || die "host agent h1"
wait_for 20 host_is host1 up || die "host1 registers"

sc() { slr_get status "d['shortcut']['$1']"; }
perr() { slr_get status "d['control']['refused']['protocol_error']"; }
PERR0=$(perr)

ns h2 "$PY" - "$SLR_ADDR" "$CONTROL_PORT" "$PKI_DIR" >"$RUN_DIR/peer.log" 2>&1 <<'EOF'
import socket, ssl, struct, sys
addr, pki = (sys.argv[1], int(sys.argv[2])), sys.argv[3]

def connect(name):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(f"{pki}/ca.pem")
    ctx.load_cert_chain(f"{pki}/{name}.pem", f"{pki}/{name}.key")
    return ctx.wrap_socket(socket.create_connection(addr, timeout=5), server_hostname="slr1")

def frame(t, body):
    return b"SL" + bytes([1, t]) + struct.pack(">I", len(body)) + body

def v4(a):
    return bytes(int(x) for x in a.split("."))

def addr16(a):
    return bytes([4]) + v4(a) + bytes(12)

def hello(name, role, tunnel):
    return frame(1, bytes([role, len(name)]) + name.encode() + addr16(tunnel) + struct.pack(">II", 500, 4))

def update(seq, prefix, plen):
    return frame(3, struct.pack(">IH", seq, 1) + bytes([4, plen]) + v4(prefix) + bytes(12) +
                 struct.pack(">I", 100000) + bytes([1]))

def shortcut(dst, family=4):
    e = bytes([6, family]) + v4("10.0.1.2") + v4(dst) + struct.pack(">HH", 40000, 80) + bytes([4]) + v4("10.0.3.12")
    return frame(5, struct.pack(">H", 1) + e)

def read_frame(s):
    hdr = b""
    while len(hdr) < 8:
        c = s.recv(8 - len(hdr))
        if not c:
            return None
        hdr += c
    n = struct.unpack(">I", hdr[4:8])[0]
    body = b""
    while len(body) < n:
        body += s.recv(n - len(body))
    return hdr[3], body

def answer_to_bad_frame(s):
    """'ERROR' when the SLR answered with an ERROR frame, 'closed' when it just closed."""
    try:
        f = read_frame(s)
        while f is not None and f[0] != 4:
            f = read_frame(s)
        return "ERROR" if f is not None else "closed"
    except (OSError, ssl.SSLError):
        return "closed"

# host2 as a lower SLR.
s = connect("host2")
s.sendall(hello("host2", 2, "10.0.3.12"))
t, _ = read_frame(s)
assert t == 2, f"expected HELLO_ACK, got type {t}"
s.sendall(update(1, "10.100.0.0", 25))
s.sendall(shortcut("10.100.0.200"))   # outside its /25: refused
s.sendall(shortcut("10.100.0.10"))    # inside: accepted
s.sendall(update(2, "10.100.0.0", 25))  # the session is still good (the ERROR below proves it was open)
print("slr session alive after a refused shortcut", flush=True)
s.sendall(shortcut("10.100.0.10", family=5))  # undecodable: protocol error
print("bad family answered with:", answer_to_bad_frame(s), flush=True)
s.close()

# host3 as a host: SHORTCUT is not for hosts.
s = connect("host3")
s.sendall(hello("host3", 1, "10.0.3.13"))
t, _ = read_frame(s)
assert t == 2
s.sendall(shortcut("10.100.0.10"))
f = read_frame(s)
print("host shortcut answer type:", f[0] if f else None, flush=True)
EOF
rc=$?
sed 's/^/# peer: /' "$RUN_DIR/peer.log"
assert_eq "scripted peer ran to the end" 0 "$rc"
assert_contains "the lower SLR's session survived a refused shortcut" "session alive" "$(cat "$RUN_DIR/peer.log")"
assert_contains "an undecodable SHORTCUT gets ERROR" "bad family answered with: ERROR" "$(cat "$RUN_DIR/peer.log")"
assert_contains "a host sending SHORTCUT gets ERROR (type 4)" "answer type: 4" "$(cat "$RUN_DIR/peer.log")"
assert_eq "one shortcut refused (outside the lower SLR's subnets)" 1 "$(sc refused)"
assert_eq "one shortcut accepted and ignored (shortcut is off here)" 1 "$(sc ignored)"
assert_eq "no shortcut applied" 0 "$(sc applied)"
assert_ge "two protocol errors counted (bad family, SHORTCUT from a host)" "$(perr)" $((PERR0 + 2))
assert_contains "the SLR log names the refused shortcut" "refused 1 shortcut" "$(cat "$RUN_DIR/slr.log")"
check "SLR still running" slr_alive
http_tally 10
assert_eq "10 requests to the VIP still succeed (all on h1)" 10 "${TALLY[h1]:-0}"
