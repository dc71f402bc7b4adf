#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# shared_domain.sh — isolation and the administrator's cross-user domain, with real uids
# (needs root: processes run as uids 61001-61003 through setpriv; skipped otherwise).
#   1. per-user by default: two users' programs (default domain directories) stay on TCP;
#   2. a group directory (mode 3770, root-owned) WITHOUT the root-owned marker file is refused
#      (one warning, unaccelerated, nothing written into it);
#   3. with the marker it is a shared domain: user A's server and user B's client upgrade; the
#      registry is group-writable (0660), the rendezvous socket too;
#   4. while that connection is on shared memory: the channel exists in no file system (domain
#      directory, /dev/shm), and user C — a member of the same domain — cannot open the
#      segment through /proc/PID/map_files of either endpoint, nor read their memory;
#   5. forged registry entry: user C rewrites A's registry entry to name C's own rendezvous
#      socket and pid, and tries to claim whatever it receives; B's connections must stay on
#      TCP with their data intact, C must receive no offer, B logs why ("not proven");
#   6. forged offer: user C sends A an offer for B's connection (4-tuple read from
#      /proc/net/tcp) before B's own; A must refuse it (sender's uid does not own the client
#      end), C's segment must stay unclaimed, and B's own offer must still be claimed.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || skip "needs root to run processes of several users"
command -v setpriv >/dev/null || skip "setpriv (util-linux) not installed"
FORGE=$B/nsk_forge
MANY=$B/nsk_many
[ -x "$FORGE" ] && [ -x "$MANY" ] || skip "nsk_forge / nsk_many not built"
G=61000
UA=61001
UB=61002
UC=61003
chmod 711 "$T"
setpriv --reuid="$UA" --regid="$UA" --groups="$G" test -x "$NSK" -a -r "$LIB" -a -x "$ECHO" -a -x "$FORGE" -a -x "$MANY" -a -x "$T" ||
	skip "the build is not usable by other users (directory permissions)"

# make_domain DIR [marker] - an administrator's group directory: root:G, mode 3770.
make_domain()
{
	mkdir "$1" && chown 0:"$G" "$1" && chmod 3770 "$1"
	[ "${2:-}" = marker ] && install -o 0 -g 0 -m 644 /dev/null "$1/nearsock-shared"
	return 0
}

# server USER DIR CONNS NAME - user's preloaded echo server; sets SRV and PORT.
server()
{
	local envdir=()
	[ -n "$2" ] && envdir=(NEARSOCK_DIR="$2")
	bg "$T/$4.srv.out" "$T/$4.srv.err" setpriv --reuid="$1" --regid="$1" --groups="$G" env "${envdir[@]}" "$NSK" run -- "$ECHO" server \
		--addr 127.0.0.1 --port 0 --conns "$3"
	SRV=$LAST_PID
	wait_listen "$T/$4.srv.out" "$SRV"
}

# many USER DIR CONNS NAME - user's preloaded client, CONNS connections; its JSON in M.
many()
{
	local envdir=()
	[ -n "$2" ] && envdir=(NEARSOCK_DIR="$2")
	timeout -k 2 30 setpriv --reuid="$1" --regid="$1" --groups="$G" env "${envdir[@]}" "$NSK" run -- "$MANY" --port "$PORT" \
		--conns "$3" --bytes 20000 --rounds 4 >"$T/$4.cli.out" 2>"$T/$4.cli.err"
	M=$(line_of "$T/$4.cli.out" '"conns"')
}

# 1. Per-user by default.
CLEANUPS+=("rm -rf /dev/shm/nearsock-$UA /dev/shm/nearsock-$UB /dev/shm/nearsock-$UC")
server "$UA" "" 3 default || fail "default: server did not start"
many "$UB" "" 3 default
[ "$(jget ok "$M")" = 3 ] && [ "$(jget mode_shm "$M")" = 0 ] ||
	fail "default: two users' programs: $M (expected 3 exact connections on TCP)"
wait_pid "$SRV" 10
ok "per-user by default: users $UA and $UB stay on TCP ($(jget ok "$M") connections exact)"

# 2. No marker: refused.
make_domain "$T/nomark"
server "$UA" "$T/nomark" 3 nomark || fail "nomark: server did not start"
many "$UB" "$T/nomark" 3 nomark
[ "$(jget ok "$M")" = 3 ] && [ "$(jget mode_shm "$M")" = 0 ] || fail "nomark: $M"
wait_pid "$SRV" 10
grep -q "unusable (Permission denied)" "$T/nomark.srv.err" || fail "nomark: server did not say why: $(cat "$T/nomark.srv.err")"
[ -z "$(ls -A "$T/nomark")" ] || fail "nomark: files were created in an unmarked group directory"
ok "group directory without the marker refused ($(head -1 "$T/nomark.srv.err"))"

# 3. Shared domain: cross-user upgrade.
SD=$T/shared
make_domain "$SD" marker
server "$UA" "$SD" 8 shared || fail "shared: server did not start"
many "$UB" "$SD" 3 shared
[ "$(jget ok "$M")" = 3 ] && [ "$(jget mode_shm "$M")" = 3 ] ||
	fail "shared: users $UA -> $UB: $M (expected 3 exact connections on shared memory); $(head -3 "$T/shared.cli.err" "$T/shared.srv.err")"
[ "$(stat -c '%a %g' "$SD/registry")" = "660 $G" ] || fail "shared: registry is $(stat -c '%a %g' "$SD/registry")"
rv=$(ls "$SD" | grep '^rv-' | head -1)
[ "$(stat -c '%a %g %u' "$SD/$rv")" = "660 $G $UA" ] || fail "shared: rendezvous socket is $(stat -c '%a %g %u' "$SD/$rv")"
ok "shared domain: users $UA -> $UB upgraded ($(jget mode_shm "$M") of 3 on shared memory)"

