#!/usr/bin/env bash
# Slow, root: the --host-kernel route.  XFS and btrfs guests are refused
# without a route, then patched with the host kernel mounting a copy of
# their partition, and checked independently (xfs_repair -n, btrfs check
# --readonly, the files read back from a mount of our own, verify); a
# link the guest planted towards a host directory leads nothing out; a
# kill -9 of vmaugment-offline while the filesystem is mounted leaves no
# mount, no loop device and no hung sync behind, and recover rolls back.
source "$(dirname "$0")/lib.sh"

plan 7
need mkfs.xfs xfsprogs
need xfs_repair xfsprogs
need mkfs.btrfs btrfs-progs
need mkfs.ext4 e2fsprogs
need btrfs btrfs-progs
need losetup util-linux
need unshare util-linux
need sfdisk fdisk
[ "$(id -u)" -eq 0 ] || fail "the --host-kernel route needs root"
[ -e /dev/loop-control ] || fail "the --host-kernel route needs loop devices"

# Loop devices are the host's: whatever happens, none of ours stays.
detach_ours() {
    local dev
    for dev in $(losetup -a 2>/dev/null | grep -F "$tmp/" | cut -d: -f1); do
        losetup -d "$dev" 2>/dev/null || true
    done
}
# The mounting child of a killed apply, should it outlive its parent.
child=
trap '[ -z "$child" ] || kill -KILL "$child" 2>/dev/null; detach_ours; cleanup' EXIT
# no_loops: none of ours is attached (the kernel detaches each as its
# mount goes; give it a moment).
no_loops() {
    for _ in $(seq 50); do
        losetup -a | grep -qF "$tmp/" || return 0
        sleep 0.1
    done
    fail "a loop device of ours is left: $(losetup -a | grep -F "$tmp/")"
}

# The host directory a guest's link points at: nothing may land in it.
outside=$tmp/outside
mkdir -p "$outside"

# guest_tree DIR FSTYPE UUID: a few Debian files, with /etc/x a link to
# the host's $outside.
guest_tree() {
    local d=$1
    mkdir -p "$d/etc" "$d/usr/bin" "$d/usr/local/bin" "$d/srv"
    printf 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n' \
        >"$d/etc/os-release"
    echo "UUID=$3 / $2 defaults 0 1" >"$d/etc/fstab"
    echo "old motd" >"$d/etc/motd"
    echo "Debian GNU/Linux 12" >"$d/etc/issue.net"
    echo guest >"$d/etc/hostname"
    echo 12.8 >"$d/etc/debian_version"
    ln -s usr/bin "$d/bin"
    ln -s "$outside" "$d/etc/x"
}

# in_gpt FS IMAGE [FS2]: FS as partition 1 (at 1 MiB) of a GPT disk, and
# FS2 (if given) as partition 2 right after it, in qcow2.
in_gpt() {
    local mib size2=0 linux=0FC63DAF-8483-4772-8E79-3D69D8477DE4
    mib=$(($(stat -c %s "$1") / 1048576))
    [ -z "${3:-}" ] || size2=$(($(stat -c %s "$3") / 1048576))
    truncate -s "$((mib + size2 + 2))M" "$tmp/disk.raw"
    {
        printf 'label: gpt\nstart=2048, size=%dMiB, type=%s\n' "$mib" "$linux"
        [ -z "${3:-}" ] || printf 'type=%s\n' "$linux"
    } | sfdisk --quiet "$tmp/disk.raw"
    dd if="$1" of="$tmp/disk.raw" bs=1M seek=1 conv=sparse,notrunc \
        status=none
    if [ -n "${3:-}" ]; then
        dd if="$3" of="$tmp/disk.raw" bs=1M seek=$((mib + 1)) \
            conv=sparse,notrunc status=none
        rm -f "$3"
    fi
    "$QEMU_IMG" convert -O qcow2 "$tmp/disk.raw" "$2"
    rm -f "$tmp/disk.raw" "$1"
}

# partition_out IMAGE FILE: partition 1 (300 MiB) of IMAGE, copied out.
partition_out() {
    "$QEMU_IMG" convert -O raw "$1" "$tmp/whole.raw"
    dd if="$tmp/whole.raw" of="$2" bs=1M skip=1 count=300 conv=sparse \
        status=none
    rm -f "$tmp/whole.raw"
}

