#!/usr/bin/env bash
# A quiet established TCP connection keeps its host.  The SYN timeout is made
# short (1s); a connection is opened, used, left idle for longer than that
# timeout (but far below the established one) and used again: the second
# exchange must reach the same host on the same connection.  With the kernel
# fast path on, the SLR's workers see only the SYN, so this proves the flow
# state learned from the kernel (established, last seen) keeps the flow.
. "$(dirname "$0")/lib.sh"
require_root
e2e_init
require_slrctl

# A small table so the idle sweep visits every slot within a second.
SLR_TCP_SYN_TIMEOUT=1s SLR_FLOW_CAPACITY=1024 bring_up 2

# A line server on port 7000 in each host: answers each line with its name.
for i in 1 2; do
  _bg "h$i" "$RUN_DIR/echo$i.log" "$PY" -c '
import socket, sys, threading
name = sys.argv[1]
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", 7000)); srv.listen(16)
def serve(c):
    f = c.makefile("rwb")
    for line in f:
        f.write(name.encode() + b" " + line); f.flush()
while True:
    c, _ = srv.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
' "h$i"
done
echo_up() { ns cli "$PY" -c 'import socket,sys; socket.create_connection((sys.argv[1], 7000), timeout=1).close()' "$VIP" 2>/dev/null; }
wait_for 10 echo_up || die "line servers answer through the VIP"

IDLE=3   # seconds of silence: 3x the SYN timeout, 1% of the established one
CREATED0=$(slr_get status "d['flows']['created']")
OUT=$(ns cli "$PY" - "$VIP" "$IDLE" <<'PYEOF'
import socket, sys, time
vip, idle = sys.argv[1], float(sys.argv[2])
s = socket.create_connection((vip, 7000), timeout=5)
f = s.makefile("rwb")
f.write(b"first\n"); f.flush(); a = f.readline().decode().split()
time.sleep(idle)   # the point of the test: a quiet connection
f.write(b"second\n"); f.flush(); b = f.readline().decode().split()
print(a[0] if a else "-", b[0] if b else "-")
PYEOF
) || true
read -r FIRST SECOND <<<"$OUT"
assert_ne "first exchange answered" "" "${FIRST:-}"
assert_eq "the same host answers after ${IDLE}s of silence (syn timeout 1s)" "$FIRST" "${SECOND:-none}"
# Had the flow been expired during the silence, its next packet would have
# created a second one (and possibly picked another host).
assert_eq "the connection created exactly one flow at the SLR" 1 \
  "$(( $(slr_get status "d['flows']['created']") - CREATED0 ))"
check "SLR still running" slr_alive
summary
