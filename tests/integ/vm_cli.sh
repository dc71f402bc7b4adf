#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# vm_cli.sh — `nearsock vm init` and `nearsock vm status` on a region file: format, show an
# empty region, show a live member (nsk_region_test member: beating, its chunks, offer,
# listener and address, in text and JSON), refuse to reformat while it beats, see it stand
# still after it exits, reformat then; bad sizes and files; `status auto` through a fake sysfs
# tree (NEARSOCK_SYSFS) whose ivshmem device's resource2 is the region file.
. "$(dirname "$0")/lib.sh"

RT=$B/nsk_region_test
[ -x "$RT" ] || skip "$RT not built"
R=$T/region
FAILS=0

"$NSK" vm init "$R" --size 1M --beat-ms 20 --dead-ms 200 >"$T/init.out" 2>&1 ||
	{ fail "init: $(cat "$T/init.out")"; finish; }
grep -q 'formatted .* 1048576 bytes' "$T/init.out" && ok "init" || fail "init said: $(cat "$T/init.out")"
"$NSK" vm status "$R" >"$T/s0.out" 2>&1 || fail "status of an empty region failed"
grep -q 'chunks: .* 0 used' "$T/s0.out" && ok "empty region status" || fail "empty status: $(cat "$T/s0.out")"

bg "$T/member.out" "$T/member.err" "$RT" member "$R" 4000
MEMBER=$LAST_PID
wait_until 5 grep -q joined "$T/member.out" || { fail "member did not join: $(cat "$T/member.err")"; finish; }
"$NSK" vm status "$R" >"$T/s1.out" 2>&1 || fail "status with a member failed"
grep -E 'member-test .* live .* beating' "$T/s1.out" | grep -q '169.254.0.9' &&
	ok "live member shown beating with its address" || fail "member line: $(cat "$T/s1.out")"
grep -q 'chunks: .* 2 used' "$T/s1.out" || fail "chunk usage: $(grep chunks: "$T/s1.out")"
grep -qE '1 posted' "$T/s1.out" && grep -qE 'posted .*169.254.0.9:40000 -> 169.254.0.9:6379' "$T/s1.out" ||
	fail "offer not shown: $(cat "$T/s1.out")"
grep -qE '^0 +tcp +0.0.0.0:6379 +live' "$T/s1.out" || fail "listener not shown: $(cat "$T/s1.out")"
"$NSK" vm status "$R" --json >"$T/s1.json" 2>&1 || fail "status --json failed"
if command -v python3 >/dev/null; then
	python3 - "$T/s1.json" <<'PY' && ok "json status" || fail "json: $(cat "$T/s1.json")"
import json, sys
d = json.load(open(sys.argv[1]))
m = [x for x in d["members"] if x["name"] == "member-test"]
assert len(m) == 1 and m[0]["beating"] and m[0]["chunks"] == 2, m
assert d["chunks"]["used"] == 2 and d["offers"]["posted"] == 1, d
assert d["listeners"][0]["port"] == 6379 and d["listeners"][0]["owner"] == "live", d
PY
fi
"$NSK" vm init "$R" --size 1M >"$T/init2.out" 2>&1
rc=$?
[ "$rc" = 1 ] && grep -q 'live members' "$T/init2.out" && ok "reformat refused while a member beats" ||
	fail "reformat with a live member: exit $rc, $(cat "$T/init2.out")"

wait_pid "$MEMBER" 10 >/dev/null
sleep 0.1
"$NSK" vm status "$R" >"$T/s2.out" 2>&1
grep -E 'member-test .* live ' "$T/s2.out" | grep -qv beating && ok "exited member no longer beats" ||
	fail "after exit: $(cat "$T/s2.out")"
"$NSK" vm init "$R" --size 2M >"$T/init3.out" 2>&1 && ok "reformat after the member died" ||
	fail "reformat of a dead member's region: $(cat "$T/init3.out")"
"$NSK" vm status "$R" | grep -q '^region .*: 2 MiB' || fail "new size not shown"

"$NSK" vm init "$T/bad" --size 3M >/dev/null 2>&1
[ $? = 2 ] || fail "a size that is not a power of two was accepted"
"$NSK" vm status "$T/missing" >/dev/null 2>&1
[ $? = 1 ] || fail "status of a missing file did not fail"
head -c 65536 /dev/zero >"$T/zero"
"$NSK" vm status "$T/zero" >"$T/zero.out" 2>&1
grep -q 'not a nearsock region' "$T/zero.out" || fail "zero file not refused: $(cat "$T/zero.out")"

# guest view: a fake sysfs tree with the region as the device's BAR2
D=$T/sys/bus/pci/devices/0000:00:04.0
mkdir -p "$D"
printf '0x1af4\n' >"$D/vendor"
printf '0x1110\n' >"$D/device"
printf '0\n' >"$D/enable"
ln -s "$R" "$D/resource2"
NEARSOCK_SYSFS=$T/sys "$NSK" vm status auto >"$T/s3.out" 2>&1 &&
	grep -q "0000:00:04.0/resource2: 2 MiB" "$T/s3.out" && ok "status auto through sysfs" ||
	fail "status auto: $(cat "$T/s3.out")"
[ "$(cat "$D/enable")" = 1 ] || fail "the device was not enabled"
NEARSOCK_SYSFS=$T/nosys "$NSK" vm status auto >/dev/null 2>&1
[ $? = 1 ] || fail "status auto without a device did not fail"
finish
