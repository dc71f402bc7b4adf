# SPDX-License-Identifier: MIT
# Real programs from Debian under nearsock (label apps).
foreach(app redis iperf3 sockperf)
  add_test(NAME app_${app} COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/${app}.sh)
  set_tests_properties(app_${app} PROPERTIES LABELS apps TIMEOUT 180 SKIP_RETURN_CODE 77
    ENVIRONMENT "NSK_BUILD=${CMAKE_BINARY_DIR}")
endforeach()
# UDP (issue 6): sockperf's UDP modes and iperf3 -u under nearsock.
foreach(app udp_sockperf udp_iperf3)
  add_test(NAME app_${app} COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/${app}.sh)
  set_tests_properties(app_${app} PROPERTIES LABELS apps TIMEOUT 180 SKIP_RETURN_CODE 77
    ENVIRONMENT "NSK_BUILD=${CMAKE_BINARY_DIR}")
endforeach()
