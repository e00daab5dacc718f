#!/usr/bin/env bash
# Confinement of offline servicing (docs/offline.rst, "Confinement"): the
# worker that reads the guest, inspected from the host while it runs; a
# reader that crashes on a crafted image (a worker built with a reader
# bug that a guest file triggers) ends in a reported failure with the
# image untouched and the next job unaffected; a reader taken over by an
# image (the same worker, attacking as a guest file tells it) reaches
# nothing of the host, and what it reports is checked; images that name
# host files
# (a backing file, also one hidden in a raw disk's first sector, a vmdk
# descriptor's extents, which the probe itself may not open) are
# refused unless the operator allows them; the worker starts without a
# probe of the host where it can, and the probe decides where it cannot;
# QEMU's tools are started once each per step of a job, the overlay the
# commit writes is the one the apply made.
source "$(dirname "$0")/lib.sh"

: "${VMAUGMENT_OFFLINE_WORKER_BUGGY:?the worker with a reader bug}"
plan 41
fix=$(fixtures_linux)
make_identity
make_payloads
build_bundle "$tmp/demo.vmab" "$demo_rules" "$demo_files"
MANIFEST_ID=crash-trigger build_bundle "$tmp/trigger.vmab" "" \
    '{"op": "add", "path": "/etc/vmaugment-crash", "payload": "tool"}'

# 1-9: the worker, caught waiting for its disk.
python3 "$here/worker-inspect.py" "$VMAUGMENT_OFFLINE" \
    --trust-dir "$tmp/trust" check "$fix/debian.qcow2" "$tmp/demo.vmab"

# 10-11: they die with vmaugment-offline (and 41).
python3 "$here/worker-inspect.py" --kill-parent "$VMAUGMENT_OFFLINE" \
    inspect "$fix/debian.qcow2"

# 12-15: a reader crash, in inspect and in apply.
cp "$fix/debian.qcow2" "$tmp/crash.qcow2"
vo apply "$tmp/crash.qcow2" "$tmp/trigger.vmab" >/dev/null ||
    fail "cannot plant the crash trigger"
before=$(sha256sum <"$tmp/crash.qcow2")
VMAUGMENT_OFFLINE_WORKER=$VMAUGMENT_OFFLINE_WORKER_BUGGY \
    expect_refusal 'worker reading .* ended by signal 11 \(Segmentation fault\)' \
    inspect "$tmp/crash.qcow2"
pass "inspect: a crashing reader is reported"
VMAUGMENT_OFFLINE_WORKER=$VMAUGMENT_OFFLINE_WORKER_BUGGY \
    expect_refusal 'ended by signal 11' \
    --trust-dir "$tmp/trust" apply "$tmp/crash.qcow2" "$tmp/demo.vmab"
pass "apply: a crashing reader is reported"
[ "$(sha256sum <"$tmp/crash.qcow2")" = "$before" ] ||
    fail "the image changed after the worker crashed"
no_sidecars "$tmp/crash.qcow2"
pass "the image is untouched and nothing is left next to it"
"$VMAUGMENT_OFFLINE" --trust-dir "$tmp/trust" apply "$tmp/crash.qcow2" \
    "$tmp/demo.vmab" >"$tmp/apply.json" ||
    fail "a sound worker could not apply after the crash"
[ "$(json_get "$tmp/apply.json" status)" = applied ] ||
    fail "apply after the crash: $(cat "$tmp/apply.json")"
pass "the next apply, with a sound worker, succeeds"

# 16: a reader taken over by a crafted image attacks the host.
printf 'crash\n' >"$tmp/payload/attack"
for attack in host-file:'No such file or directory' \
    proc:'No such file or directory' socket:'Permission denied' \
    exec:'signal 31' kill:'signal 31' ptrace:'signal 31' \
    unshare:'signal 31' exec-memory:'signal 31'; do
    name=${attack%%:*}
    echo "$name" >"$tmp/payload/attack"
    MANIFEST_ID=attack-$name build_bundle "$tmp/attack.vmab" "" \
        '{"op": "add", "path": "/etc/vmaugment-attack", "payload": "attack"}'
    cp "$fix/debian.qcow2" "$tmp/attack.qcow2"
    vo apply "$tmp/attack.qcow2" "$tmp/attack.vmab" >/dev/null ||
        fail "cannot plant the attack $name"
    # Survived attacks come back as the job's error; forbidden system
    # calls kill the worker.
    if [ "${attack#*:}" = 'signal 31' ]; then
        want='ended by signal 31 \(Bad system call\)'
    else
        want="attack $name: ${attack#*:}"
    fi
    VMAUGMENT_OFFLINE_WORKER=$VMAUGMENT_OFFLINE_WORKER_BUGGY \
        expect_refusal "$want" inspect "$tmp/attack.qcow2"
