#!/usr/bin/env bash
# plan: apt decides the updates of the fixture images from a local
# repository that the test builds and signs with a throw-away OpenPGP key
# (real .debs of the minbase tree rebuilt with newer versions: one with a
# conffile, one dropping a file, one gaining a dependency on a package
# the image lacks, one with a preinst); bundle-build --plan makes the
# bundle, whose rules hold only on the images it was planned for.
source "$(dirname "$0")/lib.sh"

plan 21
source "$here/deb-lib.sh"
fix=$(fixtures_linux)
make_identity
make_update_repo

# Two identical images and a third whose libaudit-common is already the
# new version (its status replaced with a bundle of today's kind).
cp "$fix/debian.qcow2" "$tmp/a.qcow2"
cp "$fix/debian.qcow2" "$tmp/b.qcow2"
cp "$fix/debian.qcow2" "$tmp/c.qcow2"
linux_fixture_status "$tmp/fixture-status"
status_sha=$(sha256sum <"$tmp/fixture-status" | cut -d' ' -f1)
# with_status IMAGE SED-EXPRESSION: the image's dpkg status edited.
with_status() {
    mkdir -p "$tmp/payload"
    sed -E "$2" "$tmp/fixture-status" >"$tmp/payload/status"
    MANIFEST_ID=status-$(basename "$1" .qcow2) build_bundle "$tmp/st.vmab" "" \
        '{"op": "replace", "path": "/var/lib/dpkg/status", "payload": "status", "old_sha256": "'"$status_sha"'"}'
    vo apply "$1" "$tmp/st.vmab" >/dev/null || fail "cannot edit $1's status"
}
with_status "$tmp/c.qcow2" \
    "/^Package: libaudit-common\$/,/^\$/s/^Version: .*/Version: $V_AUDIT+vo1/"

vo plan "${sources[@]}" --keyring "$tmp/repo-key.gpg" \
    --download-dir "$tmp/debs" --output "$tmp/plan.json" \
    "$tmp/a.qcow2" "$tmp/b.qcow2" "$tmp/c.qcow2" ||
    fail "plan failed"
python3 - "$tmp/plan.json" "$tmp" <<'PY' || fail "groups"
import json, sys
d = json.load(open(sys.argv[1]))
t = sys.argv[2]
g = d["groups"]
assert [x["images"] for x in g] == [[t + "/a.qcow2", t + "/b.qcow2"],
                                    [t + "/c.qcow2"]], g
assert g[0]["status_sha256"] != g[1]["status_sha256"]
assert (g[0]["release"], g[0]["architecture"]) == ("bookworm", "amd64")
assert g[0]["os"] == {"id": "debian", "version_id": "12"}
PY
pass "identical images share one group, a different one gets its own"

python3 - "$tmp/plan.json" <<'PY' || fail "the full plan"
import json, os, sys
e = os.environ
d = json.load(open(sys.argv[1]))
assert d["security_only"] is False
assert [s["security"] for s in d["sources"]] == [True, False]
want = {
    ("hostname", "amd64", e["V_HOST"], e["V_HOST"] + "+vo1", "security"),
    ("libaudit-common", "all", e["V_AUDIT"], e["V_AUDIT"] + "+vo1",
     "security"),
    ("gpgv", "amd64", e["V_GPGV"], e["V_GPGV"] + "+vo1", "updates"),
    ("netbase", "all", None, e["V_NETBASE"], "updates"),
}
for i, g in enumerate(d["groups"]):
    have = [(p["name"], p["architecture"], p["old_version"],
             p["new_version"], p["reason"]) for p in g["packages"]]
    w = want if i == 0 else {x for x in want if x[0] != "libaudit-common"}
    assert set(have) == w and len(have) == len(w), (i, have)
    names = [p[0] for p in have]
    # apt's order: the new dependency is unpacked before what needs it.
    assert names.index("netbase") < names.index("gpgv"), names
PY
pass "the plan lists the expected upgrades, old and new versions, reasons"

python3 - "$tmp/plan.json" <<'PY' || fail "refused"
import json, os, sys
e = os.environ
d = json.load(open(sys.argv[1]))
for g in d["groups"]:
    r = [(p["name"], p["old_version"], p["new_version"], p["reason"])
         for p in g["refused"]]
    assert r == [("base-passwd", e["V_PASSWD"], e["V_PASSWD"] + "+vo1",
                  "preinst")], r
PY
pass "a package with a preinst is refused, with its reason"

