#!/usr/bin/env bash
# Check the code against the style of the tree it belongs to:
#   hw/, include/hw/, tests/qtest/   QEMU's scripts/checkpatch.pl
#   guest-driver/kernel/, the protocol headers (UAPI style)
#                                    Linux's scripts/checkpatch.pl
#   the rest of the C (userspace)    scripts/check-source.py: QEMU's layout
#                                    as HACKING.rst states it
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

# check SCRIPT [OPTION...] -- FILE...
# Runs one checkpatch.pl per file from the top of our tree, so that the
# script sees the path the file has in QEMU's or Linux's tree (QEMU's
# rules differ under tests/).  A file passes only when the script ran,
# exited 0 and printed its own summary saying it checked lines and found
# no error and no warning: a script that refuses its options, crashes or
# checks nothing fails the file instead of passing it.
check() {
    local script=$1 opts=()
    shift
    while [ "$1" != -- ]; do
        opts+=("$1")
        shift
    done
    shift
    local f out rc
    for f in "$@"; do
        rc=0
        out=$(perl "$script" --no-tree "${opts[@]}" -f "$f" 2>&1) ||
            rc=$?
        if [ "$rc" -eq 0 ] &&
           grep -qE '^total: 0 errors, 0 warnings, [1-9][0-9]* lines checked' \
               <<<"$out"; then
            echo "ok $f"
        else
            echo "not ok $f (checkpatch exit $rc)"
            { grep -E '(ERROR|WARNING|CHECK)' <<<"$out" ||
              head -n 5 <<<"$out"; } | sed 's/^/    /'
            status=1
        fi
    done
}

cd "$top"
mapfile -t qemu_files < <(git ls-files 'hw/vmaugment/*.[ch]' \
    'include/hw/vmaugment/*.h' 'tests/qtest/*vmaugment*.[ch]' \
    'tests/qtest/libqos/vmaugment.[ch]')
# --strict: QEMU's script otherwise exits 0 on warnings; with --terse it
# prints its summary only when quiet (-q).
check "$build/qemu-src/scripts/checkpatch.pl" --terse --strict -q -- "${qemu_files[@]}"

mapfile -t kernel_files < <(git ls-files 'guest-driver/kernel/*.[ch]' \
    'include/uapi/linux/*.h' 'include/vmaugment/host-link.h')
if [ ${#kernel_files[@]} -gt 0 ]; then
    linux_checkpatch
    # The driver's options, shared with its Makefile's checkpatch target.
    mapfile -t kernel_opts < <(grep -v '^#' guest-driver/kernel/checkpatch.conf)
    check "$cache/scripts/checkpatch.pl" --show-types "${kernel_opts[@]}" \
        -- "${kernel_files[@]}"
fi
# Userspace C: one line for all of it, and each failing file's findings.
mapfile -t user_files < <(git ls-files '*.[ch]' | grep -v -e '^hw/' \
    -e '^include/hw/' -e '^tests/qtest/' -e '^guest-driver/kernel/' \
    -e '^include/uapi/' -e '^include/vmaugment/host-link.h$')
if out=$(python3 "$top/scripts/check-source.py" "${user_files[@]}"); then
    echo "ok userspace C (${#user_files[@]} files, check-source.py)"
else
    grep -v '^ok ' <<<"$out"
    status=1
fi
exit $status
