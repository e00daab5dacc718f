#!/usr/bin/env bash
# Show that the test suites catch what they exist to catch: plant one known
# defect per suite in a private copy of the tree, run that suite through
# scripts/test.sh, and require it to fail.  A suite that still passes with
# its defect planted proves nothing, and this script says so.
#
#   scripts/mutation-check.sh [MUTANT...]     (default: all; --list names them)
#
# Not part of scripts/test.sh or CI: each mutant rebuilds what it touches
# and runs a whole suite (the guest mutant boots every scenario), so a full
# check takes the better part of an hour.  Its output is recorded in
# docs/testing.rst.  The copy is a git worktree of HEAD with its own build
# root, kept between runs under build/mutation so that later runs rebuild
# only what the mutants touch.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
state=${VMAUGMENT_BUILD_ROOT:-$top/build}/mutation
tree=$state/tree

# NAME|SUITE|FILE|PYTHON-REGEX|REPLACEMENT|WHAT
# The regex must match exactly once in FILE; the replacement is the defect.
mutants=(
    "style-violation|style|hw/vmaugment/vmaugment-pci.c|(#include \"qemu/osdep.h\"\n)|\\1int  planted ;  \n|a style violation in the device"
    "device-size-check|qtest|hw/vmaugment/vmaugment.c|if \(out_size - sizeof\(hdr\) > VMAUG_MAX_REQ_PAYLOAD\) \{|if (false) {|the device skips its request-size validation"
    "sandbox-socket-rule|unit|sandbox/sandbox.c|SCMP_SYS\(socket\)|SCMP_SYS(getppid)|the module sandbox no longer refuses socket()"
    "offline-write-offset|unit|offline/vo-disk.c|(nbd_pwrite\(disk->nbd, buf, chunk, )offset|\\1offset + 512|the offline writer writes 512 bytes past its target"
    "driver-id-match|guest|guest-driver/kernel/vmaugment_main.c|\t\{ VIRTIO_ID_VMAUGMENT, VIRTIO_DEV_ANY_ID \},\n||the driver's device id table no longer matches the device"
)

if [ "${1:-}" = --list ]; then
    for m in "${mutants[@]}"; do
        IFS='|' read -r name suite _ _ _ what <<<"$m"
        printf '%-22s %-6s %s\n' "$name" "$suite" "$what"
    done
    exit 0
fi

mkdir -p "$state"
if [ ! -d "$tree" ]; then
    git -C "$top" worktree add -q --detach "$tree" HEAD
fi
git -C "$tree" checkout -q --detach "$(git -C "$top" rev-parse HEAD)"
git -C "$tree" reset -q --hard
# Inside the tree, so that ccache (its base directory is the tree) hits.
export VMAUGMENT_BUILD_ROOT=$tree/build

plant() {
    python3 - "$tree/$1" "$2" "$3" <<'EOF'
import re, sys
path, pattern, repl = sys.argv[1:]
text = open(path).read()
new, n = re.subn(pattern, repl, text)
if n != 1:
    sys.exit('%s: the mutant matches %d times, not once' % (path, n))
open(path, 'w').write(new)
EOF
}

caught=0
missed=0
for m in "${mutants[@]}"; do
    IFS='|' read -r name suite file pattern repl what <<<"$m"
    if [ $# -gt 0 ] && ! printf '%s\n' "$@" | grep -qx "$name"; then
        continue
    fi
    git -C "$tree" reset -q --hard
    plant "$file" "$pattern" "$repl"
    log=$state/$name.log
    start=$SECONDS
    if bash "$tree/scripts/test.sh" "$suite" >"$log" 2>&1; then
        verdict="MISSED"
        missed=$((missed + 1))
    else
        verdict="caught"
        caught=$((caught + 1))
    fi
    printf '%-6s %-22s %-6s %4ds  %s\n' "$verdict" "$name" "$suite" \
        $((SECONDS - start)) "$what"
    # The suite's own verdict lines: which of its tests noticed.
    grep -E '^ *[a-z/0-9_.-]+: ([0-9]+ failed|ran|did not run)|^[0-9]+ passed' \
        "$log" | sed 's/^ */         /' | head -n 6
done
git -C "$tree" reset -q --hard
echo "$caught caught, $missed missed"
[ "$missed" -eq 0 ]
