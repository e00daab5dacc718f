#!/usr/bin/env bash
# vmaugment-offline scan (docs/offline.rst, "Scanning an image"): ClamAV
# over the guest's own files in the confined worker.  The official
# database cannot be downloaded here: the test makes its own, a hash
# signature (.hdb) of the EICAR test file and a body signature (.ndb) of a
# marker, and plants both on ext4 and NTFS, in a directory, inside a zip
# archive; a clean image; --path; hostile archives (nested past the
# recursion limit, a zip bomb) ending in "incomplete"; the worker's
# confinement and what the parent accepts from it; --force-share beside a
# holding QEMU; and the cache, which rescans only what changed.
source "$(dirname "$0")/lib.sh"

: "${VMAUGMENT_OFFLINE_WORKER_BUGGY:?the worker with test hooks}"
need mke2fs e2fsprogs
need debugfs e2fsprogs
need sfdisk fdisk
need zip zip
need mkntfs ntfs-3g
plan 54

eicar='X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'
marker='vmaugment-scan-marker-4711'
root_uuid=5c7f0e52-3a8e-4d0c-9a51-0d1f5ca0aa01

# The database: nothing but the test's two signatures, readable by
# everyone as freshclam leaves it (the worker loads it under its own id).
db=$tmp/db
mkdir -p "$db"
chmod a+x "$tmp"
chmod 755 "$db"
printf '%s' "$eicar" >"$tmp/eicar.com"
echo "$(sha256sum <"$tmp/eicar.com" | cut -d' ' -f1):${#eicar}:Test.Eicar" \
    >"$db/test.hdb"
echo "Test.Marker:0:*:$(printf '%s' "$marker" | od -An -tx1 | tr -d ' \n')" \
    >"$db/test.ndb"

# make_linux OUT INFECTED: a GPT disk, ext4 root (with fstab) and ext4
# /srv; INFECTED=yes plants EICAR in a directory, the marker, EICAR in a
# zip archive and EICAR under a name that is not UTF-8.
make_linux() {
    local out=$1 infected=$2 tree=$tmp/tree-$$
    rm -rf "$tree"
    mkdir -p "$tree/root/etc" "$tree/root/home/user/downloads" \
        "$tree/srv/data"
    echo 'ID=debian' >"$tree/root/etc/os-release"
    cat >"$tree/root/etc/fstab" <<FSTAB
UUID=$root_uuid / ext4 defaults 0 1
LABEL=srvdata /srv ext4 defaults 0 2
FSTAB
    echo 'welcome' >"$tree/root/etc/motd"
    for i in 1 2 3 4 5; do
        echo "document $i" >"$tree/root/home/user/doc$i.txt"
    done
    echo 'index' >"$tree/srv/data/index.html"
    if [ "$infected" = yes ]; then
        cp "$tmp/eicar.com" "$tree/root/home/user/downloads/eicar.com"
        printf 'prefix %s suffix\n' "$marker" >"$tree/srv/data/marker.txt"
        (cd "$tmp" && zip -q "$tree/srv/data/archive.zip" eicar.com)
        cp "$tmp/eicar.com" "$tree/root/home/user/$(printf 'bad\xff\x1bname')"
    fi
    truncate -s 100M "$out"
    sfdisk --quiet "$out" <<PART
label: gpt
start=2048, size=122880, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4
start=124928, size=61440, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4
PART
    mke2fs -q -F -t ext4 -U "$root_uuid" -E offset=$((2048 * 512)) \
        -d "$tree/root" "$out" 60M
    mke2fs -q -F -t ext4 -L srvdata -E offset=$((124928 * 512)) \
        -d "$tree/srv" "$out" 30M
    rm -rf "$tree"
}

# scan OUT ARGS...: vmaugment-offline scan ARGS with the test's database,
# its report in OUT; sets $rc.
scan() {
    local out=$1
    shift
    rc=0
    timeout 300 "$VMAUGMENT_OFFLINE" scan --database "$db" "$@" \
        >"$out" 2>"$out.err" || rc=$?
    [ "$rc" -ne 124 ] || fail "scan $* did not end within 300 s"
}

