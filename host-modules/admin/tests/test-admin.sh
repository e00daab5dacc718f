#!/bin/sh
# vmaugment-admin end to end: a real trust directory, store, packages and
# image sidecar made with the project's own tools, every command, and the
# refusals (tampered package, rollback, certificates that may not be
# trusted, revoked and removed signers, malformed sidecar and audit lines,
# unknown registrations, usage errors).
#
# Environment (set by meson): VMAUG_ADMIN, VMAUG_KEYGEN, VMAUG_MAKE_PACKAGES,
# VMAUG_BUILD_ROOT, VMAUG_TEST_DIR.
set -u

A=${VMAUG_ADMIN:?}
KEYGEN=${VMAUG_KEYGEN:?}
BUILD=${VMAUG_BUILD_ROOT:?}
W=${VMAUG_TEST_DIR:?}
SRC=$(cd "$(dirname "$VMAUG_MAKE_PACKAGES")/../.." && pwd)
PACK=$BUILD/host-modules/vmaugment-pack

failures=0
checks=0

fail() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}

# run EXPECTED_STATUS ARGS...: run vmaugment-admin, keep out/err.
run() {
    want=$1
    shift
    checks=$((checks + 1))
    "$A" "$@" >"$W/out" 2>"$W/err"
    got=$?
    if [ "$got" != "$want" ]; then
        fail "vmaugment-admin $* exited $got, expected $want"
        sed 's/^/  out: /' "$W/out" | head -20
        sed 's/^/  err: /' "$W/err" | head -20
    fi
}

# has FILE PATTERN / hasnt FILE PATTERN (fixed strings)
has() {
    checks=$((checks + 1))
    grep -qF -- "$2" "$W/$1" || {
        fail "$1 of the last command lacks \"$2\""
        sed 's/^/  /' "$W/$1" | head -20
    }
}
hasnt() {
    checks=$((checks + 1))
    if grep -qF -- "$2" "$W/$1"; then
        fail "$1 of the last command has \"$2\""
    fi
}

# json EXPRESSION: a Python expression over the last output, d, must hold.
json() {
    checks=$((checks + 1))
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); \
sys.exit(0 if ($1) else 1)" "$W/out" 2>"$W/pyerr" || {
        fail "JSON check failed: $1"
        head -c 2000 "$W/out"
        cat "$W/pyerr"
    }
}

snapshot() {
    (cd "$S" && find objects modules -type f | LC_ALL=C sort |
        xargs -r sha256sum)
}

if [ -d "$W" ]; then
    chattr -R -a "$W" 2>/dev/null || true
    rm -rf "$W"
fi
mkdir -p "$W"
sh "$VMAUG_MAKE_PACKAGES" "$W/pk" "$BUILD" >/dev/null || {
    echo "FAIL: make-packages.sh"
    exit 1
}
T=$W/pk/trust
S=$W/store
cp "$T/admin.crt" "$W/admin.crt"
ST="--store $S --trust-dir $T"

echo "# usage errors exit 2"
run 2
run 2 nosuch
run 2 modules --bogus
run 2 verify $ST
run 2 install $ST
run 2 trust $ST
run 2 trust frob --trust-dir "$T"
run 2 audit --since yesterday --store "$S"
has err "vmaugment-admin: "

echo "# modules of a store that does not exist"
run 1 modules $ST
has err "no module store at $S"

echo "# install"
run 0 install $ST "$W/pk/echo-1.0.vmod"
has out "installed echo 1.0"
run 0 install $ST "$W/pk/printer-1.0.vmod"
run 0 install $ST "$W/pk/printer-1.1.vmod"
run 0 install $ST "$W/pk/printer-1.1.vmod"
has out "already stored printer 1.1"

