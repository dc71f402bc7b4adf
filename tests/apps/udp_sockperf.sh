#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# sockperf over UDP (its default) under nearsock: ping-pong, under-load and throughput with
# 64-byte messages complete without errors or reported drops, and the server's datagrams went
# through shared memory (inboxes); then the same against a plain server for comparison.
. "$(dirname "$0")/lib.sh"
need sockperf
P=$(free_port)
start_bg "$NEARSOCK" run -- sockperf sr -p "$P"
SRV=$LAST_PID
wait_udp() {
	for _ in $(seq 1 100); do
		ss -Hlun "sport = :$1" 2>/dev/null | grep -q . && return 0
		sleep 0.1
	done
	fail "nothing bound to UDP port $1"
}
wait_udp "$P"
run() { # CMD... -> summary line
	local out
	out=$("$@" 2>&1) || fail "$* failed: $(echo "$out" | tail -3)"
	echo "$out" | grep -q ERROR && fail "$* reported: $(echo "$out" | grep ERROR | head -2)"
	if echo "$out" | grep -q "dropped messages = [1-9]"; then
		fail "$* reported drops: $(echo "$out" | grep 'dropped messages')"
	fi
	echo "$out" | grep -E "Summary: (Latency|Message Rate)" | head -1 | sed 's/.*Summary: //'
}
pp=$(run "$NEARSOCK" run -- sockperf pp -p "$P" -t 1 -m 64 --mps 5000000)
ul=$(run "$NEARSOCK" run -- sockperf ul -p "$P" -t 1 -m 64)
tp=$(run "$NEARSOCK" run -- sockperf tp -p "$P" -t 1 -m 64)
share=$(shm_share "$SRV")
echo "nearsock UDP: ping-pong $pp | under-load $ul | throughput $tp | server shm-share=$share"
python3 -c "import sys; sys.exit(0 if $share > 0.99 else 1)" || fail "only $share of the server's bytes went through shared memory"
P2=$(free_port)
start_bg sockperf sr -p "$P2"
wait_udp "$P2"
kpp=$(run sockperf pp -p "$P2" -t 1 -m 64 --mps 5000000)
ktp=$(sockperf tp -p "$P2" -t 1 -m 64 2>&1 | grep -E "Summary: Message Rate" | sed 's/.*Summary: //')
echo "kernel UDP: ping-pong $kpp | throughput $ktp"
echo PASS
