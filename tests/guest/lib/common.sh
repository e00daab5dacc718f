# shellcheck shell=sh
# Functions for guest scenarios (busybox sh).  Scenarios run with sh -e:
# any failing command fails the scenario.

# shellcheck disable=SC2034 # used by the scenarios
VMAUG_KO=/lib/vmaug/vmaugment.ko
# Which boot of the scenario's image this is ("# boots: N"), from 1; the
# runner puts vmaug_boot=N on the kernel command line, which hands it to
# /init as an environment variable.
# shellcheck disable=SC2034,SC2154 # used by the scenarios; set by the kernel
VMAUG_BOOT=${vmaug_boot:-1}

# Print an error and fail the scenario.
fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# The scenario cannot run in this guest (a kernel feature it needs is
# missing): end it as skipped.  The runner counts a skip apart and never as
# a pass; /init reports it only if the scenario ended through here.
skip() {
    echo "$*" >/run/vmaug-skip
    echo "SKIP: $*" >&2
    exit 77
}

# Ask the host runner to do something (see tests/guest/run.sh).
host_action() {
    echo "VMAUG-HOST: $*"
}

# What went wrong in the kernel, if anything: oops, BUG, warning, taint.
vmaug_kernel_verdict() {
    # Taint bits: 7 D (died), 9 W (warning), 14 L (soft lockup),
    # 5 B (bad page), 4 M (machine check).  O and E (our module) are fine.
    t=$(cat /proc/sys/kernel/tainted)
    bad=$(( t & ((1 << 7) | (1 << 9) | (1 << 14) | (1 << 5) | (1 << 4)) ))
    if [ "$bad" -ne 0 ]; then
        echo "tainted $t"
        return
    fi
    if dmesg | grep -E -q 'Oops|BUG:|WARNING:|general protection|Call Trace|KASAN|refcount_t:|list_(add|del) corruption'; then
        dmesg | grep -E -m1 'Oops|BUG:|WARNING:|general protection|Call Trace|KASAN|refcount_t:|list_(add|del) corruption'
    fi
}

# Wait up to $2 seconds for the device's view of the host helper to be $1
# (connected or disconnected).
wait_helper() {
    i=0
    while [ "$i" -lt "$(( $2 * 10 ))" ]; do
        if vmaugment --json version 2>/dev/null |
           grep -q "\"helper\":\"$1\""; then
            return 0
        fi
        usleep 100000
        i=$((i + 1))
    done
    fail "host helper not $1 after $2 s"
}

# Run "$@", which must fail with exit status $1 and print $2 (a grep -E
# pattern) on stdout or stderr.
expect_fail() {
    want=$1 pattern=$2
    shift 2
    set +e
    out=$("$@" 2>&1)
    got=$?
    set -e
    echo "$out"
    [ "$got" -eq "$want" ] || fail "'$*' exited $got, expected $want"
    echo "$out" | grep -E -q "$pattern" || fail "'$*' did not say '$pattern'"
}

# Wait for the background processes "$@" (in this shell: a subshell
# cannot wait for them); sets $failed to how many failed.
wait_all() {
    failed=0
    for p in "$@"; do
        wait "$p" || failed=$((failed + 1))
    done
}

# Wait up to 30 s for file $1 to contain a line matching $2.
wait_for_line() {
    i=0
    until grep -q "$2" "$1" 2>/dev/null; do
        [ "$i" -lt 300 ] || fail "no '$2' in $1 after 30 s"
        usleep 100000
        i=$((i + 1))
    done
}

# wait_config MODULE KEY VALUE: until the module's configuration KEY reads
# VALUE (a host-side change the helper reads at its next look), 30 s.
wait_config() {
    i=0
    until [ "$(vmaugment config get "$1" "$2")" = "$3" ]; do
        [ "$i" -lt 300 ] || fail "$1's $2 is not '$3' after 30 s"
        usleep 100000
        i=$((i + 1))
    done
}

# Mount the root filesystem of the "# image: debian" disk (/dev/vda1, the
# fixture's ext4 root) read-write on $1, loading virtio_blk and ext4
# first.  Unmount it before the scenario ends: /init powers off without
# syncing.
mount_image_root() {
    while read -r ko opt; do
        if [ "$ko" = "?" ]; then
            # An accelerated variant the CPU may lack; the generic one
            # follows in the list.
            insmod "$opt" 2>/dev/null || true
        else
            insmod "$ko" || fail "cannot load $ko"
        fi
    done </lib/vmaug/disk-modules.order
    i=0
    until [ -b /dev/vda1 ]; do
        [ "$i" -lt 100 ] || fail "no /dev/vda1 after 10 s"
        usleep 100000
        i=$((i + 1))
    done
    mkdir -p "$1"
    mount -t ext4 -o rw /dev/vda1 "$1" || fail "cannot mount /dev/vda1"
    [ -f "$1/etc/debian_version" ] || fail "/dev/vda1 is not the Debian root"
}
