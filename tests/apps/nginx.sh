#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# nginx (master + 2 prefork workers, sendfile on, a private configuration in a scratch
# directory), plain and under nearsock. Every response body is checked byte-exactly.
#   nginx.sh wrk     - wrk keep-alive (lazy upgrade) and one connection per request
#                      (`Connection: close`, lazy and eager upgrade); a Lua script compares
#                      every body with the file.
#   nginx.sh curl    - curl fetches a 64 MiB random file (served with sendfile) and 200 small
#                      pages over one kept-alive connection; checksums equal the plain run's.
#   nginx.sh prefork - connections spread over both workers (listen ... reuseport): every
#                      kept-alive connection must be claimed (known limitation today, see
#                      docs/COMPATIBILITY.md).
. "$(dirname "$0")/lib.sh"
need nginx
MODE=${1:-wrk}
T=${WRK_SECONDS:-3}

WWW=$SCR/www
mkdir -p "$WWW" "$SCR/tmp"
chmod 755 "$SCR" "$WWW" # workers run as an unprivileged user when started by root
head -c 3072 /dev/urandom | base64 -w0 >"$WWW/small.html"
chmod 644 "$WWW/small.html"

# nginx_conf PORT NAME [LISTEN-OPTIONS] - a configuration file; prints its path.
nginx_conf() {
	local f=$SCR/$2.conf
	cat >"$f" <<-EOF
		worker_processes 2;
		daemon off;
		master_process on;
		pid $SCR/$2.pid;
		error_log $SCR/$2.error.log warn;
		events { worker_connections 1024; }
		http {
		  access_log off;
		  sendfile on;
		  keepalive_requests 1000000;
		  keepalive_timeout 60s;
		  client_body_temp_path $SCR/tmp/$2-body;
		  proxy_temp_path $SCR/tmp/$2-proxy;
		  fastcgi_temp_path $SCR/tmp/$2-fastcgi;
		  uwsgi_temp_path $SCR/tmp/$2-uwsgi;
		  scgi_temp_path $SCR/tmp/$2-scgi;
		  server { listen 127.0.0.1:$1 ${3:-}; root $WWW; }
		}
	EOF
	echo "$f"
}
# start_nginx ns|plain PORT NAME [LISTEN-OPTIONS] - master pid in LAST_PID
start_nginx() {
	local conf
	conf=$(nginx_conf "$2" "$3" "${4:-}")
	if [ "$1" = ns ]; then
		start_bg ns nginx -c "$conf" -p "$SCR" -e "$SCR/$3.error.log"
	else
		start_bg nginx -c "$conf" -p "$SCR" -e "$SCR/$3.error.log"
	fi
	wait_port "$2"
}

WRKLUA=$SCR/check.lua
cat >"$WRKLUA" <<'EOF'
-- every response: status 200 and the body equal to the file named by the first argument
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args)
  local f = assert(io.open(args[1], "rb")); want = f:read("*a"); f:close()
  good = 0; bad = 0
end
function response(status, headers, body)
  if status == 200 and body == want then good = good + 1 else bad = bad + 1 end
end
function done(summary, latency, requests)
  local g, b = 0, 0
  for _, t in ipairs(threads) do g = g + t:get("good"); b = b + t:get("bad") end
  io.write(string.format("CHECKED good=%d bad=%d errors=%d\n", g, b,
    summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.status + summary.errors.timeout))
end
EOF

