#!/usr/bin/env bash
# The slow libvirt test (docs/libvirt.rst): a real libvirtd (qemu:///system)
# defines docs/libvirt-domain.xml with our QEMU as <emulator>, starts it
# under TCG (direct kernel boot of the test guest of tests/guest), the
# guest uploads and registers a module through the vmaugment device, QMP
# goes through "virsh qemu-monitor-command", "virsh shutdown" ends it, the
# host checks that the module's image-stop handler ran, and the domain is
# undefined.  Then two more domains with Debian disks, one of them
# running, are serviced by "vmaugment-offline batch --libvirt
# qemu:///system".  Prints TAP.
#
# It runs what docs/service.rst and docs/libvirt.rst ask of a host owner:
# scripts/install.sh, the signer's certificate in the trust store, the
# configuration file, "systemctl start vmaugment-helper", then virsh with
# the installed QEMU.  So that this needs neither a host whose init is
# systemd nor changes to the host, it runs inside this host booted again
# as a container over a throw-away overlay (host-copy.sh).
#
#   tests/libvirt/run.sh     (environment as tests/guest/run.sh's)
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../guest" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=tests/guest/lib/harness.sh
. "$here/lib/harness.sh"

virsh=(timeout 60 virsh -q -c qemu:///system)
dom=vmaugment-test-$$
n=0
failed=0
run=

ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
    n=$((n + 1)); failed=1; echo "not ok $n - $1"; shift
    printf '%s\n' "$@" | tail -n 15 | sed 's/^/# /'
}
# bail REASON: the rest cannot run.
bail() {
    not_ok "$@"
    echo "1..$n"
    exit 1
}

if [ -z "${VMAUGMENT_HOST_COPY:-}" ]; then
    bash "$root/tests/libvirt/host-copy.sh" bash "${BASH_SOURCE[0]}" "$@"
    rc=$?
    [ $rc -eq 125 ] || exit $rc
    bail "this host boots again under systemd (tests/libvirt/host-copy.sh)"
fi

cleanup() {
    local d
    for d in "$dom" "$dom-idle" "$dom-busy"; do
        if "${virsh[@]}" dominfo "$d" >/dev/null 2>&1; then
            "${virsh[@]}" destroy "$d" >/dev/null 2>&1
            "${virsh[@]}" undefine "$d" >/dev/null 2>&1
        fi
    done
}
trap cleanup EXIT

command -v virsh >/dev/null || bail "virsh is installed (libvirt-clients)"
# systemd-nspawn mounts the host's cgroup v1 controllers read-only, where
# libvirt would make each domain's group: a container's libvirt places
# QEMU in none.  Nothing else of libvirt's configuration is changed.
if [ "${VMAUGMENT_HOST_COPY:-}" = 1 ]; then
    echo 'cgroup_controllers = [ ]' >>/etc/libvirt/qemu.conf
    systemctl restart libvirtd.service
fi
out=$("${virsh[@]}" version 2>&1) || bail "libvirtd answers on qemu:///system" "$out"

check_qemu
prepare_all >"$work/libvirt-prepare.log" 2>&1 ||
    bail "the guest kernel, driver and initramfs are built" \
        "$(tail -n 5 "$work/libvirt-prepare.log")"
helper_tools || bail "the host tools build" "$helper_error"

# The documented install (docs/service.rst): the tested QEMU and our tools
# below the prefix, the units, the vmaugment group with libvirt-qemu in it.
prefix=${VMAUGMENT_PREFIX:-/opt/vmaugment}
if VMAUGMENT_BUILD_ROOT=$(dirname "$build") "$root/scripts/install.sh" \
       >"$work/libvirt-install.log" 2>&1 &&
   [ -x "$prefix/bin/qemu-system-x86_64" ]; then
    ok "scripts/install.sh"
else
    bail "scripts/install.sh" "$(tail -n 5 "$work/libvirt-install.log")"
fi
qemu=$prefix/bin/qemu-system-x86_64
offline_bin=$prefix/bin/vmaugment-offline

# Everything libvirt's QEMU (libvirt-qemu) opens lives where libvirt keeps
# images, which it may enter whatever the mode of the clone's directory.
run=/var/lib/libvirt/images/vmaugment-test
rm -rf "$run"
mkdir -p "$run/initramfs/lib/vmaug/extra" "$run/images"
chmod 755 "$run" "$run/images"
for m in button evdev; do
    cp "$(modprobe -d "$kroot" -S "$KVER" --show-depends "$m" |
          awk '$1 == "insmod" {print $2}' | tail -n1)" \
       "$run/initramfs/lib/vmaug/extra/"
done
scenario_log=$run/console.log
: >"$scenario_log"
scenario_initrd "$root/tests/libvirt/guest.sh" "$run" ||
    bail "the guest's initramfs is built" "$reason"
