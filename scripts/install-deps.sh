#!/usr/bin/env bash
# Install everything vmaugment needs on a Debian 12 machine, idempotently.
#
# Package lists live in scripts/deps/*.txt, one per component, so each part
# of the project states its own needs.  Beside bookworm we need trixie's
# source packages (QEMU 10.0) and bookworm-backports (meson >= 1.5).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
sources=/etc/apt/sources.list.d/vmaugment.sources
stamp_dir=${XDG_CACHE_HOME:-$HOME/.cache}/vmaugment
stamp=$stamp_dir/deps.stamp

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: must run as root (apt-get)" >&2
    exit 1
fi

want_sources() {
    cat <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
}

packages() {
    cat "$here"/deps/*.txt | sed -e 's/#.*//' -e '/^[[:space:]]*$/d' | sort -u
}

mkdir -p "$stamp_dir"
digest=$( (want_sources; packages) | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ] && [ -f "$sources" ]; then
    exit 0
fi

if ! cmp -s <(want_sources) "$sources" 2>/dev/null; then
    want_sources > "$sources"
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2046
apt-get install -y -qq --no-install-recommends $(packages) >/dev/null
echo "$digest" > "$stamp"
