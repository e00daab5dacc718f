#!/usr/bin/env bash
# Bad inputs are refused with a clear message and leave the image untouched:
# image in use, corrupt qcow2, unsupported layout, dirty filesystem, bad or
# untrusted or missing signature, rules not applying, old-hash mismatch and
# paths escaping the guest.
source "$(dirname "$0")/lib.sh"

plan 19
fix=$(fixtures_linux)
make_identity
make_payloads
build_bundle "$tmp/demo.vmab" "$demo_rules" "$demo_files"

# refuse IMAGE [--status N] PATTERN ARGS...: the refusal (expect_refusal)
# and the image byte-for-byte intact, no sidecar left.
refuse() {
    local img=$1 sum
    shift
    sum=$(sha256sum <"$img")
    if [ "$1" = --status ]; then
        expect_refusal "$1" "$2" "$3" --trust-dir "$tmp/trust" "${@:4}"
    else
        expect_refusal "$1" --trust-dir "$tmp/trust" "${@:2}"
    fi
    [ "$(sha256sum <"$img")" = "$sum" ] || fail "refusal changed $img"
    no_sidecars "$img"
}

img=$tmp/t.qcow2
cp "$fix/debian.qcow2" "$img"

# --- image in use: a process of QEMU's holds the image lock.
hold_image_lock "$img" qcow2
refuse "$img" "in use by a running QEMU" inspect "$img"
refuse "$img" "in use by a running QEMU" apply "$img" "$tmp/demo.vmab"
kill "${bg_pids[0]}"; wait "${bg_pids[0]}" 2>/dev/null || true; bg_pids=()
pass "image in use refused"

# A VM holding the image: any qemu-system-x86_64 opens it the same way.
qemu_system=${VMAUGMENT_QEMU_SYSTEM:-${VMAUGMENT_QEMU_BUILD_DIR:+$VMAUGMENT_QEMU_BUILD_DIR/}qemu-system-x86_64}
need "$qemu_system" qemu-system-x86
"$qemu_system" -S -display none -nodefaults -machine none \
    -blockdev driver=file,filename="$img",node-name=f \
    -blockdev driver=qcow2,file=f,node-name=d \
    -monitor none -serial none </dev/null >"$tmp/vm.log" 2>&1 &
bg_pids+=($!)
# Refuse only once the VM holds the lock, as qemu-img itself sees it.
for _ in $(seq 100); do
    ! "$QEMU_IMG" info "$img" >/dev/null 2>&1 && break
    kill -0 "${bg_pids[0]}" 2>/dev/null || fail "qemu-system: $(cat "$tmp/vm.log")"
    sleep 0.1
done
held=$("$QEMU_IMG" info "$img" 2>&1) || true
grep -q 'Failed to get shared "write" lock' <<<"$held" ||
    fail "qemu-system does not hold the image lock: $held $(cat "$tmp/vm.log")"
refuse "$img" "in use by a running QEMU" apply "$img" "$tmp/demo.vmab"
kill "${bg_pids[0]}"; wait "${bg_pids[0]}" 2>/dev/null || true; bg_pids=()
pass "image held by qemu-system refused"

# A reader holding the image (a read-only export, as a VM's read-only disk
# or another inspection holds it) stops a change, not another reading.
"$QEMU_NBD" --read-only --persistent --socket="$tmp/ro.sock" -f qcow2 \
    "$img" 2>"$tmp/ro.log" &
bg_pids+=($!)
for _ in $(seq 50); do
    [ -S "$tmp/ro.sock" ] && break
    sleep 0.1
done
[ -S "$tmp/ro.sock" ] || fail "qemu-nbd --read-only: $(cat "$tmp/ro.log")"
vo inspect "$img" >"$tmp/ro-inspect.json" ||
    fail "inspect beside a reader: $(cat "$tmp/ro-inspect.json")"
