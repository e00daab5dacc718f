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
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "json-strict.h"
#include "vmaugment-trust.h"
#include "vo-image.h"
#include "vo-scan.h"
#include "vo-wire.h"
#include "vo-worker.h"

#define VO_SCAN_CACHE_FORMAT    2
/* A head holds a few short members; no nesting beyond the request's. */
#define VO_SCAN_MAX_HEAD        (64 * 1024)
#define VO_SCAN_MAX_HEAD_DEPTH  4
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

/*
 * Bytes the worker sent as base64 text: strictly the alphabet, whole
 * quanta and padding only at the end (g_base64_decode() skips what it
 * does not know, so it is checked first), at most @max bytes decoded.
 */
static GBytes *vo_scan_base64(JsonObject *scan, const char *member,
                              gsize max, GError **error)
{
    JsonNode *n = json_object_get_member(scan, member);
    const char *text;
    gsize len, pad = 0, out_len = 0;
    guchar *out;

    if (!n || json_node_get_value_type(n) != G_TYPE_STRING) {
        vo_wire_malformed(error, "scan: \"%s\" is not a string", member);
        return NULL;
    }
    text = json_node_get_string(n);
    len = strlen(text);
    if (len % 4 || len / 4 * 3 > max + 2) {
        vo_wire_malformed(error, "scan: bad \"%s\"", member);
        return NULL;
    }
    while (pad < 2 && pad < len && text[len - pad - 1] == '=') {
        pad++;
    }
    for (gsize i = 0; i < len - pad; i++) {
        if (!g_ascii_isalnum(text[i]) && text[i] != '+' && text[i] != '/') {
            vo_wire_malformed(error, "scan: bad \"%s\"", member);
            return NULL;
        }
    }
    if (len == 0) {
        return g_bytes_new(NULL, 0);
    }
    out = g_base64_decode(text, &out_len);
    if (out_len != len / 4 * 3 - pad || out_len > max) {
        g_free(out);
        vo_wire_malformed(error, "scan: bad \"%s\"", member);
        return NULL;
    }
    return g_bytes_new_take(out, out_len);
}

/* The cache's part of the report: the bitmap over the @n_given keys of
 * the request, and the keys of the files found clean now. */
static gboolean vo_scan_check_keys(JsonObject *scan, gsize n_given,
                                   GBytes **cached, GBytes **clean,
                                   GError **error)
{
    gsize bits_len = (n_given + 7) / 8;
    g_autoptr(GBytes) bits = vo_scan_base64(scan, "cached", bits_len, error);
    g_autoptr(GBytes) keys = NULL;
    const guint8 *b;

    if (!bits) {
        return FALSE;
    }
    b = g_bytes_get_data(bits, NULL);
    if (g_bytes_get_size(bits) != bits_len ||
        (n_given % 8 && (b[bits_len - 1] >> (n_given % 8)))) {
        vo_wire_malformed(error, "scan: \"cached\" is not a bitmap of "
                          "the %" G_GSIZE_FORMAT " keys given", n_given);
        return FALSE;
    }
    keys = vo_scan_base64(scan, "clean",
                          (gsize)VO_SCAN_MAX_CLEAN * sizeof(VoScanKey),
                          error);
    if (!keys) {
        return FALSE;
    }
    if (g_bytes_get_size(keys) % sizeof(VoScanKey)) {
        vo_wire_malformed(error, "scan: \"clean\" is not a list of keys");
        return FALSE;
    }
    if (cached) {
        *cached = g_steal_pointer(&bits);
        *clean = g_steal_pointer(&keys);
    }
    return TRUE;
}

static const char *const vo_scan_members[] = {
    "engine", "database", "files-scanned", "files-cached", "bytes-scanned",
    "findings", "errors", "cached", "clean", NULL,
};

