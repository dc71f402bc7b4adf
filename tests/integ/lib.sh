# SPDX-License-Identifier: MIT
# lib.sh — helpers shared by the integration test scripts (sourced, not run): a private
# scratch directory and domain per test, background processes that are always reaped,
# JSON field extraction without external tools, and raw readers of the registry and
# connection-table files (layouts pinned in src/core/layout.h, version 1).
# Exit codes of the tests: 0 pass, 1 fail, 77 skip (reason printed).
set -uo pipefail

B=${NSK_BUILD:-}
if [ -z "$B" ]; then
	echo "SKIP: NSK_BUILD (the build directory) is not set"
	exit 77
fi
NSK=$B/nearsock
LIB=$B/libnearsock.so
ECHO=$B/nsk_echo
for f in "$NSK" "$LIB" "$ECHO"; do
	if [ ! -e "$f" ]; then
		echo "SKIP: $f not built"
		exit 77
	fi
done

# A sanitizer build of the library (-DNSK_SANITIZE=...): its helpers link the runtime
# themselves, but LD_PRELOAD puts the library ahead of it in the initial library list.
if ldd "$LIB" 2>/dev/null | grep -q libasan; then
	export ASAN_OPTIONS="verify_asan_link_order=0:detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
fi

T=$(mktemp -d /tmp/nsk-it.XXXXXX)
chmod 700 "$T"
# The shell's own stderr goes to a file replayed at exit without bash's "Killed" job notices
# (the tests kill processes on purpose).
exec 3>&2 2>"$T/sh.err"
FAILS=0
PIDS=()
CLEANUPS=()
LAST_PID=
PORT=

_nsk_exit()
{
	local p c
	for p in "${PIDS[@]}"; do
		kill -9 "$p" 2>/dev/null
	done
	for c in "${CLEANUPS[@]}"; do
		eval "$c" >/dev/null 2>&1
	done
	grep -v -E '^[^ ]+: line [0-9]+: +[0-9]+ Killed ' "$T/sh.err" >&3
	if [ -n "${NSK_KEEP:-}" ]; then
		echo "scratch kept in $T"
	else
		rm -rf "$T"
	fi
}
trap _nsk_exit EXIT
trap 'echo "interrupted"; exit 1' INT TERM

fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
ok() { echo "ok: $*"; }
skip() { echo "SKIP: $*"; exit 77; }
finish()
{
	if [ "$FAILS" -gt 0 ]; then
		echo "RESULT: $FAILS check(s) failed"
		exit 1
	fi
	echo "RESULT: pass"
	exit 0
}

# now_ms - monotonic-enough wall clock in milliseconds.
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# wait_until SECS CMD... - poll CMD every 50 ms until it succeeds; 1 if it never did.
wait_until()
{
	local lim=$(($1 * 1000)) t0
	shift
	t0=$(now_ms)
	until "$@"; do
		[ $(($(now_ms) - t0)) -gt "$lim" ] && return 1
		sleep 0.05
	done
}

# new_domain - a fresh private domain directory (mode 0700) inside the scratch directory.
new_domain()
{
	local d
	d=$(mktemp -d "$T/dom.XXXXXX") && chmod 700 "$d" && echo "$d"
}

# jget KEY TEXT - the value of "KEY": in a one-line JSON object (quotes stripped).
jget()
{
	sed -n 's/.*"'"$1"'": *\("[^"]*"\|-\{0,1\}[0-9][0-9.e+-]*\).*/\1/p' <<<"$2" | head -1 | tr -d '"'
}

# line_of FILE PATTERN - the first line of FILE matching PATTERN (grep -E).
line_of() { grep -E -m1 -- "$2" "$1" 2>/dev/null; }

# bg OUT ERR CMD... - start CMD in the background; its pid in LAST_PID (killed at exit).
# With `nearsock run`, env and `ip netns exec` (which exec) the pid is the program's own;
# CMD must not be a shell function (the pid would be a subshell's).
bg()
{
	local out=$1 err=$2
	shift 2
	"$@" >"$out" 2>"$err" 3>&- &
	LAST_PID=$!
	PIDS+=("$LAST_PID")
}

