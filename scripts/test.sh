#!/usr/bin/env bash
# Build everything, then run every test suite of vmaugment:
#   qtest     the device, through QEMU's qtest (libqos) and fuzz reproducers
#   unit      the userspace parts (meson test, the slow suite included:
#             offline kill -9 campaign and libguestfs cross-check)
#   guest     real Linux guests booted under TCG (tests/guest/run.sh)
#   fuzz      a short, fixed-seed generic-fuzz run of the device
#   style     QEMU's and Linux's checkpatch.pl on the code of each tree
# Ends with one line "N passed, N failed"; exits non-zero on any failure.
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=${VMAUGMENT_BUILD_ROOT:-$top/build}
logs=$build/test-logs
passed=0
failed=0
failures=()

"$top/scripts/build.sh" || { echo "0 passed, 1 failed"; exit 1; }
mkdir -p "$logs"

# Record a suite's counts; a suite that ran nothing counts as a failure.
tally() {
    local suite=$1 ok=$2 bad=$3 rc=$4
    if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then
        bad=1
    fi
    if [ $((ok + bad)) -eq 0 ]; then
        bad=1
    fi
    passed=$((passed + ok))
    failed=$((failed + bad))
    [ "$bad" -eq 0 ] || failures+=("$suite")
    printf '%-8s %4d passed, %d failed   (log: %s)\n' "$suite" "$ok" "$bad" \
        "${logs#"$top"/}/$suite.log"
}

tap_counts() {
    echo "$(grep -c '^ok ' "$1") $(grep -c '^not ok ' "$1")"
}

run_qtests() {
    local log=$logs/qtest.log rc paths=()
    export QTEST_QEMU_BINARY=$build/qemu/qemu-system-x86_64
    export QTEST_QEMU_STORAGE_DAEMON_BINARY=$build/qemu/storage-daemon/qemu-storage-daemon
    export QTEST_QEMU_IMG=$build/qemu/qemu-img
    # Only our device's paths: the rest of QEMU's suite has nothing of ours
    # and some of it does not pass on these hosts.
    mapfile -t paths < <("$build/qemu/tests/qtest/qos-test" -l |
                         grep '/vmaugment-pci/')
    (
        timeout 600 "$build/qemu/tests/qtest/qos-test" --tap \
            $(printf -- '-p %s ' "${paths[@]}") &&
        timeout 300 "$build/qemu/tests/qtest/fuzz-vmaugment-test" --tap
    ) >"$log" 2>&1
    rc=$?
    tally qtest $(tap_counts "$log") $rc
}

run_unit() {
    local log=$logs/unit.log rc ok bad
    meson test -C "$build/vmaugment" --print-errorlogs >"$log" 2>&1
    rc=$?
    ok=$(awk '/^Ok:/ {n = $2} END {print n + 0}' "$log")
    bad=$(awk '/^(Fail|Unexpected Pass|Timeout):/ {s += $NF} END {print s + 0}' "$log")
    tally unit "${ok:-0}" "${bad:-0}" $rc
}

run_guest() {
    local log=$logs/guest.log rc line
    [ -x "$top/tests/guest/run.sh" ] || return 0
    VMAUGMENT_QEMU_BUILD_DIR=$build/qemu VMAUGMENT_BUILD_DIR=$build/vmaugment \
        timeout 1800 "$top/tests/guest/run.sh" >"$log" 2>&1
    rc=$?
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n1)
    tally guest "$(echo "$line" | awk '{print $1}')" \
        "$(echo "$line" | awk '{print $3}')" $rc
}

run_fuzz() {
    local log=$logs/fuzz.log rc
    "$top/scripts/fuzz.sh" --short >"$log" 2>&1
    rc=$?
    if [ $rc -eq 0 ]; then tally fuzz 1 0 0; else tally fuzz 0 1 $rc; fi
}

run_style() {
    local log=$logs/style.log rc
    "$top/scripts/check-style.sh" >"$log" 2>&1
    rc=$?
    tally style "$(grep -c '^ok ' "$log")" "$(grep -c '^not ok ' "$log")" $rc
}

run_qtests
run_unit
run_guest
run_fuzz
run_style

if [ ${#failures[@]} -ne 0 ]; then
    echo "failed suites: ${failures[*]}"
    for s in "${failures[@]}"; do
        echo "---- last lines of $s.log"
        tail -n 40 "$logs/$s.log"
    done
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
