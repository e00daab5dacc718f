#!/usr/bin/env bash
# inspect: drive mapping, os-release and the dpkg database of a Debian
# minbase guest in every image format, checked against dpkg-query run on
# the tree the image was built from.
source "$(dirname "$0")/lib.sh"

plan 5
fix=$(fixtures_linux)
tree=$(bash "$here/make-fixtures.sh" minbase)
dpkg-query --admindir="$tree/var/lib/dpkg" -W \
    -f '${Package} ${Version} ${Architecture} ${Status}\n' | sort >"$tmp/expected"

for fmt in qcow2 raw vmdk vhdx; do
    out=$tmp/inspect-$fmt.json
    "$VMAUGMENT_OFFLINE" inspect "$fix/debian.$fmt" >"$out"
    [ "$(json_get "$out" format)" = "$fmt" ] || fail "$fmt: format"
    [ "$(json_get "$out" partition_table)" = gpt ] || fail "$fmt: table"
    [ "$(json_get "$out" os id)" = debian ] || fail "$fmt: os id"
    [ "$(json_get "$out" os version_id)" = 12 ] || fail "$fmt: version_id"
    [ "$(json_get "$out" mounts 0 mountpoint)" = / ] || fail "$fmt: root"
    [ "$(json_get "$out" mounts 0 partition)" = 1 ] || fail "$fmt: root part"
    [ "$(json_get "$out" mounts 1 mountpoint)" = /srv ] || fail "$fmt: /srv"
    [ "$(json_get "$out" mounts 1 partition)" = 2 ] || fail "$fmt: /srv part"
    [ "$(json_get "$out" partitions 1 label)" = srvdata ] || fail "$fmt: label"
    python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
for p in d["packages"]:
    print(p["name"], p["version"], p["architecture"], p["status"])' "$out" |
        sort >"$tmp/got"
    diff -u "$tmp/expected" "$tmp/got" || fail "$fmt: package list differs"
    pass "inspect $fmt ($(wc -l <"$tmp/got") packages)"
done

# Read-only access leaves the image byte for byte unchanged.
cp "$fix/debian.qcow2" "$tmp/ro.qcow2"
sum=$(sha256sum <"$tmp/ro.qcow2")
"$VMAUGMENT_OFFLINE" inspect "$tmp/ro.qcow2" >/dev/null
[ "$(sha256sum <"$tmp/ro.qcow2")" = "$sum" ] || fail "inspect changed the image"
pass "inspect leaves the image untouched"
