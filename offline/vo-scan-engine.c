/*
 * The scan job's worker half (vo-scan.h): libclamav over the bytes the
 * offline readers return, in the confined worker.
 *
 * The database is the host owner's and is loaded and compiled before the
 * worker confines itself (vo_scan_engine_prepare()): after that no host
 * path is reachable.  Everything the walk meets afterwards was written by
 * the guest: names are escaped before they reach the report, directory
 * cycles and depth are bounded, and a file is handed to the engine from
 * memory (cl_fmap_open_memory()), so the engine's only files are what it
 * unpacks into the worker's own /tmp.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <clamav.h>

#include "vo-dl.h"
#include "vo-quarantine.h"
#include "vo-scan.h"

/*
 * libclamav is loaded by the scan job only, before the worker confines
 * itself (vo_scan_engine_prepare()), not linked: with libcrypto and the
 * rest it brings it would slow every worker's start, and no other job
 * runs its code (docs/performance.md).
 */
#define VO_SCAN_CL_CALLS(X) \
    X(cl_engine_compile) \
    X(cl_engine_get_num) \
    X(cl_engine_new) \
    X(cl_engine_set_clcb_virus_found) \
    X(cl_engine_set_num) \
    X(cl_engine_set_str) \
    X(cl_fmap_close) \
    X(cl_fmap_open_memory) \
    X(cl_init) \
    X(cl_load) \
    X(cl_retver) \
    X(cl_scanmap_callback) \
    X(cl_strerror)

static VO_DL_TABLE(VO_SCAN_CL_CALLS) vo_cl;
static const char *const vo_scan_cl_names[] = VO_DL_NAMES(VO_SCAN_CL_CALLS);
static void *vo_scan_lib;

#define cl_engine_compile (*vo_cl.f.cl_engine_compile)
#define cl_engine_get_num (*vo_cl.f.cl_engine_get_num)
#define cl_engine_new (*vo_cl.f.cl_engine_new)
#define cl_engine_set_clcb_virus_found \
    (*vo_cl.f.cl_engine_set_clcb_virus_found)
#define cl_engine_set_num (*vo_cl.f.cl_engine_set_num)
#define cl_engine_set_str (*vo_cl.f.cl_engine_set_str)
#define cl_fmap_close (*vo_cl.f.cl_fmap_close)
#define cl_fmap_open_memory (*vo_cl.f.cl_fmap_open_memory)
#define cl_init (*vo_cl.f.cl_init)
#define cl_load (*vo_cl.f.cl_load)
#define cl_retver (*vo_cl.f.cl_retver)
#define cl_scanmap_callback (*vo_cl.f.cl_scanmap_callback)
#define cl_strerror (*vo_cl.f.cl_strerror)

/* The first descriptor the worker did not get from its parent: a scan's
 * four after the standard three, then the sandbox's status channel. */
#define VO_SCAN_FIRST_FREE_FD   8

typedef struct {
    struct cl_engine *engine;
    char *engine_name;
    guint64 db_version;         /* 0: no official database */
    guint signatures;
    guint64 max_file_size;
    guint timeout_s;
    char **paths;
    /* A spare's: the scan's request comes once the disk is served
     * (vo_scan_engine_take_later()), with the image's name. */
    gboolean later;
    char *image;
    /* The cache: the keys the request gave (in @request); when this
     * engine and database made them, their indices in the keys' byte
     * order (@n_order of them, else none); and which of them the walk
     * met (a bitmap, for the report). */
    const guint8 *request;          /* mapped */
    const VoScanKey *given;
    gsize n_given;
    guint32 *order;
    gsize n_order;
    guint8 *met;

    /* While scanning. */
    VoGuest *guest;
    gint64 deadline;
    gboolean timed_out;
    guint64 files_scanned;
    guint64 files_cached;
    guint64 bytes_scanned;
    GPtrArray *findings;        /* JsonNode* */
    GPtrArray *errors;          /* JsonNode* */
    guint errors_dropped;
    guint findings_dropped;
    GArray *clean;              /* VoScanKey of files found clean now */
    GHashTable *seen;           /* VoScanSeen of files scanned */
    /* The file being scanned: its matches, from the callback. */
    GPtrArray *matches;
    /* A quarantine's: each infected file once (VoQuarantineHit*). */
    GPtrArray *hits;
} VoScanEngine;

static VoScanEngine vo_scan;

static void vo_scan_on_match(int fd, const char *virname, void *context)
{
    VoScanEngine *s = context;

    /* A match may be told once per layer it is found in. */
    if (virname && s->matches->len < 64 &&
        !g_ptr_array_find_with_equal_func(s->matches, virname, g_str_equal,
                                          NULL)) {
        g_ptr_array_add(s->matches, g_strdup(virname));
    }
}

static const char *vo_scan_member_str(JsonObject *o, const char *name)
{
    JsonNode *n = json_object_get_member(o, name);

    return n && json_node_get_value_type(n) == G_TYPE_STRING
               ? json_node_get_string(n) : NULL;
}

static gint64 vo_scan_member_int(JsonObject *o, const char *name)
{
    JsonNode *n = json_object_get_member(o, name);

    return n && json_node_get_value_type(n) == G_TYPE_INT64
               ? json_node_get_int(n) : -1;
}

