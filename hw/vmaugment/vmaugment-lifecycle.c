/*
 * vmaugment device: lifecycle events
 *
 * The device tells the host helper when the host application (QEMU)
 * starts and stops, when the VM image starts and stops, and when the VM
 * pauses and resumes; the helper runs the handlers of the modules
 * registered with the image.  With the "image" property set, the device
 * holds the VM's first start until the helper has loaded those modules
 * and their image-start handlers have returned, so that they run before
 * the guest's first instruction.  The helper may refuse the start (a
 * required module is unavailable): QEMU then says why and exits.
 *
 * Every decision of the device to hold, reset or stop the VM or QEMU is
 * taken in this file, and only here: vmaugment_start_decided() (the
 * image start) and vmaugment_lifecycle_restart() (a module's request,
 * with the allow-restart property).  So is letting go of the VM's block
 * nodes while the start is held (IMAGE_ACCESS), for the helper to service
 * the image before the guest's first instruction: never while the guest
 * can run, and the nodes are always taken back before it does.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "block/block-global-state.h"
#include "qapi/error.h"
#include "qapi/qapi-events-vmaugment.h"
#include "qemu/error-report.h"
#include "hw/qdev-core.h"
#include "hw/vmaugment/vmaugment.h"
#include "system/runstate.h"
#include "system/runstate-action.h"
#include "trace.h"

/* How long QEMU waits, when it exits, for the helper to take the stop. */
#define VMAUGMENT_STOP_FLUSH_MS     2000

static void vmaugment_lifecycle_send(VirtIOVMAugment *s, uint32_t event,
                                     uint32_t flags, uint64_t tag)
{
    struct vmaug_host_lifecycle msg = {
        .event = cpu_to_le32(event),
        .flags = cpu_to_le32(flags),
    };

    trace_vmaugment_lifecycle(s, event, flags, tag);
    vmaugment_helper_send(s, VMAUG_HOST_LIFECYCLE, tag, &msg, sizeof(msg),
                          NULL, 0);
}

/* Let the VM run: the start it was asked for, if any, happens now. */
static void vmaugment_start_release(VirtIOVMAugment *s)
{
    if (s->start_held) {
        s->start_held = false;
        vm_start_release();
    }
}

/*
 * Take back the block nodes released for the helper: the image may have
 * changed, so every format driver reads its metadata again.  Until then
 * the guest must not run.
 */
static bool vmaugment_image_retake(VirtIOVMAugment *s, Error **errp)
{
    Error *local_err = NULL;

    if (!s->image_released) {
        return true;
    }
    bdrv_activate_all(&local_err);
    if (local_err) {
        error_propagate_prepend(errp, local_err, "the image could not be "
                                "taken back after the host serviced it: ");
        return false;
    }
    s->image_released = false;
    trace_vmaugment_image_access(s, VMAUG_IMAGE_RETAKE, 0);
    return true;
}

static void vmaugment_start_decided(VirtIOVMAugment *s, bool ok,
                                    const char *message)
{
    g_autofree char *path = vmaugment_path(s);
    g_autofree char *retake_msg = NULL;
    Error *err = NULL;
    int64_t took_ns = qemu_clock_get_ns(QEMU_CLOCK_REALTIME) -
                      s->start_sent_ns;

    /* A helper that released the image and said nothing more. */
    if (ok && !vmaugment_image_retake(s, &err)) {
        ok = false;
        retake_msg = g_strdup(error_get_pretty(err));
        message = retake_msg;
        error_free(err);
    }
    timer_del(s->start_timer);
    s->start_tag = 0;
    s->start_decided = true;
    s->start_duration_us = s->start_sent_ns ? MAX(took_ns, 0) / SCALE_US : 0;
    g_free(s->start_message);
    s->start_message = g_strdup(message);
    qapi_event_send_vmaugment_image_start(path, ok, message,
                                          s->start_duration_us);
    if (ok) {
        s->start = VMAUGMENT_START_DONE;
        vmaugment_start_release(s);
        return;
    }
    /* The hold stays: this image must not run. */
    s->start = VMAUGMENT_START_FAILED;
    error_report("vmaugment: image start refused: %s", message);
    qemu_system_shutdown_request_with_code(SHUTDOWN_CAUSE_HOST_ERROR,
                                           EXIT_FAILURE);
}

