#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# check.sh — what `make check` (and CI) runs: the whole CTest suite on the normal build, then
# the unit and integration suites again under AddressSanitizer+UndefinedBehaviorSanitizer and
# the unit suite under ThreadSanitizer. Set NSK_CHECK_FAST=1 to skip the sanitizer builds.
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

mkdir -p build
build build
echo "== ctest: all labels (normal build)"
(cd build && ctest --output-on-failure --timeout 600)

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
(cd build-asan && ctest --output-on-failure --timeout 600 -L 'unit|integ')
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
build build-tsan -DNSK_SANITIZE=thread
echo "== ctest: unit under TSan"
(cd build-tsan && ctest --output-on-failure --timeout 600 -L unit)
