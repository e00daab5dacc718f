#!/usr/bin/env bash
# Hostile images (docs/offline.rst, "Confinement"; docs/testing.rst,
# "Hostile images"): disks crafted against their reader, each made here
# from a tiny sound guest with the filesystem tools (debugfs, mke2fs,
# hivexsh, python), never committed.  Each goes through the real
# vmaugment-offline, and so through its confined worker, and must end in
# a clear refusal: exit status 1 and a message saying what is wrong,
# never a crash report; within a bound (a hang fails); with the memory of
# the whole process tree bounded; and with the image's bytes unchanged.
# A qcow2 whose backing file names a host file is test-confinement's.
source "$(dirname "$0")/lib.sh"

need debugfs e2fsprogs
need mke2fs e2fsprogs
need sfdisk fdisk
need mkntfs ntfs-3g
need hivexsh libhivex-bin
[ -x /usr/bin/time ] || fail "/usr/bin/time is missing: install time"
: "${VMAUGMENT_NTFS_POPULATE:?the ntfs-populate helper}"
plan 18

# No refusal needs more than this much memory in any process of the
# tree (maximum resident set of the parent, its tools and its worker).
max_rss_kib=$((256 * 1024))

# hostile NAME PATTERN IMAGE [ARGS...]: inspect IMAGE (qcow2); expects
# the refusal PATTERN, bounded memory and the image unchanged.
hostile() {
    local name=$1 pattern=$2 img=$3 before rss
    shift 3
    before=$(sha256sum <"$img")
    # The bound is no wall-clock assertion: it turns a hang into a failure.
    local rc=0
    /usr/bin/time -f '%M' -o "$tmp/rss" timeout 120 \
        "$VMAUGMENT_OFFLINE" --format qcow2 "$@" inspect "$img" \
        >/dev/null 2>"$tmp/err" || rc=$?
    [ "$rc" -ne 124 ] || fail "$name: no answer within 120 s"
    grep -v '^Command exited' "$tmp/err" >"$tmp/err.msg" || true
    [ "$rc" -eq 1 ] ||
        fail "$name: expected exit 1 ($pattern), got $rc: $(cat "$tmp/err.msg")"
    grep -qE -- "^vmaugment-offline: .*($pattern)" "$tmp/err.msg" ||
        fail "$name: the refusal did not say '$pattern': $(cat "$tmp/err.msg")"
    ! grep -qE 'signal|worker .*ended' "$tmp/err.msg" ||
        fail "$name: the worker crashed: $(cat "$tmp/err.msg")"
    rss=$(tail -n1 "$tmp/rss")
    [ "$rss" -le "$max_rss_kib" ] ||
        fail "$name: $rss KiB resident, more than $max_rss_kib KiB"
    [ "$(sha256sum <"$img")" = "$before" ] || fail "$name: the image changed"
    pass "$name: refused ($(head -n1 "$tmp/err.msg" | cut -c20-140))," \
        "${rss} KiB"
}

# A minimal Debian-like tree in $1.
linux_tree() {
    local t=$1
    rm -rf "$t"
    mkdir -p "$t/etc" "$t/usr/lib" "$t/var/lib/dpkg"
    printf 'ID=debian\nVERSION_ID="12"\n' >"$t/etc/os-release"
    printf 'LABEL=root / ext4 defaults 0 1\n' >"$t/etc/fstab"
    printf 'Package: libc6\nStatus: install ok installed\nVersion: 2.36\n' \
        >"$t/var/lib/dpkg/status"
}
# A sound Linux guest: GPT, one ext4 of 8 MiB at 1 MiB.  $1 the raw disk,
# $2 the tree to copy in, then options for mke2fs.
ext_off=$((2048 * 512))
linux_disk() {
    local raw=$1 tree=$2
    shift 2
    rm -f "$raw"
    truncate -s 10M "$raw"
    printf 'label: gpt\nstart=2048, size=16384, name=root\n' |
        sfdisk --quiet "$raw"
    # 4 KiB blocks: a link may be as long as a block.
    mke2fs -q -F -t ext4 -b 4096 -L root -E offset=$ext_off -d "$tree" \
        "$@" "$raw" 8M
}
# debugfs_w RAW: runs the debugfs requests on stdin, writing.
debugfs_w() {
    debugfs -w -f - "$1?offset=$ext_off" >/dev/null 2>"$tmp/debugfs.err"
    ! grep -v '^debugfs [0-9.]* (' "$tmp/debugfs.err" ||
        fail "debugfs could not craft $1"
}
qcow2() {
    "$QEMU_IMG" convert -O qcow2 "$1" "${1%.raw}.qcow2"
    rm -f "$1"
}

