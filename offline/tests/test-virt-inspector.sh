#!/usr/bin/env bash
# Slow: inspect's inventory against virt-inspector's (libguestfs, its own
# appliance under TCG), field by field, on the Linux and the Windows
# fixture.  The fields compared and where inspect reports each are listed
# in docs/offline.rst ("Inventory").
source "$(dirname "$0")/lib.sh"

plan 2
need virt-inspector libguestfs-tools
export LIBGUESTFS_BACKEND=${LIBGUESTFS_BACKEND:-direct}
# No usable KVM on these hosts: libguestfs' appliance runs under TCG.
export LIBGUESTFS_BACKEND_SETTINGS=${LIBGUESTFS_BACKEND_SETTINGS:-force_tcg}

# compare IMAGE: virt-inspector's XML and inspect's JSON of IMAGE agree;
# what was compared goes to $tmp/summary.
compare() {
    local img=$1 name
    name=$(basename "$img")
    "$VMAUGMENT_OFFLINE" inspect "$img" >"$tmp/$name.json"
    virt-inspector --no-icon --format=qcow2 -a "$img" >"$tmp/$name.xml" \
        2>"$tmp/$name.err" || { cat "$tmp/$name.err" >&2; fail "virt-inspector $name"; }
    python3 - "$tmp/$name.xml" "$tmp/$name.json" <<'PY' >"$tmp/summary" || fail "$name: inspect and virt-inspector differ"
import json, re, sys
import xml.etree.ElementTree as ET

oses = ET.parse(sys.argv[1]).getroot().findall("operatingsystem")
assert len(oses) == 1, "virt-inspector found %d systems" % len(oses)
vi = oses[0]
inv = json.load(open(sys.argv[2]))
os_ = inv["os"]
bad = []
checked = []

def same(field, theirs, ours):
    checked.append(field)
    if theirs != ours:
        bad.append("%s: virt-inspector %r, inspect %r" % (field, theirs, ours))

def text(tag):
    e = vi.find(tag)
    return e.text if e is not None else None

def part(dev):
    # libguestfs names the only disk /dev/sda: /dev/sdaN is partition N.
    m = re.fullmatch(r"/dev/sda(\d+)", dev)
    assert m, dev
    return int(m.group(1))

windows = text("name") == "windows"
same("type", text("name"), os_.get("family"))
same("distro", text("distro"), os_.get("id"))
for tag, key in (("arch", "arch"), ("product_name", "product_name"),
                 ("major_version", "major_version"),
                 ("minor_version", "minor_version"),
                 ("hostname", "hostname"),
                 ("package_format", "package_format"),
                 ("package_management", "package_management"),
                 ("windows_systemroot", "systemroot"),
                 ("windows_current_control_set", "current_control_set")):
    if text(tag) is not None or key in os_:
        same(tag, text(tag), os_.get(key))

# Mount points (Windows: "/" is C:) and drive letters, by partition.
mounts = {m["mountpoint"]: m.get("partition") for m in inv["mounts"]}
for mp in vi.findall("mountpoints/mountpoint"):
    ours = "C:" if windows and mp.text == "/" else mp.text
    same("mountpoint " + mp.text, part(mp.get("dev")), mounts.get(ours))
for dm in vi.findall("drive_mappings/drive_mapping"):
    same("drive " + dm.get("name"), part(dm.text),
         mounts.get(dm.get("name") + ":"))
if windows:
    same("drive letters", sorted(dm.get("name") + ":" for dm in
                                 vi.findall("drive_mappings/drive_mapping")),
         sorted(mounts))
else:
    same("mount points", sorted(mp.text for mp in
                                vi.findall("mountpoints/mountpoint")),
         sorted(mounts))

# Filesystems: type, label, UUID of the partition.
parts = {p["number"]: p for p in inv["partitions"]}
for fs in vi.findall("filesystems/filesystem"):
    p = parts.get(part(fs.get("dev")), {})
    for tag, key in (("type", "filesystem"), ("label", "label"),
                     ("uuid", "uuid")):
        same("%s %s" % (fs.get("dev"), tag), fs.findtext(tag), p.get(key))

# Applications: name, display name, version (dpkg's epoch:version-release
# is inspect's "version"), publisher, architecture.
def vi_app(a):
    epoch, version, release = (a.findtext(t) for t in
                               ("epoch", "version", "release"))
    full = version or ""
    if epoch and epoch != "0":
        full = epoch + ":" + full
    if release:
        full += "-" + release
    out = {"version": full}
    for tag, key in (("display_name", "display_name"),
                     ("publisher", "publisher"), ("arch", "architecture")):
        if a.findtext(tag):
            out[key] = a.findtext(tag)
    return a.findtext("name"), out

def our_app(p):
    return p["name"], {k: p[k] for k in ("version", "display_name",
                                         "publisher", "architecture")
                       if k in p}

theirs = dict(vi_app(a) for a in vi.findall("applications/application"))
ours = dict(our_app(p) for p in inv["packages"])
same("application names", sorted(theirs), sorted(ours))
for name in sorted(set(theirs) & set(ours)):
    same("application " + name, theirs[name], ours[name])
apps = len(theirs)

if bad:
    print("\n".join(bad), file=sys.stderr)
    sys.exit(1)
print("%d fields, %d applications" % (len(checked), apps))
PY
}

lfix=$(fixtures_linux)
wfix=$(fixtures_windows)
compare "$lfix/debian.qcow2"
pass "inspect equals virt-inspector on the Linux fixture: $(cat "$tmp/summary")"
compare "$wfix/windows.qcow2"
pass "inspect equals virt-inspector on the Windows fixture: $(cat "$tmp/summary")"