refuse "$img" "in use by a running QEMU" apply "$img" "$tmp/demo.vmab"
kill "${bg_pids[0]}"; wait "${bg_pids[0]}" 2>/dev/null || true; bg_pids=()
pass "beside a read-only user, inspect reads and apply is refused"

# --- corrupt qcow2: QEMU's corrupt flag, a bad L1 table, a truncated file.
bad=$tmp/corrupt.qcow2
cp "$fix/debian.qcow2" "$bad"
# incompatible_features (offset 72, big endian): bit 1 is "corrupt".
printf '\x00\x00\x00\x00\x00\x00\x00\x02' |
    dd of="$bad" bs=1 seek=72 conv=notrunc status=none
refuse "$bad" "is marked corrupt by QEMU; repair it with 'qemu-img check -r all'" \
    apply "$bad" "$tmp/demo.vmab"
cp "$fix/debian.qcow2" "$bad"
# l1_table_offset (offset 40) pointing at an unaligned place.
printf '\x00\x00\x00\x00\x00\x00\x01\x23' |
    dd of="$bad" bs=1 seek=40 conv=notrunc status=none
refuse "$bad" "is not a usable disk image: .*L1 table offset invalid" inspect "$bad"
refuse "$bad" "is not a usable disk image: .*L1 table offset invalid" \
    apply "$bad" "$tmp/demo.vmab"
# QEMU reads the clusters a truncated qcow2 lost as zeros: what is refused
# is a disk without a system, not a truncated file.  (The file's name must
# not be a word of the patterns: messages quote it.)
bad=$tmp/short.qcow2
head -c 100000 "$fix/debian.qcow2" >"$bad"
refuse "$bad" "no Linux or Windows system found" apply "$bad" "$tmp/demo.vmab"
pass "corrupt qcow2 refused"

# --- a format QEMU cannot modify.
"$QEMU_IMG" convert -O vmdk -o subformat=streamOptimized "$fix/debian.qcow2" "$tmp/so.vmdk"
"$VMAUGMENT_OFFLINE" inspect "$tmp/so.vmdk" >/dev/null || fail "streamOptimized inspect"
refuse "$tmp/so.vmdk" "is a streamOptimized VMDK, which QEMU cannot modify" \
    apply "$tmp/so.vmdk" "$tmp/demo.vmab"
rm -f "$tmp/so.vmdk"
pass "streamOptimized VMDK readable, refused for apply"

# --- unsupported layouts: the root on XFS, btrfs or LUKS, each refused
# naming the partition and what would service it.
# one_partition IMAGE MKFS...: a GPT disk whose partition 1 MKFS made.
one_partition() {
    local img=$1
    shift
    truncate -s 400M "$img"
    printf 'label: gpt\nstart=2048, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n' |
        sfdisk --quiet "$img"
    truncate -s 300M "$tmp/fs.part"
    "$@" "$tmp/fs.part" >/dev/null || fail "$* failed"
    dd if="$tmp/fs.part" of="$img" bs=1M seek=1 conv=sparse,notrunc status=none
    rm -f "$tmp/fs.part"
}
routes="--backend=libguestfs .*--host-kernel"
xfs=$tmp/xfs.raw
one_partition "$xfs" mkfs.xfs -q -f
refuse "$xfs" "unsupported disk layout.*partition 1: XFS.*$routes" inspect "$xfs"
refuse "$xfs" "unsupported disk layout.*partition 1: XFS.*$routes" \
    apply "$xfs" "$tmp/demo.vmab"
pass "XFS layout refused, naming the partition and both routes"

btrfs=$tmp/btrfs.raw
one_partition "$btrfs" mkfs.btrfs -q -f
refuse "$btrfs" "partition 1: btrfs filesystem.*$routes" \
    apply "$btrfs" "$tmp/demo.vmab"
rm -f "$btrfs"
# LUKS2 with a cheap key derivation: the test only needs its header.
luks=$tmp/luks.raw
one_partition "$luks" sh -c 'printf pw | cryptsetup luksFormat -q \
    --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 "$0" -'
