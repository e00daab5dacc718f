#!/usr/bin/env bash
# A bundle's quarantine instruction (docs/offline.rst, "Quarantine"):
# apply --database moves what the host's ClamAV database finds aside,
# atomically with the rest of the bundle, on ext4 and NTFS; the moved
# file is stored inverted, so that the next scan finds the image clean;
# verify checks it without a database; a clean image is left as it was;
# a bundle with the instruction but no database, and hostile directories,
# are refused.  The database is made here (EICAR's hash and a body
# signature), as in test-scan.sh.
source "$(dirname "$0")/lib.sh"

need mke2fs e2fsprogs
need debugfs e2fsprogs
need sfdisk fdisk
need mkntfs ntfs-3g
need ntfscat ntfs-3g
plan 14

eicar='X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'
marker='vmaugment-quarantine-marker-815'

db=$tmp/db
mkdir -p "$db"
chmod a+x "$tmp"
chmod 755 "$db"
printf '%s' "$eicar" >"$tmp/eicar.com"
eicar_sha=$(sha256sum <"$tmp/eicar.com" | cut -d' ' -f1)
echo "$eicar_sha:${#eicar}:Test.Eicar" >"$db/test.hdb"
echo "Test.Marker:0:*:$(printf '%s' "$marker" | od -An -tx1 | tr -d ' \n')" \
    >"$db/test.ndb"
printf 'prefix %s suffix\n' "$marker" >"$tmp/marker.txt"
marker_sha=$(sha256sum <"$tmp/marker.txt" | cut -d' ' -f1)

# make_linux OUT INFECTED [LINK]: a GPT disk with one ext4 root; INFECTED=yes
# plants EICAR in a directory and the marker in /srv; LINK=yes makes the
# quarantine directory a link to /etc.
make_linux() {
    local out=$1 infected=$2 link=${3:-no} tree=$tmp/tree-$$
    rm -rf "$tree"
    mkdir -p "$tree/etc" "$tree/home/user/downloads" "$tree/srv" \
        "$tree/var/lib/vmaugment"
    echo 'ID=debian' >"$tree/etc/os-release"
    echo 'UUID=5c7f0e52-3a8e-4d0c-9a51-0d1f5ca0aa02 / ext4 defaults 0 1' \
        >"$tree/etc/fstab"
    echo 'welcome' >"$tree/etc/motd"
    echo 'a document' >"$tree/home/user/doc.txt"
    if [ "$infected" = yes ]; then
        cp "$tmp/eicar.com" "$tree/home/user/downloads/eicar.com"
        cp "$tmp/marker.txt" "$tree/srv/marker.txt"
    fi
    if [ "$link" = yes ]; then
        ln -s /etc "$tree/var/lib/vmaugment/quarantine"
    fi
    truncate -s 64M "$out"
    sfdisk --quiet "$out" <<PART
label: gpt
start=2048, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4
PART
    mke2fs -q -F -t ext4 -U 5c7f0e52-3a8e-4d0c-9a51-0d1f5ca0aa02 \
        -E offset=$((2048 * 512)) -d "$tree" "$out" 60M
    rm -rf "$tree"
}

make_identity
mkdir -p "$tmp/payload"
quarantine='{"op": "quarantine", "path": "/var/lib/vmaugment/quarantine"}'
MANIFEST_ID=quarantine build_bundle "$tmp/q.vmab" "" "$quarantine" ||
    fail "bundle-build refused a quarantine instruction"

# apply OUT ARGS...: vo apply ARGS, its report in OUT; sets $rc.
apply() {
    local out=$1
    shift
    rc=0
    timeout 300 "$VMAUGMENT_OFFLINE" --trust-dir "$tmp/trust" apply "$@" \
        >"$out" 2>"$out.err" || rc=$?
    [ "$rc" -ne 124 ] || fail "apply $* did not end within 300 s"
}

img=$tmp/infected.raw
make_linux "$img" yes
cp "$img" "$tmp/infected.orig"

# A dry run names what would move and changes nothing.
apply "$tmp/dry.json" --dry-run --database "$db" "$img" "$tmp/q.vmab"
[ "$rc" -eq 0 ] || fail "dry run: exit $rc: $(cat "$tmp/dry.json.err")"
python3 - "$tmp/dry.json" "$eicar_sha" "$marker_sha" <<'PY' ||
import json, sys
d = json.load(open(sys.argv[1]))
plan = sorted((p["path"], p["action"], p["old_sha256"], p["signature"])
              for p in d["plan"])
assert plan == [("/home/user/downloads/eicar.com", "quarantine", sys.argv[2],
                 "Test.Eicar.UNOFFICIAL"),
                ("/srv/marker.txt", "quarantine", sys.argv[3],
                 "Test.Marker.UNOFFICIAL")], plan
