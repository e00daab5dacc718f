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
# Output: one line per scenario (PASS/FAIL/SKIP NAME ...), a line naming
# every scenario run, and a last line "N passed, N failed, N skipped" on
# stdout; the console tail of failures on stderr.  A scenario is skipped,
# never passed, when it cannot run: a tool it needs is missing on the host,
# or the guest lacks a kernel feature and the scenario ended through
# skip() (tests/guest/lib/common.sh).  Skipped is 0 on a host set up by
# scripts/install-deps.sh; the caller decides whether a skip is acceptable.
# The exit status is non-zero if any scenario failed.
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
#   # image: yes           the device names a disk image (a placeholder file
#                          in the run directory, image=...) and the helper
#                          serves its directory (--image-dir); implies the
#                          helper.  QEMU's QMP events are logged per boot.
# image: debian            the same, but the image is a copy of the offline
#                          tests' Debian qcow2 fixture (built and cached by
#                          offline/tests/make-fixtures.sh), also attached to
#                          the guest as a virtio disk (/dev/vda; mount its
#                          root with mount_image_root, lib/common.sh)
#   # boots: N             boot the same image N times in sequence, with the
#                          same helper and store; the guest finds the boot
#                          number, from 1, in $VMAUG_BOOT
#   # repository: up|down  a module repository for the helper: up, the
#                          packages of the "# repo-module:" lines published,
#                          signed, and served over HTTPS on loopback with a
#                          test CA; down, a closed port
#   # repo-module: NAME VERSION  a real module published in the repository
#   # boot K: repository up|down   before boot K: the repository comes up or
#                          goes down (the helper restarts with it)
#   # boot K: expect-refused REGEX  boot K must not run the guest: QEMU
#                          exits 1 having printed "vmaugment: image start
#                          refused: ..." matching REGEX
# An optional NAME.host file beside the scenario (bash, sourced by the
# runner) may add helper options to helper_extra_args as it is sourced, and
# define host_before_boot and host_after_boot, called with the boot number; they set $reason and return 1 to fail the scenario, and
# host_request, called with the words of a guest's "VMAUG-HOST: scenario
# WORDS" line while the guest runs (its failure is logged; the guest sees
# only what the request changed).  They
# find the boot's host time of the first console byte (boot_first_byte N),
# its QMP events (qmp_event N NAME), the helper's store ($helper_dir/store)
# and the image ($helper_image), and report with host_say.  The host's
# builds are $build (userspace) and $qemu_build (QEMU, qemu-img).
# The guest may ask the runner for host-side actions with console lines
#   VMAUG-HOST: kill-helper | start-helper | stop-helper | cont-helper |
#               expect-sha256 HEX | expect-spool HEX | scenario WORDS
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

    local passed=0 failed=0 skipped=0 t0 reason name rc ran=()
    for s in "${scenarios[@]}"; do
        name=$(basename "$s" .sh)
        ran+=("$name")
        t0=$SECONDS
        reason=
        rc=0
        run_scenario "$s" || rc=$?
        case $rc in
        0)
            echo "PASS $name ($((SECONDS - t0)) s)"
            passed=$((passed + 1))
            ;;
        2)
            echo "SKIP $name ($((SECONDS - t0)) s): $reason"
            skipped=$((skipped + 1))
            ;;
        *)
            echo "FAIL $name ($((SECONDS - t0)) s): $reason" \
                 "[console: $work/run/$name/console.log]"
            failed=$((failed + 1))
            if [ "$verbose" != 1 ]; then
                tail -n 25 "$work/run/$name/console.log" |
                    sed 's/^/  | /' >&2
            fi
            ;;
        esac
    done
    echo "ran ${#ran[@]} scenario(s): ${ran[*]}"
    echo "$passed passed, $failed failed, $skipped skipped"
    [ "$failed" -eq 0 ]
}

main "$@"