done
pass "a worker's attacks on the host fail: host files, /proc, network, exec, kill, ptrace, unshare, executable memory"

# 17: a worker that talks nonsense to its parent (the test worker picks
# what to send by the image's file name).
for report in bad-magic:'bad magic' huge:'body length out of range' \
    short:'truncated body' deep:'body is nested too deeply' \
    hidden-deep:'body is nested too deeply' \
    wide:'body has too many values' \
    not-json:'body is not JSON' unknown-member:'unexpected member' \
    wrong-type:'"inventory" has the wrong type' bad-error:'bad "error"' \
    trailing:'data after the result' stages:'too many stages' \
    bad-stage:'unknown stage' silent:'no report' \
    disks-extra:'"disks" is not one object per disk'; do
    name=${report%%:*}
    ln -f "$fix/debian.qcow2" "$tmp/report-$name.qcow2"
    VMAUGMENT_OFFLINE_WORKER=$VMAUGMENT_OFFLINE_WORKER_BUGGY \
        expect_refusal "the worker's report is malformed: ${report#*:}" \
        inspect "$tmp/report-$name.qcow2"
done
ln -f "$fix/debian.qcow2" "$tmp/report-escape.qcow2"
VMAUGMENT_OFFLINE_WORKER=$VMAUGMENT_OFFLINE_WORKER_BUGGY \
    expect_refusal 'evil \?\]0;owned\? \?\? end$' inspect "$tmp/report-escape.qcow2"
pass "malformed reports are refused: framing, size, depth, values, members, types, stages; control characters never reach the terminal"

# 18: a sound report counts for nothing when the worker then crashes.
ln -f "$fix/debian.qcow2" "$tmp/report-crash-after.qcow2"
VMAUGMENT_OFFLINE_WORKER=$VMAUGMENT_OFFLINE_WORKER_BUGGY \
    expect_refusal 'ended by signal 11' inspect "$tmp/report-crash-after.qcow2"
pass "a worker that crashes after its report is reported as crashed"

# 19: an unreadable result file is shown as such, and with nothing else.
ln -f "$fix/debian.qcow2" "$tmp/report-configure-extra.qcow2"
VMAUGMENT_OFFLINE_WORKER=$VMAUGMENT_OFFLINE_WORKER_BUGGY \
    expect_refusal "the worker's dpkg_configure is malformed" \
    inspect "$tmp/report-configure-extra.qcow2"
pass "an unreadable dpkg_configure result carries no other member"

# 20-23: images that name other host files.
echo "host secret" >"$tmp/host-file"
"$QEMU_IMG" create -q -f qcow2 -b "$tmp/host-file" -F raw "$tmp/backed.qcow2" \
    64M
expect_refusal 'names a backing file' inspect "$tmp/backed.qcow2"
pass "a qcow2 with a backing file is refused"
# A guest can write any bytes to its raw disk, a qcow2 header included:
# probed, that disk would read the host file as its backing file.
"$QEMU_IMG" create -q -f raw "$tmp/raw-disk.img" 64M
dd if="$tmp/backed.qcow2" of="$tmp/raw-disk.img" bs=64k count=1 \
    conv=notrunc status=none
expect_refusal 'names a backing file' inspect "$tmp/raw-disk.img"
pass "a raw disk holding a qcow2 header with a backing file is refused"
expect_refusal 'no Linux or Windows system' --format raw \
    inspect "$tmp/raw-disk.img"
pass "the same disk named raw is read as raw"
expect_refusal 'no Linux or Windows system' --allow-backing-files \
    inspect "$tmp/backed.qcow2"
pass "--allow-backing-files opens it"

