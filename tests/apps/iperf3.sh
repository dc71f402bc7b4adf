#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# iperf3 server and client under nearsock: the transfer completes (both directions) and the
# server's bytes went through shared memory.
. "$(dirname "$0")/lib.sh"
need iperf3
P=$(free_port)
start_bg "$NEARSOCK" run -- iperf3 -s -p "$P"
SRV=$LAST_PID
wait_port "$P"
ns=$("$NEARSOCK" run -- iperf3 -c 127.0.0.1 -p "$P" -t 2 -J | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["end"]["sum_received"]["bits_per_second"])')
rev=$("$NEARSOCK" run -- iperf3 -c 127.0.0.1 -p "$P" -t 1 -R -J | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["end"]["sum_received"]["bits_per_second"])')
share=$(shm_share "$SRV")
claims=$(proc_counter "$SRV" claims)
echo "nearsock: $ns bit/s (reverse $rev), server claims=$claims shm-share=$share"
[ "$claims" -ge 2 ] || fail "iperf3 connections were not upgraded (claims=$claims)"
python3 -c "import sys; sys.exit(0 if $share > 0.99 else 1)" || fail "only $share of iperf3's bytes went through shared memory"
P2=$(free_port)
start_bg iperf3 -s -p "$P2"
wait_port "$P2"
tcp=$(iperf3 -c 127.0.0.1 -p "$P2" -t 2 -J | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["end"]["sum_received"]["bits_per_second"])')
echo "plain TCP: $tcp bit/s; speedup $(ratio "$ns" "$tcp")x"
row iperf3 "$(pkg_version iperf3)" "iperf3 -c -t 2 (one stream) and -R -t 1 (reverse)" pass \
	"$(ratio "$ns" "$tcp")x ($(python3 -c "print('%.1f → %.1f Gbit/s' % ($tcp/1e9, $ns/1e9))"))" "claims $claims, shm share $share"
echo PASS
