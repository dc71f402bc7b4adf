# SPDX-License-Identifier: MIT
# Integration tests (label integ), included by tests/CMakeLists.txt. Each test is a shell
# script under tests/integ/ run against this build (NSK_BUILD), exiting 0 / 1 / 77 (skip).
# Helper programs are plain C: they find the stats API with dlsym, so they run with and
# without the preload library. Optional: NSK_ASAN_BUILD=<dir of a -DNSK_SANITIZE=address,undefined
# build> in the environment makes the hostile-peer test also run against that library.

set(NSK_INTEG_DIR ${CMAKE_CURRENT_SOURCE_DIR}/integ)

foreach(helper nsk_many nsk_kill nsk_badin nsk_hostile nsk_fork nsk_epoll nsk_sem nsk_crash nsk_udp nsk_agile nsk_ringsize)
  if(NOT EXISTS ${NSK_INTEG_DIR}/${helper}.c)
    continue()
  endif()
  add_executable(${helper} ${NSK_INTEG_DIR}/${helper}.c)
  target_include_directories(${helper} PRIVATE ${CMAKE_SOURCE_DIR}/include ${CMAKE_SOURCE_DIR}/src)
  target_link_libraries(${helper} PRIVATE pthread dl)
endforeach()

# Helpers that play a domain member directly through nsk_core (an attacker, a prober).
foreach(helper nsk_forge nsk_exhaust)
  if(NOT EXISTS ${NSK_INTEG_DIR}/${helper}.c)
    continue()
  endif()
  add_executable(${helper} ${NSK_INTEG_DIR}/${helper}.c)
  target_include_directories(${helper} PRIVATE ${CMAKE_SOURCE_DIR}/include ${CMAKE_SOURCE_DIR}/src)
  target_link_libraries(${helper} PRIVATE nsk_core pthread dl)
endforeach()

# nsk_integ_test(NAME TIMEOUT SCRIPT [ARGS...])
# Sanitizer builds run several times slower: their time limits are three times as long.
function(nsk_integ_test name timeout script)
  if(NSK_SANITIZE)
    math(EXPR timeout "${timeout} * 3")
  endif()
  add_test(NAME integ_${name} COMMAND bash ${NSK_INTEG_DIR}/${script} ${ARGN})
  set_tests_properties(integ_${name} PROPERTIES
    LABELS integ
    TIMEOUT ${timeout}
    SKIP_RETURN_CODE 77
    ENVIRONMENT "NSK_BUILD=${CMAKE_BINARY_DIR}")
endfunction()

foreach(style blocking epoll poll select)
  if(style STREQUAL "epoll")
    nsk_integ_test(echo_${style} 60 echo.sh ${style} 3)  # the lost wake-up shows 1 run in ~8
  else()
    nsk_integ_test(echo_${style} 60 echo.sh ${style})
  endif()
endforeach()
nsk_integ_test(one_side 60 one_side.sh)
nsk_integ_test(netns 60 netns.sh)
nsk_integ_test(kill_server 120 kill.sh server)
nsk_integ_test(kill_client 120 kill.sh client)
nsk_integ_test(many_conns 60 many_conns.sh)
nsk_integ_test(bad_input 60 bad_input.sh)
nsk_integ_test(bad_domain 60 bad_domain.sh)
nsk_integ_test(hostile 60 hostile.sh)
nsk_integ_test(fork 300 fork.sh)
nsk_integ_test(epoll_semantics 120 epoll_sem.sh)
nsk_integ_test(semantics 300 semantics.sh)

# A statically linked client (needs the static libc of libc6-dev; not under sanitizers).
if(NOT NSK_SANITIZE)
  include(CheckCSourceCompiles)
  set(CMAKE_REQUIRED_LINK_OPTIONS -static)
  check_c_source_compiles("int main(void) { return 0; }" NSK_HAVE_STATIC_LIBC)
  unset(CMAKE_REQUIRED_LINK_OPTIONS)
  if(NSK_HAVE_STATIC_LIBC)
    add_executable(nsk_static ${NSK_INTEG_DIR}/nsk_static.c)
    target_link_options(nsk_static PRIVATE -static)
  endif()
