#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# agent.sh — the host agent nearsockd and the evacuate/attach/metrics commands.
#   1. `nearsockd --once --mem-budget 64M --metrics-file F` on an empty domain: exit 0, the
#      budget in the registry (metrics and status), a metrics file in the Prometheus text
#      format (every sample `name{labels} value` or `name value` with a numeric value, HELP and
#      TYPE before each family) and 0 processes;
#   2. a background agent (--json, 100 ms interval) sees an echo server and a client join;
#      its metrics file counts them; `nearsock metrics` prints the same families;
#   3. `nearsock evacuate PID` / `attach PID` / `evacuate --all` / `attach --all` set the
#      request words (shown by `nearsock status --json`) and bump their generation; an
#      unknown pid exits 1 with a message;
#   4. kill -9 of the server: a leave event, and after the agent's pass its registry entry,
#      table and rendezvous socket are gone; the client's end is a leave too;
#   5. SIGTERM: the agent exits 0 with a stop event;
#   6. end to end: a paced echo transfer; `evacuate --all --wait 5` exits 0 and every connection
#      end is off the ring with its switch count grown; TCP carries data meanwhile;
#      `attach --all --wait 5` exits 0 and every end is back on the ring; every byte echoed
#      exactly.
. "$(dirname "$0")/lib.sh"

AGENT=$B/nearsockd
[ -x "$AGENT" ] || skip "$AGENT not built"

# prom_check FILE - the file is Prometheus text: prints what is wrong, returns 1 then.
prom_check()
{
	awk '
	/^# (HELP|TYPE) / { if ($2 == "TYPE") typed[$3] = 1; next }
	/^#/ || /^$/ { next }
	{
		if ($0 !~ /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"]*")*\})? -?[0-9][0-9.eE+-]*$/) {
			print "bad sample line: " $0; bad = 1; next
		}
		name = $1; sub(/\{.*/, "", name)
		if (!(name in typed)) { print "no TYPE before " name; bad = 1 }
		n++
	}
	END { if (n == 0) { print "no samples"; bad = 1 } exit bad }' "$1"
}
# prom_val FILE SERIES - the value of one sample (SERIES as written, labels included).
prom_val() { awk -v s="$2" '$1 == s { print $2; exit }' "$1"; }

# status_proc DIR PID - the process line of `nearsock status --json`.
status_proc() { "$NSK" status --json --dir "$1" | grep "\"pid\": $2, \"offers_sent\""; }
# status_top DIR KEY - a top-level number of `nearsock status --json`.
status_top() { "$NSK" status --json --dir "$1" | sed -n "s/^  \"$2\": \([0-9]*\),/\1/p"; }
# status_conns DIR - the connection lines of `nearsock status --json`.
status_conns() { "$NSK" status --json --dir "$1" | grep '"role": "'; }
has_event() { grep -q "\"event\": \"$1\".*\"pid\": $2\b" "$T/agent.out"; }
prom_is() { [ "$(prom_val "$1" "$2")" = "$3" ]; }

# ---- 1. one pass on an empty domain
D=$(new_domain)
"$AGENT" --dir "$D" --once --mem-budget 64M --metrics-file "$T/once.prom" >"$T/once.out" 2>&1
rc=$?
cat "$T/once.out"
[ "$rc" = 0 ] || fail "nearsockd --once exited with $rc"
if [ -s "$T/once.prom" ]; then
	prom_check "$T/once.prom" && ok "metrics file (--once) is Prometheus text" ||
		fail "metrics file (--once) does not parse"
	[ "$(prom_val "$T/once.prom" nearsock_mem_budget_bytes)" = $((64 << 20)) ] ||
		fail "mem_budget in metrics: $(prom_val "$T/once.prom" nearsock_mem_budget_bytes), expected $((64 << 20))"
	[ "$(prom_val "$T/once.prom" nearsock_processes)" = 0 ] || fail "processes in an empty domain: $(prom_val "$T/once.prom" nearsock_processes)"
else
	fail "nearsockd --once wrote no metrics file"
fi
[ "$(status_top "$D" mem_budget)" = $((64 << 20)) ] || fail "status shows mem_budget $(status_top "$D" mem_budget)"
"$AGENT" --dir "$D" --once --mem-budget 12x >/dev/null 2>"$T/bad.err" && fail "--mem-budget 12x accepted"
"$AGENT" --dir "$D" --once --mem-budget 1G --metrics-file "$T/g.prom" >/dev/null 2>&1
[ "$(prom_val "$T/g.prom" nearsock_mem_budget_bytes)" = $((1 << 30)) ] || fail "--mem-budget 1G not 2^30"

# ---- 2. a background agent sees processes join
bg "$T/agent.out" "$T/agent.err" "$AGENT" --dir "$D" --interval 100 --json --metrics-file "$T/m.prom"
AG=$LAST_PID
bg "$T/srv.out" "$T/srv.err" env NEARSOCK_DIR="$D" "$NSK" run -- "$ECHO" server --port 0 --conns 1
SRV=$LAST_PID
wait_listen "$T/srv.out" "$SRV" || { fail "server did not start"; finish; }
bg "$T/cli.out" "$T/cli.err" env NEARSOCK_DIR="$D" "$NSK" run -- "$ECHO" client --port "$PORT" \
	--bytes 200000000 --rate-mbs 20
