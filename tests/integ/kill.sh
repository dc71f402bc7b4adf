#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# kill.sh server|client — the peer's death is noticed through the retained TCP connection.
#   kill.sh server: the server is SIGKILLed mid-transfer; the client (survivor) must get
#                   EOF, ECONNRESET or EPIPE within 1 s in every direction it was using;
#   kill.sh client: the reverse, the client dies and the server survives.
# Both sides preloaded with one domain; nsk_kill measures from right before kill(2) to right
# after the survivor's call returned, for: a continuous echo stream (blocking, poll, epoll),
# a sender blocked on a full ring, a receiver blocked on an empty ring (blocking, epoll).
# Also: a peer that writes a last response and close()s normally: the blocked receiver gets
# all of it, then EOF (not a reset), within 50 ms.
# The survivor's counters prove the connection was on shared memory when the peer died.
. "$(dirname "$0")/lib.sh"

KILL=$B/nsk_kill
[ -x "$KILL" ] || skip "$KILL not built"
VICTIM=${1:?usage: kill.sh server|client (the side that is killed)}
LIMIT_MS=1000
CLOSE_LIMIT_MS=50

# one SCENARIO STYLE [BEHAVE] - run one peer/survivor pair; leaves the survivor line in R.
one()
{
	local sc=$1 st=$2 behave=${3:-}
	[ -n "$behave" ] || case $sc in
		stream) behave=echo ;;
		send) behave=sink ;;
		*) behave=quiet ;;
	esac
	local D name=$sc-$st rc t0
	t0=$(now_ms)
	D=$(new_domain)
	R=
	local popts=(--behave "$behave") sopts=(--scenario "$sc" --style "$st" --limit-ms "$LIMIT_MS")
	if [ "$VICTIM" = server ]; then
		bg "$T/$name.peer.out" "$T/$name.peer.err" env NEARSOCK_DIR="$D" "$NSK" run -- \
			"$KILL" peer --listen 0 "${popts[@]}" --close-ms 50
		PEER=$LAST_PID
		wait_listen "$T/$name.peer.out" "$PEER" || { fail "$name: peer did not listen"; return; }
		timeout -k 2 40 env NEARSOCK_DIR="$D" "$NSK" run -- "$KILL" survivor --connect "$PORT" \
			"${sopts[@]}" >"$T/$name.out" 2>"$T/$name.err"
		rc=$?
	else
		bg "$T/$name.out" "$T/$name.err" env NEARSOCK_DIR="$D" "$NSK" run -- \
			"$KILL" survivor --listen 0 "${sopts[@]}"
		local SURV=$LAST_PID
		wait_listen "$T/$name.out" "$SURV" || { fail "$name: survivor did not listen"; return; }
		bg "$T/$name.peer.out" "$T/$name.peer.err" env NEARSOCK_DIR="$D" "$NSK" run -- \
			"$KILL" peer --connect "$PORT" "${popts[@]}" --close-ms 50
		PEER=$LAST_PID
		wait_pid "$SURV" 40
		rc=$?
	fi
	wait_pid "$PEER" 10
	PEER_RC=$?
	R=$(line_of "$T/$name.out" '"role": "survivor"')
	echo "$name ($(($(now_ms) - t0)) ms): $R"
	[ -s "$T/$name.err" ] && head -5 "$T/$name.err"
	[ -n "$R" ] || { fail "$name: no survivor report (rc $rc)"; cat "$T/$name.out"; return; }
	[ "$(jget handshake_ok "$R")" = 1 ] || fail "$name: handshake data corrupted"
	[ "$(jget mismatch "$R")" = 0 ] || fail "$name: stream data corrupted before the kill"
	[ "$(jget mode "$R")" = 2 ] || fail "$name: survivor mode $(jget mode "$R") before the kill, expected 2 (shm)"
	gt "$(jget tx_shm "$R")" 0 && gt "$(jget rx_shm "$R")" 0 || fail "$name: handshake did not use shm both ways"
	[ "$(jget hang "$R")" = 0 ] || fail "$name: survivor HUNG: a call did not return 5 s after the peer died"
}

for sc_st in stream:blocking stream:poll stream:epoll send:blocking send:epoll recv:blocking recv:epoll; do
	sc=${sc_st%%:*}
	st=${sc_st#*:}
	one "$sc" "$st"
	[ -n "$R" ] || continue
	[ "$(jget killed "$R")" = 1 ] || {
		fail "$sc-$st: the peer was never killed (exit $PEER_RC); peer output:"
		cat "$T/$sc-$st.peer.out" "$T/$sc-$st.peer.err"
		continue
	}
	[ "$PEER_RC" = 137 ] || fail "$sc-$st: the peer exited with $PEER_RC, not by SIGKILL"
	[ "$sc" = stream ] && ! gt "$(jget received_after_handshake "$R")" 0 &&
		fail "$sc-$st: nothing moved before the kill"
	for dir in tx rx; do
		res=$(jget ${dir}_result "$R")
		ms=$(jget ${dir}_ms "$R")
		[ "$res" = - ] && continue
		case $res in
		EOF | ECONNRESET | EPIPE) ;;
		*) fail "$sc-$st: $dir ended with '$res', expected EOF, ECONNRESET or EPIPE" ;;
		esac
		gt "$LIMIT_MS" "$ms" && ! gt 0 "$ms" || fail "$sc-$st: $dir noticed the death after $ms ms (limit $LIMIT_MS)"
	done
	[ "$(jget ok "$R")" = 1 ] || fail "$sc-$st: survivor reports failure"
done

# A normal close, request/response style: the survivor blocks in recv; the peer, having read
# everything, writes a 64 KiB response and closes. The survivor must read all of it, then EOF
# (not ECONNRESET: no data was left unread by the peer), promptly. Repeated: timing-dependent.
CLOSE_RUNS=${NSK_CLOSE_RUNS:-10}
for st in blocking epoll; do
	bad=0
	worst=0
	for i in $(seq "$CLOSE_RUNS"); do
		one close "$st" close >"$T/close.log" 2>&1
		n0=$FAILS
		if [ -z "$R" ]; then
			cat "$T/close.log"
			continue
		fi
		P=$(line_of "$T/close-$st.peer.out" '"closed_at_ns"')
		[ -n "$P" ] || { fail "close-$st #$i: peer did not report its close"; continue; }
		[ "$(jget rx_result "$R")" = EOF ] ||
			fail "close-$st #$i: recv ended with $(jget rx_result "$R") after the peer's normal close(), expected EOF"
		[ "$(jget received_after_handshake "$R")" = 65536 ] ||
			fail "close-$st #$i: received $(jget received_after_handshake "$R") of the 65536 response bytes"
		lat=$(awk -v a="$(jget rx_end_ns "$R")" -v b="$(jget closed_at_ns "$P")" 'BEGIN { printf "%.3f", (a - b) / 1e6 }')
		gt "$lat" "$worst" && worst=$lat
		gt "$CLOSE_LIMIT_MS" "$lat" ||
			fail "close-$st #$i: EOF reached the blocked reader $lat ms after the peer's close (limit $CLOSE_LIMIT_MS ms)"
		if [ "$FAILS" != "$n0" ]; then
			bad=$((bad + 1))
			cat "$T/close.log"
		fi
	done
	echo "close-$st: $bad of $CLOSE_RUNS runs wrong; slowest EOF $worst ms after close()"
done
finish