# cache_head FILE MEMBER: a member of a cache file's head (the JSON
# before its first NUL; docs/offline.rst, "The cache"), checking that the
# keys after it are as many as it says.
cache_head() {
    python3 - "$1" "$2" <<'PY'
import json, sys
data = open(sys.argv[1], "rb").read()
nul = data.index(b"\0")
head = json.loads(data[:nul])
start = (nul + 1 + 7) // 8 * 8
assert set(data[nul:start]) == {0}, "padding"
assert len(data) - start == 56 * head["keys"], (len(data), head)
print(head[sys.argv[2]])
PY
}

# check_report JSON EXIT PYTHON-EXPR: the report parses, has exactly the
# contract's members, the exit status matches its result, and EXPR (over
# r, the report, and f, its findings as (filesystem, path, signature)
# tuples) holds.
check_report() {
    local json=$1 want=$2 expr=$3
    [ "$rc" -eq "$want" ] ||
        fail "exit $rc, wanted $want: $(cat "$json" "$json.err")"
    python3 - "$json" "$rc" "$expr" <<'PY' || fail "report $json: $(cat "$json")"
import json, sys
r = json.load(open(sys.argv[1]))
members = ["image", "engine", "database", "files-scanned", "files-cached",
           "bytes-scanned", "findings", "errors", "result"]
assert list(r) == members, list(r)
assert r["engine"].startswith("ClamAV 1."), r["engine"]
assert r["database"] == {"version": None, "signatures": 2}, r["database"]
status = {"clean": 0, "infected": 1, "incomplete": 2}[r["result"]]
assert status == int(sys.argv[2]), (r["result"], sys.argv[2])
f = sorted((x["filesystem"], x["path"], x["signature"])
           for x in r["findings"])
assert eval(sys.argv[3]), (f, r["errors"])
PY
}

img=$tmp/infected.raw
make_linux "$img" yes
clean=$tmp/clean.raw
make_linux "$clean" no
"$QEMU_IMG" convert -O qcow2 "$clean" "$tmp/clean.qcow2"

eicar_hits='[("/", "/home/user/bad\\xff\\x1bname", "Test.Eicar.UNOFFICIAL"),
             ("/", "/home/user/downloads/eicar.com", "Test.Eicar.UNOFFICIAL"),
             ("/srv", "/srv/data/archive.zip", "Test.Eicar.UNOFFICIAL"),
             ("/srv", "/srv/data/marker.txt", "Test.Marker.UNOFFICIAL")]'

# ext4.
scan "$tmp/r1.json" "$img"
check_report "$tmp/r1.json" 1 "f == $eicar_hits and r['errors'] == []"
pass "ext4: EICAR in a directory, in a zip archive and the marker found (exit 1)"
check_report "$tmp/r1.json" 1 \
    "r['files-scanned'] == 13 and r['files-cached'] == 0 and r['bytes-scanned'] > 0"
pass "ext4: every regular file of both filesystems scanned once"
grep -q 'bad\\\\xff\\\\x1bname' "$tmp/r1.json" &&
    ! grep -q $'\x1b' "$tmp/r1.json" ||
    fail "a name not UTF-8 is not escaped: $(cat -v "$tmp/r1.json")"
pass "a file named with invalid UTF-8 and ESC is found, its name escaped"
scan "$tmp/r2.json" "$tmp/clean.qcow2"
check_report "$tmp/r2.json" 0 \
    "f == [] and r['errors'] == [] and r['result'] == 'clean' and r['files-scanned'] == 9"
pass "a clean image (qcow2) is clean (exit 0)"
scan "$tmp/r3.json" "$img" --path /srv/data --path /etc
check_report "$tmp/r3.json" 1 \
    "[p for _, p, _ in f] == ['/srv/data/archive.zip', '/srv/data/marker.txt'] and r['files-scanned'] == 6"
pass "--path limits the scan to those guest directories"

# --path: a file, a mount point, something absent.
scan "$tmp/r4.json" "$img" --path /home/user/downloads/eicar.com
check_report "$tmp/r4.json" 1 \
    "f == [('/', '/home/user/downloads/eicar.com', 'Test.Eicar.UNOFFICIAL')] and r['files-scanned'] == 1"
scan "$tmp/r5.json" "$img" --path /srv
check_report "$tmp/r5.json" 1 "all(fs == '/srv' for fs, _, _ in f) and len(f) == 2"
pass "--path names a single file, or a mount point and all below it"
scan "$tmp/r6.json" "$img" --path /nonexistent
check_report "$tmp/r6.json" 2 \
    "f == [] and r['errors'][0]['path'] == '/nonexistent'"
