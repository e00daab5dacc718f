# The mission end to end: the guest asks the host for the printer module,
# the host lacks it, the guest uploads the administrator-signed package,
# the host verifies, stores and runs it sandboxed, and a document printed
# in the guest lands in the host's spool.  Then 1.1 replaces 1.0 without
# restarting anything, and going back to 1.0 is refused as a rollback.
# needs: helper
# module: printer 1.0
# module: printer 1.1
# timeout: 300
step() { echo "step: $*"; }

wait_helper connected 30

step "the guest asks the host for printer 1.0"
expect_fail 1 '\(NOT_FOUND\): no module printer 1\.0$' vmaugment query printer@1.0

step "the host lacks it: the guest uploads the signed package and loads it"
vmaugment load printer@1.0 --file /data/printer-1.0.vmod
vmaugment --json query printer | tee /tmp/q.json
grep -q '"version":"1.0"' /tmp/q.json || fail "printer 1.0 is not the one loaded"
grep -q '"state":"loaded"' /tmp/q.json || fail "printer is not loaded"

step "the guest prints a document through the sandboxed module"
printf 'Hello from the guest\nThis page was printed by the vmaugment printer module.\n' >/tmp/doc
{ echo "vmaugment demo page"; cat /tmp/doc; } |
    vmaugment invoke printer print --input - >/tmp/job
[ -s /tmp/job ] || fail "print returned no job id"
echo "host spool job: $(cat /tmp/job)"
host_action expect-spool "$(sha256sum /tmp/doc | cut -d' ' -f1)"

step "printer 1.1 replaces 1.0 while everything keeps running"
vmaugment load printer@1.1 --file /data/printer-1.1.vmod
vmaugment --json query printer | tee /tmp/q.json
grep -q '"version":"1.1"' /tmp/q.json || fail "printer 1.1 did not replace 1.0"
grep -q '"state":"loaded"' /tmp/q.json || fail "printer 1.1 is not loaded"
echo "second page" | { echo "page two"; cat; } | vmaugment invoke printer print --input - >/dev/null

step "going back to printer 1.0 is refused as a rollback"
expect_fail 4 '\(DENIED\): rollback: printer 1\.0 is older than 1\.1, accepted before$' \
    vmaugment load printer@1.0 --file /data/printer-1.0.vmod
vmaugment --json query printer | grep -q '"version":"1.1"' ||
    fail "the refused rollback changed the loaded version"
