# The scanner module scans the image at its start, before the guest's
# first instruction, with the host's ClamAV (vmaugment-offline scan) and a
# database the host side makes; the image, a copy of the Debian fixture,
# holds the EICAR test file, written offline with a signed bundle
# (17-image-scan.host).  Boot 1 uploads scanner and registers it as
# required for image-start, in report mode, scanning /opt.  Boot 2: the scan finds the
# file, the image starts anyway, and the guest asks for the findings: as
# the call's answer and as an event to every watcher.  The host owner then
# pins scanner with policy=refuse while the guest runs, and the guest can
# neither unregister it, register it optional, nor set its policy back to
# report: each is refused (DENIED) and audited, and the guest reads the
# host owner's policy.  Boot 3: the start is refused with the finding
# named, and the guest never runs.
# image: debian
# boots: 3
# module: scanner 1.0
# boot 3: expect-refused ^vmaugment: image start refused: required module scanner 1\.0 unavailable: its image-start handler failed \(infected: / /opt/samples/eicar\.com Eicar-Test-Signature\.UNOFFICIAL\)$
# timeout: 240
step() { echo "step: $*"; }

wait_helper connected 30
case $VMAUG_BOOT in
1)
    step "boot 1: the guest uploads scanner and registers it, required, in report mode"
    vmaugment load scanner@1.0 --file /data/scanner-1.0.vmod
    vmaugment register scanner@1.0 --events image-start --required
    vmaugment config set scanner policy report
    # Where the host put the sample; the rest of the disk is not scanned.
    vmaugment config set scanner paths /opt
    vmaugment list registrations | tee /tmp/regs
    grep -q '^scanner .* required$' /tmp/regs || fail "scanner is not registered as required"
    ;;
2)
    step "boot 2: the image was scanned before the guest ran, and started"
    vmaugment --json watch --events module-message --count 1 --wait 60 \
        >/tmp/events 2>/tmp/watch.err &
    watcher=$!
    wait_for_line /tmp/watch.err "watching for events"
    vmaugment invoke scanner report | tee /tmp/report
    grep -q '^result infected$' /tmp/report || fail "the report does not say infected"
    grep -q "$(printf '^finding /\t/opt/samples/eicar.com\tEicar-Test-Signature.UNOFFICIAL$')" \
        /tmp/report || fail "the report does not name the EICAR file"
    grep -q '^engine ClamAV ' /tmp/report || fail "the report names no engine"
    wait $watcher || fail "no module-message event from scanner"
    cat /tmp/events
    hex=$(sed -n 's/.*"module":"scanner".*"data_hex":"\([0-9a-f]*\)".*/\1/p' /tmp/events)
    [ -n "$hex" ] || fail "the event is not scanner's"
    echo "$hex" | xxd -r -p | tr -d '\000' >/tmp/event-text
    grep -q 'opt/samples/eicar.com' /tmp/event-text ||
        fail "the event does not carry the finding"
    step "boot 2: the host owner pins scanner in refuse mode"
    host_action scenario pin-scanner
    wait_config scanner policy refuse
    step "boot 2: the guest cannot undo the pin"
    pinned='scanner is pinned by the host owner'
    expect_fail 4 "$pinned" vmaugment unregister scanner
    expect_fail 4 "$pinned" vmaugment register scanner@1.0 --events image-start
    expect_fail 4 'policy of scanner is set by the host owner' \
        vmaugment config set scanner policy report
    vmaugment list registrations | tee /tmp/regs
    grep -q '^scanner .* required$' /tmp/regs || fail "scanner is no longer required"
    [ "$(vmaugment config get scanner policy)" = refuse ] ||
        fail "the guest's policy replaced the host owner's"
    # What the host owner did not set stays the guest's.
    [ "$(vmaugment config get scanner paths)" = /opt ] ||
        fail "the pin changed the guest's paths"
    ;;
*)
    fail "boot $VMAUG_BOOT should not have started"
    ;;
esac
