# A 65 MiB signed package goes up through the zero-copy chunk path; the
# host recomputes the SHA-256 of what its store holds and must find the
# hash the guest computed.  Then "load --file" uploads a missing module by
# itself, loads it and calls it.
# needs: helper
# package: bigecho 65
# package: echo 0
# memory: 768M
# timeout: 400
wait_helper connected 30
pkg=/data/bigecho.vmod
size=$(stat -c %s $pkg)
[ "$size" -ge $((64 << 20)) ] || fail "package is only $size bytes"
sha=$(sha256sum $pkg | cut -d' ' -f1)
host_action expect-sha256 "$sha"
vmaugment --json upload $pkg --name bigecho --module-version 1.0 | tee /tmp/up.json
grep -q '"ok":true' /tmp/up.json || fail "upload failed"
grep -q "\"bytes\":$size," /tmp/up.json || fail "upload size differs"
vmaugment query bigecho | tee /tmp/q.txt
grep -q '^bigecho .* stored$' /tmp/q.txt || fail "the host does not list bigecho as stored"
vmaugment list | grep -q '^bigecho ' || fail "bigecho missing from the list"

expect_fail 1 '\(NOT_FOUND\): no module echo$' vmaugment query echo
vmaugment load echo@1.0 --file /data/echo.vmod
printf 'hello from the guest' >/tmp/in
vmaugment invoke echo echo --input /tmp/in >/tmp/out
cmp /tmp/in /tmp/out || fail "echo module returned something else"
vmaugment unload echo
