#!/usr/bin/env bash
# Build everything, then run every test suite of vmaugment:
#   qtest     the device, through QEMU's qtest (libqos) and fuzz reproducers,
#             and the QEMU features libvirt domains need (tests/qemu)
#   unit      the userspace parts (meson test, the slow suite included:
#             offline kill -9 campaign and libguestfs cross-check)
#   guest     real Linux guests booted under TCG (tests/guest/run.sh)
#   fuzz      short, fixed-seed libFuzzer runs: the device (generic-fuzz)
#             and the host's parsers (scripts/fuzz-host.sh)
#   style     QEMU's and Linux's checkpatch.pl on the code of each tree
#   libvirt   a real libvirtd runs a domain with our QEMU and device
#             (tests/libvirt/run.sh; slow)
# Ends with one line "N passed, N failed, N skipped" and exits non-zero
# on any failure.  Every suite's result is counted by
# scripts/test-results.py and compared with tests/expected-counts: a test
# that vanished or ran fewer cases than recorded fails the run, a skip is
# never a pass, and under CI (CI=true) any skip fails the run too, since
# the install step provides every tool the tests need.
#
#   scripts/test.sh [SUITE...]    (default: all six, in the order above)
set -uo pipefail

all_suites=(qtest unit guest fuzz style libvirt)
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=("${all_suites[@]}")
for s in "${suites[@]}"; do
    case " ${all_suites[*]} " in
    *" $s "*) ;;
    *) echo "usage: test.sh [${all_suites[*]}]..." >&2; exit 2 ;;
    esac
done

top=$(cd "$(dirname "$0")/.." && pwd)
build=${VMAUGMENT_BUILD_ROOT:-$top/build}
logs=$build/test-logs
results=$logs/results.txt
count() { python3 "$top/scripts/test-results.py" "$@"; }

"$top/scripts/build.sh" || { echo "0 passed, 1 failed, 0 skipped"; exit 1; }
mkdir -p "$logs"
: >"$results"

run_qtest() {
    local paths=()
    export QTEST_QEMU_BINARY=$build/qemu/qemu-system-x86_64
    export QTEST_QEMU_STORAGE_DAEMON_BINARY=$build/qemu/storage-daemon/qemu-storage-daemon
    export QTEST_QEMU_IMG=$build/qemu/qemu-img
    # Only our device's paths: the rest of QEMU's suite has nothing of ours
    # and some of it does not pass on these hosts.
    mapfile -t paths < <("$build/qemu/tests/qtest/qos-test" -l |
                         grep '/vmaugment-pci/')
    timeout 600 "$build/qemu/tests/qtest/qos-test" --tap \
        $(printf -- '-p %s ' "${paths[@]}") >"$logs/qtest-qos.log" 2>&1 ||
        echo "not ok - qos-test exited $?" >>"$logs/qtest-qos.log"
    count tap qtest/qos-test "$logs/qtest-qos.log" >>"$results"
    timeout 300 "$build/qemu/tests/qtest/fuzz-vmaugment-test" --tap \
        >"$logs/qtest-fuzz.log" 2>&1 ||
        echo "not ok - fuzz-vmaugment-test exited $?" >>"$logs/qtest-fuzz.log"
    count tap qtest/fuzz-vmaugment-test "$logs/qtest-fuzz.log" >>"$results"
    timeout 300 "$build/qemu/tests/qtest/vmaugment-lifecycle-test" --tap \
        >"$logs/qtest-lifecycle.log" 2>&1 ||
        echo "not ok - vmaugment-lifecycle-test exited $?" \
            >>"$logs/qtest-lifecycle.log"
    count tap qtest/vmaugment-lifecycle-test "$logs/qtest-lifecycle.log" \
        >>"$results"
    # The features a libvirt domain and the offline tool need of our build.
    timeout 300 bash "$top/tests/qemu/features.sh" "$build/qemu" \
        >"$logs/qtest-features.log" 2>&1 ||
        echo "not ok - features.sh exited $?" >>"$logs/qtest-features.log"
    count tap qtest/qemu-features "$logs/qtest-features.log" >>"$results"
}

run_unit() {
    meson test -C "$build/vmaugment" --print-errorlogs \
        >"$logs/unit.log" 2>&1
    count meson unit "$build/vmaugment/meson-logs/testlog.json" >>"$results"
}

run_guest() {
    VMAUGMENT_QEMU_BUILD_DIR=$build/qemu VMAUGMENT_BUILD_DIR=$build/vmaugment \
        timeout 1800 bash "$top/tests/guest/run.sh" >"$logs/guest.log" 2>&1 ||
        echo "FAIL run.sh exited $?" >>"$logs/guest.log"
    count scenarios guest "$logs/guest.log" >>"$results"
}

run_fuzz() {
    if "$top/scripts/fuzz.sh" --short >"$logs/fuzz.log" 2>&1; then
        echo "fuzz/generic-fuzz-vmaugment 1 0 0" >>"$results"
    else
        echo "fuzz/generic-fuzz-vmaugment 0 1 0" >>"$results"
    fi
    if "$top/scripts/fuzz-host.sh" >"$logs/fuzz-host.log" 2>&1; then
        echo "fuzz/host-parsers 1 0 0" >>"$results"
    else
        echo "fuzz/host-parsers 0 1 0" >>"$results"
    fi
}

run_libvirt() {
    VMAUGMENT_QEMU_BUILD_DIR=$build/qemu VMAUGMENT_BUILD_DIR=$build/vmaugment \
        timeout 900 bash "$top/tests/libvirt/run.sh" >"$logs/libvirt.log" 2>&1 ||
        echo "not ok - run.sh exited $?" >>"$logs/libvirt.log"
    count tap libvirt "$logs/libvirt.log" >>"$results"
}

run_style() {
    "$top/scripts/check-style.sh" >"$logs/style.log" 2>&1 ||
        echo "not ok - check-style.sh exited $?" >>"$logs/style.log"
    count tap style "$logs/style.log" >>"$results"
}

# Two lanes, one per CPU: the device and userspace suites in one, the
# real guests and the fuzzers (each a single busy process at a time) in the
# other.  Each suite writes its own log and rows, so the lanes never share
# a file; the run's wall time is the longer lane, not the sum.
lane() {
    local s
    for s in "$@"; do
        case " ${suites[*]} " in
        *" $s "*)
            local results=$logs/results-$s.txt
            : >"$results"
            "run_$s" ;;
        esac
    done
}
lane qtest unit &
lane_a=$!
lane style guest libvirt fuzz &
lane_b=$!
wait $lane_a $lane_b
for s in "${suites[@]}"; do
    cat "$logs/results-$s.txt"
done >"$results"

no_skips=
[ "${CI:-}" = true ] && no_skips=--no-skips
cd "$top"
count check tests/expected-counts "$results" $no_skips \
    --suites "$(IFS=,; echo "${suites[*]}")"
rc=$?
if [ $rc -ne 0 ]; then
    echo "logs: ${logs#"$top"/}/"
    grep -hE '^(not ok|FAIL|Summary of Failures)' "$logs"/*.log | head -n 40
    # A fuzzer's finding is only in its log: print it, with the input, so
    # that a failed run on a machine that is gone can be reproduced.
    for f in "$logs"/fuzz.log "$logs"/fuzz-host.log; do
        [ -f "$f" ] && ! tail -n1 "$f" | grep -q '^fuzz.*: no crash' || continue
        echo "== ${f##*/}"
        grep -vE '^#[0-9]+|^ *#[0-9]+ 0x|^(INFO|MERGE|NOTE)' "$f" | tail -n 60
    done
fi
exit $rc
