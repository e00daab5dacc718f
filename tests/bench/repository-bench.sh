#!/usr/bin/env bash
# Module repository benchmark: fetch a 32 MiB signed package from a local
# HTTPS repository (loopback, the repository tests' server and CA) and
# print the time and throughput of the whole verified download.
#
# usage: tests/bench/repository-bench.sh [BUILD_DIR]   (default build/vmaugment)
set -euo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$here/build/vmaugment}

ninja -C "$build" repository/tests/test-repo >/dev/null
meson test -C "$build" --no-rebuild --suite repository \
    --test-args=-m=perf >/dev/null || {
    echo "repository-bench: the repository tests failed" >&2
    exit 1
}
grep -h 'min perf:' "$build/meson-logs/testlog.txt" |
    sed 's/^# min perf: /repository: /'
