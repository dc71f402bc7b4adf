#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# migrate.sh — migration, simulated honestly: a "VM" is a process group in network namespace
# A talking to a peer in namespace B of the same host over a veth pair; both share one
# nearsock domain (the co-residency the papers detect), so their connection goes through
# shared memory even though it was made to B's veth address. The server binds that exact
# address (listeners bound to one address are found across namespaces; wildcard ones are not,
# see netns.sh).
#   1. co-resident: a paced echo transfer (both directions loaded) runs on the rings: the
#      connection's path is the ring and the veth carries (almost) nothing;
#   2. moving away = `nearsock evacuate PID` of the VM's process: within the wait the
#      connection is on TCP, and the veth now carries the stream (its byte counter grows by
#      megabytes per second) while the transfer goes on;
#   3. moving back = `nearsock attach PID`: the connection returns to the rings, the veth
#      falls quiet again;
#   4. every byte echoed exactly (nsk_echo checks them), both paths carried data.
. "$(dirname "$0")/lib.sh"

netns_pair nsk-mig 79
D=$(new_domain)
BYTES=$((200 << 20))

veth_bytes() { inA cat /sys/class/net/veth-a/statistics/tx_bytes; }
# path_of PID - the sending path (ring|tcp) of PID's connection end, from nearsock status
path_of()
{
	"$NSK" status --dir "$D" --json | tr -d '\n' | sed 's/}, *{/}\n{/g' | grep "\"pid\": $1," |
		grep -o '"tx_path": "[a-z]*"' | head -1 | sed 's/.*: "\(.*\)"/\1/'
}
# veth_rate - bytes the veth sent in one second
veth_rate()
{
	local b0 b1
	b0=$(veth_bytes)
	sleep 1
	b1=$(veth_bytes)
	echo $((b1 - b0))
}

bg "$T/srv.out" "$T/srv.err" ip netns exec "$Bn" env NEARSOCK_DIR="$D" "$NSK" run -- "$ECHO" server \
	--addr "$NET.2" --port 0 --conns 1
SRV=$LAST_PID
wait_listen "$T/srv.out" "$SRV" || { fail "server did not start"; finish; }
bg "$T/cli.out" "$T/cli.err" ip netns exec "$A" env NEARSOCK_DIR="$D" "$NSK" run -- "$ECHO" client \
	--addr "$NET.2" --port "$PORT" --bytes "$BYTES" --rate-mbs 25
CLI=$LAST_PID
sleep 1

# 1. co-resident
p=$(path_of "$CLI")
r=$(veth_rate)
echo "co-resident: client path $p, veth $r B/s"
[ "$p" = ring ] || fail "1: the connection across namespaces is not on the rings (path '$p')"
[ "$r" -lt $((2 << 20)) ] || fail "1: the veth carried $r B/s while on the rings"

# 2. moving away
if "$NSK" evacuate "$CLI" --dir "$D" --wait 5 >"$T/ev.out" 2>&1; then
	echo "evacuate: $(cat "$T/ev.out")"
else
	fail "2: evacuate did not complete: $(cat "$T/ev.out")"
fi
p=$(path_of "$CLI")
ps=$(path_of "$SRV")
r=$(veth_rate)
echo "moved away: client path $p, server path $ps, veth $r B/s"
[ "$p" = tcp ] && [ "$ps" = tcp ] || fail "2: still on the rings after the evacuation (client '$p', server '$ps')"
[ "$r" -gt $((8 << 20)) ] || fail "2: the veth carried only $r B/s after the evacuation"

# 3. moving back
if "$NSK" attach "$CLI" --dir "$D" --wait 5 >"$T/at.out" 2>&1; then
	echo "attach: $(cat "$T/at.out")"
else
	fail "3: attach did not complete: $(cat "$T/at.out")"
fi
sleep 0.2
p=$(path_of "$CLI")
r=$(veth_rate)
echo "moved back: client path $p, veth $r B/s"
[ "$p" = ring ] || fail "3: not back on the rings (path '$p')"
[ "$r" -lt $((2 << 20)) ] || fail "3: the veth still carried $r B/s after the attach"

# 4. the stream
wait_pid "$CLI" 60 || fail "client did not finish"
wait_pid "$SRV" 10 || fail "server did not finish"
C=$(line_of "$T/cli.out" '"role": "client"')
echo "client: $C"
[ -s "$T/cli.err" ] && { echo "client stderr:"; head -5 "$T/cli.err"; }
[ "$(jget ok "$C")" = 1 ] || fail "4: the stream was not echoed exactly: $C"
[ "$(jget tx_shm "$C")" -gt 0 ] && [ "$(jget tx_tcp "$C")" -gt $((8 << 20)) ] ||
	fail "4: both paths should have carried data (tx_shm $(jget tx_shm "$C"), tx_tcp $(jget tx_tcp "$C"))"
[ "$FAILS" -eq 0 ] && ok "migration out and back under load: $BYTES bytes echoed exactly"
finish
