#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# semantics.sh — dup family, threads, calls and flags, signals on shared-memory connections
# (see nsk_sem.c), each case first without the library (the reference), then preloaded; and
# a statically linked client (cannot be preloaded): `nearsock run` says so, and it talks to a
# preloaded server over plain TCP, byte-exact.
. "$(dirname "$0")/lib.sh"

S=$B/nsk_sem
[ -x "$S" ] || skip "$S not built"
CASES="dup threads flags signals"
# Under TSan a handler for an asynchronous signal runs only at the runtime's next safe point,
# not inside the interrupted call: the signals case hung intermittently there (120 s, twice
# in CI, never alone). It runs in the normal and the ASan+UBSan builds.
if ldd "$LIB" 2>/dev/null | grep -q libtsan; then
	CASES="dup threads flags"
	echo "note: TSan build: the signals case is not run (signal delivery is deferred by TSan)"
fi
for t in $CASES; do
	if ! timeout 120 "$S" "$t" --plain >"$T/$t.plain" 2>&1; then
		fail "$t: fails without the library (test bug?): $(tail -2 "$T/$t.plain")"
		continue
	fi
	D=$(new_domain)
	if timeout 120 env NEARSOCK_DIR="$D" "$NSK" run -- "$S" "$t" >"$T/$t.out" 2>&1; then
		ok "$t $(grep -h '^{' "$T/$t.out" | tr '\n' ' ')"
	else
		fail "$t: $(tail -3 "$T/$t.out")"
	fi
done

# A static binary: detected by `nearsock run`, runs on TCP, its preloaded peer still works.
ST=$B/nsk_static
if [ -x "$ST" ]; then
	D=$(new_domain)
	bg "$T/st.srv.out" "$T/st.srv.err" env NEARSOCK_DIR="$D" "$NSK" run -- "$ECHO" server \
		--port 0 --style blocking --conns 1
	SRV=$LAST_PID
	if wait_listen "$T/st.srv.out" "$SRV"; then
		if env NEARSOCK_DIR="$D" "$NSK" run -- "$ST" 127.0.0.1 "$PORT" $((8 << 20)) \
			>"$T/st.out" 2>"$T/st.err"; then
			grep -q 'statically linked' "$T/st.err" ||
				fail "static: nearsock run did not warn: $(cat "$T/st.err")"
			ok "static client: $(cat "$T/st.out")"
		else
			fail "static client failed: $(tail -2 "$T/st.out" "$T/st.err")"
		fi
		wait_pid "$SRV" 30 || fail "static: server did not finish"
		srv=$(line_of "$T/st.srv.out" '"role"')
		[ "$(jget tx_shm "$srv")" = 0 ] || fail "static: the server used shared memory: $srv"
	else
		fail "static: server did not start"
	fi
else
	echo "note: $ST not built (no static libc): static-binary check not run"
fi
finish
