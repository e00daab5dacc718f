#!/usr/bin/env bash
# Windows updates for dormant images: plan from a catalog of .msu files
# against the Windows fixture's build, UBR and CBS packages, a signed
# bundle from the plan, apply, then the staging and the registry arming
# checked independently with ntfscat and hivexget; a next boot simulated
# by writing the installer's result file into the image with ntfscp, as
# vmaugment-msu-install.cmd would, and read back by inspect and status.
# No Windows boots here.
source "$(dirname "$0")/lib.sh"

plan 8
fix=$(fixtures_windows)
make_identity
need ntfscp ntfs-3g
need hivexsh libhivex-bin

cv='Microsoft\Windows NT\CurrentVersion'
msu_dir='ProgramData/vmaugment/offline'

# with_part RAW CMD...: CMD runs on $tmp/p.part, RAW's NTFS partition,
# which is written back afterwards.
with_part() {
    local raw=$1
    shift
    dd if="$raw" of="$tmp/p.part" bs=1M skip=1 count=128 status=none
    "$@"
    dd if="$tmp/p.part" of="$raw" bs=1M seek=1 conv=notrunc status=none
    rm -f "$tmp/p.part"
}

# set_ubr: the SOFTWARE hive of $tmp/p.part at UBR $1 (a later patch
# level of the same build).
set_ubr() {
    ntfscat "$tmp/p.part" Windows/System32/config/SOFTWARE >"$tmp/SOFTWARE"
    printf 'Windows Registry Editor Version 5.00\n\n[HKEY_LOCAL_MACHINE\\SOFTWARE\\%s]\n"UBR"=dword:%08x\n' \
        "$cv" "$1" >"$tmp/ubr.reg"
    hivexregedit --merge --prefix 'HKEY_LOCAL_MACHINE\SOFTWARE' "$tmp/SOFTWARE" "$tmp/ubr.reg"
    ntfscp -q -f "$tmp/p.part" "$tmp/SOFTWARE" Windows/System32/config/SOFTWARE
}

# The operator's .msu files and catalog.
mkdir -p "$tmp/cat"
for kb in 9000001 9000002 9000003 9000004 9000005 9000006 5034441; do
    head -c $((20000 + kb % 1000)) /dev/urandom >"$tmp/cat/windows10.0-kb$kb-x64.msu"
done
sha() { sha256sum <"$tmp/cat/windows10.0-kb$1-x64.msu" | cut -d' ' -f1; }
entry() { # KB BUILDS UBR_MIN UBR_MAX SUPERSEDES [EXTRA]
    printf '{"kb": "KB%s", "file": "windows10.0-kb%s-x64.msu", "builds": %s, "ubr_min": %s, "ubr_max": %s, "supersedes": %s%s}' \
        "$1" "$1" "$2" "$3" "$4" "$5" "${6:-}"
}
cat >"$tmp/cat/catalog.json" <<JSON
{"format": 1, "updates": [
 $(entry 9000001 '["19045"]' 4000 4999 '["KB9000003"]' ", \"sha256\": \"$(sha 9000001)\""),
 $(entry 5034441 '["19045"]' 3000 4999 '["KB9000004"]'),
 $(entry 9000003 '["19045"]' 0 9999 '[]'),
 $(entry 9000004 '["19045"]' 0 9999 '[]'),
 $(entry 9000005 '["17763"]' 0 9999 '[]'),
 $(entry 9000006 '["19045"]' 4100 4999 '[]'),
 $(entry 9000002 '["19044", "19045"]' 0 9999 '[]' ', "arch": "x86_64"')
]}
JSON

cp --sparse=always "$fix/windows.raw" "$tmp/a.raw"
cp --sparse=always "$fix/windows.raw" "$tmp/b.raw"
cp --sparse=always "$fix/windows.raw" "$tmp/later.raw"
with_part "$tmp/later.raw" set_ubr 5000
vo plan --msu-catalog "$tmp/cat/catalog.json" --download-dir "$tmp/dl" \
    --output "$tmp/plan.json" "$tmp/a.raw" "$tmp/b.raw" "$tmp/later.raw" ||
    fail "plan"
