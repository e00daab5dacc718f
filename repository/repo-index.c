/*
 * vmaugment module repository: the index format and the rollback state.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "host-common.h"
#include "store.h"
#include "repo-private.h"
#include "vmaugment-hex.h"

/* The index nests root object > packages array > entry object. */
#define REPO_INDEX_MAX_DEPTH    3
#define REPO_STATE_MAX_SIZE     4096

G_DEFINE_QUARK(vmaug-repo-error-quark, vmaug_repo_error)

void vmaug_repo_entry_free(VmaugRepoEntry *entry)
{
    if (entry == NULL) {
        return;
    }
    g_free(entry->name);
    g_free(entry->version);
    g_free(entry->sha256);
    g_free(entry->path);
    g_free(entry);
}

void vmaug_repo_index_free(VmaugRepoIndex *index)
{
    if (index == NULL) {
        return;
    }
    g_free(index->signer);
    g_free(index->sha256);
    if (index->entries != NULL) {
        g_ptr_array_unref(index->entries);
    }
    g_free(index);
}

const VmaugRepoEntry *vmaug_repo_index_lookup(const VmaugRepoIndex *index,
                                              const gchar *name,
                                              const gchar *version)
{
    const VmaugRepoEntry *best = NULL;

    for (guint i = 0; i < index->entries->len; i++) {
        const VmaugRepoEntry *e = g_ptr_array_index(index->entries, i);

        if (strcmp(e->name, name) != 0) {
            continue;
        }
        if (version != NULL && version[0] != '\0') {
            if (vmaug_version_compare(e->version, version) == 0) {
                return e;
            }
        } else if (best == NULL ||
                   vmaug_version_compare(e->version, best->version) > 0) {
            best = e;
        }
    }
    return best;
}