linux_tree "$tmp/tree"
linux_disk "$tmp/sound.raw" "$tmp/tree"
cp "$tmp/sound.raw" "$tmp/check.raw"
qcow2 "$tmp/check.raw"
/usr/bin/time -f '%M' -o "$tmp/rss" \
    "$VMAUGMENT_OFFLINE" --format qcow2 inspect "$tmp/check.qcow2" \
    >"$tmp/inv.json" || fail "the sound guest is not inspected"
[ "$(json_get "$tmp/inv.json" os id)" = debian ] ||
    fail "the sound guest: $(cat "$tmp/inv.json")"
sound_rss=$(tail -n1 "$tmp/rss")
pass "the sound guest every fixture starts from is inspected"

# 2-3: corrupt superblocks, their checksum made right again by debugfs.
cp "$tmp/sound.raw" "$tmp/sb.raw"
debugfs_w "$tmp/sb.raw" <<<"ssv inodes_per_group 0"
qcow2 "$tmp/sb.raw"
hostile "corrupt superblock (no inodes per group)" \
    'superblock is corrupt' "$tmp/sb.qcow2"
cp "$tmp/sound.raw" "$tmp/sb2.raw"
debugfs_w "$tmp/sb2.raw" <<<"ssv blocks_count 0x7fffffffff"
qcow2 "$tmp/sb2.raw"
hostile "corrupt superblock (blocks beyond the partition)" \
    'superblock is corrupt' "$tmp/sb2.qcow2"

# 4: a loop of links where os-release should be: refused, not taken for
# a guest without os-release.
cp "$tmp/sound.raw" "$tmp/loop.raw"
debugfs_w "$tmp/loop.raw" <<'EOF'
rm /etc/os-release
symlink /etc/os-release /etc/b
symlink /etc/b /etc/os-release
EOF
qcow2 "$tmp/loop.raw"
hostile "a loop of symbolic links" 'too many levels of symbolic links' \
    "$tmp/loop.qcow2"

# 5: a directory cycle (/a is the root directory again) walked by a chain
# of 40 links of 2,000 components each (a/a/.../a/l2): each component
# costs one lookup, and the 41st link is refused.  A walk that restarted
# at the root for each component took minutes for this one file.
linux_tree "$tmp/tree"
rm "$tmp/tree/etc/os-release"
python3 - "$tmp/tree" <<'EOF'
import os, sys
root = sys.argv[1]
deep = "a/" * 2000
os.symlink("/" + deep + "l1", os.path.join(root, "etc/os-release"))
for i in range(1, 41):
    os.symlink("/" + deep + "l%d" % (i + 1), os.path.join(root, "l%d" % i))
EOF
linux_disk "$tmp/cycle.raw" "$tmp/tree"
debugfs_w "$tmp/cycle.raw" <<<"ln <2> /a"
qcow2 "$tmp/cycle.raw"
hostile "a directory cycle walked by long links" \
    'too many levels of symbolic links' "$tmp/cycle.qcow2"

# 6-7: a link whose inode claims 100,000 bytes, and an entry naming an
# unused inode.
cp "$tmp/sound.raw" "$tmp/long.raw"
debugfs_w "$tmp/long.raw" <<'EOF'
rm /etc/os-release
symlink /etc/os-release /usr/lib/os-release
sif /etc/os-release size 100000
EOF
qcow2 "$tmp/long.raw"
hostile "a symbolic link longer than a path" 'not a valid symlink' \
    "$tmp/long.qcow2"
cp "$tmp/sound.raw" "$tmp/ino.raw"
debugfs_w "$tmp/ino.raw" <<'EOF'
unlink /etc/os-release
ln <40> /etc/os-release
EOF
qcow2 "$tmp/ino.raw"
hostile "an entry naming an unused inode" 'not a regular file' \
    "$tmp/ino.qcow2"

# 8: a name overrunning its directory entry (255 bytes in a record of
# 16; without metadata checksums, which would catch it first): the fstab
# cannot be read, and without it the mounts are unknown.
linux_tree "$tmp/tree"
linux_disk "$tmp/name.raw" "$tmp/tree" -O ^metadata_csum
blk=$(debugfs -R "blocks /etc" "$tmp/name.raw?offset=$ext_off" 2>/dev/null)
python3 - "$tmp/name.raw" $((ext_off + ${blk%% *} * 4096)) <<'EOF'
import struct, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2]))
    b = bytearray(f.read(4096))
    p = 0
    while p < len(b):
        ino, rec, nl, ft = struct.unpack_from("<IHBB", b, p)
        if bytes(b[p + 8:p + 8 + nl]) == b"fstab":
            b[p + 6] = 255
            break
        p += rec
    else:
        sys.exit("no fstab entry in /etc")
    f.seek(int(sys.argv[2]))
    f.write(b)
