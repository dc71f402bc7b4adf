#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# many_conns.sh — 1000 connections opened, used (a few bytes each way, four round trips,
# verified: enough for the upgrade, which the client offers at its second send) and closed,
# one after another, against one long-lived preloaded echo server; then 200 connections that
# close after two round trips, before their upgrade can complete (the offer is on its way).
# Afterwards:
#   - every one of the 1000 went through shared memory both ways (server's reports);
#   - the server has as many descriptors and channel mappings as after the warm-up
#     connection (/proc/PID/fd, /proc/PID/maps "memfd:nearsock-chan"), and so has the client;
#     unclaimed offers must not keep their segments (memfds) open in the server;
#   - `nearsock status --json` lists no connection and only the server's listener, the
#     registry file holds exactly one valid entry and the server's connection table one
#     occupied slot (the listener);
#   - after the server exits normally, the registry holds no valid entry.
. "$(dirname "$0")/lib.sh"

MANY=$B/nsk_many
[ -x "$MANY" ] || skip "$MANY not built"
N=${NSK_CONNS:-1000}
NB=${NSK_SHORT_CONNS:-200}
D=$(new_domain)

# Warm-up connection + N + NB + one last connection that lets the server exit through main().
# A short offer timeout lets the server expire unclaimed offers quickly.
bg "$T/srv.out" "$T/srv.err" env NEARSOCK_DIR="$D" NEARSOCK_OFFER_TIMEOUT_MS=300 "$NSK" run -- \
	"$ECHO" server --port 0 --conns $((N + NB + 2))
SRV=$LAST_PID
wait_listen "$T/srv.out" "$SRV" || { fail "server did not start"; finish; }
fd_listen=$(fd_count "$SRV")

timeout -k 2 20 env NEARSOCK_DIR="$D" "$NSK" run -- "$B/nsk_many" --port "$PORT" --conns 1 \
	--bytes 32 --rounds 4 >"$T/warm.out" 2>&1 || fail "warm-up connection failed: $(cat "$T/warm.out")"
grep -q '"mode_shm": 1,' "$T/warm.out" || fail "warm-up connection did not upgrade: $(cat "$T/warm.out")"
sleep 0.2
fd_base=$(fd_count "$SRV")
maps_base=$(chan_maps "$SRV")

t0=$(now_ms)
timeout -k 2 50 env NEARSOCK_DIR="$D" "$NSK" run -- "$MANY" --port "$PORT" --conns "$N" \
	--bytes 48 --rounds 4 >"$T/many.out" 2>"$T/many.err"
rc=$?
t1=$(now_ms)
cat "$T/many.out"
head -5 "$T/many.err"
M=$(line_of "$T/many.out" '"conns"')
echo "$N connections in $((t1 - t0)) ms"
[ "$rc" = 0 ] || fail "client exited with $rc: $(jget first_error "$M")"
[ "$(jget ok "$M")" = "$N" ] || fail "client: $(jget ok "$M") of $N connections exact"
[ "$(jget mode_shm "$M")" = "$N" ] || fail "client: $(jget mode_shm "$M") of $N connections in shm mode"
[ "$(jget fds_after "$M")" = "$(jget fds_base "$M")" ] ||
	fail "client leaked descriptors: $(jget fds_base "$M") after the first connection, $(jget fds_after "$M") at the end"
[ "$(jget chan_maps_after "$M")" = 0 ] || fail "client leaked $(jget chan_maps_after "$M") channel mappings"
[ "$(jget chan_maps_open "$M")" = 1 ] ||
	fail "client: $(jget chan_maps_open "$M") channel mappings while a connection was open, expected 1"

# Let the server finish the last connection's report.
for i in $(seq 100); do
	[ "$(grep -c '"role": "server"' "$T/srv.out")" -ge $((N + 1)) ] && break
	sleep 0.05
done
served=$(grep -c '"role": "server"' "$T/srv.out")
[ "$served" = $((N + 1)) ] || fail "server reported $served connections, expected $((N + 1))"
# Every one of the N connections moved bytes through the rings, both ways.
shm_conns=$(tail -n "$N" "$T/srv.out" | grep '"role": "server"' |
	awk '/"mode": 2,/ && !/"tx_shm": 0,/ && !/"rx_shm": 0,/ { n++ } END { print n + 0 }')
