# Shared helpers for the offline servicing tests (sourced, bash).
set -euo pipefail

: "${VMAUGMENT_OFFLINE:?the vmaugment-offline binary}"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export PATH=$PATH:/usr/sbin:/sbin
QEMU_IMG=${VMAUGMENT_QEMU_IMG:-${VMAUGMENT_QEMU_BUILD_DIR:+$VMAUGMENT_QEMU_BUILD_DIR/}qemu-img}
QEMU_NBD=${VMAUGMENT_QEMU_NBD:-${VMAUGMENT_QEMU_BUILD_DIR:+$VMAUGMENT_QEMU_BUILD_DIR/}qemu-nbd}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vmaugment-offline-test.XXXXXX")
bg_pids=()
cleanup() {
    for pid in "${bg_pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

pass() {
    echo "ok - $*"
}

fixtures_linux() {
    bash "$here/make-fixtures.sh" linux
}

# Runs vmaugment-offline, expecting failure whose message matches $1.
expect_refusal() {
    local pattern=$1
    shift
    local out rc=0
    out=$("$VMAUGMENT_OFFLINE" "$@" 2>&1) || rc=$?
    if [ "$rc" -eq 0 ]; then
        fail "expected refusal ($pattern) from: $*"
    fi
    if ! grep -qiE -- "$pattern" <<<"$out"; then
        fail "refusal of '$*' did not mention '$pattern': $out"
    fi
}

# Byte offset of partition $2 of raw disk $1 (from sfdisk).
part_offset() {
    sfdisk --json "$1" | python3 -c '
import json, sys
t = json.load(sys.stdin)["partitiontable"]
p = t["partitions"][int(sys.argv[1]) - 1]
print(p["start"] * t.get("sectorsize", 512))' "$2"
}

# e2fsck -fn on partition $2 of image $1 (any format), via a raw copy.
fsck_partition() {
    local img=$1 part=$2 raw=$tmp/fsck.raw
    "$QEMU_IMG" convert -U -O raw "$img" "$raw"
    e2fsck -fn "$raw?offset=$(part_offset "$raw" "$part")" >"$tmp/fsck.log" 2>&1 ||
        { cat "$tmp/fsck.log" >&2; rm -f "$raw"; return 1; }
    rm -f "$raw"
}

# Holds QEMU's image lock the way a running VM does, until the test ends.
hold_image_lock() {
    local img=$1 fmt=$2
    "$QEMU_NBD" --persistent --socket="$tmp/hold.sock" -f "$fmt" "$img" \
        2>"$tmp/hold.log" &
    bg_pids+=($!)
    for _ in $(seq 50); do
        [ -S "$tmp/hold.sock" ] && return 0
        sleep 0.1
    done
    fail "qemu-nbd did not start: $(cat "$tmp/hold.log")"
}

json_get() {
    python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
for k in sys.argv[2:]:
    d = d[int(k)] if isinstance(d, list) else d[k]
print(d if not isinstance(d, (dict, list)) else json.dumps(d))' "$@"
}
