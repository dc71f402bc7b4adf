# SPDX-License-Identifier: MIT
# shellcheck shell=sh disable=SC2034 # sourced by tests/vm/guest.sh, which reads NAME_TIMEOUT
# redis-server in B, redis-benchmark in A over virtio-net, plain and under `nearsock run`
# (both ends, NEARSOCK_DOMAIN=ivshmem:auto: the nearsock run goes through the region): requests
# per second for SET and GET; the figures are emulated (TCG) and only comparable with each other.
CASES="$CASES redis"
redis_TIMEOUT=150
REDIS_N=${REDIS_N:-4000}

export NEARSOCK_DOMAIN=ivshmem:auto # (redis-server under nearsock in B, the benchmark in A)
redis_B() {
	command -v redis-server >/dev/null || { echo "redis-server not in the initramfs"; return 77; }
	timeout 140 "$NSK" run -- redis-server --bind "$IP_B" --port 6379 --save '' \
		--appendonly no --protected-mode no --daemonize no --loglevel warning
	rc=$?
	[ $rc -eq 0 ] && echo "redis-server shut down by the client" || echo "redis-server exited with $rc"
	return $rc
}

# bench [ns] - SET and GET rps, "SET=N GET=N".
bench() {
	pre=""
	[ "$1" = ns ] && pre="$NSK run --"
	# shellcheck disable=SC2086 # $pre is empty or the nearsock run prefix
	$pre redis-benchmark -h "$IP_B" -p 6379 -n "$REDIS_N" -c 10 -t set,get --csv 2>/dev/null |
		awk -F, '{ gsub(/"/, ""); if ($1 == "SET" || $1 == "GET") printf "%s=%d ", $1, $2 }'
}

redis_ping() { printf 'PING\r\n' | timeout 3 nc "$IP_B" 6379 2>/dev/null | grep -q PONG; }

redis_A() {
	command -v redis-benchmark >/dev/null || { echo "redis-benchmark not in the initramfs"; return 77; }
	retry 100 redis_ping || { echo "no redis-server at $IP_B"; return 1; }
	plain=$(bench plain)
	nsk=$(bench ns)
	printf 'SHUTDOWN NOSAVE\r\n' | timeout 3 nc "$IP_B" 6379 >/dev/null 2>&1
	echo "plain: $plain"
	echo "nearsock: $nsk"
	case "$plain $nsk" in *SET=*GET=*SET=*GET=*) ;; *) return 1 ;; esac
	echo "rps over virtio-net, $REDIS_N requests, 10 clients: plain ${plain}| nearsock ${nsk}"
}
