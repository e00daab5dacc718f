#!/usr/bin/env bash
# The Debian packages (debian/, docs/packaging.rst) as an installer meets
# them: built by dpkg-buildpackage from a copy of the tree, judged by
# lintian, installed with apt into a fresh Debian 12 minbase root (the
# offline tests' cached debootstrap tree) run as a systemd-nspawn
# container, used there, and purged.  The packages are judged by Debian's
# own tools (lintian, apt, dpkg-query, dkms, man, systemctl, pkg-config,
# gcc), never by our build's view of itself.
#
#   test-debian-packages.sh SRCDIR
#
# Needs root (the container) and the network for the Debian archive the
# first time: what apt downloads is kept under the user's cache directory.
set -uo pipefail

src=$(cd "$1" && pwd)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/vmaugment/debian-packages
export PATH=$PATH:/usr/sbin:/sbin

echo "1..11"
n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
# not_ok NAME LOG: the case failed; the end of LOG says why.
not_ok() {
    n=$((n + 1))
    echo "not ok $n - $1"
    [ -s "$2" ] && tail -n 40 "$2" | sed 's/^/# /'
}
# check NAME CMD...: one case, passing when CMD succeeds; CMD's output
# goes to the case's log.
check() {
    local name=$1 log start=$SECONDS
    shift
    log=$work/case-$((n + 1)).log
    if "$@" >"$log" 2>&1; then
        ok "$name"
    else
        not_ok "$name" "$log"
    fi
    echo "# $((SECONDS - start)) s"
}

[ "$(id -u)" -eq 0 ] || { echo "Bail out! needs root (systemd-nspawn)"; exit 1; }
for tool in dpkg-buildpackage dh lintian systemd-nspawn debootstrap git; do
    command -v "$tool" >/dev/null ||
        { echo "Bail out! $tool is missing (scripts/install-deps.sh)"; exit 1; }
done

