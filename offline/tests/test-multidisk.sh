#!/usr/bin/env bash
# A guest of two disks (root on the first, /var with the dpkg database on
# the second, by UUID in fstab): inspected, patched on both disks as one
# apply and verified, from the command line (--disk) and from an OVF; a
# kill -9 inside the commit of both disks leaves both old or both new
# after recover; a missing second disk and a second disk in use change
# nothing; fstab's other ways to name the second disk (LABEL=, PARTUUID=,
# /dev/vdb1, /dev/nvme1n1p1) map it too; disks of different formats are
# named with --disk-format.  Results are checked with
# e2fsck -fn, debugfs and qemu-img compare, nothing of ours.
source "$(dirname "$0")/lib.sh"

plan 12
need_image_formats >&2
fix=$(bash "$here/make-fixtures.sh" multidisk)
make_identity
multidisk_bundle "$tmp/b.vmab"

# fresh DIR: copies of both disks in DIR (d1.qcow2, d2.qcow2).
fresh() {
    mkdir -p "$1"
    cp "$fix/debian-disk1.qcow2" "$1/d1.qcow2"
    cp "$fix/debian-disk2.qcow2" "$1/d2.qcow2"
}

# check_patched D1 D2: e2fsck -fn clean on both disks, the new motd on the
# first and the new state file on the second (debugfs).
check_patched() {
    local raw1=$tmp/check1.raw raw2=$tmp/check2.raw
    "$QEMU_IMG" convert -U -O raw "$1" "$raw1"
    "$QEMU_IMG" convert -U -O raw "$2" "$raw2"
    fsck_raw "$raw1" 1
    fsck_raw "$raw2" 1
    [ "$(debugfs_part "$raw1" 1 cat /etc/motd)" = "patched motd" ] ||
        fail "$1: motd not replaced"
    [ "$(debugfs_part "$raw2" 1 cat /lib/multidisk/state)" = \
        "state on the second disk" ] || fail "$2: state not added"
    debugfs_error "$raw1" 1 "/var/lib/multidisk: File not found by ext2_lookup" \
        stat /var/lib/multidisk
    rm -f "$raw1" "$raw2"
}

# check_untouched D1 D2: both disks hold exactly the fixture's content.
check_untouched() {
    check_same_content "$1" "$fix/debian-disk1.qcow2"
    check_same_content "$2" "$fix/debian-disk2.qcow2"
}

# 1. inspect: both disks, the mount map across them, and the packages of
# the dpkg database on the second disk.
mkdir -p "$tmp/admin"
cat "$(bash "$here/make-fixtures.sh" minbase)/var/lib/dpkg/status" \
    >"$tmp/admin/status"
dpkg-query --admindir="$tmp/admin" -W \
    -f '${Package} ${Version} ${Architecture} ${Status}\n' | sort >"$tmp/expected"
vo inspect "$fix/debian-disk1.qcow2" --disk "$fix/debian-disk2.qcow2" \
    >"$tmp/inspect.json" || fail "inspect of two disks"
python3 - "$tmp/inspect.json" "$fix" <<'PY' || fail "inspect: $(cat "$tmp/inspect.json")"
import json, sys
d = json.load(open(sys.argv[1]))
disks = [(x["disk"], x["image"], x["format"]) for x in d["disks"]]
assert disks == [(1, sys.argv[2] + "/debian-disk1.qcow2", "qcow2"),
                 (2, sys.argv[2] + "/debian-disk2.qcow2", "qcow2")], disks
mounts = {m["mountpoint"]: (m["disk"], m["partition"], m.get("filesystem"))
          for m in d["mounts"]}
assert mounts == {"/": (1, 1, "ext4"), "/var": (2, 1, "ext4")}, mounts
parts = {(p["disk"], p["number"]): p["uuid"] for p in d["partitions"]}
assert parts == {(1, 1): "7d3c9c4e-5b0e-4f41-9a53-6f5fd1a0c011",
                 (2, 1): "7d3c9c4e-5b0e-4f41-9a53-6f5fd1a0c012"}, parts