pass "--path naming nothing makes the scan incomplete (exit 2)"

# --max-file-size.
scan "$tmp/r7.json" "$img" --max-file-size 50
check_report "$tmp/r7.json" 1 \
    "any('larger than --max-file-size' in e['reason'] and e['path'] == '/home/user/downloads/eicar.com' for e in r['errors'])"
scan "$tmp/r8.json" "$img" --max-file-size 50 --path /etc --path /home/user/downloads
check_report "$tmp/r8.json" 2 "f == [] and r['result'] == 'incomplete'"
pass "a file over --max-file-size is not scanned and says so (incomplete)"

# NTFS, drive letters and Windows paths.
win=$(fixtures_windows)
cp "$win/windows.raw" "$tmp/windows.raw"
mkdir -p "$tmp/ctree/Scan/Deep" "$tmp/dtree/Scan"
cp "$tmp/eicar.com" "$tmp/ctree/Scan/Deep/eicar.com"
(cd "$tmp" && zip -q "$tmp/ctree/Scan/archive.zip" eicar.com)
printf '%s\r\n' "$marker" >"$tmp/dtree/Scan/marker.txt"
# C: is partition 1 (at 1 MiB), D: partition 2 (at 129 MiB).
for drive in c:1:1 d:2:129; do
    IFS=: read -r letter number at <<<"$drive"
    partition_file "$win/windows.raw" "$number" "$tmp/ntfs.part"
    "$VMAUGMENT_NTFS_POPULATE" "$tmp/ntfs.part" "$tmp/${letter}tree" ||
        fail "cannot populate NTFS volume $number"
    dd if="$tmp/ntfs.part" of="$tmp/windows.raw" bs=1M seek="$at" \
        conv=sparse,notrunc status=none
done
scan "$tmp/w1.json" "$tmp/windows.raw"
check_report "$tmp/w1.json" 1 \
    "f == [('C:', 'C:\\\\Scan\\\\Deep\\\\eicar.com', 'Test.Eicar.UNOFFICIAL'), ('C:', 'C:\\\\Scan\\\\archive.zip', 'Test.Eicar.UNOFFICIAL'), ('D:', 'D:\\\\Scan\\\\marker.txt', 'Test.Marker.UNOFFICIAL')] and r['errors'] == []"
pass "NTFS: EICAR in a folder and in a zip archive on C:, the marker on D:"
# The fixture's seven files and the three planted: not the volumes' own
# files ($MFT, ...), nor a file twice by its 8.3 alias.
check_report "$tmp/w1.json" 1 "r['files-scanned'] == 10"
pass "NTFS: every file of both drives scanned once, no system file"
scan "$tmp/w2.json" "$tmp/windows.raw" --path 'C:\Scan\Deep'
check_report "$tmp/w2.json" 1 \
    "f == [('C:', 'C:\\\\Scan\\\\Deep\\\\eicar.com', 'Test.Eicar.UNOFFICIAL')] and r['files-scanned'] == 1"
pass "NTFS: --path takes a Windows path"

# hostile archives.
python3 - "$tmp/nested.zip" "$tmp/eicar.com" <<'PY'
import io, sys, zipfile
data = open(sys.argv[2], "rb").read()
name = "eicar.com"
for depth in range(30):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
    data, name = buf.getvalue(), f"layer{depth}.zip"
open(sys.argv[1], "wb").write(data)
PY
python3 - "$tmp/bomb.zip" <<'PY'
import sys, zipfile
# 512 MiB of zeros in about half a megabyte: eight members, each under
# the file size limit, together beyond the scan size limit.
chunk = bytes(1 << 20)
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
    for n in range(8):
        with z.open(f"zeros{n}.bin", "w") as f:
            for _ in range(64):
                f.write(chunk)
PY
hostile=$tmp/hostile-tree
mkdir -p "$hostile/root/etc" "$hostile/root/tmp"
echo 'ID=debian' >"$hostile/root/etc/os-release"
cp "$tmp/nested.zip" "$tmp/bomb.zip" "$hostile/root/tmp/"
truncate -s 64M "$tmp/hostile.raw"
mke2fs -q -F -t ext4 -U "$root_uuid" -d "$hostile/root" "$tmp/hostile.raw"
scan "$tmp/h1.json" "$tmp/hostile.raw" --path /tmp/nested.zip
check_report "$tmp/h1.json" 2 \
    "f == [] and len(r['errors']) == 1 and r['errors'][0]['path'] == '/tmp/nested.zip' and 'Heuristics.Limits.Exceeded.MaxRecursion' in r['errors'][0]['reason']"
