#!/usr/bin/env bash
# The built manual pages (the build's man/ directory: NAME.SECTION) laid
# out as a man tree (ROOT/manSECTION/), so that "MANPATH=ROOT man PAGE"
# finds them as it will once installed: for the tests that let
# systemd-analyze verify look up the units' Documentation= pages.
#   man-tree.sh BUILT-MAN-DIR ROOT
set -euo pipefail
found=0
for page in "$1"/*.[0-9]; do
    [ -f "$page" ] || continue
    mkdir -p "$2/man${page##*.}"
    cp "$page" "$2/man${page##*.}/"
    found=1
done
[ "$found" -eq 1 ] || { echo "no manual pages built in $1" >&2; exit 1; }
