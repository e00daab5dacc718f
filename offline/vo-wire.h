/*
 * The offline worker's report to its parent: one framed message on a
 * socket, written by the confined worker and read by the privileged
 * parent, which treats it like any other input from the image's guest
 * (docs/offline.rst, "The worker's report", is normative).
 *
 * A frame is a fixed little-endian header (magic, version, type, body
 * length) and a JSON object of at most VO_WIRE_MAX_BODY bytes.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include <json-glib/json-glib.h>

G_BEGIN_DECLS

#define VO_WIRE_MAGIC       0x31574f56u     /* "VOW1" */
#define VO_WIRE_VERSION     1
/* An inventory of tens of thousands of packages fits many times over. */
#define VO_WIRE_MAX_BODY    (16u * 1024 * 1024)
/* Deeper JSON than any report we write is refused, not walked. */
#define VO_WIRE_MAX_DEPTH   16
/* Values and members in one body: an inventory of 3,000 packages has
 * about 40,000; at the bound json-glib holds some 80 MiB of nodes. */
#define VO_WIRE_MAX_VALUES  (1u << 20)

typedef enum {
    VO_WIRE_RESULT = 1,         /* the job's outcome; the last frame */
    VO_WIRE_STAGE = 2,          /* {"stage": name}: the job moved on */
} VoWireType;

typedef struct {
    guint32 magic;
    guint16 version;
    guint16 type;
    guint32 length;             /* of the JSON body that follows */
} __attribute__((packed)) VoWireHeader;

/* Writes all of @buf to @fd (a socket, a pipe, a file): FALSE with
 * @error when it cannot. */
gboolean vo_wire_write_all(int fd, const void *buf, gsize len,
                           GError **error);
/* Writes one frame of @type carrying @body (an object) to @fd. */
gboolean vo_wire_send(int fd, VoWireType type, JsonNode *body,
                      GError **error);

/*
 * Reads one frame from @fd before @deadline (g_get_monotonic_time()): the
 * header must carry our magic, version and a known type, the body must
 * parse as a JSON object no deeper than VO_WIRE_MAX_DEPTH.  Returns the
 * body, or NULL with @error naming what was wrong: VO_ERROR_NOT_FOUND when
 * the stream ended before its first byte, VO_ERROR_TIMEOUT at @deadline.
 */
JsonObject *vo_wire_receive(int fd, gint64 deadline, VoWireType *type,
                            GError **error);

/* Sets @error to "the worker's report is malformed: WHY"; FALSE. */
gboolean vo_wire_malformed(GError **error, const char *fmt, ...)
    G_GNUC_PRINTF(2, 3);

/* After the result: FALSE unless the stream ends before @deadline. */
gboolean vo_wire_expect_end(int fd, gint64 deadline, GError **error);

G_END_DECLS