assert d["os"]["id"] == "debian"
PY
python3 -c '
import json, sys
for p in json.load(open(sys.argv[1]))["packages"]:
    print(p["name"], p["version"], p["architecture"], p["status"])' \
    "$tmp/inspect.json" | sort >"$tmp/got"
diff -u "$tmp/expected" "$tmp/got" || fail "packages differ from dpkg-query's"
pass "inspect: / on disk 1, /var on disk 2 by UUID, $(wc -l <"$tmp/got") packages from disk 2"

# 2. check, apply and verify across both disks; e2fsck -fn on each.
fresh "$tmp/a"
vo check "$tmp/a/d1.qcow2" --disk "$tmp/a/d2.qcow2" "$tmp/b.vmab" \
    >"$tmp/check.json" || fail "check: $(cat "$tmp/check.json")"
[ "$(json_get "$tmp/check.json" status)" = applicable ] || fail "check status"
check_untouched "$tmp/a/d1.qcow2" "$tmp/a/d2.qcow2"
vo apply "$tmp/a/d1.qcow2" --disk "$tmp/a/d2.qcow2" "$tmp/b.vmab" \
    >"$tmp/apply.json" || fail "apply: $(cat "$tmp/apply.json")"
[ "$(json_get "$tmp/apply.json" status)" = applied ] || fail "apply status"
[ "$(json_get "$tmp/apply.json" disks 1)" = "$tmp/a/d2.qcow2" ] ||
    fail "apply report: $(cat "$tmp/apply.json")"
no_sidecars "$tmp/a/d1.qcow2"
no_sidecars "$tmp/a/d2.qcow2"
vo verify "$tmp/a/d1.qcow2" --disk "$tmp/a/d2.qcow2" "$tmp/b.vmab" \
    >"$tmp/verify.json" || fail "verify: $(cat "$tmp/verify.json")"
[ "$(json_get "$tmp/verify.json" status)" = verified ] || fail "verify status"
check_patched "$tmp/a/d1.qcow2" "$tmp/a/d2.qcow2"
vo apply "$tmp/a/d1.qcow2" --disk "$tmp/a/d2.qcow2" "$tmp/b.vmab" \
    >"$tmp/again.json" || fail "second apply"
[ "$(json_get "$tmp/again.json" status)" = already-applied ] ||
    fail "second apply: $(cat "$tmp/again.json")"
pass "check, apply, verify on both disks; e2fsck -fn clean on each; rerun already-applied"

# 3. An OVF of two disks: all of them, in the order of its References.
fresh "$tmp/o"
write_ovf "$tmp/o/appliance.ovf" d1.qcow2 d2.qcow2
vo inspect "$tmp/o/appliance.ovf" >"$tmp/ovf.json" || fail "OVF inspect"
[ "$(json_get "$tmp/ovf.json" mounts 1 disk)" = 2 ] ||
    fail "OVF inspect: $(cat "$tmp/ovf.json")"
vo apply "$tmp/o/appliance.ovf" "$tmp/b.vmab" >"$tmp/ovf-apply.json" ||
    fail "OVF apply: $(cat "$tmp/ovf-apply.json")"
vo verify "$tmp/o/appliance.ovf" "$tmp/b.vmab" >/dev/null || fail "OVF verify"
check_patched "$tmp/o/d1.qcow2" "$tmp/o/d2.qcow2"
expect_refusal --status 2 "an OVF names its disks itself" \
    --trust-dir "$tmp/trust" inspect "$tmp/o/appliance.ovf" --disk "$tmp/o/d2.qcow2"
expect_refusal --status 2 "--disk names a disk image, not an OVF" \
    inspect "$tmp/o/d1.qcow2" --disk "$tmp/o/appliance.ovf"
pass "OVF of two disks: inspect, apply, verify; e2fsck -fn clean"

