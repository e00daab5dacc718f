# shellcheck shell=bash disable=SC2154 # root and here come from the caller
# Shared by tests/guest/run.sh and tests/bench/transport-bench.sh: build the
# guest kernel's driver, the static CLI and test programs, the initramfs,
# and boot one guest script under TCG.  The caller sets $root and $here
# (tests/guest) before sourcing this file.

qemu_build=$(realpath -m "${VMAUGMENT_QEMU_BUILD_DIR:-$root/build/qemu}")
build=$(realpath -m "${VMAUGMENT_BUILD_DIR:-$root/build/vmaugment}")
# Kernel cache, images and logs live beside the userspace build.
work=$(realpath -m "${VMAUGMENT_GUEST_WORK_DIR:-$(dirname "$build")/guest-test}")
verbose=${VMAUGMENT_GUEST_VERBOSE:-0}
qemu=$qemu_build/qemu-system-x86_64
# Extra guest programs (C files) built into the initramfs.
extra_progs=()

# shellcheck source=tests/guest/lib/helper.sh
. "$here/lib/helper.sh"

die() {
    echo "guest tests: $*" >&2
    exit 1
}

log_step() {
    echo "guest tests: $*" >&2
}

prepare_kernel() {
    local vars
    vars=$(bash "$here/lib/kernel.sh" "$work/kernel") ||
        die "cannot fetch the Debian kernel"
    eval "$vars"
    kroot=${KDIR%/usr/src/*}
    if [ ! -f "$KMODS/modules.dep" ]; then
        depmod -b "$kroot" "$KVER"
    fi
}

build_module() {
    local dir=$work/module
    rm -rf "$dir"
    mkdir -p "$dir"
    cp "$root"/guest-driver/kernel/{Kbuild,*.c} "$dir/"
    if ! make -C "$KDIR" M="$dir" VMAUG_UAPI="$root/include/uapi" W=1 \
            KCFLAGS=-Werror modules >"$work/module-build.log" 2>&1; then
        cat "$work/module-build.log" >&2
        die "the driver does not build"
    fi
}

build_userspace() {
    if [ ! -f "$build/build.ninja" ]; then
        meson setup "$build" "$root" >"$work/meson-setup.log" 2>&1 ||
            { cat "$work/meson-setup.log" >&2; die "meson setup failed"; }
    fi
    ninja -C "$build" guest-driver/cli/vmaugment \
        guest-driver/lib/libvmaugment-static.a >"$work/ninja.log" 2>&1 ||
        { cat "$work/ninja.log" >&2; die "the CLI does not build"; }
    rm -rf "$work/progs"
    mkdir -p "$work/progs"
    local src
    for src in "$here"/progs/*.c "${extra_progs[@]}"; do
        cc -static -O2 -g -Wall -Wextra -Werror -std=gnu11 \
            -I"$root/include/uapi" -I"$root/guest-driver/lib" \
            -o "$work/progs/$(basename "$src" .c)" "$src" \
            "$build/guest-driver/lib/libvmaugment-static.a" -lnettle -lpthread ||
            die "cannot build $src"
    done
    # A 32-bit caller goes through the driver's compat ioctl path.
    cc -m32 -static -O2 -g -Wall -Wextra -Werror -std=gnu11 \
        -I"$root/include/uapi" -o "$work/progs/vmaug-threads32" \
        "$here/progs/vmaug-threads.c" -lpthread ||
        die "cannot build the 32-bit test program (gcc-multilib)"
}

# The part of the initramfs that every scenario shares.
build_base_initramfs() {
    local base=$work/initramfs
    rm -rf "$base"
    mkdir -p "$base"/{bin,dev,lib/vmaug/mods,usr/local/bin}
    cp /bin/busybox "$base/bin/busybox"
    "$base/bin/busybox" --help >/dev/null 2>&1 ||
        die "/bin/busybox must be busybox-static"
    file -L "$base/bin/busybox" | grep -q 'statically linked' ||
        die "/bin/busybox is not statically linked (install busybox-static)"
    cp "$here/lib/init" "$base/init"
    chmod 755 "$base/init"
    cp "$here/lib/common.sh" "$base/lib/vmaug/"

    # Debian builds the virtio core as modules: load them in dependency
    # order, then our driver.
    : >"$base/lib/vmaug/modules.order"
    local ko
    for ko in $(for m in virtio_pci virtio_console; do
                    modprobe -d "$kroot" -S "$KVER" --show-depends "$m"
                done | awk '$1 == "insmod" {print $2}'); do
        if ! grep -q "/$(basename "$ko")\$" "$base/lib/vmaug/modules.order"; then
            cp "$ko" "$base/lib/vmaug/mods/"
            echo "/lib/vmaug/mods/$(basename "$ko")" >>"$base/lib/vmaug/modules.order"
        fi
    done
    [ -s "$base/lib/vmaug/modules.order" ] || die "no virtio modules found"
    cp "$work/module/vmaugment.ko" "$base/lib/vmaug/vmaugment.ko"
    echo /lib/vmaug/vmaugment.ko >>"$base/lib/vmaug/modules.order"

    cp "$build/guest-driver/cli/vmaugment" "$base/usr/local/bin/"
    cp "$work"/progs/* "$base/usr/local/bin/"
    (cd "$base" && find . | cpio -o -H newc --owner=0:0 --quiet | gzip -1) \
        >"$work/base.cpio.gz"
}

# meta FILE KEY DEFAULT: a "# KEY: value" header line of a scenario.
meta() {
    local v
    v=$(sed -n "s/^# $2: *//p" "$1" | head -n1)
    echo "${v:-$3}"
}

check_qemu() {
    [ -x "$qemu" ] || die "no QEMU at $qemu (set VMAUGMENT_QEMU_BUILD_DIR)"
    "$qemu" -device help 2>/dev/null | grep -q '"vmaugment-pci"' ||
        die "$qemu has no vmaugment-pci device"
    mkdir -p "$work"
}

prepare_all() {
    log_step "preparing kernel, driver, CLI and initramfs"
    prepare_kernel
    build_module
    build_userspace
    build_base_initramfs
}

# Boot one scenario; sets $reason on failure.
run_scenario() {
    local file=$1 name
    name=$(basename "$file" .sh)
    local dir=$work/run/$name
    # The helper's store keeps its audit log append-only.
    if [ -d "$dir/host" ]; then
        chattr -R -a "$dir/host" 2>/dev/null || true
    fi
    rm -rf "$dir"
    mkdir -p "$dir/initramfs"
    { echo '. /lib/vmaug/common.sh'; cat "$file"; } >"$dir/initramfs/scenario.sh"
    local pkg_name pkg_mib
    while read -r pkg_name pkg_mib; do
        mkdir -p "$dir/initramfs/data"
        package_make "$pkg_name" "$pkg_mib" "$dir/initramfs/data/$pkg_name.vmod" ||
            { reason="cannot make package $pkg_name: $helper_error"; return 1; }
    done < <(sed -n 's/^# package: *//p' "$file")
    local mod_name mod_version
    while read -r mod_name mod_version; do
        mkdir -p "$dir/initramfs/data"
        module_package "$mod_name" "$mod_version" \
            "$dir/initramfs/data/$mod_name-$mod_version.vmod" ||
            { reason="cannot package module $mod_name: $helper_error"; return 1; }
    done < <(sed -n 's/^# module: *//p' "$file")
    # Not compressed: packages are random bytes.  The kernel unpacks
    # concatenated archives, compressed or not, one after the other.
    (cd "$dir/initramfs" && find . -mindepth 1 |
        cpio -o -H newc --owner=0:0 --quiet) >"$dir/scenario.cpio"
    # An uncompressed archive must start 4-byte aligned; the kernel skips
    # the zero padding.
    cp "$work/base.cpio.gz" "$dir/initrd"
    truncate -s %4 "$dir/initrd"
    cat "$dir/scenario.cpio" >>"$dir/initrd"

    local timeout_s mem needs
    timeout_s=$(meta "$file" timeout 120)
    mem=$(meta "$file" memory 512M)
    needs=$(meta "$file" needs "")

    local devargs=(-device vmaugment-pci) extra=()
    read -r -a extra <<<"$(meta "$file" qemu "")"
    if [ "$needs" = helper ]; then
        helper_setup "$dir/host" ||
            { helper_stop; reason="host helper: $helper_error"; return 1; }
        devargs=("${helper_qemu_args[@]}")
    fi

    local qemu_status=none line expected_sha=() expected_spool=()
    local log=$dir/console.log
    : >"$log"
    while IFS= read -r line; do
        line=${line%$'\r'}
        printf '%s\n' "$line" >>"$log"
        [ "$verbose" = 1 ] && printf '  | %s\n' "$line" >&2
        case $line in
        "VMAUG-HOST: kill-helper")
            helper_kill ;;
        "VMAUG-HOST: start-helper")
            helper_start || echo "start-helper failed: $helper_error" >>"$log" ;;
        "VMAUG-HOST: stop-helper")
            helper_signal STOP ;;
        "VMAUG-HOST: cont-helper")
            helper_signal CONT ;;
        "VMAUG-HOST: expect-sha256 "*)
            expected_sha+=("${line#VMAUG-HOST: expect-sha256 }") ;;
        "VMAUG-HOST: expect-spool "*)
            expected_spool+=("${line#VMAUG-HOST: expect-spool }") ;;
        "VMAUG-QEMU-EXIT: "*)
            qemu_status=${line#VMAUG-QEMU-EXIT: } ;;
        esac
    done < <(
        set +e
        # no_timer_check: on a loaded host TCG can miss the IO-APIC timer
        # check, which panics the guest before it ran anything of ours.
        timeout --kill-after=10 "$timeout_s" "$qemu" \
            -accel tcg -m "$mem" -nodefaults -display none -serial stdio \
            -no-reboot -kernel "$KIMAGE" -initrd "$dir/initrd" \
            -append "console=ttyS0 panic=-1 quiet loglevel=4 no_timer_check" \
            -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
            "${devargs[@]}" "${extra[@]}" </dev/null 2>&1
        echo "VMAUG-QEMU-EXIT: $?"
    )
    if [ "$needs" = helper ]; then
        helper_stop
    fi

    # 33 = (0x10 << 1) | 1, written by /init after the scenario passed.
    if [ "$qemu_status" = 124 ] || [ "$qemu_status" = 137 ]; then
        reason="timed out after ${timeout_s}s"
        return 1
    fi
    if [ "$qemu_status" != 33 ] || ! grep -q '^VMAUG-RESULT: PASS$' "$log"; then
        reason=$(grep -m1 '^VMAUG-RESULT: ' "$log" | sed 's/^VMAUG-RESULT: //')
        if grep -q 'Kernel panic' "$log"; then
            reason="kernel panic"
        fi
        reason="${reason:-no result (QEMU exit $qemu_status)}"
        return 1
    fi
    local sha
    for sha in "${expected_sha[@]}"; do
        if ! helper_store_has "$sha"; then
            reason="the host store holds no file with SHA-256 $sha"
            return 1
        fi
        echo "host: the store holds a file with SHA-256 $sha" >>"$log"
    done
    for sha in "${expected_spool[@]}"; do
        if ! helper_spool_has "$sha"; then
            reason="the host spool holds no document with SHA-256 $sha"
            return 1
        fi
        echo "host: the spool holds a document with SHA-256 $sha" >>"$log"
    done
    return 0
}

