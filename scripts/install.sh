#!/usr/bin/env bash
# Install vmaugment on this host: the patched QEMU and our tools under one
# prefix (default /opt/vmaugment), so the distribution's QEMU in /usr/bin
# stays as it is and nothing in the default PATH changes.
#
#   scripts/install.sh [--destdir DIR]
#
#   PREFIX/bin          qemu-system-x86_64, qemu-img, qemu-nbd,
#                       qemu-storage-daemon (the build scripts/build-qemu.sh
#                       made, configured for this prefix), vmaugment-admin,
#                       vmaugment-offline, vmaugment-repo, vmaugment-pack ...
#   PREFIX/libexec      vmaugment-helper's sandboxed module runner
#   PREFIX/share/qemu   QEMU's keymaps (firmware: Debian's seabios,
#                       ipxe-qemu and qemu-system-data)
#   /etc/vmaugment/helper.conf   the helper's configuration (kept if present)
#   systemd's unit, tmpfiles.d and sysusers.d directories: the helper's
#                       socket and service, /run/vmaugment, the vmaugment
#                       group; the offline servicing timer
#
# Without --destdir it also creates the vmaugment group, puts libvirt's
# QEMU user (libvirt-qemu) in it when that user exists, and makes
# /run/vmaugment (docs/service.rst).  The prefix is fixed when QEMU is
# configured: set VMAUGMENT_PREFIX for both scripts to change it.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=${VMAUGMENT_BUILD_ROOT:-$top/build}
prefix=${VMAUGMENT_PREFIX:-/opt/vmaugment}
destdir=
if [ "${1:-}" = --destdir ]; then
    destdir=$(realpath -m "${2:?--destdir DIR}")
fi

"$top/scripts/build.sh"

if ! grep -qF -- "'--prefix=$prefix'" "$build/qemu/config.status"; then
    echo "install: $build/qemu was not configured for $prefix" \
         "(run scripts/build-qemu.sh with VMAUGMENT_PREFIX=$prefix)" >&2
    exit 1
fi

# QEMU: the binaries the build made, and the data they look for below
# PREFIX/share/qemu.  Not 'meson install' of QEMU's tree, which would first
# build every tool and firmware QEMU knows about.
install -d "$destdir$prefix/bin" "$destdir$prefix/share/qemu"
for b in qemu-system-x86_64 qemu-img qemu-nbd storage-daemon/qemu-storage-daemon; do
    install -m 0755 "$build/qemu/$b" "$destdir$prefix/bin/"
done
cp -rL "$build/qemu/qemu-bundle$prefix/share/qemu/keymaps" "$destdir$prefix/share/qemu/"

# Our tools, for the same prefix; configuration in /etc, state in /var.
meson configure "$build/vmaugment" -Dprefix="$prefix" -Dsysconfdir=/etc \
    -Dlocalstatedir=/var >/dev/null
ninja -C "$build/vmaugment" >/dev/null
DESTDIR=$destdir meson install -C "$build/vmaugment" --no-rebuild --quiet

if [ -z "$destdir" ]; then
    getent group vmaugment >/dev/null || groupadd --system vmaugment
    if getent passwd libvirt-qemu >/dev/null &&
       ! id -nG libvirt-qemu | tr ' ' '\n' | grep -qx vmaugment; then
        usermod -a -G vmaugment libvirt-qemu
    fi
    install -d -m 0750 -o root -g vmaugment /run/vmaugment
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload
    fi
fi
echo "install: vmaugment in ${destdir}$prefix; start the helper with" \
     "'systemctl start vmaugment-helper' (docs/service.rst)"