/* The request is the parent's: read in full, types still checked. */
static JsonObject *vo_scan_read_request(VoScanEngine *s, int fd,
                                        GError **error)
{
    struct stat st;
    void *data;

    if (fstat(fd, &st) < 0 || st.st_size <= 0 ||
        st.st_size > VO_SCAN_MAX_CACHE_BYTES * 2) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "no scan request was given");
        return NULL;
    }
    /* Mapped whole, not read into fresh memory page fault by page fault:
     * the parent sealed it against any change (vo-worker.c).  It stays
     * mapped while the worker lives. */
    data = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd,
                0);
    if (data == MAP_FAILED) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "cannot map the scan request: %s", g_strerror(errno));
        return NULL;
    }
    s->request = data;
    return vo_scan_blob_split(s->request, st.st_size, &s->given, &s->n_given,
                              error);
}

/*
 * Cache keys are compared whole (a key is the file unchanged or nothing)
 * and found by binary search, not hashed: the guest chooses their fields,
 * and could make every key of a hash fall in one bucket.  The inode's
 * number first: the filesystem's id, which every key of one filesystem
 * shares, would otherwise be compared at every step.
 */
static int vo_scan_key_cmp(const VoScanKey *a, const VoScanKey *b)
{
    if (a->node != b->node) {
        return a->node < b->node ? -1 : 1;
    }
    return memcmp(a, b, sizeof(*a));
}

static gint vo_scan_order_cmp(gconstpointer a, gconstpointer b,
                              gpointer keys)
{
    const VoScanKey *k = keys;

    return vo_scan_key_cmp(&k[*(const guint32 *)a], &k[*(const guint32 *)b]);
}

/* The index of @key among the given keys, or -1. */
static gssize vo_scan_find_key(VoScanEngine *s, const VoScanKey *key)
{
    gsize lo = 0, hi = s->n_order;

    while (lo < hi) {
        gsize mid = lo + (hi - lo) / 2;
        int c = vo_scan_key_cmp(key, &s->given[s->order[mid]]);

        if (c == 0) {
            return s->order[mid];
        }
        if (c < 0) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    return -1;
}

/* The cache's keys, when it was made by this engine and database. */
static void vo_scan_take_cache(VoScanEngine *s, JsonObject *req)
{
    JsonNode *node = json_object_get_member(req, "cache");
    JsonObject *cache;

    s->met = g_malloc0((s->n_given + 7) / 8);
    if (!node || !JSON_NODE_HOLDS_OBJECT(node) ||
        s->n_given > VO_SCAN_MAX_CLEAN) {
        return;
    }
    cache = json_node_get_object(node);
    if (g_strcmp0(vo_scan_member_str(cache, "engine"), s->engine_name) ||
        vo_scan_member_int(cache, "database-version") !=
            (gint64)s->db_version ||
        vo_scan_member_int(cache, "signatures") != (gint64)s->signatures) {
        return;
    }
    s->order = g_new(guint32, s->n_given);
    for (gsize i = 0; i < s->n_given; i++) {
        s->order[i] = i;
    }
    g_qsort_with_data(s->order, s->n_given, sizeof(*s->order),
                      vo_scan_order_cmp, (gpointer)s->given);
    s->n_order = s->n_given;
}

/*
 * Nothing of the host may stay open into the confinement: libclamav
 * reads the database through descriptors of its own, and one left open
 * would be a way out of the empty root.
 */
static gboolean vo_scan_no_stray_fds(int first_free, GError **error)
{
    struct pollfd fds[1024];
    struct rlimit rl;
    int first = MAX(first_free, VO_SCAN_FIRST_FREE_FD);
    int end = 1024;
    int n;

    /* poll() takes no more than RLIMIT_NOFILE descriptors, and none can
     * be open at or above it. */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)end) {
        end = rl.rlim_cur;
    }
    n = MAX(end - first, 0);

    /* One poll() says for every descriptor whether it is open (anything
     * but POLLNVAL), where asking each with fcntl() took a thousand
     * system calls. */
    for (int i = 0; i < n; i++) {
        fds[i].fd = first + i;
        fds[i].events = 0;
        fds[i].revents = 0;
    }
    if (poll(fds, n, 0) < 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "cannot check the descriptors libclamav left: %s",
                    g_strerror(errno));
        return FALSE;
    }
    for (int i = 0; i < n; i++) {
        if (!(fds[i].revents & POLLNVAL)) {
            g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                        "libclamav left descriptor %d open after loading "
                        "the database", fds[i].fd);
            return FALSE;
        }
    }
    return TRUE;
}

static gboolean vo_scan_cl_fail(cl_error_t rc, const char *what,
                                GError **error)
{
    g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "libclamav: %s: %s", what,
                cl_strerror(rc));
    return FALSE;
}

guint vo_scan_engine_timeout_s(void)
{
    return vo_scan.timeout_s ? vo_scan.timeout_s : VO_SCAN_TIMEOUT_S;
}

/*
 * The scan's own options from a request's head: its limits and guest
 * paths.  A request whose scan is to come later (a spare's) names the
 * largest limits; the later one sets the scan's.
 */