# 24-26: a vmdk descriptor in a raw disk's first sector: probing it,
# "qemu-img info" itself opens the extents it names, before any check of
# what it prints.  A FIFO nobody writes would hang it, a device would
# open with its side effects; it may open the image and the system's
# files only.
vmdk_descriptor() {
    "$QEMU_IMG" create -q -f raw "$2" 64M
    printf '# Disk DescriptorFile\nversion=1\ncreateType="monolithicFlat"\nRW 8 FLAT "%s" 0\n\0' \
        "$1" | dd of="$2" conv=notrunc status=none
}
mkfifo "$tmp/nobody-writes"
vmdk_descriptor "$tmp/nobody-writes" "$tmp/fifo-extent.img"
start=$(date +%s)
landlock=yes
if timeout 60 "$VMAUGMENT_OFFLINE" inspect "$tmp/fifo-extent.img" 2>&1 \
        >/dev/null | grep -q 'this kernel has no Landlock'; then
    landlock=
    expect_refusal 'did not finish within 30 s' inspect "$tmp/fifo-extent.img"
else
    expect_refusal "Could not open '$tmp/nobody-writes': Permission denied" \
        inspect "$tmp/fifo-extent.img"
    [ $(($(date +%s) - start)) -lt 20 ] ||
        fail "the refusal waited for the deadline instead of the confinement"
fi
pass "a descriptor naming a FIFO is refused at once, the FIFO never opened"
vmdk_descriptor "$tmp/host-file" "$tmp/file-extent.img"
if [ -n "$landlock" ]; then
    expect_refusal "Could not open '$tmp/host-file': Permission denied" \
        inspect "$tmp/file-extent.img"
else
    expect_refusal 'names an extent in another file' \
        inspect "$tmp/file-extent.img"
fi
pass "a descriptor naming a host file is refused (under Landlock, unopened)"
# Allowed to name other files, the probe still ends: killed at its
# deadline.
expect_refusal 'qemu-img info did not finish within 30 s' \
    --allow-backing-files inspect "$tmp/fifo-extent.img"
pgrep -f "qemu-img info .*fifo-extent" >/dev/null &&
    fail "qemu-img is still waiting on the FIFO"
pass "with --allow-backing-files the probe is killed at its deadline"

# 27-28: what an interrupted apply left next to an image is finished only
# when it is that image's overlay: a planted one (an appliance's directory
# may hold anything) would have the commit write its data into the host
# file its header names.
plant_overlay() {
    head -c 4096 /dev/zero | tr '\0' B >"$tmp/planted-data.raw"
    "$QEMU_IMG" convert -q -f raw -O qcow2 "$tmp/planted-data.raw" \
        "$tmp/.planted.qcow2.vmaugment-overlay.qcow2"
    "$QEMU_IMG" rebase -q -u -f qcow2 -b "$tmp/victim" -F raw \
        "$tmp/.planted.qcow2.vmaugment-overlay.qcow2"
    echo '{}' >"$tmp/.planted.qcow2.vmaugment-journal"
}
head -c 1048576 /dev/zero | tr '\0' A >"$tmp/victim"
cp "$tmp/victim" "$tmp/victim.orig"
cp "$fix/debian.qcow2" "$tmp/planted.qcow2"
before=$(sha256sum <"$tmp/planted.qcow2")
plant_overlay
expect_refusal 'not the overlay of' recover "$tmp/planted.qcow2"
cmp -s "$tmp/victim" "$tmp/victim.orig" ||
    fail "recover wrote to the host file a planted overlay names"
[ "$(sha256sum <"$tmp/planted.qcow2")" = "$before" ] ||
    fail "recover changed the image"
pass "recover does not commit a planted overlay into another host file"
plant_overlay
expect_refusal 'not the overlay of' --trust-dir "$tmp/trust" \
    apply "$tmp/planted.qcow2" "$tmp/demo.vmab"
cmp -s "$tmp/victim" "$tmp/victim.orig" ||
    fail "apply wrote to the host file a planted overlay names"
[ "$(sha256sum <"$tmp/planted.qcow2")" = "$before" ] ||
    fail "apply changed the image"
pass "apply does not finish a planted overlay either"

# 29-30: the worker is started without first probing the host (a probe
# is one more child in new namespaces per job); where that start fails,
# the probe decides as before.
need strace strace
"$QEMU_IMG" create -q -f raw "$tmp/blank.raw" 1M
strace -f -qq -e trace=clone,clone3 -o "$tmp/clones" \
    "$VMAUGMENT_OFFLINE" inspect "$tmp/blank.raw" >/dev/null 2>&1 || true
