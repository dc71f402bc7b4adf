#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# demo.sh — `make demo`: redis-server + redis-benchmark, once over plain loopback TCP and
# once under nearsock, side by side; prints the speedup and the counters that show the
# shared-memory path carried the traffic.
set -euo pipefail
cd "$(dirname "$0")/.."
B=build
N=${DEMO_REQUESTS:-200000}
export NEARSOCK_DIR=$(mktemp -d /dev/shm/nearsock-demo.XXXXXX)
chmod 700 "$NEARSOCK_DIR"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$NEARSOCK_DIR"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
listening() { for _ in $(seq 100); do ss -Hltn "sport = :$1" | grep -q LISTEN && return; sleep 0.1; done; echo "redis did not start"; exit 1; }
bench() { redis-benchmark -p "$1" -t set,get -n "$N" -c 50 -q 2>/dev/null | tr '\r' '\n' | grep "requests per second"; }

P1=$(port); P2=$(port)
redis-server --port "$P1" --save '' --appendonly no --logfile /dev/null & pids+=($!)
$B/nearsock run -- redis-server --port "$P2" --save '' --appendonly no --logfile /dev/null & pids+=($!)
NS_PID=$!
listening "$P1"; listening "$P2"

echo "redis-benchmark, $N requests, 50 connections, GET and SET"
echo
echo "-- plain loopback TCP"
plain=$(bench "$P1"); echo "$plain"
echo
echo "-- nearsock (both redis-server and redis-benchmark under 'nearsock run')"
ns=$(NEARSOCK_DIR=$NEARSOCK_DIR $B/nearsock run -- redis-benchmark -p "$P2" -t set,get -n "$N" -c 50 -q 2>/dev/null | tr '\r' '\n' | grep "requests per second"); echo "$ns"
echo
python3 - "$plain" "$ns" <<'PY'
import sys
def rps(t):
    return {l.split(':')[0].strip(): float(l.split(':')[1].split()[0]) for l in t.splitlines() if ':' in l}
a, b = rps(sys.argv[1]), rps(sys.argv[2])
for k in a:
    print(f"speedup {k}: {b.get(k, 0) / a[k]:.2f}x")
PY
echo
echo "-- proof: the nearsock redis-server's counters (nearsock status)"
$B/nearsock status | awk -v pid="$NS_PID" '/^processes/{p=1} p && (NR==1 || $1=="pid" || $1==pid)'