# The downloaded files: the repository's, under the names and hashes the
# plan gives.
python3 - "$tmp/plan.json" <<'PY' >"$tmp/debs.list" || fail "deb names"
import json, sys
d = json.load(open(sys.argv[1]))
for g in d["groups"]:
    for p in g["packages"] + g["refused"]:
        print(p["deb"], p["sha256"])
PY
while read -r deb sha; do
    [ "$(sha256sum <"$tmp/debs/$deb" | cut -d' ' -f1)" = "$sha" ] ||
        fail "$deb: hash differs from the plan's"
    # dpkg-deb leaves the epoch out of its file names, apt quotes it.
    cmp -s "$tmp/debs/$deb" \
        "$(find "$tmp/repo/pool" -name "$(sed 's/_[0-9]*%3a/_/' <<<"$deb")")" ||
        fail "$deb is not the repository's file"
done <"$tmp/debs.list"
[ "$(wc -l <"$tmp/debs.list")" -eq 9 ] || fail "not every .deb listed"
pass "the .deb files are in the download directory with the plan's hashes"

vo plan "${sources[@]}" --keyring "$tmp/repo-key.gpg" --security-only \
    --download-dir "$tmp/debs-sec" --output "$tmp/plan-sec.json" \
    "$tmp/a.qcow2" || fail "security-only plan failed"
python3 - "$tmp/plan-sec.json" <<'PY' || fail "security-only plan"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["security_only"] is True
g, = d["groups"]
have = sorted((p["name"], p["reason"]) for p in g["packages"])
assert have == [("hostname", "security"), ("libaudit-common", "security")], have
assert g["refused"] == [], g["refused"]
PY
pass "--security-only plans only the security sources' upgrades"

# Tampered repositories: apt's own verification refuses them.
cp -a "$tmp/repo" "$tmp/bad-packages"
sed -i "s/^Version: $V_GPGV+vo1\$/Version: $V_GPGV+vo2/" \
    "$tmp/bad-packages/dists/bookworm-updates/main/binary-amd64/Packages"
expect_refusal "apt-get update failed.*(Hash Sum mismatch|unexpected size)" \
    plan --apt-source "file:$tmp/bad-packages bookworm-updates main" \
    --keyring "$tmp/repo-key.gpg" --download-dir "$tmp/d1" "$tmp/a.qcow2"
[ ! -e "$tmp/d1" ] || [ -z "$(ls "$tmp/d1")" ] ||
    fail "files downloaded from a tampered repository"
pass "a tampered Packages file makes plan fail clearly"

cp -a "$tmp/repo" "$tmp/bad-release"
sed -i 's/^Origin: vmaugment-test$/Origin: vmaugment-evil/' \
    "$tmp/bad-release/dists/bookworm-security/InRelease"
expect_refusal "apt-get update failed.*(BADSIG|signature|not signed)" \
    plan --apt-source "file:$tmp/bad-release bookworm-security main" \
    --keyring "$tmp/repo-key.gpg" --download-dir "$tmp/d2" "$tmp/a.qcow2"
expect_refusal "apt-get update failed.*(NO_PUBKEY|not signed|signature)" \
    plan "${sources[@]}" --keyring "$tmp/other-key.gpg" \
    --download-dir "$tmp/d3" "$tmp/a.qcow2"
pass "a tampered InRelease, or another key, makes plan fail clearly"

# Sources and keys the operator gets wrong are named, not guessed at.
expect_refusal "bad --apt-source 'ftp://example.org/debian bookworm main'" \
    plan --apt-source "ftp://example.org/debian bookworm main" \
    --keyring "$tmp/repo-key.gpg" --download-dir "$tmp/d5" "$tmp/a.qcow2"
expect_refusal "bad --apt-source" \
    plan --apt-source "file:$tmp/repo bookworm-updates" \
    --keyring "$tmp/repo-key.gpg" --download-dir "$tmp/d5" "$tmp/a.qcow2"
expect_refusal "bad component" \
    plan --apt-source "file:$tmp/repo bookworm-updates main;rm" \
    --keyring "$tmp/repo-key.gpg" --download-dir "$tmp/d5" "$tmp/a.qcow2"
expect_refusal "cannot read the keyring" \
    plan "${sources[@]}" --keyring "$tmp/none.gpg" \
    --download-dir "$tmp/d5" "$tmp/a.qcow2"
