#!/usr/bin/env bash
# Scan benchmark (docs/offline.rst, "Scanning an image"): vmaugment-offline
# scan of a 2 GiB ext4 image holding 20,000 files, cold and with its cache
# after one file changed, beside clamscan -r over the same tree on the
# host, with the same database, in the same run.
#
#   tests/bench/scan-bench.sh [BUILD_DIR]     (default build/vmaugment)
#
#   VMAUGMENT_BENCH_RUNS      runs of each measurement (median; 3)
#   VMAUGMENT_BENCH_FILES     files in the image (20000)
#   VMAUGMENT_BENCH_DATABASE  a signature directory to scan with (default:
#                             a test database of two signatures, as the
#                             official one cannot be downloaded here)
#
# The tree and the database: lib/scan-image.sh.  "one file" is a scan of
# a single file (--path): what every scan costs before its first file
# (qemu-img, qemu-nbd, the worker and its confinement, the database, the
# mount map).  "through a spare" is the cached rescan as the helper runs
# it at an image's start: the worker started and the database loaded
# beforehand.  image-start-bench.sh measures the same rescan as an image
# start waits for it, through the helper (VMAUGMENT_BENCH_SCAN).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$root/build/vmaugment}" && pwd)
export VMAUGMENT_OFFLINE=$build/offline/vmaugment-offline
runs=${VMAUGMENT_BENCH_RUNS:-3}
nfiles=${VMAUGMENT_BENCH_FILES:-20000}

# shellcheck source=../../offline/tests/lib.sh
source "$root/offline/tests/lib.sh"
need clamscan clamav
need mke2fs e2fsprogs
need debugfs e2fsprogs

# shellcheck source=lib/scan-image.sh
source "$root/tests/bench/lib/scan-image.sh"
chmod a+x "$tmp"
if [ -n "${VMAUGMENT_BENCH_DATABASE:-}" ]; then
    db=$VMAUGMENT_BENCH_DATABASE
else
    db=$tmp/db
    scan_bench_database "$db" || fail "cannot write the database"
fi

tree=$tmp/tree
img=$tmp/bench.raw
scan_bench_image "$tree" "$img" "$nfiles" || fail "cannot make the image"
bytes=$(du -sb "$tree" | cut -f1)
count=$(find "$tree" -type f | wc -l)

# median SECONDS...: the middle one.
median() {
    printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'
}

# timed VAR CMD...: CMD's wall time in seconds into VAR (exit 0-2 fine).
timed() {
    local var=$1 start end rc=0
    shift
    start=$(date +%s.%N)
    "$@" >"$tmp/out.json" 2>"$tmp/out.err" || rc=$?
    end=$(date +%s.%N)
    [ "$rc" -le 2 ] || fail "$* exited $rc: $(cat "$tmp/out.err")"
    printf -v "$var" '%.3f' "$(echo "$end - $start" | bc)"
}

scan() {
    "$VMAUGMENT_OFFLINE" scan --database "$db" "$@"
}

# timed_spare VAR ARGS...: a scan through a spare, as the helper runs one
# at an image's start (docs/offline.rst, "A scanner kept ready"): "scan
# --spare" is started and its worker loads the database and confines
# itself; then ARGS (options and the image) are written to it.  The time
# from that write to its end, into VAR.
timed_spare() {
    local var=$1 start end rc=0 pid
    shift
    rm -f "$tmp/spare.in"
    mkfifo "$tmp/spare.in"
    "$VMAUGMENT_OFFLINE" scan --spare --database "$db" <"$tmp/spare.in" \
        >"$tmp/out.json" 2>"$tmp/out.err" &
    pid=$!
    exec 9>"$tmp/spare.in"
    confined_worker "$pid"
    start=$(date +%s.%N)
    printf '%s\0' "$@" >&9
    exec 9>&-
    wait "$pid" || rc=$?
    end=$(date +%s.%N)
    [ "$rc" -le 2 ] || fail "scan --spare $* exited $rc: $(cat "$tmp/out.err")"
    printf -v "$var" '%.3f' "$(echo "$end - $start" | bc)"
}

cold=() one=() cached=() anchor=()
for _ in $(seq "$runs"); do
    timed t scan "$img"
    cold+=("$t")
    # Every file and archive really scanned: the EICAR file found, no
    # error (a scan that skipped work would say so, or miss it).
    [ "$(json_get "$tmp/out.json" files-scanned)" = "$((count))" ] &&
        [ "$(json_get "$tmp/out.json" result)" = infected ] &&
        [ "$(json_get "$tmp/out.json" errors)" = "[]" ] ||
        fail "cold scan: $(head -c 400 "$tmp/out.json")"
    timed t scan --path /etc/os-release "$img"
    one+=("$t")
    timed t clamscan -r --no-summary --infected -d "$db" "$tree"
    anchor+=("$t")
done

# The cache; then each run changes one file (a new inode, new times)
# and rescans: that file and the EICAR one (findings are never cached).
cache=$tmp/scan.cache
scan --cache "$cache" "$img" >/dev/null || [ $? -le 2 ]
for i in $(seq "$runs"); do
    scan_bench_change "$img" "$i" || fail "cannot change a file of the image"
    timed t scan --cache "$cache" "$img"
    cached+=("$t")
    [ "$(json_get "$tmp/out.json" files-scanned)" = 2 ] &&
        [ "$(json_get "$tmp/out.json" files-cached)" = "$((count - 2))" ] ||
        fail "cached rescan: $(head -c 400 "$tmp/out.json")"
done

# The same through a spare: what a cached rescan adds to an image's start
# in the helper, which keeps a spare ready once it has scanned.
spared=()
for i in $(seq "$((runs + 1))" "$((2 * runs))"); do
    scan_bench_change "$img" "$i" || fail "cannot change a file of the image"
    timed_spare t --cache "$cache" "$img"
    spared+=("$t")
    [ "$(json_get "$tmp/out.json" files-scanned)" = 2 ] &&
        [ "$(json_get "$tmp/out.json" files-cached)" = "$((count - 2))" ] ||
        fail "cached rescan through a spare: $(head -c 400 "$tmp/out.json")"
done

cold_m=$(median "${cold[@]}")
one_m=$(median "${one[@]}")
cached_m=$(median "${cached[@]}")
anchor_m=$(median "${anchor[@]}")
echo "# scan benchmark: $count files, $((bytes / 1048576)) MiB in a 2 GiB" \
    "ext4 image; $(json_get "$tmp/out.json" engine)," \
    "$(json_get "$tmp/out.json" database signatures) signatures;" \
    "median of $runs"
printf '%-44s %8s s\n' \
    "vmaugment-offline scan, cold" "$cold_m" \
    "clamscan -r on the same tree (host files)" "$anchor_m" \
    "vmaugment-offline scan, one file (fixed cost)" "$one_m" \
    "vmaugment-offline scan --cache, 1 file changed" "$cached_m"
printf '%-44s %8s s\n' "cached rescan beyond the fixed cost" \
    "$(echo "$cached_m - $one_m" | bc)"
printf '%-44s %8s s\n' "the same through a spare (image start)" \
    "$(median "${spared[@]}")"
