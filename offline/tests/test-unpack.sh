#!/usr/bin/env bash
# Debian packages unpacked offline (docs/offline.rst, "Packages"): test
# packages made here with dpkg-deb (an upgrade with a conffile the guest
# modified, a dropped conffile, dropped files and directories, a hard
# link, a setuid file, a diverted file, a postinst; a new Multi-Arch: same
# package; a package with a preinst), the old versions installed with dpkg
# in a chroot of a copy of the minbase fixture tree, which becomes an
# image.  After apply, everything is checked independently on the image
# (e2fsck, debugfs) and on its tree taken out with debugfs rdump: in a
# chroot, dpkg --configure -a, --audit and --verify; and against the same
# packages unpacked by dpkg itself in a chroot of the original image's
# tree (same files, same status).  Then hostile guests' databases must end
# in a clear refusal with the image unchanged.
source "$(dirname "$0")/lib.sh"

need dpkg-deb dpkg
need debugfs e2fsprogs
need e2fsck e2fsprogs
need chroot coreutils
[ "$(id -u)" -eq 0 ] ||
    fail "needs root: dpkg runs in chroots of the fixture tree"
plan 17

bash "$here/make-debs.sh" "$tmp/debs" || fail "cannot build the test packages"
tree=$(bash "$here/make-fixtures.sh" minbase) || fail "no minbase tree"

# The guest: minbase with the old packages installed by dpkg itself, a
# local diversion, a statoverride for a file the upgrade adds, and a
# conffile the administrator changed.
root=$tmp/root
cp -a "$tree" "$root"
rm -f "$root/.complete"
cp "$tmp/debs"/vmaug-{demo_1.0,other_1.0,pre_1.0}_amd64.deb "$root/tmp/"
chroot "$root" dpkg-divert --local --rename \
    --divert /usr/share/vmaug-demo/diverted.txt.distrib \
    --add /usr/share/vmaug-demo/diverted.txt >/dev/null ||
    fail "dpkg-divert in the fixture"
chroot "$root" dpkg-statoverride --add root mail 0640 \
    /usr/share/vmaug-demo/new.txt || fail "dpkg-statoverride in the fixture"
chroot "$root" sh -c 'dpkg -i /tmp/vmaug-*.deb' >"$tmp/dpkg-i.log" 2>&1 ||
    fail "installing the old packages: $(cat "$tmp/dpkg-i.log")"
rm -f "$root"/tmp/vmaug-*.deb
echo "setting=mine" >"$root/etc/vmaug-demo.conf"
bash "$here/make-fixtures.sh" image "$root" "$tmp/img" ||
    fail "cannot make the image"
rm -rf "$root"
orig=$tmp/img/debian.qcow2
root_off=$(part_offset "$tmp/img/debian.raw" 1)

make_identity
mkdir -p "$tmp/payload"
cp "$tmp/debs"/vmaug-demo_2.0_amd64.deb "$tmp/debs"/vmaug-new_1.0_amd64.deb \
    "$tmp/payload/"
# Named as Debian names files whose version has a "~" or an epoch.
cp "$tmp/debs"/vmaug-pre_2.0_amd64.deb "$tmp/payload/vmaug-pre_1%3a2.0~x_amd64.deb"

# package_bundle OUT PACKAGES: a bundle of package entries (JSON body).
package_bundle() {
    cat >"$tmp/pkg-manifest.json" <<JSON
{
  "format": 1, "id": "${MANIFEST_ID:-deb-update}", "version": "1",
  "applies": [ {"package": "vmaug-demo", "version": "= 1.0"},
               {"package": "vmaug-new", "installed": false} ],
  "files": [],
  "packages": [ $2 ]
}
JSON
    "$VMAUGMENT_OFFLINE" bundle-build --key "$tmp/admin.key" \
        --cert "$tmp/trust/admin.pem" --payload-dir "$tmp/payload" \
        --output "$1" "$tmp/pkg-manifest.json"
}
demo='{"op": "unpack", "payload": "vmaug-demo_2.0_amd64.deb",
       "package": "vmaug-demo", "architecture": "amd64",
       "version": "2.0", "old_version": "1.0"}'
new='{"op": "unpack", "payload": "vmaug-new_1.0_amd64.deb",
      "package": "vmaug-new", "architecture": "amd64",
      "version": "1.0", "old_version": null}'
