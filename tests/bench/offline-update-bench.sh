#!/usr/bin/env bash
# Security update benchmark: the same Debian security update of the
# offline tests' bookworm fixture, done to N dormant images (default 10)
# by vmaugment-offline (apt plans per group of identical images, one
# signed bundle per group, apply and verify each image) and by booting
# each image under TCG and running "apt-get update && apt-get upgrade"
# in it (boot-to-patch), from the same local signed repository; with the
# ratio.
#
#   tests/bench/offline-update-bench.sh [BUILD_DIR]  (default build/vmaugment)
#
#   VMAUGMENT_BENCH_IMAGES       images (10: half of them the fixture, half
#                                the fixture with one package on hold, so
#                                that the plan has two groups)
#   VMAUGMENT_BENCH_BOOT_IMAGES  images updated by boot-to-patch (all); the
#                                others are scaled from the measured ones'
#                                mean, and the output says so
#   VMAUGMENT_BENCH_JOBS         batch --jobs (2)
#   VMAUGMENT_BENCH_BOOT_TIMEOUT limit of one boot in seconds (1200)
#   VMAUGMENT_BENCH_LOG_DIR      keep the plan, the reports and the boots'
#                                consoles there (default: not kept)
#   VMAUGMENT_QEMU_BUILD_DIR     the QEMU of the boots (default build/qemu)
#   VMAUGMENT_GUEST_WORK_DIR     the guest kernel's cache, as for
#                                tests/guest/run.sh (default guest-test
#                                beside BUILD_DIR)
#
# The update: the fixture's packages that have a newer version in the
# host apt's bookworm-security (apt-get download, Debian's archive), less
# those with a preinst, which an offline unpack refuses (docs/offline.rst);
# at least 5 are needed.  They go into a repository indexed with
# apt-ftparchive and signed with a throw-away key (offline/tests/deb-lib.sh).
#
# The fixture has no kernel of its own: a boot is Debian 12's kernel (the
# guest tests') with a busybox initramfs that mounts the image's root from
# its virtio disk, the repository from a second, read-only virtio disk,
# and runs apt-get in a chroot of the root, then unmounts and powers off.
# That is the boot-to-patch job without the image's own init and services,
# so the anchor is faster than a full boot would be.
#
# Afterwards every image's dpkg status is read back (debugfs): each path
# must leave the same packages at the same versions, at least 5 of them
# newer than before.  Prints figures; it is not a pass/fail test.
set -euo pipefail
# sort and join agree on the order.
export LC_ALL=C

root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$root/build/vmaugment}" && pwd)
export VMAUGMENT_OFFLINE=$build/offline/vmaugment-offline
export VMAUGMENT_KEYGEN=$build/trust/vmaugment-keygen
nimg=${VMAUGMENT_BENCH_IMAGES:-10}
nboot=${VMAUGMENT_BENCH_BOOT_IMAGES:-$nimg}
jobs=${VMAUGMENT_BENCH_JOBS:-2}
boot_timeout=${VMAUGMENT_BENCH_BOOT_TIMEOUT:-1200}
qemu_build=$(realpath -m "${VMAUGMENT_QEMU_BUILD_DIR:-$root/build/qemu}")
qemu=$qemu_build/qemu-system-x86_64
gwork=$(realpath -m "${VMAUGMENT_GUEST_WORK_DIR:-$(dirname "$build")/guest-test}")
[ "$nimg" -ge 2 ] || { echo "VMAUGMENT_BENCH_IMAGES must be >= 2" >&2; exit 1; }
{ [ "$nboot" -ge 1 ] && [ "$nboot" -le "$nimg" ]; } ||
    { echo "VMAUGMENT_BENCH_BOOT_IMAGES must be 1..$nimg" >&2; exit 1; }

# shellcheck source=offline/tests/lib.sh
source "$root/offline/tests/lib.sh"
# shellcheck source=offline/tests/deb-lib.sh
source "$root/offline/tests/deb-lib.sh"
need debugfs e2fsprogs
need cpio cpio
[ -x "$qemu" ] || fail "no QEMU at $qemu (set VMAUGMENT_QEMU_BUILD_DIR)"

