# Relayed requests from 8 processes at once while two uploads run: each
# process's 4 threads make 400 calls that the device relays to the helper
# (INVOKEs of the echo module with bytes of their own, and QUERYs whose
# answer tells one caller from another), beside two 24 MiB uploads through
# the chunk path.  Every answer must be its caller's: the programs check
# each, and this scenario compares what they sent with what came back
# with sha256sum itself; both uploads must reach the host's store intact.
# needs: helper
# package: echo 0
# package: floodup1 24
# package: floodup2 24
# memory: 768M
# timeout: 600
wait_helper connected 30
rec=/tmp/records
mkdir -p $rec
vmaugment load echo@1.0 --file /data/echo.vmod

# uptime: the guest's clock in hundredths of a second, read by the shell
# itself (no process to start while 34 threads and two uploads run).
uptime_cs() {
    read -r up _ </proc/uptime
    echo "${up%.*}${up#*.}"
}

# Both digests first: hashing 24 MiB in the guest takes seconds, in which
# an upload already started could end before the calls begin.
for u in floodup1 floodup2; do
    host_action expect-sha256 "$(sha256sum /data/$u.vmod | cut -d' ' -f1)"
done
for u in floodup1 floodup2; do
    (vmaugment --json upload /data/$u.vmod --name $u --module-version 1.0 \
        >/tmp/$u.json 2>&1; s=$?; uptime_cs >/tmp/$u.end; exit $s) &
    eval "up_$u=$!"
done
relay_start=$(uptime_cs)

pids=
for i in 1 2 3 4 5 6 7 8; do
    mkdir -p $rec/p$i
    vmaug-relay 4 400 echo $rec/p$i >/tmp/relay.$i 2>&1 &
    pids="$pids $!"
done
# shellcheck disable=SC2086 # one word per process id
wait_all $pids
relay_end=$(uptime_cs)
cat /tmp/relay.*
# shellcheck disable=SC2154 # wait_all sets it
[ "$failed" -eq 0 ] || fail "$failed of 8 relaying processes failed"

for u in floodup1 floodup2; do
    eval "wait \$up_$u" || { cat /tmp/$u.json; fail "upload of $u failed"; }
    grep -q '"ok":true' /tmp/$u.json || { cat /tmp/$u.json; fail "upload of $u failed"; }
    vmaugment query $u | grep -q "^$u .* stored$" ||
        fail "the host does not list $u as stored"
    # Both ran at once: the upload ended after the calls began.
    end=$(cat /tmp/$u.end)
    [ -n "$end" ] && [ "$end" -gt "$relay_start" ] ||
        fail "the upload of $u ended (uptime ${end:-unknown} cs) before the" \
             "relayed calls began ($relay_start cs)"
done
echo "two 24 MiB uploads stored while the relayed calls ran" \
     "(calls $((relay_end - relay_start))0 ms)"

# The programs' own checks could be wrong: compare the records here.
# Every INVOKE sent bytes of its own (process, thread, call), so an answer
# that went to another caller cannot match.
for i in 1 2 3 4 5 6 7 8; do
    t=0
    while [ "$t" -lt 4 ]; do
        f=$rec/p$i/t$t
        [ -s "$f.sent" ] || fail "$f.sent is empty"
        sent=$(sha256sum <"$f.sent" | cut -d' ' -f1)
        back=$(sha256sum <"$f.recv" | cut -d' ' -f1)
        [ "$sent" = "$back" ] ||
            fail "process $i thread $t: the answers (SHA-256 $back," \
                 "$(stat -c %s "$f.recv") bytes) are not the payloads sent" \
                 "(SHA-256 $sent, $(stat -c %s "$f.sent") bytes)"
        echo "$sent" >>$rec/hashes
        t=$((t + 1))
    done
done
[ "$(sort -u $rec/hashes | wc -l)" -eq 32 ] ||
    fail "two callers sent identical payloads"
echo "12800 relayed calls from 32 callers in 8 processes: every answer its caller's"
vmaugment unload echo