echo "server: $shm_conns of $N connections through shared memory both ways"
[ "$shm_conns" = "$N" ] || {
	fail "only $shm_conns of $N connections used shm both ways on the server"
	tail -n "$N" "$T/srv.out" | grep -v '"mode": 2,' | head -3
}

fd_after=$(fd_count "$SRV")
maps_after=$(chan_maps "$SRV")
echo "server fds: $fd_listen listening, $fd_base after warm-up, $fd_after after $N; channel maps: $maps_base -> $maps_after"
[ "$fd_after" = "$fd_base" ] || {
	fail "server leaked $((fd_after - fd_base)) descriptors over $N upgraded connections"
	ls -l "/proc/$SRV/fd" | tail -5
}
[ "$maps_after" = 0 ] || fail "server keeps $maps_after channel mappings"

# Connections that end before their upgrade completes.
timeout -k 2 30 env NEARSOCK_DIR="$D" "$NSK" run -- "$MANY" --port "$PORT" --conns "$NB" \
	--bytes 48 --rounds 2 >"$T/short.out" 2>"$T/short.err"
rc=$?
M=$(line_of "$T/short.out" '"conns"')
echo "$M"
[ "$rc" = 0 ] && [ "$(jget ok "$M")" = "$NB" ] || fail "short connections failed: $(jget first_error "$M")"
[ "$(jget fds_after "$M")" = "$(jget fds_base "$M")" ] || fail "client leaked descriptors over short connections"
[ "$(jget chan_maps_after "$M")" = 0 ] || fail "client keeps channel mappings after short connections"
for i in $(seq 100); do
	[ "$(grep -c '"role": "server"' "$T/srv.out")" -ge $((N + NB + 1)) ] && break
	sleep 0.05
done
sleep 1 # ample for the server's 300 ms offer timeout
fd_short=$(fd_count "$SRV")
memfds=$(ls -l "/proc/$SRV/fd" 2>/dev/null | grep -c 'memfd:nearsock-chan')
echo "server fds after $NB short connections: $fd_short ($memfds channel memfds)"
[ "$fd_short" = "$fd_base" ] ||
	fail "server holds $((fd_short - fd_base)) more descriptors ($memfds channel memfds, 1 MiB of shared memory each) after $NB connections closed before their upgrade"
[ "$(chan_maps "$SRV")" = 0 ] || fail "server keeps channel mappings after short connections"

"$NSK" status --json --dir "$D" >"$T/status.json" 2>&1 || fail "nearsock status failed"
tr -d '\n' <"$T/status.json" | sed 's/  */ /g' >"$T/status.1"
listeners=$(grep -o '"address"' "$T/status.1" | wc -l)
conns=$(sed 's/.*"connections": \[\([^]]*\)\].*/\1/' "$T/status.1" | grep -o '"pid"' | wc -l)
echo "status: $listeners listener(s), $conns connection(s)"
[ "$listeners" = 1 ] || fail "status lists $listeners listeners, expected 1"
grep -q "\"pid\": $SRV, \"address\"" "$T/status.1" || fail "status does not list the server's listener"
[ "$conns" = 0 ] || { fail "status lists $conns connections after all were closed"; cat "$T/status.json"; }
reg=$(reg_valid "$D")
[ "$reg" = 1 ] || fail "registry holds $reg valid entries, expected 1 (the listener)"
if [ -f "$D/proc-$SRV" ]; then
	slots=$(proc_slots "$D/proc-$SRV")
	echo "server connection table: $slots occupied slot(s)"
	[ "$slots" = 1 ] || fail "server connection table holds $slots occupied slots, expected 1 (the listener)"
else
	fail "no connection table $D/proc-$SRV"
fi

# Last connection; the server then closes its listener and exits normally.
timeout -k 2 20 env NEARSOCK_DIR="$D" "$NSK" run -- "$MANY" --port "$PORT" --conns 1 \
	--rounds 4 >/dev/null 2>&1 || fail "last connection failed"
wait_pid "$SRV" 10
src=$?
[ "$src" = 0 ] || fail "server exited with $src"
reg=$(reg_valid "$D")
[ "$reg" = 0 ] || fail "registry holds $reg valid entries after the server exited"
finish
