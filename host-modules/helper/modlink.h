/*
 * The link between the helper and one sandboxed module process.
 *
 * A module process started for a module inherits one end of a socket
 * pair as fd MODLINK_FD_SOCKET, its verified payload as a sealed memfd at
 * MODLINK_FD_PAYLOAD and its state directory at MODLINK_FD_STATE (the
 * root it is confined to where the host allows chroot).  Messages use the
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

#include "vmaugment-module.h"

#define VMAUG_MODLINK_MAGIC         0x4d475541  /* "AUGM" */
#define MODLINK_FD_SOCKET           3
#define MODLINK_FD_PAYLOAD          4
#define MODLINK_FD_STATE            5   /* the module's state directory */

/* helper -> module */
#define MODLINK_CALL                1   /* function NUL-terminated, input */
#define MODLINK_EVENT               2   /* le32 type, data */
#define MODLINK_REPLY               3   /* le32 result (s32), data */
#define MODLINK_FINI                4   /* nothing */
#define MODLINK_START               5   /* struct modlink_start; carries the
                                         * payload memfd and state dir */
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

/*
 * A spare module process (started ahead of need, already in its
 * namespaces) waits for this as its first message, with two descriptors:
 * the sealed payload memfd and the state directory.
 */
struct modlink_start {
    __le64 memory_bytes;
    __le64 cpu_seconds;
    __le64 max_files;
    __le64 max_file_bytes;
    __le32 namespaces;
    __le32 reserved;
    __u8 name[VMAUG_NAME_MAX];
};

/* Largest message either side accepts. */
#define MODLINK_MAX_FROM_MODULE     (VMAUG_MODULE_MAX_SPOOL + 4096)
#define MODLINK_MAX_TO_MODULE       (VMAUG_MAX_REQ_PAYLOAD + 4096)

#endif /* VMAUGMENT_MODLINK_H */
