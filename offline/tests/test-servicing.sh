#!/usr/bin/env bash
# The records an apply of a bundle with a "marker" leaves for the guest's
# confirmation at its next boot (docs/offline.rst): the in-guest record,
# read back from the image with debugfs, the host's record next to the
# image, parsed by python3, and what "status" makes of them; an apply that
# cannot write the host's record is undone.
source "$(dirname "$0")/lib.sh"

fix=$(fixtures_linux)
make_identity
make_payloads
img=$tmp/s.qcow2
host_record=$img.vmaugment-servicing.json
cp "$fix/debian.qcow2" "$img"

# A bundle with a marker; its manifest's hash and the signer's certificate
# fingerprint, computed here from the bundle's bytes and the PEM file.
cat >"$tmp/marked.json" <<JSON
{"format": 1, "id": "motd-refresh", "version": "2026.12.1",
 "marker": "/var/lib/vmaugment/offline",
 "files": [{"op": "replace", "path": "/etc/motd", "payload": "motd",
            "old_sha256": "$motd_sha"}]}
JSON
"$VMAUGMENT_OFFLINE" bundle-build --key "$tmp/admin.key" --cert "$tmp/trust/admin.pem" \
    --payload-dir "$tmp/payload" --output "$tmp/marked.vmab" "$tmp/marked.json" >/dev/null
manifest_sha=$(tar -xOf "$tmp/marked.vmab" manifest.json | sha256sum | cut -d' ' -f1)
signer_fp=$(openssl x509 -in "$tmp/trust/admin.pem" -outform DER | sha256sum | cut -d' ' -f1)

# status of an image never serviced: no bundles, and no file written.
vo status "$img" >"$tmp/status0.json" || fail "status of an unserviced image"
[ "$(json_get "$tmp/status0.json" bundles)" = "[]" ] || fail "bundles before apply"
[ ! -e "$host_record" ] || fail "status wrote a host record"
pass "status of an image never serviced: no bundles, nothing written"

# A dry run and a bundle without a marker write no host record.
vo apply --dry-run "$img" "$tmp/marked.vmab" >/dev/null || fail "dry run"
[ ! -e "$host_record" ] || fail "a dry run wrote the host record"
build_bundle "$tmp/plain.vmab" "" \
    '{"op": "add", "path": "/etc/plain", "payload": "tool"}'
vo apply "$img" "$tmp/plain.vmab" >/dev/null || fail "apply without a marker"
[ ! -e "$host_record" ] || fail "a bundle without a marker wrote the host record"
pass "no host record from a dry run or a bundle without a marker"

before=$(date -u +%s)
vo apply "$img" "$tmp/marked.vmab" >"$tmp/apply.json" ||
    { cat "$tmp/apply.json"; fail "apply with a marker"; }
[ "$(json_get "$tmp/apply.json" status)" = applied ] || fail "apply status"
after=$(date -u +%s)

# The in-guest record, read from the image with debugfs: every level of
# the marker directory, the record's owner and mode, its members.
"$QEMU_IMG" convert -U -O raw "$img" "$tmp/s.raw"
for d in /var/lib/vmaugment /var/lib/vmaugment/offline; do
    debugfs_part "$tmp/s.raw" 1 stat "$d" | grep -q "Type: directory" ||
        fail "$d is not a directory in the image"
done
rec=/var/lib/vmaugment/offline/motd-refresh-2026.12.1.json
debugfs_part "$tmp/s.raw" 1 stat "$rec" >"$tmp/rec.stat"
grep -q "Type: regular    Mode:  0644" "$tmp/rec.stat" || fail "record mode: $(head -n3 "$tmp/rec.stat")"
grep -qE "User: +0 +Group: +0" "$tmp/rec.stat" || fail "record owner"
debugfs_part "$tmp/s.raw" 1 cat "$rec" >"$tmp/rec.json"
python3 - "$tmp/rec.json" "$manifest_sha" "$signer_fp" <<'PY' || fail "in-guest record: $(cat "$tmp/rec.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d == {"bundle": "motd-refresh", "version": "2026.12.1",
             "manifest_sha256": sys.argv[2],
             "signer_fingerprint": sys.argv[3]}, d
PY
[ "$(debugfs_part "$tmp/s.raw" 1 cat /etc/motd)" = "patched motd" ] || fail "motd not replaced"
e2fsck -fn "$tmp/s.raw?offset=$(part_offset "$tmp/s.raw" 1)" >"$tmp/fsck.log" 2>&1 ||
    { cat "$tmp/fsck.log" >&2; fail "root not fsck-clean"; }
rm -f "$tmp/s.raw"
pass "in-guest record (debugfs): bundle, version, manifest SHA-256, signer fingerprint, root 0644"

# The host's record next to the image, parsed by python3.
python3 - "$host_record" "$manifest_sha" "$before" "$after" <<'PY' || fail "host record: $(cat "$host_record")"
import datetime, json, sys
d = json.load(open(sys.argv[1]))
assert d["format"] == 1, d
assert len(d["bundles"]) == 1, d
b = d["bundles"][0]
assert set(b) == {"bundle", "version", "manifest_sha256", "applied", "starts",
                  "state"}, b
