#!/usr/bin/env bash
# Fuzz the host side's parsers with libFuzzer: fuzz-manifest (manifests and
# packages) and fuzz-device (the helper's device link), built by clang with
# AddressSanitizer and UBSan in a build directory of their own.
#
# Usage: fuzz-host.sh [--runs N]
#   --runs N   inputs per target (default: 20000 for fuzz-manifest, 5000 for
#              fuzz-device, whose inputs each drive a socket, a main loop and
#              a store of their own)
#
# Each target runs with a fixed seed over a copy of its committed seed
# corpus (host-modules/tests/fuzz/corpus*): every run starts from the same
# inputs and mutations, and long runs never grow the committed corpus.
# (libFuzzer steers by coverage, which timing and heap addresses can still
# nudge: two runs may end a few corpus entries apart.)
#
# Exits non-zero on any crash, leak, timeout or sanitizer report, leaving
# the reproducer under build/fuzz-host-artifacts/; add it to the committed
# corpus, where every build's fuzz-corpus or fuzz-device-corpus test
# replays it.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
root=${VMAUGMENT_BUILD_ROOT:-$top/build}
build=$root/fuzz-host
artifacts=$root/fuzz-host-artifacts
runs=

while [ $# -gt 0 ]; do
    case $1 in
    --runs) runs=$2; shift ;;
    *) echo "usage: fuzz-host.sh [--runs N]" >&2; exit 2 ;;
    esac
    shift
done

# target name, its default number of inputs, its seed corpus
targets=(
    "fuzz-manifest 20000 host-modules/tests/fuzz/corpus"
    "fuzz-device 5000 host-modules/tests/fuzz/corpus-device"
)

mkdir -p "$root"
if [ ! -f "$build/build.ninja" ] &&
   ! CC=clang meson setup "$build" "$top" >"$root/fuzz-host-setup.log" 2>&1
then
    cat "$root/fuzz-host-setup.log" >&2
    exit 1
fi
names=()
for t in "${targets[@]}"; do
    names+=("host-modules/tests/fuzz/${t%% *}")
done
ninja --quiet -C "$build" "${names[@]}"

mkdir -p "$artifacts"
# In memory when possible: fuzz-device creates and removes a store per
# input, which costs more on a disk file system than the input itself.
work=$(mktemp -d -p /dev/shm vmaug-fuzz.XXXXXX 2>/dev/null || mktemp -d)
# A target that crashed left its store, whose audit log is append-only.
trap 'chattr -R -a "$work" 2>/dev/null; rm -rf "$work"' EXIT
export TMPDIR=$work

status=0
start=$(date +%s)
for t in "${targets[@]}"; do
    read -r name n seeds <<<"$t"
    n=${runs:-$n}
    corpus=$work/$name
    log=$work/$name.log
    cp -r "$top/$seeds" "$corpus"
    # Without address randomisation: comparisons of pointers feed the
    # mutation dictionary, and differ between runs otherwise.
    if ! setarch "$(uname -m)" -R \
            "$build/host-modules/tests/fuzz/$name" -seed=1 -runs="$n" \
            -timeout=10 -print_final_stats=1 \
            -artifact_prefix="$artifacts/$name-" "$corpus" >"$log" 2>&1; then
        status=1
    fi
    executed=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" |
               tail -n1)
    if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)' "$log" ||
       grep -qE 'runtime error:|deadly signal' "$log"; then
        status=1
    fi
    if [ "${executed:-0}" -lt "$n" ]; then
        status=1
    fi
    echo "fuzz-host: $name executed ${executed:-0} inputs (seed 1)," \
         "$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*' \
            "$log" | tail -n1)"
    if [ "$status" -ne 0 ]; then
        grep -E -m10 'ERROR|runtime error|deadly|Test unit written|SUMMARY' \
            "$log" >&2 || tail -n 20 "$log" >&2
        echo "fuzz-host: reproduce with $build/host-modules/tests/fuzz/$name" \
             "FILE" >&2
        break
    fi
done

echo "fuzz-host: $(( $(date +%s) - start ))s"
if [ "$status" -ne 0 ]; then
    echo "fuzz-host: FAILED (see $artifacts)" >&2
    exit 1
fi
echo "fuzz-host: no crash, leak, timeout or sanitizer report"
