# Suspend and resume (suspend-to-idle in the PM core's "devices" test
# mode: devices are suspended and resumed, the machine does not sleep).
# The driver gives up its queues and sets them up again.  That it happened
# is taken from the kernel, not from the driver: the PM core counts one
# more successful suspend and no failure of any step, and the function
# tracer saw the driver's freeze and then its restore.  Afterwards calls
# work on new files, and a file opened and subscribed to helper-lost before
# the suspend gets the helper-lost events of two helper kills after the
# resume, with consecutive sequence numbers: the helper-connected event
# between them was not delivered, so the driver gave the reset device (whose
# default is every event) its mask again.
# needs: helper
# timeout: 240
stats=/sys/power/suspend_stats
tr=/sys/kernel/tracing
[ -w /sys/power/pm_test ] || skip "the kernel has no /sys/power/pm_test"
[ -r $stats/success ] || skip "the kernel has no $stats"
mount -t tracefs tracefs $tr 2>/dev/null || true
[ -w $tr/set_ftrace_filter ] || skip "the kernel has no function tracer"

wait_helper connected 30
vmaugment ping --count 10
vmaugment --json watch --events helper-lost --count 2 --wait 120 \
    >/tmp/events 2>/tmp/watch.err &
watcher=$!
wait_for_line /tmp/watch.err "watching for events"

# Every failure counter of the PM core, to compare after the suspend.
failures() {
    cat $stats/fail $stats/failed_* | awk '{ n += $1 } END { print n }'
}
ok0=$(cat $stats/success)
bad0=$(failures)
echo 'vmaug_freeze vmaug_restore' >$tr/set_ftrace_filter ||
    fail "the function tracer does not know vmaug_freeze and vmaug_restore"
echo function >$tr/current_tracer
echo 1 >$tr/tracing_on

echo devices >/sys/power/pm_test
echo freeze >/sys/power/state ||
    fail "the suspend failed (last failed device: $(cat $stats/last_failed_dev))"
echo none >/sys/power/pm_test
echo 0 >$tr/tracing_on

ok1=$(cat $stats/success)
bad1=$(failures)
echo "suspend_stats: success $ok0 -> $ok1, failures $bad0 -> $bad1"
[ "$ok1" -eq $((ok0 + 1)) ] || fail "the PM core counted no successful suspend"
[ "$bad1" -eq "$bad0" ] ||
    fail "the PM core counted a failed step (last failed device: $(cat $stats/last_failed_dev))"
grep -o ' vmaug_[a-z]* <-[a-z_]*' $tr/trace | tee /tmp/pm-calls
printf ' vmaug_freeze <-virtio_device_freeze\n vmaug_restore <-virtio_device_restore\n' \
    >/tmp/pm-want
cmp -s /tmp/pm-calls /tmp/pm-want ||
    fail "the driver's freeze and restore did not each run once, in order"
echo nop >$tr/current_tracer

vmaugment ping --count 100
vmaug-threads 4 100
vmaugment --json version | grep -q '"protocol":1,' || fail "version after resume"
kill -0 "$watcher" || fail "the subscribed watcher died across suspend"

# Events after the resume, on the file subscribed before it.
host_action kill-helper
wait_helper disconnected 30
host_action start-helper
wait_helper connected 30
host_action kill-helper
wait_helper disconnected 30
wait "$watcher" ||
    fail "the watcher subscribed before the suspend did not get 2 helper-lost events after it: $(cat /tmp/watch.err)"
cat /tmp/events
[ "$(grep -c '^{"seq":[0-9]*,"type":"helper-lost","lost":false,' /tmp/events)" -eq 2 ] ||
    fail "not two helper-lost events, none lost"
set -- $(sed 's/^{"seq":\([0-9]*\),.*/\1/' /tmp/events)
[ "$2" -eq $(($1 + 1)) ] ||
    fail "helper-lost events $1 and $2: the device delivered events between them that nobody subscribed to (the mask was not given back after the resume)"
