# Module load/unload and device bind: the driver binds virtio ID 63,
# creates /dev/vmaugment, and survives unbind/bind and repeated reloads.
# timeout: 120
drv=/sys/bus/virtio/drivers/vmaugment
[ -c /dev/vmaugment ] || fail "no /dev/vmaugment after loading the driver"
dev=$(basename "$(ls -d $drv/virtio* | head -n1)")
[ -n "$dev" ] || fail "the driver bound no device"
[ "$(cat /sys/bus/virtio/devices/$dev/device)" = 0x003f ] ||
    fail "bound a device that is not virtio ID 63"
grep -q vmaugment /proc/misc || fail "no misc device"
[ "$(stat -c %a /dev/vmaugment)" = 600 ] || fail "/dev/vmaugment is not 0600"
vmaugment ping

echo "$dev" >$drv/unbind
[ ! -e /dev/vmaugment ] || fail "/dev/vmaugment remains after unbind"
echo "$dev" >$drv/bind
[ -c /dev/vmaugment ] || fail "no /dev/vmaugment after bind"
vmaugment ping

for i in 1 2 3 4 5; do
    rmmod vmaugment
    [ ! -e /dev/vmaugment ] || fail "/dev/vmaugment remains after rmmod"
    insmod "$VMAUG_KO"
    [ -c /dev/vmaugment ] || fail "no /dev/vmaugment after reload $i"
    vmaugment ping
done
echo "bind, unbind and 5 reloads ok"
