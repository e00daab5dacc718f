/*
 * The scan job's parent half (vo-scan.h): the request to the worker, the
 * checks of its report, the result and the cache file.
 *
 * The parent never reads a guest byte: what the worker says about the
 * guest (paths, signature names, errors, cache keys) is checked member by
 * member and bounded here, as vo-worker.c does for the other jobs, before
 * it reaches the caller or the cache.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include <glib/gstdio.h>

#include "vo-image.h"
#include "vo-scan.h"
#include "vo-wire.h"
#include "vo-worker.h"

#define VO_SCAN_CACHE_FORMAT    1
#define VO_SCAN_MAX_ENGINE      64
#define VO_SCAN_MAX_SIGNATURE   256

const char *vo_scan_result_name(VoScanResult result)
{
    static const char *const names[] = {
        [VO_SCAN_CLEAN] = "clean",
        [VO_SCAN_INFECTED] = "infected",
        [VO_SCAN_INCOMPLETE] = "incomplete",
    };

    return names[result];
}

/* ---- The worker's report ---- */

/* A string member of at most @max bytes without control characters (the
 * wire checked it is UTF-8): the text may reach a terminal. */
static const char *vo_scan_text(JsonObject *o, const char *name, gsize max,
                                gboolean allow_empty)
{
    JsonNode *n = json_object_get_member(o, name);
    const char *s;

    if (!n || json_node_get_value_type(n) != G_TYPE_STRING) {
        return NULL;
    }
    s = json_node_get_string(n);
    if (strlen(s) > max || (!allow_empty && !*s)) {
        return NULL;
    }
    for (const char *p = s; *p; p = g_utf8_next_char(p)) {
        if (g_unichar_iscntrl(g_utf8_get_char(p))) {
            return NULL;
        }
    }
    return s;
}

static gboolean vo_scan_count(JsonObject *o, const char *name, gint64 *out)
{
    JsonNode *n = json_object_get_member(o, name);

    if (!n || json_node_get_value_type(n) != G_TYPE_INT64 ||
        json_node_get_int(n) < 0) {
        return FALSE;
    }
    *out = json_node_get_int(n);
    return TRUE;
}

/* Objects of exactly the members @names, each a bounded text. */
static JsonArray *vo_scan_check_list(JsonObject *scan, const char *member,
                                     guint max, const char *const *names,
                                     const gsize *maxes, GError **error)
{
    JsonNode *n = json_object_get_member(scan, member);
    g_autoptr(JsonArray) out = json_array_new();
    JsonArray *a;
    guint n_names = g_strv_length((char **)names);

    if (!n || !JSON_NODE_HOLDS_ARRAY(n)) {
        vo_wire_malformed(error, "scan: \"%s\" is not an array", member);
        return NULL;
    }
    a = json_node_get_array(n);
    if (json_array_get_length(a) > max) {
        vo_wire_malformed(error, "scan: too many %s", member);
        return NULL;
    }
    for (guint i = 0; i < json_array_get_length(a); i++) {
        JsonNode *e = json_array_get_element(a, i);
        JsonObject *o, *copy;

        if (!JSON_NODE_HOLDS_OBJECT(e) ||
            json_object_get_size(json_node_get_object(e)) != n_names) {
            vo_wire_malformed(error, "scan: bad entry in \"%s\"", member);
            return NULL;
        }
        o = json_node_get_object(e);
        copy = json_object_new();
        for (guint k = 0; k < n_names; k++) {
            /* An error may name no file (the scan's time ran out). */
            const char *t = vo_scan_text(o, names[k], maxes[k],
                                         g_str_equal(names[k], "path"));

            if (!t) {
                json_object_unref(copy);
                vo_wire_malformed(error, "scan: bad \"%s\" in \"%s\"",
                                  names[k], member);
                return NULL;
            }
            json_object_set_string_member(copy, names[k], t);
        }
        json_array_add_object_element(out, copy);
    }
    return g_steal_pointer(&out);
}

/* Cache keys as the worker makes them (vo-scan-engine.c). */
static gboolean vo_scan_key_ok(const char *key)
{
    gsize len = strlen(key);

    if (len == 0 || len > VO_SCAN_MAX_KEY) {
        return FALSE;
    }
    for (const char *p = key; *p; p++) {
        if (!g_ascii_isalnum(*p) && !strchr("@:-", *p)) {
            return FALSE;
        }
    }
    return TRUE;
}

