#!/usr/bin/env bash
# Check the code against the style of the tree it belongs to:
#   hw/, include/hw/, tests/qtest/   QEMU's scripts/checkpatch.pl
#   guest-driver/kernel/             Linux's scripts/checkpatch.pl
#
# QEMU's script comes from the source build-qemu.sh unpacked.  Linux's
# comes from Debian's linux-source package of the guest kernel series; no
# binary package ships it alone, so the three files it needs are taken out
# of the source tarball once and cached.
# Prints one line per file; exits non-zero if any file has an error or
# warning.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=${VMAUGMENT_BUILD_ROOT:-$top/build}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/vmaugment/checkpatch-linux
status=0

linux_checkpatch() {
    local pkg tar tmp
    if [ -x "$cache/scripts/checkpatch.pl" ]; then
        return
    fi
    pkg=$(apt-cache depends linux-source | sed -n 's/.*Depends: //p' | head -n1)
    tmp=$(mktemp -d)
    (cd "$tmp" && apt-get download -qq "$pkg" 2>/dev/null && dpkg-deb -x ./*.deb src)
    tar=$(ls "$tmp"/src/usr/src/linux-source-*.tar.xz)
    mkdir -p "$cache.tmp"
    tar -xJf "$tar" -C "$cache.tmp" --strip-components=1 --wildcards \
        '*/scripts/checkpatch.pl' '*/scripts/spelling.txt' \
        '*/scripts/const_structs.checkpatch'
    rm -rf "$tmp" "$cache"
    mv "$cache.tmp" "$cache"
}

# check TREE SCRIPT [--ignore TYPES] FILE...
check() {
    local tree=$1 script=$2 ignore=()
    shift 2
    if [ "$1" = --ignore ]; then
        ignore=(--ignore "$2")
        shift 2
    fi
    local f out
    for f in "$@"; do
        out=$(cd "$tree" && "$script" --no-tree --terse --show-types -q \
                  "${ignore[@]}" -f "$top/$f" 2>&1 |
              grep -E ': (ERROR|WARNING):' || true)
        if [ -n "$out" ]; then
            echo "not ok $f"
            echo "$out" | sed 's/^/    /'
            status=1
        else
            echo "ok $f"
        fi
    done
}

cd "$top"
mapfile -t qemu_files < <(git ls-files 'hw/vmaugment/*.[ch]' \
    'include/hw/vmaugment/*.h' 'tests/qtest/*vmaugment*.[ch]' \
    'tests/qtest/libqos/vmaugment.[ch]')
check "$build/qemu-src" "$build/qemu-src/scripts/checkpatch.pl" "${qemu_files[@]}"

mapfile -t kernel_files < <(git ls-files 'guest-driver/kernel/*.[ch]' \
    'include/uapi/linux/*.h')
if [ ${#kernel_files[@]} -gt 0 ]; then
    linux_checkpatch
    # The driver is built out of tree (DKMS) for several kernel series, so
    # it must test LINUX_VERSION_CODE where an interface changed.
    check "$cache" "$cache/scripts/checkpatch.pl" \
        --ignore LINUX_VERSION_CODE,CONSTANT_COMPARISON "${kernel_files[@]}"
fi
exit $status
