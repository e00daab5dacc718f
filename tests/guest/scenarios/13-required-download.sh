# A module registered as required that the host's store lacks.  Boot 1
# registers kv 1.0 with --required; the repository is down.  Boot 2: the
# helper cannot fetch kv, so QEMU refuses to start the image, and the guest
# never runs; the refusal must name kv and the repository's connection
# failure, not any other reason a fetch fails for (a bad signature, a
# module the repository lacks), and be the only failure.  Boot 3: the
# repository is up; the helper downloads kv, verifies the signed index and
# the package, stores and loads it, and the guest uses it (the host side,
# 13-required-download.host, checks the store and the audit log).
# image: yes
# boots: 3
# repository: down
# repo-module: kv 1.0
# boot 2: expect-refused ^vmaugment: image start refused: required module kv 1\.0 unavailable: not in the store and repository https://127\.0\.0\.1:1/repo/ unreachable or refused it: index of https://127\.0\.0\.1:1/repo: Failed to connect to 127\.0\.0\.1 port 1 [^;]*$
# boot 3: repository up
# timeout: 180
step() { echo "step: $*"; }

wait_helper connected 30
case $VMAUG_BOOT in
1)
    step "boot 1: the guest registers kv 1.0 as required; the host does not have it"
    expect_fail 1 '\(NOT_FOUND\): no module kv 1\.0$' vmaugment query kv@1.0
    vmaugment register kv@1.0 --required
    vmaugment list registrations | tee /tmp/regs
    grep -q '^kv .* required$' /tmp/regs || fail "kv is not registered as required"
    ;;
3)
    step "boot 3: kv was downloaded from the repository and loaded before the guest ran"
    vmaugment --json query kv | tee /tmp/q.json
    grep -q '"version":"1.0"' /tmp/q.json || fail "kv 1.0 is not the one loaded"
    grep -q '"state":"loaded"' /tmp/q.json || fail "kv is not loaded"
    step "boot 3: the guest uses it"
    printf 'colour=blue' | vmaugment invoke kv set --input -
    [ "$(printf colour | vmaugment invoke kv get --input -)" = blue ] ||
        fail "kv does not give back what was set"
    echo "kv: colour=$(printf colour | vmaugment invoke kv get --input -)"
    ;;
*)
    fail "boot $VMAUG_BOOT should not have started"
    ;;
esac
