#!/usr/bin/env bash
# Offline servicing benchmark: the same Linux job and Windows job done by
# vmaugment-offline and by libguestfs (one guestfish appliance session per
# job, its best case) on the same images, with the ratios; then the patch
# time on a 2 GiB and a 20 GiB sparse image.
#
#   tests/bench/offline-bench.sh [BUILD_DIR]     (default build/vmaugment)
#
#   VMAUGMENT_BENCH_RUNS          vmaugment-offline runs per job (median; 5)
#   VMAUGMENT_BENCH_GUESTFS_RUNS  libguestfs runs per job (median; 1; 0
#                                 skips libguestfs)
#
# Linux job: inspect, decide (os-release, dpkg version of libc6, old hash
# of /etc/motd), replace 1 file, add 3 (one of 5 MiB, across two
# filesystems), mkdir, delete 1, chmod 1, verify.
# Windows job: inspect, decide (build, registry value, old hash), replace
# 1 file, add 1, delete 1, 3 registry operations, verify.
# libguestfs runs under TCG here (no usable KVM); LIBGUESTFS_BACKEND_SETTINGS
# is set to force_tcg unless already set.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$root/build/vmaugment}" && pwd)
export VMAUGMENT_OFFLINE=$build/offline/vmaugment-offline
export VMAUGMENT_KEYGEN=$build/trust/vmaugment-keygen
export VMAUGMENT_NTFS_POPULATE=$build/offline/tests/ntfs-populate
runs=${VMAUGMENT_BENCH_RUNS:-5}
gruns=${VMAUGMENT_BENCH_GUESTFS_RUNS:-1}
export LIBGUESTFS_BACKEND=${LIBGUESTFS_BACKEND:-direct}
export LIBGUESTFS_BACKEND_SETTINGS=${LIBGUESTFS_BACKEND_SETTINGS:-force_tcg}

# shellcheck source=../../offline/tests/lib.sh
source "$root/offline/tests/lib.sh"

command -v guestfish >/dev/null ||
    fail "guestfish missing (scripts/deps/offline.txt lists libguestfs-tools)"

lfix=$(fixtures_linux)
wfix=$(bash "$here/make-fixtures.sh" windows)
make_identity
make_payloads
build_bundle "$tmp/demo.vmab" "$demo_rules" "$demo_files"

mkdir -p "$tmp/wpayload"
printf '127.0.0.1 localhost\r\n10.0.0.1 update.example\r\n' >"$tmp/wpayload/hosts"
head -c 300000 /dev/urandom >"$tmp/wpayload/patch.dll"
hosts_sha=$(printf '127.0.0.1 localhost\r\n' | sha256sum | cut -d' ' -f1)
cat >"$tmp/win.json" <<JSON
{"format": 1, "id": "win-bench", "version": "1",
 "applies": [{"os": {"family": "windows", "current_build": "19045"}},
   {"registry": {"hive": "SOFTWARE", "key": "Microsoft\\\\Windows NT\\\\CurrentVersion", "name": "EditionID", "equals": "Professional"}}],
 "files": [
  {"op": "replace", "path": "C:\\\\Windows\\\\System32\\\\drivers\\\\etc\\\\hosts", "payload": "hosts", "old_sha256": "$hosts_sha"},
  {"op": "add", "path": "C:\\\\Program Files\\\\Demo\\\\patch.dll", "payload": "patch.dll"},
  {"op": "delete", "path": "C:\\\\Users\\\\Public\\\\old.log"}],
 "registry": [
  {"op": "set", "hive": "SOFTWARE", "key": "Vendor\\\\Demo", "name": "Version", "type": "sz", "value": "2.0"},
  {"op": "set", "hive": "SOFTWARE", "key": "Vendor\\\\Demo", "name": "Patched", "type": "dword", "value": 1},
  {"op": "delete-value", "hive": "SOFTWARE", "key": "Microsoft\\\\Windows\\\\CurrentVersion\\\\Uninstall\\\\7-Zip", "name": "Publisher"}]}
