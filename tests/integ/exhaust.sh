#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# exhaust.sh — resources running out while a connection would move to shared memory. Each case:
# the connection keeps working on TCP (64 KiB echo rounds, byte-exact), nothing is left behind
# (descriptors, channel mappings), and the cause is counted (nearsock status --json / the
# process's connection table):
#   fd        no descriptor left for the channel's memfd (RLIMIT_NOFILE)       -> fallback_fd
#   fsize     RLIMIT_FSIZE below the segment's size (the kernel would raise SIGXFSZ
#             on the memfd)                                                   -> fallback_mem
#   mem       no address space for the segment's mapping (RLIMIT_AS; not under
#             sanitizers, which reserve terabytes of shadow)                  -> fallback_mem
#   registry  the domain's registry is full: the listener cannot register     -> fallback_registry
#   budget    NEARSOCK_MEM_BUDGET reached (2 channels of 1 MiB fit in 2.5 MiB): the third
#             connection stays on TCP                                          -> fallback_budget;
#             closing one gives its share back; a holder killed with SIGKILL has its share
#             reclaimed by the next process that needs it.
# (A full /dev/shm and a full connection table: bad_domain.sh and many_conns.sh.)
. "$(dirname "$0")/lib.sh"

EX=$B/nsk_exhaust
[ -x "$EX" ] || skip "$EX not built"
SAN=0
ldd "$LIB" 2>/dev/null | grep -q 'libasan\|libtsan' && SAN=1

# server NAME DIR CONNS [ENV...] - preloaded echo server; sets SRV and PORT.
server()
{
	local name=$1 dir=$2 conns=$3
	shift 3
	bg "$T/$name.srv.out" "$T/$name.srv.err" env NEARSOCK_DIR="$dir" "$@" "$NSK" run -- "$ECHO" \
		server --addr 127.0.0.1 --port 0 --conns "$conns"
	SRV=$LAST_PID
	wait_listen "$T/$name.srv.out" "$SRV"
}

# client NAME DIR MODE [ENV...] - nsk_exhaust client; its JSON line in R.
client()
{
	local name=$1 dir=$2 mode=$3
	shift 3
	timeout -k 2 30 env NEARSOCK_DIR="$dir" "$@" "$NSK" run -- "$EX" client "$PORT" "$mode" \
		>"$T/$name.out" 2>"$T/$name.err"
	R=$(line_of "$T/$name.out" '"ok"')
	echo "$name: $R"
}

# no_leak NAME - the rounds after the fallback left no descriptor or mapping behind.
no_leak()
{
	[ "$(jget fds_after "$R")" = "$(jget fds_before "$R")" ] || fail "$1: descriptors $(jget fds_before "$R") -> $(jget fds_after "$R")"
	[ "$(jget maps_after "$R")" = 0 ] || fail "$1: $(jget maps_after "$R") channel mappings left"
}

# status_field PID FIELD DIR - a process counter from nearsock status --json.
status_field()
{
	"$NSK" status --json --dir "$3" | tr -d '\n' | sed 's/}, *{/}\n{/g' | grep "\"pid\": $1, \"offers_sent\"" |
		sed -n 's/.*"'"$2"'": \([0-9]*\).*/\1/p'
}

# 1. EMFILE while creating the channel.
D=$(new_domain)
server fd "$D" 1 || fail "fd: server did not start"
client fd "$D" fd
[ "$(jget ok "$R")" = 1 ] || fail "fd: echo not exact: $R $(head -3 "$T/fd.err")"
[ "$(jget mode "$R")" = 3 ] || fail "fd: connection not on TCP for good (mode $(jget mode "$R"))"
[ "$(jget spare_fds "$R")" -gt 0 ] || fail "fd: the test did not use up the descriptors"
[ "$(jget fb_fd "$R")" -ge 1 ] && [ "$(jget fallbacks "$R")" -ge 1 ] || fail "fd: fallback not counted: $R"
no_leak fd
wait_pid "$SRV" 10