package_bundle "$tmp/debs.vmab" "$demo, $new" || fail "bundle-build"

# 1. The plan, on an untouched image.
cp "$orig" "$tmp/a.qcow2"
vo check "$tmp/a.qcow2" "$tmp/debs.vmab" >"$tmp/check.json" ||
    { cat "$tmp/check.json"; fail "check"; }
python3 - "$tmp/check.json" <<'PY' || fail "plan: $(cat "$tmp/check.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["status"] == "applicable", d
up, new = [p for p in d["plan"] if "package" in p]
assert (up["package"], up["action"], up["old_version"]) == \
    ("vmaug-demo", "upgrade", "1.0"), up
assert sorted(up["remove"]) == [
    "/usr/share/vmaug-demo/old.txt", "/usr/share/vmaug-demo/olddir/x.txt",
    "/usr/share/vmaug-shared/demo.txt"], up["remove"]
assert (new["package"], new["action"], new["conffiles"]) == \
    ("vmaug-new", "install", 1), new
assert up["triggers"] == ["libc-bin ldconfig"], up["triggers"]
assert new["triggers"] == [
    "debianutils /usr/share/debianutils/shells.d"], new["triggers"]
PY
check_same_content "$tmp/a.qcow2" "$orig"
pass "check plans the upgrade (3 files dropped), the new install, triggers"

# 2. Apply, verify, apply again.
vo apply "$tmp/a.qcow2" "$tmp/debs.vmab" >"$tmp/apply.json" ||
    { cat "$tmp/apply.json"; fail "apply"; }
[ "$(json_get "$tmp/apply.json" status)" = applied ] || fail "apply status"
no_sidecars "$tmp/a.qcow2"
vo verify "$tmp/a.qcow2" "$tmp/debs.vmab" >"$tmp/verify.json" ||
    { cat "$tmp/verify.json"; fail "verify"; }
vo apply "$tmp/a.qcow2" "$tmp/debs.vmab" >"$tmp/again.json"
[ "$(json_get "$tmp/again.json" status)" = already-applied ] ||
    fail "applying again: $(cat "$tmp/again.json")"
"$QEMU_IMG" convert -U -O raw "$tmp/a.qcow2" "$tmp/a.raw"
fsck_raw "$tmp/a.raw" 1 2
pass "apply, verify, apply again (already-applied), fsck-clean"

# 3. On the image itself: what rdump cannot show (setuid bits), the
# diversion, the conffile left as .dpkg-new beside the modified one.
out=$(debugfs_part "$tmp/a.raw" 1 stat /usr/bin/vmaug-demo)
grep -q "Mode:  04755" <<<"$out" || fail "setuid bit lost: $out"
out=$(debugfs_part "$tmp/a.raw" 1 stat /usr/share/vmaug-demo/new.txt)
grep -q "Mode:  0640" <<<"$out" && grep -qE "User: +0 +Group: +8 " <<<"$out" ||
    fail "the statoverride was not applied: $out"
[ "$(debugfs_part "$tmp/a.raw" 1 cat /usr/share/vmaug-demo/diverted.txt.distrib)" = \
  "diverted 2" ] || fail "the diverted file was not written to its diversion"
debugfs_error "$tmp/a.raw" 1 "File not found by ext2_lookup" \
    stat /usr/share/vmaug-demo/diverted.txt
[ "$(debugfs_part "$tmp/a.raw" 1 cat /etc/vmaug-demo.conf)" = setting=mine ] ||
    fail "the modified conffile was touched"
[ "$(debugfs_part "$tmp/a.raw" 1 cat /etc/vmaug-demo.conf.dpkg-new)" = setting=2 ] ||
    fail "no .dpkg-new beside the modified conffile"
pass "setuid kept, statoverride applied, diverted file at its diversion," \
    "conffile as .dpkg-new"

# 4. The same packages unpacked by dpkg itself, in a chroot of the
# original image's tree: the same files (content, type, mode, owner) and
# the same status file.
mkdir "$tmp/ours" "$tmp/ref"
debugfs -R "rdump / $tmp/ours" "$tmp/a.raw?offset=$root_off" 2>/dev/null
debugfs -R "rdump / $tmp/ref" "$tmp/img/debian.raw?offset=$root_off" 2>/dev/null
rm -f "$tmp/a.raw"
cp "$tmp/debs"/vmaug-demo_2.0_amd64.deb "$tmp/debs"/vmaug-new_1.0_amd64.deb \
    "$tmp/ref/tmp/"
