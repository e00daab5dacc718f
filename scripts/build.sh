#!/usr/bin/env bash
# Install what vmaugment needs and build all of it: the patched QEMU and
# the userspace parts.  Safe to re-run; it reuses everything it can.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=${VMAUGMENT_BUILD_ROOT:-$top/build}

"$top/scripts/install-deps.sh"
"$top/scripts/build-qemu.sh" "$build"

if [ ! -f "$build/vmaugment/build.ninja" ]; then
    # The prefix of the QEMU build (scripts/install.sh), configuration in
    # /etc and state in /var.
    meson setup --prefix="${VMAUGMENT_PREFIX:-/opt/vmaugment}" \
        --sysconfdir=/etc --localstatedir=/var \
        "$build/vmaugment" "$top" >/dev/null
fi
ninja -C "$build/vmaugment"