# 1b. RLIMIT_FSIZE below the segment: the kernel would kill the program with SIGXFSZ.
D=$(new_domain)
server fsize "$D" 1 || fail "fsize: server did not start"
client fsize "$D" fsize
[ "$(jget ok "$R")" = 1 ] || fail "fsize: echo not exact (killed by SIGXFSZ?): $R $(head -3 "$T/fsize.err")"
[ "$(jget mode "$R")" = 3 ] && [ "$(jget fb_mem "$R")" -ge 1 ] || fail "fsize: fallback not counted: $R"
no_leak fsize
wait_pid "$SRV" 10

# 2. ENOMEM mapping the segment.
if [ "$SAN" = 1 ]; then
	echo "mem: not applicable under sanitizers (RLIMIT_AS)"
else
	D=$(new_domain)
	server mem "$D" 1 || fail "mem: server did not start"
	client mem "$D" mem NEARSOCK_RING_SIZE=16M
	[ "$(jget ok "$R")" = 1 ] || fail "mem: echo not exact: $R $(head -3 "$T/mem.err")"
	[ "$(jget mode "$R")" = 3 ] || fail "mem: connection not on TCP for good (mode $(jget mode "$R"))"
	[ "$(jget fb_mem "$R")" -ge 1 ] || fail "mem: fallback not counted: $R"
	no_leak mem
	wait_pid "$SRV" 10
fi

# 3. Full registry.
D=$(new_domain)
bg "$T/fill.out" "$T/fill.err" "$EX" fill "$D" 60
FILL=$LAST_PID
for i in $(seq 250); do grep -q filled "$T/fill.out" 2>/dev/null && break; sleep 0.02; done
echo "registry: $(cat "$T/fill.out")"
[ "$(jget filled "$(cat "$T/fill.out")")" = 4096 ] || fail "registry: could not fill it: $(cat "$T/fill.out" "$T/fill.err")"
server registry "$D" 2 || fail "registry: server did not start"
client registry "$D" plain
[ "$(jget ok "$R")" = 1 ] && [ "$(jget tx_shm "$R")" = 0 ] || fail "registry: $R"
n=$(status_field "$SRV" fallback_registry "$D")
[ "$n" = 1 ] || fail "registry: the server counted $n registry fallbacks"
grep -q 'registry full' "$T/registry.srv.err" || fail "registry: the server did not say why"
client registry2 "$D" plain
wait_pid "$SRV" 10
kill "$FILL" 2>/dev/null
wait_pid "$FILL" 5
"$NSK" gc --dir "$D" >/dev/null
[ "$(reg_valid "$D")" = 0 ] || fail "registry: gc left $(reg_valid "$D") entries of the dead filler"
ok "registry full: listener unregistered ($(head -1 "$T/registry.srv.err" | sed 's/^nearsock\[[0-9]*\] //')), connections on TCP"

# 4. Domain memory budget: 2.5 MiB holds two 1 MiB channels (512 KiB rings), not three.
# Each client has its own one-connection server (the echo server serves one at a time).
# Fixed ring sizes keep the arithmetic exact (rings that grow against a budget: ringsize.sh).
export NEARSOCK_RING_SIZE=512K
D=$(new_domain)
BUD=(NEARSOCK_MEM_BUDGET=2560K)
SRVS=()
for h in 1 2; do
	server "bsrv$h" "$D" 1 "${BUD[@]}" || fail "budget: server $h did not start"
	SRVS+=("$SRV")
	bg "$T/hold$h.out" "$T/hold$h.err" env NEARSOCK_DIR="$D" "${BUD[@]}" "$NSK" run -- "$EX" client \
		"$PORT" hold "$T/release$h"
	eval "HOLD$h=$LAST_PID"
	for i in $(seq 500); do grep -q '"ok"' "$T/hold$h.out" 2>/dev/null && break; sleep 0.02; done
	R=$(line_of "$T/hold$h.out" '"ok"')
	[ "$(jget mode "$R")" = 2 ] || fail "budget: holder $h not on shared memory: $R $(head -3 "$T/hold$h.err")"
