#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# NetPIPE (NPtcp), plain and under nearsock: the integrity-check run (-i: every message of
# every size, 1 B to 1 MiB, compared) passes at every size with the same sizes as without
# nearsock, then a ping-pong performance run completes; both ends preloaded, the bytes went
# through shared memory. Latency and bandwidth are printed, not asserted.
. "$(dirname "$0")/lib.sh"
need NPtcp
U=${NETPIPE_UPPER:-1048576}

# np RUN NAME ARGS... - receiver in the background, transmitter in the foreground; the
# transmitter's log in $SCR/NAME.t, the receiver's counters (last sample) in NP_COUNTERS
np() {
	local run=$1 name=$2 p rc
	shift 2
	p=$(free_port)
	# the receiver's counters at its exit (NEARSOCK_STATS_FILE): a run over shared memory
	# can end within a second, faster than `nearsock status` can be sampled reliably
	local stats=$SCR/$name.stats
	if [ "$run" = ns ]; then
		start_bg ns env NEARSOCK_STATS_FILE="$stats" NPtcp -P "$p" "$@" -o "$SCR/$name.r.out"
	else
		start_bg NPtcp -P "$p" "$@" -o "$SCR/$name.r.out"
	fi
	local rcv=$LAST_PID
	wait_port "$p"
	$run NPtcp -P "$p" -h 127.0.0.1 "$@" -o "$SCR/$name.t.out" >"$SCR/$name.t" 2>&1 ||
		fail "NPtcp transmitter ($name) failed: $(tail -n 3 "$SCR/$name.t")"
	rc=0
	wait "$rcv" || rc=$?
	[ "$rc" = 0 ] || fail "NPtcp receiver ($name) exited with $rc"
	NP_COUNTERS="0 0 0 0"
	[ -s "$stats" ] && NP_COUNTERS=$(python3 -c "
import json, sys
p = json.loads(open(sys.argv[1]).readline())
print(p['claims'], p['shm_tx_bytes'] + p['shm_rx_bytes'], p['tcp_tx_bytes'] + p['tcp_rx_bytes'], p['offers_sent'])" "$stats")
	return 0
}
# sizes_passed LOG - "N sizes passed, M failed"
checks() {
	echo "$(grep -c 'Integrity check passed' "$1") $(grep -c -i 'integrity check failed\|error' "$1")"
}

np plain tcp_i -i -p 0 -u "$U"
t0=$(date +%s%N); np ns ns_i -i -p 0 -u "$U"; echo "integrity run: $(( ($(date +%s%N) - t0) / 1000000 )) ms"
set -- $NP_COUNTERS
echo "integrity: plain $(checks "$SCR/tcp_i.t"), nearsock $(checks "$SCR/ns_i.t") (passed failed); receiver claims=$1 shm=$2 tcp=$3"
tc=($(checks "$SCR/tcp_i.t"))
nc=($(checks "$SCR/ns_i.t"))
[ "${tc[0]}" -gt 20 ] && [ "${tc[1]}" = 0 ] || fail "plain NPtcp -i: ${tc[0]} passed ${tc[1]} failed (test broken?)"
[ "${nc[1]}" = 0 ] || fail "NPtcp -i under nearsock: $(grep -i 'failed\|error' "$SCR/ns_i.t" | head -3)"
[ "${nc[0]}" = "${tc[0]}" ] || fail "NPtcp -i under nearsock passed ${nc[0]} sizes, plain ${tc[0]}"
[ "$1" -ge 1 ] && [ "$2" -gt 0 ] || fail "NPtcp -i: the connection was not on shared memory (claims=$1 shm=$2)"
ci="claims $1, shm $2 B, tcp $3 B"

np plain tcp_p -n 200 -p 0 -u "$U"
np ns ns_p -n 200 -p 0 -u "$U"
set -- $NP_COUNTERS
[ "$1" -ge 1 ] && [ "$2" -gt 0 ] || fail "NPtcp: the connection was not on shared memory (claims=$1 shm=$2)"
share=$(python3 -c "print('%.4f' % ($2/($2+$3)))")
ge "$share" 0.9 || fail "NPtcp: only $share of the receiver's bytes went through shared memory"
# output file: bytes, Mbit/s, seconds per (one-way) transfer
lat() { awk 'NR==1 { printf "%.2f", $3 * 1e6 }' "$1"; }
bw() { awk '{ if ($2 > m) m = $2 } END { printf "%.0f", m }' "$1"; }
[ -s "$SCR/ns_p.t.out" ] || fail "NPtcp under nearsock wrote no results"
tl=$(lat "$SCR/tcp_p.t.out") nl=$(lat "$SCR/ns_p.t.out")
tb=$(bw "$SCR/tcp_p.t.out") nb=$(bw "$SCR/ns_p.t.out")
echo "1-byte latency: plain $tl us, nearsock $nl us ($(ratio "$tl" "$nl")x lower); peak bandwidth: plain $tb Mbit/s, nearsock $nb Mbit/s ($(ratio "$nb" "$tb")x); receiver claims=$1 shm=$2 tcp=$3 share=$share"
V=$(pkg_version netpipe-tcp)
row "NetPIPE (NPtcp)" "$V" "NPtcp -i -p 0 -u $U (integrity check, every size)" pass "-" "$ci"
row "NetPIPE (NPtcp)" "$V" "NPtcp -n 200 -p 0 -u $U (ping-pong, 1 B … 1 MiB)" pass \
	"1 B: $tl → $nl µs ($(ratio "$tl" "$nl")x); peak $tb → $nb Mbit/s ($(ratio "$nb" "$tb")x)" "claims $1, shm share $share"
echo PASS