CLI=$LAST_PID
wait_until 5 has_event join "$SRV" && ok "join event for the server ($SRV)" || fail "no join event for the server $SRV"
wait_until 5 has_event join "$CLI" && ok "join event for the client ($CLI)" || fail "no join event for the client $CLI"
grep -q "\"pid\": $SRV, \"comm\": \"nsk_echo\"" "$T/agent.out" || fail "join event without comm nsk_echo"
wait_until 3 prom_is "$T/m.prom" nearsock_processes 2 && ok "metrics file counts 2 processes" ||
	fail "metrics file: processes $(prom_val "$T/m.prom" nearsock_processes), expected 2"
prom_check "$T/m.prom" || fail "agent's metrics file does not parse"
"$NSK" metrics --dir "$D" >"$T/cli.prom" 2>&1 || fail "nearsock metrics failed: $(head -3 "$T/cli.prom")"
prom_check "$T/cli.prom" || fail "nearsock metrics output does not parse"
[ "$(prom_val "$T/cli.prom" nearsock_processes)" = 2 ] || fail "nearsock metrics: processes $(prom_val "$T/cli.prom" nearsock_processes)"
grep -q "^nearsock_process_connections{pid=\"$SRV\",comm=\"nsk_echo\"} 1$" "$T/cli.prom" ||
	fail "nearsock metrics: no connection counted for the server"

# ---- 3. request words
"$NSK" evacuate 999999999 --dir "$D" >"$T/unk.out" 2>&1
rc=$?
[ "$rc" = 1 ] || fail "evacuate of an unknown pid exited $rc, expected 1"
grep -q "no live process 999999999" "$T/unk.out" && ok "unknown pid: $(cat "$T/unk.out")" ||
	fail "unknown pid: no clear message: $(cat "$T/unk.out")"
"$NSK" attach "$$" --dir "$D" >/dev/null 2>&1 && fail "attach of a pid outside the domain succeeded"
"$NSK" evacuate --dir "$D" >/dev/null 2>&1
[ $? = 2 ] || fail "evacuate without a target is not a usage error"

L0=$(status_proc "$D" "$SRV")
g0=$(jget ctl_gen "$L0")
"$NSK" evacuate "$SRV" --dir "$D" >"$T/ev.out" 2>&1 || fail "evacuate $SRV failed: $(cat "$T/ev.out")"
L=$(status_proc "$D" "$SRV")
[ "$(jget want_tcp "$L")" = 1 ] || fail "after evacuate $SRV: want_tcp $(jget want_tcp "$L")"
[ "$(jget ctl_gen "$L")" = $((g0 + 1)) ] || fail "after evacuate $SRV: ctl_gen $(jget ctl_gen "$L"), expected $((g0 + 1))"
[ "$(jget want_tcp "$(status_proc "$D" "$CLI")")" = 0 ] || fail "evacuate $SRV touched the client's word"
"$NSK" metrics --dir "$D" | grep -q "^nearsock_process_want_tcp{pid=\"$SRV\"} 1$" || fail "metrics: process_want_tcp of $SRV not 1"
"$NSK" attach "$SRV" --dir "$D" >"$T/at.out" 2>&1 || fail "attach $SRV failed: $(cat "$T/at.out")"
L=$(status_proc "$D" "$SRV")
[ "$(jget want_tcp "$L")" = 0 ] && [ "$(jget ctl_gen "$L")" = $((g0 + 2)) ] &&
	ok "evacuate/attach $SRV: want_tcp 1 then 0, ctl_gen +2" || fail "after attach $SRV: $L"
dg=$(status_top "$D" ctl_gen)
"$NSK" evacuate "$CLI" --dir "$D" >/dev/null 2>&1 || fail "evacuate $CLI failed"
"$NSK" evacuate --all --dir "$D" >"$T/eva.out" 2>&1 || fail "evacuate --all failed: $(cat "$T/eva.out")"
[ "$(status_top "$D" want_tcp)" = 1 ] && [ "$(status_top "$D" ctl_gen)" = $((dg + 1)) ] ||
	fail "after evacuate --all: domain want_tcp $(status_top "$D" want_tcp), ctl_gen $(status_top "$D" ctl_gen)"
"$NSK" attach --all --dir "$D" >"$T/ata.out" 2>&1 || fail "attach --all failed: $(cat "$T/ata.out")"
[ "$(status_top "$D" want_tcp)" = 0 ] && [ "$(status_top "$D" ctl_gen)" = $((dg + 2)) ] ||
	fail "after attach --all: domain want_tcp $(status_top "$D" want_tcp)"
[ "$(jget want_tcp "$(status_proc "$D" "$CLI")")" = 0 ] || fail "attach --all did not lift the evacuation of $CLI"
ok "evacuate/attach --all: domain word 1 then 0; attach --all lifted the per-process request"
status_conns "$D" | grep -q '"switches": [0-9]' || fail "status --json: no switches per connection"

