#!/usr/bin/env bash
# batch --libvirt: the domains of a libvirt connection are enumerated, the
# file-backed disks of the inactive ones patched in the format their XML
# gives, a running domain's disks and disks we cannot open skipped with a
# reason, one report per domain; a domain of two disks (root on vda, /var
# on vdb) is patched as one guest, each disk in its own format.  libvirt's test driver reads the domains
# from a node XML file, so no daemon runs; what batch reports is checked
# against the images with debugfs, e2fsck and qemu-img compare.
source "$(dirname "$0")/lib.sh"

plan 4
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
      <disk type='network' device='disk'><driver name='qemu' type='raw'/>
        <source protocol='nbd' name='export'><host name='nbd.example' port='10809'/></source>
        <target dev='vdc' bus='virtio'/></disk>
      <disk type='file' device='cdrom'><driver name='qemu' type='raw'/>
        <source file='$imgs/install.iso'/><target dev='sda' bus='sata'/><readonly/></disk>"
    domain_xml apex 5 "$(file_disk "$imgs/b.img" raw vda)"
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
              ("apex", "vda"): ("applied", "raw"),
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
assert not any("more_disks" in i for i in d["images"]), d
assert sorted(os.listdir(sys.argv[2])) == ["alpha.json", "apex.json",
                                           "beta.json"], \
    os.listdir(sys.argv[2])
a = json.load(open(os.path.join(sys.argv[2], "alpha.json")))
# Its status is its guest's: the CD-ROM and network disk are aside.
assert a["domain"] == "alpha" and a["status"] == "applied", a
# The guest first, then the disks left out of it, in target order.
assert [x["disk"] for x in a["disks"]] == ["vda", "sda", "vdc"], a
b = json.load(open(os.path.join(sys.argv[2], "beta.json")))
assert b["status"] == "skipped-in-use", b
PY
grep -q '^\[5/5\] ' "$tmp/progress" || fail "no progress lines"
grep -q '^\[[1-5]/5\] beta vda .*/r.qcow2: skipped-in-use$' "$tmp/progress" ||
    fail "no progress line for the running domain"
pass "batch --libvirt: inactive domains patched, running one skipped, 3 reports"

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


# A domain of two disks: the root on vda (qcow2), /var with the dpkg
# database on vdb (raw), listed in the XML in the other order, with a
# CD-ROM.  The bundle's rules read the dpkg database on vdb and its files
# land on both disks, so only an apply of both disks together succeeds.
mfix=$(bash "$here/make-fixtures.sh" multidisk)
multidisk_bundle "$tmp/md.vmab"
cp "$mfix/debian-disk1.qcow2" "$imgs/d1.qcow2"
cp --sparse=always "$mfix/debian-disk2.raw" "$imgs/d2.img"
{
    echo "<node>"
    domain_xml delta 5 "$(file_disk "$imgs/d2.img" raw vdb)
      <disk type='file' device='cdrom'><driver name='qemu' type='raw'/>
        <source file='$imgs/install.iso'/><target dev='sdz' bus='sata'/><readonly/></disk>
      $(file_disk "$imgs/d1.qcow2" qcow2 vda)"
    echo "</node>"
} >"$tmp/node3.xml"
rc=0
vo batch --report-dir "$tmp/reports3" --bundle "$tmp/md.vmab" \
    --libvirt "test://$tmp/node3.xml" >"$tmp/batch3.json" \
    2>"$tmp/progress3" || rc=$?
[ $rc -eq 0 ] || { cat "$tmp/batch3.json" "$tmp/progress3"; fail "two-disk batch exit $rc"; }
raw1=$tmp/md1.raw
"$QEMU_IMG" convert -U -O raw "$imgs/d1.qcow2" "$raw1"
fsck_raw "$raw1" 1
fsck_raw "$imgs/d2.img" 1
[ "$(debugfs_part "$raw1" 1 cat /etc/motd)" = "patched motd" ] ||
    fail "vda: motd not replaced"
[ "$(debugfs_part "$imgs/d2.img" 1 cat /lib/multidisk/state)" = \
    "state on the second disk" ] || fail "vdb: state not added"
python3 - "$tmp/batch3.json" "$tmp/reports3" "$imgs" <<'PY' || fail "two-disk report"
import json, os, sys
d = json.load(open(sys.argv[1]))
imgs = sys.argv[3]
st = [(i["disk"], i["status"], i["format"], i.get("more_disks"))
      for i in d["images"]]
assert st == [("vda", "applied", "qcow2",
               [{"image": imgs + "/d2.img", "disk": "vdb",
                 "format": "raw"}]),
              ("sdz", "skipped", "raw", None)], st
assert d["summary"] == {"applied": 1, "skipped": 1}, d["summary"]
r = json.load(open(os.path.join(sys.argv[2], "delta.json")))
assert r["status"] == "applied", r
assert [x["disk"] for x in r["disks"]] == ["vda", "sdz"], r
b = r["disks"][0]["bundles"][0]
assert b["status"] == "applied", b
assert b["disks"] == [imgs + "/d1.qcow2", imgs + "/d2.img"], b
PY
grep -q '^\[[12]/2\] delta vda+vdb .*/d1.qcow2: applied$' "$tmp/progress3" ||
    { cat "$tmp/progress3"; fail "no progress line for the guest of two disks"; }
no_sidecars "$imgs/d1.qcow2"
no_sidecars "$imgs/d2.img"
pass "batch --libvirt: a domain of two disks patched as one guest"