endif()
nsk_integ_test(epoll_switch 60 epoll_switch.sh)
nsk_integ_test(crash 240 crash.sh 200)
# The long version (label stress): 1000 random kills.
add_test(NAME stress_crash COMMAND bash ${NSK_INTEG_DIR}/crash.sh 1000)
set_tests_properties(stress_crash PROPERTIES LABELS stress TIMEOUT 1200 SKIP_RETURN_CODE 77
                     ENVIRONMENT "NSK_BUILD=${CMAKE_BINARY_DIR}")
nsk_integ_test(shared_domain 90 shared_domain.sh)
nsk_integ_test(exhaust 90 exhaust.sh)
# UDP (issue 6): echo of 1 M random-size datagrams in the waiting styles, semantics, netns.
nsk_integ_test(udp_echo_blocking 90 udp_echo.sh block 1000000)
nsk_integ_test(udp_echo_epoll 90 udp_echo.sh epoll 1000000 0)
nsk_integ_test(udp_echo_poll 60 udp_echo.sh poll 300000)
nsk_integ_test(udp_echo_select 60 udp_echo.sh select 200000 0)
nsk_integ_test(udp_features 60 udp_features.sh)
nsk_integ_test(udp_netns 60 udp_netns.sh)
# The host agent nearsockd and nearsock evacuate/attach/metrics (issue 5), end to end.
nsk_integ_test(agent 60 agent.sh)
# Live switching under load (issue 5): random evacuate/attach every few ms during checked
# bidirectional transfers, with SIGKILLs; the long chaos version is label stress.
nsk_integ_test(agile 180 agile.sh quick)
# Dynamic ring sizing: growth with demand, shrinking when idle, the domain budget.
nsk_integ_test(ringsize 90 ringsize.sh)
# Migration through network namespaces: evacuate, traffic over the veth, attach (issue 5).
nsk_integ_test(migrate 90 migrate.sh)
add_test(NAME stress_chaos COMMAND bash ${NSK_INTEG_DIR}/agile.sh chaos)
set_tests_properties(stress_chaos PROPERTIES LABELS stress TIMEOUT 1800 SKIP_RETURN_CODE 77
                     ENVIRONMENT "NSK_BUILD=${CMAKE_BINARY_DIR}")
# Races (issue 5, survey Table IV): endpoint added/removed during establishment, pending
# data and tear-down; evacuation racing with close; two evacuations at once; the agent
# restarting mid-operation. nsk_races is its helper (pending data, tear-down, close races).
if(EXISTS ${NSK_INTEG_DIR}/nsk_races.c)
  add_executable(nsk_races ${NSK_INTEG_DIR}/nsk_races.c)
  target_include_directories(nsk_races PRIVATE ${CMAKE_SOURCE_DIR}/include ${CMAKE_SOURCE_DIR}/src)
  target_link_libraries(nsk_races PRIVATE pthread dl)
endif()
nsk_integ_test(races 120 races.sh 1 2 4 5 6)
# Case 3 (tear-down racing evacuate/attach and the domain word, 400 connections, offers
# expiring after 300 ms) on its own: it was a known failure (about one run in three a control
# byte delivered as data at the peer's switch point: a socket object still held by a call
# after its last close claimed the offer of the next connection with the same ports), fixed
# by try_claim refusing once the socket is closing; 15 of 15 runs and 6 of 6 under ASan pass.
# A test of a known bug would be registered DISABLED unless -DNSK_KNOWN_FAILURES=ON.
option(NSK_KNOWN_FAILURES "Also run integration tests of known bugs (they fail today)" OFF)
nsk_integ_test(races_teardown 90 races.sh 3)
nsk_integ_test(vm_cli 60 vm_cli.sh)
# The ivshmem domain backend between two network namespaces sharing one region file.
foreach(c stream kill hostile plain migrate latency)
  nsk_integ_test(vm_netns_${c} 90 vm_netns.sh ${c})
endforeach()
