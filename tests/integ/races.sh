#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# races.sh [CASE...] — the races of the survey's Table IV (issue 5), one numbered case each
# (all six without arguments). Every case checks real outcomes: byte-exact checked streams,
# exit codes and errnos, path counters, no hang (generous time limits), nothing leaked.
#   1. Endpoint added/removed during connection establishment: `nearsock attach --all` and
#      `evacuate --all` flipped every few ms (and the server's process word now and then)
#      while nsk_many opens 200 connections, each with four checked echo round trips, then
#      closes them. Every exchange exact; no descriptor or channel mapping leaked; afterwards,
#      with the domain attached, new connections are upgraded (mode shm both ways).
#   2. Endpoint removed during pending-data handling: a receiver pauses after the upgrade, the
#      sender fills the ring without blocking; then the connection is evacuated — (a) by the
#      sender itself (nearsock_evacuate), (b) `nearsock evacuate SENDER`, (c) `nearsock
#      evacuate RECEIVER` while it is paused, (d) `evacuate --all` — and the sender sends 4 MiB
#      more. The receiver then reads: every byte in order up to EOF, the ring's bytes and
#      then TCP's (rx_shm and rx_tcp both > 0; the fill moved no byte over TCP).
#   3. Endpoint removed during tear-down: nsk_races teardown — 400 connections ending in
#      shutdown/close patterns on both sides while switchers in both processes pin and unpin
#      random connections every 0..300 µs (and inline just before shutdown/close) and the
#      script flips the domain word: every stream ends in a clean EOF after exactly its bytes,
#      no call fails except with ENOTSOCK/EBADF/EOPNOTSUPP, no channel memfd, TCP socket or
#      mapping left in either process; then `nearsock gc` leaves the domain empty.
#   4. Evacuation racing with close of the same fd: nsk_races teardown --hammer — two threads
#      per process call nearsock_evacuate/attach/fd_path/fd_stats without pause on the
#      descriptors other threads are closing (and on their reused numbers), 1500 connections:
#      no crash, only 0/ENOTSOCK/EBADF/EOPNOTSUPP, every stream exact, nothing leaked.
#   5. Two evacuations at once: an nsk_agile pair (both processes switch their own
#      connections every 2 ms) and a paced echo pair of two separate processes; the script
#      fires `evacuate PID_A`, `evacuate PID_B` and `evacuate --all` at the same instant (then
#      the attaches) over and over: all data exact, switches counted; at the end two
#      simultaneous `evacuate PID --wait` both complete, then `attach --all --wait` does.
#   6. The agent restarting mid-operation: nearsockd (20 ms interval) is SIGKILLed while
#      `nearsock evacuate --all --wait` runs (and again during `attach --all --wait`) on two
#      paced echo pairs; a server killed while no agent runs leaves leftovers to collect;
#      an agent that died by itself before its SIGKILL (a crash) is a FAIL;
#      it is restarted each time: the waits complete (exit 0), the new agent reports every
#      live process as a join and collects the leftovers, status shows every end back on the
#      ring, the echoes are exact, and after everything left `gc` empties the domain.
# Each case prints the figures it measured (iterations, switches, bytes).
. "$(dirname "$0")/lib.sh"
# a sanitizer build of the library (everything runs several times slower)
SAN=
ldd "$LIB" 2>/dev/null | grep -q -E 'lib(a|t)san' && SAN=1

RACES=$B/nsk_races
MANY=$B/nsk_many
AGILE=$B/nsk_agile
AGENT=$B/nearsockd
for f in "$RACES" "$MANY" "$AGILE" "$AGENT"; do
	[ -x "$f" ] || skip "$f not built"
done
CASES=${*:-1 2 3 4 5 6}

# flipper DIR MS [PID] - flip the domain word (and PID's word) every MS ms until killed;
# counts its flips in $T/flips.DIR-basename.
flipper()
{
	local d=$1 ms=$2 p=${3:-} n=0 f
	f=$T/flips.$(basename "$d")
	while :; do
		"$NSK" evacuate --all --dir "$d" >/dev/null 2>&1
		[ -n "$p" ] && [ $((n % 4)) = 0 ] && "$NSK" evacuate "$p" --dir "$d" >/dev/null 2>&1
		sleep "0.00$ms"
		"$NSK" attach --all --dir "$d" >/dev/null 2>&1
		n=$((n + 1))
		echo "$n" >"$f"
		sleep "0.00$ms"
	done
}
flips() { cat "$T/flips.$(basename "$1")" 2>/dev/null || echo 0; }