python3 - "$tmp/plan.json" "$tmp" <<'PY' || fail "plan decisions"
import json, sys
plan = json.load(open(sys.argv[1]))
tmp = sys.argv[2]
assert plan["format"] == 1 and plan["kind"] == "msu", plan
groups = plan["groups"]
assert [g["images"] for g in groups] == [[tmp + "/a.raw", tmp + "/b.raw"],
                                         [tmp + "/later.raw"]], groups
g, later = groups
assert g["os"] == {"family": "windows", "current_build": "19045",
                   "ubr": "4055", "arch": "x86_64"}, g["os"]
assert g["installed"] == ["KB5005112", "KB5034441"], g["installed"]
assert [(u["kb"], u["decision"]) for u in g["updates"]] == \
    [("KB9000001", "applicable"), ("KB9000002", "applicable")], g["updates"]
skipped = {u["kb"]: (u["decision"], u["reason"]) for u in g["skipped"]}
assert skipped == {
    "KB5034441": ("installed", "installed (Component Based Servicing)"),
    "KB9000003": ("superseded", "superseded by KB9000001, planned"),
    "KB9000004": ("superseded", "superseded by KB5034441, installed"),
    "KB9000005": ("not-for-build", "for build 17763, the image is 19045"),
    "KB9000006": ("ubr-out-of-range", "for UBR 4100 to 4999, the image is at 4055"),
}, skipped
# The later patch level: KB9000001 stops at UBR 4999, so KB9000003 is
# no longer superseded by a planned update.
assert later["os"]["ubr"] == "5000"
assert [u["kb"] for u in later["updates"]] == ["KB9000003", "KB9000002"], later
import hashlib
for u in g["updates"]:
    data = open(tmp + "/dl/" + u["file"], "rb").read()
    assert hashlib.sha256(data).hexdigest() == u["sha256"], u
PY
pass "plan: applicable, installed, superseded (by installed and planned), not for this build, UBR out of range; identical images share a group"

"$VMAUGMENT_OFFLINE" bundle-build --plan "$tmp/plan.json" --group 0 \
    --payload-dir "$tmp/dl" --key "$tmp/admin.key" --cert "$tmp/trust/admin.pem" \
    --output "$tmp/msu.vmab" || fail "bundle-build --plan (msu)"
"$VMAUGMENT_OFFLINE" bundle-build --plan "$tmp/plan.json" --group 1 \
    --payload-dir "$tmp/dl" --key "$tmp/admin.key" --cert "$tmp/trust/admin.pem" \
    --output "$tmp/later.vmab" || fail "bundle-build --plan (msu, group 1)"
tar -xOf "$tmp/msu.vmab" manifest.json >"$tmp/manifest.json"
python3 - "$tmp/manifest.json" "$(sha 9000001)" "$(sha 9000002)" \
    "$(sha256sum <"$here/../guest/vmaugment-msu-install.cmd" | cut -d' ' -f1)" <<'PY' ||
import json, sys
m = json.load(open(sys.argv[1]))
assert m["applies"][0] == {"os": {"family": "windows", "current_build": "19045",
                                  "ubr": "4055"}}, m["applies"]
assert m["marker"] == "C:\\ProgramData\\vmaugment\\offline"
d = "C:\\ProgramData\\vmaugment\\offline\\"
adds = {f["path"]: f["payload"] for f in m["files"] if f["op"] == "add"}
assert adds[d + "staged\\001-KB9000001.msu"] == "001-KB9000001.msu", adds
assert adds[d + "staged\\002-KB9000002.msu"] == "002-KB9000002.msu", adds
assert adds[d + "vmaugment-msu-install.cmd"] == "vmaugment-msu-install.cmd"
assert m["payload"]["001-KB9000001.msu"]["sha256"] == sys.argv[2]
assert m["payload"]["002-KB9000002.msu"]["sha256"] == sys.argv[3]
assert m["payload"]["vmaugment-msu-install.cmd"]["sha256"] == sys.argv[4]
assert {(r["name"], r["type"], r["value"]) for r in m["registry"]} == {
    ("CmdLine", "sz", 'C:\\Windows\\System32\\cmd.exe /d /c '
                      '"C:\\ProgramData\\vmaugment\\offline\\vmaugment-msu-install.cmd"'),
    ("SetupType", "dword", 2)}, m["registry"]
