#!/usr/bin/env bash
# Fuzz the host side's parsers with libFuzzer, built by clang with
# AddressSanitizer and UBSan in a build directory of their own:
# fuzz-manifest (manifests and packages), fuzz-device (the helper's device
# link), fuzz-registrations (the registration sidecar), fuzz-scan-report
# (the image scan's report, for the helper), fuzz-repo-index
# (the repository index), fuzz-bundle (offline bundles), fuzz-hive (a
# guest's SOFTWARE hive), fuzz-dpkg-status (a guest's dpkg status and
# os-release), fuzz-deb822 (its paragraphs as the package unpacker reads
# and writes them), fuzz-ovf (OVF descriptors), fuzz-fstab (a guest's
# /etc/fstab), fuzz-lvm (LVM2 physical volumes), fuzz-rpmdb (an rpm
# guest's database), fuzz-worker-report
# (what the offline worker sends its
# privileged parent), and fuzz-image-ext and fuzz-image-ntfs (whole guest
# disks through the worker's readers: partitions, ext2/3/4 or NTFS, the
# guest's map and its inventory).
#
# Usage: fuzz-host.sh [--runs N | --long] [--max-time S] [--jobs N]
#                     [--max-len B] [--timeout S] [TARGET...]
#   default    a short run of each, for CI: a few thousand inputs, fewer
#              for the targets whose inputs cost most (fuzz-device drives a
#              socket, a main loop and a store per input; fuzz-hive writes
#              a file per input; fuzz-image-* open a whole disk per input);
#              about a minute of fuzzing in all
#   --runs N   N inputs per target
#   --long     a campaign: 10 million inputs per target, one target at a
#              time, at the lowest CPU priority, an input allowed 60 s of
#              wall-clock time instead of 10 (docs/testing.rst, "Long fuzz
#              campaigns", records such runs)
#   --max-time S  stop each target after S seconds even if it has not run
#              its inputs (a campaign's time budget; not a failure)
#   --jobs N   run each target as N processes at once, seeds 1 to N, over
#              one corpus that each reloads as the others grow it, each
#              with its share of the inputs: a campaign that uses N cores
#   --max-len B  inputs of at most B bytes (libFuzzer's -max_len; longer
#              seeds are cut): without it they grow to libFuzzer's 4096,
#              and a target whose cost grows with its input (fuzz-device:
#              one request after another) slows down as they do
#   --timeout S  an input's wall-clock limit (libFuzzer's -timeout; 10 s,
#              60 with --long): a campaign that will be stopped (SIGSTOP)
#              while the machine measures something needs more than the
#              pause, since an input stopped that long reads as a hang
#   TARGET     only these targets
#
# Each target runs with a fixed seed over a copy of its committed seed
# corpus (corpus* beside the target's source): every run starts from the
# same inputs and mutations, and long runs never grow the committed corpus.
# (libFuzzer steers by coverage, which timing and heap addresses can still
# nudge: two runs may end a few corpus entries apart.)
#
# Exits non-zero on any crash, leak, timeout or sanitizer report, leaving
# the reproducer under build/fuzz-host-artifacts/; add it to the committed
# corpus, where every build's fuzz-*-corpus test (meson) replays it.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
root=${VMAUGMENT_BUILD_ROOT:-$top/build}
build=$root/fuzz-host
artifacts=$root/fuzz-host-artifacts
runs=
nice=
# libFuzzer's timeout is wall-clock time: at the lowest priority on a busy
# machine an input can wait seconds for a CPU, so a campaign allows more.
timeout=10
max_time=0
jobs=1
max_len=()
timeout_set=
only=()

