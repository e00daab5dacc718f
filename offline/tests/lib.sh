# Shared helpers for the offline servicing tests (sourced, bash).
#
# Every test speaks TAP: "plan N" first, one "ok - ..." per check, and on
# the first failed check "not ok - ..." and a non-zero exit.  A tool a test
# needs and cannot find is a failure naming the package, never a skip: a
# test that stops checking must not look like one that passed.
set -euo pipefail

: "${VMAUGMENT_OFFLINE:?the vmaugment-offline binary}"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export PATH=$PATH:/usr/sbin:/sbin

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vmaugment-offline-test.XXXXXX")
bg_pids=()
# Process groups a test started with setsid (and may have stopped).
bg_groups=()
cleanup() {
    for pid in "${bg_pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    for pid in "${bg_groups[@]}"; do
        kill -KILL -- "-$pid" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
    local msg="$*"
    # TAP takes one line; the whole story goes to stderr.
    echo "not ok - ${msg%%$'\n'*}"
    echo "FAIL: $msg" >&2
    exit 1
}

pass() {
    echo "ok - $*"
}

# The number of "ok" lines this test prints when it passes: the runner
# reports a test that stops early or leaves checks out.
plan() {
    echo "1..$1"
}

# need TOOL PACKAGE: fails unless TOOL is on PATH.
need() {
    command -v "$1" >/dev/null ||
        fail "$1 is missing: install $2 (scripts/deps/offline.txt)"
}

# The QEMU image tools of both the tests and the vmaugment-offline under
# test, named explicitly so that the two never disagree.  The default is
# the system's qemu-img and qemu-nbd (Debian's qemu-utils, which has every
# format the tests use), not $VMAUGMENT_QEMU_BUILD_DIR: the project's own
# QEMU is built without vmdk and vhdx.  VMAUGMENT_QEMU_IMG and
# VMAUGMENT_QEMU_NBD choose others.
QEMU_IMG=$(command -v "${VMAUGMENT_QEMU_IMG:-qemu-img}") ||
    fail "${VMAUGMENT_QEMU_IMG:-qemu-img} is missing: install qemu-utils"
QEMU_NBD=$(command -v "${VMAUGMENT_QEMU_NBD:-qemu-nbd}") ||
    fail "${VMAUGMENT_QEMU_NBD:-qemu-nbd} is missing: install qemu-utils"
export VMAUGMENT_QEMU_IMG=$QEMU_IMG VMAUGMENT_QEMU_NBD=$QEMU_NBD

# Whether $QEMU_IMG has the block driver for format $1.
qemu_has_format() {
    # "Supported formats:" (QEMU 7) or "Supported image formats:" (10).
    "$QEMU_IMG" --help 2>/dev/null |
        sed -n '/^Supported .*formats:/,/^See /p' | tr ' ' '\n' | grep -qx "$1"
}

# Every image test runs on every format of the fixtures: a qemu-img
# without one of their drivers fails here instead of thinning the test.
need_image_formats() {
    local f
    for f in qcow2 raw vmdk vhdx; do
        qemu_has_format "$f" ||
            fail "$QEMU_IMG has no $f driver: install qemu-utils or set" \
                "VMAUGMENT_QEMU_IMG and VMAUGMENT_QEMU_NBD to a QEMU that has it"
    done
    echo "# $QEMU_IMG: $("$QEMU_IMG" --version | head -1)"
}

fixtures_linux() {
    need_image_formats >&2
    bash "$here/make-fixtures.sh" linux
}

# linux_fixture_status OUT: the dpkg status of the Linux fixture's root
# (the minbase tree's and the kernel package make-fixtures.sh adds) in OUT.
linux_fixture_status() {
    cat "$(bash "$here/make-fixtures.sh" minbase)/var/lib/dpkg/status" \
        "$(fixtures_linux)/kernel-status" >"$1"
}

fixtures_windows() {
    : "${VMAUGMENT_NTFS_POPULATE:?the ntfs-populate helper}"
    need_image_formats >&2
    bash "$here/make-fixtures.sh" windows
}

