#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# hostile.sh — a hostile peer scribbles out-of-range indices, fin flags and garbage into the
# shared ring header of an upgraded connection (nsk_hostile: one process per attack, see its
# source for the list). The victim's next call must fail with ECONNRESET (within 1 s for a
# victim already asleep), later calls too, the connection must be marked broken, the victim
# must log one warning, keep serving new connections over shared memory and exit normally.
# With NSK_ASAN_BUILD=<build dir configured with -DNSK_SANITIZE=address,undefined> the attacks
# run a second time against that library, under AddressSanitizer and UBSan.
. "$(dirname "$0")/lib.sh"

HOSTILE=$B/nsk_hostile
[ -x "$HOSTILE" ] || skip "$HOSTILE not built"
ATTACKS=(rx_tail_huge rx_tail_over rx_tail_behind rx_fin_garbage rx_garbage tx_head_ahead
	tx_head_behind tx_garbage rx_sleeping rx_poll hdr_garbage)

# attack_all LABEL PRELOAD-COMMAND... - run every attack through the given launcher.
attack_all()
{
	local label=$1
	shift
	local a R D
	for a in "${ATTACKS[@]}"; do
		D=$(new_domain)
		timeout -k 2 40 env NEARSOCK_DIR="$D" "$@" "$HOSTILE" "$a" >"$T/$label.$a.out" \
			2>"$T/$label.$a.err"
		local rc=$?
		R=$(line_of "$T/$label.$a.out" '"attack"')
		echo "$label: $R"
		if [ "$rc" != 0 ] || [ "$(jget ok "$R")" != 1 ]; then
			fail "$label $a: $(jget problem "$R") (rc $rc) — $(jget detail "$R")"
			head -30 "$T/$label.$a.err"
			continue
		fi
		if grep -qE 'AddressSanitizer|runtime error:|LeakSanitizer' "$T/$label.$a.err"; then
			fail "$label $a: sanitizer report:"
			head -40 "$T/$label.$a.err"
		fi
		# The victim (and only it) reports the broken channel, once.
		n=$(grep -c 'peer broke the channel' "$T/$label.$a.err")
		if [ "$(jget result "$R")" = ECONNRESET ] && [ "$n" != 1 ]; then
			fail "$label $a: $n 'peer broke the channel' warnings, expected 1"
		fi
	done
}

attack_all preload "$NSK" run --
if [ -n "${NSK_ASAN_BUILD:-}" ]; then
	ALIB=$NSK_ASAN_BUILD/libnearsock.so
	if [ ! -e "$ALIB" ]; then
		fail "NSK_ASAN_BUILD=$NSK_ASAN_BUILD has no libnearsock.so"
	elif ! ldd "$ALIB" | grep -q libasan; then
		fail "$ALIB is not built with AddressSanitizer"
	else
		# The sanitizer runtimes must come first in the initial library list.
		RT=$(ldd "$ALIB" | awk '/lib(asan|ubsan)\.so/ { print $3 }' | tr '\n' ' ')
		echo "sanitized library $ALIB, runtimes $RT"
		ASAN_RUN=(env ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:halt_on_error=1
			UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 LD_PRELOAD="$RT$ALIB")
		"${ASAN_RUN[@]}" /bin/true >"$T/asan-start.out" 2>&1
		rc=$?
		if [ "$rc" != 0 ]; then
			fail "the sanitized library kills even /bin/true at start-up (exit $rc), before any attack:"
			head -20 "$T/asan-start.out"
			finish
		fi
		attack_all asan env ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:halt_on_error=1 \
			UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 LD_PRELOAD="$RT$ALIB"
	fi
else
	echo "NSK_ASAN_BUILD not set: the sanitizer pass is skipped"
fi
finish
