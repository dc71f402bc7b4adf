#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# sockperf (TCP) server with ping-pong, under-load and throughput clients, plain and under
# nearsock: every run completes without errors or lost/out-of-order messages, and the
# server's bytes went through shared memory. Latencies and rates are printed, not asserted.
. "$(dirname "$0")/lib.sh"
need sockperf

# sockperf sizes its per-message tables for at most 600 000 messages a second unless --mps
# says otherwise, and aborts with "_seqN > m_maxSequenceNo" when ping-pong over shared memory
# goes faster than that (it does: ~0.75 µs per half round trip here). Ping-pong is not
# paced either way; the larger limit only makes the tables fit.
MPS=(--mps 5000000)

# run RUN MODE PORT - sockperf's summary line of one 1-second run; fails on any error.
run() {
	local out extra=()
	[ "$2" = pp ] && extra=("${MPS[@]}")
	out=$($1 sockperf "$2" --tcp -p "$3" -t 1 -m 64 "${extra[@]}" 2>&1) || fail "sockperf $2 ($1) exited with $?: $(echo "$out" | tail -3)"
	if echo "$out" | grep -E -q "ERROR|(dropped|duplicated|out-of-order) messages = [1-9]"; then
		fail "sockperf $2 reported: $(echo "$out" | grep -E "ERROR|messages = [1-9]" | head -2)"
	fi
	echo "$out" | grep -E "Summary: (Latency|Message Rate) is" | head -1 |
		sed -E 's/.*Summary: (Latency|Message Rate) is ([0-9.]+).*/\2/'
}

P=$(free_port)
start_bg ns sockperf sr --tcp -p "$P"
SRV=$LAST_PID
P2=$(free_port)
start_bg sockperf sr --tcp -p "$P2"
wait_port "$P"
wait_port "$P2"

declare -A NS TCP
s0=$(snap)
for m in pp ul tp; do
	NS[$m]=$(run ns $m "$P")
done
s1=$(snap)
delta "$s0" "$s1"
echo "nearsock : ping-pong ${NS[pp]} usec | under-load ${NS[ul]} usec | throughput ${NS[tp]} msg/s | $D"
[ "$D_CLAIMS" -ge 3 ] || fail "sockperf connections were not upgraded (claims=$D_CLAIMS)"
ge "$D_SHARE" 0.99 || fail "only $D_SHARE of the bytes went through shared memory"
still_alive "$SRV" "sockperf server"
for m in pp ul tp; do
	TCP[$m]=$(run plain $m "$P2")
done
echo "plain TCP: ping-pong ${TCP[pp]} usec | under-load ${TCP[ul]} usec | throughput ${TCP[tp]} msg/s"
sp_pp=$(ratio "${TCP[pp]}" "${NS[pp]}")
sp_ul=$(ratio "${TCP[ul]}" "${NS[ul]}")
sp_tp=$(ratio "${NS[tp]}" "${TCP[tp]}")
echo "speedup: ping-pong latency ${sp_pp}x lower, under-load ${sp_ul}x lower, throughput ${sp_tp}x"
V=$(pkg_version sockperf)
c="claims $D_CLAIMS, shm share $D_SHARE"
row sockperf "$V" "ping-pong, 64 B, 1 s" pass "${TCP[pp]} → ${NS[pp]} µs (${sp_pp}x)" "$c (3 runs)"
row sockperf "$V" "under-load, 64 B, 1 s" pass "${TCP[ul]} → ${NS[ul]} µs (${sp_ul}x)" "$c (3 runs)"
row sockperf "$V" "throughput, 64 B, 1 s" pass "${TCP[tp]} → ${NS[tp]} msg/s (${sp_tp}x)" "$c (3 runs)"
echo PASS
