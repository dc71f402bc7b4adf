#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# udp_echo.sh STYLE COUNT [SPIN_US] — UDP echo under `nearsock run`: a client sends COUNT
# datagrams of random sizes (1..65507 bytes, mostly small) to a server that waits in STYLE
# (block, poll, select, epoll) and echoes each one. Every echo must come back in order and
# byte for byte (a wake-up datagram reaching either application fails this), the source
# address must be the server's, every datagram must have gone through the inboxes
# (counters), nothing may be lost — and if anything were, the loss would have to equal the
# drops nearsock counted. SPIN_US=0 makes every wait sleep, so wake-ups are exercised.
. "$(dirname "$0")/lib.sh"

STYLE=${1:-block}
COUNT=${2:-1000000}
# Sanitizer builds run several times slower (TSan: ~10x): a fifth of the datagrams.
if ldd "$LIB" 2>/dev/null | grep -q -E 'lib(a|t)san'; then
	COUNT=$((COUNT / 5))
fi
SPIN=${3:-}
U=$B/nsk_udp
[ -x "$U" ] || skip "$U not built"
D=$(new_domain)
ENVS=(NEARSOCK_DIR="$D")
[ -n "$SPIN" ] && ENVS+=(NEARSOCK_SPIN_US="$SPIN")

bg "$T/srv.out" "$T/srv.err" env "${ENVS[@]}" "$NSK" run -- "$U" server --addr 127.0.0.1 --style "$STYLE"
SRV=$LAST_PID
wait_listen "$T/srv.out" "$SRV" || { fail "server did not start"; finish; }
echo "--- $COUNT datagrams, server style $STYLE${SPIN:+, NEARSOCK_SPIN_US=$SPIN}"
timeout -k 2 50 env "${ENVS[@]}" "$NSK" run -- "$U" client --addr 127.0.0.1 --port "$PORT" \
	--count "$COUNT" --seed $$ >"$T/cli.out" 2>"$T/cli.err"
rc=$?
wait_pid "$SRV" 10
cat "$T/cli.out" "$T/srv.out" "$T/cli.err" "$T/srv.err"
C=$(line_of "$T/cli.out" '"role": "client"')
S=$(line_of "$T/srv.out" '"role": "server"')
[ "$rc" = 0 ] || fail "client exited with $rc"
[ -n "$C" ] && [ -n "$S" ] || { fail "missing reports"; finish; }
[ "$(jget preloaded "$C")" = 1 ] && [ "$(jget preloaded "$S")" = 1 ] || fail "not preloaded"
[ "$(jget bad "$C")" = 0 ] || fail "$(jget bad "$C") echoes differ from what was sent"
[ "$(jget bad_src "$C")" = 0 ] || fail "$(jget bad_src "$C") echoes with a wrong source address"
LOST=$(jget lost "$C")
DROPS=$(($(jget tx_drops "$C") + $(jget tx_drops "$S")))
[ "$LOST" = "$DROPS" ] || fail "lost $LOST datagrams, nearsock counted $DROPS drops"
[ "$LOST" = 0 ] || fail "$LOST datagrams lost (blocking senders wait for space)"
[ "$(jget received "$S")" = $((COUNT - DROPS + 0)) ] || [ "$DROPS" != 0 ] ||
	fail "server received $(jget received "$S") of $COUNT"
# Every datagram (and the END) went through shared memory, both ways.
[ "$(jget tx_shm "$C")" -ge "$COUNT" ] || fail "client tx_shm $(jget tx_shm "$C") < $COUNT"
[ "$(jget rx_shm "$S")" -ge "$COUNT" ] || fail "server rx_shm $(jget rx_shm "$S") < $COUNT"
[ "$(jget tx_shm "$S")" -ge "$COUNT" ] || fail "server tx_shm $(jget tx_shm "$S") < $COUNT"
[ "$(jget rx_kernel "$S")" = 0 ] && [ "$(jget rx_kernel "$C")" = 0 ] ||
	fail "data datagrams came through the kernel"
[ "$(jget inbox_corrupt "$S")" = 0 ] && [ "$(jget inbox_corrupt "$C")" = 0 ] || fail "inbox corrupt"
if [ "$SPIN" = 0 ]; then
	W=$(($(jget wakeups_filtered "$S") + $(jget wakeups_filtered "$C")))
	gt "$W" 0 || fail "no wake-up datagram was needed with NEARSOCK_SPIN_US=0"
	ok "$W wake-up datagrams received and kept from the applications"
fi
[ "$FAILS" = 0 ] && ok "$COUNT datagrams echoed exactly, $(jget dgrams_s "$C") datagrams/s"
finish
