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
# QEMU arguments of the scenario's disk ("# image: debian").
scenario_disk_args=()

# shellcheck source=tests/guest/lib/helper.sh
. "$here/lib/helper.sh"
# shellcheck source=tests/guest/lib/repo.sh
. "$here/lib/repo.sh"

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
    local base=$work/initramfs optional
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
    # The disk of "# image: debian" scenarios: virtio_blk and ext4, loaded
    # by mount_image_root (common.sh) only, so that other scenarios boot as
    # before.  ext4's soft dependency crc32c comes as the x86 accelerated
    # driver, which refuses a CPU without SSE4.2, and the generic one: a
    # line "? MODULE" may fail to load.
    : >"$base/lib/vmaug/disk-modules.order"
    for ko in $(for m in virtio_blk ext4; do
                    modprobe -d "$kroot" -S "$KVER" --show-depends "$m"
                done | awk '$1 == "insmod" {print $2}'); do
        if ! grep -q "/$(basename "$ko")\$" "$base/lib/vmaug/modules.order" \
                "$base/lib/vmaug/disk-modules.order"; then
            cp "$ko" "$base/lib/vmaug/mods/"
            optional=
            case $ko in
            */arch/*/crypto/*) optional='? ' ;;
            esac
            echo "$optional/lib/vmaug/mods/$(basename "$ko")" \
                >>"$base/lib/vmaug/disk-modules.order"
        fi
    done
    grep -q '/ext4\.ko$' "$base/lib/vmaug/disk-modules.order" ||
        die "no ext4 module found"
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

# The initrd of one scenario: the shared part, then the scenario script
# and its packages in $dir/initrd.
scenario_initrd() {
    local file=$1 dir=$2
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
}

# Copy stdin to stdout and write the host's clock (seconds.microseconds)
# into $1 the moment the first byte arrives.  Bash reads a pipe one byte
# at a time and $EPOCHREALTIME needs no fork: the stamp is late by
# microseconds, never early.
stamp_first_byte() {
    local c
    if IFS= read -r -d '' -n 1 c; then
        printf '%s\n' "${EPOCHREALTIME/,/.}" >"$1"
        printf '%s' "$c"
        cat
    fi
}

# For the .host files of scenarios: a line of the host's own findings, in
# the console log (and on stderr in verbose runs).
host_say() {
    printf 'host: %s\n' "$*" >>"$scenario_log"
    if [ "$verbose" = 1 ]; then
        printf '  | host: %s\n' "$*" >&2
    fi
}

# host_wait_for FILE REGEX SECONDS: wait for a line of FILE to match.
host_wait_for() {
    local _
    for _ in $(seq $(($3 * 20))); do
        grep -E -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

# boot_first_byte N: the host's time of the first console byte of boot N.
boot_first_byte() {
    cat "$scenario_dir/boot-$1.first-byte" 2>/dev/null
}

# boot_firmware_byte N: the same for the firmware's debug console
# ("# image: yes"), the guest's earliest output.
boot_firmware_byte() {
    cat "$scenario_dir/boot-$1.fw-first-byte" 2>/dev/null
}

# boot_launched N: the host's time just before QEMU of boot N was started.
boot_launched() {
    cat "$scenario_dir/boot-$1.launched" 2>/dev/null
}

# qmp_event N NAME: the first QMP event NAME of boot N ("# image: yes"),
# one JSON line.
qmp_event() {
    grep -m1 "\"event\": \"$2\"" "$scenario_dir/boot-$1.qmp.jsonl" 2>/dev/null
}

# A guest's "VMAUG-HOST: scenario WORDS": the .host file's host_request
# with WORDS, while the guest runs; the guest learns the outcome only
# through what the request changes, so a failure is logged here.
host_scenario_request() {
    local words=()
    read -r -a words <<<"$1"
    reason=
    if host_request "${words[@]}"; then
        host_say "did '$1' for the guest"
    else
        host_say "'$1' for the guest failed: ${reason:-no reason}"
    fi
}

# Run one boot of the scenario's image; sets qemu_status and the
# expectations the guest asked for.
boot_qemu() {
    local n=$1 timeout_s=$2 mem=$3 line
    local blog=$scenario_dir/boot-$n.console.log
    local devargs=(-device vmaugment-pci) extra=() qmp=()
    read -r -a extra <<<"$(meta "$scenario_file" qemu "")"
    extra+=("${scenario_disk_args[@]}")
    if [ -n "$helper_dir" ]; then
        devargs=("${helper_qemu_args[@]}")
    fi
    local logger='' fwlog=''
    if [ -n "$helper_image" ]; then
        # QEMU waits for the logger: no event of the start is missed.
        rm -f "$helper_sock_dir/qmp.sock"
        python3 "$here/lib/qmp.py" log "$helper_sock_dir/qmp.sock" \
            "$scenario_dir/boot-$n.qmp.jsonl" \
            2>"$scenario_dir/boot-$n.qmp.err" &
        logger=$!
        qmp=(-qmp "unix:$helper_sock_dir/qmp.sock,server=on,wait=on")
        # The firmware's debug console: the guest's earliest output, its
        # first byte stamped like the serial console's.
        local fw=$scenario_dir/boot-$n.fw
        mkfifo "$fw.in" "$fw.out"
        stamp_first_byte "$scenario_dir/boot-$n.fw-first-byte" <"$fw.out" \
            >"$scenario_dir/boot-$n.firmware.log" &
        fwlog=$!
        # shellcheck disable=SC2054 # commas of QEMU options
        qmp+=(-chardev "pipe,id=vmaugfw,path=$fw"
              -device isa-debugcon,iobase=0x402,chardev=vmaugfw)
    fi
    qemu_status=none
    : >"$blog"
    printf '%s\n' "${EPOCHREALTIME/,/.}" >"$scenario_dir/boot-$n.launched"
    while IFS= read -r line; do
        line=${line%$'\r'}
        printf '%s\n' "$line" >>"$blog"
        printf '%s\n' "$line" >>"$scenario_log"
        [ "$verbose" = 1 ] && printf '  | %s\n' "$line" >&2
        case $line in
        "VMAUG-HOST: kill-helper")
            helper_kill ;;
        "VMAUG-HOST: start-helper")
            helper_start || echo "start-helper failed: $helper_error" >>"$scenario_log" ;;
        "VMAUG-HOST: stop-helper")
            helper_signal STOP ;;
        "VMAUG-HOST: cont-helper")
            helper_signal CONT ;;
        "VMAUG-HOST: expect-sha256 "*)
            expected_sha+=("${line#VMAUG-HOST: expect-sha256 }") ;;
        "VMAUG-HOST: expect-spool "*)
            expected_spool+=("${line#VMAUG-HOST: expect-spool }") ;;
        "VMAUG-HOST: scenario "*)
            host_scenario_request "${line#VMAUG-HOST: scenario }" ;;
        "VMAUG-QEMU-EXIT: "*)
            qemu_status=${line#VMAUG-QEMU-EXIT: } ;;
        esac
    done < <(
        set +e
        # no_timer_check: on a loaded host TCG can miss the IO-APIC timer
        # check, which panics the guest before it ran anything of ours.
        # The kernel hands vmaug_boot=N to /init as an environment variable.
        timeout --kill-after=10 "$timeout_s" "$qemu" \
            -accel tcg -m "$mem" -nodefaults -display none -serial stdio \
            -no-reboot -kernel "$KIMAGE" -initrd "$scenario_dir/initrd" \
            -append "console=ttyS0 panic=-1 quiet loglevel=4 no_timer_check vmaug_boot=$n" \
            -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
            "${devargs[@]}" "${qmp[@]}" "${extra[@]}" </dev/null \
            2>"$scenario_dir/boot-$n.stderr" |
            stamp_first_byte "$scenario_dir/boot-$n.first-byte"
        echo "VMAUG-QEMU-EXIT: ${PIPESTATUS[0]}"
    )
    # QEMU's own messages after the guest's (less its note that it waits
    # for the QMP logger).
    { grep -v 'info: QEMU waiting for connection on' \
          "$scenario_dir/boot-$n.stderr" || true; } |
        sed 's/^/qemu: /' | tee -a "$blog" >>"$scenario_log"
    if [ -n "$logger" ]; then
        wait "$logger" 2>/dev/null || true
    fi
    if [ -n "$fwlog" ]; then
        # Opening the fifo ends a reader still waiting for QEMU to open it;
        # closing it again leaves no writer: the reader sees the end.
        local fd
        exec {fd}<>"$scenario_dir/boot-$n.fw.out"
        exec {fd}>&-
        wait "$fwlog" 2>/dev/null || true
        rm -f "$scenario_dir/boot-$n.fw.in" "$scenario_dir/boot-$n.fw.out"
    fi
}

# Judge boot N by the guest's marker and QEMU's status, or, with
# "# boot N: expect-refused REGEX", by QEMU refusing the start.  Returns 0
# pass, 1 fail, 2 the guest could not run the scenario (skip()).
judge_boot() {
    local n=$1 timeout_s=$2 refused=$3
    local blog=$scenario_dir/boot-$n.console.log
    if [ "$qemu_status" = 124 ] || [ "$qemu_status" = 137 ]; then
        reason="timed out after ${timeout_s}s"
        return 1
    fi
    if [ -n "$refused" ]; then
        local msg
        # error_report() puts the program's name first.
        msg=$(grep -m1 -o 'vmaugment: image start refused: .*' \
                  "$scenario_dir/boot-$n.stderr" || true)
        if [ "$qemu_status" != 1 ]; then
            reason="QEMU exited $qemu_status, not 1 (refused start)"
        elif [ -z "$msg" ]; then
            reason="QEMU did not say 'vmaugment: image start refused: ...'"
        elif ! grep -E -q -- "$refused" <<<"$msg"; then
            reason="the refusal does not match '$refused': $msg"
        elif [ -s "$scenario_dir/boot-$n.first-byte" ] ||
             [ -s "$scenario_dir/boot-$n.fw-first-byte" ]; then
            reason="the guest (or its firmware) ran although its start was refused"
        else
            host_say "QEMU refused the start as expected: $msg"
            return 0
        fi
        return 1
    fi
    # 37 = (0x12 << 1) | 1, written by /init for a scenario that ended
    # through skip() with a clean kernel.
    if [ "$qemu_status" = 37 ] && grep -q '^VMAUG-RESULT: SKIP ' "$blog"; then
        reason=$(sed -n 's/^VMAUG-RESULT: SKIP //p' "$blog" | head -n1)
        return 2
    fi
    # 33 = (0x10 << 1) | 1, written by /init after the scenario passed.
    if [ "$qemu_status" != 33 ] || ! grep -q '^VMAUG-RESULT: PASS$' "$blog"; then
        reason=$(grep -m1 '^VMAUG-RESULT: ' "$blog" | sed 's/^VMAUG-RESULT: //')
        if grep -q 'Kernel panic' "$blog"; then
            reason="kernel panic"
        fi
        reason="${reason:-no result (QEMU exit $qemu_status)}"
        reason+=$(grep -m1 '^qemu: ' "$blog" | sed 's/^/; /')
        return 1
    fi
    local sha
    for sha in "${expected_sha[@]}"; do
        if ! helper_store_has "$sha"; then
            reason="the host store holds no file with SHA-256 $sha"
            return 1
        fi
        echo "host: the store holds a file with SHA-256 $sha" >>"$scenario_log"
    done
    for sha in "${expected_spool[@]}"; do
        if ! helper_spool_has "$sha"; then
            reason="the host spool holds no document with SHA-256 $sha"
            return 1
        fi
        echo "host: the spool holds a document with SHA-256 $sha" >>"$scenario_log"
    done
}

# One boot: its "# boot N:" directives, the .host hooks, QEMU, the verdict
# (returned as judge_boot's).
scenario_boot() {
    local n=$1 timeout_s=$2 mem=$3 d refused='' rc=0
    while read -r d; do
        case $d in
        "repository "*)
            { repo_mode "$scenario_dir/host/repository" "${d#repository }" &&
              helper_start; } ||
                { reason="boot $n: $helper_error"; return 1; } ;;
        "expect-refused "*)
            refused=${d#expect-refused } ;;
        *)
            reason="unknown directive '# boot $n: $d'"
            return 1 ;;
        esac
    done < <(sed -n "s/^# boot $n: *//p" "$scenario_file")
    if [ "$boots" -gt 1 ]; then
        echo "=== boot $n of $boots" >>"$scenario_log"
        [ "$verbose" = 1 ] && printf '  | === boot %s of %s\n' "$n" "$boots" >&2
    fi
    host_before_boot "$n" || { reason="boot $n: ${reason:-host check failed}"; return 1; }
    local expected_sha=() expected_spool=()
    boot_qemu "$n" "$timeout_s" "$mem"
    judge_boot "$n" "$timeout_s" "$refused" || rc=$?
    if [ "$rc" -ne 0 ]; then
        reason="boot $n: $reason"
        return "$rc"
    fi
    host_after_boot "$n" || { reason="boot $n: ${reason:-host check failed}"; return 1; }
}

