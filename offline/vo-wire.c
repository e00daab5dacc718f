/*
 * The worker's report frame (vo-wire.h).  The reading side is the
 * privileged parent: every length is checked before it is used, and
 * nothing of the body is trusted beyond being a bounded JSON object.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "json-strict.h"
#include "vo-disk.h"
#include "vo-wire.h"

gboolean vo_wire_write_all(int fd, const void *buf, gsize len,
                           GError **error)
{
    const guint8 *p = buf;

    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "cannot write: %s",
                        g_strerror(n < 0 ? errno : EPIPE));
            return FALSE;
        }
        p += n;
        len -= n;
    }
    return TRUE;
}

gboolean vo_wire_send(int fd, VoWireType type, JsonNode *body,
                      GError **error)
{
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autofree char *text = NULL;
    gsize len;
    VoWireHeader h;

    json_generator_set_root(gen, body);
    text = json_generator_to_data(gen, &len);
    if (len > VO_WIRE_MAX_BODY) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "the report is too large (%" G_GSIZE_FORMAT " bytes)",
                    len);
        return FALSE;
    }
    h.magic = GUINT32_TO_LE(VO_WIRE_MAGIC);
    h.version = GUINT16_TO_LE(VO_WIRE_VERSION);
    h.type = GUINT16_TO_LE(type);
    h.length = GUINT32_TO_LE((guint32)len);
    if (!vo_wire_write_all(fd, &h, sizeof(h), error) ||
        !vo_wire_write_all(fd, text, len, error)) {
        g_prefix_error(error, "cannot send the report: ");
        return FALSE;
    }
    return TRUE;
}

/* Fills @buf, or says how the stream ended; *@got tells how far it got. */
static gboolean vo_wire_read_all(int fd, void *buf, gsize len, gsize *got,
                                 gint64 deadline, GError **error)
{
    guint8 *p = buf;

    *got = 0;
    while (*got < len) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        gint64 left = deadline - g_get_monotonic_time();
        ssize_t n;
        int r;

        if (left <= 0) {
            g_set_error(error, VO_ERROR, VO_ERROR_TIMEOUT,
                        "the worker did not finish in time");
            return FALSE;
        }
        r = poll(&pfd, 1, (int)MIN(left / 1000 + 1, G_MAXINT));
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                        "cannot wait for the worker: %s", g_strerror(errno));
            return FALSE;
        }
        if (r == 0) {
            continue;
        }
        n = read(fd, p + *got, len - *got);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
            continue;
        }
        if (n < 0) {
            g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                        "cannot read the worker's report: %s",
                        g_strerror(errno));
            return FALSE;
        }
        if (n == 0) {
            return TRUE;
        }
        *got += n;
    }
    return TRUE;
}

gboolean vo_wire_malformed(GError **error, const char *fmt, ...)
{
    g_autofree char *why = NULL;
    va_list ap;

    va_start(ap, fmt);
    why = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                "the worker's report is malformed: %s", why);
    return FALSE;
}

static JsonObject *vo_wire_bad(GError **error, const char *why)
{
    vo_wire_malformed(error, "%s", why);
    return NULL;
}

JsonObject *vo_wire_receive(int fd, gint64 deadline, VoWireType *type,
                            GError **error)
{
    g_autoptr(JsonParser) parser = NULL;
    g_autofree char *body = NULL;
    JsonNode *root;
    VoWireHeader h;
    guint32 len;
    gsize got;

    if (!vo_wire_read_all(fd, &h, sizeof(h), &got, deadline, error)) {
        return NULL;
    }
    if (got == 0) {
        /* Not malformed: nothing at all (the caller asks why). */
        g_set_error(error, VO_ERROR, VO_ERROR_NOT_FOUND,
                    "the worker's report is malformed: no report");
        return NULL;
    }
    if (got < sizeof(h)) {
        return vo_wire_bad(error, "short header");
    }
    if (GUINT32_FROM_LE(h.magic) != VO_WIRE_MAGIC) {
        return vo_wire_bad(error, "bad magic");
    }
    if (GUINT16_FROM_LE(h.version) != VO_WIRE_VERSION) {
        return vo_wire_bad(error, "unknown version");
    }
    if (GUINT16_FROM_LE(h.type) != VO_WIRE_RESULT &&
        GUINT16_FROM_LE(h.type) != VO_WIRE_STAGE) {
        return vo_wire_bad(error, "unknown message type");
    }
    len = GUINT32_FROM_LE(h.length);
    if (len == 0 || len > VO_WIRE_MAX_BODY) {
        return vo_wire_bad(error, "body length out of range");
    }
    body = g_malloc(len + 1);
    if (!vo_wire_read_all(fd, body, len, &got, deadline, error)) {
        return NULL;
    }
    if (got != len) {
        return vo_wire_bad(error, "truncated body");
    }
    body[len] = '\0';
    if (memchr(body, '\0', len) != NULL ||
        !g_utf8_validate(body, len, NULL)) {
        return vo_wire_bad(error, "body is not UTF-8 text");
    }
    /* json-glib's parser recurses once per nesting level: a body of
     * sixteen million '[' would overflow our stack before any check on
     * the tree could run, so the nesting is measured on the text first;
     * and the values are counted, since a body of "0," repeated would
     * take the parent some 670 MiB in nodes. */
    if (!vmaug_json_depth_ok(body, len, VO_WIRE_MAX_DEPTH)) {
        return vo_wire_bad(error, "body is nested too deeply");
    }
    if (!vmaug_json_shape_ok(body, len, VO_WIRE_MAX_DEPTH,
                             VO_WIRE_MAX_VALUES)) {
        return vo_wire_bad(error, "body has too many values");
    }
    parser = json_parser_new_immutable();
    if (!json_parser_load_from_data(parser, body, len, NULL)) {
        return vo_wire_bad(error, "body is not JSON");
    }
    root = json_parser_get_root(parser);
    if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
        return vo_wire_bad(error, "body is not an object");
    }
    *type = GUINT16_FROM_LE(h.type);
    return json_object_ref(json_node_get_object(root));
}

gboolean vo_wire_expect_end(int fd, gint64 deadline, GError **error)
{
    gsize got;
    char extra;

    if (!vo_wire_read_all(fd, &extra, 1, &got, deadline, error)) {
        return FALSE;
    }
    if (got != 0) {
        /* The result is the last word: anything after it is not ours. */
        return vo_wire_malformed(error, "data after the result");
    }
    return TRUE;
}