JsonObject *vo_scan_check_report(JsonNode *node, gsize n_given,
                                 GBytes **cached, GBytes **clean,
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
    if (!vo_scan_check_keys(scan, n_given, cached, clean, error)) {
        return NULL;
    }
    json_object_set_array_member(out, "findings", g_steal_pointer(&findings));
    json_object_set_array_member(out, "errors", g_steal_pointer(&errors));
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

/* ---- Heads and keys ---- */

GBytes *vo_scan_blob_head(JsonObject *head)
{
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(JsonNode) root = json_node_init_object(json_node_alloc(),
                                                     head);
    g_autofree char *text = NULL;
    gsize len, start;
    guint8 *out;

    json_generator_set_root(gen, root);
    text = json_generator_to_data(gen, &len);
    start = (len + 1 + 7) & ~(gsize)7;
    out = g_malloc0(start);
    memcpy(out, text, len);
    return g_bytes_new_take(out, start);
}

JsonObject *vo_scan_blob_split(const guint8 *data, gsize len,
                               const VoScanKey **keys, gsize *n_keys,
                               GError **error)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    const guint8 *nul = memchr(data, '\0', len);
    JsonNode *root;
    gsize start;
    gint64 n;

    if (!nul) {
        g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT, "no head");
        return NULL;
    }
    start = ((gsize)(nul - data) + 1 + 7) & ~(gsize)7;
    if (start > len || (len - start) % sizeof(VoScanKey)) {
        g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                    "the keys are not whole");
        return NULL;
    }
    /* json-glib recurses once per level: the nesting is measured on the
     * text before it parses (as vo-wire.c does). */
    if (nul - data > VO_SCAN_MAX_HEAD ||
        !g_utf8_validate((const char *)data, nul - data, NULL) ||
        !vmaug_json_depth_ok((const char *)data, nul - data,
                             VO_SCAN_MAX_HEAD_DEPTH) ||
        !json_parser_load_from_data(parser, (const char *)data, nul - data,
                                    NULL)) {
        g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                    "the head is not a JSON object of ours");
        return NULL;
    }
    root = json_parser_get_root(parser);
    n = root && JSON_NODE_HOLDS_OBJECT(root)
            ? json_object_get_int_member_with_default(
                  json_node_get_object(root), "keys", -1)
            : -1;
    if (n < 0 || (guint64)n != (len - start) / sizeof(VoScanKey)) {
        g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                    "the head does not count the keys");
        return NULL;
    }
    *keys = (const VoScanKey *)(data + start);
    *n_keys = n;
    return json_object_ref(json_node_get_object(root));
}

/* ---- The cache file ---- */

typedef struct {
    char *engine;
    gint64 db_version;
    gint64 signatures;
    GBytes *data;               /* the file; the keys lie in it */
    const VoScanKey *keys;
    gsize n_keys;
} VoScanCache;

