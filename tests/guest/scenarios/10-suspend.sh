# Suspend and resume (suspend-to-idle in the PM core's "devices" test
# mode: devices are suspended and resumed, the machine does not sleep).
# The driver gives up its queues and sets them up again: calls work
# afterwards, on new files and on a file opened (and subscribed) before.
# timeout: 120
vmaugment ping --count 10
vmaugment watch --events helper-lost --wait 60 >/dev/null 2>/tmp/watch.err &
watcher=$!
wait_for_line /tmp/watch.err "watching for events"
echo devices >/sys/power/pm_test
echo freeze >/sys/power/state
echo none >/sys/power/pm_test
dmesg | grep -q 'PM: suspend exit' || fail "the guest did not suspend and resume"
vmaugment ping --count 100
vmaug-threads 4 100
vmaugment --json version | grep -q '"protocol":1,' || fail "version after resume"
kill -0 "$watcher" || fail "the subscribed watcher died across suspend"
kill "$watcher"
