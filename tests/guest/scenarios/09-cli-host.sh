# The CLI against the real host helper: load with upload, invoke from
# stdin, configuration, registration, listing, events, JSON output.
# needs: helper
# package: echo 0
# timeout: 300
wait_helper connected 30
vmaugment --json watch --events module-loaded,module-unloaded --count 2 \
    --wait 120 >/tmp/events 2>/tmp/watch.err &
watcher=$!
wait_for_line /tmp/watch.err "watching for events"
vmaugment load echo@1.0 --file /data/echo.vmod
vmaugment --json query echo | tee /tmp/q.json
grep -q '"state":"loaded"' /tmp/q.json || fail "echo is not loaded"
echo "from stdin" | vmaugment invoke echo echo --input - >/tmp/out
[ "$(cat /tmp/out)" = "from stdin" ] || fail "invoke through stdin: $(cat /tmp/out)"
vmaugment --json invoke echo echo --input /tmp/out | tee /tmp/inv.json
grep -q '"output_hex":"66726f6d20737464696e0a"' /tmp/inv.json || fail "JSON invoke output"
# A function the signed manifest does not export: NOT_FOUND from the
# helper (docs/modules.rst), which never reaches the module.
expect_fail 1 '^\{"ok":false,"command":"invoke","status":"NOT_FOUND",.*"message":"echo does not export no-such-function"\}$' \
    vmaugment --json invoke echo no-such-function

vmaugment config set echo greeting hello
[ "$(vmaugment config get echo greeting)" = hello ] || fail "config get"
vmaugment --json config get echo greeting | grep -q '"value":"hello"' ||
    fail "JSON config get"

vmaugment register echo@1.0 --events image-start,image-stop --required
vmaugment list registrations | tee /tmp/regs
grep -q '^echo .* required$' /tmp/regs || fail "registration not listed"
vmaugment --json list registrations | grep -q '"required":true' ||
    fail "JSON registration"
vmaugment unregister echo@1.0
vmaugment --json list | tee /tmp/mods.json
grep -q '"name":"echo"' /tmp/mods.json || fail "echo not in the module list"

# Event delivery, ordering and overflow on files of their own.
vmaug-events 200

vmaugment unload echo
wait $watcher || fail "module-loaded and module-unloaded events not both seen"
cat /tmp/events
grep -q '"type":"module-loaded","lost":false,"module":"echo","version":"1.0"' /tmp/events ||
    fail "no module-loaded event for echo 1.0"
grep -q '"type":"module-unloaded"' /tmp/events || fail "no module-unloaded event"