# host_tools_missing TOOL...: the tools of the list the host lacks.
host_tools_missing() {
    local t missing=()
    for t in "$@"; do
        command -v "$t" >/dev/null 2>&1 || missing+=("$t")
    done
    echo "${missing[*]}"
}

# The scenario's host side before its first boot: the image, the
# repository, the helper, the .host hooks.  Returns 2 if a tool the
# scenario needs is missing on the host.
scenario_host() {
    local file=$1 needs image repo missing tools=()
    needs=$(meta "$file" needs "")
    image=$(meta "$file" image no)
    repo=$(meta "$file" repository "")
    # The QMP logger and the repository server are Python; the repository's
    # certificates come from certtool.
    # "# image: debian" copies the offline tests' fixture, which the
    # first run builds (debootstrap, sfdisk, mke2fs).
    case $image in
    yes) tools+=(python3) ;;
    debian) tools+=(python3 debootstrap sfdisk mke2fs) ;;
    no) ;;
    *)
        reason="unknown '# image: $image'"
        return 1 ;;
    esac
    if [ -n "$repo" ]; then
        tools+=(python3 certtool)
    fi
    missing=$(host_tools_missing "${tools[@]}")
    if [ -n "$missing" ]; then
        reason="the host lacks $missing"
        return 2
    fi
    helper_image=
    helper_repo_args=()
    helper_extra_args=()
    scenario_disk_args=()
    host_before_boot() { :; }
    host_after_boot() { :; }
    host_request() { reason="the scenario has no host_request"; return 1; }
    if [ -f "${file%.sh}.host" ]; then
        # shellcheck disable=SC1090 # per scenario
        . "${file%.sh}.host"
    fi
    if [ "$image" = yes ]; then
        # The device names the image; the VM itself boots the initramfs.
        mkdir -p "$scenario_dir/host/images"
        helper_image=$scenario_dir/host/images/disk.img
        truncate -s 16M "$helper_image"
        needs=helper
    elif [ "$image" = debian ]; then
        local fixture
        fixture=$(PATH=$PATH:/usr/sbin:/sbin VMAUGMENT_QEMU_IMG=$qemu_build/qemu-img \
                  bash "$root/offline/tests/make-fixtures.sh" linux \
                  2>"$scenario_dir/fixture.log") ||
            { reason="cannot build the Debian fixture: $(tail -n 3 "$scenario_dir/fixture.log")"
              return 1; }
        mkdir -p "$scenario_dir/host/images"
        # A copy: the scenario writes to it, the cache stays as built.
        helper_image=$scenario_dir/host/images/debian.qcow2
        cp "$fixture/debian.qcow2" "$helper_image"
        # shellcheck disable=SC2054 # commas of QEMU options
        scenario_disk_args=(
            -drive "file=$helper_image,format=qcow2,if=none,id=vmaugdisk"
            -device virtio-blk-pci,drive=vmaugdisk)
        needs=helper
    fi
    if [ -n "$repo" ]; then
        mkdir -p "$scenario_dir/host/repository"
        sed -n 's/^# repo-module: *//p' "$file" >"$scenario_dir/host/repo-modules"
        { repo_publish "$scenario_dir/host/repository" "$scenario_dir/host/repo-modules" &&
          repo_mode "$scenario_dir/host/repository" "$repo"; } ||
            { reason="repository: $helper_error"; return 1; }
        needs=helper
    fi
    if [ "$needs" = helper ]; then
        helper_setup "$scenario_dir/host" ||
            { reason="host helper: $helper_error"; return 1; }
    fi
}

