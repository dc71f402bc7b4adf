#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# vm_netns.sh CASE — the ivshmem domain backend on the host: two network namespaces joined by a
# veth pair play two VMs (each its own NEARSOCK_DIR, so no local domain is shared), both with
# NEARSOCK_DOMAIN=ivshmem:FILE on one region file formatted by `nearsock vm init`.
#   stream   64 MiB each way, byte-checked: both sides on shared memory (mode shm, >= 95 % of the
#            bytes through the rings; the TCP bytes are those sent before the server's claim),
#            the veth carried < 5 % of them; the channel's chunks come
#            back when the connection closes (`nearsock vm status --json`)
#   kill     SIGKILL of the client mid-stream: the server sees the end within 1 s; after the
#            region's dead time a third member (an idle listener) has reclaimed the dead
#            member's chunks and slot. Then SIGKILL of a server: its client fails within 1 s
#            and the dead server's listener entry is reclaimed.
#   hostile  a writer scribbles over the rings, then the region header, while a stream runs:
#            both sides end (reset, EOF or a detected mismatch) within the time limit, neither
#            crashes; a second stream afterwards stays on TCP (the region is stale)
#   plain    a peer without the region (client, then server) keeps the connection on TCP
#   migrate  a VM migrating out and back, under load (a paced 2-way stream B -> A): evacuate
#            B's client (`nearsock evacuate`): both sides retire the region channel and drop
#            it, the veth carries the stream; the region goes away under the running members
#            (reformatted: their memberships vanish, as a migrated VM's does with its device)
#            and comes back: the stream goes on over the veth untouched, all four members
#            join again; `nearsock attach`: fresh channels, the veth falls quiet; every byte
#            echoed exactly, both paths carried data. A second, mostly idle connection (its
#            server blocked in recv most of the time) goes the same way
#   latency  64-byte ping-pong over the region and over the veth (figures printed), and the CPU a
#            server blocked on an idle region connection burns while it polls (bounded)
# Needs root for `ip netns`; skips (77) otherwise.
. "$(dirname "$0")/lib.sh"

CASE=${1:-stream}
command -v python3 >/dev/null || skip "no python3"
netns_pair nsk-iv 79
R=/dev/shm/nsk-ivs-test-$$
CLEANUPS+=("rm -f $R")
DA=$(new_domain)
DB=$(new_domain)
# A killed peer must be noticed within 1 s (issue); sanitizer builds run several times
# slower (ThreadSanitizer once took 1.3 s): 3 s there.
DEATH_MS=1000
ldd "$LIB" 2>/dev/null | grep -q -E 'lib(a|t)san' && DEATH_MS=3000
"$NSK" vm init "$R" --size 16M --beat-ms 50 --dead-ms 1000 >"$T/init.out" 2>&1 ||
	{ fail "vm init: $(cat "$T/init.out")"; finish; }
RG="NEARSOCK_DOMAIN=ivshmem:$R"

inAx() { ip netns exec "$A" env NEARSOCK_DIR="$DA" "$@"; }
inBx() { ip netns exec "$Bn" env NEARSOCK_DIR="$DB" "$@"; }
veth_bytes() { inA cat /sys/class/net/veth-a/statistics/tx_bytes /sys/class/net/veth-a/statistics/rx_bytes | awk '{ s += $1 } END { print s }'; }
status_json() { "$NSK" vm status "$R" --json >"$T/$1.json" 2>"$T/$1.err"; }
# jq-free JSON checks
pyj() { python3 - "$T/$1.json" "$2"; }

# server NAME [ARGS] - a preloaded echo server with the region in namespace A; sets SRV, PORT.
server()
{
	local n=$1
	shift
	bg "$T/$n.out" "$T/$n.err" ip netns exec "$A" env NEARSOCK_DIR="$DA" $RG "$NSK" run -- \
		"$ECHO" server --addr 0.0.0.0 --port 0 "$@"
	SRV=$LAST_PID
	wait_listen "$T/$n.out" "$SRV" || { fail "$n did not start"; finish; }
}

