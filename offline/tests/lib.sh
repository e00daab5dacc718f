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

# A signing identity, a trust store holding its certificate, and the demo
# bundle of the Linux job (replace 1, add 3 incl. 5 MiB, mkdir, delete,
# chmod) in $tmp/demo.vmab.  $1 may name extra manifest rules (JSON).
make_identity() {
    : "${VMAUGMENT_KEYGEN:?the vmaugment-keygen binary}"
    mkdir -p "$tmp/trust"
    "$VMAUGMENT_KEYGEN" --name "Patch admin" --key "$tmp/admin.key" \
        --cert "$tmp/trust/admin.pem"
}

motd_sha=$(echo "vmaugment fixture" | sha256sum | cut -d' ' -f1)

# write_manifest FILE RULES FILES: RULES/FILES are JSON array bodies.
write_manifest() {
    cat >"$1" <<JSON
{
  "format": 1, "id": "${MANIFEST_ID:-demo-fix}", "version": "1",
  "description": "test bundle",
  "applies": [ $2 ],
  "files": [ $3 ]
}
JSON
}

demo_files='
    {"op": "replace", "path": "/etc/motd", "payload": "motd", "old_sha256": "'$motd_sha'"},
    {"op": "mkdir", "path": "/opt/demo"},
    {"op": "add", "path": "/opt/demo/big.bin", "payload": "big.bin"},
    {"op": "add", "path": "/usr/local/bin/tool", "payload": "tool", "mode": "0755"},
    {"op": "add", "path": "/srv/www/site.conf", "payload": "site.conf", "uid": 33, "gid": 33},
    {"op": "delete", "path": "/etc/issue.net"},
    {"op": "chmod", "path": "/etc/hostname", "mode": "0600"}'
demo_rules='
    {"os": {"id": "debian", "version_id": "12"}},
    {"package": "libc6", "version": ">= 2.36"},
    {"package": "openssh-server", "installed": false},
    {"file": "/etc/debian_version", "exists": true}'

make_payloads() {
    mkdir -p "$tmp/payload"
    echo "patched motd" >"$tmp/payload/motd"
    head -c 5M /dev/urandom >"$tmp/payload/big.bin"
    printf '#!/bin/sh\necho tool\n' >"$tmp/payload/tool"
    echo "site config" >"$tmp/payload/site.conf"
}

# build_bundle OUT RULES FILES
build_bundle() {
    write_manifest "$tmp/manifest.json" "$2" "$3"
    "$VMAUGMENT_OFFLINE" bundle-build --key "$tmp/admin.key" \
        --cert "$tmp/trust/admin.pem" --payload-dir "$tmp/payload" \
        --output "$1" "$tmp/manifest.json"
}

vo() {
    "$VMAUGMENT_OFFLINE" --trust-dir "$tmp/trust" "$@"
}

# debugfs on partition $2 of raw disk $1
debugfs_part() {
    local raw=$1 part=$2
    shift 2
    debugfs -R "$*" "$raw?offset=$(part_offset "$raw" "$part")" 2>/dev/null
}

# Independent check of the demo bundle's effect on image $1.
check_demo_applied() {
    local img=$1 raw=$tmp/check.raw
    "$QEMU_IMG" convert -U -O raw "$img" "$raw"
    for p in 1 2; do
        e2fsck -fn "$raw?offset=$(part_offset "$raw" "$p")" >"$tmp/fsck.log" 2>&1 ||
            { cat "$tmp/fsck.log" >&2; fail "$img: partition $p not fsck-clean"; }
    done
    [ "$(debugfs_part "$raw" 1 cat /etc/motd)" = "patched motd" ] ||
        fail "$img: motd not replaced"
    debugfs_part "$raw" 1 dump /opt/demo/big.bin "$tmp/big.out"
    cmp -s "$tmp/big.out" "$tmp/payload/big.bin" || fail "$img: big.bin differs"
    debugfs_part "$raw" 1 stat /usr/local/bin/tool | grep -q "Mode:  0755" ||
        fail "$img: tool mode"
    debugfs_part "$raw" 2 stat /www/site.conf | grep -qE "User: +33 +Group: +33" ||
        fail "$img: site.conf owner"
    debugfs_part "$raw" 1 stat /etc/hostname | grep -q "Mode:  0600" ||
        fail "$img: hostname mode"
    ! debugfs_part "$raw" 1 stat /etc/issue.net | grep -q "Inode:" ||
        fail "$img: issue.net not deleted"
    rm -f "$raw" "$tmp/big.out"
}

# Fails unless image $1 holds exactly the content of image $2.
check_same_content() {
    "$QEMU_IMG" compare -U -q "$1" "$2" || fail "$1 differs from $2"
}

no_sidecars() {
    local d b
    d=$(dirname "$1"); b=$(basename "$1")
    ! ls -A "$d" | grep -q "^\.$b\.vmaugment" || fail "sidecar files left next to $1"
}

# Whether this QEMU has the block driver for format $1 (a QEMU built with
# few features lacks vmdk, vhdx...): tests skip what it cannot read.
qemu_has_format() {
    # "Supported formats:" (QEMU 7) or "Supported image formats:" (10).
    "$QEMU_IMG" --help 2>/dev/null |
        sed -n '/^Supported .*formats:/,/^See /p' | tr ' ' '\n' | grep -qx "$1"
}

# The formats of $@ that this QEMU supports (a note for each skipped one).
usable_formats() {
    local f
    for f in "$@"; do
        if qemu_has_format "$f"; then
            echo "$f"
        else
            echo "# $QEMU_IMG has no $f driver: skipped" >&2
        fi
    done
}
