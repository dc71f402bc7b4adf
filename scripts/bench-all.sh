#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench-all.sh — the whole benchmark: the default nearsock-bench sweep (both CPU placements) and
# the four experiments of seed 000, CSV and plots into docs/bench/. About 15-20 minutes on the
# 2-core machine; --quick gives a rough version in about two minutes.
set -euo pipefail
source "$(dirname "$0")/bench-lib.sh"
nskb_parse "$@"

dir=$(dirname "$0")
opts=(--build "$NSKB_BUILD" --out "$NSKB_OUT")
[ "$NSKB_QUICK" = 1 ] && opts+=(--quick)
start=$(date +%s)
if [ "$NSKB_QUICK" = 1 ]; then
	sweep=(--quick)
else
	sweep=(--cpus separate,shared --duration 0.4 --repeat 3)
fi
nskb_meta sweep "$NSKB_BIN ${sweep[*]}"
"$NSKB_BIN" "${sweep[@]}" --csv "$NSKB_OUT/sweep.csv" | tee "$NSKB_OUT/sweep.txt" || true
for e in matrix cores overhead mixed; do
	echo "=== $e ($(($(date +%s) - start)) s so far)"
	bash "$dir/bench-$e.sh" "${opts[@]}" || echo "warning: bench-$e.sh failed" >&2
done
echo "all done in $(($(date +%s) - start)) s; results in $NSKB_OUT"
