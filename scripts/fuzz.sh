#!/usr/bin/env bash
# Fuzz the vmaugment device through qtest with QEMU's generic-fuzz target
# (libFuzzer, AddressSanitizer, UBSan): random register writes and DMA
# contents against -device vmaugment-pci.
#
# Usage: fuzz.sh [--short | --runs N] [--jobs N]
#   --short    a quick, repeatable run for CI (20000 inputs, fixed seed)
#   default    1000000 inputs
#
# Prints the inputs executed; exits non-zero on any crash, assertion,
# timeout or sanitizer report, leaving the reproducer under
# build/fuzz-artifacts/.  Turn a reproducer into a case in
# tests/qtest/fuzz-vmaugment-test.c (QEMU_FUZZ_TIMEOUT and
# scripts/oss-fuzz/reorder_fuzzer_qtest_trace.py help with that).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=${VMAUGMENT_BUILD_ROOT:-$top/build}
runs=1000000
jobs=1
seed=$(date +%s)

while [ $# -gt 0 ]; do
    case $1 in
    --short) runs=20000; seed=1 ;;
    --runs) runs=$2; shift ;;
    --jobs) jobs=$2; shift ;;
    *) echo "usage: fuzz.sh [--short | --runs N] [--jobs N]" >&2; exit 2 ;;
    esac
    shift
done

"$top/scripts/build-qemu.sh" --fuzz "$build" >/dev/null

corpus=$build/fuzz-corpus/vmaugment
artifacts=$build/fuzz-artifacts
mkdir -p "$corpus" "$artifacts"
log=$(mktemp)
trap 'rm -f "$log"' EXIT

per_job=$(( (runs + jobs - 1) / jobs ))
start=$(date +%s)
status=0
for ((j = 0; j < jobs; j++)); do
    (
        cd "$build/qemu-fuzz"
        # No leak checks: a machine reset per input leaves QEMU's caches
        # allocated, and LeakSanitizer's scan would cost 10x the input.
        ASAN_OPTIONS=detect_leaks=0 \
        ./qemu-fuzz-x86_64 --fuzz-target=generic-fuzz-vmaugment \
            -runs="$per_job" -timeout=10 -rss_limit_mb=4096 -detect_leaks=0 \
            -seed=$((seed + j)) \
            -artifact_prefix="$artifacts/" -print_final_stats=1 \
            "$corpus" >"$log.$j" 2>&1
    ) &
done
for ((j = 0; j < jobs; j++)); do
    wait -n || status=1
done

executed=0
for ((j = 0; j < jobs; j++)); do
    n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log.$j" | tail -n1)
    executed=$((executed + ${n:-0}))
    if grep -qE 'ERROR: (AddressSanitizer|libFuzzer|UndefinedBehaviorSanitizer)|runtime error:|Assertion|deadly signal' "$log.$j"; then
        status=1
        grep -E -m5 'ERROR|runtime error|Assertion|deadly|Test unit written' "$log.$j" >&2 || true
    fi
    rm -f "$log.$j"
done

echo "fuzz: generic-fuzz-vmaugment executed $executed inputs in $(( $(date +%s) - start ))s with $jobs job(s); corpus $(ls "$corpus" | wc -l) entries"
if [ "$status" -ne 0 ] || [ "$executed" -lt "$runs" ]; then
    echo "fuzz: FAILED (see $artifacts)" >&2
    exit 1
fi
echo "fuzz: no crash, assertion, timeout or sanitizer report"