# read_back FILE FSTYPE: the patched files as the host kernel reads them,
# from a read-only mount in a namespace of its own (gone when it ends;
# the loop device -o loop made is detached with it).
read_back() {
    local opts=ro,loop
    [ "$2" = xfs ] && opts=$opts,nouuid
    mkdir -p "$tmp/mnt"
    unshare -m --propagation private sh -c '
        mount -t "$2" -o "$3" "$1" "$4" || exit 1
        cat "$4/etc/motd"
        sha256sum <"$4/opt/demo/big.bin" | cut -d" " -f1
        stat -c "%a %u %g" "$4/usr/local/bin/tool" "$4/srv/site.conf" \
            "$4/etc/hostname"
        [ -e "$4/etc/issue.net" ] && echo "issue.net present"
        umount "$4"' _ "$1" "$2" "$opts" "$tmp/mnt" >"$tmp/read-back.txt" ||
        fail "cannot mount the patched $2 copy read-only"
    cat >"$tmp/read-back.want" <<EOF
patched motd
$(sha256sum <"$tmp/payload/big.bin" | cut -d' ' -f1)
755 0 0
644 33 33
600 0 0
EOF
    diff -u "$tmp/read-back.want" "$tmp/read-back.txt" >&2 ||
        fail "$2: the files read back are not the bundle's"
}

check_apply_report() {
    python3 - "$1" <<'PY' || fail "apply report: $(cat "$1")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["status"] == "applied", d
assert d["backend"] == "host-kernel", d
assert d["filesystem"]["where"] == "partition 1", d
assert all(r["holds"] for r in d["rules"]), d["rules"]
assert len(d["verify"]) >= 7 and all(v["ok"] for v in d["verify"]), d["verify"]
PY
}

make_identity
make_payloads
motd_sha=$(sha256sum <<<"old motd" | cut -d' ' -f1)
build_files_bundle "$tmp/fix.vmab" "$motd_sha" || fail "bundle-build"
MANIFEST_ID=escape build_bundle "$tmp/escape.vmab" \
    '{"os": {"id": "debian"}}' '
    {"op": "add", "path": "/etc/x/planted", "payload": "tool"}' ||
    fail "bundle-build escape"
MANIFEST_ID=boot build_bundle "$tmp/boot.vmab" \
    '{"os": {"id": "debian"}}' '
    {"op": "add", "path": "/boot/planted", "payload": "tool"}' ||
    fail "bundle-build boot"

xfs_uuid=4f1c2a54-6d0b-4c55-9a51-0d3c2b8e7f11
guest_tree "$tmp/xfs-tree" xfs "$xfs_uuid"
# Its /boot is an ext4 partition of its own, which the route does not
# mount.
boot_uuid=6b3e4c76-8f2d-4e77-9c73-2f5e4dab9132
echo "UUID=$boot_uuid /boot ext4 defaults 0 2" >>"$tmp/xfs-tree/etc/fstab"
mkdir "$tmp/xfs-tree/boot"
truncate -s 16M "$tmp/boot.ext4"
mkfs.ext4 -q -F -U "$boot_uuid" "$tmp/boot.ext4" || fail "mkfs.ext4"
truncate -s 300M "$tmp/root.xfs"
mkfs.xfs -q -f -m uuid="$xfs_uuid" "$tmp/root.xfs" || fail "mkfs.xfs"
# mkfs.xfs -p cannot make the link to an absolute host path the test
# needs: the tree goes in through a mount of our own.
mkdir -p "$tmp/mnt"
unshare -m --propagation private sh -c '
    mount -o loop,nouuid "$1" "$2" && cp -a "$3/." "$2/" && umount "$2"' \
    _ "$tmp/root.xfs" "$tmp/mnt" "$tmp/xfs-tree" || fail "populate the XFS"
xfs=$tmp/xfs.qcow2
in_gpt "$tmp/root.xfs" "$xfs" "$tmp/boot.ext4"
cp "$xfs" "$tmp/xfs-pristine.qcow2"

btrfs_uuid=5a2d3b65-7e1c-4d66-8b62-1e4d3c9f8021
guest_tree "$tmp/btrfs-tree" btrfs "$btrfs_uuid"
truncate -s 300M "$tmp/root.btrfs"
mkfs.btrfs -q -f -U "$btrfs_uuid" --rootdir "$tmp/btrfs-tree" \
    "$tmp/root.btrfs" >/dev/null || fail "mkfs.btrfs"
btrfs=$tmp/btrfs.qcow2
in_gpt "$tmp/root.btrfs" "$btrfs"

# 1. No route chosen: refused naming both, the image untouched.
sum=$(sha256sum <"$xfs")
expect_refusal "partition 1: XFS filesystem.*--backend=libguestfs .*--host-kernel" \
    --trust-dir "$tmp/trust" apply "$xfs" "$tmp/fix.vmab"
