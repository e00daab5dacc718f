/*
 * The scan job: ClamAV over a guest's own files, read through the offline
 * readers in the confined worker (vo-worker.h), never by mounting.
 *
 * The parent (vo-scan.c) hands the worker its request as a sealed memfd:
 * the database directory, the limits, the guest paths to scan and what
 * the cache holds.  The worker (vo-scan-engine.c, linked with libclamav)
 * loads the database before it confines itself, walks the filesystems,
 * scans each regular file's bytes from memory, and reports under "scan".
 * The parent checks that report like any guest input and writes the
 * JSON contract of docs/offline.rst ("Scanning an image").
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include <json-glib/json-glib.h>

#include "vo-guest.h"

G_BEGIN_DECLS

/* Defaults (clamscan's own), and the bounds an option may take. */
#define VO_SCAN_MAX_FILE_SIZE       (100ull * 1024 * 1024)
#define VO_SCAN_MAX_FILE_SIZE_LIMIT ((guint64)VO_FS_MAX_FILE)
#define VO_SCAN_TIMEOUT_S           600
#define VO_SCAN_TIMEOUT_LIMIT_S     (24 * 3600)
/* What one file's scan may unpack, in bytes, files and nesting, and
 * how long it may take. */
#define VO_SCAN_MAX_SCAN_SIZE       (400ull * 1024 * 1024)
#define VO_SCAN_MAX_RECURSION       17
#define VO_SCAN_MAX_FILES           10000
#define VO_SCAN_MAX_SCAN_TIME_MS    120000
/* The walk: nesting of directories and names in one directory. */
#define VO_SCAN_MAX_DEPTH           256
#define VO_SCAN_MAX_DIR_ENTRIES     1000000
/* What a report may list; beyond, one error says so. */
#define VO_SCAN_MAX_FINDINGS        1000
#define VO_SCAN_MAX_ERRORS          1000
#define VO_SCAN_MAX_CLEAN           200000
#define VO_SCAN_MAX_PATHS           64
/* A guest path in a report, and a reason, in bytes. */
#define VO_SCAN_MAX_PATH_TEXT       4096
#define VO_SCAN_MAX_REASON          512
/* The cache file the parent reads back. */
#define VO_SCAN_MAX_CACHE_BYTES     (64u * 1024 * 1024)

/*
 * A cache key (docs/offline.rst, "The cache"): what identifies a file
 * unchanged, fixed-size so that tens of thousands of them pass between
 * parent and worker, and to and from the cache file, as one block of
 * bytes rather than as JSON (docs/performance.md).  In the host's byte
 * order: the cache file is the host's own.
 */
typedef struct {
    /* The first 16 bytes of the SHA-256 of "UUID@OFFSET": the
     * filesystem's UUID and its partition's offset on the disk. */
    guint8 fs[16];
    guint64 node;
    guint64 generation;
    guint64 size;
    gint64 mtime_ns;
    gint64 ctime_ns;
} VoScanKey;

G_STATIC_ASSERT(sizeof(VoScanKey) == 56);

/*
 * The scan request and the cache file are both a head and keys: a JSON
 * object, a NUL, zeros up to a multiple of 8 bytes, then the keys, as
 * many as the head's "keys" member says.
 */
/* The head's part: the object, the NUL and the zeros; the keys follow
 * it as they are (never copied into one buffer with it). */
GBytes *vo_scan_blob_head(JsonObject *head);
/* The head and the keys of @data (which must stay alive while *@keys is
 * used; 8-byte aligned, as g_malloc() returns); NULL with @error. */
JsonObject *vo_scan_blob_split(const guint8 *data, gsize len,
                               const VoScanKey **keys, gsize *n_keys,
                               GError **error);

