#!/usr/bin/env bash
# vmaugment-helper's configuration file (docs/service.rst): keys are read,
# the command line overrides them, and a file the helper does not
# understand stops it with exit status 2 and the reason, before it
# touches the socket or the store.
#   test-helper-config.sh HELPER
set -uo pipefail
helper=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
n=0 failed=0

ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); failed=1; echo "not ok $n - $1"; shift; printf '# %s\n' "$@"; }

# run NAME FILE-TEXT ARGS...: the helper with --config on FILE-TEXT; sets
# $rc, $out and $err.
run() {
    printf '%s\n' "$2" >"$dir/$1.conf"
    local name=$1
    shift 2
    rc=0
    out=$("$helper" --config "$dir/$name.conf" "$@" 2>"$dir/err") || rc=$?
    err=$(cat "$dir/err")
}

# value KEY: KEY's value in the printed configuration $out.
value() { sed -n "s/^$1=//p" <<<"$out"; }

base='[helper]
socket=SOCK
store=STORE
trust-dir=TRUST'
base=${base//SOCK/$dir/h.sock}
base=${base//STORE/$dir/store}
base=${base//TRUST/$dir/trust}

run read "$base
call-timeout-ms=1234
image-dir=$dir/a;$dir/b;
no-namespaces=true" --print-config
if [ $rc -eq 0 ] && [ "$(value call-timeout-ms)" = 1234 ] &&
   [ "$(value image-dir)" = "$dir/a;$dir/b;" ] &&
   [ "$(value no-namespaces)" = true ] && [ "$(value store)" = "$dir/store" ]; then
    ok "keys of the file are the options in effect"
else
    not_ok "keys of the file are the options in effect" "rc $rc" "$out" "$err"
fi

run override "$base
call-timeout-ms=1234
image-dir=$dir/a;$dir/b;" --call-timeout-ms 99 --image-dir "$dir/z" \
    --store "$dir/other" --print-config
if [ $rc -eq 0 ] && [ "$(value call-timeout-ms)" = 99 ] &&
   [ "$(value image-dir)" = "$dir/z;" ] && [ "$(value store)" = "$dir/other" ]; then
    ok "the command line overrides the file, lists replaced whole"
else
    not_ok "the command line overrides the file, lists replaced whole" \
        "rc $rc" "$out" "$err"
fi

# The image scans' keys (docs/service.rst): the database has a default.
run scan-default "$base" --print-config
default_db=$(value clamav-database)
run scan "$base
clamav-database=$dir/clamav
scan-timeout-s=45" --print-config
if [ $rc -eq 0 ] && [ "$default_db" = /var/lib/clamav ] &&
   [ "$(value clamav-database)" = "$dir/clamav" ] &&
   [ "$(value scan-timeout-s)" = 45 ]; then
    ok "the image scans' database and bound are read, the database defaulted"
else
    not_ok "the image scans' database and bound are read, the database defaulted" \
        "rc $rc" "default $default_db" "$out" "$err"
fi

# refused NAME FILE-TEXT MESSAGE: exit 2, MESSAGE, nothing printed, no
# socket made.
refused() {
    run "$1" "$2" --print-config
    if [ $rc -eq 2 ] && [ -z "$out" ] && [ ! -e "$dir/h.sock" ] &&
       grep -qF -- "$3" <<<"$err"; then
        ok "$1 refused: $3"
    else
        not_ok "$1 refused: $3" "rc $rc" "stdout: $out" "stderr: $err"
    fi
}

refused unknown-key "$base
calltimeout=5" "config: $dir/unknown-key.conf: unknown key 'calltimeout' in [helper]"
refused unknown-group "$base
[helpers]
store=/x" "config: $dir/unknown-group.conf: unknown group [helpers] (the only group is [helper])"
# Only the command line may pass a socket or name the file.
refused hidden-key "$base
listen-fd=3" "unknown key 'listen-fd' in [helper]"
refused config-key "$base
config=/etc/other.conf" "unknown key 'config' in [helper]"
refused not-a-number "$base
memory-mb=lots" "config: $dir/not-a-number.conf: key 'memory-mb':"
refused not-a-boolean "$base
no-namespaces=maybe" "config: $dir/not-a-boolean.conf: key 'no-namespaces':"
# The same range checks as the command line's.
refused out-of-range "$base
memory-mb=1" "vmaugment-helper: limits out of range"
refused scan-out-of-range "$base
scan-timeout-s=601" "vmaugment-helper: --scan-timeout-s out of range"

rc=0
"$helper" --config "$dir/missing.conf" --print-config >"$dir/out" 2>"$dir/err" || rc=$?
if [ $rc -eq 2 ] && [ ! -s "$dir/out" ] &&
   grep -qF "config: $dir/missing.conf: No such file or directory" "$dir/err"; then
    ok "a missing file is refused with its path"
else
    not_ok "a missing file is refused with its path" "rc $rc" "$(cat "$dir/err")"
fi

echo "1..$n"
exit $failed
