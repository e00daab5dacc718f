# The scanner module quarantines at the image's start: the host owner
# pinned it with policy=quarantine and a signed quarantine bundle
# (18-image-quarantine.host), and the image, a copy of the Debian
# fixture, holds the EICAR test file.  Boot 1 uploads scanner, registers
# it as required for image-start, and has the host owner pin it.  Boot 2:
# before the guest's first instruction the scan finds the file, QEMU lets
# go of the image, the helper applies the bundle (the file moved into
# /var/lib/vmaugment/quarantine), QEMU takes the image back, and the guest
# boots clean: the file is gone from its disk, stored inverted and
# root's, and the guest gets the findings and what moved, as the call's
# answer and as an event.
# image: debian
# boots: 2
# module: scanner 1.0
# timeout: 300
step() { echo "step: $*"; }

wait_helper connected 30
mount_image_root /mnt
case $VMAUG_BOOT in
1)
    step "boot 1: the image holds the EICAR file"
    [ -f /mnt/opt/samples/eicar.com ] || fail "no /opt/samples/eicar.com in the image"
    step "boot 1: the guest uploads scanner and registers it, required"
    vmaugment load scanner@1.0 --file /data/scanner-1.0.vmod
    vmaugment register scanner@1.0 --events image-start --required
    vmaugment config set scanner paths /opt
    step "boot 1: the host owner pins scanner with policy=quarantine"
    host_action scenario pin-quarantine
    wait_config scanner policy quarantine
    # The bundle is the host owner's key: the guest's is another.
    expect_fail 4 'quarantine-bundle of scanner is set by the host owner' \
        vmaugment config set scanner quarantine-bundle /srv/mine.vmab
    # Clean for the offline tool, which refuses a filesystem left dirty.
    umount /mnt
    ;;
2)
    step "boot 2: the file was quarantined before the guest ran"
    [ ! -e /mnt/opt/samples/eicar.com ] || fail "the EICAR file is still in place"
    q=/mnt/var/lib/vmaugment/quarantine
    ls -ln "$q" | tee /tmp/q
    stored=$(ls "$q" | grep -v '\.json$')
    [ "$(echo "$stored" | wc -l)" = 1 ] || fail "not one stored file: $stored"
    # Root's and read-only, its bytes inverted.
    [ "$(ls -ln "$q/$stored" | awk '{print $1, $3, $4, $5}')" = \
      "-r-------- 0 0 68" ] || fail "the stored file is not 0400 root's 68 bytes"
    grep -q 'Eicar-Test-Signature' "$q/$stored.json" || fail "no record"
    grep -q '/opt/samples/eicar.com' "$q/$stored.json" || fail "the record names no path"
    grep -q 'EICAR-STANDARD' "$q/$stored" && fail "the stored file is not inverted"
    umount /mnt
    step "boot 2: the guest gets the findings and what moved"
    vmaugment --json watch --events module-message --count 1 --wait 60 \
        >/tmp/events 2>/tmp/watch.err &
    watcher=$!
    wait_for_line /tmp/watch.err "watching for events"
    vmaugment invoke scanner report | tee /tmp/report
    grep -q '^result infected$' /tmp/report || fail "the report does not say infected"
    grep -q '^result quarantined$' /tmp/report || fail "the report does not say quarantined"
    grep -q "$(printf '^moved /\t/opt/samples/eicar.com\tEicar-Test-Signature.UNOFFICIAL$')" \
        /tmp/report || fail "the report does not name the moved file"
    wait $watcher || fail "no module-message event from scanner"
    hex=$(sed -n 's/.*"module":"scanner".*"data_hex":"\([0-9a-f]*\)".*/\1/p' /tmp/events)
    [ -n "$hex" ] || fail "the event is not scanner's"
    echo "$hex" | xxd -r -p | tr -d '\000' | grep -q '^result quarantined$' ||
        fail "the event does not say quarantined"
    ;;
*)
    fail "boot $VMAUG_BOOT should not have started"
    ;;
esac
