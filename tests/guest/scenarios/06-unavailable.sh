# Without a host helper the device answers relayed requests with
# UNAVAILABLE at once: clear message, exit 1, JSON status; pings work.
# timeout: 120
dd if=/dev/zero of=/tmp/pkg bs=1k count=64 2>/dev/null
# The status and the device's own reason, as the CLI prints them.
u='\(UNAVAILABLE\): host helper not connected$'
expect_fail 1 "$u" vmaugment query demo
expect_fail 1 "$u" vmaugment load demo@1.0
expect_fail 1 "$u" vmaugment load demo@1.0 --file /tmp/pkg
expect_fail 1 "$u" vmaugment unload demo
expect_fail 1 "$u" vmaugment upload /tmp/pkg --name demo --module-version 1.0
expect_fail 1 "$u" vmaugment list
expect_fail 1 "$u" vmaugment list registrations
expect_fail 1 "$u" vmaugment register demo --events image-start
expect_fail 1 "$u" vmaugment config get demo key
expect_fail 1 "$u" vmaugment config set demo key value
echo hi >/tmp/in
expect_fail 1 "$u" vmaugment invoke demo run --input /tmp/in
expect_fail 1 '"status":"UNAVAILABLE",.*"message":"host helper not connected"' \
    vmaugment --json query demo
vmaugment ping --count 10
