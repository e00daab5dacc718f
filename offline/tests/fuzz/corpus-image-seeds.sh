#!/usr/bin/env bash
# Makes the seed disks of fuzz-image-ext (corpus-image-ext) and
# fuzz-image-ntfs (corpus-image-ntfs): the smallest disks on which the
# worker finds a guest, each written as the targets read it, a .sectors
# file (image-sectors.py; the format is fuzz-image.c's), which leaves out
# the zero sectors, so that mutations land in metadata rather than in
# empty blocks.  The committed seeds were made by this script; run it again
# only to change them (the fuzz campaigns never grow the committed corpus).
#
#   corpus-image-seeds.sh NTFS-POPULATE OUT-DIR
#
# NTFS-POPULATE is offline/tests' ntfs-populate helper from a build.  Needs
# mke2fs (e2fsprogs), sfdisk (fdisk), mkntfs (ntfs-3g), hivexsh
# (libhivex-bin) and python3.
#
# ext: linux-gpt, a GPT disk (384 KiB) with an ext2 root (/etc/os-release,
#      an fstab mounting the second partition by label and naming a third
#      by device, the dpkg status, a guest-absolute link across
#      filesystems) and an ext4 /srv (extents, no journal: a journal needs
#      1 MiB); linux-mbr.img, an MBR disk with one ext4 partition with
#      inline data whose /etc/os-release is a relative link, as Debian has
#      it; linux-whole, ext2 on the whole disk, no table.
# ntfs: windows-mbr, an MBR disk with an NTFS partition of mkntfs's
#      smallest size (1 MiB and a bit) holding Windows/System32/config/
#      SOFTWARE and SYSTEM (grown from corpus-hive/software.hive with
#      hivexsh; SYSTEM's MountedDevices names a D: on the disk's second
#      partition); windows-whole, the same NTFS on the whole disk.
# (corpus-image-ext/status-not-utf8 is no seed of this script but an input
# the fuzzer found, converted from the raw disk it was then.)
set -euo pipefail

populate=$1
out=$2
here=$(cd "$(dirname "$0")" && pwd)
export PATH=$PATH:/usr/sbin:/sbin
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out/corpus-image-ext" "$out/corpus-image-ntfs"

seed() {  # RAW-DISK CORPUS [NAME]
    local name=${3:-$(basename "$1" .img)}
    python3 "$here/image-sectors.py" encode "$1" "$out/$2/$name.sectors"
}

linux_tree() {
    local t=$1
    mkdir -p "$t/etc" "$t/usr/lib" "$t/var/lib/dpkg"
    cat >"$t/etc/os-release" <<'EOF'
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
ID=debian
VERSION_ID="12"
EOF
    cat >"$t/etc/fstab" <<'EOF'
LABEL=root / ext2 defaults 0 1
LABEL=srv /srv ext4 defaults 0 2
/dev/vda3 /data ext4 defaults 0 2
EOF
    cat >"$t/var/lib/dpkg/status" <<'EOF'
Package: libc6
Status: install ok installed
Architecture: amd64
Version: 2.36-9+deb12u4

Package: openssl
Status: deinstall ok config-files
Architecture: amd64
Version: 3.0.11-1~deb12u2
EOF
    ln -s /srv/www "$t/etc/site"
}

# ext, GPT: root and /srv.
t=$work/root
linux_tree "$t"
mkdir -p "$work/srv/www"
echo hello >"$work/srv/www/index.html"
img=$work/linux-gpt.img
truncate -s 384K "$img"
sfdisk --quiet "$img" <<'EOF'
label: gpt
first-lba: 34
start=40, size=400, name=root
start=440, size=256, name=srv
EOF
mke2fs -q -F -t ext2 -b 1024 -N 32 -L root -E offset=$((40 * 512)) \
    -d "$t" "$img" 200K
mke2fs -q -F -t ext4 -O ^has_journal -b 1024 -N 16 -L srv \
    -E offset=$((440 * 512)) -d "$work/srv" "$img" 128K
seed "$img" corpus-image-ext

# ext, MBR: ext4 with inline data and Debian's os-release link.
rm -rf "$t"
linux_tree "$t"
mv "$t/etc/os-release" "$t/usr/lib/os-release"
ln -s ../usr/lib/os-release "$t/etc/os-release"
img=$work/linux-mbr.img
truncate -s 256K "$img"
sfdisk --quiet "$img" <<'EOF'
label: dos
label-id: 0x0badcafe
start=8, size=496, type=83
EOF
mke2fs -q -F -t ext4 -O ^has_journal,inline_data -b 1024 -N 32 -L root \
    -E offset=$((8 * 512)) -d "$t" "$img" 248K
seed "$img" corpus-image-ext

# ext, no table.
img=$work/linux-whole.img
truncate -s 160K "$img"
mke2fs -q -F -t ext2 -b 1024 -N 32 -d "$t" "$img" 160K
seed "$img" corpus-image-ext

# NTFS: the hives, then the volume.
w=$work/win
mkdir -p "$w/Windows/System32/config"
cp "$here/corpus-hive/software.hive" "$w/Windows/System32/config/SOFTWARE"
cp "$here/corpus-hive/software.hive" "$w/Windows/System32/config/SYSTEM"
hivexsh -w "$w/Windows/System32/config/SYSTEM" <<'EOF'
add MountedDevices
cd MountedDevices
setval 2
\DosDevices\C:
hex:3:fe,ca,ad,0b,00,10,00,00,00,00,00,00
\DosDevices\D:
hex:3:fe,ca,ad,0b,00,20,10,00,00,00,00,00
commit
EOF
part=$work/ntfs.part
truncate -s 1028K "$part"
mkntfs -F -Q -q -s 512 -p 8 -H 0 -S 0 -L Windows "$part" 2>/dev/null
"$populate" "$part" "$w"
img=$work/windows-mbr.img
# 8 sectors of table, the NTFS, and an empty D: of 8 sectors.
truncate -s $((4096 + 1028 * 1024 + 4096)) "$img"
sfdisk --quiet "$img" <<EOF
label: dos
label-id: 0x0badcafe
start=8, size=$((1028 * 2)), type=7, bootable
start=$((8 + 1028 * 2)), size=8, type=7
EOF
dd if="$part" of="$img" bs=512 seek=8 conv=notrunc status=none
seed "$img" corpus-image-ntfs
mkntfs -F -Q -q -s 512 -p 0 -H 0 -S 0 -L Windows "$part" 2>/dev/null
"$populate" "$part" "$w"
seed "$part" corpus-image-ntfs windows-whole
ls -l "$out"/corpus-image-*