cp "$KIMAGE" "$run/kernel"
chmod 644 "$run/kernel" "$run/initrd"
image=$run/images/disk.img
truncate -s 16M "$image"

# What a host owner configures: the signer of the guest's package trusted,
# packages as large as the guest uploads, registrations of the image kept.
mkdir -p /etc/vmaugment/trust
cp "$work/keys/admin.crt" /etc/vmaugment/trust/vmaugment-test-admin.pem
echo '{ "max_package_size": 1073741824 }' >/etc/vmaugment/policy.json
cat >>/etc/vmaugment/helper.conf <<CONF
policy=/etc/vmaugment/policy.json
image-dir=$run/images
CONF
out=$(timeout 120 systemctl start vmaugment-helper 2>&1)
if [ $? -eq 0 ] && systemctl -q is-active vmaugment-helper.socket; then
    ok "systemctl start vmaugment-helper"
else
    bail "systemctl start vmaugment-helper" "$out" \
        "$(journalctl -q -u vmaugment-helper --no-pager | tail -n 5)"
fi
sock=/run/vmaugment/helper.sock
store=/var/lib/vmaugment/store
# Type=notify: systemctl returned once the helper said READY=1; what it
# says goes to the journal.
out=$(journalctl -q -u vmaugment-helper --no-pager 2>&1)
if grep -q "vmaugment-helpe.*: listening on" <<<"$out"; then
    ok "the helper logs to the journal"
else
    not_ok "the helper logs to the journal" "$out"
fi

sed -e "s|@NAME@|$dom|" -e "s|@EMULATOR@|$qemu|" -e "s|@SOCKET@|$sock|" \
    -e "s|@IMAGE@|$image|" -e "s|@KERNEL@|$run/kernel|" \
    -e "s|@INITRD@|$run/initrd|" -e "s|@CONSOLE@|$run/serial.log|" \
    "$root/docs/libvirt-domain.xml" >"$run/domain.xml"

out=$("${virsh[@]}" define "$run/domain.xml" 2>&1)
if [ $? -eq 0 ] && "${virsh[@]}" dumpxml "$dom" |
       grep -q 'driver&quot;:&quot;vmaugment-pci&quot;'; then
    ok "virsh define keeps the vmaugment device of the domain XML"
else
    bail "virsh define keeps the vmaugment device of the domain XML" "$out"
fi

started=${EPOCHREALTIME/,/.}
out=$("${virsh[@]}" start "$dom" 2>&1) ||
    bail "virsh start" "$out" "$(tail -n 5 "/var/log/libvirt/qemu/$dom.log")"
ok "virsh start"

# Who libvirt runs QEMU as, from /proc: libvirt-qemu, with the vmaugment
# group that lets it reach the helper's socket.
pid=$(cat "/run/libvirt/qemu/$dom.pid" 2>/dev/null)
uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
groups=$(awk '/^Groups:/ {$1 = ""; print}' "/proc/$pid/status" 2>/dev/null)
if [ "$uid" = "$(id -u libvirt-qemu)" ] &&
   grep -qw "$(getent group vmaugment | cut -d: -f3)" <<<"$groups"; then
    ok "QEMU runs as libvirt-qemu with the vmaugment group"
else
    not_ok "QEMU runs as libvirt-qemu with the vmaugment group" \
        "pid $pid uid $uid groups $groups"
fi

if host_wait_for "$run/serial.log" '^VMAUG-LIBVIRT: waiting for the power button' 240; then
    ok "the guest loaded a module through the device"
else
    bail "the guest loaded a module through the device" \
        "$(tail -n 10 "$run/serial.log" 2>/dev/null)" \
        "$(grep -v '^[-A-Z]' "/var/log/libvirt/qemu/$dom.log" | tail -n 5)"
fi

out=$("${virsh[@]}" qemu-monitor-command "$dom" \
          '{"execute":"query-vmaugment-modules"}' 2>&1)
if python3 -c 'import json, sys
mods = json.loads(sys.argv[1])["return"]
sys.exit(0 if any(m["name"] == "journal" for m in mods) else 1)' "$out" 2>/dev/null; then
    ok "virsh qemu-monitor-command: query-vmaugment-modules lists journal"
else
    not_ok "virsh qemu-monitor-command: query-vmaugment-modules lists journal" "$out"
fi

# virsh shutdown presses the power button; the guest powers off.
"${virsh[@]}" shutdown "$dom" >/dev/null 2>&1
state=
for _ in $(seq 120); do
    state=$("${virsh[@]}" domstate "$dom" --reason 2>/dev/null)
    case $state in "shut off"*) break ;; esac
    sleep 1
done
if [[ $state == "shut off (shutdown)" ]] &&
   grep -q '^VMAUG-RESULT: PASS' "$run/serial.log"; then
    ok "virsh shutdown: the guest powered off after its scenario passed"
else
    not_ok "virsh shutdown: the guest powered off after its scenario passed" \
        "state: $state" "$(tail -n 10 "$run/serial.log")"
