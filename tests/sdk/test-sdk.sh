#!/usr/bin/env bash
# The SDKs as their users meet them (docs/modules.rst, "Modules outside
# the tree"): libvmaugment exports exactly what vmaugment.h declares,
# under its version node; after "meson install --destdir", a program
# including <vmaugment/vmaugment.h> builds against libvmaugment.pc, and the
# installed template module builds with its Makefile against
# vmaugment-module.pc, is packed and signed, stored, and invoked through a
# real helper by "vmaugment-admin invoke", whose refusals keep the exit
# statuses of docs/cli.rst.  TAP.
#
#   test-sdk.sh SOURCE-DIR BUILD-DIR
set -uo pipefail

src=$1
build=$2
admin=$build/host-modules/admin/vmaugment-admin
helper=$build/host-modules/helper/vmaugment-helper
pack=$build/host-modules/vmaugment-pack
keygen=$build/trust/vmaugment-keygen
tmp=$(mktemp -d)
helper_pid=
cleanup() {
    [ -n "$helper_pid" ] && kill "$helper_pid" 2>/dev/null && wait "$helper_pid"
    rm -rf "$tmp"
}
trap cleanup EXIT
n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); failed=1; echo "not ok $n - $1"; shift; printf '# %s\n' "$@"; }

# The library's ABI: its defined dynamic symbols are the header's
# functions, each under LIBVMAUGMENT_0.1.
lib=$(ls "$build"/guest-driver/lib/libvmaugment.so.* 2>/dev/null | head -n1)
declared=$(grep -oE '\bvmaug_[a-z_]+\(' "$src/guest-driver/lib/vmaugment.h" |
           tr -d '(' | sort -u)
exported=$(nm -D --defined-only "$lib" 2>&1 | awk '$2 != "A" { print $3 }' |
           sort)
expected=$(sed 's/$/@@LIBVMAUGMENT_0.1/' <<<"$declared")
if [ -n "$lib" ] && [ -n "$declared" ] && [ "$exported" = "$expected" ]; then
    ok "libvmaugment exports exactly vmaugment.h, as LIBVMAUGMENT_0.1"
else
    not_ok "libvmaugment exports exactly vmaugment.h, as LIBVMAUGMENT_0.1" \
        "library: ${lib:-none}" \
        "$(diff <(echo "$expected") <(echo "$exported") | head -n 20)"
fi

root=$tmp/root
if ! meson install -C "$build" --no-rebuild --quiet --destdir "$root" \
        >"$tmp/install.log" 2>&1; then
    not_ok "meson install --destdir" "$(tail -n 5 "$tmp/install.log")"
    echo "1..$n"
    exit 1
fi
pcdir=$(dirname "$(find "$root" -name libvmaugment.pc | head -n1)")
export PKG_CONFIG_PATH=$pcdir PKG_CONFIG_SYSROOT_DIR=$root

# A program of the guest, as docs/guest.rst shows it, against the
# installed copy only (-nostdinc would also drop libc's headers).
cat >"$tmp/prog.c" <<'PROG'
#include <stdio.h>
#include <vmaugment/vmaugment.h>

int main(void)
{
    printf("%s\n", vmaug_status_name(VMAUG_S_DENIED));
    return 0;
}
PROG
if cc -o "$tmp/prog" "$tmp/prog.c" $(pkg-config --cflags --libs libvmaugment) \
        >"$tmp/cc.log" 2>&1 &&
   [ "$(LD_LIBRARY_PATH=$root$(pkg-config --variable=libdir libvmaugment | \
        sed "s|^$root||") "$tmp/prog")" = DENIED ]; then
    ok "a program builds with <vmaugment/vmaugment.h> and libvmaugment.pc"
else
    not_ok "a program builds with <vmaugment/vmaugment.h> and libvmaugment.pc" \
        "$(pkg-config --cflags --libs libvmaugment 2>&1)" \
        "$(head -n 10 "$tmp/cc.log")"
fi

# The template, copied from where it is installed and built out of tree.
tpl=$(find "$root" -type d -path '*/doc/vmaugment/examples/module-template')
mkdir -p "$tmp/tpl"
if [ -n "$tpl" ] && cp -r "$tpl"/. "$tmp/tpl/" &&
   make -C "$tmp/tpl" >"$tmp/make.log" 2>&1 &&
   [ "$(nm -D --defined-only "$tmp/tpl/vmaug-template.so" |
        awk '{ print $3 }')" = vmaug_module_v1 ]; then
    ok "the installed template builds out of tree with vmaugment-module.pc"
else
    not_ok "the installed template builds out of tree with vmaugment-module.pc" \
        "template: ${tpl:-not installed}" "$(tail -n 10 "$tmp/make.log" 2>&1)"
fi

# Signed by a trusted administrator; "other" (the template under another
# name) by one the helper does not trust.  Both are stored through a
# trust directory that knows both, as a host whose trust changed since.
mkdir -p "$tmp/trust" "$tmp/trust-all"
"$keygen" --name Admin --key "$tmp/admin.key" --cert "$tmp/admin.crt" &&
"$keygen" --name Stranger --key "$tmp/other.key" --cert "$tmp/other.crt" &&
"$admin" trust add --trust-dir "$tmp/trust" "$tmp/admin.crt" &&
"$admin" trust add --trust-dir "$tmp/trust-all" "$tmp/admin.crt" &&
"$admin" trust add --trust-dir "$tmp/trust-all" "$tmp/other.crt" \
    >"$tmp/keys.log" 2>&1