void repo_fsync_dir(const gchar *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

gchar *repo_sha256_hex(const void *data, gsize len)
{
    return g_compute_checksum_for_data(G_CHECKSUM_SHA256, data, len);
}

GBytes *repo_index_signed_bytes(GBytes *index_json)
{
    GByteArray *buf = g_byte_array_new();
    gsize len;
    const guint8 *data = g_bytes_get_data(index_json, &len);

    g_byte_array_append(buf, (const guint8 *)VMAUG_REPO_INDEX_SIGNING_CONTEXT,
                        strlen(VMAUG_REPO_INDEX_SIGNING_CONTEXT));
    g_byte_array_append(buf, data, len);
    return g_byte_array_free_to_bytes(buf);
}

void repo_propagate_signature_error(GError **error, GError *local,
                                    const gchar *what)
{
    g_set_error(error, VMAUG_REPO_ERROR, VMAUG_REPO_ERROR_SIGNATURE,
                "%s: signature refused: %s", what, local->message);
}

gboolean repo_path_is_valid(const gchar *path)
{
    g_auto(GStrv) parts = NULL;

    if (path == NULL || path[0] == '\0' || path[0] == '/' ||
        strlen(path) > VMAUG_REPO_MAX_PATH) {
        return FALSE;
    }
    parts = g_strsplit(path, "/", -1);
    for (guint i = 0; parts[i] != NULL; i++) {
        const gchar *p = parts[i];

        if (p[0] == '\0' || strcmp(p, ".") == 0 || strcmp(p, "..") == 0) {
            return FALSE;
        }
        for (; *p != '\0'; p++) {
            if (!g_ascii_isalnum(*p) && *p != '.' && *p != '_' &&
                *p != '-') {
                return FALSE;
            }
        }
    }
    return TRUE;
}

/* json-glib recurses per nesting level: refuse deep input before it sees
 * it, counting brackets outside strings. */
static gboolean repo_json_shallow(const gchar *json, gsize len, guint limit)
{
    guint level = 0;
    gboolean quoted = FALSE;

    for (gsize i = 0; i < len; i++) {
        if (quoted) {
            if (json[i] == '\\') {
                i++;            /* the escaped character cannot end it */
            } else if (json[i] == '"') {
                quoted = FALSE;
            }
            continue;
        }
        switch (json[i]) {
        case '"':
            quoted = TRUE;
            break;
        case '/':
        case '\'':
            /* json-glib also reads comments and single-quoted strings,
             * which JSON has not: a '"' in one would hide what follows. */
            return FALSE;
        case '{':
        case '[':
            if (++level > limit) {
                return FALSE;
            }
            break;
        case '}':
        case ']':
            level -= level > 0;
            break;
        }
    }
    return TRUE;
}

static gboolean repo_bad(GError **error, const gchar *fmt, ...)
    G_GNUC_PRINTF(2, 3);

static gboolean repo_bad(GError **error, const gchar *fmt, ...)
{
    va_list ap;
    g_autofree gchar *msg = NULL;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error(error, VMAUG_REPO_ERROR, VMAUG_REPO_ERROR_INVALID,
                "malformed repository index: %s", msg);
    return FALSE;
}

/* The member @name of @obj, which must exist and hold a value of @type. */
static JsonNode *repo_member(JsonObject *obj, const gchar *where,
                             const gchar *name, GType type, GError **error)
{
    JsonNode *node = json_object_get_member(obj, name);

    if (node == NULL) {
        repo_bad(error, "%s lacks \"%s\"", where, name);
        return NULL;
    }
    if (!JSON_NODE_HOLDS_VALUE(node) ||
        json_node_get_value_type(node) != type) {
        repo_bad(error, "%s member \"%s\" is not %s", where, name,
                 type == G_TYPE_INT64 ? "an integer" : "a string");
        return NULL;
    }
    return node;
}

/* Only the listed members: an index this client does not understand
 * completely is not one it should act on. */
static gboolean repo_only_members(JsonObject *obj, const gchar *where,
                                  const gchar *const *known, GError **error)
{
    g_autoptr(GList) members = json_object_get_members(obj);

    for (GList *l = members; l != NULL; l = l->next) {
        if (!g_strv_contains(known, l->data)) {
            return repo_bad(error, "%s has unknown member \"%s\"", where,
                            (const gchar *)l->data);
        }
    }
    return TRUE;
}

static VmaugRepoEntry *repo_entry_parse(JsonNode *node, guint i,
                                        GError **error)
{
    static const gchar *const known[] = {
        "name", "version", "sha256", "size", "path", NULL
    };
    g_autofree gchar *where = g_strdup_printf("package %u", i);
    g_autoptr(VmaugRepoEntry) e = g_new0(VmaugRepoEntry, 1);
    JsonObject *obj;
    JsonNode *n;
    gint64 size;

    if (!JSON_NODE_HOLDS_OBJECT(node)) {
        repo_bad(error, "%s is not an object", where);
        return NULL;
    }
    obj = json_node_get_object(node);
    if (!repo_only_members(obj, where, known, error)) {
        return NULL;
    }
    if (!(n = repo_member(obj, where, "name", G_TYPE_STRING, error))) {
        return NULL;
    }
    e->name = json_node_dup_string(n);
    if (!(n = repo_member(obj, where, "version", G_TYPE_STRING, error))) {
        return NULL;
    }
    e->version = json_node_dup_string(n);
    if (!(n = repo_member(obj, where, "sha256", G_TYPE_STRING, error))) {
        return NULL;
    }
    e->sha256 = json_node_dup_string(n);
    if (!(n = repo_member(obj, where, "path", G_TYPE_STRING, error))) {
        return NULL;
    }
    e->path = json_node_dup_string(n);
    if (!(n = repo_member(obj, where, "size", G_TYPE_INT64, error))) {
        return NULL;
    }
    size = json_node_get_int(n);

    /* Names and versions end up in file names and in the helper's store. */
    if (!vmaug_name_is_valid(e->name)) {
        repo_bad(error, "%s has an invalid name", where);
        return NULL;
    }
    if (!vmaug_version_is_valid(e->version)) {
        repo_bad(error, "%s (%s) has an invalid version", where, e->name);
        return NULL;
    }
    if (!vmaug_hex_is_sha256(e->sha256)) {
        repo_bad(error, "%s (%s) has an invalid sha256", where, e->name);
        return NULL;
    }
    if (!repo_path_is_valid(e->path)) {
        repo_bad(error, "%s (%s) has an invalid path", where, e->name);
        return NULL;
    }
    if (size < 1) {
        repo_bad(error, "%s (%s) has an invalid size", where, e->name);
        return NULL;
    }
    e->size = size;
    return g_steal_pointer(&e);
}

VmaugRepoIndex *repo_index_parse(GBytes *json, GError **error)
{
    static const gchar *const known[] = {
        "format", "version", "expires", "packages", NULL
    };
    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    g_autoptr(VmaugRepoIndex) index = g_new0(VmaugRepoIndex, 1);
    g_autoptr(GError) local = NULL;
    g_autoptr(GDateTime) expires = NULL;
    g_autoptr(GDateTime) utc = NULL;
    gsize len;
    const gchar *data = g_bytes_get_data(json, &len);
    JsonNode *root, *n;
    JsonObject *obj;
    JsonArray *pkgs;

    if (len > VMAUG_REPO_MAX_INDEX_SIZE) {
        repo_bad(error, "larger than %d bytes", VMAUG_REPO_MAX_INDEX_SIZE);
        return NULL;
    }
    if (len == 0 || memchr(data, '\0', len) != NULL ||
        !g_utf8_validate(data, len, NULL)) {
        repo_bad(error, "not UTF-8 text");
        return NULL;
    }
    if (!repo_json_shallow(data, len, REPO_INDEX_MAX_DEPTH)) {
        repo_bad(error, "nested deeper than %d levels", REPO_INDEX_MAX_DEPTH);
        return NULL;
    }
    if (!json_parser_load_from_data(parser, data, len, &local)) {
        repo_bad(error, "%s", local->message);
        return NULL;
    }
    root = json_parser_get_root(parser);
    if (root == NULL || !JSON_NODE_HOLDS_OBJECT(root)) {
        repo_bad(error, "the root is not an object");
        return NULL;
    }
    obj = json_node_get_object(root);
    if (!repo_only_members(obj, "the index", known, error)) {
        return NULL;
    }
    if (!(n = repo_member(obj, "the index", "format", G_TYPE_INT64, error))) {
        return NULL;
    }
    if (json_node_get_int(n) != VMAUG_REPO_INDEX_FORMAT) {
        repo_bad(error, "format %" G_GINT64_FORMAT " is not %d",
                 json_node_get_int(n), VMAUG_REPO_INDEX_FORMAT);
        return NULL;
    }
    if (!(n = repo_member(obj, "the index", "version", G_TYPE_INT64, error))) {
        return NULL;
    }
    index->version = json_node_get_int(n);
    if (index->version < 1) {
        repo_bad(error, "metadata version %" G_GINT64_FORMAT " is not positive",
                 index->version);
        return NULL;
    }
    if (!(n = repo_member(obj, "the index", "expires", G_TYPE_STRING, error))) {
        return NULL;
    }
    /* No default time zone: an expiry must say which zone it means. */
    expires = g_date_time_new_from_iso8601(json_node_get_string(n), NULL);
    if (expires == NULL) {
        repo_bad(error, "expiry \"%s\" is not an ISO 8601 time with zone",
                 json_node_get_string(n));
        return NULL;
    }
    index->expires = g_date_time_to_unix(expires);
    /* Written back in UTC (repo_index_to_json()), which ends at 9999:
     * "9999-12-31T23:59:59-12:00" would come out as no time at all. */
    utc = g_date_time_new_from_unix_utc(index->expires);
    if (utc == NULL) {
        repo_bad(error, "expiry \"%s\" is after 9999 in UTC",
                 json_node_get_string(n));
        return NULL;
    }

    n = json_object_get_member(obj, "packages");
    if (n == NULL || !JSON_NODE_HOLDS_ARRAY(n)) {
        repo_bad(error, "\"packages\" is not an array");
        return NULL;
    }
    pkgs = json_node_get_array(n);
    if (json_array_get_length(pkgs) > VMAUG_REPO_MAX_INDEX_ENTRIES) {
        repo_bad(error, "more than %d packages", VMAUG_REPO_MAX_INDEX_ENTRIES);
        return NULL;
    }
    index->entries =
        g_ptr_array_new_with_free_func((GDestroyNotify)vmaug_repo_entry_free);
    for (guint i = 0; i < json_array_get_length(pkgs); i++) {
        VmaugRepoEntry *e = repo_entry_parse(json_array_get_element(pkgs, i),
                                             i, error);

        if (e == NULL) {
            return NULL;
        }
        /* One name and version, one content: no ambiguity to exploit. */
        if (vmaug_repo_index_lookup(index, e->name, e->version) != NULL) {
            repo_bad(error, "%s %s is listed twice", e->name, e->version);
            vmaug_repo_entry_free(e);
            return NULL;
        }
        g_ptr_array_add(index->entries, e);
    }
    index->sha256 = repo_sha256_hex(data, len);
    return g_steal_pointer(&index);
}

void repo_index_build(JsonBuilder *b, const VmaugRepoIndex *index)
{
    g_autoptr(GDateTime) dt = g_date_time_new_from_unix_utc(index->expires);
    /* Not g_date_time_format()'s %Y, which writes the year 231 as "231",
     * a time ISO 8601 (and so the parser) does not accept. */
    g_autofree gchar *expires = g_strdup_printf(
        "%04d-%02d-%02dT%02d:%02d:%02dZ", g_date_time_get_year(dt),
        g_date_time_get_month(dt), g_date_time_get_day_of_month(dt),
        g_date_time_get_hour(dt), g_date_time_get_minute(dt),
        g_date_time_get_second(dt));

    json_builder_set_member_name(b, "format");
    json_builder_add_int_value(b, VMAUG_REPO_INDEX_FORMAT);
    json_builder_set_member_name(b, "version");
    json_builder_add_int_value(b, index->version);
    json_builder_set_member_name(b, "expires");
    json_builder_add_string_value(b, expires);
    json_builder_set_member_name(b, "packages");
    json_builder_begin_array(b);
    for (guint i = 0; i < index->entries->len; i++) {
        const VmaugRepoEntry *e = g_ptr_array_index(index->entries, i);

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "name");
        json_builder_add_string_value(b, e->name);
        json_builder_set_member_name(b, "version");
        json_builder_add_string_value(b, e->version);
        json_builder_set_member_name(b, "sha256");
        json_builder_add_string_value(b, e->sha256);
        json_builder_set_member_name(b, "size");
        json_builder_add_int_value(b, (gint64)e->size);
        json_builder_set_member_name(b, "path");
        json_builder_add_string_value(b, e->path);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
}

gchar *repo_index_to_json(const VmaugRepoIndex *index)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(JsonNode) root = NULL;

    json_builder_begin_object(b);
    repo_index_build(b, index);
    json_builder_end_object(b);

    root = json_builder_get_root(b);
    json_generator_set_root(gen, root);
    json_generator_set_pretty(gen, TRUE);
    return json_generator_to_data(gen, NULL);
}