typedef struct VoScanOptions {
    const char *image;
    const char *format;         /* NULL: probed */
    const char *database;       /* directory of .cvd/.cld/.ndb/.hdb ... */
    char **paths;               /* guest paths, NULL: every filesystem */
    guint64 max_file_size;
    guint timeout_s;
    const char *cache;          /* NULL: no cache */
    gboolean force_share;
    /*
     * A spare (vo_scan_run()): set, the worker is started and loads
     * @database at once, and @await is then called to fill in @image,
     * @format, @paths, @max_file_size, @timeout_s and @cache (it may wait
     * for them as long as it likes); NULL otherwise.
     */
    gboolean (*await)(gpointer data, struct VoScanOptions *opts,
                      GError **error);
    gpointer await_data;
} VoScanOptions;

typedef enum {
    VO_SCAN_CLEAN,
    VO_SCAN_INFECTED,
    VO_SCAN_INCOMPLETE,
} VoScanResult;

/* ---- Parent ---- */

/*
 * Scans @opts->image in a confined worker.  The report of the contract
 * (docs/offline.rst) into *@report and its result into *@result; FALSE
 * with @error when no scan took place.  With @opts->await, a spare: the
 * worker loads the database before the image is known, so that a scan
 * asked later waits neither for the worker's start nor for the database
 * (docs/offline.rst, "A scanner kept ready"); a database that changed
 * meanwhile is loaded again by a worker of the scan's own.
 */
gboolean vo_scan_run(const VoScanOptions *opts, JsonNode **report,
                     VoScanResult *result, GError **error);

/* The worker's scan request for a bundle's quarantine instruction
 * (vo-quarantine.h): @opts's database, guest paths (none: every
 * filesystem) and limits, checked as a scan's; no cache (a quarantine
 * looks at every file).  NULL with @error. */
GBytes *vo_scan_quarantine_request(const VoScanOptions *opts,
                                   GError **error);

/* "clean", "infected", "incomplete". */
const char *vo_scan_result_name(VoScanResult result);

/*
 * The checks the parent applies to the worker's "scan" member: a copy in
 * the contract's shape (without "image" and "result"); or NULL with
 * @error.  Unless @cached is NULL, the cache's part of the report too:
 * into *@cached a bitmap over the @n_given keys the request handed the
 * worker (bit i set: key i was met and is still clean), into *@clean the
 * keys of the files found clean by this scan (VoScanKey).
 */
JsonObject *vo_scan_check_report(JsonNode *scan, gsize n_given,
                                 GBytes **cached, GBytes **clean,
                                 GError **error);

/* ---- Worker ---- */

/* Loads the engine from the request on @request_fd, before confinement
 * (the database is the host's); descriptors from @first_free on must be
 * closed.  FALSE with @error. */
gboolean vo_scan_engine_prepare(int request_fd, int first_free,
                                GError **error);
/* The scan's --timeout, from the request (or its default). */
guint vo_scan_engine_timeout_s(void);
/* Whether the request said "later" (a spare, vo_scan_run()): the scan's
 * own request then follows on another descriptor, once the disk is
 * served, and vo_scan_engine_take_later() takes it. */
gboolean vo_scan_engine_later(void);
/* The later request from @fd, which must be sealed: its limits, paths
 * and cache replace the first request's.  The image's name, or NULL with
 * @error. */
const char *vo_scan_engine_take_later(int fd, GError **error);
/* Scans @guest as the prepared request says; its "scan" member into @b. */
gboolean vo_scan_engine_run(VoGuest *guest, JsonBuilder *b, GError **error);
/* Whether vo_scan_engine_prepare() loaded the engine. */
gboolean vo_scan_engine_loaded(void);
/* The same scan for a bundle's quarantine instruction: its report as the
 * "quarantine" member, and each infected file once into @hits
 * (VoQuarantineHit*, vo-quarantine.h). */
gboolean vo_scan_engine_quarantine(VoGuest *guest, GPtrArray *hits,
                                   JsonBuilder *b, GError **error);

G_END_DECLS
