#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# lib.sh — shared helpers for application tests (sourced): a private domain and scratch
# directory per test, programs started under nearsock (`ns CMD`) or plain (`plain CMD`),
# servers stopped on exit, free ports, counters from `nearsock status --json`, and one
# ROW line per test for docs/COMPATIBILITY.md. Exit codes: 0 pass, 1 fail, 77 skip.
set -euo pipefail

BUILD=${NSK_BUILD:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../build" && pwd)}
NEARSOCK="$BUILD/nearsock"
LIB="$BUILD/libnearsock.so"
[ -x "$NEARSOCK" ] && [ -e "$LIB" ] || { echo "SKIP: $BUILD has no nearsock build"; exit 77; }
export NEARSOCK_DIR=$(mktemp -d /dev/shm/nsk-test.XXXXXX)
chmod 700 "$NEARSOCK_DIR"
SCR=$(mktemp -d /tmp/nsk-app.XXXXXX)
PIDS=()

# A sanitizer build of the library (-DNSK_SANITIZE=address,undefined) preloaded into an
# uninstrumented program: the sanitizer runtimes must come first in the initial library
# list, so `ns` sets LD_PRELOAD itself instead of using `nearsock run`. Reports go to files
# in the scratch directory; any report fails the test at exit (see cleanup).
SANITIZED=0
NSRUN=("$NEARSOCK" run --)
if ldd "$LIB" 2>/dev/null | grep -q libasan; then
	SANITIZED=1
	RT=$(ldd "$LIB" | awk '/lib(asan|ubsan)\.so/ { printf "%s:", $3 }')
	NSRUN=(env "LD_PRELOAD=$RT$LIB"
		"ASAN_OPTIONS=verify_asan_link_order=0:detect_leaks=0:abort_on_error=0:halt_on_error=1:log_path=$SCR/asan"
		"UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$SCR/ubsan")
	echo "sanitized library: preloading $RT$LIB"
fi

cleanup() {
	local p rc=$?
	for p in "${PIDS[@]:-}"; do
		[ -n "$p" ] && kill "$p" 2>/dev/null || true
	done
	for p in "${PIDS[@]:-}"; do
		[ -n "$p" ] && wait "$p" 2>/dev/null || true
	done
	if compgen -G "$SCR/[au]*san.*" >/dev/null; then
		echo "FAIL: sanitizer reports:"
		head -40 "$SCR"/[au]*san.*
		rc=1
	fi
	rm -rf "$NEARSOCK_DIR" "$SCR"
	exit "$rc"
}
trap cleanup EXIT

skip() { echo "SKIP: $*"; exit 77; }
# fail MSG - print to stderr too: a failure inside $(...) must not be swallowed.
fail() { echo "FAIL: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || skip "$1 not installed (run scripts/setup.sh)"; }

# san_probe CMD... - in a sanitized build, skip the test when CMD cannot even run with only
# the sanitizer runtimes preloaded, without nearsock (Debian's curl deadlocks in setlocale
# at start-up with libasan preloaded): not a nearsock result either way.
san_probe() {
	[ "$SANITIZED" = 1 ] || return 0
	timeout 10 env "LD_PRELOAD=$RT" ASAN_OPTIONS=verify_asan_link_order=0:detect_leaks=0 "$@" >/dev/null 2>&1 ||
		skip "$1 does not run with the sanitizer runtimes preloaded even without nearsock ($* timed out or failed)"
}

# ns CMD... - run CMD under nearsock. plain CMD... - run it without.
ns() { "${NSRUN[@]}" "$@"; }
plain() { "$@"; }

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

# start_bg [ns] CMD... - start a background process (under nearsock with `ns`), remember
# it for cleanup; sets LAST_PID, the program's own pid (`nearsock run` and env exec).
start_bg() {
	if [ "$1" = ns ]; then
		shift
		set -- "${NSRUN[@]}" "$@"
	fi
	"$@" &
	LAST_PID=$!
	PIDS+=("$LAST_PID")
}

# still_alive PID NAME - fail when a server died during the test.
still_alive() { kill -0 "$1" 2>/dev/null || fail "$2 (pid $1) died during the test"; }

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

# snap - the domain's totals over every live process: "claims shm_bytes tcp_bytes offers".
# Forked children (nginx workers, socat's per-connection children) count in the table of
# the process that loaded the library, so live servers' totals include them.
snap() {
	# (a domain nothing used yet has no registry: status fails, the totals are zero)
	{ "$NEARSOCK" status --json 2>/dev/null || echo '{"processes": []}'; } | python3 -c "
import json,sys
d=json.load(sys.stdin); c=s=t=o=0
for p in d['processes']:
    c+=p['claims']; o+=p['offers_sent']
    s+=p['shm_tx_bytes']+p['shm_rx_bytes']; t+=p['tcp_tx_bytes']+p['tcp_rx_bytes']
print(c, s, t, o)"
}

# delta BEFORE AFTER - the change between two snaps: sets D_CLAIMS, D_SHM, D_TCP, D_SHARE
# and D ("claims=N shm=BYTES tcp=BYTES share=F"). Not inside $(...): it sets variables.
delta() {
	local b=($1) a=($2)
	D_CLAIMS=$((a[0] - b[0]))
	D_SHM=$((a[1] - b[1]))
	D_TCP=$((a[2] - b[2]))
	D_SHARE=$(python3 -c "s,t=$D_SHM,$D_TCP; print('%.4f' % (s/(s+t) if s+t else 0))")
	D="claims=$D_CLAIMS shm=$D_SHM tcp=$D_TCP share=$D_SHARE"
}

# ge X Y - X >= Y, numerically (floats allowed).
ge() { python3 -c "import sys; sys.exit(0 if $1 >= $2 else 1)"; }

# ratio A B - A/B with two decimals.
ratio() { python3 -c "print('%.2f' % ($1/$2 if $2 else 0))"; }

# pkg_version PKG - the installed Debian package version.
pkg_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo "?"; }

# row PROGRAM VERSION WHAT RESULT SPEEDUP COUNTERS - the test's line for docs/COMPATIBILITY.md.
row() { echo "ROW | $1 | $2 | $3 | $4 | $5 | $6 |"; }

# watch_start PID - sample PID's counters every 0.1 s while it lives (for programs that exit
# at the end of their run, taking their table with them). watch_result PID - the last sample,
# "claims shm_bytes tcp_bytes offers" (zeros if none), after waiting for the sampler.
watch_start() {
	local pid=$1 out=$SCR/watch.$1
	echo "0 0 0 0" >"$out"
	(
		while kill -0 "$pid" 2>/dev/null; do
			"$NEARSOCK" status --json 2>/dev/null | python3 -c "
import json,sys
try: d=json.load(sys.stdin)
except Exception: sys.exit(1)
for p in d['processes']:
    if p['pid']==$pid:
        print(p['claims'], p['shm_tx_bytes']+p['shm_rx_bytes'], p['tcp_tx_bytes']+p['tcp_rx_bytes'], p['offers_sent']); break
else: sys.exit(1)" >"$out.tmp" 2>/dev/null && mv "$out.tmp" "$out" 2>/dev/null
			sleep 0.1
		done
	) &
	WATCHERS+=($!)
}
WATCHERS=()
watch_result() {
	local w
	for w in "${WATCHERS[@]}"; do
		wait "$w" 2>/dev/null || true
	done
	WATCHERS=()
	cat "$SCR/watch.$1"
}

# tmo SECS ns|plain CMD... - CMD (under nearsock with ns) killed after SECS seconds (124).
tmo() {
	local s=$1 r=$2
	shift 2
	if [ "$r" = ns ]; then
		timeout "$s" "${NSRUN[@]}" "$@"
	else
		timeout "$s" "$@"
	fi
}
