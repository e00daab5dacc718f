#!/usr/bin/env bash
# Run a command inside this host booted a second time: systemd as PID 1 of
# a systemd-nspawn container whose root is this host's own root filesystem
# under a throw-away overlay.  The command sees the same files (the clone
# with its builds, bound in writable; the caches) and a real service
# manager, and everything it installs, starts or writes outside the clone
# is discarded when it ends.
#
# For the libvirt test on machines whose init is not systemd (containers,
# CI runners): "systemctl start vmaugment-helper" is what docs/service.rst
# asks of a host owner, so that is what the test must run.
#
#   host-copy.sh COMMAND [ARG...]    exit status: the command's; 125 when
#                                    the copy could not be booted
set -uo pipefail

fail() {
    echo "host-copy: $*" >&2
    exit 125
}

[ $# -gt 0 ] || fail "usage: host-copy.sh COMMAND [ARG...]"
command -v systemd-nspawn >/dev/null ||
    fail "systemd-nspawn is not installed (Debian's systemd-container)"

# The clone, bound at its own path: systemd-nspawn mounts a fresh tmpfs
# on the container's /tmp, where a clone (a CI runner's, say) may live.
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dir=$(mktemp -d /tmp/vmaug-host-copy.XXXXXX) || fail "mktemp failed"
nspawn_pid=
cleanup() {
    if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
        # One SIGTERM: the container's systemd shuts down in order.
        kill -TERM "$nspawn_pid" 2>/dev/null
        for _ in $(seq 150); do
            kill -0 "$nspawn_pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL "$nspawn_pid" 2>/dev/null
        wait "$nspawn_pid" 2>/dev/null
    fi
    umount "$dir/root" 2>/dev/null
    umount "$dir/rw" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

# The overlay's upper layer lives in memory: it cannot sit inside its own
# lower layer, and what the command writes is meant to vanish.
mkdir -p "$dir/rw" "$dir/root"
mount -t tmpfs -o size=16g,mode=0755 vmaug-host-copy "$dir/rw" ||
    fail "cannot mount a tmpfs"
mkdir -p "$dir/rw/upper" "$dir/rw/work"
mount -t overlay vmaug-host-copy \
    -o "lowerdir=/,upperdir=$dir/rw/upper,workdir=$dir/rw/work" "$dir/root" ||
    fail "cannot mount an overlay of /"

# No machined and no scope unit (the host may have no systemd to ask), no
# journal shared with the host, whose machine id the copy has.
systemd-nspawn --quiet --register=no --keep-unit --link-journal=no \
    --machine="vmaug-copy-$$" --directory="$dir/root" --bind="$top" --boot \
    --console=pipe </dev/null >"$dir/boot.log" 2>&1 &
nspawn_pid=$!

# The container's PID 1 is the child of systemd-nspawn once it has become
# systemd; before that it is nspawn's own set-up process.
leader=
for _ in $(seq 300); do
    leader=$(pgrep -P "$nspawn_pid" -x systemd | head -n1)
    [ -n "$leader" ] && break
    kill -0 "$nspawn_pid" 2>/dev/null || break
    sleep 0.1
done
[ -n "$leader" ] || fail "the container did not start: $(tail -n 5 "$dir/boot.log")"

# nsenter's own --wd would keep a directory of the host's mount namespace.
inside() {
    nsenter --target "$leader" --all sh -c \
        'cd "$0" || exit 125; exec "$@"' "$PWD" "$@"
}
# Until systemd has made its private socket, systemctl answers nothing.
# "degraded" is fine: units of the host that cannot run in a container.
state=
for _ in $(seq 240); do
    state=$(inside systemctl is-system-running 2>/dev/null)
    case $state in running | degraded) break ;; esac
    sleep 0.5
done
case $state in
running | degraded) ;;
*) fail "the container's systemd did not finish booting (${state:-no answer})" ;;
esac

inside env VMAUGMENT_HOST_COPY=1 "$@"
