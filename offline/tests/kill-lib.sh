# kill -9 campaigns against apply (sourced after lib.sh, bash): the kill
# point driver (kill-at-stage.py), the stages of an undisturbed apply,
# recover after a kill, and what recover said against what the image
# holds.
#   VMAUGMENT_KILL_SEED   seed of the kill delays (default random; printed)

kill_seed=${VMAUGMENT_KILL_SEED:-$RANDOM}
RANDOM=$kill_seed
echo "# seed $kill_seed (VMAUGMENT_KILL_SEED=$kill_seed repeats these kill points)"

# kill_random N: a reproducible random number from 0 to N (N may exceed
# bash's 32767).
kill_random() {
    echo $(((RANDOM * 32768 + RANDOM) % ($1 + 1)))
}

# kill_at STAGE DELAY IMAGE BUNDLE: apply BUNDLE to IMAGE, killed DELAY ms
# into STAGE (kill-at-stage.py; "start": from the spawn, "never": not
# killed); its report in $tmp/kill.out.
kill_at() {
    python3 "$here/kill-at-stage.py" "$1" "$2" "$VMAUGMENT_OFFLINE" \
        --trust-dir "$tmp/trust" apply "$3" "$4" >"$tmp/kill.out" ||
        fail "apply to be killed in $1: $(cat "$tmp/kill.out")"
}

# kill_stages: after an undisturbed kill_at, when each stage began (ms
# since the spawn) in the associative array "at".
declare -A at
kill_stages() {
    local name ms s
    [ "$(head -1 "$tmp/kill.out")" = "finished 0" ] ||
        fail "undisturbed apply: $(cat "$tmp/kill.out")"
    while read -r _ name ms; do
        at[$name]=$ms
    done < <(grep '^stage ' "$tmp/kill.out")
    for s in deciding patching-the-overlay verifying-the-overlay committing applied; do
        [ -n "${at[$s]:-}" ] ||
            fail "the apply did not announce '$s': $(cat "$tmp/kill.out")"
    done
}

# kill_ended ROUND: how the killed apply ended, in $ended ("killed" or
# "finished 0").
kill_ended() {
    ended=$(head -1 "$tmp/kill.out")
    case $ended in
        killed | "finished 0") ;;
        *) fail "round $1: the apply $ended before the kill" ;;
    esac
}

# kill_recover ROUND IMAGE: recover, which must leave no sidecar; what it
# did in $recovery.
kill_recover() {
    vo recover "$2" >"$tmp/recover.json" || fail "round $1: recover failed"
    recovery=$(json_get "$tmp/recover.json" recovery)
    no_sidecars "$2"
}

# kill_tally ROUND ENDED RECOVERY STATE: what recover says it did must be
# what the image holds (STATE: untouched or patched); counted in
# $rolled_back, $rolled_forward and $none.
rolled_back=0 rolled_forward=0 none=0
kill_tally() {
    case $2/$3/$4 in
        killed/rolled-back/untouched) rolled_back=$((rolled_back + 1)) ;;
        killed/rolled-forward/patched) rolled_forward=$((rolled_forward + 1)) ;;
        killed/none/untouched | killed/none/patched | "finished 0/none/patched")
            none=$((none + 1)) ;;
        *) fail "round $1: apply $2, recover said '$3', image $4" ;;
    esac
}
