#!/usr/bin/env bash
# Slow: libguestfs (its own appliance kernel, guestfish --ro) checks the
# images vmaugment-offline patched, and agrees with its inspection.
source "$(dirname "$0")/lib.sh"

plan 2
need guestfish libguestfs-tools
export LIBGUESTFS_BACKEND=${LIBGUESTFS_BACKEND:-direct}
# No usable KVM on these hosts: libguestfs' appliance runs under TCG.
export LIBGUESTFS_BACKEND_SETTINGS=${LIBGUESTFS_BACKEND_SETTINGS:-force_tcg}

lfix=$(fixtures_linux)
wfix=$(fixtures_windows)
make_identity
make_payloads
build_bundle "$tmp/demo.vmab" "$demo_rules" "$demo_files"
cat >"$tmp/win.json" <<'JSON'
{"format": 1, "id": "win-reg", "version": "1", "files": [
  {"op": "mkdir", "path": "C:\\ProgramData"},
  {"op": "add", "path": "C:\\ProgramData\\vmaugment.txt", "payload": "motd"}],
 "registry": [{"op": "set", "hive": "SOFTWARE", "key": "Vendor\\Demo",
               "name": "Version", "type": "sz", "value": "2.0"}]}
JSON
cp "$lfix/debian.qcow2" "$tmp/l.qcow2"
cp "$wfix/windows.qcow2" "$tmp/w.qcow2"
"$VMAUGMENT_OFFLINE" bundle-build --key "$tmp/admin.key" --cert "$tmp/trust/admin.pem" \
    --payload-dir "$tmp/payload" --output "$tmp/win.vmab" "$tmp/win.json"
vo inspect "$tmp/l.qcow2" >"$tmp/inspect.json"
vo apply "$tmp/l.qcow2" "$tmp/demo.vmab" >/dev/null
vo apply "$tmp/w.qcow2" "$tmp/win.vmab" >/dev/null

eval "$(guestfish --listen)"
bg_pids+=("$GUESTFISH_PID")
gf() { guestfish --remote -- "$@"; }
gf add-drive "$tmp/l.qcow2" readonly:true format:qcow2
gf add-drive "$tmp/w.qcow2" readonly:true format:qcow2
gf run

# The Linux disk is /dev/sda: libguestfs' inspection against ours.
root=$(gf inspect-os | grep sda | head -1)
[ "$(gf inspect-get-distro "$root")" = debian ] || fail "guestfs distro"
[ "$(gf inspect-get-major-version "$root")" = 12 ] || fail "guestfs version"
# Listing applications needs the guest's filesystems mounted.
gf mount-ro /dev/sda1 /
gf mount-ro /dev/sda2 /srv
gf_apps=$(gf inspect-list-applications2 "$root" | grep -cE '^[[:space:]]*app2_name:' || true)
our_apps=$(json_get "$tmp/inspect.json" packages | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
[ "$gf_apps" = "$our_apps" ] || fail "libguestfs lists $gf_apps packages, we $our_apps"
[ "$(gf cat /etc/motd)" = "patched motd" ] || fail "guestfs: motd"
[ "$(gf checksum sha256 /opt/demo/big.bin)" = \
  "$(sha256sum <"$tmp/payload/big.bin" | cut -d' ' -f1)" ] || fail "guestfs: big.bin"
gf stat /usr/local/bin/tool | grep -q "^mode: 33261$" || fail "guestfs: tool mode"
gf stat /srv/www/site.conf | grep -q "^uid: 33$" || fail "guestfs: owner"
[ "$(gf exists /etc/issue.net)" = false ] || fail "guestfs: delete"
gf umount-all
pass "libguestfs agrees: Debian 12, $gf_apps packages, patched files"

gf mount-ro /dev/sdb1 /
[ "$(gf cat /ProgramData/vmaugment.txt)" = "patched motd" ] || fail "guestfs: NTFS file"
gf download /Windows/System32/config/SOFTWARE "$tmp/SOFTWARE"
[ "$(hivexget "$tmp/SOFTWARE" 'Vendor\Demo' Version)" = 2.0 ] || fail "guestfs: hive"
gf umount-all
gf exit
pass "libguestfs agrees on the patched NTFS volume and hive"
