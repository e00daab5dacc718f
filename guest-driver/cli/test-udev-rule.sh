#!/bin/sh
# The guest's udev rule, read by the host's udevadm in a private mount
# namespace (its own /run/udev/rules.d and /dev, so the host's devices are
# not touched).  Checked: udevadm reads the file without complaint, and
# once the group is known the node becomes 0660 root:GROUP (seen with
# stat).  Not checked: the getent gate itself, because udevadm cannot run
# programs in every container; a real guest runs busybox mdev, not udev.
# Skips (77) without root, unshare or udevadm.
set -u
rules=$1

command -v udevadm >/dev/null 2>&1 || { echo "SKIP: no udevadm"; exit 77; }
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root"; exit 77; }
unshare -m true 2>/dev/null || { echo "SKIP: cannot unshare a mount namespace"; exit 77; }
[ -e /sys/class/mem/kmsg ] || { echo "SKIP: no /sys/class/mem/kmsg"; exit 77; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail=0

# $1: rules file, $2: sysfs device, $3: node to create (0600, as the
# driver makes /dev/vmaugment) or "", $4: output file.
udev_run() {
    unshare -m sh -c '
        mount -t tmpfs none /run && mount -t tmpfs none /dev &&
        mkdir -p /run/udev/rules.d &&
        cp "$1" /run/udev/rules.d/60-vmaugment.rules || exit 99
        [ -z "$3" ] || mknod -m 0600 "/dev/$3" c 1 11 || exit 99
        udevadm test "$2" 2>&1
        [ -z "$3" ] || stat -c "NODE %A %U:%G" "/dev/$3"
        exit 0' sh "$1" "$2" "$3" >"$4"
}

# Parsed: read, and no message about any of its lines.
udev_run "$rules" /sys/devices/virtual/misc/vmaugment-absent "" "$work/parse"
grep -q 'Reading rules file: /run/udev/rules.d/60-vmaugment.rules' "$work/parse" ||
    { echo "FAIL: udevadm did not read the rule file"; cat "$work/parse"; fail=1; }
if grep '60-vmaugment.rules:' "$work/parse"; then
    echo "FAIL: udevadm complains about the rule file"
    fail=1
fi

# Applied: the gate passed (its line removed), the device's name and
# subsystem swapped for /dev/kmsg's and the group for one every Debian
# system has.
sed -e 's/SUBSYSTEM!="misc"/SUBSYSTEM!="mem"/' \
    -e 's/KERNEL!="vmaugment\*"/KERNEL!="kmsg"/' \
    -e '/^PROGRAM/d' -e 's/="vmaugment"/="tty"/' "$rules" >"$work/applied.rules"
udev_run "$work/applied.rules" /sys/class/mem/kmsg kmsg "$work/applied"
grep -qx 'NODE crw-rw---- root:tty' "$work/applied" ||
    { echo "FAIL: expected 0660 root:tty"; cat "$work/applied"; fail=1; }

[ "$fail" = 0 ] && echo "PASS"
exit "$fail"
