/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The names of the protocol's event types, module kinds and statuses, as
 * module manifests write them, the CLI shows them, QMP reports them and
 * the logs record them: one vocabulary for the guest library, the host
 * side and the QEMU device (which gets it through
 * include/standard-headers/, scripts/build-qemu.sh).  Kept out of the
 * UAPI header, which holds no code.
 */
#ifndef VMAUGMENT_PROTOCOL_NAMES_H
#define VMAUGMENT_PROTOCOL_NAMES_H

#include <stdint.h>
#include <string.h>
#include <linux/virtio_vmaugment.h>

/* The name of event @type, or NULL when it has none. */
static inline const char *vmaug_proto_event_name(uint32_t type)
{
    static const char *const names[VMAUG_EVENT_MAX + 1] = {
        [VMAUG_EVENT_HOST_START] = "host-start",
        [VMAUG_EVENT_IMAGE_START] = "image-start",
        [VMAUG_EVENT_IMAGE_STOP] = "image-stop",
        [VMAUG_EVENT_HOST_STOP] = "host-stop",
        [VMAUG_EVENT_PAUSE] = "pause",
        [VMAUG_EVENT_RESUME] = "resume",
        [VMAUG_EVENT_HELPER_CONNECTED] = "helper-connected",
        [VMAUG_EVENT_HELPER_LOST] = "helper-lost",
        [VMAUG_EVENT_MODULE_LOADED] = "module-loaded",
        [VMAUG_EVENT_MODULE_UNLOADED] = "module-unloaded",
        [VMAUG_EVENT_MODULE_CRASHED] = "module-crashed",
        [VMAUG_EVENT_MODULE_MESSAGE] = "module-message",
        [VMAUG_EVENT_RESTART_REQUESTED] = "restart-requested",
        [VMAUG_EVENT_MODULE_REFUSED] = "module-refused",
        [VMAUG_EVENT_SERVICING] = "servicing",
    };

    return type <= VMAUG_EVENT_MAX ? names[type] : NULL;
}

/* The name of module kind @kind, or NULL when it has none. */
static inline const char *vmaug_proto_kind_name(uint32_t kind)
{
    static const char *const names[VMAUG_KIND_SCANNER + 1] = {
        [VMAUG_KIND_UI] = "ui",
        [VMAUG_KIND_COMMUNICATION] = "communication",
        [VMAUG_KIND_UPGRADE] = "upgrade",
        [VMAUG_KIND_CONFIGURATION] = "configuration",
        [VMAUG_KIND_SCANNER] = "scanner",
    };

    return kind <= VMAUG_KIND_SCANNER ? names[kind] : NULL;
}

/* What the vocabulary says of a status (VMAUG_S_*). */
struct vmaug_proto_status {
    const char *name;           /* "NOT_FOUND": the CLI, JSON output */
    const char *words;          /* "not found": the host owner's messages */
    const char *text;           /* a sentence for the guest's user */
};

/* Status @status, or NULL for a number the protocol does not define. */
static inline const struct vmaug_proto_status *
vmaug_proto_status(uint32_t status)
{
    static const struct vmaug_proto_status statuses[VMAUG_S_MAX + 1] = {
        [VMAUG_S_OK] = { "OK", "ok", "success" },
        [VMAUG_S_INVALID] = { "INVALID", "invalid request",
            "the host rejected a malformed request" },
        [VMAUG_S_UNSUPPORTED] = { "UNSUPPORTED", "unsupported",
            "the host does not support this request" },
        [VMAUG_S_TOO_BIG] = { "TOO_BIG", "too big",
            "a size limit was exceeded" },
        [VMAUG_S_NO_SPACE] = { "NO_SPACE", "answer too big",
            "the response did not fit the buffer" },
        [VMAUG_S_UNAVAILABLE] = { "UNAVAILABLE", "unavailable",
            "the host helper is not connected" },
        [VMAUG_S_INTERRUPTED] = { "INTERRUPTED", "interrupted",
            "the host helper was lost during the request" },
        [VMAUG_S_NOT_FOUND] = { "NOT_FOUND", "not found",
            "no such module, upload or key" },
        [VMAUG_S_EXISTS] = { "EXISTS", "already exists",
            "already present" },
        [VMAUG_S_DENIED] = { "DENIED", "denied",
            "refused by the host's signature check or policy" },
        [VMAUG_S_BUSY] = { "BUSY", "busy", "the host is busy" },
        [VMAUG_S_HASH_MISMATCH] = { "HASH_MISMATCH", "hash mismatch",
            "the uploaded data does not match its SHA-256" },
        [VMAUG_S_IO_ERROR] = { "IO_ERROR", "I/O error",
            "the host's storage failed" },
        [VMAUG_S_MODULE_FAILED] = { "MODULE_FAILED", "module failed",
            "the module crashed or failed" },
        [VMAUG_S_TIMEOUT] = { "TIMEOUT", "timed out",
            "the host gave up waiting" },
        [VMAUG_S_INTERNAL] = { "INTERNAL", "internal error",
            "internal error on the host" },
    };

    return status <= VMAUG_S_MAX && statuses[status].name ?
           &statuses[status] : NULL;
}

/* The event type named @name, or 0 (no type) when none is. */
static inline uint32_t vmaug_proto_event_type(const char *name)
{
    uint32_t i;

    for (i = 1; i <= VMAUG_EVENT_MAX; i++) {
        const char *n = vmaug_proto_event_name(i);

        if (n && strcmp(n, name) == 0) {
            return i;
        }
    }
    return 0;
}

/* The module kind named @name, or 0 (no kind) when none is. */
static inline uint32_t vmaug_proto_kind(const char *name)
{
    uint32_t i;

    for (i = VMAUG_KIND_UI; i <= VMAUG_KIND_SCANNER; i++) {
        if (strcmp(vmaug_proto_kind_name(i), name) == 0) {
            return i;
        }
    }
    return 0;
}

#endif /* VMAUGMENT_PROTOCOL_NAMES_H */