# expect_refusal [--status N] PATTERN ARGS...: runs vmaugment-offline ARGS,
# expecting it to exit with status N (default 1, an error; 3 "does not
# apply", 4 refused by signature: docs/cli.rst) and its error message
# (stderr) to match PATTERN, an extended regular expression.
expect_refusal() {
    local want=1 pattern err rc=0
    if [ "$1" = --status ]; then
        want=$2
        shift 2
    fi
    pattern=$1
    shift
    # A refusal comes at once; the bound only turns a hang into a failure.
    err=$(timeout 120 "$VMAUGMENT_OFFLINE" "$@" 2>&1 >"$tmp/refusal.out") || rc=$?
    [ "$rc" -ne 124 ] || fail "no answer within 120 s from: $*"
    [ "$rc" -eq "$want" ] ||
        fail "expected exit $want ($pattern), got $rc from: $*: $err"
    grep -qE -- "^vmaugment-offline: .*($pattern)" <<<"$err" ||
        fail "refusal of '$*' did not say '$pattern': $err"
}

# confined_worker PID: waits (at most 30 s) until the offline worker that
# vmaugment-offline PID started runs confined (its seccomp filter on: a
# scan's worker has loaded its database by then); its pid in $worker_pid.
confined_worker() {
    worker_pid=
    for _ in $(seq 1500); do
        worker_pid=$(pgrep -f -P "$1" vmaugment-offline-worker || true)
        [ -n "$worker_pid" ] &&
            grep -q '^Seccomp:[[:space:]]*2' "/proc/$worker_pid/status" \
                2>/dev/null && break
        sleep 0.02
    done
    grep -q '^Seccomp:[[:space:]]*2' "/proc/${worker_pid:-none}/status" \
        2>/dev/null || fail "the worker of $1 was not confined within 30 s"
}

# Byte offset of partition $2 of raw disk $1 (from sfdisk).
part_offset() {
    sfdisk --json "$1" | python3 -c '
import json, sys
t = json.load(sys.stdin)["partitiontable"]
# Nodes are the disk path and the number; logical ones start at 5.
p = [p for p in t["partitions"] if p["node"] == sys.argv[1] + sys.argv[2]][0]
print(p["start"] * t.get("sectorsize", 512))' "$1" "$2"
}

# e2fsck -fn on both partitions of the Linux fixture image $1 (any format).
fsck_image() {
    local raw=$tmp/fsck.raw
    "$QEMU_IMG" convert -U -O raw "$1" "$raw"
    fsck_raw "$raw" 1 2
    rm -f "$raw"
}

# Holds QEMU's image lock the way a running VM does, until the test ends.
hold_image_lock() {
    local img=$1 fmt=$2
    "$QEMU_NBD" --persistent --socket="$tmp/hold.sock" -f "$fmt" "$img" \
        2>"$tmp/hold.log" &
    bg_pids+=($!)
    for _ in $(seq 50); do
        [ -S "$tmp/hold.sock" ] && return 0
        sleep 0.1
    done
    fail "qemu-nbd did not start: $(cat "$tmp/hold.log")"
}

json_get() {
    python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
for k in sys.argv[2:]:
    d = d[int(k)] if isinstance(d, list) else d[k]
print(d if not isinstance(d, (dict, list)) else json.dumps(d))' "$@"
}

# A signing identity, a trust store holding its certificate, and the demo
# bundle of the Linux job (replace 1, add 3 incl. 5 MiB, mkdir, delete,
# chmod) in $tmp/demo.vmab.  $1 may name extra manifest rules (JSON).
make_identity() {
    : "${VMAUGMENT_KEYGEN:?the vmaugment-keygen binary}"
    mkdir -p "$tmp/trust"
    "$VMAUGMENT_KEYGEN" --name "Patch admin" --key "$tmp/admin.key" \
        --cert "$tmp/trust/admin.pem"
}

motd_sha=$(echo "vmaugment fixture" | sha256sum | cut -d' ' -f1)

