#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bad_input.sh — errors exactly as libc and the kernel give them, errno kept on success.
# nsk_badin runs three times: without the library (the reference), under `nearsock run`
# (its connected pairs checked to be on shared memory) and under `nearsock run` with
# NEARSOCK_DISABLE=1. Their outputs — ECONNREFUSED for a closed port, EBADF on a closed fd,
# ENOTSOCK on a pipe or file, wrong-state errors, EOF/EPIPE/SIGPIPE after the peer closed —
# must be identical, and every successful wrapped call must leave errno untouched.
. "$(dirname "$0")/lib.sh"

BADIN=$B/nsk_badin
[ -x "$BADIN" ] || skip "$BADIN not built"
D=$(new_domain)

timeout -k 2 20 "$BADIN" >"$T/plain.out" 2>"$T/plain.err"
rc_plain=$?
timeout -k 2 20 env NEARSOCK_DIR="$D" "$NSK" run -- "$BADIN" --expect-shm >"$T/pre.out" 2>"$T/pre.err"
rc_pre=$?
timeout -k 2 20 env NEARSOCK_DIR="$D" NEARSOCK_DISABLE=1 "$NSK" run -- "$BADIN" >"$T/dis.out" \
	2>"$T/dis.err"
rc_dis=$?
echo "exit codes: plain $rc_plain, preloaded $rc_pre, disabled $rc_dis"
cat "$T/pre.err"
[ "$rc_plain" = 0 ] || { fail "reference run without the library failed ($rc_plain)"; cat "$T/plain.out" "$T/plain.err"; }
case $rc_pre in
0) ;;
3) fail "preloaded: the test connections did not reach shared memory: $(tail -1 "$T/pre.out")" ;;
*) fail "preloaded run exited with $rc_pre" ;;
esac
[ "$rc_dis" = 0 ] || fail "NEARSOCK_DISABLE=1 run exited with $rc_dis"

for run in pre dis; do
	grep -E 'CLOBBERED|FAILED' "$T/$run.out" | sed "s/^/$run: /"
	n=$(grep -cE 'CLOBBERED|FAILED' "$T/$run.out")
	[ "$n" = 0 ] || fail "$run: $n wrapped calls changed errno on success or failed"
	if ! diff -u "$T/plain.out" "$T/$run.out" >"$T/$run.diff"; then
		fail "$run: outcomes differ from plain libc:"
		cat "$T/$run.diff"
	fi
done
echo "$(grep -c '' "$T/plain.out") outcome lines compared, $(grep -c '^errno .* kept$' "$T/pre.out") errno checks kept under preload"
finish
