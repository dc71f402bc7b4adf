#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench-matrix.sh — experiment 4 (survey Figs. 3/4): the TCP_STREAM, UDP_STREAM, TCP_RR, UDP_RR
# matrix at 64 B, 1 KiB and 16 KiB on separate cores, every transport side by side.
# Writes docs/bench/matrix.{csv,txt,meta,png,svg}.
set -euo pipefail
source "$(dirname "$0")/bench-lib.sh"
nskb_parse "$@"

if [ "$NSKB_QUICK" = 1 ]; then
	sizes=64,16K dur=0.2 rep=1
else
	sizes=64,1K,16K dur=1 rep=3
fi
csv=$NSKB_OUT/matrix.csv txt=$NSKB_OUT/matrix.txt
args=(--modes tcp_stream,udp_stream,tcp_rr,udp_rr --sizes "$sizes" --cpus separate
	--duration "$dur" --repeat "$rep")
nskb_meta matrix "$NSKB_BIN ${args[*]}"
"$NSKB_BIN" "${args[@]}" --csv "$csv" | tee "$txt" ||
	echo "warning: some points failed (see $txt)" >&2

dat=$(mktemp -d)
trap 'rm -rf "$dat"' EXIT
# Pivot to one whitespace table per mode: index size tcp unix ring nearsock (msgs/s; NaN where a
# transport has no number, which the bar plot skips).
for m in tcp_stream udp_stream tcp_rr udp_rr; do
	awk -F, -v m="$m" '
	NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
	$1 == m {
		v[$4, $2] = ($7 == "ok" ? $(c["msgs_s"]) : "NaN")
		if (!($4 in seen)) { seen[$4] = 1; s[++n] = $4 }
	}
	END {
		split("tcp unix ring nearsock", t, " ")
		for (i = 1; i <= n; i++) {
			printf "%d %s", i - 1, s[i]
			for (j = 1; j <= 4; j++) printf " %s", ((s[i], t[j]) in v ? v[s[i], t[j]] : "NaN")
			printf "\n"
		}
	}' "$csv" >"$dat/matrix-$m.dat"
done

nskb_gnuplot matrix '
set datafile separator whitespace
unset datafile columnheaders
set multiplot layout 2,2 title "netperf-style matrix, separate cores: messages (or transactions) per second, median"
set style fill solid 0.8 border -1
set boxwidth 0.2
set logscale y
set grid y
set key top right
set xlabel "message size, bytes"
set ylabel "msgs/s (stream) or transactions/s (rr)"
set xrange [-0.5:*]
names = "tcp unix ring nearsock"
do for [m in "tcp_stream udp_stream tcp_rr udp_rr"] {
	set title m
	f = sprintf("'"$dat"'/matrix-%s.dat", m)
	plot f using 1:(1/0):xtic(2) notitle, \
		for [j=1:4] f using ($1 - 0.3 + 0.2 * (j - 1)):(column(j + 2)) with boxes \
		title (j == 1 ? (m[1:3] eq "udp" ? "kernel udp" : "kernel tcp") : word(names, j))
}
unset multiplot
'
echo "wrote $csv and plots in $NSKB_OUT"
