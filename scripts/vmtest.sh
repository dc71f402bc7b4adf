#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# vmtest.sh — the VM test harness: boots three QEMU guests under software emulation (TCG) and
# runs tests/vm/cases/*.sh inside them with the project's build. A and B share an
# ivshmem-plain region (one host file in /dev/shm); C has none and plays a remote host. All
# three are on one virtio-net segment: A's QEMU is a hub (-netdev hubport) with two socket
# links on 127.0.0.1 that B and C connect to. Every guest has a QEMU monitor on a unix socket
# in the run directory (the hotplug case uses A's: device_del/device_add of the ivshmem device).
# The guests report on their serial consoles (VMTEST-* lines, see tests/vm/guest.sh); this
# script answers their requests, collects the results and checks the region from the host.
#
# Exit 0 all passed, 1 something failed, 77 skipped (reason printed: no build, no QEMU).
# Every QEMU process, the region file and the run directory are removed on success, failure,
# the deadline (NSK_VM_DEADLINE seconds of VM time, default 300) and SIGINT/SIGTERM. The
# serial logs of the last run are kept in $NSK_BUILD/vm-logs/.
# Environment: NSK_BUILD (build dir, default build), NSK_VM_CACHE (kernel cache, default
# $NSK_BUILD/vm-cache), NSK_VM_CASES (comma-separated case names: run only these),
# NSK_VM_NO_DIAG=1 (guests without the inet_diag/tcp_diag modules, see below).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${NSK_BUILD:-$ROOT/build}" 2>/dev/null && pwd) || { echo "SKIP: no build directory"; exit 77; }
CACHE=${NSK_VM_CACHE:-$BUILD/vm-cache}
DEADLINE=${NSK_VM_DEADLINE:-300}
CASES_ONLY=${NSK_VM_CASES:-}
T_START=$(date +%s)

skip() { echo "SKIP: $*"; exit 77; }
log() { echo "vmtest: $*"; }

for f in nearsock libnearsock.so nsk_echo nsk_pingpong ivshmem_probe; do
	[ -e "$BUILD/$f" ] || skip "$BUILD/$f missing (build first: cmake --build build)"
done

# --- packages and kernel -------------------------------------------------------------------
rc=0
bash "$ROOT/scripts/setup-vm.sh" "$CACHE" || rc=$?
[ $rc -eq 0 ] || { [ $rc -eq 77 ] && skip "scripts/setup-vm.sh could not provide QEMU or the kernel"; exit 1; }
command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 not installed"
if [ ! -x /bin/busybox ] || ldd /bin/busybox >/dev/null 2>&1; then
	skip "/bin/busybox is not the static one (busybox-static)"
fi
[ -w /dev/shm ] || skip "/dev/shm not writable"

