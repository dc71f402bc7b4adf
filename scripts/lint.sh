#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# lint.sh — static analysis of src/ (the library, its core and their unit tests) and tools/ (the
# CLI, the agent, the dimensioning tool) with cppcheck:
# warning, performance and portability checks; any finding fails. Suppressions live in
# .cppcheck-suppressions, one per line, each with the reason above it. Style checks are not
# enabled: on this code base they report mostly conditions that are compile-time constants in
# one build configuration (sanitizer probes, IPV6_V6ONLY read through getsockopt) and padding
# members of shared-memory layouts.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cppcheck >/dev/null || { echo "lint: cppcheck not installed (scripts/setup.sh)"; exit 1; }
cppcheck --version
cppcheck --enable=warning,performance,portability --std=c11 --inline-suppr --quiet \
	--suppressions-list=.cppcheck-suppressions --error-exitcode=1 \
	-D_GNU_SOURCE -D__linux__ -D__x86_64__ -I src -I include src/ tools/
echo "lint: cppcheck clean on src/ and tools/"