pass "archives nested past the recursion limit: incomplete, the limit named"
scan "$tmp/h2.json" "$tmp/hostile.raw" --path /tmp/bomb.zip
check_report "$tmp/h2.json" 2 \
    "f == [] and len(r['errors']) == 1 and r['errors'][0]['path'] == '/tmp/bomb.zip' and 'Heuristics.Limits.Exceeded.Max' in r['errors'][0]['reason']"
pass "a zip bomb: incomplete, the limit named"
scan "$tmp/h3.json" "$tmp/hostile.raw"
check_report "$tmp/h3.json" 2 "f == [] and len(r['errors']) == 2"
pass "the whole hostile image: one clear report, exit 2"
scan "$tmp/h4.json" "$img"
check_report "$tmp/h4.json" 1 "f == $eicar_hits"
pass "the next scan after the hostile ones is unaffected"

# hostile directories: an inode whose checksum is wrong and a directory
# linked into itself (the walk reads a directory's inodes before it walks
# its entries): each named where it is, the walk going on around them.
hdirs=$tmp/hostile-dirs
mkdir -p "$hdirs/etc" "$hdirs/home/user/downloads"
echo 'ID=debian' >"$hdirs/etc/os-release"
echo 'welcome' >"$hdirs/etc/motd"
for i in 1 2 3; do
    echo "document $i" >"$hdirs/home/user/doc$i.txt"
done
cp "$tmp/eicar.com" "$hdirs/home/user/downloads/eicar.com"
truncate -s 64M "$tmp/hdirs.raw"
mke2fs -q -F -t ext4 -U "$root_uuid" -d "$hdirs" "$tmp/hdirs.raw"
debugfs -w -R "sif /etc/motd checksum 0x1234" "$tmp/hdirs.raw" >/dev/null 2>&1
debugfs -w -R "ln /home /home/user/loop" "$tmp/hdirs.raw" >/dev/null 2>&1
scan "$tmp/d1.json" "$tmp/hdirs.raw"
check_report "$tmp/d1.json" 1 \
    "f == [('/', '/home/user/downloads/eicar.com', 'Test.Eicar.UNOFFICIAL')] and r['files-scanned'] == 5 and sorted((e['path'], e['reason']) for e in r['errors']) == [('/etc/motd', 'read inode: Inode checksum does not match inode'), ('/home/user/loop', 'a directory cycle')]"
pass "a corrupt inode and a directory cycle: each named, every other file scanned"

# Many archives: the engine's per-file directories must go, or its
# scratch space (64 inodes) runs out and later archives go unread.
many=$tmp/many-tree
mkdir -p "$many/etc" "$many/zips"
echo 'ID=debian' >"$many/etc/os-release"
(cd "$tmp" && zip -q "$tmp/one.zip" eicar.com)
for i in $(seq 100); do
    cp "$tmp/one.zip" "$many/zips/a$i.zip"
done
truncate -s 64M "$tmp/many.raw"
mke2fs -q -F -t ext4 -U "$root_uuid" -d "$many" "$tmp/many.raw"
scan "$tmp/m1.json" "$tmp/many.raw"
check_report "$tmp/m1.json" 1 "len(f) == 100 and r['errors'] == []"
pass "100 archives: each one unpacked and found, the scratch space reclaimed"

# what the parent takes from a worker.
cp "$clean" "$tmp/report-scan-escape.raw"
VMAUGMENT_OFFLINE_WORKER=$VMAUGMENT_OFFLINE_WORKER_BUGGY \
    expect_refusal --status 3 "report is malformed: scan: bad \"path\"" \
    scan --database "$db" "$tmp/report-scan-escape.raw"
pass "a finding whose path holds control characters is refused (exit 3)"
cp "$clean" "$tmp/report-scan-clean-lie.raw"
VMAUGMENT_OFFLINE_WORKER=$VMAUGMENT_OFFLINE_WORKER_BUGGY \
    expect_refusal --status 3 'report is malformed: scan: bad "clean"' \
    scan --database "$db" --cache "$tmp/lie.cache" \
    "$tmp/report-scan-clean-lie.raw"
