# SPDX-License-Identifier: MIT
# VM tests (label vm), included by tests/CMakeLists.txt: scripts/vmtest.sh boots three QEMU
# guests (two sharing an ivshmem region) and runs tests/vm/cases/*.sh inside them. Several
# minutes under software emulation and it installs packages: never part of `make check`
# (scripts/check.sh excludes the label); run with `make vmtest` or `ctest -L vm`.

# The guest-side probe of the ivshmem region (also maps the backing file on the host).
add_executable(ivshmem_probe ${CMAKE_CURRENT_SOURCE_DIR}/vm/ivshmem_probe.c)

# vm_smoke: the region and nearsock inside one guest only (the three guests still boot).
add_test(NAME vm_smoke COMMAND bash ${CMAKE_SOURCE_DIR}/scripts/vmtest.sh)
set_tests_properties(vm_smoke PROPERTIES
  LABELS vm
  TIMEOUT 240
  SKIP_RETURN_CODE 77
  ENVIRONMENT "NSK_BUILD=${CMAKE_BINARY_DIR};NSK_VM_CASES=ivshmem,loopback;NSK_VM_DEADLINE=150")
add_test(NAME vm_harness COMMAND bash ${CMAKE_SOURCE_DIR}/scripts/vmtest.sh)
set_tests_properties(vm_harness PROPERTIES
  LABELS vm
  TIMEOUT 420
  SKIP_RETURN_CODE 77
  RUN_SERIAL ON
  ENVIRONMENT "NSK_BUILD=${CMAKE_BINARY_DIR}")
set_tests_properties(vm_smoke PROPERTIES RUN_SERIAL ON)
