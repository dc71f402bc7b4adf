#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# fork.sh — connections across fork, exec and spawn (issue 3), with the kernel as reference:
# every scenario of nsk_fork runs without the library first (it must pass: the test itself is
# right), then preloaded, where it must also prove shared memory was used:
#   exec via execve / execvp / execl / posix_spawn / vfork+execve / daemon()+execve: a socket
#        on shared memory handed to a new program image mid-stream (64 MiB echo, byte-exact),
#        which continues on shared memory;
#   share    parent and child write at once on one upgraded connection, then read in turn;
#   perconn  fork per connection, the parent closing its copy: all 8 reach shared memory;
#   prefork  3 workers accept on one inherited listener: all 12 connections reach shared memory.
# Afterwards no registry entry is left valid and every connection slot is free.
. "$(dirname "$0")/lib.sh"

F=$B/nsk_fork
[ -x "$F" ] || skip "$F not built"

run() # NAME ARGS...
{
	local name=$1
	shift
	if timeout 120 "$F" "$@" --plain >"$T/$name.plain.out" 2>&1; then
		:
	else
		fail "$name: fails without the library too (test bug?): $(tail -3 "$T/$name.plain.out")"
		return
	fi
	local D
	D=$(new_domain)
	if timeout 120 env NEARSOCK_DIR="$D" "$NSK" run -- "$F" "$@" >"$T/$name.out" 2>&1; then
		ok "$name: $(grep -h '^{' "$T/$name.out" | tr '\n' ' ')"
	else
		fail "$name: $(tail -5 "$T/$name.out")"
		return
	fi
	# daemon(): the new image outlives the first server process; give it a moment to exit.
	# Entries of processes killed on purpose (prefork workers) are stale: gc retires them.
	local i
	for i in $(seq 50); do
		NEARSOCK_DIR="$D" "$NSK" gc >/dev/null 2>&1
		[ "$(reg_valid "$D")" = 0 ] && break
		sleep 0.1
	done
	[ "$(reg_valid "$D")" = 0 ] || fail "$name: registry entries left valid: $(reg_valid "$D")"
	local f n
	for f in "$D"/proc-*; do
		[ -e "$f" ] || continue
		n=$(proc_slots "$f")
		pid=${f##*proc-}
		if kill -0 "$pid" 2>/dev/null; then
			continue
		fi
		[ "$n" = 0 ] || fail "$name: $n connection slots left in $(basename "$f")"
	done
}

for via in execve execvp execl spawn vfork daemon; do
	run "exec-$via" exec --via "$via"
done
run share share
run perconn perconn
run prefork prefork
finish
