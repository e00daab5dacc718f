#!/usr/bin/env bash
# Transport benchmark: in one guest boot, guest->host throughput of MIB MiB
# (default 256) through /dev/vmaugment (zero-copy UPLOAD_CHUNK to the host
# helper) and through a virtio-serial port (into a host unix socket), and
# the round trip of small requests through both (a PING the device
# answers, a QUERY the helper answers, an INVOKE of the echo module with
# 64 bytes), with the ratios; and the guest's own memcpy of as many
# bytes, the bound on any transfer out of it (the efficiency line).
#
#   tests/bench/transport-bench.sh [MIB]
#
# VMAUGMENT_DEVICE_OPTS adds device properties (relay-wait-us=0: the
# relayed requests without the relaying thread's wait, docs/protocol.rst).
# VMAUGMENT_BENCH_INVOKE_SERIES=N runs the INVOKE series N times in the
# boot and prints each series' p50 (the table keeps the first): where the
# scheduler puts QEMU, the helper and the module's process can change
# within a boot (docs/performance.md).
#
# Same QEMU build, same guest kernel, TCG; environment as for
# tests/guest/run.sh.  Prints figures; it is not a pass/fail test.  On a
# VM host whose memory the machine has not touched since it started, a
# boot's first transfer also pays the hypervisor's first touch of the
# page cache the helper fills (docs/performance.md).
set -euo pipefail

bench=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$bench/../.." && pwd)
here=$root/tests/guest
# shellcheck source=tests/guest/lib/harness.sh
. "$here/lib/harness.sh"

mib=${1:-256}
rtt_count=${VMAUGMENT_BENCH_RTT_COUNT:-20000}
invoke_series=${VMAUGMENT_BENCH_INVOKE_SERIES:-1}
[[ $invoke_series =~ ^[1-9][0-9]{0,2}$ ]] ||
    die "VMAUGMENT_BENCH_INVOKE_SERIES must be a number from 1 to 999"
# Each transfer is repeated and the median reported: the host's CPUs
# are shared and single runs vary.
reps=${VMAUGMENT_BENCH_REPS:-3}
extra_progs=("$bench/guest-bench.c")

check_qemu
prepare_all

# Unix socket paths are short (108 bytes): keep them out of the work tree.
bdir=$(mktemp -d /tmp/vmaug-bench.XXXXXX)
peers=()
cleanup() {
    local p
    for p in "${peers[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    helper_stop
    rm -rf "$bdir"
}
trap cleanup EXIT

python3 "$bench/serial-peer.py" sink "$bdir/sink.sock" $((mib << 20)) &
peers+=($!)
python3 "$bench/serial-peer.py" echo "$bdir/echo.sock" &
peers+=($!)
for _ in $(seq 50); do
    [ -S "$bdir/sink.sock" ] && [ -S "$bdir/echo.sock" ] && break
    sleep 0.1
done

cat >"$bdir/transport-bench.sh" <<GUEST
# needs: helper
# package: echo 0
# timeout: 900
# memory: 1024M
# qemu: -device virtio-serial-pci -chardev socket,id=vs0,path=$bdir/sink.sock -device virtserialport,chardev=vs0,name=bench.sink -chardev socket,id=vs1,path=$bdir/echo.sock -device virtserialport,chardev=vs1,name=bench.echo
port() {
    for p in /sys/class/virtio-ports/*; do
        [ "\$(cat \$p/name)" = "\$1" ] && echo /dev/\${p##*/}
    done
}
wait_helper connected 30
guest-bench vmaug-rtt $rtt_count ping
guest-bench vmaug-rtt $rtt_count query
vmaugment load echo@1.0 --file /data/echo.vmod >/dev/null
for _ in \$(seq $invoke_series); do
    guest-bench vmaug-rtt $rtt_count invoke
done
guest-bench serial-rtt "\$(port bench.echo)" $rtt_count
guest-bench upload $mib $reps
guest-bench serial-write "\$(port bench.sink)" $mib $reps
guest-bench memcpy $mib $reps
GUEST

log_step "booting the benchmark guest ($mib MiB, $rtt_count round trips)"
reason=
if ! run_scenario "$bdir/transport-bench.sh"; then
    die "benchmark guest failed: $reason (console: $work/run/transport-bench/console.log)"
fi

log=$work/run/transport-bench/console.log
val() {
    awk -v k="$1" '$1 == "BENCH" && $2 == k { print $3; exit }' "$log"
}
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'
}
up=$(val vmaug_upload_mib_s)
sw=$(val serial_write_mib_s)
mc=$(val guest_memcpy_mib_s)
vp50=$(val vmaug_ping_rtt_p50)
vp99=$(val vmaug_ping_rtt_p99)
qp50=$(val vmaug_query_rtt_p50)
qp99=$(val vmaug_query_rtt_p99)
ip50=$(val vmaug_invoke_rtt_p50)
ip99=$(val vmaug_invoke_rtt_p99)
sp50=$(val serial_rtt_p50)
sp99=$(val serial_rtt_p99)

echo
grep -E '^BENCH (vmaug_upload|serial_write|guest_memcpy)_mib_s_run' "$log" |
    sed 's/^BENCH /  /'
printf '\n%s\n' "transport benchmark: $mib MiB (median of $reps), $rtt_count round trips of 64 bytes, TCG, $(nproc) host CPUs"
printf '%-34s %14s %14s %8s\n' "" "/dev/vmaugment" "virtio-serial" "ratio"
printf '%-34s %9s MiB/s %9s MiB/s %7sx\n' "guest->host throughput" "$up" "$sw" "$(ratio "$up" "$sw")"
printf '%-34s %14s %14s\n' "  efficiency (/ guest memcpy)" "$(ratio "$up" "$mc")" "$(ratio "$sw" "$mc")"
printf '%-34s %9s MiB/s\n' "guest memcpy, same boot" "$mc"
printf '%-34s %11s us %11s us %7sx\n' "round trip p50 (PING, device)" "$vp50" "$sp50" "$(ratio "$sp50" "$vp50")"
printf '%-34s %11s us %11s us %7sx\n' "round trip p99 (PING, device)" "$vp99" "$sp99" "$(ratio "$sp99" "$vp99")"
printf '%-34s %11s us %11s us %7sx\n' "round trip p50 (QUERY, helper)" "$qp50" "$sp50" "$(ratio "$sp50" "$qp50")"
printf '%-34s %11s us %11s us %7sx\n' "round trip p99 (QUERY, helper)" "$qp99" "$sp99" "$(ratio "$sp99" "$qp99")"
printf '%-34s %11s us %11s us %7sx\n' "round trip p50 (INVOKE, module)" "$ip50" "$sp50" "$(ratio "$sp50" "$ip50")"
printf '%-34s %11s us %11s us %7sx\n' "round trip p99 (INVOKE, module)" "$ip99" "$sp99" "$(ratio "$sp99" "$ip99")"
if [ "$invoke_series" -gt 1 ]; then
    printf '%-34s %s\n' "INVOKE p50 of each series (us)" \
        "$(awk '$1 == "BENCH" && $2 == "vmaug_invoke_rtt_p50" { printf "%s ", $3 }' "$log")"
fi
echo "(throughput ratio: vmaugment / virtio-serial; latency ratio: virtio-serial / vmaugment; > 1 means vmaugment is better)"