n=$(grep -c CLONE_NEWUSER "$tmp/clones" || true)
[ "$n" -eq 1 ] ||
    fail "inspect made $n children in a new user namespace, not 1 (the worker)"
pass "a job starts one child in new namespaces, the worker, and no probe"
# A host that refuses user namespaces (here a user namespace of our own
# whose limit is 0): the start with the pieces such a host cannot give
# fails, and the probe's answer is what the refusal names.
err=$(unshare -Ur sh -c 'echo 0 >/proc/sys/user/max_user_namespaces &&
        exec "$@"' sh "$VMAUGMENT_OFFLINE" inspect "$tmp/blank.raw" 2>&1 >/dev/null) &&
    fail "inspect ran without a user namespace and without being allowed to"
grep -q 'cannot confine the offline worker fully (missing: user-namespace)' \
    <<<"$err" || fail "no user namespace: $err"
pass "without user namespaces the probe decides: the worker is refused, naming the missing piece"

# 31: libraries only one command needs are loaded by that command, not
# at every start (docs/performance.md).
worker=$(dirname "$VMAUGMENT_OFFLINE")/vmaugment-offline-worker
for prog in "$VMAUGMENT_OFFLINE" "$worker"; do
    needed=$(readelf -d "$prog" | grep NEEDED) ||
        fail "readelf -d $prog"
    ! grep -E 'libvirt|libclamav|libguestfs' <<<"$needed" ||
        fail "$prog links a library only one command needs"
done
pass "vmaugment-offline and its worker do not link libvirt, libclamav or libguestfs"

# 32: an apply's worker starts while its overlay is made; when the
# overlay cannot be made, the apply fails saying why, the worker ends
# with it and nothing is left (a qemu-img whose create fails).
mkdir -p "$tmp/failing-img"
cat >"$tmp/failing-img/qemu-img" <<SH
#!/bin/sh
[ "\$1" = create ] && { echo "qemu-img: injected failure" >&2; exit 1; }
exec "$QEMU_IMG" "\$@"
SH
chmod +x "$tmp/failing-img/qemu-img"
cp "$fix/debian.qcow2" "$tmp/no-overlay.qcow2"
before=$(sha256sum <"$tmp/no-overlay.qcow2")
VMAUGMENT_QEMU_IMG=$tmp/failing-img/qemu-img \
    expect_refusal 'qemu-img create failed: qemu-img: injected failure' \
    --trust-dir "$tmp/trust" apply "$tmp/no-overlay.qcow2" "$tmp/demo.vmab"
[ "$(sha256sum <"$tmp/no-overlay.qcow2")" = "$before" ] ||
    fail "the image changed although its overlay was never made"
no_sidecars "$tmp/no-overlay.qcow2"
! pgrep -f "vmaugment-offline-worker apply $tmp/no-overlay.qcow2" >/dev/null ||
    fail "the worker outlived the apply whose overlay was not made"
pass "an overlay that cannot be made fails the apply; its worker ends and nothing is left"

# 32b: a reading job's worker starts while its disk is probed (a qemu-img
# that waits, at most 20 s, for the worker to be there): a scan at an
# image's start waits for the longer of the two, not for both.  A probe
# that refuses the disk fails the job; the worker ends with it, and
# qemu-nbd never opens the disk.  With --allow-backing-files: that
# qemu-img watches /proc and writes a log, which the probe's confinement
# (24-26) would refuse it.
mkdir -p "$tmp/probing-img" "$tmp/probing-nbd"
cat >"$tmp/probing-img/qemu-img" <<SH
#!/bin/bash
if [ "\$1" = info ]; then
    for _ in \$(seq 200); do
        pgrep -f "vmaugment-offline-worker [a-z]+ \${*: -1} " >/dev/null &&
            { echo "\${*: -1}: worker up" >>"$tmp/probing-img/log"; break; }
        sleep 0.1
    done
    case \${*: -1} in *refused*)
        echo "qemu-img: injected failure" >&2; exit 1;;
    esac
