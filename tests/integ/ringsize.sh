#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# ringsize.sh — dynamic proportional ring memory (issue: seamless agility).
#
# nsk_ringsize opens 16 connections under `nearsock run`; 2 stream checked data both ways,
# 14 stay idle (blocking reads with a timeout), then all idle for a while. From
# `nearsock status --json` (each side's sending-ring capacity per connection):
#   1. busy connections' rings grew past the initial 64 KiB (both directions), idle ones
#      shrank to the 16 KiB minimum, while the streams run;
#   2. once everything idles, every ring is back at the minimum;
#   3. the domain's memory account (mem_used) equals the sum of the connections' charges, and
#      is 0 when the connections are closed;
#   4. with a domain budget (NEARSOCK_MEM_BUDGET) too small for every ring to grow, the
#      account never exceeds it, memory pressure is raised, and the streams still arrive
#      exact;
# and in every case every byte echoed is the byte sent.
. "$(dirname "$0")/lib.sh"

RS=$B/nsk_ringsize
[ -x "$RS" ] || skip "$RS not built"
command -v python3 >/dev/null || skip "python3 (JSON parsing) not installed"

# rings D PORTS_FILE - "busy_min busy_max idle_min idle_max mem_used charged pressure" over
# both sides of the client's connections (sending-ring capacities in KiB).
rings()
{
	NEARSOCK_DIR=$1 "$NSK" status --json 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)
ports = {}
for line in open(sys.argv[1]):
    try:
        o = json.loads(line)
    except ValueError:
        continue
    if "conn" in o:
        ports[o["port"]] = o["busy"]
busy, idle, charged = [], [], 0
for c in d.get("connections", []):
    charged += c.get("mem_charged", 0)
    p = int(c["local"].rsplit(":", 1)[1]) if c["role"] == "client" else int(c["remote"].rsplit(":", 1)[1])
    if p not in ports or c["mode"] != "shm" or c["tx_path"] != "ring":
        continue
    (busy if ports[p] else idle).append(c["tx_ring_kb"])
f = lambda l, g: g(l) if l else -1
print(f(busy, min), f(busy, max), f(idle, min), f(idle, max), d["mem_used"], charged, d.get("mem_pressure", 0), len(busy), len(idle))
' "$2"
}

# round NAME BUDGET SECONDS LINGER - one client/server pair; checks as described above.
round()
{
	local name=$1 budget=$2 secs=$3 linger=$4 D SRV CLI r t0 maxused=0 pressure=0
	D=$(new_domain)
	local envs=(NEARSOCK_DIR="$D")
	[ "$budget" = 0 ] || envs+=(NEARSOCK_MEM_BUDGET="$budget")
	bg "$T/$name.srv.out" "$T/$name.srv.err" env "${envs[@]}" "$NSK" run -- "$RS" server
	SRV=$LAST_PID
	wait_listen "$T/$name.srv.out" "$SRV" || { fail "$name: server did not start"; return; }
	bg "$T/$name.cli.out" "$T/$name.cli.err" env "${envs[@]}" "$NSK" run -- "$RS" client \
		--port "$PORT" --conns 16 --busy 2 --seconds "$secs" --linger "$linger"
	CLI=$LAST_PID
	wait_until 10 line_of "$T/$name.cli.out" '"phase": "busy"' >/dev/null ||
		{ fail "$name: client did not start its streams"; cat "$T/$name.cli.err"; return; }
	# sample the account while the streams run (last sample: near their end)
	t0=$(now_ms)
	while [ $(($(now_ms) - t0)) -lt $((secs * 1000 - 400)) ]; do
		r=$(rings "$D" "$T/$name.cli.out")
		read -r _ _ _ _ used _ pr _ _ <<<"$r"
		[ "$used" -gt "$maxused" ] && maxused=$used
		[ "$pr" = 1 ] && pressure=1
		sleep 0.2
	done
	local busy_lo busy_hi idle_lo idle_hi charged nb ni
	read -r busy_lo busy_hi idle_lo idle_hi used charged _ nb ni <<<"$r"
	echo "$name streaming: busy rings ${busy_lo}..${busy_hi} KiB, idle ${idle_lo}..${idle_hi} KiB" \
		"($nb busy and $ni idle directions on shm); mem_used $used B (max $maxused), charged $charged B"
	[ "$nb" = 4 ] && [ "$ni" -ge 24 ] || fail "$name: expected 4 busy and 28 idle directions sending through shared memory, got $nb and $ni"
	if [ "$budget" = 0 ]; then
		gt "$busy_lo" 64 || fail "$name: busy rings did not grow past 64 KiB (smallest $busy_lo KiB)"
		[ "$idle_hi" = 16 ] || fail "$name: idle rings did not shrink to 16 KiB (largest $idle_hi KiB)"
	else
		gt "$maxused" "$budget" && fail "$name: memory account $maxused B exceeded the budget $budget B"
		[ "$pressure" = 1 ] || fail "$name: memory pressure was never raised at a budget of $budget B"
	fi
	wait_until 10 line_of "$T/$name.cli.out" '"phase": "linger"' >/dev/null ||
		{ fail "$name: streams did not end"; return; }
	echo "$name: $(line_of "$T/$name.cli.out" '"phase": "linger"')"
	sleep 1.5 # > 2 quiet ticks of 250 ms, plus the 1 s bound of idle sleeps
	read -r busy_lo busy_hi idle_lo idle_hi used charged _ nb ni <<<"$(rings "$D" "$T/$name.cli.out")"
	echo "$name lingering: busy rings ${busy_lo}..${busy_hi} KiB, idle ${idle_lo}..${idle_hi} KiB; mem_used $used B, charged $charged B"
	# (compared now, while nothing changes: status reads the two without a snapshot)
	[ "$used" = "$charged" ] || fail "$name: domain account $used B differs from the connections' charges $charged B"
	[ "$busy_hi" = 16 ] && [ "$idle_hi" = 16 ] ||
		fail "$name: rings not back at 16 KiB once idle (busy up to $busy_hi, idle up to $idle_hi KiB)"
	wait_pid "$CLI" 30
	r=$?
	[ "$r" = 0 ] || { fail "$name: client exit $r"; head -5 "$T/$name.cli.err"; }
	[ "$(jget ok "$(line_of "$T/$name.cli.out" '"ok"')")" = 1 ] || fail "$name: data not echoed exactly"
	wait_until 5 bash -c "[ \"\$(NEARSOCK_DIR='$D' '$NSK' status --json | sed -n 's/.*\"mem_used\": \\([0-9]*\\).*/\\1/p')\" = 0 ]" ||
		fail "$name: memory still charged after every connection closed"
	kill "$SRV" 2>/dev/null
	wait_pid "$SRV" 5 >/dev/null
}

round dynamic 0 3 3
# 16 connections start with ~132 KiB each (header page and two 64 KiB rings): 2.1 MiB. A
# 3 MiB budget leaves room for little growth.
round budget $((3 << 20)) 3 3
finish