# --no-triggers: the triggers stay pending for the next configure, as
# offline (dpkg would otherwise run them at once).
chroot "$tmp/ref" sh -c 'dpkg --unpack --no-triggers /tmp/vmaug-*.deb' \
    >"$tmp/ref.log" 2>&1 ||
    fail "dpkg --unpack in the reference: $(cat "$tmp/ref.log")"
rm -f "$tmp"/ref/tmp/vmaug-*.deb
# dpkg's own journal and backup, which an offline unpack does not write,
# and what the bundle adds for the next boot (case 7).
python3 "$here/compare-trees.py" "$tmp/ours" "$tmp/ref" \
    --skip=/var/lib/dpkg/status-old --skip=/var/log/dpkg.log \
    --skip=/usr/local/sbin/vmaugment-offline-configure \
    --skip=/etc/systemd/system/vmaugment-offline-configure.service \
    --skip=/etc/systemd/system/multi-user.target.d/ \
    --skip=/var/lib/vmaugment/ || fail "trees differ from dpkg's"
pass "same files and status file as dpkg --unpack in a chroot"

# 5. The guest's next boot finishes the job: the command of the unit the
# bundle installed, in a chroot of the tree (no /dev/vmaugment: the
# result waits in its file).  A copy is kept for case 8.
cp -a "$tmp/ours" "$tmp/failing"
off=$tmp/ours/var/lib/vmaugment/offline
[ -f "$off/configure-pending" ] || fail "the bundle did not arm the unit"
cmd=$(sed -n 's/^ExecStart=//p' \
    "$tmp/ours/etc/systemd/system/vmaugment-offline-configure.service")
[ "$cmd" = /usr/local/sbin/vmaugment-offline-configure ] ||
    fail "the unit runs $cmd"
chroot "$tmp/ours" $cmd >"$tmp/unit.log" 2>&1 ||
    fail "$cmd: $(cat "$tmp/unit.log" "$off/dpkg-configure.log")"
cp "$off/dpkg-configure.log" "$tmp/conf.log"
[ ! -e "$off/configure-pending" ] || fail "the flag is still set"
grep -qx "status=configured" "$off/dpkg-configure.result" &&
    grep -qx "message=dpkg --configure -a configured 2 package(s)" \
        "$off/dpkg-configure.result" &&
    grep -qx "records=deb-update-1.json;" "$off/dpkg-configure.result" ||
    fail "the result file: $(cat "$off/dpkg-configure.result")"
[ -f "$off/deb-update-1.json" ] || fail "the record is not pending"
cp "$off/dpkg-configure.result" "$tmp/result.configured"
audit=$(chroot "$tmp/ours" dpkg --audit 2>&1) || fail "dpkg --audit: $audit"
[ -z "$audit" ] || fail "dpkg --audit: $audit"
[ "$(cat "$tmp/ours/var/lib/vmaug-demo.configured")" = configured ] ||
    fail "the postinst did not run"
grep -q "Processing triggers for libc-bin" "$tmp/conf.log" &&
    grep -q "Processing triggers for debianutils" "$tmp/conf.log" ||
    fail "the pending triggers did not run: $(cat "$tmp/conf.log")"
pass "the installed unit's command configures: postinst and the pending" \
    "triggers run, dpkg --audit is empty, the result file says so"

# 6. dpkg --verify: only the conffile the administrator changed differs,
# and the package's new version waits beside it.
verify=$(chroot "$tmp/ours" dpkg --verify vmaug-demo vmaug-new vmaug-other 2>&1) ||
    fail "dpkg --verify: $verify"
[ "$verify" = "??5?????? c /etc/vmaug-demo.conf" ] ||
    fail "dpkg --verify: $verify"
[ "$(cat "$tmp/ours/etc/vmaug-demo.conf")" = setting=mine ] &&
    [ "$(cat "$tmp/ours/etc/vmaug-demo.conf.dpkg-dist")" = setting=2 ] &&
    [ "$(cat "$tmp/ours/etc/vmaug-new-pkg.conf")" = fresh=1 ] ||
    fail "conffiles after configure"
