# SPDX-License-Identifier: MIT
# Real programs from Debian under nearsock (label apps); one row each in docs/COMPATIBILITY.md.
# Each script runs its workload plain and under nearsock and exits 0 / 1 / 77 (skip).
#
# A test of a known limitation that fails today would be registered DISABLED unless
# -DNSK_APPS_KNOWN_FAILURES=ON, with the reason next to it and in docs/COMPATIBILITY.md.
# None is at the moment.
option(NSK_APPS_KNOWN_FAILURES "Also run app tests of known limitations (they fail today)" OFF)

# nsk_app_test(NAME TIMEOUT SCRIPT [ARGS...])
function(nsk_app_test name timeout script)
  add_test(NAME app_${name} COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/${script} ${ARGN})
  set_tests_properties(app_${name} PROPERTIES LABELS apps TIMEOUT ${timeout}
    SKIP_RETURN_CODE 77 ENVIRONMENT "NSK_BUILD=${CMAKE_BINARY_DIR}")
endfunction()

nsk_app_test(redis 120 redis.sh)
nsk_app_test(iperf3 120 iperf3.sh)
nsk_app_test(sockperf 120 sockperf.sh)
nsk_app_test(memcached 120 memcached.sh)
nsk_app_test(nginx_wrk 120 nginx.sh wrk)
nsk_app_test(nginx_curl 120 nginx.sh curl)
nsk_app_test(netpipe 120 netpipe.sh)
nsk_app_test(python_http 120 python.sh http)
nsk_app_test(node 120 node.sh)
nsk_app_test(socat 120 socat.sh tcp)

# nginx master + 2 workers on reuseport listeners: every kept-alive connection upgraded (offers
# passed between the workers sharing the master's rendezvous socket).
nsk_app_test(nginx_prefork 120 nginx.sh prefork)
# socat EXEC:cat,nofork: the accepted socket is inherited across exec by cat, which carries on
# with the upgrade (NEARSOCK_INHERIT).
nsk_app_test(socat_exec_nofork 60 socat.sh exec-nofork)
# asyncio streams echo (write_eof while the peer still echoes; EPOLLOUT-only waits): was a
# known failure until the two wake-up bugs of COMPATIBILITY.md limitation 3 were fixed.
nsk_app_test(python_asyncio 90 python.sh asyncio)
# UDP (issue 6): sockperf's UDP modes and iperf3 -u under nearsock.
nsk_app_test(udp_sockperf 180 udp_sockperf.sh)
nsk_app_test(udp_iperf3 180 udp_iperf3.sh)
