#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# netns.sh — two network namespaces on one host are two hosts, even with one NEARSOCK_DIR:
#   1. veth: a preloaded server in namespace A, a preloaded client in namespace B connecting
#      over a veth pair (10.78.x.0/24): the connection works over TCP, 0 shm bytes, on both
#      sides (the 4-tuples match exactly, so only the namespace tells them apart);
#   2. 127.0.0.1:P in A and in B are different servers: a client in B talks to B's server,
#      never to A's — (a) B's server not preloaded, while A's (preloaded) server holds an
#      accepted connection with the very 4-tuple the client in B will use; (b) both servers
#      preloaded: the client in B upgrades with B's server. Checked by the servers' output.
# Namespaces and veths are created here and deleted on exit. Needs `ip netns` (root).
. "$(dirname "$0")/lib.sh"

MANY=$B/nsk_many
[ -x "$MANY" ] || skip "$MANY not built"
netns_pair nsk-it 78

D=$(new_domain)
BYTES=$((16 << 20))

# ---- 1. over the veth
echo "--- veth: client in $Bn -> $NET.1 (server in $A), one domain $D"
bg "$T/v.srv.out" "$T/v.srv.err" ip netns exec "$A" env NEARSOCK_DIR="$D" NEARSOCK_OFFER_TIMEOUT_MS=100 \
	"$NSK" run -- "$ECHO" server --addr 0.0.0.0 --port 0 --conns 1
SRV=$LAST_PID
wait_listen "$T/v.srv.out" "$SRV" || { fail "veth server did not start"; finish; }
VPORT=$PORT
timeout -k 2 30 ip netns exec "$Bn" env NEARSOCK_DIR="$D" "$NSK" run -- "$ECHO" client \
	--addr "$NET.1" --port "$VPORT" --bytes "$BYTES" --linger-ms 300 >"$T/v.cli.out" 2>"$T/v.cli.err"
rc=$?
wait_pid "$SRV" 10
cat "$T/v.cli.out" "$T/v.srv.out" "$T/v.cli.err" "$T/v.srv.err"
C=$(line_of "$T/v.cli.out" '"role": "client"')
S=$(line_of "$T/v.srv.out" '"role": "server"')
[ "$rc" = 0 ] && [ "$(jget ok "$C")" = 1 ] || fail "veth: transfer failed (rc $rc)"
[ "$(jget bytes "$S")" = "$BYTES" ] || fail "veth: server served $(jget bytes "$S") bytes"
for L in "$C" "$S"; do
	[ "$(jget preloaded "$L")" = 1 ] || fail "veth: a side has no statistics: $L"
	[ "$(jget mode "$L")" = 3 ] || fail "veth: mode $(jget mode "$L"), expected 3 (plain): $L"
	[ "$(jget tx_shm "$L")" = 0 ] && [ "$(jget rx_shm "$L")" = 0 ] || fail "veth: shm bytes: $L"
done

# ---- 2. 127.0.0.1:P in both namespaces
# Server A (preloaded) on 127.0.0.1:P in namespace A, two connections then exit.
bg "$T/a.out" "$T/a.err" ip netns exec "$A" env NEARSOCK_DIR="$D" NEARSOCK_OFFER_TIMEOUT_MS=10000 \
	"$NSK" run -- "$ECHO" server --addr 127.0.0.1 --port 0 --conns 2
SA=$LAST_PID
wait_listen "$T/a.out" "$SA" || { fail "server A did not start"; finish; }
P=$PORT
Q=$((P % 20000 + 30000)) # the colliding client port
[ "$Q" = "$P" ] && Q=$((Q + 1))

# (a) Server B without nearsock on the same 127.0.0.1:P.
echo "--- 127.0.0.1:$P: A preloaded, B plain; colliding 4-tuple 127.0.0.1:$Q -> 127.0.0.1:$P in A"
bg "$T/b1.out" "$T/b1.err" ip netns exec "$Bn" "$ECHO" server --addr 127.0.0.1 --port "$P" --conns 1
SB=$LAST_PID
wait_listen "$T/b1.out" "$SB" || { fail "server B did not start"; finish; }
# In A, an unaccelerated client from 127.0.0.1:Q holds a connection to server A: A's accepted
# socket waits (10 s window) for an offer matching 127.0.0.1:Q -> 127.0.0.1:P.
bg "$T/ah.out" "$T/ah.err" ip netns exec "$A" "$MANY" --port "$P" --bind-port "$Q" --hold-ms 1500 --bytes 1000 \
	--rounds 2
