#!/usr/bin/env bash
# Build the offline-servicing test images without mounting anything.
#
#   make-fixtures.sh linux   -> prints the path of a cached directory holding
#                               debian.raw (GPT, ext4 root + ext4 /srv),
#                               debian.qcow2, debian.vmdk, debian.vhdx
#   make-fixtures.sh image TREE OUT -> OUT/debian.{raw,qcow2} the same way
#                               from a root tree a test prepared (a copy of
#                               "make-fixtures.sh minbase" with changes)
#   make-fixtures.sh lvm     -> debian-lvm.{raw,qcow2,vmdk}: GPT, one LVM2
#                               PV, ext4 root and /srv on logical volumes
#                               (byte offsets in "volumes");
#                               scattered.raw: a volume not contiguous
#   make-fixtures.sh debs    -> a directory of .deb files from the Debian
#                               archive: the versions the minbase tree has
#                               of the packages the apt planning test
#                               rebuilds with newer versions (apt-get
#                               download), and netbase, which it lacks
#   make-fixtures.sh logical -> debian-logical.{raw,qcow2}: MBR, root and
#                               /srv in logical partitions 5 and 6
#   make-fixtures.sh multidisk -> debian-disk1.{raw,qcow2} and
#                               debian-disk2.{raw,qcow2}: one guest on two
#                               GPT disks, the root on the first and /var
#                               (with the dpkg database) on the second,
#                               named by UUID in the root's fstab
#   make-fixtures.sh rpm     -> rpm.{raw,qcow2}: an rpm-based guest (rpm's
#                               database made by rpm, rpmbuild packages),
#                               its expected "packages" and rpmdb.sqlite;
#                               rpm-wal.raw, rpm-bdb.raw: databases refused
#   make-fixtures.sh luks    -> debian-luks.{raw,qcow2}: GPT, ext4 /boot in
#                               partition 1, a LUKS1 volume in partition
#                               2 (made by qemu-img, no device-mapper)
#                               holding the ext4 root; debian-luks-lvm.*:
#                               the same with an LVM PV in the volume
#                               (needs root: losetup); the key in "key",
#                               each volume's UUID in NAME.uuid, its
#                               partition's offset and size in
#                               NAME.partition
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
# Bumped alone when only that fixture changes, so that the others (and
# debootstrap's tree) stay cached.
linux_version=$fixture_version.1
windows_version=$fixture_version.1
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

# cached NAME [VERSION]: prints the fixture directory NAME when it is
# complete.
cached() {
    local out=$cache/$1-v${2:-$fixture_version}
    [ -f "$out/.complete" ] && echo "$out"
}

# fresh_tree OUT: OUT emptied, with a copy of the minbase tree in
# OUT/stage/root for the fixture to change.
fresh_tree() {
    local tree
    tree=$(minbase)
    rm -rf "$1"
    mkdir -p "$1/stage"
    cp -a "$tree" "$1/stage/root"
    rm -f "$1/stage/root/.complete"
}

linux() {
    cached linux "$linux_version" && return
    local out=$cache/linux-v$linux_version
    fresh_tree "$out"
    linux_extras "$out"
    linux_image "$out"
    "$qemu_img" convert -O vmdk "$out/debian.raw" "$out/debian.vmdk"
    "$qemu_img" convert -O vhdx "$out/debian.raw" "$out/debian.vhdx"
    touch "$out/.complete"
    echo "$out"
}

# linux_extras OUT: what the Linux fixture's inventory is checked on,
# added to the tree in OUT/stage/root: a host name and two kernels.
linux_extras() {
    local out=$1
    local work=$out/stage

    echo "fixture-debian" >"$work/root/etc/hostname"
    # Two kernels as Debian lays them out: one from its package, linked as
    # /vmlinuz; an older one only linked as /vmlinuz.old.  Their bytes do
    # not matter; the package paragraph is in kernel-status for the tests.
    printf 'not a real kernel\n' >"$work/root/boot/vmlinuz-6.1.0-99-amd64"
    printf 'not a real kernel\n' >"$work/root/boot/vmlinuz-6.1.0-98-amd64"
    ln -s boot/vmlinuz-6.1.0-99-amd64 "$work/root/vmlinuz"
    ln -s boot/vmlinuz-6.1.0-98-amd64 "$work/root/vmlinuz.old"
    cat >"$out/kernel-status" <<'STATUS'
Package: linux-image-6.1.0-99-amd64
Status: install ok installed
Priority: optional
Section: kernel
Installed-Size: 1
Maintainer: Debian Kernel Team <debian-kernel@lists.debian.org>
Architecture: amd64
Source: linux
Version: 6.1.999-1
Description: Linux 6.1 for 64-bit PCs (fixture)

STATUS
    cat "$out/kernel-status" >>"$work/root/var/lib/dpkg/status"
}