fi
exec "$QEMU_IMG" "\$@"
SH
cat >"$tmp/probing-nbd/qemu-nbd" <<SH
#!/bin/sh
echo "qemu-nbd \$*" >>"$tmp/probing-nbd/log"
exec "$QEMU_NBD" "\$@"
SH
chmod +x "$tmp/probing-img/qemu-img" "$tmp/probing-nbd/qemu-nbd"
cp "$fix/debian.qcow2" "$tmp/probed.qcow2"
cp "$fix/debian.qcow2" "$tmp/probe-refused.qcow2"
# The worker reads the database under an id of its own.
chmod a+x "$tmp"
mkdir -m 755 "$tmp/probe-db"
echo "Probe.Test:0:*:766d61756d656e742d70726f6265" >"$tmp/probe-db/probe.ndb"
export VMAUGMENT_QEMU_IMG=$tmp/probing-img/qemu-img
export VMAUGMENT_QEMU_NBD=$tmp/probing-nbd/qemu-nbd
vo --allow-backing-files inspect "$tmp/probed.qcow2" >/dev/null
vo --allow-backing-files scan --database "$tmp/probe-db" \
    --path /etc/os-release "$tmp/probed.qcow2" >/dev/null
[ "$(grep -c "^$tmp/probed.qcow2: worker up" "$tmp/probing-img/log")" = 2 ] ||
    fail "inspect and scan probed before their worker started: $(cat "$tmp/probing-img/log")"
before=$(sha256sum <"$tmp/probe-refused.qcow2")
expect_refusal 'is not a usable disk image: .*injected failure' \
    --allow-backing-files inspect "$tmp/probe-refused.qcow2"
# A scan that could not be made exits 3.
expect_refusal --status 3 'is not a usable disk image: .*injected failure' \
    --allow-backing-files scan --database "$tmp/probe-db" \
    "$tmp/probe-refused.qcow2"
unset VMAUGMENT_QEMU_IMG VMAUGMENT_QEMU_NBD
! pgrep -f "vmaugment-offline-worker [a-z]+ $tmp/probe-refused.qcow2 " >/dev/null ||
    fail "the worker outlived the job whose disk the probe refused"
! grep -q probe-refused "$tmp/probing-nbd/log" ||
    fail "qemu-nbd served a disk the probe refused: $(cat "$tmp/probing-nbd/log")"
[ "$(sha256sum <"$tmp/probe-refused.qcow2")" = "$before" ] ||
    fail "a refused disk changed"
pass "a reading job's worker starts while its disk is probed; a refused disk ends the worker, unserved"

# 32c: the formats an inspection reports are the ones the disks were
# served in, never the worker's word (a test worker that names others).
ln -f "$fix/debian.qcow2" "$tmp/report-format-lie.qcow2"
VMAUGMENT_OFFLINE_WORKER=$VMAUGMENT_OFFLINE_WORKER_BUGGY \
    vo inspect "$tmp/report-format-lie.qcow2" >"$tmp/format-lie.json"
[ "$(json_get "$tmp/format-lie.json" format)" = qcow2 ] &&
    [ "$(json_get "$tmp/format-lie.json" disks 0 format)" = qcow2 ] ||
    fail "the worker's formats were reported: $(cat "$tmp/format-lie.json")"
pass "an inspection reports the formats its disks were served in, not the worker's"

# 33: the overlay is made in a file the apply creates itself: a link
# planted under its name (here by a qemu-img whose probe plants one,
# after the recovery that removes leftovers) fails the apply instead of
# qemu-img writing through it into a host file.
cp "$fix/debian.qcow2" "$tmp/linked.qcow2"
printf 'host file\n' >"$tmp/link-target"
mkdir -p "$tmp/linking-img"
cat >"$tmp/linking-img/qemu-img" <<SH
#!/bin/bash
"$QEMU_IMG" "\$@" || exit
if [ "\$1" = info ] && [ "\${*: -1}" = "$tmp/linked.qcow2" ]; then
    ln -s "$tmp/link-target" "$tmp/.linked.qcow2.vmaugment-overlay.qcow2"
fi
SH
chmod +x "$tmp/linking-img/qemu-img"
before=$(sha256sum <"$tmp/linked.qcow2")
# (--allow-backing-files lifts the probe's confinement, 24-26, under which
# this qemu-img info could not plant the link: here it stands for another
# writer of the directory.)
VMAUGMENT_QEMU_IMG=$tmp/linking-img/qemu-img \
    expect_refusal 'cannot create .*vmaugment-overlay.qcow2: File exists' \
    --allow-backing-files \
    --trust-dir "$tmp/trust" apply "$tmp/linked.qcow2" "$tmp/demo.vmab"