# 4. Without its second disk the guest is refused, naming the fstab entry
# that matches none of the disks given; nothing is written.
fresh "$tmp/m"
expect_refusal "/var cannot be serviced: the guest's /etc/fstab mounts it from UUID=7d3c9c4e-5b0e-4f41-9a53-6f5fd1a0c012, which is on none of the 1 disk given" \
    inspect "$tmp/m/d1.qcow2"
expect_refusal "UUID=7d3c9c4e-5b0e-4f41-9a53-6f5fd1a0c012, which is on none of the 1 disk given" \
    --trust-dir "$tmp/trust" apply "$tmp/m/d1.qcow2" "$tmp/b.vmab"
check_same_content "$tmp/m/d1.qcow2" "$fix/debian-disk1.qcow2"
no_sidecars "$tmp/m/d1.qcow2"
pass "a missing second disk: refused naming its fstab entry, nothing written"

# 5. Every disk is locked: a second disk held by a running QEMU, or named
# twice, refuses the apply before anything is written.
fresh "$tmp/l"
hold_image_lock "$tmp/l/d2.qcow2" qcow2
expect_refusal "in use by a running QEMU" --trust-dir "$tmp/trust" \
    apply "$tmp/l/d1.qcow2" --disk "$tmp/l/d2.qcow2" "$tmp/b.vmab"
expect_refusal "named twice" --trust-dir "$tmp/trust" \
    apply "$tmp/l/d1.qcow2" --disk "$tmp/l/d1.qcow2" "$tmp/b.vmab"
kill "${bg_pids[@]}"
wait "${bg_pids[@]}" 2>/dev/null || true
bg_pids=()
check_untouched "$tmp/l/d1.qcow2" "$tmp/l/d2.qcow2"
no_sidecars "$tmp/l/d1.qcow2"
no_sidecars "$tmp/l/d2.qcow2"
pass "a second disk in use, or named twice: refused, nothing written"

# kill_apply STAGE DELAY DIR: the apply to DIR's disks, killed DELAY ms
# after STAGE ("committed": the first disk's commit is done), before it
# could end.
kill_apply() {
    python3 "$here/kill-at-stage.py" "$1" "$2" "$VMAUGMENT_OFFLINE" \
        --trust-dir "$tmp/trust" apply "$3/d1.qcow2" --disk "$3/d2.qcow2" \
        "$tmp/b.vmab" >"$tmp/kill.out" ||
        fail "apply to be killed in $1: $(cat "$tmp/kill.out")"
    [ "$(head -1 "$tmp/kill.out")" = killed ] ||
        fail "the apply ended before the kill: $(cat "$tmp/kill.out")"
}

# recovers WANT ARGS...: recover ARGS says it did WANT.
recovers() {
    local want=$1
    shift
    vo recover "$@" >"$tmp/recover.json" || fail "recover $*"
    [ "$(json_get "$tmp/recover.json" recovery)" = "$want" ] ||
        fail "recover $*: $(cat "$tmp/recover.json")"
}

# 6. Killed between the two disks' commits: the first disk is new, the
# second old.  recover, started from the second disk, finishes both.
fresh "$tmp/k1"
kill_apply committed 0 "$tmp/k1"
[ -e "$tmp/k1/.d1.qcow2.vmaugment-journal" ] ||
    fail "killed after the first commit, yet no journal"
recovers rolled-forward "$tmp/k1/d2.qcow2"
no_sidecars "$tmp/k1/d1.qcow2"
no_sidecars "$tmp/k1/d2.qcow2"
check_patched "$tmp/k1/d1.qcow2" "$tmp/k1/d2.qcow2"
pass "kill between the disks' commits: recover from disk 2 rolls both forward, e2fsck -fn clean"

