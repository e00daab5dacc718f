#!/usr/bin/env bash
# Confinement of offline servicing (docs/offline.rst, "Confinement"): the
# worker that reads the guest, inspected from the host while it runs; a
# reader that crashes on a crafted image (a worker built with a reader
# bug that a guest file triggers) ends in a reported failure with the
# image untouched and the next job unaffected; images that name host files
# (a backing file, also one hidden in a raw disk's first sector) are
# refused unless the operator allows them.
source "$(dirname "$0")/lib.sh"

: "${VMAUGMENT_OFFLINE_WORKER_BUGGY:?the worker with a reader bug}"
plan 17
fix=$(fixtures_linux)
make_identity
make_payloads
build_bundle "$tmp/demo.vmab" "$demo_rules" "$demo_files"
MANIFEST_ID=crash-trigger build_bundle "$tmp/trigger.vmab" "" \
    '{"op": "add", "path": "/etc/vmaugment-crash", "payload": "tool"}'

# 1-9: the worker, caught waiting for its disk.
python3 "$here/worker-inspect.py" "$VMAUGMENT_OFFLINE" \
    --trust-dir "$tmp/trust" check "$fix/debian.qcow2" "$tmp/demo.vmab"

# 10-13: a reader crash, in inspect and in apply.
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

# 14-17: images that name other host files.
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