static GPtrArray *vo_scan_check_keys(JsonNode *n, guint max, GError **error)
{
    g_autoptr(GPtrArray) keys = g_ptr_array_new_with_free_func(g_free);
    JsonArray *a;

    if (!n || !JSON_NODE_HOLDS_ARRAY(n)) {
        vo_wire_malformed(error, "scan: \"clean\" is not an array");
        return NULL;
    }
    a = json_node_get_array(n);
    if (json_array_get_length(a) > max) {
        vo_wire_malformed(error, "scan: too many clean files");
        return NULL;
    }
    for (guint i = 0; i < json_array_get_length(a); i++) {
        JsonNode *e = json_array_get_element(a, i);

        if (json_node_get_value_type(e) != G_TYPE_STRING ||
            !vo_scan_key_ok(json_node_get_string(e))) {
            vo_wire_malformed(error, "scan: bad cache key");
            return NULL;
        }
        g_ptr_array_add(keys, g_strdup(json_node_get_string(e)));
    }
    return g_steal_pointer(&keys);
}

static const char *const vo_scan_members[] = {
    "engine", "database", "files-scanned", "files-cached", "bytes-scanned",
    "findings", "errors", "clean", NULL,
};

JsonObject *vo_scan_check_report(JsonNode *node, GPtrArray **clean,
                                 GError **error)
{
    static const char *const finding_names[] = {
        "filesystem", "path", "signature", NULL,
    };
    static const gsize finding_max[] = {
        VO_SCAN_MAX_PATH_TEXT, VO_SCAN_MAX_PATH_TEXT, VO_SCAN_MAX_SIGNATURE,
    };
    static const char *const error_names[] = { "path", "reason", NULL };
    static const gsize error_max[] = {
        VO_SCAN_MAX_PATH_TEXT, VO_SCAN_MAX_REASON,
    };
    g_autoptr(JsonObject) out = json_object_new();
    g_autoptr(GPtrArray) keys = NULL;
    g_autoptr(JsonArray) findings = NULL;
    g_autoptr(JsonArray) errors = NULL;
    JsonObject *scan, *db, *dbout;
    JsonNode *n, *version;
    const char *engine;
    gint64 count;

    if (!node || !JSON_NODE_HOLDS_OBJECT(node)) {
        vo_wire_malformed(error, "scan: not an object");
        return NULL;
    }
    scan = json_node_get_object(node);
    if (json_object_get_size(scan) != g_strv_length((char **)vo_scan_members)) {
        vo_wire_malformed(error, "scan: unexpected members");
        return NULL;
    }
    for (guint i = 0; vo_scan_members[i]; i++) {
        if (!json_object_has_member(scan, vo_scan_members[i])) {
            vo_wire_malformed(error, "scan: no \"%s\"", vo_scan_members[i]);
            return NULL;
        }
    }
    engine = vo_scan_text(scan, "engine", VO_SCAN_MAX_ENGINE, FALSE);
    if (!engine || !g_str_has_prefix(engine, "ClamAV ")) {
        vo_wire_malformed(error, "scan: bad \"engine\"");
        return NULL;
    }
    json_object_set_string_member(out, "engine", engine);

    n = json_object_get_member(scan, "database");
    if (!JSON_NODE_HOLDS_OBJECT(n) ||
        json_object_get_size(json_node_get_object(n)) != 2) {
        vo_wire_malformed(error, "scan: bad \"database\"");
        return NULL;
    }
    db = json_node_get_object(n);
    version = json_object_get_member(db, "version");
    dbout = json_object_new();
    if (!version ||
        !(JSON_NODE_HOLDS_NULL(version) ||
          (json_node_get_value_type(version) == G_TYPE_INT64 &&
           json_node_get_int(version) > 0)) ||
        !vo_scan_count(db, "signatures", &count)) {
        json_object_unref(dbout);
        vo_wire_malformed(error, "scan: bad \"database\"");
        return NULL;
    }
    if (JSON_NODE_HOLDS_NULL(version)) {
        json_object_set_null_member(dbout, "version");
    } else {
        json_object_set_int_member(dbout, "version",
                                   json_node_get_int(version));
    }
    json_object_set_int_member(dbout, "signatures", count);
    json_object_set_object_member(out, "database", dbout);

    for (guint i = 2; i <= 4; i++) {
        if (!vo_scan_count(scan, vo_scan_members[i], &count)) {
            vo_wire_malformed(error, "scan: bad \"%s\"", vo_scan_members[i]);
            return NULL;
        }
        json_object_set_int_member(out, vo_scan_members[i], count);
    }
    findings = vo_scan_check_list(scan, "findings", VO_SCAN_MAX_FINDINGS,
                                  finding_names, finding_max, error);
    if (!findings) {
        return NULL;
    }
    errors = vo_scan_check_list(scan, "errors", VO_SCAN_MAX_ERRORS,
                                error_names, error_max, error);
    if (!errors) {
        return NULL;
    }
    keys = vo_scan_check_keys(json_object_get_member(scan, "clean"),
                              VO_SCAN_MAX_CLEAN, error);
    if (!keys) {
        return NULL;
    }
    json_object_set_array_member(out, "findings", g_steal_pointer(&findings));
    json_object_set_array_member(out, "errors", g_steal_pointer(&errors));
    if (clean) {
        *clean = g_steal_pointer(&keys);
    }
    return g_steal_pointer(&out);
}

