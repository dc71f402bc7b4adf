#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# sockperf (TCP) server with ping-pong, under-load and throughput clients under nearsock:
# every run completes without errors and the server's bytes went through shared memory.
. "$(dirname "$0")/lib.sh"
need sockperf
P=$(free_port)
start_bg "$NEARSOCK" run -- sockperf sr --tcp -p "$P"
SRV=$LAST_PID
wait_port "$P"
run() { # MODE -> summary line
	local out
	out=$("$@" 2>&1) || fail "$* failed: $(echo "$out" | tail -3)"
	echo "$out" | grep -q ERROR && fail "$* reported: $(echo "$out" | grep ERROR | head -2)"
	echo "$out" | grep -E "Summary: (Latency|Message Rate)" | head -1 | sed 's/.*Summary: //'
}
pp=$(run "$NEARSOCK" run -- sockperf pp --tcp -p "$P" -t 1 -m 64)
ul=$(run "$NEARSOCK" run -- sockperf ul --tcp -p "$P" -t 1 -m 64)
tp=$(run "$NEARSOCK" run -- sockperf tp --tcp -p "$P" -t 1 -m 64)
share=$(shm_share "$SRV")
claims=$(proc_counter "$SRV" claims)
echo "nearsock: ping-pong $pp | under-load $ul | throughput $tp | claims=$claims shm-share=$share"
[ "$claims" -ge 3 ] || fail "sockperf connections were not upgraded (claims=$claims)"
python3 -c "import sys; sys.exit(0 if $share > 0.99 else 1)" || fail "only $share of the bytes went through shared memory"
P2=$(free_port)
start_bg sockperf sr --tcp -p "$P2"
wait_port "$P2"
tpp=$(run sockperf pp --tcp -p "$P2" -t 1 -m 64)
ttp=$(run sockperf tp --tcp -p "$P2" -t 1 -m 64)
echo "plain TCP: ping-pong $tpp | throughput $ttp"
echo PASS
