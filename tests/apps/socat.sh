#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# socat, plain and under nearsock, 32 MiB of random bytes checked by sha256:
#   socat.sh tcp         - client to server (upload), server to client (download), and a
#                          `TCP-LISTEN,fork` server whose per-connection child runs
#                          EXEC:cat (socketpair to the program) echoing the bytes back
#   socat.sh exec-nofork - EXEC:cat,nofork: socat execs cat with the accepted socket as its
#                          stdin/stdout (inetd style, a socket inherited across exec)
# Both ends preloaded: the server's bytes went through shared memory.
. "$(dirname "$0")/lib.sh"
need socat
MODE=${1:-tcp}
V=$(pkg_version socat)
SIZE=33554432
DATA=$SCR/data
head -c "$SIZE" /dev/urandom >"$DATA"
want=$(sha256sum <"$DATA" | cut -d' ' -f1)
sum() { sha256sum <"$1" | cut -d' ' -f1; }

# transfer RUN NAME SERVER-ARGS -- CLIENT-ARGS - a socat `TCP-LISTEN,fork` server (it stays
# alive, so its counters, which include its per-connection children's, can be read) and one
# socat client; PORT in the arguments is replaced. Sets MS and D/D_* (lib.sh delta).
transfer() {
	local run=$1 name=$2 p srv t0 t1 a s0 i
	shift 2
	p=$(free_port)
	local sargs=() cargs=() side=s
	for a in "$@"; do
		if [ "$a" = -- ]; then side=c; continue; fi
		a=${a//PORT/$p}
		if [ $side = s ]; then sargs+=("$a"); else cargs+=("$a"); fi
	done
	if [ "$run" = ns ]; then start_bg ns socat "${sargs[@]}"; else start_bg socat "${sargs[@]}"; fi
	srv=$LAST_PID
	wait_port "$p"
	s0=$(snap)
	t0=$(date +%s%N)
	tmo 60 $run socat "${cargs[@]}" || fail "$name: socat client failed or hung ($?)"
	for i in $(seq 200); do # until the connection's child is gone (file written and closed)
		pgrep -P "$srv" >/dev/null || break
		sleep 0.05
	done
	pgrep -P "$srv" >/dev/null && fail "$name: the server's child did not finish"
	t1=$(date +%s%N)
	MS=$(((t1 - t0) / 1000000))
	still_alive "$srv" "$name: socat server"
	delta "$s0" "$(snap)"
}
# check NAME FILE - the file's checksum must be the data's; with nearsock also shm counters
check() {
	[ "$(sum "$2")" = "$want" ] || fail "$1: received bytes differ from those sent"
}
# With `fork` the parent closes its copy of the accepted socket while the child uses it: the
# claim is counted, but the child's byte counters are lost today (docs/COMPATIBILITY.md), so
# the claim is what proves the upgrade here.
shm_check() {
	echo "$1: $D"
	[ "$D_CLAIMS" -ge 1 ] || fail "$1: the connection was not upgraded ($D)"
}

case $MODE in
tcp)
	for run in plain ns; do
		transfer $run "upload ($run)" -u TCP-LISTEN:PORT,reuseaddr,fork,bind=127.0.0.1 "CREATE:$SCR/up.$run" -- \
			-u "OPEN:$DATA" TCP:127.0.0.1:PORT
		check "upload ($run)" "$SCR/up.$run"
		eval "up_$run=$MS"
	done
	shm_check upload
	row socat "$V" "upload: socat -u OPEN:file TCP → socat -u TCP-LISTEN CREATE:file, 32 MiB, sha256" pass \
		"$(ratio "$up_plain" "$up_ns")x" "claims $D_CLAIMS (bytes not counted: fork, see below)"
	# a client that never sends is never offered shared memory in lazy mode (the offer waits
	# for the client's first send): eager upgrade for the download
	for run in plain ns; do
		NEARSOCK_UPGRADE=eager transfer $run "download ($run)" -u "OPEN:$DATA" TCP-LISTEN:PORT,reuseaddr,fork,bind=127.0.0.1 -- \
			-u TCP:127.0.0.1:PORT "CREATE:$SCR/down.$run"
		check "download ($run)" "$SCR/down.$run"
		eval "down_$run=$MS"
	done
	shm_check download
	row socat "$V" "download: socat -u OPEN:file TCP-LISTEN → socat -u TCP CREATE:file, 32 MiB, sha256, NEARSOCK_UPGRADE=eager" pass \
		"$(ratio "$down_plain" "$down_ns")x" "claims $D_CLAIMS (bytes not counted: fork, see below)"
	for run in plain ns; do
		# fork: the listener forks a child per connection; EXEC runs cat on a socketpair
		p=$(free_port)
		if [ $run = ns ]; then
			start_bg ns socat TCP-LISTEN:$p,reuseaddr,fork,bind=127.0.0.1 EXEC:cat
		else
			start_bg socat TCP-LISTEN:$p,reuseaddr,fork,bind=127.0.0.1 EXEC:cat
		fi
		SRV=$LAST_PID
		wait_port "$p"
		s0=$(snap)
		t0=$(date +%s%N)
		tmo 60 $run socat -t 30 - TCP:127.0.0.1:$p <"$DATA" >"$SCR/echo.$run" ||
			fail "EXEC:cat echo ($run): socat client failed or hung"
		t1=$(date +%s%N)
		eval "echo_$run=$(((t1 - t0) / 1000000))"
		check "EXEC:cat echo ($run)" "$SCR/echo.$run"
		if [ $run = ns ]; then
			delta "$s0" "$(snap)"
			echo "fork + EXEC:cat echo: $D"
			[ "$D_CLAIMS" -ge 1 ] || fail "fork + EXEC:cat: the connection was not upgraded ($D)"
			still_alive "$SRV" "socat fork server"
		fi
	done
	row socat "$V" "TCP-LISTEN,fork EXEC:cat (child per connection, socketpair to cat), 32 MiB echoed, sha256" pass \
		"$(ratio "$echo_plain" "$echo_ns")x" "claims $D_CLAIMS (bytes not counted: fork, see below)"
	;;