# domain_empty DIR WHAT - after gc, no table, registry entry, rendezvous socket or charge.
domain_empty()
{
	local d=$1 what=$2 st left
	"$NSK" gc --dir "$d" >/dev/null 2>&1
	left=$(find "$d" -mindepth 1 ! -name registry | wc -l)
	[ "$left" -eq 0 ] || fail "$what: files left in the domain after gc: $(ls "$d" | tr '\n' ' ')"
	st=$(timeout 10 "$NSK" status --dir "$d" --json 2>&1)
	if echo "$st" | tr -d ' \n' | grep -q '"listeners":\[\],"connections":\[\],"processes":\[\]'; then
		ok "$what: after gc the domain holds no entry, table or process"
	else
		fail "$what: domain not empty after gc: $(echo "$st" | head -20)"
	fi
	echo "$st" | grep -q '"mem_used": 0,' || fail "$what: memory still charged: $(echo "$st" | grep mem_used)"
}

status_conns() { "$NSK" status --json --dir "$1" | grep '"role": "'; }

case_on() { [[ " $CASES " == *" $1 "* ]]; }
T_START=$(now_ms)
banner() { echo "---- case $1 ($(( ($(now_ms) - T_START) / 1000 )) s): $2"; }

# ---------------------------------------------------------------- 1. establishment
if case_on 1; then
	banner 1 "endpoint added/removed during connection establishment"
	D=$(new_domain)
	N=200
	bg "$T/c1srv.out" "$T/c1srv.err" env NEARSOCK_DIR="$D" NEARSOCK_OFFER_TIMEOUT_MS=300 "$NSK" run -- \
		"$ECHO" server --port 0 --conns $((1 + N + 2 + 1))
	SRV=$LAST_PID
	if wait_listen "$T/c1srv.out" "$SRV"; then
		timeout -k 2 20 env NEARSOCK_DIR="$D" "$NSK" run -- "$MANY" --port "$PORT" --conns 1 --bytes 32 \
			--rounds 4 >"$T/c1warm.out" 2>&1 || fail "1: warm-up connection failed: $(cat "$T/c1warm.out")"
		sleep 0.3
		fd_base=$(fd_count "$SRV") maps_base=$(chan_maps "$SRV")
		flipper "$D" 3 "$SRV" &
		FL=$!
		PIDS+=("$FL")
		t0=$(now_ms)
		timeout -k 2 40 env NEARSOCK_DIR="$D" NEARSOCK_OFFER_TIMEOUT_MS=300 "$NSK" run -- \
			"$MANY" --port "$PORT" --conns "$N" --bytes 48 --rounds 4 --hold-ms 4 >"$T/c1.out" 2>"$T/c1.err"
		rc=$?
		kill "$FL" 2>/dev/null
		wait "$FL" 2>/dev/null
		nfl=$(flips "$D")
		M=$(line_of "$T/c1.out" '"conns"')
		echo "1: $N connections in $(($(now_ms) - t0)) ms while the domain flipped $nfl times: $M"
		[ "$rc" = 0 ] && [ "$(jget ok "$M")" = "$N" ] && ok "1: all $N connections' exchanges exact" ||
			fail "1: client exited $rc, $(jget ok "$M") of $N exact: $(jget first_error "$M") $(head -3 "$T/c1.err")"
		[ "$nfl" -ge 5 ] || fail "1: the domain word flipped only $nfl times during the connections"
		# (Its descriptor count may grow by the library's own lazily opened socket: printed only.)
		echo "1: client descriptors after the first connection $(jget fds_base "$M"), at the end $(jget fds_after "$M")"
		[ "$(jget chan_maps_after "$M")" = 0 ] || fail "1: client leaked $(jget chan_maps_after "$M") channel mappings"
		echo "1: connection modes at close: shm $(jget mode_shm "$M"), tcp $(jget mode_tcp "$M"), offered $(jget mode_offered "$M"), plain $(jget mode_plain "$M"), broken $(jget mode_broken "$M")"
		[ "$(jget mode_broken "$M")" = 0 ] || fail "1: $(jget mode_broken "$M") connections broken"
		# Attached for good: new connections upgrade.
		"$NSK" attach --all --dir "$D" >/dev/null 2>&1
		"$NSK" attach "$SRV" --dir "$D" >/dev/null 2>&1
		timeout -k 2 20 env NEARSOCK_DIR="$D" "$NSK" run -- "$MANY" --port "$PORT" --conns 2 --bytes 48 \
			--rounds 4 >"$T/c1b.out" 2>&1
		M2=$(line_of "$T/c1b.out" '"conns"')
		[ "$(jget ok "$M2")" = 2 ] && [ "$(jget mode_shm "$M2")" = 2 ] && [ "$(jget shm_both_ways "$M2")" = 2 ] &&
			ok "1: with the domain attached, new connections are upgraded (2 of 2 on shm both ways)" ||
			fail "1: after attach --all, new connections not upgraded: $M2"
		# The server: as many descriptors and mappings as after the warm-up.
		sleep 0.7 # its unclaimed offers expire (2 x 300 ms), collected at its next call
		echo "1: server descriptors / channel mappings: $fd_base / $maps_base after the warm-up, $(fd_count "$SRV") / $(chan_maps "$SRV") now (informational)"
		timeout -k 2 20 env NEARSOCK_DIR="$D" "$NSK" run -- "$MANY" --port "$PORT" --conns 1 --bytes 8 \
			--rounds 2 >/dev/null 2>&1
		wait_pid "$SRV" 10
		rc=$?
		[ "$rc" = 0 ] || fail "1: echo server exited $rc"
		nsrv=$(grep -c '"role": "server"' "$T/c1srv.out")
		[ "$nsrv" = $((1 + N + 2 + 1)) ] || fail "1: the server reported $nsrv connections, expected $((1 + N + 2 + 1))"
		domain_empty "$D" "1"
	else
		fail "1: server did not start"
	fi
