#!/usr/bin/env bash
# kill -9 of the whole apply (vmaugment-offline, qemu-nbd and qemu-img
# together) inside each of its stages.  After 'recover' the image must hold
# exactly its old content (qemu-img compare) or the whole patch (e2fsck,
# debugfs and cmp: nothing of ours decides), agree with what recover says
# it did, and be fsck-clean; and enough kills must have left work in
# progress for recover to find, or the campaign proved nothing.
#   VMAUGMENT_KILL_ROUNDS   number of kills (default 5; the slow suite: 50)
#   VMAUGMENT_KILL_SEED     seed of the kill delays (default random; printed)
source "$(dirname "$0")/lib.sh"

rounds=${VMAUGMENT_KILL_ROUNDS:-5}
plan $((rounds + 2))
source "$here/kill-lib.sh"
fix=$(fixtures_linux)
make_identity
make_payloads
build_bundle "$tmp/demo.vmab" "$demo_rules" "$demo_files"

orig=$tmp/orig.qcow2
cp "$fix/debian.qcow2" "$orig"

# An undisturbed apply: when each stage begins.
cp "$orig" "$tmp/t.qcow2"
kill_at never 0 "$tmp/t.qcow2" "$tmp/demo.vmab"
kill_stages
check_demo_applied "$tmp/t.qcow2"
rm -f "$tmp/t.qcow2"
pass "undisturbed apply: $(grep '^stage ' "$tmp/kill.out" | cut -d' ' -f2- | paste -sd,)"

# Kill points: from the spawn (bundle check, lock, overlay creation), and
# inside each stage, at a random point of its undisturbed length.  The
# commit gets half its length only, and its first kill lands as it begins:
# a kill after its end finds no work to recover.
stages=(start deciding patching-the-overlay verifying-the-overlay committing)
declare -A span=(
    [start]=${at[deciding]}
    [deciding]=$((at[patching-the-overlay] - at[deciding]))
    [patching-the-overlay]=$((at[verifying-the-overlay] - at[patching-the-overlay]))
    [verifying-the-overlay]=$((at[committing] - at[verifying-the-overlay]))
    [committing]=$(((at[applied] - at[committing]) / 2))
)

for i in $(seq "$rounds"); do
    stage=${stages[$(((i - 1) % ${#stages[@]}))]}
    delay=$((RANDOM % (span[$stage] + 1)))
    [ "$stage" != committing ] || [ "$i" -gt ${#stages[@]} ] || delay=0
    img=$tmp/k.qcow2
    cp "$orig" "$img"
    kill_at "$stage" "$delay" "$img" "$tmp/demo.vmab"
    kill_ended "$i"
    echo "# round $i: $delay ms into $stage: $ended"
    kill_recover "$i" "$img"
    rc=0
    "$QEMU_IMG" compare -q "$orig" "$img" || rc=$?
    case $rc in
        0) state=untouched; fsck_image "$img" ;;
        1) state=patched; check_demo_applied "$img" ;;
        *) fail "round $i: qemu-img compare failed (exit $rc)" ;;
    esac
    kill_tally "$i" "$ended" "$recovery" "$state"
    pass "round $i: kill $delay ms into $stage ($ended), recovery $recovery," \
        "image $state, fsck-clean"
done

# At least half the kills must have caught an apply in progress, and (once
# every kill point had its turn) both ways out must have been taken.
least=$(((rounds + 1) / 2))
[ $((rolled_back + rolled_forward)) -ge "$least" ] ||
    fail "only $((rolled_back + rolled_forward)) of $rounds kills found work in progress (need $least)"
if [ "$rounds" -ge ${#stages[@]} ]; then
    [ "$rolled_back" -ge 1 ] || fail "no kill was rolled back"
    [ "$rolled_forward" -ge 1 ] || fail "no kill was rolled forward"
fi
pass "$rounds kills: $rolled_back rolled back, $rolled_forward rolled forward," \
    "$none found nothing to do; each untouched or fully patched, fsck-clean"
