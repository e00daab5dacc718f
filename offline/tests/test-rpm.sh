#!/usr/bin/env bash
# rpm guests: packages read from rpm's own database (as rpm -qa lists
# them), bundle rules judged by rpm's version comparison, a bundle
# applied and verified with e2fsck clean, and the databases we do not
# read refused with the reason.
source "$(dirname "$0")/lib.sh"

plan 5
need rpm rpm
need rpmbuild rpm
need_image_formats >&2
fix=$(bash "$here/make-fixtures.sh" rpm)

vo inspect "$fix/rpm.qcow2" >"$tmp/inspect.json" || fail "inspect of an rpm guest"
python3 - "$tmp/inspect.json" "$fix/packages" <<'PY' ||
import json, sys
d = json.load(open(sys.argv[1]))
got = sorted("%s %s %s" % (p["name"], p["version"], p["architecture"])
             for p in d["packages"])
want = sorted(l.strip() for l in open(sys.argv[2]) if l.strip())
assert got == want, (got, want)
assert d["os"]["package_format"] == "rpm", d["os"]
assert d["os"]["id"] == "rocky"
PY
    fail "rpm guest inventory differs from rpm -qa: $(cat "$tmp/inspect.json")"
pass "inspect: the packages rpm -qa lists, with epochs"

make_identity
mkdir -p "$tmp/payload"
echo "patched rpm guest" >"$tmp/payload/note"
# rpm treats every separator alike where dpkg orders them ('.' before
# '_'): the installed 2:1.2-3.el9 equals 2:1.2-3_el9 for rpm only.
build_bundle "$tmp/rpm.vmab" '
    {"os": {"id": "rocky"}},
    {"package": "vmaug-epoch", "version": ">= 2:1.2-3.el9"},
    {"package": "vmaug-epoch", "version": "= 2:1.2-3_el9"},
    {"package": "vmaug-tool", "version": "<< 1.0-1.el9_3"},
    {"package": "vmaug-conf", "installed": true}' '
    {"op": "add", "path": "/etc/vmaugment-rpm", "payload": "note"}' ||
    fail "bundle-build"
vo check "$fix/rpm.qcow2" "$tmp/rpm.vmab" >"$tmp/check.json" 2>"$tmp/check.err" &&
    [ "$(json_get "$tmp/check.json" status)" = applicable ] ||
    fail "rules judged by rpm's comparison: $(cat "$tmp/check.json" "$tmp/check.err")"
pass "rules judged by rpm's comparison (epochs, separators) hold"

MANIFEST_ID=newer build_bundle "$tmp/newer.vmab" '
    {"package": "vmaug-tool", "version": ">= 1.0-2"}' '
    {"op": "add", "path": "/etc/vmaugment-rpm", "payload": "note"}' ||
    fail "bundle-build"
expect_refusal --status 3 "does not hold|does not apply" --trust-dir "$tmp/trust" \
    check "$fix/rpm.qcow2" "$tmp/newer.vmab"
pass "a rule rpm says is false: not applicable"

cp "$fix/rpm.qcow2" "$tmp/a.qcow2"
vo apply "$tmp/a.qcow2" "$tmp/rpm.vmab" >"$tmp/apply.json" ||
    fail "apply: $(cat "$tmp/apply.json")"
vo verify "$tmp/a.qcow2" "$tmp/rpm.vmab" >/dev/null || fail "verify"
"$QEMU_IMG" convert -U -O raw "$tmp/a.qcow2" "$tmp/a.raw"
fsck_raw "$tmp/a.raw" 1
got=$(debugfs -R "cat /etc/vmaugment-rpm" "$tmp/a.raw?offset=$(part_offset "$tmp/a.raw" 1)" 2>/dev/null)
[ "$got" = "patched rpm guest" ] || fail "the file is not in the image: '$got'"
pass "apply and verify on the rpm guest; e2fsck -fn clean"

expect_refusal "non-empty rpmdb.sqlite-wal" inspect "$fix/rpm-wal.raw"
expect_refusal "Berkeley DB rpm databases" inspect "$fix/rpm-bdb.raw"
pass "an unclosed database and a Berkeley DB one: refused with the reason"