cp -r "$tmp/tpl" "$tmp/other"
sed -i 's/"name": "template"/"name": "other"/' "$tmp/other/manifest.json"
if make -C "$tmp/tpl" package KEY="$tmp/admin.key" CERT="$tmp/admin.crt" \
        VMAUGMENT_PACK="$pack" >"$tmp/package.log" 2>&1 &&
   make -C "$tmp/other" clean package NAME=template KEY="$tmp/other.key" \
        CERT="$tmp/other.crt" VMAUGMENT_PACK="$pack" >>"$tmp/package.log" 2>&1 &&
   "$admin" install --store "$tmp/store" --trust-dir "$tmp/trust-all" \
        "$tmp/tpl/template-1.0.vmod" >>"$tmp/package.log" 2>&1 &&
   "$admin" install --store "$tmp/store" --trust-dir "$tmp/trust-all" \
        "$tmp/other/template-1.0.vmod" >>"$tmp/package.log" 2>&1; then
    ok "make package signs the module; it is stored"
else
    not_ok "make package signs the module; it is stored" \
        "$(tail -n 10 "$tmp/package.log")"
fi

sock=$tmp/helper.sock
"$helper" --socket "$sock" --store "$tmp/store" --trust-dir "$tmp/trust" \
    >"$tmp/helper.log" 2>&1 &
helper_pid=$!
for _ in $(seq 100); do
    [ -S "$sock" ] && break
    sleep 0.1
done

# invoke NAME STATUS ARGS...: vmaugment-admin invoke ARGS exits STATUS;
# sets $out and $err.
invoke_rc=
invoke() {
    local name=$1 want=$2
    shift 2
    invoke_rc=0
    "$admin" invoke "$@" >"$tmp/out" 2>"$tmp/err" || invoke_rc=$?
    out=$(cat "$tmp/out")
    err=$(cat "$tmp/err")
    [ "$invoke_rc" -eq "$want" ]
}
report() {
    not_ok "$1" "exit $invoke_rc" "stdout: $out" "stderr: $err" \
        "helper: $(tail -n 5 "$tmp/helper.log")"
}

if invoke hello 0 --socket "$sock" template hello world &&
   [ "$out" = "hello, world" ]; then
    ok "invoke: the out-of-tree module answers through the helper"
else
    report "invoke: the out-of-tree module answers through the helper"
fi
if invoke json 0 --socket "$sock" --json template reverse abc &&
   python3 -c 'import json,sys; d=json.loads(sys.argv[1]);
sys.exit(0 if d["status"] == "ok" and d["output"] == "cba" and
         d["module"] == "template" else 1)' "$out"; then
    ok "invoke --json: the output in a report"
else
    report "invoke --json: the output in a report"
fi
if "$admin" audit --store "$tmp/store" --module template >"$tmp/audit" 2>&1 &&
   grep -q 'vmaugment-admin' "$tmp/audit"; then
    ok "the helper audits the load under vmaugment-admin"
else
    not_ok "the helper audits the load under vmaugment-admin" \
        "$(cat "$tmp/audit")"
fi

# Refusals, with the statuses of docs/cli.rst.
if invoke untrusted 4 --socket "$sock" other hello x &&
   grep -q '^vmaugment-admin: invoke other hello: ' <<<"$err"; then
    ok "invoke: a module of an untrusted signer is refused (4)"
else
    report "invoke: a module of an untrusted signer is refused (4)"
fi
if invoke untrusted-json 4 --socket "$sock" --json other hello x &&
   python3 -c 'import json,sys; d=json.loads(sys.argv[1]);
sys.exit(0 if d["status"] == "refused" and d["error"] else 1)' "$out"; then
    ok "invoke --json: a refusal is reported in JSON"
else
    report "invoke --json: a refusal is reported in JSON"
fi
if invoke unknown 1 --socket "$sock" nosuch hello x &&
   grep -q 'nosuch' <<<"$err"; then
    ok "invoke: an unknown module fails (1)"
else
    report "invoke: an unknown module fails (1)"
fi
if invoke unexported 1 --socket "$sock" template nosuch x &&
   grep -q 'does not export nosuch' <<<"$err"; then
    ok "invoke: a function the manifest does not export fails (1)"
else
    report "invoke: a function the manifest does not export fails (1)"
fi
if invoke no-helper 1 --socket "$tmp/none.sock" template hello x &&
   grep -q 'none.sock' <<<"$err"; then
    ok "invoke: no helper at the socket fails (1)"
else
    report "invoke: no helper at the socket fails (1)"
fi
if invoke usage 2 --socket "$sock" template &&
   grep -q 'usage: invoke takes MODULE FUNCTION' <<<"$err" &&
   invoke bad-name 2 --socket "$sock" 'Bad/Name' hello &&
   invoke bad-option 2 --frobnicate template hello; then
    ok "invoke: usage errors exit 2"
else
    report "invoke: usage errors exit 2"
fi
echo "1..$n"
exit $failed