[ "$(cat "$tmp/link-target")" = "host file" ] ||
    fail "qemu-img wrote the overlay through a planted link"
[ "$(sha256sum <"$tmp/linked.qcow2")" = "$before" ] ||
    fail "the image changed although its overlay was refused"
pass "a link planted where the overlay goes fails the apply; nothing is written through it"

# 34: the commit writes only the overlay the apply made: one replaced
# after its creation (a qemu-img whose create then swaps in an overlay of
# another file) is not committed, by the apply nor by recover.
cp "$fix/debian.qcow2" "$tmp/swapped.qcow2"
cp "$fix/debian.qcow2" "$tmp/decoy.qcow2"
mkdir -p "$tmp/swapping-img"
cat >"$tmp/swapping-img/qemu-img" <<SH
#!/bin/sh
"$QEMU_IMG" "\$@" || exit
if [ "\$1" = create ]; then
    o=$tmp/.swapped.qcow2.vmaugment-overlay.qcow2
    rm -f "\$o"
    "$QEMU_IMG" create -q -f qcow2 -b "$tmp/decoy.qcow2" -F qcow2 "\$o"
fi
SH
chmod +x "$tmp/swapping-img/qemu-img"
before=$(sha256sum <"$tmp/swapped.qcow2")
decoy=$(sha256sum <"$tmp/decoy.qcow2")
VMAUGMENT_QEMU_IMG=$tmp/swapping-img/qemu-img \
    expect_refusal 'is no longer the overlay this apply made; it is not committed' \
    --trust-dir "$tmp/trust" apply "$tmp/swapped.qcow2" "$tmp/demo.vmab"
expect_refusal 'is not the overlay of .* that an interrupted apply leaves' \
    recover "$tmp/swapped.qcow2"
[ "$(sha256sum <"$tmp/decoy.qcow2")" = "$decoy" ] ||
    fail "a swapped overlay was committed into its backing file"
[ "$(sha256sum <"$tmp/swapped.qcow2")" = "$before" ] ||
    fail "the image changed although its overlay was swapped"
pass "an overlay replaced after the apply made it is committed neither by the apply nor by recover"

# 35: QEMU's tools per job (docs/performance.md): an apply starts
# qemu-img for the probe, the overlay and the commit, and one qemu-nbd;
# its verify one qemu-img and one qemu-nbd; each a child of
# vmaugment-offline.  (--allow-backing-files: the counting qemu-img reads
# /proc and writes its log, which the probe's confinement refuses.)
mkdir -p "$tmp/counting"
for tool in qemu-img qemu-nbd; do
    real=$QEMU_IMG
    [ "$tool" = qemu-img ] || real=$QEMU_NBD
    cat >"$tmp/counting/$tool" <<SH
#!/bin/sh
echo "$tool \$1 \$(cat /proc/\$PPID/comm)" >>"$tmp/counting/log"
exec "$real" "\$@"
SH
    chmod +x "$tmp/counting/$tool"
done
cp "$fix/debian.qcow2" "$tmp/counted.qcow2"
VMAUGMENT_QEMU_IMG=$tmp/counting/qemu-img VMAUGMENT_QEMU_NBD=$tmp/counting/qemu-nbd \
    vo --allow-backing-files apply "$tmp/counted.qcow2" "$tmp/demo.vmab" \
    >/dev/null
echo verify >>"$tmp/counting/log"
VMAUGMENT_QEMU_IMG=$tmp/counting/qemu-img VMAUGMENT_QEMU_NBD=$tmp/counting/qemu-nbd \
    vo --allow-backing-files verify "$tmp/counted.qcow2" "$tmp/demo.vmab" \
    >/dev/null
want="qemu-img info vmaugment-offli
qemu-img create vmaugment-offli
qemu-nbd --cache=writeback vmaugment-offli
qemu-img commit vmaugment-offli
verify
qemu-img info vmaugment-offli
qemu-nbd --cache=writeback vmaugment-offli"
[ "$(cat "$tmp/counting/log")" = "$want" ] ||
    fail "QEMU's tools started by an apply and its verify: $(cat "$tmp/counting/log")"
pass "an apply starts qemu-img three times and qemu-nbd once, its verify each once"

