# Module unload and device removal while calls are in flight.  rmmod must
# be refused cleanly while files are open; unbinding the device fails the
# calls in flight with ENODEV (no hang, no oops); afterwards the module
# unloads, reloads and works.
# timeout: 180
drv=/sys/bus/virtio/drivers/vmaugment
dev=$(basename "$(ls -d $drv/virtio* | head -n1)")
pids=
for i in 1 2 3 4; do
    vmaugment ping --count 10000000 >/tmp/loop.$i 2>&1 &
    pids="$pids $!"
done
# The module's use count is the number of open files: wait for all four.
i=0
until [ "$(awk '$1 == "vmaugment" { print $3 }' /proc/modules)" -ge 4 ]; do
    [ $i -lt 300 ] || fail "the ping loops did not open the device"
    usleep 100000
    i=$((i + 1))
done
if rmmod vmaugment 2>/tmp/rmmod.err; then
    fail "rmmod succeeded while calls were in flight"
fi
cat /tmp/rmmod.err
# Refused because the module is in use (EWOULDBLOCK), not for any other reason.
grep -q "^rmmod: can't unload module 'vmaugment': Resource temporarily unavailable$" \
    /tmp/rmmod.err || fail "rmmod was refused for another reason"
grep -q vmaugment /proc/modules || fail "the module went away"
vmaugment ping

# Remove the device under the callers.
echo "$dev" >$drv/unbind
for p in $pids; do
    i=0
    while kill -0 "$p" 2>/dev/null; do
        [ $i -lt 100 ] || fail "a caller still hangs 10 s after removal"
        usleep 100000
        i=$((i + 1))
    done
    if wait "$p"; then
        fail "a ping loop ended successfully after removal"
    fi
done
cat /tmp/loop.*
[ "$(cat /tmp/loop.* | grep -c "No such device")" -eq 4 ] ||
    fail "callers did not all fail with ENODEV"

rmmod vmaugment
insmod "$VMAUG_KO"
vmaugment ping --count 100
echo "removal with calls in flight ok"