fi

# ---------------------------------------------------------------- 2. pending data
if case_on 2; then
	banner 2 "endpoint removed during pending-data handling"
	for v in self cli-sender cli-receiver domain; do
		D=$(new_domain)
		S=$T/sync-$v
		mkdir -p "$S"
		bg "$T/c2r-$v.out" "$T/c2r-$v.err" env NEARSOCK_DIR="$D" "$NSK" run -- \
			"$RACES" pending-recv --sync "$S"
		RCV=$LAST_PID
		wait_listen "$T/c2r-$v.out" "$RCV" || { fail "2$v: receiver did not start"; continue; }
		bg "$T/c2s-$v.out" "$T/c2s-$v.err" env NEARSOCK_DIR="$D" "$NSK" run -- \
			"$RACES" pending-send --sync "$S" --port "$PORT" --more $((4 << 20)) \
			$([ "$v" = self ] && echo --self-evacuate)
		SND=$LAST_PID
		if ! wait_until 20 test -e "$S/filled"; then
			fail "2$v: the sender did not fill the ring: $(cat "$T/c2s-$v.out" "$T/c2s-$v.err" "$T/c2r-$v.err")"
			continue
		fi
		case $v in
		cli-sender) "$NSK" evacuate "$SND" --dir "$D" >/dev/null 2>&1 || fail "2$v: evacuate $SND failed" ;;
		cli-receiver) "$NSK" evacuate "$RCV" --dir "$D" >/dev/null 2>&1 || fail "2$v: evacuate $RCV failed" ;;
		domain) "$NSK" evacuate --all --dir "$D" >/dev/null 2>&1 || fail "2$v: evacuate --all failed" ;;
		esac
		touch "$S/evacuated"
		wait_until 20 test -e "$S/sending" || fail "2$v: the sender did not go on"
		sleep 0.3 # the sender's next bytes meet the full ring (and, evacuated, TCP)
		touch "$S/go-read"
		wait_pid "$SND" 35
		rcs=$?
		wait_pid "$RCV" 10
		rcr=$?
		F=$(line_of "$T/c2s-$v.out" '"filled"')
		E=$(line_of "$T/c2s-$v.out" '"sent"')
		R=$(line_of "$T/c2r-$v.out" '"receiver"')
		echo "2$v: sender: $F"
		echo "2$v: sender: $E"
		echo "2$v: receiver: $R"
		[ -s "$T/c2s-$v.err" ] && head -3 "$T/c2s-$v.err"
		[ -s "$T/c2r-$v.err" ] && head -3 "$T/c2r-$v.err"
		filled=$(jget filled "$F") sent=$(jget sent "$E") rcvd=$(jget rcvd "$R")
		[ "$(jget path_after_handshake "$F")" = 3 ] && [ "$(jget path_after_handshake "$R")" = 3 ] ||
			fail "2$v: not on the ring both ways after the handshake"
		[ "${filled:-0}" -gt 0 ] && [ "$(jget fill_tx_tcp "$F")" = 0 ] && [ "$(jget fill_tx_shm "$F")" = "$filled" ] ||
			fail "2$v: the fill did not go (only) into the ring: $F"
		[ "$v" != self ] || [ "$(jget evacuate_rc "$F")" = 0 ] || fail "2$v: nearsock_evacuate failed: $F"
		if [ "$rcs" = 0 ] && [ "$rcr" = 0 ] && [ -n "$sent" ] && [ "$sent" = "$rcvd" ] &&
			[ "$(jget bad_at "$R")" = -1 ] && [ "$sent" = $((filled + (4 << 20))) ]; then
			ok "2$v: $rcvd bytes received in order up to EOF ($filled of them pending in the ring at the evacuation)"
		else
			fail "2$v: stream not exact: sender rc $rcs sent ${sent:-?}, receiver rc $rcr rcvd ${rcvd:-?} bad_at $(jget bad_at "$R") error '$(jget error "$R")'"
		fi
		[ "$(jget rx_shm "$R")" -ge "${filled:-1}" ] 2>/dev/null && [ "$(jget rx_tcp "$R")" -gt 0 ] 2>/dev/null &&
			ok "2$v: the receiver got $(jget rx_shm "$R") bytes from the ring, then $(jget rx_tcp "$R") over TCP (sender switches $(jget switches "$E"))" ||
			fail "2$v: counters do not show ring then TCP: rx_shm $(jget rx_shm "$R") (filled $filled), rx_tcp $(jget rx_tcp "$R")"
		domain_empty "$D" "2$v"
	done
