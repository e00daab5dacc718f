/*
 * Configuring unpacked packages at the next boot (vo-configure.h).
 *
 * The guest's files (script, unit, drop-in) are resources of this
 * program (guest/), so that what a bundle installs is what was reviewed
 * and tested, not text assembled here.  The result file is read by the
 * worker and checked again by the parent: the guest wrote it.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <string.h>

#include "host-common.h"
#include "servicing.h"
#include "vmaugment-hex.h"
#include "vo-configure.h"
#include "vo-guest-resources.h"

#define VO_CONFIGURE_RESOURCE   "/org/vmaugment/offline/guest/"
/* The result file and each record are small; a larger one is not ours. */
#define VO_CONFIGURE_MAX_RESULT (16 * 1024)
#define VO_CONFIGURE_MAX_RECORD (4 * 1024)
#define VO_CONFIGURE_MAX_RECORDS 64
#define VO_CONFIGURE_MAX_TIME   32

/* What the bundle adds, in order: directories (kept when present), then
 * the files, each from its resource.  The flag's text is fixed, so that a
 * second bundle before the next boot finds it identical. */
static const struct {
    const char *path;
    const char *resource;   /* NULL: a directory, or the flag */
    const char *mode;
} vo_configure_files[] = {
    { "/usr", NULL, "0755" },
    { "/usr/local", NULL, "0755" },
    { "/usr/local/sbin", NULL, "0755" },
    { "/etc", NULL, "0755" },
    { "/etc/systemd", NULL, "0755" },
    { "/etc/systemd/system", NULL, "0755" },
    { "/etc/systemd/system/multi-user.target.d", NULL, "0755" },
    { "/var", NULL, "0755" },
    { "/var/lib", NULL, "0755" },
    { "/var/lib/vmaugment", NULL, "0755" },
    { VO_CONFIGURE_DIR, NULL, "0755" },
    { "/usr/local/sbin/vmaugment-offline-configure",
      "vmaugment-offline-configure", "0755" },
    { "/etc/systemd/system/vmaugment-offline-configure.service",
      "vmaugment-offline-configure.service", "0644" },
    { "/etc/systemd/system/multi-user.target.d/"
      "vmaugment-offline-configure.conf",
      "vmaugment-offline-configure.conf", "0644" },
    { VO_CONFIGURE_FLAG, NULL, "0644" },
};

static const char vo_configure_flag_text[] =
    "vmaugment-offline: packages await dpkg --configure -a\n";

static gboolean vo_configure_invalid(GError **error, const char *what,
                                     const char *path)
{
    g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                "a bundle that unpacks packages installs %s itself: %s",
                path, what);
    return FALSE;
}

/* The instruction of @files on @path, if any. */
static JsonObject *vo_configure_find(JsonArray *files, const char *path)
{
    g_autofree char *want = vo_guest_normalize_path(path);

    for (guint i = 0; i < json_array_get_length(files); i++) {
        JsonNode *n = json_array_get_element(files, i);
        const char *p;
        g_autofree char *norm = NULL;

        if (!JSON_NODE_HOLDS_OBJECT(n)) {
            continue;
        }
        p = json_object_get_string_member_with_default(
            json_node_get_object(n), "path", NULL);
        if (p && vo_guest_check_path(p, NULL)) {
            norm = vo_guest_normalize_path(p);
            if (g_str_equal(norm, want)) {
                return json_node_get_object(n);
            }
        }
    }
    return NULL;
}

static GBytes *vo_configure_payload(guint i)
{
    g_autofree char *name = NULL;

    if (!vo_configure_files[i].resource) {
        return g_bytes_new_static(vo_configure_flag_text,
                                  strlen(vo_configure_flag_text));
    }
    name = g_strconcat(VO_CONFIGURE_RESOURCE, vo_configure_files[i].resource,
                       NULL);
    /* Compiled in: a missing one is a build defect. */
    return g_resource_lookup_data(vo_guest_get_resource(), name,
                                  G_RESOURCE_LOOKUP_FLAGS_NONE, NULL);
}

