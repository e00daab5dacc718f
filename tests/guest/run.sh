#!/usr/bin/env bash
# Real-guest tests of the vmaugment driver, library and CLI.
#
# Builds what it needs (Debian's current 6.1 kernel and headers, unpacked
# without installing; the driver; the static CLI; the test programs; a
# busybox initramfs), then boots the patched QEMU once per scenario under
# TCG and judges each boot by its isa-debug-exit status and marker line.
#
#   tests/guest/run.sh [SCENARIO...]     (names as in tests/guest/scenarios,
#                                         without .sh; default: all)
# Environment:
#   VMAUGMENT_QEMU_BUILD_DIR  QEMU build directory (default build/qemu)
#   VMAUGMENT_BUILD_DIR       userspace build directory (default build/vmaugment)
#   VMAUGMENT_GUEST_WORK_DIR  kernel cache, images, logs (default: guest-test
#                             beside VMAUGMENT_BUILD_DIR)
#   VMAUGMENT_GUEST_VERBOSE=1 print every guest's console
#
# Output: one line per scenario (PASS/FAIL NAME ...) and a last line
# "N passed, N failed" on stdout, the console tail of failures on stderr;
# the exit status is non-zero if any scenario failed.
#
# A scenario is one file tests/guest/scenarios/NAME.sh run by the guest's
# busybox sh with -e after tests/guest/lib/common.sh.  Header lines:
#   # timeout: SECONDS     boot time limit (default 120)
#   # needs: helper        start the host helper and connect the device to it
#   # memory: SIZE         guest RAM (default 512M)
#   # qemu: ARGS           more QEMU arguments
#   # package: NAME MIB    a signed echo-module package padded with MIB MiB,
#                          in the guest as /data/NAME.vmod (repeatable)
#   # module: NAME VERSION a signed package of the real module NAME at
#                          VERSION, as /data/NAME-VERSION.vmod (repeatable)
# The guest may ask the runner for host-side actions with console lines
#   VMAUG-HOST: kill-helper | start-helper | stop-helper | cont-helper |
#               expect-sha256 HEX | expect-spool HEX
# (expect-sha256: the helper's store must hold a file with that SHA-256;
# expect-spool: the host's print spool must hold such a document).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=tests/guest/lib/harness.sh
. "$here/lib/harness.sh"

main() {
    check_qemu

    local scenarios=() s
    if [ $# -eq 0 ]; then
        scenarios=("$here"/scenarios/*.sh)
    else
        for s in "$@"; do
            [ -f "$here/scenarios/$s.sh" ] || die "no scenario $s"
            scenarios+=("$here/scenarios/$s.sh")
        done
    fi

    prepare_all

    local passed=0 failed=0 t0 reason
    for s in "${scenarios[@]}"; do
        t0=$SECONDS
        reason=
        if run_scenario "$s"; then
            echo "PASS $(basename "$s" .sh) ($((SECONDS - t0)) s)"
            passed=$((passed + 1))
        else
            echo "FAIL $(basename "$s" .sh) ($((SECONDS - t0)) s): $reason" \
                 "[console: $work/run/$(basename "$s" .sh)/console.log]"
            failed=$((failed + 1))
            if [ "$verbose" != 1 ]; then
                tail -n 25 "$work/run/$(basename "$s" .sh)/console.log" |
                    sed 's/^/  | /' >&2
            fi
        fi
    done
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}

main "$@"
