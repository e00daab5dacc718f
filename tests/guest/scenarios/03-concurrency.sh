# 8 processes x 1000 pings at once, then 8 threads x 1000 on one file.
# Every ping carries its caller's id and sequence number and each echo is
# checked byte for byte, so a response delivered to the wrong caller fails
# the run.
# timeout: 300
pids=
for i in 1 2 3 4 5 6 7 8; do
    vmaugment ping --count 1000 --size $((16 + i * 200)) >/tmp/ping.$i 2>&1 &
    pids="$pids $!"
done
failed=0
for p in $pids; do
    wait "$p" || failed=$((failed + 1))
done
cat /tmp/ping.*
[ "$failed" -eq 0 ] || fail "$failed of 8 ping processes failed"
[ "$(cat /tmp/ping.* | grep -c '^1000 ping(s) of .* echoed correctly')" -eq 8 ] ||
    fail "not every process saw 1000 correct echoes"
echo "8000 concurrent pings matched"

# The same with threads sharing one open file.
vmaug-threads 8 1000

# And from a 32-bit process (compat ioctl).
vmaug-threads32 4 250
