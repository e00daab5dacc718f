#!/usr/bin/env bash
# The whole update flow against apt itself.  The fixture is the minbase
# tree (the bookworm release's versions) with two conffiles changed by the
# administrator, made an image.  The repository, indexed with
# apt-ftparchive and signed with a throw-away OpenPGP key (deb-lib.sh):
# the tree's real security updates (apt-get download from Debian's
# archive, less those with a preinst), and the tree's own packages
# rebuilt with newer versions where the archive has no real case: one
# whose conffile (changed in the fixture) changes, one dropping a file,
# one gaining a dependency on a package the tree lacks.
#
# vmaugment-offline plan, bundle-build --plan, apply and verify update a
# copy of the image.  Its tree, taken out with debugfs rdump, is checked in
# a chroot: the next boot's configure command, then dpkg --configure -a
# succeed, dpkg --audit prints nothing, dpkg --verify reports only the
# changed conffiles, apt-get check passes.
# Then it is compared with the same upgrade done by apt-get in a chroot of
# the original image's tree (same repository, same key), both configured:
# the same files (type, content, mode, owner) and the same dpkg status,
# but for what only one side writes (listed in compare.py below).
#
# Needs root (chroots) and Debian's archive through the host's apt (the
# downloads stay in the user's cache).
source "$(dirname "$0")/lib.sh"

need dpkg-deb dpkg
need debugfs e2fsprogs
need chroot coreutils
[ "$(id -u)" -eq 0 ] ||
    fail "needs root: dpkg and apt run in chroots of the fixture tree"
plan 6
source "$here/deb-lib.sh"

tree=$(bash "$here/make-fixtures.sh" minbase) || fail "no minbase tree"
debs=$(bash "$here/make-fixtures.sh" debs) || fail "no fixture .debs"
make_identity
make_repo_keys

# --- The repository ---------------------------------------------------
security_updates "$tree" "$tmp/repo/pool/bookworm-security"
[ "$nsecurity" -ge 1 ] ||
    fail "no security update without a preinst for the fixture"
real=("$tmp"/repo/pool/bookworm-security/*.deb)
echo "# real security updates: $(printf '%s\n' "${real[@]##*/}" | tr '\n' ' ')"
# The conffile the fixture changes: a new version in the update, so that
# dpkg keeps the administrator's and puts the package's beside it.
new_conffile() {
    echo "# changed by the update" >>"$1/etc/libaudit.conf"
}
bump "$debs"/libaudit-common_*.deb bookworm-security new_conffile
bump "$debs"/hostname_*.deb bookworm-security drop_manpage
bump "$debs"/gpgv_*.deb bookworm-updates need_netbase
cp "$debs"/netbase_*.deb "$tmp/repo/pool/bookworm-updates/"
index "$tmp/repo"
sources=(--apt-source "file:$tmp/repo bookworm-security main"
         --apt-source "file:$tmp/repo bookworm-updates main")

# --- The fixture --------------------------------------------------------
# The administrator's changes: libaudit's conffile (which the update
# changes), and a conffile of a real security update (unchanged by the
# update, if one has any: dpkg then keeps it without a .dpkg-dist).
root=$tmp/root
cp -a "$tree" "$root"
rm -f "$root/.complete"
changed=(/etc/libaudit.conf)
for deb in "${real[@]}"; do
    c=$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles 2>/dev/null |
        head -n 1) || true
    [ -n "$c" ] && [ -f "$root$c" ] || continue
    changed+=("$c")
    echo "# changed conffile of a real security update: $c ($(basename "$deb"))"
    break
done
for c in "${changed[@]}"; do
    echo "# changed by the administrator" >>"$root$c"
done
bash "$here/make-fixtures.sh" image "$root" "$tmp/img" ||
    fail "cannot make the image"
rm -rf "$root"
orig=$tmp/img/debian.qcow2
root_off=$(part_offset "$tmp/img/debian.raw" 1)

# --- vmaugment-offline: plan, bundle-build, apply, verify ------------------
cp "$orig" "$tmp/a.qcow2"
vo plan "${sources[@]}" --keyring "$tmp/repo-key.gpg" \
    --download-dir "$tmp/dl-debs" --output "$tmp/plan.json" "$tmp/a.qcow2" ||
    fail "plan failed"
python3 - "$tmp/plan.json" <<'PY' >"$tmp/planned.txt" || fail "the plan"
import json, sys
g, = json.load(open(sys.argv[1]))["groups"]
assert g["refused"] == [], g["refused"]
names = [p["name"] for p in g["packages"]]
for want in ("libaudit-common", "hostname", "gpgv", "netbase"):
    assert want in names, names
for p in g["packages"]:
    print(p["name"], p["old_version"], p["new_version"])