done
used=$("$NSK" status --json --dir "$D" | sed -n 's/.*"mem_used": \([0-9]*\).*/\1/p')
echo "budget: two channels held, domain mem_used $used"
[ "$used" = $((2 * (4096 + 1048576))) ] || fail "budget: mem_used $used with two channels"
# one_more NAME - a client through its own server, budget set.
one_more()
{
	server "$1.srv" "$D" 1 "${BUD[@]}" || { fail "budget: server for $1 did not start"; return; }
	client "$1" "$D" plain "${BUD[@]}"
	wait_pid "$SRV" 10
}
one_more budget3
[ "$(jget ok "$R")" = 1 ] && [ "$(jget mode "$R")" = 3 ] || fail "budget: third connection: $R"
[ "$(jget fb_budget "$R")" = 1 ] || fail "budget: refusal not counted: $R"
no_leak budget3
touch "$T/release1"
wait_pid "$HOLD1" 10
one_more budget4
[ "$(jget mode "$R")" = 2 ] || fail "budget: a released share was not given back: $R"
# A holder killed with SIGKILL cannot give its share back: with a new holder beside its dead
# share the budget is full, and the next channel needs the dead share reclaimed.
kill -9 "$HOLD2"
wait_pid "$HOLD2" 5
server bsrv3 "$D" 1 "${BUD[@]}" || fail "budget: server 3 did not start"
SRVS+=("$SRV")
bg "$T/hold3.out" "$T/hold3.err" env NEARSOCK_DIR="$D" "${BUD[@]}" "$NSK" run -- "$EX" client \
	"$PORT" hold "$T/release3"
HOLD3=$LAST_PID
for i in $(seq 500); do grep -q '"ok"' "$T/hold3.out" 2>/dev/null && break; sleep 0.02; done
R=$(line_of "$T/hold3.out" '"ok"')
[ "$(jget mode "$R")" = 2 ] || fail "budget: holder 3 not on shared memory: $R"
one_more budget5
[ "$(jget mode "$R")" = 2 ] || fail "budget: a killed holder's share was not reclaimed: $R"
touch "$T/release3"
wait_pid "$HOLD3" 10
for p in "${SRVS[@]}"; do wait_pid "$p" 10; done
used=$("$NSK" status --json --dir "$D" | sed -n 's/.*"mem_used": \([0-9]*\).*/\1/p')
[ "$used" = 0 ] || fail "budget: mem_used $used after every channel closed"
ok "budget: third channel refused and counted; shares given back on close and reclaimed after SIGKILL"

# 5. The domain's budget set by the agent (nearsockd --mem-budget), no NEARSOCK_MEM_BUDGET in
# the processes: 1.5 MiB holds one 1 MiB channel, not two.
D=$(new_domain)
"$B/nearsockd" --dir "$D" --once --mem-budget 1536K >/dev/null 2>&1 || fail "agent budget: nearsockd --once failed"
server asrv1 "$D" 1 || fail "agent budget: server 1 did not start"
A1=$SRV
bg "$T/ahold.out" "$T/ahold.err" env NEARSOCK_DIR="$D" "$NSK" run -- "$EX" client "$PORT" hold "$T/arelease"
AHOLD=$LAST_PID
for i in $(seq 500); do grep -q '"ok"' "$T/ahold.out" 2>/dev/null && break; sleep 0.02; done
R=$(line_of "$T/ahold.out" '"ok"')
[ "$(jget mode "$R")" = 2 ] || fail "agent budget: the first channel was refused: $R"
server asrv2 "$D" 1 || fail "agent budget: server 2 did not start"
A2=$SRV
client abudget2 "$D" plain
[ "$(jget ok "$R")" = 1 ] && [ "$(jget mode "$R")" = 3 ] || fail "agent budget: second connection: $R"
[ "$(jget fb_budget "$R")" = 1 ] || fail "agent budget: refusal not counted: $R"
touch "$T/arelease"
wait_pid "$AHOLD" 10
wait_pid "$A1" 10
wait_pid "$A2" 10
ok "agent budget: the domain's budget (set by nearsockd) refused the second channel"
finish
