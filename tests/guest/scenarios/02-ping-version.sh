# Calls the device answers itself: VERSION and PING of every size.
# timeout: 120
vmaugment version
vmaugment --json version | tee /tmp/v.json
grep -q '"protocol":1,' /tmp/v.json || fail "protocol version is not 1"
grep -q '"helper":"disconnected"' /tmp/v.json ||
    fail "the helper is reported connected without one"
for size in 16 17 4095 4096; do
    vmaugment ping --count 20 --size $size
done
vmaugment --json ping --count 200 | tee /tmp/p.json
grep -q '"ok":true' /tmp/p.json || fail "JSON ping did not report ok"
expect_fail 2 'ping' vmaugment ping --size 4097
