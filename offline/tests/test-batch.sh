#!/usr/bin/env bash
# batch: a directory of Linux and Windows images, one of them in use, two
# bundles; bounded parallelism, per-image JSON reports, idempotent reruns;
# and the systemd units that run it.  What the batch reports is checked
# against the images with debugfs, e2fsck, ntfsfix and hivexget.
source "$(dirname "$0")/lib.sh"

plan 5
need systemd-analyze systemd
: "${VMAUGMENT_OFFLINE_UNIT_DIR:?the built systemd units}"
lfix=$(fixtures_linux)
wfix=$(fixtures_windows)
make_identity
make_payloads
build_bundle "$tmp/demo.vmab" "$demo_rules" "$demo_files"
cat >"$tmp/win.json" <<'JSON'
{"format": 1, "id": "win-reg", "version": "1",
 "applies": [{"os": {"family": "windows"}}], "files": [],
 "registry": [{"op": "set", "hive": "SOFTWARE", "key": "Vendor\\Demo",
               "name": "Version", "type": "sz", "value": "2.0"}]}
JSON
"$VMAUGMENT_OFFLINE" bundle-build --key "$tmp/admin.key" --cert "$tmp/trust/admin.pem" \
    --output "$tmp/win.vmab" "$tmp/win.json"

imgs=$tmp/images
mkdir -p "$imgs"
cp "$lfix/debian.qcow2" "$imgs/a.qcow2"
cp --sparse=always "$lfix/debian.raw" "$imgs/b.raw"
cp "$lfix/debian.qcow2" "$imgs/c.qcow2"
cp "$wfix/windows.qcow2" "$imgs/w.qcow2"
echo "not an image" >"$imgs/notes.txt"
hold_image_lock "$imgs/c.qcow2" qcow2
sum_c=$(sha256sum <"$imgs/c.qcow2")

rc=0
vo batch --jobs 2 --report-dir "$tmp/reports" --bundle "$tmp/demo.vmab" \
    --bundle "$tmp/win.vmab" "$imgs" >"$tmp/batch.json" 2>"$tmp/progress" || rc=$?
[ $rc -eq 0 ] || { cat "$tmp/batch.json" "$tmp/progress"; fail "batch exit $rc"; }
python3 - "$tmp/batch.json" <<'PY' || fail "batch report"
import json, os, sys
d = json.load(open(sys.argv[1]))
st = {os.path.basename(i["image"]): i["status"] for i in d["images"]}
assert st == {"a.qcow2": "applied", "b.raw": "applied",
              "c.qcow2": "skipped-in-use", "w.qcow2": "applied"}, st
assert d["summary"] == {"applied": 3, "skipped-in-use": 1}, d["summary"]
PY
[ "$(ls "$tmp/reports" | wc -l)" -eq 7 ] || fail "expected 7 per-image reports"
grep -q '^\[4/4\]' "$tmp/progress" || fail "no progress lines"
[ "$(sha256sum <"$imgs/c.qcow2")" = "$sum_c" ] || fail "in-use image changed"
check_demo_applied "$imgs/a.qcow2"
check_demo_applied "$imgs/b.raw"
# w: the value in the SOFTWARE hive of C: (partition 1), NTFS clean.
partition_file "$imgs/w.qcow2" 1 "$tmp/c.part"
ntfsfix -n "$tmp/c.part" >"$tmp/ntfsfix.log" 2>&1 ||
    { cat "$tmp/ntfsfix.log" >&2; fail "w: ntfsfix -n"; }
ntfscat "$tmp/c.part" Windows/System32/config/SOFTWARE >"$tmp/SOFTWARE"
[ "$(hivexget "$tmp/SOFTWARE" 'Vendor\Demo' Version)" = 2.0 ] || fail "w not patched"
rm -f "$tmp/c.part"
pass "batch: 3 patched in parallel, 1 in use skipped, 7 reports"

kill "${bg_pids[0]}"; wait "${bg_pids[0]}" 2>/dev/null || true; bg_pids=()
sum_a=$(sha256sum <"$imgs/a.qcow2")
printf '%s\n' "$imgs/a.qcow2" "# comment" "$imgs/c.qcow2" >"$tmp/list"
vo batch --jobs 2 --bundle-dir "$tmp" "@$tmp/list" >"$tmp/batch2.json" 2>/dev/null
python3 - "$tmp/batch2.json" <<'PY' || fail "second batch"
import json, os, sys
d = json.load(open(sys.argv[1]))
st = {os.path.basename(i["image"]): i["status"] for i in d["images"]}
assert st == {"a.qcow2": "already-applied", "c.qcow2": "applied"}, st
PY
[ "$(sha256sum <"$imgs/a.qcow2")" = "$sum_a" ] || fail "already-applied a changed"
check_demo_applied "$imgs/c.qcow2"
pass "batch from a list with a bundle directory: rerun is idempotent"

