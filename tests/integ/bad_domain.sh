#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bad_domain.sh — a domain directory that cannot be used: the program runs unaccelerated,
# works, and logs exactly one warning line (per process, however many sockets it makes).
# Cases: NEARSOCK_DIR under a regular file; under a missing directory; a directory that is
# not writable (mode 0500; as root the pair runs as user nobody so that the mode counts); a
# directory others may enter (0755) or owned by another user (root only); a full tmpfs
# (no room for the registry / for the connection table; needs unshare -m and mount).
# Each case: a preloaded echo server and a preloaded client making 20 connections.
. "$(dirname "$0")/lib.sh"

MANY=$B/nsk_many
[ -x "$MANY" ] || skip "$MANY not built"
CONNS=20

# pair NAME DIR [PREFIX...] - server and client, both preloaded with NEARSOCK_DIR=DIR,
# started through PREFIX (e.g. setpriv ...). Writes $T/NAME.{srv,cli}.{out,err}.
pair()
{
	local name=$1 dir=$2
	shift 2
	bg "$T/$name.srv.out" "$T/$name.srv.err" "$@" env NEARSOCK_DIR="$dir" "$NSK" run -- \
		"$ECHO" server --port 0 --conns "$CONNS"
	local srv=$LAST_PID
	wait_listen "$T/$name.srv.out" "$srv" || return 1
	timeout -k 2 30 "$@" env NEARSOCK_DIR="$dir" "$NSK" run -- "$MANY" --port "$PORT" \
		--conns "$CONNS" --bytes 20000 >"$T/$name.cli.out" 2>"$T/$name.cli.err"
	wait_pid "$srv" 10
}

# check NAME - the outcome of pair NAME: works, no shm, one warning line per process.
check()
{
	local name=$1 C role f n
	C=$(line_of "$T/$name.cli.out" '"conns"')
	[ "$(jget ok "$C")" = "$CONNS" ] || { fail "$name: $(jget ok "$C") of $CONNS connections worked"; cat "$T/$name".*; return; }
	[ "$(grep -c '"role": "server"' "$T/$name.srv.out")" = "$CONNS" ] || fail "$name: server served too few"
	[ "$(jget tx_shm "$C")" = 0 ] && [ "$(jget rx_shm "$C")" = 0 ] || fail "$name: the client used shm"
	grep '"role": "server"' "$T/$name.srv.out" | grep -v '"tx_shm": 0, "rx_shm": 0' | head -1 |
		grep -q . && fail "$name: the server used shm"
	for role in srv cli; do
		f=$T/$name.$role.err
		n=$(grep -c '' "$f")
		if [ "$n" != 1 ] || ! grep -qE '^nearsock\[[0-9]+\] warn: ' "$f"; then
			fail "$name: $role stderr has $n lines, expected exactly one warning:"
			head -5 "$f"
		fi
	done
	echo "$name: works unaccelerated; server says: $(cat "$T/$name.srv.err")"
}

# 1. Under a regular file.
touch "$T/plainfile"
pair under-file "$T/plainfile/dom" && check under-file || fail "under-file: pair did not run"

# 2. Missing parent directory.
pair missing "$T/no/such/dir" && check missing || fail "missing: pair did not run"

# 3. Not writable (0500).
if [ "$(id -u)" = 0 ]; then
	NOBODY=(setpriv --reuid=65534 --regid=65534 --clear-groups)
	chmod 711 "$T"
	if command -v setpriv >/dev/null && "${NOBODY[@]}" test -x "$NSK" -a -r "$LIB" -a -x "$MANY" \
		-a -x "$T"; then
		mkdir -m 500 "$T/ro" && chown 65534:65534 "$T/ro"
		pair readonly "$T/ro" "${NOBODY[@]}" && check readonly || fail "readonly: pair did not run"
	else
		echo "not writable (0500): not applicable (root, and the build is not usable by nobody)"
	fi
	chmod 700 "$T"
	# 3b. Owned by someone else (mode 0700): as root, chown to nobody.
	mkdir -m 700 "$T/foreign" && chown 65534:65534 "$T/foreign"
	pair foreign "$T/foreign" && check foreign || fail "foreign: pair did not run"
else
	mkdir -m 500 "$T/ro"
	pair readonly "$T/ro" && check readonly || fail "readonly: pair did not run"
	chmod 700 "$T/ro"
fi

# 4. Open to others (0755).
mkdir -m 755 "$T/open"
pair open "$T/open" && check open || fail "open: pair did not run"
[ -z "$(ls -A "$T/open")" ] || fail "open: the library wrote into a directory others can enter"

# 5. Full tmpfs: no room for the registry (64 KiB), or room for the registry but not for the
# connection table (516 KiB: exactly the registry's 129 pages). The tmpfs lives in a private mount
# namespace held by a sleeping process; the pair joins it with nsenter.
if command -v unshare >/dev/null && command -v nsenter >/dev/null && unshare -m true 2>/dev/null; then
	for size in 64k 516k; do
		name=full-$size
		mkdir -m 700 "$T/$name"
		bg "$T/$name.holder.out" "$T/$name.holder.err" unshare -m sh -c \
			"mount -t tmpfs -o size=$size,mode=700 nsk-it '$T/$name' && echo mounted && exec sleep 60"
		HOLDER=$LAST_PID
		for i in $(seq 100); do
			grep -q mounted "$T/$name.holder.out" 2>/dev/null && break
			alive "$HOLDER" || break
			sleep 0.02
		done
		if ! grep -q mounted "$T/$name.holder.out"; then
			echo "full tmpfs: not applicable (mount not permitted): $(cat "$T/$name.holder.err")"
			break
		fi
		pair "$name" "$T/$name" nsenter -t "$HOLDER" -m -- && check "$name" ||
			fail "$name: pair did not run"
		reg=$(nsenter -t "$HOLDER" -m -- stat -c %s "$T/$name/registry" 2>/dev/null || echo none)
		echo "$name: registry file size $reg"
		if [ "$size" = 516k ] && [ "$reg" != 524352 ]; then
			fail "$name: expected the registry to fit and the connection table not ($reg)"
		fi
		kill "$HOLDER"
	done
else
	echo "full tmpfs: not applicable (no unshare -m / nsenter)"
fi
finish
