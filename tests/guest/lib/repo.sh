# shellcheck shell=bash disable=SC2154,SC2034 # shares variables with harness.sh
# The module repository of scenarios with "# repository: up|down": the
# packages named by "# repo-module: NAME VERSION" lines, published and
# signed with vmaugment-repo by the test administrator, served over HTTPS
# on loopback by repository/tests/repo-server.py with a certificate of a
# test CA that only the helper is told about (--repository-ca).
# Sourced by harness.sh; functions set helper_error when they fail.

repo_pid=
repo_fd=
repo_url=
# Nothing listens on port 1 of the loopback (only root could bind it): a
# repository that is down refuses the connection at once.
repo_down_url=https://127.0.0.1:1/repo/

# The test CA and the server certificate (127.0.0.1), made once.
repo_certs() {
    local d=$work/keys/repo
    [ -f "$d/server.crt" ] && return 0
    rm -rf "$d"
    mkdir -p "$d"
    printf 'cn = "vmaugment test repository CA"\nca\ncert_signing_key\nexpiration_days = 30\n' \
        >"$d/ca.tmpl"
    printf 'cn = "127.0.0.1"\nip_address = "127.0.0.1"\ntls_www_server\nsigning_key\nencryption_key\nexpiration_days = 30\n' \
        >"$d/server.tmpl"
    if ! { certtool --generate-privkey --key-type=ecdsa --outfile "$d/ca.key" &&
           certtool --generate-self-signed --load-privkey "$d/ca.key" \
               --template "$d/ca.tmpl" --outfile "$d/ca.crt" &&
           certtool --generate-privkey --key-type=ecdsa --outfile "$d/server.key" &&
           certtool --generate-certificate --load-privkey "$d/server.key" \
               --load-ca-certificate "$d/ca.crt" --load-ca-privkey "$d/ca.key" \
               --template "$d/server.tmpl" --outfile "$d/server.crt"
         } >"$d/certtool.log" 2>&1; then
        helper_error="certtool failed: $(tail -n 3 "$d/certtool.log")"
        rm -f "$d/server.crt"
        return 1
    fi
}

# repo_publish DIR FILE: publish the modules listed in FILE ("NAME VERSION"
# lines) as a signed repository in DIR/repo.
repo_publish() {
    local dir=$1 list=$2 name version pkgs=()
    helper_tools repository/vmaugment-repo || return 1
    mkdir -p "$dir/packages"
    while read -r name version; do
        module_package "$name" "$version" "$dir/packages/$name-$version.vmod" ||
            return 1
        pkgs+=("$dir/packages/$name-$version.vmod")
    done <"$list"
    "$build/repository/vmaugment-repo" publish --dir "$dir/repo" \
        --key "$work/keys/admin.key" --cert "$work/keys/admin.crt" \
        --trust-dir "$work/keys/trust" --expires-days 1 "${pkgs[@]}" \
        >"$dir/publish.log" 2>&1 ||
        { helper_error="vmaugment-repo publish: $(tail -n 3 "$dir/publish.log")"
          return 1; }
}

# repo_start DIR: serve DIR/repo; sets repo_url.
repo_start() {
    local dir=$1 port='' i
    repo_certs || return 1
    rm -f "$dir/server.fifo" "$dir/server.port"
    mkfifo "$dir/server.fifo"
    # The server exits when its stdin closes: hold the fifo open for it.
    python3 "$root/repository/tests/repo-server.py" --root "$dir" \
        --cert "$work/keys/repo/server.crt" --key "$work/keys/repo/server.key" \
        <"$dir/server.fifo" >"$dir/server.port" 2>"$dir/server.log" &
    repo_pid=$!
    exec {repo_fd}>"$dir/server.fifo"
    for i in $(seq 200); do
        port=$(head -n1 "$dir/server.port" 2>/dev/null)
        [ -n "$port" ] && break
        if ! kill -0 "$repo_pid" 2>/dev/null; then
            break
        fi
        sleep 0.05
    done
    if [ -z "$port" ]; then
        helper_error="the repository server did not start: $(tail -n 3 "$dir/server.log")"
        repo_stop
        return 1
    fi
    # repo-server.py: /MODE/DIR/FILE; "ok" serves files as they are.
    repo_url=https://127.0.0.1:$port/ok/repo/
}

repo_stop() {
    if [ -n "$repo_pid" ]; then
        kill "$repo_pid" 2>/dev/null || true
        wait "$repo_pid" 2>/dev/null || true
        repo_pid=
    fi
    if [ -n "$repo_fd" ]; then
        exec {repo_fd}>&-
        repo_fd=
    fi
    repo_url=
}

# repo_mode DIR up|down: the helper arguments for a repository that is up
# (served from DIR) or down; starts or stops the server.
repo_mode() {
    local dir=$1 mode=$2
    case $mode in
    up)
        [ -n "$repo_pid" ] || repo_start "$dir" || return 1
        helper_repo_args=(--repository "$repo_url")
        ;;
    down)
        repo_stop
        repo_certs || return 1
        helper_repo_args=(--repository "$repo_down_url")
        ;;
    *)
        helper_error="repository must be up or down, not '$mode'"
        return 1
        ;;
    esac
    # The client in the build tree is not beside the helper.
    helper_repo_args+=(--repository-ca "$work/keys/repo/ca.crt"
                       --repository-tool "$build/repository/vmaugment-repo")
}
