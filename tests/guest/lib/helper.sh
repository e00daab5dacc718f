# shellcheck shell=bash disable=SC2154,SC2034 # shares variables with harness.sh
# The host side of scenarios that need the real host helper
# ("# needs: helper") or signed packages ("# package: NAME MIB").
# Sourced by harness.sh; functions set helper_error when they fail.
#
# Every scenario gets its own store and socket; the helper trusts one
# test administrator whose key signs the packages the scenarios upload.

helper_bin=${VMAUGMENT_HELPER:-$build/host-modules/helper/vmaugment-helper}
helper_pid=
helper_error=
helper_dir=
helper_qemu_args=()
# Set by the harness for "# image: yes" and "# repository:" scenarios.
helper_image=
helper_repo_args=()
# More helper options a scenario's .host file asks for when it is sourced.
helper_extra_args=()

# Build the host tools the packages and the helper need (cheap when done).
helper_tools() {
    if ! ninja -C "$build" trust/vmaugment-keygen host-modules/vmaugment-pack \
            host-modules/modules/echo/vmaug-echo.so "$@" \
            >"$work/ninja-host.log" 2>&1; then
        helper_error="host tools do not build (see $work/ninja-host.log)"
        return 1
    fi
    if [ ! -f "$work/keys/admin.crt" ]; then
        rm -rf "$work/keys"
        mkdir -p "$work/keys/trust"
        "$build/trust/vmaugment-keygen" --name vmaugment-test-admin --days 30 \
            --key "$work/keys/admin.key" --cert "$work/keys/admin.crt" \
            >/dev/null || { helper_error="vmaugment-keygen failed"; return 1; }
        cp "$work/keys/admin.crt" "$work/keys/trust/"
    fi
}

# package_make NAME MIB OUT: a signed package of the echo module named NAME
# whose payload is padded with MIB MiB of random bytes (ELF loaders ignore
# trailing data), so that uploads of any size carry a valid package.
package_make() {
    local name=$1 mib=$2 out=$3 cache=$work/packages/$1-$2.vmod
    helper_tools || return 1
    if [ ! -f "$cache" ]; then
        local tmp=$work/packages/tmp
        rm -rf "$tmp"
        mkdir -p "$tmp"
        cp "$build/host-modules/modules/echo/vmaug-echo.so" "$tmp/payload.so"
        if [ "$mib" -gt 0 ]; then
            head -c $((mib << 20)) /dev/urandom >>"$tmp/payload.so"
        fi
        sed "s/\"name\": *\"echo\"/\"name\": \"$name\"/" \
            "$root/host-modules/modules/echo/manifest.json" >"$tmp/manifest.json"
        "$build/host-modules/vmaugment-pack" create \
            --manifest "$tmp/manifest.json" --payload "$tmp/payload.so" \
            --key "$work/keys/admin.key" --cert "$work/keys/admin.crt" \
            -o "$cache" >"$tmp/pack.log" 2>&1 ||
            { helper_error="vmaugment-pack: $(cat "$tmp/pack.log")"; return 1; }
        rm -rf "$tmp"
    fi
    cp "$cache" "$out"
}

# module_package NAME VERSION OUT: a signed package of the real module
# host-modules/modules/NAME at VERSION.
module_package() {
    local name=$1 version=$2 out=$3
    helper_tools "host-modules/modules/$name/vmaug-$name.so" || return 1
    "$build/host-modules/vmaugment-pack" create \
        --manifest "$root/host-modules/modules/$name/manifest.json" \
        --payload "$build/host-modules/modules/$name/vmaug-$name.so" \
        --set-version "$version" \
        --key "$work/keys/admin.key" --cert "$work/keys/admin.crt" \
        -o "$out" >"$work/pack-$name.log" 2>&1 ||
        { helper_error="vmaugment-pack: $(cat "$work/pack-$name.log")"; return 1; }
}

