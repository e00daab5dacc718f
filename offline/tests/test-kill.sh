#!/usr/bin/env bash
# kill -9 of the whole apply (vmaugment-offline, qemu-nbd and qemu-img
# together) at random points: after 'recover' the image must hold either
# exactly its old content or the fully verified patch, fsck-clean.
#   VMAUGMENT_KILL_ROUNDS   number of kills (default 5; the slow suite: 50)
source "$(dirname "$0")/lib.sh"

plan 1
rounds=${VMAUGMENT_KILL_ROUNDS:-5}
fix=$(fixtures_linux)
make_identity
make_payloads
build_bundle "$tmp/demo.vmab" "$demo_rules" "$demo_files"

orig=$tmp/orig.qcow2
cp "$fix/debian.qcow2" "$orig"

# How long an undisturbed apply takes, to spread the kills over it.
cp "$orig" "$tmp/t.qcow2"
start=$(date +%s%N)
vo apply "$tmp/t.qcow2" "$tmp/demo.vmab" >/dev/null
span_ms=$(( ($(date +%s%N) - start) / 1000000 + 50 ))
echo "# undisturbed apply: $((span_ms - 50)) ms; killing in 0..$span_ms ms"

untouched=0 patched=0
for i in $(seq "$rounds"); do
    img=$tmp/k.qcow2
    cp "$orig" "$img"
    delay=$(( RANDOM * 32768 + RANDOM ))
    delay=$(( delay % span_ms ))
    setsid "$VMAUGMENT_OFFLINE" --trust-dir "$tmp/trust" apply "$img" \
        "$tmp/demo.vmab" >/dev/null 2>&1 &
    pid=$!
    sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
    # The process group: qemu-nbd and qemu-img die with it, mid-write.
    kill -9 -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        pgrep -g "$pid" >/dev/null || break
        sleep 0.05
    done
    vo recover "$img" >"$tmp/recover.out" || fail "round $i: recover failed"
    no_sidecars "$img"
    if "$QEMU_IMG" compare -q "$orig" "$img" 2>/dev/null; then
        untouched=$((untouched + 1))
        state=untouched
    else
        vo verify "$img" "$tmp/demo.vmab" >"$tmp/verify.json" ||
            { cat "$tmp/verify.json"; fail "round $i (kill at ${delay} ms): image neither untouched nor fully patched"; }
        patched=$((patched + 1))
        state=patched
    fi
    fsck_partition "$img" 1 || fail "round $i: root not fsck-clean"
    fsck_partition "$img" 2 || fail "round $i: /srv not fsck-clean"
    echo "# round $i: kill at ${delay} ms, $(cat "$tmp/recover.out"), $state"
done
pass "$rounds kills: $untouched untouched, $patched fully patched, all fsck-clean"
