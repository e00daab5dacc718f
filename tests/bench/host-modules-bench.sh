#!/bin/sh
# Host module benchmark: cold-load time of a module (signature check,
# sealed memfd, sandboxed process, init; measured as the LOAD round trip
# over the helper's socket) and the invoke round trip, p50/p99, beside
# their anchor: two processes' round trip over a socket pair, the floor
# of what a module's process adds to an invoke.
#
#   tests/bench/host-modules-bench.sh [LOADS [CALLS [SPARES]]]
#                                      (defaults 200 2000, the helper's spares)
#
# Builds build/vmaugment if needed.  Runs twice: with the full sandbox and
# without the modules' namespaces (--no-namespaces, a weaker sandbox).
# SPARES 0 makes every load start and confine its module process itself.
set -eu

top=$(cd "$(dirname "$0")/../.." && pwd)
build=${VMAUGMENT_BUILD:-$top/build/vmaugment}
if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" "$top" >/dev/null
fi
ninja -C "$build" host-modules/tests/vmaugment-helper-bench \
    host-modules/helper/vmaugment-helper \
    host-modules/helper/vmaugment-module-host \
    host-modules/modules/echo/vmaug-echo.so >/dev/null

exec "$build/host-modules/tests/vmaugment-helper-bench" \
    "$build/host-modules/helper/vmaugment-helper" \
    "$build/host-modules/modules" \
    "$top/host-modules/modules" "${1:-200}" "${2:-2000}" ${3:+"$3"} \
    2>/dev/null
