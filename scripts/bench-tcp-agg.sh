#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench-tcp-agg.sh — packet aggregation of small TCP writes (issue 6): tcp_stream and tcp_rr,
# 64 B, nearsock only, on separate CPUs and on one shared CPU, with aggregation off
# (NEARSOCK_BATCH_K=1), the adaptive default and a fixed k = 8 (t = 20 µs). The settings
# alternate run by run (ROUNDS rounds of one 1-second run each), so that the machine's
# background load falls on all of them alike; the table gives each setting's median with
# min–max. Output: OUT/tcp-agg.txt and OUT/tcp-agg.csv.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${NSKB_BUILD:-$ROOT/build}
OUT=${NSKB_OUT:-$ROOT/docs/bench}
ROUNDS=${ROUNDS:-5}
case "${1:-}" in
-h|--help) echo "usage: $0 [--quick]   (environment: ROUNDS=n NSKB_BUILD NSKB_OUT)"; exit 0 ;;
--quick) ROUNDS=2 ;;
"") ;;
*) echo "$0: unknown option $1" >&2; exit 2 ;;
esac
NSK=$BUILD/nearsock
[ -x "$NSK" ] || { echo "$0: build first ($NSK)" >&2; exit 1; }
mkdir -p "$OUT"
CSV=$OUT/tcp-agg.csv
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
declare -A ENVS=([off]="NEARSOCK_BATCH_K=1" [adaptive]="" [k8]="NEARSOCK_BATCH_K=8 NEARSOCK_BATCH_T_US=20")
SETTINGS="off adaptive k8"
for r in $(seq 1 "$ROUNDS"); do
	for st in $SETTINGS; do
		# shellcheck disable=SC2086 # ENVS holds words
		env ${ENVS[$st]} "$NSK" bench --modes tcp_stream,tcp_rr --transports nearsock --sizes 64 \
			--cpus separate,shared --repeat 1 --duration 1 --quiet --csv "$TMP/$st.$r.csv" >/dev/null
	done
	echo "round $r of $ROUNDS done" >&2
done
# One CSV: setting,round + the bench's columns.
hdr=$(head -1 "$TMP/off.1.csv")
echo "setting,round,$hdr" >"$CSV"
for st in $SETTINGS; do
	for r in $(seq 1 "$ROUNDS"); do
		tail -n +2 "$TMP/$st.$r.csv" | sed "s/^/$st,$r,/" >>"$CSV"
	done
done
python3 - "$CSV" "$ROUNDS" <<'PY' | tee "$OUT/tcp-agg.txt"
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print(f"tcp aggregation, 64 B, nearsock, {sys.argv[2]} alternating rounds: median (min-max)")
print("msgs_s: messages (stream) or transactions (rr) per second; vcsw_srv_s: the receiving")
print("side's voluntary context switches per second (its sleeps: one per wake-up it needed)")
points = sorted({(r["mode"], r["cpus"]) for r in rows})
for key in ("msgs_s", "lat_p50_us", "vcsw_srv_s", "cpu_srv_pct"):
    print(f"\n{key}")
    print(f"{'point':22} " + " ".join(f"{s:>24}" for s in ("off", "adaptive", "k8")))
    for m, c in points:
        cells = []
        for s in ("off", "adaptive", "k8"):
            v = [float(r[key]) for r in rows if r["setting"] == s and r["mode"] == m and r["cpus"] == c and r[key]]
            cells.append(f"{statistics.median(v):.4g} ({min(v):.3g}-{max(v):.3g})" if v else "-")
        print(f"{m + ' ' + c:22} " + " ".join(f"{x:>24}" for x in cells))
PY