case "$CASE" in
stream)
	BYTES=$((64 << 20))
	server s1 --conns 1
	V0=$(veth_bytes)
	timeout -k 2 60 ip netns exec "$Bn" env NEARSOCK_DIR="$DB" $RG "$NSK" run -- "$ECHO" client \
		--addr "$NET.1" --port "$PORT" --bytes "$BYTES" >"$T/c.out" 2>"$T/c.err"
	rc=$?
	wait_pid "$SRV" 10
	V1=$(veth_bytes)
	cat "$T/c.out" "$T/s1.out" "$T/c.err" "$T/s1.err"
	C=$(line_of "$T/c.out" '"role": "client"')
	S=$(line_of "$T/s1.out" '"role": "server"')
	[ "$rc" = 0 ] && [ "$(jget ok "$C")" = 1 ] || fail "transfer failed (rc $rc)"
	for L in "$C" "$S"; do
		[ "$(jget mode "$L")" = 2 ] || fail "mode $(jget mode "$L"), expected 2 (shm): $L"
		P=$(pct "$(jget tx_shm "$L")" "$BYTES")
		gt "$P" 95 || fail "only $P % sent through the ring: $L"
	done
	VB=$((V1 - V0))
	echo "veth carried $VB bytes for $((2 * BYTES)) bytes of stream ($(pct "$VB" $((2 * BYTES))) %)"
	[ "$VB" -lt $((2 * BYTES / 20)) ] || fail "the veth carried $VB bytes"
	status_json after
	pyj after chunks <<'PY' && ok "chunks given back, no member left" || fail "region after: $(cat "$T/after.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["chunks"]["used"] == 0, d["chunks"]
assert d["offers"]["posted"] == 0 and d["offers"]["claimed"] == 0, d["offers"]
PY
	;;
kill)
	# an idle third member (listener on another port) beats and reaps
	server w --conns 1
	W=$SRV
	WPORT=$PORT
	server s1 --conns 1
	timeout -k 2 30 ip netns exec "$Bn" env NEARSOCK_DIR="$DB" $RG "$NSK" run -- "$ECHO" client \
		--addr "$NET.1" --port "$PORT" --bytes $((1 << 30)) --rate-mbs 100 >"$T/c.out" 2>"$T/c.err" &
	CPID=$!
	PIDS+=("$CPID")
	sleep 1
	status_json mid
	pyj mid x <<'PY' || fail "no channel in the region mid-stream: $(cat "$T/mid.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["chunks"]["used"] > 0, d["chunks"]
PY
	# the client program itself (timeout -> ip netns exec -> env -> nearsock run exec)
	K=$(pgrep -P "$CPID" -f "nsk_echo client" || pgrep -f "nsk_echo client --addr $NET.1 --port $PORT" | head -1)
	t0=$(now_ms)
	kill -9 "$K" 2>/dev/null
	wait_until 3 grep -q '"role": "server"' "$T/s1.out"
	dt=$(($(now_ms) - t0))
	cat "$T/s1.out" "$T/s1.err"
	S=$(line_of "$T/s1.out" '"role": "server"')
	[ -n "$S" ] || fail "server did not see the end of the killed client's connection"
	[ "$(jget mode "$S")" = 2 ] || [ "$(jget mode "$S")" = 4 ] || fail "server connection was not on shm: $S"
	[ "$dt" -le "$DEATH_MS" ] && ok "server saw the client's death after $dt ms" || fail "server took $dt ms"
	wait_pid "$SRV" 5
	sleep 2.5 # dead time 1 s, observed by the idle member's reaper
	status_json reaped
	pyj reaped x <<'PY' && ok "dead client's chunks and slot reclaimed" || fail "after reclaim: $(cat "$T/reaped.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["chunks"]["used"] == 0, d["chunks"]
live = [m for m in d["members"] if m["state"] == "live"]
assert len(live) == 1, d["members"]
assert d["offers"]["posted"] == 0, d["offers"]
PY
	# now the server dies
	server s2 --conns 1
	S2=$SRV
	P2=$PORT
	bg "$T/c2.out" "$T/c2.err" ip netns exec "$Bn" env NEARSOCK_DIR="$DB" $RG "$NSK" run -- "$ECHO" client \
		--addr "$NET.1" --port "$P2" --bytes $((1 << 30)) --rate-mbs 100
	C2=$LAST_PID
	sleep 1
	t0=$(now_ms)
	kill -9 "$S2"
	wait_pid "$C2" 5
	rc=$?
	dt=$(($(now_ms) - t0))
	cat "$T/c2.out" "$T/c2.err"
	C=$(line_of "$T/c2.out" '"role": "client"')
	[ "$rc" != 124 ] && [ "$rc" -lt 128 ] || fail "client rc $rc"
	[ "$(jget ok "$C")" = 0 ] && [ -n "$(jget error "$C")" ] || fail "client did not report an error: $C"
	[ "$dt" -le "$DEATH_MS" ] && ok "client saw the server's death after $dt ms ($(jget error "$C"))" ||
		fail "client took $dt ms"
	sleep 2.5
	status_json reaped2
	pyj reaped2 "$P2" <<'PY' && ok "dead server's listener reclaimed" || fail "after reclaim: $(cat "$T/reaped2.json")"
