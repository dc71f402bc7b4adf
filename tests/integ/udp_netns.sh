#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# udp_netns.sh — remote UDP is unchanged and merged with local UDP: a preloaded server in
# network namespace A bound to 0.0.0.0 echoes at the same time for a preloaded client in A
# (127.0.0.1: through the inboxes) and a preloaded client in namespace B over a veth pair
# (the kernel: another namespace is another host, even with the same NEARSOCK_DIR). Both
# echo streams must be exact; the counters must show which path each took.
. "$(dirname "$0")/lib.sh"

U=$B/nsk_udp
[ -x "$U" ] || skip "$U not built"
netns_pair nsk-ut 79
D=$(new_domain)
N=50000

bg "$T/srv.out" "$T/srv.err" ip netns exec "$A" env NEARSOCK_DIR="$D" "$NSK" run -- "$U" server \
	--addr 0.0.0.0 --style epoll --ends 2
SRV=$LAST_PID
wait_listen "$T/srv.out" "$SRV" || { fail "server did not start"; finish; }
P=$PORT
echo "--- $N datagrams from 127.0.0.1 in $A and $N from $NET.2 in $Bn to 0.0.0.0:$P in $A"
bg "$T/local.out" "$T/local.err" ip netns exec "$A" env NEARSOCK_DIR="$D" "$NSK" run -- "$U" client \
	--addr 127.0.0.1 --port "$P" --count "$N" --seed 1
LOC=$LAST_PID
timeout -k 2 40 ip netns exec "$Bn" env NEARSOCK_DIR="$D" "$NSK" run -- "$U" client \
	--addr "$NET.1" --port "$P" --count "$N" --seed 2 --max-size 1400 --window-bytes 16384 >"$T/remote.out" 2>"$T/remote.err"
rc=$?
wait_pid "$LOC" 40
rcl=$?
wait_pid "$SRV" 10
cat "$T/local.out" "$T/remote.out" "$T/srv.out" "$T/local.err" "$T/remote.err" "$T/srv.err"
L=$(line_of "$T/local.out" '"role": "client"')
R=$(line_of "$T/remote.out" '"role": "client"')
S=$(line_of "$T/srv.out" '"role": "server"')
[ "$rc" = 0 ] && [ "$rcl" = 0 ] || fail "a client failed (remote rc $rc, local rc $rcl)"
for X in "$L" "$R"; do
	[ "$(jget preloaded "$X")" = 1 ] || fail "a client was not preloaded: $X"
	[ "$(jget bad "$X")" = 0 ] && [ "$(jget bad_src "$X")" = 0 ] || fail "wrong echoes: $X"
done
[ "$(jget lost "$L")" = 0 ] || fail "local client lost $(jget lost "$L")"
# Over a veth a few datagrams may be lost by the kernel; the counters must still tell the path.
[ "$(jget tx_shm "$R")" = 0 ] && [ "$(jget rx_shm "$R")" = 0 ] || fail "the remote client used shm"
gt "$(jget tx_kernel "$R")" $((N - 1)) || fail "the remote client's datagrams did not go through the kernel"
gt "$(jget tx_shm "$L")" $((N - 1)) || fail "the local client's datagrams did not go through the inbox"
gt "$(jget rx_shm "$S")" $((N - 1)) || fail "server: local datagrams not received through the inbox"
gt "$(jget rx_kernel "$S")" $((N - 1 - $(jget lost "$R"))) || fail "server: remote datagrams not received through the kernel"
ok "local: $(jget tx_shm "$L") through the inbox; remote: $(jget tx_kernel "$R") through the kernel, $(jget lost "$R") lost on the veth"
finish