assert len(d["quarantine"]["findings"]) == 2, d["quarantine"]
PY
    fail "dry-run plan: $(cat "$tmp/dry.json")"
cmp -s "$img" "$tmp/infected.orig" || fail "a dry run changed the image"
pass "dry run: both infected files planned to move, the image unchanged"

# --path: only what the scan of those guest paths finds moves.
cp "$tmp/infected.orig" "$tmp/paths.raw"
apply "$tmp/p.json" --database "$db" --path /srv "$tmp/paths.raw" "$tmp/q.vmab"
[ "$rc" -eq 0 ] && [ "$(json_get "$tmp/p.json" status)" = applied ] ||
    fail "apply --path: exit $rc: $(cat "$tmp/p.json" "$tmp/p.json.err")"
debugfs_error "$tmp/paths.raw" 1 "File not found by ext2_lookup" \
    stat /srv/marker.txt
debugfs_part "$tmp/paths.raw" 1 stat /home/user/downloads/eicar.com >/dev/null
pass "--path limits the quarantine: /srv's marker moved, EICAR elsewhere kept"

# The apply.
apply "$tmp/a.json" --database "$db" "$img" "$tmp/q.vmab"
[ "$rc" -eq 0 ] && [ "$(json_get "$tmp/a.json" status)" = applied ] ||
    fail "apply: exit $rc: $(cat "$tmp/a.json" "$tmp/a.json.err")"
python3 - "$tmp/a.json" <<'PY' || fail "apply report: $(cat "$tmp/a.json")"
import json, sys
d = json.load(open(sys.argv[1]))
f = sorted((x["path"], x["signature"]) for x in d["quarantine"]["findings"])
assert f == [("/home/user/downloads/eicar.com", "Test.Eicar.UNOFFICIAL"),
             ("/srv/marker.txt", "Test.Marker.UNOFFICIAL")], f
assert all(v["ok"] for v in d["verify"]), d["verify"]
PY
pass "ext4: apply --database moves EICAR and the .ndb marker, verified"

# Independently: the originals gone, the copies stored inverted, root's
# and read-only, each with its record; the filesystem sound.
fsck_raw "$img" 1
debugfs_error "$img" 1 "File not found by ext2_lookup" \
    stat /home/user/downloads/eicar.com
debugfs_error "$img" 1 "File not found by ext2_lookup" stat /srv/marker.txt
q=/var/lib/vmaugment/quarantine
debugfs_part "$img" 1 dump "$q/$eicar_sha" "$tmp/stored" >/dev/null
python3 - "$tmp/stored" "$tmp/eicar.com" <<'PY' || fail "stored copy"
import sys
a = open(sys.argv[1], "rb").read()
b = open(sys.argv[2], "rb").read()
assert bytes(x ^ 0xff for x in a) == b
PY
out=$(debugfs_part "$img" 1 stat "$q/$eicar_sha")
grep -qE "User: +0 +Group: +0" <<<"$out" && grep -q "Mode:  0400" <<<"$out" ||
    fail "stored copy's owner or mode: $out"
out=$(debugfs_part "$img" 1 stat "$q")
grep -q "Mode:  0700" <<<"$out" || fail "quarantine directory mode: $out"
debugfs_part "$img" 1 cat "$q/$marker_sha.json" >"$tmp/record.json"
python3 - "$tmp/record.json" "$marker_sha" <<'PY' || fail "record: $(cat "$tmp/record.json")"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["sha256"] == sys.argv[2] and r["stored"] == "xor-ff", r
assert r["files"] == [{"path": "/srv/marker.txt",
                       "signature": "Test.Marker.UNOFFICIAL"}], r
PY
[ "$(debugfs_part "$img" 1 cat /home/user/doc.txt)" = "a document" ] ||
    fail "a clean file was touched"
pass "originals removed; copies stored inverted, 0400 root, with records"

# The next scan (the one an image start runs) finds the image clean.
rc=0
timeout 300 "$VMAUGMENT_OFFLINE" scan --database "$db" "$img" \
    >"$tmp/s.json" 2>&1 || rc=$?
[ "$rc" -eq 0 ] && [ "$(json_get "$tmp/s.json" result)" = clean ] ||
    fail "scan after quarantine: exit $rc: $(cat "$tmp/s.json")"
pass "the image scans clean afterwards, the stored copies included"

# verify needs no database: it reads the records.
vo verify "$img" "$tmp/q.vmab" >"$tmp/v.json" ||
    fail "verify after apply: $(cat "$tmp/v.json")"
[ "$(json_get "$tmp/v.json" verified)" = True ] || fail "verify: not verified"
debugfs -w -R "rm $q/$eicar_sha" "$img?offset=$((2048 * 512))" \
    >/dev/null 2>&1 || fail "cannot remove the stored copy"
