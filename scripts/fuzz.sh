#!/usr/bin/env bash
# Fuzz the vmaugment device through qtest with QEMU's generic-fuzz target
# (libFuzzer, AddressSanitizer, UBSan): random register writes and DMA
# contents against -device vmaugment-pci.
#
# Usage: fuzz.sh [--short | --runs N | --long] [--max-time S] [--jobs N]
#                [--merge-seeds]
#   --short        a quick, repeatable run for CI: 20000 inputs, seed 1,
#                  over a private copy of the committed seed corpus
#                  (tests/fuzz-seeds/generic-fuzz-vmaugment), so that no
#                  earlier run changes what this one executes
#   default        1000000 inputs, time-based seed, over the growing
#                  corpus in build/fuzz-corpus (started from the seeds)
#   --long         a long campaign of everything: 10 million device inputs,
#                  then scripts/fuzz-host.sh --long (10 million inputs for
#                  each host target: the helper's device link and every
#                  host parser), one at a time at nice 19; docs/testing.rst
#                  ("Long fuzz campaigns") records such runs
#   --max-time S   stop each fuzzer after S seconds (a campaign's time
#                  budget): then fewer inputs than asked are no failure
#   --merge-seeds  after the run, add to the committed seeds the inputs of
#                  the growing corpus that reach new coverage (libFuzzer
#                  -merge=1); review and commit them
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
short=false
long=false
max_time=0
nice=
merge=false
seeds=$top/tests/fuzz-seeds/generic-fuzz-vmaugment

while [ $# -gt 0 ]; do
    case $1 in
    --short) runs=20000; seed=1; short=true ;;
    --long) runs=10000000; long=true; nice="nice -n 19" ;;
    --max-time) max_time=$2; shift ;;
    --merge-seeds) merge=true ;;
    --runs) runs=$2; shift ;;
    --jobs) jobs=$2; shift ;;
    *) echo "usage: fuzz.sh [--short | --runs N | --long] [--max-time S]" \
            "[--jobs N] [--merge-seeds]" >&2
       exit 2 ;;
    esac
    shift
done

"$top/scripts/build-qemu.sh" --fuzz "$build" >/dev/null

artifacts=$build/fuzz-artifacts
mkdir -p "$artifacts"
log=$(mktemp)
scratch=$(mktemp -d)
trap 'rm -rf "$log" "$scratch"' EXIT
if $short; then
    corpus=$scratch/corpus
else
    corpus=$build/fuzz-corpus/vmaugment
fi
mkdir -p "$corpus"
# The committed seeds start every corpus; cp -n keeps what a long run grew.
mkdir -p "$seeds"
find "$seeds" -maxdepth 1 -type f -exec cp -n {} "$corpus"/ \;

per_job=$(( (runs + jobs - 1) / jobs ))
start=$(date +%s)
status=0
for ((j = 0; j < jobs; j++)); do
    (
        cd "$build/qemu-fuzz"
        # No leak checks: a machine reset per input leaves QEMU's caches
        # allocated, and LeakSanitizer's scan would cost 10x the input.
        ASAN_OPTIONS=detect_leaks=0 \
        $nice ./qemu-fuzz-x86_64 --fuzz-target=generic-fuzz-vmaugment \
            -runs="$per_job" -max_total_time="$max_time" \
            -timeout=10 -rss_limit_mb=4096 -detect_leaks=0 \
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
if [ "$status" -ne 0 ] ||
   { [ "$executed" -lt "$runs" ] && [ "$max_time" -eq 0 ]; }; then
    echo "fuzz: FAILED (see $artifacts)" >&2
    exit 1
fi
echo "fuzz: no crash, assertion, timeout or sanitizer report"
if $merge; then
    (
        cd "$build/qemu-fuzz"
        ASAN_OPTIONS=detect_leaks=0 \
        ./qemu-fuzz-x86_64 --fuzz-target=generic-fuzz-vmaugment -merge=1 \
            -detect_leaks=0 "$seeds" "$corpus"
    ) >"$log" 2>&1 || { tail -n 20 "$log" >&2; exit 1; }
    echo "fuzz: committed seeds now $(ls "$seeds" | wc -l) entries"
fi
if $long; then
    exec "$top/scripts/fuzz-host.sh" --long --max-time "$max_time"
fi
