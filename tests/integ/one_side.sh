#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# one_side.sh — connections that cannot use shared memory must work as plain TCP:
#   1. server preloaded, client not: the server's accepted socket waits for an offer that
#      never comes; 0 shm bytes, every byte counted as TCP;
#   2. client preloaded, server not: no registry entry, the client stays plain from the start;
#   3. NEARSOCK_DISABLE=1 on both (library loaded): plain kernel behaviour, the domain
#      directory stays untouched;
#   4. server preloaded, client not, default offer timeout and no pause: still 0 shm bytes.
# Each transfer is byte-exact (nsk_echo checks) and counters prove the path: 0 shm bytes on
# the preloaded side and every application byte counted as TCP (what `nearsock status` shows).
. "$(dirname "$0")/lib.sh"

BYTES=$((32 << 20))

# pair NAME SERVER-PRELOAD CLIENT-PRELOAD [client options] - run one echo transfer.
# A preload argument is "yes", "no" or "disabled". Leaves S and C (report lines).
pair()
{
	local name=$1 sp=$2 cp=$3
	shift 3
	local D
	D=$(new_domain)
	DOM=$D
	local scmd=("$ECHO") ccmd=("$ECHO")
	[ "$sp" != no ] && scmd=("$NSK" run -- "$ECHO")
	[ "$cp" != no ] && ccmd=("$NSK" run -- "$ECHO")
	local sdis= cdis=
	[ "$sp" = disabled ] && sdis=1
	[ "$cp" = disabled ] && cdis=1
	echo "--- $name"
	bg "$T/$name.srv.out" "$T/$name.srv.err" env NEARSOCK_DIR="$D" NEARSOCK_DISABLE="$sdis" \
		NEARSOCK_OFFER_TIMEOUT_MS="${SRV_TIMEOUT_MS:-}" "${scmd[@]}" server --port 0 \
		--style blocking --conns 1
	SRV=$LAST_PID
	S=
	C=
	wait_listen "$T/$name.srv.out" "$SRV" || { fail "$name: server did not start"; return; }
	if [ "$sp" = disabled ]; then
		grep -q libnearsock.so "/proc/$SRV/maps" || fail "$name: library not loaded in server"
	fi
	timeout -k 2 40 env NEARSOCK_DIR="$D" NEARSOCK_DISABLE="$cdis" "${ccmd[@]}" client \
		--port "$PORT" --bytes "$BYTES" --style blocking "$@" >"$T/$name.cli.out" \
		2>"$T/$name.cli.err"
	local rc=$?
	wait_pid "$SRV" 10
	local src=$?
	cat "$T/$name.cli.out" "$T/$name.srv.out"
	cat "$T/$name.cli.err" "$T/$name.srv.err" | head -10
	C=$(line_of "$T/$name.cli.out" '"role": "client"')
	S=$(line_of "$T/$name.srv.out" '"role": "server"')
	[ "$rc" -eq 0 ] || fail "$name: client exited with $rc"
	[ "$src" -eq 0 ] || fail "$name: server exited with $src"
	[ "$(jget ok "$C")" = 1 ] || fail "$name: transfer not exact"
	[ "$(jget bytes "$S")" = "$BYTES" ] || fail "$name: server served $(jget bytes "$S") bytes"
}

# plain_side NAME ROLE LINE - the preloaded side stayed TCP for good with 0 shm bytes.
plain_side()
{
	local name=$1 role=$2 L=$3
	[ "$(jget preloaded "$L")" = 1 ] || { fail "$name: $role has no statistics"; return; }
	local m
	m=$(jget mode "$L")
	case " ${SERVER_MODES:-3} " in
	*" $m "*) ;;
	*) fail "$name: $role mode $m, expected ${SERVER_MODES:-3} (3: plain)" ;;
	esac
	[ "$(jget tx_shm "$L")" = 0 ] || fail "$name: $role sent $(jget tx_shm "$L") bytes via shm"
	[ "$(jget rx_shm "$L")" = 0 ] || fail "$name: $role received $(jget rx_shm "$L") bytes via shm"
	[ "$(jget tx_tcp "$L")" = "$BYTES" ] || fail "$name: $role tx_tcp $(jget tx_tcp "$L") != $BYTES"
	[ "$(jget rx_tcp "$L")" = "$BYTES" ] || fail "$name: $role rx_tcp $(jget rx_tcp "$L") != $BYTES"
}

# 1. The server cannot know that its client has no nearsock: its socket may stay a candidate
# for an upgrade (mode tcp/offered) or give up (plain), but never carries shm bytes.
SRV_TIMEOUT_MS=100 pair server-only yes no --linger-ms 300
SERVER_MODES="0 1 3" plain_side server-only server "$S"
[ "$(jget preloaded "$C")" = 0 ] || fail "server-only: the client was preloaded"

# 2.
pair client-only no yes
plain_side client-only client "$C"
[ "$(jget preloaded "$S")" = 0 ] || fail "client-only: the server was preloaded"

# 3.
pair disabled disabled disabled
for L in "$C" "$S"; do
	[ "$(jget preloaded "$L")" = 0 ] || fail "disabled: a side still tracks its socket: $L"
	[ "$(jget tx_shm "$L")" = 0 ] || fail "disabled: shm bytes: $L"
done
left=$(ls -A "$DOM")
[ -z "$left" ] || fail "disabled: the library touched the domain directory: $left"

# 4.
pair server-only-fast yes no
L=$S
[ "$(jget tx_shm "$L")" = 0 ] && [ "$(jget rx_shm "$L")" = 0 ] ||
	fail "server-only-fast: shm bytes on the server"
[ "$(jget mode "$L")" != 2 ] || fail "server-only-fast: server claims shm mode"
finish