static void vmaugment_start_timeout(void *opaque)
{
    VirtIOVMAugment *s = opaque;
    g_autofree char *msg = NULL;

    if (s->start != VMAUGMENT_START_WAITING) {
        return;
    }
    msg = g_strdup_printf("the host helper %s within %u ms",
                          s->helper_ready ? "did not prepare the image" :
                          "did not connect", s->conf.start_timeout_ms);
    vmaugment_start_decided(s, false, msg);
}

void vmaugment_lifecycle_helper_ready(VirtIOVMAugment *s)
{
    bool again = s->host_started;

    /*
     * A helper that connects again lost its modules: they load again,
     * but their start handlers ran already.
     */
    vmaugment_lifecycle_send(s, VMAUG_EVENT_HOST_START,
                             again ? VMAUG_LIFECYCLE_F_RECONNECT : 0, 0);
    s->host_started = true;
    if (s->image_stopped) {
        return;
    }
    /* Never 0, and never a guest request's tag. */
    s->start_tag = VMAUGMENT_ADMIN_TAG | vmaugment_next_tag(s);
    s->start_sent_ns = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    vmaugment_lifecycle_send(s, VMAUG_EVENT_IMAGE_START,
                             s->image_ran || s->image_prepared ?
                             VMAUG_LIFECYCLE_F_RECONNECT : 0, s->start_tag);
}

bool vmaugment_lifecycle_done(VirtIOVMAugment *s, uint64_t tag,
                              const uint8_t *data, uint32_t len,
                              const char **why)
{
    struct vmaug_host_lifecycle_done done;
    g_autofree char *msg = NULL;
    uint16_t status;

    if (len < sizeof(done) ||
        len - sizeof(done) > VMAUG_HOST_MESSAGE_MAX) {
        *why = "LIFECYCLE_DONE of a wrong size";
        return false;
    }
    memcpy(&done, data, sizeof(done));
    if (tag == 0 || tag != s->start_tag ||
        le32_to_cpu(done.event) != VMAUG_EVENT_IMAGE_START) {
        *why = "LIFECYCLE_DONE for nothing the device asked";
        return false;
    }
    status = le16_to_cpu(done.status);
    msg = vmaugment_helper_text(data + sizeof(done), len - sizeof(done));
    trace_vmaugment_lifecycle_done(s, tag, status);
    s->image_prepared |= status == VMAUG_S_OK;
    if (s->start != VMAUGMENT_START_WAITING) {
        /*
         * Nothing waits: a VM without an image property, or a helper
         * that reconnected to a VM that was prepared before.
         */
        s->start_tag = 0;
        if (status != VMAUG_S_OK) {
            warn_report("vmaugment: the host helper could not load the "
                        "image's modules: %s", msg);
        }
        return true;
    }
    if (status != VMAUG_S_OK && !*msg) {
        g_free(msg);
        msg = g_strdup_printf("the host helper answered status %u", status);
    }
    vmaugment_start_decided(s, status == VMAUG_S_OK,
                            status == VMAUG_S_OK ? NULL : msg);
    return true;
}

static void vmaugment_image_access_done(VirtIOVMAugment *s, uint64_t tag,
                                        uint32_t op, uint16_t status,
                                        const char *message)
{
    struct vmaug_host_image_access_done done = {
        .op = cpu_to_le32(op),
        .status = cpu_to_le16(status),
    };
    size_t len = message ? MIN(strlen(message), VMAUG_HOST_MESSAGE_MAX) : 0;

    trace_vmaugment_image_access(s, op, status);
    vmaugment_helper_send(s, VMAUG_HOST_IMAGE_ACCESS_DONE, tag, &done,
                          sizeof(done), message, len);
}