[ ! -e "$tmp/lie.cache" ] || fail "a refused report was cached"
cp "$clean" "$tmp/report-scan-cached-lie.raw"
VMAUGMENT_OFFLINE_WORKER=$VMAUGMENT_OFFLINE_WORKER_BUGGY \
    expect_refusal --status 3 \
    'report is malformed: scan: bad "cached"' \
    scan --database "$db" --cache "$tmp/lie.cache" \
    "$tmp/report-scan-cached-lie.raw"
[ ! -e "$tmp/lie.cache" ] || fail "a refused report was cached"
pass "cache keys that are no keys, or a bit for a key never given, are refused, and nothing is cached"

# the worker, caught confined (its root holds its /tmp alone: no
# database, no host path), and its ids, capabilities, filter, limits.
python3 "$here/worker-inspect.py" "$VMAUGMENT_OFFLINE" scan \
    --database "$db" "$tmp/clean.qcow2"

# refusals.
expect_refusal --status 3 'not a directory' scan --database "$tmp/none" "$img"
expect_refusal --status 3 'usage' scan "$img"
pass "a missing database or command line fails with exit 3, not 2"
chmod 700 "$db"
expect_refusal --status 3 'must be readable by everyone' \
    scan --database "$db" "$img"
chmod 755 "$db"
pass "a database the worker's id cannot read is named, at once"

# an image a QEMU holds open.
"$QEMU_IMG" convert -O qcow2 "$img" "$tmp/held.qcow2"
hold_image_lock "$tmp/held.qcow2" qcow2
expect_refusal --status 3 'in use by a running QEMU' \
    scan --database "$db" "$tmp/held.qcow2"
pass "an image a QEMU holds is refused without --force-share"
scan "$tmp/f1.json" --force-share "$tmp/held.qcow2"
check_report "$tmp/f1.json" 1 "f == $eicar_hits"
pass "--force-share reads it beside QEMU's locks"

# the cache.
cache=$tmp/scan.cache
cp "$img" "$tmp/cached.raw"
scan "$tmp/c1.json" --cache "$cache" "$tmp/cached.raw"
check_report "$tmp/c1.json" 1 \
    "f == $eicar_hits and r['files-cached'] == 0 and r['files-scanned'] == 13"
[ "$(stat -c %a "$cache")" = 600 ] || fail "the cache is not private"
[ "$(cache_head "$cache" keys)" = 9 ] ||
    fail "the cache does not hold the 9 clean files: $(head -c 300 "$cache")"
pass "a first scan with --cache scans everything and writes the cache"
scan "$tmp/c2.json" --cache "$cache" "$tmp/cached.raw"
check_report "$tmp/c2.json" 1 \
    "f == $eicar_hits and r['files-cached'] == 9 and r['files-scanned'] == 4"
[ "$(cache_head "$cache" keys)" = 9 ] ||
    fail "the cache lost the keys met: $(head -c 300 "$cache")"
pass "a second scan takes the clean files from the cache, rescans the rest"
off=$(part_offset "$tmp/cached.raw" 1)
printf 'now %s here\n' "$marker" >"$tmp/motd"
debugfs -w -R "rm /etc/motd" "$tmp/cached.raw?offset=$off" >/dev/null 2>&1
debugfs -w -R "write $tmp/motd /etc/motd" "$tmp/cached.raw?offset=$off" \
    >/dev/null 2>&1
scan "$tmp/c3.json" --cache "$cache" "$tmp/cached.raw"
check_report "$tmp/c3.json" 1 \
    "('/', '/etc/motd', 'Test.Marker.UNOFFICIAL') in f and r['files-cached'] == 8 and r['files-scanned'] == 5"
[ "$(cache_head "$cache" keys)" = 8 ] ||
    fail "the changed file's old key stayed: $(head -c 300 "$cache")"
pass "a changed file is rescanned and its finding reported"
scan "$tmp/c3b.json" --cache "$cache" --path /etc "$tmp/cached.raw"
check_report "$tmp/c3b.json" 1 \
    "r['files-cached'] == 2 and r['files-scanned'] == 1"
scan "$tmp/c3c.json" --cache "$cache" "$tmp/cached.raw"
check_report "$tmp/c3c.json" 1 \
    "r['files-cached'] == 8 and r['files-scanned'] == 5"
