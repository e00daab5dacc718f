#!/usr/bin/env bash
# Every tool against docs/cli.rst: --version, --help with examples and the
# exit statuses, a usage error, an untrusted signer, a missing file, a
# JSON report on failure where JSON was asked for, GLib's quotes under
# LANG=C.UTF-8; and the conventions' promises: nothing is signed that a
# host would refuse, installing identical content again succeeds.
#
# The exit statuses come from the table of docs/cli.rst, which must agree
# with include/vmaugment/exit-status.h.
set -u
: "${VMAUG_SRC:?}" "${VMAUG_BUILD:?}"
B=$VMAUG_BUILD
KEYGEN=$B/trust/vmaugment-keygen
SIGN=$B/trust/vmaugment-sign
VERIFY=$B/trust/vmaugment-verify
PACK=$B/host-modules/vmaugment-pack
ADMIN=$B/host-modules/admin/vmaugment-admin
REPO=$B/repository/vmaugment-repo
OFFLINE=$B/offline/vmaugment-offline
HELPER=$B/host-modules/helper/vmaugment-helper
GUEST=$B/guest-driver/cli/vmaugment
W=$(mktemp -d)
# The store makes its audit log append-only (chattr +a).
trap 'chattr -R -a "$W" 2>/dev/null; rm -rf "$W"' EXIT
export LANG=C.UTF-8 LC_ALL=C.UTF-8
fails=0

fail() {
    echo "FAIL: $*" >&2
    fails=$((fails + 1))
}

# --- The table: status and word of each row. ---
declare -A code
while read -r status word; do
    code[$word]=$status
done < <(sed -n '/^Exit status$/,/^Options every tool has$/p' \
             "$VMAUG_SRC/docs/cli.rst" |
         sed -n 's/^\([0-9]\)  *\([a-z-]*\) .*/\1 \2/p')
for word in ok error usage not-applicable refused; do
    [ -n "${code[$word]:-}" ] || { echo "docs/cli.rst has no row '$word'"; exit 1; }
done
for pair in OK:ok FAILURE:error USAGE:usage NOT_APPLICABLE:not-applicable \
            REFUSED:refused; do
    name=${pair%%:*} word=${pair#*:}
    grep -Eq "^#define VMAUG_EXIT_$name +${code[$word]}\$" \
        "$VMAUG_SRC/include/vmaugment/exit-status.h" ||
        fail "exit-status.h disagrees with docs/cli.rst on $word"
done

# run WORD ARGS...: ARGS must exit with the status of WORD; stdout and
# stderr are kept in $W/out and $W/err.
run() {
    local want=${code[$1]} got=0
    shift
    "$@" >"$W/out" 2>"$W/err" || got=$?
    if [ "$got" != "$want" ]; then
        fail "'$*' exited $got, not $want: $(head -c 400 "$W/err")"
    fi
    if grep -q 'CRITICAL\|WARNING \*\*' "$W/err"; then
        fail "'$*' printed GLib assertions: $(head -c 400 "$W/err")"
    fi
}

# err_is TOOL: the error is one line "TOOL: what: why".
err_is() {
    grep -Eq "^$1: [^ ].*" "$W/err" || fail "message of $1: $(cat "$W/err")"
}

# json_status WORD: stdout is one JSON object whose status is WORD.
json_status() {
    python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if d.get("status") == sys.argv[2] and
         (sys.argv[2] in ("ok",) or "error" in d or
          sys.argv[2] not in ("error", "refused", "usage",
                              "not-applicable")) else 1)' \
        "$W/out" "$1" 2>/dev/null ||
        fail "JSON status is not $1: $(head -c 400 "$W/out")"
}

# --- Keys: a trusted administrator and a stranger. ---
mkdir -p "$W/trust"
"$KEYGEN" --name Admin --key "$W/admin.key" --cert "$W/admin.crt" &&
"$KEYGEN" --name Stranger --key "$W/evil.key" --cert "$W/evil.crt" ||
    { echo "keygen failed"; exit 1; }
cp "$W/admin.crt" "$W/trust/"
SO=$B/host-modules/modules/echo/vmaug-echo.so
MAN=$VMAUG_SRC/host-modules/modules/echo/manifest.json