# alive PID - the process exists and is not a zombie.
alive()
{
	local st
	st=$(sed -n 's/^[0-9]* (.*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null)
	[ -n "$st" ] && [ "$st" != Z ]
}

# wait_pid PID SECS - wait for a background process; its exit status, or 124 after
# killing it when it did not end in time.
wait_pid()
{
	local p=$1 lim=$(($2 * 1000)) t0
	t0=$(now_ms)
	while alive "$p"; do
		if [ $(($(now_ms) - t0)) -gt "$lim" ]; then
			kill -9 "$p" 2>/dev/null
			{ wait "$p"; } 2>/dev/null
			return 124
		fi
		sleep 0.02
	done
	{ wait "$p"; } 2>/dev/null
}

# wait_listen OUT PID - wait (5 s) until the server writing OUT printed {"listening": P};
# sets PORT. Fails if the process died first.
wait_listen()
{
	local out=$1 p=$2 i l
	PORT=
	for i in $(seq 250); do
		l=$(line_of "$out" '"listening"')
		if [ -n "$l" ]; then
			PORT=$(jget listening "$l")
			return 0
		fi
		alive "$p" || break
		sleep 0.02
	done
	echo "server did not start listening; its output:"
	cat "$out" "${out%.out}.err" 2>/dev/null | head -20
	return 1
}

# pct PART WHOLE - PART/WHOLE in percent, two decimals.
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", 100 * a / b; else print "0" }'; }
# gt X Y - X > Y, numerically (floats allowed).
gt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a > b) }'; }

# reg_valid DIR - VALID entries (kind 2) in the domain's registry file, whatever their owner.
reg_valid()
{
	local f=$1/registry magic
	[ -f "$f" ] || { echo 0; return; }
	magic=$(od -An -tu4 -N4 "$f" | tr -d ' ')
	if [ "$magic" != 1196641102 ]; then # NSK_REG_MAGIC
		echo "bad-magic"
		return
	fi
	od -An -v -tu4 -w128 -j64 "$f" | awk '$1 % 4 == 2 { n++ } END { print n + 0 }'
}

# proc_slots FILE - occupied slots (owner pid != 0) of a connection-table file.
proc_slots()
{
	local f=$1 magic high
	magic=$(od -An -tu4 -N4 "$f" | tr -d ' ')
	if [ "$magic" != 1347636046 ]; then # NSK_PROC_MAGIC
		echo "bad-magic"
		return
	fi
	high=$(od -An -tu8 -j32 -N8 "$f" | tr -d ' ')
	[ "$high" -gt 0 ] || { echo 0; return; }
	od -An -v -tu4 -w256 -j256 -N $((high * 256)) "$f" | awk '$1 != 0 { n++ } END { print n + 0 }'
}

# chan_maps PID - mappings of channel segments in a live process.
chan_maps() { grep -c 'memfd:nearsock-chan' "/proc/$1/maps" 2>/dev/null || true; }
# fd_count PID - open descriptors of a live process.
fd_count() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }

echo "scratch: $T"

# netns_pair PREFIX OCTET - two network namespaces A and Bn joined by a veth pair, 10.OCTET.x.1
# in A and .2 in Bn (x from our pid), both with loopback up; deleted at exit. Sets A, Bn, NET
# and the functions inA / inB. Skips (77) without ip(8) or the right to create namespaces.
netns_pair()
{
	command -v ip >/dev/null || skip "no ip(8) (iproute2)"
	A=$1$$a
	Bn=$1$$b
	if ! ip netns add "$A" 2>"$T/ns.err"; then
		skip "cannot create network namespaces: $(cat "$T/ns.err")"
	fi
	CLEANUPS+=("ip netns del $A")
	ip netns add "$Bn" || { fail "ip netns add $Bn"; finish; }
	CLEANUPS+=("ip netns del $Bn")
	NET=10.$2.$(($$ % 250 + 1))
	inA() { ip netns exec "$A" "$@"; }
	inB() { ip netns exec "$Bn" "$@"; }
	# The veth pair is created inside A with its peer moved straight to B: no interface ever
	# appears in the caller's namespace.
	inA ip link add veth-a type veth peer name veth-b netns "$Bn" &&
		inA ip addr add "$NET.1/24" dev veth-a && inA ip link set veth-a up &&
		inA ip link set lo up && inB ip addr add "$NET.2/24" dev veth-b &&
		inB ip link set veth-b up && inB ip link set lo up ||
		{ fail "veth set-up failed"; finish; }
	local i
	for i in $(seq 50); do
		inB ping -c1 -W1 "$NET.1" >/dev/null 2>&1 && break
		sleep 0.1
	done
}
