#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# memcached with libmemcached-tools clients, plain and under nearsock: a 700 KB random value
# stored with memccp and read back with memccat byte-exactly, and memaslap (Debian's
# `memcaslap`: 2 threads, 16 connections, a fixed number of operations, every get verified)
# reports the same operation counts with no misses and no verification failures. Both ends
# preloaded: the bytes went through shared memory. Speedup printed, not asserted.
. "$(dirname "$0")/lib.sh"
need memcached
need memccp
need memccat
need memcaslap
OPS=${MEMCACHED_OPS:-100000}
U=()
[ "$(id -u)" -ne 0 ] || U=(-u root) # memcached refuses to run as root without it

val=$SCR/value.bin
head -c 700000 /dev/urandom >"$val"
want_sum=$({ cat "$val"; echo; } | sha256sum) # memccat ends the value with a newline

# roundtrip RUN PORT - checksum of the value after memccp + memccat
roundtrip() {
	$1 memccp --servers="127.0.0.1:$2" "$val" || fail "memccp failed"
	$1 memccat --servers="127.0.0.1:$2" value.bin | sha256sum
}
# slap RUN PORT - memaslap's counters ("cmd_get cmd_set get_misses verify_misses
# verify_failed") on one line, then its TPS on the next
slap() {
	local out
	out=$($1 memcaslap -s "127.0.0.1:$2" -T 2 -c 16 -x "$OPS" -v 1.0 2>&1) ||
		fail "memaslap failed: $(echo "$out" | tail -3)"
	echo "$out" | awk '/^(cmd_get|cmd_set|get_misses|verify_misses|verify_failed):/ { printf "%s ", $0 } END { print "" }'
	echo "$out" | sed -n 's/.*TPS: \([0-9]*\).*/\1/p'
}

P=$(free_port)
start_bg ns memcached "${U[@]}" -p "$P" -U 0 -l 127.0.0.1 -t 2
SRV=$LAST_PID
P2=$(free_port)
start_bg memcached "${U[@]}" -p "$P2" -U 0 -l 127.0.0.1 -t 2
wait_port "$P"
wait_port "$P2"

[ "$(roundtrip plain "$P2")" = "$want_sum" ] || fail "plain memccp/memccat does not round-trip (test broken?)"
s0=$(snap)
[ "$(roundtrip ns "$P")" = "$want_sum" ] || fail "memccat under nearsock returned different bytes"
s1=$(snap)
delta "$s0" "$s1"
echo "memccp/memccat: byte-exact; $D"
[ "$D_CLAIMS" -ge 1 ] || fail "the 700 KB transfer was not upgraded (claims=$D_CLAIMS)"
c1="claims $D_CLAIMS, shm share $D_SHARE"

tcp=$(slap plain "$P2")
ns_out=$(slap ns "$P")
s2=$(snap)
delta "$s1" "$s2"
tcp_counts=$(echo "$tcp" | head -1)
ns_counts=$(echo "$ns_out" | head -1)
echo "plain TCP: $tcp_counts TPS $(echo "$tcp" | tail -1)"
echo "nearsock : $ns_counts TPS $(echo "$ns_out" | tail -1); $D"
want_counts="cmd_get: $((OPS * 9 / 10)) cmd_set: $((OPS / 10)) get_misses: 0 verify_misses: 0 verify_failed: 0 "
[ "$tcp_counts" = "$want_counts" ] || fail "plain memaslap: [$tcp_counts], expected [$want_counts] (test broken?)"
[ "$ns_counts" = "$want_counts" ] || fail "memaslap under nearsock: [$ns_counts], expected [$want_counts]"
[ "$D_CLAIMS" -ge 16 ] || fail "expected memaslap's 16 connections on shared memory, claims=$D_CLAIMS"
ge "$D_SHARE" 0.95 || fail "only $D_SHARE of memaslap's bytes went through shared memory"
still_alive "$SRV" memcached
sp=$(ratio "$(echo "$ns_out" | tail -1)" "$(echo "$tcp" | tail -1)")
echo "speedup ${sp}x"
V=$(pkg_version memcached)
row memcached "$V" "memccp + memccat of a 700 KB random value (libmemcached-tools $(pkg_version libmemcached-tools))" pass "-" "$c1"
row memcached "$V" "memaslap (memcaslap) -T 2 -c 16 -x $OPS -v 1.0 (90% get, all verified)" pass "TPS ${sp}x" "claims $D_CLAIMS, shm share $D_SHARE"
echo PASS
