#!/usr/bin/env bash
# Logical partitions of an MBR extended partition are found wherever their
# boot records lie (here 450 MiB into the disk), mapped by fstab's device
# name, patched and verified with e2fsck clean.
source "$(dirname "$0")/lib.sh"

plan 2
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