expect_refusal --status 2 "usage: plan" plan "${sources[@]}" --download-dir "$tmp/d5" \
    "$tmp/a.qcow2"
pass "bad sources, a missing keyring and missing options are refused"

# What the worker hands back is checked before apt sees it: a field dpkg
# would not write (an architecture restriction in a status file).
cp "$fix/debian.qcow2" "$tmp/odd.qcow2"
with_status "$tmp/odd.qcow2" \
    "/^Package: gpgv\$/,/^\$/s/^(Depends: .*)/\\1, evil (>= 1) [amd64]/"
expect_refusal "dpkg status is malformed: package [0-9]+: Depends" \
    plan "${sources[@]}" --keyring "$tmp/repo-key.gpg" \
    --download-dir "$tmp/d4" "$tmp/odd.qcow2"
pass "a status field dpkg would not accept is refused before apt runs"

bundle() {
    vo bundle-build --plan "$tmp/plan.json" --debs "$tmp/debs" \
        --key "$tmp/admin.key" --cert "$tmp/trust/admin.pem" "$@"
}
expect_refusal "2 groups of images: choose one with --group" \
    bundle-build --plan "$tmp/plan.json" --debs "$tmp/debs" \
    --key "$tmp/admin.key" --cert "$tmp/trust/admin.pem" \
    --output "$tmp/u.vmab"
bundle --group 0 --output "$tmp/u.vmab" || fail "bundle-build --plan"
tar -xOf "$tmp/u.vmab" manifest.json >"$tmp/u.json"
python3 - "$tmp/u.json" "$tmp/plan.json" <<'PY' || fail "bundle manifest"
import json, sys
m = json.load(open(sys.argv[1]))
g = json.load(open(sys.argv[2]))["groups"][0]
want = [{"op": "unpack", "payload": "%s_%s.deb" % (p["name"],
                                                  p["architecture"]),
         "package": p["name"], "architecture": p["architecture"],
         "version": p["new_version"], "old_version": p["old_version"]}
        for p in g["packages"]]
assert m["packages"] == want, m["packages"]
rules = [{"package": "%s:%s" % (p["name"], p["architecture"]),
          **({"version": "= " + p["old_version"]} if p["old_version"]
             else {"installed": False})} for p in g["packages"]]
assert m["applies"] == rules, m["applies"]
# Only what configures the packages at the next boot (docs/offline.rst).
assert m["marker"] == "/var/lib/vmaugment/offline", m.get("marker")
# And the new dependency's mark for apt-mark auto at that boot.
assert [f["path"] for f in m["files"] if f["op"] != "mkdir"] == [
    "/var/lib/vmaugment/offline/auto-installed/netbase:all",
    "/usr/local/sbin/vmaugment-offline-configure",
    "/etc/systemd/system/vmaugment-offline-configure.service",
    "/etc/systemd/system/multi-user.target.d/vmaugment-offline-configure.conf",
    "/var/lib/vmaugment/offline/configure-pending"], m["files"]
for p in g["packages"]:
    entry = m["payload"]["%s_%s.deb" % (p["name"], p["architecture"])]
    assert entry["sha256"] == p["sha256"]
PY
pass "bundle-build --plan: unpacks in apt's order, old versions pinned"

bundle --group 0 --stage-preinst --output "$tmp/s.vmab" ||
    fail "bundle-build --plan --stage-preinst"
tar -xOf "$tmp/s.vmab" manifest.json >"$tmp/s.json"
vo check "$tmp/a.qcow2" "$tmp/s.vmab" >"$tmp/s-check.json" ||
    fail "check of the staging bundle: $(cat "$tmp/s-check.json")"
python3 - "$tmp/s.json" "$tmp/s-check.json" <<'PY' || fail "staged manifest"
import json, os, sys
e = os.environ
m = json.load(open(sys.argv[1]))
c = json.load(open(sys.argv[2]))
staged = [p for p in m["packages"] if p["op"] == "stage"]
assert [(p["package"], p["old_version"], p["version"]) for p in staged] == \
    [("base-passwd", e["V_PASSWD"], e["V_PASSWD"] + "+vo1")], staged
assert {"package": "base-passwd:" + staged[0]["architecture"],
        "version": "= " + e["V_PASSWD"]} in m["applies"], m["applies"]
path = "/var/lib/vmaugment/offline/staged/" + staged[0]["payload"]
acts = [(p.get("path"), p["action"]) for p in c["plan"] if "path" in p]
assert (path, "add") in acts, acts
assert c["status"] == "applicable", c["status"]
PY
pass "bundle-build --plan --stage-preinst stages the refused package," \
    "its old version pinned"