/* ---- Rollback state ---- */

typedef struct {
    gint64 version;
    gchar *sha256;
} RepoState;

static gboolean repo_state_io(GError **error, const gchar *what,
                              const gchar *path, int err)
{
    g_set_error(error, VMAUG_REPO_ERROR, VMAUG_REPO_ERROR_FAILED,
                "repository state: cannot %s %s: %s", what, path,
                g_strerror(err));
    return FALSE;
}

/* Read the remembered state; a missing file is version 0.  A damaged one
 * is an error: forgetting it would re-open the door to rollback. */
static gboolean repo_state_read(const gchar *path, const gchar *url,
                                RepoState *st, GError **error)
{
    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    g_autoptr(GError) local = NULL;
    g_autoptr(GBytes) data = NULL;
    JsonObject *obj;
    JsonNode *root, *n;

    st->version = 0;
    st->sha256 = NULL;
    if (!g_file_test(path, G_FILE_TEST_EXISTS)) {
        return TRUE;
    }
    data = vmaug_trust_read_file(path, REPO_STATE_MAX_SIZE, &local);
    if (data == NULL ||
        !json_parser_load_from_data(parser, g_bytes_get_data(data, NULL),
                                    g_bytes_get_size(data), &local)) {
        g_set_error(error, VMAUG_REPO_ERROR, VMAUG_REPO_ERROR_FAILED,
                    "repository state %s is unreadable: %s", path,
                    local->message);
        return FALSE;
    }
    root = json_parser_get_root(parser);
    if (root == NULL || !JSON_NODE_HOLDS_OBJECT(root)) {
        goto damaged;
    }
    obj = json_node_get_object(root);
    n = json_object_get_member(obj, "url");
    if (n == NULL || json_node_get_value_type(n) != G_TYPE_STRING ||
        strcmp(json_node_get_string(n), url) != 0) {
        goto damaged;
    }
    n = json_object_get_member(obj, "version");
    if (n == NULL || json_node_get_value_type(n) != G_TYPE_INT64 ||
        json_node_get_int(n) < 1) {
        goto damaged;
    }
    st->version = json_node_get_int(n);
    n = json_object_get_member(obj, "sha256");
    if (n == NULL || json_node_get_value_type(n) != G_TYPE_STRING ||
        !vmaug_hex_is_sha256(json_node_get_string(n))) {
        goto damaged;
    }
    st->sha256 = json_node_dup_string(n);
    return TRUE;

damaged:
    g_set_error(error, VMAUG_REPO_ERROR, VMAUG_REPO_ERROR_FAILED,
                "repository state %s is damaged; refusing to forget the "
                "highest metadata version seen", path);
    return FALSE;
}

