#!/usr/bin/env bash
# Debian's root in a LUKS1 volume of a GPT partition (made by qemu-img's
# luks driver, no device-mapper): refused without a key, naming
# --luks-key; with the key, QEMU's storage daemon opens the volume and the
# worker reads, patches and verifies the filesystem inside; the result is
# checked by decrypting the partition with qemu-img, e2fsck -fn and
# debugfs.  A wrong key writes nothing, and the key is never on a command
# line or in what vmaugment-offline prints.  The same with LVM inside the
# volume (the installer's "encrypted LVM").  Needs root (losetup, for the
# LVM fixture's pvcreate and vgcfgrestore).
source "$(dirname "$0")/lib.sh"

plan 10
need qemu-storage-daemon qemu-system-common
need e2fsck e2fsprogs
need blkid util-linux
need lvm lvm2
need losetup mount
need_image_formats >&2
fix=$(bash "$here/make-fixtures.sh" luks)
uuid=$(cat "$fix/debian-luks.uuid")
read -r part_off part_size <"$fix/debian-luks.partition"
key=$(cat "$fix/key")
img=$tmp/vm.qcow2
cp --sparse=always "$fix/debian-luks.qcow2" "$img"

expect_refusal "partition 2: LUKS encrypted volume.*--luks-key UUID:file:KEYFILE" \
    inspect "$img"
pass "no key: refused, naming --luks-key"

vo --luks-key "$uuid:file:$fix/key" inspect "$img" >"$tmp/inspect.json" \
    2>"$tmp/inspect.err" || fail "inspect with the key: $(cat "$tmp/inspect.err")"
python3 - "$tmp/inspect.json" <<'PY' ||
import json, sys
d = json.load(open(sys.argv[1]))
mounts = {m["mountpoint"]: m for m in d["mounts"]}
assert set(mounts) == {"/", "/boot"}, mounts
assert mounts["/"]["luks-partition"] == 2 and mounts["/"]["disk"] == 1, mounts
assert mounts["/boot"]["partition"] == 1, mounts
inner = [p for p in d["partitions"] if p.get("luks-partition") == 2]
assert len(inner) == 1 and inner[0]["filesystem"] == "ext4", inner
assert inner[0]["uuid"] == "7d3c9c4e-5b0e-4f41-9a53-6f5fd1a0c011", inner
assert len(d["disks"]) == 1, d["disks"]
assert d["os"]["id"] == "debian" and d["os"]["version_id"] == "12"
assert any(p["name"] == "dpkg" for p in d["packages"]), "no dpkg package"
PY
    fail "inventory through the LUKS volume: $(cat "$tmp/inspect.json")"
pass "inspect with the key: the root inside the LUKS volume, its packages"

make_identity
mkdir -p "$tmp/payload"
echo "patched inside LUKS" >"$tmp/payload/note"
echo "patched on /boot" >"$tmp/payload/boot"
build_bundle "$tmp/luks.vmab" '{"os": {"id": "debian"}}' '
    {"op": "add", "path": "/etc/vmaugment-luks", "payload": "note"},
    {"op": "add", "path": "/boot/vmaugment-boot", "payload": "boot"}' ||
    fail "bundle-build"

# A wrong key: refused by QEMU before the worker runs, nothing written.
printf 'not-the-passphrase' >"$tmp/wrong"
sum=$(sha256sum <"$img")
expect_refusal "the key in .*wrong opens none of the key slots of the LUKS volume at byte $part_off; nothing was written" \
    --trust-dir "$tmp/trust" --luks-key "all:file:$tmp/wrong" apply "$img" \
    "$tmp/luks.vmab"
[ "$(sha256sum <"$img")" = "$sum" ] || fail "the image changed after a wrong key"
no_sidecars "$img"
pass "wrong key: refused, image unchanged, no overlay or journal left"

# The key on a command line is refused; the key in a file never shows in
# ps while a job runs, nor in anything vmaugment-offline prints.  The
# daemon, the one process given the key file, has its command line
# recorded as it starts: ps sampled every 0.1 s can miss a short one.
expect_refusal --status 2 "would show the key to every user of this host" \
    inspect --luks-key "$uuid:key:$key" "$img"
tool_logger "$tmp/args-qsd/qemu-storage-daemon" \
    "$(command -v qemu-storage-daemon)"
VMAUGMENT_QEMU_STORAGE_DAEMON=$tmp/args-qsd/qemu-storage-daemon \
    vo --luks-key "all:file:$fix/key" apply "$img" "$tmp/luks.vmab" \
    >"$tmp/apply.json" 2>"$tmp/apply.err" &
job=$!
seen=0
while kill -0 "$job" 2>/dev/null; do
    ps -eo args >"$tmp/ps.txt" || fail "ps"
    if grep -qF -- "$key" "$tmp/ps.txt"; then
        seen=1
    fi
    sleep 0.1