pass "a scan of some paths keeps the rest of the cache"
echo "Test.Other:0:*:$(printf 'other' | od -An -tx1 | tr -d ' \n')" \
    >"$db/other.ndb"
scan "$tmp/c4.json" --cache "$cache" "$tmp/cached.raw"
rm -f "$db/other.ndb"
[ "$rc" -eq 1 ] && python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
assert r["files-cached"] == 0 and r["files-scanned"] == 13, r' \
    "$tmp/c4.json" || fail "a changed database kept the cache: $(cat "$tmp/c4.json")"
pass "a changed database scans everything again"
echo '{"format": 1, "keys": "garbage"' >"$cache"
scan "$tmp/c5.json" --cache "$cache" "$tmp/cached.raw"
grep -q 'scan cache .* ignored' "$tmp/c5.json.err" ||
    fail "a corrupt cache was not reported: $(cat "$tmp/c5.json.err")"
[ "$rc" -eq 1 ] && [ "$(json_get "$tmp/c5.json" files-cached)" = 0 ] &&
    [ "$(cache_head "$cache" format)" = 2 ] ||
    fail "a corrupt cache: $(cat "$tmp/c5.json" "$cache")"
pass "a corrupt cache file is ignored with a warning, and rewritten"
# Whatever is under the cache's name is read as bytes of at most 64 MiB
# from a regular file: a head nested a million deep (json-glib recurses
# per level), an empty head, a FIFO (which would block the read for
# ever), a device without end.
python3 -c 'import sys; sys.stdout.buffer.write(b"[" * 1000000 + b"\0" * 8)' \
    >"$tmp/deep.cache"
head -c 8 /dev/zero >"$tmp/empty-head.cache"
mkfifo "$tmp/fifo.cache"
ln -s /dev/zero "$tmp/zero.cache"
for c in deep empty-head fifo zero; do
    # A GLib critical (a check that failed, not ours) ends the program.
    G_DEBUG=fatal-criticals scan "$tmp/c6-$c.json" --path /etc \
        --cache "$tmp/$c.cache" "$tmp/cached.raw"
    grep -q "scan cache .* ignored" "$tmp/c6-$c.json.err" &&
        [ "$rc" -eq 1 ] &&
        [ "$(json_get "$tmp/c6-$c.json" files-cached)" = 0 ] ||
        fail "cache file $c: exit $rc: $(cat "$tmp/c6-$c.json.err")"
done
pass "a cache file nested deep, with an empty head, a FIFO or a device is ignored"
# poll() takes no more descriptors than RLIMIT_NOFILE allows.
(ulimit -n 200; scan "$tmp/c7.json" --path /etc "$tmp/cached.raw"
 [ "$rc" -eq 1 ]) || fail "with 200 descriptors: $(cat "$tmp/c7.json.err")"
pass "a scan with RLIMIT_NOFILE below 1024 checks libclamav's descriptors"

# a spare (scan --spare): the worker started, confined and the database
# loaded before the image is known, which comes on standard input.
# spare OUT ARGS...: ARGS (options and the image) each ended by a NUL.
spare() {
    local out=$1
    shift
    rc=0
    printf '%s\0' "$@" | timeout 300 "$VMAUGMENT_OFFLINE" scan --spare \
        --database "$db" >"$out" 2>"$out.err" || rc=$?
    [ "$rc" -ne 124 ] || fail "scan --spare $* did not end within 300 s"
}
spare "$tmp/s1.json" "$img"
python3 -c '
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
assert a == b, (a, b)' "$tmp/r1.json" "$tmp/s1.json" && [ "$rc" -eq 1 ] ||
    fail "a spare's scan differs: exit $rc: $(cat "$tmp/s1.json" "$tmp/s1.json.err")"
pass "a spare's scan reports what a scan of the same image reports"
spare "$tmp/s2.json" --cache "$tmp/spare.cache" "$tmp/cached.raw"
spare "$tmp/s3.json" "$tmp/cached.raw" --path /etc --path /home \
    --cache "$tmp/spare.cache" --max-file-size 50
check_report "$tmp/s3.json" 1 \
    "f == [('/', '/etc/motd', 'Test.Marker.UNOFFICIAL')] and r['files-cached'] == 7 and len(r['errors']) == 2 and all('larger than --max-file-size' in e['reason'] for e in r['errors'])"