gboolean repo_state_admit(const gchar *state_dir, const gchar *url,
                          const VmaugRepoIndex *index, GError **error)
{
    g_autofree gchar *id = repo_sha256_hex(url, strlen(url));
    g_autofree gchar *base = g_strdup_printf("repo-%.32s", id);
    g_autofree gchar *path = NULL;
    g_autofree gchar *lock_path = NULL;
    g_autofree gchar *json = NULL;
    g_autoptr(GError) local = NULL;
    RepoState st = { 0 };
    gboolean ok = FALSE;
    int fd;

    if (g_mkdir_with_parents(state_dir, 0700) != 0) {
        return repo_state_io(error, "create", state_dir, errno);
    }
    path = g_strdup_printf("%s/%s.json", state_dir, base);
    lock_path = g_strdup_printf("%s/%s.lock", state_dir, base);
    /* Two fetches from one repository must not both read the old state
     * and then each write theirs. */
    fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        return repo_state_io(error, "open", lock_path, errno);
    }
    if (flock(fd, LOCK_EX) != 0) {
        repo_state_io(error, "lock", lock_path, errno);
        goto out;
    }
    if (!repo_state_read(path, url, &st, error)) {
        goto out;
    }
    if (index->version < st.version) {
        g_set_error(error, VMAUG_REPO_ERROR, VMAUG_REPO_ERROR_ROLLBACK,
                    "repository %s: metadata version %" G_GINT64_FORMAT
                    " is older than version %" G_GINT64_FORMAT
                    " accepted before (rollback or frozen mirror)",
                    url, index->version, st.version);
        goto out;
    }
    if (index->version == st.version) {
        /* The same version must be the same bytes: a signer's key used to
         * sign two different indexes under one version is suspect. */
        if (strcmp(index->sha256, st.sha256) != 0) {
            g_set_error(error, VMAUG_REPO_ERROR, VMAUG_REPO_ERROR_ROLLBACK,
                        "repository %s: metadata version %" G_GINT64_FORMAT
                        " differs from the one accepted before (%.16s...)",
                        url, index->version, st.sha256);
            goto out;
        }
        ok = TRUE;
        goto out;
    }
    {
        g_autoptr(JsonBuilder) b = json_builder_new();
        g_autoptr(JsonGenerator) gen = json_generator_new();
        g_autoptr(JsonNode) root = NULL;

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "url");
        json_builder_add_string_value(b, url);
        json_builder_set_member_name(b, "version");
        json_builder_add_int_value(b, index->version);
        json_builder_set_member_name(b, "sha256");
        json_builder_add_string_value(b, index->sha256);
        json_builder_end_object(b);
        root = json_builder_get_root(b);
        json_generator_set_root(gen, root);
        json = json_generator_to_data(gen, NULL);
    }
    if (strlen(json) > REPO_STATE_MAX_SIZE) {
        g_set_error(error, VMAUG_REPO_ERROR, VMAUG_REPO_ERROR_INVALID,
                    "repository URL too long to remember");
        goto out;
    }
    /* Temporary file, fsync, rename, fsync the directory: after a crash
     * the state is the old version or the new one, never less. */
    if (!vmaug_store_write_file(path, json, strlen(json), &local)) {
        g_set_error(error, VMAUG_REPO_ERROR, VMAUG_REPO_ERROR_FAILED,
                    "repository state: %s", local->message);
        goto out;
    }
    ok = TRUE;
out:
    g_free(st.sha256);
    close(fd);
    return ok;
}
