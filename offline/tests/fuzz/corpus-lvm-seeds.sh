#!/usr/bin/env bash
# Makes the seeds of fuzz-lvm (corpus-lvm): the smallest LVM2 physical
# volumes lvm accepts (512 KiB, a 32 KiB metadata area, 16 KiB extents),
# written by lvm's own pvcreate and vgcreate on a loop device, their
# volumes added by vgcfgrestore (lvcreate needs device-mapper).  The
# committed seeds were made by this script; run it again only to change
# them.  Needs root, losetup and lvm2.
#
#   corpus-lvm-seeds.sh OUT-DIR
#
# linear.img: "root" in two segments one after the other, "srv" apart;
# hidden.img: a linear volume beside a hidden one (a pool's or a
#            mirror's internal volume, skipped).
set -euo pipefail

out=$1/corpus-lvm
export PATH=$PATH:/usr/sbin:/sbin
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

# shellcheck source=offline/tests/lvm-lib.sh
. "$(dirname "$0")/../lvm-lib.sh"
visible='"READ", "WRITE", "VISIBLE"'

seed() {  # NAME LOGICAL-VOLUMES-TEXT
    local img=$work/$1 loop rc=0
    truncate -s 512K "$img"
    loop=$(losetup --find --show "$img")
    lvm_vg "$loop" seed-vg "$2" "$work/lvm.log" \
        --metadatasize 32k --dataalignment 64k -- -s 16k >/dev/null || rc=$?
    losetup -d "$loop"
    [ $rc -eq 0 ] || { cat "$work/lvm.log" >&2; exit 1; }
    cp "$img" "$out/$1"
}

seed linear.img "$(lvm_volumes \
    "$(lvm_volume root "$visible" "0 8 2" "8 4 10")" \
    "$(lvm_volume srv "$visible" "0 6 20")")"
seed hidden.img "$(lvm_volumes \
    "$(lvm_volume root "$visible" "0 4 0")" \
    "$(lvm_volume meta '"READ", "WRITE"' "0 2 6")")"
