#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# udp_features.sh — UDP semantics under `nearsock run`, each case also run without the
# library (the reference): MSG_PEEK, MSG_TRUNC, zero-length datagrams, connected UDP,
# read/write, IPv4/IPv6, wildcard and dual-stack binds, implicit binds (source addresses
# as the kernel reports them, replies reaching the sender), sendmmsg/recvmmsg, FIONREAD,
# poll/select/epoll (EPOLLET) and blocking receivers woken by wake-up datagrams that never
# reach the application; then exact drop accounting when an inbox overflows.
. "$(dirname "$0")/lib.sh"

U=$B/nsk_udp
[ -x "$U" ] || skip "$U not built"
D=$(new_domain)
IPV6=1
if ! python3 -c 'import socket; s=socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.bind(("::1", 0))' 2>/dev/null; then
	IPV6=0
fi
[ "$IPV6" = 1 ] || skip "no IPv6 loopback (the feature cases include ::1)"

echo "--- reference (kernel only)"
timeout -k 2 30 "$U" features >"$T/ref.out" 2>&1
rc=$?
cat "$T/ref.out"
[ "$rc" = 0 ] || fail "the reference run fails: the test itself is wrong"

echo "--- under nearsock"
timeout -k 2 30 env NEARSOCK_DIR="$D" "$NSK" run -- "$U" features >"$T/nsk.out" 2>&1
rc=$?
cat "$T/nsk.out"
[ "$rc" = 0 ] || fail "features under nearsock (rc $rc)"
echo "--- the same with NEARSOCK_SPIN_US=0 (every wait sleeps)"
timeout -k 2 30 env NEARSOCK_DIR="$D" NEARSOCK_SPIN_US=0 "$NSK" run -- "$U" features >"$T/nsk0.out" 2>&1
rc=$?
cat "$T/nsk0.out"
[ "$rc" = 0 ] || fail "features under nearsock, spin 0 (rc $rc)"

echo "--- a full inbox drops and counts exactly"
timeout -k 2 30 env NEARSOCK_DIR="$D" "$NSK" run -- "$U" drops --count 50000 >"$T/drops.out" 2>&1
rc=$?
cat "$T/drops.out"
L=$(line_of "$T/drops.out" '"role": "drops"')
[ "$rc" = 0 ] && [ "$(jget preloaded "$L")" = 1 ] || fail "drop accounting (rc $rc)"
R=$(jget received "$L")
timeout -k 2 30 "$U" drops --count 50000 >"$T/kdrops.out" 2>&1
K=$(jget received "$(line_of "$T/kdrops.out" '"role": "drops"')")
echo "a receiver that does not read keeps $R of 50000 100-byte datagrams (kernel: $K)"
gt "$R" "$K" || fail "the inbox keeps fewer datagrams than the kernel's default buffer"
finish