refuse "$luks" "partition 1: LUKS encrypted volume.*--luks-key UUID:file:KEYFILE" \
    apply "$luks" "$tmp/demo.vmab"
# With its key: QEMU's luks driver opens LUKS1 only, and says so.
printf pw >"$tmp/luks.key"
refuse "$luks" "the LUKS volume at byte [0-9]+ is not LUKS1, the only version QEMU's luks driver opens" \
    --luks-key "all:file:$tmp/luks.key" apply "$luks" "$tmp/demo.vmab"
rm -f "$luks"
pass "btrfs refused naming the routes; LUKS refused as encrypted, LUKS2 also with its key"

# --- dirty filesystems: journal needing recovery, error state.
# dumpe2fs confirms each plant took before the refusal is judged.
for how in "feature needs_recovery/needs_recovery/needs journal recovery" \
    "ssv state 2/not clean with errors/dirty or has errors"; do
    IFS=/ read -r request state reason <<<"$how"
    raw=$tmp/dirty.raw
    cp --sparse=always "$fix/debian.raw" "$raw"
    off=$(part_offset "$raw" 1)
    debugfs -w -R "$request" "$raw?offset=$off" >/dev/null 2>&1
    dumpe2fs -h "$raw?offset=$off" 2>/dev/null |
        grep -E '^Filesystem (features|state):' | grep -q "$state" ||
        fail "debugfs '$request' did not leave the root '$state'"
    refuse "$raw" "$reason" apply "$raw" "$tmp/demo.vmab"
    rm -f "$raw"
done
pass "dirty filesystems refused"

# --- signatures: each tampering refused for its own reason.
mkdir "$tmp/unpack"
tar -C "$tmp/unpack" -xf "$tmp/demo.vmab"
sed -i 's/test bundle/test bundlf/' "$tmp/unpack/manifest.json"
tar -C "$tmp/unpack" -cf "$tmp/tampered.vmab" manifest.json manifest.json.p7s payload
refuse "$img" --status 4 "signature rejected: the signature does not match the data" \
    apply "$img" "$tmp/tampered.vmab"
pass "manifest changed after signing: signature does not match"

tar -C "$tmp/unpack" -cf "$tmp/unsigned.vmab" manifest.json payload
refuse "$img" --status 4 "lacks manifest.json.p7s; only signed bundles are applied" \
    apply "$img" "$tmp/unsigned.vmab"
pass "bundle without a signature refused"

"$VMAUGMENT_KEYGEN" --name "Stranger" --key "$tmp/other.key" --cert "$tmp/other.pem"
write_manifest "$tmp/manifest.json" "$demo_rules" "$demo_files"
"$VMAUGMENT_OFFLINE" bundle-build --key "$tmp/other.key" --cert "$tmp/other.pem" \
    --payload-dir "$tmp/payload" --output "$tmp/stranger.vmab" "$tmp/manifest.json"
refuse "$img" --status 4 "signature rejected: the signer's certificate is not trusted: .*issuer is unknown" \
    apply "$img" "$tmp/stranger.vmab"
pass "bundle signed by an untrusted key refused"

# A payload swapped after signing.
tar -C "$tmp/unpack" -xf "$tmp/demo.vmab" manifest.json
echo "evil" >"$tmp/unpack/payload/motd"
tar -C "$tmp/unpack" -cf "$tmp/swapped.vmab" manifest.json manifest.json.p7s payload
refuse "$img" --status 4 "payload \"motd\" does not match the signed manifest's hash" \
    apply "$img" "$tmp/swapped.vmab"
pass "payload swapped after signing refused"

# Signed by the trusted key, but not a manifest we accept.
# bundle-build refuses to sign it.
rc=0; build_bundle "$tmp/badop.vmab" "" '{"op": "frobnicate", "path": "/etc/motd"}' \
    2>"$tmp/err" || rc=$?