# --- What every tool answers. ---
for tool in "$KEYGEN" "$SIGN" "$VERIFY" "$PACK" "$ADMIN" "$REPO" \
            "$OFFLINE" "$HELPER" "$GUEST"; do
    name=$(basename "$tool")
    run ok "$tool" --version
    grep -Eq "^$name [0-9]+\.[0-9]+" "$W/out" || fail "$name --version: $(cat "$W/out")"
    run ok "$tool" --help
    grep -q 'Examples:' "$W/out" || fail "$name --help has no examples"
    grep -q 'Exit status' "$W/out" || fail "$name --help names no exit status"
    run usage "$tool" --no-such-option
    grep -Eq "^$name: " "$W/err" || fail "$name usage error: $(cat "$W/err")"
    grep -q '?' "$W/err" && fail "$name prints '?' for quotes: $(cat "$W/err")"
done
for cmd in "$PACK frobnicate" "$ADMIN frobnicate" "$REPO frobnicate" \
           "$OFFLINE frobnicate" "$OFFLINE apply only-an-image" \
           "$REPO list --help-me" "$PACK inspect" "$ADMIN install" \
           "$SIGN" "$VERIFY"; do
    run usage $cmd
done
# Each command's --help and that of the commands under it.
for cmd in "$REPO publish" "$REPO fetch" "$REPO list" "$ADMIN modules" \
           "$ADMIN trust"; do
    run ok $cmd --help
done
run ok "$REPO" list --help
grep -q -- '--dest\|--max-size' "$W/out" && fail "repo list offers fetch's options"

# --- An untrusted signer: refused, with a JSON report where asked. ---
echo data >"$W/file"
"$SIGN" --key "$W/evil.key" --cert "$W/evil.crt" "$W/file" || fail sign
run refused "$VERIFY" --trust-dir "$W/trust" "$W/file"
err_is vmaugment-verify
run refused "$VERIFY" --trust-dir "$W/trust" --json "$W/file"
json_status refused
"$SIGN" --key "$W/admin.key" --cert "$W/admin.crt" "$W/file" || fail sign
run ok "$VERIFY" --trust-dir "$W/trust" --json "$W/file"
json_status trusted

"$PACK" create --manifest "$MAN" --payload "$SO" --key "$W/evil.key" \
    --cert "$W/evil.crt" -o "$W/evil.vmod" || fail "pack create (stranger)"
"$PACK" create --manifest "$MAN" --payload "$SO" --key "$W/admin.key" \
    --cert "$W/admin.crt" -o "$W/echo.vmod" || fail "pack create"
run refused "$PACK" verify --trust-dir "$W/trust" "$W/evil.vmod"
err_is vmaugment-pack
run refused "$PACK" verify --trust-dir "$W/trust" --json "$W/evil.vmod"
json_status refused
run refused "$ADMIN" install --store "$W/store" --trust-dir "$W/trust" \
    "$W/evil.vmod"
err_is vmaugment-admin
run refused "$ADMIN" --json install --store "$W/store" \
    --trust-dir "$W/trust" "$W/evil.vmod"
json_status refused
run refused "$REPO" publish --dir "$W/repo" --key "$W/admin.key" \
    --cert "$W/admin.crt" --trust-dir "$W/trust" "$W/evil.vmod"
err_is vmaugment-repo

mkdir -p "$W/payload"
echo hello >"$W/payload/hello.txt"
cat >"$W/bundle.json" <<'EOF'
{"format": 1, "id": "hello", "version": "1",
 "files": [{"op": "add", "path": "/etc/hello.txt", "payload": "hello.txt",
            "mode": "0644", "uid": 0, "gid": 0}]}
EOF
run ok "$OFFLINE" bundle-build --key "$W/evil.key" --cert "$W/evil.crt" \
    --payload-dir "$W/payload" --output "$W/evil.vmab" "$W/bundle.json"
for cmd in check apply verify; do
    run refused "$OFFLINE" --trust-dir "$W/trust" $cmd "$W/no.qcow2" \
        "$W/evil.vmab"
    err_is vmaugment-offline
    json_status refused
done

# --- A missing file: a failure, reported. ---
run error "$VERIFY" --trust-dir "$W/trust" "$W/missing"
err_is vmaugment-verify
run error "$SIGN" --key "$W/admin.key" --cert "$W/admin.crt" "$W/missing"
run error "$KEYGEN" --name X --key "$W/x.key" --cert "$W/x.crt" \
    --issuer-key "$W/missing" --issuer-cert "$W/missing.crt"
