#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# redis-server + redis-cli/redis-benchmark under nearsock: values round-trip byte-exactly,
# the benchmark completes, and the server's bytes went through shared memory.
. "$(dirname "$0")/lib.sh"
need redis-server
need redis-benchmark
N=${REDIS_REQUESTS:-20000}

P=$(free_port)
start_bg "$NEARSOCK" run -- redis-server --port "$P" --save '' --appendonly no --logfile /dev/null
SRV=$LAST_PID
wait_port "$P"

# correctness: a 1 MiB random value, set and read back
val=$(mktemp)
head -c 786432 /dev/urandom | base64 -w0 > "$val"
"$NEARSOCK" run -- redis-cli -p "$P" -x set big < "$val" | grep -q OK || fail "SET big"
# (--raw prints the value and a newline; no `head` in this pipeline: under pipefail an early
# close would kill redis-cli with SIGPIPE)
got=$("$NEARSOCK" run -- redis-cli -p "$P" --raw get big | sha256sum)
want=$({ cat "$val"; echo; } | sha256sum)
rm -f "$val"
[ "$got" = "$want" ] || fail "GET big returned different bytes"
for i in $(seq 1 20); do
	r=$("$NEARSOCK" run -- redis-cli -p "$P" incr counter)
	[ "$r" = "$i" ] || fail "INCR returned $r, expected $i"
done

before=$("$NEARSOCK" status --json)
out=$("$NEARSOCK" run -- redis-benchmark -p "$P" -t set,get -n "$N" -q 2>&1 | tr '\r' '\n' | grep -E "requests per second" || true)
echo "$out"
echo "$out" | grep -q "SET:" || fail "redis-benchmark SET did not complete"
echo "$out" | grep -q "GET:" || fail "redis-benchmark GET did not complete"
claims=$(proc_counter "$SRV" claims)
# share of the benchmark's bytes (the 1 MiB value above went over TCP before its claim)
share=$(python3 -c "
import json,sys
b=json.loads(sys.argv[1]); a=json.loads(sys.argv[2])
def tot(d):
    for p in d['processes']:
        if p['pid']==$SRV: return p['shm_tx_bytes']+p['shm_rx_bytes'], p['tcp_tx_bytes']+p['tcp_rx_bytes']
    return 0,0
(s0,t0),(s1,t1)=tot(b),tot(a); s=s1-s0; t=t1-t0
print('%.4f' % (s/(s+t) if s+t else 0))" "$before" "$("$NEARSOCK" status --json)")
echo "server claims=$claims shm-share=$share"
[ "$claims" -ge 50 ] || fail "expected every benchmark connection on shared memory, claims=$claims"
python3 -c "import sys; sys.exit(0 if $share > 0.9 else 1)" || fail "only $share of the server's bytes went through shared memory"

# the same benchmark over plain TCP, for the printed speedup (not asserted)
P2=$(free_port)
start_bg redis-server --port "$P2" --save '' --appendonly no --logfile /dev/null
wait_port "$P2"
plain=$(redis-benchmark -p "$P2" -t set,get -n "$N" -q 2>&1 | tr '\r' '\n' | grep -E "requests per second" || true)
echo "plain TCP:"
echo "$plain"
ns_set=$(echo "$out" | awk '/SET:/{print $2}'); tcp_set=$(echo "$plain" | awk '/SET:/{print $2}')
ns_get=$(echo "$out" | awk '/GET:/{print $2}'); tcp_get=$(echo "$plain" | awk '/GET:/{print $2}')
echo "speedup SET $(ratio "$ns_set" "$tcp_set")x GET $(ratio "$ns_get" "$tcp_get")x"
echo PASS
