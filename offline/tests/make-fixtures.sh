#!/usr/bin/env bash
# Build the offline-servicing test images without mounting anything.
#
#   make-fixtures.sh linux   -> prints the path of a cached directory holding
#                               debian.raw (GPT, ext4 root + ext4 /srv),
#                               debian.qcow2, debian.vmdk, debian.vhdx
#   make-fixtures.sh image TREE OUT -> OUT/debian.{raw,qcow2} the same way
#                               from a root tree a test prepared (a copy of
#                               "make-fixtures.sh minbase" with changes)
#   make-fixtures.sh windows -> windows.{raw,qcow2,vmdk,vhdx}: MBR, an NTFS
#                               system volume (C:) with a Windows-like tree
#                               and an NTFS data volume (D: by the SYSTEM
#                               hive's MountedDevices); the tree's
#                               SOFTWARE/SYSTEM hives grow from hivex's
#                               upstream test hive (needs
#                               $VMAUGMENT_NTFS_POPULATE, the test helper)
#
# The debootstrap tree and the images are cached under the user's cache
# directory, keyed by the version of this script, so only the first run
# pays for debootstrap (about a minute).  Tests copy images before writing.
set -euo pipefail

fixture_version=4
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
    linux_image "$tree" "$out"
    "$qemu_img" convert -O vmdk "$out/debian.raw" "$out/debian.vmdk"
    "$qemu_img" convert -O vhdx "$out/debian.raw" "$out/debian.vhdx"
    touch "$out/.complete"
    echo "$out"
}

# linux_image TREE OUT: OUT/debian.raw and debian.qcow2 holding TREE as
# the root filesystem, with the fixture's fstab, /srv filesystem and links.
linux_image() {
    local tree=$1 out=$2
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
}

# hivex's images/minimal: no Debian binary package ships a registry hive.
hive_seed() {
    local seed=$cache/hivex-minimal
    if [ ! -s "$seed" ]; then
        local src=$cache/hivex-src
        rm -rf "$src"
        mkdir -p "$src"
        # Only the upstream tarball is needed; the .dsc may lag behind.
        (cd "$src" && apt-get source --download-only hivex >/dev/null 2>&1) || true
        local tarball
        tarball=$(ls "$src"/hivex_*.orig.tar.* 2>/dev/null | head -1)
        [ -n "$tarball" ] || { echo "cannot download hivex's source" >&2; exit 1; }
        tar -xaf "$tarball" -O --wildcards '*/images/minimal' >"$seed.tmp"
        mv "$seed.tmp" "$seed"
        rm -rf "$src"
    fi
    echo "$seed"
}

