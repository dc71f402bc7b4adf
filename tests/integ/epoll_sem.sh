#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# epoll_sem.sh — epoll corner cases on shared-memory connections (see nsk_epoll.c): an fd
# closed while a dup keeps it registered, an epoll set inside another set and inside poll(),
# EPOLLEXCLUSIVE across the upgrade, one fd in two sets, four threads on one set with
# EPOLLONESHOT, EPOLLRDHUP, EPOLLET with EPOLL_CTL_MOD/DEL, an fd closed while registered. Each case runs without the library (the reference) and preloaded.
. "$(dirname "$0")/lib.sh"

E=$B/nsk_epoll
[ -x "$E" ] || skip "$E not built"
for t in dupclose nested exclusive twosets threads rdhup etmod closereg; do
	if ! timeout 60 "$E" "$t" --plain >"$T/$t.plain" 2>&1; then
		fail "$t: fails without the library (test bug?): $(tail -2 "$T/$t.plain")"
		continue
	fi
	D=$(new_domain)
	if timeout 60 env NEARSOCK_DIR="$D" "$NSK" run -- "$E" "$t" >"$T/$t.out" 2>&1; then
		ok "$t"
	else
		fail "$t: $(tail -3 "$T/$t.out")"
	fi
done
finish
