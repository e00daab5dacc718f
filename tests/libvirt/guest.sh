# The guest of tests/libvirt/run.sh, a VM that libvirt started: upload the
# journal module, register it with the image for image-start and
# image-stop, use it, then wait for the power button that
# "virsh shutdown" presses and end (the runner checks that the image-stop
# handler ran on the host).
# module: journal 1.0
step() { echo "step: $*"; }

wait_helper connected 60
step "the guest uploads journal 1.0 and registers it with the image"
vmaugment load journal@1.0 --file /data/journal-1.0.vmod
vmaugment register journal@1.0 --events image-start,image-stop
vmaugment --json query journal | tee /tmp/q.json
grep -q '"state":"loaded"' /tmp/q.json || fail "journal is not loaded"
vmaugment invoke journal history >/tmp/history
echo "VMAUG-LIBVIRT: journal loaded"

# "virsh shutdown" presses the ACPI power button: Debian builds the button
# driver and evdev as modules; any event of the Power Button device ends
# the scenario, and /init powers off.
for m in /lib/vmaug/extra/*.ko; do
    insmod "$m"
done
dev=
for d in /sys/class/input/event*; do
    if grep -q '^Power Button$' "$d/device/name" 2>/dev/null; then
        dev=/dev/input/$(basename "$d")
    fi
done
[ -n "$dev" ] || fail "no ACPI power button input device"
echo "VMAUG-LIBVIRT: waiting for the power button"
dd if="$dev" of=/dev/null bs=24 count=1 2>/dev/null
step "power button pressed: powering off"