# OVF descriptors are followed to their disks (and only beside them).
cat >"$imgs/appliance.ovf" <<'XML'
<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"
          xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">
  <References><File ovf:id="file1" ovf:href="b.raw"/></References>
  <DiskSection><Info>disks</Info></DiskSection>
</Envelope>
XML
vo inspect "$imgs/appliance.ovf" >"$tmp/ovf.json"
[ "$(json_get "$tmp/ovf.json" format)" = raw ] || fail "OVF inspect"
vo batch --bundle "$tmp/demo.vmab" "$imgs/appliance.ovf" >"$tmp/ovf-batch.json" 2>/dev/null
[ "$(json_get "$tmp/ovf-batch.json" images 0 status)" = already-applied ] ||
    fail "OVF batch"
sed 's#ovf:href="b.raw"#ovf:href="../b.raw"#' "$imgs/appliance.ovf" >"$imgs/evil.ovf"
expect_refusal "not a plain file name" inspect "$imgs/evil.ovf"
# A plain name beside it may still be a link to another image of the host.
cp "$imgs/b.raw" "$tmp/other-vm.raw"
ln -s "$tmp/other-vm.raw" "$imgs/linked.raw"
sed 's#ovf:href="b.raw"#ovf:href="linked.raw"#' "$imgs/appliance.ovf" \
    >"$imgs/linked.ovf"
expect_refusal "not a regular file beside" inspect "$imgs/linked.ovf"
rm -f "$imgs/linked.raw" "$imgs/linked.ovf"
pass "OVF descriptors lead to their disks; escaping references refused"

# An OVF of two disks is one guest of two disks, as a libvirt domain's
# are: applied once to both (root on the first, /var on the second), one
# entry in the summary, named by its first disk with the other beside it.
mfix=$(bash "$here/make-fixtures.sh" multidisk)
multidisk_bundle "$tmp/md.vmab"
mkdir -p "$tmp/two"
cp "$mfix/debian-disk1.qcow2" "$tmp/two/d1.qcow2"
cp "$mfix/debian-disk2.qcow2" "$tmp/two/d2.qcow2"
write_ovf "$tmp/two/two.ovf" d1.qcow2 d2.qcow2
vo batch --bundle "$tmp/md.vmab" "$tmp/two/two.ovf" \
    >"$tmp/two.json" 2>"$tmp/two.progress" ||
    fail "batch of a two-disk OVF: $(cat "$tmp/two.json" "$tmp/two.progress")"
python3 - "$tmp/two.json" <<'PY' || fail "two-disk OVF batch: $(cat "$tmp/two.json")"
import json, os, sys
d = json.load(open(sys.argv[1]))
got = [(os.path.basename(i["image"]), i["status"],
        [os.path.basename(m["image"]) for m in i["more_disks"]])
       for i in d["images"]]
assert got == [("d1.qcow2", "applied", ["d2.qcow2"])], got
PY
"$QEMU_IMG" convert -U -O raw "$tmp/two/d2.qcow2" "$tmp/two/d2.raw"
fsck_raw "$tmp/two/d2.raw" 1
[ "$(debugfs_part "$tmp/two/d2.raw" 1 cat /lib/multidisk/state)" = \
    "state on the second disk" ] || fail "the OVF's second disk not patched"
pass "batch: an OVF of two disks is one guest, applied to both"

# The systemd units, checked with systemd-analyze (it needs no running
# systemd).
sed "s#^ExecStart=[^ ]*#ExecStart=$VMAUGMENT_OFFLINE#" \
    "$VMAUGMENT_OFFLINE_UNIT_DIR/vmaugment-offline-batch.service" \
    >"$tmp/vmaugment-offline-batch.service"
grep -q "^ExecStart=$VMAUGMENT_OFFLINE " "$tmp/vmaugment-offline-batch.service" ||
    fail "the service has no ExecStart= to check"
cp "$here/../systemd/vmaugment-offline-batch.timer" "$tmp/"
# Documentation= names pages systemd looks up: the built ones.
bash "$here/../../tests/man/man-tree.sh" "${VMAUGMENT_MAN_DIR:?}" "$tmp/man" ||
    fail "no manual pages to check the units' Documentation= against"
MANPATH=$tmp/man systemd-analyze verify "$tmp/vmaugment-offline-batch.service" \
    "$tmp/vmaugment-offline-batch.timer" || fail "systemd-analyze verify"
pass "systemd service and timer verify"