static gboolean vo_scan_take_options(VoScanEngine *s, JsonObject *req,
                                     GError **error)
{
    gint64 size = vo_scan_member_int(req, "max-file-size");
    gint64 timeout = vo_scan_member_int(req, "timeout");
    JsonNode *paths = json_object_get_member(req, "paths");

    if (size <= 0 || timeout <= 0 || timeout > G_MAXUINT) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "bad scan request");
        return FALSE;
    }
    s->max_file_size = size;
    s->timeout_s = timeout;
    g_clear_pointer(&s->paths, g_strfreev);
    if (paths && JSON_NODE_HOLDS_ARRAY(paths)) {
        JsonArray *a = json_node_get_array(paths);
        guint len = json_array_get_length(a);

        s->paths = g_new0(char *, len + 1);
        for (guint i = 0; i < len; i++) {
            s->paths[i] = g_strdup(json_array_get_string_element(a, i));
        }
    }
    return TRUE;
}

/* What one file may cost; beyond, the engine says
 * Heuristics.Limits.Exceeded and the scan is incomplete.  libclamav reads
 * these at each file, so a compiled engine takes them too. */
static cl_error_t vo_scan_set_limits(VoScanEngine *s)
{
    cl_error_t rc;

    if ((rc = cl_engine_set_num(s->engine, CL_ENGINE_MAX_FILESIZE,
                                s->max_file_size)) ||
        (rc = cl_engine_set_num(s->engine, CL_ENGINE_MAX_SCANSIZE,
                                MAX(VO_SCAN_MAX_SCAN_SIZE,
                                    s->max_file_size))) ||
        (rc = cl_engine_set_num(s->engine, CL_ENGINE_MAX_SCANTIME,
                                MIN((gint64)VO_SCAN_MAX_SCAN_TIME_MS,
                                    (gint64)s->timeout_s * 1000)))) {
        return rc;
    }
    return CL_SUCCESS;
}

gboolean vo_scan_engine_prepare(int request_fd, int first_free,
                                GError **error)
{
    VoScanEngine *s = &vo_scan;
    g_autoptr(JsonObject) req = vo_scan_read_request(s, request_fd, error);
    const char *database;
    unsigned int sigs = 0;
    gint64 n;
    cl_error_t rc;
    int err = 0;

    if (!req) {
        return FALSE;
    }
    database = vo_scan_member_str(req, "database");
    if (!database) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "bad scan request");
        return FALSE;
    }
    if (!vo_scan_take_options(s, req, error)) {
        return FALSE;
    }
    s->later = json_object_has_member(req, "later");

    if (!vo_dl_load(&vo_scan_lib, VO_SCAN_CLAMAV_SONAME, vo_scan_cl_names,
                    vo_cl.sym, "scan needs libclamav (Debian: libclamav12)",
                    error)) {
        return FALSE;
    }
    rc = cl_init(CL_INIT_DEFAULT);
    if (rc != CL_SUCCESS) {
        return vo_scan_cl_fail(rc, "init", error);
    }
    s->engine = cl_engine_new();
    if (!s->engine) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "libclamav: cannot make an engine");
        return FALSE;
    }
    if ((rc = vo_scan_set_limits(s)) ||
        (rc = cl_engine_set_num(s->engine, CL_ENGINE_MAX_RECURSION,
                                VO_SCAN_MAX_RECURSION)) ||
        (rc = cl_engine_set_num(s->engine, CL_ENGINE_MAX_FILES,
                                VO_SCAN_MAX_FILES)) ||
        /* What it unpacks goes to the worker's private tmpfs, the only
         * writable place it has. */
        (rc = cl_engine_set_str(s->engine, CL_ENGINE_TMPDIR, "/tmp")) ||
        /* Bytecode signatures interpreted: a JIT would need executable
         * memory, which the filter forbids. */
        (rc = cl_engine_set_num(s->engine, CL_ENGINE_BYTECODE_MODE,
                                CL_BYTECODE_MODE_INTERPRETER)) ||
        /* No clean-file cache: its tables (about 4 MiB, zeroed in
         * cl_load()) cost every scan 10 to 20 ms of CPU before the first
         * file, to skip content seen earlier in the same worker; the
         * scan cache (vo-scan.h) already skips what is unchanged
         * between scans (docs/performance.md). */
        (rc = cl_engine_set_num(s->engine, CL_ENGINE_DISABLE_CACHE, 1))) {
        return vo_scan_cl_fail(rc, "limits", error);
    }
    rc = cl_load(database, s->engine, &sigs, CL_DB_STDOPT);
    if (rc != CL_SUCCESS) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "cannot load the signature database %s: %s%s", database,
                    cl_strerror(rc),
                    rc == CL_ESTAT || rc == CL_EOPEN || rc == CL_EACCES
                        ? " (the worker reads it under an id of its own: "
                          "the directory and its files must be readable by "
                          "everyone, as freshclam leaves them)"
                        : "");
        return FALSE;
    }
    if (sigs == 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "the signature database %s holds no signature",
                    database);
        return FALSE;
    }
    rc = cl_engine_compile(s->engine);
    if (rc != CL_SUCCESS) {
        return vo_scan_cl_fail(rc, "compile the database", error);
    }
    s->signatures = sigs;
    n = cl_engine_get_num(s->engine, CL_ENGINE_DB_VERSION, &err);
    s->db_version = err == CL_SUCCESS && n > 0 ? n : 0;
    s->engine_name = g_strdup_printf("ClamAV %s", cl_retver());
    cl_engine_set_clcb_virus_found(s->engine, vo_scan_on_match);
    if (!s->later) {
        vo_scan_take_cache(s, req);
    }
    return vo_scan_no_stray_fds(first_free, error);
}