logs=${VMAUGMENT_BENCH_LOG_DIR:-}
# keep FILE...: a copy in VMAUGMENT_BENCH_LOG_DIR, if set.
keep() {
    [ -z "$logs" ] || { mkdir -p "$logs" && cp -r "$@" "$logs/"; }
}
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
say() { printf '%s\n' "$*"; }
echo "# load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"

# --- The repository -------------------------------------------------------
mb=$(bash "$here/make-fixtures.sh" minbase)
fix=$(fixtures_linux)
make_identity
make_repo_keys
pool=$tmp/repo/pool/bookworm-security
mkdir -p "$tmp/repo/pool/bookworm-updates"
security_updates "$mb" "$pool"
nrepo=$nsecurity
[ "$nrepo" -ge 5 ] ||
    fail "only $nrepo security updates without a preinst for the fixture (need 5)"
index "$tmp/repo"
source_line="file:$tmp/repo bookworm-security main"
echo "# repository: $nrepo security updates of the fixture:" \
    "$(find "$pool" -name '*.deb' -printf '%f\n' | sort |
       sed 's/_amd64\.deb$//; s/_all\.deb$//; s/%3a/:/' | tr '\n' ' ')"

# --- The images -----------------------------------------------------------
# The second half of the images: the fixture with hostname on hold (its
# dpkg status edited by a bundle), a different package set that the
# update does not touch.
linux_fixture_status "$tmp/fixture-status"
status_sha=$(sha256sum <"$tmp/fixture-status" | cut -d' ' -f1)
mkdir -p "$tmp/payload" "$tmp/base"
sed -E '/^Package: hostname$/,/^$/s/^Status: install ok installed$/Status: hold ok installed/' \
    "$tmp/fixture-status" >"$tmp/payload/status"
cmp -s "$tmp/fixture-status" "$tmp/payload/status" && fail "no hostname to hold"
MANIFEST_ID=hold build_bundle "$tmp/hold.vmab" "" \
    '{"op": "replace", "path": "/var/lib/dpkg/status", "payload": "status", "old_sha256": "'"$status_sha"'"}'
cp "$fix/debian.qcow2" "$tmp/held.qcow2"
vo apply "$tmp/held.qcow2" "$tmp/hold.vmab" >"$tmp/hold.json" ||
    fail "cannot put hostname on hold: $(cat "$tmp/hold.json")"
for i in $(seq "$nimg"); do
    if [ "$i" -le $((nimg / 2)) ]; then
        cp "$fix/debian.qcow2" "$tmp/base/$(printf 'vm%02d' "$i").qcow2"
    else
        cp "$tmp/held.qcow2" "$tmp/base/$(printf 'vm%02d' "$i").qcow2"
    fi
