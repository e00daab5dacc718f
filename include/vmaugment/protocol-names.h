/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The names of the protocol's event types and module kinds, as module
 * manifests write them, the CLI shows them and the logs record them: one
 * vocabulary for the guest library and the host side.  Kept out of the
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