gboolean vo_scan_engine_later(void)
{
    return vo_scan.later;
}

/*
 * A spare's scan: the parent wrote the request into @fd (empty at our
 * start) and sealed it before it started the disk's server, so it is
 * whole by the time the disk is connected.  Unsealed, it could still be
 * changing: refused.
 */
const char *vo_scan_engine_take_later(int fd, GError **error)
{
    VoScanEngine *s = &vo_scan;
    const int seals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE;
    g_autoptr(JsonObject) req = NULL;
    const char *image;
    int have = fcntl(fd, F_GET_SEALS);
    cl_error_t rc;

    if (have < 0 || (have & seals) != seals) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "the scan request was not sealed");
        return NULL;
    }
    req = vo_scan_read_request(s, fd, error);
    if (!req || !vo_scan_take_options(s, req, error)) {
        return NULL;
    }
    image = vo_scan_member_str(req, "image");
    if (!image || !*image) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "bad scan request");
        return NULL;
    }
    if (s->engine && (rc = vo_scan_set_limits(s)) != CL_SUCCESS) {
        vo_scan_cl_fail(rc, "limits", error);
        return NULL;
    }
    vo_scan_take_cache(s, req);
    s->later = FALSE;
    s->image = g_strdup(image);
    return s->image;
}

/* ---- The walk ---- */

/*
 * A name as the report shows it: valid UTF-8 without control characters;
 * anything else (and the backslash that introduces an escape) as \xNN,
 * so that no file escapes the scan and no name the terminal.
 */
static void vo_scan_append_name(GString *out, const char *name)
{
    const char *p = name;

    while (*p) {
        const char *end;
        gunichar c;

        if (!g_utf8_validate(p, -1, &end) && end == p) {
            g_string_append_printf(out, "\\x%02x", (guint8)*p);
            p++;
            continue;
        }
        c = g_utf8_get_char(p);
        if (c == '\\' || g_unichar_iscntrl(c)) {
            for (const char *q = p; q < g_utf8_next_char(p); q++) {
                g_string_append_printf(out, "\\x%02x", (guint8)*q);
            }
        } else {
            g_string_append_len(out, p, g_utf8_next_char(p) - p);
        }
        p = g_utf8_next_char(p);
    }
}

/* Where a walk stands: the filesystem, how it is named in reports. */
typedef struct {
    VoFs *fs;
    VoMount *mount;
    char *label;                /* "/", "/boot", "C:", "D:" */
    gboolean windows;
    GHashTable *dirs_seen;      /* directory nodes entered */
    /* VoScanKey.fs of this filesystem; FALSE: it has no UUID, nothing
     * in it is cached. */
    gboolean keyed;
    guint8 fs_id[16];
} VoScanWalk;

/* A file scanned: its filesystem and node, met once whatever its links. */
typedef struct {
    VoFs *fs;
    guint64 node;
} VoScanSeen;

static guint vo_scan_seen_hash(gconstpointer p)
{
    const VoScanSeen *k = p;

    return g_direct_hash(k->fs) ^
           (guint)(k->node * 0x9e3779b97f4a7c15ull >> 32);
}

static gboolean vo_scan_seen_equal(gconstpointer a, gconstpointer b)
{
    const VoScanSeen *x = a, *y = b;

    return x->fs == y->fs && x->node == y->node;
}

static gboolean vo_scan_full(GPtrArray *list, guint max, guint *dropped)
{
    if (list->len >= max) {
        (*dropped)++;
        return TRUE;
    }
    return FALSE;
}

static void vo_scan_error(VoScanEngine *s, const char *path,
                          const char *reason)
{
    g_autoptr(JsonBuilder) b = NULL;
    g_autofree char *text = NULL;
    GString *r;

    if (vo_scan_full(s->errors, VO_SCAN_MAX_ERRORS, &s->errors_dropped)) {
        return;
    }
    /* The reason may quote the guest (a reader's message). */
    r = g_string_new(NULL);
    vo_scan_append_name(r, reason);
    if (r->len > VO_SCAN_MAX_REASON) {
        g_string_truncate(r, g_utf8_find_prev_char(
                                 r->str, r->str + VO_SCAN_MAX_REASON) -
                                 r->str);
    }
    text = g_string_free(r, FALSE);
    b = json_builder_new();
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "path");
    json_builder_add_string_value(b, path);
    json_builder_set_member_name(b, "reason");
    json_builder_add_string_value(b, text);
    json_builder_end_object(b);
    g_ptr_array_add(s->errors, json_builder_get_root(b));
}

