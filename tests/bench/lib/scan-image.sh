# shellcheck shell=bash
# The scan benchmarks' image and database, sourced by scan-bench.sh and
# image-start-bench.sh so that both measure the same tree.
#
# The tree: 100 directories of 200 files, 1 to 100 KiB each (about 1 GiB
# in all for 20,000 files), random bytes, one in fifty a zip archive of
# two members; /data/d000/eicar.com holds the EICAR test string.  The
# database: its SHA-256 (.hdb) and a marker pattern (.ndb), as the
# official one cannot be downloaded here.

# The EICAR test file (www.eicar.org), 68 bytes.
scan_bench_eicar='X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'

# Each function checks its own steps: its callers run it as "f || fail",
# where set -e does not act inside it.

# scan_bench_database DIR: the two signatures in the new directory DIR.
scan_bench_database() {
    mkdir -m 755 "$1" || return 1
    echo "$(printf '%s' "$scan_bench_eicar" | sha256sum | cut -d' ' -f1):${#scan_bench_eicar}:Bench.Eicar" \
        >"$1/bench.hdb" || return 1
    echo "Bench.Marker:0:*:$(printf 'vmaugment-bench' | od -An -tx1 | tr -d ' \n')" \
        >"$1/bench.ndb" || return 1
}

# scan_bench_image TREE IMAGE NFILES: NFILES files in the new directory
# TREE and, made from it without a mount, the 2 GiB ext4 image IMAGE.
scan_bench_image() {
    mkdir -p "$1/etc" || return 1
    echo 'ID=debian' >"$1/etc/os-release" || return 1
    python3 - "$1" "$3" "$scan_bench_eicar" <<'PY' || return 1
import io, os, random, sys, zipfile
tree, n, eicar = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rnd = random.Random(4711)
for i in range(n):
    d = os.path.join(tree, "data", f"d{i // 200:03d}")
    if i % 200 == 0:
        os.makedirs(d)
    size = rnd.randint(1024, 100 * 1024)
    if i % 50 == 49:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("a.bin", os.urandom(size // 2))
            z.writestr("b.txt", "text " * (size // 10))
        data, name = buf.getvalue(), f"f{i}.zip"
    else:
        data, name = os.urandom(size), f"f{i}.bin"
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)
with open(os.path.join(tree, "data", "d000", "eicar.com"), "w") as f:
    f.write(eicar)
PY
    truncate -s 2G "$2" || return 1
    mke2fs -q -F -t ext4 -U 0b3e1f5a-0c0d-4b8e-9a55-1e2f3a4b5c6d -d "$1" "$2"
}

# scan_bench_change IMAGE N: /data/d000/fN.bin replaced, offline, by
# 5,000 new random bytes (a new inode, new times): what a cached rescan
# must read again.  Fails unless the image then holds those bytes
# (debugfs says nothing in its exit status).
scan_bench_change() {
    local new back rc=0
    new=$(mktemp) && back=$(mktemp) || return 1
    head -c 5000 /dev/urandom >"$new" &&
        debugfs -w -R "rm /data/d000/f$2.bin" "$1" >/dev/null 2>&1 &&
        debugfs -w -R "write $new /data/d000/f$2.bin" "$1" >/dev/null 2>&1 &&
        debugfs -R "dump /data/d000/f$2.bin $back" "$1" >/dev/null 2>&1 &&
        cmp -s "$new" "$back" || rc=1
    rm -f "$new" "$back"
    return $rc
}
