#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# node (http module), plain and under nearsock: 2000 POSTs of 1 B..64 KiB over a keep-alive
# agent (4 sockets), every answer (the body's sha256) checked, then a 16 MiB GET checked by
# sha256; the same result line as without nearsock. Both ends preloaded: shared memory used.
. "$(dirname "$0")/lib.sh"
need node
PROG=$(dirname "$0")/progs/node_http.js
N=${NODE_REQUESTS:-2000}
BYTES=16777216

P=$(free_port)
start_bg ns node "$PROG" server "$P" "$BYTES"
SRV=$LAST_PID
P2=$(free_port)
start_bg node "$PROG" server "$P2" "$BYTES"
wait_port "$P"
wait_port "$P2"
t0=$(date +%s%N)
tcp=$(node "$PROG" client "$P2" "$N" "$BYTES") || fail "node client (plain) failed: $tcp"
t1=$(date +%s%N)
s0=$(snap)
got=$(ns node "$PROG" client "$P" "$N" "$BYTES") || fail "node client under nearsock failed: $got"
t2=$(date +%s%N)
s1=$(snap)
delta "$s0" "$s1"
[ "${tcp%% *}" = ok ] || fail "plain node client: $tcp (test broken?)"
[ "$got" = "$tcp" ] || fail "node under nearsock printed [$got], plain [$tcp]"
tt=$(((t1 - t0) / 1000000)) tn=$(((t2 - t1) / 1000000))
echo "node http: $got; plain ${tt} ms, nearsock ${tn} ms; $D"
[ "$D_CLAIMS" -ge 4 ] || fail "node: the agent's 4 kept-alive sockets were not all upgraded (claims=$D_CLAIMS)"
ge "$D_SHARE" 0.9 || fail "node: only $D_SHARE of the bytes went through shared memory"
still_alive "$SRV" "node server"
row node "$(node --version) ($(pkg_version nodejs))" "http server + client: $N POSTs 1 B–64 KiB (keep-alive, 4 sockets) + 16 MiB GET, sha256 checked" pass \
	"$(ratio "$tt" "$tn")x (wall time, incl. start-up)" "claims $D_CLAIMS, shm share $D_SHARE"
echo PASS