HOLD=$LAST_PID
sleep 0.3
# In B, the preloaded client uses the same 4-tuple towards B's server.
timeout -k 2 20 ip netns exec "$Bn" env NEARSOCK_DIR="$D" "$NSK" run -- "$MANY" --port "$P" \
	--bind-port "$Q" --bytes 100000 --rounds 3 >"$T/c1.out" 2>"$T/c1.err"
rc=$?
wait_pid "$HOLD" 10
wait_pid "$SB" 10
cat "$T/c1.out" "$T/c1.err" "$T/ah.out" "$T/ah.err" "$T/b1.out" "$T/b1.err"
C=$(line_of "$T/c1.out" '"conns"')
[ "$rc" = 0 ] && [ "$(jget ok "$C")" = 1 ] || fail "(a) client in B failed: $(jget first_error "$C")"
[ "$(jget mode_after_connect "$C")" = 3 ] ||
	fail "(a) client in B: mode $(jget mode_after_connect "$C") right after connect, expected 3 (no local listener in its namespace)"
[ "$(jget mode_plain "$C")" = 1 ] || fail "(a) client in B did not end plain"
[ "$(jget tx_shm "$C")" = 0 ] && [ "$(jget rx_shm "$C")" = 0 ] || fail "(a) client in B used shm"
SBL=$(line_of "$T/b1.out" '"role": "server"')
[ "$(jget bytes "$SBL")" = 300000 ] || fail "(a) server B served '$(jget bytes "$SBL")' bytes, expected 300000"
H=$(line_of "$T/ah.out" '"conns"')
[ "$(jget ok "$H")" = 1 ] || fail "(a) the holding client in A failed: $(jget first_error "$H")"
AL=$(line_of "$T/a.out" '"role": "server"')
[ "$(jget bytes "$AL")" = 2000 ] || fail "(a) server A served '$(jget bytes "$AL")' bytes, expected only the 2000 of its own client"
[ "$(jget mode "$AL")" != 2 ] && [ "$(jget rx_shm "$AL")" = 0 ] ||
	fail "(a) server A claimed a channel for a connection whose client has no nearsock: $AL"

# (b) Server B preloaded on the same 127.0.0.1:P: the client in B upgrades with B.
echo "--- 127.0.0.1:$P: A and B both preloaded"
bg "$T/b2.out" "$T/b2.err" ip netns exec "$Bn" env NEARSOCK_DIR="$D" "$NSK" run -- "$ECHO" server \
	--addr 127.0.0.1 --port "$P" --conns 1
SB=$LAST_PID
wait_listen "$T/b2.out" "$SB" || { fail "server B (preloaded) did not start"; finish; }
timeout -k 2 20 ip netns exec "$Bn" env NEARSOCK_DIR="$D" "$NSK" run -- "$ECHO" client \
	--addr 127.0.0.1 --port "$P" --bytes "$BYTES" >"$T/c2.out" 2>"$T/c2.err"
rc=$?
wait_pid "$SB" 10
cat "$T/c2.out" "$T/c2.err" "$T/b2.out" "$T/b2.err"
C=$(line_of "$T/c2.out" '"role": "client"')
S=$(line_of "$T/b2.out" '"role": "server"')
[ "$rc" = 0 ] && [ "$(jget ok "$C")" = 1 ] || fail "(b) transfer failed"
[ "$(jget bytes "$S")" = "$BYTES" ] || fail "(b) server B served '$(jget bytes "$S")' bytes"
[ "$(jget mode "$C")" = 2 ] && [ "$(jget mode "$S")" = 2 ] || fail "(b) not upgraded with B's server"
gt "$(jget rx_shm "$S")" 0 && gt "$(jget tx_shm "$S")" 0 || fail "(b) server B moved no bytes through shm"
# Server A is still waiting for its second connection: it must not have seen this one.
[ "$(grep -c '"role": "server"' "$T/a.out")" = 1 ] || fail "(b) server A served the client from B"
alive "$SA" || fail "server A died"
kill "$SA" 2>/dev/null
finish