/* ---- The cache ---- */

static gint vo_scan_compare_lines(gconstpointer a, gconstpointer b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * What identifies the database: each file's name, size and change time.
 * The host owner's freshclam replaces files, which changes them; so does
 * a signature file added, edited or removed by hand.
 */
static char *vo_scan_database_stamp(const char *dir, GError **error)
{
    g_autoptr(GDir) d = g_dir_open(dir, 0, error);
    g_autoptr(GPtrArray) lines = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
    const char *name;

    if (!d) {
        g_prefix_error(error, "signature database: ");
        return NULL;
    }
    while ((name = g_dir_read_name(d))) {
        g_autofree char *path = g_build_filename(dir, name, NULL);
        GStatBuf st;

        if (g_stat(path, &st) < 0 || !S_ISREG(st.st_mode)) {
            continue;
        }
        g_ptr_array_add(lines, g_strdup_printf(
                                   "%s %" G_GUINT64_FORMAT " %" G_GINT64_FORMAT
                                   ".%09ld %" G_GUINT64_FORMAT "\n",
                                   name, (guint64)st.st_size,
                                   (gint64)st.st_mtim.tv_sec,
                                   st.st_mtim.tv_nsec, (guint64)st.st_ino));
    }
    g_ptr_array_sort(lines, vo_scan_compare_lines);
    for (guint i = 0; i < lines->len; i++) {
        g_checksum_update(sum, lines->pdata[i], strlen(lines->pdata[i]));
    }
    return g_strdup(g_checksum_get_string(sum));
}

/*
 * The cache file as the parent wrote it, or NULL (with a warning) when it
 * is absent, unreadable, malformed or made with another database: the
 * scan then starts from nothing.  It is written by us, but may have been
 * replaced: every member is checked.
 */
static JsonObject *vo_scan_cache_read(const char *path, const char *stamp)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GError) local = NULL;
    g_autoptr(GPtrArray) keys = NULL;
    g_autofree char *text = NULL;
    JsonObject *o, *out;
    JsonNode *root, *version;
    gsize len;
    gint64 sigs;

    if (!g_file_test(path, G_FILE_TEST_EXISTS)) {
        return NULL;
    }
    if (!g_file_get_contents(path, &text, &len, &local) ||
        len > VO_SCAN_MAX_CACHE_BYTES ||
        !json_parser_load_from_data(parser, text, len, &local)) {
        g_warning("scan cache %s ignored: %s", path,
                  local ? local->message : "too large");
        return NULL;
    }
    root = json_parser_get_root(parser);
    o = JSON_NODE_HOLDS_OBJECT(root) ? json_node_get_object(root) : NULL;
    version = o ? json_object_get_member(o, "database-version") : NULL;
    if (!o ||
        json_object_get_int_member_with_default(o, "format", 0) !=
            VO_SCAN_CACHE_FORMAT ||
        !vo_scan_text(o, "engine", VO_SCAN_MAX_ENGINE, FALSE) ||
        !vo_scan_text(o, "database-stamp", 64, FALSE) ||
        !vo_scan_count(o, "signatures", &sigs) || !version ||
        json_node_get_value_type(version) != G_TYPE_INT64 ||
        !(keys = vo_scan_check_keys(json_object_get_member(o, "keys"),
                                    VO_SCAN_MAX_CLEAN, &local))) {
        g_warning("scan cache %s ignored: not a cache this program wrote",
                  path);
        return NULL;
    }
    if (!g_str_equal(vo_scan_text(o, "database-stamp", 64, FALSE), stamp)) {
        g_debug("scan cache %s made with another database", path);
        return NULL;
    }
    out = json_object_new();
    json_object_set_string_member(out, "engine",
                                  json_object_get_string_member(o, "engine"));
    json_object_set_int_member(out, "database-version",
                               json_node_get_int(version));
    json_object_set_int_member(out, "signatures", sigs);
    json_object_set_member(out, "keys",
                           json_node_copy(json_object_get_member(o, "keys")));
    return out;
}

/* Whether the worker's engine and database made @cache's keys (the
 * worker ignored them otherwise). */
