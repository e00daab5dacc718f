/*
 * A bundle's quarantine instruction (vo-quarantine.h): planning, moving
 * and verifying the files the scan found.  Runs in the offline worker;
 * every name and byte here is the guest's, and every path is resolved
 * again through the guest's filesystems (vo_guest_resolve()), never
 * followed out of them.  docs/offline.rst ("Quarantine") is normative.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <string.h>

#include "vo-quarantine.h"

/* The hash the stored copy is named after and its size, from the plan. */
typedef struct {
    VoQuarantineHit hit;
    char *sha256;
    gsize size;
} VoQuarantineEntry;

VoQuarantineHit *vo_quarantine_hit_new(const char *path, const char *shown,
                                       const char *signature)
{
    VoQuarantineEntry *e = g_new0(VoQuarantineEntry, 1);

    e->hit.path = g_strdup(path);
    e->hit.shown = g_strdup(shown);
    e->hit.signature = g_strdup(signature);
    return &e->hit;
}

void vo_quarantine_hit_free(VoQuarantineHit *hit)
{
    VoQuarantineEntry *e = (VoQuarantineEntry *)hit;

    if (!hit) {
        return;
    }
    g_free(hit->path);
    g_free(hit->shown);
    g_free(hit->signature);
    g_free(e->sha256);
    g_free(e);
}

static gboolean vo_quarantine_fail(VoFileOp *op, GError **error,
                                   VoError code, const char *fmt, ...)
    G_GNUC_PRINTF(4, 5);

static gboolean vo_quarantine_fail(VoFileOp *op, GError **error,
                                   VoError code, const char *fmt, ...)
{
    va_list ap;
    g_autofree char *msg = NULL;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error(error, VO_ERROR, code, "quarantine %s: %s", op->path, msg);
    return FALSE;
}

static char *vo_quarantine_child(VoFileOp *op, const char *name)
{
    g_autofree char *dir = vo_guest_normalize_path(op->path);

    return g_strconcat(dir, "/", name, NULL);
}

/*
 * The directory: absent (made by the apply), or a directory that is not
 * a link, which a guest could have pointed anywhere in itself.
 */
static gboolean vo_quarantine_check_dir(VoFileOp *op, VoGuest *guest,
                                        GError **error)
{
    g_auto(VoPath) p = { 0 };
    g_autoptr(GError) local = NULL;

    if (!vo_guest_resolve(guest, op->path, FALSE, &p, &local)) {
        /* A missing parent: made level by level. */
        if (g_error_matches(local, VO_ERROR, VO_ERROR_NOT_FOUND)) {
            return TRUE;
        }
        return vo_quarantine_fail(op, error, local->code, "%s",
                                  local->message);
    }
    if (p.exists && p.st.type != VO_NODE_DIRECTORY) {
        return vo_quarantine_fail(op, error, VO_ERROR_EXISTS,
                                  "exists and is not a directory");
    }
    return TRUE;
}

/* A hit as it stands now: a regular file, not a mount point. */
static GBytes *vo_quarantine_read_hit(VoFileOp *op, VoGuest *guest,
                                      VoQuarantineHit *hit, VoPath *p,
                                      GError **error)
{
    g_autoptr(GError) local = NULL;

    if (!vo_guest_resolve(guest, hit->path, FALSE, p, &local)) {
        vo_quarantine_fail(op, error, local->code, "%s: %s", hit->shown,
                           local->message);
        return NULL;
    }
    if (!p->exists || p->st.type != VO_NODE_REGULAR ||
        !vo_path_check_not_mount(p, NULL)) {
        vo_quarantine_fail(op, error, VO_ERROR_NOT_FOUND,
                           "%s: no longer the regular file scanned",
                           hit->shown);
        return NULL;
    }
    return p->fs->ops->read(p->fs, p->node, error);
}