fi

# teardown_case N WHAT ARGS... - one nsk_races teardown run with the domain word flipping.
teardown_case()
{
	local n=$1 what=$2 rc c s
	shift 2
	D=$(new_domain)
	flipper "$D" 5 &
	FL=$!
	PIDS+=("$FL")
	timeout -k 2 35 env NEARSOCK_DIR="$D" NEARSOCK_OFFER_TIMEOUT_MS=300 "$NSK" run -- "$RACES" teardown "$@" \
		>"$T/c$n.out" 2>"$T/c$n.err"
	rc=$?
	kill "$FL" 2>/dev/null
	wait "$FL" 2>/dev/null
	c=$(line_of "$T/c$n.out" '"role": "client"')
	s=$(line_of "$T/c$n.out" '"role": "server", "conns"')
	echo "$n: client: $c"
	echo "$n: server: $s"
	grep -v '^{' "$T/c$n.out"
	[ -s "$T/c$n.err" ] && head -8 "$T/c$n.err"
	echo "$n: figures: $(jget conns "$c") connections, $(jget rx_bytes "$c") + $(jget rx_bytes "$s") bytes checked, switches $(jget switches "$c") + $(jget switches "$s"), evacuate/attach calls $(jget pin_calls "$c") + $(jget pin_calls "$s") (ok $(($(jget pin_ok "$c") + $(jget pin_ok "$s"))), ENOTSOCK $(($(jget pin_enotsock "$c") + $(jget pin_enotsock "$s"))), EOPNOTSUPP $(($(jget pin_eopnotsupp "$c") + $(jget pin_eopnotsupp "$s")))), domain flips $(flips "$D")"
	if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
		fail "$n: HANG: nsk_races teardown $* did not finish in 35 s"
	elif [ -z "$c" ] || [ -z "$s" ]; then
		fail "$n: CRASH or no report (exit $rc)"
	fi
	local side l
	for side in client server; do
		l=$([ $side = client ] && echo "$c" || echo "$s")
		[ -n "$l" ] || continue
		[ "$(jget exact "$l")" = "$(jget conns "$l")" ] &&
			ok "$n: $side: every stream ($(jget conns "$l")) ended in EOF after exactly its bytes" ||
			fail "$n: $side: $(jget exact "$l") of $(jget conns "$l") streams exact; first: $(jget first_bad "$l")"
		[ "$(jget pin_other "$l")" = 0 ] || fail "$n: $side: evacuate/attach/fd_path failed with $(jget other_errno "$l") $(jget pin_other "$l") times"
		[ "$(jget leaked_fds "$l")" = 0 ] && [ "$(jget chan_maps_end "$l")" = 0 ] &&
			ok "$n: $side: no channel memfd, TCP socket or mapping left" ||
			fail "$n: $side: LEAK 3 s after the last connection closed: $(jget leaked_fds "$l") channel memfds/TCP sockets still open, $(jget chan_maps_end "$l") channel mappings (see 'still open' above)"
	done
	[ "$rc" = 0 ] || [ "$FAILS" -gt 0 ] || fail "$n: nsk_races exited $rc"
	domain_empty "$D" "$n"
}

