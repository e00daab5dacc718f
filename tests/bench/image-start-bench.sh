#!/usr/bin/env bash
# Image start benchmark: how long the vmaugment device holds a VM's start
# while the host helper prepares the image, with no module registered with
# the image and with 10 (each loaded into its own sandbox and running an
# image-start handler), after a first start of each image has verified
# them; or, with VMAUGMENT_BENCH_SCAN, with the scanner registered.
#
#   tests/bench/image-start-bench.sh [ITER]      (default 30 starts each)
#
#   VMAUGMENT_BENCH_SCAN=FILES   instead of the ten modules, the scanner
#       (report policy) registered with a 2 GiB ext4 image of FILES files,
#       the image of scan-bench.sh (lib/scan-image.sh), scanned by ClamAV
#       at every start with the helper's cache and spare scanner; before
#       each start one file is changed offline, so each scan reads that
#       file and the EICAR one and takes the rest from the cache.  The
#       first start, not counted, is the cold scan that fills the cache.
#
# Each start is a fresh QEMU (TCG, -S, no guest kernel: nothing the guest
# does counts) whose device names the image; the same helper serves all
# starts, as on a host.  The time is the device's own figure, "duration-us"
# of the QMP event VMAUGMENT_IMAGE_START: from asking the helper to its
# answer.  QEMU is then let run ("cont") and quit.  Prints p50, p95 and max
# for both images and the difference.  Environment as for
# tests/guest/run.sh (VMAUGMENT_QEMU_BUILD_DIR, VMAUGMENT_BUILD_DIR,
# VMAUGMENT_GUEST_WORK_DIR).
set -euo pipefail

bench=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$bench/../.." && pwd)
here=$root/tests/guest
# shellcheck source=tests/guest/lib/harness.sh
. "$here/lib/harness.sh"

iter=${1:-30}
[[ $iter =~ ^[1-9][0-9]*$ ]] || die "usage: $0 [ITER]"
nmod=10
# The events the ten modules are registered for: the journal's handler
# appends a line and syncs it (fdatasync), as a module that records
# something would.  VMAUGMENT_BENCH_EVENTS=host-stop registers them for an
# event that does not happen at image start: then only loading counts.
events=${VMAUGMENT_BENCH_EVENTS:-image-start}
scan_files=${VMAUGMENT_BENCH_SCAN:-}
# (At least 50: the starts change files 1 to 48 of the first directory.)
if [ -n "$scan_files" ] &&
   { ! [[ $scan_files =~ ^[1-9][0-9]*$ ]] || [ "$scan_files" -lt 50 ]; }; then
    die "VMAUGMENT_BENCH_SCAN is a number of files, at least 50"
fi
# How long one start may take (start_timeout), and the first start of
# each image (first_timeout: the scanner's scans every file).
start_timeout=30
first_timeout=30

check_qemu
# Unix socket paths are short (108 bytes): keep them out of the work tree.
bdir=$(mktemp -d /tmp/vmaug-istart.XXXXXX)
cleanup() {
    helper_stop
    # The store keeps its audit log append-only.
    chattr -R -a "$bdir" 2>/dev/null || true
    rm -rf "$bdir"
}
trap cleanup EXIT

admin() {
    "$build/host-modules/admin/vmaugment-admin" "$@" >>"$bdir/admin.log" 2>&1 ||
        die "vmaugment-admin $*: $(tail -n 2 "$bdir/admin.log")"
}
mkdir -p "$bdir/host/images" "$bdir/pkg"
truncate -s 16M "$bdir/host/images/zero.img"

