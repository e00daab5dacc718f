#!/bin/sh
# The CLI's behaviour without a device: usage errors exit 2, a missing
# device exits 1 with a clear message, --json reports errors as JSON
# (docs/cli.rst).
set -u
cli=$1
fail=0

expect() {
    want=$1; shift
    "$@" >/tmp/vmaug-cli-out.$$ 2>/tmp/vmaug-cli-err.$$
    got=$?
    if [ "$got" -ne "$want" ]; then
        echo "FAIL: '$*' exited $got, expected $want" >&2
        cat /tmp/vmaug-cli-err.$$ >&2
        fail=1
    fi
}

expect 0 "$cli" --help
grep -q '^Usage: vmaugment' /tmp/vmaug-cli-out.$$ || { echo "FAIL: no usage text"; fail=1; }
expect 0 "$cli" --version
grep -q '^vmaugment [0-9]' /tmp/vmaug-cli-out.$$ || { echo "FAIL: no version"; fail=1; }
expect 2 "$cli"
expect 2 "$cli" no-such-command
expect 2 "$cli" ping --count 0
expect 2 "$cli" ping --size 1
expect 2 "$cli" query
expect 2 "$cli" upload /dev/null
expect 2 "$cli" upload /dev/null --name x
expect 2 "$cli" load x --file /dev/null
expect 2 "$cli" watch --events no-such-event
expect 2 "$cli" --timeout 99999999 ping
expect 1 "$cli" --device /nonexistent/vmaugment ping
grep -q 'cannot open /nonexistent/vmaugment' /tmp/vmaug-cli-err.$$ ||
    { echo "FAIL: no clear open error" >&2; fail=1; }
expect 1 "$cli" --json --device /nonexistent/vmaugment version
grep -q '^{"ok":false,"command":"open","errno":2,' /tmp/vmaug-cli-out.$$ ||
    { echo "FAIL: no JSON error" >&2; cat /tmp/vmaug-cli-out.$$ >&2; fail=1; }
rm -f /tmp/vmaug-cli-out.$$ /tmp/vmaug-cli-err.$$
exit $fail
