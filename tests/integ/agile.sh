#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# agile.sh quick|chaos — live switching under load (issue: seamless agility).
#
# Several independent client/server pairs (nsk_agile) run at once under `nearsock run`, each
# streaming checked pseudo-random data both ways on many connections while both processes
# evacuate and attach random connections every few milliseconds. Some pairs have their
# server killed with SIGKILL mid-transfer. Checks:
#   - every byte that arrived is the right byte (no loss, duplication or reordering): on
#     surviving pairs the whole stream and its exact end, on killed ones what came before;
#   - switching really happened (switch counts > 0, both paths carried data);
#   - no hang: killed pairs' clients see every connection end within 1 s of the kill, and
#     every pair finishes within its time limit;
#   - nothing leaks: after `nearsock gc` the domain holds no process table, registry entry,
#     rendezvous socket or charged memory.
# quick (CI, label integ): 3 pairs, ~1 GiB in all. chaos (label stress): NSK_CHAOS_ROUNDS
# rounds (default 4) of 4 pairs, 16 connections each, ~10 GiB per round.
. "$(dirname "$0")/lib.sh"

MODE=${1:-quick}
AG=$B/nsk_agile
[ -x "$AG" ] || skip "$AG not built"
case "$MODE" in
quick) ROUNDS=1 CONNS=8 BYTES=24M KBYTES=256M ;;
chaos) ROUNDS=${NSK_CHAOS_ROUNDS:-4} CONNS=16 BYTES=160M KBYTES=512M ;;
*) echo "usage: agile.sh quick|chaos"; exit 2 ;;
esac
# Sanitizer builds run several times slower: a quarter of the data.
if ldd "$LIB" 2>/dev/null | grep -q -E 'lib(a|t)san'; then
	BYTES=6M KBYTES=64M
fi

TOTAL_BYTES=0 TOTAL_SWITCHES=0 TOTAL_KILLS=0 TOTAL_CALLS=0

# pair NAME ARGS... - start one nsk_agile pair in the background (its output in $T/NAME.out)
pair()
{
	local name=$1
	shift
	bg "$T/$name.out" "$T/$name.err" timeout -k 2 170 env NEARSOCK_DIR="$D" "$NSK" run -- "$AG" "$@"
	PAIR_PIDS+=("$LAST_PID")
	PAIR_NAMES+=("$name")
}

# account NAME - add a finished pair's figures to the totals
account()
{
	local l
	while read -r l; do
		case "$l" in
		*'"role"'*'"tx_bytes"'*)
			TOTAL_BYTES=$((TOTAL_BYTES + $(jget rx_bytes "$l")))
			TOTAL_SWITCHES=$((TOTAL_SWITCHES + $(jget switches "$l")))
			TOTAL_CALLS=$((TOTAL_CALLS + $(jget switch_calls "$l")))
			;;
		esac
	done <"$T/$1.out"
}

for round in $(seq 1 "$ROUNDS"); do
	D=$(new_domain)
	PAIR_PIDS=() PAIR_NAMES=()
	S=$((round * 1000))
	pair "r$round-blocking" --conns "$CONNS" --bytes "$BYTES" --switch-ms 2 --seed $((S + 1)) --need-switches
	pair "r$round-epoll" --conns "$CONNS" --bytes "$BYTES" --switch-ms 3 --seed $((S + 2)) --style epoll --need-switches
	pair "r$round-kill" --conns $((CONNS / 2)) --bytes "$KBYTES" --switch-ms 2 --seed $((S + 3)) \
		--kill-server-ms $((150 + RANDOM % 400)) --max-hang-ms 1000
	TOTAL_KILLS=$((TOTAL_KILLS + 1))
	if [ "$MODE" = chaos ]; then
		pair "r$round-kill2" --conns "$CONNS" --bytes "$KBYTES" --switch-ms 1 --seed $((S + 4)) \
			--style epoll --kill-server-ms $((300 + RANDOM % 1500)) --max-hang-ms 1000
		TOTAL_KILLS=$((TOTAL_KILLS + 1))
	fi
	for i in "${!PAIR_PIDS[@]}"; do
		name=${PAIR_NAMES[$i]}
		wait_pid "${PAIR_PIDS[$i]}" 175
		rc=$?
		cat "$T/$name.out"
		[ -s "$T/$name.err" ] && { echo "$name stderr:"; head -5 "$T/$name.err"; }
		if [ "$rc" -ne 0 ]; then
			fail "$name exited with $rc (124: timed out)"
		else
			ok "$name: every byte exact$(case $name in *kill*) echo ", every connection ended within 1 s of the kill" ;; esac)"
		fi
		account "$name"
	done
	# Nothing left behind once the processes are gone and gc ran (the killed servers'
	# tables, entries and rendezvous sockets included; their segments went with them).
	"$NSK" gc --dir "$D" >/dev/null 2>&1
	left=$(find "$D" -mindepth 1 ! -name registry | wc -l)
	[ "$left" -eq 0 ] || fail "round $round: files left in the domain after gc: $(ls "$D")"
	st=$("$NSK" status --dir "$D" --json 2>&1)
	if echo "$st" | tr -d ' \n' | grep -q '"listeners":\[\],"connections":\[\],"processes":\[\]'; then
		ok "round $round: no registry entry, table or process left"
	else
		fail "round $round: domain not empty after gc: $(echo "$st" | head -20)"
	fi
	echo "$st" | grep -q '"mem_used": 0,' || fail "round $round: memory still charged: $(echo "$st" | grep mem_used)"
done

GIB=$(awk -v b="$TOTAL_BYTES" 'BEGIN { printf "%.2f", b / 1073741824 }')
echo "chaos figures: mode $MODE, $ROUNDS round(s), $GIB GiB delivered and checked, $TOTAL_SWITCHES switches made ($TOTAL_CALLS evacuate/attach calls), $TOTAL_KILLS SIGKILLs, 0 bytes lost/duplicated/reordered unless a FAIL says otherwise"
[ "$TOTAL_SWITCHES" -gt 0 ] || fail "no switch happened"
finish