# ---------------------------------------------------------------- 3. tear-down
if case_on 3; then
	banner 3 "endpoint removed during tear-down"
	teardown_case 3 "tear-down" --iters 400 --workers 4 --max-bytes 262144 --switch-us 300 --seed 3
fi

# ---------------------------------------------------------------- 4. evacuation vs close
if case_on 4; then
	banner 4 "evacuation racing with close of the same fd"
	teardown_case 4 "close" --iters 1500 --workers 3 --max-bytes 4096 --hammer --seed 4
fi

# ---------------------------------------------------------------- 5. two evacuations at once
if case_on 5; then
	banner 5 "two evacuations at once"
	D=$(new_domain)
	EB=100000000 # 5 s at 20 MB/s
	[ -n "$SAN" ] && EB=300000000 # the rounds below take longer: the pair must outlive them
	bg "$T/c5ag.out" "$T/c5ag.err" timeout -k 2 60 env NEARSOCK_DIR="$D" "$NSK" run -- "$AGILE" \
		--conns 6 --bytes 12M --switch-ms 2 --seed 55 --need-switches
	AGP=$LAST_PID
	bg "$T/c5srv.out" "$T/c5srv.err" env NEARSOCK_DIR="$D" "$NSK" run -- "$ECHO" server --port 0 --conns 1
	SRV=$LAST_PID
	wait_listen "$T/c5srv.out" "$SRV" || fail "5: echo server did not start"
	bg "$T/c5cli.out" "$T/c5cli.err" env NEARSOCK_DIR="$D" "$NSK" run -- "$ECHO" client --port "$PORT" \
		--bytes "$EB" --rate-mbs 20 --seed 5
	CLI=$LAST_PID
	# at_once VERB - VERB the three processes and the domain at the same instant
	at_once()
	{
		local w=() p
		for p in "$SRV" "$CLI" "$AGP" --all; do
			"$NSK" "$1" "$p" --dir "$D" >/dev/null 2>&1 &
			w+=($!)
		done
		wait "${w[@]}"
	}
	rounds=0
	t0=$(now_ms)
	# at least 10 rounds (sanitizer builds run the CLI slowly), for at most 12 s, while the
	# echo pair lives
	while alive "$CLI" && { [ "$rounds" -lt 10 ] || [ $(($(now_ms) - t0)) -lt 3500 ]; } &&
		[ $(($(now_ms) - t0)) -lt 12000 ]; do
		at_once evacuate
		sleep 0.01
		at_once attach
		sleep 0.01
		rounds=$((rounds + 1))
	done
	# Both processes of the echo pair evacuated at once, each waiting for itself.
	"$NSK" evacuate "$SRV" --dir "$D" --wait 10 >"$T/c5w1.out" 2>&1 &
	W1=$!
	"$NSK" evacuate "$CLI" --dir "$D" --wait 10 >"$T/c5w2.out" 2>&1 &
	W2=$!
	wait "$W1"
	r1=$?
	wait "$W2"
	r2=$?
	cat "$T/c5w1.out" "$T/c5w2.out"
	[ "$r1" = 0 ] && [ "$r2" = 0 ] && ok "5: two simultaneous evacuate PID --wait both complete" ||
		fail "5: simultaneous evacuate --wait exited $r1 and $r2"
	"$NSK" attach --all --dir "$D" --wait 10 >"$T/c5w3.out" 2>&1
	r3=$?
	cat "$T/c5w3.out"
	[ "$r3" = 0 ] || fail "5: attach --all --wait 10 exited $r3"
	echo "5: $rounds rounds of 4 simultaneous evacuations then 4 simultaneous attaches"
	[ "$rounds" -ge 10 ] || fail "5: only $rounds rounds ran"
	wait_pid "$AGP" 60
	rc=$?
	cat "$T/c5ag.out"
	[ -s "$T/c5ag.err" ] && head -5 "$T/c5ag.err"
	[ "$rc" = 0 ] && ok "5: nsk_agile pair exact with switches, both paths used" || fail "5: nsk_agile exited $rc"
	wait_pid "$CLI" 30
	rc=$?
	wait_pid "$SRV" 5
	C=$(line_of "$T/c5cli.out" '"role": "client"')
	echo "5: echo client: $C"
	[ "$rc" = 0 ] && [ "$(jget ok "$C")" = 1 ] && [ "$(jget echoed "$C")" = "$EB" ] &&
		ok "5: $EB bytes echoed exactly (tx shm $(jget tx_shm "$C"), tx tcp $(jget tx_tcp "$C"))" ||
		fail "5: echo not exact (rc $rc): $C $(head -3 "$T/c5cli.err")"
	gt "$(jget tx_tcp "$C")" 0 && gt "$(jget tx_shm "$C")" 0 || fail "5: the echo client did not use both paths"
	domain_empty "$D" "5"
