#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# iperf3 -u (UDP at full rate, 1400-byte datagrams) under nearsock: the test completes,
# loss stays below 1 %, and the server's bytes went through shared memory (its UDP socket is
# connect()ed to the client: wake-ups come from the client's own socket). Then plain UDP
# for comparison.
. "$(dirname "$0")/lib.sh"
need iperf3
P=$(free_port)
start_bg "$NEARSOCK" run -- iperf3 -s -p "$P"
SRV=$LAST_PID
wait_port "$P"
res() { python3 -c 'import json,sys; d=json.load(sys.stdin); e=d.get("error");
s=d["end"]["sum"]; print(s["bits_per_second"], s["lost_percent"]) if not e else print("error", e)'; }
read -r ns nsloss < <("$NEARSOCK" run -- iperf3 -u -b 0 -l 1400 -c 127.0.0.1 -p "$P" -t 2 -J | res)
[ "$ns" != error ] || fail "iperf3 -u under nearsock: $nsloss"
share=$(shm_share "$SRV")
echo "nearsock: $ns bit/s, loss $nsloss %, server shm-share=$share"
python3 -c "import sys; sys.exit(0 if $nsloss < 1 else 1)" || fail "loss $nsloss % under nearsock"
python3 -c "import sys; sys.exit(0 if $share > 0.99 else 1)" || fail "only $share of iperf3's bytes went through shared memory"
P2=$(free_port)
start_bg iperf3 -s -p "$P2"
wait_port "$P2"
read -r k kloss < <(iperf3 -u -b 0 -l 1400 -c 127.0.0.1 -p "$P2" -t 2 -J | res)
echo "plain UDP: $k bit/s, loss $kloss %; speedup $(ratio "$ns" "$k")x"
echo PASS