if [ -z "$scan_files" ]; then
    helper_tools host-modules/modules/journal/vmaug-journal.so \
        host-modules/admin/vmaugment-admin || die "$helper_error"
    # bench0 .. bench9: the journal module under ten names, signed by the
    # test administrator and installed in the store; registered with
    # ten.img.
    measured=$bdir/host/images/ten.img
    measured_what="$nmod modules ($events)"
    truncate -s 16M "$measured"
    for i in $(seq 0 $((nmod - 1))); do
        sed "s/\"name\": *\"journal\"/\"name\": \"bench$i\"/" \
            "$root/host-modules/modules/journal/manifest.json" >"$bdir/pkg/manifest.json"
        "$build/host-modules/vmaugment-pack" create \
            --manifest "$bdir/pkg/manifest.json" \
            --payload "$build/host-modules/modules/journal/vmaug-journal.so" \
            --key "$work/keys/admin.key" --cert "$work/keys/admin.crt" \
            -o "$bdir/pkg/bench$i.vmod" >>"$bdir/pack.log" 2>&1 ||
            die "vmaugment-pack: $(tail -n 2 "$bdir/pack.log")"
        admin install --store "$bdir/host/store" --trust-dir "$work/keys/trust" \
            "$bdir/pkg/bench$i.vmod"
        admin register --image "$measured" "bench$i" \
            --version 1.0 --events "$events"
    done
else
    # shellcheck source=tests/bench/lib/scan-image.sh
    . "$bench/lib/scan-image.sh"
    helper_tools host-modules/modules/scanner/vmaug-scanner.so \
        host-modules/admin/vmaugment-admin offline/vmaugment-offline \
        offline/vmaugment-offline-worker || die "$helper_error"
    measured=$bdir/host/images/scan.img
    measured_what="scanner, $scan_files files"
    first_timeout=600
    for tool in mke2fs debugfs; do
        command -v "$tool" >/dev/null || die "$tool missing (e2fsprogs)"
    done
    log_step "a 2 GiB ext4 image of $scan_files files"
    # The worker reads the database under an id of its own.
    chmod a+x "$bdir"
    scan_bench_database "$bdir/clamav" || die "cannot write the database"
    scan_bench_image "$bdir/tree" "$measured" "$scan_files" ||
        die "cannot make the image"
    rm -rf "$bdir/tree"
    module_package scanner 1.0 "$bdir/pkg/scanner.vmod" || die "$helper_error"
    admin install --store "$bdir/host/store" --trust-dir "$work/keys/trust" \
        "$bdir/pkg/scanner.vmod"
    admin register --image "$measured" scanner --version 1.0 \
        --events image-start
    helper_extra_args+=(--scan-tool "$build/offline/vmaugment-offline"
                        --clamav-database "$bdir/clamav"
                        --scan-timeout-s "$first_timeout")
fi

helper_image=$bdir/host/images/zero.img     # for --image-dir
helper_setup "$bdir/host" || die "host helper: $helper_error"
if [ -n "$scan_files" ]; then
    # The host owner grants the scan; the helper reads its policy at start.
    echo '{ "grants": { "*": ["log", "config", "state", "events", "ui"],
                        "scanner": ["image-scan"] } }' >"$helper_dir/policy.json"
    helper_start || die "host helper: $helper_error"
fi

# start IMAGE [SECONDS]: one start, given SECONDS (start_timeout); prints
# the event's duration-us, or "refused:" and the helper's message.
start() {
    local out limit=${2:-$start_timeout}
    rm -f "$bdir/qmp.sock"
    timeout --kill-after=5 $((limit + 30)) "$qemu" -accel tcg -m 64 \
        -nodefaults -display none -S \
        -chardev "socket,id=vmaug0,path=$helper_sock,reconnect-ms=200" \
        -device "vmaugment-pci,chardev=vmaug0,image=$1,start-timeout-ms=$((limit * 1000))" \
        -qmp "unix:$bdir/qmp.sock,server=on,wait=on" \
        </dev/null >>"$bdir/qemu.log" 2>&1 &
    local qpid=$!
    out=$(python3 "$here/lib/qmp.py" start "$bdir/qmp.sock" \
              VMAUGMENT_IMAGE_START "$limit" 2>>"$bdir/qmp.err") || true
    wait "$qpid" || true
    [ -n "$out" ] || return 1
    python3 -c 'import json, sys
d = json.loads(sys.argv[1])["data"]
print(d["duration-us"] if d["ok"] else "refused: " + d.get("message", ""))' "$out"
}