exec-nofork)
	for run in plain ns; do
		p=$(free_port)
		if [ $run = ns ]; then
			start_bg ns socat TCP-LISTEN:$p,reuseaddr,bind=127.0.0.1 EXEC:cat,nofork
		else
			start_bg socat TCP-LISTEN:$p,reuseaddr,bind=127.0.0.1 EXEC:cat,nofork
		fi
		srv=$LAST_PID
		watch_start "$srv"
		wait_port "$p"
		rc=0
		# the client keeps its side open a second after the data, so that cat (which exits
		# at EOF) lives long enough for its counters to be sampled
		{ cat "$DATA"; sleep 2; } | tmo 15 $run socat -t 10 - TCP:127.0.0.1:$p >"$SCR/nofork.$run" || rc=$?
		timeout 10 tail --pid="$srv" -f /dev/null || true
		CNT=$(watch_result "$srv")
		got=$(stat -c %s "$SCR/nofork.$run")
		echo "EXEC:cat,nofork ($run): client exit $rc, $got of $SIZE bytes echoed"
		if [ "$(sum "$SCR/nofork.$run")" != "$want" ]; then
			row socat "$V" "TCP-LISTEN EXEC:cat,nofork (socket inherited across exec), 32 MiB echoed" FAIL "-" "$got of $SIZE bytes came back"
			fail "EXEC:cat,nofork ($run): $got of $SIZE bytes came back, or different ones: after socat upgraded the accepted socket, cat (a new program image) reads and writes it through the kernel and does not know the connection moved to shared memory"
		fi
		eval "nofork_$run=1"
	done
	set -- $CNT
	D_CLAIMS=$1 D_SHM=$2 D_TCP=$3 D_SHARE=$(python3 -c "print('%.4f' % ($2/($2+$3) if $2+$3 else 0))")
	D="claims=$1 shm=$2 tcp=$3 share=$D_SHARE"
	shm_check "EXEC:cat,nofork"
	[ "$D_SHM" -gt 0 ] || fail "EXEC:cat,nofork: no byte went through shared memory ($D)"
	row socat "$V" "TCP-LISTEN EXEC:cat,nofork (socket inherited across exec), 32 MiB echoed" pass "-" "claims $D_CLAIMS (bytes not counted: fork, see below)"
	;;
*)
	fail "unknown mode $MODE (tcp or exec-nofork)"
	;;
esac
echo PASS