assert (b["bundle"], b["version"], b["manifest_sha256"], b["starts"],
        b["state"]) == ("motd-refresh", "2026.12.1", sys.argv[2], 0,
                        "applied-offline"), b
t = datetime.datetime.fromisoformat(b["applied"].replace("Z", "+00:00"))
assert t.utcoffset() == datetime.timedelta(0), b["applied"]
assert int(sys.argv[3]) <= int(t.timestamp()) <= int(sys.argv[4]), b["applied"]
PY
pass "host record (python3): applied-offline, manifest SHA-256, applied at the apply's time (UTC)"

vo status "$img" >"$tmp/status1.json" || fail "status after apply"
python3 - "$tmp/status1.json" "$img" "$manifest_sha" "$host_record" <<'PY' || fail "status: $(cat "$tmp/status1.json")"
import json, sys
d = json.load(open(sys.argv[1]))
rec = json.load(open(sys.argv[4]))["bundles"][0]
assert d["image"] == sys.argv[2], d
[b] = d["bundles"]
assert (b["bundle"], b["version"], b["manifest_sha256"], b["state"],
        b["applied"]) == ("motd-refresh", "2026.12.1", sys.argv[3],
                          "applied-offline", rec["applied"]), b
assert "boot" not in b and "message" not in b, b
assert b["summary"] == "applied offline %s, awaiting the guest (0 starts since)" \
    % rec["applied"], b["summary"]
PY
pass "status: applied offline, awaiting the guest"

# Applying the same bundle again changes neither record.
sum=$(sha256sum <"$host_record")
vo apply "$img" "$tmp/marked.vmab" >"$tmp/again.json"
[ "$(json_get "$tmp/again.json" status)" = already-applied ] || fail "reapply status"
[ "$(sha256sum <"$host_record")" = "$sum" ] || fail "reapply rewrote the host record"
pass "an already-applied bundle leaves the host record as it was"

# status shows what the helper keeps once the guest reported (written here
# as the helper writes it: servicing.h), with its boot and message.
python3 - "$host_record" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
b = d["bundles"][0]
b.update(starts=2, state="confirmed", boot=2,
         reported="2026-12-03T10:00:00Z", message="motd refreshed")
d["bundles"].append({"bundle": "kernel-fix", "version": "1",
                     "manifest_sha256": "ab" * 32,
                     "applied": "2026-12-02T09:00:00Z", "starts": 1,
                     "state": "failed", "boot": 1,
                     "reported": "2026-12-02T09:05:00Z",
                     "message": "dkms failed"})
json.dump(d, open(sys.argv[1], "w"))
PY
vo status "$img" >"$tmp/status2.json" || fail "status of reported bundles"
python3 - "$tmp/status2.json" <<'PY' || fail "status: $(cat "$tmp/status2.json")"
import json, sys
d = json.load(open(sys.argv[1]))
got = [(b["bundle"], b["state"], b["boot"], b["message"], b["summary"])
       for b in d["bundles"]]
assert got == [
    ("motd-refresh", "confirmed", 2, "motd refreshed",
     "confirmed at boot 2 (2026-12-03T10:00:00Z): motd refreshed"),
    ("kernel-fix", "failed", 1, "dkms failed",
     "failed at boot 1 (2026-12-02T09:05:00Z): dkms failed")], got
PY
pass "status: confirmed and failed at their boot, with the guest's message"

# A host record that is not one is refused by name, not shown as empty.
echo '{"format": 1, "bundles": [{"bundle": 7}]}' >"$host_record"
rc=0; vo status "$img" >"$tmp/bad.json" 2>"$tmp/bad.err" || rc=$?
[ "$rc" -ne 0 ] || fail "status accepted a malformed host record"
grep -qF "$host_record" "$tmp/bad.err" || fail "the refusal does not name the record: $(cat "$tmp/bad.err")"
# Its report is the failure's (docs/cli.rst), with no result in it.
[ "$(json_get "$tmp/bad.json" status)" = error ] &&
    ! grep -q '"bundles"' "$tmp/bad.json" ||
    fail "status printed a result for a malformed record: $(cat "$tmp/bad.json")"
pass "status refuses a malformed host record, naming it"

# The host record cannot be written (a directory is in its place): the
# apply is undone, the image unchanged.
rm -f "$host_record"
cp "$fix/debian.qcow2" "$tmp/u.qcow2"
mkdir "$tmp/u.qcow2.vmaugment-servicing.json"
sum=$(sha256sum <"$tmp/u.qcow2")
rc=0; vo apply "$tmp/u.qcow2" "$tmp/marked.vmab" >"$tmp/undo.json" 2>"$tmp/undo.err" || rc=$?
[ "$rc" -ne 0 ] || fail "apply succeeded without its host record"
[ "$(json_get "$tmp/undo.json" status)" = error ] || fail "undo status: $(cat "$tmp/undo.json")"
grep -q "vmaugment-servicing.json" "$tmp/undo.err" "$tmp/undo.json" ||
    fail "the error does not name the host record: $(cat "$tmp/undo.err")"
[ "$(sha256sum <"$tmp/u.qcow2")" = "$sum" ] || fail "the image changed although the apply was undone"
no_sidecars "$tmp/u.qcow2"
pass "an apply whose host record cannot be written is undone, the image unchanged"
