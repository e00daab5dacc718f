#!/usr/bin/env bash
# The manual pages: one per tool (man/*.h2m) and the module API's, built,
# rendered by man(1) without a warning, naming their tool, and installed
# where "man TOOL" finds them.  TAP.
#
#   test-man-pages.sh SOURCE-DIR BUILD-DIR
set -uo pipefail

src=$1
build=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); failed=1; echo "not ok $n - $1"; shift; printf '# %s\n' "$@"; }

pages=()
for h in "$src"/man/*.h2m; do
    pages+=("$(basename "$h" .h2m)")
done
pages+=(vmaugment-module)

for p in "${pages[@]}"; do
    page=$(ls "$build"/man/"$p".[0-9] 2>/dev/null | head -n1)
    if [ -z "$page" ]; then
        not_ok "$p: a page was built" "nothing in $build/man"
        continue
    fi
    warn=$(LANG=C.UTF-8 MANWIDTH=80 man --warnings -l "$page" 2>&1 >"$tmp/out")
    if [ -n "$warn" ] || ! grep -qE "^ *$p +- " "$tmp/out" ||
       grep -q 'OPTION?' "$tmp/out"; then
        not_ok "$p: rendered without warnings, NAME names it" "$warn" \
            "$(head -n 5 "$tmp/out")"
    else
        ok "$p: rendered without warnings, NAME names it"
    fi
done

# Installed, "man TOOL" finds it below the prefix.
if DESTDIR=$tmp/root meson install -C "$build" --no-rebuild --quiet \
       >"$tmp/install.log" 2>&1; then
    mandir=$(find "$tmp/root" -type d -name man -path '*/share/man' | head -n1)
    missing=
    for p in "${pages[@]}"; do
        man -M "$mandir" -w "$p" >/dev/null 2>&1 || missing+=" $p"
    done
    if [ -n "$mandir" ] && [ -z "$missing" ]; then
        ok "installed: man -M PREFIX/share/man finds every page"
    else
        not_ok "installed: man -M PREFIX/share/man finds every page" \
            "mandir ${mandir:-none}, missing:$missing"
    fi
    # The units' Documentation= (systemctl help UNIT) names only pages
    # installed with them.
    units=$(find "$tmp/root" -path '*/systemd/system/*' -type f \
        \( -name '*.service' -o -name '*.socket' -o -name '*.timer' \))
    bad=
    for u in $units; do
        docs=$(sed -n 's/^Documentation=//p' "$u")
        [ -n "$docs" ] || bad+=" $(basename "$u"):none"
        for d in $docs; do
            if [[ $d =~ ^man:([^()]+)\(([0-9])\)$ ]] &&
               [ -f "$mandir/man${BASH_REMATCH[2]}/${BASH_REMATCH[1]}.${BASH_REMATCH[2]}" ]; then
                continue
            fi
            bad+=" $(basename "$u"):$d"
        done
    done
    if [ -n "$units" ] && [ -z "$bad" ]; then
        ok "units: Documentation= names installed manual pages"
    else
        not_ok "units: Documentation= names installed manual pages" \
            "units: $(echo $units)" "not installed:$bad"
    fi
else
    not_ok "meson install" "$(tail -n 5 "$tmp/install.log")"
fi
echo "1..$n"
exit $failed