# spare_ready: the helper's spare scanner (docs/modules.rst) has its
# worker confined and its database loaded, as between a host's starts.
spare_ready() {
    local spare worker
    for _ in $(seq 1500); do
        spare=$(pgrep -f -- "--database=$bdir/clamav .*--spare( |\$)" |
                    head -n 1 || true)
        worker=
        if [ -n "$spare" ]; then
            worker=$(pgrep -P "$spare" -f vmaugment-offline-worker |
                         head -n 1 || true)
        fi
        if [ -n "$worker" ] &&
           grep -q '^Seccomp:[[:space:]]*2' "/proc/$worker/status" 2>/dev/null; then
            return 0
        fi
        sleep 0.02
    done
    die "the helper kept no spare scanner ready within 30 s"
}

# before_start IMAGE N: for the scanner's image, file N of /data/d000
# (1 to 48: not a zip) changed offline, and the spare ready.
before_start() {
    if [ "$1" = "$measured" ] && [ -n "$scan_files" ]; then
        scan_bench_change "$1" $(( $2 % 48 + 1 )) ||
            die "cannot change a file of $1"
        spare_ready
    fi
}

# series NAME IMAGE: one warm-up start (it verifies the modules, or scans
# every file), then $iter measured ones.
series() {
    local i d misses=0
    : >"$bdir/$1.us"
    d=$(start "$2" "$first_timeout") ||
        die "the first start of $2 failed (see $bdir/qemu.log)"
    [[ $d =~ ^[0-9]+$ ]] || die "the first start of $2 was $d"
    for ((i = 0; i < iter; )); do
        before_start "$2" $((i + misses))
        if d=$(start "$2"); then
            [[ $d =~ ^[0-9]+$ ]] || die "the start of $2 was $d"
            echo "$d" >>"$bdir/$1.us"
            i=$((i + 1))
        else
            # QMP drops events sent before the client negotiated: a start
            # whose event came too early is measured again.
            misses=$((misses + 1))
            [ "$misses" -le "$iter" ] || die "no VMAUGMENT_IMAGE_START event (see $bdir/qmp.err)"
        fi
    done
    if [ "$misses" -gt 0 ]; then
        log_step "$1: $misses starts measured again (event before QMP was ready)"
    fi
}

log_step "$iter starts with no registered module"
series zero "$bdir/host/images/zero.img"
log_step "$iter starts with $measured_what"
series ten "$measured"
if [ -n "$scan_files" ]; then
    # Every start scanned and found the EICAR file (a scan that skipped
    # its work would miss it, or say why).
    scans=$(grep -c 'scan of .*scan.img: ' "$bdir/host/helper.log" || true)
    found=$(grep -c 'scan of .*scan.img: infected: .*eicar.com Bench.Eicar' \
                "$bdir/host/helper.log" || true)
    if [ "$scans" -le "$iter" ] || [ "$found" != "$scans" ]; then
        die "$found of $scans scans found the EICAR file: $(grep 'scan of' "$bdir/host/helper.log" | tail -n 2)"
    fi
fi

python3 - "$bdir/zero.us" "$bdir/ten.us" "$iter" "$measured_what" \
    "${scan_files:+200}" <<'PY'
# The goals (docs/performance.md): ten modules add at most 10 ms at the
# median; a cached rescan at most 200 ms.
import sys

def stats(path):
    v = sorted(int(x) for x in open(path))
    pick = lambda q: v[min(len(v) - 1, int(round(q * (len(v) - 1))))]
    return pick(0.50), pick(0.95), v[-1]

zero, ten = stats(sys.argv[1]), stats(sys.argv[2])
iters, what = sys.argv[3], sys.argv[4]
target = int(sys.argv[5] or 10)
print()
print('image start held by the device (VMAUGMENT_IMAGE_START duration-us), '
      '%s starts each after one warm-up start' % iters)
print('%-30s %10s %10s %10s' % ('', 'p50 ms', 'p95 ms', 'max ms'))
print('%-30s %10.2f %10.2f %10.2f' % (('no registered module',) +
                                     tuple(x / 1000 for x in zero)))
print('%-30s %10.2f %10.2f %10.2f' % ((what,) +
                                     tuple(x / 1000 for x in ten)))
diff = tuple((t - z) / 1000 for t, z in zip(ten, zero))
print('%-30s %10.2f %10.2f %10.2f' % (('added',) + diff))
print('target: %s adds <= %d ms (p50 %s)' %
      (what, target, 'met' if diff[0] <= target else 'NOT met'))
PY
