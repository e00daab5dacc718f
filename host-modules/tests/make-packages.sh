#!/bin/sh
# Make a throw-away administrator, a trust directory and signed packages of
# every module, for end-to-end tests with a real guest:
#
#   host-modules/tests/make-packages.sh OUTDIR [BUILD_DIR]
#
# OUTDIR receives admin.key, trust/admin.crt, store/ (empty) and
# <module>-<version>.vmod for each module (host-modules/modules/list.sh)
# at 1.0, plus printer 1.1 (to swap to) and printer 0.9 (a rollback the
# host must refuse after 1.0).
# It prints the helper command line to use with them.
set -eu

out=${1:?usage: make-packages.sh OUTDIR [BUILD_DIR]}
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${2:-${VMAUGMENT_BUILD:-$top/build/vmaugment}}
keygen=$build/trust/vmaugment-keygen
pack=$build/host-modules/vmaugment-pack
mods=$build/host-modules/modules

mkdir -p "$out/trust"
# A fresh, empty store each time (its audit log may be append-only).
if [ -d "$out/store" ]; then
    chattr -R -a "$out/store" 2>/dev/null || true
    rm -rf "$out/store"
fi
mkdir -p "$out/store"
if [ ! -f "$out/admin.key" ]; then
    "$keygen" --name 'vmaugment test admin' --days 30 \
        --key "$out/admin.key" --cert "$out/trust/admin.crt"
fi
package() {
    "$pack" create --manifest "$top/host-modules/modules/$1/manifest.json" \
        --payload "$mods/$1/vmaug-$1.so" --key "$out/admin.key" \
        --cert "$out/trust/admin.crt" --set-version "$2" \
        --output "$out/$1-$2.vmod"
}
for m in $("$top/host-modules/modules/list.sh"); do
    package "$m" 1.0
done
package printer 1.1
package printer 0.9
for f in "$out"/*.vmod; do
    "$pack" verify --trust-dir "$out/trust" "$f" >/dev/null
done
cat <<EOT
$build/host-modules/helper/vmaugment-helper \\
    --socket $out/helper.sock --store $out/store --trust-dir $out/trust
EOT