# 7. Killed as the commit begins: both new; before the journal: both old,
# each disk rolled back by itself (nothing was committed).
fresh "$tmp/k2"
kill_apply committing 0 "$tmp/k2"
recovers rolled-forward "$tmp/k2/d1.qcow2" --disk "$tmp/k2/d2.qcow2"
check_patched "$tmp/k2/d1.qcow2" "$tmp/k2/d2.qcow2"
fresh "$tmp/k3"
kill_apply verifying-the-overlay 0 "$tmp/k3"
recovers rolled-back "$tmp/k3/d2.qcow2"
recovers rolled-back "$tmp/k3/d1.qcow2"
no_sidecars "$tmp/k3/d1.qcow2"
no_sidecars "$tmp/k3/d2.qcow2"
check_untouched "$tmp/k3/d1.qcow2" "$tmp/k3/d2.qcow2"
pass "kill as the commit begins: both disks new; while verifying: both old"

# 8. The next apply after a kill between the commits finishes the group
# first (recovery from the first disk), then finds nothing to do.
fresh "$tmp/k4"
kill_apply committed 0 "$tmp/k4"
vo apply "$tmp/k4/d1.qcow2" --disk "$tmp/k4/d2.qcow2" "$tmp/b.vmab" \
    >"$tmp/apply.json" || fail "apply after a kill: $(cat "$tmp/apply.json")"
[ "$(json_get "$tmp/apply.json" recovery)" = rolled-forward ] &&
    [ "$(json_get "$tmp/apply.json" status)" = already-applied ] ||
    fail "apply after a kill: $(cat "$tmp/apply.json")"
check_patched "$tmp/k4/d1.qcow2" "$tmp/k4/d2.qcow2"
pass "apply after a kill between the commits: rolled forward, then already-applied"

# 9. The second disk named by fstab as LABEL=, PARTUUID= and device names
# with its disk letter or number; a device of a third disk matches none.
"$QEMU_IMG" convert -U -O raw "$fix/debian-disk1.qcow2" "$tmp/f1.raw"
var_partuuid=$(sfdisk --part-uuid "$fix/debian-disk2.raw" 1)
for source in LABEL=var "PARTUUID=$var_partuuid" /dev/vdb1 /dev/sdb1 \
    /dev/nvme1n1p1 /dev/sdc1; do
    printf 'LABEL=root / ext4 defaults 0 1\n%s /var ext4 defaults 0 2\n' \
        "$source" >"$tmp/fstab"
    debugfs -w -R "rm /etc/fstab" "$tmp/f1.raw?offset=1048576" 2>/dev/null
    debugfs -w -R "write $tmp/fstab /etc/fstab" \
        "$tmp/f1.raw?offset=1048576" >/dev/null 2>&1
    [ "$(debugfs_part "$tmp/f1.raw" 1 cat /etc/fstab)" = "$(cat "$tmp/fstab")" ] ||
        fail "cannot write the fstab naming $source"
    if [ "$source" = /dev/sdc1 ]; then
        expect_refusal "mounts it from /dev/sdc1, which is on none of the 2 disks given" \
            inspect "$tmp/f1.raw" --disk "$fix/debian-disk2.qcow2"
        continue
    fi
    vo inspect "$tmp/f1.raw" --disk "$fix/debian-disk2.qcow2" \
        >"$tmp/named.json" || fail "inspect with /var from $source"
    [ "$(json_get "$tmp/named.json" mounts 1 mountpoint)" = /var ] &&
        [ "$(json_get "$tmp/named.json" mounts 1 disk)" = 2 ] &&
        [ "$(json_get "$tmp/named.json" mounts 1 partition)" = 1 ] ||
        fail "/var from $source: $(json_get "$tmp/named.json" mounts)"
done
pass "/var named as LABEL=, PARTUUID=, /dev/vdb1, /dev/sdb1, /dev/nvme1n1p1: disk 2; /dev/sdc1: refused"

# 10. Disks of different formats: --disk-format gives each --disk its own,
# paired by position; a wrong format or a count that pairs nothing surely
# is refused before anything is written.
fresh "$tmp/df"
cp --sparse=always "$fix/debian-disk2.raw" "$tmp/df/d2.raw"
expect_refusal --status 2 "--disk-format: one per --disk, in order" \
    --trust-dir "$tmp/trust" apply "$tmp/df/d1.qcow2" --disk "$tmp/df/d2.raw" \
    --disk-format raw --disk-format raw "$tmp/b.vmab"