work=$(mktemp -d -t vmaugment-debian.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$cache/archives" "$cache/lists"
exec 9>"$cache/.lock"
flock 9

# A copy of the tree as the checkout has it (modified files included,
# build directories and ignored files not), so that the package build
# never writes into the source directory.
tree=$work/src/vmaugment
mkdir -p "$tree"
if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
    git -C "$src" ls-files -co --exclude-standard -z |
        (cd "$src" && tar -c --null -T -) | tar -x -C "$tree"
else
    (cd "$src" && tar -c --exclude=./build .) | tar -x -C "$tree"
fi

# Every package debian/control names; the module SDK's only when the tree
# installs the SDK (debian/rules).
ours=()
if [ -f "$tree/debian/control" ]; then
    mapfile -t ours < <(sed -n 's/^Package: *//p' "$tree/debian/control")
fi
upstream_version=$(sed -n "s/^ *version: *'\([^']*\)'.*/\1/p" "$src/meson.build" |
                   head -n 1)

build() {
    local jobs deb missing=()
    jobs=$(nproc)
    (cd "$tree" &&
     DEB_BUILD_OPTIONS="parallel=$jobs" nice dpkg-buildpackage -b -us -uc) ||
        return 1
    [ ${#ours[@]} -gt 0 ] || { echo "debian/control names no package"; return 1; }
    for p in "${ours[@]}"; do
        deb=$(ls "$work/src/${p}_"*.deb 2>/dev/null)
        if [ -z "$deb" ] && [ "$p" != vmaugment-module-dev ]; then
            missing+=("$p")
        fi
    done
    [ ${#missing[@]} -eq 0 ] || { echo "not built: ${missing[*]}"; return 1; }
}
check "dpkg-buildpackage -b builds every package from a copy of the tree" build

check "lintian --fail-on error,warning finds nothing" \
    lintian --fail-on error,warning "$work/src/"*.changes

# The container: a copy of the cached minbase tree, apt's downloads kept
# across runs.
root=$work/root
minbase=$("$src/offline/tests/make-fixtures.sh" minbase)
cp -a "$minbase" "$root"
rm -f "$root/.complete"
# The packages and the test's own files, in a directory of the root that
# the comparison of its files leaves out.
mkdir -p "$root/vmaugment-test"
for deb in "$work/src/"*.deb; do
    case $deb in *-dbgsym_*) ;; *) [ -e "$deb" ] && cp "$deb" "$root/vmaugment-test/" ;; esac
done
in_root() {
    systemd-nspawn -q --register=no --keep-unit -D "$root" --pipe \
        --bind="$cache/archives:/var/cache/apt/archives" \
        --bind="$cache/lists:/var/lib/apt/lists" \
        --setenv=DEBIAN_FRONTEND=noninteractive --setenv=LC_ALL=C.UTF-8 \
        --setenv=SYSTEMD_COLORS=0 \
        -- "$@"
}
# The root's files, but for what changes without any package's doing.
snapshot() {
    (cd "$root" && find . \( -path ./proc -o -path ./sys -o -path ./dev \
        -o -path ./run -o -path ./tmp -o -path ./var/cache -o -path ./var/log \
        -o -path ./var/lib/apt -o -path ./var/lib/dpkg -o -path ./vmaugment-test \) \
        -prune -o -print) | sort
}
# The kernel whose headers the root has (linux-headers-amd64's).
root_kernel() {
    in_root dpkg-query -W -f '${Depends}' linux-headers-amd64 |
        sed -n 's/.*linux-headers-\([^ ,]*\).*/\1/p'
}
names_of() { local d; for d in "$root"/vmaugment-test/*.deb; do dpkg-deb -f "$d" Package; done; }

# What the packages need from Debian, and what the checks below use
# (man, a compiler, kernel headers for DKMS), installed first: the root
# is then snapshot, so that purging ours can be compared with it.  That
# root is kept in the cache, named by the minbase tree's packages and
# every package version apt would install into it: the same versions
# make the same root, and a Debian update (or a new dependency of ours)
# makes a new one.
prepare() {
    local d field deps=() mine want key kept
    mine=" $(names_of | tr '\n' ' ') "
    for d in "$root"/vmaugment-test/*.deb; do
        for field in Pre-Depends Depends; do
            while IFS= read -r dep; do
                dep=${dep#"${dep%%[![:space:]]*}"}
                [ -n "$dep" ] || continue
                case $mine in *" ${dep%%[ (:|]*} "*) continue ;; esac
                deps+=("$dep")
            done < <(dpkg-deb -f "$d" "$field" | tr ',' '\n')
        done
    done
    want="man-db, gcc, libc6-dev, pkgconf, linux-headers-amd64"
    [ ${#deps[@]} -eq 0 ] || want+=", $(IFS=,; echo "${deps[*]}")"
    in_root apt-get update -qq || return 1
    key=$( { cat "$minbase/var/lib/dpkg/status"; in_root apt-get satisfy -s \
             --no-install-recommends "$want" | grep '^Inst ' | sort; } |
          sha256sum | cut -c1-16) || return 1
    kept=$cache/roots/$key
    if [ -f "$kept/.complete" ]; then
        echo "the root with Debian's packages, from the cache: $key"
        mv "$root/vmaugment-test" "$work/debs"
        rm -rf "$root"
        cp -a "$kept" "$root" || return 1
        rm -f "$root/.complete"
        mv "$work/debs" "$root/vmaugment-test"
    else
        in_root apt-get satisfy -y -qq --no-install-recommends "$want" ||
            return 1
        # The kernel's module indexes, as they would be with its image
        # installed: DKMS runs depmod, which makes them.
        in_root depmod "$(root_kernel)" || return 1
        rm -rf "$cache/roots"
        mkdir -p "$kept"
        (cd "$root" && tar -c --exclude=./vmaugment-test .) |
            tar -x -C "$kept" && touch "$kept/.complete" || return 1
    fi
    snapshot >"$work/before"
    ls "$root"/vmaugment-test/*.deb >/dev/null || return 1
    in_root sh -c 'apt-get install -y -qq --no-install-recommends \
        /vmaugment-test/*.deb'
}
check "apt-get installs the packages into a Debian 12 minbase root" prepare

# Every command our packages install answers --version with the version.
versions() {
    local tools fail=0
    tools=$(in_root sh -c "dpkg -L $(names_of | tr '\n' ' ')" |
            grep -E '^/usr/s?bin/[^/]+$' | sort -u)
    [ -n "$tools" ] || { echo "no command installed"; return 1; }
    for t in $tools; do
        out=$(in_root "$t" --version 2>&1)
        if [ $? -ne 0 ] || ! grep -qF "$upstream_version" <<<"$out"; then
            echo "$t --version: $out"
            fail=1
        else
            echo "$t: ${out%%$'\n'*}"
        fi
    done
    return $fail
}
check "every installed command answers --version with $upstream_version" versions

manual() {
    local out tools t fail=0
    out=$(in_root sh -c 'MANWIDTH=80 man -P cat vmaugment-offline') || return 1
    grep -q '^NAME' <<<"$out" && grep -q 'vmaugment-offline' <<<"$out" ||
        { echo "$out"; return 1; }
    tools=$(in_root sh -c "dpkg -L $(names_of | tr '\n' ' ')" |
            grep -E '^/usr/s?bin/[^/]+$' | sort -u)
    for t in $tools; do
        in_root man -w "${t##*/}" || { echo "no manual page: $t"; fail=1; }
    done
    return $fail
}
check "man vmaugment-offline renders; every command has a manual page" manual

# dh_dkms's postinst registers the source; DKMS builds it for the kernel
# whose headers the root has, and the module is the driver of virtio
# device 63.
dkms_built() {
    local kver status
    kver=$(root_kernel)
    [ -n "$kver" ] || { echo "no kernel headers in the root"; return 1; }
    status=$(in_root dkms status) || return 1
    echo "$status"
    grep -q "^vmaugment/$upstream_version, $kver, [^:]*: installed" <<<"$status" ||
        return 1
    # Whole outputs, then grep: with pipefail, grep -q leaving a pipe
    # early would fail the writer with SIGPIPE.
    aliases=$(in_root modinfo -F alias \
        "/lib/modules/$kver/updates/dkms/vmaugment.ko") || return 1
    grep -q '^virtio:d0000003Fv' <<<"$aliases"
}
check "DKMS registers the driver and builds it for the root's kernel" dkms_built

conffile() {
    local conffiles

    conffiles=$(in_root dpkg-query -W -f '${Conffiles}\n' vmaugment-host) &&
        grep -q '^ /etc/vmaugment/helper.conf [0-9a-f]\{32\}$' \
            <<<"$conffiles" &&
        [ -f "$root/etc/vmaugment/helper.conf" ]
}
check "/etc/vmaugment/helper.conf is a registered conffile" conffile

check "the system group vmaugment exists" in_root getent group vmaugment

# The units are the ones the tree has; the helper's socket is enabled.
units() {
    local u known fail=0
    known=$(in_root systemctl list-unit-files --no-legend 'vmaugment*') || return 1
    echo "$known"
    for u in $(cd "$src" && find . -path ./build -prune -o -path ./debian -prune -o \
                 \( -name '*.service.in' -o -name '*.socket' -o -name '*.socket.in' \
                    -o -name '*.timer' -o -name '*.timer.in' \) \
                 -print | sed 's|.*/||; s|\.in$||' | sort -u); do
        grep -q "^$u " <<<"$known" || { echo "not installed: $u"; fail=1; }
    done
    [ "$(in_root systemctl is-enabled vmaugment-helper.socket)" = enabled ] ||
        { echo "vmaugment-helper.socket is not enabled"; fail=1; }
    return $fail
}
check "the systemd units are installed and the helper's socket enabled" units

# A guest program built with libvmaugment-dev's pkg-config file, run
# against the installed shared library.
library() {
    cat >"$root/vmaugment-test/client.c" <<'C'
#include <stdio.h>
#include <vmaugment/vmaugment.h>

int main(void)
{
    vmaug_client *client = NULL;
    int ret = vmaug_client_open("/nonexistent/vmaugment", &client);

    printf("open: %s\n", vmaug_strerror(ret));
    return ret < 0 ? 0 : 1;
}
C
    local out

    out=$(in_root sh -c 'cd /vmaugment-test &&
        gcc -Wall -Werror -o client client.c \
            $(pkg-config --cflags --libs libvmaugment) &&
        ./client && ldd client') || { echo "$out"; return 1; }
    echo "$out"
    grep -q 'libvmaugment\.so\.0 => /' <<<"$out"
}
check "a program built with pkg-config libvmaugment links the library" library

purge() {
    [ -n "$(names_of)" ] || { echo "no package to purge"; return 1; }
    in_root sh -c "apt-get purge -y -qq $(names_of | tr '\n' ' ')" || return 1
    snapshot >"$work/after"
    diff -u "$work/before" "$work/after"
}
check "purging the packages leaves no file behind" purge
