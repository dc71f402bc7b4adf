# SPDX-License-Identifier: MIT
# Unit tests of nsk_core (label unit): one plain C program per module, beside the code,
# exiting 0 (pass), 1 (fail) or 77 (skip, reason printed). Included by src/CMakeLists.txt.
# NSK_TEST_SEED=N replays a run; each program prints the seed it used.
set(NSK_CORE_UNIT_TESTS ring registry chan domain switchpt budget inbox region chan_mem)
foreach(t ${NSK_CORE_UNIT_TESTS})
  add_executable(nsk_${t}_test ${CMAKE_CURRENT_LIST_DIR}/${t}_test.c)
  target_link_libraries(nsk_${t}_test PRIVATE nsk_core pthread)
  add_test(NAME core_${t} COMMAND nsk_${t}_test)
  set_tests_properties(core_${t} PROPERTIES LABELS unit TIMEOUT 120 SKIP_RETURN_CODE 77)
endforeach()

# Reproductions of bugs found while writing these tests (core_regress_*): each fails until its
# bug is fixed; the test's comment and output say what is wrong. Label regress as well, so
# that `ctest -L unit -LE regress` runs the rest.
foreach(b proctab_last_slot proctab_sigbus start_time_strtok)
  add_test(NAME core_regress_${b} COMMAND nsk_domain_test bug_${b})
  set_tests_properties(core_regress_${b} PROPERTIES LABELS "unit;regress" TIMEOUT 60
                       SKIP_RETURN_CODE 77)
endforeach()

# End-to-end check of the switch-point rule of the receive path (src/preload/sock.c) through
# real sockets: the program preloads libnearsock itself (re-exec with LD_PRELOAD).
add_executable(nsk_switch_test ${CMAKE_CURRENT_LIST_DIR}/switch_test.c)
target_include_directories(nsk_switch_test PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}
                           ${CMAKE_SOURCE_DIR}/include)
target_link_libraries(nsk_switch_test PRIVATE pthread dl)
add_dependencies(nsk_switch_test nearsock_preload)
add_test(NAME core_switch COMMAND nsk_switch_test $<TARGET_FILE:nearsock_preload>)
set_tests_properties(core_switch PROPERTIES LABELS "unit;integ" TIMEOUT 120
                     SKIP_RETURN_CODE 77)
add_test(NAME core_regress_recv_waitall
         COMMAND nsk_switch_test $<TARGET_FILE:nearsock_preload> bug_recv_waitall)
set_tests_properties(core_regress_recv_waitall PROPERTIES LABELS "unit;integ;regress" TIMEOUT 60
                     SKIP_RETURN_CODE 77)
