#!/usr/bin/env bash
# Build everything, then show vmaugment at work in real guests (TCG):
#  1. the guest asks the host for the printer module, uploads the
#     administrator-signed package the host lacks, the host verifies and
#     runs it sandboxed, a document printed in the guest lands in the host
#     spool, a newer version replaces it live, a rollback is refused;
#  2. the guest registers the journal and scanner modules with its disk
#     image and powers off; at the next start of the image they are loaded
#     and their image-start handlers run before the guest's first
#     instruction, and powering off runs the stop handlers;
#  3. a module registered as required is missing from the host: with the
#     repository down the image is refused a start with a clear message;
#     with the local repository up the host downloads it, verifies it and
#     the guest starts and uses it;
#  4. a dormant Debian image is serviced without booting it: inspected,
#     patched with a signed bundle, verified ("applied offline"); booted
#     with that image as its disk, the guest confirms the update through
#     /dev/vmaugment, and the host shows the QMP event, the audit record
#     and the image's status ("confirmed at boot 1");
#  5. two Debian packages are unpacked into a switched-off image as
#     "dpkg --unpack" would; at the next boot the unit the bundle installed
#     runs dpkg --configure -a and reports through /dev/vmaugment, and the
#     host's status shows the configure step's own message;
#  6. the host owner pins the scanner module to an image that holds the
#     EICAR test file, with the quarantine policy: at the next start,
#     before the guest's first instruction, ClamAV finds the file in the
#     guest's filesystem, QEMU lets go of the image while a signed bundle
#     moves the file aside, and the guest boots clean and is told what
#     moved; the host has the audit records and QEMU's QMP event.
# Environment: VMAUGMENT_BUILD_ROOT (default build/); VMAUGMENT_DEMO_NO_BUILD=1
# uses the builds that are there.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=${VMAUGMENT_BUILD_ROOT:-$top/build}
qemu_build=$build/qemu
userspace=${VMAUGMENT_BUILD_DIR:-$build/vmaugment}
work=${VMAUGMENT_GUEST_WORK_DIR:-$build/guest-test}
qemu=$qemu_build/qemu-system-x86_64

step() { printf '\n== %s\n' "$*"; }

# run_scenario NAME: boot the scenario's guest(s), its console shown
# readably: the guest's steps, the host's findings, QEMU's refusals;
# without the kernel's lines, progress bars and the harness's markers.
run_scenario() {
    VMAUGMENT_GUEST_VERBOSE=1 VMAUGMENT_GUEST_WORK_DIR=$work \
    VMAUGMENT_QEMU_BUILD_DIR=$qemu_build VMAUGMENT_BUILD_DIR=$userspace \
        "$top/tests/guest/run.sh" "$1" 2>&1 |
    while IFS= read -r line; do
        case $line in
        "  | step: "*) printf '\n-- %s\n' "${line#  | step: }" ;;
        "  | === boot "*) printf '\n   [QEMU starts the image: %s]\n' \
                              "${line#  | === }" ;;
        "  | host: "*) printf '   host> %s\n' "${line#  | host: }" ;;
        "  | ["*|*"MiB/s"*|"  | VMAUG-"*|"  | "|"guest tests:"*|"  | qemu: "*) ;;
        "  | "*) printf '   %s\n' "${line#  | }" ;;
        PASS*|FAIL*) printf '\n%s\n' "$line" ;;
        esac
    done
    grep -q '^VMAUG-RESULT: PASS$' "$work/run/$1/console.log"
}

if [ "${VMAUGMENT_DEMO_NO_BUILD:-0}" != 1 ]; then
    step "Building (dependencies, patched QEMU, driver, helper, modules)"
    mkdir -p "$build"
    "$top/scripts/build.sh" >"$build/demo-build.log" 2>&1 || {
        tail -n 30 "$build/demo-build.log"
        exit 1
    }
fi
echo "done: $("$qemu" --version | head -n1), with:"
"$qemu" -device help 2>&1 | grep '"vmaugment-pci"'

# ---- 1. a module on request -------------------------------------------
scenario=11-printer-module
host=$work/run/$scenario/host
step "1. Booting a Debian guest (TCG) with /dev/vmaugment, connected to the sandboxed host helper"
run_scenario $scenario

step "On the host: the printed document in the spool"
# Each VM keeps its spool in its own area of the store (docs/modules.rst).
job=$(find "$host/store/vms" -path '*/spool/*.json' | head -n1)
python3 -m json.tool "$job"
sed 's/^/   | /' "${job%.json}.data"

# audit LOG [MODULE...]: the audit log's decisions, one line each.
audit() {
    python3 - "$@" <<'PY'
import json, sys
mods = set(sys.argv[2:])
for line in open(sys.argv[1]):
    e = json.loads(line)
    if mods and e["module"] not in mods:
        continue
    why = e.get("reason") or ("signed by " + e["signer"] if e.get("signer")
                              else "")
    print("  %s %-6s %-21s %-8s %-4s %s" % (e["time"][11:26], e["decision"],
          e["action"], e["module"], e["version"], why[:70]))
PY
}