static void vo_scan_finding(VoScanEngine *s, VoScanWalk *w, const char *path,
                            const char *signature)
{
    g_autoptr(JsonBuilder) b = NULL;
    g_autoptr(GString) sig = g_string_new(NULL);

    if (vo_scan_full(s->findings, VO_SCAN_MAX_FINDINGS,
                     &s->findings_dropped)) {
        return;
    }
    vo_scan_append_name(sig, signature);
    b = json_builder_new();
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "filesystem");
    json_builder_add_string_value(b, w->label);
    json_builder_set_member_name(b, "path");
    json_builder_add_string_value(b, path);
    json_builder_set_member_name(b, "signature");
    json_builder_add_string_value(b, sig->str);
    json_builder_end_object(b);
    g_ptr_array_add(s->findings, json_builder_get_root(b));
}

/* The guest path of @comps below the walk's filesystem, as shown. */
static char *vo_scan_display(VoScanWalk *w, GPtrArray *comps)
{
    GString *out = g_string_new(NULL);
    const char *mp = w->mount ? w->mount->mountpoint : "/";

    if (w->windows) {
        g_string_append(out, w->label);
        for (guint i = 0; i < comps->len; i++) {
            g_string_append_c(out, '\\');
            vo_scan_append_name(out, comps->pdata[i]);
        }
        if (comps->len == 0) {
            g_string_append_c(out, '\\');
        }
    } else {
        g_string_append(out, g_str_equal(mp, "/") ? "" : mp);
        for (guint i = 0; i < comps->len; i++) {
            g_string_append_c(out, '/');
            vo_scan_append_name(out, comps->pdata[i]);
        }
        if (out->len == 0) {
            g_string_append_c(out, '/');
        }
    }
    if (out->len > VO_SCAN_MAX_PATH_TEXT) {
        /* Deep enough to be cut: the start still says where. */
        g_string_truncate(out, g_utf8_find_prev_char(
                                   out->str,
                                   out->str + VO_SCAN_MAX_PATH_TEXT - 3) -
                                   out->str);
        g_string_append(out, "...");
    }
    return g_string_free(out, FALSE);
}

/* The guest path of @comps as vo_guest_resolve() takes it: the bytes of
 * the names, not their escaped display. */
static char *vo_scan_guest_path(VoScanWalk *w, GPtrArray *comps)
{
    GString *out = g_string_new(NULL);
    const char *mp = w->mount ? w->mount->mountpoint : "/";

    g_string_append(out, g_str_equal(mp, "/") ? "" : mp);
    for (guint i = 0; i < comps->len; i++) {
        g_string_append_c(out, '/');
        g_string_append(out, comps->pdata[i]);
    }
    return g_string_free(out, FALSE);
}

/* What identifies the file unchanged (docs/offline.rst, "The cache"). */
static void vo_scan_key(VoScanWalk *w, guint64 node, const VoStat *st,
                        VoScanKey *k)
{
    memcpy(k->fs, w->fs_id, sizeof(k->fs));
    k->node = node;
    k->generation = st->generation;
    k->size = st->size;
    k->mtime_ns = st->mtime_ns;
    k->ctime_ns = st->ctime_ns;
}

static gboolean vo_scan_past_deadline(VoScanEngine *s, const char *path)
{
    if (s->timed_out) {
        return TRUE;
    }
    if (g_get_monotonic_time() < s->deadline) {
        return FALSE;
    }
    s->timed_out = TRUE;
    vo_scan_error(s, path, "the scan's time ran out (--timeout); this and "
                  "later files were not scanned");
    return TRUE;
}