pass "its options come with the image: --cache, --path, --max-file-size"
# The database changes between the spare's start and its image: the scan
# is that of the database as it is then, not as the worker loaded it.
# spare_ready OUT: a spare whose input is descriptor 9 (a FIFO), its
# report in OUT, once its worker is confined (the database loaded
# before); sets $spare_pid and $wpid, the worker's.
mkfifo "$tmp/spare.in"
spare_ready() {
    timeout 300 "$VMAUGMENT_OFFLINE" scan --spare --database "$db" \
        <"$tmp/spare.in" >"$1" 2>"$1.err" &
    spare_pid=$!
    exec 9>"$tmp/spare.in"
    # timeout's child.
    for _ in $(seq 500); do
        pgrep -P "$spare_pid" >/dev/null && break
        sleep 0.02
    done
    confined_worker "$(pgrep -P "$spare_pid" | head -1)"
    wpid=$worker_pid
}
spare_ready "$tmp/s4.json"
echo "Test.Late:0:*:$(printf 'ID=debian' | od -An -tx1 | tr -d ' \n')" \
    >"$db/late.ndb"
printf '%s\0' --path /etc "$img" >&9
exec 9>&-
rc=0
wait "$spare_pid" || rc=$?
rm -f "$db/late.ndb"
[ "$rc" -eq 1 ] && python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
assert r["database"]["signatures"] == 3, r
assert [(x["path"], x["signature"]) for x in r["findings"]] == [
    ("/etc/os-release", "Test.Late.UNOFFICIAL")], r' "$tmp/s4.json" ||
    fail "the database as the spare loaded it: exit $rc: $(cat "$tmp/s4.json" "$tmp/s4.json.err")"
pass "a database changed since the spare started is the one the scan uses"
# Its worker killed while it waits (the OOM killer's pick): the scan is
# that of a worker of its own.
spare_ready "$tmp/s5.json"
kill -KILL "$wpid"
# Dead (a zombie: its parent waits on its input, not on it).
for _ in $(seq 1000); do
    grep -q '^State:[[:space:]]*Z' "/proc/$wpid/status" 2>/dev/null && break
    sleep 0.02
done
printf '%s\0' "$img" >&9
exec 9>&-
rc=0
wait "$spare_pid" || rc=$?
check_report "$tmp/s5.json" 1 "f == $eicar_hits"
# And one whose database does not load (unreadable to its id) says why,
# as a scan does.
chmod 700 "$db"
printf '%s\0' "$img" >"$tmp/img.in"
expect_refusal --status 3 'must be readable by everyone' \
    scan --spare --database "$db" <"$tmp/img.in"
chmod 755 "$db"
pass "a spare whose worker was killed scans with a worker of its own; one whose database does not load says why"
printf '' >"$tmp/empty.in"
expect_refusal --status 3 'standard input names' \
    scan --spare --database "$db" <"$tmp/empty.in"
printf '%s\0' --bogus "$img" >"$tmp/bogus.in"
expect_refusal --status 3 'Unknown option --bogus' \
    scan --spare --database "$db" <"$tmp/bogus.in"
printf '%s\0' --database=/ "$img" >"$tmp/db.in"
expect_refusal --status 3 'Unknown option --database' \
    scan --spare --database "$db" <"$tmp/db.in"
printf '%s\0' "$img" "$img" >"$tmp/two.in"
expect_refusal --status 3 'standard input names' \
    scan --spare --database "$db" <"$tmp/two.in"
expect_refusal --status 3 'usage' scan --spare --database "$db" "$img" \
    <"$tmp/two.in"
expect_refusal --status 3 'usage' scan --spare --database "$db" \
    --cache "$tmp/x.cache" <"$tmp/two.in"
head -c 300000 /dev/zero | tr '\0' a >"$tmp/long.in"
expect_refusal --status 3 'more than 256 KiB' \
    scan --spare --database "$db" <"$tmp/long.in"
pass "a spare's input that names no image, two, an unknown option, the database, or too much is refused (exit 3)"
# Its worker, caught confined while it waits for an image that is not
# known yet: the same confinement, and its request to come.
printf '%s\0' "$tmp/clean.qcow2" >"$tmp/clean.in"
python3 "$here/worker-inspect.py" --stdin "$tmp/clean.in" \
    "$VMAUGMENT_OFFLINE" scan --spare --database "$db"
