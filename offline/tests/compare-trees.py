#!/usr/bin/env python3
# compare-trees.py OURS REFERENCE [--skip PATH]...: whether two root trees
# (taken out of images with debugfs rdump, or changed by dpkg or apt in a
# chroot) hold the same paths, each with the same type, content (or link
# target), mode and owner.  A PATH ending in "/" skips that directory and
# everything below it.  Each difference is printed to stderr as a TAP
# comment; the exit status is 1 if there is any.
#
# Modes are compared without the setuid and setgid bits: rdump's chown
# clears them (the tests check them on the image itself).
import argparse
import hashlib
import os
import stat
import sys


def walk(root, exact, prefixes):
    out = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            rel = "/" + os.path.relpath(p, root)
            if rel in exact or (rel + "/").startswith(prefixes):
                continue
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                what = "link " + os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    what = hashlib.sha256(f.read()).hexdigest()
            else:
                what = oct(stat.S_IFMT(st.st_mode))
            out[rel] = (what, oct(stat.S_IMODE(st.st_mode) & 0o1777),
                        st.st_uid, st.st_gid)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ours")
    ap.add_argument("reference")
    ap.add_argument("--skip", action="append", default=[])
    a = ap.parse_args()
    exact = {s for s in a.skip if not s.endswith("/")}
    prefixes = tuple(s for s in a.skip if s.endswith("/"))
    ours = walk(a.ours, exact, prefixes)
    ref = walk(a.reference, exact, prefixes)
    diff = [(k, ours.get(k), ref.get(k)) for k in sorted(set(ours) | set(ref))
            if ours.get(k) != ref.get(k)]
    for d in diff:
        print("# differs (path, ours, the reference's):", *d,
              file=sys.stderr)
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
