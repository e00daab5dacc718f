#!/usr/bin/env bash
# Windows: NTFS through libntfs-3g and the registry through hivex.  The
# fixture's hives grow from hivex's upstream test hive.  Checked
# independently with ntfsfix -n, ntfscat and hivexget.
source "$(dirname "$0")/lib.sh"

plan 7
fix=$(fixtures_windows)
make_identity

formats="qcow2 vmdk vhdx raw"
for fmt in $formats; do
    out=$tmp/inspect-$fmt.json
    vo inspect "$fix/windows.$fmt" >"$out"
    [ "$(json_get "$out" os family)" = windows ] || fail "$fmt: family"
    [ "$(json_get "$out" os product_name)" = "Windows 10 Pro" ] || fail "$fmt: product"
    [ "$(json_get "$out" os current_build)" = 19045 ] || fail "$fmt: build"
    [ "$(json_get "$out" mounts 0 mountpoint)" = "C:" ] || fail "$fmt: C:"
    [ "$(json_get "$out" packages 0 name)" = 7-Zip ] || fail "$fmt: uninstall"
    [ "$(json_get "$out" packages 1 name)" = KB5034441 ] || fail "$fmt: KB"
    [ "$(json_get "$out" mounts 1 mountpoint)" = "D:" ] || fail "$fmt: D:"
    [ "$(json_get "$out" mounts 1 partition)" = 2 ] || fail "$fmt: D: partition"
done
pass "inspect Windows (C: and D: from MountedDevices) on" $formats

# reg_json HIVE KEY: hivexregedit's export of KEY's subkeys as JSON,
# {subkey: {value: string or number}}.
reg_json() {
    hivexregedit --export "$1" "$2" | python3 -c '
import json, re, sys
out, cur = {}, None
for line in sys.stdin.read().splitlines():
    m = re.match(r"^\[(.*)\]$", line)
    if m:
        parts = m.group(1).split("\\")
        cur = out.setdefault(parts[-1], {}) if len(parts) == len(sys.argv[1].split("\\")) + 2 else None
        continue
    m = re.match(r"^\"(.*)\"=(hex\((1|2)\)|dword):(.*)$", line)
    if cur is None or not m:
        continue
    if m.group(2) == "dword":
        cur[m.group(1)] = int(m.group(4), 16)
    else:
        cur[m.group(1)] = bytes.fromhex(m.group(4).replace(",", "")).decode("utf-16-le").rstrip("\0")
print(json.dumps(out))' "$2"
}

# The new inventory fields against hivexget/hivexregedit on the hives
# and file(1) on cmd.exe, extracted with ntfscat.
out=$tmp/inspect-raw.json
dd if="$fix/windows.raw" of="$tmp/c.part" bs=1M skip=1 count=128 status=none
ntfscat "$tmp/c.part" Windows/System32/config/SOFTWARE >"$tmp/SOFTWARE"
ntfscat "$tmp/c.part" Windows/System32/config/SYSTEM >"$tmp/SYSTEM"
ntfscat "$tmp/c.part" Windows/System32/cmd.exe >"$tmp/cmd.exe"
rm -f "$tmp/c.part"
cv='Microsoft\Windows NT\CurrentVersion'
build=$(hivexget "$tmp/SOFTWARE" "$cv" CurrentBuild)
ubr=$(hivexget "$tmp/SOFTWARE" "$cv" UBR)
[ "$(json_get "$out" os ubr)" = "$ubr" ] || fail "UBR"
[ "$(json_get "$out" os patch_level)" = "$build.$ubr" ] || fail "patch level"
[ "$(json_get "$out" os minor_version)" = "$(hivexget "$tmp/SOFTWARE" "$cv" CurrentMinorVersionNumber)" ] ||
    fail "minor version"
[ "$(json_get "$out" os product_variant)" = "$(hivexget "$tmp/SOFTWARE" "$cv" InstallationType)" ] ||
    fail "product variant"
[ "$(json_get "$out" os hostname)" = \
  "$(hivexget "$tmp/SYSTEM" 'ControlSet001\Services\Tcpip\Parameters' Hostname)" ] ||
    fail "hostname"
