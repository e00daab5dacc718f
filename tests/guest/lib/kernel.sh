#!/usr/bin/env bash
# Fetch Debian 12's current 6.1 kernel image and headers without installing
# them: the archive drops old ABIs, so the ABI is derived from the
# linux-image-amd64 meta package every time, and the packages are unpacked
# with dpkg-deb -x into a private folder (no maintainer scripts, /boot and
# the host's own kernel are untouched).
#
# usage: kernel.sh CACHE_DIR
# prints three lines: KVER=..., KIMAGE=..., KDIR=... (shell-assignable)
set -euo pipefail

cache=$(realpath -m "$1")
mkdir -p "$cache"

derive_abi() {
    apt-cache depends linux-image-amd64 2>/dev/null |
        sed -n 's/^ *Depends: linux-image-\(6\.1\.[0-9]*-[0-9]*\)-amd64$/\1/p' |
        head -n1
}

download() {
    (cd "$1" &&
     apt-get download -q "linux-image-$kver" "linux-headers-$kver" \
         "linux-headers-$abi-common" linux-kbuild-6.1 >&2)
}

abi=$(derive_abi)
if [ -z "$abi" ]; then
    echo "kernel.sh: cannot derive the kernel ABI from linux-image-amd64" \
         "(run apt-get update?)" >&2
    exit 1
fi
kver=$abi-amd64
root=$cache/$kver
if [ ! -f "$root/.unpacked" ]; then
    debs=$cache/debs-$kver
    mkdir -p "$debs"
    # Stale package lists name packages the archive no longer has.
    if ! download "$debs"; then
        apt-get update -qq >&2
        if [ "$(derive_abi)" != "$abi" ]; then
            rm -rf "$debs"
            exec bash "$0" "$cache"
        fi
        download "$debs"
    fi
    rm -rf "$root"
    mkdir -p "$root"
    for deb in "$debs"/*.deb; do
        dpkg-deb -x "$deb" "$root"
    done
    # The arch headers' Makefile includes the -common package by absolute
    # path; point it at our unpacked copy.
    sed -i "s|/usr/src/linux-headers-$abi-common|$root/usr/src/linux-headers-$abi-common|g" \
        "$root/usr/src/linux-headers-$kver/Makefile"
    # The scripts and tools symlinks point into /usr/lib/linux-kbuild-6.1.
    for link in "$root/usr/src/linux-headers-$kver"/{scripts,tools}; do
        if [ -L "$link" ]; then
            ln -sfn "$root/usr/lib/linux-kbuild-6.1/$(basename "$link")" "$link"
        fi
    done
    touch "$root/.unpacked"
fi
echo "KVER=$kver"
echo "KIMAGE=$root/boot/vmlinuz-$kver"
echo "KDIR=$root/usr/src/linux-headers-$kver"
echo "KMODS=$root/lib/modules/$kver"
