# A module that requests a restart.  The guest loads the upgrade module and
# echo 1.0, leaves a marker on the host (a configuration key, kept by the
# helper), and calls upgrade's "install" with the signed echo 2.0 package:
# the helper verifies and installs it, and upgrade asks for an image
# restart.  The device resets the VM inside the same QEMU process, so the
# guest boots again with the same command line and finds its marker: the
# second run checks that echo 2.0 is in the store and loads in place of
# 1.0.  The host side (14-upgrade-restart.host) checks QMP's
# VMAUGMENT_MODULE restart-requested event (restart "image") and one
# RESET, and the store.
# image: yes
# module: upgrade 1.0
# module: echo 1.0
# module: echo 2.0
# qemu: -action reboot=reset
# timeout: 240
step() { echo "step: $*"; }

# The harness boots QEMU with -no-reboot; "# qemu:" turns resets back on,
# so the reset runs this script again.  A restart the scenario did not ask
# for (a panic, a reboot of the kernel) fails on the host: a third run,
# a second reset by the host, or the kernel's panic or reboot message.
boot_id=$(cat /proc/sys/kernel/random/boot_id)
wait_helper connected 30

if ! vmaugment config get upgrade restart-marker >/tmp/marker 2>/tmp/marker.err; then
    grep -q '(NOT_FOUND): no configuration restart-marker for upgrade$' /tmp/marker.err ||
        fail "config get failed: $(cat /tmp/marker.err)"
    echo "VMAUG-RUN: 1 $boot_id"
    step "run 1: the guest loads upgrade 1.0 and echo 1.0"
    vmaugment load upgrade@1.0 --file /data/upgrade-1.0.vmod
    vmaugment load echo@1.0 --file /data/echo-1.0.vmod
    vmaugment --json query echo | tee /tmp/q.json
    grep -q '"version":"1.0"' /tmp/q.json || fail "echo 1.0 is not loaded"
    expect_fail 1 '\(NOT_FOUND\): no module echo 2\.0$' vmaugment query echo@2.0

    step "run 1: a marker on the host tells the next run it comes after the restart"
    vmaugment config set upgrade restart-marker "$boot_id"

    step "run 1: upgrade installs echo 2.0 and asks for an image restart"
    # The reset may come before the answer: only a missing reset fails.
    set +e
    vmaugment invoke upgrade install --input /data/echo-2.0.vmod >/tmp/inst 2>&1
    rc=$?
    set -e
    echo "install exited $rc: $(cat /tmp/inst)"
    i=0
    while [ "$i" -lt 300 ]; do
        usleep 100000
        i=$((i + 1))
    done
    fail "no restart within 30 s of the install (install exited $rc)"
fi

marker=$(cat /tmp/marker)
echo "VMAUG-RUN: 2 $boot_id"
step "run 2: the VM was reset; the host kept run 1's marker ($marker)"
[ "$marker" != "$boot_id" ] || fail "the marker is this run's own: no restart happened"

step "run 2: upgrade is still loaded, echo 2.0 is in the store"
vmaugment --json query upgrade | tee /tmp/q.json
grep -q '"state":"loaded"' /tmp/q.json || fail "upgrade is not loaded after the restart"
vmaugment --json query echo@2.0 | tee /tmp/q.json
grep -q '"version":"2.0"' /tmp/q.json || fail "the store has no echo 2.0"

step "run 2: echo 2.0 loads in place of 1.0 and answers"
vmaugment load echo@2.0
vmaugment --json query echo | tee /tmp/q.json
grep -q '"version":"2.0"' /tmp/q.json || fail "echo 2.0 did not replace 1.0"
grep -q '"state":"loaded"' /tmp/q.json || fail "echo 2.0 is not loaded"
[ "$(printf 'after the restart' | vmaugment invoke echo echo --input -)" = \
  'after the restart' ] || fail "echo 2.0 does not echo"
echo "VMAUG-RESTART: done"
