#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# echo.sh STYLE — an nsk_echo pair with libnearsock preloaded, both processes under valgrind
# memcheck: a checksummed transfer through shared memory must report no memory errors and no
# definite leaks in either process.
set -uo pipefail
STYLE=${1:-blocking}
BUILD=${NSK_BUILD:?}
command -v valgrind >/dev/null || { echo "SKIP: valgrind not installed"; exit 77; }
T=$(mktemp -d)
export NEARSOCK_DIR=$T/domain
mkdir -m 700 "$NEARSOCK_DIR"
trap 'kill $SRV 2>/dev/null; rm -rf "$T"' EXIT
VG=(valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
    --track-fds=no --quiet)
LIB=$BUILD/libnearsock.so

LD_PRELOAD=$LIB "${VG[@]}" --log-file="$T/srv.vg" "$BUILD/nsk_echo" server --port 0 \
	--style "$STYLE" > "$T/srv.out" 2>&1 &
SRV=$!
for _ in $(seq 200); do grep -q listening "$T/srv.out" 2>/dev/null && break; sleep 0.1; done
PORT=$(sed -n 's/.*"listening": \([0-9]*\).*/\1/p' "$T/srv.out")
[ -n "$PORT" ] || { echo "FAIL: server did not start"; cat "$T/srv.out" "$T/srv.vg"; exit 1; }
LD_PRELOAD=$LIB timeout 240 "${VG[@]}" --log-file="$T/cli.vg" "$BUILD/nsk_echo" client \
	--port "$PORT" --bytes $((8 << 20)) --style "$STYLE" > "$T/cli.out" 2>&1
crc=$?
wait $SRV
src=$?
cat "$T/cli.out"
rc=0
for side in cli srv; do
	if [ -s "$T/$side.vg" ]; then
		echo "valgrind ($side):"
		cat "$T/$side.vg"
	fi
done
[ $crc -eq 0 ] || { echo "FAIL: client exited with $crc (99: valgrind found errors)"; rc=1; }
[ $src -eq 0 ] || { echo "FAIL: server exited with $src (99: valgrind found errors)"; rc=1; }
grep -q '"mode": 2' "$T/cli.out" || { echo "FAIL: the connection did not use shared memory"; rc=1; }
[ $rc -eq 0 ] && echo PASS
exit $rc