# helper_setup DIR: a fresh store and socket in DIR, and the QEMU arguments
# that connect the device to them; with helper_image set, the device names
# that disk image and the helper may serve images in its directory.
helper_setup() {
    helper_error=
    helper_dir=$1
    helper_tools host-modules/helper/vmaugment-helper \
        host-modules/helper/vmaugment-module-host || return 1
    if [ ! -x "$helper_bin" ]; then
        helper_error="no helper binary at $helper_bin"
        return 1
    fi
    mkdir -p "$helper_dir/store"
    # Test packages go up to 256 MiB (the benchmark); the default is 64.
    echo '{ "max_package_size": 1073741824 }' >"$helper_dir/policy.json"
    # Unix socket paths are short (108 bytes): keep it out of the work tree.
    helper_sock_dir=$(mktemp -d /tmp/vmaug-helper.XXXXXX)
    helper_sock=$helper_sock_dir/helper.sock
    # The device reconnects on its own after the helper restarts.
    # VMAUGMENT_DEVICE_OPTS: more device properties, for a benchmark's
    # variants (relay-wait-us=0, say).
    local dev=vmaugment-pci,chardev=vmaug0${VMAUGMENT_DEVICE_OPTS:+,$VMAUGMENT_DEVICE_OPTS}
    if [ -n "$helper_image" ]; then
        dev+=",image=$helper_image"
    fi
    helper_qemu_args=(
        -chardev "socket,id=vmaug0,path=$helper_sock,reconnect-ms=200"
        -device "$dev"
    )
    helper_start
}

# Start the helper on the scenario's socket and store; it must be
# listening before QEMU (or its reconnect) comes.
helper_start() {
    helper_kill
    rm -f "$helper_sock"
    local args=()
    if [ -n "$helper_image" ]; then
        args+=(--image-dir "$(dirname "$helper_image")")
    fi
    # shellcheck disable=SC2206 # words on purpose
    args+=("${helper_repo_args[@]}" "${helper_extra_args[@]}"
           ${VMAUGMENT_HELPER_ARGS:-})
    "$helper_bin" --socket "$helper_sock" --store "$helper_dir/store" \
        --trust-dir "$work/keys/trust" --policy "$helper_dir/policy.json" \
        "${args[@]}" >>"$helper_dir/helper.log" 2>&1 &
    helper_pid=$!
    local i
    for i in $(seq 100); do
        if ! kill -0 "$helper_pid" 2>/dev/null; then
            helper_error="the helper exited: $(tail -n 3 "$helper_dir/helper.log")"
            helper_pid=
            return 1
        fi
        [ -S "$helper_sock" ] && return 0
        sleep 0.05
    done
    helper_error="the helper did not create $helper_sock"
    return 1
}

# Freeze or thaw the helper (STOP, CONT): connected but not answering.
helper_signal() {
    if [ -n "$helper_pid" ]; then
        kill -s "$1" "$helper_pid" 2>/dev/null || true
    fi
}

helper_kill() {
    if [ -n "$helper_pid" ]; then
        kill -9 "$helper_pid" 2>/dev/null || true
        wait "$helper_pid" 2>/dev/null || true
        helper_pid=
    fi
}

helper_stop() {
    local killer
    if [ -n "$helper_pid" ]; then
        # A scenario that failed between stop-helper and cont-helper left
        # it stopped: SIGTERM waits until it runs again.  One that does
        # not end in 10 s is killed.
        kill "$helper_pid" 2>/dev/null || true
        kill -s CONT "$helper_pid" 2>/dev/null || true
        (sleep 10; kill -9 "$helper_pid" 2>/dev/null) &
        killer=$!
        wait "$helper_pid" 2>/dev/null || true
        kill "$killer" 2>/dev/null || true
        wait "$killer" 2>/dev/null || true
        helper_pid=
    fi
    if [ -n "${helper_sock_dir:-}" ]; then
        rm -rf "$helper_sock_dir"
        helper_sock_dir=
    fi
}

# The store holds a package whose bytes hash to $1: the host's own
# confirmation of what the guest uploaded.
helper_store_has() {
    helper_dir_has "$helper_dir/store/objects" "$1"
}

# The host's print spool holds a document whose bytes hash to $1: the
# spool of one of the VMs' areas of the store.
helper_spool_has() {
    local spool
    for spool in "$helper_dir"/store/vms/*/spool; do
        [ -d "$spool" ] || continue
        helper_dir_has "$spool" "$1" && return 0
    done
    return 1
}

# helper_dir_has DIR HEX: a file in DIR hashes to HEX.
helper_dir_has() {
    local f
    for f in "$1"/*; do
        [ -f "$f" ] || continue
        if [ "$(sha256sum <"$f" | cut -d' ' -f1)" = "$2" ]; then
            return 0
        fi
    done
    return 1
}