static void vo_scan_file(VoScanEngine *s, VoScanWalk *w, GPtrArray *comps,
                         guint64 node, const VoStat *st)
{
    /* Made only for a file scanned: a cached one costs a lookup. */
    g_autofree char *path = NULL;
    VoScanSeen *seen = g_new(VoScanSeen, 1);
    VoScanKey key;
    gssize index;
    g_autoptr(GBytes) data = NULL;
    g_autoptr(GError) local = NULL;
    struct cl_scan_options options = { 0 };
    const char *virname = NULL;
    unsigned long scanned = 0;
    gboolean limited = FALSE;
    gboolean found = FALSE;
    cl_fmap_t *map;
    cl_error_t rc;
    gsize len;
    const void *bytes;

    /* A hard link: one inode, scanned once. */
    seen->fs = w->fs;
    seen->node = node;
    if (!g_hash_table_add(s->seen, seen)) {
        return;
    }
    if (w->keyed) {
        vo_scan_key(w, node, st, &key);
    }
    if (w->keyed && s->n_order && (index = vo_scan_find_key(s, &key)) >= 0) {
        /* Even past the deadline: what is known clean stays known. */
        s->met[index / 8] |= 1 << (index % 8);
        s->files_cached++;
        return;
    }
    path = vo_scan_display(w, comps);
    if (vo_scan_past_deadline(s, path)) {
        return;
    }
    if (st->size > s->max_file_size) {
        g_autofree char *why = g_strdup_printf(
            "not scanned: %" G_GUINT64_FORMAT " bytes, larger than "
            "--max-file-size", st->size);

        vo_scan_error(s, path, why);
        return;
    }
    data = w->fs->ops->read(w->fs, node, &local);
    if (!data) {
        vo_scan_error(s, path, local->message);
        return;
    }
    bytes = g_bytes_get_data(data, &len);
    map = cl_fmap_open_memory(bytes, len);
    if (!map) {
        vo_scan_error(s, path, "libclamav cannot map the file");
        return;
    }
    options.general = CL_SCAN_GENERAL_ALLMATCHES | CL_SCAN_GENERAL_HEURISTICS;
    options.parse = ~0u;
    /* A limit reached is said, not silently skipped. */
    options.heuristic = CL_SCAN_HEURISTIC_EXCEEDS_MAX;
    g_ptr_array_set_size(s->matches, 0);
    rc = cl_scanmap_callback(map, NULL, &virname, &scanned, s->engine,
                             &options, s);
    cl_fmap_close(map);
    s->files_scanned++;
    s->bytes_scanned += len;
    if (rc == CL_VIRUS && s->matches->len == 0 && virname) {
        g_ptr_array_add(s->matches, g_strdup(virname));
    }
    for (guint i = 0; i < s->matches->len; i++) {
        const char *name = s->matches->pdata[i];

        if (g_str_has_prefix(name, "Heuristics.Limits.Exceeded")) {
            g_autofree char *why = g_strdup_printf(
                "not fully scanned: a limit was reached (%s)", name);

            vo_scan_error(s, path, why);
            limited = TRUE;
        } else {
            vo_scan_finding(s, w, path, name);
            if (s->hits && !found) {
                g_autofree char *raw = vo_scan_guest_path(w, comps);
                g_autoptr(GString) sig = g_string_new(NULL);

                vo_scan_append_name(sig, name);
                g_ptr_array_add(s->hits,
                                vo_quarantine_hit_new(raw, path, sig->str));
            }
            found = TRUE;
        }
    }
    if (rc != CL_CLEAN && rc != CL_VIRUS) {
        g_autofree char *why = g_strdup_printf("not fully scanned: %s",
                                               cl_strerror(rc));

        vo_scan_error(s, path, why);
        limited = TRUE;
    }
    /* A quarantine keeps no cache. */
    if (!found && !limited && w->keyed && !s->hits &&
        s->clean->len < VO_SCAN_MAX_CLEAN) {
        g_array_append_val(s->clean, key);
    }
}

/* What a directory's entry is, read before the entries are walked. */
typedef struct {
    VoStat st;
    GError *error;
} VoScanEntryStat;

static gint vo_scan_node_cmp(gconstpointer a, gconstpointer b,
                             gpointer entries)
{
    GPtrArray *e = entries;
    guint64 na = ((VoDirEntry *)e->pdata[*(const guint *)a])->node;
    guint64 nb = ((VoDirEntry *)e->pdata[*(const guint *)b])->node;

    return na < nb ? -1 : na > nb;
}

/*
 * Every entry's inode, read in the order of the inodes' numbers: names
 * come in hash order (an indexed ext4 directory), and ext2fs keeps one
 * block of inodes, so reading them in the names' order read a block for
 * nearly every file (docs/performance.md, "The walk").
 */
static VoScanEntryStat *vo_scan_stat_entries(VoScanWalk *w,
                                             GPtrArray *entries)
{
    VoScanEntryStat *sts = g_new0(VoScanEntryStat, entries->len);
    g_autofree guint *by_node = g_new(guint, entries->len);

    for (guint i = 0; i < entries->len; i++) {
        by_node[i] = i;
    }
    g_qsort_with_data(by_node, entries->len, sizeof(*by_node),
                      vo_scan_node_cmp, entries);
    for (guint i = 0; i < entries->len; i++) {
        VoDirEntry *e = entries->pdata[by_node[i]];
        VoScanEntryStat *es = &sts[by_node[i]];

        w->fs->ops->stat(w->fs, e->node, &es->st, &es->error);
    }
    return sts;
}

static void vo_scan_entry_stats_free(VoScanEntryStat *sts, guint n)
{
    for (guint i = 0; i < n; i++) {
        g_clear_error(&sts[i].error);
    }
    g_free(sts);
}

/* Depth first, one directory listed at a time. */
static void vo_scan_walk(VoScanEngine *s, VoScanWalk *w, GPtrArray *comps,
                         guint64 dir)
{
    g_autoptr(GPtrArray) entries = NULL;
    g_autoptr(GError) local = NULL;
    VoScanEntryStat *sts;

    if (comps->len >= VO_SCAN_MAX_DEPTH ||
        !g_hash_table_add(w->dirs_seen, GSIZE_TO_POINTER(dir + 1))) {
        g_autofree char *path = vo_scan_display(w, comps);

        /* A directory met twice is a cycle only a corrupt (or crafted)
         * filesystem has. */
        vo_scan_error(s, path, comps->len >= VO_SCAN_MAX_DEPTH
                                   ? "directories nested too deep"
                                   : "a directory cycle");
        return;
    }
    entries = w->fs->ops->list(w->fs, dir, VO_SCAN_MAX_DIR_ENTRIES, &local);
    if (!entries) {
        g_autofree char *path = vo_scan_display(w, comps);

        vo_scan_error(s, path, local->message);
        return;
    }
    sts = vo_scan_stat_entries(w, entries);
    for (guint i = 0; i < entries->len && !s->timed_out; i++) {
        VoDirEntry *e = entries->pdata[i];
        const VoStat *st = &sts[i].st;

        g_ptr_array_add(comps, g_strdup(e->name));
        if (sts[i].error) {
            g_autofree char *path = vo_scan_display(w, comps);

            vo_scan_error(s, path, sts[i].error->message);
        } else if (st->type == VO_NODE_DIRECTORY) {
            vo_scan_walk(s, w, comps, e->node);
        } else if (st->type == VO_NODE_REGULAR) {
            vo_scan_file(s, w, comps, e->node, st);
        }
        /* Links are not followed: what they name is scanned where it
         * is.  Devices, sockets and FIFOs have no contents. */
        g_ptr_array_set_size(comps, comps->len - 1);
    }
    vo_scan_entry_stats_free(sts, entries->len);
}