sum=$(sha256sum <"$tmp/a.qcow2")
vo check "$tmp/a.qcow2" "$tmp/u.vmab" >"$tmp/check.json" ||
    fail "check on the planned image: $(cat "$tmp/check.json")"
python3 - "$tmp/check.json" <<'PY' || fail "check rules"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["status"] == "applicable", d
assert len(d["rules"]) == 4 and all(r["holds"] for r in d["rules"]), d
PY
expect_refusal --status 3 "does not apply.*libaudit-common:all = " \
    --trust-dir "$tmp/trust" check "$tmp/c.qcow2" "$tmp/u.vmab"
vo apply "$tmp/a.qcow2" "$tmp/u.vmab" >"$tmp/apply.json" ||
    fail "apply of the planned bundle: $(cat "$tmp/apply.json")"
[ "$(json_get "$tmp/apply.json" status)" = applied ] ||
    fail "apply status: $(cat "$tmp/apply.json")"
[ "$(sha256sum <"$tmp/a.qcow2")" != "$sum" ] || fail "apply did not change a"
pass "the bundle's rules hold on its images only; apply unpacks it"

# The bundle parser checks "packages" strictly.
mkdir -p "$tmp/pp"
cp "$tmp/debs/netbase_${V_NETBASE}_all.deb" "$tmp/pp/netbase_all.deb"
bad_package() {
    cat >"$tmp/bad.json" <<JSON
{"format": 1, "id": "bad-pkg", "version": "1", "files": [],
 "packages": [ {"op": "unpack", "payload": "netbase_all.deb",
   "package": "netbase", "architecture": "all", "version": "6.4",
   "old_version": null $1} ]}
JSON
    sed -i "$2" "$tmp/bad.json"
    # bundle-build refuses to sign it, with the parser's own words.
    rm -f "$tmp/bad.vmab"
    expect_refusal "$3" bundle-build --key "$tmp/admin.key" \
        --cert "$tmp/trust/admin.pem" --payload-dir "$tmp/pp" \
        --output "$tmp/bad.vmab" "$tmp/bad.json"
    [ ! -e "$tmp/bad.vmab" ] || fail "bundle-build signed a bad package entry"
    sign_unchecked_bundle "$tmp/bad.vmab" "$tmp/bad.json" "$tmp/pp" ||
        fail "assembling a bad package entry"
    expect_refusal "$3" --trust-dir "$tmp/trust" check "$tmp/a.qcow2" \
        "$tmp/bad.vmab"
}
bad_package ', "mode": "0755"' '' 'packages\[0\]: unknown member "mode"'
bad_package '' 's/"6.4"/"6.4 x"/' 'packages\[0\]: invalid character'
bad_package '' 's/"package": "netbase"/"package": "net!base"/' \
    'packages\[0\]: invalid package name'
bad_package '' 's/"op": "unpack"/"op": "install"/' 'unknown op "install"'
bad_package '' 's/"old_version": null/"old_version": 7/' '"old_version" is a'
pass "bad \"packages\" entries are refused by the bundle parser"

# batch --apt-source: plan, one bundle per group, apply, a report per
# image.  Security updates only: a2 and b2 are the fixture (one group),
# d's hostname is already the new one (a group of its own), e has both
# security updates (up to date), f is in use, g has no operating system.
bimg=$tmp/batch
mkdir -p "$bimg"
for n in a2 b2 d e f; do
    cp "$fix/debian.qcow2" "$bimg/$n.qcow2"
done
with_status "$bimg/d.qcow2" \
    "/^Package: hostname\$/,/^\$/s/^Version: .*/Version: $V_HOST+vo1/"
with_status "$bimg/e.qcow2" \
    "/^Package: hostname\$/,/^\$/s/^Version: .*/Version: $V_HOST+vo1/;/^Package: libaudit-common\$/,/^\$/s/^Version: .*/Version: $V_AUDIT+vo1/"
truncate -s 8M "$bimg/g.raw"
hold_image_lock "$bimg/f.qcow2" qcow2
declare -A before
for n in e.qcow2 f.qcow2 g.raw; do
    before[$n]=$(sha256sum <"$bimg/$n")
