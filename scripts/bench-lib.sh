#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench-lib.sh — shared helpers of the scripts/bench-*.sh experiments (sourced, not run):
# option parsing, finding nearsock-bench, the two network namespaces joined by a veth pair that
# stand in for a remote host, CSV concatenation and gnuplot set-up. Addresses of 10.77.0.0/24
# exist only inside those namespaces, which an EXIT trap removes.
set -euo pipefail

NSKB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NSKB_BUILD=${NSKB_BUILD:-$NSKB_ROOT/build}
NSKB_OUT=${NSKB_OUT:-$NSKB_ROOT/docs/bench}
NSKB_QUICK=0
NSKB_NS_A="" NSKB_NS_B=""
NSKB_REMOTE_ADDR=10.77.0.2

nskb_usage() {
	cat <<USAGE
usage: $0 [--quick] [--build DIR] [--out DIR]
  --quick      a few points with short runs (checks the script, numbers are rough)
  --build DIR  where nearsock-bench (and libnearsock.so) are (default: build/)
  --out DIR    where CSV and plots go (default: docs/bench/)
environment: REMOTE_RATE=1gbit shapes the veth to the "remote" peer (tc tbf), default unshaped
USAGE
}

nskb_parse() {
	while [ $# -gt 0 ]; do
		case "$1" in
		--quick) NSKB_QUICK=1 ;;
		--build) NSKB_BUILD=$2; shift ;;
		--out) NSKB_OUT=$2; shift ;;
		-h|--help) nskb_usage; exit 0 ;;
		*) echo "$0: unknown option $1" >&2; nskb_usage >&2; exit 2 ;;
		esac
		shift
	done
	NSKB_BIN=$NSKB_BUILD/nearsock-bench
	if [ ! -x "$NSKB_BIN" ]; then
		echo "$0: $NSKB_BIN not found; build first (make)" >&2
		exit 1
	fi
	mkdir -p "$NSKB_OUT"
}

# nskb_meta NAME CMD... — record machine, date and the exact command next to the CSV.
nskb_meta() {
	local name=$1; shift
	{
		echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
		echo "host: $(uname -srm); $(nproc) CPUs; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
		echo "commit: $(git -C "$NSKB_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
		echo "library: $( [ -e "$NSKB_BUILD/libnearsock.so" ] && echo "$NSKB_BUILD/libnearsock.so" || echo "absent (nearsock columns n/a)")"
		echo "quick: $NSKB_QUICK"
		echo "command: $*"
	} >"$NSKB_OUT/$name.meta"
}

# nskb_netns_up — namespaces A (10.77.0.1, where clients and co-resident servers run) and
# B (10.77.0.2, the "remote" peer), joined by a veth pair. Needs root and iproute2.
nskb_netns_up() {
	if [ "$(id -u)" -ne 0 ] || ! command -v ip >/dev/null; then
		echo "$0: needs root and iproute2 (ip netns) for the remote peer" >&2
		return 77
	fi
	NSKB_NS_A=nskb-$$-a
	NSKB_NS_B=nskb-$$-b
	trap nskb_netns_down EXIT
	trap 'exit 130' INT TERM
	ip netns add "$NSKB_NS_A"
	ip netns add "$NSKB_NS_B"
	ip -n "$NSKB_NS_A" link add "nskb$$a" type veth peer name "nskb$$b" netns "$NSKB_NS_B"
	ip -n "$NSKB_NS_A" addr add 10.77.0.1/24 dev "nskb$$a"
	ip -n "$NSKB_NS_B" addr add 10.77.0.2/24 dev "nskb$$b"
	for ns in "$NSKB_NS_A" "$NSKB_NS_B"; do
		ip -n "$ns" link set lo up
	done
	ip -n "$NSKB_NS_A" link set "nskb$$a" up
	ip -n "$NSKB_NS_B" link set "nskb$$b" up
	if [ -n "${REMOTE_RATE:-}" ]; then
		ip netns exec "$NSKB_NS_A" tc qdisc add dev "nskb$$a" root tbf rate "$REMOTE_RATE" burst 256kb latency 50ms
		ip netns exec "$NSKB_NS_B" tc qdisc add dev "nskb$$b" root tbf rate "$REMOTE_RATE" burst 256kb latency 50ms
	fi
}

nskb_netns_down() {
	[ -n "$NSKB_NS_A" ] && ip netns del "$NSKB_NS_A" 2>/dev/null || true
	[ -n "$NSKB_NS_B" ] && ip netns del "$NSKB_NS_B" 2>/dev/null || true
	NSKB_NS_A="" NSKB_NS_B=""
}

# nskb_in_a CMD... — run CMD inside namespace A.
nskb_in_a() {
	ip netns exec "$NSKB_NS_A" "$@"
}

# nskb_csv_append SRC DST — append SRC to DST, keeping one header line.
nskb_csv_append() {
	if [ -s "$2" ]; then
		tail -n +2 "$1" >>"$2"
	else
		cat "$1" >"$2"
	fi
	rm -f "$1"
}

# nskb_gnuplot NAME SCRIPT — render SCRIPT (which plots to the terminal already set) as
# NAME.png and NAME.svg in the output directory.
nskb_gnuplot() {
	local name=$1 body=$2
	if ! command -v gnuplot >/dev/null; then
		echo "$0: gnuplot not installed (scripts/setup.sh installs gnuplot-nox); CSV only" >&2
		return 0
	fi
	gnuplot 2> >(grep -v "no valid points" >&2) <<GP
set datafile separator ","
set datafile columnheaders
set datafile missing NaN
set terminal pngcairo size 1200,800 noenhanced font ",10"
set output "$NSKB_OUT/$name.png"
$body
unset multiplot
set terminal svg size 1200,800 noenhanced font ",10"
set output "$NSKB_OUT/$name.svg"
$body
unset multiplot
GP
}