echo "# a tampered package is refused and the store is unchanged"
before=$(snapshot)
cp "$W/pk/kv-1.0.vmod" "$W/kv-bad.vmod"
size=$(stat -c %s "$W/kv-bad.vmod")
off=$((size / 2))
b=$(od -An -tu1 -j "$off" -N1 "$W/kv-bad.vmod" | tr -d ' ')
printf "\\$(printf %o $(((b + 1) % 256)))" |
    dd of="$W/kv-bad.vmod" bs=1 seek="$off" conv=notrunc 2>/dev/null
run 4 install $ST "$W/kv-bad.vmod"
has err "kv-bad.vmod refused"
after=$(snapshot)
checks=$((checks + 1))
[ "$before" = "$after" ] || fail "the store changed after a refused install"
[ -n "$after" ] || fail "empty store snapshot"

echo "# a rollback is refused"
run 4 install $ST "$W/pk/printer-0.9.vmod"
has err "rollback"

echo "# modules"
run 0 modules $ST
has out "NAME"
has out "echo             1.0        communication  1.0"
has out "printer          1.0"
hasnt out "kv "
run 0 modules $ST --json
json 'len(d) == 3 and d[0]["name"] == "echo" and d[0]["verifies"] is True'
json 'all(m["highest_accepted"] == "1.1" for m in d if m["name"] == "printer")'
json 'all(len(m["sha256"]) == 64 and m["signer"] == "vmaugment test admin" for m in d)'
run 0 --json modules $ST
json 'isinstance(d, list) and len(d) == 3'

echo "# verify"
run 0 verify $ST echo
has out "echo 1.0 (communication) verifies: signed by vmaugment test admin"
run 0 verify $ST printer 1.0
has out "the helper refuses to load this older version"
run 1 verify $ST nosuch
run 1 verify $ST echo 7.0

echo "# trust list"
run 0 trust list --trust-dir "$T"
fp=$(grep -o '^[0-9a-f]\{64\}' "$W/out" | head -1)
has out "CN=vmaugment test admin (admin.crt)"
has out "signer valid"
run 0 trust list --trust-dir "$T" --json
json 'd["loads"] and len(d["certificates"]) == 1 and d["certificates"][0]["revoked"] is False'
json 'len(d["certificates"][0]["fingerprint"]) == 64 and d["certificates"][0]["expires"].endswith("Z")'

echo "# trust add: only CA or self-signed administrator certificates"
"$KEYGEN" --ca --name "Test CA" --key "$W/ca.key" --cert "$W/ca.crt"
"$KEYGEN" --ca --name "Sub CA" --issuer-key "$W/ca.key" \
    --issuer-cert "$W/ca.crt" --key "$W/sub.key" --cert "$W/sub.crt"
"$KEYGEN" --name "Alice" --issuer-key "$W/ca.key" --issuer-cert "$W/ca.crt" \
    --key "$W/alice.key" --cert "$W/alice.crt"
run 1 trust add --trust-dir "$T" "$W/alice.crt"
has err "is not a CA certificate nor a self-signed administrator"
printf 'not a certificate\n' >"$W/garbage.pem"
run 1 trust add --trust-dir "$T" "$W/garbage.pem"
has err "garbage.pem is not a certificate"
run 1 trust add --trust-dir "$T" "$W/ca.key"
has err "private key"
cat "$W/ca.crt" "$W/sub.crt" >"$W/bundle.pem"
run 1 trust add --trust-dir "$T" "$W/bundle.pem"
has err "holds 2 certificates"
run 1 trust add --trust-dir "$T" "$W/nonexistent.pem"
count=$(ls "$T" | wc -l)
checks=$((checks + 1))
[ "$count" = 1 ] || fail "refused certificates left files in the trust dir"
run 0 trust add --trust-dir "$T" "$W/ca.crt"
has out "trusted CN=Test CA"
run 1 trust add --trust-dir "$T" "$W/ca.crt"
has err "already trusted"
run 0 trust add --trust-dir "$T" "$W/sub.crt"

echo "# a module signed by a CA-issued key, then revoked"
"$PACK" create --manifest "$SRC/host-modules/modules/config/manifest.json" \
    --payload "$BUILD/host-modules/modules/config/vmaug-config.so" \
    --key "$W/alice.key" --cert "$W/alice.crt" --set-version 1.0 \
    --output "$W/config-alice.vmod" || fail "vmaugment-pack create"