fi

# The journal module's own record, in the helper's store: an image-stop
# entry stamped (host clock) after the domain started.
jlog=$(find "$store" -name journal.log | head -n1)
stop=
for _ in $(seq 100); do
    stop=$(awk -v t="$started" '$1 == "image-stop" && $2 > t {print $2}' \
               "$jlog" 2>/dev/null | head -n1)
    [ -n "$stop" ] && break
    sleep 0.1
done
if [ -n "$stop" ]; then
    ok "the module's image-stop handler ran at shutdown"
else
    not_ok "the module's image-stop handler ran at shutdown" \
        "journal.log: ${jlog:-none}, domain started at $started" \
        "$(cat "$jlog" 2>/dev/null)"
fi

out=$("${virsh[@]}" undefine "$dom" 2>&1)
if ! "${virsh[@]}" list --all --name | grep -qx "$dom"; then
    ok "virsh undefine"
else
    not_ok "virsh undefine" "$out"
fi

# Offline servicing of libvirt's domains (docs/libvirt.rst): one inactive
# domain's disk is patched by "vmaugment-offline batch --libvirt
# qemu:///system", a running domain's disk is skipped and left alone.
lfix=$(bash "$root/offline/tests/make-fixtures.sh" linux 2>"$run/fixtures.log") ||
    bail "the offline fixture images are built" "$(tail -n 5 "$run/fixtures.log")"
off=$run/offline
mkdir -p "$off/trust" "$off/payload"
"$build/trust/vmaugment-keygen" --name "Patch admin" --key "$off/admin.key" \
    --cert "$off/trust/admin.pem" >/dev/null 2>&1
echo "patched through libvirt" >"$off/payload/note"
cat >"$off/manifest.json" <<'JSON'
{"format": 1, "id": "libvirt-note", "version": "1",
 "files": [{"op": "add", "path": "/etc/vmaugment-libvirt", "payload": "note"}]}
JSON
"$offline_bin" bundle-build --key "$off/admin.key" \
    --cert "$off/trust/admin.pem" --payload-dir "$off/payload" \
    --output "$off/note.vmab" "$off/manifest.json" >/dev/null 2>&1 ||
    bail "the bundle for libvirt's domains is built"
batch_dom() {
    cat <<XML
<domain type='qemu'>
  <name>$1</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <!-- Without it libvirt passes -no-acpi, which QEMU 10 no longer has. -->
  <features><acpi/></features>
  <devices>
    <emulator>$qemu</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
  </devices>
</domain>
XML
}
idle=$dom-idle
busy=$dom-busy
cp "$lfix/debian.qcow2" "$run/images/idle.qcow2"
cp "$lfix/debian.qcow2" "$run/images/busy.qcow2"
batch_dom "$idle" "$run/images/idle.qcow2" >"$off/idle.xml"
batch_dom "$busy" "$run/images/busy.qcow2" >"$off/busy.xml"
busy_sum=$(sha256sum <"$run/images/busy.qcow2")
"${virsh[@]}" define "$off/idle.xml" >/dev/null 2>&1 &&
    "${virsh[@]}" define "$off/busy.xml" >/dev/null 2>&1 &&
    out=$("${virsh[@]}" start "$busy" 2>&1) ||
    bail "two domains for offline servicing, one started" "$out"
rc=0
"$offline_bin" --trust-dir "$off/trust" batch \
    --bundle "$off/note.vmab" --libvirt qemu:///system \
    >"$off/batch.json" 2>"$off/batch.err" || rc=$?
if python3 - "$off/batch.json" "$idle" "$busy" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
st = {i.get("domain"): i["status"] for i in d["images"]}
sys.exit(0 if st.get(sys.argv[2]) == "applied" and
         st.get(sys.argv[3]) == "skipped-in-use" else 1)
PY
then
    ok "batch --libvirt qemu:///system: the inactive domain patched, the running one skipped"
else
    not_ok "batch --libvirt qemu:///system: the inactive domain patched, the running one skipped" \
        "exit $rc" "$(cat "$off/batch.json" "$off/batch.err")"
fi
"${virsh[@]}" destroy "$busy" >/dev/null 2>&1
if "$offline_bin" --trust-dir "$off/trust" verify \
       "$run/images/idle.qcow2" "$off/note.vmab" >"$off/verify.json" 2>&1 &&
   [ "$(sha256sum <"$run/images/busy.qcow2")" = "$busy_sum" ]; then
    ok "the patched disk verifies; the running domain's disk is unchanged"
else
    not_ok "the patched disk verifies; the running domain's disk is unchanged" \
        "$(cat "$off/verify.json")"
fi
"${virsh[@]}" undefine "$idle" >/dev/null 2>&1
"${virsh[@]}" undefine "$busy" >/dev/null 2>&1

echo "1..$n"
exit $failed
