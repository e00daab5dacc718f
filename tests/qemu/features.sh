#!/usr/bin/env bash
# What a libvirt domain and the offline tool need of the QEMU we build
# (docs/libvirt.rst): VNC, user networking, USB, q35 and pc, virtio
# devices, -sandbox, and the image formats vmdk, vhdx, vpc and luks.  The
# images our qemu-img writes are read back by the distribution's qemu-img
# (qemu-utils), an independent implementation of the formats, and
# compared byte for byte with the source.
#   tests/qemu/features.sh QEMU_BUILD_DIR     (prints TAP)
set -uo pipefail
bld=${1:?usage: features.sh QEMU_BUILD_DIR}
qemu=$bld/qemu-system-x86_64
img=$bld/qemu-img
ref=/usr/bin/qemu-img
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=0 failed=0

ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
    n=$((n + 1)); failed=1; echo "not ok $n - $1"; shift
    printf '%s\n' "$@" | head -n 5 | sed 's/^/# /'
}
# check NAME COMMAND...: ok when COMMAND succeeds.
check() {
    local name=$1 out
    shift
    if out=$("$@" 2>&1); then ok "$name"; else not_ok "$name" "$out"; fi
}

# lists KIND WORD...: every WORD is a line's first field of "-KIND help".
lists() {
    local kind=$1 out w missing=()
    shift
    out=$("$qemu" "-$kind" help 2>&1)
    for w in "$@"; do
        grep -qE "^(name \")?$w\"?([ ,]|$)" <<<"$out" || missing+=("$w")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        ok "-$kind help lists $*"
    else
        not_ok "-$kind help lists $*" "missing: ${missing[*]}" "$out"
    fi
}

out=$("$qemu" -vnc help 2>&1)
if grep -q '^vnc options:' <<<"$out"; then
    ok "-vnc is an option"
else
    not_ok "-vnc is an option" "$out"
fi
lists machine pc q35
lists netdev user tap bridge
lists device qemu-xhci usb-tablet virtio-net-pci virtio-blk-pci \
    virtio-scsi-pci virtio-serial-pci virtio-rng-pci virtio-balloon-pci \
    vmaugment-pci

# -sandbox on (libvirt passes it when qemu.conf's seccomp_sandbox is on):
# QEMU starts, answers QMP and quits.
out=$(printf '%s\n' '{"execute":"qmp_capabilities"}' '{"execute":"quit"}' |
      timeout 60 "$qemu" -sandbox on,obsolete=deny,elevateprivileges=deny \
          -machine none -nodefaults -display none -qmp stdio 2>&1)
if grep -q '"return": {}' <<<"$out" && grep -q '"event": "SHUTDOWN"' <<<"$out"; then
    ok "-sandbox on: QEMU runs and quits through QMP"
else
    not_ok "-sandbox on: QEMU runs and quits through QMP" "$out"
fi

# A raw source with distinct content in every MiB, holes included.
head -c 3145728 /dev/urandom >"$tmp/src.raw"
truncate -s 8M "$tmp/src.raw"
printf 'vmaugment end' | dd of="$tmp/src.raw" bs=1 seek=8388000 conv=notrunc status=none
for fmt in vmdk vhdx vpc; do
    rc=0
    out=$("$img" convert -f raw -O "$fmt" "$tmp/src.raw" "$tmp/out.$fmt" 2>&1) || rc=$?
    # vpc rounds the size up to its disk geometry: compare the source's
    # length only, and the rest must be zero.
    if [ $rc -eq 0 ] &&
       [ "$("$ref" info --output=json "$tmp/out.$fmt" | sed -n 's/.*"format": "\(.*\)".*/\1/p')" = "$fmt" ] &&
       "$ref" convert -f "$fmt" -O raw "$tmp/out.$fmt" "$tmp/back.$fmt.raw" &&
       cmp -n 8388608 "$tmp/src.raw" "$tmp/back.$fmt.raw" &&
       [ -z "$(tail -c +8388609 "$tmp/back.$fmt.raw" | tr -d '\0' | head -c 1)" ]; then
        ok "qemu-img convert -O $fmt, read back by the distribution's qemu-img"
    else
        not_ok "qemu-img convert -O $fmt, read back by the distribution's qemu-img" \
            "exit $rc" "$out"
    fi
done

rc=0
out=$("$img" convert -f raw -O luks --object secret,id=k,data=vmaugment \
          -o key-secret=k "$tmp/src.raw" "$tmp/out.luks" 2>&1) || rc=$?
if [ $rc -eq 0 ] &&
   "$ref" convert --object secret,id=k,data=vmaugment --image-opts \
       driver=luks,key-secret=k,file.filename="$tmp/out.luks" \
       -O raw "$tmp/back.luks.raw" &&
   cmp "$tmp/src.raw" "$tmp/back.luks.raw" &&
   ! grep -q 'vmaugment end' "$tmp/out.luks"; then
    ok "qemu-img convert -O luks: encrypted, read back with the key"
else
    not_ok "qemu-img convert -O luks: encrypted, read back with the key" \
        "exit $rc" "$out"
fi

echo "1..$n"
exit $failed
