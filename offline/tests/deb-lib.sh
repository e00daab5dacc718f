# The update repository of the apt tests (sourced after lib.sh, bash): the
# fixture's own .deb files (make-fixtures.sh debs) rebuilt with newer
# versions, one with a conffile, one dropping a file, one gaining a
# dependency on a package the image lacks, one with a preinst; indexed
# with apt-ftparchive and signed with a throw-away OpenPGP key.
#
#   make_update_repo   -> $tmp/repo, its key $tmp/repo-key.gpg (and a key
#                         that did not sign it, $tmp/other-key.gpg), the
#                         sources in "${sources[@]}" (--apt-source ...),
#                         the fixture's versions in V_AUDIT, V_HOST,
#                         V_GPGV, V_PASSWD, V_NETBASE (exported), the
#                         fixture's .deb files in $debs
#   make_repo_keys     -> only the two keys (for another repository signed
#                         with index)
#   security_updates TREE POOL
#                      -> the real security updates of the minbase tree
#                         TREE (apt-get download), less those with a
#                         preinst, copied into POOL; their number in
#                         $nsecurity

need apt-ftparchive apt-utils
need gpg gpg
need dpkg-deb dpkg

# bump DEB SUITE [EDIT]: DEB rebuilt as VERSION+vo1 into the pool of SUITE,
# after EDIT (a function) changed its unpacked tree.
bump() {
    local deb=$1 suite=$2 edit=${3:-} work
    work=$tmp/debtrees/$(dpkg-deb -f "$deb" Package)
    rm -rf "$work"
    mkdir -p "$tmp/debtrees"
    dpkg-deb -R "$deb" "$work"
    sed -i -E 's/^(Version: .*)$/\1+vo1/' "$work/DEBIAN/control"
    [ -z "$edit" ] || "$edit" "$work"
    mkdir -p "$tmp/repo/pool/$suite"
    dpkg-deb -b --root-owner-group "$work" "$tmp/repo/pool/$suite/" >/dev/null
}
drop_manpage() {
    rm "$1/usr/share/man/man1/hostname.1.gz"
    sed -i '/man1\/hostname.1.gz/d' "$1/DEBIAN/md5sums"
}
need_netbase() {
    sed -i -E 's/^(Depends: .*)$/\1, netbase/' "$1/DEBIAN/control"
}

# index REPO: Packages and a signed InRelease per suite (apt-ftparchive).
index() {
    local repo=$1 s rel
    for s in bookworm-security bookworm-updates; do
        mkdir -p "$repo/dists/$s/main/binary-amd64"
        (cd "$repo" && apt-ftparchive packages "pool/$s") \
            >"$repo/dists/$s/main/binary-amd64/Packages"
        rel=$tmp/Release.$s
        apt-ftparchive -o APT::FTPArchive::Release::Suite="$s" \
            -o APT::FTPArchive::Release::Codename="$s" \
            -o APT::FTPArchive::Release::Origin=vmaugment-test \
            -o APT::FTPArchive::Release::Components=main \
            -o APT::FTPArchive::Release::Architectures=amd64 \
            release "$repo/dists/$s" >"$rel"
        gpg --batch --yes --local-user repo@example.invalid --clearsign \
            -o "$repo/dists/$s/InRelease" "$rel"
    done
    chmod -R a+rX "$repo"
}

# Versions of the fixture, whatever the archive had when it was built.
ver() { dpkg-deb -f "$debs"/"$1"_*.deb Version; }

