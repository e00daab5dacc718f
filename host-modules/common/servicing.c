/*
 * vmaugment host side: the offline-servicing record of a disk image (see
 * servicing.h).
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <json-glib/json-glib.h>

#include "host-common.h"
#include "json-strict.h"
#include "servicing.h"
#include "store.h"

#define SERVICING_FORMAT        1

static const gchar *const servicing_state_names[] = {
    [VMAUG_SERVICING_STATE_APPLIED] = "applied-offline",
    [VMAUG_SERVICING_STATE_CONFIRMED] = "confirmed",
    [VMAUG_SERVICING_STATE_FAILED] = "failed",
};

static void servicing_entry_free(gpointer p)
{
    VmaugServicingEntry *e = p;

    g_free(e->bundle);
    g_free(e->version);
    g_free(e->manifest_sha256);
    g_free(e->applied);
    g_free(e->reported);
    g_free(e->message);
    g_free(e);
}

void vmaug_servicing_free(VmaugServicing *s)
{
    if (s == NULL) {
        return;
    }
    g_free(s->path);
    g_ptr_array_unref(s->entries);
    g_free(s);
}

gchar *vmaug_servicing_path(const gchar *image)
{
    return g_strconcat(image, VMAUG_SERVICING_SIDECAR_SUFFIX, NULL);
}

const gchar *vmaug_servicing_state_name(VmaugServicingState state)
{
    return state < G_N_ELEMENTS(servicing_state_names) ?
           servicing_state_names[state] : "unknown";
}

static gchar *servicing_now(void)
{
    g_autoptr(GDateTime) now = g_date_time_new_now_utc();

    return g_date_time_format_iso8601(now);
}

static gboolean servicing_is_sha256(const gchar *s)
{
    if (s == NULL || strlen(s) != 64) {
        return FALSE;
    }
    for (; *s; s++) {
        if (!g_ascii_isxdigit(*s) || g_ascii_isupper(*s)) {
            return FALSE;
        }
    }
    return TRUE;
}

/* The names a bundle manifest allows for ids and versions, and what fits
 * a protocol field. */
static gboolean servicing_name_ok(const gchar *s, gsize max)
{
    if (s == NULL || *s == '\0' || strlen(s) >= max) {
        return FALSE;
    }
    for (; *s; s++) {
        if (!g_ascii_isalnum(*s) && !strchr("._+-", *s)) {
            return FALSE;
        }
    }
    return TRUE;
}

static gboolean servicing_invalid(GError **error, const gchar *path,
                                  const gchar *why)
{
    g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                "servicing record %s: %s", path, why);
    return FALSE;
}

static gboolean servicing_member_uint(JsonObject *o, const gchar *name,
                                      guint32 *out)
{
    JsonNode *n = json_object_get_member(o, name);
    gint64 v;

    if (n == NULL || !JSON_NODE_HOLDS_VALUE(n) ||
        json_node_get_value_type(n) != G_TYPE_INT64) {
        return FALSE;
    }
    v = json_node_get_int(n);
    if (v < 0 || v > G_MAXUINT32) {
        return FALSE;
    }
    *out = (guint32)v;
    return TRUE;
}