PY
vo bundle-build --plan "$tmp/plan.json" --debs "$tmp/dl-debs" \
    --key "$tmp/admin.key" --cert "$tmp/trust/admin.pem" \
    --output "$tmp/u.vmab" >/dev/null || fail "bundle-build --plan"
vo apply "$tmp/a.qcow2" "$tmp/u.vmab" >"$tmp/apply.json" ||
    fail "apply: $(cat "$tmp/apply.json")"
vo verify "$tmp/a.qcow2" "$tmp/u.vmab" >"$tmp/verify.json" ||
    fail "verify: $(cat "$tmp/verify.json")"
"$QEMU_IMG" convert -U -O raw "$tmp/a.qcow2" "$tmp/a.raw"
fsck_raw "$tmp/a.raw" 1 2
pass "plan, bundle-build --plan, apply, verify:" \
    "$(wc -l <"$tmp/planned.txt") packages, fsck-clean"

# --- Both trees ---------------------------------------------------------
ours=$tmp/ours ref=$tmp/ref
mkdir "$ours" "$ref"
debugfs -R "rdump / $ours" "$tmp/a.raw?offset=$root_off" 2>/dev/null
debugfs -R "rdump / $ref" "$tmp/img/debian.raw?offset=$root_off" 2>/dev/null
rm -f "$tmp/a.raw"
# rdump takes no device nodes: the few the maintainer scripts and apt
# use, the same on both sides.
for t in "$ours" "$ref"; do
    rm -f "$t"/dev/{null,zero,random,urandom}
    mknod -m 666 "$t/dev/null" c 1 3
    mknod -m 666 "$t/dev/zero" c 1 5
    mknod -m 666 "$t/dev/random" c 1 8
    mknod -m 666 "$t/dev/urandom" c 1 9
done
# in_root TREE COMMAND...: COMMAND in a chroot of TREE, with a clean
# environment and no questions.
in_root() {
    local t=$1
    shift
    chroot "$t" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
}

# Ours: the next boot, the command of the unit the bundle installed
# (dpkg --configure -a --force-confdef --force-confold: keep a changed
# conffile, the package's beside it; then apt-mark auto of the new
# dependencies); then dpkg --configure -a must find nothing left to do.
cmd=$(sed -n 's/^ExecStart=//p' \
    "$ours/etc/systemd/system/vmaugment-offline-configure.service")
in_root "$ours" $cmd >"$tmp/ours-unit.log" 2>&1 ||
    fail "$cmd: $(cat "$tmp/ours-unit.log" \
          "$ours/var/lib/vmaugment/offline/dpkg-configure.log")"
in_root "$ours" dpkg --configure -a >"$tmp/ours-configure.log" 2>&1 ||
    fail "dpkg --configure -a: $(cat "$tmp/ours-configure.log")"
[ ! -s "$tmp/ours-configure.log" ] ||
    fail "dpkg --configure -a had work left: $(cat "$tmp/ours-configure.log")"
audit=$(in_root "$ours" dpkg --audit 2>&1) || fail "dpkg --audit: $audit"
[ -z "$audit" ] || fail "dpkg --audit: $audit"
in_root "$ours" apt-get check >"$tmp/check.log" 2>&1 ||
    fail "apt-get check: $(cat "$tmp/check.log")"
pass "in a chroot of the patched tree: the next boot's configure and" \
    "dpkg --configure -a succeed, dpkg --audit prints nothing," \
    "apt-get check passes"

verify=$(in_root "$ours" dpkg --verify 2>&1) || fail "dpkg --verify: $verify"
want=$(for c in "${changed[@]}"; do echo "??5?????? c $c"; done | sort)
[ "$(sort <<<"$verify")" = "$want" ] ||
    fail "dpkg --verify: $verify (wanted: $want)"
[ "$(tail -n 1 "$ours/etc/libaudit.conf")" = "# changed by the administrator" ] &&
    [ "$(tail -n 1 "$ours/etc/libaudit.conf.dpkg-dist")" = \
      "# changed by the update" ] ||
    fail "the changed conffile, or its .dpkg-dist"
pass "dpkg --verify reports only the changed conffiles;" \
    "the update's libaudit.conf is beside it as .dpkg-dist"

# The reference: apt-get upgrade in a chroot of the original tree, from
# the same repository with the same key.  --with-new-pkgs: the plan's
# upgrade (a new dependency installed, nothing removed), which is also
# what "apt upgrade" does; --force-confold: keep a changed conffile, as
# offline.  apt's other settings are its defaults, as the plan's.
mkdir -p "$ref/tmp/vo-apt"
cp -a "$tmp/repo" "$ref/tmp/vo-apt/repo"
cp "$tmp/repo-key.gpg" "$ref/tmp/vo-apt/repo-key.gpg"
for s in bookworm-security bookworm-updates; do
    echo "deb [signed-by=/tmp/vo-apt/repo-key.gpg] file:/tmp/vo-apt/repo $s main"