static void vo_scan_cache_free(VoScanCache *c)
{
    g_free(c->engine);
    g_clear_pointer(&c->data, g_bytes_unref);
    g_free(c);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(VoScanCache, vo_scan_cache_free)

/*
 * The cache file as the parent wrote it, or NULL (with a warning) when it
 * is absent, unreadable, malformed or made with another database: the
 * scan then starts from nothing.  It is written by us, but may have been
 * replaced: every member is checked; any bytes make valid keys.
 */
static VoScanCache *vo_scan_cache_read(const char *path, const char *stamp)
{
    g_autoptr(VoScanCache) c = g_new0(VoScanCache, 1);
    g_autoptr(GError) local = NULL;
    g_autoptr(JsonObject) o = NULL;
    JsonNode *version;

    /* A regular file of bounded size, whatever is under its name: a FIFO
     * or a device is no cache. */
    c->data = vmaug_trust_read_file(path, VO_SCAN_MAX_CACHE_BYTES, &local);
    if (!c->data && g_error_matches(local, G_FILE_ERROR, G_FILE_ERROR_NOENT)) {
        return NULL;
    }
    if (!c->data ||
        !(o = vo_scan_blob_split(g_bytes_get_data(c->data, NULL),
                                 g_bytes_get_size(c->data), &c->keys,
                                 &c->n_keys, &local))) {
        g_warning("scan cache %s ignored: %s", path, local->message);
        return NULL;
    }
    version = json_object_get_member(o, "database-version");
    if (json_object_get_int_member_with_default(o, "format", 0) !=
            VO_SCAN_CACHE_FORMAT ||
        !vo_scan_text(o, "engine", VO_SCAN_MAX_ENGINE, FALSE) ||
        !vo_scan_text(o, "database-stamp", 64, FALSE) ||
        !vo_scan_count(o, "signatures", &c->signatures) || !version ||
        json_node_get_value_type(version) != G_TYPE_INT64 ||
        c->n_keys > VO_SCAN_MAX_CLEAN) {
        g_warning("scan cache %s ignored: not a cache this program wrote",
                  path);
        return NULL;
    }
    if (!g_str_equal(vo_scan_text(o, "database-stamp", 64, FALSE), stamp)) {
        g_debug("scan cache %s made with another database", path);
        return NULL;
    }
    c->engine = g_strdup(json_object_get_string_member(o, "engine"));
    c->db_version = json_node_get_int(version);
    return g_steal_pointer(&c);
}

/* Whether the worker's engine and database made @cache's keys (the
 * worker ignored them otherwise). */
static gboolean vo_scan_cache_matches(VoScanCache *cache, JsonObject *report)
{
    JsonObject *db = json_object_get_object_member(report, "database");
    JsonNode *version = json_object_get_member(db, "version");

    return g_str_equal(cache->engine,
                       json_object_get_string_member(report, "engine")) &&
           cache->db_version == (JSON_NODE_HOLDS_NULL(version)
                                     ? 0 : json_node_get_int(version)) &&
           cache->signatures == json_object_get_int_member(db, "signatures");
}

/* The engine and database that made a set of keys: what a cache file
 * and a request's "cache" both say. */
static JsonObject *vo_scan_cache_head(const char *engine, gint64 db_version,
                                      gint64 signatures)
{
    JsonObject *o = json_object_new();

    json_object_set_string_member(o, "engine", engine);
    json_object_set_int_member(o, "database-version", db_version);
    json_object_set_int_member(o, "signatures", signatures);
    return o;
}

/* Consecutive keys where they lie: in the worker's report or in the
 * cache file read. */
typedef struct {
    const VoScanKey *first;
    gsize n;
} VoScanKeyRun;

/* @runs (VoScanKeyRun), @n_keys keys in all. */
static gboolean vo_scan_cache_write(const char *path, const char *stamp,
                                    JsonObject *report, GArray *runs,
                                    gsize n_keys, GError **error)
{
    JsonObject *db = json_object_get_object_member(report, "database");
    JsonNode *version = json_object_get_member(db, "version");
    g_autoptr(JsonObject) head = vo_scan_cache_head(
        json_object_get_string_member(report, "engine"),
        JSON_NODE_HOLDS_NULL(version) ? 0 : json_node_get_int(version),
        json_object_get_int_member(db, "signatures"));
    g_autofree char *tmp = g_strconcat(path, ".XXXXXX", NULL);
    g_autoptr(GBytes) blob = NULL;
    gboolean ok;
    int fd;

    json_object_set_int_member(head, "format", VO_SCAN_CACHE_FORMAT);
    json_object_set_int_member(head, "keys", n_keys);
    json_object_set_string_member(head, "database-stamp", stamp);
    blob = vo_scan_blob_head(head);
    /* Atomically, a new file renamed over the old: an interrupted write
     * leaves the old cache.  Not synced first: a file a host crash left
     * empty or cut is refused when read (vo_scan_blob_split() wants
     * exactly the keys its head counts), and the next scan is a full
     * one.  Head and keys are written from where they are, not joined
     * into one more copy of a megabyte (fresh memory: a page fault per
     * 4 KiB). */
    fd = g_mkstemp_full(tmp, O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) {
        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno),
                    "scan cache: %s: %s", tmp, g_strerror(errno));
        return FALSE;
    }
    ok = vo_wire_write_all(fd, g_bytes_get_data(blob, NULL),
                           g_bytes_get_size(blob), error);
    for (guint i = 0; ok && i < runs->len; i++) {
        VoScanKeyRun *r = &g_array_index(runs, VoScanKeyRun, i);

        ok = vo_wire_write_all(fd, r->first, r->n * sizeof(VoScanKey),
                               error);
    }
    if (close(fd) < 0 && ok) {
        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno),
                    "%s", g_strerror(errno));
        ok = FALSE;
    }
    if (ok && rename(tmp, path) < 0) {
        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno),
                    "%s", g_strerror(errno));
        ok = FALSE;
    }
    if (!ok) {
        unlink(tmp);
        g_prefix_error(error, "scan cache %s: ", path);
    }
    return ok;
}

/*
 * The keys the cache file keeps after a scan, as runs (VoScanKeyRun) of
 * @clean and of @cache's keys, *@n_keys in all: those of the files the
 * worker found clean now, then those of the given ones it met unchanged
 * (@cached).  A scan of some paths keeps every given key besides: a key
 * names its file unchanged, so one left over is stale, never wrong (and
 * comes last, where the limit drops it first).
 */
