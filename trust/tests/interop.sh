#!/bin/sh
# Keys, certificates, CRLs and signatures interoperate with GnuTLS certtool
# both ways; every refusal exits 4 (docs/cli.rst) and its message tells
# the reason.
set -eu

: "${CERTTOOL:?}" "${VMAUGMENT_KEYGEN:?}" "${VMAUGMENT_SIGN:?}" "${VMAUGMENT_VERIFY:?}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
mkdir trust

expect() {
    want=$1
    shift
    set +e
    "$@" >out.txt 2>err.txt
    got=$?
    set -e
    if [ "$got" -ne "$want" ]; then
        echo "FAIL: '$*' exited $got, expected $want" >&2
        cat out.txt err.txt >&2
        exit 1
    fi
}

# said PATTERN: the last command's message matches PATTERN (grep -E).
said() {
    if ! grep -Eq "$1" err.txt; then
        echo "FAIL: the message does not say '$1':" >&2
        cat err.txt >&2
        exit 1
    fi
}

printf 'payload bytes\n' > data

# Our tools: a CA, a signer it issued, and a self-signed admin.
"$VMAUGMENT_KEYGEN" --ca --name 'Interop CA' --key ca.key --cert ca.crt
"$VMAUGMENT_KEYGEN" --name 'Alice' --issuer-key ca.key --issuer-cert ca.crt \
    --key alice.key --cert alice.crt
"$VMAUGMENT_KEYGEN" --name 'Bob' --key bob.key --cert bob.crt
expect 1 "$VMAUGMENT_KEYGEN" --name 'Bob' --key bob.key --cert bob2.crt
cp ca.crt trust/

# certtool reads what keygen wrote: PKCS#8 key, X.509 certificate.
"$CERTTOOL" --key-info --infile alice.key > /dev/null
"$CERTTOOL" --certificate-info --infile alice.crt | grep -q 'Code signing'
"$CERTTOOL" --verify --load-ca-certificate ca.crt --infile alice.crt > /dev/null

"$VMAUGMENT_SIGN" --key alice.key --cert alice.crt data
expect 0 "$VMAUGMENT_VERIFY" --trust-dir trust data
grep -q '^signer: Alice$' out.txt
# certtool verifies our detached PKCS#7 signature.
"$CERTTOOL" --p7-verify --inder --infile data.p7s --load-data data \
    --load-ca-certificate ca.crt > /dev/null

# Refusals, each with its own reason.
printf 'payload bytez\n' > data2
expect 4 "$VMAUGMENT_VERIFY" --trust-dir trust --signature data.p7s data2
said '^vmaugment-verify: data2: the signature does not match the data'
"$VMAUGMENT_SIGN" --key bob.key --cert bob.crt --output bob.p7s data
expect 4 "$VMAUGMENT_VERIFY" --trust-dir trust --signature bob.p7s data
said "^vmaugment-verify: data: the signer's certificate is not trusted"
"$VMAUGMENT_KEYGEN" --crl trust/site.crl --issuer-key ca.key \
    --issuer-cert ca.crt --revoke alice.crt
"$CERTTOOL" --crl-info --infile trust/site.crl > /dev/null
expect 4 "$VMAUGMENT_VERIFY" --trust-dir trust data
said '^vmaugment-verify: data: .*revoked'
rm trust/site.crl

# certtool's own keys, certificate and signature, checked by us.
cat > signer.tmpl <<'TMPL'
cn = "Carol"
expiration_days = 30
signing_key
code_signing_key
TMPL
"$CERTTOOL" --generate-privkey --key-type ecdsa --outfile carol.key 2>/dev/null
"$CERTTOOL" --generate-certificate --load-privkey carol.key \
    --load-ca-certificate ca.crt --load-ca-privkey ca.key \
    --template signer.tmpl --outfile carol.crt 2>/dev/null
"$VMAUGMENT_SIGN" --key carol.key --cert carol.crt --output carol.p7s data
expect 0 "$VMAUGMENT_VERIFY" --trust-dir trust --signature carol.p7s data
"$CERTTOOL" --p7-detached-sign --load-privkey carol.key \
    --load-certificate carol.crt --infile data --outfile certtool.p7s \
    2>/dev/null
expect 0 "$VMAUGMENT_VERIFY" --trust-dir trust --signature certtool.p7s data
grep -q '^signer: Carol$' out.txt
"$CERTTOOL" --p7-detached-sign --load-privkey carol.key \
    --load-certificate carol.crt --infile data --outfile certtool.der \
    --outder 2>/dev/null
expect 0 "$VMAUGMENT_VERIFY" --trust-dir trust --signature certtool.der data

# A certificate for TLS servers, from the same CA, may not sign code.
cat > tls.tmpl <<'TMPL'
cn = "www"
expiration_days = 30
signing_key
tls_www_server
TMPL
"$CERTTOOL" --generate-certificate --load-privkey carol.key \
    --load-ca-certificate ca.crt --load-ca-privkey ca.key \
    --template tls.tmpl --outfile tls.crt 2>/dev/null
"$VMAUGMENT_SIGN" --key carol.key --cert tls.crt --output tls.p7s data
expect 4 "$VMAUGMENT_VERIFY" --trust-dir trust --signature tls.p7s data
said '^vmaugment-verify: data: .*(code|sign)'

# An expired certificate made by certtool (validity in the past).
cat > old.tmpl <<'TMPL'
cn = "Old"
activation_date = "2020-01-01 00:00:00"
expiration_date = "2021-01-01 00:00:00"
signing_key
code_signing_key
TMPL
"$CERTTOOL" --generate-certificate --load-privkey carol.key \
    --load-ca-certificate ca.crt --load-ca-privkey ca.key \
    --template old.tmpl --outfile old.crt 2>/dev/null
"$VMAUGMENT_SIGN" --key carol.key --cert old.crt --output old.p7s data
expect 4 "$VMAUGMENT_VERIFY" --trust-dir trust --signature old.p7s data
said '^vmaugment-verify: data: .*expired'
echo ok
