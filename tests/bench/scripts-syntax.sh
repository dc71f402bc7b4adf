#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# scripts-syntax.sh — the benchmark experiment scripts parse (bash -n) and answer --help.
set -euo pipefail
root=${1:?usage: scripts-syntax.sh SOURCE_DIR}
n=0
for s in "$root"/scripts/bench-*.sh; do
	bash -n "$s"
	case "$s" in */bench-lib.sh) ;; *) bash "$s" --help >/dev/null ;; esac
	n=$((n + 1))
done
[ "$n" -gt 0 ] || { echo "FAIL: no scripts/bench-*.sh"; exit 1; }
echo "PASS: $n scripts"