static GArray *vo_scan_cache_merge(VoScanCache *cache, gboolean matches,
                                   gboolean some_paths, GBytes *cached,
                                   GBytes *clean, gsize *n_keys)
{
    const guint8 *bits = g_bytes_get_data(cached, NULL);
    GArray *runs = g_array_new(FALSE, FALSE, sizeof(VoScanKeyRun));
    VoScanKeyRun run = {
        .first = g_bytes_get_data(clean, NULL),
        .n = MIN(g_bytes_get_size(clean) / sizeof(VoScanKey),
                 VO_SCAN_MAX_CLEAN),
    };

    *n_keys = run.n;
    if (run.n) {
        g_array_append_val(runs, run);
    }
    run.n = 0;
    for (gsize i = 0; cache && matches && i < cache->n_keys &&
                      *n_keys < VO_SCAN_MAX_CLEAN; i++) {
        if (some_paths || (bits[i / 8] >> (i % 8)) & 1) {
            if (run.n == 0) {
                run.first = &cache->keys[i];
            }
            run.n++;
            ++*n_keys;
        } else if (run.n) {
            g_array_append_val(runs, run);
            run.n = 0;
        }
    }
    if (run.n) {
        g_array_append_val(runs, run);
    }
    return runs;
}

/* ---- The job ---- */

/* The head of the request; *@keys, the cache's keys to go after it (a
 * slice of the cache file read, not a copy), or NULL. */
static GBytes *vo_scan_request(const VoScanOptions *opts,
                               const char *database, VoScanCache *cache,
                               GBytes **keys)
{
    g_autoptr(JsonObject) head = json_object_new();
    JsonArray *paths = json_array_new();

    json_object_set_string_member(head, "database", database);
    /* A spare's later request names its image (the worker's messages
     * do). */
    if (opts->await) {
        json_object_set_string_member(head, "image", opts->image);
    }
    json_object_set_int_member(head, "max-file-size", opts->max_file_size);
    json_object_set_int_member(head, "timeout", opts->timeout_s);
    for (guint i = 0; opts->paths && opts->paths[i]; i++) {
        json_array_add_string_element(paths, opts->paths[i]);
    }
    json_object_set_array_member(head, "paths", paths);
    if (cache) {
        json_object_set_object_member(
            head, "cache",
            vo_scan_cache_head(cache->engine, cache->db_version,
                               cache->signatures));
    }
    json_object_set_int_member(head, "keys", cache ? cache->n_keys : 0);
    *keys = cache && cache->n_keys
                ? g_bytes_new_from_bytes(
                      cache->data,
                      (const guint8 *)cache->keys -
                          (const guint8 *)g_bytes_get_data(cache->data, NULL),
                      cache->n_keys * sizeof(VoScanKey))
                : NULL;
    return vo_scan_blob_head(head);
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
    g_autoptr(GBytes) keys = NULL;      /* none: no cache */

    if (!vo_scan_check_options(opts, error)) {
        return NULL;
    }
    dir = g_canonicalize_filename(opts->database, NULL);
    if (!g_file_test(dir, G_FILE_TEST_IS_DIR)) {
        g_set_error(error, VO_ERROR, VO_ERROR_NOT_FOUND,
                    "signature database %s is not a directory", dir);
        return NULL;
    }
    return vo_scan_request(opts, dir, NULL, &keys);
}

/* A spare's first request: the database alone, its scan "later", with
 * the largest limits until then (vo_scan_engine_take_later()). */
static GBytes *vo_scan_spare_request(const char *database)
{
    g_autoptr(JsonObject) head = json_object_new();

    json_object_set_string_member(head, "database", database);
    json_object_set_boolean_member(head, "later", TRUE);
    json_object_set_int_member(head, "max-file-size",
                               VO_SCAN_MAX_FILE_SIZE_LIMIT);
    json_object_set_int_member(head, "timeout", VO_SCAN_TIMEOUT_LIMIT_S);
    json_object_set_array_member(head, "paths", json_array_new());
    json_object_set_int_member(head, "keys", 0);
    return vo_scan_blob_head(head);
}

/* @opts's cache (if it holds for @stamp) and the worker's request from
 * them, into @req. */
static void vo_scan_prepare(const VoScanOptions *opts, const char *database,
                            const char *stamp, VoScanCache **cache,
                            GBytes **request, GBytes **keys,
                            VoWorkerRequest *req)
{
    if (opts->cache) {
        *cache = vo_scan_cache_read(opts->cache, stamp);
    }
    *request = vo_scan_request(opts, database, *cache, keys);
    req->image = req->disk = opts->image;
    req->format = opts->format;
    req->request = *request;
    req->request_keys = *keys;
    req->timeout_s = opts->timeout_s + VO_WORKER_SCAN_GRACE_S;
}

typedef struct {
    VoScanOptions opts;         /* the scan's, once awaited */
    const char *database;
    const char *stamp;          /* of the database the worker loaded */
    VoScanCache *cache;
    GBytes *request;
    GBytes *request_keys;
    /* The database changed meanwhile, or the worker ended: the scan runs
     * again with a worker of its own. */
    gboolean again;
} VoScanSpare;

