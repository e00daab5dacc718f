#!/bin/sh
# meson install step: put the example helper.conf in place unless the host
# owner already has one.
#   install-conf.sh CONF DIR   (DIR relative to the prefix, or absolute)
set -eu
case $2 in
/*) dir=${DESTDIR:-}$2 ;;
*) dir=${DESTDIR:-}${MESON_INSTALL_PREFIX}/$2 ;;
esac
mkdir -p "$dir"
if [ ! -e "$dir/helper.conf" ]; then
    install -m 0644 "$1" "$dir/helper.conf"
fi
