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

segment() {  # N START COUNT PE [TYPE]
    printf '\t\t\tsegment%s {\n\t\t\t\tstart_extent = %s\n\t\t\t\textent_count = %s\n\t\t\t\ttype = "%s"\n\t\t\t\tstripe_count = 1\n\t\t\t\tstripes = [ "pv0", %s ]\n\t\t\t}\n' \
        "$1" "$2" "$3" "${5:-striped}" "$4"
}

volume() {  # NAME STATUS SEGMENT-TEXT COUNT
    printf '\t\t%s {\n\t\t\tid = "%s"\n\t\t\tstatus = [ %s ]\n\t\t\tflags = [ ]\n\t\t\tsegment_count = %s\n%s\t\t}\n' \
        "$1" "$(printf '%-6.6s-0000-0000-0000-0000-0000-000000' "$1" | tr ' ' x)" \
        "$2" "$4" "$3"
}

seed() {  # NAME LOGICAL-VOLUMES-TEXT
    local img=$work/$1 loop cfg
    truncate -s 512K "$img"
    loop=$(losetup --find --show "$img")
    cfg="devices { filter = [ \"a|^$loop\$|\", \"r|.*|\" ] use_devicesfile = 0
         pv_min_size = 512 } backup { backup = 0 archive = 0 }"
    {
        lvm pvcreate -y --metadatasize 32k --dataalignment 64k \
            --config "$cfg" "$loop" &&
        lvm vgcreate -s 16k --config "$cfg" seed-vg "$loop" &&
        lvm vgcfgbackup --config "$cfg" -f "$work/meta" seed-vg &&
        awk -v lvs="$2" '
            /^\tseqno = / { $0 = "\tseqno = 2" }
            /^}/ && !done { print lvs; done = 1 }
            { print }' "$work/meta" >"$work/meta.new" &&
        lvm vgcfgrestore --config "$cfg" -f "$work/meta.new" seed-vg
    } >"$work/lvm.log" 2>&1 || { losetup -d "$loop"; cat "$work/lvm.log" >&2; exit 1; }
    losetup -d "$loop"
    cp "$img" "$out/$1"
}

seed linear.img "$(printf '\n\tlogical_volumes {\n%s%s\t}\n' \
    "$(volume root '"READ", "WRITE", "VISIBLE"' \
        "$(segment 1 0 8 2)$(segment 2 8 4 10)" 2)" \
    "$(volume srv '"READ", "WRITE", "VISIBLE"' "$(segment 1 0 6 20)" 1)")"
seed hidden.img "$(printf '\n\tlogical_volumes {\n%s%s\t}\n' \
    "$(volume root '"READ", "WRITE", "VISIBLE"' "$(segment 1 0 4 0)" 1)" \
    "$(volume meta '"READ", "WRITE"' "$(segment 1 0 2 6)" 1)")"
