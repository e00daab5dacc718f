#!/usr/bin/env bash
# batch --libvirt: the domains of a libvirt connection are enumerated, the
# file-backed disks of the inactive ones patched in the format their XML
# gives, a running domain's disks and disks we cannot open skipped with a
# reason, one report per domain.  libvirt's test driver reads the domains
# from a node XML file, so no daemon runs; what batch reports is checked
# against the images with debugfs, e2fsck and qemu-img compare.
source "$(dirname "$0")/lib.sh"

plan 3
need virsh libvirt-clients
lfix=$(fixtures_linux)
make_identity
make_payloads
build_bundle "$tmp/demo.vmab" "$demo_rules" "$demo_files"

imgs=$tmp/images
mkdir -p "$imgs"
cp "$lfix/debian.qcow2" "$imgs/a.qcow2"
cp --sparse=always "$lfix/debian.raw" "$imgs/b.img"
cp "$lfix/debian.qcow2" "$imgs/r.qcow2"
cp "$lfix/debian.qcow2" "$imgs/orig.qcow2"

# domain_xml NAME RUNSTATE DISKS: a test-driver domain; runstate 5 is
# VIR_DOMAIN_SHUTOFF, 1 VIR_DOMAIN_RUNNING.
domain_xml() {
    cat <<XML
  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>
    <name>$1</name>
    <memory>65536</memory>
    <os><type>hvm</type></os>
    <devices>
$3
    </devices>
    <test:runstate>$2</test:runstate>
  </domain>
XML
}
file_disk() {
    echo "<disk type='file' device='disk'><driver name='qemu' type='$2'/>" \
         "<source file='$1'/><target dev='$3' bus='virtio'/></disk>"
}
{
    echo "<node>"
    domain_xml alpha 5 "$(file_disk "$imgs/a.qcow2" qcow2 vda)
      $(file_disk "$imgs/b.img" raw vdb)
      <disk type='network' device='disk'><driver name='qemu' type='raw'/>
        <source protocol='nbd' name='export'><host name='nbd.example' port='10809'/></source>
        <target dev='vdc' bus='virtio'/></disk>
      <disk type='file' device='cdrom'><driver name='qemu' type='raw'/>
        <source file='$imgs/install.iso'/><target dev='sda' bus='sata'/><readonly/></disk>"
    domain_xml beta 1 "$(file_disk "$imgs/r.qcow2" qcow2 vda)"
    echo "</node>"
} >"$tmp/node.xml"
uri="test://$tmp/node.xml"
# The fixture as libvirt sees it, by libvirt's own client.
virsh -c "$uri" list --all >"$tmp/virsh.out"
grep -qE ' alpha +shut off' "$tmp/virsh.out" &&
    grep -qE ' beta +running' "$tmp/virsh.out" ||
    { cat "$tmp/virsh.out" >&2; fail "test driver domains"; }

rc=0
vo batch --jobs 2 --report-dir "$tmp/reports" --bundle "$tmp/demo.vmab" \
    --libvirt "$uri" >"$tmp/batch.json" 2>"$tmp/progress" || rc=$?
[ $rc -eq 0 ] || { cat "$tmp/batch.json" "$tmp/progress"; fail "batch exit $rc"; }
# The images first, by tools of their own; then what batch says of them.
cmp -s "$imgs/r.qcow2" "$imgs/orig.qcow2" || fail "running domain's image changed"
check_demo_applied "$imgs/a.qcow2"
check_demo_applied "$imgs/b.img"
python3 - "$tmp/batch.json" "$tmp/reports" <<'PY' || fail "batch report"
import json, os, sys
d = json.load(open(sys.argv[1]))
st = {(i["domain"], i["disk"]): (i["status"], i.get("format"))
      for i in d["images"]}
assert st == {("alpha", "vda"): ("applied", "qcow2"),
              ("alpha", "vdb"): ("applied", "raw"),
              ("alpha", "vdc"): ("skipped", "raw"),
              ("alpha", "sda"): ("skipped", "raw"),
              ("beta", "vda"): ("skipped-in-use", "qcow2")}, st
why = {(i["domain"], i["disk"]): i["bundles"][0].get("reason")
       for i in d["images"] if i["status"].startswith("skipped")}
assert why == {("alpha", "vdc"): "network disk, not file-backed",
               ("alpha", "sda"): "cdrom device, not a disk",
               ("beta", "vda"): "domain beta is running"}, why
assert d["summary"] == {"applied": 2, "skipped": 2, "skipped-in-use": 1}, \
    d["summary"]
assert sorted(os.listdir(sys.argv[2])) == ["alpha.json", "beta.json"], \
    os.listdir(sys.argv[2])
a = json.load(open(os.path.join(sys.argv[2], "alpha.json")))
assert a["domain"] == "alpha" and a["status"] == "skipped", a
assert [x["disk"] for x in a["disks"]] == ["vda", "vdb", "vdc", "sda"], a
b = json.load(open(os.path.join(sys.argv[2], "beta.json")))
assert b["status"] == "skipped-in-use", b
PY
grep -q '^\[5/5\] ' "$tmp/progress" || fail "no progress lines"
grep -q '^\[[1-5]/5\] beta vda .*/r.qcow2: skipped-in-use$' "$tmp/progress" ||
    fail "no progress line for the running domain"
pass "batch --libvirt: inactive domain patched, running one skipped, 2 reports"

# The format comes from the domain XML, not from probing: a qcow2 file the
# domain declares raw is refused, and left as it was.
sum_a=$(sha256sum <"$imgs/a.qcow2")
{
    echo "<node>"
    domain_xml alpha 5 "$(file_disk "$imgs/a.qcow2" qcow2 vda)"
    domain_xml gamma 5 "$(file_disk "$imgs/orig.qcow2" raw vda)"
    echo "</node>"
} >"$tmp/node2.xml"
rc=0
vo batch --bundle "$tmp/demo.vmab" --libvirt "test://$tmp/node2.xml" \
    >"$tmp/batch2.json" 2>"$tmp/progress2" || rc=$?
[ $rc -eq 1 ] || { cat "$tmp/progress2"; fail "declared-raw qcow2: exit $rc"; }
grep -q 'some images could not be serviced' "$tmp/progress2" ||
    fail "no batch failure message"
python3 - "$tmp/batch2.json" <<'PY' || fail "second batch"
import json, sys
d = json.load(open(sys.argv[1]))
st = {i["domain"]: i["status"] for i in d["images"]}
assert st == {"alpha": "already-applied", "gamma": "error"}, st
assert [x["status"] for x in d["domains"]] == ["already-applied", "error"], d
PY
[ "$(sha256sum <"$imgs/a.qcow2")" = "$sum_a" ] || fail "already-applied a changed"
cmp -s "$imgs/r.qcow2" "$imgs/orig.qcow2" || fail "declared-raw qcow2 changed"
pass "formats from the domain XML; rerun is idempotent"

# A connection libvirt cannot open, and images named besides --libvirt.
expect_refusal "libvirt test://$tmp/absent.xml: " \
    --trust-dir "$tmp/trust" batch --bundle "$tmp/demo.vmab" \
    --libvirt "test://$tmp/absent.xml"
expect_refusal --status 2 "usage: batch" --trust-dir "$tmp/trust" batch \
    --bundle "$tmp/demo.vmab" --libvirt "$uri" "$imgs/a.qcow2"
cmp -s "$imgs/r.qcow2" "$imgs/orig.qcow2" || fail "refused batch changed r"
pass "an unreachable libvirt and mixed sources are refused"
