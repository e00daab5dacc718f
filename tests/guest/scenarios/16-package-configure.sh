# Packages unpacked offline, configured by the guest at its next boot.
# Before boot 1 the host (16-package-configure.host) applies a signed
# bundle of two Debian packages to a copy of the Debian fixture; the
# bundle also installs the unit that finishes the job.  The guest (busybox
# init, not the image's systemd) mounts the image's root and runs that
# unit's command in a chroot with /dev bound, so the command finds
# /dev/vmaugment and the guest tool: dpkg --configure -a runs the
# postinst, and the outcome reaches the host through the device.
# image: debian
# timeout: 300
step() { echo "step: $*"; }

bundle=vmaug-update
wait_helper connected 30
step "the image's root: packages unpacked, the unit armed"
mount_image_root /mnt
off=/mnt/var/lib/vmaugment/offline
[ -f $off/configure-pending ] || fail "no flag: the unit is not armed"
[ -f $off/$bundle-1.json ] || fail "no pending record $bundle-1.json"
unit=/mnt/etc/systemd/system/vmaugment-offline-configure.service
cmd=$(sed -n 's/^ExecStart=//p' $unit)
[ "$cmd" = /usr/local/sbin/vmaugment-offline-configure ] || fail "the unit runs '$cmd'"
grep -q "Wants=vmaugment-offline-configure.service" \
    /mnt/etc/systemd/system/multi-user.target.d/vmaugment-offline-configure.conf ||
    fail "nothing pulls the unit in"
[ ! -e /mnt/var/lib/vmaug-demo.configured ] || fail "already configured"

step "the unit's command, in a chroot of the image with /dev bound"
mount --bind /dev /mnt/dev
mount -t proc proc /mnt/proc
cp /usr/local/bin/vmaugment /mnt/usr/local/bin/vmaugment
chroot /mnt /usr/bin/env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    "$cmd" >/tmp/out 2>&1 || { cat /tmp/out $off/dpkg-configure.log; fail "$cmd failed"; }
cat /tmp/out
grep -qx "$bundle 1: confirmed at boot 1" /tmp/out ||
    fail "the host did not hold the report at boot 1"
[ "$(cat /mnt/var/lib/vmaug-demo.configured)" = configured ] || fail "the postinst did not run"
[ ! -e $off/configure-pending ] || fail "the flag is still set"
grep -qx "status=configured" $off/dpkg-configure.result || fail "result: $(cat $off/dpkg-configure.result)"
cat $off/dpkg-configure.result

rm /mnt/usr/local/bin/vmaugment
umount /mnt/proc
umount /mnt/dev
umount /mnt