EOF
qcow2 "$tmp/name.raw"
hostile "a name longer than its directory entry" 'directory corrupted' \
    "$tmp/name.qcow2"

# 9-10: a dpkg status with a gigabyte field (a sparse file: the image
# stays small), and one of 512 MiB, refused before it is read.
for size in 1024 512; do
    linux_tree "$tmp/tree"
    python3 - "$tmp/tree/var/lib/dpkg/status" "$size" <<'EOF'
import sys
with open(sys.argv[1], "wb") as f:
    f.write(b"Package: libc6\nStatus: install ok installed\nVersion: ")
    f.seek(int(sys.argv[2]) << 20, 1)
    f.write(b"1\n")
EOF
    linux_disk "$tmp/dpkg.raw" "$tmp/tree"
    qcow2 "$tmp/dpkg.raw"
    hostile "a dpkg status with a field of $size MiB" \
        'status in the guest is implausibly large' "$tmp/dpkg.qcow2"
done
# 11: one of 200 MiB, within the bound, but a hole after its first
# line: refused at the hole's first NUL byte, not read whole (200 MiB
# of a buffer for 16 KiB of image).
linux_tree "$tmp/tree"
python3 - "$tmp/tree/var/lib/dpkg/status" <<'EOF'
import sys
with open(sys.argv[1], "wb") as f:
    f.write(b"Package: libc6\nStatus: install ok installed\nVersion: ")
    f.seek(200 << 20, 1)
    f.write(b"1\n")
EOF
linux_disk "$tmp/hole.raw" "$tmp/tree"
qcow2 "$tmp/hole.raw"
hostile "a dpkg status of 200 MiB, a hole after its first line" \
    'status in the guest is not text: a NUL byte at offset 53' \
    "$tmp/hole.qcow2"

# 12-13: an fstab of 10,000 entries, and one of 10,000 long lines (too
# big to map): refused, not mapped or ignored (a path below an ignored
# mount would be written to the directory it hides).
linux_tree "$tmp/tree"
seq 10000 | sed 's|.*|/dev/vda1 /m& ext4 0 0|' >>"$tmp/tree/etc/fstab"
linux_disk "$tmp/fstab.raw" "$tmp/tree"
qcow2 "$tmp/fstab.raw"
hostile "an fstab of 10,000 entries" 'fstab has implausibly many entries' \
    "$tmp/fstab.qcow2"
linux_tree "$tmp/tree"
uuid=7d3c9c4e-5b0e-4f41-9a53-6f5fd1a0c002
seq 10000 | sed "s|.*|UUID=$uuid /srv/&  ext4 defaults,noatime 0 2|" \
    >>"$tmp/tree/etc/fstab"
linux_disk "$tmp/fstab2.raw" "$tmp/tree"
qcow2 "$tmp/fstab2.raw"
hostile "an fstab of 10,000 long lines" \
    'fstab in the guest is implausibly large' "$tmp/fstab2.qcow2"

# 14-16: Windows guests whose SOFTWARE hive is broken: a corrupt header,
# a list of subkeys that is its own index (hivex refuses it: the key is
# not absent, the hive is broken), and an Uninstall key listing itself
# as a subkey (a cell loop hivex reads without complaint).
hive=$here/fuzz/corpus-hive/software.hive
windows_disk() {
    local name=$1 soft=$2 w=$tmp/win part=$tmp/ntfs.part raw=$tmp/$1.raw
    rm -rf "$w"
    mkdir -p "$w/Windows/System32/config"
    cp "$soft" "$w/Windows/System32/config/SOFTWARE"
    rm -f "$part"
    truncate -s 8M "$part"
    mkntfs -F -Q -q -s 512 -p 2048 -H 0 -S 0 "$part" 2>/dev/null
    "$VMAUGMENT_NTFS_POPULATE" "$part" "$w" >/dev/null
    truncate -s 10M "$raw"
    printf 'label: dos\nstart=2048, size=16384, type=7\n' |
        sfdisk --quiet "$raw"
    dd if="$part" of="$raw" bs=1M seek=1 conv=notrunc status=none
    qcow2 "$raw"
}
cp "$hive" "$tmp/bad-header.hive"
printf 'XXXX' | dd of="$tmp/bad-header.hive" bs=1 seek=$((0x1fc)) conv=notrunc \
    status=none
