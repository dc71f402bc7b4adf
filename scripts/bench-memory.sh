#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench-memory.sh — dynamic proportional ring memory (issue: agility; MemPipe 4.3.4): memory
# held by the rings vs throughput for many connections of which few are busy. N = 64
# connections (nsk_ringsize: checked echo streams on the busy ones, blocking reads on the
# others), k = 1, 4, 16 busy; the default dynamic sizing (16 KiB .. 512 KiB, start 64 KiB)
# against fixed 512 KiB rings (NEARSOCK_RING_SIZE, the size nearsock always used before).
# Memory = the domain's account (`nearsock status`: every channel's header page and ring
# capacities, both sides), sampled every 200 ms while the streams run: the median of the
# samples and the peak. Throughput = echoed bytes / s of the client (median of the repeats).
# Writes docs/bench/memory.{csv,txt,meta}.
set -euo pipefail
source "$(dirname "$0")/bench-lib.sh"
nskb_parse "$@"

RS=$NSKB_BUILD/nsk_ringsize
NSK=$NSKB_BUILD/nearsock
[ -x "$RS" ] && [ -x "$NSK" ] || { echo "$0: $RS or $NSK not built (make)" >&2; exit 1; }
if [ "$NSKB_QUICK" = 1 ]; then
	conns=16 busies="1 4" secs=1 rep=1
else
	conns=64 busies="1 4 16" secs=3 rep=3
fi
csv=$NSKB_OUT/memory.csv txt=$NSKB_OUT/memory.txt
nskb_meta memory "$0 $* (nsk_ringsize client --conns $conns --busy K --seconds $secs, $rep repeats)"
tmp=$(mktemp -d /tmp/nsk-bench-mem.XXXXXX)
srv=
cleanup() { [ -n "$srv" ] && kill "$srv" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

med() { sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print 0; else print a[int((NR + 1) / 2)] }'; }

# one SIZING K - prints "mb_s mem_median mem_peak" of one run
one() {
	local sizing=$1 k=$2 dom envs out port t0 samples=()
	dom=$(mktemp -d "$tmp/dom.XXXXXX")
	envs=(NEARSOCK_DIR="$dom")
	[ "$sizing" = fixed ] && envs+=(NEARSOCK_RING_SIZE=512K)
	env "${envs[@]}" "$NSK" run -- "$RS" server >"$tmp/srv.out" 2>/dev/null &
	srv=$!
	for _ in $(seq 100); do
		port=$(sed -n 's/.*"listening": \([0-9]*\).*/\1/p' "$tmp/srv.out")
		[ -n "$port" ] && break
		sleep 0.05
	done
	out=$tmp/cli.out
	env "${envs[@]}" "$NSK" run -- "$RS" client --port "$port" --conns "$conns" --busy "$k" \
		--seconds "$secs" --linger 0.2 >"$out" 2>"$tmp/cli.err" &
	local cli=$!
	until grep -q '"phase": "busy"' "$out" 2>/dev/null; do sleep 0.05; done
	sleep 0.5 # the streams' rings have grown, the idle ones shrunk
	t0=$(date +%s%N)
	while [ $((($(date +%s%N) - t0) / 1000000)) -lt $((secs * 1000 - 800)) ]; do
		samples+=("$(NEARSOCK_DIR=$dom "$NSK" status --json | sed -n 's/.*"mem_used": \([0-9]*\).*/\1/p')")
		sleep 0.2
	done
	wait "$cli" || echo "warning: client failed ($sizing, k=$k): $(head -2 "$tmp/cli.err")" >&2
	kill "$srv" 2>/dev/null; wait "$srv" 2>/dev/null || true
	srv=
	local mbs
	mbs=$(sed -n 's/.*"phase": "linger".*"mb_s": \([0-9.]*\).*/\1/p' "$out")
	echo "$mbs $(printf '%s\n' "${samples[@]}" | med) $(printf '%s\n' "${samples[@]}" | sort -n | tail -1)"
}

echo "sizing,conns,busy,mb_s,mem_median_bytes,mem_peak_bytes,mb_s_min,mb_s_max" >"$csv"
{
	printf "%-8s %5s %4s %10s %14s %14s\n" sizing conns busy "MB/s" "mem median" "mem peak"
	for k in $busies; do
		# the two sizings alternate run by run: this VM's throughput drifts (vCPU placement)
		declare -A all=()
		for i in $(seq "$rep"); do
			for sizing in fixed dynamic; do all[$sizing.$i]=$(one "$sizing" "$k"); done
		done
		for sizing in fixed dynamic; do
			runs=()
			for i in $(seq "$rep"); do runs+=("${all[$sizing.$i]}"); done
			m=$(printf '%s\n' "${runs[@]}" | awk '{print $1}' | med)
			lo=$(printf '%s\n' "${runs[@]}" | awk '{print $1}' | sort -n | head -1)
			hi=$(printf '%s\n' "${runs[@]}" | awk '{print $1}' | sort -n | tail -1)
			mm=$(printf '%s\n' "${runs[@]}" | awk '{print $2}' | med)
			mp=$(printf '%s\n' "${runs[@]}" | awk '{print $3}' | sort -n | tail -1)
			echo "$sizing,$conns,$k,$m,$mm,$mp,$lo,$hi" >>"$csv"
			printf "%-8s %5s %4s %10s %11.1f MiB %11.1f MiB\n" "$sizing" "$conns" "$k" "$m" \
				"$(awk -v b="$mm" 'BEGIN { print b / 1048576 }')" "$(awk -v b="$mp" 'BEGIN { print b / 1048576 }')"
		done
	done
} | tee "$txt"
echo "wrote $csv and $txt"
