#!/usr/bin/env bash
# Malformed IPv4 datagrams reaching the SLR's data path are dropped and
# counted by reason, while the SLR keeps serving: a long transfer that was
# running during the injection completes intact, and new requests work.
#
# How the packets get in: rtr would drop (or fix) most of these, and a raw
# IP_HDRINCL socket has its checksum and total length rewritten by the
# kernel.  So the test writes the bytes with an AF_PACKET socket on the SLR's
# own TUN device (slr0) inside the slr namespace: a frame transmitted on a TUN
# device is handed, byte for byte, to the process reading the TUN -- exactly
# what the SLR reads for VIP traffic.
. "$(dirname "$0")/lib.sh"
require_root
e2e_init
require_slrctl

K=5   # copies of each malformed kind

BIG_MB=16 LOAD_SOURCE=connections bring_up 2

# A long transfer (~4 s at 4 MiB/s) running across the injection.
start_long_download || die "long transfer started"

S0=$RUN_DIR/status0.json
slr_json status >"$S0" || die "status before injection"
before() { json_get "$S0" "$1"; }

ns_py_raw slr slr0 "$K" "$VIP" <<'EOF' || die "injector ran"
import socket, struct, sys
ifname, k, vip = sys.argv[1], int(sys.argv[2]), sys.argv[3]

def tcp_syn():
    # sport 40000, dport 80, seq 1, data offset 5, SYN; L4 checksum irrelevant here
    return struct.pack("!HHIIBBHHH", 40000, 80, 1, 0, 5 << 4, 0x02, 65535, 0, 0)

def ipv4(dst=vip, ihl=5, tot=None, ver=4, payload=None, fix_csum=True, csum_len=None):
    payload = tcp_syn() if payload is None else payload
    hdr_len = 20  # bytes we actually put before the payload
    if tot is None:
        tot = hdr_len + len(payload)
    h = bytearray(struct.pack("!BBHHHBBH4s4s", (ver << 4) | ihl, 0, tot, 0x1234, 0, 64, 6, 0,
                              socket.inet_aton("192.0.2.7"), socket.inet_aton(dst)))
    if fix_csum:
        n = csum_len if csum_len is not None else max(ihl, 5) * 4
        struct.pack_into("!H", h, 10, csum(bytes(h[:n])))
    return bytes(h) + payload

good = ipv4()
bad_csum = bytearray(good)
bad_csum[10] ^= 0x5a                                         # header checksum wrong
kinds = {
    "bad_checksum": bytes(bad_csum),
    "truncated_short": good[:12],                            # shorter than an IPv4 header
    "truncated_totlen": ipv4(tot=len(good) + 200),           # total length beyond the datagram
    "bad_header_length": ipv4(ihl=4, csum_len=16),           # IHL < 5
    "bad_total_length": ipv4(tot=16),                        # total length < IHL*4
    "not_ipv4": ipv4(ver=5),                                 # version neither 4 nor 6
    "not_vip": ipv4(dst="10.200.0.1"),                       # well formed, not a VIP
}
s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
for _ in range(k):
    for name, pkt in kinds.items():
        s.sendto(pkt, (ifname, 0x0800))
print("# sent %d x %d kinds" % (k, len(kinds)))
EOF
ok "injected $K x 7 malformed datagrams into slr0"

# Expected drop deltas by reason.
declare -A EXPECT=([bad_checksum]=$K [truncated]=$((2 * K)) [bad_header_length]=$K
                   [bad_total_length]=$K [not_ipv4]=$K [not_vip]=$K)
drops_reached() {
  local s r
  s=$(slr_json status) || return 1
  for r in "${!EXPECT[@]}"; do
    [[ $(json_get - "drop('$r') - $(before "(d.get('drops') or {}).get('$r', 0)") >= ${EXPECT[$r]}" <<<"$s") == true ]] || return 1
  done
}
wait_for 5 drops_reached || note "drop counters did not all reach the expected deltas"
S1=$RUN_DIR/status1.json
slr_json status >"$S1"
for r in bad_checksum truncated bad_header_length bad_total_length not_ipv4 not_vip; do
  d=$(( $(json_get "$S1" "drop('$r')") - $(before "(d.get('drops') or {}).get('$r', 0)") ))
  assert_eq "drops.$r increased by ${EXPECT[$r]}" "${EXPECT[$r]}" "$d"
done
assert_ge "drops_total increased by >= $((7 * K))" \
  "$(( $(json_get "$S1" "d['drops_total']") - $(before "d['drops_total']") ))" $((7 * K))
assert_ge "packets.rx counted the malformed datagrams too" \
  "$(( $(json_get "$S1" "d['packets']['rx']") - $(before "d['packets']['rx']") ))" $((7 * K))

check "SLR still running after malformed input" slr_alive

# The transfer that was in flight completes, byte for byte.
wait "$LONG_PID"; RC=$?
assert_eq "long transfer (started before the injection) completed" 0 "$RC"
[[ $RC == 0 ]] || cat "$RUN_DIR/long-curl.log"
assert_eq "long transfer is intact (sha256)" "$BIG_SHA" "$(sha256sum "$RUN_DIR/long.bin" | cut -d' ' -f1)"

http_tally 10
note "tally: $(tally_str)"
assert_eq "10 new requests succeed after the injection" 10 "$TALLY_OK"
check "SLR still answers status" slr_alive_and_answering
