#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# smoke.sh — CTest smoke run of nearsock-bench (label bench): a tiny sweep of every mode, then
# checks that the numbers are sane: non-zero, percentiles ordered, the raw ring ahead of kernel
# TCP on 64-byte streams. It never checks speed targets. Exit 0 pass, 1 fail, 77 skip.
#   smoke.sh BIN            tcp, unix and ring: the harness itself (nearsock must show as n/a
#                           with a reason when libnearsock.so is absent)
#   smoke.sh BIN nearsock   the nearsock column next to tcp; skipped without libnearsock.so
set -uo pipefail

BIN=${1:?usage: smoke.sh path/to/nearsock-bench [nearsock]}
WHAT=${2:-harness}
if [ ! -x "$BIN" ]; then
	echo "SKIP: $BIN not built"
	exit 77
fi
if [ "$(nproc)" -lt 2 ]; then
	echo "SKIP: needs two CPUs for --cpus separate"
	exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ "$WHAT" = nearsock ]; then
	if [ ! -e "$(dirname "$BIN")/libnearsock.so" ]; then
		echo "SKIP: no libnearsock.so next to $BIN"
		exit 77
	fi
	trs=tcp,nearsock
else
	trs=tcp,unix,ring
fi
"$BIN" --modes all --transports "$trs" --sizes 64 --duration 0.1 --repeat 1 \
	--csv "$tmp/smoke.csv" --quiet >"$tmp/out.txt" 2>"$tmp/err.txt"
rc=$?
cat "$tmp/out.txt"
if [ $rc -ne 0 ] && [ $rc -ne 1 ]; then
	echo "FAIL: nearsock-bench exited with $rc"
	cat "$tmp/err.txt"
	exit 1
fi
if [ ! -s "$tmp/smoke.csv" ]; then
	echo "FAIL: no CSV written"
	exit 1
fi
if [ "$WHAT" != nearsock ] && [ ! -e "$(dirname "$BIN")/libnearsock.so" ] &&
	! grep -q '^nearsock: n/a (' "$tmp/out.txt"; then
	echo "FAIL: missing library not reported as n/a with a reason"
	exit 1
fi

ntr=$(echo "$trs" | tr ',' '\n' | wc -l)
awk -F, -v ntr="$ntr" -v what="$WHAT" '
NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
function v(name) { return $(col[name]) + 0 }
function bad(msg) { printf "FAIL: %s %s %s: %s\n", $1, $2, $4, msg; errors++ }
{
	rows++
	key = $1 "/" $2
	if ($7 == "fail") { bad("run failed: " $8); next }
	if ($7 == "n/a") {
		if ($8 == "") bad("n/a without a reason")
		if (!($1 == "tcp_crr" && $2 == "ring") && $2 != "nearsock") bad("unexpected n/a: " $8)
		next
	}
	ok++
	msgs[key] = v("msgs_s")
	if (v("gbps") <= 0 || v("msgs_s") <= 0) bad("zero throughput")
	if (v("gbps_min") > v("gbps") || v("gbps") > v("gbps_max")) bad("median outside min-max")
	if (v("cpu_cli_pct") <= 0 || v("cpu_srv_pct") <= 0) bad("zero CPU use")
	if (v("cpu_cli_pct") > 110 || v("cpu_srv_pct") > 110) bad("CPU use above one core")
	if ($1 ~ /_rr$|_crr$/) {
		if (v("lat_p50_us") <= 0 || v("lat_mean_us") <= 0) bad("zero latency")
		if (v("lat_p50_us") > v("lat_p99_us") || v("lat_p99_us") > v("lat_p999_us"))
			bad("latency percentiles out of order")
		# transactions/s and mean latency describe the same loop: 1e6/mean ~ rate
		r = v("msgs_s") * v("lat_mean_us") / 1e6
		if (r < 0.5 || r > 1.5) bad("rate and mean latency disagree (" r ")")
	}
	if ($1 == "udp_stream" && (v("loss_pct") < 0 || v("loss_pct") > 100)) bad("loss out of range")
}
END {
	if (rows != 5 * ntr) { print "FAIL: expected " 5 * ntr " rows, got " rows; errors++ }
	if (ok < 5 * ntr - (what == "nearsock" ? 0 : 1)) { print "FAIL: only " ok " points measured"; errors++ }
	if (what != "nearsock" && msgs["tcp_stream/ring"] < msgs["tcp_stream/tcp"]) {
		print "FAIL: raw ring slower than kernel TCP on 64 B streams"; errors++ }
	if (what != "nearsock" && msgs["udp_stream/ring"] < msgs["udp_stream/tcp"]) {
		print "FAIL: raw ring slower than kernel UDP on 64 B datagrams"; errors++ }
	if (errors) exit 1
	print "PASS: " ok " points measured, numbers sane"
}' "$tmp/smoke.csv"
