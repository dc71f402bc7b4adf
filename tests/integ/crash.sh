#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# crash.sh [KILLS] — crash safety under random SIGKILLs (nsk_crash): KILLS (default 200)
# rounds in which a preloaded server or client is killed at a random moment — connecting,
# waiting in accept, on TCP before the upgrade, offered/claimed, on the rings (switch and
# transfer, 16 KiB rings so senders block), closing. Checks after every kill (by the driver):
# the survivor got EOF or an error within 1 s, then closed with no channel mapping, no channel
# memfd and no extra descriptor left. Checks at the end, on the private domain: no process
# left; `nearsock gc` retires every trace of the dead (connection tables, registry entries,
# rendezvous sockets) so that the directory holds only the registry file; the registry has no
# valid or half-written (busy) entry; `nearsock status --json` lists no listener and no
# connection. Label integ runs 200 kills; label stress runs crash.sh 1000.
. "$(dirname "$0")/lib.sh"

CRASH=$B/nsk_crash
[ -x "$CRASH" ] || skip "$CRASH not built"
KILLS=${NSK_CRASH_KILLS:-${1:-200}} # NSK_CRASH_KILLS overrides (the TSan stage runs fewer)
D=$(new_domain)

t0=$(now_ms)
NEARSOCK_DIR="$D" timeout -k 5 900 "$CRASH" run --lib "$LIB" --state "$T/state" --kills "$KILLS" \
	--limit-ms 1000 ${NSK_CRASH_SEED:+--seed "$NSK_CRASH_SEED"} >"$T/crash.out" 2>"$T/crash.err"
rc=$?
t1=$(now_ms)
head -1 "$T/crash.out"
S=$(tail -1 "$T/crash.out")
echo "$S"
echo "$KILLS kills in $(((t1 - t0) / 1000)) s"
grep -o '"noticed_us": [0-9]*' "$T/crash.out" | awk '{print $2}' | sort -n | awk '{ a[NR] = $1 }
	END { if (NR) printf "survivor noticed the kill after (ms): median %.1f, p99 %.1f, max %.1f\n",
		a[int((NR + 1) / 2)] / 1000, a[int(NR * 0.99)] / 1000, a[NR] / 1000 }'
grep '"kill"' "$T/crash.out" | sort -t: -k8 | grep -o '"victim": "[a-z]*", "phase": "[a-z]*".*"noticed_us": [0-9]*' |
	sort -t: -k6 -n | tail -3 | sed 's/^/slowest: /'
grep '"verdict"' "$T/crash.out" | grep -v '"verdict": "ok"\|"verdict": "no-connection"' | head -10
grep -v '^nearsock\[' "$T/crash.err" | head -10
[ "$rc" = 0 ] || fail "crash driver exited $rc (failures: $(jget failures "$S"); rerun with NSK_CRASH_SEED=$(jget seed "$(head -1 "$T/crash.out")"))"
[ "$(jget kills "$S")" = "$KILLS" ] || fail "only $(jget kills "$S") of $KILLS kills happened"
# Every moment of the connection's life was hit (on one side or the other).
for ph in tcp shm close; do
	grep -q "\"[a-z]*-$ph\"" <<<"$S" || fail "no kill while the victim was in phase $ph"
done
grep -q '"client-connect"\|"server-accept"' <<<"$S" || fail "no kill while connecting"

# Nothing of ours runs any more.
left=$(pgrep -f "$CRASH (server|client) $T/state" | wc -l)
[ "$left" = 0 ] || fail "$left test processes still running"

# The dead leave traces only gc may remove; afterwards the domain is as new.
"$NSK" gc --dir "$D" >"$T/gc.out" 2>&1 || fail "nearsock gc failed"
cat "$T/gc.out"
extra=$(ls -A "$D" | grep -v '^registry$' | head -5)
[ -z "$extra" ] || fail "domain holds more than the registry after gc: $extra"
reg=$(reg_valid "$D")
[ "$reg" = 0 ] || fail "registry holds $reg valid entries after gc"
busy=$(od -An -v -tu4 -w128 -j64 "$D/registry" | awk '$1 % 4 == 1 { n++ } END { print n + 0 }')
[ "$busy" = 0 ] || fail "registry holds $busy half-written (busy) entries"
"$NSK" status --json --dir "$D" >"$T/status.json" 2>&1 || fail "nearsock status failed"
tr -d '\n ' <"$T/status.json" | grep -q '"listeners":\[\],"connections":\[\],"processes":\[\]' ||
	fail "status is not empty after gc: $(cat "$T/status.json")"
finish