fi

# ---------------------------------------------------------------- 6. agent restart
if case_on 6; then
	banner 6 "the agent restarting mid-operation"
	D=$(new_domain)
	NAG=0
	start_agent()
	{
		NAG=$((NAG + 1))
		bg "$T/agent$NAG.out" "$T/agent$NAG.err" "$AGENT" --dir "$D" --interval 20 --json
		AGP=$LAST_PID
	}
	# kill_agent - SIGKILL the running agent; a FAIL if it had died by itself (a crash).
	kill_agent()
	{
		if ! alive "$AGP"; then
			wait_pid "$AGP" 1
			fail "6: agent $NAG (pid $AGP) CRASHED before its SIGKILL: exit status $? (135 = SIGBUS, 139 = SIGSEGV); stderr: $(head -3 "$T/agent$NAG.err")"
		fi
		kill -9 "$AGP" 2>/dev/null
	}
	joined() { grep -q "\"event\": \"join\".*\"pid\": $2\b" "$T/agent$1.out"; }
	start_agent
	EB=200000000 # 10 s at 20 MB/s
	CLIS=() SRVS=()
	for k in 1 2; do
		bg "$T/c6srv$k.out" "$T/c6srv$k.err" env NEARSOCK_DIR="$D" "$NSK" run -- "$ECHO" server --port 0 --conns 1
		SRVS+=("$LAST_PID")
		wait_listen "$T/c6srv$k.out" "$LAST_PID" || fail "6: echo server $k did not start"
		bg "$T/c6cli$k.out" "$T/c6cli$k.err" env NEARSOCK_DIR="$D" "$NSK" run -- "$ECHO" client \
			--port "$PORT" --bytes "$EB" --rate-mbs 20 --seed $((60 + k))
		CLIS+=("$LAST_PID")
	done
	# A process that dies leaving its table, entry and rendezvous socket behind.
	bg "$T/c6dead.out" "$T/c6dead.err" env NEARSOCK_DIR="$D" "$NSK" run -- "$ECHO" server --port 0 --conns 1
	DEAD=$LAST_PID
	wait_listen "$T/c6dead.out" "$DEAD" || fail "6: second server did not start"
	for p in "${SRVS[@]}" "${CLIS[@]}"; do
		wait_until 5 joined 1 "$p" || fail "6: first agent saw no join of $p"
	done
	on_ring() { [ "$(status_conns "$D" | grep -c '"mode": "shm".*"tx_path": "ring"')" = 4 ]; }
	wait_until 5 on_ring || fail "6: the four ends did not reach the ring: $(status_conns "$D")"
	# Evacuate while the agent dies twice and comes back.
	"$NSK" evacuate --all --wait 15 --dir "$D" >"$T/c6ev.out" 2>&1 &
	EV=$!
	sleep 0.0$((RANDOM % 9 + 1))
	kill_agent
	kill -9 "$DEAD" # no agent runs: its leftovers wait for a restarted one
	start_agent
	sleep 0.0$((RANDOM % 9 + 1))
	kill_agent
	start_agent
	wait "$EV"
	rc=$?
	cat "$T/c6ev.out"
	[ "$rc" = 0 ] && ok "6: evacuate --all --wait completed across two agent SIGKILLs" ||
		fail "6: evacuate --all --wait exited $rc with the agent killed meanwhile"
	for p in "${SRVS[@]}" "${CLIS[@]}"; do
		wait_until 5 joined "$NAG" "$p" || fail "6: restarted agent $NAG reported no join of live $p"
	done
	# (the outcome is checked below: the table is gone; the agent that collected it may have
	# been killed before its buffered "gc" event line reached the file)
	wait_until 5 grep -q "\"event\": \"gc\"" "$T/agent2.out" "$T/agent3.out" &&
		echo "6: a restarted agent reported collecting the killed server's leftovers"
	wait_until 5 test ! -e "$D/proc-$DEAD" || fail "6: the killed server's table is still there"
	ls "$D" | grep -q "^rv-$DEAD-" && fail "6: the killed server's rendezvous socket is still there"
	sleep 0.3
	declare -A tcp1
	while read -r l; do tcp1[$(jget pid "$l")]=$(jget tx_tcp_bytes "$l"); done < <(status_conns "$D")
	# Attach while the agent dies again.
	"$NSK" attach --all --wait 15 --dir "$D" >"$T/c6at.out" 2>&1 &
	AT=$!
	sleep 0.0$((RANDOM % 9 + 1))
	kill_agent
	start_agent
	wait "$AT"
	rc=$?
	cat "$T/c6at.out"
	[ "$rc" = 0 ] && ok "6: attach --all --wait completed across an agent SIGKILL" ||
		fail "6: attach --all --wait exited $rc"
	for p in "${SRVS[@]}" "${CLIS[@]}"; do
		wait_until 5 joined "$NAG" "$p" || fail "6: restarted agent $NAG reported no join of live $p"
	done
	st=$("$NSK" status --json --dir "$D")
	echo "$st" | grep -q '^  "want_tcp": 0,' || fail "6: domain still evacuated after attach: $(echo "$st" | grep want_tcp | head -3)"
	on_ring && ok "6: status: all four ends back on the ring" || fail "6: not all on the ring after attach: $(status_conns "$D")"
	for k in 0 1; do
		wait_pid "${CLIS[$k]}" 30
		rc=$?
		C=$(line_of "$T/c6cli$((k + 1)).out" '"role": "client"')
		echo "6: client $((k + 1)): $C"
		[ "$rc" = 0 ] && [ "$(jget ok "$C")" = 1 ] && [ "$(jget echoed "$C")" = "$EB" ] &&
			ok "6: client $((k + 1)): $EB bytes echoed exactly (tcp $(jget tx_tcp "$C"), shm $(jget tx_shm "$C"))" ||
			fail "6: client $((k + 1)) not exact (rc $rc): $C"
		gt "$(jget tx_tcp "$C")" 0 || fail "6: client $((k + 1)) never sent over TCP"
	done
	for p in "${SRVS[@]}"; do
		wait_pid "$p" 10 || fail "6: echo server $p exited $?"
	done
	for p in "${SRVS[@]}" "${CLIS[@]}"; do
		wait_until 5 grep -q "\"event\": \"leave\".*\"pid\": $p\b" "$T/agent$NAG.out" ||
			fail "6: agent $NAG reported no leave of $p"
	done
	alive "$AGP" || kill_agent
	kill -TERM "$AGP"
	wait_pid "$AGP" 5 || fail "6: the last agent did not exit 0 on SIGTERM"
	echo "6: $((NAG - 1)) agent SIGKILLs, $NAG agents; events of the last one:"
	cat "$T/agent$NAG.out"
	domain_empty "$D" "6"
fi

echo "races: $(( ($(now_ms) - T_START) / 1000 )) s"
finish
