# 16 processes at once (8 CLIs and 8 test programs, 1000 pings each), then
# 8 threads x 1000 pings on one file, then a 32-bit process (compat ioctl).
# Every ping carries its caller's process, thread and sequence number.  The
# test programs record every payload they sent and every response the
# driver handed back; this scenario compares the two with sha256sum itself,
# so a wrong echo or a response delivered to another caller fails the run
# even where the programs' own checks ("echoed correctly", "matched") were
# wrong.
# timeout: 300
rec=/tmp/records
mkdir -p $rec

# check_records DIR THREADS CALLS SIZE: the responses each thread of the
# program run with these arguments got are, byte for byte, the payloads it
# sent, and those are as long as the arguments say (a program that recorded
# nothing fails too).
check_records() {
    t=0
    while [ "$t" -lt "$2" ]; do
        want=$(awk -v t="$t" -v n="$3" -v s="$4" 'BEGIN {
            for (i = 0; i < n; i++) b += (s ? s : 16 + (t * 37 + i) % 200)
            print b }')
        got=$(stat -c %s "$1/t$t.sent")
        [ "$got" -eq "$want" ] ||
            fail "$1/t$t.sent holds $got bytes, the pings were $want"
        sent=$(sha256sum <"$1/t$t.sent" | cut -d' ' -f1)
        back=$(sha256sum <"$1/t$t.recv" | cut -d' ' -f1)
        [ "$sent" = "$back" ] ||
            fail "thread $t of $1: the responses (SHA-256 $back," \
                 "$(stat -c %s "$1/t$t.recv") bytes) are not the payloads" \
                 "sent (SHA-256 $sent, $got bytes)"
        echo "$sent" >>$rec/hashes
        t=$((t + 1))
    done
}

pids=
for i in 1 2 3 4 5 6 7 8; do
    vmaugment ping --count 1000 --size $((16 + i * 200)) >/tmp/ping.$i 2>&1 &
    pids="$pids $!"
    mkdir -p $rec/p$i
    vmaug-threads 1 1000 $((16 + i * 200 + 100)) $rec/p$i >/tmp/prog.$i 2>&1 &
    pids="$pids $!"
done
# shellcheck disable=SC2086 # one word per process id
wait_all $pids
cat /tmp/ping.* /tmp/prog.*
# shellcheck disable=SC2154 # wait_all sets it
[ "$failed" -eq 0 ] || fail "$failed of 16 ping processes failed"
for i in 1 2 3 4 5 6 7 8; do
    check_records $rec/p$i 1 1000 $((16 + i * 200 + 100))
done
echo "8000 concurrent pings from 8 processes: responses identical to the payloads"

# The same with threads sharing one open file.
mkdir -p $rec/threads
vmaug-threads 8 1000 0 $rec/threads
check_records $rec/threads 8 1000 0
echo "8000 pings from 8 threads on one file: responses identical to the payloads"

# And from a 32-bit process (compat ioctl).
mkdir -p $rec/compat
vmaug-threads32 4 250 0 $rec/compat
check_records $rec/compat 4 250 0
echo "1000 pings from a 32-bit process: responses identical to the payloads"

# Each caller sent bytes of its own: a response crossing over to another
# caller could not have matched.
[ "$(sort -u $rec/hashes | wc -l)" -eq "$(wc -l <$rec/hashes)" ] ||
    fail "two callers sent identical payloads"
echo "$(wc -l <$rec/hashes) callers, all payloads distinct"