done
rc=0
vo batch --jobs 2 "${sources[@]}" --keyring "$tmp/repo-key.gpg" \
    --security-only --key "$tmp/admin.key" --cert "$tmp/trust/admin.pem" \
    --report-dir "$tmp/rep" "$bimg/a2.qcow2" "$bimg/b2.qcow2" \
    "$bimg/d.qcow2" "$bimg/e.qcow2" "$bimg/f.qcow2" "$bimg/g.raw" \
    >"$tmp/batch.json" 2>"$tmp/progress" || rc=$?
# g failed: the batch says so, after servicing the others.
[ $rc -eq 1 ] || fail "batch --apt-source exit $rc: $(cat "$tmp/progress")"
python3 - "$tmp/rep" "$bimg" <<'PY' || fail "batch --apt-source groups"
import json, os, sys
rep, img = sys.argv[1], sys.argv[2]
p = json.load(open(os.path.join(rep, "plan.json")))
assert p["security_only"] is True
assert [g["images"] for g in p["groups"]] == [
    [img + "/a2.qcow2", img + "/b2.qcow2"], [img + "/d.qcow2"],
    [img + "/e.qcow2"]], p["groups"]
names = [[x["name"] for x in g["packages"]] for g in p["groups"]]
assert sorted(names[0]) == ["hostname", "libaudit-common"], names
assert names[1:] == [["libaudit-common"], []], names
files = sorted(os.listdir(rep))
assert files == ["0-a2.qcow2.json", "1-b2.qcow2.json", "2-d.qcow2.json",
                 "3-e.qcow2.json", "4-f.qcow2.json", "5-g.raw.json", "debs",
                 "group-0.vmab", "group-1.vmab", "plan.json"], files
PY
pass "batch --apt-source: one bundle for two identical images, one for" \
    "a different one, none for an image up to date"

python3 - "$tmp/rep" "$tmp/batch.json" "$tmp/progress" <<'PY' || fail "batch --apt-source reports"
import json, os, sys
rep = sys.argv[1]
want = {"a2.qcow2": (0, "applied"), "b2.qcow2": (0, "applied"),
        "d.qcow2": (1, "applied"), "e.qcow2": (2, "up-to-date"),
        "f.qcow2": (None, "skipped-in-use"), "g.raw": (None, "error")}
for i, name in enumerate(want):
    r = json.load(open(os.path.join(rep, "%d-%s.json" % (i, name))))
    assert set(r) - {"reason"} == {"image", "group", "status", "bundles"}, r
    assert os.path.basename(r["image"]) == name, r
    assert (r["group"], r["status"]) == want[name], (name, r)
    if r["status"] == "applied":
        b, = r["bundles"]
        assert b["status"] == "applied", b
        assert "reason" not in r, r
    else:
        assert r["bundles"] == [] and r["reason"], r
assert "in use by a running QEMU" in json.load(
    open(os.path.join(rep, "4-f.qcow2.json")))["reason"]
assert "cannot read the package set" in json.load(
    open(os.path.join(rep, "5-g.raw.json")))["reason"]
s = json.load(open(sys.argv[2]))
assert s["summary"] == {"applied": 3, "up-to-date": 1, "skipped-in-use": 1,
                        "error": 1}, s["summary"]
progress = open(sys.argv[3]).read()
assert "[6/6] " in progress, progress
PY
pass "batch --apt-source: every image has its report, applied or not"