step "On the host: every accept and refuse decision in the audit log"
audit "$host/store/audit.log"

# ---- 2. registration, restart, image start -----------------------------
scenario=12-register-restart
host=$work/run/$scenario/host
step "2. Registration with the image, power off, start again: the registered modules run before the guest"
run_scenario $scenario

step "On the host: the registrations, kept next to the disk image (copied with it)"
admin=$userspace/host-modules/admin/vmaugment-admin
if [ -x "$admin" ]; then
    "$admin" registrations list --image "$host/images/disk.img" | sed 's/^/   /'
fi
echo "   $(basename "$host/images/disk.img.vmaugment.json"):"
sed 's/^/   | /' "$host/images/disk.img.vmaugment.json"

step "On the host: what the journal module recorded (every lifecycle event it ran on, both starts)"
sed 's/^/   | /' "$(find "$host/store/vms" -path '*/state/journal/journal.log' | head -n1)"

step "On the host: journal and scanner in the audit log (uploads in boot 1, then both starts and stops)"
audit "$host/store/audit.log" journal scanner

# ---- 3. a required module the host lacks -------------------------------
scenario=13-required-download
host=$work/run/$scenario/host
step "3. A required module missing from the host: refused start, then a download from the local repository"
run_scenario $scenario

step "On the host: the local repository's signed index (published with vmaugment-repo)"
python3 - "$host/repository/repo/index.json" <<'PY'
import json, sys
i = json.load(open(sys.argv[1]))
print("   metadata version %d, expires %s" % (i["version"], i["expires"]))
for p in i["packages"]:
    print("   %-8s %-4s %7d bytes  sha256 %s…" % (p["name"], p["version"],
          p["size"], p["sha256"][:16]))
PY

step "On the host: the fetch refused, then accepted, in the audit log"
audit "$host/store/audit.log" kv

# ---- 4. servicing a dormant image --------------------------------------
scenario=15-servicing-confirm
host=$work/run/$scenario/host
step "4. A switched-off Debian image serviced offline, then confirmed by its guest at the next boot"
run_scenario $scenario

step "On the host: the signed bundle's manifest (vmaugment-offline bundle-build)"
sed 's/^/   | /' "$host/offline/manifest.json"

step "On the host: QEMU's QMP event for the guest's report"
grep '"event": "VMAUGMENT_SERVICING"' "$work/run/$scenario/boot-1.qmp.jsonl" |
    python3 -m json.tool | sed 's/^/   /'

step "On the host: the servicing reports in the audit log (one confirmed, the repeat and the forgeries refused)"
audit "$host/store/audit.log" motd-refresh never-applied

step "On the host: vmaugment-offline status, before the boot and now"
python3 - "$host/offline/status-before.json" <<'PY'
import json, sys
for b in json.load(open(sys.argv[1]))["bundles"]:
    print("   before: %s %s: %s" % (b["bundle"], b["version"], b["summary"]))
PY
VMAUGMENT_QEMU_BUILD_DIR=$qemu_build "$userspace/offline/vmaugment-offline" \
    status "$host/images/debian.qcow2" | sed 's/^/   | /'

# ---- 5. the distribution's packages, configured at the next boot -------
scenario=16-package-configure
host=$work/run/$scenario/host
step "5. Debian packages unpacked into a switched-off image, configured by its guest at the next boot"
run_scenario $scenario

step "On the host: what the bundle adds for the next boot (vmaugment-offline apply's plan)"
python3 - "$host/offline/apply.json" <<'PY'
import json, sys
for p in json.load(open(sys.argv[1]))["plan"]:
    if p.get("action") not in ("unchanged", "mkdir"):
        print("   %-8s %s" % (p["action"], p.get("package") or p["path"]))
PY

step "On the host: vmaugment-offline status after the guest's report"
VMAUGMENT_QEMU_BUILD_DIR=$qemu_build "$userspace/offline/vmaugment-offline" \
    status "$host/images/debian.qcow2" | sed 's/^/   | /'

# ---- 6. a scan before the first instruction, and a quarantine ----------
scenario=18-image-quarantine
host=$work/run/$scenario/host
step "6. The host owner pins the ClamAV scanner to an image: an infected file is moved aside before the guest's first instruction"
run_scenario $scenario

step "On the host: the scan, the quarantine and the start in the audit log"
audit "$host/store/audit.log" scanner

step "On the host: QEMU's QMP event for the second start"
grep '"event": "VMAUGMENT_IMAGE_START"' "$work/run/$scenario/boot-2.qmp.jsonl" |
    python3 -m json.tool | sed 's/^/   /'

echo
echo "The demo ran real guests against the real helper: see $work/run/."
