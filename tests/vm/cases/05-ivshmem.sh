# SPDX-License-Identifier: MIT
# shellcheck shell=sh disable=SC2034 # sourced by tests/vm/guest.sh, which reads NAME_TIMEOUT
# The ivshmem region, the plumbing the domain backend will use. ivshmem: A finds the device
# (vendor 0x1af4, device 0x1110), enables it, maps resource2 (BAR2) and writes a pattern, a
# counter and a magic; B maps its own device and checks A's pattern and the pattern the host
# wrote into the backing file before boot, then acknowledges; the host checks everything in
# the file afterwards. hotplug: the host removes A's device through the QEMU monitor
# (device_del) while a process holds BAR2 mapped (it reports what its reads return), A sees
# it gone from /sys/bus/pci/devices, the host adds it back
# (device_add; QEMU 7.2 needs a fresh memory backend object on the same file, see
# scripts/vmtest.sh) and A finds it again with the region's contents intact (the pattern the
# host wrote before boot).
CASES="$CASES ivshmem hotplug"
hotplug_TIMEOUT=150

ivshmem_A() {
	ivshmem_probe find || return 1
	ivshmem_probe write --key "$KEY" --timeout 60
}
ivshmem_B() {
	ivshmem_probe find || return 1
	ivshmem_probe read --key "$KEY" --timeout 60
}
ivshmem_C() {
	# the "remote host" has no region
	if ivshmem_probe find; then
		echo "C has an ivshmem device"
		return 1
	fi
	echo "no ivshmem device, as configured"
}

no_device() { ! ivshmem_probe find >/dev/null 2>&1; }
have_device() { ivshmem_probe find >/dev/null 2>&1; }
hotplug_A() {
	ivshmem_probe find || return 1
	# a process keeps BAR2 mapped across the unplug: what does it see?
	ivshmem_probe hold --key "$KEY" --timeout 6 >/tmp/hold.out 2>&1 &
	hp=$!
	sleep 1
	t0=$(uptime_s)
	host_request hotplug_del 60 no_device || { echo "device still there 60 s after device_del"; return 1; }
	t1=$(uptime_s)
	echo "gone from /sys/bus/pci/devices after $(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }') s"
	wait $hp
	echo "mapping held across the unplug (exit $?): $(cat /tmp/hold.out)"
	host_request hotplug_add 60 have_device || { echo "device not back 60 s after device_add"; return 1; }
	t2=$(uptime_s)
	ivshmem_probe find || return 1
	ivshmem_probe hostcheck --key "$KEY" || { echo "the region's contents did not survive"; return 1; }
	echo "removed in $(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }') s, back in $(awk -v a="$t1" -v b="$t2" 'BEGIN { print b - a }') s, contents intact"
}
