#!/usr/bin/env bash
# plan: apt decides the updates of the fixture images from a local
# repository that the test builds and signs with a throw-away OpenPGP key
# (real .debs of the minbase tree rebuilt with newer versions: one with a
# conffile, one dropping a file, one gaining a dependency on a package
# the image lacks, one with a preinst); bundle-build --plan makes the
# bundle, whose rules hold only on the images it was planned for.
source "$(dirname "$0")/lib.sh"

plan 12
need apt-ftparchive apt-utils
need gpg gpg
need dpkg-deb dpkg
fix=$(fixtures_linux)
debs=$(bash "$here/make-fixtures.sh" debs)
make_identity

export GNUPGHOME=$tmp/gnupg
mkdir -m 700 "$GNUPGHOME"
cleanup_plan() {
    gpgconf --kill all 2>/dev/null || true
    cleanup
}
trap cleanup_plan EXIT
# apt runs as an unprivileged uid of its own: the repository and the
# keyring must be readable by it.
chmod 755 "$tmp"

gpg --batch --quiet --passphrase '' --quick-gen-key \
    "vmaugment test repository <repo@example.invalid>" ed25519 sign never
gpg --batch --export >"$tmp/repo-key.gpg"
gpg --batch --quiet --passphrase '' --quick-gen-key \
    "someone else <else@example.invalid>" ed25519 sign never
gpg --batch --export "else@example.invalid" >"$tmp/other-key.gpg"

# bump DEB SUITE [EDIT]: DEB rebuilt as VERSION+vo1 into the pool of SUITE,
# after EDIT (a function) changed its unpacked tree.
bump() {
    local deb=$1 suite=$2 edit=${3:-} work
    work=$tmp/work/$(dpkg-deb -f "$deb" Package)
    rm -rf "$work"
    mkdir -p "$tmp/work"
    dpkg-deb -R "$deb" "$work"
    sed -i -E 's/^(Version: .*)$/\1+vo1/' "$work/DEBIAN/control"
    [ -z "$edit" ] || "$edit" "$work"
    mkdir -p "$tmp/repo/pool/$suite"
    dpkg-deb -b --root-owner-group "$work" "$tmp/repo/pool/$suite/" >/dev/null
}
drop_manpage() {
    rm "$1/usr/share/man/man1/hostname.1.gz"
    sed -i '/man1\/hostname.1.gz/d' "$1/DEBIAN/md5sums"
}
need_netbase() {
    sed -i -E 's/^(Depends: .*)$/\1, netbase/' "$1/DEBIAN/control"
}
bump "$debs"/libaudit-common_*.deb bookworm-security
bump "$debs"/hostname_*.deb bookworm-security drop_manpage
bump "$debs"/gpgv_*.deb bookworm-updates need_netbase
bump "$debs"/base-passwd_*.deb bookworm-updates
cp "$debs"/netbase_*.deb "$tmp/repo/pool/bookworm-updates/"
grep -q '^/etc/libaudit.conf$' "$tmp/work/libaudit-common/DEBIAN/conffiles" ||
    fail "libaudit-common has no conffile any more"
[ -e "$tmp/work/base-passwd/DEBIAN/preinst" ] ||
    fail "base-passwd has no preinst any more"

# index REPO: Packages and a signed InRelease per suite (apt-ftparchive).
index() {
    local repo=$1 s rel
    for s in bookworm-security bookworm-updates; do
        mkdir -p "$repo/dists/$s/main/binary-amd64"
        (cd "$repo" && apt-ftparchive packages "pool/$s") \
            >"$repo/dists/$s/main/binary-amd64/Packages"
        rel=$tmp/Release.$s
        apt-ftparchive -o APT::FTPArchive::Release::Suite="$s" \
            -o APT::FTPArchive::Release::Codename="$s" \
            -o APT::FTPArchive::Release::Origin=vmaugment-test \
            -o APT::FTPArchive::Release::Components=main \
            -o APT::FTPArchive::Release::Architectures=amd64 \
            release "$repo/dists/$s" >"$rel"
        gpg --batch --yes --local-user repo@example.invalid --clearsign \
            -o "$repo/dists/$s/InRelease" "$rel"
    done
    chmod -R a+rX "$repo"
}
index "$tmp/repo"
sources=(--apt-source "file:$tmp/repo bookworm-security main"
         --apt-source "file:$tmp/repo bookworm-updates main")

# Versions of the fixture, whatever the archive had when it was built.
ver() { dpkg-deb -f "$debs"/"$1"_*.deb Version; }
V_AUDIT=$(ver libaudit-common) V_HOST=$(ver hostname) V_GPGV=$(ver gpgv)
V_PASSWD=$(ver base-passwd) V_NETBASE=$(ver netbase)
export V_AUDIT V_HOST V_GPGV V_PASSWD V_NETBASE

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
assert [f["path"] for f in m["files"] if f["op"] != "mkdir"] == [
    "/usr/local/sbin/vmaugment-offline-configure",
    "/etc/systemd/system/vmaugment-offline-configure.service",
    "/etc/systemd/system/multi-user.target.d/vmaugment-offline-configure.conf",
    "/var/lib/vmaugment/offline/configure-pending"], m["files"]
for p in g["packages"]:
    entry = m["payload"]["%s_%s.deb" % (p["name"], p["architecture"])]
    assert entry["sha256"] == p["sha256"]
PY
pass "bundle-build --plan: unpacks in apt's order, old versions pinned"

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