# write_manifest FILE RULES FILES: RULES/FILES are JSON array bodies.
write_manifest() {
    cat >"$1" <<JSON
{
  "format": 1, "id": "${MANIFEST_ID:-demo-fix}", "version": "1",
  "description": "test bundle",
  "applies": [ $2 ],
  "files": [ $3 ]
}
JSON
}

demo_files='
    {"op": "replace", "path": "/etc/motd", "payload": "motd", "old_sha256": "'$motd_sha'"},
    {"op": "mkdir", "path": "/opt/demo"},
    {"op": "add", "path": "/opt/demo/big.bin", "payload": "big.bin"},
    {"op": "add", "path": "/usr/local/bin/tool", "payload": "tool", "mode": "0755"},
    {"op": "add", "path": "/srv/www/site.conf", "payload": "site.conf", "uid": 33, "gid": 33},
    {"op": "delete", "path": "/etc/issue.net"},
    {"op": "chmod", "path": "/etc/hostname", "mode": "0600"}'
demo_rules='
    {"os": {"id": "debian", "version_id": "12"}},
    {"package": "libc6", "version": ">= 2.36"},
    {"package": "openssh-server", "installed": false},
    {"file": "/etc/debian_version", "exists": true}'

make_payloads() {
    mkdir -p "$tmp/payload"
    echo "patched motd" >"$tmp/payload/motd"
    head -c 5M /dev/urandom >"$tmp/payload/big.bin"
    printf '#!/bin/sh\necho tool\n' >"$tmp/payload/tool"
    echo "site config" >"$tmp/payload/site.conf"
}

# build_bundle OUT RULES FILES
build_bundle() {
    write_manifest "$tmp/manifest.json" "$2" "$3"
    "$VMAUGMENT_OFFLINE" bundle-build --key "$tmp/admin.key" \
        --cert "$tmp/trust/admin.pem" --payload-dir "$tmp/payload" \
        --output "$1" "$tmp/manifest.json"
}

# build_files_bundle FILE MOTD_SHA256: a bundle of file instructions only
# (the routes for XFS and btrfs carry out no others) for a guest whose
# /etc/motd has MOTD_SHA256, with the payloads of make_payloads.
build_files_bundle() {
    build_bundle "$1" '
    {"os": {"id": "debian", "version_id": "12"}},
    {"file": "/etc/debian_version", "exists": true}' '
    {"op": "replace", "path": "/etc/motd", "payload": "motd", "old_sha256": "'"$2"'"},
    {"op": "mkdir", "path": "/opt/demo"},
    {"op": "add", "path": "/opt/demo/big.bin", "payload": "big.bin"},
    {"op": "add", "path": "/usr/local/bin/tool", "payload": "tool", "mode": "0755"},
    {"op": "add", "path": "/srv/site.conf", "payload": "site.conf", "uid": 33, "gid": 33},
    {"op": "delete", "path": "/etc/issue.net"},
    {"op": "chmod", "path": "/etc/hostname", "mode": "0600"}'
}

# sign_unchecked_bundle OUT MANIFEST PAYLOAD_DIR: a bundle of MANIFEST
# (its payload table filled in) signed by the trusted key, assembled here
# (tar, vmaugment-sign), since bundle-build refuses to sign what apply
# would refuse: for the tests of apply's own refusals.
sign_unchecked_bundle() {
    local dir
    dir=$(mktemp -d "$tmp/unchecked.XXXXXX")
    mkdir "$dir/payload"
    python3 - "$2" "$3" "$dir" <<'PY' || return 1
import hashlib, json, os, shutil, sys
m = json.load(open(sys.argv[1]))
table = {}
for key in ("files", "packages"):
    for op in m.get(key, []):
        name = op.get("payload") if isinstance(op, dict) else None
        if isinstance(name, str) and name not in table:
            data = open(os.path.join(sys.argv[2], name), "rb").read()
            table[name] = {"sha256": hashlib.sha256(data).hexdigest(),
                           "size": len(data)}
            shutil.copy(os.path.join(sys.argv[2], name),
                        os.path.join(sys.argv[3], "payload", name))
m["payload"] = table
json.dump(m, open(os.path.join(sys.argv[3], "manifest.json"), "w"))
PY
    "$VMAUGMENT_SIGN" --key "$tmp/admin.key" --cert "$tmp/trust/admin.pem" \
        --output "$dir/manifest.json.p7s" "$dir/manifest.json" &&
    tar -C "$dir" -cf "$1" manifest.json manifest.json.p7s payload
}

