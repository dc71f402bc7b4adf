# SPDX-License-Identifier: MIT
# shellcheck shell=sh disable=SC2034,SC2154 # sourced by tests/vm/guest.sh (reads NAME_TIMEOUT); cp: set by bg_client (40-migrate.sh)
# hostile_vm: a hostile VM (issue 8). While a stream A -> B runs through the region, a process
# in A that is not nearsock (ivshmem_probe scribble) writes random bytes over the region's
# channels and rings for half a second, then over its header. Both ends must end cleanly —
# an error or a detected mismatch, within the time limit, no crash, no hang — and a new
# connection afterwards must work (over TCP: the region is no region any more). Runs last:
# the region stays destroyed.
CASES="$CASES hostile_vm"
hostile_vm_TIMEOUT=150

hostile_vm_B() {
	export NEARSOCK_DOMAIN=ivshmem:auto
	timeout 140 "$NSK" run -- nsk_echo server --addr "$IP_B" --port 7501 --conns 2 >/tmp/hv.srv 2>/tmp/hv.err
	rc=$?
	cat /tmp/hv.srv
	grep -i "warn" /tmp/hv.err | head -5
	[ $rc -ne 124 ] || { echo "server hung"; return 1; }
	[ $rc -lt 128 ] || { echo "server died of a signal (rc $rc)"; return 1; }
	echo "server ended with rc $rc after serving both connections (the scribbled one and a new one)"
}

hostile_vm_A() {
	export NEARSOCK_DOMAIN=ivshmem:auto
	bg_client /tmp/hv 7501 $((1 << 30)) 20 || return 1
	retry 20 is_path "$cp" ring || { echo "the stream did not move to the region"; return 1; }
	ivshmem_probe scribble --key "$KEY" --timeout 0.5 || { echo "scribble failed"; return 1; }
	t0=$(date +%s)
	while kill -0 "$cp" 2>/dev/null && [ $(($(date +%s) - t0)) -lt 30 ]; do sleep 1; done
	if kill -0 "$cp" 2>/dev/null; then
		kill -9 "$cp"
		echo "client hung after the scribbling"
		return 1
	fi
	wait "$cp"
	rc=$?
	cat /tmp/hv.out
	grep -i "warn" /tmp/hv.err | head -5
	[ $rc -lt 128 ] || { echo "client died of a signal (rc $rc)"; return 1; }
	OUT=$(grep '"role"' /tmp/hv.out)
	[ -n "$OUT" ] || { echo "client printed nothing (rc $rc)"; return 1; }
	first="client ended in $(($(date +%s) - t0)) s: rc $rc, error '$(jget error "$OUT")', ok $(jget ok "$OUT")"
	echo "$first"
	STREAM_BYTES=$((4 << 20))
	echo_client "$IP_B" 7501 60 || { echo "a new connection after the scribbling failed"; return 1; }
	echo "$first; a new connection afterwards: 4 MiB echoed exactly, mode $(mode_name "$(jget mode "$OUT")")"
}
