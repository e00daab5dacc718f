# Registration with the image, then its next start.  Boot 1 uploads the
# journal module and registers it through /dev/vmaugment for image-start,
# image-stop and host-stop, then powers off.  Boot 2 finds journal loaded
# and its image-start handler already run when the guest starts; the host
# side (12-register-restart.host) proves that the handler ran before the
# guest's first console byte, and that the image-stop and host-stop
# handlers ran when boot 2 powered off.
# image: yes
# boots: 2
# module: journal 1.0
# timeout: 180
step() { echo "step: $*"; }

wait_helper connected 30
case $VMAUG_BOOT in
1)
    step "boot 1: the guest loads the journal module and registers it with the image"
    vmaugment load journal@1.0 --file /data/journal-1.0.vmod
    vmaugment register journal@1.0 --events image-start,image-stop,host-stop
    vmaugment list registrations | tee /tmp/regs
    grep -q '^journal ' /tmp/regs || fail "journal is not registered"
    step "boot 1: powering off; the registration is kept next to the disk image"
    ;;
2)
    step "boot 2: journal was loaded at image start, before the guest ran"
    vmaugment --json query journal | tee /tmp/q.json
    grep -q '"state":"loaded"' /tmp/q.json || fail "journal is not loaded"
    vmaugment list registrations | grep -q '^journal ' ||
        fail "the registration did not survive the restart"
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
