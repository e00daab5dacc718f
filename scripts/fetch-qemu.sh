#!/usr/bin/env bash
# Fetch QEMU 10.0.x from Debian 13's source packages and unpack it with
# Debian's patches applied.
#
# Usage: fetch-qemu.sh DESTDIR
#
# The archive keeps only the current trixie revision, so the version is
# picked at run time and recorded in DESTDIR/.vmaugment-qemu-version.  The
# downloaded source package is cached so a rebuild needs no network.
set -euo pipefail

dest=${1:?usage: fetch-qemu.sh DESTDIR}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/vmaugment/qemu-source
series=${VMAUGMENT_QEMU_SERIES:-10.0.}

pick_version() {
    apt-cache showsrc qemu 2>/dev/null |
        sed -n 's/^Version: //p' |
        grep -F ":$series" |
        sort -V | tail -n 1
}

version=${VMAUGMENT_QEMU_VERSION:-$(pick_version)}
if [ -z "$version" ]; then
    echo "fetch-qemu: no qemu $series* source package; is trixie deb-src configured?" >&2
    exit 1
fi

if [ -f "$dest/.vmaugment-qemu-version" ] &&
   [ "$(cat "$dest/.vmaugment-qemu-version")" = "$version" ]; then
    exit 0
fi

mkdir -p "$cache"
upstream=${version#*:}
dsc=$(ls "$cache"/qemu_"$upstream".dsc 2>/dev/null || true)
if [ -z "$dsc" ]; then
    (cd "$cache" && apt-get source -qq --download-only "qemu=$version")
    dsc=$cache/qemu_$upstream.dsc
fi

rm -rf "$dest" "$dest.tmp"
mkdir -p "$(dirname "$dest")"
# The signature cannot be checked without Debian's keyring of uploaders;
# apt has already verified every file's hash against the signed index.
dpkg-source --no-check -x "$dsc" "$dest.tmp" >/dev/null
echo "$version" > "$dest.tmp/.vmaugment-qemu-version"
mv "$dest.tmp" "$dest"
echo "fetch-qemu: unpacked qemu $version"