expect_refusal "d2.raw is not a usable disk image: .*not in qcow2 format" \
    --trust-dir "$tmp/trust" --format qcow2 \
    apply "$tmp/df/d1.qcow2" --disk "$tmp/df/d2.raw" --disk-format qcow2 \
    "$tmp/b.vmab"
check_same_content "$tmp/df/d1.qcow2" "$fix/debian-disk1.qcow2"
cmp -s "$tmp/df/d2.raw" "$fix/debian-disk2.raw" || fail "refused d2.raw changed"
no_sidecars "$tmp/df/d1.qcow2"
no_sidecars "$tmp/df/d2.raw"
vo --format qcow2 apply "$tmp/df/d1.qcow2" --disk "$tmp/df/d2.raw" \
    --disk-format raw "$tmp/b.vmab" >"$tmp/df.json" ||
    fail "apply with --disk-format: $(cat "$tmp/df.json")"
check_patched "$tmp/df/d1.qcow2" "$tmp/df/d2.raw"
pass "--disk-format: a qcow2 root and a raw /var patched together;" \
    "a wrong format or count refused, nothing written"

# 11. A mount point is its filesystem's root, whichever way the path gets
# there: a package whose directory /data is, in this guest, a link to /var
# (the second disk's root) unpacks below it onto the second disk, the link
# kept as dpkg keeps one; and what would change the mount point itself is
# refused naming it, nothing written.
need dpkg-deb dpkg
fresh "$tmp/ln"
"$QEMU_IMG" convert -O raw "$tmp/ln/d1.qcow2" "$tmp/ln/d1.raw"
rm "$tmp/ln/d1.qcow2"
debugfs -w -R "symlink /data /var" \
    "$tmp/ln/d1.raw?offset=$(part_offset "$tmp/ln/d1.raw" 1)" \
    >/dev/null 2>"$tmp/debugfs.err" &&
    ! grep -qv '^debugfs [0-9.]* (' "$tmp/debugfs.err" ||
    fail "debugfs symlink: $(cat "$tmp/debugfs.err")"
pkg=$tmp/vmaug-link
mkdir -p "$pkg/DEBIAN" "$pkg/data/vmaug-link"
echo "on the second disk" >"$pkg/data/vmaug-link/hello.txt"
cat >"$pkg/DEBIAN/control" <<'CTL'
Package: vmaug-link
Version: 1.0
Architecture: all
Maintainer: vmaugment tests <tests@example.org>
Description: a package whose directory is a link to a mount point
CTL
dpkg-deb --root-owner-group -b "$pkg" "$tmp/payload/vmaug-link_1.0_all.deb" \
    >/dev/null || fail "dpkg-deb"
cat >"$tmp/link-manifest.json" <<'JSON'
{
  "format": 1, "id": "link-pkg", "version": "1", "applies": [],
  "files": [],
  "packages": [ {"op": "unpack", "payload": "vmaug-link_1.0_all.deb",
                 "package": "vmaug-link", "architecture": "all",
                 "version": "1.0", "old_version": null} ]
}
JSON
"$VMAUGMENT_OFFLINE" bundle-build --key "$tmp/admin.key" \
    --cert "$tmp/trust/admin.pem" --payload-dir "$tmp/payload" \
    --output "$tmp/link.vmab" "$tmp/link-manifest.json" ||
    fail "bundle-build of the package"
vo --format raw apply "$tmp/ln/d1.raw" --disk "$tmp/ln/d2.qcow2" \
    --disk-format qcow2 "$tmp/link.vmab" >"$tmp/link.json" ||
    fail "apply through a link to a mount point: $(cat "$tmp/link.json")"
