#!/usr/bin/env bash
# Debian on LVM: the logical volumes are read from LVM's on-disk metadata
# (no device-mapper), mapped by fstab's device-mapper and udev names,
# patched and verified in qcow2 and vmdk, and checked with e2fsck and
# debugfs at the offsets lvm itself chose; volumes we cannot map and
# corrupt metadata are refused with the reason.  Needs root (losetup, for
# the fixture's pvcreate and vgcfgrestore).
source "$(dirname "$0")/lib.sh"

plan 6
need lvm lvm2
need losetup mount
need_image_formats >&2
fix=$(bash "$here/make-fixtures.sh" lvm)
declare -A at
while read -r name off; do at[$name]=$off; done <"$fix/volumes"

vo inspect "$fix/debian-lvm.qcow2" >"$tmp/inspect.json" ||
    fail "inspect of Debian on LVM"
python3 - "$tmp/inspect.json" "${at[root]}" "${at[srv]}" <<'PY' ||
import json, sys
d = json.load(open(sys.argv[1]))
vols = {p["volume"]: p for p in d["partitions"] if "volume" in p}
assert vols["debian-vg/root"]["offset"] == int(sys.argv[2]), vols
assert vols["debian-vg/srv"]["offset"] == int(sys.argv[3]), vols
assert vols["debian-vg/root"]["filesystem"] == "ext4"
mounts = {m["mountpoint"]: m.get("volume") for m in d["mounts"]}
assert mounts == {"/": "debian-vg/root", "/srv": "debian-vg/srv"}, mounts
assert d["os"]["id"] == "debian" and d["os"]["version_id"] == "12"
assert any(p["name"] == "dpkg" for p in d["packages"])
PY
    fail "inventory of Debian on LVM: $(cat "$tmp/inspect.json")"
pass "inspect: both volumes at lvm's offsets, mounted by fstab's names"

make_identity
mkdir -p "$tmp/payload"
echo "patched on LVM" >"$tmp/payload/note"
echo "served from a logical volume" >"$tmp/payload/page"
build_bundle "$tmp/lvm.vmab" '{"os": {"id": "debian"}}' '
    {"op": "add", "path": "/etc/vmaugment-lvm", "payload": "note"},
    {"op": "add", "path": "/srv/www/lvm.html", "payload": "page"}' ||
    fail "bundle-build"

for fmt in qcow2 vmdk; do
    img=$tmp/a.$fmt
    cp --sparse=always "$fix/debian-lvm.$fmt" "$img"
    vo apply "$img" "$tmp/lvm.vmab" >"$tmp/apply.json" ||
        fail "apply on $fmt: $(cat "$tmp/apply.json")"
    vo verify "$img" "$tmp/lvm.vmab" >"$tmp/verify.json" ||
        fail "verify on $fmt: $(cat "$tmp/verify.json")"
    raw=$tmp/check.raw
    "$QEMU_IMG" convert -U -O raw "$img" "$raw"
    for v in root srv; do
        e2fsck -fn "$raw?offset=${at[$v]}" >"$tmp/fsck.log" 2>&1 ||
            fail "$fmt: volume $v not fsck-clean: $(cat "$tmp/fsck.log")"
    done
    got=$(debugfs -R "cat /etc/vmaugment-lvm" "$raw?offset=${at[root]}" 2>/dev/null)
    [ "$got" = "patched on LVM" ] || fail "$fmt: root volume has '$got'"
    got=$(debugfs -R "cat /www/lvm.html" "$raw?offset=${at[srv]}" 2>/dev/null)
    [ "$got" = "served from a logical volume" ] || fail "$fmt: /srv has '$got'"
    rm -f "$raw"
    pass "apply and verify on $fmt; e2fsck -fn clean, files where lvm put the volumes"
done

cp "$fix/scattered.raw" "$tmp/scattered.raw"
sum=$(sha256sum <"$tmp/scattered.raw")
expect_refusal "logical volume debian-vg/data: its extents are not contiguous" \
    --trust-dir "$tmp/trust" apply "$tmp/scattered.raw" "$tmp/lvm.vmab"
[ "$(sha256sum <"$tmp/scattered.raw")" = "$sum" ] || fail "refused image changed"
pass "a volume that is not contiguous: refused by name, image untouched"

# One byte of the current metadata text (the last copy in the area's
# circular buffer) changed: its checksum no longer holds.
text=$(grep -abo 'debian-vg {' "$tmp/scattered.raw" | tail -n1 | cut -d: -f1)
[ -n "$text" ] || fail "no metadata text in the fixture"
printf 'X' | dd of="$tmp/scattered.raw" bs=1 seek="$text" conv=notrunc status=none
expect_refusal "LVM metadata: metadata text checksum" inspect "$tmp/scattered.raw"
pass "corrupt LVM metadata: refused as such"

# /srv's volume made XFS (64 MiB: below mkfs.xfs's production minimum,
# which its test-suite variables lift): the bundle's /srv file is refused
# naming the volume and the two routes; the ext4 root alone is still read.
"$QEMU_IMG" convert -O raw "$fix/debian-lvm.qcow2" "$tmp/xfs-lvm.raw"
truncate -s 64M "$tmp/srv.xfs"
QA_CHECK_FS=1 TEST_DIR=1 TEST_DEV=1 mkfs.xfs -q -f "$tmp/srv.xfs" ||
    fail "mkfs.xfs"
dd if="$tmp/srv.xfs" of="$tmp/xfs-lvm.raw" bs=512 seek=$((at[srv] / 512)) \
    conv=sparse,notrunc status=none
rm -f "$tmp/srv.xfs"
sum=$(sha256sum <"$tmp/xfs-lvm.raw")
expect_refusal "logical volume debian-vg/srv holds XFS filesystem, which is not supported; .*--backend=libguestfs .*--host-kernel" \
    --trust-dir "$tmp/trust" apply "$tmp/xfs-lvm.raw" "$tmp/lvm.vmab"
[ "$(sha256sum <"$tmp/xfs-lvm.raw")" = "$sum" ] || fail "refused image changed"
vo inspect "$tmp/xfs-lvm.raw" >"$tmp/inspect.json" ||
    fail "inspect with /srv on XFS: $(cat "$tmp/inspect.json")"
pass "XFS on a logical volume: refused by volume, naming both routes"