windows() {
    local out=$cache/windows-v$fixture_version
    if [ -f "$out/.complete" ]; then
        echo "$out"
        return
    fi
    : "${VMAUGMENT_NTFS_POPULATE:?the ntfs-populate test helper}"
    local seed
    seed=$(hive_seed)
    rm -rf "$out"
    mkdir -p "$out"
    local tree=$out/tree
    local sys32=$tree/Windows/System32
    mkdir -p "$sys32/config" "$sys32/drivers/etc" "$tree/Program Files/Demo" \
        "$tree/Users/Public"
    cp "$seed" "$sys32/config/SOFTWARE"
    hivexsh -w "$sys32/config/SOFTWARE" <<'HIVE'
add Microsoft
cd Microsoft
add Windows NT
cd Windows NT
add CurrentVersion
cd CurrentVersion
setval 5
ProductName
string:Windows 10 Pro
CurrentBuild
string:19045
DisplayVersion
string:22H2
EditionID
string:Professional
CurrentMajorVersionNumber
dword:0x0000000a
cd \Microsoft
add Windows
cd Windows
add CurrentVersion
cd CurrentVersion
add Uninstall
cd Uninstall
add 7-Zip
cd 7-Zip
setval 3
DisplayName
string:7-Zip 23.01 (x64)
DisplayVersion
string:23.01
Publisher
string:Igor Pavlov
cd ..
add KB5034441
cd KB5034441
setval 2
DisplayName
string:Security Update for Windows (KB5034441)
DisplayVersion
string:1
commit
HIVE
    cp "$seed" "$sys32/config/SYSTEM"
    hivexsh -w "$sys32/config/SYSTEM" <<'HIVE'
add Select
cd Select
setval 1
Current
dword:0x00000001
cd \
add MountedDevices
cd MountedDevices
setval 2
\DosDevices\C:
hex:3:cd,ab,34,12,00,00,10,00,00,00,00,00
\DosDevices\D:
hex:3:cd,ab,34,12,00,00,10,08,00,00,00,00
cd \
add ControlSet001
cd ControlSet001
add Control
cd Control
add ComputerName
cd ComputerName
add ComputerName
cd ComputerName
setval 1
ComputerName
string:FIXTURE-PC
commit
HIVE
    printf '127.0.0.1 localhost\r\n' >"$sys32/drivers/etc/hosts"
    # The smallest PE32+ console header file(1) and libguestfs accept, so
    # that libguestfs recognises the fixture as Windows.
    python3 - "$sys32/cmd.exe" <<'PE'
import struct, sys
dos = bytearray(64)
dos[0:2] = b"MZ"
struct.pack_into("<I", dos, 0x3C, 0x40)
coff = b"PE\0\0" + struct.pack("<HHIIIHH", 0x8664, 0, 0, 0, 0, 240, 0x22)
opt = bytearray(240)
struct.pack_into("<H", opt, 0, 0x20B)   # PE32+
struct.pack_into("<H", opt, 68, 3)      # console subsystem
open(sys.argv[1], "wb").write(bytes(dos) + coff + bytes(opt))
PE
    printf 'demo application\r\n' >"$tree/Program Files/Demo/readme.txt"
    printf 'old log\r\n' >"$tree/Users/Public/old.log"

    local part=$out/ntfs.part
    truncate -s 128M "$part"
    mkntfs -F -Q -q -s 512 -p 2048 -H 255 -S 63 -L Windows "$part" 2>/dev/null
    "$VMAUGMENT_NTFS_POPULATE" "$part" "$tree"
    rm -rf "$tree"

    # D: (MountedDevices above: signature 0x1234abcd, offset 129 MiB).
    local data=$out/data.part datatree=$out/datatree
    mkdir -p "$datatree/Reports"
    printf 'quarterly report\r\n' >"$datatree/Reports/q3.txt"
    truncate -s 32M "$data"
    mkntfs -F -Q -q -s 512 -p 264192 -H 255 -S 63 -L Data "$data" 2>/dev/null
    "$VMAUGMENT_NTFS_POPULATE" "$data" "$datatree"
    rm -rf "$datatree"

    local raw=$out/windows.raw
    truncate -s 200M "$raw"
    sfdisk --quiet "$raw" <<PART
label: dos
label-id: 0x1234abcd
start=2048, size=262144, type=7, bootable
start=264192, size=65536, type=7
PART
    dd if="$part" of="$raw" bs=1M seek=1 conv=sparse,notrunc status=none
    dd if="$data" of="$raw" bs=1M seek=129 conv=sparse,notrunc status=none
    rm -f "$part" "$data"
    "$qemu_img" convert -O qcow2 "$raw" "$out/windows.qcow2"
    "$qemu_img" convert -O vmdk "$raw" "$out/windows.vmdk"
    "$qemu_img" convert -O vhdx "$raw" "$out/windows.vhdx"
    touch "$out/.complete"
    echo "$out"
}

case ${1:-} in
    linux) linux ;;
    # A variant of the Linux fixture from a tree a test prepared (not
    # cached): image TREE OUTDIR.
    image) linux_image "$2" "$3" ;;
    windows) windows ;;
    minbase) minbase ;;
    *) echo "usage: $0 linux|windows|minbase" >&2; exit 2 ;;
esac