gboolean vo_configure_add(JsonObject *manifest, GHashTable *payloads,
                          GError **error)
{
    JsonNode *packages = json_object_get_member(manifest, "packages");
    JsonNode *files = json_object_get_member(manifest, "files");
    const char *marker = json_object_get_string_member_with_default(
        manifest, "marker", NULL);
    JsonArray *arr;

    if (!packages || !JSON_NODE_HOLDS_ARRAY(packages) ||
        json_array_get_length(json_node_get_array(packages)) == 0) {
        return TRUE;
    }
    if (!files || !JSON_NODE_HOLDS_ARRAY(files)) {
        g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                    "\"files\" must be an array");
        return FALSE;
    }
    arr = json_node_get_array(files);
    if (marker) {
        g_autofree char *norm = vo_guest_check_path(marker, NULL) ?
                                vo_guest_normalize_path(marker) : NULL;

        if (!norm || !g_str_equal(norm, VO_CONFIGURE_DIR)) {
            return vo_configure_invalid(error, "its \"marker\" must be "
                                        "that directory", VO_CONFIGURE_DIR);
        }
    } else if (json_object_has_member(manifest, "marker")) {
        return vo_configure_invalid(error, "\"marker\" must be a string",
                                    VO_CONFIGURE_DIR);
    }
    json_object_set_string_member(manifest, "marker", VO_CONFIGURE_DIR);

    for (guint i = 0; i < G_N_ELEMENTS(vo_configure_files); i++) {
        const char *path = vo_configure_files[i].path;
        gboolean dir = !vo_configure_files[i].resource &&
                       !g_str_equal(path, VO_CONFIGURE_FLAG);
        JsonObject *have = vo_configure_find(arr, path);
        JsonObject *op;
        const char *name;
        GBytes *old;
        g_autoptr(GBytes) data = NULL;

        if (have) {
            /* A directory the author creates too is the same directory. */
            if (dir && g_strcmp0(json_object_get_string_member_with_default(
                                     have, "op", NULL), "mkdir") == 0) {
                continue;
            }
            return vo_configure_invalid(error, "the manifest has an "
                                        "instruction on it", path);
        }
        op = json_object_new();
        json_object_set_string_member(op, "op", dir ? "mkdir" : "add");
        json_object_set_string_member(op, "path", path);
        json_object_set_string_member(op, "mode", vo_configure_files[i].mode);
        if (!dir) {
            name = vo_configure_files[i].resource ?
                   vo_configure_files[i].resource : "configure-pending";
            data = vo_configure_payload(i);
            old = g_hash_table_lookup(payloads, name);
            if (old && !g_bytes_equal(old, data)) {
                json_object_unref(op);
                return vo_configure_invalid(error, "the manifest has "
                                            "another payload of its name",
                                            path);
            }
            json_object_set_string_member(op, "payload", name);
            g_hash_table_insert(payloads, g_strdup(name),
                                g_bytes_ref(data));
        }
        json_array_add_object_element(arr, op);
    }
    return TRUE;
}

/* ---- Worker: the guest's result file ---- */

/* A string member of at most @max bytes of UTF-8: what the worker takes
 * from a guest's record, and what the parent accepts from the worker. */
static const char *vo_configure_string(JsonObject *o, const char *name,
                                       gsize max)
{
    JsonNode *n = json_object_get_member(o, name);
    const char *v;

    if (!n || !JSON_NODE_HOLDS_VALUE(n) ||
        json_node_get_value_type(n) != G_TYPE_STRING) {
        return NULL;
    }
    v = json_node_get_string(n);
    return strlen(v) <= max && g_utf8_validate(v, -1, NULL) ? v : NULL;
}

/* The result's members after "status", as the worker and the parent
 * write them, up to the opened "records" array. */
static void vo_configure_result_open(JsonBuilder *b, const char *message,
                                     const char *time)
{
    json_builder_set_member_name(b, "message");
    json_builder_add_string_value(b, message);
    json_builder_set_member_name(b, "time");
    json_builder_add_string_value(b, time);
    json_builder_set_member_name(b, "records");
    json_builder_begin_array(b);
}