expect_refusal "partition 1: btrfs filesystem.*--backend=libguestfs .*--host-kernel" \
    --trust-dir "$tmp/trust" check "$btrfs" "$tmp/fix.vmab"
expect_refusal --status 2 "two routes" \
    --trust-dir "$tmp/trust" apply --host-kernel --backend=libguestfs \
    "$xfs" "$tmp/fix.vmab"
expect_refusal --status 2 "inspect does not take --host-kernel" \
    --trust-dir "$tmp/trust" inspect --host-kernel "$xfs"
[ "$(sha256sum <"$xfs")" = "$sum" ] || fail "a refusal changed the image"
no_sidecars "$xfs"
pass "XFS and btrfs refused without a route, naming --backend=libguestfs and --host-kernel"

# 2. XFS: check, apply, verify; then checked without us.
vo check --host-kernel "$xfs" "$tmp/fix.vmab" >"$tmp/check.json" ||
    fail "check --host-kernel: $(cat "$tmp/check.json")"
[ "$(json_get "$tmp/check.json" status)" = applicable ] ||
    fail "check: $(cat "$tmp/check.json")"
[ "$(sha256sum <"$xfs")" = "$sum" ] || fail "check changed the image"
no_sidecars "$xfs"
vo apply --host-kernel "$xfs" "$tmp/fix.vmab" >"$tmp/apply.json" ||
    fail "apply --host-kernel: $(cat "$tmp/apply.json")"
check_apply_report "$tmp/apply.json"
no_sidecars "$xfs"
vo verify --host-kernel "$xfs" "$tmp/fix.vmab" >"$tmp/verify.json" ||
    fail "verify --host-kernel: $(cat "$tmp/verify.json")"
[ "$(json_get "$tmp/verify.json" verified)" = True ] ||
    fail "verify: $(cat "$tmp/verify.json")"
vo check --host-kernel "$xfs" "$tmp/fix.vmab" >"$tmp/check.json" ||
    fail "check after apply: $(cat "$tmp/check.json")"
[ "$(json_get "$tmp/check.json" status)" = already-applied ] ||
    fail "check after apply: $(cat "$tmp/check.json")"
partition_out "$xfs" "$tmp/check.xfs"
xfs_repair -n -f "$tmp/check.xfs" >"$tmp/repair.log" 2>&1 ||
    fail "xfs_repair -n: $(cat "$tmp/repair.log")"
read_back "$tmp/check.xfs" xfs
no_sidecars "$xfs"
no_loops
pass "XFS patched through the host kernel: verified, xfs_repair -n clean, files read back"

# 3. btrfs: the same.
vo apply --host-kernel "$btrfs" "$tmp/fix.vmab" >"$tmp/apply.json" ||
    fail "apply --host-kernel (btrfs): $(cat "$tmp/apply.json")"
check_apply_report "$tmp/apply.json"
vo verify --host-kernel "$btrfs" "$tmp/fix.vmab" >"$tmp/verify.json" ||
    fail "verify --host-kernel (btrfs): $(cat "$tmp/verify.json")"
partition_out "$btrfs" "$tmp/check.btrfs"
btrfs check --readonly "$tmp/check.btrfs" >"$tmp/check.log" 2>&1 ||
    fail "btrfs check --readonly: $(cat "$tmp/check.log")"
read_back "$tmp/check.btrfs" btrfs
no_sidecars "$btrfs"
no_loops
pass "btrfs patched through the host kernel: verified, btrfs check --readonly clean, files read back"

# 4. The guest's /etc/x links to a host directory: the guest's link is
# resolved inside the guest, where that directory does not exist.
cp "$tmp/xfs-pristine.qcow2" "$xfs"
sum=$(sha256sum <"$xfs")
rc=0
vo apply --host-kernel "$xfs" "$tmp/escape.vmab" >"$tmp/escape.json" \
    2>"$tmp/escape.err" || rc=$?
[ -z "$(ls -A "$outside")" ] ||
    fail "the guest's link led a write to the host: $(ls -A "$outside")"
[ "$rc" -eq 1 ] && grep -q "add /etc/x/planted: " "$tmp/escape.err" ||
    fail "the add below the guest's link was not refused ($rc): $(cat "$tmp/escape.err")"
expect_refusal "add /boot/planted: .*the guest mounts partition 2 there, and --host-kernel mounts only its root \(partition 1\)" \
    --trust-dir "$tmp/trust" apply --host-kernel "$xfs" "$tmp/boot.vmab"