# build_unchecked_bundle OUT RULES FILES: build_bundle's bundle, signed
# without bundle-build's checks (sign_unchecked_bundle).
build_unchecked_bundle() {
    write_manifest "$tmp/unchecked.json" "$2" "$3"
    sign_unchecked_bundle "$1" "$tmp/unchecked.json" "$tmp/payload"
}

vo() {
    "$VMAUGMENT_OFFLINE" --trust-dir "$tmp/trust" "$@"
}

# write_ovf OUT FILE...: an OVF descriptor OUT naming the disk files FILE
# (beside it), in that order.
write_ovf() {
    local out=$1 n=0 f
    shift
    {
        cat <<'XML'
<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"
          xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">
  <References>
XML
        for f in "$@"; do
            n=$((n + 1))
            echo "    <File ovf:id=\"file$n\" ovf:href=\"$f\"/>"
        done
        cat <<'XML'
  </References>
  <DiskSection><Info>disks</Info></DiskSection>
</Envelope>
XML
    } >"$out"
}

# debugfs REQUEST on partition $2 of raw disk $1: its output.  debugfs
# exits 0 even when it cannot open the filesystem or find the file, so its
# messages decide: any error is a failure here, and an empty answer never
# passes for "absent" (debugfs_error checks for a named error instead).
# multidisk_bundle OUT: a bundle for the multidisk fixture (make_identity
# first) whose rules read the dpkg database on the second disk and whose
# files land on both: a new /etc/motd on the first, and
# /var/lib/multidisk/state ("state on the second disk") on the second.
multidisk_bundle() {
    local motd_sha
    mkdir -p "$tmp/payload"
    echo "patched motd" >"$tmp/payload/motd"
    echo "state on the second disk" >"$tmp/payload/state"
    motd_sha=$(echo "vmaugment fixture on two disks" | sha256sum | cut -d' ' -f1)
    build_bundle "$1" '
        {"os": {"id": "debian", "version_id": "12"}},
        {"package": "libc6", "version": ">= 2.36"}' '
        {"op": "replace", "path": "/etc/motd", "payload": "motd",
         "old_sha256": "'"$motd_sha"'"},
        {"op": "mkdir", "path": "/var/lib/multidisk"},
        {"op": "add", "path": "/var/lib/multidisk/state", "payload": "state"}' ||
        fail "bundle-build"
}

debugfs_part() {
    local raw=$1 part=$2 off rc=0
    shift 2
    off=$(part_offset "$raw" "$part") || fail "no partition $part in $raw"
    debugfs -R "$*" "$raw?offset=$off" 2>"$tmp/debugfs.err" || rc=$?
    # The only line debugfs writes to stderr when all went well.
    if [ $rc -ne 0 ] || grep -qv '^debugfs [0-9.]* (' "$tmp/debugfs.err"; then
        fail "debugfs '$*' on $raw partition $part (exit $rc):" \
            "$(cat "$tmp/debugfs.err")"
    fi
}

# debugfs_error RAW PART MESSAGE REQUEST: fails unless debugfs answers
# REQUEST with exactly the error MESSAGE (e.g. "File not found by
# ext2_lookup") and prints nothing else.
debugfs_error() {
    local raw=$1 part=$2 want=$3 off out errs
    shift 3
    off=$(part_offset "$raw" "$part") || fail "no partition $part in $raw"
    out=$(debugfs -R "$*" "$raw?offset=$off" 2>"$tmp/debugfs.err") ||
        fail "debugfs '$*' on $raw partition $part: exit $?:" \
            "$(cat "$tmp/debugfs.err")"
    errs=$(grep -v '^debugfs [0-9.]* (' "$tmp/debugfs.err" || true)
    [ -z "$out" ] && [ "$(wc -l <<<"$errs")" -eq 1 ] &&
        grep -qF -- "$want" <<<"$errs" ||
        fail "debugfs '$*' on $raw partition $part: wanted '$want', got:" \
            "$out" "$errs"
}

