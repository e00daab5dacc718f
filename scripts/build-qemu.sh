#!/usr/bin/env bash
# Build the patched qemu-system-x86_64 (with -device vmaugment-pci), the
# image tools and the qtests: one full-featured build, the one the tests
# run and scripts/install.sh installs.
#
# Usage: build-qemu.sh [--fuzz] [BUILD_ROOT]   (default: build/ in the repo)
#
#   BUILD_ROOT/qemu-src   Debian's QEMU 10.0.x source + qemu-patches/ +
#                         our hw/ and tests/qtest/ files copied over it
#   BUILD_ROOT/qemu       the QEMU build directory
#   BUILD_ROOT/qemu-fuzz  with --fuzz: qemu-fuzz-x86_64 built by clang with
#                         libFuzzer, AddressSanitizer and UBSan
#
# Re-running is cheap: the source is re-extracted only when the QEMU
# version or qemu-patches/ change, our files are copied only when their
# content changed (so ninja rebuilds just those), and ccache serves the rest.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
fuzz=false
if [ "${1:-}" = --fuzz ]; then
    fuzz=true
    shift
fi
root=${1:-$top/build}
src=$root/qemu-src
bld=$root/qemu

export CCACHE_BASEDIR=$top       # hits across clones in other directories
export CCACHE_NOHASHDIR=true
export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-2G}

# QEMU's default features, as a distribution builds it, so that a typical
# libvirt domain runs on it (VNC, user networking, USB, the usual image
# formats, -sandbox, pc and q35).  Each feature a libvirt domain or the
# offline tool relies on is also named with --enable-*, so a missing -dev
# package stops configure instead of silently dropping the feature.  The
# prefix is fixed here because QEMU compiles it into its search paths
# (scripts/install.sh installs this very build below it).
prefix=${VMAUGMENT_PREFIX:-/opt/vmaugment}
configure_flags=(
    --python=/usr/bin/python3
    --disable-download
    --cc=/usr/lib/ccache/gcc
    --cxx=/usr/lib/ccache/g++
    --target-list=x86_64-softmmu
    --prefix="$prefix"
    --disable-docs
    --disable-install-blobs
    --enable-kvm --enable-tcg --enable-tools
    --enable-seccomp --enable-gnutls --enable-slirp --enable-pixman
    --enable-vnc --enable-vnc-jpeg --enable-vnc-sasl --enable-png
    --enable-libusb --enable-numa --enable-zstd --enable-bzip2 --enable-curl
    --enable-fdt=system --enable-linux-aio --enable-linux-io-uring
    --enable-cap-ng --enable-vhost-kernel --enable-vhost-net --enable-vhost-user
    --firmwarepath=/usr/share/qemu:/usr/share/seabios:/usr/lib/ipxe/qemu
)

targets=(qemu-system-x86_64 qemu-img qemu-nbd storage-daemon/qemu-storage-daemon
         tests/qtest/qos-test tests/qtest/fuzz-vmaugment-test
         tests/qtest/vmaugment-lifecycle-test)

if $fuzz; then
    bld=$root/qemu-fuzz
    configure_flags=(
        --python=/usr/bin/python3
        --disable-download
        --cc=/usr/lib/ccache/clang
        --cxx=/usr/lib/ccache/clang++
        --target-list=x86_64-softmmu
        --without-default-features
        --disable-docs
        --disable-install-blobs
        --disable-tools
        --enable-fuzzing
        --enable-asan
        --enable-ubsan
        --firmwarepath=/usr/share/qemu:/usr/share/seabios:/usr/lib/ipxe/qemu
    )
    targets=(qemu-fuzz-x86_64)
fi

# Copy SRC to DST only if the content differs, keeping ninja's view stable.
install_if_changed() {
    if ! cmp -s "$1" "$2"; then
        mkdir -p "$(dirname "$2")"
        cp "$1" "$2"
    fi
}

patches_digest() {
    cat "$top"/qemu-patches/*.patch | sha256sum | cut -d' ' -f1
}

prepare_source() {
    local want have=
    want=$(patches_digest)
    [ -f "$src/.vmaugment-patches" ] && have=$(cat "$src/.vmaugment-patches")
    if [ "$want" != "$have" ]; then
        rm -rf "$src"
    fi
    "$top/scripts/fetch-qemu.sh" "$src"
    if [ ! -f "$src/.vmaugment-patches" ]; then
        for p in "$top"/qemu-patches/*.patch; do
            patch -s -p1 -d "$src" < "$p"
        done
        echo "$want" > "$src/.vmaugment-patches"
    fi
}

# QEMU includes Linux UAPI headers through include/standard-headers/, made
# by cp_portable() in its own update-linux-headers.sh.  Run that very
# function on our headers so the conversion is QEMU's, not a copy of it:
# the protocol header, and the host helper link's, which builds on it.
install_protocol_header() {
    local tmp
    tmp=$(mktemp -d)
    (
        eval "$(sed -n '/^cp_portable() {/,/^}/p' "$src/scripts/update-linux-headers.sh")"
        arch=
        cp_portable "$top/include/uapi/linux/virtio_vmaugment.h" "$tmp"
        cp_portable "$top/include/vmaugment/host-link.h" "$tmp"
    )
    install_if_changed "$tmp/virtio_vmaugment.h" \
        "$src/include/standard-headers/linux/virtio_vmaugment.h"
    install_if_changed "$tmp/host-link.h" \
        "$src/include/standard-headers/vmaugment/host-link.h"
    # The vocabulary and the payload rules are code, not UAPI headers: only
    # their include of the protocol header is QEMU's to rewrite.
    for h in protocol-names.h protocol-rules.h; do
        sed 's|<linux/virtio_vmaugment.h>|"standard-headers/linux/virtio_vmaugment.h"|' \
            "$top/include/vmaugment/$h" >"$tmp/$h"
        install_if_changed "$tmp/$h" \
            "$src/include/standard-headers/vmaugment/$h"
    done
    rm -rf "$tmp"
}

overlay_tree() {
    local f
    (cd "$top" && find hw/vmaugment include/hw/vmaugment qapi tests/qtest \
                       -type f) |
    while read -r f; do
        install_if_changed "$top/$f" "$src/$f"
    done
}

configure_qemu() {
    local want have=
    want=$(printf '%s\n' "${configure_flags[@]}" "$(cat "$src/.vmaugment-qemu-version")" |
           sha256sum | cut -d' ' -f1)
    [ -f "$bld/.vmaugment-configured" ] && have=$(cat "$bld/.vmaugment-configured")
    if [ "$want" = "$have" ] && [ -f "$bld/build.ninja" ]; then
        return
    fi
    rm -rf "$bld"
    mkdir -p "$bld"
    (cd "$bld" && "$src/configure" "${configure_flags[@]}" >configure.log 2>&1) || {
        tail -n 30 "$bld/configure.log" >&2
        exit 1
    }
    echo "$want" > "$bld/.vmaugment-configured"
}

# Binaries run from the build tree look for firmware only below
# qemu-bundle/<firmware path>.
link_firmware() {
    local d
    for d in /usr/share/qemu /usr/share/seabios /usr/lib/ipxe/qemu; do
        mkdir -p "$bld/qemu-bundle$(dirname "$d")"
        [ -e "$bld/qemu-bundle$d" ] || ln -s "$d" "$bld/qemu-bundle$d"
    done
}

prepare_source
install_protocol_header
overlay_tree
configure_qemu
ninja -C "$bld" -j"$(nproc)" "${targets[@]}"
link_firmware
echo "build-qemu: $(cat "$src/.vmaugment-qemu-version") built in $bld"