rm -rf "$tmp/ours" "$tmp/ref"
pass "dpkg --verify clean but for the modified conffile, .dpkg-dist beside it"

# 7. What the bundle adds for the next boot: the script, the unit and its
# drop-in, each as in the source tree, the flag, the marker's directory;
# a second bundle adding the same file finds it unchanged, another file
# there is refused; a manifest keeping its record elsewhere is refused
# before signing.
tar -xOf "$tmp/debs.vmab" manifest.json >"$tmp/manifest.json"
python3 - "$tmp/manifest.json" "$here/../guest" "$tmp/debs.vmab" <<'PY' ||
import hashlib, json, subprocess, sys
m = json.load(open(sys.argv[1]))
assert m["marker"] == "/var/lib/vmaugment/offline", m.get("marker")
adds = {f["path"]: f for f in m["files"] if f["op"] == "add"}
want = {"/usr/local/sbin/vmaugment-offline-configure":
            ("vmaugment-offline-configure", "0755"),
        "/etc/systemd/system/vmaugment-offline-configure.service":
            ("vmaugment-offline-configure.service", "0644"),
        "/etc/systemd/system/multi-user.target.d/vmaugment-offline-configure.conf":
            ("vmaugment-offline-configure.conf", "0644"),
        "/var/lib/vmaugment/offline/configure-pending":
            ("configure-pending", "0644")}
assert sorted(adds) == sorted(want), sorted(adds)
for path, (payload, mode) in want.items():
    assert (adds[path]["payload"], adds[path]["mode"]) == (payload, mode), adds[path]
    data = subprocess.run(["tar", "-xOf", sys.argv[3], "payload/" + payload],
                          capture_output=True, check=True).stdout
    assert hashlib.sha256(data).hexdigest() == m["payload"][payload]["sha256"]
    if payload != "configure-pending":
        assert data == open(sys.argv[2] + "/" + payload, "rb").read(), payload
PY
    fail "the bundle's additions: $(cat "$tmp/manifest.json")"
# add_again OUT PAYLOAD: a bundle adding the installed script again, its
# content PAYLOAD, and a new file (so that it is not already applied).
add_again() {
    mkdir -p "$tmp/again"
    cp "$2" "$tmp/again/script"
    cat >"$tmp/again.json" <<JSON
{ "format": 1, "id": "again", "version": "1",
  "applies": [ {"os": {"id": "debian"}} ],
  "files": [ {"op": "add", "path": "/usr/local/sbin/vmaugment-offline-configure",
              "payload": "script", "mode": "0755"},
             {"op": "add", "path": "/usr/local/sbin/vmaug-extra",
              "payload": "script", "mode": "0755"} ] }
JSON
    "$VMAUGMENT_OFFLINE" bundle-build --key "$tmp/admin.key" \
        --cert "$tmp/trust/admin.pem" --payload-dir "$tmp/again" \
        --output "$1" "$tmp/again.json"
}
add_again "$tmp/same.vmab" "$here/../guest/vmaugment-offline-configure" ||
    fail "bundle-build same"
vo check "$tmp/a.qcow2" "$tmp/same.vmab" >"$tmp/same.json" ||
    fail "the same file again: $(cat "$tmp/same.json")"
[ "$(json_get "$tmp/same.json" plan 0 action)" = unchanged ] &&
    [ "$(json_get "$tmp/same.json" plan 1 action)" = add ] ||
    fail "the same file again: $(cat "$tmp/same.json")"
echo "# another" | cat "$here/../guest/vmaugment-offline-configure" - \
    >"$tmp/other-script"
add_again "$tmp/other.vmab" "$tmp/other-script" || fail "bundle-build other"
expect_refusal "vmaugment-offline-configure: already exists \(use replace\)" \
    --trust-dir "$tmp/trust" check "$tmp/a.qcow2" "$tmp/other.vmab"
sed 's/"files": \[\]/"marker": "\/var\/lib\/elsewhere", "files": []/' \
    "$tmp/pkg-manifest.json" >"$tmp/elsewhere.json"
"$VMAUGMENT_OFFLINE" bundle-build --key "$tmp/admin.key" \
    --cert "$tmp/trust/admin.pem" --payload-dir "$tmp/payload" \
    --output "$tmp/elsewhere.vmab" "$tmp/elsewhere.json" 2>"$tmp/elsewhere.err" &&
    fail "bundle-build signed a package bundle with its marker elsewhere"