# fsck_raw RAW PART...: e2fsck -fn finds nothing to fix on each partition.
fsck_raw() {
    local raw=$1 p
    shift
    for p in "$@"; do
        e2fsck -fn "$raw?offset=$(part_offset "$raw" "$p")" >"$tmp/fsck.log" 2>&1 ||
            { cat "$tmp/fsck.log" >&2; fail "$raw: partition $p not fsck-clean"; }
    done
}

# Independent check of the demo bundle's effect on the Linux fixture image
# $1: e2fsck, debugfs and cmp against the payloads, nothing of ours.
check_demo_applied() {
    local img=$1 raw=$tmp/check.raw out
    "$QEMU_IMG" convert -U -O raw "$img" "$raw"
    fsck_raw "$raw" 1 2
    [ "$(debugfs_part "$raw" 1 cat /etc/motd)" = "patched motd" ] ||
        fail "$img: motd not replaced"
    debugfs_part "$raw" 1 dump /opt/demo/big.bin "$tmp/big.out" >/dev/null
    cmp -s "$tmp/big.out" "$tmp/payload/big.bin" || fail "$img: big.bin differs"
    out=$(debugfs_part "$raw" 1 stat /usr/local/bin/tool)
    grep -q "Mode:  0755" <<<"$out" || fail "$img: tool mode"
    out=$(debugfs_part "$raw" 2 stat /www/site.conf)
    grep -qE "User: +33 +Group: +33" <<<"$out" || fail "$img: site.conf owner"
    out=$(debugfs_part "$raw" 1 stat /etc/hostname)
    grep -q "Mode:  0600" <<<"$out" || fail "$img: hostname mode"
    debugfs_error "$raw" 1 "/etc/issue.net: File not found by ext2_lookup" \
        stat /etc/issue.net
    rm -f "$raw" "$tmp/big.out"
}

