# shellcheck shell=bash disable=SC2154,SC2034 # shares variables with the harness
# For the .host files of the scanner's scenarios (17-image-scan,
# 18-image-quarantine): the offline tool of this build as the helper's
# scanner, a database made here (the official one cannot be had: one MD5
# signature of the EICAR test file), a signing identity in a trust store
# of its own, and the EICAR file written into the image copy offline with
# a signed bundle.  Sourced by the .host file as it is sourced.

scan_dir=$scenario_dir/host/scan
helper_extra_args+=(--scan-tool "$build/offline/vmaugment-offline"
                    --clamav-database "$scan_dir/clamav"
                    --scan-timeout-s 120)

# The EICAR test file (www.eicar.org), 68 bytes.
# shellcheck disable=SC2016 # the file's own '$' characters
scan_eicar() {
    printf '%s' 'X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'
}

scan_vo() {
    "$build/offline/vmaugment-offline" --trust-dir "$scan_dir/trust" "$@"
}

# audit_scan ACTION DECISION TEXT: the audit log has one record of scanner
# with ACTION and DECISION whose reason holds TEXT; printed.
audit_scan() {
    python3 - "$helper_dir/store/audit.log" "$@" <<'PY'
import json, sys
log, action, decision, text = sys.argv[1:]
recs = [r for r in map(json.loads, open(log))
        if r["action"] == action and r["decision"] == decision and
        r.get("module") == "scanner" and text in r.get("reason", "")]
if len(recs) != 1:
    print("%d %s %s records of scanner with %r" % (len(recs), decision,
                                                   action, text))
    sys.exit(1)
print("%s %s %s %s%s" % (recs[0]["action"], recs[0]["decision"],
                         recs[0]["module"], recs[0]["version"],
                         ": " + recs[0]["reason"] if recs[0]["reason"] else ""))
PY
}

# scan_bundle NAME FILES [KEY CERT]: bundle-build of a bundle NAME whose
# "files" are FILES (JSON array body), signed by KEY and CERT (default:
# the scenario's identity), as $scan_dir/NAME.vmab.
scan_bundle() {
    cat >"$scan_dir/$1.json" <<JSON
{
  "format": 1, "id": "$1", "version": "1",
  "description": "for the scanner's scenario",
  "applies": [ {"os": {"id": "debian", "version_id": "12"}} ],
  "files": [ $2 ]
}
JSON
    scan_vo bundle-build --key "${3:-$scan_dir/admin.key}" \
        --cert "${4:-$scan_dir/trust/admin.pem}" \
        --payload-dir "$scan_dir/payload" \
        --output "$scan_dir/$1.vmab" "$scan_dir/$1.json" \
        >"$scan_dir/bundle.log" 2>&1 ||
        { reason="bundle-build: $(cat "$scan_dir/bundle.log")"; return 1; }
}

# scan_prepare GRANTS: the database, the identity, the EICAR file in the
# image (/opt/samples/eicar.com), and the host owner's policy granting
# scanner GRANTS (a JSON array body); the helper restarts to read it.
scan_prepare() {
    mkdir -p "$scan_dir/clamav" "$scan_dir/trust" "$scan_dir/payload"
    ninja -C "$build" offline/vmaugment-offline \
        offline/vmaugment-offline-worker trust/vmaugment-keygen \
        >"$scan_dir/ninja.log" 2>&1 ||
        { reason="vmaugment-offline does not build (see $scan_dir/ninja.log)"; return 1; }
    scan_eicar >"$scan_dir/payload/eicar.com"
    echo "$(md5sum <"$scan_dir/payload/eicar.com" | cut -d' ' -f1):68:Eicar-Test-Signature" \
        >"$scan_dir/clamav/test.hdb"
    "$build/trust/vmaugment-keygen" --name "Sample admin" --days 30 \
        --key "$scan_dir/admin.key" --cert "$scan_dir/trust/admin.pem" \
        >/dev/null || { reason="vmaugment-keygen failed"; return 1; }
    scan_bundle eicar-sample '{"op": "mkdir", "path": "/opt/samples", "mode": "0755"},
             {"op": "add", "path": "/opt/samples/eicar.com",
              "payload": "eicar.com", "mode": "0644"}' || return 1
    scan_vo apply "$helper_image" "$scan_dir/eicar-sample.vmab" >"$scan_dir/apply.json" \
        2>"$scan_dir/apply.err" ||
        { reason="apply: $(cat "$scan_dir/apply.err" "$scan_dir/apply.json")"; return 1; }
    host_say "the image holds /opt/samples/eicar.com (vmaugment-offline apply)"
    # The host owner grants the scan; the helper reads its policy at start.
    echo '{ "max_package_size": 1073741824,
            "grants": { "*": ["log", "config", "state", "spool", "events",
                              "ui", "restart-image"],
                        "scanner": ['"$1"'] } }' >"$helper_dir/policy.json"
    helper_start || { reason="the helper does not restart: $helper_error"; return 1; }
}