gboolean vo_quarantine_plan(VoFileOp *op, VoGuest *guest, JsonBuilder *plan,
                            GError **error)
{
    if (!op->hits) {
        return vo_quarantine_fail(op, error, VO_ERROR_UNSUPPORTED,
                                  "no scan ran (apply it with --database)");
    }
    if (!vo_quarantine_check_dir(op, guest, error)) {
        return FALSE;
    }
    for (guint i = 0; i < op->hits->len; i++) {
        VoQuarantineEntry *e = op->hits->pdata[i];
        g_auto(VoPath) p = { 0 };
        g_autoptr(GBytes) data = vo_quarantine_read_hit(op, guest, &e->hit,
                                                        &p, error);

        if (!data) {
            return FALSE;
        }
        g_free(e->sha256);
        e->sha256 = vo_sha256(data);
        e->size = g_bytes_get_size(data);
        json_builder_begin_object(plan);
        json_builder_set_member_name(plan, "op");
        json_builder_add_string_value(plan, "quarantine");
        json_builder_set_member_name(plan, "path");
        json_builder_add_string_value(plan, e->hit.shown);
        json_builder_set_member_name(plan, "action");
        json_builder_add_string_value(plan, "quarantine");
        json_builder_set_member_name(plan, "old_sha256");
        json_builder_add_string_value(plan, e->sha256);
        json_builder_set_member_name(plan, "signature");
        json_builder_add_string_value(plan, e->hit.signature);
        json_builder_set_member_name(plan, "into");
        json_builder_add_string_value(plan, op->path);
        json_builder_end_object(plan);
    }
    if (op->hits->len == 0) {
        json_builder_begin_object(plan);
        json_builder_set_member_name(plan, "op");
        json_builder_add_string_value(plan, "quarantine");
        json_builder_set_member_name(plan, "path");
        json_builder_add_string_value(plan, op->path);
        json_builder_set_member_name(plan, "action");
        json_builder_add_string_value(plan, "unchanged");
        json_builder_end_object(plan);
    }
    return TRUE;
}

/* mkdir -p of the directory: root's alone (0700) at the last level. */
static gboolean vo_quarantine_make_dir(VoFileOp *op, VoGuest *guest,
                                       GError **error)
{
    g_autofree char *norm = vo_guest_normalize_path(op->path);
    g_auto(GStrv) parts = g_strsplit(norm + 1, "/", -1);
    g_autoptr(GString) at = g_string_new(NULL);
    guint n = g_strv_length(parts);

    for (guint i = 0; i < n; i++) {
        g_auto(VoPath) p = { 0 };
        VoStat attrs = { .mode = i + 1 == n ? 0700 : 0755 };

        g_string_append_printf(at, "/%s", parts[i]);
        if (!vo_guest_resolve(guest, at->str, FALSE, &p, error)) {
            return FALSE;
        }
        if (p.exists) {
            if (p.st.type != VO_NODE_DIRECTORY) {
                return vo_quarantine_fail(op, error, VO_ERROR_EXISTS,
                                          "%s is not a directory", at->str);
            }
            continue;
        }
        if (!p.fs->ops->mkdir(p.fs, p.parent, p.leaf, &attrs, error)) {
            return FALSE;
        }
    }
    return TRUE;
}

/* Creates or replaces @path with @data, root's and read-only. */
static gboolean vo_quarantine_put(VoGuest *guest, const char *path,
                                  GBytes *data, GError **error)
{
    g_auto(VoPath) p = { 0 };
    VoStat attrs = { .mode = 0400 };

    if (!vo_guest_resolve(guest, path, FALSE, &p, error)) {
        return FALSE;
    }
    if (!p.exists) {
        return p.fs->ops->create(p.fs, p.parent, p.leaf, &attrs, data,
                                 error);
    }
    if (p.st.type != VO_NODE_REGULAR) {
        g_set_error(error, VO_ERROR, VO_ERROR_EXISTS,
                    "%s exists and is not a regular file", path);
        return FALSE;
    }
    return p.fs->ops->replace(p.fs, p.node, data, error);
}

/*
 * The record beside a stored file: its hash, size, and every path it was
 * found at with the signature, those of earlier applies kept (a record
 * that does not parse is the guest's and is replaced).
 */