# Independently: dpkg-query on each image's dpkg database, taken out with
# debugfs, sees the new versions unpacked; the others did not change.
# dpkg_db IMAGE DIR: the image's /var/lib/dpkg in DIR.
dpkg_db() {
    "$QEMU_IMG" convert -U -O raw "$1" "$tmp/db.raw"
    fsck_raw "$tmp/db.raw" 1 2
    rm -rf "$2"
    mkdir -p "$2"
    debugfs_part "$tmp/db.raw" 1 rdump /var/lib/dpkg "$2" >/dev/null
    rm -f "$tmp/db.raw"
}
for n in a2 b2 d; do
    dpkg_db "$bimg/$n.qcow2" "$tmp/db-$n"
    got=$(dpkg-query --admindir="$tmp/db-$n/dpkg" -W \
        -f '${Package} ${Version} ${Status}\n' hostname libaudit-common)
    # d's hostname was already the new version, as installed.
    host_state=unpacked
    [ "$n" != d ] || host_state=installed
    [ "$got" = "hostname $V_HOST+vo1 install ok $host_state
libaudit-common $V_AUDIT+vo1 install ok unpacked" ] ||
        fail "$n after batch: $got"
done
grep -qx /usr/share/man/man1/hostname.1.gz "$tmp/db-a2/dpkg/info/hostname.list" &&
    fail "a2: hostname's list still has the dropped man page"
for n in e.qcow2 f.qcow2 g.raw; do
    [ "$(sha256sum <"$bimg/$n")" = "${before[$n]}" ] || fail "$n changed"
done
pass "batch --apt-source: dpkg sees the new versions unpacked;" \
    "the images not applied are unchanged"

# batch --stage-preinst: the package whose preinst the plan refuses is
# staged for the next boot, as with bundle-build --plan --stage-preinst;
# without it, the batch leaves that package out.
cp "$fix/debian.qcow2" "$bimg/s.qcow2"
cp "$fix/debian.qcow2" "$bimg/n.qcow2"
for mode in staged plain; do
    img=$bimg/s.qcow2 flag=--stage-preinst
    [ $mode = staged ] || { img=$bimg/n.qcow2; flag=; }
    vo batch "${sources[@]}" --keyring "$tmp/repo-key.gpg" $flag \
        --key "$tmp/admin.key" --cert "$tmp/trust/admin.pem" \
        --report-dir "$tmp/rep-$mode" "$img" >"$tmp/batch-$mode.json" \
        2>"$tmp/progress-$mode" ||
        fail "batch ($mode): $(cat "$tmp/progress-$mode")"
    tar -xOf "$tmp/rep-$mode/group-0.vmab" manifest.json \
        >"$tmp/m-$mode.json"
done
"$QEMU_IMG" convert -U -O raw "$bimg/s.qcow2" "$tmp/s.raw"
debugfs_part "$tmp/s.raw" 1 ls -l /var/lib/vmaugment/offline/staged \
    >"$tmp/staged.ls"
rm -f "$tmp/s.raw"
python3 - "$tmp/m-staged.json" "$tmp/m-plain.json" "$tmp/staged.ls" \
    "$tmp/rep-staged/0-s.qcow2.json" <<'PY' || fail "batch --stage-preinst"
import json, os, sys
e = os.environ
staged = json.load(open(sys.argv[1]))
plain = json.load(open(sys.argv[2]))
ops = [(p["op"], p["package"]) for p in staged["packages"]]
assert ("stage", "base-passwd") in ops, ops
assert all(p["package"] != "base-passwd" for p in plain["packages"]), \
    plain["packages"]
payload = next(p["payload"] for p in staged["packages"]
               if p["op"] == "stage")
assert payload in open(sys.argv[3]).read(), open(sys.argv[3]).read()
assert json.load(open(sys.argv[4]))["status"] == "applied"
PY
pass "batch --stage-preinst stages the package whose preinst the plan" \
    "refuses; without it the package is left out"

# batch --libvirt with --apt-source: the inactive domain's disk is
# planned and patched, the running domain's is skipped and unchanged
# (libvirt's test driver reads its domains from a node XML file).
need virsh libvirt-clients
cp "$fix/debian.qcow2" "$bimg/lv-off.qcow2"
cp "$fix/debian.qcow2" "$bimg/lv-run.qcow2"
sum_run=$(sha256sum <"$bimg/lv-run.qcow2")
lv_domain() {
    cat <<XML
  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>
    <name>$1</name><memory>65536</memory><os><type>hvm</type></os>
    <devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='$3'/><target dev='vda' bus='virtio'/></disk></devices>
    <test:runstate>$2</test:runstate>
  </domain>
XML
}
{
    echo "<node>"
    lv_domain off 5 "$bimg/lv-off.qcow2"
    lv_domain on 1 "$bimg/lv-run.qcow2"
    echo "</node>"
} >"$tmp/node.xml"
vo batch "${sources[@]}" --keyring "$tmp/repo-key.gpg" --security-only \
    --key "$tmp/admin.key" --cert "$tmp/trust/admin.pem" \
    --report-dir "$tmp/rep-lv" --libvirt "test://$tmp/node.xml" \
    >"$tmp/batch-lv.json" 2>"$tmp/progress-lv" ||
    fail "batch --libvirt --apt-source: $(cat "$tmp/progress-lv")"
[ "$(sha256sum <"$bimg/lv-run.qcow2")" = "$sum_run" ] ||
    fail "the running domain's disk changed"
dpkg_db "$bimg/lv-off.qcow2" "$tmp/db-lv"
got=$(dpkg-query --admindir="$tmp/db-lv/dpkg" -W -f '${Version}' hostname)
[ "$got" = "$V_HOST+vo1" ] ||
    fail "inactive domain's hostname: $got: $(cat "$tmp/progress-lv")"
python3 - "$tmp/batch-lv.json" <<'PY' || fail "batch --libvirt --apt-source report"
import json, sys
d = json.load(open(sys.argv[1]))
st = {(i["domain"], i["disk"]): i["status"] for i in d["images"]}
assert st == {("off", "vda"): "applied", ("on", "vda"): "skipped-in-use"}, st
PY
pass "batch --libvirt --apt-source: the inactive domain's disk is updated," \
    "the running one's skipped and unchanged"

# A domain of two disks (root on vda, /var with the dpkg database on vdb):
# its package set is read from both disks together, and the update lands
# on both, dpkg's database on vdb, hostname's binary on vda.
mfix=$(bash "$here/make-fixtures.sh" multidisk)
cp "$mfix/debian-disk1.qcow2" "$bimg/two-1.qcow2"
cp --sparse=always "$mfix/debian-disk2.raw" "$bimg/two-2.img"
cat >"$tmp/node-two.xml" <<XML
<node>
  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>
    <name>two</name><memory>65536</memory><os><type>hvm</type></os>
    <devices>
      <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
        <source file='$bimg/two-1.qcow2'/><target dev='vda' bus='virtio'/></disk>
      <disk type='file' device='disk'><driver name='qemu' type='raw'/>
        <source file='$bimg/two-2.img'/><target dev='vdb' bus='virtio'/></disk>
    </devices>
    <test:runstate>5</test:runstate>
  </domain>
</node>
XML
vo batch "${sources[@]}" --keyring "$tmp/repo-key.gpg" --security-only \
    --key "$tmp/admin.key" --cert "$tmp/trust/admin.pem" \
    --report-dir "$tmp/rep-two" --libvirt "test://$tmp/node-two.xml" \
    >"$tmp/batch-two.json" 2>"$tmp/progress-two" ||
    { cat "$tmp/batch-two.json" >&2
      fail "batch --libvirt --apt-source, two disks: $(cat "$tmp/progress-two")"; }
fsck_raw "$bimg/two-2.img" 1
rm -rf "$tmp/db-two"
mkdir -p "$tmp/db-two"
debugfs_part "$bimg/two-2.img" 1 rdump /lib/dpkg "$tmp/db-two" >/dev/null
got=$(dpkg-query --admindir="$tmp/db-two/dpkg" -W -f '${Version}' hostname)
[ "$got" = "$V_HOST+vo1" ] || fail "two disks: hostname $got"
"$QEMU_IMG" convert -U -O raw "$bimg/two-1.qcow2" "$tmp/two-1.raw"
fsck_raw "$tmp/two-1.raw" 1
debugfs_error "$tmp/two-1.raw" 1 \
    "/usr/share/man/man1/hostname.1.gz: File not found by ext2_lookup" \
    stat /usr/share/man/man1/hostname.1.gz
rm -f "$tmp/two-1.raw"
python3 - "$tmp/batch-two.json" "$bimg" <<'PY' || fail "two-disk apt report"
import json, sys
d = json.load(open(sys.argv[1]))
st = [(i["domain"], i["disk"], i["status"], i["group"],
       [m["disk"] for m in i["more_disks"]]) for i in d["images"]]
assert st == [("two", "vda", "applied", 0, ["vdb"])], st
PY
pass "batch --libvirt --apt-source: a domain of two disks planned from" \
    "the dpkg database on its second disk, updated on both"

# plan itself reads guests of several disks: each IMAGE with the --disk
# options after it, or an OVF naming its disks.  Both two-disk guests
# here have their package set on the second disk, the same one: one
# group.  A --disk before any IMAGE, or after an OVF, is a usage error.
mkdir -p "$tmp/pm"
cp "$mfix/debian-disk1.qcow2" "$tmp/pm/p1.qcow2"
cp --sparse=always "$mfix/debian-disk2.raw" "$tmp/pm/p2.img"
cp "$mfix/debian-disk1.qcow2" "$tmp/pm/o1.qcow2"
cp "$mfix/debian-disk2.qcow2" "$tmp/pm/o2.qcow2"
write_ovf "$tmp/pm/o.ovf" o1.qcow2 o2.qcow2
vo plan "${sources[@]}" --keyring "$tmp/repo-key.gpg" --security-only \
    --download-dir "$tmp/pm/debs" --output "$tmp/pm/plan.json" \
    "$tmp/pm/p1.qcow2" --disk "$tmp/pm/p2.img" --disk-format raw \
    "$tmp/pm/o.ovf" || fail "plan of two-disk guests"
python3 - "$tmp/pm/plan.json" "$tmp/pm" <<'PY' || fail "two-disk plan: $(cat "$tmp/pm/plan.json")"
import json, os, sys
d = json.load(open(sys.argv[1]))
g = d["groups"]
assert len(g) == 1, g
assert [os.path.basename(i) for i in g[0]["images"]] == \
    ["p1.qcow2", "o1.qcow2"], g[0]["images"]
assert "hostname" in [p["name"] for p in g[0]["packages"]], g[0]["packages"]
PY
expect_refusal --status 2 "each --disk follows the IMAGE of the guest" \
    plan "${sources[@]}" --keyring "$tmp/repo-key.gpg" \
    --download-dir "$tmp/pm/d2" --disk "$tmp/pm/p2.img" "$tmp/pm/p1.qcow2"
expect_refusal --status 2 "an OVF names its disks itself" \
    plan "${sources[@]}" --keyring "$tmp/repo-key.gpg" \
    --download-dir "$tmp/pm/d2" "$tmp/pm/o.ovf" --disk "$tmp/pm/p2.img"
expect_refusal --status 2 "--disk-format: one per --disk, in order" \
    plan "${sources[@]}" --keyring "$tmp/repo-key.gpg" \
    --download-dir "$tmp/pm/d2" "$tmp/pm/p1.qcow2" --disk "$tmp/pm/p2.img" \
    --disk-format raw --disk-format raw
pass "plan: a guest's --disk after its IMAGE, an OVF's disks: one group" \
    "read from the second disks; a misplaced --disk refused"

# A signer the images' trust store does not know: every apply refuses the
# bundle, and each image's report says so.
"$VMAUGMENT_KEYGEN" --name "Stranger" --key "$tmp/stranger.key" \
    --cert "$tmp/stranger.pem"
cp "$fix/debian.qcow2" "$bimg/h.qcow2"
sum_h=$(sha256sum <"$bimg/h.qcow2")
rc=0
vo batch "${sources[@]}" --keyring "$tmp/repo-key.gpg" --security-only \
    --key "$tmp/stranger.key" --cert "$tmp/stranger.pem" \
    --report-dir "$tmp/rep2" "$bimg/h.qcow2" >"$tmp/batch2.json" \
    2>"$tmp/progress2" || rc=$?
[ $rc -eq 1 ] || fail "batch with an untrusted signer: exit $rc"
[ "$(json_get "$tmp/rep2/0-h.qcow2.json" status)" = refused ] ||
    fail "untrusted signer: $(cat "$tmp/rep2/0-h.qcow2.json")"
[ "$(json_get "$tmp/rep2/0-h.qcow2.json" bundles 0 status)" = refused ] ||
    fail "untrusted signer's bundle report: $(cat "$tmp/rep2/0-h.qcow2.json")"
[ "$(sha256sum <"$bimg/h.qcow2")" = "$sum_h" ] || fail "h changed"
# And a repository signed by another key: no plan, still a report each.
rc=0
vo batch "${sources[@]}" --keyring "$tmp/other-key.gpg" \
    --key "$tmp/admin.key" --cert "$tmp/trust/admin.pem" \
    --report-dir "$tmp/rep3" "$bimg/h.qcow2" >"$tmp/batch3.json" \
    2>"$tmp/progress3" || rc=$?
[ $rc -eq 1 ] || fail "batch with a foreign repository key: exit $rc"
grep -q "apt-get update failed" "$tmp/progress3" ||
    fail "foreign repository key: $(cat "$tmp/progress3")"
[ "$(json_get "$tmp/rep3/0-h.qcow2.json" status)" = error ] ||
    fail "foreign repository key: $(cat "$tmp/rep3/0-h.qcow2.json")"
[ "$(sha256sum <"$bimg/h.qcow2")" = "$sum_h" ] || fail "h changed"
expect_refusal --status 2 "usage: batch" batch "${sources[@]}" \
    --keyring "$tmp/repo-key.gpg" --report-dir "$tmp/rep4" "$bimg/h.qcow2"
pass "batch --apt-source: an untrusted signer or repository key is" \
    "refused, with a report per image"