# wrk_run RUN PORT CONNS [HEADER] - "requests/s good bad errors"; fails on any bad response
wrk_run() {
	local out rps chk
	out=$($1 wrk -t 2 -c "$3" -d "${T}s" ${4:+-H "$4"} -s "$WRKLUA" "http://127.0.0.1:$2/small.html" -- "$WWW/small.html" 2>&1) ||
		fail "wrk failed: $(echo "$out" | tail -3)"
	rps=$(echo "$out" | sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p')
	chk=$(echo "$out" | sed -n 's/^CHECKED good=\([0-9]*\) bad=\([0-9]*\) errors=\([0-9]*\).*/\1 \2 \3/p')
	[ -n "$rps" ] && [ -n "$chk" ] || fail "wrk printed no result: $out"
	echo "$out" | grep -E "Socket errors|Non-2xx" >&2 || true
	set -- $chk
	[ "$1" -gt 0 ] && [ "$2" = 0 ] || fail "wrk: $2 bad responses of $(($1 + $2))"
	# with Connection: close wrk counts a connection the server closed as a read error only
	# if it happened before a full response; every response was checked above
	echo "$rps $1 $2 $3"
}

case $MODE in
wrk)
	need wrk
	P=$(free_port)
	start_nginx ns "$P" ns
	SRV=$LAST_PID
	P2=$(free_port)
	start_nginx plain "$P2" plain
	V=$(pkg_version nginx-light)/wrk\ $(pkg_version wrk)

	tka=($(wrk_run plain "$P2" 16))
	s0=$(snap)
	nka=($(wrk_run ns "$P" 16))
	s1=$(snap)
	delta "$s0" "$s1"
	echo "keep-alive, 16 connections: plain ${tka[0]} rps (${tka[1]} checked), nearsock ${nka[0]} rps (${nka[1]} checked); $D"
	[ "${tka[3]}" = 0 ] && [ "${nka[3]}" = 0 ] || fail "keep-alive: socket errors plain ${tka[3]} nearsock ${nka[3]}"
	# Both workers share the rendezvous socket: today an offer drained by the other worker
	# is lost, so how many of the 16 are claimed depends on how the kernel spread them
	# (nginx.sh prefork asserts all 16); here: some connections did move.
	[ "$D_CLAIMS" -ge 1 ] && [ "$D_SHM" -gt 0 ] || fail "keep-alive: no connection was upgraded ($D)"
	row "nginx + wrk" "$V" "wrk -t2 -c16 -d${T}s keep-alive, 4 KiB page, every body compared" pass \
		"$(ratio "${nka[0]}" "${tka[0]}")x" "claims $D_CLAIMS of 16, shm share $D_SHARE"

	tcl=($(wrk_run plain "$P2" 8 "Connection: close"))
	s1=$(snap)
	ncl=($(wrk_run ns "$P" 8 "Connection: close"))
	s2=$(snap)
	delta "$s1" "$s2"
	echo "Connection: close (lazy): plain ${tcl[0]} rps, nearsock ${ncl[0]} rps; $D"
	# one request per connection: by design no offer, no channel (lazy upgrade)
	[ "$D_SHM" = 0 ] || fail "Connection: close, lazy: one-request connections used shared memory ($D)"
	row "nginx + wrk" "$V" "wrk -c8 -H 'Connection: close' (new connection per request), lazy upgrade" pass \
		"$(ratio "${ncl[0]}" "${tcl[0]}")x" "claims $D_CLAIMS (none by design: one request per connection)"

	P3=$(free_port)
	NEARSOCK_UPGRADE=eager start_nginx ns "$P3" eager
	s2=$(snap)
	ecl=($(NEARSOCK_UPGRADE=eager wrk_run ns "$P3" 8 "Connection: close"))
	s3=$(snap)
	delta "$s2" "$s3"
	echo "Connection: close (eager): nearsock ${ecl[0]} rps (${ecl[1]} checked); $D"
	[ "$D_CLAIMS" -ge 100 ] || fail "Connection: close, eager: only $D_CLAIMS connections upgraded"
	[ "$D_SHM" -gt 0 ] || fail "Connection: close, eager: no byte went through shared memory"
	row "nginx + wrk" "$V" "wrk -c8 -H 'Connection: close', NEARSOCK_UPGRADE=eager" pass \
		"$(ratio "${ecl[0]}" "${tcl[0]}")x" "claims $D_CLAIMS of ${ecl[1]}, shm share $D_SHARE"
	still_alive "$SRV" nginx
	;;
