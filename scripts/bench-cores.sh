#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench-cores.sh — experiment 3 (seed 000, Figs. 4, 8, 9): TCP and UDP stream throughput over
# message sizes with server and client on one shared core vs on separate cores, for every
# transport (kernel tcp/udp, unix, raw ring, nearsock). Writes docs/bench/cores.{csv,txt,...}.
set -euo pipefail
source "$(dirname "$0")/bench-lib.sh"
nskb_parse "$@"

if [ "$NSKB_QUICK" = 1 ]; then
	tsizes=64,64K usizes=64,16K dur=0.2 rep=1
else
	tsizes=64,256,1K,4K,16K,64K usizes=64,256,1K,4K,16K,32K dur=0.7 rep=3
fi
csv=$NSKB_OUT/cores.csv txt=$NSKB_OUT/cores.txt
rm -f "$csv" "$txt"
common=(--cpus shared,separate --duration "$dur" --repeat "$rep")
nskb_meta cores "$NSKB_BIN --modes tcp_stream --sizes $tsizes ${common[*]}; $NSKB_BIN --modes udp_stream --sizes $usizes ${common[*]}"
"$NSKB_BIN" --modes tcp_stream --sizes "$tsizes" "${common[@]}" --csv "$csv.part" | tee -a "$txt" ||
	echo "warning: some points failed (see $txt)" >&2
nskb_csv_append "$csv.part" "$csv"
"$NSKB_BIN" --modes udp_stream --sizes "$usizes" "${common[@]}" --csv "$csv.part" | tee -a "$txt" ||
	echo "warning: some points failed (see $txt)" >&2
nskb_csv_append "$csv.part" "$csv"

nskb_gnuplot cores '
set multiplot layout 2,2 title "Stream throughput over message size: shared core (cpu0) vs separate cores (cpu0, cpu1)"
set logscale x 2
set logscale y
set grid
set key top left
set xlabel "message size, bytes"
set ylabel "Gbit/s (median, bars min-max)"
sel(m, c, t) = (strcol("mode") eq m && strcol("cpus") eq c && strcol("transport") eq t)
do for [m in "tcp_stream udp_stream"] {
	do for [c in "shared separate"] {
		set title sprintf("%s, %s", m, c)
		plot for [t in "tcp unix ring nearsock"] "'"$csv"'" using "size":(sel(m, c, t) ? column("gbps") : NaN):(sel(m, c, t) ? column("gbps_min") : NaN):(sel(m, c, t) ? column("gbps_max") : NaN) \
			with yerrorlines title (t eq "tcp" ? (m eq "udp_stream" ? "kernel udp" : "kernel tcp") : t)
	}
}
unset multiplot
'
echo "wrote $csv and plots in $NSKB_OUT"