debugfs -w -R "write $tmp/eicar.com /home/user/downloads/eicar.com" \
    "$img?offset=$((2048 * 512))" >/dev/null 2>&1 || fail "cannot plant again"
rc=0; vo verify "$img" "$tmp/q.vmab" >"$tmp/v2.json" || rc=$?
[ "$rc" -ne 0 ] && [ "$(json_get "$tmp/v2.json" verified)" = False ] ||
    fail "verify passed with a stored copy lost: $(cat "$tmp/v2.json")"
pass "verify (no database) passes after apply, fails when a copy is lost"

# Applied again: the file planted again is moved, the record keeps both.
apply "$tmp/a2.json" --database "$db" "$img" "$tmp/q.vmab"
[ "$rc" -eq 0 ] && [ "$(json_get "$tmp/a2.json" status)" = applied ] ||
    fail "second apply: $(cat "$tmp/a2.json" "$tmp/a2.json.err")"
debugfs_part "$img" 1 cat "$q/$eicar_sha.json" >"$tmp/record2.json"
python3 - "$tmp/record2.json" <<'PY' || fail "record: $(cat "$tmp/record2.json")"
import json, sys
r = json.load(open(sys.argv[1]))
assert [f["path"] for f in r["files"]] == ["/home/user/downloads/eicar.com"] * 2, r
PY
cp "$img" "$tmp/before3"
apply "$tmp/a3.json" --database "$db" "$img" "$tmp/q.vmab"
[ "$rc" -eq 0 ] && [ "$(json_get "$tmp/a3.json" status)" = already-applied ] ||
    fail "third apply: $(cat "$tmp/a3.json" "$tmp/a3.json.err")"
cmp -s "$img" "$tmp/before3" || fail "an apply with nothing found wrote"
pass "applied again: new finds moved and recorded, then already-applied"

# A clean image is left exactly as it was.
make_linux "$tmp/clean.raw" no
cp "$tmp/clean.raw" "$tmp/clean.orig"
apply "$tmp/c.json" --database "$db" "$tmp/clean.raw" "$tmp/q.vmab"
[ "$rc" -eq 0 ] && [ "$(json_get "$tmp/c.json" status)" = already-applied ] ||
    fail "clean image: $(cat "$tmp/c.json" "$tmp/c.json.err")"
cmp -s "$tmp/clean.raw" "$tmp/clean.orig" || fail "a clean image was written"
no_sidecars "$tmp/clean.raw"
pass "a clean image: already-applied, not a byte changed"

# No database: refused, whether applied, checked or dry-run.
cp "$tmp/infected.orig" "$tmp/nodb.raw"
expect_refusal 'quarantine instruction: apply it with --database' \
    --trust-dir "$tmp/trust" apply "$tmp/nodb.raw" "$tmp/q.vmab"
expect_refusal 'quarantine instruction: apply it with --database' \
    --trust-dir "$tmp/trust" apply --dry-run "$tmp/nodb.raw" "$tmp/q.vmab"
cmp -s "$tmp/nodb.raw" "$tmp/infected.orig" || fail "refused, yet written"
no_sidecars "$tmp/nodb.raw"
pass "a quarantine bundle without --database is refused, the image untouched"

# Hostile directories: outside the guest's paths, the root, a second
# instruction (refused by the signed manifest's checks), and a directory
# the guest made a link.
for bad in '"/var/lib/../../etc"' '"/"' '"var/q"'; do
    build_unchecked_bundle "$tmp/bad.vmab" "" \
        '{"op": "quarantine", "path": '"$bad"'}' || fail "cannot sign"
    expect_refusal 'path|component|absolute' --trust-dir \
        "$tmp/trust" apply --database "$db" "$tmp/nodb.raw" "$tmp/bad.vmab"
done
build_unchecked_bundle "$tmp/bad.vmab" "" "$quarantine"',
    {"op": "quarantine", "path": "/q2"}' || fail "cannot sign"
expect_refusal 'one quarantine instruction per bundle' \
    --trust-dir "$tmp/trust" apply --database "$db" "$tmp/nodb.raw" \
    "$tmp/bad.vmab"
build_unchecked_bundle "$tmp/bad.vmab" "" \
    '{"op": "quarantine", "path": "/q", "mode": "0777"}' || fail "cannot sign"
expect_refusal 'quarantine takes no attributes' \
    --trust-dir "$tmp/trust" apply --database "$db" "$tmp/nodb.raw" \
    "$tmp/bad.vmab"
pass "hostile quarantine directories and a second instruction are refused"

make_linux "$tmp/link.raw" yes yes
cp "$tmp/link.raw" "$tmp/link.orig"
apply "$tmp/l.json" --database "$db" "$tmp/link.raw" "$tmp/q.vmab"
[ "$rc" -ne 0 ] && grep -q 'exists and is not a directory' "$tmp/l.json.err" ||
    fail "a linked quarantine directory: exit $rc: $(cat "$tmp/l.json.err")"