while [ $# -gt 0 ]; do
    case $1 in
    --runs) runs=$2; shift ;;
    --long) runs=10000000; nice="nice -n 19"; timeout=60 ;;
    --max-time) max_time=$2; shift ;;
    --jobs) jobs=$2; shift ;;
    --max-len) max_len=(-max_len="$2"); shift ;;
    --timeout) timeout_set=$2; shift ;;
    fuzz-*) only+=("$1") ;;
    *) echo "usage: fuzz-host.sh [--runs N | --long] [--max-time S]" \
            "[--jobs N] [--max-len B] [--timeout S] [TARGET...]" >&2
       exit 2 ;;
    esac
    shift
done
timeout=${timeout_set:-$timeout}

# target (its directory in the build and source trees), its default number
# of inputs, its seed corpus there
all_targets=(
    "host-modules/tests/fuzz/fuzz-manifest 20000 corpus"
    "host-modules/tests/fuzz/fuzz-device 5000 corpus-device"
    "host-modules/tests/fuzz/fuzz-registrations 20000 corpus-registrations"
    "host-modules/tests/fuzz/fuzz-scan-report 20000 corpus-scan-report"
    "repository/tests/fuzz/fuzz-repo-index 20000 corpus-index"
    "offline/tests/fuzz/fuzz-bundle 20000 corpus-bundle"
    "offline/tests/fuzz/fuzz-hive 5000 corpus-hive"
    "offline/tests/fuzz/fuzz-dpkg-status 20000 corpus-dpkg-status"
    "offline/tests/fuzz/fuzz-deb822 20000 corpus-deb822"
    "offline/tests/fuzz/fuzz-ovf 20000 corpus-ovf"
    "offline/tests/fuzz/fuzz-fstab 20000 corpus-fstab"
    "offline/tests/fuzz/fuzz-lvm 20000 corpus-lvm"
    "offline/tests/fuzz/fuzz-rpmdb 2000 corpus-rpmdb"
    "offline/tests/fuzz/fuzz-worker-report 20000 corpus-worker-report"
    "offline/tests/fuzz/fuzz-msu-result 20000 corpus-msu-result"
    "offline/tests/fuzz/fuzz-image-ext 10000 corpus-image-ext"
    "offline/tests/fuzz/fuzz-image-ntfs 3000 corpus-image-ntfs"
)
targets=()
for t in "${all_targets[@]}"; do
    path=${t%% *}
    if [ ${#only[@]} -eq 0 ] ||
       [[ " ${only[*]} " == *" ${path##*/} "* ]]; then
        targets+=("$t")
    fi
done
if [ ${#targets[@]} -eq 0 ]; then
    echo "fuzz-host: no such target: ${only[*]}" >&2
    exit 2
fi

mkdir -p "$root"
if [ ! -f "$build/build.ninja" ] &&
   ! CC=clang meson setup "$build" "$top" >"$root/fuzz-host-setup.log" 2>&1
then
    cat "$root/fuzz-host-setup.log" >&2
    exit 1
fi
names=()
for t in "${targets[@]}"; do
    names+=("${t%% *}")
done
ninja --quiet -C "$build" "${names[@]}"

mkdir -p "$artifacts"
# In memory when possible: fuzz-device creates and removes a store per
# input and fuzz-hive a file, which cost more on a disk file system than
# the input itself.
work=$(mktemp -d -p /dev/shm vmaug-fuzz.XXXXXX 2>/dev/null || mktemp -d)
# A target that crashed left its store, whose audit log is append-only.
trap 'chattr -R -a "$work" 2>/dev/null; rm -rf "$work"' EXIT
export TMPDIR=$work

status=0
start=$(date +%s)
for t in "${targets[@]}"; do
    read -r path n seeds <<<"$t"
    name=${path##*/}
    n=${runs:-$n}
    corpus=$work/$name
    log=$work/$name.log
    cp -r "$top/${path%/*}/$seeds" "$corpus"
    t0=$(date +%s)
    per_job=$(( (n + jobs - 1) / jobs ))
    # The whole-disk targets reach libntfs-3g, which leaks on a refused
    # volume (offline/tests/fuzz/lsan-suppressions.txt says where) and
    # keeps no frame pointers: the fuzzers' fast unwinding cannot see
    # whose leak it is, and unwinding fully quarters their rate.  Their
    # runs look for memory errors, neither after each input nor at the
    # end for leaks; the corpus replay (every build's fuzz-image-*-corpus
    # test) checks leaks, unwinding fully.
    asan=${ASAN_OPTIONS:-}
    # And libFuzzer purges the allocator's caches every second once a
    # process passes half its RSS limit (2 GiB by default), which a
    # whole-disk job does within an hour: a profile of such a job then
    # spent a quarter of its time in the purge's madvise(), and two
    # fifths in the kernel in all, the pages faulted back included (246
    # inputs/s against 1,000 for a job started with these options over
    # the same corpus).  Their limit is raised and the purge left out.
    limits=()
    case $name in
    fuzz-image-*)
        asan=${asan:+$asan:}detect_leaks=0
        limits=(-rss_limit_mb=4096 -purge_allocator_interval=-1) ;;
    esac
    for ((j = 1; j <= jobs; j++)); do
        # Without address randomisation: comparisons of pointers feed the
        # mutation dictionary, and differ between runs otherwise.
        ASAN_OPTIONS=$asan $nice setarch "$(uname -m)" -R \
            "$build/$path" -seed="$j" -runs="$per_job" \
            -max_total_time="$max_time" -timeout="$timeout" \
            "${max_len[@]}" "${limits[@]}" \
            -print_final_stats=1 \
            -artifact_prefix="$artifacts/$name-" "$corpus" \
            >"$log.$j" 2>&1 &
    done
    for ((j = 1; j <= jobs; j++)); do
        if ! wait -n; then
            # One report ends the campaign: the other jobs stop too.
            status=1
            # shellcheck disable=SC2046 # one word per job
            kill $(jobs -p) 2>/dev/null || true
        fi
    done
    executed=0
    for ((j = 1; j <= jobs; j++)); do
        # Kept for the campaign's record (rates, coverage, final
        # statistics): NAME.log, or NAME.J.log for each of several jobs.
        if [ "$jobs" -eq 1 ]; then
            cp "$log.$j" "$artifacts/$name.log"
        else
            cp "$log.$j" "$artifacts/$name.$j.log"
        fi
        e=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log.$j" |
            tail -n1)
        executed=$((executed + ${e:-0}))
        if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)' \
                "$log.$j" ||
           grep -qE 'runtime error:|deadly signal' "$log.$j"; then
            status=1
        fi
    done
    cat "$log".* >"$log"
    if [ "$executed" -lt "$n" ] && [ "$max_time" -eq 0 ]; then
        status=1
    fi
    echo "fuzz-host: $name executed $executed inputs" \
         "(seed 1$([ "$jobs" -eq 1 ] || echo " to $jobs, $jobs jobs"))" \
         "in $(( $(date +%s) - t0 ))s," \
         "$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*' \
            "$log" | tail -n1)"
    if [ "$status" -ne 0 ]; then
        grep -E -m10 'ERROR|runtime error|deadly|Test unit written|SUMMARY' \
            "$log" >&2 || tail -n 20 "$log" >&2
        # The input itself, so that a run on a machine that is gone (CI)
        # can still be reproduced: base64 -d it into a file.
        for a in "$artifacts/$name"-{crash,leak,timeout,oom}-*; do
            [ -f "$a" ] && [ "$(stat -c %s "$a")" -le 65536 ] || continue
            echo "fuzz-host: input ${a##*/}, base64:" >&2
            base64 -w 76 "$a" >&2
        done
        echo "fuzz-host: reproduce with $build/$path FILE" >&2
        break
    fi
done

echo "fuzz-host: $(( $(date +%s) - start ))s"
if [ "$status" -ne 0 ]; then
    echo "fuzz-host: FAILED (see $artifacts)" >&2
    exit 1
fi
echo "fuzz-host: no crash, leak, timeout or sanitizer report"