static gboolean vo_scan_cache_matches(JsonObject *cache, JsonObject *report)
{
    JsonObject *db = json_object_get_object_member(report, "database");
    JsonNode *version = json_object_get_member(db, "version");

    return g_str_equal(json_object_get_string_member(cache, "engine"),
                       json_object_get_string_member(report, "engine")) &&
           json_object_get_int_member(cache, "database-version") ==
               (JSON_NODE_HOLDS_NULL(version) ? 0
                                              : json_node_get_int(version)) &&
           json_object_get_int_member(cache, "signatures") ==
               json_object_get_int_member(db, "signatures");
}

static gboolean vo_scan_cache_write(const char *path, const char *stamp,
                                    JsonObject *report, GPtrArray *keys,
                                    GError **error)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(JsonNode) root = NULL;
    g_autofree char *text = NULL;
    JsonObject *db = json_object_get_object_member(report, "database");
    JsonNode *version = json_object_get_member(db, "version");
    gsize len;

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "format");
    json_builder_add_int_value(b, VO_SCAN_CACHE_FORMAT);
    json_builder_set_member_name(b, "engine");
    json_builder_add_string_value(
        b, json_object_get_string_member(report, "engine"));
    json_builder_set_member_name(b, "database-stamp");
    json_builder_add_string_value(b, stamp);
    json_builder_set_member_name(b, "database-version");
    json_builder_add_int_value(b, JSON_NODE_HOLDS_NULL(version)
                                      ? 0 : json_node_get_int(version));
    json_builder_set_member_name(b, "signatures");
    json_builder_add_int_value(
        b, json_object_get_int_member(db, "signatures"));
    json_builder_set_member_name(b, "keys");
    json_builder_begin_array(b);
    for (guint i = 0; i < keys->len; i++) {
        json_builder_add_string_value(b, keys->pdata[i]);
    }
    json_builder_end_array(b);
    json_builder_end_object(b);
    root = json_builder_get_root(b);
    json_generator_set_root(gen, root);
    text = json_generator_to_data(gen, &len);
    /* Atomically: an interrupted write leaves the old cache. */
    if (!g_file_set_contents_full(path, text, len,
                                  G_FILE_SET_CONTENTS_CONSISTENT, 0600,
                                  error)) {
        g_prefix_error(error, "scan cache: ");
        return FALSE;
    }
    return TRUE;
}

/* ---- The job ---- */

static GBytes *vo_scan_request(const VoScanOptions *opts,
                               const char *database, JsonObject *cache)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(JsonNode) root = NULL;
    gsize len;
    char *text;

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "database");
    json_builder_add_string_value(b, database);
    json_builder_set_member_name(b, "max-file-size");
    json_builder_add_int_value(b, opts->max_file_size);
    json_builder_set_member_name(b, "timeout");
    json_builder_add_int_value(b, opts->timeout_s);
    json_builder_set_member_name(b, "paths");
    json_builder_begin_array(b);
    for (guint i = 0; opts->paths && opts->paths[i]; i++) {
        json_builder_add_string_value(b, opts->paths[i]);
    }
    json_builder_end_array(b);
    if (cache) {
        json_builder_set_member_name(b, "cache");
        json_builder_add_value(b, json_node_init_object(json_node_alloc(),
                                                        cache));
    }
    json_builder_end_object(b);
    root = json_builder_get_root(b);
    json_generator_set_root(gen, root);
    text = json_generator_to_data(gen, &len);
    return g_bytes_new_take(text, len);
}

static gboolean vo_scan_check_options(const VoScanOptions *opts,
                                      GError **error)
{
    if (opts->max_file_size == 0 ||
        opts->max_file_size > VO_SCAN_MAX_FILE_SIZE_LIMIT) {
        g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                    "--max-file-size must be 1 to %" G_GUINT64_FORMAT
                    " bytes", VO_SCAN_MAX_FILE_SIZE_LIMIT);
        return FALSE;
    }
    if (opts->timeout_s == 0 || opts->timeout_s > VO_SCAN_TIMEOUT_LIMIT_S) {
        g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                    "--timeout must be 1 to %u seconds",
                    VO_SCAN_TIMEOUT_LIMIT_S);
        return FALSE;
    }
    if (opts->paths && g_strv_length(opts->paths) > VO_SCAN_MAX_PATHS) {
        g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                    "at most %u --path", VO_SCAN_MAX_PATHS);
        return FALSE;
    }
    for (guint i = 0; opts->paths && opts->paths[i]; i++) {
        g_autofree char *norm = vo_guest_normalize_path(opts->paths[i]);

        /* "/" names every filesystem; anything else a file or a
         * directory, exactly. */
        if (!g_str_equal(norm, "/") &&
            !vo_guest_check_path(opts->paths[i], error)) {
            g_prefix_error(error, "--path: ");
            return FALSE;
        }
    }
    return TRUE;
}

