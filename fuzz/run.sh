#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# run.sh TARGET SEEDS SECONDS [OUTDIR] — run one libFuzzer target for SECONDS from the seed
# corpus SEEDS (read only: new inputs go to a scratch corpus, or OUTDIR/corpus if given).
# Prints libFuzzer's final statistics and a one-line summary; exits non-zero on a finding
# (crash, sanitizer report, timeout of one input > 10 s, leak), whose input is kept in
# OUTDIR (or printed as a path under /tmp).
set -uo pipefail
target=$1 seeds=$2 secs=$3 out=${4:-}
name=$(basename "$target")
if [ -z "$out" ]; then
	out=$(mktemp -d "/tmp/nsk-$name.XXXXXX")
	keep=0
else
	mkdir -p "$out"
	keep=1
fi
mkdir -p "$out/corpus" "$out/findings"
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
t0=$(date +%s)
"$target" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
	-artifact_prefix="$out/findings/" "$out/corpus" "$seeds" >"$out/log" 2>&1
rc=$?
t1=$(date +%s)
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/log" | tail -1)
cov=$(grep -oE 'cov: [0-9]+' "$out/log" | tail -1)
nfind=$(find "$out/findings" -type f | wc -l)
echo "$name: ${execs:-?} executions in $((t1 - t0)) s, $cov, corpus $(ls "$out/corpus" | wc -l) inputs, findings $nfind, exit $rc"
if [ "$rc" != 0 ] || [ "$nfind" != 0 ]; then
	echo "FAIL: $name found a problem; last lines of its log:"
	tail -40 "$out/log"
	ls -l "$out/findings"
	echo "log and findings kept in $out"
	exit 1
fi
[ "$keep" = 1 ] || rm -rf "$out"
exit 0