static void vo_scan_walk_clear(VoScanWalk *w)
{
    g_free(w->label);
    g_clear_pointer(&w->dirs_seen, g_hash_table_unref);
}

static void vo_scan_walk_init(VoScanEngine *s, VoScanWalk *w, VoMount *m)
{
    w->fs = m->fs;
    w->mount = m;
    w->windows = g_strcmp0(s->guest->family, "windows") == 0;
    if (w->windows) {
        w->label = g_strdup_printf("%c:", g_str_equal(m->mountpoint, "/")
                                              ? 'C'
                                              : m->mountpoint[2]);
    } else {
        w->label = g_strdup(m->mountpoint);
    }
    w->dirs_seen = g_hash_table_new(g_direct_hash, g_direct_equal);
    if (m->part && m->part->fs_uuid && strlen(m->part->fs_uuid) <= 64) {
        g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
        g_autofree char *id = g_strdup_printf("%s@%" G_GUINT64_FORMAT,
                                              m->part->fs_uuid,
                                              m->part->offset);
        guint8 digest[32];
        gsize len = sizeof(digest);

        g_checksum_update(sum, (const guchar *)id, strlen(id));
        g_checksum_get_digest(sum, digest, &len);
        memcpy(w->fs_id, digest, sizeof(w->fs_id));
        w->keyed = TRUE;
    }
}

/* The components of guest path @path below mount point @mp. */
static GPtrArray *vo_scan_components(const char *mp, const char *path)
{
    GPtrArray *comps = g_ptr_array_new_with_free_func(g_free);
    const char *rest = path + (g_str_equal(mp, "/") ? 0 : strlen(mp));
    g_auto(GStrv) parts = g_strsplit(rest, "/", -1);

    for (guint i = 0; parts[i]; i++) {
        if (*parts[i]) {
            g_ptr_array_add(comps, g_strdup(parts[i]));
        }
    }
    return comps;
}

static void vo_scan_mount(VoScanEngine *s, VoMount *m)
{
    VoScanWalk w = { 0 };
    g_autoptr(GPtrArray) comps = g_ptr_array_new_with_free_func(g_free);

    vo_scan_walk_init(s, &w, m);
    if (!m->fs || !m->fs->ops->list) {
        g_autofree char *why = g_strdup_printf(
            "filesystem not scanned: %s",
            m->problem ? m->problem : "this reader cannot list it");

        vo_scan_error(s, w.label, why);
    } else {
        vo_scan_walk(s, &w, comps, m->fs->root);
    }
    vo_scan_walk_clear(&w);
}

/* Whether mount point @mp lies within @path (both normalized). */
static gboolean vo_scan_within(VoScanEngine *s, const char *mp,
                               const char *path)
{
    gsize n = strlen(path);

    if (g_str_equal(mp, path)) {
        return TRUE;
    }
    /* Another drive is not below C:\. */
    if (g_strcmp0(s->guest->family, "windows") == 0 && mp[1] == ':') {
        return FALSE;
    }
    if (g_str_equal(path, "/")) {
        return TRUE;
    }
    return g_str_has_prefix(mp, path) && mp[n] == '/';
}

/* One --path: the mounts within it whole, and the part of the mount it
 * lies in. */
static void vo_scan_path(VoScanEngine *s, const char *given)
{
    g_autofree char *path = vo_guest_normalize_path(given);
    g_auto(VoPath) vp = { 0 };
    g_autoptr(GError) local = NULL;
    VoMount *owner = NULL;

    while (strlen(path) > 1 && g_str_has_suffix(path, "/")) {
        path[strlen(path) - 1] = '\0';
    }
    for (guint i = 0; i < s->guest->mounts->len; i++) {
        VoMount *m = s->guest->mounts->pdata[i];

        if (vo_scan_within(s, m->mountpoint, path)) {
            vo_scan_mount(s, m);
        }
    }
    if (vo_guest_mount_at(s->guest, path)) {
        return;
    }
    if (!vo_guest_resolve(s->guest, path, TRUE, &vp, &local)) {
        vo_scan_error(s, given, local->message);
        return;
    }
    if (!vp.exists) {
        vo_scan_error(s, given, "no such file or directory in the guest");
        return;
    }
    for (guint i = 0; i < s->guest->mounts->len && !owner; i++) {
        VoMount *m = s->guest->mounts->pdata[i];

        if (m->fs == vp.fs) {
            owner = m;
        }
    }
    if (owner) {
        VoScanWalk w = { 0 };
        g_autoptr(GPtrArray) comps = vo_scan_components(
            owner->mountpoint, vp.resolved ? vp.resolved : path);

        vo_scan_walk_init(s, &w, owner);
        if (vp.st.type == VO_NODE_DIRECTORY && vp.fs->ops->list) {
            vo_scan_walk(s, &w, comps, vp.node);
        } else if (vp.st.type == VO_NODE_REGULAR) {
            VoStat st = { 0 };

            /* The walk's own stat: the cache keys on all of it. */
            if (vp.fs->ops->stat(vp.fs, vp.node, &st, &local)) {
                vo_scan_file(s, &w, comps, vp.node, &st);
            } else {
                vo_scan_error(s, given, local->message);
            }
        } else {
            vo_scan_error(s, given, "neither a directory nor a file");
        }
        vo_scan_walk_clear(&w);
    }
}