PY
    fail "the bundle's manifest"
pass "bundle-build --plan: .msu payloads hashed, the installer, the Setup arming, rules pinning build and UBR"

# ntfs_msu_check RAW: the staging and the arming as ntfs-3g and hivex see
# them.
ntfs_msu_check() {
    local part=$tmp/c.part
    dd if="$1" of="$part" bs=1M skip=1 count=128 status=none
    ntfsfix -n "$part" >"$tmp/ntfsfix.log" 2>&1 || { cat "$tmp/ntfsfix.log"; fail "ntfsfix -n"; }
    ntfscat "$part" "$msu_dir/staged/001-KB9000001.msu" | cmp -s - "$tmp/cat/windows10.0-kb9000001-x64.msu" ||
        fail "001-KB9000001.msu"
    ntfscat "$part" "$msu_dir/staged/002-KB9000002.msu" | cmp -s - "$tmp/cat/windows10.0-kb9000002-x64.msu" ||
        fail "002-KB9000002.msu"
    ntfs_absent "$part" "$msu_dir/staged/003-KB9000003.msu"
    ntfscat "$part" "$msu_dir/vmaugment-msu-install.cmd" |
        cmp -s - "$here/../guest/vmaugment-msu-install.cmd" || fail "the installer"
    ntfscat "$part" "$msu_dir/$bundle_stem.kbs" | cmp -s - <(printf 'KB9000001\r\nKB9000002\r\n') ||
        fail "the KB list"
    [ "$(json_get <(ntfscat "$part" "$msu_dir/$bundle_stem.json") bundle)" = "$bundle_id" ] ||
        fail "the marker"
    ntfscat "$part" Windows/System32/config/SYSTEM >"$tmp/SYSTEM"
    [ "$(hivexget "$tmp/SYSTEM" Setup CmdLine)" = \
      'C:\Windows\System32\cmd.exe /d /c "C:\ProgramData\vmaugment\offline\vmaugment-msu-install.cmd"' ] ||
        fail "Setup\\CmdLine: $(hivexget "$tmp/SYSTEM" Setup CmdLine)"
    hivexregedit --export "$tmp/SYSTEM" Setup | grep -qx '"SetupType"=dword:00000002' ||
        fail "Setup\\SetupType"
    [ "$(hivexget "$tmp/SYSTEM" 'ControlSet001\Control\ComputerName\ComputerName' ComputerName)" = FIXTURE-PC ] ||
        fail "the rest of SYSTEM"
    rm -f "$part"
}

bundle_id=$(json_get "$tmp/manifest.json" id)
bundle_stem=$bundle_id-$(json_get "$tmp/manifest.json" version)
for img in a b; do
    vo apply "$tmp/$img.raw" "$tmp/msu.vmab" >"$tmp/apply.json" ||
        { cat "$tmp/apply.json"; fail "apply to $img"; }
    vo verify "$tmp/$img.raw" "$tmp/msu.vmab" >/dev/null || fail "verify $img"
    ntfs_msu_check "$tmp/$img.raw"
done
vo status "$tmp/a.raw" >"$tmp/status0.json"
[ "$(json_get "$tmp/status0.json" bundles 0 state)" = applied-offline ] || fail "status after apply"
pass "apply: .msu files staged with their hashes, the installer, SYSTEM\\Setup CmdLine and SetupType 2 (ntfscat, hivexget)"

# Replay onto an image it was not planned for: a later UBR, or Linux.
sum=$(sha256sum <"$tmp/later.raw")
expect_refusal --status 3 'rule "os.family = windows, os.current_build = 19045, os.ubr = 4055" does not hold' \
    --trust-dir "$tmp/trust" apply "$tmp/later.raw" "$tmp/msu.vmab"
