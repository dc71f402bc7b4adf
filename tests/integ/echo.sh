#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# echo.sh STYLE — an echo pair under `nearsock run`, both sides in STYLE (blocking, epoll,
# poll or select): NSK_ECHO_BYTES (default 512 MiB) of pseudo-random data each way, every
# echoed byte checked by nsk_echo. Passes only if both sides report shared-memory mode, more
# than 99% of the bytes of each direction went through the rings, the two sides' path
# counters agree with each other and with the byte count, and the transfer did not stall:
# nsk_echo's poll/epoll/select waits time out after 10 s, so a lost wake-up shows as a
# transfer of more than NSK_ECHO_MAX_MS (8 s) — normally it takes about one second.
# (512 MiB rather than the required 256: before the switch up to a socket buffer's worth,
# ~3 MiB, may go through TCP when the server is slow to claim on a busy machine.)
# echo.sh STYLE RUNS repeats the whole pair RUNS times (timing-dependent failures).
. "$(dirname "$0")/lib.sh"

STYLE=${1:?usage: echo.sh blocking|epoll|poll|select [RUNS]}
RUNS=${2:-1}
BYTES=${NSK_ECHO_BYTES:-$((512 << 20))}
MAX_MS=${NSK_ECHO_MAX_MS:-8000}

# one_pair SEED - one echo transfer with its checks.
one_pair()
{
	local SEED=$1 D
	D=$(new_domain)
	echo "style $STYLE, $BYTES bytes each way, seed $SEED"
	bg "$T/srv.out" "$T/srv.err" env NEARSOCK_DIR="$D" "$NSK" run -- "$ECHO" server --port 0 \
		--style "$STYLE" --conns 1
	local SRV=$LAST_PID
	wait_listen "$T/srv.out" "$SRV" || { fail "server did not start"; return; }
	local t0 t1 rc src
	t0=$(now_ms)
	timeout -k 2 50 env NEARSOCK_DIR="$D" "$NSK" run -- "$ECHO" client --port "$PORT" \
		--bytes "$BYTES" --style "$STYLE" --seed "$SEED" >"$T/cli.out" 2>"$T/cli.err"
	rc=$?
	t1=$(now_ms)
	wait_pid "$SRV" 10
	src=$?
	cat "$T/cli.out" "$T/srv.out"
	[ -s "$T/cli.err" ] && { echo "client stderr:"; head -20 "$T/cli.err"; }
	[ -s "$T/srv.err" ] && { echo "server stderr:"; head -20 "$T/srv.err"; }

	local C S side L name tx rx ptx prx secs
	C=$(line_of "$T/cli.out" '"role": "client"')
	S=$(line_of "$T/srv.out" '"role": "server"')
	[ "$rc" -eq 0 ] || fail "client exited with $rc (124: timed out)"
	[ "$src" -eq 0 ] || fail "server exited with $src"
	[ -n "$C" ] || { fail "no client report"; return; }
	[ -n "$S" ] || { fail "no server report"; return; }

	[ "$(jget ok "$C")" = 1 ] || fail "client: transfer not exact (mismatch_at $(jget mismatch_at "$C"), error '$(jget error "$C")')"
	[ "$(jget echoed "$C")" = "$BYTES" ] || fail "client: $(jget echoed "$C") of $BYTES bytes echoed"
	[ "$(jget bytes "$S")" = "$BYTES" ] || fail "server: served $(jget bytes "$S") of $BYTES bytes"
	for side in C S; do
		L=${!side}
		name=$([ $side = C ] && echo client || echo server)
		[ "$(jget preloaded "$L")" = 1 ] || fail "$name: no nearsock statistics (not preloaded?)"
		[ "$(jget mode "$L")" = 2 ] || fail "$name: mode $(jget mode "$L"), expected 2 (shm)"
		tx=$(jget tx_shm "$L")
		rx=$(jget rx_shm "$L")
		ptx=$(pct "$tx" "$BYTES")
		prx=$(pct "$rx" "$BYTES")
		echo "$name: $ptx% of sent and $prx% of received bytes through shared memory"
		gt "$ptx" 99 || fail "$name: only $ptx% of the sent bytes went through shared memory"
		gt "$prx" 99 || fail "$name: only $prx% of the received bytes came through shared memory"
	done
	# Both sides account every byte once, and agree on where each direction switched.
	[ $(($(jget tx_shm "$C") + $(jget tx_tcp "$C"))) = "$BYTES" ] || fail "client tx_shm + tx_tcp != bytes"
	[ $(($(jget rx_shm "$C") + $(jget rx_tcp "$C"))) = "$BYTES" ] || fail "client rx_shm + rx_tcp != bytes"
	[ "$(jget tx_shm "$C")" = "$(jget rx_shm "$S")" ] || fail "client tx_shm != server rx_shm"
	[ "$(jget tx_tcp "$C")" = "$(jget rx_tcp "$S")" ] || fail "client tx_tcp != server rx_tcp"
	[ "$(jget tx_shm "$S")" = "$(jget rx_shm "$C")" ] || fail "server tx_shm != client rx_shm"
	[ "$(jget tx_tcp "$S")" = "$(jget rx_tcp "$C")" ] || fail "server tx_tcp != client rx_tcp"
	echo "transfer: $((t1 - t0)) ms wall, $(jget gbit_s "$C") Gbit/s echoed"
	secs=$(jget seconds "$C")
	gt "$secs" "$(awk -v m="$MAX_MS" 'BEGIN { print m / 1000 }')" &&
		fail "the transfer took $secs s (limit $MAX_MS ms): a stall, probably a lost wake-up rescued by nsk_echo's 10 s wait timeout"
}

seed=${NSK_SEED:-$(($(date +%s) % 100000 + 1))}
for run in $(seq "$RUNS"); do
	one_pair $((seed + run - 1))
done
finish