JSON
"$VMAUGMENT_OFFLINE" bundle-build --key "$tmp/admin.key" --cert "$tmp/trust/admin.pem" \
    --payload-dir "$tmp/wpayload" --output "$tmp/win.vmab" "$tmp/win.json"

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# vmaugment-offline: apply (inspect, decide, patch, verify, commit) and an
# independent verify by a second process, on a fresh copy each run (the
# copy is not timed).
vo_job() {
    local src=$1 bundle=$2 img=$tmp/job.${1##*.} t0
    for _ in $(seq "$runs"); do
        cp --sparse=always "$src" "$img"
        sync
        t0=$(now_ms)
        vo apply "$img" "$bundle" >"$tmp/apply.json" ||
            { cat "$tmp/apply.json" >&2; fail "vmaugment-offline apply"; }
        vo verify "$img" "$bundle" >/dev/null
        echo $(( $(now_ms) - t0 ))
    done | median
}

gf() { guestfish --remote -- "$@"; }

gf_start() {
    eval "$(guestfish --listen)"
    # Jobs run in subshells: stop this appliance if the job fails.
    trap 'guestfish --remote -- exit >/dev/null 2>&1 || true' EXIT
    gf add-drive "$1" format:"$2"
    gf run
}

gf_stop() {
    gf umount-all
    gf exit
}

guestfs_linux_job() {
    local img=$tmp/gjob.qcow2 t0
    for _ in $(seq "$gruns"); do
        cp "$lfix/debian.qcow2" "$img"
        t0=$(now_ms)
        gf_start "$img" qcow2
        # Inspect and decide.
        local root
        root=$(gf inspect-os | head -1)
        gf mount "$root" /
        gf mount /dev/sda2 /srv
        gf cat /etc/os-release | grep -q '^ID=debian' || fail "guestfs: os"
        gf download /var/lib/dpkg/status "$tmp/status"
        local libc
        libc=$(awk '/^Package: libc6$/ {p=1} p && /^Version:/ {print $2; exit}' "$tmp/status")
        dpkg --compare-versions "$libc" ge 2.36 || fail "guestfs: libc6"
        [ "$(gf checksum sha256 /etc/motd)" = "$motd_sha" ] || fail "guestfs: motd"
        # Patch.
        gf upload "$tmp/payload/motd" /etc/motd
        gf mkdir /opt/demo
        gf upload "$tmp/payload/big.bin" /opt/demo/big.bin
        gf upload "$tmp/payload/tool" /usr/local/bin/tool
        gf chmod 0755 /usr/local/bin/tool
        gf upload "$tmp/payload/site.conf" /srv/www/site.conf
        gf chown 33 33 /srv/www/site.conf
        gf rm /etc/issue.net
        gf chmod 0600 /etc/hostname
        gf sync
        # Verify.
        [ "$(gf checksum sha256 /opt/demo/big.bin)" = \
          "$(sha256sum <"$tmp/payload/big.bin" | cut -d' ' -f1)" ] || fail "guestfs: verify"
        [ "$(gf exists /etc/issue.net)" = false ] || fail "guestfs: verify delete"
        gf_stop
        echo $(( $(now_ms) - t0 ))
    done | median
}

guestfs_windows_job() {
    local img=$tmp/gwin.qcow2 t0
    for _ in $(seq "$gruns"); do
        cp "$wfix/windows.qcow2" "$img"
        t0=$(now_ms)
        gf_start "$img" qcow2
        gf mount /dev/sda1 /
        local sw=/Windows/System32/config/SOFTWARE
        gf download "$sw" "$tmp/SOFTWARE"
        [ "$(hivexget "$tmp/SOFTWARE" 'Microsoft\Windows NT\CurrentVersion' CurrentBuild)" = 19045 ] ||
            fail "guestfs: build"
        [ "$(hivexget "$tmp/SOFTWARE" 'Microsoft\Windows NT\CurrentVersion' EditionID)" = Professional ] ||
            fail "guestfs: edition"
        [ "$(gf checksum sha256 /Windows/System32/drivers/etc/hosts)" = "$hosts_sha" ] ||
            fail "guestfs: hosts"
        gf upload "$tmp/wpayload/hosts" /Windows/System32/drivers/etc/hosts
        gf upload "$tmp/wpayload/patch.dll" "/Program Files/Demo/patch.dll"
        gf rm /Users/Public/old.log
        hivexsh -w "$tmp/SOFTWARE" <<'HIVE'
add Vendor
cd Vendor
add Demo
cd Demo
setval 2
Version
string:2.0
Patched
dword:0x00000001
cd \Microsoft\Windows\CurrentVersion\Uninstall\7-Zip
setval 2
DisplayName
string:7-Zip 23.01 (x64)
DisplayVersion
string:23.01
commit
HIVE
        gf upload "$tmp/SOFTWARE" "$sw"
        gf sync
        [ "$(gf checksum sha256 "/Program Files/Demo/patch.dll")" = \
          "$(sha256sum <"$tmp/wpayload/patch.dll" | cut -d' ' -f1)" ] || fail "guestfs: verify"
        gf download "$sw" "$tmp/SOFTWARE.check"
        [ "$(hivexget "$tmp/SOFTWARE.check" 'Vendor\Demo' Version)" = 2.0 ] ||
            fail "guestfs: verify registry"
        gf_stop
        echo $(( $(now_ms) - t0 ))
    done | median
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.0f", a / (b > 0 ? b : 1)}'; }

# The fixed cost of one job: qemu-img info, qemu-nbd, and the worker's
# start, namespaces and confinement, on a blank disk where it finds
# nothing to read (apply and verify are two such jobs).
fixed_job() {
    "$QEMU_IMG" create -q -f raw "$tmp/blank.raw" 1M
    for _ in $(seq "$runs"); do
        local t0
        t0=$(now_ms)
        "$VMAUGMENT_OFFLINE" inspect "$tmp/blank.raw" >/dev/null 2>&1 || true
        echo $(( $(now_ms) - t0 ))
    done | median
}

echo "# vmaugment-offline: median of $runs runs; libguestfs: median of $gruns"
vo_linux=$(vo_job "$lfix/debian.qcow2" "$tmp/demo.vmab")
vo_win=$(vo_job "$wfix/windows.qcow2" "$tmp/win.vmab")
echo "linux job   vmaugment-offline ${vo_linux} ms"
echo "windows job vmaugment-offline ${vo_win} ms"
echo "fixed cost of one job (qemu-img info, qemu-nbd, worker start and confinement) $(fixed_job) ms"
# VMAUGMENT_BENCH_GUESTFS_RUNS=0: vmaugment-offline's figures only.
if [ "$gruns" -gt 0 ]; then
    gf_linux=$(guestfs_linux_job)
    echo "linux job   libguestfs        ${gf_linux} ms   ratio $(ratio "$gf_linux" "$vo_linux")x (target >= 30x)"
    gf_win=$(guestfs_windows_job)
    echo "windows job libguestfs        ${gf_win} ms   ratio $(ratio "$gf_win" "$vo_win")x (target >= 100x)"
fi

# Patch time against image size: the same partitions on 2 GiB and 20 GiB
# sparse disks (GPT backup header moved to the new end).
for size in 2G 20G; do
    raw=$tmp/size-$size.raw
    cp --sparse=always "$lfix/debian.raw" "$raw"
    truncate -s "$size" "$raw"
    sfdisk --quiet --relocate gpt-bak-std "$raw" 2>/dev/null
    "$QEMU_IMG" convert -O qcow2 "$raw" "$tmp/size-$size.qcow2"
    rm -f "$raw"
done
t2=$(vo_job "$tmp/size-2G.qcow2" "$tmp/demo.vmab")
t20=$(vo_job "$tmp/size-20G.qcow2" "$tmp/demo.vmab")
diff_pct=$(awk -v a="$t2" -v b="$t20" 'BEGIN {d = (b - a) / a * 100; if (d < 0) d = -d; printf "%.1f", d}')
echo "size        2 GiB ${t2} ms, 20 GiB ${t20} ms, difference ${diff_pct}% (target < 20%)"
