#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench-overhead.sh — experiment 2 (seed 000, Table 2 / Fig. 3): interception overhead on remote
# traffic. One flow to a server in another network namespace (over veth, never a local peer), 4 B
# to 16 KiB, with libnearsock.so preloaded in both processes vs not: throughput (TCP_STREAM) and
# transactions/s (TCP_RR). Target: at most 1% loss. Writes docs/bench/overhead.{csv,txt,md,...}.
set -euo pipefail
source "$(dirname "$0")/bench-lib.sh"
nskb_parse "$@"

if [ "$NSKB_QUICK" = 1 ]; then
	sizes=4,64,16K dur=0.3 rep=1
else
	sizes=4,16,32,64,1K,16K dur=1 rep=5
fi
nskb_netns_up || exit $?
csv=$NSKB_OUT/overhead.csv txt=$NSKB_OUT/overhead.txt md=$NSKB_OUT/overhead.md
rm -f "$csv" "$txt"
args=(--modes tcp_stream,tcp_rr --transports tcp,nearsock --sizes "$sizes" --flows 1 --local 0
	--cpus separate --remote-addr "$NSKB_REMOTE_ADDR" --remote-netns "$NSKB_NS_B"
	--duration "$dur" --repeat "$rep")
nskb_meta overhead "ip netns exec A $NSKB_BIN ${args[*]}"
nskb_in_a "$NSKB_BIN" "${args[@]}" --csv "$csv" | tee "$txt" ||
	echo "warning: some points failed (see $txt)" >&2

# Table 2 layout: native vs preloaded, and the relative change (negative = loss).
awk -F, '
NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
$7 == "ok" { v[$1, $4, $2] = ($1 == "tcp_stream" ? $(c["gbps"]) * 1000 : $(c["msgs_s"])) }
!($4 in seen) { seen[$4] = 1; s[++n] = $4 }
END {
	print "| size (B) | TCP_STREAM native Mbit/s | preloaded Mbit/s | change | TCP_RR native tr/s | preloaded tr/s | change |"
	print "|---:|---:|---:|---:|---:|---:|---:|"
	for (i = 1; i <= n; i++) {
		line = "| " s[i]
		split("tcp_stream tcp_rr", ms, " ")
		for (j = 1; j <= 2; j++) {
			a = v[ms[j], s[i], "tcp"]; b = v[ms[j], s[i], "nearsock"]
			line = line sprintf(" | %s | %s | %s", a == "" ? "-" : sprintf("%.1f", a),
				b == "" ? "n/a" : sprintf("%.1f", b),
				(a == "" || b == "" || a == 0) ? "n/a" : sprintf("%+.2f%%", 100 * (b - a) / a))
		}
		print line " |"
	}
}' "$csv" >"$md"
cat "$md"

nskb_gnuplot overhead '
set multiplot layout 1,2 title "Interception overhead on remote-only traffic (veth to another netns), preloaded vs not"
set logscale x 2
set logscale y
set grid
set key top left
set xlabel "message size, bytes"
sel(m, t) = (strcol("mode") eq m && strcol("transport") eq t)
set title "TCP_STREAM throughput"
set ylabel "Mbit/s (median, bars min-max)"
plot for [t in "tcp nearsock"] "'"$csv"'" using "size":(sel("tcp_stream", t) ? 1000*column("gbps") : NaN):(sel("tcp_stream", t) ? 1000*column("gbps_min") : NaN):(sel("tcp_stream", t) ? 1000*column("gbps_max") : NaN) \
	with yerrorlines title (t eq "tcp" ? "native" : "nearsock preloaded")
set title "TCP_RR transactions/s"
set ylabel "transactions/s (median, bars min-max)"
plot for [t in "tcp nearsock"] "'"$csv"'" using "size":(sel("tcp_rr", t) ? column("msgs_s") : NaN):(sel("tcp_rr", t) ? column("msgs_s_min") : NaN):(sel("tcp_rr", t) ? column("msgs_s_max") : NaN) \
	with yerrorlines title (t eq "tcp" ? "native" : "nearsock preloaded")
unset multiplot
'
echo "wrote $csv, $md and plots in $NSKB_OUT"