gboolean vo_configure_record_open(VoGuest *guest, const char *dir,
                                  const char *name,
                                  const char *const *suffixes,
                                  JsonBuilder *b)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GBytes) data = NULL;
    const char *sep = dir[0] == '/' ? "/" : "\\";
    JsonNode *root;
    JsonObject *o;
    const char *bundle, *version, *sha;

    for (guint i = 0; !data && suffixes[i]; i++) {
        g_autofree char *path = g_strdup_printf("%s%s%s%s", dir, sep, name,
                                                suffixes[i]);

        data = vo_guest_read_file_max(guest, path, VO_CONFIGURE_MAX_RECORD,
                                      NULL);
    }
    if (!data || !json_parser_load_from_data(
                     parser, g_bytes_get_data(data, NULL),
                     g_bytes_get_size(data), NULL) ||
        !(root = json_parser_get_root(parser)) ||
        !JSON_NODE_HOLDS_OBJECT(root)) {
        return FALSE;
    }
    o = json_node_get_object(root);
    bundle = vo_configure_string(o, "bundle", VMAUG_NAME_MAX - 1);
    version = vo_configure_string(o, "version", VMAUG_VERSION_MAX - 1);
    sha = vo_configure_string(o, "manifest_sha256", 64);
    if (!bundle || !version || !sha) {
        return FALSE;
    }
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "bundle");
    json_builder_add_string_value(b, bundle);
    json_builder_set_member_name(b, "version");
    json_builder_add_string_value(b, version);
    json_builder_set_member_name(b, "manifest_sha256");
    json_builder_add_string_value(b, sha);
    return TRUE;
}

/* The record @name lists, wherever the guest tool has renamed it. */
static void vo_configure_add_record(VoGuest *guest, const char *name,
                                    JsonBuilder *b)
{
    static const char *const suffixes[] = {
        "", ".confirmed", ".failed", NULL,
    };

    if (vo_configure_record_open(guest, VO_CONFIGURE_DIR, name, suffixes,
                                 b)) {
        json_builder_end_object(b);
    }
}

JsonNode *vo_configure_result_read(VoGuest *guest)
{
    g_autoptr(GKeyFile) kf = g_key_file_new();
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(GBytes) data = NULL;
    g_autoptr(GError) local = NULL;
    g_autofree char *status = NULL;
    g_autofree char *message = NULL;
    g_autofree char *time = NULL;
    g_auto(GStrv) records = NULL;
    gsize n = 0;

    data = vo_guest_read_file_max(guest, VO_CONFIGURE_RESULT,
                                  VO_CONFIGURE_MAX_RESULT, &local);
    if (!data && g_error_matches(local, VO_ERROR, VO_ERROR_NOT_FOUND)) {
        return NULL;
    }
    if (data && g_key_file_load_from_bytes(kf, data, G_KEY_FILE_NONE,
                                           NULL)) {
        status = g_key_file_get_string(kf, "dpkg-configure", "status",
                                       NULL);
        message = g_key_file_get_string(kf, "dpkg-configure", "message",
                                        NULL);
        time = g_key_file_get_string(kf, "dpkg-configure", "time", NULL);
        records = g_key_file_get_string_list(kf, "dpkg-configure",
                                             "records", &n, NULL);
    }
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "status");
    if (!status || !message || !time ||
        (!g_str_equal(status, "configured") &&
         !g_str_equal(status, "failed")) ||
        strlen(message) > VMAUG_SERVICING_MESSAGE_MAX ||
        !g_utf8_validate(message, -1, NULL) ||
        strlen(time) > VO_CONFIGURE_MAX_TIME ||
        !g_utf8_validate(time, -1, NULL)) {
        /* The guest's file, so its fault: said, not fatal. */
        json_builder_add_string_value(b, "unreadable");
        json_builder_set_member_name(b, "message");
        json_builder_add_string_value(b, "not a result file that "
                                      "vmaugment-offline-configure writes");
        json_builder_end_object(b);
        return json_builder_get_root(b);
    }
    json_builder_add_string_value(b, status);
    vo_configure_result_open(b, message, time);
    for (gsize i = 0; records && i < n && i < VO_CONFIGURE_MAX_RECORDS; i++) {
        const char *name = records[i];

        if (*name && !strchr(name, '/') && name[0] != '.' &&
            g_str_has_suffix(name, ".json") && strlen(name) < 256) {
            vo_configure_add_record(guest, name, b);
        }
    }
    json_builder_end_array(b);
    json_builder_end_object(b);
    return json_builder_get_root(b);
}

/* ---- Parent: checking and recording it ---- */

static gboolean vo_configure_bad(GError **error, const char *why)
{
    g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                "the worker's dpkg_configure is malformed: %s", why);
    return FALSE;
}

