#!/usr/bin/env bash
# kill -9 of the apply of a package update (the bundle 'bundle-build
# --plan' makes of apt's plan: .deb files unpacked with dpkg's semantics)
# at random points in time: odd rounds from the spawn, anywhere up to the
# end of an undisturbed apply; even rounds from the start of the commit,
# within its undisturbed length, since the commit alone writes the image
# and its share of the whole would otherwise depend on the host's load.  After each kill and 'recover' the image must be fsck-clean and
# hold either the old tree or the updated one, whole: every file's type,
# mode, owner, size, link and content, the dpkg database among them, equal
# to the tree of the untouched image or of an undisturbed apply (taken out
# with debugfs; nothing of ours decides).  Then the next apply must
# succeed, ending in the updated tree.
#   VMAUGMENT_KILL_ROUNDS   number of kills (default 20)
#   VMAUGMENT_KILL_SEED     seed of the kill points (default random; printed)
source "$(dirname "$0")/lib.sh"

rounds=${VMAUGMENT_KILL_ROUNDS:-20}
plan $((rounds + 3))
source "$here/kill-lib.sh"
source "$here/deb-lib.sh"
need debugfs e2fsprogs
need e2fsck e2fsprogs
fix=$(fixtures_linux)
make_identity
make_update_repo

orig=$tmp/orig.qcow2
cp "$fix/debian.qcow2" "$orig"
vo plan "${sources[@]}" --keyring "$tmp/repo-key.gpg" \
    --download-dir "$tmp/debs" --output "$tmp/plan.json" "$orig" ||
    fail "plan failed"
vo bundle-build --plan "$tmp/plan.json" --debs "$tmp/debs" \
    --key "$tmp/admin.key" --cert "$tmp/trust/admin.pem" \
    --output "$tmp/update.vmab" || fail "bundle-build --plan"

# tree_state IMAGE OUT: e2fsck -fn of both partitions, then one line per
# file of the root filesystem (path, type, mode, owner, size, link
# target, SHA-256 of the content) in OUT.
tree_state() {
    local raw=$tmp/state.raw dir=$tmp/state.tree
    "$QEMU_IMG" convert -U -O raw "$1" "$raw"
    fsck_raw "$raw" 1 2
    rm -rf "$dir"
    mkdir "$dir"
    debugfs_part "$raw" 1 rdump / "$dir" >/dev/null
    rm -f "$raw"
    (cd "$dir" && find . -printf '%p %y %m %U:%G %s %l\n' | LC_ALL=C sort &&
        find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) >"$2"
    rm -rf "$dir"
}

# The two states an image may be in: the old one, and that of an
# undisturbed apply, which also says when the apply ends.
tree_state "$orig" "$tmp/old.state"
cp "$orig" "$tmp/ref.qcow2"
kill_at never 0 "$tmp/ref.qcow2" "$tmp/update.vmab"
kill_stages
tree_state "$tmp/ref.qcow2" "$tmp/new.state"
rm -f "$tmp/ref.qcow2"
cmp -s "$tmp/old.state" "$tmp/new.state" && fail "the update changed nothing"
grep -q "^./var/lib/dpkg/info/netbase.list " "$tmp/new.state" ||
    fail "the update did not unpack netbase"
total=${at[applied]}
commit=$((at[applied] - at[committing]))
pass "undisturbed apply in $total ms: $(grep '^stage ' "$tmp/kill.out" |
    cut -d' ' -f2- | paste -sd,)"

# classify IMAGE: "untouched", "patched" or "neither", in $state.
classify() {
    tree_state "$1" "$tmp/k.state"
    if cmp -s "$tmp/k.state" "$tmp/old.state"; then
        state=untouched
    elif cmp -s "$tmp/k.state" "$tmp/new.state"; then
        state=patched
    else
        state=neither
    fi
}

# state_of ROUND IMAGE: classify, where "neither" (a half-unpacked tree)
# fails.
state_of() {
    classify "$2"
    if [ "$state" = neither ]; then
        diff "$tmp/old.state" "$tmp/k.state" | head -20 >&2
        fail "round $1: the image is neither the old tree nor the updated" \
            "one ($(diff "$tmp/new.state" "$tmp/k.state" | grep -c '^[<>]')" \
            "lines differ from the updated one)"
    fi
}

# The check tells a half-unpacked image apart: the first half of the
# plan's packages unpacked alone (a bundle of a plan cut short).
python3 - "$tmp/plan.json" "$tmp/plan-half.json" <<'PY' || fail "half plan"
import json, sys
d = json.load(open(sys.argv[1]))
p = d["groups"][0]["packages"]
assert len(p) >= 2, p
d["groups"][0]["packages"] = p[:len(p) // 2]
json.dump(d, open(sys.argv[2], "w"))
PY
vo bundle-build --plan "$tmp/plan-half.json" --debs "$tmp/debs" \
    --key "$tmp/admin.key" --cert "$tmp/trust/admin.pem" \
    --output "$tmp/half.vmab" || fail "bundle-build of the half plan"
cp "$orig" "$tmp/half.qcow2"
vo apply "$tmp/half.qcow2" "$tmp/half.vmab" >/dev/null ||
    fail "apply of the half plan"
classify "$tmp/half.qcow2"
[ "$state" = neither ] || fail "a half-unpacked image passed for $state"
rm -f "$tmp/half.qcow2"
pass "a half-unpacked image is neither old nor updated for this check"

for i in $(seq "$rounds"); do
    if [ $((i % 2)) -eq 1 ]; then
        from=start delay=$(kill_random "$total")
    else
        from=committing delay=$(kill_random "$commit")
    fi
    img=$tmp/k.qcow2
    cp "$orig" "$img"
    kill_at "$from" "$delay" "$img" "$tmp/update.vmab"
    kill_ended "$i"
    echo "# round $i: $delay ms from $from: $ended"
    kill_recover "$i" "$img"
    state_of "$i" "$img"
    kill_tally "$i" "$ended" "$recovery" "$state"
    # The next apply: it finishes the update, or finds it done.
    was=$state rc=0
    vo apply "$img" "$tmp/update.vmab" >"$tmp/next.json" || rc=$?
    next=$(json_get "$tmp/next.json" status)
    case $state/$rc/$next in
        untouched/0/applied | patched/0/already-applied) ;;
        *) fail "round $i: the next apply on the $state image: exit $rc," \
            "$(cat "$tmp/next.json")" ;;
    esac
    state_of "$i" "$img"
    [ "$state" = patched ] || fail "round $i: the next apply did not update"
    pass "round $i: kill $delay ms from $from ($ended), recovery $recovery," \
        "image $was, fsck-clean; the next apply: $next"
done

# The kills must have caught applies at work, or the campaign proved
# nothing.
[ $((rolled_back + rolled_forward)) -ge 1 ] ||
    fail "no kill of $rounds found an apply in progress"
pass "$rounds kills: $rolled_back rolled back, $rolled_forward rolled forward," \
    "$none found nothing to do; each image old or updated, fsck-clean"