static void vo_scan_add_array(JsonBuilder *b, const char *name,
                              GPtrArray *nodes)
{
    json_builder_set_member_name(b, name);
    json_builder_begin_array(b);
    for (guint i = 0; i < nodes->len; i++) {
        json_builder_add_value(b, json_node_copy(nodes->pdata[i]));
    }
    json_builder_end_array(b);
}

static gboolean vo_scan_engine_report(VoGuest *guest, JsonBuilder *b,
                                      const char *member, GError **error)
{
    VoScanEngine *s = &vo_scan;
    g_autofree char *cached = NULL;
    g_autofree char *clean = NULL;

    if (!s->engine) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "no engine");
        return FALSE;
    }
    s->guest = guest;
    s->deadline = g_get_monotonic_time() +
                  (gint64)s->timeout_s * G_USEC_PER_SEC;
    s->findings = g_ptr_array_new_with_free_func(
        (GDestroyNotify)json_node_unref);
    s->errors = g_ptr_array_new_with_free_func(
        (GDestroyNotify)json_node_unref);
    s->clean = g_array_new(FALSE, FALSE, sizeof(VoScanKey));
    s->seen = g_hash_table_new_full(vo_scan_seen_hash, vo_scan_seen_equal,
                                    g_free, NULL);
    s->matches = g_ptr_array_new_with_free_func(g_free);

    if (s->paths && s->paths[0]) {
        for (guint i = 0; s->paths[i] && !s->timed_out; i++) {
            vo_scan_path(s, s->paths[i]);
        }
    } else {
        for (guint i = 0; i < guest->mounts->len && !s->timed_out; i++) {
            vo_scan_mount(s, guest->mounts->pdata[i]);
        }
    }
    if (s->errors_dropped) {
        g_autofree char *why = g_strdup_printf("%u more errors not listed",
                                               s->errors_dropped);

        s->errors_dropped = 0;
        g_ptr_array_set_size(s->errors, VO_SCAN_MAX_ERRORS - 1);
        vo_scan_error(s, "", why);
    }
    if (s->findings_dropped) {
        g_autofree char *why = g_strdup_printf(
            "%u more findings not listed", s->findings_dropped);

        g_ptr_array_set_size(s->errors,
                             MIN(s->errors->len, VO_SCAN_MAX_ERRORS - 1));
        vo_scan_error(s, "", why);
    }

    json_builder_set_member_name(b, member);
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "engine");
    json_builder_add_string_value(b, s->engine_name);
    json_builder_set_member_name(b, "database");
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "version");
    if (s->db_version) {
        json_builder_add_int_value(b, s->db_version);
    } else {
        json_builder_add_null_value(b);
    }
    json_builder_set_member_name(b, "signatures");
    json_builder_add_int_value(b, s->signatures);
    json_builder_end_object(b);
    json_builder_set_member_name(b, "files-scanned");
    json_builder_add_int_value(b, s->files_scanned);
    json_builder_set_member_name(b, "files-cached");
    json_builder_add_int_value(b, s->files_cached);
    json_builder_set_member_name(b, "bytes-scanned");
    json_builder_add_int_value(b, s->bytes_scanned);
    vo_scan_add_array(b, "findings", s->findings);
    vo_scan_add_array(b, "errors", s->errors);
    /* The cache's part, as base64 (docs/offline.rst, "The worker's
     * report"): which given keys were met, the keys of files clean now. */
    cached = g_base64_encode(s->met, (s->n_given + 7) / 8);
    json_builder_set_member_name(b, "cached");
    json_builder_add_string_value(b, cached);
    clean = g_base64_encode((const guchar *)s->clean->data,
                            s->clean->len * sizeof(VoScanKey));
    json_builder_set_member_name(b, "clean");
    json_builder_add_string_value(b, clean);
    json_builder_end_object(b);
    return TRUE;
}

gboolean vo_scan_engine_run(VoGuest *guest, JsonBuilder *b, GError **error)
{
    return vo_scan_engine_report(guest, b, "scan", error);
}

gboolean vo_scan_engine_loaded(void)
{
    return vo_scan.engine != NULL;
}

gboolean vo_scan_engine_quarantine(VoGuest *guest, GPtrArray *hits,
                                   JsonBuilder *b, GError **error)
{
    vo_scan.hits = hits;
    return vo_scan_engine_report(guest, b, "quarantine", error);
}
