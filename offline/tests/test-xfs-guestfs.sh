#!/usr/bin/env bash
# Slow: a guest whose root is XFS is refused naming the two routes, then
# patched through --backend=libguestfs (the appliance reads and writes the
# filesystem) and checked independently: guestfish reads the files back,
# xfs_repair -n finds the filesystem clean.  Two appliance launches.
source "$(dirname "$0")/lib.sh"

plan 3
need guestfish libguestfs-tools
need mkfs.xfs xfsprogs
need xfs_repair xfsprogs
export LIBGUESTFS_BACKEND=${LIBGUESTFS_BACKEND:-direct}
# No usable KVM on these hosts: libguestfs' appliance runs under TCG.
export LIBGUESTFS_BACKEND_SETTINGS=${LIBGUESTFS_BACKEND_SETTINGS:-force_tcg}

# The guest: a few Debian files in an XFS partition that mkfs.xfs itself
# populates from a prototype file (no appliance, no mount).
uuid=4f1c2a54-6d0b-4c55-9a51-0d3c2b8e7f10
src=$tmp/src
mkdir -p "$src"
printf 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n' \
    >"$src/os-release"
echo "UUID=$uuid / xfs defaults 0 1" >"$src/fstab"
echo "old motd" >"$src/motd"
echo "Debian GNU/Linux 12" >"$src/issue.net"
echo xfsguest >"$src/hostname"
echo 12.8 >"$src/debian_version"
{
    printf '/dev/null\n0 0\nd--755 0 0\netc d--755 0 0\n'
    for f in os-release fstab motd issue.net hostname debian_version; do
        printf '%s ---644 0 0 %s\n' "$f" "$src/$f"
    done
    printf '$\nusr d--755 0 0\nbin d--755 0 0\n$\nlocal d--755 0 0\n'
    printf 'bin d--755 0 0\n$\n$\n$\nbin l--777 0 0 usr/bin\n'
    printf 'srv d--755 0 0\n$\n$\n'
} >"$tmp/proto"
truncate -s 300M "$tmp/root.xfs"
mkfs.xfs -q -f -m uuid="$uuid" -p "$tmp/proto" "$tmp/root.xfs" ||
    fail "mkfs.xfs"
truncate -s 400M "$tmp/xfs.raw"
printf 'label: gpt\nstart=2048, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n' |
    sfdisk --quiet "$tmp/xfs.raw"
dd if="$tmp/root.xfs" of="$tmp/xfs.raw" bs=1M seek=1 conv=sparse,notrunc \
    status=none
rm -f "$tmp/root.xfs"
img=$tmp/xfs.qcow2
"$QEMU_IMG" convert -O qcow2 "$tmp/xfs.raw" "$img"
rm -f "$tmp/xfs.raw"

make_identity
make_payloads
motd_sha=$(sha256sum <"$src/motd" | cut -d' ' -f1)
build_files_bundle "$tmp/xfs.vmab" "$motd_sha" || fail "bundle-build"

# No route chosen: refused before any appliance, image untouched.
sum=$(sha256sum <"$img")
expect_refusal "partition 1: XFS filesystem.*--backend=libguestfs .*--host-kernel" \
    --trust-dir "$tmp/trust" apply "$img" "$tmp/xfs.vmab"
[ "$(sha256sum <"$img")" = "$sum" ] || fail "the refusal changed the image"
no_sidecars "$img"
# The route carries out file instructions only: a registry instruction is
# refused before any appliance starts.
cat >"$tmp/reg.json" <<'JSON'
{"format": 1, "id": "reg", "version": "1", "files": [],
 "registry": [{"op": "set", "hive": "SOFTWARE", "key": "Vendor\\Demo",
               "name": "Version", "type": "sz", "value": "2.0"}]}
JSON
"$VMAUGMENT_OFFLINE" bundle-build --key "$tmp/admin.key" \
    --cert "$tmp/trust/admin.pem" --payload-dir "$tmp/payload" \
    --output "$tmp/reg.vmab" "$tmp/reg.json" || fail "bundle-build reg"
expect_refusal "bundle reg has registry or package instructions, which --backend=libguestfs does not carry out" \
    --trust-dir "$tmp/trust" apply --backend=libguestfs "$img" "$tmp/reg.vmab"
[ "$(sha256sum <"$img")" = "$sum" ] || fail "the refusal changed the image"
no_sidecars "$img"
pass "XFS refused without a route, naming --backend=libguestfs and --host-kernel; registry instructions refused on the route"

vo apply --backend=libguestfs "$img" "$tmp/xfs.vmab" >"$tmp/apply.json" ||
    fail "apply --backend=libguestfs: $(cat "$tmp/apply.json")"
python3 - "$tmp/apply.json" <<'PY' || fail "apply report: $(cat "$tmp/apply.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["status"] == "applied", d
assert d["backend"] == "libguestfs", d
assert all(r["holds"] for r in d["rules"]), d["rules"]
assert len(d["verify"]) == 8 and all(v["ok"] for v in d["verify"]), d["verify"]
PY
no_sidecars "$img"
pass "applied through libguestfs: rules held, every instruction verified"

# Independent checks: libguestfs reads back, xfs_repair -n on the partition.
eval "$(guestfish --listen)"
bg_pids+=("$GUESTFISH_PID")
gf() { guestfish --remote -- "$@"; }
gf add-drive "$img" readonly:true format:qcow2
gf run
gf mount-ro /dev/sda1 /
[ "$(gf cat /etc/motd)" = "patched motd" ] || fail "guestfs: motd"
[ "$(gf checksum sha256 /opt/demo/big.bin)" = \
  "$(sha256sum <"$tmp/payload/big.bin" | cut -d' ' -f1)" ] || fail "guestfs: big.bin"
gf stat /usr/local/bin/tool | grep -q "^mode: 33261$" || fail "guestfs: tool mode"
gf stat /srv/site.conf | grep -q "^uid: 33$" || fail "guestfs: owner"
gf stat /etc/hostname | grep -q "^mode: 33152$" || fail "guestfs: chmod"
[ "$(gf exists /etc/issue.net)" = false ] || fail "guestfs: delete"
gf umount-all
gf exit
"$QEMU_IMG" convert -O raw "$img" "$tmp/check.raw"
dd if="$tmp/check.raw" of="$tmp/check.xfs" bs=1M skip=1 count=300 \
    conv=sparse status=none
xfs_repair -n -f "$tmp/check.xfs" >"$tmp/repair.log" 2>&1 ||
    fail "xfs_repair -n: $(cat "$tmp/repair.log")"
pass "guestfish reads the patched files back; xfs_repair -n clean"