static GBytes *vo_quarantine_record(VoGuest *guest, const char *path,
                                    const char *sha256, gsize size,
                                    GPtrArray *hits)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(JsonNode) root = NULL;
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GBytes) old = vo_guest_read_file_max(guest, path,
                                                   VO_QUARANTINE_MAX_RECORD,
                                                   NULL);
    JsonArray *old_files = NULL;
    gsize len;
    char *text;

    if (old && json_parser_load_from_data(parser,
                                          g_bytes_get_data(old, NULL),
                                          g_bytes_get_size(old), NULL)) {
        JsonNode *r = json_parser_get_root(parser);
        JsonNode *f = JSON_NODE_HOLDS_OBJECT(r)
                      ? json_object_get_member(json_node_get_object(r),
                                               "files")
                      : NULL;

        old_files = f && JSON_NODE_HOLDS_ARRAY(f) ? json_node_get_array(f)
                                                 : NULL;
    }
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "sha256");
    json_builder_add_string_value(b, sha256);
    json_builder_set_member_name(b, "size");
    json_builder_add_int_value(b, size);
    json_builder_set_member_name(b, "stored");
    json_builder_add_string_value(b, "xor-ff");
    json_builder_set_member_name(b, "files");
    json_builder_begin_array(b);
    for (guint i = 0; old_files && i < json_array_get_length(old_files) &&
                      i < 100; i++) {
        JsonNode *n = json_array_get_element(old_files, i);

        if (JSON_NODE_HOLDS_OBJECT(n)) {
            json_builder_add_value(b, json_node_copy(n));
        }
    }
    for (guint i = 0; i < hits->len; i++) {
        VoQuarantineHit *hit = hits->pdata[i];

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "path");
        json_builder_add_string_value(b, hit->shown);
        json_builder_set_member_name(b, "signature");
        json_builder_add_string_value(b, hit->signature);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    json_builder_end_object(b);
    root = json_builder_get_root(b);
    json_generator_set_root(gen, root);
    text = json_generator_to_data(gen, &len);
    return g_bytes_new_take(text, len);
}

gboolean vo_quarantine_execute(VoFileOp *op, VoGuest *guest, GError **error)
{
    g_autoptr(GHashTable) by_sha = g_hash_table_new_full(
        g_str_hash, g_str_equal, NULL, (GDestroyNotify)g_ptr_array_unref);
    GHashTableIter it;
    gpointer key, value;

    if (!op->hits || op->hits->len == 0) {
        return TRUE;
    }
    if (!vo_quarantine_make_dir(op, guest, error)) {
        return FALSE;
    }
    for (guint i = 0; i < op->hits->len; i++) {
        VoQuarantineEntry *e = op->hits->pdata[i];
        g_auto(VoPath) p = { 0 };
        g_autoptr(GBytes) data = vo_quarantine_read_hit(op, guest, &e->hit,
                                                        &p, error);
        g_autofree char *stored = NULL;
        g_autoptr(GBytes) inverted = NULL;
        GPtrArray *list;
        guint8 *bytes;
        gsize len;

        if (!data) {
            return FALSE;
        }
        stored = vo_quarantine_child(op, e->sha256);
        bytes = g_bytes_unref_to_data(g_steal_pointer(&data), &len);
        for (gsize k = 0; k < len; k++) {
            bytes[k] ^= VO_QUARANTINE_XOR;
        }
        inverted = g_bytes_new_take(bytes, len);
        if (!vo_quarantine_put(guest, stored, inverted, error) ||
            !p.fs->ops->remove(p.fs, p.parent, p.leaf, p.node, error)) {
            g_prefix_error(error, "quarantine %s: ", e->hit.shown);
            return FALSE;
        }
        list = g_hash_table_lookup(by_sha, e->sha256);
        if (!list) {
            list = g_ptr_array_new();
            g_hash_table_insert(by_sha, e->sha256, list);
        }
        g_ptr_array_add(list, e);
    }
    g_hash_table_iter_init(&it, by_sha);
    while (g_hash_table_iter_next(&it, &key, &value)) {
        g_autofree char *name = g_strconcat(key, ".json", NULL);
        g_autofree char *path = vo_quarantine_child(op, name);
        /* Same hash, same content: any hit's size is the stored copy's. */
        VoQuarantineEntry *first = ((GPtrArray *)value)->pdata[0];
        g_autoptr(GBytes) record = NULL;

        record = vo_quarantine_record(guest, path, key, first->size, value);
        if (!vo_quarantine_put(guest, path, record, error)) {
            return FALSE;
        }
    }
    return TRUE;
}