bool vmaugment_lifecycle_image_access(VirtIOVMAugment *s, uint64_t tag,
                                      const uint8_t *data, uint32_t len,
                                      const char **why)
{
    struct vmaug_host_image_access req;
    g_autofree char *msg = NULL;
    Error *err = NULL;
    uint32_t op;
    int ret;

    if (len != sizeof(req)) {
        *why = "IMAGE_ACCESS of a wrong size";
        return false;
    }
    memcpy(&req, data, sizeof(req));
    op = le32_to_cpu(req.op);
    if ((op != VMAUG_IMAGE_RELEASE && op != VMAUG_IMAGE_RETAKE) ||
        req.reserved) {
        *why = "IMAGE_ACCESS with an unknown op";
        return false;
    }
    /*
     * Only the start being held, for the tag the device asked with: once
     * decided the guest may run, and a guest that runs on released
     * nodes would write past what the host changed.  A late helper (the
     * start timed out) is answered, not dropped.
     */
    if (tag == 0 || tag != s->start_tag ||
        s->start != VMAUGMENT_START_WAITING) {
        vmaugment_image_access_done(s, tag, op, VMAUG_S_BUSY,
                                    "no image start is held for this tag");
        return true;
    }
    if (op == VMAUG_IMAGE_RETAKE) {
        if (vmaugment_image_retake(s, &err)) {
            vmaugment_image_access_done(s, tag, op, VMAUG_S_OK, NULL);
            return true;
        }
        msg = g_strdup(error_get_pretty(err));
        error_free(err);
        vmaugment_image_access_done(s, tag, op, VMAUG_S_IO_ERROR, msg);
        /* The image cannot be run as it is. */
        vmaugment_start_decided(s, false, msg);
        return true;
    }
    if (!s->image_released) {
        /*
         * Flushes every cache and drops the image's locks, as migration
         * does for its destination.
         */
        ret = bdrv_inactivate_all();
        if (ret < 0) {
            msg = g_strdup_printf("the image could not be released: %s",
                                  strerror(-ret));
            /* Whatever was inactivated is taken back. */
            bdrv_activate_all(NULL);
            vmaugment_image_access_done(s, tag, op, VMAUG_S_IO_ERROR, msg);
            return true;
        }
        s->image_released = true;
    }
    vmaugment_image_access_done(s, tag, op, VMAUG_S_OK, NULL);
    return true;
}

void vmaugment_lifecycle_vm_state(VirtIOVMAugment *s, bool running,
                                  RunState state)
{
    uint32_t event;

    if (running && !s->image_ran) {
        /* The first start: the image-start handlers ran already. */
        s->image_ran = true;
        vmaugment_post_event(s, VMAUG_EVENT_IMAGE_START, NULL, 0);
        return;
    }
    if (running) {
        event = VMAUG_EVENT_RESUME;
    } else if (state == RUN_STATE_PAUSED) {
        event = VMAUG_EVENT_PAUSE;
    } else {
        return;
    }
    if (s->helper_ready) {
        vmaugment_lifecycle_send(s, event, 0, 0);
    }
    vmaugment_post_event(s, event, NULL, 0);
}

/*
 * QEMU shuts down (guest power-off, quit, a signal): the image stops, and
 * unless QEMU stays to be started again, so does the host application.
 * Not an exit notifier: those run after qemu_cleanup() closed the
 * chardevs.  The main loop will not run again to flush what we queue.
 */