/* One record into @s as the guest's report; its outcome into @b. */
static gboolean vo_configure_record_one(VmaugServicing *s, JsonNode *node,
                                        gboolean failed, const char *message,
                                        JsonBuilder *b, gboolean *recorded,
                                        GError **error)
{
    struct vmaug_servicing_report rep = { 0 };
    g_autoptr(GError) local = NULL;
    const char *bundle, *version, *sha;
    JsonObject *o;

    if (!JSON_NODE_HOLDS_OBJECT(node)) {
        return vo_configure_bad(error, "a record is not an object");
    }
    o = json_node_get_object(node);
    bundle = vo_configure_string(o, "bundle", VMAUG_NAME_MAX - 1);
    version = vo_configure_string(o, "version", VMAUG_VERSION_MAX - 1);
    sha = vo_configure_string(o, "manifest_sha256", 64);
    if (!bundle || !version || !sha ||
        json_object_get_size(o) != 3) {
        return vo_configure_bad(error, "a record's members");
    }
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "bundle");
    json_builder_add_string_value(b, bundle);
    json_builder_set_member_name(b, "version");
    json_builder_add_string_value(b, version);
    json_builder_set_member_name(b, "outcome");
    memcpy(rep.bundle, bundle, strlen(bundle));
    memcpy(rep.version, version, strlen(version));
    rep.outcome = GUINT32_TO_LE(failed ? VMAUG_SERVICING_FAILED :
                                VMAUG_SERVICING_CONFIRMED);
    if (!vmaug_hex_decode_sha256(sha, rep.manifest_sha256)) {
        g_set_error(&local, VO_ERROR, VO_ERROR_INVALID,
                    "the record's manifest hash is malformed");
    } else if (vmaug_servicing_report(s, &rep, (const guint8 *)message,
                                      strlen(message), &local)) {
        json_builder_add_string_value(b, "recorded");
        json_builder_end_object(b);
        *recorded = TRUE;
        return TRUE;
    }
    json_builder_add_string_value(b, g_error_matches(
                                         local, VMAUG_HOST_ERROR,
                                         VMAUG_HOST_ERROR_EXISTS)
                                     ? "already-reported" : "refused");
    json_builder_set_member_name(b, "reason");
    json_builder_add_string_value(b, local->message);
    json_builder_end_object(b);
    return TRUE;
}

JsonNode *vo_configure_result_record(const char *image, JsonNode *node,
                                     GError **error)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(VmaugServicing) s = NULL;
    g_autoptr(GError) local = NULL;
    const char *status, *message, *time;
    JsonNode *records;
    JsonObject *o;
    gboolean recorded = FALSE;

    if (!JSON_NODE_HOLDS_OBJECT(node)) {
        vo_configure_bad(error, "not an object");
        return NULL;
    }
    o = json_node_get_object(node);
    status = vo_configure_string(o, "status", 16);
    message = vo_configure_string(o, "message", VMAUG_SERVICING_MESSAGE_MAX);
    if (!status || !message) {
        vo_configure_bad(error, "status or message");
        return NULL;
    }
    if (g_str_equal(status, "unreadable")) {
        /* Shown as the guest left it; nothing to record, and nothing
         * else beside it (the worker writes only these two). */
        if (json_object_get_size(o) != 2) {
            vo_configure_bad(error, "its members");
            return NULL;
        }
        json_node_ref(node);
        return node;
    }
    time = vo_configure_string(o, "time", VO_CONFIGURE_MAX_TIME);
    records = json_object_get_member(o, "records");
    if ((!g_str_equal(status, "configured") &&
         !g_str_equal(status, "failed")) || !time || !records ||
        !JSON_NODE_HOLDS_ARRAY(records) ||
        json_array_get_length(json_node_get_array(records)) >
            VO_CONFIGURE_MAX_RECORDS ||
        json_object_get_size(o) != 4) {
        vo_configure_bad(error, "its members");
        return NULL;
    }

    s = vmaug_servicing_load(image, &local);
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "status");
    json_builder_add_string_value(b, status);
    vo_configure_result_open(b, message, time);
    for (guint i = 0; s && i < json_array_get_length(
                                   json_node_get_array(records)); i++) {
        if (!vo_configure_record_one(
                s, json_array_get_element(json_node_get_array(records), i),
                g_str_equal(status, "failed"), message, b, &recorded,
                error)) {
            return NULL;
        }
    }
    json_builder_end_array(b);
    /* Only a report changes the record: save it then, and say so if the
     * host's own file cannot be written. */
    if (s && recorded && !vmaug_servicing_save(s, &local)) {
        json_builder_set_member_name(b, "error");
        json_builder_add_string_value(b, local->message);
    } else if (!s) {
        json_builder_set_member_name(b, "error");
        json_builder_add_string_value(b, local->message);
    }
    json_builder_end_object(b);
    return json_builder_get_root(b);
}
