#!/usr/bin/env bash
# systemd-analyze verify of our units, in a scratch root holding a copy of
# the host's unit directory (for the targets ours name) and the helper at
# its installed path, since verify checks that ExecStart= is executable.
# Any line systemd prints (an unknown key, a bad dependency, a manual
# page of Documentation= that man cannot find) fails.  The pages are the
# built ones of $VMAUG_MAN_DIR, as they will be installed.
#   test-units.sh HELPER BINDIR UNIT...
set -euo pipefail
helper=$1 bindir=$2
shift 2
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/lib/systemd" "$root/etc/systemd/system" "$root$bindir"
cp -r /lib/systemd/system "$root/usr/lib/systemd/"
cp "$helper" "$root$bindir/vmaugment-helper"
bash "$(dirname "$0")/../../tests/man/man-tree.sh" "${VMAUG_MAN_DIR:?}" \
    "$root/man"
export MANPATH=$root/man
names=()
for u in "$@"; do
    cp "$u" "$root/etc/systemd/system/"
    names+=("$(basename "$u")")
done
rc=0
out=$(systemd-analyze verify --root="$root" "${names[@]}" 2>&1) || rc=$?
if [ "$rc" -ne 0 ] || [ -n "$out" ]; then
    echo "systemd-analyze verify exited $rc:"
    echo "$out"
    exit 1
fi
echo "verified: ${names[*]}"