done
# fresh DIR: a copy of every image in DIR (not timed), their names
# in "${imgs[@]}".
fresh() {
    rm -rf "$1"
    mkdir -p "$1"
    cp "$tmp"/base/*.qcow2 "$1/"
    sync
    imgs=("$1"/*.qcow2)
}

# versions IMAGE: "PACKAGE VERSION STATE" of each package of the image's
# dpkg status, sorted (read with debugfs from a raw copy).
versions() {
    local raw=$tmp/versions.raw
    "$QEMU_IMG" convert -U -O raw "$1" "$raw"
    debugfs_part "$raw" 1 cat /var/lib/dpkg/status >"$tmp/status.txt"
    rm -f "$raw"
    awk '/^Package:/ {p = $2} /^Status:/ {s = $4}
         /^Version:/ {v = $2} /^$/ && p {print p, v, s; p = ""}
         END {if (p) print p, v, s}' "$tmp/status.txt" | sort
}
versions "$tmp/base/vm01.qcow2" >"$tmp/before.txt"

# --- vmaugment-offline ----------------------------------------------------
apt_args=(--apt-source "$source_line" --keyring "$tmp/repo-key.gpg")

# 1. batch: plan, one bundle per group, apply (verified) to each image.
fresh "$tmp/batch"
t0=$(now_ms)
rc=0
vo batch --jobs "$jobs" "${apt_args[@]}" --key "$tmp/admin.key" \
    --cert "$tmp/trust/admin.pem" --report-dir "$tmp/batch-rep" "${imgs[@]}" \
    >"$tmp/batch.json" 2>"$tmp/batch.progress" || rc=$?
batch_ms=$(( $(now_ms) - t0 ))
keep "$tmp/batch-rep" "$tmp/batch.progress"
[ $rc -eq 0 ] || fail "batch exit $rc: $(cat "$tmp/batch.progress")"
python3 - "$tmp/batch-rep" "$nimg" <<'PY' || fail "batch reports"
import glob, json, os, sys
reps = [json.load(open(f)) for f in glob.glob(os.path.join(sys.argv[1], "[0-9]*-*.json"))]
assert len(reps) == int(sys.argv[2]), len(reps)
assert all(r["status"] == "applied" for r in reps), [r["status"] for r in reps]
assert sorted({r["group"] for r in reps}) == [0, 1], [r["group"] for r in reps]
PY

# 2. The same with the separate commands, each stage timed.
fresh "$tmp/cmd"
t0=$(now_ms)
vo plan "${apt_args[@]}" --download-dir "$tmp/cmd-debs" \
    --output "$tmp/plan.json" "${imgs[@]}" >/dev/null || fail "plan failed"
plan_ms=$(( $(now_ms) - t0 ))
keep "$tmp/plan.json"
ngroups=$(json_get "$tmp/plan.json" groups | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))')
t0=$(now_ms)
for g in $(seq 0 $((ngroups - 1))); do
    vo bundle-build --plan "$tmp/plan.json" --debs "$tmp/cmd-debs" \
        --group "$g" --key "$tmp/admin.key" --cert "$tmp/trust/admin.pem" \
        --output "$tmp/group-$g.vmab" >/dev/null || fail "bundle-build --group $g"
done
bundle_ms=$(( $(now_ms) - t0 ))
# The group of each image, in the order of "${imgs[@]}".
mapfile -t img_group < <(python3 - "$tmp/plan.json" "${imgs[@]}" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))["groups"]
for img in sys.argv[2:]:
    print([i for i, x in enumerate(g) if img in x["images"]][0])
PY
)
apply_ms=0
verify_ms=0
apply_each=()
for i in "${!imgs[@]}"; do
    b=$tmp/group-${img_group[$i]}.vmab
    t0=$(now_ms)
    vo apply "${imgs[$i]}" "$b" >"$tmp/apply.json" ||
        fail "apply ${imgs[$i]}: $(cat "$tmp/apply.json")"
    t1=$(now_ms)
    vo verify "${imgs[$i]}" "$b" >"$tmp/verify.json" ||
        fail "verify ${imgs[$i]}: $(cat "$tmp/verify.json")"
    t2=$(now_ms)
    apply_each+=($((t1 - t0)))
    apply_ms=$((apply_ms + t1 - t0))
    verify_ms=$((verify_ms + t2 - t1))
done
cmd_ms=$((plan_ms + bundle_ms + apply_ms + verify_ms))
nplanned=$(python3 -c 'import json, sys
print(" / ".join(str(len(g["packages"])) for g in json.load(open(sys.argv[1]))["groups"]))' \
    "$tmp/plan.json")

# --- Boot-to-patch ----------------------------------------------------------
vars=$(bash "$root/tests/guest/lib/kernel.sh" "$gwork/kernel") ||
    fail "cannot fetch the Debian kernel (tests/guest/lib/kernel.sh)"
eval "$vars"
kroot=${KDIR%/usr/src/*}
[ -f "$KMODS/modules.dep" ] || depmod -b "$kroot" "$KVER"

# The initramfs: static busybox, the virtio, virtio_blk and ext4 modules
# in dependency order ("?": an accelerated variant the CPU may lack), and
# an /init that runs the upgrade.
ird=$tmp/initramfs
mkdir -p "$ird/bin" "$ird/mods"
cp /bin/busybox "$ird/bin/busybox"
file -L "$ird/bin/busybox" | grep -q 'statically linked' ||
    fail "/bin/busybox is not statically linked (install busybox-static)"
: >"$ird/modules.order"
for ko in $(for m in virtio_pci virtio_blk ext4; do
                modprobe -d "$kroot" -S "$KVER" --show-depends "$m"
            done | awk '$1 == "insmod" {print $2}'); do
    grep -q "/$(basename "$ko")\$" "$ird/modules.order" && continue
    cp "$ko" "$ird/mods/"
    opt=-
    case $ko in */arch/*/crypto/*) opt='?' ;; esac
    echo "$opt /mods/$(basename "$ko")" >>"$ird/modules.order"
done
cat >"$ird/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /root /usr/bin /usr/sbin /sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
end() {
    echo "VMAUG-UPGRADE: $*"
    sync
    poweroff -f
}
while read -r opt ko; do
    insmod "$ko" || [ "$opt" = "?" ] || end "FAIL insmod $ko"
done </modules.order
i=0
until [ -b /dev/vda1 ] && [ -b /dev/vdb ]; do
    [ $i -lt 100 ] || end "FAIL no disks"
    usleep 100000
    i=$((i + 1))
done
r=/root
mount -t ext4 /dev/vda1 $r || end "FAIL mount the image's root"
mount -t ext4 -o ro /dev/vdb $r/mnt || end "FAIL mount the repository"
mount --bind /dev $r/dev
mount -t devpts devpts $r/dev/pts
mount -t proc proc $r/proc
mount -t sysfs sysfs $r/sys
# apt's defaults, as the plan's (docs/offline.rst, "Upgrade, not
# dist-upgrade").
apt="apt-get -q -o Dir::Etc::sourcelist=/mnt/sources.list -o Dir::Etc::sourceparts=/mnt/sources.list.d"
in_root() {
    chroot $r /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
}
# The guest's clock at each stage, for where the time goes.
stage() { echo "VMAUG-STAGE: $1 $(cut -d' ' -f1 /proc/uptime)"; }
stage mounted
rc=0
in_root $apt update || rc=$?
stage updated
[ $rc -ne 0 ] || in_root $apt -y upgrade || rc=$?
stage upgraded
umount $r/sys $r/proc $r/dev/pts $r/dev $r/mnt
umount $r || end "FAIL umount"
stage unmounted
end "rc=$rc"
INIT
chmod 755 "$ird/init"
(cd "$ird" && find . | cpio -o -H newc --owner=0:0 --quiet | gzip -1) \
    >"$tmp/initrd"

# The repository disk: the signed repository, its key and the sources.
rd=$tmp/repodisk
mkdir -p "$rd/sources.list.d"
cp -a "$tmp/repo" "$rd/repo"
cp "$tmp/repo-key.gpg" "$rd/repo-key.gpg"
echo "deb [signed-by=/mnt/repo-key.gpg] file:/mnt/repo bookworm-security main" \
    >"$rd/sources.list"
chmod -R a+rX "$rd"
mke2fs -q -F -t ext4 -d "$rd" "$tmp/repo.img" \
    "$(( $(du -sm "$rd" | cut -f1) + 32 ))M" >/dev/null

fresh "$tmp/boot"
boot_each=()
boot_sum=0
for i in $(seq 0 $((nboot - 1))); do
    img=${imgs[$i]}
    log=$tmp/boot-$i.log
    t0=$(now_ms)
    timeout --kill-after=10 "$boot_timeout" "$qemu" -accel tcg -m 512M \
        -nodefaults -display none -serial stdio -no-reboot \
        -kernel "$KIMAGE" -initrd "$tmp/initrd" \
        -append "console=ttyS0 panic=-1 quiet loglevel=4 no_timer_check" \
        -drive "file=$img,format=qcow2,if=virtio" \
        -drive "file=$tmp/repo.img,format=raw,if=virtio,readonly=on" \
        </dev/null >"$log" 2>&1 || true
    ms=$(( $(now_ms) - t0 ))
    keep "$log"
    grep -q '^VMAUG-UPGRADE: rc=0' "$log" ||
        fail "boot-to-patch of $img: $(tail -n 30 "$log")"
    boot_each+=("$ms")
    boot_sum=$((boot_sum + ms))
    say "# boot-to-patch $(basename "$img"): $ms ms," \
        "apt: $(grep -aoE '^[0-9]+ upgraded, [0-9]+ newly installed' "$log" || echo '?');" \
        "guest clock: $(awk '$1 == "VMAUG-STAGE:" {printf "%s %s s, ", $2, $3}' "$log")"
done
boot_mean=$((boot_sum / nboot))
boot_total=$((boot_sum + boot_mean * (nimg - nboot)))

# --- Both paths left the same packages ---------------------------------------
# The updated packages: every image of each path against the first
# boot-to-patch image (package and version; an offline unpack leaves the
# packages "unpacked", the guest's dpkg configures them at the next boot).
versions "$tmp/boot/vm01.qcow2" >"$tmp/after-boot.txt"
grep -q ' installed$' "$tmp/after-boot.txt" || fail "no installed package"
cut -d' ' -f1,2 "$tmp/after-boot.txt" >"$tmp/want.txt"
nupd=$(join <(cut -d' ' -f1,2 "$tmp/before.txt") "$tmp/want.txt" |
       awk '$2 != $3' | wc -l)
[ "$nupd" -ge 5 ] || fail "boot-to-patch updated $nupd packages (need 5)"
for i in $(seq 0 $((nboot - 1))); do
    versions "$tmp/boot/$(basename "${imgs[$i]}")" | cut -d' ' -f1,2 |
        diff - "$tmp/want.txt" >/dev/null ||
        fail "boot-to-patch image $i differs from image 0"
done
for d in batch cmd; do
    for img in "$tmp/$d"/*.qcow2; do
        versions "$img" >"$tmp/v.txt"
        cut -d' ' -f1,2 "$tmp/v.txt" | diff - "$tmp/want.txt" >"$tmp/v.diff" ||
            fail "$d: $img's packages differ from boot-to-patch: $(cat "$tmp/v.diff")"
    done
done
states=$(join <(cut -d' ' -f1,2 "$tmp/before.txt") "$tmp/v.txt" |
         awk '$2 != $3 {print $4}' | sort | uniq -c | awk '{print $1, $2}' | tr '\n' ' ')

# --- Figures ------------------------------------------------------------
echo "# load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
say "update: $nupd packages from bookworm-security, $nimg images in 2 groups" \
    "(planned per group: $nplanned)"
say "after both paths every image holds the same package versions;" \
    "offline the updated packages are: $states(configured at the next boot)"
printf '%-44s %10s\n' "vmaugment-offline" "ms"
printf '  %-42s %10d\n' "batch --apt-source --jobs $jobs (all images)" "$batch_ms"
printf '  %-42s %10d\n' "plan (all images, $ngroups groups)" "$plan_ms"
printf '  %-42s %10d\n' "bundle-build --plan ($ngroups bundles)" "$bundle_ms"
printf '  %-42s %10d\n' "apply, one after the other (all images)" "$apply_ms"
printf '  %-42s %10s\n' "  per image" "$(IFS=' '; echo "${apply_each[*]}")"
printf '  %-42s %10d\n' "verify, one after the other (all images)" "$verify_ms"
printf '  %-42s %10d\n' "plan + bundle-build + apply + verify" "$cmd_ms"
printf '%-44s %10s\n' "boot-to-patch (TCG, apt-get upgrade)" "ms"
printf '  %-42s %10s\n' "per image, measured ($nboot)" "$(IFS=' '; echo "${boot_each[*]}")"
if [ "$nboot" -lt "$nimg" ]; then
    printf '  %-42s %10d\n' "all $nimg images ($nboot measured + $((nimg - nboot)) x mean)" \
        "$boot_total"
else
    printf '  %-42s %10d\n' "all $nimg images (measured)" "$boot_total"
fi
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.0fx", a / b}'; }
say "ratio, boot-to-patch / batch: $(ratio "$boot_total" "$batch_ms") (target >= 20x)"
say "ratio, boot-to-patch / separate commands: $(ratio "$boot_total" "$cmd_ms")"