cmp -s "$tmp/link.raw" "$tmp/link.orig" || fail "refused, yet written"
pass "a quarantine directory the guest made a link is refused, image untouched"

# --qemu-released: a QEMU that released the image (the helper's
# IMAGE_ACCESS) keeps only the consistent-read lock (offset 100) of its
# inactive nodes; that one lock alone is no obstacle, any other is.
# hold_lock BYTE: a process holding an OFD read lock on BYTE of the image.
hold_lock() {
    python3 - "$1" "$2" <<'PY' &
import fcntl, os, struct, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.fcntl(fd, 37, struct.pack("hhqqi", fcntl.F_RDLCK, 0, int(sys.argv[2]),
                                1, 0))  # F_OFD_SETLK
open(sys.argv[1] + ".held", "w").close()
time.sleep(300)
PY
    bg_pids+=($!)
    for _ in $(seq 50); do
        [ -e "$1.held" ] && return 0
        sleep 0.1
    done
    fail "the lock holder did not start"
}
cp "$tmp/infected.orig" "$tmp/held.raw"
hold_lock "$tmp/held.raw" 100
expect_refusal 'in use by a running QEMU' --trust-dir "$tmp/trust" apply \
    --database "$db" "$tmp/held.raw" "$tmp/q.vmab"
apply "$tmp/h.json" --qemu-released --database "$db" "$tmp/held.raw" \
    "$tmp/q.vmab"
[ "$rc" -eq 0 ] && [ "$(json_get "$tmp/h.json" status)" = applied ] ||
    fail "--qemu-released beside a consistent-read lock: exit $rc:" \
        "$(cat "$tmp/h.json" "$tmp/h.json.err")"
cp "$tmp/infected.orig" "$tmp/held2.raw"
hold_lock "$tmp/held2.raw" 101
expect_refusal 'in use by a running QEMU' --trust-dir "$tmp/trust" apply \
    --qemu-released --database "$db" "$tmp/held2.raw" "$tmp/q.vmab"
pass "--qemu-released: a lone consistent-read lock is no obstacle, a write lock is"

# The other routes carry out no quarantine.
expect_refusal 'quarantine instruction, which --host-kernel does not' \
    --trust-dir "$tmp/trust" apply --host-kernel --database "$db" \
    "$tmp/nodb.raw" "$tmp/q.vmab"
pass "--host-kernel refuses a quarantine bundle"

# NTFS: C:\ and its Windows path.
win=$(fixtures_windows)
cp "$win/windows.raw" "$tmp/windows.raw"
mkdir -p "$tmp/ctree/Scan/Deep"
cp "$tmp/eicar.com" "$tmp/ctree/Scan/Deep/eicar.com"
partition_file "$win/windows.raw" 1 "$tmp/ntfs.part"
"$VMAUGMENT_NTFS_POPULATE" "$tmp/ntfs.part" "$tmp/ctree" ||
    fail "cannot populate NTFS"
dd if="$tmp/ntfs.part" of="$tmp/windows.raw" bs=1M seek=1 conv=sparse,notrunc \
    status=none
MANIFEST_ID=quarantine-win build_bundle "$tmp/qw.vmab" "" \
    '{"op": "quarantine", "path": "C:\\ProgramData\\vmaugment\\Quarantine"}' ||
    fail "bundle-build refused a Windows quarantine directory"
apply "$tmp/w.json" --database "$db" "$tmp/windows.raw" "$tmp/qw.vmab"
[ "$rc" -eq 0 ] && [ "$(json_get "$tmp/w.json" status)" = applied ] ||
    fail "NTFS apply: exit $rc: $(cat "$tmp/w.json" "$tmp/w.json.err")"
partition_file "$tmp/windows.raw" 1 "$tmp/ntfs.after"
ntfs_absent "$tmp/ntfs.after" /Scan/Deep/eicar.com
ntfscat "$tmp/ntfs.after" "/ProgramData/vmaugment/Quarantine/$eicar_sha" \
    >"$tmp/wstored" 2>/dev/null || fail "NTFS: no stored copy"
python3 - "$tmp/wstored" "$tmp/eicar.com" <<'PY' || fail "NTFS stored copy"
import sys
a = open(sys.argv[1], "rb").read()
assert bytes(x ^ 0xff for x in a) == open(sys.argv[2], "rb").read()
PY
rc=0
timeout 300 "$VMAUGMENT_OFFLINE" scan --database "$db" "$tmp/windows.raw" \
    >"$tmp/ws.json" 2>&1 || rc=$?
[ "$rc" -eq 0 ] || fail "NTFS scan after quarantine: exit $rc: $(cat "$tmp/ws.json")"
pass "NTFS: EICAR moved into C:\\ProgramData\\vmaugment\\Quarantine, scans clean"