import json, sys
d = json.load(open(sys.argv[1]))
ports = [l["port"] for l in d["listeners"]]
assert int(sys.argv[2]) not in ports, d["listeners"]
assert d["chunks"]["used"] == 0, d["chunks"]
PY
	kill "$W" 2>/dev/null
	;;
hostile)
	server s1 --conns 2
	bg "$T/c.out" "$T/c.err" ip netns exec "$Bn" env NEARSOCK_DIR="$DB" $RG "$NSK" run -- "$ECHO" client \
		--addr "$NET.1" --port "$PORT" --bytes $((1 << 30)) --rate-mbs 200
	C1=$LAST_PID
	sleep 1
	python3 - "$R" <<'PY'
import mmap, os, random, sys, time, json, subprocess
f = open(sys.argv[1], "r+b")
m = mmap.mmap(f.fileno(), 0)
data_off = 589824  # where `nearsock vm init --size 16M` puts the chunks
end = time.time() + 0.5
while time.time() < end:  # rings and channel headers
    o = random.randrange(data_off, len(m) - 64)
    m[o:o + 64] = os.urandom(64)
    time.sleep(0.0005)
m[0:512] = os.urandom(512)  # the region header
m.flush()
PY
	wait_pid "$C1" 10
	rc=$?
	cat "$T/c.out" "$T/c.err"
	[ "$rc" != 124 ] || fail "client hung"
	[ "$rc" -lt 128 ] || fail "client died of a signal (rc $rc)"
	C=$(line_of "$T/c.out" '"role": "client"')
	[ -n "$C" ] && ok "client ended: error '$(jget error "$C")' ok $(jget ok "$C")" || fail "client printed nothing"
	grep -qE 'AddressSanitizer|runtime error' "$T/c.err" "$T/s1.err" && fail "sanitizer report"
	# a new connection: the region is stale for both, so TCP
	timeout -k 2 30 ip netns exec "$Bn" env NEARSOCK_DIR="$DB" $RG "$NSK" run -- "$ECHO" client \
		--addr "$NET.1" --port "$PORT" --bytes $((4 << 20)) >"$T/c2.out" 2>"$T/c2.err"
	rc=$?
	C=$(line_of "$T/c2.out" '"role": "client"')
	[ "$rc" = 0 ] && [ "$(jget ok "$C")" = 1 ] || fail "a stream after the scribbling failed: $C $(cat "$T/c2.err")"
	wait_pid "$SRV" 10
	rc=$?
	cat "$T/s1.out" "$T/s1.err"
	[ "$rc" != 124 ] && [ "$rc" -lt 128 ] || fail "server rc $rc"
	grep -qE 'AddressSanitizer|runtime error' "$T/s1.err" && fail "sanitizer report in the server"
	;;
plain)
	BYTES=$((8 << 20))
	server s1 --conns 1
	timeout -k 2 30 ip netns exec "$Bn" env NEARSOCK_DIR="$DB" "$NSK" run -- "$ECHO" client \
		--addr "$NET.1" --port "$PORT" --bytes "$BYTES" >"$T/c.out" 2>"$T/c.err"
	rc=$?
	wait_pid "$SRV" 10
	C=$(line_of "$T/c.out" '"role": "client"')
	S=$(line_of "$T/s1.out" '"role": "server"')
	echo "$C"
	echo "$S"
	[ "$rc" = 0 ] && [ "$(jget ok "$C")" = 1 ] || fail "client without the region: transfer failed"
	for L in "$C" "$S"; do
		[ "$(jget mode "$L")" = 3 ] && [ "$(jget tx_shm "$L")" = 0 ] || fail "client without the region: $L"
	done
	bg "$T/s2.out" "$T/s2.err" ip netns exec "$A" env NEARSOCK_DIR="$DA" "$NSK" run -- \
		"$ECHO" server --addr 0.0.0.0 --port 0 --conns 1
	SRV=$LAST_PID
	wait_listen "$T/s2.out" "$SRV" || { fail "s2 did not start"; finish; }
	timeout -k 2 30 ip netns exec "$Bn" env NEARSOCK_DIR="$DB" $RG "$NSK" run -- "$ECHO" client \
		--addr "$NET.1" --port "$PORT" --bytes "$BYTES" >"$T/c2.out" 2>"$T/c2.err"
	rc=$?
	wait_pid "$SRV" 10
	C=$(line_of "$T/c2.out" '"role": "client"')
	S=$(line_of "$T/s2.out" '"role": "server"')
	echo "$C"
	echo "$S"
	[ "$rc" = 0 ] && [ "$(jget ok "$C")" = 1 ] || fail "server without the region: transfer failed"
	for L in "$C" "$S"; do
		[ "$(jget mode "$L")" = 3 ] && [ "$(jget tx_shm "$L")" = 0 ] || fail "server without the region: $L"
	done
	;;