# A copy: other tests may hold the shared fixture's lock.
cp "$(fixtures_linux)/debian.qcow2" "$tmp/debian.qcow2"
expect_refusal --status 3 'does not hold' --trust-dir "$tmp/trust" \
    apply "$tmp/debian.qcow2" "$tmp/msu.vmab"
rm -f "$tmp/debian.qcow2"
[ "$(sha256sum <"$tmp/later.raw")" = "$sum" ] || fail "a refusal changed the image"
# Another bundle before the next boot finds Windows armed: refused too
# (the same bundle again is merely already applied).
python3 - "$tmp/plan.json" "$tmp/plan2.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
p["groups"][0]["updates"] = p["groups"][0]["updates"][1:]
json.dump(p, open(sys.argv[2], "w"))
PY
"$VMAUGMENT_OFFLINE" bundle-build --plan "$tmp/plan2.json" --group 0 \
    --payload-dir "$tmp/dl" --key "$tmp/admin.key" --cert "$tmp/trust/admin.pem" \
    --output "$tmp/msu2.vmab" || fail "bundle-build of a second plan"
cp --sparse=always "$tmp/a.raw" "$tmp/armed.raw"
expect_refusal --status 3 'registry SYSTEM.Setup.SetupType' --trust-dir "$tmp/trust" \
    apply "$tmp/armed.raw" "$tmp/msu2.vmab"
rm -f "$tmp/armed.raw"
pass "replay refused: another UBR, Linux, an image already armed"

# boot_result RAW FILE: the next boot as the installer leaves it: the
# result file written, the arming gone.
boot_result() {
    local raw=$1 file=$2
    result_in() {
        ntfscp -q -f "$tmp/p.part" "$file" "$msu_dir/msu-install.result"
        ntfscat "$tmp/p.part" Windows/System32/config/SYSTEM >"$tmp/SYSTEM"
        printf 'cd Setup\nsetval 2\nCmdLine\nstring:\nSetupType\ndword:0x00000000\ncommit\n' |
            hivexsh -w "$tmp/SYSTEM"
        ntfscp -q -f "$tmp/p.part" "$tmp/SYSTEM" Windows/System32/config/SYSTEM
    }
    with_part "$raw" result_in
}
printf '[msu-install]\r\ntime=Fri 12/04/2026 12:41:06.12\r\nrecords=%s.json;\r\nKB9000001=0\r\nKB9000002=3010\r\n' \
    "$bundle_stem" >"$tmp/ok.result"
boot_result "$tmp/a.raw" "$tmp/ok.result"
vo inspect "$tmp/a.raw" >"$tmp/inspect.json" || fail "inspect after the boot"
python3 - "$tmp/inspect.json" "$bundle_id" <<'PY' || fail "inspect's msu_install"
import json, sys
r = json.load(open(sys.argv[1]))["msu_install"]
assert r["status"] == "reported", r
assert r["results"] == [
    {"kb": "KB9000001", "code": 0, "meaning": "installed"},
    {"kb": "KB9000002", "code": 3010, "meaning": "installed, restart required"}], r
assert r["records"] == [{"bundle": sys.argv[2], "version": r["records"][0]["version"],
                         "message": "KB9000001 0, KB9000002 3010",
                         "outcome": "confirmed"}], r
PY
vo status "$tmp/a.raw" >"$tmp/status1.json"
[ "$(json_get "$tmp/status1.json" bundles 0 state)" = confirmed ] || fail "status: confirmed"
json_get "$tmp/status1.json" bundles 0 summary | grep -q 'confirmed at boot .*: KB9000001 0, KB9000002 3010$' ||
    fail "status summary: $(json_get "$tmp/status1.json" bundles 0 summary)"
vo inspect "$tmp/a.raw" >"$tmp/inspect2.json"
[ "$(json_get "$tmp/inspect2.json" msu_install records 0 outcome)" = already-reported ] ||
    fail "a second inspect"
pass "next boot simulated: inspect reads each KB's exit code, status shows the bundle confirmed with them"

