# Registration with the image, then its next start.  Boot 1 uploads the
# journal and scanner modules and registers them through /dev/vmaugment,
# journal for image-start, image-stop and host-stop, scanner for
# image-start, then powers off.  Boot 2 finds both loaded and their
# image-start handlers already run when the guest starts; the host side
# (12-register-restart.host) proves that they ran before the guest's first
# output (its firmware's first byte and its first console byte), and that
# journal's image-stop and host-stop handlers ran when boot 2 powered off.
# image: yes
# boots: 2
# module: journal 1.0
# module: scanner 1.0
# timeout: 180
step() { echo "step: $*"; }

wait_helper connected 30
case $VMAUG_BOOT in
1)
    step "boot 1: the guest uploads journal and scanner and registers them with the image"
    vmaugment load journal@1.0 --file /data/journal-1.0.vmod
    vmaugment load scanner@1.0 --file /data/scanner-1.0.vmod
    vmaugment register journal@1.0 --events image-start,image-stop,host-stop
    vmaugment register scanner@1.0 --events image-start
    vmaugment list registrations | tee /tmp/regs
    grep -q '^journal ' /tmp/regs || fail "journal is not registered"
    grep -q '^scanner ' /tmp/regs || fail "scanner is not registered"
    step "boot 1: powering off; the registration is kept next to the disk image"
    ;;
2)
    step "boot 2: journal and scanner were loaded at image start, before the guest ran"
    for m in journal scanner; do
        vmaugment --json query $m | tee /tmp/q.json
        grep -q '"state":"loaded"' /tmp/q.json || fail "$m is not loaded"
        vmaugment list registrations | grep -q "^$m " ||
            fail "the registration of $m did not survive the restart"
    done
    step "boot 2: the journal's history, as the host recorded it"
    vmaugment invoke journal history | tee /tmp/history
    start=$(grep '^image-start ' /tmp/history | tail -n1 | cut -d' ' -f2)
    [ -n "$start" ] || fail "journal ran no image-start handler"
    # The host compares it with the time of this boot's first console byte.
    echo "journal-image-start: $start"
    ;;
*)
    fail "unexpected boot $VMAUG_BOOT"
    ;;
esac
