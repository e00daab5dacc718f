# Host helper management for guest scenarios that need it ("# needs: helper").
# Sourced by run.sh.  Sets helper_error when something fails.

helper_bin=${VMAUGMENT_HELPER:-$build/host-modules/helper/vmaugment-helper}
helper_pid=
helper_error=
helper_qemu_args=()

helper_setup() {
    helper_error=
    if [ ! -x "$helper_bin" ]; then
        helper_error="no helper binary at $helper_bin"
        return 1
    fi
    helper_error="starting the helper is not supported yet"
    return 1
}

helper_start() {
    return 1
}

helper_kill() {
    if [ -n "$helper_pid" ]; then
        kill -9 "$helper_pid" 2>/dev/null || true
        wait "$helper_pid" 2>/dev/null || true
        helper_pid=
    fi
}

helper_stop() {
    helper_kill
}

helper_store_has() {
    return 1
}