run error "$PACK" inspect "$W/missing.vmod"
run error "$PACK" list --store "$W/missing-store"
[ -e "$W/missing-store" ] && fail "pack list made a store"
run error "$PACK" --json verify --trust-dir "$W/trust" "$W/missing.vmod"
json_status error
run error "$ADMIN" install --store "$W/store" --trust-dir "$W/trust" \
    "$W/missing.vmod"
run error "$REPO" publish --dir "$W/repo" --key "$W/admin.key" \
    --cert "$W/admin.crt" "$W/missing.vmod"
run error "$OFFLINE" --trust-dir "$W/trust" apply "$W/no.qcow2" \
    "$W/missing.vmab"
json_status error
run error "$OFFLINE" recover "$W/missing/img.qcow2"
json_status error
run error "$GUEST" --device "$W/missing" ping
run error "$ADMIN" trust list --trust-dir "$W/missing"
grep -q '“' "$W/err" || fail "no UTF-8 quotes under C.UTF-8: $(cat "$W/err")"
run error "$ADMIN" --json trust list --trust-dir "$W/missing"
json_status error

# --- Nothing is signed that a host would refuse. ---
sed 's/"format": 1,/"format": 1, "aplies": [],/' "$W/bundle.json" >"$W/typo.json"
run error "$OFFLINE" bundle-build --key "$W/admin.key" --cert "$W/admin.crt" \
    --payload-dir "$W/payload" --output "$W/typo.vmab" "$W/typo.json"
[ -e "$W/typo.vmab" ] && fail "bundle-build wrote a bundle with a typo"
sed 's/"functions"/"fonctions"/' "$MAN" >"$W/typo-manifest.json"
run error "$PACK" create --manifest "$W/typo-manifest.json" --payload "$SO" \
    --key "$W/admin.key" --cert "$W/admin.crt" -o "$W/typo.vmod"
run error "$PACK" create --manifest "$MAN" --payload "$W/payload/hello.txt" \
    --key "$W/admin.key" --cert "$W/admin.crt" -o "$W/text.vmod"
grep -q 'not an ELF' "$W/err" || fail "pack create on text: $(cat "$W/err")"
[ -e "$W/text.vmod" ] && fail "pack create signed a text payload"

# The manifest example of docs/offline.rst is valid and builds as it is.
python3 - "$VMAUG_SRC/docs/offline.rst" >"$W/doc.json" <<'PY' ||
import json, re, sys
text = open(sys.argv[1]).read()
block = text.split("Manifest, format 1", 1)[1].split("::\n\n", 1)[1]
lines = []
for line in block.split("\n"):
    if line and not line.startswith("  "):
        break
    lines.append(line)
json.loads("\n".join(lines))
print("\n".join(lines))
PY
    fail "the manifest example of docs/offline.rst is not JSON"
mkdir -p "$W/docpayload"
echo "Serviced offline." >"$W/docpayload/motd"
run ok "$OFFLINE" bundle-build --key "$W/admin.key" --cert "$W/admin.crt" \
    --payload-dir "$W/docpayload" --output "$W/doc.vmab" "$W/doc.json"

# --- Installing identical content again succeeds, audited as such. ---
run ok "$ADMIN" install --store "$W/store" --trust-dir "$W/trust" \
    "$W/echo.vmod"
grep -q '^installed echo 1.0' "$W/out" || fail "install: $(cat "$W/out")"
run ok "$ADMIN" install --store "$W/store" --trust-dir "$W/trust" \
    "$W/echo.vmod"
grep -q '^already stored echo 1.0' "$W/out" || fail "again: $(cat "$W/out")"
run ok "$PACK" install --store "$W/store" --trust-dir "$W/trust" --json \
    "$W/echo.vmod"
json_status already-stored
grep '"action":"install"' "$W/store/audit.log" | grep '"decision":"accept"' |
    grep -q 'already stored' || fail "no audited 'already stored' acceptance"
grep '"action":"install"' "$W/store/audit.log" | grep '"module":"echo"' |
    grep -q '"decision":"refuse"' && fail "identical content audited as refused"

if [ "$fails" -ne 0 ]; then
    echo "$fails failures"
    exit 1
fi
echo "all tools follow docs/cli.rst"