/* VoWorkerRequest.await: the scan's options, its cache and request. */
static gboolean vo_scan_await(gpointer data, VoWorkerRequest *req,
                              GError **error)
{
    VoScanSpare *sp = data;
    g_autofree char *stamp = NULL;

    if (!sp->opts.await(sp->opts.await_data, &sp->opts, error) ||
        !vo_scan_check_options(&sp->opts, error)) {
        return FALSE;
    }
    stamp = vo_scan_database_stamp(sp->database, error);
    if (!stamp) {
        return FALSE;
    }
    if (!g_str_equal(stamp, sp->stamp)) {
        /* Scanned with the database as it is now, by a worker of its
         * own: vo_scan_run() starts it. */
        sp->again = TRUE;
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "the signature database changed since the scan's "
                    "start");
        return FALSE;
    }
    vo_scan_prepare(&sp->opts, sp->database, sp->stamp, &sp->cache,
                    &sp->request, &sp->request_keys, req);
    return TRUE;
}

gboolean vo_scan_run(const VoScanOptions *given, JsonNode **report,
                     VoScanResult *result, GError **error)
{
    g_autofree char *database = NULL;
    g_autofree char *stamp = NULL;
    g_autoptr(VoScanCache) cache = NULL;
    g_autoptr(JsonObject) worker = NULL;
    g_autoptr(JsonObject) out = NULL;
    g_autoptr(GBytes) cached = NULL;
    g_autoptr(GBytes) clean = NULL;
    g_autoptr(GArray) runs = NULL;
    gsize n_keys;
    g_autoptr(GBytes) request = NULL;
    g_autoptr(GBytes) request_keys = NULL;
    g_autoptr(JsonObject) contract = json_object_new();
    VoWorkerRequest req = { .job = VO_WORKER_SCAN };
    VoScanSpare spare = { .opts = *given };
    const VoScanOptions *opts = given;
    g_autoptr(GError) failed = NULL;
    g_autoptr(GList) names = NULL;
    JsonArray *findings, *errors;
    gboolean ran;

    if (!given->await && !vo_scan_check_options(given, error)) {
        return FALSE;
    }
    database = g_canonicalize_filename(given->database, NULL);
    if (!g_file_test(database, G_FILE_TEST_IS_DIR)) {
        g_set_error(error, VO_ERROR, VO_ERROR_NOT_FOUND,
                    "signature database %s is not a directory", database);
        return FALSE;
    }
    stamp = vo_scan_database_stamp(database, error);
    if (!stamp) {
        return FALSE;
    }
    /* Probed while the worker starts: a scan at an image's start waits
     * for both. */
    req.probe = TRUE;
    if (given->await) {
        spare.database = database;
        spare.stamp = stamp;
        req.request = request = vo_scan_spare_request(database);
        req.await = vo_scan_await;
        req.await_data = &spare;
        req.spare_lost = &spare.again;
        ran = vo_worker_run(&req, &worker, &failed);
        opts = &spare.opts;
        cache = g_steal_pointer(&spare.cache);
        g_clear_pointer(&request, g_bytes_unref);
        request = g_steal_pointer(&spare.request);
        request_keys = g_steal_pointer(&spare.request_keys);
        spare.opts.await = NULL;
        if (!ran && !spare.again) {
            g_propagate_error(error, g_steal_pointer(&failed));
            return FALSE;
        }
        if (!ran) {
            /* Its worker had loaded the database as it was, or is gone:
             * the scan runs again with a worker of its own, as without a
             * spare. */
            g_clear_pointer(&worker, json_object_unref);
            return vo_scan_run(&spare.opts, report, result, error);
        }
    } else {
        vo_scan_prepare(opts, database, stamp, &cache, &request,
                        &request_keys, &req);
        if (!vo_worker_run(&req, &worker, error)) {
            return FALSE;
        }
    }
    out = vo_scan_check_report(json_object_get_member(worker, "scan"),
                               cache ? cache->n_keys : 0, &cached, &clean,
                               error);
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
    if (opts->cache) {
        runs = vo_scan_cache_merge(cache,
                                   cache && vo_scan_cache_matches(cache, out),
                                   opts->paths && opts->paths[0], cached,
                                   clean, &n_keys);
        if (!vo_scan_cache_write(opts->cache, stamp, out, runs, n_keys,
                                 error)) {
            return FALSE;
        }
    }
    *report = json_node_init_object(json_node_alloc(), contract);
    return TRUE;
}
