#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# epoll_switch.sh — a socket registered with epoll before its connection switches to shared
# memory must not report EPOLLIN for the switch marker (regression: wrk counted read errors
# against nginx with NEARSOCK_UPGRADE=eager). Runs epoll_switch.py preloaded, eager upgrade.
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
[ -x "$PY" ] || skip "$PY not installed"
RUN=("$NSK" run --)
if ldd "$LIB" | grep -q libasan; then
	# python is not instrumented: the sanitizer runtimes must come first
	RT=$(ldd "$LIB" | awk '/lib(asan|ubsan)\.so/ { printf "%s:", $3 }')
	RUN=(env "LD_PRELOAD=$RT$LIB")
	# the interpreter's own allocations at exit are not ours to report (LeakSanitizer would
	# list CPython's); the library's memory errors still abort the run
	export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
fi
D=$(new_domain)
if NEARSOCK_DIR=$D NEARSOCK_UPGRADE=eager "${RUN[@]}" "$PY" "$(dirname "$0")/epoll_switch.py" 50 >"$T/out" 2>&1; then
	ok "$(tail -1 "$T/out")"
else
	fail "epoll_switch.py:"
	cat "$T/out"
fi
finish