[ $rc -eq 1 ] && [ ! -e "$tmp/badop.vmab" ] &&
    grep -q 'unknown op "frobnicate"' "$tmp/err" ||
    fail "bundle-build signed an unknown op (exit $rc): $(cat "$tmp/err")"
build_unchecked_bundle "$tmp/badop.vmab" "" '{"op": "frobnicate", "path": "/etc/motd"}'
refuse "$img" 'bad bundle manifest: files\[0\]: unknown op "frobnicate"' \
    apply "$img" "$tmp/badop.vmab"
pass "signed but malformed manifest refused"

# --- rules that do not hold.
build_bundle "$tmp/norule.vmab" '{"package": "libc6", "version": ">= 9.0"}' "$demo_files"
rc=0; vo apply "$img" "$tmp/norule.vmab" >"$tmp/norule.json" 2>"$tmp/err" || rc=$?
[ $rc -eq 3 ] || fail "not-applicable exit status $rc"
grep -q 'rule "package libc6 >= 9.0" does not hold' "$tmp/err" || fail "message: $(cat "$tmp/err")"
[ "$(json_get "$tmp/norule.json" status)" = not-applicable ] || fail "status"
build_bundle "$tmp/noos.vmab" '{"os": {"id": "fedora"}}' "$demo_files"
refuse "$img" --status 3 'rule "os.id = fedora" does not hold' apply "$img" "$tmp/noos.vmab"
pass "bundles whose rules do not hold refused"

# --- expected old hash differs.
build_bundle "$tmp/oldhash.vmab" "" \
    '{"op": "replace", "path": "/etc/motd", "payload": "motd", "old_sha256": "'"$(printf '%064d' 0)"'"}'
refuse "$img" "expected old sha256 0000.*the image has $motd_sha" apply "$img" "$tmp/oldhash.vmab"
pass "old-hash mismatch refused"

# --- a refusal found on the overlay names the image, in apply and batch
# alike: the overlay is a hidden file of ours nobody asked about.
rc=0; vo apply "$img" "$tmp/oldhash.vmab" >"$tmp/oh.json" 2>"$tmp/oh.err" || rc=$?
rc2=0; vo batch --bundle "$tmp/oldhash.vmab" "$img" >"$tmp/ohb.json" 2>"$tmp/ohb.err" || rc2=$?
for f in oh.err oh.json ohb.err ohb.json; do
    if grep -q 'overlay\|\.vmaugment' "$tmp/$f"; then
        fail "$f names the overlay: $(cat "$tmp/$f")"
    fi
done
[ $rc -eq 1 ] && [ $rc2 -ne 0 ] && grep -qF "$(basename "$img")" "$tmp/oh.err" &&
    grep -qF "$(basename "$img")" "$tmp/ohb.err" ||
    fail "the refusals do not name the image (exit $rc, $rc2): $(cat "$tmp/oh.err" "$tmp/ohb.err")"
# qemu-nbd's own failure on the overlay, from a stand-in that fails as a
# lock held elsewhere would, naming the file it was given.
cat >"$tmp/nbd-fails" <<'SH'
#!/bin/sh
for a; do f=$a; done
echo "qemu-nbd: Failed to get \"write\" lock on $f" >&2
exit 1
SH
chmod +x "$tmp/nbd-fails"
rc=0; VMAUGMENT_QEMU_NBD=$tmp/nbd-fails vo apply "$img" "$tmp/demo.vmab" \
    >"$tmp/nbd.json" 2>"$tmp/nbd.err" || rc=$?
rc2=0; VMAUGMENT_QEMU_NBD=$tmp/nbd-fails vo batch --bundle "$tmp/demo.vmab" \
    --report-dir "$tmp/nbd-reports" "$img" >"$tmp/nbdb.json" 2>"$tmp/nbdb.err" ||
    rc2=$?
for f in oh.err oh.json ohb.err ohb.json nbd.err nbd.json nbdb.err nbdb.json \
         nbd-reports; do
    if grep -rq 'overlay\|\.vmaugment' "$tmp/$f"; then
        fail "$f names the overlay: $(cat "$tmp/$f" 2>/dev/null || ls "$tmp/$f")"
    fi