printf '[msu-install]\r\ntime=t\r\nrecords=%s.json;\r\nKB9000001=0\r\nKB9000002=-2145124329\r\n' \
    "$bundle_stem" >"$tmp/bad-kb.result"
boot_result "$tmp/b.raw" "$tmp/bad-kb.result"
vo inspect "$tmp/b.raw" >"$tmp/inspect-b.json" || fail "inspect b"
[ "$(json_get "$tmp/inspect-b.json" msu_install results 1 meaning)" = failed ] || fail "meaning"
vo status "$tmp/b.raw" >"$tmp/status-b.json"
[ "$(json_get "$tmp/status-b.json" bundles 0 state)" = failed ] || fail "status: failed"
json_get "$tmp/status-b.json" bundles 0 summary | grep -q ': KB9000001 0, KB9000002 -2145124329$' ||
    fail "failed summary"
# A guest that emptied its bundle's KB list cannot have it confirmed.
cp --sparse=always "$fix/windows.raw" "$tmp/c.raw"
vo apply "$tmp/c.raw" "$tmp/msu.vmab" >/dev/null || fail "apply c"
empty_kbs() {
    : >"$tmp/empty.kbs"
    ntfscp -q -f "$tmp/p.part" "$tmp/empty.kbs" "$msu_dir/$bundle_stem.kbs"
}
with_part "$tmp/c.raw" empty_kbs
printf '[msu-install]\r\ntime=t\r\nrecords=%s.json;\r\n' "$bundle_stem" >"$tmp/no-kb.result"
boot_result "$tmp/c.raw" "$tmp/no-kb.result"
vo inspect "$tmp/c.raw" >/dev/null || fail "inspect c"
vo status "$tmp/c.raw" >"$tmp/status-c.json"
[ "$(json_get "$tmp/status-c.json" bundles 0 state)" = failed ] ||
    fail "a bundle without its KB list: $(json_get "$tmp/status-c.json" bundles 0 summary)"
json_get "$tmp/status-c.json" bundles 0 summary | grep -q "the bundle's list of KBs is missing" ||
    fail "KB list summary"
pass "an update that fails at boot, or a bundle whose KB list is gone: recorded failed, with the reason"

# Hostile result files, on an image applied and not yet reported: each
# is refused with a reason, and the host's record is untouched.
cp --sparse=always "$fix/windows.raw" "$tmp/h.raw"
vo apply "$tmp/h.raw" "$tmp/msu.vmab" >/dev/null || fail "apply h"
record=$tmp/h.raw.vmaugment-servicing.json
rsum=$(sha256sum <"$record")
hostile() { # NAME FILE STATUS PATTERN
    boot_result "$tmp/h.raw" "$2"
    vo inspect "$tmp/h.raw" >"$tmp/h-$1.json" 2>"$tmp/h-$1.err" ||
        fail "$1: inspect failed: $(cat "$tmp/h-$1.err")"
    [ "$(json_get "$tmp/h-$1.json" msu_install status)" = "$3" ] ||
        fail "$1: $(json_get "$tmp/h-$1.json" msu_install)"
    json_get "$tmp/h-$1.json" msu_install | grep -qE -- "$4" ||
        fail "$1: no reason '$4': $(json_get "$tmp/h-$1.json" msu_install)"
    [ "$(sha256sum <"$record")" = "$rsum" ] || fail "$1: the host's record changed"
}
{ printf '[msu-install]\r\ntime=t\r\nrecords=%s.json;\r\n' "$bundle_stem"
  for i in $(seq 1 9000); do printf 'KB9000001=0\r\n'; done; } >"$tmp/huge.result"
