# SPDX-License-Identifier: MIT
# Run EXE with ARGS (one shell-like string), expect exit status STATUS and REGEX in stdout+stderr.
separate_arguments(args UNIX_COMMAND "${ARGS}")
if(DEFINED PATH_OVERRIDE)
  set(ENV{PATH} "${PATH_OVERRIDE}")
endif()
execute_process(COMMAND ${EXE} ${args} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT "${rc}" STREQUAL "${STATUS}")
  message(FATAL_ERROR "exit status ${rc}, expected ${STATUS}\nstdout:\n${out}\nstderr:\n${err}")
endif()
if(NOT "${out}${err}" MATCHES "${REGEX}")
  message(FATAL_ERROR "output does not match '${REGEX}'\nstdout:\n${out}\nstderr:\n${err}")
endif()
message(STATUS "ok: status ${rc}, output matches '${REGEX}'")