done
wait "$job" || fail "apply with the key: $(cat "$tmp/apply.err") $(cat "$tmp/apply.json")"
[ "$seen" = 0 ] || fail "the key was seen in ps"
qsd_log=$tmp/args-qsd/qemu-storage-daemon.log
grep -q -- "--object secret,id=key0,file=" "$qsd_log" ||
    fail "qemu-storage-daemon was not given the key file: $(cat "$qsd_log")"
if grep -qF -- "$key" "$qsd_log"; then
    fail "the key is on qemu-storage-daemon's command line"
fi
if grep -qF -- "$key" "$tmp/apply.json" "$tmp/apply.err"; then
    fail "the key is in apply's output"
fi
pass "the key is refused on the command line, never in ps nor in the output"

vo --luks-key "$uuid:file:$fix/key" verify "$img" "$tmp/luks.vmab" \
    >"$tmp/verify.json" 2>&1 || fail "verify: $(cat "$tmp/verify.json")"
[ "$(json_get "$tmp/verify.json" status)" = verified ] ||
    fail "verify: $(cat "$tmp/verify.json")"
pass "apply and verify through the LUKS volume"

# The volume decrypted by qemu-img alone, then checked as a filesystem.
"$QEMU_IMG" convert -U --object "secret,id=k,file=$fix/key" --image-opts \
    "driver=luks,key-secret=k,file.driver=raw,file.offset=$part_off,file.size=$part_size,file.file.driver=qcow2,file.file.file.filename=$img" \
    -O raw "$tmp/root.raw" || fail "qemu-img cannot decrypt the volume"
e2fsck -fn "$tmp/root.raw" >"$tmp/fsck.log" 2>&1 ||
    fail "the decrypted root is not fsck-clean: $(cat "$tmp/fsck.log")"
got=$(debugfs -R "cat /etc/vmaugment-luks" "$tmp/root.raw" 2>/dev/null)
[ "$got" = "patched inside LUKS" ] || fail "the decrypted root has '$got'"
"$QEMU_IMG" convert -U -O raw "$img" "$tmp/disk.raw"
got=$(debugfs -R "cat /vmaugment-boot" "$tmp/disk.raw?offset=1048576" 2>/dev/null)
[ "$got" = "patched on /boot" ] || fail "/boot has '$got'"
no_sidecars "$img"
pass "decrypted by qemu-img: e2fsck -fn clean, the file inside; /boot patched"

# LVM in the LUKS volume: the root on debian-vg/root, named in fstab by
# device-mapper's name; checked at the offset lvm chose in the volume.
img=$tmp/lvm.qcow2
cp --sparse=always "$fix/debian-luks-lvm.qcow2" "$img"
read -r part_off part_size <"$fix/debian-luks-lvm.partition"
vo --luks-key "$(cat "$fix/debian-luks-lvm.uuid"):file:$fix/key" inspect "$img" \
    >"$tmp/lvm.json" || fail "inspect of LVM in LUKS: $(cat "$tmp/lvm.json")"
python3 - "$tmp/lvm.json" <<'PY' ||
import json, sys
d = json.load(open(sys.argv[1]))
mounts = {m["mountpoint"]: m for m in d["mounts"]}
assert mounts["/"].get("volume") == "debian-vg/root", mounts
assert mounts["/"]["luks-partition"] == 2, mounts
assert any(p["name"] == "dpkg" for p in d["packages"]), "no dpkg package"
PY
    fail "inventory of LVM in LUKS: $(cat "$tmp/lvm.json")"
vo --luks-key "all:file:$fix/key" apply "$img" "$tmp/luks.vmab" \
    >"$tmp/apply.json" 2>&1 || fail "apply on LVM in LUKS: $(cat "$tmp/apply.json")"
vo --luks-key "all:file:$fix/key" verify "$img" "$tmp/luks.vmab" \
    >"$tmp/verify.json" 2>&1 || fail "verify on LVM in LUKS: $(cat "$tmp/verify.json")"
rm -f "$tmp/root.raw"
"$QEMU_IMG" convert -U --object "secret,id=k,file=$fix/key" --image-opts \
    "driver=luks,key-secret=k,file.driver=raw,file.offset=$part_off,file.size=$part_size,file.file.driver=qcow2,file.file.file.filename=$img" \
    -O raw "$tmp/root.raw" || fail "qemu-img cannot decrypt the volume"
lv=$(cat "$fix/luks-lvm.root")
e2fsck -fn "$tmp/root.raw?offset=$lv" >"$tmp/fsck.log" 2>&1 ||
    fail "the root volume is not fsck-clean: $(cat "$tmp/fsck.log")"