GBytes *vo_scan_quarantine_request(const VoScanOptions *opts,
                                   GError **error)
{
    g_autofree char *dir = NULL;

    if (!vo_scan_check_options(opts, error)) {
        return NULL;
    }
    dir = g_canonicalize_filename(opts->database, NULL);
    if (!g_file_test(dir, G_FILE_TEST_IS_DIR)) {
        g_set_error(error, VO_ERROR, VO_ERROR_NOT_FOUND,
                    "signature database %s is not a directory", dir);
        return NULL;
    }
    return vo_scan_request(opts, dir, NULL);
}

gboolean vo_scan_run(const VoScanOptions *opts, JsonNode **report,
                     VoScanResult *result, GError **error)
{
    g_autofree char *format = NULL;
    g_autofree char *database = NULL;
    g_autofree char *stamp = NULL;
    g_autoptr(JsonObject) cache = NULL;
    g_autoptr(JsonObject) worker = NULL;
    g_autoptr(JsonObject) out = NULL;
    g_autoptr(GPtrArray) clean = NULL;
    g_autoptr(GBytes) request = NULL;
    g_autoptr(JsonObject) contract = json_object_new();
    VoWorkerRequest req = { .job = VO_WORKER_SCAN };
    g_autoptr(GList) names = NULL;
    JsonArray *findings, *errors;

    if (!vo_scan_check_options(opts, error)) {
        return FALSE;
    }
    database = g_canonicalize_filename(opts->database, NULL);
    if (!g_file_test(database, G_FILE_TEST_IS_DIR)) {
        g_set_error(error, VO_ERROR, VO_ERROR_NOT_FOUND,
                    "signature database %s is not a directory", database);
        return FALSE;
    }
    stamp = vo_scan_database_stamp(database, error);
    if (!stamp) {
        return FALSE;
    }
    if (opts->cache) {
        cache = vo_scan_cache_read(opts->cache, stamp);
    }
    format = vo_image_open_format(opts->image, opts->format, FALSE, error);
    if (!format) {
        return FALSE;
    }
    request = vo_scan_request(opts, database, cache);
    req.image = req.disk = opts->image;
    req.format = format;
    req.request = request;
    req.timeout_s = opts->timeout_s + VO_WORKER_SCAN_GRACE_S;
    if (!vo_worker_run(&req, &worker, error)) {
        return FALSE;
    }
    out = vo_scan_check_report(json_object_get_member(worker, "scan"),
                               &clean, error);
    if (!out) {
        g_prefix_error(error, "%s: ", opts->image);
        return FALSE;
    }
    findings = json_object_get_array_member(out, "findings");
    errors = json_object_get_array_member(out, "errors");
    *result = json_array_get_length(findings) ? VO_SCAN_INFECTED
              : json_array_get_length(errors) ? VO_SCAN_INCOMPLETE
                                              : VO_SCAN_CLEAN;
    /* The contract's order (docs/offline.rst). */
    json_object_set_string_member(contract, "image", opts->image);
    names = json_object_get_members(out);
    for (GList *m = names; m; m = m->next) {
        json_object_set_member(contract, m->data,
                               json_node_copy(json_object_get_member(
                                   out, m->data)));
    }
    json_object_set_string_member(contract, "result",
                                  vo_scan_result_name(*result));
    /* A scan of some paths keeps what it did not look at: a key names
     * its file unchanged, so one left over is stale, never wrong. */
    if (cache && opts->paths && opts->paths[0] &&
        vo_scan_cache_matches(cache, out)) {
        g_autoptr(GHashTable) have = g_hash_table_new(g_str_hash,
                                                      g_str_equal);
        JsonArray *old = json_object_get_array_member(cache, "keys");

        for (guint i = 0; i < clean->len; i++) {
            g_hash_table_add(have, clean->pdata[i]);
        }
        for (guint i = 0; i < json_array_get_length(old) &&
                          clean->len < VO_SCAN_MAX_CLEAN; i++) {
            const char *k = json_array_get_string_element(old, i);

            if (!g_hash_table_contains(have, k)) {
                g_ptr_array_add(clean, g_strdup(k));
            }
        }
    }
    if (opts->cache &&
        !vo_scan_cache_write(opts->cache, stamp, out, clean, error)) {
        return FALSE;
    }
    *report = json_node_init_object(json_node_alloc(), contract);
    return TRUE;
}
