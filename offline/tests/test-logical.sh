#!/usr/bin/env bash
# Logical partitions of an MBR extended partition are found wherever their
# boot records lie (here 450 MiB into the disk, and in a chain that runs
# backwards), mapped by fstab's device name, patched and verified with
# e2fsck clean.
source "$(dirname "$0")/lib.sh"

plan 3
need_image_formats >&2
fix=$(bash "$here/make-fixtures.sh" logical)

vo inspect "$fix/debian-logical.qcow2" >"$tmp/inspect.json" ||
    fail "inspect of a guest in logical partitions"
python3 - "$tmp/inspect.json" <<'PY' ||
import json, sys
d = json.load(open(sys.argv[1]))
parts = {p["number"]: p.get("filesystem") for p in d["partitions"]}
assert parts.get(5) == "ext4" and parts.get(6) == "ext4", parts
mounts = {m["mountpoint"]: m.get("partition") for m in d["mounts"]}
assert mounts == {"/": 5, "/srv": 6}, mounts
PY
    fail "logical partitions: $(cat "$tmp/inspect.json")"
pass "inspect: logical partitions 5 and 6, /srv mapped by /dev/sda6"

make_identity
mkdir -p "$tmp/payload"
echo "patched in a logical partition" >"$tmp/payload/page"
build_bundle "$tmp/b.vmab" '{"os": {"id": "debian"}}' '
    {"op": "add", "path": "/srv/www/logical.html", "payload": "page"}' ||
    fail "bundle-build"
cp "$fix/debian-logical.qcow2" "$tmp/a.qcow2"
vo apply "$tmp/a.qcow2" "$tmp/b.vmab" >"$tmp/apply.json" ||
    fail "apply: $(cat "$tmp/apply.json")"
vo verify "$tmp/a.qcow2" "$tmp/b.vmab" >/dev/null || fail "verify"
"$QEMU_IMG" convert -U -O raw "$tmp/a.qcow2" "$tmp/a.raw"
fsck_raw "$tmp/a.raw" 5 6
got=$(debugfs -R "cat /www/logical.html" "$tmp/a.raw?offset=$(part_offset "$tmp/a.raw" 6)" 2>/dev/null)
[ "$got" = "patched in a logical partition" ] || fail "not in partition 6: '$got'"
pass "apply and verify into partition 6; e2fsck -fn clean"

# The chain out of disk order, as Linux and libblkid follow it: the first
# record (at the extended partition's start) names the root, then links
# to the record of /srv placed just before /srv, which links back to a
# record in the gap after the root naming a third, small partition.
# sfdisk and libblkid (on the whole disk) read it as 5, 6, 7.
cp "$fix/debian-logical.raw" "$tmp/chain.raw"
python3 - "$tmp/chain.raw" <<'PY' || fail "cannot rewrite the chain"
import struct, sys
EXT = 2048
f = open(sys.argv[1], "r+b")

def ebr(at, start, size, link):
    """The boot record at sector AT: a partition START sectors after it,
    and a link to the record at sector LINK (0: none)."""
    rec = bytearray(512)
    rec[446:462] = struct.pack("<B3sB3sII", 0, b"\0\0\0", 0x83, b"\0\0\0",
                               start, size)
    if link:
        rec[462:478] = struct.pack("<B3sB3sII", 0, b"\0\0\0", 0x05,
                                   b"\0\0\0", link - EXT, 1000)
    rec[510:512] = b"\x55\xaa"
    f.seek(at * 512)
    f.write(rec)

# Whatever records sfdisk wrote after the first are cleared.
f.seek(EXT * 512)
first = f.read(512)
nxt = struct.unpack("<I", first[462 + 8:462 + 12])[0]
if nxt:
    f.seek((EXT + nxt) * 512)
    f.write(bytes(512))
ebr(EXT, 4096 - EXT, 921600, 929000)        # 5: the root, then /srv's
ebr(929000, 929792 - 929000, 131072, 925800)  # 6: /srv, then back
ebr(925800, 100, 2000, 0)                     # 7: in the gap, last
PY
sfdisk --json "$tmp/chain.raw" | python3 -c '
import json, sys
parts = json.load(sys.stdin)["partitiontable"]["partitions"]
assert [p["start"] for p in parts] == [2048, 4096, 929792, 925900], parts
' || fail "sfdisk does not read the crafted chain: $(sfdisk -d "$tmp/chain.raw")"
vo inspect "$tmp/chain.raw" >"$tmp/chain.json" ||
    fail "inspect of a backwards chain"
python3 - "$tmp/chain.json" <<'PY' ||
import json, sys
d = json.load(open(sys.argv[1]))
parts = {p["number"]: (p["offset"] // 512, p.get("filesystem"))
         for p in d["partitions"]}
assert parts.get(5) == (4096, "ext4") and parts.get(6) == (929792, "ext4") \
    and parts.get(7, (0,))[0] == 925900, parts
mounts = {m["mountpoint"]: m.get("partition") for m in d["mounts"]}
assert mounts == {"/": 5, "/srv": 6}, mounts
PY
    fail "backwards chain: $(cat "$tmp/chain.json")"
pass "inspect: a chain of boot records out of disk order (5, 6, then 7 before 6)"