KPKG=$CACHE/kpkg
VMLINUZ=$(find "$KPKG/boot" -name 'vmlinuz-*' | head -1)
KVER=${VMLINUZ##*/vmlinuz-}
MODDIR=$KPKG/lib/modules/$KVER
# The kernel uncompressed once (extract-vmlinux style: the xz stream inside the bzImage,
# booted through its PVH entry point): half the boot time under TCG.
KERNEL=$CACHE/vmlinux-$KVER
if [ ! -s "$KERNEL" ]; then
	while read -r off; do
		tail -c +$((off + 1)) "$VMLINUZ" | xz -dcq >"$KERNEL.tmp" 2>/dev/null || true
		if [ "$(head -c 4 "$KERNEL.tmp" | od -An -c | tr -d ' ')" = '177ELF' ]; then
			mv "$KERNEL.tmp" "$KERNEL"
			break
		fi
	done < <(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$VMLINUZ" | cut -d: -f1)
	rm -f "$KERNEL.tmp"
	[ -s "$KERNEL" ] || { log "could not uncompress $VMLINUZ, booting it compressed (slower)"; KERNEL=$VMLINUZ; }
fi

# --- run directory, cleanup, deadline --------------------------------------------------------
RUN=$(mktemp -d /tmp/nsk-vm.XXXXXX)
SHM=/dev/shm/nsk-vm-$$-$RANDOM
# The nearsock region (issue 8: NEARSOCK_DOMAIN=ivshmem:auto in A and B, ivshmem:FILE on the
# host): a second ivshmem device of 32 MiB, formatted before boot. The probe cases use SHM.
RSHM=/dev/shm/nsk-vm-rgn-$$-$RANDOM
HNS=nsk-vm-$$
TAP=nskt$$
QPIDS=()
WD=""
cleanup() {
	local rc=$? p
	trap - EXIT INT TERM
	[ -n "$WD" ] && kill "$WD" 2>/dev/null
	for p in "${QPIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		local alive=0
		for p in "${QPIDS[@]}"; do
			kill -0 "$p" 2>/dev/null && alive=1
		done
		[ $alive = 0 ] && break
		sleep 0.3
	done
	for p in "${QPIDS[@]}"; do
		kill -KILL "$p" 2>/dev/null || true
	done
	if compgen -G "$RUN/*.log" >/dev/null; then
		rm -rf "$BUILD/vm-logs"
		mkdir -p "$BUILD/vm-logs"
		cp "$RUN"/*.log "$RUN"/*.qemu.out "$BUILD/vm-logs/" 2>/dev/null || true
	fi
	rm -f "$SHM" "$RSHM"
	ip netns del "$HNS" 2>/dev/null
	rm -rf "$RUN"
	exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted (SIGINT): cleaning up"; exit 130' INT
trap 'log "terminated (SIGTERM or the deadline): cleaning up"; exit 143' TERM
# The watchdog: a backstop for a hang outside the main loop (which checks the deadline
# itself), and the cleanup after a SIGKILL of this script (no trap runs then): once the
# script is gone it kills the QEMU processes listed in the run directory and removes it.
MAIN=$$
(
	trap 'exit 0' TERM
	end=$((SECONDS + DEADLINE + 60))
	while kill -0 "$MAIN" 2>/dev/null; do
		[ $SECONDS -lt "$end" ] || { kill -TERM "$MAIN"; end=$((end + 30)); }
		sleep 1
	done
	[ -f "$RUN/qemu.pids" ] && xargs kill -KILL <"$RUN/qemu.pids" 2>/dev/null
	rm -f "$SHM" "$RSHM"
	ip netns del "$HNS" 2>/dev/null
	rm -rf "$RUN"
) &
WD=$!

# --- initramfs ------------------------------------------------------------------------------
R=$RUN/root
mkdir -p "$R"/{bin,dev,proc,sys,tmp,vm/cases,lib/modules,opt/nearsock,usr/bin}
cp /bin/busybox "$R/bin/busybox"
ln -s busybox "$R/bin/sh"
cp "$ROOT/tests/vm/init" "$R/init"
chmod 755 "$R/init"
cp "$ROOT/tests/vm/guest.sh" "$R/vm/"
cp "$ROOT"/tests/vm/cases/*.sh "$R/vm/cases/"
# The network modules in dependency order (the package has no modules.dep); a module that is
# not there is built in (or missing: init says so on the console). inet_diag and tcp_diag:
# nearsock asks sock_diag whether a peer's socket still exists, and a Debian host loads them
# on demand; the guest has no modprobe, and without them every such query answers ENOENT,
# which the library takes for "the peer closed" (EPIPE on a live connection: the
# loopback_4k case shows it with NSK_VM_NO_DIAG=1).
MODS=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover
	net_failover virtio_net)
[ "${NSK_VM_NO_DIAG:-0}" = 1 ] || MODS+=(inet_diag tcp_diag)
: >"$R/vm/modules"
for m in "${MODS[@]}"; do
	ko=$(find "$MODDIR/kernel" -name "$m.ko*" | head -1)
	[ -n "$ko" ] || continue
	case $ko in
	*.xz) xz -dc "$ko" >"$R/lib/modules/$m.ko" ;;
	*.zst) zstd -qdc "$ko" >"$R/lib/modules/$m.ko" ;;
	*) cp "$ko" "$R/lib/modules/$m.ko" ;;
	esac
	echo "$m" >>"$R/vm/modules"
done
BINS=()
for f in nearsock libnearsock.so nsk_echo nsk_pingpong ivshmem_probe; do
	cp "$BUILD/$f" "$R/opt/nearsock/"
	BINS+=("$BUILD/$f")
done
for p in redis-server redis-benchmark; do
	if command -v "$p" >/dev/null; then
		cp -L "$(command -v "$p")" "$R/usr/bin/$p"
		BINS+=("$(command -v "$p")")
	fi
done
# Their shared libraries and the dynamic loader, at the paths the loader looks for them.
for lib in $(ldd "${BINS[@]}" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// && $1 !~ /:$/ { print $1 }' | sort -u); do
	mkdir -p "$R$(dirname "$lib")"
	cp -L "$lib" "$R$lib"
done
(cd "$R" && find . | cpio -o -H newc -R 0:0 --quiet) >"$RUN/initramfs.cpio"
log "initramfs: $(du -m "$RUN/initramfs.cpio" | cut -f1) MiB, kernel $KVER ($(basename "$KERNEL")), modules: $(tr '\n' ' ' <"$R/vm/modules")"

# --- the region and the VMs -----------------------------------------------------------------
KEY=$((RANDOM * 32768 + RANDOM + 1))
truncate -s 16M "$SHM"
"$BUILD/ivshmem_probe" stamp --file "$SHM" --key "$KEY" >/dev/null
"$BUILD/nearsock" vm init "$RSHM" --size 32M --force >/dev/null || { log "nearsock vm init $RSHM failed"; exit 1; }
# The host on the guests' segment: a tap port of A's hub, moved into a network namespace of
# its own (169.254.10.100), where host-side processes map the region file (host <-> guest).
HOSTNET=()
if ip netns add "$HNS" 2>/dev/null && [ -c /dev/net/tun ]; then
	HOSTNET=(-netdev "tap,id=ht,ifname=$TAP,script=no,downscript=no" -netdev hubport,id=hh,hubid=0,netdev=ht)
else
	log "no network namespace or tap device: the host <-> guest case is skipped"
fi

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
PORT_B=$(free_port)
PORT_C=$(free_port)
[ "$PORT_B" != "$PORT_C" ] || PORT_C=$(free_port)
declare -A IP=([A]=169.254.10.1 [B]=169.254.10.2 [C]=169.254.10.3)
declare -A MAC=([A]=52:54:00:4e:53:01 [B]=52:54:00:4e:53:02 [C]=52:54:00:4e:53:03)
declare -A T0 BOOT
CMDLINE="console=ttyS0 quiet panic=-1 mitigations=off vmkey=$KEY vmip_a=${IP[A]} vmip_b=${IP[B]} vmip_c=${IP[C]} vmcases=${CASES_ONLY:-all}"

# start_vm ROLE ARGS... - start one QEMU with the common options and ARGS.
start_vm() {
	local role=$1
	shift
	T0[$role]=$(date +%s.%N)
	qemu-system-x86_64 -nodefaults -accel tcg -machine pc -m 256M -smp 1 -display none \
		-no-reboot -name "nsk-vm-$role" -kernel "$KERNEL" -initrd "$RUN/initramfs.cpio" \
		-append "$CMDLINE vmrole=$role vmip=${IP[$role]}" \
		-serial "file:$RUN/$role.log" -monitor "unix:$RUN/$role.mon,server=on,wait=off" \
		"$@" >"$RUN/$role.qemu.out" 2>&1 &
	QPIDS+=($!)
	echo $! >>"$RUN/qemu.pids"
}
# shellcheck disable=SC2054 # commas inside QEMU option values
REGION=(-object "memory-backend-file,id=hm,share=on,mem-path=$SHM,size=16M"
	-device ivshmem-plain,memdev=hm,id=ivs0
	-object "memory-backend-file,id=hr,share=on,mem-path=$RSHM,size=32M"
	-device ivshmem-plain,memdev=hr,id=ivs1)
start_vm A "${REGION[@]}" \
	-netdev "socket,id=sb,listen=127.0.0.1:$PORT_B" -netdev "socket,id=sc,listen=127.0.0.1:$PORT_C" \
	-netdev hubport,id=hb,hubid=0,netdev=sb -netdev hubport,id=hc,hubid=0,netdev=sc \
	-netdev hubport,id=hn,hubid=0 -device "virtio-net-pci,netdev=hn,mac=${MAC[A]}" "${HOSTNET[@]}"
if [ ${#HOSTNET[@]} -gt 0 ]; then
	for _ in $(seq 1 50); do
		ip link show "$TAP" >/dev/null 2>&1 && break
		sleep 0.1
	done
	ip link set "$TAP" netns "$HNS" && ip -n "$HNS" addr add 169.254.10.100/24 dev "$TAP" &&
		ip -n "$HNS" link set "$TAP" up && ip -n "$HNS" link set lo up ||
		log "could not move the tap $TAP into $HNS: the host <-> guest case will fail"
fi
# B and C connect to A's listening sockets: wait until they exist.
for _ in $(seq 1 50); do
	ss -Hltn "sport = :$PORT_C" 2>/dev/null | grep -q LISTEN && break
	kill -0 "${QPIDS[0]}" 2>/dev/null || { cat "$RUN/A.qemu.out"; echo "FAIL: QEMU A exited at start"; exit 1; }
	sleep 0.1
done
start_vm B "${REGION[@]}" \
	-netdev "socket,id=n0,connect=127.0.0.1:$PORT_B" -device "virtio-net-pci,netdev=n0,mac=${MAC[B]}"
start_vm C -netdev "socket,id=n0,connect=127.0.0.1:$PORT_C" -device "virtio-net-pci,netdev=n0,mac=${MAC[C]}"
log "started A (pid ${QPIDS[0]}), B (${QPIDS[1]}), C (${QPIDS[2]}); region $SHM (16 MiB), key $KEY"

# hmp ROLE COMMAND - one human-monitor command on ROLE's monitor socket; prints the reply.
hmp() {
	python3 - "$RUN/$1.mon" "$2" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
def prompt():
    buf = b""
    while not buf.endswith(b"(qemu) "):
        d = s.recv(4096)
        if not d:
            break
        buf += d
    return buf.decode(errors="replace")
prompt()
s.sendall(sys.argv[2].encode() + b"\n")
out = prompt().replace("\r", "").split("\n")
# the first line echoes the command (with terminal escapes); the last is the prompt
print("\n".join(l for l in out[1:-1] if l.strip()))
PY
}

# hmp_ok ROLE COMMAND - hmp, failing when QEMU answers with an error.
hmp_ok() {
	local out
	out=$(hmp "$1" "$2") || return 1
	[ -n "$out" ] && echo "$out"
	! grep -qi error <<<"$out"
}

# Host-side handlers of the guests' VMTEST-WAIT requests: host_TOKEN ROLE.
# Re-adding the device on its old memory backend trips an assertion in QEMU 7.2
# (qemu_ram_set_idstr: the backend's RAM block keeps the name the first device gave it), so
# the device comes back on a fresh backend object over the same file, as it would on a
# migration target.
# replug ROLE DEV BACKEND FILE SIZE - device_add DEV again on backend object BACKEND<n>, the
# n-th fresh one over FILE (the first device's backend is BACKEND itself).
declare -A PLUGS=()
replug() {
	local n=${PLUGS[$3]:-0} old=$3
	[ "$n" = 0 ] || old=$3$n
	n=$((n + 1))
	PLUGS[$3]=$n
	hmp_ok "$1" "object_del $old" &&
		hmp_ok "$1" "object_add memory-backend-file,id=$3$n,share=on,mem-path=$4,size=$5" &&
		hmp_ok "$1" "device_add ivshmem-plain,memdev=$3$n,id=$2"
}
host_hotplug_del() { hmp_ok "$1" "device_del ivs0"; }
host_hotplug_add() { replug "$1" ivs0 hm "$SHM" 16M; }
# The migrate case: the nearsock region's device.
host_migrate_del() { hmp_ok "$1" "device_del ivs1"; }
host_migrate_add() { replug "$1" ivs1 hr "$RSHM" 32M; }

# host_hoststream ROLE - the host side of case host_guest: a preloaded nsk_echo client in the
# host's namespace on the guests' segment, with the region file as its ivshmem domain, streams
# 64 MiB each way to ROLE's server and must end on shared memory.
host_hoststream() {
	[ ${#HOSTNET[@]} -gt 0 ] || { echo "no host network (tap)"; return 1; }
	local d out ip=169.254.10.2
	[ "$1" = A ] && ip=169.254.10.1
	d=$(mktemp -d "$RUN/hdom.XXXXXX") && chmod 700 "$d"
	for _ in $(seq 1 30); do # until the guest's server listens (nsk_echo exits 2 before)
		out=$(timeout 100 ip netns exec "$HNS" env NEARSOCK_DIR="$d" NEARSOCK_DOMAIN="ivshmem:$RSHM" \
			"$BUILD/nearsock" run -- "$BUILD/nsk_echo" client --addr "$ip" --port 7301 \
			--bytes $((64 << 20)) 2>&1) && break
		grep -q '"role"' <<<"$out" && break
		sleep 1
	done
	grep -q '"role"' <<<"$out" || { echo "no transfer: $(tail -3 <<<"$out" | tr '\n' ' ')"; ip -n "$HNS" -br addr; return 1; }
	out=$(grep '"role"' <<<"$out")
	echo "$out"
	grep -q '"ok": 1' <<<"$out" && grep -q '"mode": 2' <<<"$out"
}

# --- the main loop: boot times, requests, the deadline ---------------------------------------
declare -A HANDLED
HOSTFAIL=0
while :; do
	alive=0
	for p in "${QPIDS[@]}"; do
		kill -0 "$p" 2>/dev/null && alive=1
	done
	now=$(date +%s.%N)
	for role in A B C; do
		f=$RUN/$role.log
		[ -f "$f" ] || continue
		if [ -z "${BOOT[$role]:-}" ] && grep -q '^VMTEST-BOOT' "$f"; then
			BOOT[$role]=$(awk -v a="${T0[$role]}" -v b="$now" 'BEGIN { printf "%.1f", b - a }')
		fi
		while read -r _ r tok; do
			[ -n "${HANDLED[$r.$tok]:-}" ] && continue
			HANDLED[$r.$tok]=1
			if declare -F "host_$tok" >/dev/null; then
				if out=$("host_$tok" "$r" 2>&1); then
					log "request $tok from $r: done${out:+ ($out)}"
				else
					log "request $tok from $r: FAILED${out:+ ($out)}"
					HOSTFAIL=1
				fi
			else
				log "request $tok from $r: no handler"
				HOSTFAIL=1
			fi
		done < <(tr -d '\r' <"$f" | grep '^VMTEST-WAIT ' || true)
	done
	[ $alive = 0 ] && break
	if [ $(($(date +%s) - T_START)) -ge "$DEADLINE" ]; then
		log "deadline of $DEADLINE s reached with VMs still running"
		HOSTFAIL=1
		break
	fi
	sleep 0.2
done
T_END=$(date +%s)

# --- results --------------------------------------------------------------------------------
echo "== results"
pass=0
failed=0
for role in A B C; do
	f=$RUN/$role.log
	tr -d '\r' <"$f" 2>/dev/null | grep '^VMTEST-LOG ' >"$RUN/$role.caselog" || true
	tr -d '\r' <"$f" 2>/dev/null | grep '^VMTEST-RESULT ' >"$RUN/$role.results" || true
	cat "$RUN/$role.results"
	plan=$(tr -d '\r' <"$f" 2>/dev/null | sed -n "s/^VMTEST-PLAN $role//p" | head -1)
	if ! tr -d '\r' <"$f" 2>/dev/null | grep -q "^VMTEST-PLAN $role"; then
		echo "FAIL: $role never started its tests; the end of its console:"
		tail -20 "$f" 2>/dev/null
		tail -5 "$RUN/$role.qemu.out" 2>/dev/null
		failed=$((failed + 1))
		continue
	fi
	for c in $plan; do
		if ! grep -q "^VMTEST-RESULT $role $c " "$RUN/$role.results"; then
			echo "FAIL: $role $c reported nothing"
			failed=$((failed + 1))
		fi
	done
	pass=$((pass + $(grep -c ' PASS ' "$RUN/$role.results" || true)))
	n=$(grep -c ' FAIL ' "$RUN/$role.results" || true)
	if [ "$n" -gt 0 ]; then
		failed=$((failed + n))
		grep ' FAIL ' "$RUN/$role.results" | while read -r _ _ c _; do
			echo "-- output of $role $c:"
			grep "^VMTEST-LOG $role $c: " "$RUN/$role.caselog" | tail -25
		done
	fi
done
# The host's view of the region: what A wrote and B acknowledged is in the backing file.
if grep -q "^VMTEST-RESULT B ivshmem " "$RUN/B.results" 2>/dev/null; then
	if out=$("$BUILD/ivshmem_probe" check --file "$SHM" --key "$KEY"); then
		echo "VMTEST-RESULT host ivshmem_file PASS $out"
		pass=$((pass + 1))
	else
		echo "VMTEST-RESULT host ivshmem_file FAIL $out"
		failed=$((failed + 1))
	fi
fi
[ $HOSTFAIL = 0 ] || { echo "FAIL: a host-side step failed (above)"; failed=$((failed + 1)); }
echo "== boot (QEMU start to /init): A ${BOOT[A]:-?} s, B ${BOOT[B]:-?} s, C ${BOOT[C]:-?} s; whole run $((T_END - T_START)) s"
if [ $failed -gt 0 ] || [ $pass -eq 0 ]; then
	echo "FAIL: $failed failed, $pass passed (serial logs: $BUILD/vm-logs/)"
	exit 1
fi
echo "PASS: $pass results passed (serial logs: $BUILD/vm-logs/)"
