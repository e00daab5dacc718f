# The host helper is killed, during an upload too, and restarted: calls
# fail with a clear status while it is away, the guest and driver carry on,
# events report the loss and the return, the next call after the helper
# is back works, and the interrupted upload resumes (an upload is its VM's,
# so the device names its image: the VM is the same one after the
# restart).  Then it hangs instead of dying: calls time out and late
# answers are dropped.
# needs: helper
# image: yes
# package: restartecho 24
# package: stallecho 4
# memory: 512M
# timeout: 400
# The store's answer for a module it does not have.
nf='\(NOT_FOUND\): no module nothing-here$'
wait_helper connected 30
vmaugment --json watch --events helper-lost,helper-connected --count 2 \
    --wait 120 >/tmp/events 2>/tmp/watch.err &
watcher=$!
wait_for_line /tmp/watch.err "watching for events"
expect_fail 1 "$nf" vmaugment query nothing-here

host_action kill-helper
wait_helper disconnected 30
# The device knows the helper is gone: new requests fail at once with
# UNAVAILABLE (INTERRUPTED is for requests in flight at the loss).
expect_fail 1 '\(UNAVAILABLE\): host helper not connected$' vmaugment query nothing-here
vmaugment ping --count 10
host_action start-helper
wait_helper connected 30
expect_fail 1 "$nf" vmaugment query nothing-here
wait $watcher || fail "helper-lost and helper-connected events not both seen"
cat /tmp/events
grep -q '"type":"helper-lost"' /tmp/events || fail "no helper-lost event"
grep -q '"type":"helper-connected"' /tmp/events || fail "no helper-connected event"

# Kill it in the middle of an upload: the next chunk fails with a clear
# status, and after the restart the upload resumes where it stopped.
pkg=/data/restartecho.vmod
set -- $(vmaug-upload-steps begin $pkg restartecho 1.0)
id=$1
[ "$2" -eq 0 ] || fail "a fresh upload starts at $2"
off=$(vmaug-upload-steps chunks $pkg "$id" 0 4)
[ "$off" -eq $((4 << 20)) ] || fail "4 chunks took the upload to $off"
host_action kill-helper
wait_helper disconnected 30
expect_fail 1 '^chunk: .* \(UNAVAILABLE\)' vmaug-upload-steps chunks $pkg "$id" "$off" 1
host_action start-helper
wait_helper connected 30
set -- $(vmaug-upload-steps begin $pkg restartecho 1.0)
[ "$2" -eq "$off" ] || fail "the upload resumed at $2, not at $off"
vmaugment upload $pkg --name restartecho --module-version 1.0
vmaugment query restartecho | grep -q ' stored$' || fail "restartecho not stored"

# A helper that stops answering without going away: the driver's timeout
# ends the calls (a chunk too, whose pinned pages the device still holds);
# when the helper wakes up its late answers are dropped and the next calls
# work.
pkg=/data/stallecho.vmod
set -- $(vmaug-upload-steps begin $pkg stallecho 1.0)
id=$1
host_action stop-helper
# The runner stops the helper when it reads that line on the console,
# which the guest cannot wait for: until then a query is still answered,
# and must be answered right.  Once stopped, queries time out.
i=0
while :; do
    set +e
    out=$(vmaugment --timeout 500 query nothing-here 2>&1)
    got=$?
    set -e
    echo "$out"
    case $out in
    *"timed out"*) [ "$got" -eq 1 ] || fail "a timed out query exited $got"
                   break ;;
    esac
    echo "$out" | grep -E -q "$nf" || fail "neither answered right nor timed out"
    [ "$i" -lt 50 ] || fail "queries still answered 5 s after stop-helper"
    usleep 100000
    i=$((i + 1))
done
expect_fail 3 'timed out' vmaug-upload-steps chunks $pkg "$id" 0 1 500
host_action cont-helper
expect_fail 1 "$nf" vmaugment query nothing-here
vmaugment upload $pkg --name stallecho --module-version 1.0
vmaugment query stallecho | grep -q ' stored$' || fail "stallecho not stored"
