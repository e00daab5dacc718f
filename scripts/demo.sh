#!/usr/bin/env bash
# Build everything, then show vmaugment at work in a real guest: the guest
# asks the host for the printer module, uploads the administrator-signed
# package the host lacks, the host verifies and runs it sandboxed, a
# document printed in the guest lands in the host spool, a newer version
# replaces it live, and a rollback is refused.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=${VMAUGMENT_BUILD_ROOT:-$top/build}
qemu=$build/qemu/qemu-system-x86_64
scenario=11-printer-module
work=$build/guest-test
host=$work/run/$scenario/host

step() { printf '\n== %s\n' "$*"; }

step "Building (dependencies, patched QEMU, driver, helper, modules)"
mkdir -p "$build"
"$top/scripts/build.sh" >"$build/demo-build.log" 2>&1 || {
    tail -n 30 "$build/demo-build.log"
    exit 1
}
echo "done: $("$qemu" --version | head -n1), with:"
"$qemu" -device help 2>&1 | grep '"vmaugment-pci"'

step "Booting a Debian guest (TCG) with /dev/vmaugment, connected to the sandboxed host helper"
# The guest's console, less the kernel's lines, progress bars and the
# harness's own markers.
VMAUGMENT_GUEST_VERBOSE=1 VMAUGMENT_GUEST_WORK_DIR=$work \
VMAUGMENT_QEMU_BUILD_DIR=$build/qemu VMAUGMENT_BUILD_DIR=$build/vmaugment \
    "$top/tests/guest/run.sh" "$scenario" 2>&1 |
while IFS= read -r line; do
    case $line in
    "  | step: "*) printf '\n-- %s\n' "${line#  | step: }" ;;
    "  | ["*|*"MiB/s"*|"  | VMAUG-"*|"  | "|"guest tests:"*) ;;
    "  | "*) printf '   %s\n' "${line#  | }" ;;
    PASS*|FAIL*|*" passed, "*) printf '\n%s\n' "$line" ;;
    esac
done
grep -q '^VMAUG-RESULT: PASS$' "$work/run/$scenario/console.log"

step "On the host: the printed document in the spool"
job=$(ls "$host/store/spool/"*.json | head -n1)
python3 -m json.tool "$job"
sed 's/^/   | /' "${job%.json}.data"

step "On the host: every accept and refuse decision in the audit log"
python3 - "$host/store/audit.log" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    print("  %-6s %-13s %s %-4s %s" % (e["decision"], e["action"], e["module"],
          e["version"], e.get("reason") or "signed by " + e.get("signer", "")))
PY
echo
echo "The demo ran a real guest against the real helper: see $work/run/$scenario/."