migrate)
	BYTES=$((320 << 20))
	SLOW=$((1 << 20))
	server s1 --conns 1
	S1=$SRV
	bg "$T/c.out" "$T/c.err" ip netns exec "$Bn" env NEARSOCK_DIR="$DB" $RG "$NSK" run -- \
		"$ECHO" client --addr "$NET.1" --port "$PORT" --bytes "$BYTES" --rate-mbs 20
	CLI=$LAST_PID
	# a mostly idle connection too: 4 KiB every 60 ms, its server blocked in recv meanwhile
	server s2 --conns 1
	S2=$SRV
	bg "$T/c2.out" "$T/c2.err" ip netns exec "$Bn" env NEARSOCK_DIR="$DB" $RG "$NSK" run -- \
		"$ECHO" client --addr "$NET.1" --port "$PORT" --bytes "$SLOW" --chunk 4096 --rate-mbs 0.07
	CLI2=$LAST_PID
	SRV=$S1
	# path_of PID DIR - the sending path (ring|tcp) and mode of PID's connection end
	path_of() {
		"$NSK" status --dir "$2" --json | tr -d '\n' | sed 's/}, *{/}\n{/g' | grep "\"pid\": $1," |
			grep -o '"mode": "[a-z-]*"\|"tx_path": "[a-z]*"' | sed 's/.*: "\(.*\)"/\1/' | tr '\n' ' '
	}
	veth_rate() {
		local b0 b1
		b0=$(veth_bytes)
		sleep 1
		b1=$(veth_bytes)
		echo $((b1 - b0))
	}
	sleep 1
	p=$(path_of "$CLI" "$DB")
	r=$(veth_rate)
	echo "1. co-resident: client $p, veth $r B/s"
	case "$p" in *ring*) ;; *) fail "1: not on the region's rings ($p)" ;; esac
	[ "$r" -lt $((2 << 20)) ] || fail "1: the veth carried $r B/s while on the rings"
	"$NSK" evacuate --all --dir "$DB" --wait 5 >"$T/ev.out" 2>&1 || fail "2: evacuate: $(cat "$T/ev.out")"
	wait_until 3 sh -c "! \"$NSK\" vm status \"$R\" --json | grep -q '\"used\": [1-9]'"
	status_json evac
	p=$(path_of "$CLI" "$DB")
	ps=$(path_of "$SRV" "$DA")
	r=$(veth_rate)
	echo "2. evacuated: client $p, server $ps, veth $r B/s"
	case "$p $ps" in *ring*) fail "2: still on the rings" ;; esac
	[ "$r" -gt $((8 << 20)) ] || fail "2: the veth carried only $r B/s after the evacuation"
	pyj evac x <<'PY' || fail "2: the channel was not dropped: $(cat "$T/evac.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["chunks"]["used"] == 0 and d["offers"]["posted"] == 0, (d["chunks"], d["offers"])
