#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# redis-server + redis-cli/redis-benchmark, plain and under nearsock: the same command
# transcript (a 768 KiB random value read back byte-exactly, INCR sequence), redis-benchmark
# plain and pipelined (-P 16) completes every request, and the benchmark's bytes went through
# shared memory. Speedups are printed, not asserted.
. "$(dirname "$0")/lib.sh"
need redis-server
need redis-benchmark
N=${REDIS_REQUESTS:-20000}
NP=${REDIS_PIPELINED_REQUESTS:-100000}

val=$SCR/val
head -c 786432 /dev/urandom | base64 -w0 >"$val"

# transcript RUN PORT - the client side of the correctness workload, one line per reply.
transcript() {
	local run=$1 p=$2 i
	$run redis-cli -p "$p" -x set big <"$val"
	# --raw prints the value and a newline
	$run redis-cli -p "$p" --raw get big | sha256sum
	for i in $(seq 1 20); do
		$run redis-cli -p "$p" incr counter
	done
	$run redis-cli -p "$p" dbsize
}
# bench RUN PORT ARGS... - "SET GET" requests per second; fails unless both completed.
bench() {
	local run=$1 p=$2 out
	shift 2
	out=$($run redis-benchmark -p "$p" -t set,get -q "$@" 2>&1 | tr '\r' '\n' |
		grep -E "requests per second" || true)
	echo "$out" | grep -q "SET:" || fail "redis-benchmark $* SET did not complete: $out"
	echo "$out" | grep -q "GET:" || fail "redis-benchmark $* GET did not complete: $out"
	echo "$(echo "$out" | awk '/SET:/{print $2}') $(echo "$out" | awk '/GET:/{print $2}')"
}

P=$(free_port)
start_bg ns redis-server --port "$P" --save '' --appendonly no --logfile /dev/null
SRV=$LAST_PID
P2=$(free_port)
start_bg redis-server --port "$P2" --save '' --appendonly no --logfile /dev/null
wait_port "$P"
wait_port "$P2"

want=$(transcript plain "$P2")
got=$(transcript ns "$P")
[ "$got" = "$want" ] || fail "transcripts differ: plain [$want] nearsock [$got]"
echo "$got" | grep -q "$({ cat "$val"; echo; } | sha256sum)" || fail "GET big returned different bytes"

s0=$(snap)
ns_plain=($(bench ns "$P" -n "$N"))
s1=$(snap)
delta "$s0" "$s1"
echo "nearsock  -P 1 : SET ${ns_plain[0]} GET ${ns_plain[1]} rps; $D"
[ "$D_CLAIMS" -ge 50 ] || fail "expected every benchmark connection (50) on shared memory, claims=$D_CLAIMS"
ge "$D_SHARE" 0.9 || fail "only $D_SHARE of the benchmark's bytes went through shared memory"
c1="claims $D_CLAIMS, shm share $D_SHARE"
ns_pipe=($(bench ns "$P" -n "$NP" -P 16))
s2=$(snap)
delta "$s1" "$s2"
echo "nearsock  -P 16: SET ${ns_pipe[0]} GET ${ns_pipe[1]} rps; $D"
[ "$D_CLAIMS" -ge 50 ] || fail "pipelined: expected every connection on shared memory, claims=$D_CLAIMS"
ge "$D_SHARE" 0.9 || fail "pipelined: only $D_SHARE of the bytes went through shared memory"
c2="claims $D_CLAIMS, shm share $D_SHARE"
still_alive "$SRV" redis-server

tcp_plain=($(bench plain "$P2" -n "$N"))
tcp_pipe=($(bench plain "$P2" -n "$NP" -P 16))
echo "plain TCP -P 1 : SET ${tcp_plain[0]} GET ${tcp_plain[1]} rps"
echo "plain TCP -P 16: SET ${tcp_pipe[0]} GET ${tcp_pipe[1]} rps"
sp1="SET $(ratio "${ns_plain[0]}" "${tcp_plain[0]}")x GET $(ratio "${ns_plain[1]}" "${tcp_plain[1]}")x"
sp2="SET $(ratio "${ns_pipe[0]}" "${tcp_pipe[0]}")x GET $(ratio "${ns_pipe[1]}" "${tcp_pipe[1]}")x"
echo "speedup -P 1: $sp1; -P 16: $sp2"
V=$(pkg_version redis-server)
row redis "$V" "redis-cli SET/GET 768 KiB value, INCR; redis-benchmark -t set,get -n $N (50 clients)" pass "$sp1" "$c1"
row redis "$V" "redis-benchmark -t set,get -n $NP -P 16 (pipelined)" pass "$sp2" "$c2"
echo PASS