hostile huge "$tmp/huge.result" unreadable 'too large'
printf '[msu-install]\r\ntime=\xff\xfe\r\nrecords=%s.json;\r\nKB9000001=0\r\n' "$bundle_stem" >"$tmp/utf8.result"
hostile non-utf8 "$tmp/utf8.result" unreadable 'not UTF-8'
printf '[msu-install]\r\ntime=\033[2J\r\nrecords=%s.json;\r\nKB9000001=0\r\n' "$bundle_stem" >"$tmp/ctl.result"
hostile control "$tmp/ctl.result" unreadable 'control characters'
printf '[msu-install]\r\ntime=t\r\nrecords=%s.json;\r\nKB9000001=0\r\nKB1234567=0\r\n' "$bundle_stem" >"$tmp/unknown.result"
hostile unknown-kb "$tmp/unknown.result" refused 'KB1234567 is not an update that a bundle this result answers for staged'
printf '[msu-install]\r\ntime=t\r\nrecords=%s.json;\r\nKB9000001=zero\r\n' "$bundle_stem" >"$tmp/code.result"
hostile bad-code "$tmp/code.result" unreadable 'KB=EXIT-CODE'
# A record for a bundle never applied to this image, with its KB list.
never() {
    printf '{"bundle": "never-applied", "version": "1", "manifest_sha256": "%s"}' \
        "$(printf x | sha256sum | cut -d' ' -f1)" >"$tmp/never.json"
    printf 'KB9000001\r\n' >"$tmp/never.kbs"
    ntfscp -q -f "$tmp/p.part" "$tmp/never.json" "$msu_dir/never-applied-1.json"
    ntfscp -q -f "$tmp/p.part" "$tmp/never.kbs" "$msu_dir/never-applied-1.kbs"
}
with_part "$tmp/h.raw" never
printf '[msu-install]\r\ntime=t\r\nrecords=never-applied-1.json;\r\nKB9000001=0\r\n' >"$tmp/never.result"
hostile never-applied "$tmp/never.result" reported '"outcome": "refused", "reason": "[^"]*never'
vo status "$tmp/h.raw" >"$tmp/h-status.json"
[ "$(json_get "$tmp/h-status.json" bundles 0 state)" = applied-offline ] ||
    fail "status after hostile results"
pass "hostile result files (huge, not UTF-8, control characters, unknown KB, bad code, bundle never applied) refused, nothing recorded"

# The catalog is operator input, read strictly.
bad_catalog() { # PATTERN JSON
    printf '%s' "$2" >"$tmp/cat/bad.json"
    expect_refusal "$1" plan --msu-catalog "$tmp/cat/bad.json" \
        --download-dir "$tmp/dl2" "$fix/windows.qcow2"
}
bad_catalog '"format" must be 1' '{"format": 2, "updates": []}'
bad_catalog 'unknown member "kbs"' '{"format": 1, "updates": [{"kbs": "KB1"}]}'
bad_catalog '"kb" is "KB" and 4 to 8 digits' \
    "{\"format\": 1, \"updates\": [$(entry 'x' '["19045"]' 0 1 '[]')]}"
bad_catalog '"file" is a .msu file name' \
    '{"format": 1, "updates": [{"kb": "KB1234567", "file": "../x.msu", "builds": ["1"], "ubr_min": 0, "ubr_max": 1}]}'
bad_catalog '"ubr_min" and "ubr_max"' \
    "{\"format\": 1, \"updates\": [$(entry 9000001 '["19045"]' 5 1 '[]')]}"
bad_catalog 'its "kb" appears twice' \
    "{\"format\": 1, \"updates\": [$(entry 9000001 '["19045"]' 0 1 '[]'), $(entry 9000001 '["19045"]' 0 1 '[]')]}"
bad_catalog '"supersedes" is an array of KBs' \
    "{\"format\": 1, \"updates\": [$(entry 9000001 '["19045"]' 0 1 '["x"]')]}"
bad_catalog 'is not the file the catalog names' \
    "{\"format\": 1, \"updates\": [$(entry 9000002 '["19045"]' 0 9999 '[]' ", \"sha256\": \"$(sha 9000001)\"")]}"
printf '\xff' >"$tmp/cat/bad.json"
expect_refusal 'not UTF-8 JSON' plan --msu-catalog "$tmp/cat/bad.json" \
    --download-dir "$tmp/dl2" "$fix/windows.qcow2"
pass "malformed catalogs refused with the member at fault"
