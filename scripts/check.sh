#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# check.sh — what `make check` (and CI) runs: static analysis of src/ (cppcheck), the whole
# CTest suite on the normal build (-Werror; labels stress and vm excluded — vm boots QEMU
# guests for minutes: `make vmtest`), then the unit and
# integration suites again under AddressSanitizer+UndefinedBehaviorSanitizer, the unit suite and
# the integration tests that TSan can follow under ThreadSanitizer, and a short libFuzzer
# budget of every fuzz target (label fuzz; scripts/fuzz.sh runs the long one).
# Set NSK_CHECK_FAST=1 to skip the sanitizer and fuzz builds.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=$(nproc)

build() { # DIR [cmake args...]
	local dir=$1
	shift
	cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" > "$dir.cmake.log" 2>&1 ||
		{ cat "$dir.cmake.log"; exit 1; }
	cmake --build "$dir" -j "$JOBS"
}

echo "== lint: cppcheck on src/"
bash scripts/lint.sh

mkdir -p build
build build -DNSK_WERROR=ON
echo "== ctest: all labels but stress and vm (normal build)"
(cd build && ctest --output-on-failure --timeout 600 -LE 'stress|vm')

if [ "${NSK_CHECK_FAST:-0}" = 1 ]; then
	exit 0
fi

# The preloaded library and the test programs are both instrumented: ASan must not insist on
# being first in the link order of every preloaded process.
export ASAN_OPTIONS=verify_asan_link_order=0:detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
mkdir -p build-asan
build build-asan -DNSK_SANITIZE=address,undefined
echo "== ctest: unit + integ under ASan+UBSan"
# The crash test makes 60 kills here (each round starts two instrumented processes; the
# normal build does the 200).
(cd build-asan && NSK_CRASH_KILLS=60 ctest --output-on-failure --timeout 600 -L 'unit|integ')
# The Debian programs with the sanitized library preloaded (tests/apps/lib.sh puts the
# runtimes first): about 5.5 minutes on the 2-core VM, so only on request.
if [ "${NSK_CHECK_APPS_ASAN:-0}" = 1 ]; then
	echo "== ctest: apps under ASan+UBSan"
	(cd build-asan && ctest --output-on-failure --timeout 600 -L apps)
fi

export TSAN_OPTIONS=halt_on_error=1
# OpenBLAS' worker threads are not instrumented (false reports); the tool needs one thread.
export OPENBLAS_NUM_THREADS=1
mkdir -p build-tsan
build build-tsan -DNSK_SANITIZE=thread -DNSK_WERROR=ON
echo "== ctest: unit + integ under TSan"
# Every integration test preloads the instrumented library into instrumented nsk_* programs,
# so TSan can follow them all (the apps label preloads into uninstrumented Debian programs and
# is not run here). TSan sees races between threads of one process only, so the echo tests of
# the single-threaded poll/select/epoll loops add nothing and are left out; the blocking echo
# (a sender and a receiver thread) moves 64 MiB instead of 512 MiB (its stall detector allows
# 8 s), the crash test makes 40 kills instead of 200, and the two kill tests — timing bounds
# on every scenario, 3 minutes under TSan — run under ASan only; epoll_switch preloads into
# the (uninstrumented) Python interpreter. semantics.sh leaves out its signals case itself
# (TSan defers asynchronous signal handlers to its safe points).
(cd build-tsan && NSK_ECHO_BYTES=$((64 << 20)) NSK_CRASH_KILLS=40 \
	ctest --output-on-failure --timeout 600 -L 'unit|integ' \
	-E '^integ_kill_|^integ_echo_(poll|select|epoll)$|^integ_epoll_switch$')

echo "== ctest: fuzz targets, short budget (clang, libFuzzer, ASan+UBSan)"
mkdir -p build-fuzz
CC=clang build build-fuzz -DNSK_FUZZ=ON -DNSK_FUZZ_SECONDS=6
(cd build-fuzz && ctest --output-on-failure --timeout 300 -L fuzz)