# ---- 4. kill -9: leave and collection
kill -9 "$SRV"
wait_until 5 has_event leave "$SRV" && ok "leave event for the killed server" || fail "no leave event for the killed server $SRV"
wait_until 3 test ! -e "$D/proc-$SRV" || fail "table of the killed server still there"
wait_until 3 test "$(reg_valid "$D")" = 0 || fail "registry still holds $(reg_valid "$D") valid entries"
ls "$D" | grep -q "^rv-$SRV-" && fail "rendezvous socket of the killed server still there"
grep -q '"event": "gc"' "$T/agent.out" || fail "no gc event"
wait_pid "$CLI" 10
wait_until 5 has_event leave "$CLI" && ok "leave event for the client" || fail "no leave event for the client $CLI"
wait_until 3 prom_is "$T/m.prom" nearsock_processes 0 || fail "metrics: processes $(prom_val "$T/m.prom" nearsock_processes) after both left"
[ "$(prom_val "$T/m.prom" nearsock_mem_budget_bytes)" = $((1 << 30)) ] || fail "agent's metrics lost the budget"

# ---- 5. SIGTERM
kill -TERM "$AG"
wait_pid "$AG" 5
rc=$?
[ "$rc" = 0 ] && ok "SIGTERM: agent exited 0" || fail "agent exited $rc after SIGTERM"
grep -q '"event": "stop", .*"signal": 15' "$T/agent.out" || fail "no stop event"
[ -s "$T/agent.err" ] && { echo "agent stderr:"; head -5 "$T/agent.err"; }
echo "agent events:"
cat "$T/agent.out"

# ---- 6. end to end: connections really move
D2=$(new_domain)
BYTES=250000000 # 10 s at 25 MB/s: outlasts both waits
bg "$T/srv2.out" "$T/srv2.err" env NEARSOCK_DIR="$D2" "$NSK" run -- "$ECHO" server --port 0 --conns 1
SRV2=$LAST_PID
wait_listen "$T/srv2.out" "$SRV2" || { fail "e2e server did not start"; finish; }
bg "$T/cli2.out" "$T/cli2.err" env NEARSOCK_DIR="$D2" "$NSK" run -- "$ECHO" client --port "$PORT" \
	--bytes "$BYTES" --rate-mbs 25 --seed 7
CLI2=$LAST_PID
on_ring2() { [ "$(status_conns "$D2" | grep -c '"mode": "shm".*"tx_path": "ring"')" = 2 ]; }
wait_until 5 on_ring2 || fail "e2e: the two ends did not reach shared memory: $(status_conns "$D2")"
declare -A sw0
while read -r l; do sw0[$(jget pid "$l")]=$(jget switches "$l"); done < <(status_conns "$D2")
"$NSK" evacuate --all --wait 5 --dir "$D2" >"$T/e2e-ev.out" 2>&1
rc=$?
cat "$T/e2e-ev.out"
[ "$rc" = 0 ] || fail "e2e: evacuate --all --wait 5 exited $rc"
declare -A sw1 tcp1
while read -r l; do
	p=$(jget pid "$l")
	sw1[$p]=$(jget switches "$l")
	tcp1[$p]=$(jget tx_tcp_bytes "$l")
	[ "$(jget mode "$l")" != shm ] || [ "$(jget tx_path "$l")" = tcp ] || fail "e2e: still on the ring after evacuate: $l"
	[ "${sw1[$p]}" -ge 1 ] && [ "${sw1[$p]}" -gt "${sw0[$p]:-0}" ] ||
		fail "e2e: pid $p switches ${sw0[$p]:-?} -> ${sw1[$p]} across the evacuation"
done < <(status_conns "$D2")
sleep 0.5
while read -r l; do
	p=$(jget pid "$l")
	[ "$(jget tx_tcp_bytes "$l")" -gt "${tcp1[$p]:-0}" ] || fail "e2e: pid $p sent nothing over TCP while evacuated"
done < <(status_conns "$D2")
"$NSK" attach --all --wait 5 --dir "$D2" >"$T/e2e-at.out" 2>&1
rc=$?
cat "$T/e2e-at.out"
[ "$rc" = 0 ] || fail "e2e: attach --all --wait 5 exited $rc"
on_ring2 || fail "e2e: not back on the ring after attach: $(status_conns "$D2")"
while read -r l; do
	p=$(jget pid "$l")
	[ "$(jget switches "$l")" -gt "${sw1[$p]:-0}" ] || fail "e2e: pid $p switches did not grow across the attach"
done < <(status_conns "$D2")
wait_pid "$CLI2" 20
rc=$?
wait_pid "$SRV2" 5
C=$(line_of "$T/cli2.out" '"role": "client"')
echo "e2e client: $C"
[ "$rc" = 0 ] && [ "$(jget ok "$C")" = 1 ] && [ "$(jget echoed "$C")" = "$BYTES" ] &&
	ok "e2e: $BYTES bytes echoed exactly across evacuate and attach" ||
	fail "e2e: transfer not exact (rc $rc): $C $(head -3 "$T/cli2.err")"
finish