grep -q "installs /var/lib/vmaugment/offline itself: its \"marker\" must be that directory" \
    "$tmp/elsewhere.err" || fail "the refusal: $(cat "$tmp/elsewhere.err")"
pass "the bundle installs the unit, its script and drop-in as in the" \
    "source, arms it; the same file added again is unchanged, another refused"

# 8. A configure that fails (the postinst cannot write its file) keeps
# the flag for the next boot and says why.
mkdir "$tmp/failing/var/lib/vmaug-demo.configured"
off=$tmp/failing/var/lib/vmaugment/offline
chroot "$tmp/failing" /usr/local/sbin/vmaugment-offline-configure \
    >"$tmp/unit-fail.log" 2>&1 && fail "a failing configure exited 0"
grep -qx "status=failed" "$off/dpkg-configure.result" &&
    grep -q "^message=dpkg --configure -a failed (exit 1): " \
        "$off/dpkg-configure.result" ||
    fail "the result of a failure: $(cat "$off/dpkg-configure.result")"
[ -f "$off/configure-pending" ] || fail "a failure cleared the flag"
cp "$off/dpkg-configure.result" "$tmp/result.failed"
rm -rf "$tmp/failing"
pass "a failing configure keeps the flag and writes why"

# inspect_result NAME RESULT [DEBUGFS-COMMANDS...]: a raw copy of the
# applied image with RESULT as the guest's result file, and the host's
# record copied beside it; inspect's dpkg_configure into $tmp/NAME.json.
inspect_result() {
    local name=$1 result=$2 img=$tmp/$1.raw
    shift 2
    "$QEMU_IMG" convert -U -O raw "$tmp/a.qcow2" "$img"
    cp "$tmp/a.qcow2.vmaugment-servicing.json" "$img.vmaugment-servicing.json"
    for c in "write $result /var/lib/vmaugment/offline/dpkg-configure.result" "$@"; do
        debugfs -w -R "$c" "$img?offset=$root_off" >/dev/null 2>"$tmp/debugfs.err" ||
            fail "$name: debugfs $c: $(cat "$tmp/debugfs.err")"
    done
    vo --format raw inspect "$img" >"$tmp/$name.inv" 2>"$tmp/$name.err" ||
        fail "$name: inspect: $(cat "$tmp/$name.err")"
    json_get "$tmp/$name.inv" dpkg_configure >"$tmp/$name.json"
}

# 9. A guest without the driver: the next inspect reads its result and
# records it like the guest's own report; a second inspect finds it
# reported already.
inspect_result plain "$tmp/result.configured"
python3 - "$tmp/plain.json" <<'PY' || fail "inspect: $(cat "$tmp/plain.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["status"] == "configured", d
assert d["message"] == "dpkg --configure -a configured 2 package(s)", d
assert [(r["bundle"], r["version"], r["outcome"]) for r in d["records"]] == \
    [("deb-update", "1", "recorded")], d["records"]
PY
vo status "$tmp/plain.raw" >"$tmp/status.json"
python3 - "$tmp/status.json" <<'PY' || fail "status: $(cat "$tmp/status.json")"
import json, sys
b, = json.load(open(sys.argv[1]))["bundles"]
assert (b["bundle"], b["state"], b["message"]) == \
    ("deb-update", "confirmed",
     "dpkg --configure -a configured 2 package(s)"), b
PY
vo --format raw inspect "$tmp/plain.raw" >"$tmp/again.inv"
[ "$(json_get "$tmp/again.inv" dpkg_configure records 0 outcome)" = \
  already-reported ] || fail "inspect again: $(cat "$tmp/again.inv")"
inspect_result failed "$tmp/result.failed"
vo status "$tmp/failed.raw" >"$tmp/status.json"
[ "$(json_get "$tmp/status.json" bundles 0 state)" = failed ] ||
    fail "a failed configure: $(cat "$tmp/status.json")"
rm -f "$tmp"/plain.raw* "$tmp"/failed.raw*
pass "without the driver, inspect records the result: confirmed, or" \
    "failed with the guest's message; once"

# 10. Hostile results: a record of a bundle never applied is refused by
# the host's record, garbage and an oversized file are shown as
# unreadable, and none of them stops the inspection.
printf '{"bundle":"forged","version":"1","manifest_sha256":"%064d"}' 0 \
    >"$tmp/forged-record.json"
