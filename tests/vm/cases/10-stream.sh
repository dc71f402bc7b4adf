# SPDX-License-Identifier: MIT
# shellcheck shell=sh disable=SC2034 # sourced by tests/vm/guest.sh, which reads NAME_TIMEOUT
# Checked byte streams under `nearsock run` with unmodified programs (nsk_echo: the client
# sends STREAM_BYTES, or LOOP_BYTES, of a seeded pseudo-random sequence, the server echoes
# it, the client checks every byte). loopback: both ends in guest C (LD_PRELOAD and /dev/shm inside a
# guest: the counters must show shared memory). stream_ab / stream_ac: A to B and A to C
# over virtio-net with NEARSOCK_DOMAIN=ivshmem:auto in A and B (the 32 MiB nearsock region):
# stream_ab must move to shared memory (>= 95 % of the bytes through the rings), stream_ac,
# C having no region, must stay TCP.
STREAM_BYTES=$((64 << 20))
CASES="$CASES loopback loopback_4k stream_ab stream_ac"
stream_ab_TIMEOUT=150
stream_ac_TIMEOUT=240

# mode_name N - enum nearsock_mode (include/nearsock/nearsock.h) by name.
mode_name() {
	case $1 in
	0) echo tcp ;; 1) echo offered ;; 2) echo shm ;; 3) echo "tcp-for-good" ;; 4) echo broken ;; *) echo "$1" ;;
	esac
}

# echo_server ADDR PORT SECS - serve one connection under nearsock; prints the server's line.
echo_server() {
	out=$(timeout "$3" "$NSK" run -- nsk_echo server --addr "$1" --port "$2" --conns 1)
	rc=$?
	echo "$out"
	[ $rc -eq 0 ] || { echo "server exited with $rc"; return 1; }
	[ "$(jget bytes "$out")" = "$STREAM_BYTES" ] || { echo "served $(jget bytes "$out") bytes"; return 1; }
	echo "served $STREAM_BYTES bytes, mode $(mode_name "$(jget mode "$out")"), received through shm $(jget rx_shm "$out") B, tcp $(jget rx_tcp "$out") B"
}

# echo_client ADDR PORT SECS - retry until the server listens, stream, check; prints a summary.
# Sets OUT to the client's JSON line.
echo_client() {
	_end=$(($(date +%s) + $3))
	while :; do
		left=$((_end - $(date +%s)))
		[ $left -gt 0 ] || left=1
		OUT=$(timeout $left "$NSK" run -- nsk_echo client --addr "$1" \
			--port "$2" --bytes "$STREAM_BYTES" --seed "$KEY" 2>/tmp/echo.err)
		rc=$?
		[ $rc -ne 2 ] && break # 2: could not connect (yet)
		[ "$(date +%s)" -lt "$_end" ] || { echo "no server at $1:$2"; return 1; }
		sleep 1
	done
	echo "$OUT"
	cat /tmp/echo.err
	[ "$(jget ok "$OUT")" = 1 ] || { echo "transfer not exact: rc $rc, mismatch_at $(jget mismatch_at "$OUT") error '$(jget error "$OUT")'"; return 1; }
	secs=$(jget seconds "$OUT")
	echo "$(($(jget echoed "$OUT") >> 20)) MiB each way checked in $secs s ($(awk -v b="$(jget echoed "$OUT")" -v s="$secs" 'BEGIN { printf "%.1f", b / s / 1048576 }') MiB/s each way), mode $(mode_name "$(jget mode "$OUT")"), sent through shm $(jget tx_shm "$OUT") B, tcp $(jget tx_tcp "$OUT") B"
}

# The loopback stream is longer (LOOP_BYTES): before the switch up to a few socket buffers'
# worth may go through TCP when the server is slow to claim in a busy guest; every byte must
# be counted once, and at least 95% must go through the rings.
LOOP_BYTES=$((256 << 20))
loopback_TIMEOUT=120
loopback_C() {
	STREAM_BYTES=$LOOP_BYTES
	echo_server 127.0.0.1 7001 100 >/tmp/lo.srv &
	sp=$!
	echo_client 127.0.0.1 7001 80 || return 1
	wait $sp || { cat /tmp/lo.srv; return 1; }
	cat /tmp/lo.srv
	[ "$(jget mode "$OUT")" = 2 ] || { echo "client not in shared-memory mode (mode $(jget mode "$OUT"))"; return 1; }
	tx=$(jget tx_shm "$OUT")
	ttx=$(jget tx_tcp "$OUT")
	[ $((tx + ttx)) = "$STREAM_BYTES" ] || { echo "tx_shm + tx_tcp = $((tx + ttx)), not $STREAM_BYTES"; return 1; }
	[ $((tx * 100 / STREAM_BYTES)) -ge 95 ] || { echo "only $tx of $STREAM_BYTES bytes sent through shared memory"; return 1; }
	echo "$(jget seconds "$OUT") s for $((STREAM_BYTES >> 20)) MiB each way in one guest, $tx bytes sent through shared memory, $ttx through TCP before the switch (mode shm)"
}

# loopback_4k: the same with 4 KiB rings, so that senders find the ring full all the time
# and go through the peer-liveness checks (sock_diag inside the guest).
loopback_4k_TIMEOUT=120
loopback_4k_C() {
	export NEARSOCK_RING_SIZE=4K # (each case runs in its own subshell)
	LOOP_BYTES=$((32 << 20))
	loopback_C
}

stream_ab_B() {
	export NEARSOCK_DOMAIN=ivshmem:auto
	echo_server "$IP_B" 7101 140
}
stream_ab_A() {
	export NEARSOCK_DOMAIN=ivshmem:auto
	echo_client "$IP_B" 7101 130 || return 1
	[ "$(jget mode "$OUT")" = 2 ] || { echo "A -> B not on shared memory (mode $(mode_name "$(jget mode "$OUT")"))"; return 1; }
	tx=$(jget tx_shm "$OUT")
	[ $((tx * 100 / STREAM_BYTES)) -ge 95 ] || { echo "only $tx of $STREAM_BYTES bytes through the region"; return 1; }
	echo "$(jget seconds "$OUT") s for $((STREAM_BYTES >> 20)) MiB each way A <-> B through the ivshmem region ($(awk -v b="$STREAM_BYTES" -v s="$(jget seconds "$OUT")" 'BEGIN { printf "%.1f", b / s / 1048576 }') MiB/s each way), $tx B sent through shared memory, $(jget tx_tcp "$OUT") B through TCP before the switch"
}
stream_ac_C() { echo_server "$IP_C" 7102 230; }
stream_ac_A() {
	export NEARSOCK_DOMAIN=ivshmem:auto # C has no region: TCP for good
	echo_client "$IP_C" 7102 220 || return 1
	[ "$(jget mode "$OUT")" = 3 ] && [ "$(jget tx_shm "$OUT")" = 0 ] ||
		{ echo "A -> C (no region) not plain TCP: mode $(mode_name "$(jget mode "$OUT")")"; return 1; }
	echo "$(jget seconds "$OUT") s for $((STREAM_BYTES >> 20)) MiB each way A <-> C over virtio-net TCP (C has no region: mode tcp-for-good)"
}
