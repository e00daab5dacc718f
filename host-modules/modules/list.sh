#!/bin/sh
# The modules of this tree: every folder beside this script that holds a
# meson.build, one name a line, sorted.  The build (meson.build here) and
# tests/make-packages.sh both read this list; adding a module is adding
# its folder (docs/modules.rst, HACKING.rst).
set -eu
cd "$(dirname "$0")"
for d in */meson.build; do
    [ -f "$d" ] && printf '%s\n' "${d%/meson.build}"
done | LC_ALL=C sort