static void vmaugment_shutdown(Notifier *n, void *opaque)
{
    VirtIOVMAugment *s = container_of(n, VirtIOVMAugment, shutdown_notifier);

    if (!s->helper_ready) {
        return;
    }
    /* After migrating away, the image runs on elsewhere. */
    if (s->image_ran && !s->image_stopped &&
        !runstate_check(RUN_STATE_POSTMIGRATE)) {
        s->image_stopped = true;
        vmaugment_lifecycle_send(s, VMAUG_EVENT_IMAGE_STOP, 0, 0);
    }
    if (shutdown_action != SHUTDOWN_ACTION_PAUSE) {
        vmaugment_lifecycle_send(s, VMAUG_EVENT_HOST_STOP, 0, 0);
    }
    vmaugment_helper_flush_sync(s, VMAUGMENT_STOP_FLUSH_MS);
}

void vmaugment_lifecycle_restart(VirtIOVMAugment *s, const uint8_t *data,
                                 uint32_t len)
{
    struct vmaug_restart restart;

    if (!s->conf.allow_restart || len != sizeof(restart)) {
        return;
    }
    memcpy(&restart, data, sizeof(restart));
    /* As for its QMP event: the helper's names must end in their fields. */
    if (!memchr(restart.ref.name, 0, sizeof(restart.ref.name)) ||
        !memchr(restart.ref.version, 0, sizeof(restart.ref.version))) {
        return;
    }
    switch (le32_to_cpu(restart.what)) {
    case VMAUG_RESTART_IMAGE:
        qemu_system_reset_request(SHUTDOWN_CAUSE_HOST_QMP_SYSTEM_RESET);
        break;
    case VMAUG_RESTART_HOST:
        /* The supervisor (a service manager) starts QEMU again. */
        qemu_system_shutdown_request_with_code(SHUTDOWN_CAUSE_HOST_QMP_QUIT,
                                               VMAUG_RESTART_EXIT_CODE);
        break;
    }
}

bool vmaugment_lifecycle_realize(VirtIOVMAugment *s, Error **errp)
{
    const char *image = s->conf.image;

    if (image && (!g_path_is_absolute(image) ||
                  strlen(image) > VMAUG_HOST_PATH_MAX ||
                  !g_file_test(image, G_FILE_TEST_IS_REGULAR))) {
        error_setg(errp, "'image' must be the absolute path, of at most %u "
                   "bytes, of the VM's disk image file", VMAUG_HOST_PATH_MAX);
        return false;
    }
    if (s->conf.start_timeout_ms == 0 ||
        s->conf.start_timeout_ms > VMAUG_MAX_TIMEOUT_MS) {
        error_setg(errp, "'start-timeout-ms' must be between 1 and %u",
                   VMAUG_MAX_TIMEOUT_MS);
        return false;
    }
    s->start_timer = timer_new_ms(QEMU_CLOCK_REALTIME,
                                  vmaugment_start_timeout, s);
    s->shutdown_notifier.notify = vmaugment_shutdown;
    qemu_register_shutdown_notifier(&s->shutdown_notifier);

    /*
     * Only a VM that has not run yet waits: a hot-plugged device or a
     * migration destination joins an image that started elsewhere.
     */
    if (phase_check(PHASE_MACHINE_READY) ||
        runstate_check(RUN_STATE_INMIGRATE)) {
        s->image_ran = true;
        s->start = VMAUGMENT_START_DONE;
        return true;
    }
    if (!image) {
        s->start = VMAUGMENT_START_DONE;
        return true;
    }
    s->start = VMAUGMENT_START_WAITING;
    s->start_held = true;
    vm_start_hold();
    timer_mod(s->start_timer, qemu_clock_get_ms(QEMU_CLOCK_REALTIME) +
                              s->conf.start_timeout_ms);
    return true;
}

void vmaugment_lifecycle_unrealize(VirtIOVMAugment *s)
{
    notifier_remove(&s->shutdown_notifier);
    timer_free(s->start_timer);
    s->start_timer = NULL;
    g_free(s->start_message);
    s->start_message = NULL;
    /* A device that goes away does not keep the VM from running. */
    vmaugment_start_release(s);
}
