#!/usr/bin/env bash
# inspect: drive mapping, os-release and the dpkg database of a Debian
# minbase guest in every image format, checked against dpkg-query run on
# the tree the image was built from (plus the kernel package the fixture
# adds); host name, architecture, version and kernels against debugfs,
# file(1) and dpkg-query on the image's root filesystem.
source "$(dirname "$0")/lib.sh"

plan 6
fix=$(fixtures_linux)
mkdir -p "$tmp/admin"
linux_fixture_status "$tmp/admin/status"
dpkg-query --admindir="$tmp/admin" -W \
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

# The fields virt-inspector reports besides, and the kernels, against the
# root filesystem read by debugfs.
out=$tmp/inspect-raw.json
dbg() { debugfs_part "$fix/debian.raw" 1 "$1"; }
[ "$(json_get "$out" os hostname)" = "$(dbg 'cat /etc/hostname')" ] || fail "hostname"
dbg 'dump /usr/bin/bash '"$tmp/bash"
file -b "$tmp/bash" | grep -q 'ELF 64-bit LSB .*x86-64' || fail "file(1) on bash"
[ "$(json_get "$out" os arch)" = x86_64 ] || fail "arch"
dv=$(dbg 'cat /etc/debian_version')
[ "$(json_get "$out" os product_name)" = "$dv" ] || fail "product name"
[ "$(json_get "$out" os major_version).$(json_get "$out" os minor_version)" = "$dv" ] ||
    fail "major/minor version"
[ "$(json_get "$out" os package_format)/$(json_get "$out" os package_management)" = deb/apt ] ||
    fail "package format"
dbg 'cat /var/lib/dpkg/status' >"$tmp/admin/status"
dbg 'ls -p /boot' | awk -F/ '$6 ~ /^vmlinuz-/ { sub(/^vmlinuz-/, "", $6); print $6 }' | sort \
    >"$tmp/boot"
[ -s "$tmp/boot" ] || fail "debugfs lists no kernel"
python3 - "$out" "$tmp/boot" <<'PY' >"$tmp/kernels" || fail "kernels"
import json, sys
inv = json.load(open(sys.argv[1]))
boot = open(sys.argv[2]).read().split()
assert sorted(k["version"] for k in inv["kernels"]) == boot, inv["kernels"]
for k in inv["kernels"]:
    assert k["path"] == "/boot/vmlinuz-" + k["version"], k
    print(k.get("package", "-"), k.get("package_version", "-"))
PY
dpkg-query --admindir="$tmp/admin" -W -f '${Package} ${Version}\n' 'linux-image-[0-9]*' \
    >"$tmp/kernel-packages"
echo "- -" >>"$tmp/kernel-packages"
diff -u <(sort "$tmp/kernel-packages") <(sort "$tmp/kernels") || fail "kernel packages"
pass "inspect: host name, arch, version and kernels agree with debugfs, file(1) and dpkg-query"

# Read-only access leaves the image byte for byte unchanged.
cp "$fix/debian.qcow2" "$tmp/ro.qcow2"
sum=$(sha256sum <"$tmp/ro.qcow2")
"$VMAUGMENT_OFFLINE" inspect "$tmp/ro.qcow2" >/dev/null
[ "$(sha256sum <"$tmp/ro.qcow2")" = "$sum" ] || fail "inspect changed the image"
pass "inspect leaves the image untouched"