# linux_image OUT: OUT/debian.raw and debian.qcow2 holding the tree in
# OUT/stage/root as the root filesystem, with the fixture's fstab, /srv
# filesystem and links.
linux_image() {
    local out=$1
    local work=$out/stage

    local root_uuid=7d3c9c4e-5b0e-4f41-9a53-6f5fd1a0c001
    local srv_uuid=7d3c9c4e-5b0e-4f41-9a53-6f5fd1a0c002
    # The root tree gets a real fstab naming both filesystems, the second
    # one by label, so that drive mapping goes through libmount.
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

# Exact versions vanish from the archive only when a point release
# replaces them; the cache keeps the ones the tree was built with.
debs() {
    local tree out=$cache/debs-v$fixture_version p want=()
    tree=$(minbase)
    if [ -f "$out/.complete" ]; then
        echo "$out"
        return
    fi
    rm -rf "$out"
    mkdir -p "$out"
    for p in libaudit-common hostname gpgv base-passwd; do
        want+=("$p=$(dpkg-query --admindir="$tree/var/lib/dpkg" -W \
            -f '${Version}' "$p")")
    done
    # The host's apt and sources (bookworm); _apt cannot write here.
    (cd "$out" && apt-get -q=2 -o APT::Sandbox::User=root download \
        "${want[@]}" netbase) >"$cache/debs.log" 2>&1 ||
        { cat "$cache/debs.log" >&2; exit 1; }
    touch "$out/.complete"
    echo "$out"
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
    local out=$cache/windows-v$windows_version
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
setval 8
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
CurrentMinorVersionNumber
dword:0x00000000
UBR
dword:0x00000fd7
InstallationType
string:Client
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
cd ..
add {11111111-2222-3333-4444-555555555555}
cd {11111111-2222-3333-4444-555555555555}
setval 4
DisplayName
string:Contoso Agent
DisplayVersion
string:4.2.1
Publisher
string:Contoso Ltd.
InstallDate
string:20240115
cd \Microsoft\Windows\CurrentVersion
add Component Based Servicing
cd Component Based Servicing
add Packages
cd Packages
add Package_for_RollupFix~31bf3856ad364e35~amd64~~19041.4055.1.4
cd Package_for_RollupFix~31bf3856ad364e35~amd64~~19041.4055.1.4
setval 1
CurrentState
dword:0x00000070
cd ..
add Package_for_KB5034441~31bf3856ad364e35~amd64~~19041.3920.1.5
cd Package_for_KB5034441~31bf3856ad364e35~amd64~~19041.3920.1.5
setval 1
CurrentState
dword:0x00000070
cd ..
add Package_for_KB5005112~31bf3856ad364e35~amd64~~19041.1202.1.7
cd Package_for_KB5005112~31bf3856ad364e35~amd64~~19041.1202.1.7
setval 1
CurrentState
dword:0x00000050
cd ..
add Package_for_KB5036892~31bf3856ad364e35~amd64~~19041.4291.1.5
cd Package_for_KB5036892~31bf3856ad364e35~amd64~~19041.4291.1.5
setval 1
CurrentState
dword:0x00000040
cd ..
add Microsoft-Windows-Foundation-Package~31bf3856ad364e35~amd64~~10.0.19041.1
cd Microsoft-Windows-Foundation-Package~31bf3856ad364e35~amd64~~10.0.19041.1
setval 1
CurrentState
dword:0x00000070
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
cd \ControlSet001
add Services
cd Services
add Tcpip
cd Tcpip
add Parameters
cd Parameters
setval 1
Hostname
string:fixture-pc
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

# shellcheck source=offline/tests/lvm-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lvm-lib.sh"
visible='"READ", "WRITE", "VISIBLE"'

# lvm_pv RAW START SIZE LVS: partition (START, SIZE in sectors) of RAW made
# an LVM2 PV of a VG "debian-vg" with the volumes LVS (lvm_vg).  Prints
# "pe_start extent_size" (sectors).
lvm_pv() {
    local raw=$1 start=$2 size=$3 lvs=$4 loop rc=0
    loop=$(losetup --find --show --offset $((start * 512)) \
        --sizelimit $((size * 512)) "$raw")
    lvm_vg "$loop" debian-vg "$lvs" "$cache/lvm.log" || rc=$?
    losetup -d "$loop"
    [ $rc -eq 0 ] || { echo "lvm failed (see $cache/lvm.log)" >&2; exit 1; }
}

# Debian on LVM as its installer makes it (ext4 root and /srv on logical
# volumes of one VG on a GPT partition), named in fstab by device-mapper's
# and udev's names; the root volume in two segments that lie one after
# the other.  scattered.raw: a VG whose only volume is not contiguous.
lvm_images() {
    cached lvm && return
    local out=$cache/lvm-v$fixture_version
    fresh_tree "$out"
    local work=$out/stage
    cat >"$work/root/etc/fstab" <<FSTAB
/dev/mapper/debian--vg-root / ext4 errors=remount-ro 0 1
/dev/debian-vg/srv /srv ext4 defaults 0 2
FSTAB
    echo "vmaugment LVM fixture" >"$work/root/etc/motd"
    mkdir -p "$work/srv/www"
    echo "hello from /srv on LVM" >"$work/srv/www/index.html"

    local raw=$out/debian-lvm.raw
    truncate -s 900M "$raw"
    sfdisk --quiet "$raw" <<PART
label: gpt
first-lba: 2048
start=2048, type=E6D6D379-F507-44C2-A23C-238F2A3DF928, name=lvm
PART
    local size=$((900 * 2048 - 2048 - 34))
    # 4 MiB extents: root is extents 2-176 (700 MiB), /srv 180-195.
    local lvs
    lvs=$(lvm_volumes "$(lvm_volume root "$visible" "0 100 2" "100 75 102")" \
        "$(lvm_volume srv "$visible" "0 16 180")")
    local pe_start extent
    read -r pe_start extent < <(lvm_pv "$raw" 2048 "$size" "$lvs")
    local pv=$((2048 * 512)) ext=$((extent * 512))
    mke2fs -q -F -t ext4 -L root \
        -E offset=$((pv + pe_start * 512 + 2 * ext)) \
        -d "$work/root" "$raw" $((175 * extent / 2))k
    mke2fs -q -F -t ext4 -L srvdata \
        -E offset=$((pv + pe_start * 512 + 180 * ext)) \
        -d "$work/srv" "$raw" $((16 * extent / 2))k
    # Where lvm's own metadata puts the volumes, for the tests' checks.
    printf 'root %s\nsrv %s\n' $((pv + pe_start * 512 + 2 * ext)) \
        $((pv + pe_start * 512 + 180 * ext)) >"$out/volumes"
    rm -rf "$work"
    "$qemu_img" convert -O qcow2 "$raw" "$out/debian-lvm.qcow2"
    "$qemu_img" convert -O vmdk "$raw" "$out/debian-lvm.vmdk"

    truncate -s 64M "$out/scattered.raw"
    lvs=$(lvm_volumes "$(lvm_volume data "$visible" "0 2 1" "2 2 5")")
    lvm_pv "$out/scattered.raw" 0 $((64 * 2048)) "$lvs" >/dev/null
    touch "$out/.complete"
    echo "$out"
}

# luks_disk OUT NAME PAYLOAD: OUT/NAME.{raw,qcow2}, the layout of Debian's
# encrypting installer: GPT, an ext4 /boot (OUT/stage/boot) in partition
# 1, and in partition 2 a LUKS volume holding the bytes of PAYLOAD
# (removed), written by QEMU's luks driver (qemu-img convert -O luks), so
# no device-mapper is needed.  LUKS1, the version QEMU opens; the
# installer makes LUKS2 since Debian 10.  The key (OUT/key), the volume's
# UUID (OUT/NAME.uuid) and the partition's byte offset and size
# (OUT/NAME.partition) for the tests.
luks_disk() {
    local out=$1 name=$2 payload=$3
    local start=133120 luks_bytes sectors raw=$out/$2.raw try
    # The passphrase is the whole file, as cryptsetup's --key-file reads
    # it: no newline.
    printf 'luks-fixture-passphrase-%s' 7f3e9a1c >"$out/key"
    # QEMU times its key derivation in the thread's CPU time and gives up
    # ("Unable to get accurate CPU usage") when a first round measures
    # none, which a busy machine can make happen: tried three times.
    for try in 1 2 3; do
        "$qemu_img" convert --object "secret,id=k,file=$out/key" -f raw \
            -O luks -o key-secret=k,iter-time=10 "$payload" \
            "$payload.luks" && break
        [ "$try" -lt 3 ] || return 1
    done
    rm -f "$payload"
    luks_bytes=$(stat -c %s "$payload.luks")
    sectors=$(((luks_bytes + 1048575) / 1048576 * 2048))
    truncate -s $(((start + sectors) * 512 + 1048576)) "$raw"
    sfdisk --quiet "$raw" <<PART
label: gpt
first-lba: 2048
start=2048, size=131072, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=boot
start=$start, size=$sectors, type=CA7D7CCB-63ED-4C53-861C-1742536059CC, name=luks
PART
    mkdir -p "$out/stage/boot"
    echo "a kernel would be here" >"$out/stage/boot/README"
    mke2fs -q -F -t ext4 -L boot -E offset=$((2048 * 512)) \
        -d "$out/stage/boot" "$raw" 64M
    dd if="$payload.luks" of="$raw" bs=1M seek=$((start / 2048)) \
        conv=notrunc,sparse status=none
    rm -f "$payload.luks"
    # qemu-img's header takes a random UUID: the tests' --luks-key names
    # the one blkid reads.
    blkid -p -o value -s UUID -O $((start * 512)) "$raw" >"$out/$name.uuid"
    [ -s "$out/$name.uuid" ] || { echo "no LUKS UUID in $raw" >&2; exit 1; }
    echo "$((start * 512)) $((sectors * 512))" >"$out/$name.partition"
    "$qemu_img" convert -O qcow2 "$raw" "$out/$name.qcow2"
}

# Debian with its root in a LUKS volume: debian-luks, the ext4 root right
# in the volume; debian-luks-lvm, the volume an LVM PV with the root on
# a logical volume (the installer's "encrypted LVM"), its offset in the
# volume in "luks-lvm.root".
luks_images() {
    cached luks && return
    local out=$cache/luks-v$fixture_version
    fresh_tree "$out"
    local work=$out/stage
    local root_uuid=7d3c9c4e-5b0e-4f41-9a53-6f5fd1a0c011
    cp -a "$work/root" "$work/lvm-root"
    cat >"$work/root/etc/fstab" <<FSTAB
UUID=$root_uuid / ext4 errors=remount-ro 0 1
LABEL=boot /boot ext4 defaults 0 2
FSTAB
    echo "vmaugment LUKS fixture" >"$work/root/etc/motd"
    # mke2fs says "Creating regular file" on stdout, which carries only
    # the fixture's path.
    mke2fs -q -F -t ext4 -U "$root_uuid" -L root -d "$work/root" \
        "$out/root.plain" 320M >&2
    luks_disk "$out" debian-luks "$out/root.plain"

    cat >"$work/lvm-root/etc/fstab" <<FSTAB
/dev/mapper/debian--vg-root / ext4 errors=remount-ro 0 1
LABEL=boot /boot ext4 defaults 0 2
FSTAB
    # 4 MiB extents: root is extents 0-79 (320 MiB).
    local pe_start extent
    truncate -s 340M "$out/pv.plain"
    read -r pe_start extent < <(lvm_pv "$out/pv.plain" 0 $((340 * 2048)) \
        "$(lvm_volumes "$(lvm_volume root "$visible" "0 80 0")")")
    mke2fs -q -F -t ext4 -L root -E offset=$((pe_start * 512)) \
        -d "$work/lvm-root" "$out/pv.plain" $((80 * extent / 2))k
    echo $((pe_start * 512)) >"$out/luks-lvm.root"
    luks_disk "$out" debian-luks-lvm "$out/pv.plain"
    rm -rf "$work"
    touch "$out/.complete"
    echo "$out"
}

# Debian in logical partitions of an MBR extended partition: root in 5,
# /srv in 6 (by device name in fstab), whose boot record lies 450 MiB into
# the disk, far from the table at its start.
logical_images() {
    cached logical && return
    local out=$cache/logical-v$fixture_version
    fresh_tree "$out"
    local work=$out/stage
    local root_uuid=7d3c9c4e-5b0e-4f41-9a53-6f5fd1a0c005
    cat >"$work/root/etc/fstab" <<FSTAB
UUID=$root_uuid / ext4 errors=remount-ro 0 1
/dev/sda6 /srv ext4 defaults 0 2
FSTAB
    mkdir -p "$work/srv/www"
    echo "hello from a logical partition" >"$work/srv/www/index.html"
    local raw=$out/debian-logical.raw
    truncate -s 600M "$raw"
    sfdisk --quiet "$raw" <<PART
label: dos
start=2048, size=1226752, type=5
start=4096, size=921600, type=83
start=929792, size=131072, type=83
PART
    mke2fs -q -F -t ext4 -U "$root_uuid" -L root -E offset=$((4096 * 512)) \
        -d "$work/root" "$raw" 450M
    mke2fs -q -F -t ext4 -L srvdata -E offset=$((929792 * 512)) \
        -d "$work/srv" "$raw" 64M
    rm -rf "$work"
    "$qemu_img" convert -O qcow2 "$raw" "$out/debian-logical.qcow2"
    touch "$out/.complete"
    echo "$out"
}

# Debian on two disks: the root on the first, /var on the second (the dpkg
# database, so the inventory has to cross disks), by UUID in fstab.
multidisk_images() {
    cached multidisk && return
    local out=$cache/multidisk-v$fixture_version
    fresh_tree "$out"
    local work=$out/stage
    local root_uuid=7d3c9c4e-5b0e-4f41-9a53-6f5fd1a0c011
    local var_uuid=7d3c9c4e-5b0e-4f41-9a53-6f5fd1a0c012
    cat >"$work/root/etc/fstab" <<FSTAB
UUID=$root_uuid / ext4 errors=remount-ro 0 1
UUID=$var_uuid /var ext4 defaults 0 2
FSTAB
    echo "vmaugment fixture on two disks" >"$work/root/etc/motd"
    mv "$work/root/var" "$work/var"
    mkdir "$work/root/var"
    local disk
    for disk in 1 2; do
        truncate -s 300M "$out/debian-disk$disk.raw"
        sfdisk --quiet "$out/debian-disk$disk.raw" <<PART
label: gpt
first-lba: 2048
start=2048, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=disk$disk
PART
    done
    mke2fs -q -F -t ext4 -U "$root_uuid" -L root -E offset=$((2048 * 512)) \
        -d "$work/root" "$out/debian-disk1.raw" 290M
    mke2fs -q -F -t ext4 -U "$var_uuid" -L var -E offset=$((2048 * 512)) \
        -d "$work/var" "$out/debian-disk2.raw" 290M
    rm -rf "$work"
    for disk in 1 2; do
        "$qemu_img" convert -O qcow2 "$out/debian-disk$disk.raw" \
            "$out/debian-disk$disk.qcow2"
    done
    touch "$out/.complete"
    echo "$out"
}

# rpm_package TOPDIR NAME EPOCH VERSION RELEASE FILE: a noarch rpm with one
# file, built by rpmbuild (EPOCH may be empty).
rpm_package() {
    local top=$1 name=$2 epoch=$3 version=$4 release=$5 file=$6
    mkdir -p "$top/SPECS"
    cat >"$top/SPECS/$name.spec" <<SPEC
Name: $name
${epoch:+Epoch: $epoch}
Version: $version
Release: $release
Summary: vmaugment test package
License: GPL-2.0-or-later
BuildArch: noarch
%description
A package of the offline tests' rpm guest.
%install
mkdir -p %{buildroot}$(dirname "$file")
echo "$name $version" >%{buildroot}$file
%files
$file
SPEC
    rpmbuild --quiet --define "_topdir $top" -bb "$top/SPECS/$name.spec" \
        >>"$cache/rpmbuild.log" 2>&1
}

# rpm_disk TREE RAW: a GPT disk with one ext4 filesystem holding TREE.
rpm_disk() {
    truncate -s 64M "$2"
    sfdisk --quiet "$2" <<PART
label: gpt
first-lba: 2048
start=2048, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root
PART
    mke2fs -q -F -t ext4 -L root -E offset=$((2048 * 512)) -d "$1" "$2" 60M >&2
}

# A Rocky Linux 9-like guest: os-release, fstab and an rpm database in
# /usr/lib/sysimage/rpm (linked from /var/lib/rpm, as Fedora has it) made
# by rpm itself with three packages built by rpmbuild, one with an epoch.
# rpm-wal.raw: the same with a non-empty write-ahead log beside the
# database; rpm-bdb.raw: a Berkeley DB database's file name.
rpm_images() {
    cached rpm && return
    local out=$cache/rpm-v$fixture_version
    rm -rf "$out"
    mkdir -p "$out/stage/tree/etc" "$out/stage/tree/var/lib" "$out/stage/top"
    local tree=$out/stage/tree
    cat >"$tree/etc/os-release" <<'OSR'
NAME="Rocky Linux"
VERSION="9.3 (Blue Onyx)"
ID="rocky"
ID_LIKE="rhel centos fedora"
VERSION_ID="9.3"
PLATFORM_ID="platform:el9"
PRETTY_NAME="Rocky Linux 9.3 (Blue Onyx)"
OSR
    printf 'LABEL=root / ext4 defaults 0 1\n' >"$tree/etc/fstab"
    echo rocky-fixture >"$tree/etc/hostname"
    rpm_package "$out/stage/top" vmaug-tool "" 1.0 1 /usr/share/vmaug/tool.txt
    rpm_package "$out/stage/top" vmaug-epoch 2 1.2 3.el9 /usr/share/vmaug/epoch.txt
    rpm_package "$out/stage/top" vmaug-conf "" 0.9 7 /etc/vmaug.conf
    rpm --root "$tree" --dbpath /usr/lib/sysimage/rpm --initdb
    rpm --root "$tree" --dbpath /usr/lib/sysimage/rpm -i --nodeps \
        --noscripts --ignoreos --ignorearch "$out/stage/top"/RPMS/noarch/*.rpm \
        >>"$cache/rpmbuild.log" 2>&1
    ln -s ../../usr/lib/sysimage/rpm "$tree/var/lib/rpm"
    rm -f "$tree/usr/lib/sysimage/rpm/.rpm.lock" \
        "$tree/usr/lib/sysimage/rpm/rpmdb.sqlite-shm"
    [ ! -s "$tree/usr/lib/sysimage/rpm/rpmdb.sqlite-wal" ] ||
        { echo "rpm left a write-ahead log" >&2; exit 1; }
    # The expected package list, from rpm itself.
    rpm --root "$tree" --dbpath /usr/lib/sysimage/rpm -qa \
        --qf '%{NAME} %|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE} %{ARCH}\n' |
        sort >"$out/packages" 2>>"$cache/rpmbuild.log"
    cp "$tree/usr/lib/sysimage/rpm/rpmdb.sqlite" "$out/rpmdb.sqlite"
    rpm_disk "$tree" "$out/rpm.raw"
    "$qemu_img" convert -O qcow2 "$out/rpm.raw" "$out/rpm.qcow2"
    head -c 4096 /dev/urandom >"$tree/usr/lib/sysimage/rpm/rpmdb.sqlite-wal"
    rpm_disk "$tree" "$out/rpm-wal.raw"
    rm -f "$tree/usr/lib/sysimage/rpm/rpmdb.sqlite"*
    head -c 8192 /dev/zero >"$tree/usr/lib/sysimage/rpm/Packages"
    rpm_disk "$tree" "$out/rpm-bdb.raw"
    rm -rf "$out/stage"
    touch "$out/.complete"
    echo "$out"
}

case ${1:-} in
    linux) linux ;;
    # A variant of the Linux fixture from a tree a test prepared (not
    # cached): image TREE OUTDIR.
    image)
        rm -rf "$3"
        mkdir -p "$3/stage"
        cp -a "$2" "$3/stage/root"
        linux_image "$3"
        ;;
    rpm) rpm_images ;;
    logical) logical_images ;;
    multidisk) multidisk_images ;;
    lvm) lvm_images ;;
    luks) luks_images ;;
    windows) windows ;;
    minbase) minbase ;;
    debs) debs ;;
    *) echo "usage: $0 linux|lvm|logical|multidisk|rpm|windows|minbase|debs|image TREE OUT" >&2
       exit 2 ;;
esac