/* Whether @path (a guest path) holds a regular file. */
static gboolean vo_quarantine_is_file(VoGuest *guest, const char *path)
{
    g_auto(VoPath) p = { 0 };

    return vo_guest_resolve(guest, path, FALSE, &p, NULL) && p.exists &&
           p.st.type == VO_NODE_REGULAR;
}

/* Without a scan: each record in the directory. */
static gboolean vo_quarantine_verify_records(VoFileOp *op, VoGuest *guest,
                                             char **why)
{
    g_auto(VoPath) dir = { 0 };
    g_autoptr(GPtrArray) entries = NULL;

    if (!vo_guest_resolve(guest, op->path, FALSE, &dir, NULL) ||
        !dir.exists) {
        /* Nothing was ever found. */
        return TRUE;
    }
    if (dir.st.type != VO_NODE_DIRECTORY || !dir.fs->ops->list) {
        *why = g_strdup("is not a directory that can be listed");
        return FALSE;
    }
    entries = dir.fs->ops->list(dir.fs, dir.node, 100000, NULL);
    if (!entries) {
        *why = g_strdup("cannot be listed");
        return FALSE;
    }
    for (guint i = 0; i < entries->len; i++) {
        VoDirEntry *de = entries->pdata[i];
        g_autofree char *path = NULL;
        g_autofree char *sha = NULL;
        g_autoptr(GBytes) text = NULL;
        g_autoptr(JsonParser) parser = json_parser_new();
        JsonNode *root, *files;

        if (!g_str_has_suffix(de->name, ".json") ||
            strlen(de->name) != 64 + strlen(".json")) {
            continue;
        }
        sha = g_strndup(de->name, 64);
        path = vo_quarantine_child(op, de->name);
        text = vo_guest_read_file_max(guest, path, VO_QUARANTINE_MAX_RECORD,
                                      NULL);
        if (!text || !json_parser_load_from_data(
                         parser, g_bytes_get_data(text, NULL),
                         g_bytes_get_size(text), NULL)) {
            *why = g_strdup_printf("record %s cannot be read", de->name);
            return FALSE;
        }
        g_clear_pointer(&path, g_free);
        path = vo_quarantine_child(op, sha);
        if (!vo_quarantine_is_file(guest, path)) {
            *why = g_strdup_printf("%s is recorded but not stored", sha);
            return FALSE;
        }
        root = json_parser_get_root(parser);
        files = JSON_NODE_HOLDS_OBJECT(root)
                ? json_object_get_member(json_node_get_object(root), "files")
                : NULL;
        for (guint k = 0; files && JSON_NODE_HOLDS_ARRAY(files) &&
                          k < json_array_get_length(json_node_get_array(files));
             k++) {
            JsonNode *f = json_array_get_element(json_node_get_array(files),
                                                 k);
            const char *orig = JSON_NODE_HOLDS_OBJECT(f)
                ? json_object_get_string_member_with_default(
                      json_node_get_object(f), "path", NULL)
                : NULL;
            g_autoptr(GBytes) data = NULL;
            g_autofree char *have = NULL;

            if (!orig || !vo_guest_check_path(orig, NULL)) {
                continue;
            }
            data = vo_quarantine_is_file(guest, orig)
                   ? vo_guest_read_file(guest, orig, NULL) : NULL;
            have = data ? vo_sha256(data) : NULL;
            if (g_strcmp0(have, sha) == 0) {
                *why = g_strdup_printf("%s is back at %s", sha, orig);
                return FALSE;
            }
        }
    }
    return TRUE;
}

gboolean vo_quarantine_verify(VoFileOp *op, VoGuest *guest, char **why)
{
    if (!op->hits) {
        return vo_quarantine_verify_records(op, guest, why);
    }
    for (guint i = 0; i < op->hits->len; i++) {
        VoQuarantineEntry *e = op->hits->pdata[i];
        g_autofree char *stored = NULL;

        if (vo_quarantine_is_file(guest, e->hit.path)) {
            *why = g_strdup_printf("%s is still in place", e->hit.shown);
            return FALSE;
        }
        stored = e->sha256 ? vo_quarantine_child(op, e->sha256) : NULL;
        if (!stored || !vo_quarantine_is_file(guest, stored)) {
            *why = g_strdup_printf("%s is not stored", e->hit.shown);
            return FALSE;
        }
    }
    return TRUE;
}