done
[ $rc -eq 1 ] && [ $rc2 -ne 0 ] && grep -qF "$(basename "$img")" "$tmp/nbd.err" &&
    grep -q 'write.*lock' "$tmp/nbd.err" ||
    fail "qemu-nbd's failure does not name the image (exit $rc, $rc2): $(cat "$tmp/nbd.err" "$tmp/nbdb.err")"
no_sidecars "$img"
pass "refusals name the image, never the overlay"

# --- paths escaping: '..' in the bundle, a link climbing above /, writing
# through a final link.
# bundle-build refuses the first; the others are judged on the image.
build_unchecked_bundle "$tmp/dotdot.vmab" "" \
    '{"op": "add", "path": "/etc/../../tmp/x", "payload": "motd"}'
refuse "$img" "'\\.\\.' component" apply "$img" "$tmp/dotdot.vmab"
build_bundle "$tmp/escape.vmab" "" \
    '{"op": "add", "path": "/srv/www/escape/pwned", "payload": "motd"}'
refuse "$img" "climbs above the guest's root" apply "$img" "$tmp/escape.vmab"
build_bundle "$tmp/link.vmab" "" \
    '{"op": "replace", "path": "/etc/os-release", "payload": "motd", "old_sha256": "'"$motd_sha"'"}'
refuse "$img" "symbolic link; refusing" apply "$img" "$tmp/link.vmab"
pass "escaping paths refused"

# A guest-absolute link is followed inside the guest, across filesystems.
build_bundle "$tmp/cross.vmab" "" \
    '{"op": "add", "path": "/etc/site/new.txt", "payload": "motd"}'
vo apply --dry-run "$img" "$tmp/cross.vmab" >"$tmp/cross.json"
[ "$(json_get "$tmp/cross.json" plan 0 resolved)" = /srv/www/new.txt ] ||
    fail "cross-filesystem link resolution"
pass "guest-absolute links resolve inside the guest"

# Two applies of the same image at once: exactly one succeeds; the other
# is refused because the first holds the image, and the image is patched
# once.  The first is stopped while it holds its lock (its overlay exists),
# so the second cannot come too late to meet it.
twice=$tmp/twice.qcow2
cp "$fix/debian.qcow2" "$twice"
setsid "$VMAUGMENT_OFFLINE" --trust-dir "$tmp/trust" apply "$twice" \
    "$tmp/demo.vmab" >"$tmp/first.json" 2>"$tmp/first.err" &
first=$!
bg_groups+=("$first")
overlay=$tmp/.twice.qcow2.vmaugment-overlay.qcow2
for _ in $(seq 500); do
    [ -e "$overlay" ] && break
    kill -0 "$first" 2>/dev/null || fail "first apply ended early: $(cat "$tmp/first.err")"
    sleep 0.01
done
kill -STOP -- "-$first"
[ -e "$overlay" ] || fail "the first apply made no overlay: $(cat "$tmp/first.err")"
sum=$(cat "$twice" "$overlay" | sha256sum)
expect_refusal "is being serviced by another vmaugment-offline" \
    --trust-dir "$tmp/trust" apply "$twice" "$tmp/demo.vmab"
# The refused one touched neither the image nor the first one's overlay.
[ -e "$overlay" ] || fail "the refused apply removed the first one's overlay"
[ "$(cat "$twice" "$overlay" | sha256sum)" = "$sum" ] ||
    fail "the refused apply changed the image or the first one's overlay"
kill -CONT -- "-$first"
wait "$first" || fail "the first apply failed: $(cat "$tmp/first.err")"
bg_groups=()
[ "$(json_get "$tmp/first.json" status)" = applied ] || fail "first apply status"
check_demo_applied "$twice"
no_sidecars "$twice"
pass "concurrent applies of one image: one applied, one refused as in use"