got=$(debugfs -R "cat /etc/vmaugment-luks" "$tmp/root.raw?offset=$lv" 2>/dev/null)
[ "$got" = "patched inside LUKS" ] || fail "the root volume has '$got'"
pass "LVM in LUKS: inspect, apply, verify; e2fsck -fn clean at lvm's offset"

# batch hands every key to each image's job: without keys both encrypted
# images fail, naming --luks-key, and are left as they were; with one key per volume's
# UUID both are applied, and each verifies with its own key.
imgs=$tmp/images
mkdir -p "$imgs"
cp --sparse=always "$fix/debian-luks.qcow2" "$imgs/plain-root.qcow2"
cp --sparse=always "$fix/debian-luks-lvm.qcow2" "$imgs/lvm-root.qcow2"
sum=$(cat "$imgs"/*.qcow2 | sha256sum)
vo batch --bundle "$tmp/luks.vmab" "$imgs" >"$tmp/batch.json" 2>"$tmp/batch.err" &&
    fail "batch without keys succeeded: $(cat "$tmp/batch.json")"
batch_status() {
    python3 - "$1" "$2" <<'PY'
import json, os, sys
d = json.load(open(sys.argv[1]))
st = {os.path.basename(i["image"]): i["status"] for i in d["images"]}
assert st == {"plain-root.qcow2": sys.argv[2], "lvm-root.qcow2": sys.argv[2]}, st
PY
}
batch_status "$tmp/batch.json" error &&
    [ "$(grep -c 'LUKS encrypted volume.*--luks-key UUID:file:KEYFILE' "$tmp/batch.json")" = 2 ] ||
    fail "batch without keys: $(cat "$tmp/batch.json" "$tmp/batch.err")"
[ "$(cat "$imgs"/*.qcow2 | sha256sum)" = "$sum" ] ||
    fail "batch without keys changed an image"
vo batch --luks-key "$uuid:file:$fix/key" \
    --luks-key "$(cat "$fix/debian-luks-lvm.uuid"):file:$fix/key" \
    --bundle "$tmp/luks.vmab" "$imgs" >"$tmp/batch.json" 2>"$tmp/batch.err" ||
    fail "batch with the keys: $(cat "$tmp/batch.json" "$tmp/batch.err")"
batch_status "$tmp/batch.json" applied ||
    fail "batch with the keys: $(cat "$tmp/batch.json")"
for f in plain-root lvm-root; do
    vo --luks-key "all:file:$fix/key" verify "$imgs/$f.qcow2" "$tmp/luks.vmab" \
        >"$tmp/verify.json" 2>&1 || fail "verify $f: $(cat "$tmp/verify.json")"
    no_sidecars "$imgs/$f.qcow2"
done
if grep -qF -- "$key" "$tmp/batch.json" "$tmp/batch.err" "$tmp/reports"/* 2>/dev/null; then
    fail "the key is in batch's output"
fi
pass "batch --luks-key: without keys each image fails naming the option, nothing written; applied and verified with them"

# qemu-storage-daemon serves the overlay the apply holds, not the file
# under its name: an overlay of another LUKS image swapped in under the
# name as the daemon starts is neither read nor written, nor committed.
cp --sparse=always "$fix/debian-luks.qcow2" "$tmp/served.qcow2"
cp --sparse=always "$fix/debian-luks.qcow2" "$tmp/served-decoy.qcow2"
overlay_swapper "$tmp/served-qsd/qemu-storage-daemon" \
    "$(command -v qemu-storage-daemon)" "$tmp/served.qcow2" \
    "$tmp/served-decoy.qcow2"
VMAUGMENT_QEMU_STORAGE_DAEMON=$tmp/served-qsd/qemu-storage-daemon \
    expect_refusal 'is no longer the overlay this apply made; it is not committed' \
    --trust-dir "$tmp/trust" --luks-key "all:file:$fix/key" apply \
    "$tmp/served.qcow2" "$tmp/luks.vmab"
swap_was_harmless "$tmp/served-qsd/qemu-storage-daemon" "$tmp/served.qcow2" \
    "$tmp/served-decoy.qcow2"
pass "an overlay swapped in as qemu-storage-daemon starts is not what the worker reads and writes"

# The virtual size the LUKS volumes are checked against is the overlay's
# the apply holds: swapped under its name as qemu-nbd starts the locate
# job, the file there is not what qemu-img is asked about.
cp --sparse=always "$fix/debian-luks.qcow2" "$tmp/sized.qcow2"
cp --sparse=always "$fix/debian-luks.qcow2" "$tmp/sized-decoy.qcow2"
swapped_as_served "$tmp/sized.qcow2" "$tmp/sized-decoy.qcow2" \
    --trust-dir "$tmp/trust" --luks-key "all:file:$fix/key" apply \
    "$tmp/sized.qcow2" "$tmp/luks.vmab"
pass "--luks-key: the overlay's virtual size is read through the descriptor the apply holds"