run 0 install $ST "$W/config-alice.vmod"
run 0 verify $ST config
has out "signed by Alice"
"$KEYGEN" --crl "$T/test-ca.crl" --issuer-key "$W/ca.key" \
    --issuer-cert "$W/ca.crt" --revoke "$W/alice.crt" --revoke "$W/sub.crt"
# A CRL issued this very second can look issued in the future to a clock
# that lags (GnuTLS reads the coarse one): let it pass.
sleep 1
run 0 trust list --trust-dir "$T"
has out "revocation list test-ca.crl"
has out "ca     revoked       CN=Sub CA"
run 0 trust list --trust-dir "$T" --json
json '[c["revoked"] for c in d["certificates"] if c["common_name"] == "Sub CA"] == [True]'
json '[c["revoked"] for c in d["certificates"] if c["common_name"] == "Test CA"] == [False]'
run 0 modules $ST
has out "does not verify: signature refused: the signer's certificate is revoked"
run 0 modules $ST --json
json '[m["verifies"] for m in d if m["name"] == "config"] == [False]'
json '[m["verifies"] for m in d if m["name"] == "echo"] == [True]'
run 4 verify $ST config
has err "config 1.0 does not verify"

echo "# trust remove"
run 2 trust remove --trust-dir "$T" xyz
run 1 trust remove --trust-dir "$T" 0000000000000000
has err "no certificate"
run 0 trust remove --trust-dir "$T" "$fp"
has out "removed CN=vmaugment test admin"
checks=$((checks + 1))
[ ! -e "$T/admin.crt" ] || fail "admin.crt still in the trust dir"
run 1 trust remove --trust-dir "$T" "$fp"
run 4 verify $ST echo
run 0 modules $ST --json
json '[m["verifies"] for m in d if m["name"] == "echo"] == [False]'
run 0 trust add --trust-dir "$T" "$W/admin.crt"
run 0 verify $ST echo

echo "# a trust dir the helper could not load"
printf 'junk\n' >"$T/junk.pem"
run 1 trust list --trust-dir "$T"
has out "problem: junk.pem"
has err "does not load"
run 1 modules $ST
rm -f "$T/junk.pem"
run 0 trust list --trust-dir "$T"

echo "# registrations"
img=$W/disk.qcow2
: >"$img"
run 0 registrations list --image "$img"
has out "0 registrations"
run 0 register --image "$img" echo --events image-start,image-stop --required
has out "registered echo"
checks=$((checks + 1))
[ -f "$img.vmaugment.json" ] || fail "no sidecar $img.vmaugment.json"
run 0 register --image "$img" printer --version 1.1 --events image-stop
run 0 registrations list --image "$img"
has out "echo             newest     yes       no      image-start,image-stop"
has out "printer          1.1        no        no      image-stop"
run 0 registrations --image "$img" --json
json 'len(d["registrations"]) == 2 and d["file"].endswith(".vmaugment.json")'
json '[r for r in d["registrations"] if r["name"] == "echo"][0]["events"] == ["image-start", "image-stop"]'
json '[r for r in d["registrations"] if r["name"] == "echo"][0]["required"] is True'
json '[r for r in d["registrations"] if r["name"] == "printer"][0]["version"] == "1.1"'
run 2 register --image "$img" kv --events image-start,bogus
run 2 register --image "$img" kv
run 2 register kv --events image-start
run 2 register --image "$img" --store "$S" kv --events image-start
run 2 registrations list
run 1 register --image "$img" Bad/Name --events image-start
run 1 register --image "$W/missing.qcow2" kv --events image-start
has err "no disk image"
run 1 registrations list --image "$W/missing.qcow2"
run 2 registrations list --store "$S"
has err "a VM that names no image keeps its own only while it is connected"
run 0 unregister --image "$img" printer
run 1 unregister --image "$img" nosuch
run 0 registrations list --image "$img" --json
json '[r["name"] for r in d["registrations"]] == ["echo"]'