# 36: qemu-img writes the overlay through the file the apply created and
# holds, not through its name: a link swapped in under the name just
# before qemu-img create opens it (a writer of the image's directory
# racing the apply) is not written through.
cp "$fix/debian.qcow2" "$tmp/raced.qcow2"
printf 'host file\n' >"$tmp/race-target"
mkdir -p "$tmp/racing-img"
cat >"$tmp/racing-img/qemu-img" <<SH
#!/bin/sh
if [ "\$1" = create ]; then
    rm -f "$tmp/.raced.qcow2.vmaugment-overlay.qcow2"
    ln -s "$tmp/race-target" "$tmp/.raced.qcow2.vmaugment-overlay.qcow2"
fi
exec "$QEMU_IMG" "\$@"
SH
chmod +x "$tmp/racing-img/qemu-img"
before=$(sha256sum <"$tmp/raced.qcow2")
rc=0
VMAUGMENT_QEMU_IMG=$tmp/racing-img/qemu-img timeout 120 "$VMAUGMENT_OFFLINE" \
    --trust-dir "$tmp/trust" apply "$tmp/raced.qcow2" "$tmp/demo.vmab" \
    >/dev/null 2>&1 || rc=$?
[ "$(cat "$tmp/race-target")" = "host file" ] ||
    fail "qemu-img create wrote through a link swapped in under the overlay's name"
[ "$rc" -ne 0 ] || fail "the apply went on with a link under its overlay's name"
[ "$(sha256sum <"$tmp/raced.qcow2")" = "$before" ] ||
    fail "the image changed although its overlay's name was taken"
pass "a link swapped in as qemu-img create starts is not written through"

# 37: the commit reads the overlay the apply holds, not the file under
# its name: an overlay of another file swapped in after the check, as
# qemu-img commit starts, is not committed into that file.
cp "$fix/debian.qcow2" "$tmp/late.qcow2"
head -c 1048576 /dev/zero | tr '\0' A >"$tmp/late-victim"
cp "$tmp/late-victim" "$tmp/late-victim.orig"
head -c 4096 /dev/zero | tr '\0' B >"$tmp/late-data.raw"
mkdir -p "$tmp/late-img"
cat >"$tmp/late-img/qemu-img" <<SH
#!/bin/sh
if [ "\$1" = commit ]; then
    o=$tmp/.late.qcow2.vmaugment-overlay.qcow2
    rm -f "\$o"
    "$QEMU_IMG" convert -q -f raw -O qcow2 "$tmp/late-data.raw" "\$o"
    "$QEMU_IMG" rebase -q -u -f qcow2 -b "$tmp/late-victim" -F raw "\$o"
fi
exec "$QEMU_IMG" "\$@"
SH
chmod +x "$tmp/late-img/qemu-img"
rc=0
VMAUGMENT_QEMU_IMG=$tmp/late-img/qemu-img timeout 120 "$VMAUGMENT_OFFLINE" \
    --trust-dir "$tmp/trust" apply "$tmp/late.qcow2" "$tmp/demo.vmab" \
    >"$tmp/late.json" 2>&1 || rc=$?
cmp -s "$tmp/late-victim" "$tmp/late-victim.orig" ||
    fail "qemu-img commit wrote an overlay swapped in under the name into its backing file"
[ "$rc" -eq 0 ] && [ "$(json_get "$tmp/late.json" status)" = applied ] ||
    fail "the apply whose overlay name was swapped at the commit: $(cat "$tmp/late.json")"
pass "an overlay swapped in as qemu-img commit starts is not committed; the apply's own is"

# 38: qemu-nbd serves the overlay the apply holds, not the file under its
# name: an overlay of another file swapped in under the name as qemu-nbd
# starts (a writer of the image's directory racing the apply) is neither
# read nor written by the worker, and is not committed.
cp "$fix/debian.qcow2" "$tmp/served.qcow2"
cp "$fix/debian.qcow2" "$tmp/served-decoy.qcow2"
swapped_as_served "$tmp/served.qcow2" "$tmp/served-decoy.qcow2" \
    --trust-dir "$tmp/trust" apply "$tmp/served.qcow2" "$tmp/demo.vmab"
pass "an overlay swapped in as qemu-nbd starts is not what the worker reads and writes"

# 41: a server whose parent is killed between the server's fork and its
# death signal ends too (caught there, under strace, by orphan-server.py).
python3 "$here/orphan-server.py" "$VMAUGMENT_OFFLINE" "$fix/debian.qcow2"