# 4. Isolation of a live channel.
bg "$T/iso.cli.out" "$T/iso.cli.err" setpriv --reuid="$UB" --regid="$UB" --groups="$G" env NEARSOCK_DIR="$SD" NSK_FORGE_HOLD="$T/iso.release" \
	"$NSK" run -- "$FORGE" client "$PORT" "$T/iso.go"
CLI=$LAST_PID
touch "$T/iso.go"
for i in $(seq 250); do grep -q '"mode"' "$T/iso.cli.out" 2>/dev/null && break; sleep 0.02; done
grep -q '"mode": 2,' "$T/iso.cli.out" || fail "isolation: the connection did not upgrade: $(cat "$T/iso.cli.out" "$T/iso.cli.err")"
# Endpoints keep no descriptor of the segment once it is mapped: the way in would be
# /proc/PID/map_files (or /proc/PID/mem) of an endpoint, which the kernel guards.
for p in "$SRV" "$CLI"; do
	range=$(grep -m1 'nearsock-chan' "/proc/$p/maps" | cut -d' ' -f1)
	[ -n "$range" ] || { fail "isolation: pid $p has no channel mapping"; continue; }
	mf=/proc/$p/map_files/$range
	head -c1 "$mf" >/dev/null 2>&1 || fail "isolation: probe path $mf not usable even by root"
	if setpriv --reuid="$UC" --regid="$UC" --groups="$G" head -c1 "$mf" >/dev/null 2>"$T/iso.err"; then
		fail "isolation: user $UC (a domain member) opened the channel of pid $p"
	else
		ok "isolation: user $UC cannot open pid $p's segment ($(head -1 "$T/iso.err" | sed 's/.*: //'))"
	fi
	if setpriv --reuid="$UC" --regid="$UC" --groups="$G" dd if="/proc/$p/mem" bs=4096 count=1 \
		skip=$((16#${range%-*} / 4096)) status=none >/dev/null 2>&1; then
		fail "isolation: user $UC read pid $p's memory"
	fi
done
found=$( (ls -la "$SD"; ls -la /dev/shm) 2>/dev/null | grep -c 'chan')
[ "$found" = 0 ] || fail "isolation: a channel has a name in the file system"
ok "isolation: no channel file in $SD or /dev/shm; only the two endpoints hold the segment"
touch "$T/iso.release"
wait_pid "$CLI" 10

# 5. Forged registry entry.
bg "$T/forge.out" "$T/forge.err" setpriv --reuid="$UC" --regid="$UC" --groups="$G" "$FORGE" entry "$SD" "$PORT" 4
FG=$LAST_PID
for i in $(seq 100); do grep -q forging "$T/forge.out" 2>/dev/null && break; sleep 0.02; done
grep -q forging "$T/forge.out" || fail "forged entry: the attacker could not start: $(cat "$T/forge.err")"
many "$UB" "$SD" 3 forged
wait_pid "$FG" 10
F=$(line_of "$T/forge.out" offers_received)
echo "attacker: $F"
[ "$(jget ok "$M")" = 3 ] || fail "forged entry: connections broken: $M"
[ "$(jget mode_shm "$M")" = 0 ] || fail "forged entry: connections upgraded through a forged entry: $M"
[ "$(jget offers_received "$F")" = 0 ] && [ "$(jget claimed "$F")" = 0 ] ||
	fail "forged entry: the attacker received offers: $F"
grep -q 'not proven' "$T/forged.cli.err" || fail "forged entry: the client did not log the refusal"
ok "forged entry refused: $(head -1 "$T/forged.cli.err")"
wait_pid "$SRV" 10

# 6. Forged offer.
server "$UA" "$SD" 1 offer || fail "forged offer: server did not start"
bg "$T/offer.cli.out" "$T/offer.cli.err" setpriv --reuid="$UB" --regid="$UB" --groups="$G" env NEARSOCK_DIR="$SD" "$NSK" run -- "$FORGE" client \
	"$PORT" "$T/offer.go"
CLI=$LAST_PID
for i in $(seq 250); do grep -q connected "$T/offer.cli.out" 2>/dev/null && break; sleep 0.02; done
bg "$T/offer.forge.out" "$T/offer.forge.err" setpriv --reuid="$UC" --regid="$UC" --groups="$G" "$FORGE" offer "$SD" "$PORT" 2
FG=$LAST_PID
sleep 0.5
touch "$T/offer.go"
wait_pid "$CLI" 20
wait_pid "$FG" 10
C=$(line_of "$T/offer.cli.out" '"mode"')
F=$(line_of "$T/offer.forge.out" claimed)
echo "client: $C; attacker: $F"
[ "$(jget ok "$C")" = 1 ] || fail "forged offer: the client's data was not echoed intact: $C $(cat "$T/offer.cli.err")"
[ -n "$F" ] && [ "$(jget claimed "$F")" = 0 ] || fail "forged offer: the server claimed the attacker's segment: $F $(cat "$T/offer.forge.err")"
[ "$(jget mode "$C")" = 2 ] || fail "forged offer: the genuine offer was not claimed afterwards: $C"
grep -q 'refused' "$T/offer.srv.err" || fail "forged offer: the server did not log the refusal"
ok "forged offer refused: $(grep -m1 refused "$T/offer.srv.err")"
wait_pid "$SRV" 10
finish
