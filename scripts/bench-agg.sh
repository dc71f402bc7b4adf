#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench-agg.sh — packet aggregation on one UDP channel (issue 6): fixed container sizes k (with
# a long timeout, so containers close by size as the model assumes), the adaptive default, and
# kernel UDP, at one Poisson rate; 64-byte datagrams, sender and receiver on separate CPUs.
# Prints a table (delivered rate, delay mean/p99, wake-ups) and, for each k, the E_k/M/1
# model's mean delay for the measured rate and hand-over time next to the measured mean.
# Output: OUT/agg.txt and OUT/agg.csv.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${NSKB_BUILD:-$ROOT/build}
OUT=${NSKB_OUT:-$ROOT/docs/bench}
RATE=${RATE:-150000}
COUNT=${COUNT:-300000}
KS=${KS:-"1 2 4 8 16 32"}
case "${1:-}" in
-h|--help)
	echo "usage: $0 [--quick]   (environment: RATE=pps COUNT=n KS='1 2 4' NSKB_BUILD NSKB_OUT)"
	exit 0 ;;
--quick) COUNT=30000; KS="1 8" ;;
"") ;;
*) echo "$0: unknown option $1" >&2; exit 2 ;;
esac
AB=$BUILD/nearsock-aggbench
NSK=$BUILD/nearsock
[ -x "$AB" ] && [ -x "$NSK" ] || { echo "$0: build first ($AB)" >&2; exit 1; }
mkdir -p "$OUT"
export NEARSOCK_DIR=$(mktemp -d /dev/shm/nsk-agg.XXXXXX)
chmod 700 "$NEARSOCK_DIR"
trap 'rm -rf "$NEARSOCK_DIR"' EXIT
j() { sed -n 's/.*"'"$1"'": *\([^,}]*\).*/\1/p' <<<"$2" | tr -d '"'; }
CSV=$OUT/agg.csv
echo "setting,rate,recv_s,loss_pct,delay_mean_us,delay_p50_us,delay_p99_us,k,t_us,lambda,svc_us,wakeups,model_delay_us,model_spin_us,model_wakeups" >"$CSV"
row() { # NAME JSON
	local L=$2
	printf "%-12s %9s %7s %9s %9s %9s %5s %8s %9s %8s %9s %10s %10s %10s\n" "$1" "$(j recv_s "$L")" \
		"$(j loss_pct "$L")" "$(j delay_mean_us "$L")" "$(j delay_p50_us "$L")" "$(j delay_p99_us "$L")" \
		"$(j k "$L")" "$(j t_us "$L")" "$(j lambda "$L")" "$(j svc_us "$L")" "$(j wakeups "$L")" \
		"$(j model_delay_us "$L")" "$(j model_spin_us "$L")" "$(j model_wakeups "$L")"
	echo "$1,$(j rate "$L"),$(j recv_s "$L"),$(j loss_pct "$L"),$(j delay_mean_us "$L"),$(j delay_p50_us "$L"),$(j delay_p99_us "$L"),$(j k "$L"),$(j t_us "$L"),$(j lambda "$L"),$(j svc_us "$L"),$(j wakeups "$L"),$(j model_delay_us "$L"),$(j model_spin_us "$L"),$(j model_wakeups "$L")" >>"$CSV"
}
{
	echo "# nearsock-aggbench: Poisson $RATE datagrams/s of 64 B, $COUNT datagrams per run; $(nproc) CPUs; load: $(cut -d' ' -f1-3 /proc/loadavg)"
	printf "%-12s %9s %7s %9s %9s %9s %5s %8s %9s %8s %9s %10s %10s %10s\n" setting recv/s loss% mean_us p50_us p99_us k t_us lambda svc_us wakeups model_us spin_us spin_wakes
	row kernel "$(NEARSOCK_DISABLE=1 "$AB" --rate "$RATE" --count "$COUNT")"
	for k in $KS; do
		row "k=$k" "$(NEARSOCK_BATCH_K=$k NEARSOCK_BATCH_T_US=100000 "$NSK" run -- "$AB" --rate "$RATE" --count "$COUNT")"
	done
	for k in 8; do
		row "k=$k,t=20" "$(NEARSOCK_BATCH_K=$k NEARSOCK_BATCH_T_US=20 "$NSK" run -- "$AB" --rate "$RATE" --count "$COUNT")"
	done
	row adaptive "$("$NSK" run -- "$AB" --rate "$RATE" --count "$COUNT")"
} | tee "$OUT/agg.txt"