file -b "$tmp/cmd.exe" | grep -q 'x86-64' || fail "file(1) on cmd.exe"
[ "$(json_get "$out" os arch)" = x86_64 ] || fail "arch"
reg_json "$tmp/SOFTWARE" 'Microsoft\Windows\CurrentVersion\Uninstall' >"$tmp/uninstall.json"
reg_json "$tmp/SOFTWARE" 'Microsoft\Windows\CurrentVersion\Component Based Servicing\Packages' \
    >"$tmp/cbs.json"
python3 - "$out" "$tmp/uninstall.json" "$tmp/cbs.json" <<'PY' || fail "programs or updates differ from hivexregedit"
import json, re, sys
inv = json.load(open(sys.argv[1]))
uninstall = json.load(open(sys.argv[2]))
cbs = json.load(open(sys.argv[3]))
want = sorted([dict([("name", k), ("version", v.get("DisplayVersion", ""))] +
                    [(m, v[r]) for m, r in (("display_name", "DisplayName"),
                                            ("publisher", "Publisher"),
                                            ("install_date", "InstallDate"))
                     if r in v])
               for k, v in uninstall.items()], key=lambda a: a["name"])
got = sorted(inv["packages"], key=lambda a: a["name"])
assert got == want, (got, want)
assert any(a.get("display_name") == "Contoso Agent" for a in got)
states = {0: "absent", 5: "uninstall-pending", 16: "resolving", 32: "resolved",
          48: "staging", 64: "staged", 80: "superseded", 96: "install-pending",
          101: "partially-installed", 112: "installed", 128: "permanent"}
want = sorted([{"package": k, "state": v["CurrentState"],
                "state_name": states.get(v["CurrentState"], "unknown")} |
               ({"kb": m.group(0)} if (m := re.search(r"(?<=_for_)KB[0-9]+", k)) else {})
               for k, v in cbs.items()
               if k.startswith("Package_") and "_for_" in k],
              key=lambda u: u["package"])
got = sorted(inv["updates"], key=lambda u: u["package"])
assert got == want, (got, want)
assert {u["state_name"] for u in got} >= {"installed", "superseded", "staged"}
assert len(cbs) > len(got)   # the component package is left out
PY
pass "inspect Windows: programs, UBR, updates, host name and arch agree with hivexregedit and file(1)"

mkdir -p "$tmp/payload"
printf '127.0.0.1 localhost\r\n10.0.0.1 update.example\r\n' >"$tmp/payload/hosts"
head -c 300000 /dev/urandom >"$tmp/payload/patch.dll"
printf 'v2\r\n' >"$tmp/payload/readme.txt"
hosts_sha=$(printf '127.0.0.1 localhost\r\n' | sha256sum | cut -d' ' -f1)
win_rules='
  {"os": {"family": "windows", "current_build": "19045"}},
  {"registry": {"hive": "SOFTWARE", "key": "Microsoft\\Windows NT\\CurrentVersion", "name": "EditionID", "equals": "Professional"}},
  {"package": "7-Zip", "version": ">= 23.00"},
  {"package": "Contoso Agent", "version": ">= 4.2"}'
win_files='
  {"op": "replace", "path": "C:\\Windows\\System32\\drivers\\etc\\hosts", "payload": "hosts", "old_sha256": "'$hosts_sha'"},
  {"op": "add", "path": "C:\\Program Files\\Demo\\patch.dll", "payload": "patch.dll"},
  {"op": "mkdir", "path": "C:\\ProgramData"},
  {"op": "add", "path": "C:\\ProgramData\\readme.txt", "payload": "readme.txt"},
  {"op": "delete", "path": "C:\\Users\\Public\\old.log"}'
win_registry='
  {"op": "set", "hive": "SOFTWARE", "key": "Vendor\\Demo", "name": "Version", "type": "sz", "value": "2.0"},
  {"op": "set", "hive": "SOFTWARE", "key": "Vendor\\Demo", "name": "Patched", "type": "dword", "value": 1},
  {"op": "delete-value", "hive": "SOFTWARE", "key": "Microsoft\\Windows\\CurrentVersion\\Uninstall\\7-Zip", "name": "Publisher"},
  {"op": "set", "hive": "SYSTEM", "key": "ControlSet001\\Control\\ComputerName\\ComputerName", "name": "ComputerName", "type": "sz", "value": "PATCHED-PC"}'