PY
	"$NSK" vm init "$R" --size 16M --beat-ms 50 --dead-ms 1000 --force >"$T/re.out" 2>&1 ||
		fail "3: reformatting the region: $(cat "$T/re.out")"
	# all four members join again (the heartbeat thread retries every 0.5 s)
	live4() { "$NSK" vm status "$R" --json | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(sum(m.get("state") == "live" for m in d["members"]) != 4)'; }
	wait_until 5 live4
	status_json rejoined
	r=$(veth_rate)
	p=$(path_of "$CLI" "$DB")
	echo "3. region gone and back: client $p, veth $r B/s"
	pyj rejoined x <<'PY' || fail "3: members did not join again: $(cat "$T/rejoined.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert sum(m.get("state") == "live" for m in d["members"]) == 4, d["members"]
PY
	[ "$r" -gt $((8 << 20)) ] || fail "3: the stream stalled while the region was away ($r B/s)"
	kill -0 "$CLI" 2>/dev/null || fail "3: the client ended early: $(cat "$T/c.out" "$T/c.err")"
	"$NSK" attach --all --dir "$DB" --wait 8 >"$T/at.out" 2>&1 || fail "4: attach: $(cat "$T/at.out")"
	sleep 0.3
	p=$(path_of "$CLI" "$DB")
	ps=$(path_of "$SRV" "$DA")
	r=$(veth_rate)
	echo "4. attached: client $p, server $ps, veth $r B/s"
	case "$p" in *ring*) ;; *) fail "4: not back on the rings ($p)" ;; esac
	[ "$r" -lt $((2 << 20)) ] || fail "4: the veth still carried $r B/s after the attach"
	wait_pid "$CLI" 60 || fail "client did not finish"
	wait_pid "$SRV" 10 || fail "server did not finish"
	cat "$T/c.out" "$T/s1.out"
	grep -i "warn\|error" "$T/c.err" "$T/s1.err" | head -5
	C=$(line_of "$T/c.out" '"role": "client"')
	[ "$(jget ok "$C")" = 1 ] || fail "5: the stream was not echoed exactly: $C"
	[ "$(jget mode "$C")" = 2 ] || fail "5: the client did not end on shared memory: $C"
	[ "$(jget tx_shm "$C")" -gt $((16 << 20)) ] && [ "$(jget tx_tcp "$C")" -gt $((16 << 20)) ] ||
		fail "5: both paths should have carried data: $C"
	wait_pid "$CLI2" 30 || fail "the slow client did not finish"
	wait_pid "$S2" 10 || fail "the slow server did not finish"
	C2=$(line_of "$T/c2.out" '"role": "client"')
	echo "slow connection: $C2"
	[ "$(jget ok "$C2")" = 1 ] || fail "5: the slow stream was not echoed exactly: $C2 $(cat "$T/c2.err")"
	[ "$(jget mode "$C2")" = 2 ] || fail "5: the slow connection did not end on shared memory: $C2"
	[ "$FAILS" -eq 0 ] && ok "migrated out (region gone) and back under load: $BYTES bytes echoed exactly, $(jget tx_shm "$C") B sent through the region, $(jget tx_tcp "$C") B over the veth"
	;;
latency)
	PP=$B/nsk_pingpong
	[ -x "$PP" ] || skip "$PP not built"
	for mode in region tcp; do
		E=$RG
		[ "$mode" = tcp ] && E="NEARSOCK_DISABLE=1"
		bg "$T/p$mode.out" "$T/p$mode.err" ip netns exec "$A" env NEARSOCK_DIR="$DA" $E "$NSK" run -- \
			"$PP" server --addr 0.0.0.0 --port 0
		SRV=$LAST_PID
		wait_listen "$T/p$mode.out" "$SRV" || { fail "pingpong server did not start"; finish; }
		timeout -k 2 30 ip netns exec "$Bn" env NEARSOCK_DIR="$DB" $E "$NSK" run -- "$PP" client \
			--addr "$NET.1" --port "$PORT" --seconds 1 --idle-ms 1000 >"$T/c$mode.out" 2>"$T/c$mode.err"
		rc=$?
		wait_pid "$SRV" 10
		C=$(line_of "$T/c$mode.out" '"role": "client"')
		S=$(line_of "$T/p$mode.out" '"role": "server"')
		echo "$mode: $C"
		echo "$mode: $S"
		[ "$rc" = 0 ] && [ -n "$C" ] || fail "$mode ping-pong failed: $(cat "$T/c$mode.err")"
		if [ "$mode" = region ]; then
			[ "$(jget mode "$C")" = 2 ] || fail "region ping-pong not on shm: $C"
			gt 10 "$(jget idle_cpu_pct "$S")" || fail "idle server burned $(jget idle_cpu_pct "$S") % of a CPU"
		fi
	done
	echo "round trip (64 B, median): region $(jget rtt_median_us "$(line_of "$T/cregion.out" client)") us," \
		"veth TCP $(jget rtt_median_us "$(line_of "$T/ctcp.out" client)") us;" \
		"idle region server: $(jget idle_cpu_pct "$(line_of "$T/pregion.out" server)") % of a CPU"
	;;
*)
	fail "unknown case $CASE"
	;;
esac
finish
