#!/usr/bin/env bash
# apply/verify/check of a signed bundle: dry run, atomic apply through a
# qcow2 overlay on every format, idempotence, independent verification
# with e2fsck and debugfs.
source "$(dirname "$0")/lib.sh"

plan 10
fix=$(fixtures_linux)
make_identity
make_payloads
build_bundle "$tmp/demo.vmab" "$demo_rules" "$demo_files"

cp "$fix/debian.qcow2" "$tmp/a.qcow2"
sum=$(sha256sum <"$tmp/a.qcow2")

vo check "$tmp/a.qcow2" "$tmp/demo.vmab" >"$tmp/check.json"
[ "$(json_get "$tmp/check.json" status)" = applicable ] || fail "check status"
[ "$(json_get "$tmp/check.json" rules 1 holds)" = True ] || fail "check rules"
vo apply --dry-run "$tmp/a.qcow2" "$tmp/demo.vmab" >"$tmp/dry.json"
python3 - "$tmp/dry.json" "$motd_sha" <<'PY' || fail "dry-run plan"
import json, sys
d = json.load(open(sys.argv[1]))
plan = [(p["op"], p["path"], p["action"]) for p in d["plan"]]
assert plan == [("replace", "/etc/motd", "replace"),
                ("mkdir", "/opt", "unchanged"),
                ("mkdir", "/opt/demo", "mkdir"),
                ("add", "/opt/demo/big.bin", "add"),
                ("add", "/usr/local/bin/tool", "add"),
                ("add", "/srv/www/site.conf", "add"),
                ("delete", "/etc/issue.net", "delete"),
                ("chmod", "/etc/hostname", "chmod")], plan
assert d["plan"][0]["old_sha256"] == sys.argv[2]
assert d["plan"][3]["size"] == 5 * 1024 * 1024
PY
[ "$(sha256sum <"$tmp/a.qcow2")" = "$sum" ] || fail "dry-run changed the image"
no_sidecars "$tmp/a.qcow2"
pass "check and dry-run plan, image untouched"

rc=0; vo verify "$tmp/a.qcow2" "$tmp/demo.vmab" >"$tmp/v0.json" || rc=$?
[ $rc -ne 0 ] && [ "$(json_get "$tmp/v0.json" verified)" = False ] ||
    fail "verify passed before apply"
pass "verify fails before apply"

for fmt in qcow2 raw vhdx vmdk; do
    img=$tmp/a.$fmt
    [ -f "$img" ] || cp --sparse=always "$fix/debian.$fmt" "$img"
    vo apply "$img" "$tmp/demo.vmab" >"$tmp/apply.json" ||
        { cat "$tmp/apply.json"; fail "apply on $fmt"; }
    [ "$(json_get "$tmp/apply.json" status)" = applied ] || fail "$fmt status"
    no_sidecars "$img"
    vo verify "$img" "$tmp/demo.vmab" >"$tmp/verify.json" || fail "verify $fmt"
    check_demo_applied "$img"
    # The format is unchanged: the overlay went back into the image.
    "$QEMU_IMG" info -U --output=json "$img" | grep -q "\"format\": \"$fmt\"" ||
        fail "$fmt: format changed"
    pass "apply + verify on $fmt, fsck-clean, contents checked with debugfs"
done

vo apply "$tmp/a.qcow2" "$tmp/demo.vmab" >"$tmp/again.json"
[ "$(json_get "$tmp/again.json" status)" = already-applied ] || fail "reapply"
pass "applying again is a no-op"

# Extended attributes (ext4): set, then remove; checked with debugfs.
build_bundle "$tmp/xattr.vmab" "" \
    '{"op": "xattr", "path": "/etc/motd", "name": "user.vmaugment", "value": "patched"}'
vo apply "$tmp/a.qcow2" "$tmp/xattr.vmab" >"$tmp/xattr.json" ||
    { cat "$tmp/xattr.json"; fail "xattr apply"; }
"$QEMU_IMG" convert -U -O raw "$tmp/a.qcow2" "$tmp/x.raw"
[ "$(debugfs_part "$tmp/x.raw" 1 ea_get /etc/motd user.vmaugment)" = \
  "user.vmaugment (7) = \"patched\"" ] || fail "xattr not set"