sed 's/^records=.*/records=forged-1.json;deb-update-1.json;/' \
    "$tmp/result.configured" >"$tmp/result.forged"
inspect_result forged "$tmp/result.forged" \
    "write $tmp/forged-record.json /var/lib/vmaugment/offline/forged-1.json"
[ "$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print([(r["bundle"], r["outcome"], r.get("reason")) for r in d["records"]])' "$tmp/forged.json")" = \
  "[('forged', 'refused', 'bundle forged 1 was not applied to this image'), ('deb-update', 'recorded', None)]" ] ||
    fail "a forged record: $(cat "$tmp/forged.json")"
head -c 3000 /dev/urandom >"$tmp/garbage"
inspect_result garbage "$tmp/garbage"
[ "$(json_get "$tmp/garbage.json" status)" = unreadable ] ||
    fail "garbage: $(cat "$tmp/garbage.json")"
{ cat "$tmp/result.configured"; head -c 100000 /dev/zero | tr '\0' x; } >"$tmp/big"
inspect_result big "$tmp/big"
[ "$(json_get "$tmp/big.json" status)" = unreadable ] ||
    fail "an oversized result: $(cat "$tmp/big.json")"
vo status "$tmp/big.raw" >"$tmp/status.json"
[ "$(json_get "$tmp/status.json" bundles 0 state)" = applied-offline ] ||
    fail "an unreadable result changed the record: $(cat "$tmp/status.json")"
rm -f "$tmp"/forged.raw* "$tmp"/garbage.raw* "$tmp"/big.raw*
pass "hostile results: a forged record refused, garbage and a 100 kB" \
    "file unreadable, inspect still succeeds"

# 11. A package whose preinst would have to run is refused, by name.
MANIFEST_ID=deb-pre package_bundle "$tmp/pre.vmab" \
    '{"op": "unpack", "payload": "vmaug-pre_1%3a2.0~x_amd64.deb",
      "package": "vmaug-pre", "architecture": "amd64",
      "version": "2.0", "old_version": "1.0"}' || fail "bundle-build pre"
cp "$orig" "$tmp/p.qcow2"
expect_refusal "package vmaug-pre:amd64 2.0: has a preinst" \
    --trust-dir "$tmp/trust" apply "$tmp/p.qcow2" "$tmp/pre.vmab"
check_same_content "$tmp/p.qcow2" "$orig"
no_sidecars "$tmp/p.qcow2"
pass "a package with a preinst is refused by name, image unchanged"

# 11b. Staged instead: the .deb waits in the guest, and the unit's command
# has dpkg install it (its preinst runs) before configuring.
MANIFEST_ID=deb-stage package_bundle "$tmp/stage.vmab" \
    '{"op": "stage", "payload": "vmaug-pre_1%3a2.0~x_amd64.deb",
      "package": "vmaug-pre", "architecture": "amd64",
      "version": "2.0", "old_version": "1.0"}' || fail "bundle-build stage"
vo apply "$tmp/p.qcow2" "$tmp/stage.vmab" >"$tmp/stage.json" ||
    fail "apply of a staged package: $(cat "$tmp/stage.json")"
"$QEMU_IMG" convert -U -O raw "$tmp/p.qcow2" "$tmp/p.raw"
fsck_raw "$tmp/p.raw" 1 2
mkdir "$tmp/staged"
debugfs -R "rdump / $tmp/staged" "$tmp/p.raw?offset=$root_off" 2>/dev/null
rm -f "$tmp/p.raw"
cmp "$tmp/staged/var/lib/vmaugment/offline/staged/vmaug-pre_1%3a2.0~x_amd64.deb" \
    "$tmp/payload/vmaug-pre_1%3a2.0~x_amd64.deb" || fail "the .deb is not staged"
[ "$(chroot "$tmp/staged" dpkg-query -W -f '${Version} ${Status}' vmaug-pre)" = \
  "1.0 install ok installed" ] || fail "staging changed the package database"
chroot "$tmp/staged" /usr/local/sbin/vmaugment-offline-configure \
    >"$tmp/unit-stage.log" 2>&1 ||
    fail "the unit's command: $(cat "$tmp/unit-stage.log" \
          "$tmp/staged/var/lib/vmaugment/offline/dpkg-configure.log")"
