#!/usr/bin/env bash
# Bad inputs are refused with a clear message and leave the image untouched:
# image in use, corrupt qcow2, unsupported layout, dirty filesystem, bad or
# untrusted or missing signature, rules not applying, old-hash mismatch and
# paths escaping the guest.
source "$(dirname "$0")/lib.sh"

plan 12
fix=$(fixtures_linux)
make_identity
make_payloads
build_bundle "$tmp/demo.vmab" "$demo_rules" "$demo_files"

# refuse IMAGE PATTERN ARGS...: refusal and the image byte-for-byte intact.
refuse() {
    local img=$1 pattern=$2 sum
    shift 2
    sum=$(sha256sum <"$img")
    expect_refusal "$pattern" --trust-dir "$tmp/trust" "$@"
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

# --- corrupt qcow2: QEMU's corrupt flag, a bad L1 table, a truncated file.
bad=$tmp/corrupt.qcow2
cp "$fix/debian.qcow2" "$bad"
# incompatible_features (offset 72, big endian): bit 1 is "corrupt".
printf '\x00\x00\x00\x00\x00\x00\x00\x02' |
    dd of="$bad" bs=1 seek=72 conv=notrunc status=none
refuse "$bad" "marked corrupt" apply "$bad" "$tmp/demo.vmab"
cp "$fix/debian.qcow2" "$bad"
# l1_table_offset (offset 40) pointing at an unaligned place.
printf '\x00\x00\x00\x00\x00\x00\x01\x23' |
    dd of="$bad" bs=1 seek=40 conv=notrunc status=none
refuse "$bad" "cannot open|not a usable|corrupt|invalid" inspect "$bad"
refuse "$bad" "cannot open|not a usable|corrupt|invalid" apply "$bad" "$tmp/demo.vmab"
head -c 100000 "$fix/debian.qcow2" >"$bad"
refuse "$bad" "cannot open|not a usable|corrupt|invalid|beyond|NBD" apply "$bad" "$tmp/demo.vmab"
pass "corrupt qcow2 refused"

# --- a format QEMU cannot modify.
"$QEMU_IMG" convert -O vmdk -o subformat=streamOptimized "$fix/debian.qcow2" "$tmp/so.vmdk"
"$VMAUGMENT_OFFLINE" inspect "$tmp/so.vmdk" >/dev/null || fail "streamOptimized inspect"
refuse "$tmp/so.vmdk" "streamOptimized VMDK" apply "$tmp/so.vmdk" "$tmp/demo.vmab"
rm -f "$tmp/so.vmdk"
pass "streamOptimized VMDK readable, refused for apply"

# --- unsupported layout: the root on XFS.
xfs=$tmp/xfs.raw
truncate -s 400M "$xfs"
printf 'label: gpt\nstart=2048, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n' |
    sfdisk --quiet "$xfs"
truncate -s 300M "$tmp/xfs.part"
mkfs.xfs -q -f "$tmp/xfs.part"
dd if="$tmp/xfs.part" of="$xfs" bs=1M seek=1 conv=sparse,notrunc status=none
rm -f "$tmp/xfs.part"
refuse "$xfs" "unsupported disk layout.*XFS" inspect "$xfs"
refuse "$xfs" "unsupported disk layout.*XFS" apply "$xfs" "$tmp/demo.vmab"
pass "XFS layout refused"

# --- dirty filesystems: journal needing recovery, error state.
for how in "feature needs_recovery" "ssv state 2"; do
    raw=$tmp/dirty.raw
    cp --sparse=always "$fix/debian.raw" "$raw"
    debugfs -w -R "$how" "$raw?offset=$(part_offset "$raw" 1)" >/dev/null 2>&1
    refuse "$raw" "journal recovery|dirty or has errors" \
        apply "$raw" "$tmp/demo.vmab"
    rm -f "$raw"
done
pass "dirty filesystems refused"

# --- signatures: tampered manifest, unknown signer, no signature.
mkdir "$tmp/unpack"
tar -C "$tmp/unpack" -xf "$tmp/demo.vmab"
sed -i 's/test bundle/test bundlf/' "$tmp/unpack/manifest.json"
tar -C "$tmp/unpack" -cf "$tmp/tampered.vmab" manifest.json manifest.json.p7s payload
refuse "$img" "signature rejected" apply "$img" "$tmp/tampered.vmab"
tar -C "$tmp/unpack" -cf "$tmp/unsigned.vmab" manifest.json payload
refuse "$img" "lacks manifest.json.p7s" apply "$img" "$tmp/unsigned.vmab"
"$VMAUGMENT_KEYGEN" --name "Stranger" --key "$tmp/other.key" --cert "$tmp/other.pem"
write_manifest "$tmp/manifest.json" "$demo_rules" "$demo_files"
"$VMAUGMENT_OFFLINE" bundle-build --key "$tmp/other.key" --cert "$tmp/other.pem" \
    --payload-dir "$tmp/payload" --output "$tmp/stranger.vmab" "$tmp/manifest.json"
refuse "$img" "signature rejected" apply "$img" "$tmp/stranger.vmab"
# A payload swapped after signing.
tar -C "$tmp/unpack" -xf "$tmp/demo.vmab" manifest.json
echo "evil" >"$tmp/unpack/payload/motd"
tar -C "$tmp/unpack" -cf "$tmp/swapped.vmab" manifest.json manifest.json.p7s payload
refuse "$img" "does not match the signed manifest" apply "$img" "$tmp/swapped.vmab"
pass "bad, unknown and missing signatures refused"

# --- rules that do not hold.
build_bundle "$tmp/norule.vmab" '{"package": "libc6", "version": ">= 9.0"}' "$demo_files"
rc=0; vo apply "$img" "$tmp/norule.vmab" >"$tmp/norule.json" 2>"$tmp/err" || rc=$?
[ $rc -eq 3 ] || fail "not-applicable exit status $rc"
grep -q 'rule "package libc6 >= 9.0" does not hold' "$tmp/err" || fail "message: $(cat "$tmp/err")"
[ "$(json_get "$tmp/norule.json" status)" = not-applicable ] || fail "status"
build_bundle "$tmp/noos.vmab" '{"os": {"id": "fedora"}}' "$demo_files"
refuse "$img" 'rule "os.id = fedora" does not hold' apply "$img" "$tmp/noos.vmab"
pass "bundles whose rules do not hold refused"

# --- expected old hash differs.
build_bundle "$tmp/oldhash.vmab" "" \
    '{"op": "replace", "path": "/etc/motd", "payload": "motd", "old_sha256": "'"$(printf '%064d' 0)"'"}'
refuse "$img" "expected old sha256 0000.*the image has $motd_sha" apply "$img" "$tmp/oldhash.vmab"
pass "old-hash mismatch refused"

# --- paths escaping: '..' in the bundle, a link climbing above /, writing
# through a final link.
# bundle-build only signs; the path is judged when the bundle is loaded.
build_bundle "$tmp/dotdot.vmab" "" \
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

# Two applies of the same image at once: the second is refused at once and
# the first completes (it must not lose its overlay to the second).
cp "$fix/debian.qcow2" "$tmp/twice.qcow2"
vo apply "$tmp/twice.qcow2" "$tmp/demo.vmab" >"$tmp/first.json" 2>&1 &
first=$!
for _ in $(seq 100); do
    ls -A "$tmp" | grep -q '^\.twice\.qcow2\.vmaugment-overlay' && break
    sleep 0.01
done
rc=0; vo apply "$tmp/twice.qcow2" "$tmp/demo.vmab" >"$tmp/second.json" 2>&1 || rc=$?
wait "$first" || { cat "$tmp/first.json"; fail "the first apply failed"; }
if [ $rc -ne 0 ]; then
    grep -q "being serviced by another vmaugment-offline" "$tmp/second.json" ||
        fail "second apply: $(cat "$tmp/second.json")"
fi
vo verify "$tmp/twice.qcow2" "$tmp/demo.vmab" >/dev/null || fail "not patched"
no_sidecars "$tmp/twice.qcow2"
pass "concurrent applies of one image are serialised"