done >"$ref/tmp/vo-apt/sources.list"
chmod -R a+rX "$ref/tmp/vo-apt"
apt=(apt-get -q -o Dir::Etc::sourcelist=/tmp/vo-apt/sources.list
     -o Dir::Etc::sourceparts=/tmp/vo-apt/none)
in_root "$ref" "${apt[@]}" update >"$tmp/ref-apt.log" 2>&1 ||
    fail "apt-get update in the reference: $(cat "$tmp/ref-apt.log")"
in_root "$ref" "${apt[@]}" -y -o Dpkg::Options::=--force-confdef \
    -o Dpkg::Options::=--force-confold upgrade --with-new-pkgs \
    >>"$tmp/ref-apt.log" 2>&1 ||
    fail "apt-get upgrade in the reference: $(cat "$tmp/ref-apt.log")"
in_root "$ref" dpkg --configure -a >>"$tmp/ref-apt.log" 2>&1 ||
    fail "dpkg --configure -a in the reference: $(cat "$tmp/ref-apt.log")"
rm -rf "$ref/tmp/vo-apt"
grep -E '^[0-9]+ upgraded, ' "$tmp/ref-apt.log" | sed 's/^/# apt-get: /'
grep -A 5 'kept back' "$tmp/ref-apt.log" | sed 's/^/# apt-get: /' || true

# The packages first, for a readable difference.
for t in ours ref; do
    in_root "${!t}" dpkg-query -W -f '${Package}:${Architecture} ${Version} ${Status}\n' \
        >"$tmp/$t.pkgs"
done
diff -u "$tmp/ref.pkgs" "$tmp/ours.pkgs" >"$tmp/pkgs.diff" ||
    fail "the packages differ from apt-get upgrade's: $(cat "$tmp/pkgs.diff")"
pass "the same packages, versions and states as apt-get upgrade" \
    "($(wc -l <"$tmp/planned.txt") upgraded or new)"

# What only one side writes, or each side writes at its own time:
skip=(
    # dpkg's log and update-alternatives': one line per action, with the
    # time of each side's run.
    /var/log/dpkg.log /var/log/alternatives.log
    # dpkg's copy of the status before its last write: a different write
    # on each side (the files themselves are compared).
    /var/lib/dpkg/status-old
    # apt's lock of the dpkg database (an empty file apt creates).
    /var/lib/dpkg/lock-frontend
    # ldconfig's record of each library file's inode, size and times,
    # which two trees never share; /etc/ld.so.cache itself is compared.
    /var/cache/ldconfig/aux-cache
    # apt's history and terminal logs (apt-get only).
    /var/log/apt/
    # apt-get update's indexes of the repository and apt's caches
    # (pkgcache.bin, srcpkgcache.bin, the archives' lock); offline, apt
    # runs in vmaugment-offline's private directory, not in the guest.
    /var/lib/apt/lists/ /var/cache/apt/
    # What the bundle adds for the next boot's configure
    # (docs/offline.rst, "Configuring at the next boot"): not apt's.
    /var/lib/vmaugment/ /usr/local/sbin/vmaugment-offline-configure
    /etc/systemd/system/vmaugment-offline-configure.service
    /etc/systemd/system/multi-user.target.d/
)
python3 "$here/compare-trees.py" "$ours" "$ref" "${skip[@]/#/--skip=}" ||
    fail "the trees differ from apt-get upgrade's"
[ -f "$ours/etc/libaudit.conf.dpkg-dist" ] || fail "no .dpkg-dist"
pass "the same files (type, content, mode, owner) and dpkg status as" \
    "apt-get upgrade in a chroot, both configured"

# The new dependency is marked automatically installed on both sides
# (compared above as a file; here what it says).
python3 - "$ours" "$ref" "$tmp/plan.json" <<'PY' || fail "extended_states"
import json, os, sys
ours, ref, plan = sys.argv[1:]
def marks(root):
    p = os.path.join(root, "var/lib/apt/extended_states")
    out = set()
    for para in open(p).read().split("\n\n"):
        f = dict(l.split(": ", 1) for l in para.splitlines() if l)
        if f:
            out.add((f["Package"], f["Auto-Installed"]))
    return out
g, = json.load(open(plan))["groups"]
new = {(p["name"], "1") for p in g["packages"] if p["old_version"] is None}
assert ("netbase", "1") in new, new
assert marks(ref) == new, (marks(ref), new)
assert marks(ours) == new, (marks(ours), new)
PY
pass "the new dependency is marked automatically installed, as apt-get" \
    "marks it"
