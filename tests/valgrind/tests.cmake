# SPDX-License-Identifier: MIT
# valgrind memcheck over the preloaded data path (label valgrind).
foreach(style blocking epoll)
  add_test(NAME valgrind_echo_${style} COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/echo.sh ${style})
  set_tests_properties(valgrind_echo_${style} PROPERTIES LABELS valgrind TIMEOUT 300
    SKIP_RETURN_CODE 77 ENVIRONMENT "NSK_BUILD=${CMAKE_BINARY_DIR}")
endforeach()