static VmaugServicingEntry *servicing_parse_entry(JsonNode *node)
{
    g_autoptr(GList) members = NULL;
    VmaugServicingEntry *e;
    const gchar *state, *msg;
    JsonObject *o;
    guint i;

    if (!JSON_NODE_HOLDS_OBJECT(node)) {
        return NULL;
    }
    o = json_node_get_object(node);
    members = json_object_get_members(o);
    for (GList *l = members; l; l = l->next) {
        static const gchar *const known[] = {
            "bundle", "version", "manifest_sha256", "applied", "starts",
            "state", "boot", "reported", "message", NULL,
        };
        if (!g_strv_contains(known, l->data)) {
            return NULL;
        }
    }
    e = g_new0(VmaugServicingEntry, 1);
    e->bundle = g_strdup(vmaug_json_string(o, "bundle"));
    e->version = g_strdup(vmaug_json_string(o, "version"));
    e->manifest_sha256 = g_strdup(vmaug_json_string(o,
                                                          "manifest_sha256"));
    e->applied = g_strdup(vmaug_json_string(o, "applied"));
    e->reported = g_strdup(vmaug_json_string(o, "reported"));
    msg = vmaug_json_string(o, "message");
    state = vmaug_json_string(o, "state");
    for (i = 0; state && i < G_N_ELEMENTS(servicing_state_names); i++) {
        if (g_str_equal(state, servicing_state_names[i])) {
            break;
        }
    }
    if (!servicing_name_ok(e->bundle, VMAUG_NAME_MAX) ||
        !servicing_name_ok(e->version, VMAUG_VERSION_MAX) ||
        !servicing_is_sha256(e->manifest_sha256) || e->applied == NULL ||
        !servicing_member_uint(o, "starts", &e->starts) ||
        state == NULL || i == G_N_ELEMENTS(servicing_state_names) ||
        (json_object_has_member(o, "boot") &&
         !servicing_member_uint(o, "boot", &e->boot)) ||
        (json_object_has_member(o, "message") &&
         (msg == NULL || strlen(msg) > VMAUG_SERVICING_MESSAGE_MAX))) {
        servicing_entry_free(e);
        return NULL;
    }
    e->state = i;
    e->message = g_strdup(msg);
    return e;
}

/*
 * The record's text, if it is a regular file of at most
 * VMAUG_SERVICING_MAX_FILE bytes; NULL with no error when there is none.
 * It lies next to the image, where anything may have been put under its
 * name: a FIFO must not keep the helper waiting (O_NONBLOCK), nor a
 * device or a huge file fill its memory.
 */
static gchar *servicing_read(const gchar *path, gsize *len, GError **error)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    g_autofree gchar *buf = NULL;
    struct stat st;

    *len = 0;
    if (fd < 0) {
        if (errno != ENOENT) {
            g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_IO,
                        "servicing record %s: %s", path, g_strerror(errno));
        }
        return NULL;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
        st.st_size > VMAUG_SERVICING_MAX_FILE) {
        g_autofree gchar *why = g_strdup_printf(
            "not a regular file of at most %u bytes",
            VMAUG_SERVICING_MAX_FILE);

        close(fd);
        servicing_invalid(error, path, why);
        return NULL;
    }
    /* One byte more than fstat() saw: it grows, someone is writing it. */
    buf = g_malloc(st.st_size + 2);
    while (*len <= (gsize)st.st_size) {
        ssize_t n = read(fd, buf + *len, st.st_size + 1 - *len);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        *len += n;
    }
    close(fd);
    if (*len != (gsize)st.st_size) {
        servicing_invalid(error, path, "changed while it was read");
        return NULL;
    }
    buf[*len] = '\0';
    return g_steal_pointer(&buf);
}

VmaugServicing *vmaug_servicing_load(const gchar *image, GError **error)
{
    g_autoptr(VmaugServicing) s = g_new0(VmaugServicing, 1);
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GError) local = NULL;
    g_autofree gchar *text = NULL;
    JsonObject *root;
    JsonNode *node;
    JsonArray *arr;
    gsize len;

    s->path = vmaug_servicing_path(image);
    s->entries = g_ptr_array_new_with_free_func(servicing_entry_free);
    text = servicing_read(s->path, &len, &local);
    if (text == NULL) {
        if (local == NULL) {
            return g_steal_pointer(&s);
        }
        g_propagate_error(error, g_steal_pointer(&local));
        return NULL;
    }
    /* The record nests object > array > object: deeper text would only
     * make json-glib recurse. */
    if (memchr(text, '\0', len) != NULL ||
        !vmaug_json_depth_ok(text, len, 3)) {
        servicing_invalid(error, s->path, "nested too deeply");
        return NULL;
    }
    if (!json_parser_load_from_data(parser, text, len, &local)) {
        servicing_invalid(error, s->path, local->message);
        return NULL;
    }
    node = json_parser_get_root(parser);
    if (node == NULL || !JSON_NODE_HOLDS_OBJECT(node)) {
        servicing_invalid(error, s->path, "not a JSON object");
        return NULL;
    }
    root = json_node_get_object(node);
    node = json_object_get_member(root, "format");
    if (node == NULL || !JSON_NODE_HOLDS_VALUE(node) ||
        json_node_get_value_type(node) != G_TYPE_INT64 ||
        json_node_get_int(node) != SERVICING_FORMAT) {
        servicing_invalid(error, s->path, "unknown format");
        return NULL;
    }
    node = json_object_get_member(root, "bundles");
    if (node == NULL || !JSON_NODE_HOLDS_ARRAY(node)) {
        servicing_invalid(error, s->path, "no \"bundles\" array");
        return NULL;
    }
    arr = json_node_get_array(node);
    if (json_array_get_length(arr) > VMAUG_SERVICING_MAX_ENTRIES) {
        servicing_invalid(error, s->path, "too many bundles");
        return NULL;
    }
    for (guint i = 0; i < json_array_get_length(arr); i++) {
        VmaugServicingEntry *e =
            servicing_parse_entry(json_array_get_element(arr, i));

        if (e == NULL) {
            g_autofree gchar *why = g_strdup_printf("bundle entry %u is "
                                                    "malformed", i);
            servicing_invalid(error, s->path, why);
            return NULL;
        }
        g_ptr_array_add(s->entries, e);
    }
    return g_steal_pointer(&s);
}