cat >"$tmp/win.json" <<JSON
{"format": 1, "id": "win-fix", "version": "1",
 "applies": [ $win_rules ], "files": [ $win_files ], "registry": [ $win_registry ]}
JSON
"$VMAUGMENT_OFFLINE" bundle-build --key "$tmp/admin.key" --cert "$tmp/trust/admin.pem" \
    --payload-dir "$tmp/payload" --output "$tmp/win.vmab" "$tmp/win.json"

# ntfs_check IMAGE: the NTFS partition extracted and checked with ntfs-3g's
# own tools and hivexget.
ntfs_check() {
    local img=$1 raw=$tmp/w.raw part=$tmp/w.part
    "$QEMU_IMG" convert -U -O raw "$img" "$raw"
    dd if="$raw" of="$part" bs=1M skip=1 count=128 status=none
    rm -f "$raw"
    ntfsfix -n "$part" >"$tmp/ntfsfix.log" 2>&1 ||
        { cat "$tmp/ntfsfix.log"; fail "$img: ntfsfix -n"; }
    grep -q "processed successfully" "$tmp/ntfsfix.log" || fail "$img: ntfsfix"
    ntfscat "$part" Windows/System32/drivers/etc/hosts | cmp -s - "$tmp/payload/hosts" ||
        fail "$img: hosts"
    ntfscat "$part" "Program Files/Demo/patch.dll" | cmp -s - "$tmp/payload/patch.dll" ||
        fail "$img: patch.dll"
    ntfscat "$part" ProgramData/readme.txt | cmp -s - "$tmp/payload/readme.txt" ||
        fail "$img: readme.txt"
    # Absent, as ntfscat says it: not merely "ntfscat failed".
    ntfs_absent "$part" Users/Public/old.log
    ntfscat "$part" Windows/System32/config/SOFTWARE >"$tmp/SOFTWARE"
    ntfscat "$part" Windows/System32/config/SYSTEM >"$tmp/SYSTEM"
    [ "$(hivexget "$tmp/SOFTWARE" 'Vendor\Demo' Version)" = 2.0 ] || fail "$img: Version"
    [ "$(hivexget "$tmp/SOFTWARE" 'Vendor\Demo' Patched)" = 1 ] || fail "$img: Patched"
    hive_absent "$tmp/SOFTWARE" 'Microsoft\Windows\CurrentVersion\Uninstall\7-Zip' Publisher
    [ "$(hivexget "$tmp/SOFTWARE" 'Microsoft\Windows\CurrentVersion\Uninstall\7-Zip' DisplayVersion)" = 23.01 ] ||
        fail "$img: other values lost"
    [ "$(hivexget "$tmp/SYSTEM" 'ControlSet001\Control\ComputerName\ComputerName' ComputerName)" = PATCHED-PC ] ||
        fail "$img: SYSTEM hive"
    rm -f "$part"
}

for fmt in qcow2 vhdx vmdk; do
    img=$tmp/win.$fmt
    cp "$fix/windows.$fmt" "$img"
    vo apply --dry-run "$img" "$tmp/win.vmab" >"$tmp/dry.json"
    [ "$(json_get "$tmp/dry.json" plan 5 registry)" = set ] || fail "registry plan"
    vo apply "$img" "$tmp/win.vmab" >"$tmp/apply.json" ||
        { cat "$tmp/apply.json"; fail "apply on $fmt"; }
    vo verify "$img" "$tmp/win.vmab" >/dev/null || fail "verify $fmt"
    no_sidecars "$img"
    ntfs_check "$img"
    pass "Windows job on $fmt: files and registry patched, ntfsfix/hivexget agree"
done

# D: is the data volume MountedDevices names.
q3_sha=$(printf 'quarterly report\r\n' | sha256sum | cut -d' ' -f1)
printf 'q3 corrected\r\n' >"$tmp/payload/q3.txt"
cat >"$tmp/d.json" <<JSON
{"format": 1, "id": "d-fix", "version": "1", "files": [
  {"op": "replace", "path": "D:\\\\Reports\\\\q3.txt", "payload": "q3.txt", "old_sha256": "$q3_sha"},
  {"op": "add", "path": "D:\\\\Reports\\\\q4.txt", "payload": "readme.txt"}]}
JSON
"$VMAUGMENT_OFFLINE" bundle-build --key "$tmp/admin.key" --cert "$tmp/trust/admin.pem" \
    --payload-dir "$tmp/payload" --output "$tmp/d.vmab" "$tmp/d.json"