[ "$(sha256sum <"$xfs")" = "$sum" ] || fail "the refusals changed the image"
no_sidecars "$xfs"
pass "a guest link to a host directory leads nothing out of the guest; /boot on another filesystem is refused"

# 5. kill -9 of vmaugment-offline while the host kernel has the filesystem
# mounted: its child is stopped first, so that the kill lands while the
# mount and the loop device exist (the child's descriptors show them).
killed=
for attempt in 1 2 3 4 5; do
    cp "$tmp/xfs-pristine.qcow2" "$xfs"
    rm -f "$tmp/kill.fifo"
    mkfifo "$tmp/kill.fifo"
    G_MESSAGES_DEBUG=vmaugment-offline "$VMAUGMENT_OFFLINE" \
        --trust-dir "$tmp/trust" apply --host-kernel "$xfs" \
        "$tmp/fix.vmab" >"$tmp/kill.fifo" 2>"$tmp/kill.err" &
    pid=$!
    bg_pids+=("$pid")
    exec 7<"$tmp/kill.fifo"
    child=
    while read -r -u 7 line; do
        case $line in
            *": deciding")
                child=$(pgrep -P "$pid" | head -1)
                [ -n "$child" ] && kill -STOP "$child"
                break ;;
        esac
    done
    # Drain the rest, so that the apply never blocks on its output.
    cat <&7 >/dev/null &
    exec 7<&-
    [ -n "$child" ] || fail "the apply announced no decision: $(cat "$tmp/kill.err")"
    if ls -l "/proc/$child/fd" 2>/dev/null | grep -q '/dev/loop'; then
        dev=$(ls -l "/proc/$child/fd" | grep -o '/dev/loop[0-9]*' | head -1)
        kill -KILL "$pid"
        wait "$pid" 2>/dev/null || true
        killed=1
        break
    fi
    # Too late (already unmounted): let it go on, and try again.
    kill -CONT "$child"
    wait "$pid" || true
    child=
    vo recover "$xfs" >/dev/null || fail "recover after attempt $attempt"
done
[ -n "$killed" ] || fail "no kill landed while the filesystem was mounted"
for _ in $(seq 100); do
    [ -d "/proc/$child" ] || break
    sleep 0.1
done
[ ! -d "/proc/$child" ] || fail "the child $child outlived vmaugment-offline"
child=
# Whoever else uses loop devices: ours is "$dev" exactly, or under $tmp.
if grep -lE -e " $dev( |\$)" -e "$tmp/" /proc/[0-9]*/mountinfo 2>/dev/null; then
    fail "a mount of $dev is left"
fi
no_loops
timeout 10 sync || fail "sync hung after the kill"
vo recover "$xfs" >"$tmp/recover.json" || fail "recover after the kill"
[ "$(json_get "$tmp/recover.json" recovery)" = rolled-back ] ||
    fail "recover: $(cat "$tmp/recover.json")"
no_sidecars "$xfs"
cmp -s "$xfs" "$tmp/xfs-pristine.qcow2" || fail "the killed apply changed the image"
pass "kill -9 while mounted (attempt $attempt): no mount, no loop device, sync returns, recover rolls back"

# 6. After all that, the route still works on the recovered image.
vo apply --host-kernel "$xfs" "$tmp/fix.vmab" >"$tmp/apply.json" ||
    fail "apply after the kill: $(cat "$tmp/apply.json")"
check_apply_report "$tmp/apply.json"
partition_out "$xfs" "$tmp/check.xfs"
xfs_repair -n -f "$tmp/check.xfs" >"$tmp/repair.log" 2>&1 ||
    fail "xfs_repair -n after the kill: $(cat "$tmp/repair.log")"
pass "the recovered image is patched on the next run, xfs_repair -n clean"

# 7. The partition is copied out of, and written back into, the overlay
# the apply holds: swapped under its name as qemu-nbd starts the locate
# job, the file there is neither read nor written, nor committed.
cp "$tmp/xfs-pristine.qcow2" "$tmp/served.qcow2"
cp "$tmp/xfs-pristine.qcow2" "$tmp/served-decoy.qcow2"
swapped_as_served "$tmp/served.qcow2" "$tmp/served-decoy.qcow2" \
    --trust-dir "$tmp/trust" apply --host-kernel "$tmp/served.qcow2" \
    "$tmp/fix.vmab"
# So is the copy, which lies in the same directory.
! grep -F "vmaugment-host-kernel-" "$tmp/swap-served.qcow2/qemu-img.log" ||
    fail "qemu-img was given the copy of the partition by its name"
no_loops
pass "--host-kernel: the partition goes out of and back into the overlay and the copy the apply holds"