void vmaug_servicing_entry_build(JsonBuilder *b,
                                 const VmaugServicingEntry *e)
{
    json_builder_set_member_name(b, "bundle");
    json_builder_add_string_value(b, e->bundle);
    json_builder_set_member_name(b, "version");
    json_builder_add_string_value(b, e->version);
    json_builder_set_member_name(b, "manifest_sha256");
    json_builder_add_string_value(b, e->manifest_sha256);
    json_builder_set_member_name(b, "state");
    json_builder_add_string_value(b, vmaug_servicing_state_name(e->state));
    json_builder_set_member_name(b, "applied");
    json_builder_add_string_value(b, e->applied);
    if (e->state != VMAUG_SERVICING_STATE_APPLIED) {
        json_builder_set_member_name(b, "boot");
        json_builder_add_int_value(b, e->boot);
    }
    if (e->message != NULL) {
        json_builder_set_member_name(b, "message");
        json_builder_add_string_value(b, e->message);
    }
}

gboolean vmaug_servicing_save(VmaugServicing *s, GError **error)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(JsonNode) root = NULL;
    g_autofree gchar *json = NULL;
    gsize len;

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "format");
    json_builder_add_int_value(b, SERVICING_FORMAT);
    json_builder_set_member_name(b, "bundles");
    json_builder_begin_array(b);
    for (guint i = 0; i < s->entries->len; i++) {
        VmaugServicingEntry *e = g_ptr_array_index(s->entries, i);

        json_builder_begin_object(b);
        vmaug_servicing_entry_build(b, e);
        json_builder_set_member_name(b, "starts");
        json_builder_add_int_value(b, e->starts);
        if (e->state != VMAUG_SERVICING_STATE_APPLIED) {
            json_builder_set_member_name(b, "reported");
            json_builder_add_string_value(b, e->reported);
        }
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    json_builder_end_object(b);
    root = json_builder_get_root(b);
    json_generator_set_root(gen, root);
    json_generator_set_pretty(gen, TRUE);
    json = json_generator_to_data(gen, &len);
    return vmaug_store_write_file(s->path, json, len, error);
}

static VmaugServicingEntry *servicing_find(VmaugServicing *s,
                                           const gchar *bundle,
                                           const gchar *version)
{
    for (guint i = 0; i < s->entries->len; i++) {
        VmaugServicingEntry *e = g_ptr_array_index(s->entries, i);

        if (g_str_equal(e->bundle, bundle) &&
            g_str_equal(e->version, version)) {
            return e;
        }
    }
    return NULL;
}

void vmaug_servicing_applied(VmaugServicing *s, const gchar *bundle,
                             const gchar *version, const gchar *sha256)
{
    VmaugServicingEntry *e = servicing_find(s, bundle, version);

    if (e != NULL) {
        g_ptr_array_remove(s->entries, e);
    }
    while (s->entries->len >= VMAUG_SERVICING_MAX_ENTRIES) {
        g_ptr_array_remove_index(s->entries, 0);
    }
    e = g_new0(VmaugServicingEntry, 1);
    e->bundle = g_strdup(bundle);
    e->version = g_strdup(version);
    e->manifest_sha256 = g_ascii_strdown(sha256, -1);
    e->applied = servicing_now();
    e->state = VMAUG_SERVICING_STATE_APPLIED;
    g_ptr_array_add(s->entries, e);
}