windows_disk bad-header "$tmp/bad-header.hive"
hostile "a SOFTWARE hive with a corrupt header" 'SOFTWARE hive is not valid' \
    "$tmp/bad-header.qcow2"
# hive_edit MODE OUT: the Uninstall key's list of subkeys, rewritten.
hive_edit() {
    python3 - "$hive" "$2" "$1" <<'EOF'
import struct, sys
src, dst, mode = sys.argv[1:4]
b = bytearray(open(src, "rb").read())
def cell(off):
    return 4096 + off + 4
def subkeys(nk_off):
    lst = struct.unpack_from("<I", b, cell(nk_off) + 0x1C)[0]
    n = struct.unpack_from("<H", b, cell(lst) + 2)[0]
    return lst, [struct.unpack_from("<I", b, cell(lst) + 4 + 8 * i)[0]
                 for i in range(n)]
def name(nk_off):
    nk = cell(nk_off)
    n = struct.unpack_from("<H", b, nk + 0x48)[0]
    return bytes(b[nk + 0x4C:nk + 0x4C + n]).decode("latin-1")
node = struct.unpack_from("<I", b, 0x24)[0]
for comp in ["Microsoft", "Windows", "CurrentVersion", "Uninstall"]:
    node = [c for c in subkeys(node)[1] if name(c) == comp][0]
lst, _ = subkeys(node)
if mode == "index-loop":
    # An index root ("ri") whose one entry is itself.
    b[cell(lst):cell(lst) + 2] = b"ri"
    struct.pack_into("<HI", b, cell(lst) + 2, 1, lst)
else:
    # The key's first subkey is the key itself.
    struct.pack_into("<I", b, cell(lst) + 4, node)
open(dst, "wb").write(b)
EOF
}
hive_edit index-loop "$tmp/index-loop.hive"
windows_disk index-loop "$tmp/index-loop.hive"
hostile "a hive whose key index is its own entry" "hive's key list is corrupt" \
    "$tmp/index-loop.qcow2"
hive_edit cell-loop "$tmp/cell-loop.hive"
windows_disk cell-loop "$tmp/cell-loop.hive"
hostile "a hive whose key lists itself as a subkey" \
    "hive's key list is corrupt" "$tmp/cell-loop.qcow2"

# 17-18: files whose start is all a reader needs, made huge (sparse, so
# the image stays small): an os-release of 900 MiB, and a /bin/bash of
# 60 MiB whose start is an x86-64 ELF header.  Inspected from their
# first bytes only (os-release(5) is read to 64 KiB at most, the
# architecture is the header's), with no more memory than the sound
# guest took, give or take 32 MiB.
for what in etc/os-release:900 bin/bash:60; do
    file=${what%%:*} size=${what##*:}
    linux_tree "$tmp/tree"
    mkdir -p "$tmp/tree/bin"
    python3 - "$tmp/tree" "$file" "$size" <<'EOF'
import os, sys
tree, what, mib = sys.argv[1], sys.argv[2], int(sys.argv[3])
if what == "etc/os-release":
    head = b'ID=debian\nVERSION_ID="12"\n'
else:
    # e_ident: 64-bit, little endian, version 1; e_machine 62 (x86-64).
    head = b"\x7fELF\x02\x01\x01" + bytes(11) + b"\x3e\x00"
with open(os.path.join(tree, what), "wb") as f:
    f.write(head)
    f.seek(mib << 20)
    f.write(b"\n")
EOF
    linux_disk "$tmp/big.raw" "$tmp/tree"
    qcow2 "$tmp/big.raw"
    /usr/bin/time -f '%M' -o "$tmp/rss" timeout 120 \
        "$VMAUGMENT_OFFLINE" --format qcow2 inspect "$tmp/big.qcow2" \
        >"$tmp/inv.json" 2>"$tmp/err" ||
        fail "/$file of $size MiB: not inspected: $(cat "$tmp/err")"
    [ "$(json_get "$tmp/inv.json" os id)" = debian ] ||
        fail "/$file of $size MiB: $(cat "$tmp/inv.json")"
    if [ "$file" = bin/bash ]; then
        [ "$(json_get "$tmp/inv.json" os arch)" = x86_64 ] ||
            fail "/$file of $size MiB: no arch: $(cat "$tmp/inv.json")"
    fi
    rss=$(tail -n1 "$tmp/rss")
    [ "$rss" -le $((sound_rss + 32 * 1024)) ] ||
        fail "/$file of $size MiB: $rss KiB resident, the sound guest $sound_rss KiB"
    pass "/$file of $size MiB: only its start read ($rss KiB, the sound guest $sound_rss KiB)"
done