[ "$(chroot "$tmp/staged" dpkg-query -W -f '${Version} ${Status}' vmaug-pre)" = \
  "2.0 install ok installed" ] || fail "vmaug-pre is not installed at 2.0"
[ "$(cat "$tmp/staged/var/lib/vmaug-pre.preinst")" = "preinst upgrade 1.0" ] ||
    fail "the preinst did not run as an upgrade's"
[ -z "$(ls "$tmp/staged/var/lib/vmaugment/offline/staged")" ] ||
    fail "the staged .deb was left"
rm -rf "$tmp/staged"
pass "a staged package waits as a .deb; at the next boot dpkg installs it," \
    "running its preinst"

# 12. The manifest's package entries keep the bundle format's strictness.
MANIFEST_ID=deb-bad package_bundle "$tmp/bad.vmab" \
    '{"op": "unpack", "payload": "vmaug-new_1.0_amd64.deb",
      "package": "vmaug-new", "architecture": "amd64", "version": "1.0",
      "old_version": null, "replaces": true}' 2>"$tmp/bad.err" &&
    fail "bundle-build signed a package entry with an unknown member"
grep -q 'packages\[0\]: unknown member "replaces"' "$tmp/bad.err" ||
    fail "bundle-build's refusal: $(cat "$tmp/bad.err")"
MANIFEST_ID=deb-lie package_bundle "$tmp/lie.vmab" \
    '{"op": "unpack", "payload": "vmaug-new_1.0_amd64.deb",
      "package": "vmaug-new", "architecture": "amd64", "version": "9.0",
      "old_version": null}' || fail "bundle-build lie"
expect_refusal "is vmaug-new 1.0 \(amd64\), not the package the manifest names" \
    --trust-dir "$tmp/trust" check "$tmp/p.qcow2" "$tmp/lie.vmab"
pass "unknown package members and a payload that is another version refused"

# Hostile guests: the database edited with debugfs on a copy of the raw
# image, which is then applied to directly.
# hostile NAME PATTERN DEBUGFS-COMMANDS...
hostile() {
    local name=$1 pattern=$2 img=$tmp/hostile.raw
    shift 2
    cp --sparse=always "$tmp/img/debian.raw" "$img"
    for c in "$@"; do
        debugfs -w -R "$c" "$img?offset=$root_off" >/dev/null 2>"$tmp/debugfs.err" ||
            fail "$name: debugfs $c: $(cat "$tmp/debugfs.err")"
    done
    cp --sparse=always "$img" "$tmp/hostile.before"
    expect_refusal "$pattern" --trust-dir "$tmp/trust" --format raw \
        apply "$img" "$tmp/debs.vmab"
    cmp -s "$img" "$tmp/hostile.before" || fail "$name: the image changed"
    no_sidecars "$img"
    rm -f "$img" "$tmp/hostile.before"
    pass "hostile guest: $name refused, image unchanged"
}

printf '/.\n/usr\n/usr/share/vmaug-demo/../../../etc/shadow\n' >"$tmp/evil.list"
hostile "a .list naming ../" \
    "vmaug-demo.list, line 3 is not an absolute clean path" \
    "rm /var/lib/dpkg/info/vmaug-demo.list" \
    "write $tmp/evil.list /var/lib/dpkg/info/vmaug-demo.list"

hostile "/var/lib/dpkg a symbolic link" \
    "/var/lib/dpkg is a symbolic link, not a directory" \
    "link /var/lib/dpkg /var/lib/dpkg-real" \
    "unlink /var/lib/dpkg" \
    "symlink /var/lib/dpkg /var/lib/dpkg-real"

truncate -s 100M "$tmp/huge.list"
hostile "a 100 MiB .list" \
    "info/vmaug-other.list is implausibly large" \
    "rm /var/lib/dpkg/info/vmaug-other.list" \
    "write $tmp/huge.list /var/lib/dpkg/info/vmaug-other.list"

printf '/usr/share/vmaug-demo/diverted.txt\n/usr/share/../../etc/shadow\n:\n' \
    >"$tmp/evil.diversions"
hostile "a diversion to ../" \
    "diversions, entry at line 1 is not two absolute clean paths" \
    "rm /var/lib/dpkg/diversions" \
    "write $tmp/evil.diversions /var/lib/dpkg/diversions"
