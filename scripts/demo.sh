#!/usr/bin/env bash
# Build everything, then show vmaugment at work.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=${VMAUGMENT_BUILD_ROOT:-$top/build}
qemu=$build/qemu/qemu-system-x86_64

step() { printf '\n== %s\n' "$*"; }

step "Building (dependencies, patched QEMU, userspace)"
"$top/scripts/build.sh" >"$build/demo-build.log" 2>&1 || {
    tail -n 30 "$build/demo-build.log"
    exit 1
}
echo "done: $("$qemu" --version | head -n1)"

step "QEMU lists the device"
"$qemu" -device help 2>&1 | grep vmaugment

step "The device on the PCI bus and in QEMU's virtio status"
printf '%s\n' \
    '{"execute":"qmp_capabilities"}' \
    '{"execute":"human-monitor-command","arguments":{"command-line":"info pci"}}' \
    '{"execute":"x-query-virtio-status","arguments":{"path":"/machine/peripheral/aug/virtio-backend"}}' \
    '{"execute":"quit"}' |
timeout 30 "$qemu" -accel qtest -machine q35 -nodefaults -display none \
    -device vmaugment-pci,id=aug -qmp stdio 2>/dev/null |
python3 -c '
import json, sys
for line in sys.stdin:
    ret = json.loads(line).get("return")
    if isinstance(ret, str):
        lines = ret.splitlines()
        for i, l in enumerate(lines):
            if "1af4:107f" in l:
                print("\n".join(lines[i - 1:i + 4]))
    elif isinstance(ret, dict) and "device-id" in ret:
        print("  virtio device %s (id %d), %d queues, features: %s" % (
            ret["name"], ret["device-id"], ret["num-vqs"],
            ", ".join(ret["host-features"]["dev-features"])))
'

step "A driver's requests answered by the device (qtest)"
export QTEST_QEMU_BINARY=$qemu
base=$("$build/qemu/tests/qtest/qos-test" -l | grep '/vmaugment-tests/version$')
base=${base%/version}
for t in version ping helper-unavailable helper/relay; do
    if timeout 60 "$build/qemu/tests/qtest/qos-test" -p "$base/$t" >/dev/null 2>&1; then
        echo "  ok   $t"
    else
        echo "  FAIL $t"; exit 1
    fi
done
