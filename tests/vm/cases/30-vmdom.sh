# SPDX-License-Identifier: MIT
# shellcheck shell=sh disable=SC2034 # sourced by tests/vm/guest.sh, which reads NAME_TIMEOUT
# The ivshmem domain backend between kernels (issue 8). rtt_ab: 64-byte ping-pong A -> B
# (nsk_pingpong) through the region under nearsock, then over plain virtio-net TCP; both
# round trips printed, and the CPU B's server burns while blocked on an idle region
# connection (adaptive polling). host_guest: a host process (the region file as its domain,
# in a network namespace on the guests' segment through a tap port) streams 64 MiB each way
# to a server in A (A's QEMU is the segment's hub: the case keeps it running); both ends must be
# on shared memory.
CASES="$CASES rtt_ab host_guest"
rtt_ab_TIMEOUT=120
host_guest_TIMEOUT=150

pp_server() {
	timeout 100 "$NSK" run -- nsk_pingpong server --addr "$IP_B" --port "$1" >"/tmp/pp.$1" 2>&1
	cat "/tmp/pp.$1"
}
rtt_ab_B() {
	export NEARSOCK_DOMAIN=ivshmem:auto
	pp_server 7201 || return 1
	(export NEARSOCK_DISABLE=1; pp_server 7202) || return 1
	s=$(grep '"role"' /tmp/pp.7201)
	echo "idle region connection: server used $(jget idle_cpu_pct "$s") % of a CPU over $(jget idle_wall_ms "$s") ms (mode $(jget mode "$s"))"
}
pp_client() {
	retry 60 sh -c "$NSK run -- nsk_pingpong client --addr $IP_B --port $1 --seconds 2 --idle-ms 2000 >/tmp/ppc.$1 2>&1"
	grep '"role"' "/tmp/ppc.$1" || { cat "/tmp/ppc.$1"; return 1; }
}
rtt_ab_A() {
	export NEARSOCK_DOMAIN=ivshmem:auto
	r=$(pp_client 7201) || { echo "$r"; return 1; }
	echo "$r"
	t=$(export NEARSOCK_DISABLE=1; pp_client 7202) || { echo "$t"; return 1; }
	echo "$t"
	[ "$(jget mode "$r")" = 2 ] || { echo "ping-pong not on shared memory"; return 1; }
	echo "64 B round trip A <-> B: nearsock/ivshmem median $(jget rtt_median_us "$r") us (p99 $(jget rtt_p99_us "$r")), virtio-net TCP median $(jget rtt_median_us "$t") us (p99 $(jget rtt_p99_us "$t"))"
}

host_guest_A() {
	export NEARSOCK_DOMAIN=ivshmem:auto
	STREAM_BYTES=$((64 << 20))
	echo_server "$IP_A" 7301 140 >/tmp/hg.srv 2>&1 &
	sp=$!
	sleep 1
	echo "VMTEST-WAIT $ROLE hoststream" >/dev/console
	wait $sp
	rc=$?
	cat /tmp/hg.srv
	[ $rc = 0 ] || return 1
	s=$(grep '"role"' /tmp/hg.srv)
	[ "$(jget mode "$s")" = 2 ] || { echo "host -> A not on shared memory (mode $(jget mode "$s"))"; return 1; }
	echo "host <-> guest A: 64 MiB each way, $(jget rx_shm "$s") B received through the region, $(jget rx_tcp "$s") B through TCP"
}
