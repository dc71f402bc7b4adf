#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench-mixed.sh — experiment 1 (seed 000, Fig. 2): five concurrent 1 KiB streams, k to a
# co-resident server over loopback and 5-k to a "remote" server in another network namespace over
# veth, k = 0..5; aggregate throughput with and without nearsock. Writes docs/bench/mixed.{csv,txt,
# meta,png,svg}.
set -euo pipefail
source "$(dirname "$0")/bench-lib.sh"
nskb_parse "$@"

if [ "$NSKB_QUICK" = 1 ]; then
	modes=tcp_stream dur=0.3 rep=1
else
	modes=tcp_stream,udp_stream dur=2 rep=3
fi
nskb_netns_up || exit $?
csv=$NSKB_OUT/mixed.csv txt=$NSKB_OUT/mixed.txt
rm -f "$csv" "$txt"
args=(--modes "$modes" --transports tcp,nearsock --sizes 1K --flows 5 --cpus separate
	--remote-addr "$NSKB_REMOTE_ADDR" --remote-netns "$NSKB_NS_B" --duration "$dur" --repeat "$rep")
nskb_meta mixed "ip netns exec A $NSKB_BIN ${args[*]} --local K (K = 0..5)"
for k in 0 1 2 3 4 5; do
	echo "== $k co-resident : $((5 - k)) remote" | tee -a "$txt"
	nskb_in_a "$NSKB_BIN" "${args[@]}" --local "$k" --csv "$csv.part" | tee -a "$txt" ||
		echo "warning: some points failed (see $txt)" >&2
	nskb_csv_append "$csv.part" "$csv"
done

nskb_gnuplot mixed '
set title "Mixed workload: 5 concurrent 1 KiB flows, k co-resident (loopback) and 5-k remote (veth, other netns)"
set xlabel "co-resident flows k (remote = 5 - k)"
set ylabel "aggregate throughput, Gbit/s (median, bars min-max)"
set xrange [-0.3:5.3]
set xtics 1
set key top left
set grid
sel(m, t) = (strcol("mode") eq m && strcol("transport") eq t)
plot for [m in "tcp_stream udp_stream"] for [t in "tcp nearsock"] \
	"'"$csv"'" using "local":(sel(m, t) ? column("gbps") : NaN):(sel(m, t) ? column("gbps_min") : NaN):(sel(m, t) ? column("gbps_max") : NaN) \
	with yerrorlines title sprintf("%s, %s", m, (t eq "tcp" ? "kernel (no nearsock)" : "nearsock"))
'
echo "wrote $csv and plots in $NSKB_OUT"
