# shellcheck shell=bash
# LVM2 volume groups for the offline tests' fixtures and fuzz seeds,
# written by lvm itself on a loop device: pvcreate and vgcreate, then the
# logical volumes through vgcfgrestore (lvcreate needs device-mapper,
# which the test hosts lack; vgcfgrestore only writes metadata).  Sourced.

# lvm_segment N START COUNT PE: the Nth segment of a linear volume.
lvm_segment() {
    printf '\t\t\tsegment%s {\n\t\t\t\tstart_extent = %s\n\t\t\t\textent_count = %s\n\t\t\t\ttype = "striped"\n\t\t\t\tstripe_count = 1\n\t\t\t\tstripes = [ "pv0", %s ]\n\t\t\t}\n' \
        "$1" "$2" "$3" "$4"
}

# lvm_volume NAME STATUS SEGMENT...: a volume whose status flags are
# STATUS ('"READ", "WRITE", "VISIBLE"') and segments "START COUNT PE".
lvm_volume() {
    local name=$1 status=$2 n=0 segs= seg
    shift 2
    for seg in "$@"; do
        n=$((n + 1))
        # shellcheck disable=SC2086 # three numbers
        segs+=$(lvm_segment $n $seg)$'\n'
    done
    printf '\t\t%s {\n\t\t\tid = "%s"\n\t\t\tstatus = [ %s ]\n\t\t\tflags = [ ]\n\t\t\tsegment_count = %s\n%s\t\t}\n' \
        "$name" "$(printf '%-6.6s-0000-0000-0000-0000-0000-000000' "$name" | tr ' ' x)" \
        "$status" "$n" "$segs"
}

# lvm_volumes VOLUME...: the logical_volumes section of lvm_volume texts.
lvm_volumes() {
    printf '\n\tlogical_volumes {\n'
    printf '%s\n' "$@"
    printf '\t}\n'
}

# lvm_vg LOOP VG LVS LOG PVCREATE-OPTION... -- VGCREATE-OPTION...: makes
# LOOP a PV of the volume group VG with the volumes of the lvm_volumes text
# LVS, lvm seeing only LOOP and leaving no backup, archive or devices file
# on the host; lvm's messages go to LOG.  Prints "pe_start extent_size"
# (sectors).
lvm_vg() {
    local loop=$1 vg=$2 lvs=$3 log=$4 meta cfg rc
    shift 4
    local pv_opts=() vg_opts=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do pv_opts+=("$1"); shift; done
    [ $# -gt 0 ] && shift
    vg_opts=("$@")
    cfg="devices { filter = [ \"a|^$loop\$|\", \"r|.*|\" ] use_devicesfile = 0
         pv_min_size = 512 } backup { backup = 0 archive = 0 }"
    meta=$(mktemp)
    {
        lvm pvcreate -y "${pv_opts[@]}" --config "$cfg" "$loop" &&
        lvm vgcreate "${vg_opts[@]}" --config "$cfg" "$vg" "$loop" &&
        lvm vgcfgbackup --config "$cfg" -f "$meta" "$vg" &&
        awk -v lvs="$lvs" '
            /^\tseqno = / { $0 = "\tseqno = 2" }
            /^}/ && !done { print lvs; done = 1 }
            { print }' "$meta" >"$meta.new" &&
        lvm vgcfgrestore --config "$cfg" -f "$meta.new" "$vg"
    } >>"$log" 2>&1
    rc=$?
    [ $rc -eq 0 ] &&
        awk '/pe_start/ {p = $3} /extent_size/ {e = $3} END {print p, e}' "$meta"
    rm -f "$meta" "$meta.new"
    return $rc
}