# partition_file IMAGE PART OUT: partition PART of IMAGE (any format) as a
# file of its own, for the NTFS tools.
partition_file() {
    local raw=$tmp/part.raw start size
    "$QEMU_IMG" convert -U -O raw "$1" "$raw"
    read -r start size < <(sfdisk --json "$raw" | python3 -c '
import json, sys
t = json.load(sys.stdin)["partitiontable"]
p = t["partitions"][int(sys.argv[1]) - 1]
n = t.get("sectorsize", 512)
print(p["start"] * n, p["size"] * n)' "$2") || fail "no partition $2 in $1"
    dd if="$raw" of="$3" bs=1M iflag=skip_bytes,count_bytes skip="$start" \
        count="$size" status=none
    rm -f "$raw"
}

# ntfs_absent VOLUME PATH: ntfscat opens the NTFS volume and finds no PATH
# there (a volume it cannot open is a failure, not "absent").
ntfs_absent() {
    local err rc=0
    err=$(ntfscat "$1" "$2" 2>&1 >/dev/null) || rc=$?
    [ $rc -ne 0 ] &&
        grep -qF "Couldn't open inode: No such file or directory" <<<"$err" ||
        fail "$1: $2 should be absent; ntfscat (exit $rc): $err"
}

# hive_absent HIVE KEY VALUE: hivexget finds KEY in HIVE, and no VALUE in
# it (a hive or key it cannot open is a failure, not "absent").
hive_absent() {
    local err rc=0
    err=$(hivexget "$1" "$2" "$3" 2>&1 >/dev/null) || rc=$?
    [ $rc -ne 0 ] && grep -qxF "hivexsh: $3: key not found" <<<"$err" ||
        fail "$1: $2\\$3 should be absent; hivexget (exit $rc): $err"
}

# Fails unless image $1 holds exactly the content of image $2.
check_same_content() {
    "$QEMU_IMG" compare -U -q "$1" "$2" || fail "$1 differs from $2"
}

# No sidecar (overlay, journal) of an apply is left next to image $1.
no_sidecars() {
    local left
    left=$(find "$(dirname "$1")" -maxdepth 1 \
        -name ".$(basename "$1").vmaugment*") || fail "cannot list $(dirname "$1")"
    [ -z "$left" ] || fail "sidecar files left next to $1: $left"
}

# The QEMU tool $1 (a file made here) that runs $2, after swapping the
# overlay of image $3 for one of image $4 (a writer of the image's
# directory racing the apply); the swapped file's sha256 goes to $1.sha,
# those of $3 and $4 as they are now to $1.image and $1.decoy.
# swap_was_harmless $1 $3 $4 then fails the test unless all three are as
# they were.
overlay_swapper() {
    mkdir -p "$(dirname "$1")"
    cat >"$1" <<SH
#!/bin/sh
o=$(dirname "$3")/.$(basename "$3").vmaugment-overlay.qcow2
rm -f "\$o"
"$QEMU_IMG" create -q -f qcow2 -b "$4" -F qcow2 "\$o"
sha256sum <"\$o" >"$1.sha"
exec "$2" "\$@"
SH
    chmod +x "$1" || fail "cannot make $1"
    sha256sum <"$3" >"$1.image" && sha256sum <"$4" >"$1.decoy" ||
        fail "cannot read $3 or $4"
}

swap_was_harmless() {
    local o tool
    o=$(dirname "$2")/.$(basename "$2").vmaugment-overlay.qcow2
    tool=$(basename "$1")
    [ "$(sha256sum <"$o")" = "$(cat "$1.sha")" ] ||
        fail "the worker wrote into an overlay swapped in under the name as $tool started"
    [ "$(sha256sum <"$3")" = "$(cat "$1.decoy")" ] ||
        fail "an overlay swapped in as $tool started was committed into its backing file"
    [ "$(sha256sum <"$2")" = "$(cat "$1.image")" ] ||
        fail "the image changed although its overlay's name was swapped"
}

# tool_logger WRAPPER TOOL: a WRAPPER (a file made here) that runs TOOL
# and notes its arguments, a line for each run, in WRAPPER.log.
tool_logger() {
    mkdir -p "$(dirname "$1")"
    cat >"$1" <<SH
#!/bin/sh
printf '%s\\n' "\$*" >>"$1.log"
exec "$2" "\$@"
SH
    chmod +x "$1" || fail "cannot make $1"
    : >"$1.log"
}

# swapped_as_served IMAGE DECOY ARGS...: vmaugment-offline ARGS (an apply
# of IMAGE) while the overlay's name is swapped for one of DECOY as
# qemu-nbd starts; the apply must refuse the commit, no qemu-img be given
# the overlay's name (it opens the overlay through the descriptor the
# apply holds), and swap_was_harmless hold.  With --allow-backing-files:
# the logging qemu-img writes its log, which the probe's confinement
# refuses it.
swapped_as_served() {
    local image=$1 decoy=$2 dir
    shift 2
    dir=$(dirname "$image")/swap-$(basename "$image")
    overlay_swapper "$dir/qemu-nbd" "$QEMU_NBD" "$image" "$decoy"
    tool_logger "$dir/qemu-img" "$QEMU_IMG"
    VMAUGMENT_QEMU_NBD=$dir/qemu-nbd VMAUGMENT_QEMU_IMG=$dir/qemu-img \
        expect_refusal 'is no longer the overlay this apply made; it is not committed' \
        --allow-backing-files "$@"
    ! grep -F ".$(basename "$image").vmaugment-overlay.qcow2" \
        "$dir/qemu-img.log" || fail "qemu-img was given the overlay of $image by its name"
    swap_was_harmless "$dir/qemu-nbd" "$image" "$decoy"
}