# make_repo_keys: the repository's signing key in $tmp/repo-key.gpg (and
# one that did not sign it in $tmp/other-key.gpg), in a private GNUPGHOME
# whose agent the exit trap stops.
make_repo_keys() {
    export GNUPGHOME=$tmp/gnupg
    mkdir -m 700 "$GNUPGHOME"
    cleanup_repo() {
        gpgconf --kill all 2>/dev/null || true
        cleanup
    }
    trap cleanup_repo EXIT
    # apt runs as an unprivileged uid of its own: the repository and the
    # keyring must be readable by it.
    chmod 755 "$tmp"

    gpg --batch --quiet --passphrase '' --quick-gen-key \
        "vmaugment test repository <repo@example.invalid>" ed25519 sign never
    gpg --batch --export >"$tmp/repo-key.gpg"
    gpg --batch --quiet --passphrase '' --quick-gen-key \
        "someone else <else@example.invalid>" ed25519 sign never
    gpg --batch --export "else@example.invalid" >"$tmp/other-key.gpg"
}

# security_updates TREE POOL: the packages of the tree whose candidate
# version in the host apt's sources is newer and in a -security suite
# (Debian's archive, through apt-get download), less those with a preinst,
# which an offline unpack refuses (docs/offline.rst); copied into POOL,
# their number in $nsecurity.  The downloads are kept in the user's cache,
# one file per package version (apt checked its hash when it came).
security_updates() {
    local tree=$1 pool=$2 p v cand deb
    local cache=${XDG_CACHE_HOME:-$HOME/.cache}/vmaugment/offline/security-debs
    mkdir -p "$pool" "$cache" "$tmp/dl"
    while read -r p v; do
        cand=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ {print $2}')
        case $cand in ""|"(none)") continue ;; esac
        dpkg --compare-versions "$cand" gt "$v" || continue
        apt-cache madison "$p" | awk -F' *[|] *' -v c="$cand" \
            '$2 == c && $3 ~ /-security\// {f = 1} END {exit !f}' || continue
        # apt-get download's name: the epoch's colon as %3a.
        deb=$(find "$cache" -maxdepth 1 -name "${p}_${cand/:/%3a}_*.deb" |
              head -n 1)
        if [ -z "$deb" ]; then
            (cd "$tmp/dl" && apt-get -q=2 -o APT::Sandbox::User=root \
                download "$p=$cand") >"$tmp/dl.log" 2>&1 ||
                fail "apt-get download $p=$cand: $(cat "$tmp/dl.log")"
            mv "$tmp"/dl/*.deb "$cache/"
            deb=$(find "$cache" -maxdepth 1 -name "${p}_${cand/:/%3a}_*.deb" |
                  head -n 1)
        fi
        if dpkg-deb --ctrl-tarfile "$deb" | tar -t | grep -x './preinst' >/dev/null; then
            echo "# left out (preinst): $(basename "$deb")"
        else
            cp "$deb" "$pool/"
        fi
    done < <(dpkg-query --admindir="$tree/var/lib/dpkg" -W \
                 -f '${Package} ${Version}\n')
    nsecurity=$(find "$pool" -name '*.deb' | wc -l)
}

make_update_repo() {
    debs=$(bash "$here/make-fixtures.sh" debs)
    make_repo_keys

    bump "$debs"/libaudit-common_*.deb bookworm-security
    bump "$debs"/hostname_*.deb bookworm-security drop_manpage
    bump "$debs"/gpgv_*.deb bookworm-updates need_netbase
    bump "$debs"/base-passwd_*.deb bookworm-updates
    cp "$debs"/netbase_*.deb "$tmp/repo/pool/bookworm-updates/"
    grep -q '^/etc/libaudit.conf$' "$tmp/debtrees/libaudit-common/DEBIAN/conffiles" ||
        fail "libaudit-common has no conffile any more"
    [ -e "$tmp/debtrees/base-passwd/DEBIAN/preinst" ] ||
        fail "base-passwd has no preinst any more"
    index "$tmp/repo"
    sources=(--apt-source "file:$tmp/repo bookworm-security main"
             --apt-source "file:$tmp/repo bookworm-updates main")
    V_AUDIT=$(ver libaudit-common) V_HOST=$(ver hostname) V_GPGV=$(ver gpgv)
    V_PASSWD=$(ver base-passwd) V_NETBASE=$(ver netbase)
    export V_AUDIT V_HOST V_GPGV V_PASSWD V_NETBASE
}
