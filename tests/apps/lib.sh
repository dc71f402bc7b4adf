#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# lib.sh — shared helpers for application tests: a private domain per test, servers started
# under `nearsock run` and stopped on exit, free ports, and counters from `nearsock status`.
set -euo pipefail

BUILD=${NSK_BUILD:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../build" && pwd)}
NEARSOCK="$BUILD/nearsock"
export NEARSOCK_DIR=$(mktemp -d /dev/shm/nsk-test.XXXXXX)
chmod 700 "$NEARSOCK_DIR"
PIDS=()

cleanup() {
	local p
	for p in "${PIDS[@]:-}"; do
		[ -n "$p" ] && kill "$p" 2>/dev/null || true
	done
	for p in "${PIDS[@]:-}"; do
		[ -n "$p" ] && wait "$p" 2>/dev/null || true
	done
	rm -rf "$NEARSOCK_DIR"
}
trap cleanup EXIT

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || skip "$1 not installed (run scripts/setup.sh)"; }

# free_port - a TCP port nobody listens on.
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_port PORT - until something listens on PORT (10 s at most), without connecting
# (a probe connection would be a client the server has to deal with).
wait_port() {
	for _ in $(seq 1 100); do
		if ss -Hltn "sport = :$1" 2>/dev/null | grep -q LISTEN; then
			return 0
		fi
		sleep 0.1
	done
	fail "nothing listens on port $1"
}

# start_bg CMD... - start a background process, remember it for cleanup; sets LAST_PID.
start_bg() {
	"$@" &
	LAST_PID=$!
	PIDS+=("$LAST_PID")
}

# proc_counter PID FIELD - a per-process counter from `nearsock status --json`.
proc_counter() {
	"$NEARSOCK" status --json | python3 -c "
import json,sys
d=json.load(sys.stdin)
for p in d['processes']:
    if p['pid']==$1: print(p['$2']); break
else: print(0)"
}

# shm_share PID - fraction of the process's bytes (both directions) that went through rings.
shm_share() {
	"$NEARSOCK" status --json | python3 -c "
import json,sys
d=json.load(sys.stdin)
for p in d['processes']:
    if p['pid']==$1:
        shm=p['shm_tx_bytes']+p['shm_rx_bytes']; tcp=p['tcp_tx_bytes']+p['tcp_rx_bytes']
        print('%.4f' % (shm/(shm+tcp) if shm+tcp else 0)); break
else: print(0)"
}

# ratio A B - A/B with two decimals.
ratio() { python3 -c "print('%.2f' % ($1/$2 if $2 else 0))"; }
