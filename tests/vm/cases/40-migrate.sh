# SPDX-License-Identifier: MIT
# shellcheck shell=sh disable=SC2034 # sourced by tests/vm/guest.sh, which reads NAME_TIMEOUT
# migrate: VM A migrating out and back, under load (issue 8). A paced stream A -> B (nsk_echo,
# echoed and checked byte for byte) runs through the region; A evacuates (`nearsock evacuate
# --all`: both sides retire the channel and drop it), the host hot-unplugs A's region device
# (device_del of ivs1): the stream goes on over virtio-net untouched while A's library finds
# its membership gone; the host plugs the device back (device_add on a fresh backend over the
# same file): A's library joins the region again as a new member; `nearsock attach --all`: a
# fresh channel, the stream back on shared memory, virtio-net quiet. Both paths must have
# carried data and every byte must come back exactly.
CASES="$CASES migrate"
migrate_TIMEOUT=170
MIG_BYTES=$((96 << 20))

# region_devs - ivshmem devices present (A has two: ivs0 for the probe cases, ivs1 the region)
region_devs() { grep -l 0x1110 /sys/bus/pci/devices/*/device 2>/dev/null | wc -l; }
no_region() { [ "$(region_devs)" -lt 2 ]; }
have_region() { [ "$(region_devs)" -ge 2 ]; }
# mig_path PID - the sending path (ring|tcp) of PID's connection, from nearsock status
mig_path() {
	"$NSK" status --json | tr -d '\n' | sed 's/}, *{/}\n{/g' | grep "\"pid\": $1," |
		grep -o '"tx_path": "[a-z]*"' | sed 's/.*: "\(.*\)"/\1/' | head -1
}
is_path() { [ "$(mig_path "$1")" = "$2" ]; }
# nic_rate - bytes eth0 sent and received in one second
nic_bytes() { cat /sys/class/net/eth0/statistics/tx_bytes /sys/class/net/eth0/statistics/rx_bytes | awk '{ s += $1 } END { print s }'; }
nic_rate() {
	_b0=$(nic_bytes)
	sleep 1
	echo $(($(nic_bytes) - _b0))
}

# bg_client OUT PORT BYTES RATE - a preloaded, paced nsk_echo client to B in the background,
# started again until B's server listens (nsk_echo exits 2 before); sets cp. OUT.out and
# OUT.err get its output.
bg_client() {
	_n=0
	while :; do
		"$NSK" run -- nsk_echo client --addr "$IP_B" --port "$2" --bytes "$3" \
			--seed "$KEY" --rate-mbs "$4" >"$1.out" 2>"$1.err" &
		cp=$!
		sleep 2
		kill -0 "$cp" 2>/dev/null && return 0
		wait "$cp"
		_rc=$?
		[ $_rc -eq 2 ] || { cat "$1.out" "$1.err"; echo "client failed (rc $_rc)"; return 1; }
		_n=$((_n + 1))
		[ $_n -lt 30 ] || { echo "no server at $IP_B:$2"; return 1; }
	done
}

migrate_B() {
	export NEARSOCK_DOMAIN=ivshmem:auto
	STREAM_BYTES=$MIG_BYTES
	echo_server "$IP_B" 7401 160
}

migrate_A() {
	export NEARSOCK_DOMAIN=ivshmem:auto
	have_region || { echo "A has no region device"; return 1; }
	bg_client /tmp/mig 7401 "$MIG_BYTES" 3 || return 1
	retry 20 is_path "$cp" ring || { echo "1: the stream did not move to the region (path '$(mig_path "$cp")')"; return 1; }
	echo "1. co-resident: path ring, virtio-net $(nic_rate) B/s"
	"$NSK" evacuate --all --wait 20 || { echo "2: evacuate did not complete"; return 1; }
	is_path "$cp" tcp || { echo "2: still on the rings after the evacuation"; return 1; }
	echo "2. evacuated: path tcp, virtio-net $(nic_rate) B/s"
	t0=$(uptime_s)
	host_request migrate_del 60 no_region || { echo "3: region device still there 60 s after device_del"; return 1; }
	t1=$(uptime_s)
	sleep 1
	r=$(nic_rate)
	echo "3. region device unplugged (after $(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }') s): path $(mig_path "$cp"), virtio-net $r B/s"
	kill -0 "$cp" 2>/dev/null || { cat /tmp/mig.out /tmp/mig.err; echo "3: the client ended while the device was away"; return 1; }
	[ "$r" -gt 1000000 ] || { echo "3: the stream stalled while the device was away ($r B/s)"; return 1; }
	host_request migrate_add 60 have_region || { echo "4: region device not back 60 s after device_add"; return 1; }
	echo "4. region device back"
	"$NSK" attach --all --wait 30 || { echo "5: attach did not complete (path $(mig_path "$cp"))"; cat /tmp/mig.err; return 1; }
	sleep 1
	r=$(nic_rate)
	echo "5. attached: path $(mig_path "$cp"), virtio-net $r B/s"
	is_path "$cp" ring || { echo "5: not back on the region's rings"; return 1; }
	[ "$r" -lt 1000000 ] || { echo "5: virtio-net still carries $r B/s"; return 1; }
	wait "$cp"
	rc=$?
	cat /tmp/mig.out
	grep -i "warn" /tmp/mig.err | head -5
	OUT=$(grep '"role"' /tmp/mig.out)
	[ $rc -eq 0 ] && [ "$(jget ok "$OUT")" = 1 ] || { echo "6: the stream was not echoed exactly (rc $rc): $OUT"; return 1; }
	[ "$(jget mode "$OUT")" = 2 ] || { echo "6: the connection did not end on shared memory: $OUT"; return 1; }
	tx=$(jget tx_shm "$OUT")
	ttx=$(jget tx_tcp "$OUT")
	[ "$tx" -gt $((8 << 20)) ] && [ "$ttx" -gt $((8 << 20)) ] || { echo "6: both paths should have carried data: $OUT"; return 1; }
	echo "migrated out (device unplugged) and back under load: $((MIG_BYTES >> 20)) MiB echoed exactly, $tx B sent through the region, $ttx B over virtio-net"
}
