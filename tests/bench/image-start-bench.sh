#!/usr/bin/env bash
# Image start benchmark: how long the vmaugment device holds a VM's start
# while the host helper prepares the image, with no module registered with
# the image and with 10 (each loaded into its own sandbox and running an
# image-start handler), after a first start of each image has verified
# them.
#
#   tests/bench/image-start-bench.sh [ITER]      (default 30 starts each)
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

helper_tools host-modules/modules/journal/vmaug-journal.so \
    host-modules/admin/vmaugment-admin || die "$helper_error"
admin() {
    "$build/host-modules/admin/vmaugment-admin" "$@" >>"$bdir/admin.log" 2>&1 ||
        die "vmaugment-admin $*: $(tail -n 2 "$bdir/admin.log")"
}

# bench0 .. bench9: the journal module under ten names, signed by the test
# administrator and installed in the store; registered with ten.img.
mkdir -p "$bdir/host/images" "$bdir/pkg"
truncate -s 16M "$bdir/host/images/zero.img" "$bdir/host/images/ten.img"
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
    admin register --image "$bdir/host/images/ten.img" "bench$i" \
        --version 1.0 --events "$events"
done

helper_image=$bdir/host/images/zero.img     # for --image-dir
helper_setup "$bdir/host" || die "host helper: $helper_error"

# start IMAGE: one start; prints the event's duration-us, or "refused:"
# and the helper's message.
start() {
    local out
    rm -f "$bdir/qmp.sock"
    timeout --kill-after=5 60 "$qemu" -accel tcg -m 64 -nodefaults \
        -display none -S \
        -chardev "socket,id=vmaug0,path=$helper_sock,reconnect-ms=200" \
        -device "vmaugment-pci,chardev=vmaug0,image=$1" \
        -qmp "unix:$bdir/qmp.sock,server=on,wait=on" \
        </dev/null >>"$bdir/qemu.log" 2>&1 &
    local qpid=$!
    out=$(python3 "$here/lib/qmp.py" start "$bdir/qmp.sock" \
              VMAUGMENT_IMAGE_START 30 2>>"$bdir/qmp.err") || true
    wait "$qpid" || true
    [ -n "$out" ] || return 1
    python3 -c 'import json, sys
d = json.loads(sys.argv[1])["data"]
print(d["duration-us"] if d["ok"] else "refused: " + d.get("message", ""))' "$out"
}

# series NAME IMAGE: one warm-up start (it verifies the modules), then
# $iter measured ones.
series() {
    local i d misses=0
    : >"$bdir/$1.us"
    d=$(start "$2") || die "the first start of $2 failed (see $bdir/qemu.log)"
    [[ $d =~ ^[0-9]+$ ]] || die "the first start of $2 was $d"
    for ((i = 0; i < iter; )); do
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
log_step "$iter starts with $nmod registered modules"
series ten "$bdir/host/images/ten.img"

python3 - "$bdir/zero.us" "$bdir/ten.us" "$iter" "$nmod" "$events" <<'PY'
import sys

def stats(path):
    v = sorted(int(x) for x in open(path))
    pick = lambda q: v[min(len(v) - 1, int(round(q * (len(v) - 1))))]
    return pick(0.50), pick(0.95), v[-1]

zero, ten = stats(sys.argv[1]), stats(sys.argv[2])
iters, nmod, events = sys.argv[3], sys.argv[4], sys.argv[5]
print()
print('image start held by the device (VMAUGMENT_IMAGE_START duration-us), '
      '%s starts each after one warm-up start' % iters)
print('%-30s %10s %10s %10s' % ('', 'p50 ms', 'p95 ms', 'max ms'))
print('%-30s %10.2f %10.2f %10.2f' % (('no registered module',) +
                                     tuple(x / 1000 for x in zero)))
print('%-30s %10.2f %10.2f %10.2f' % (('%s modules (%s)' % (nmod, events),) +
                                     tuple(x / 1000 for x in ten)))
diff = tuple((t - z) / 1000 for t, z in zip(ten, zero))
print('%-30s %10.2f %10.2f %10.2f' % (('added by %s modules' % nmod,) + diff))
print('target: %s modules add <= 20 ms (p50 %s)' %
      (nmod, 'met' if diff[0] <= 20 else 'NOT met'))
PY