fsck_raw "$tmp/x.raw" 1
MANIFEST_ID=xattr-off build_bundle "$tmp/xattr-off.vmab" "" \
    '{"op": "xattr", "path": "/etc/motd", "name": "user.vmaugment", "value": null}'
vo apply "$tmp/a.qcow2" "$tmp/xattr-off.vmab" >/dev/null || fail "xattr removal"
"$QEMU_IMG" convert -U -O raw "$tmp/a.qcow2" "$tmp/x.raw"
debugfs_error "$tmp/x.raw" 1 "Extended attribute key not found" \
    ea_get /etc/motd user.vmaugment
fsck_raw "$tmp/x.raw" 1
rm -f "$tmp/x.raw"
pass "xattr set and removed on ext4"

# A marker for a check from inside the guest at its next boot.
cat >"$tmp/marker.json" <<'JSON'
{"format": 1, "id": "with-marker", "version": "7", "marker": "/var/lib/vmaugment/offline",
 "files": [{"op": "add", "path": "/etc/marked", "payload": "motd"}]}
JSON
"$VMAUGMENT_OFFLINE" bundle-build --key "$tmp/admin.key" --cert "$tmp/trust/admin.pem" \
    --payload-dir "$tmp/payload" --output "$tmp/marker.vmab" "$tmp/marker.json"
vo apply "$tmp/a.qcow2" "$tmp/marker.vmab" >"$tmp/marker-apply.json" ||
    { cat "$tmp/marker-apply.json"; fail "marker apply"; }
"$QEMU_IMG" convert -U -O raw "$tmp/a.qcow2" "$tmp/m.raw"
debugfs_part "$tmp/m.raw" 1 cat /var/lib/vmaugment/offline/with-marker-7.json >"$tmp/marker.out"
manifest_sha=$(tar -xOf "$tmp/marker.vmab" manifest.json | sha256sum | cut -d' ' -f1)
[ "$(json_get "$tmp/marker.out" manifest_sha256)" = "$manifest_sha" ] ||
    fail "marker does not name the signed manifest"
[ "$(json_get "$tmp/marker.out" bundle)" = with-marker ] || fail "marker bundle"
rm -f "$tmp/m.raw"
pass "marker file names the bundle and its signed manifest"

# mkdir creates the missing parents too, as marker does: each level in the
# plan, before the directory, and made in the image.
MANIFEST_ID=deep-mkdir build_bundle "$tmp/deep.vmab" "" \
    '{"op": "mkdir", "path": "/opt/deep/er/dir", "mode": "0700"}'
vo apply --dry-run "$tmp/a.qcow2" "$tmp/deep.vmab" >"$tmp/deep-dry.json" ||
    { cat "$tmp/deep-dry.json"; fail "deep mkdir dry-run"; }
python3 - "$tmp/deep-dry.json" <<'PY' || fail "deep mkdir plan"
import json, sys
d = json.load(open(sys.argv[1]))
plan = [(p["op"], p["path"], p["action"], p.get("mode")) for p in d["plan"]]
assert plan == [("mkdir", "/opt", "unchanged", "0755"),
                ("mkdir", "/opt/deep", "mkdir", "0755"),
                ("mkdir", "/opt/deep/er", "mkdir", "0755"),
                ("mkdir", "/opt/deep/er/dir", "mkdir", "0700")], plan
PY
vo apply "$tmp/a.qcow2" "$tmp/deep.vmab" >"$tmp/deep.json" ||
    { cat "$tmp/deep.json"; fail "deep mkdir apply"; }
"$QEMU_IMG" convert -U -O raw "$tmp/a.qcow2" "$tmp/d.raw"
debugfs_part "$tmp/d.raw" 1 stat /opt/deep/er/dir >"$tmp/deep.stat"
grep -q 'Type: directory *Mode: *0700' "$tmp/deep.stat" ||
    fail "deep mkdir: /opt/deep/er/dir is not a 0700 directory: $(head -n 3 "$tmp/deep.stat")"
fsck_raw "$tmp/d.raw" 1
rm -f "$tmp/d.raw"
pass "mkdir creates its missing parents"
