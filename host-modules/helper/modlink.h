/*
 * The link between the helper and one sandboxed module process.
 *
 * A module process is started (sandbox_spawn()) with one end of a socket
 * pair as fd MODLINK_FD_SOCKET and the sandbox's channel as
 * MODLINK_FD_SANDBOX.  It confines itself, then waits for MODLINK_START,
 * which carries the verified payload as a sealed memfd.  Messages use the
 * framing of the host helper link, struct vmaug_host_msg with magic
 * VMAUG_MODLINK_MAGIC, followed by len bytes; every number is
 * little-endian.
 *
 * The helper sends one CALL or EVENT at a time and waits for its RESULT;
 * while it waits, the module may send API requests (each answered by a
 * REPLY with the same tag, possibly carrying a file descriptor) and LOG
 * lines.  Either side treats anything else as a protocol error: the
 * helper kills the module.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VMAUGMENT_MODLINK_H
#define VMAUGMENT_MODLINK_H

#include <linux/virtio_vmaugment.h>
#include "vmaugment/host-link.h"

#include "vmaugment-module.h"

#define VMAUG_MODLINK_MAGIC         0x4d475541  /* "AUGM" */
#define MODLINK_FD_SOCKET           3
#define MODLINK_FD_SANDBOX          4   /* read by sandbox_confine() */
/* The descriptor the dynamic loader opens the payload at: the lowest one
 * free once the sandbox's channel is closed (see sandbox_code_file()). */
#define MODLINK_FD_CODE             4

/* helper -> module */
#define MODLINK_CALL                1   /* function NUL-terminated, input */
#define MODLINK_EVENT               2   /* le32 type, data */
#define MODLINK_REPLY               3   /* le32 result (s32), data */
#define MODLINK_FINI                4   /* nothing */
#define MODLINK_START               5   /* struct modlink_start; carries the
                                         * payload memfd */
/* module -> helper */
#define MODLINK_READY               16  /* le32 init result (s32) */
#define MODLINK_RESULT              17  /* le32 status, output */
#define MODLINK_API                 18  /* le32 op, arguments */
#define MODLINK_LOG                 19  /* le32 level, text */

/* API operations (the host API of vmaugment-module.h). */
#define MODLINK_OP_CONFIG_GET       1   /* key */
#define MODLINK_OP_CONFIG_SET       2   /* key NUL value */
#define MODLINK_OP_STATE_OPEN       3   /* le32 flags, path; reply has fd */
#define MODLINK_OP_SPOOL            4   /* title NUL document */
#define MODLINK_OP_POST_EVENT       5   /* bytes */
#define MODLINK_OP_POST_UI          6   /* JSON object */
#define MODLINK_OP_RESTART          7   /* le32 what */
#define MODLINK_OP_INSTALL          8   /* package */
#define MODLINK_OP_HOST_OPEN        9   /* path; reply has a read-only fd */
#define MODLINK_OP_SCAN_IMAGE       10  /* struct vmaug_scan_limits (le),
                                         * paths; reply is the report */
#define MODLINK_OP_SET_REASON       11  /* text */
#define MODLINK_OP_QUARANTINE_IMAGE 12  /* paths; reply is the report */

/*
 * Every module process, already confined, waits for this as its first
 * message, with one descriptor: the sealed payload memfd.  Its limits
 * came with its arguments; the module's state stays with the helper
 * (MODLINK_OP_STATE_OPEN).
 */
struct modlink_start {
    __u8 name[VMAUG_NAME_MAX];
};

/* Largest message either side accepts. */
#define MODLINK_MAX_FROM_MODULE     (VMAUG_MODULE_MAX_SPOOL + 4096)
#define MODLINK_MAX_TO_MODULE       (VMAUG_MAX_REQ_PAYLOAD + 4096)

#endif /* VMAUGMENT_MODLINK_H */
