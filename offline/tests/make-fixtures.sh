#!/usr/bin/env bash
# Build the offline-servicing test images without mounting anything.
#
#   make-fixtures.sh linux   -> prints the path of a cached directory holding
#                               debian.raw (GPT, ext4 root + ext4 /srv),
#                               debian.qcow2, debian.vmdk, debian.vhdx
#
# The debootstrap tree and the images are cached under the user's cache
# directory, keyed by the version of this script, so only the first run
# pays for debootstrap (about a minute).  Tests copy images before writing.
set -euo pipefail

fixture_version=2
cache=${XDG_CACHE_HOME:-$HOME/.cache}/vmaugment/offline
qemu_img=${VMAUGMENT_QEMU_IMG:-}
if [ -z "$qemu_img" ]; then
    if [ -n "${VMAUGMENT_QEMU_BUILD_DIR:-}" ]; then
        qemu_img=$VMAUGMENT_QEMU_BUILD_DIR/qemu-img
    else
        qemu_img=qemu-img
    fi
fi
export PATH=$PATH:/usr/sbin:/sbin

# Several tests may ask for the fixtures at once: build them once.
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9

minbase() {
    local tree=$cache/minbase-bookworm
    if [ ! -f "$tree/.complete" ]; then
        rm -rf "$tree"
        debootstrap --variant=minbase bookworm "$tree" \
            "${VMAUGMENT_DEBIAN_MIRROR:-http://deb.debian.org/debian}" \
            >"$cache/debootstrap.log" 2>&1
        touch "$tree/.complete"
    fi
    echo "$tree"
}

linux() {
    local out=$cache/linux-v$fixture_version
    if [ -f "$out/.complete" ]; then
        echo "$out"
        return
    fi
    local tree
    tree=$(minbase)
    rm -rf "$out"
    mkdir -p "$out"
    local work=$out/work
    mkdir -p "$work"

    local root_uuid=7d3c9c4e-5b0e-4f41-9a53-6f5fd1a0c001
    local srv_uuid=7d3c9c4e-5b0e-4f41-9a53-6f5fd1a0c002
    # The root tree gets a real fstab naming both filesystems, the second
    # one by label, so that drive mapping goes through libmount.
    cp -a "$tree" "$work/root"
    rm -f "$work/root/.complete"
    cat >"$work/root/etc/fstab" <<FSTAB
# <file system> <mount point> <type> <options> <dump> <pass>
UUID=$root_uuid / ext4 errors=remount-ro 0 1
LABEL=srvdata /srv ext4 defaults 0 2
FSTAB
    echo "vmaugment fixture" >"$work/root/etc/motd"
    mkdir -p "$work/srv/www"
    echo "hello from /srv" >"$work/srv/www/index.html"
    # Relative link climbing above the guest's root: must never be followed.
    ln -s ../../../../../../../tmp "$work/srv/www/escape"
    # Guest-absolute link: resolved inside the guest, across filesystems.
    ln -s /srv/www "$work/root/etc/site"

    # 1 MiB alignment, 700 MiB root, 64 MiB /srv, GPT.
    local raw=$out/debian.raw
    truncate -s 800M "$raw"
    sfdisk --quiet "$raw" <<PART
label: gpt
first-lba: 2048
start=2048, size=1433600, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root
start=1435648, size=131072, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=srv
PART
    mke2fs -q -F -t ext4 -U "$root_uuid" -L root -E offset=$((2048 * 512)) \
        -d "$work/root" "$raw" 700M
    mke2fs -q -F -t ext4 -U "$srv_uuid" -L srvdata \
        -E offset=$((1435648 * 512)) -d "$work/srv" "$raw" 64M
    rm -rf "$work"

    "$qemu_img" convert -O qcow2 "$raw" "$out/debian.qcow2"
    "$qemu_img" convert -O vmdk "$raw" "$out/debian.vmdk"
    "$qemu_img" convert -O vhdx "$raw" "$out/debian.vhdx"
    touch "$out/.complete"
    echo "$out"
}

case ${1:-} in
    linux) linux ;;
    minbase) minbase ;;
    *) echo "usage: $0 linux|minbase" >&2; exit 2 ;;
esac