# Boot one scenario, once or "# boots: N" times with the same image, store
# and helper.  Returns 0 pass, 1 fail, 2 skipped (it could not run: a
# prerequisite is missing); sets $reason unless it passed.
run_scenario() {
    scenario_file=$1
    local name
    name=$(basename "$scenario_file" .sh)
    scenario_dir=$work/run/$name
    scenario_log=$scenario_dir/console.log
    # The helper's store keeps its audit log append-only.
    if [ -d "$scenario_dir/host" ]; then
        chattr -R -a "$scenario_dir/host" 2>/dev/null || true
    fi
    rm -rf "$scenario_dir"
    mkdir -p "$scenario_dir"
    : >"$scenario_log"
    scenario_initrd "$scenario_file" "$scenario_dir" || return 1

    local timeout_s mem n rc=0
    timeout_s=$(meta "$scenario_file" timeout 120)
    mem=$(meta "$scenario_file" memory 512M)
    boots=$(meta "$scenario_file" boots 1)
    helper_dir=
    scenario_host "$scenario_file" || rc=$?
    if [ "$rc" -eq 0 ]; then
        for n in $(seq "$boots"); do
            scenario_boot "$n" "$timeout_s" "$mem" || { rc=$?; break; }
        done
    fi
    helper_stop
    repo_stop
    helper_dir=
    return $rc
}