gboolean vmaug_servicing_note_start(VmaugServicing *s)
{
    gboolean any = FALSE;

    for (guint i = 0; i < s->entries->len; i++) {
        VmaugServicingEntry *e = g_ptr_array_index(s->entries, i);

        if (e->state == VMAUG_SERVICING_STATE_APPLIED &&
            e->starts < G_MAXUINT32) {
            e->starts++;
            any = TRUE;
        }
    }
    return any;
}

gchar *vmaug_servicing_clean_text(const guint8 *text, gsize len,
                                  GError **error)
{
    g_autoptr(GString) out = g_string_new(NULL);
    const gchar *p;

    if (len > VMAUG_SERVICING_MESSAGE_MAX) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_TOO_BIG,
                    "the message is longer than %u bytes",
                    VMAUG_SERVICING_MESSAGE_MAX);
        return NULL;
    }
    if (!g_utf8_validate((const gchar *)text, len, NULL) ||
        memchr(text, 0, len) != NULL) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "the message is not UTF-8 text");
        return NULL;
    }
    /* Whoever reads the record or the logs later must not receive the
     * guest's terminal escapes, line breaks or direction overrides. */
    for (p = (const gchar *)text; p < (const gchar *)text + len;
         p = g_utf8_next_char(p)) {
        gunichar c = g_utf8_get_char(p);

        if ((g_unichar_isprint(c) &&
             g_unichar_type(c) != G_UNICODE_FORMAT) || c == ' ') {
            g_string_append_unichar(out, c);
        } else {
            g_string_append_c(out, '?');
        }
    }
    return g_string_free(g_steal_pointer(&out), FALSE);
}

VmaugServicingEntry *vmaug_servicing_report(
    VmaugServicing *s, const struct vmaug_servicing_report *rep,
    const guint8 *text, gsize text_len, GError **error)
{
    g_autofree gchar *bundle = vmaug_fixed_string(rep->bundle,
                                                  sizeof(rep->bundle));
    g_autofree gchar *version = vmaug_fixed_string(rep->version,
                                                   sizeof(rep->version));
    g_autofree gchar *sha = NULL;
    g_autofree gchar *message = NULL;
    guint32 outcome = GUINT32_FROM_LE(rep->outcome);
    VmaugServicingEntry *e;

    if (!servicing_name_ok(bundle, VMAUG_NAME_MAX) ||
        !servicing_name_ok(version, VMAUG_VERSION_MAX)) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "bad bundle id or version");
        return NULL;
    }
    if ((outcome != VMAUG_SERVICING_CONFIRMED &&
         outcome != VMAUG_SERVICING_FAILED) || rep->boot != 0) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "bad outcome");
        return NULL;
    }
    if (text_len > 0) {
        message = vmaug_servicing_clean_text(text, text_len, error);
        if (message == NULL) {
            return NULL;
        }
    }
    e = servicing_find(s, bundle, version);
    if (e == NULL) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_NOT_FOUND,
                    "bundle %s %s was not applied to this image", bundle,
                    version);
        return NULL;
    }
    sha = g_malloc(2 * sizeof(rep->manifest_sha256) + 1);
    for (gsize i = 0; i < sizeof(rep->manifest_sha256); i++) {
        g_snprintf(sha + 2 * i, 3, "%02x", rep->manifest_sha256[i]);
    }
    if (!g_str_equal(sha, e->manifest_sha256)) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_DENIED,
                    "bundle %s %s was applied with another manifest",
                    bundle, version);
        return NULL;
    }
    if (e->state != VMAUG_SERVICING_STATE_APPLIED) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_EXISTS,
                    "bundle %s %s was already reported %s at boot %u",
                    bundle, version, vmaug_servicing_state_name(e->state),
                    e->boot);
        return NULL;
    }
    e->state = outcome == VMAUG_SERVICING_CONFIRMED ?
               VMAUG_SERVICING_STATE_CONFIRMED : VMAUG_SERVICING_STATE_FAILED;
    e->boot = e->starts;
    g_free(e->reported);
    e->reported = servicing_now();
    g_free(e->message);
    e->message = g_steal_pointer(&message);
    return e;
}