img=$tmp/d.qcow2
cp "$fix/windows.qcow2" "$img"
vo apply "$img" "$tmp/d.vmab" >"$tmp/d-apply.json" || { cat "$tmp/d-apply.json"; fail "D: apply"; }
"$QEMU_IMG" convert -U -O raw "$img" "$tmp/d.raw"
dd if="$tmp/d.raw" of="$tmp/d.part" bs=1M skip=129 count=32 status=none
rm -f "$tmp/d.raw"
ntfsfix -n "$tmp/d.part" >/dev/null || fail "D: ntfsfix"
ntfscat "$tmp/d.part" Reports/q3.txt | cmp -s - "$tmp/payload/q3.txt" || fail "D: q3"
ntfscat "$tmp/d.part" Reports/q4.txt | cmp -s - "$tmp/payload/readme.txt" || fail "D: q4"
rm -f "$tmp/d.part"
pass "D:\\ paths land on the volume MountedDevices names"

# Refusals: NTFS-only limits, a dirty volume, a hibernated one.
img=$tmp/r.qcow2
cp "$fix/windows.qcow2" "$img"
cat >"$tmp/chmod.json" <<'JSON'
{"format": 1, "id": "chmod", "version": "1", "files": [
  {"op": "chmod", "path": "C:\\Windows\\System32\\cmd.exe", "mode": "0755"}]}
JSON
"$VMAUGMENT_OFFLINE" bundle-build --key "$tmp/admin.key" --cert "$tmp/trust/admin.pem" \
    --output "$tmp/chmod.vmab" "$tmp/chmod.json"
cat >"$tmp/xattr.json" <<'JSON'
{"format": 1, "id": "xattr", "version": "1", "files": [
  {"op": "xattr", "path": "C:\\Windows\\System32\\cmd.exe", "name": "user.x", "value": "y"}]}
JSON
"$VMAUGMENT_OFFLINE" bundle-build --key "$tmp/admin.key" --cert "$tmp/trust/admin.pem" \
    --output "$tmp/xattr.vmab" "$tmp/xattr.json"
sum=$(sha256sum <"$img")
expect_refusal "no POSIX owners" --trust-dir "$tmp/trust" apply "$img" "$tmp/chmod.vmab"
expect_refusal "no extended attributes" --trust-dir "$tmp/trust" apply "$img" "$tmp/xattr.vmab"
# A copy: an apply locks its image, and other tests read the shared
# fixture meanwhile ("being serviced by another vmaugment-offline").
cp --reflink=auto "$(fixtures_linux)/debian.qcow2" "$tmp/linux.qcow2"
expect_refusal --status 3 'does not apply to .*: rule "os.family = windows, os.current_build = 19045" does not hold' \
    --trust-dir "$tmp/trust" \
    apply "$tmp/linux.qcow2" "$tmp/win.vmab"
rm -f "$tmp/linux.qcow2"
[ "$(sha256sum <"$img")" = "$sum" ] || fail "refusal changed the image"

for state in dirty hibernated; do
    raw=$tmp/s.raw
    cp --sparse=always "$fix/windows.raw" "$raw"
    dd if="$raw" of="$tmp/s.part" bs=1M skip=1 count=128 status=none
    if [ $state = dirty ]; then
        "$VMAUGMENT_NTFS_POPULATE" --set-dirty "$tmp/s.part"
    else
        { printf 'HIBR'; head -c 8188 /dev/zero; } >"$tmp/hiberfil.sys"
        ntfscp -q "$tmp/s.part" "$tmp/hiberfil.sys" hiberfil.sys
    fi
    dd if="$tmp/s.part" of="$raw" bs=1M seek=1 conv=notrunc status=none
    sum=$(sha256sum <"$raw")
    if [ $state = dirty ]; then
        reason="partition 1: NTFS is marked dirty"
    else
        reason="partition 1: NTFS is hibernated or uses Windows fast"
    fi
    expect_refusal "$reason" --trust-dir "$tmp/trust" apply "$raw" "$tmp/win.vmab"
    [ "$(sha256sum <"$raw")" = "$sum" ] || fail "$state: image changed"
done
pass "chmod on NTFS, Windows paths on Linux, dirty and hibernated NTFS refused"
