#!/usr/bin/env bash
# make-debs.sh OUTDIR: the test packages (dpkg-deb --build, root:root).
set -euo pipefail
out=$1
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# pkg NAME VERSION [MULTIARCH]: starts a package tree in $work/NAME_VERSION
pkg() {
    d=$work/$1_$2
    mkdir -p "$d/DEBIAN"
    cat >"$d/DEBIAN/control" <<CTL
Package: $1
Version: $2
Architecture: amd64
Maintainer: Test <test@example.org>
Installed-Size: 10
Section: misc
Priority: optional
${3:+Multi-Arch: $3
}Description: offline unpack test package
 A package for the offline unpack tests.
Homepage: https://example.org/$1
CTL
}
build() {
    (cd "$d" && find . -path ./DEBIAN -prune -o -type f -printf '%P\n' |
        sort | xargs -r md5sum >DEBIAN/md5sums)
    dpkg-deb --root-owner-group -Zxz --build "$d" "$out/$(basename "$d")_amd64.deb" >/dev/null
}

pkg vmaug-demo 1.0
mkdir -p "$d/etc" "$d/usr/bin" "$d/usr/share/vmaug-demo/olddir" "$d/usr/share/vmaug-shared"
echo "setting=1" >"$d/etc/vmaug-demo.conf"
echo "gone=1" >"$d/etc/vmaug-gone.conf"
printf '/etc/vmaug-demo.conf\n/etc/vmaug-gone.conf\n' >"$d/DEBIAN/conffiles"
echo "keep 1" >"$d/usr/share/vmaug-demo/keep.txt"
echo "old" >"$d/usr/share/vmaug-demo/old.txt"
echo "x" >"$d/usr/share/vmaug-demo/olddir/x.txt"
echo "shared 1" >"$d/usr/share/vmaug-shared/demo.txt"
echo "diverted 1" >"$d/usr/share/vmaug-demo/diverted.txt"
printf '#!/bin/sh\necho demo 1\n' >"$d/usr/bin/vmaug-demo"
chmod 755 "$d/usr/bin/vmaug-demo"
ln -s vmaug-demo "$d/usr/bin/vmaug-link"
build

pkg vmaug-demo 2.0
mkdir -p "$d/etc" "$d/usr/bin" "$d/usr/share/vmaug-demo"
echo "setting=2" >"$d/etc/vmaug-demo.conf"
echo "new conffile" >"$d/etc/vmaug-new.conf"
printf '/etc/vmaug-demo.conf\n/etc/vmaug-new.conf\n' >"$d/DEBIAN/conffiles"
echo "keep 2" >"$d/usr/share/vmaug-demo/keep.txt"
ln "$d/usr/share/vmaug-demo/keep.txt" "$d/usr/share/vmaug-demo/hard.txt"
echo "new" >"$d/usr/share/vmaug-demo/new.txt"
echo "diverted 2" >"$d/usr/share/vmaug-demo/diverted.txt"
printf '#!/bin/sh\necho demo 2\n' >"$d/usr/bin/vmaug-demo"
chmod 4755 "$d/usr/bin/vmaug-demo"
ln -s /usr/bin/vmaug-demo "$d/usr/bin/vmaug-link"
printf '#!/bin/sh\nset -e\necho configured >/var/lib/vmaug-demo.configured\n' >"$d/DEBIAN/postinst"
# As shared libraries do: libc-bin's ldconfig trigger, recorded pending.
echo "activate-noawait ldconfig" >"$d/DEBIAN/triggers"
chmod 755 "$d/DEBIAN/postinst"
build

pkg vmaug-other 1.0
mkdir -p "$d/usr/share/vmaug-shared"
echo "other" >"$d/usr/share/vmaug-shared/other.txt"
build

pkg vmaug-new 1.0 same
mkdir -p "$d/etc" "$d/usr/lib/vmaug-new"
echo "fresh=1" >"$d/etc/vmaug-new-pkg.conf"
echo /etc/vmaug-new-pkg.conf >"$d/DEBIAN/conffiles"
echo "lib" >"$d/usr/lib/vmaug-new/lib.txt"
# Under debianutils' file trigger interest (noawait).
mkdir -p "$d/usr/share/debianutils/shells.d"
echo "/usr/bin/vmaug-new-shell" >"$d/usr/share/debianutils/shells.d/vmaug-new"
build

pkg vmaug-pre 1.0
mkdir -p "$d/usr/share/vmaug-pre"
echo "pre 1" >"$d/usr/share/vmaug-pre/file.txt"
build
pkg vmaug-pre 2.0
mkdir -p "$d/usr/share/vmaug-pre"
echo "pre 2" >"$d/usr/share/vmaug-pre/file.txt"
printf '#!/bin/sh\nset -e\necho "preinst $1 $2" >/var/lib/vmaug-pre.preinst\n' \
    >"$d/DEBIAN/preinst"
chmod 755 "$d/DEBIAN/preinst"
build
