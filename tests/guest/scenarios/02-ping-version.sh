# Calls the device answers itself: VERSION and PING of every size.  The
# sizes at the edges round-trip byte for byte, as compared here from what
# the test program recorded, not as the CLI judges its own echoes; a ping
# above the device's limit is refused by the CLI for that reason.
# timeout: 120
vmaugment version
vmaugment --json version | tee /tmp/v.json
grep -q '"protocol":1,' /tmp/v.json || fail "protocol version is not 1"
grep -q '"helper":"disconnected"' /tmp/v.json ||
    fail "the helper is reported connected without one"
for size in 16 17 4095 4096; do
    vmaugment ping --count 20 --size $size
    # 20 pings of SIZE bytes, recorded as sent and as handed back.
    mkdir -p /tmp/rec.$size
    vmaug-threads 1 20 $size /tmp/rec.$size
    sent=/tmp/rec.$size/t0.sent back=/tmp/rec.$size/t0.recv
    [ "$(stat -c %s $sent)" -eq $((20 * size)) ] ||
        fail "the pings of $size bytes sent $(stat -c %s $sent) bytes in all"
    [ "$(stat -c %s $back)" -eq $((20 * size)) ] ||
        fail "20 echoes of $size bytes gave back $(stat -c %s $back) bytes"
    [ "$(sha256sum <$sent | cut -d' ' -f1)" = "$(sha256sum <$back | cut -d' ' -f1)" ] ||
        fail "the echoes of $size bytes differ from the payloads"
    echo "20 pings of $size bytes came back byte for byte"
done
vmaugment --json ping --count 200 | tee /tmp/p.json
grep -q '^{"ok":true,"command":"ping","count":200,"size":16,' /tmp/p.json ||
    fail "JSON ping did not report 200 pings of 16 bytes"
# One byte over the device's limit: a usage error naming the limit, not
# the usage text that any other mistake prints.
expect_fail 2 "^vmaugment: ping --size takes 16\.\.4096 bytes, not '4097'\$" \
    vmaugment ping --size 4097
