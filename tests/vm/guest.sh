#!/bin/sh
# SPDX-License-Identifier: MIT
# guest.sh — the test runner inside every guest of the VM harness (busybox sh). The kernel
# command line names this guest's role (vmrole=A|B|C), the three addresses (vmip_a/b/c=)
# and the run's key (vmkey=). Every file /vm/cases/*.sh (sorted) adds its case names to
# CASES and defines a function NAME_ROLE for each role that takes part; roles without one
# sit the case out. Cases run in CASES order, each in the background with a time limit
# (NAME_TIMEOUT seconds, default 120); a function's exit status is its result (0 PASS,
# 77 SKIP, anything else FAIL) and its last output line the detail. Lines on the console:
#   VMTEST-PLAN ROLE CASE...           the cases this guest will report
#   VMTEST-LOG ROLE CASE: LINE         the cases' output
#   VMTEST-RESULT ROLE CASE STATUS DETAIL
#   VMTEST-WAIT ROLE TOKEN             a request to the host (see host_request)
#   VMTEST-DONE ROLE
# Guests coordinate by retrying (a client retries until the server listens): no barrier.

arg() { sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p" /proc/cmdline; }
ROLE=$(arg vmrole)
ONLY=$(arg vmcases)
# shellcheck disable=SC2034 # for the cases
{
	IP_A=$(arg vmip_a)
	IP_B=$(arg vmip_b)
	IP_C=$(arg vmip_c)
	KEY=$(arg vmkey)
	NSK=/opt/nearsock/nearsock
}
export HOME=/tmp
cd /tmp || exit 1

# jget KEY JSONLINE - the value of KEY in a flat one-line JSON object (quotes stripped).
jget() { echo "$2" | sed -n "s/.*\"$1\": \"\{0,1\}\([^,\"}]*\).*/\1/p"; }

# retry SECS CMD... - run CMD every second until it succeeds or SECS seconds passed.
retry() {
	_end=$(($(date +%s) + $1))
	shift
	until "$@"; do
		[ "$(date +%s)" -lt "$_end" ] || return 1
		sleep 1
	done
}

# host_request TOKEN SECS CHECK... - ask the host to act (it watches the console for the
# VMTEST-WAIT line and runs its handler for TOKEN once), then wait up to SECS seconds for
# CHECK to succeed.
host_request() {
	_tok=$1
	_secs=$2
	shift 2
	echo "VMTEST-WAIT $ROLE $_tok" >/dev/console
	retry "$_secs" "$@"
}

# uptime_s - seconds since boot, with hundredths.
uptime_s() { cut -d' ' -f1 /proc/uptime; }

CASES=""
for f in /vm/cases/*.sh; do
	# shellcheck source=/dev/null
	. "$f"
done

plan=""
for c in $CASES; do
	case "$ONLY" in all | "" | "$c" | "$c",* | *,"$c" | *,"$c",*) ;; *) continue ;; esac
	type "${c}_$ROLE" >/dev/null 2>&1 && plan="$plan $c"
done
echo "VMTEST-PLAN $ROLE$plan"

for c in $plan; do
	lim=$(eval "echo \${${c}_TIMEOUT:-120}")
	t0=$(date +%s)
	( "${c}_$ROLE" ) >"/tmp/case.$c" 2>&1 &
	pid=$!
	while kill -0 "$pid" 2>/dev/null && [ $(($(date +%s) - t0)) -lt "$lim" ]; do
		sleep 1
	done
	if kill -0 "$pid" 2>/dev/null; then
		kill -9 "$pid" 2>/dev/null
		echo "timed out after $lim s" >>"/tmp/case.$c"
		rc=124
	else
		wait "$pid"
		rc=$?
	fi
	sed "s/^/VMTEST-LOG $ROLE $c: /" "/tmp/case.$c"
	detail=$(tail -n 1 "/tmp/case.$c")
	case $rc in
	0) st=PASS ;;
	77) st=SKIP ;;
	*) st=FAIL ;;
	esac
	echo "VMTEST-RESULT $ROLE $c $st $detail ($(($(date +%s) - t0)) s)"
done
echo "VMTEST-DONE $ROLE"