"$QEMU_IMG" convert -U -O raw "$tmp/ln/d2.qcow2" "$tmp/ln/d2.raw"
fsck_raw "$tmp/ln/d1.raw" 1
fsck_raw "$tmp/ln/d2.raw" 1
[ "$(debugfs_part "$tmp/ln/d2.raw" 1 cat /vmaug-link/hello.txt)" = \
    "on the second disk" ] || fail "hello.txt is not on the second disk"
debugfs_part "$tmp/ln/d1.raw" 1 stat /data | grep -q "Type: symlink" ||
    fail "/data is no longer a link"
grep -qx /data/vmaug-link/hello.txt \
    <(debugfs_part "$tmp/ln/d2.raw" 1 cat /lib/dpkg/info/vmaug-link.list) ||
    fail "dpkg's list of vmaug-link"
# The mount point itself: only mkdir names it (mkdir -p through it too).
echo "x" >"$tmp/payload/x"
cp "$tmp/ln/d2.raw" "$tmp/ln/d2-before.raw"
cp "$tmp/ln/d1.raw" "$tmp/ln/d1-before.raw"
for op in '{"op": "chmod", "path": "/var", "mode": "0700"}' \
          '{"op": "chown", "path": "/var", "uid": 1, "gid": 1}' \
          '{"op": "delete", "path": "/var"}' \
          '{"op": "add", "path": "/var", "payload": "x"}' \
          '{"op": "replace", "path": "/var", "payload": "x", "old_sha256": "'"$(sha256sum <"$tmp/payload/x" | cut -d' ' -f1)"'"}'; do
    build_unchecked_bundle "$tmp/mp.vmab" "" "$op" || fail "bundle: $op"
    expect_refusal "/var is a mount point \(the root of the ext4 filesystem mounted there\); refusing to remove, replace or change it" \
        --trust-dir "$tmp/trust" --format raw apply "$tmp/ln/d1.raw" \
        --disk "$tmp/ln/d2.raw" --disk-format raw "$tmp/mp.vmab"
done
build_bundle "$tmp/deep.vmab" "" \
    '{"op": "mkdir", "path": "/var/deep/er"}' || fail "bundle: mkdir"
vo --format raw apply --dry-run "$tmp/ln/d1.raw" --disk "$tmp/ln/d2.raw" \
    --disk-format raw "$tmp/deep.vmab" >"$tmp/deep.json" || fail "mkdir -p: $(cat "$tmp/deep.json")"
python3 - "$tmp/deep.json" <<'PY' || fail "mkdir -p plan: $(cat "$tmp/deep.json")"
import json, sys
d = json.load(open(sys.argv[1]))
got = [(p["path"], p["action"]) for p in d["plan"]]
assert got == [("/var", "unchanged"), ("/var/deep", "mkdir"),
               ("/var/deep/er", "mkdir")], got
PY
cmp -s "$tmp/ln/d1.raw" "$tmp/ln/d1-before.raw" || fail "a refusal changed d1"
cmp -s "$tmp/ln/d2.raw" "$tmp/ln/d2-before.raw" || fail "a refusal changed d2"
no_sidecars "$tmp/ln/d1.raw"
pass "a link to a mount point reaches its filesystem's root (a package" \
    "unpacked onto disk 2 through /data -> /var); chmod, chown, delete, add," \
    "replace of the mount point refused, mkdir -p through it planned"

# More disks than one worker reads (as a hostile OVF may list) are
# refused before anything is counted out per disk: also where LUKS keys
# have every disk probed first.
fresh "$tmp/many"
many=()
for _ in $(seq 64); do
    many+=(--disk "$tmp/many/d2.qcow2")
done
echo "not a key" >"$tmp/many/key"
for keys in "" "--luks-key all:file:$tmp/many/key"; do
    # shellcheck disable=SC2086
    expect_refusal 'a guest of 65 disks; at most 8 are read together' \
        $keys inspect "$tmp/many/d1.qcow2" "${many[@]}"
done
pass "a guest of 65 disks is refused, with LUKS keys too"
