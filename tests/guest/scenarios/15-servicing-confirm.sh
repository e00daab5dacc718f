# An update applied offline, confirmed by the guest at its next boot.
# Before boot 1 the host (15-servicing-confirm.host) applies a signed
# bundle with a marker to a copy of the Debian fixture with
# vmaugment-offline; the guest finds the image as its virtio disk, mounts
# its root read-write and runs "vmaugment servicing confirm --root": the
# host holds the report, confirmed at boot 1.  The same report again (its
# record restored, as if a power cut lost the rename) is told it was
# already reported (EXISTS); a record of a bundle never applied to the
# image is refused (NOT_FOUND), one naming another manifest (DENIED); both
# stay pending in the guest.  The host side checks the audit log, the QMP
# event, "vmaugment-offline status" and the image itself.
# image: debian
# timeout: 240
step() { echo "step: $*"; }

bundle=motd-refresh
version=2026.12.1
wait_helper connected 30
step "the guest mounts its disk's root: the update and its pending record are there"
mount_image_root /mnt
rec=/mnt/var/lib/vmaugment/offline
ls $rec
[ -f $rec/$bundle-$version.json ] || fail "no pending record $bundle-$version.json"
cat $rec/$bundle-$version.json
echo
[ "$(cat /mnt/etc/motd)" = "motd refreshed offline" ] ||
    fail "/etc/motd is not the bundle's: $(cat /mnt/etc/motd)"

step "vmaugment servicing confirm reports it through /dev/vmaugment"
vmaugment servicing confirm --root /mnt --message "motd refreshed" | tee /tmp/out
grep -qx "$bundle $version: confirmed at boot 1" /tmp/out ||
    fail "the host did not hold the report at boot 1"
if [ ! -f $rec/$bundle-$version.json.confirmed ] || [ -e $rec/$bundle-$version.json ]; then
    fail "the record was not renamed to .json.confirmed"
fi

step "the same report again (its record restored): the host already holds it"
cp $rec/$bundle-$version.json.confirmed $rec/$bundle-$version.json
vmaugment servicing confirm --root /mnt | tee /tmp/again
grep -qx "$bundle $version: already reported (bundle $bundle $version was already reported confirmed at boot 1)" \
    /tmp/again || fail "a repeated report was not told EXISTS"
[ ! -e $rec/$bundle-$version.json ] || fail "the repeated record is still pending"
[ "$(vmaugment servicing confirm --root /mnt)" = "nothing to report" ] ||
    fail "records are still pending"

step "forged reports: a bundle never applied, and this bundle with another manifest"
mkdir -p /tmp/forged /tmp/other
other=0000000000000000000000000000000000000000000000000000000000000000
printf '{"bundle":"never-applied","version":"1","manifest_sha256":"%s","signer_fingerprint":""}' \
    "$other" >/tmp/forged/never-applied-1.json
expect_fail 1 "^vmaugment: servicing: .* \(NOT_FOUND\): bundle never-applied 1 was not applied to this image$" \
    vmaugment servicing confirm --dir /tmp/forged
[ -f /tmp/forged/never-applied-1.json ] || fail "the refused record is not kept pending"
printf '{"bundle":"%s","version":"%s","manifest_sha256":"%s","signer_fingerprint":""}' \
    "$bundle" "$version" "$other" >/tmp/other/$bundle-$version.json
expect_fail 4 "^vmaugment: servicing: .* \(DENIED\): bundle $bundle $version was applied with another manifest$" \
    vmaugment servicing confirm --dir /tmp/other
[ -f /tmp/other/$bundle-$version.json ] || fail "the refused record is not kept pending"

umount /mnt
