#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# fuzz.sh [SECONDS [TARGET...]] — the long fuzzing budget: builds the libFuzzer targets
# (build-fuzz, clang, ASan+UBSan) and runs each target, one at a time, for SECONDS (default
# 300) from its seed corpus. The corpus grown so far is kept in build-fuzz/fuzz-out/TARGET and
# reused by the next run; findings (crashing inputs) land in build-fuzz/fuzz-out/TARGET/findings.
# One summary line per target (executions, time, coverage, findings); exit 1 on any finding.
# `make check` runs the short budget instead (ctest -L fuzz, a few seconds per target).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-300}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(ring ctl registry attach region)
CC=clang cmake -S . -B build-fuzz -DNSK_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >build-fuzz.cmake.log 2>&1 ||
	{ cat build-fuzz.cmake.log; exit 1; }
cmake --build build-fuzz -j "$(nproc)"
rc=0
for t in "${TARGETS[@]}"; do
	bash fuzz/run.sh "build-fuzz/fuzz_$t" "fuzz/corpus/$t" "$SECS" "build-fuzz/fuzz-out/$t" || rc=1
done
exit $rc