echo "# a pin and the host owner's configuration, which only this tool changes"
run 0 register --image "$img" scanner --pinned --events image-start --required \
    --set policy=refuse --set paths=/srv --set on-incomplete=refuse
has out "registered scanner (newest) for image-start (required) (pinned)"
run 0 registrations list --image "$img"
has out "scanner          newest     yes       yes     image-start"
has out "  host config policy = refuse"
run 0 registrations --image "$img" --json
json '[r for r in d["registrations"] if r["name"] == "scanner"][0]["pinned"] is True'
json '[r for r in d["registrations"] if r["name"] == "scanner"][0]["config"] == {"paths": "/srv", "policy": "refuse", "on-incomplete": "refuse"}'
json '[r for r in d["registrations"] if r["name"] == "echo"][0]["pinned"] is False'
checks=$((checks + 1))
grep -q '"format-version" : 2' "$img.vmaugment.json" || fail "a pin not written as format-version 2"
run 4 register --image "$img" scanner --events image-start
has err "scanner is pinned: register it with --pinned, or unregister it first"
run 2 register --image "$img" echo --events image-start --set policy=refuse
run 2 register --image "$img" scanner --pinned --events image-start --set policy
run 0 register --image "$img" scanner --pinned --version 1.1 --events image-start \
    --required --unset paths
run 0 registrations --image "$img" --json
json '[r for r in d["registrations"] if r["name"] == "scanner"][0]["config"] == {"policy": "refuse", "on-incomplete": "refuse"}'
json '[r for r in d["registrations"] if r["name"] == "scanner"][0]["version"] == "1.1"'
run 1 register --image "$img" scanner --pinned --events image-start --unset nosuch
run 0 unregister --image "$img" scanner
run 0 registrations list --image "$img" --json
json '[r["name"] for r in d["registrations"]] == ["echo"]'
checks=$((checks + 1))
grep -q '"format-version" : 1' "$img.vmaugment.json" || fail "a set without pins not written as format-version 1"

echo "# registrations are kept next to images, never in a store"
run 2 register --store "$S" kv --events host-start,host-stop
checks=$((checks + 1))
[ ! -e "$S/registrations.json" ] || fail "$S/registrations.json written"

echo "# a malformed sidecar is reported with its file name"
img2=$W/other.raw
: >"$img2"
printf '{"format": "vmaugment-registrations", "version": 1, ' \
    >"$img2.vmaugment.json"
run 1 registrations list --image "$img2"
has err "$img2.vmaugment.json"
run 1 register --image "$img2" echo --events image-start
has err "$img2.vmaugment.json"

echo "# audit"
run 0 audit --store "$S"
has out "accept install        echo             1.0        by admin"
has out "refuse install"
has out "rollback: printer 0.9 is older than 1.1"
has out "refuse verify         config"
run 0 audit --store "$S" --module echo
has out "echo"
hasnt out "printer"
run 0 audit --store "$S" --since 2999-01-01
has out "no audit records match"
run 0 audit --store "$S" --since 2000-01-01T00:00:00Z --json
json 'len(d) > 5 and all(r["actor"] == "admin" for r in d if r["action"] == "install")'
printf 'garbage {\n{"time": 5}\n\033[2Jfake\n' >>"$S/audit.log"
run 0 audit --store "$S"
has out "malformed (not JSON): garbage {"
has out "malformed (a member is missing or not a string)"
has out '\x1b[2Jfake'
run 0 audit --store "$S" --module echo --json
json 'sum(1 for r in d if "malformed" in r) == 3'
run 0 install $ST "$W/pk/kv-1.0.vmod"
run 0 audit --store "$S" --module kv
has out "accept install        kv"
run 1 audit --store "$W/nostore"

echo "$checks checks, $failures failed"
[ "$failures" = 0 ]