curl)
	need curl
	san_probe curl -s -o /dev/null --max-time 3 file:///dev/null
	head -c 67108864 /dev/urandom >"$WWW/big.bin"
	chmod 644 "$WWW/big.bin"
	want=$(sha256sum <"$WWW/big.bin")
	P=$(free_port)
	start_nginx ns "$P" ns
	SRV=$LAST_PID
	P2=$(free_port)
	start_nginx plain "$P2" plain
	V="nginx $(pkg_version nginx-light), curl $(pkg_version curl)"

	t0=$(date +%s%N)
	got_tcp=$(curl -sf "http://127.0.0.1:$P2/big.bin" | sha256sum)
	t1=$(date +%s%N)
	s0=$(snap)
	got_ns=$(ns curl -sf "http://127.0.0.1:$P/big.bin" | sha256sum)
	t2=$(date +%s%N)
	s1=$(snap)
	delta "$s0" "$s1"
	[ "$got_tcp" = "$want" ] || fail "plain curl: wrong checksum (test broken?)"
	[ "$got_ns" = "$want" ] || fail "64 MiB through nginx sendfile under nearsock: wrong checksum"
	tt=$(((t1 - t0) / 1000000)) tn=$(((t2 - t1) / 1000000))
	echo "64 MiB: plain ${tt} ms, nearsock ${tn} ms, checksums equal; $D"
	[ "$D_CLAIMS" -ge 1 ] || fail "the 64 MiB download was not upgraded"
	ge "$D_SHARE" 0.9 || fail "only $D_SHARE of the 64 MiB went through shared memory"
	row "curl against nginx" "$V" "curl 64 MiB random file, sendfile on, sha256 compared" pass \
		"$(ratio "$tt" "$tn")x" "claims $D_CLAIMS, shm share $D_SHARE"

	urls=()
	for i in $(seq 1 200); do urls+=("http://127.0.0.1:PORT/small.html"); done
	want_small=$(for i in $(seq 1 200); do cat "$WWW/small.html"; done | sha256sum)
	t0=$(date +%s%N)
	got_tcp=$(curl -sf "${urls[@]//PORT/$P2}" | sha256sum)
	t1=$(date +%s%N)
	got_ns=$(ns curl -sf "${urls[@]//PORT/$P}" | sha256sum)
	t2=$(date +%s%N)
	s2=$(snap)
	delta "$s1" "$s2"
	[ "$got_tcp" = "$want_small" ] || fail "plain curl, 200 pages: wrong checksum (test broken?)"
	[ "$got_ns" = "$want_small" ] || fail "200 pages over one connection under nearsock: wrong checksum"
	tt=$(((t1 - t0) / 1000000)) tn=$(((t2 - t1) / 1000000))
	echo "200 pages, one connection: plain ${tt} ms, nearsock ${tn} ms; $D"
	[ "$D_CLAIMS" = 1 ] || fail "200 pages over one kept-alive connection: claims=$D_CLAIMS, expected 1"
	ge "$D_SHARE" 0.9 || fail "200 pages: only $D_SHARE of the bytes went through shared memory"
	row "curl against nginx" "$V" "curl, 200 × 4 KiB pages over one kept-alive connection" pass \
		"$(ratio "$tt" "$tn")x" "claims $D_CLAIMS, shm share $D_SHARE"
	still_alive "$SRV" nginx
	;;
prefork)
	need wrk
	P=$(free_port)
	# reuseport: one listening socket per worker, the kernel spreads connections over both
	start_nginx ns "$P" ns reuseport
	SRV=$LAST_PID
	s0=$(snap)
	nka=($(T=2 wrk_run ns "$P" 16))
	s1=$(snap)
	delta "$s0" "$s1"
	echo "keep-alive, 16 connections over 2 workers: ${nka[0]} rps; $D"
	row "nginx + wrk" "$(pkg_version nginx-light)" "2 workers, listen reuseport, wrk -c16: every connection claimed?" \
		"$([ "$D_CLAIMS" -ge 16 ] && echo pass || echo FAIL)" "-" "claims $D_CLAIMS of 16, shm share $D_SHARE"
	[ "$D_CLAIMS" -ge 16 ] || fail "only $D_CLAIMS of 16 kept-alive connections were claimed: prefork workers share one rendezvous socket and the offers one worker drained for the other's connections were lost"
	still_alive "$SRV" nginx
	;;
*)
	fail "unknown mode $MODE (wrk, curl or prefork)"
	;;
esac
echo PASS
