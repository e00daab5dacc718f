/*
 * vmaugment-helper: a malware scan of one VM's disk image.
 *
 * A module asks for it through the host API (scan_image, capability
 * "image-scan"), naming nothing but guest paths and limits: the image is
 * its own VM's, the database and the scanner the host owner's.  The scan
 * runs as its own process, "vmaugment-offline scan --force-share --json"
 * (docs/offline.rst): that tool reads the image QEMU holds open but has
 * not started, and parses the guest's filesystems and files only in its
 * confined worker.  What it prints is as hostile as the image it read: at
 * most IMAGE_SCAN_MAX_JSON bytes are read, nesting is measured before
 * json-glib sees them, every member is checked for its type, and the
 * result must agree with the exit status; guest paths and signature
 * names reach the module with control characters escaped.
 *
 * The helper serves every VM from one thread, so nothing here waits: the
 * process's output, its complaints and its exit are read from the main
 * loop (GSubprocess), and a scan past its time bound is stopped.  The
 * module's call, which waits for the answer, has its own bound extended
 * by the scan's meanwhile (module.c).  docs/modules.rst ("Scanning the
 * image") is normative.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define _GNU_SOURCE             /* F_SETPIPE_SZ */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <gio/gio.h>
#include <glib-unix.h>
#include <json-glib/json-glib.h>

#include "image-scan.h"
#include "json-strict.h"
#include "vmaugment-module.h"

/* Grace the scanner gets past its own timeout, then after SIGTERM. */
#define IMAGE_SCAN_GRACE_MS         10000
#define IMAGE_SCAN_TERM_GRACE_MS    3000
/* Nesting of the report: root, database or findings, one finding. */
#define IMAGE_SCAN_MAX_DEPTH        3
/* Of an apply's report: its rules nest deepest. */
#define IMAGE_SCAN_MAX_APPLY_DEPTH  6
/* Bytes of a summary line. */
#define IMAGE_SCAN_MAX_SUMMARY      400
/* A spare's standard input: room for a scan's arguments (64 paths of at
 * most 1 KiB, the cache's and the image's paths), written at once. */
#define IMAGE_SCAN_SPARE_PIPE       (256 * 1024)
/* A spare older than this is replaced: it runs the scanner and libclamav
 * of its start, which an upgrade since would not have it run. */
#define IMAGE_SCAN_SPARE_MAX_AGE_S  3600
/*
 * How long after a scan the next spare starts: the image start that
 * waited for the scan still has its handlers to finish (the module's
 * report, its UI element, the audit records), which the fork of a spare
 * on this thread would hold up by milliseconds.
 */
#define IMAGE_SCAN_SPARE_DELAY_MS   100

struct _ImageScan {
    Helper *helper;                 /* a scan's, which leaves a spare */
    GSubprocess *proc;
    GCancellable *cancel;
    GByteArray *out;
    GByteArray *err;
    gboolean out_too_big;
    gboolean timed_out;
    gboolean cancelled;
    guint pending;                  /* stdout, stderr and the exit */
    guint timer;
    guint timeout_s;
    gboolean quarantine;            /* an apply, not a scan */
    ImageScanDoneFunc done;
    gpointer done_data;
};

/* ---- Paths ---- */

static gboolean image_scan_path_ok(const gchar *p)
{
    g_auto(GStrv) parts = NULL;

    if (*p != '/' || strlen(p) > IMAGE_SCAN_MAX_PATH_LEN ||
        !g_utf8_validate(p, -1, NULL)) {
        return FALSE;
    }
    for (const gchar *c = p; *c != '\0'; c++) {
        if ((guchar)*c < 0x20 || *c == 0x7f) {
            return FALSE;
        }
    }
    parts = g_strsplit(p, "/", -1);
    for (guint i = 0; parts[i] != NULL; i++) {
        if (g_strcmp0(parts[i], "..") == 0) {
            return FALSE;
        }
    }
    return TRUE;
}

gchar **image_scan_paths_split(const gchar *text, gsize len)
{
    g_autofree gchar *copy = NULL;
    g_auto(GStrv) lines = NULL;
    g_autoptr(GPtrArray) out = g_ptr_array_new_with_free_func(g_free);

    if (memchr(text, '\0', len) != NULL) {
        return NULL;
    }
    copy = g_strndup(text, len);
    lines = g_strsplit(copy, "\n", -1);
    for (guint i = 0; lines[i] != NULL; i++) {
        if (*lines[i] == '\0') {
            continue;
        }
        if (!image_scan_path_ok(lines[i]) ||
            out->len >= IMAGE_SCAN_MAX_PATHS) {
            return NULL;
        }
        g_ptr_array_add(out, g_strdup(lines[i]));
    }
    g_ptr_array_add(out, NULL);
    return (gchar **)g_ptr_array_free(g_steal_pointer(&out), FALSE);
}

/* ---- The report ---- */

/* @s for one tab-separated field of a line: nothing below 0x20, no DEL,
 * and '\' escaped so that an escape can always be told from the text. */
static void image_scan_field(GString *out, const gchar *s)
{
    for (; *s != '\0'; s++) {
        guchar c = (guchar)*s;

        if (c < 0x20 || c == 0x7f || c == '\\') {
            g_string_append_printf(out, "\\x%02x", c);
        } else {
            g_string_append_c(out, (gchar)c);
        }
    }
}

static gboolean image_scan_int(JsonObject *o, const gchar *name, gint64 *v)
{
    JsonNode *n = json_object_get_member(o, name);

    if (n == NULL || !JSON_NODE_HOLDS_VALUE(n) ||
        json_node_get_value_type(n) != G_TYPE_INT64 ||
        json_node_get_int(n) < 0) {
        return FALSE;
    }
    *v = json_node_get_int(n);
    return TRUE;
}

/* Every member of @o is one of @names; those with a string type... are
 * checked by the caller. */
static const gchar *image_scan_unknown(JsonObject *o,
                                       const gchar *const *names)
{
    g_autoptr(GList) members = json_object_get_members(o);

    for (GList *l = members; l != NULL; l = l->next) {
        if (!g_strv_contains(names, l->data)) {
            return l->data;
        }
    }
    return NULL;
}

/* The array member @name of @o, whose elements are objects with exactly
 * the string members @names. */
static JsonArray *image_scan_records(JsonObject *o, const gchar *name,
                                     const gchar *const *names,
                                     GError **error)
{
    JsonNode *n = json_object_get_member(o, name);
    JsonArray *a;

    if (n == NULL || !JSON_NODE_HOLDS_ARRAY(n)) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "\"%s\" is not an array", name);
        return NULL;
    }
    a = json_node_get_array(n);
    for (guint i = 0; i < json_array_get_length(a); i++) {
        JsonNode *e = json_array_get_element(a, i);
        JsonObject *r;

        if (!JSON_NODE_HOLDS_OBJECT(e)) {
            g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                        "\"%s\"[%u] is not an object", name, i);
            return NULL;
        }
        r = json_node_get_object(e);
        if (image_scan_unknown(r, names) != NULL) {
            g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                        "\"%s\"[%u] has an unknown member", name, i);
            return NULL;
        }
        for (guint k = 0; names[k] != NULL; k++) {
            const gchar *v = vmaug_json_string(r, names[k]);

            if (v == NULL || *v == '\0') {
                g_set_error(error, VMAUG_HOST_ERROR,
                            VMAUG_HOST_ERROR_INVALID,
                            "\"%s\"[%u].%s is not a string", name, i,
                            names[k]);
                return NULL;
            }
        }
    }
    return a;
}

/* Add @line (and its newline) if it fits the module's report, else count
 * it as left out. */
static void image_scan_line(GString *report, const GString *line,
                            guint *left_out)
{
    /* Room for the "more N" line that may follow. */
    if (*left_out == 0 &&
        report->len + line->len + 1 <= VMAUG_MODULE_MAX_SCAN_REPORT - 32) {
        g_string_append_len(report, line->str, line->len);
        g_string_append_c(report, '\n');
    } else {
        (*left_out)++;
    }
}

static void image_scan_summary_cut(GString *summary)
{
    if (g_utf8_strlen(summary->str, -1) > IMAGE_SCAN_MAX_SUMMARY) {
        g_string_truncate(summary,
                          g_utf8_offset_to_pointer(summary->str,
                                                   IMAGE_SCAN_MAX_SUMMARY) -
                          summary->str);
        g_string_append(summary, "...");
    }
}

/* The members of a finding and of an error, in a scan's report and in
 * an apply's "quarantine". */
static const gchar *const image_scan_finding_members[] = {
    "filesystem", "path", "signature", NULL
};
static const gchar *const image_scan_error_members[] = {
    "path", "reason", NULL
};

/*
 * One @tag line ("finding", "moved") per finding and one "error" line per
 * error into @report, after @left_out lines already left out, then "more
 * N"; the first finding (and how many more) into @summary, or with
 * @error_summary the first error when there is no finding.
 */
static void image_scan_findings(GString *report, GString *summary,
                                const gchar *tag, JsonArray *findings,
                                JsonArray *errors, gboolean error_summary,
                                guint left_out)
{
    g_autoptr(GString) line = g_string_new(NULL);
    guint n = json_array_get_length(findings);

    for (guint i = 0; i < n; i++) {
        JsonObject *f = json_array_get_object_element(findings, i);

        g_string_printf(line, "%s ", tag);
        image_scan_field(line, vmaug_json_string(f, "filesystem"));
        g_string_append_c(line, '\t');
        image_scan_field(line, vmaug_json_string(f, "path"));
        g_string_append_c(line, '\t');
        image_scan_field(line, vmaug_json_string(f, "signature"));
        image_scan_line(report, line, &left_out);
        if (i == 0) {
            g_string_append(summary, ": ");
            g_string_append(summary, line->str + strlen(tag) + 1);
        }
    }
    if (n > 1) {
        g_string_append_printf(summary, " (and %u more)", n - 1);
    }
    for (guint i = 0; i < json_array_get_length(errors); i++) {
        JsonObject *e = json_array_get_object_element(errors, i);

        g_string_assign(line, "error ");
        image_scan_field(line, vmaug_json_string(e, "path"));
        g_string_append_c(line, '\t');
        image_scan_field(line, vmaug_json_string(e, "reason"));
        image_scan_line(report, line, &left_out);
        if (i == 0 && error_summary) {
            g_string_append(summary, ": ");
            g_string_append(summary, line->str + strlen("error "));
        }
    }
    if (left_out > 0) {
        g_string_append_printf(report, "more %u\n", left_out);
    }
}

gint image_scan_parse(const gchar *json, gsize len, gint exit_status,
                      GString *report, GString *summary, GError **error)
{
    static const gchar *const members[] = {
        "image", "engine", "database", "files-scanned", "files-cached",
        "bytes-scanned", "findings", "errors", "result", NULL
    };
    static const gchar *const db_members[] = {
        "version", "signatures", NULL
    };
    static const gchar *const results[] = {
        [VMAUG_SCAN_CLEAN] = "clean",
        [VMAUG_SCAN_INFECTED] = "infected",
        [VMAUG_SCAN_INCOMPLETE] = "incomplete",
    };
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GError) local = NULL;
    g_autoptr(GString) line = g_string_new(NULL);
    g_autofree gchar *version = NULL;
    JsonNode *root, *db;
    JsonObject *o, *dbo;
    JsonArray *findings, *errors;
    const gchar *engine, *result, *unknown;
    gint64 files, cached, bytes, sigs;
    guint left_out = 0;
    gint r = -1;

    if (len == 0 || memchr(json, '\0', len) != NULL ||
        !g_utf8_validate(json, len, NULL) ||
        !vmaug_json_depth_ok(json, len, IMAGE_SCAN_MAX_DEPTH)) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "not a JSON report of at most %u levels",
                    IMAGE_SCAN_MAX_DEPTH);
        return -1;
    }
    if (!json_parser_load_from_data(parser, json, len, &local)) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "not JSON: %s", local->message);
        return -1;
    }
    root = json_parser_get_root(parser);
    if (root == NULL || !JSON_NODE_HOLDS_OBJECT(root)) {
        g_set_error_literal(error, VMAUG_HOST_ERROR,
                            VMAUG_HOST_ERROR_INVALID,
                            "the report is not a JSON object");
        return -1;
    }
    o = json_node_get_object(root);
    if ((unknown = image_scan_unknown(o, members)) != NULL) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "unknown member \"%s\"", unknown);
        return -1;
    }
    engine = vmaug_json_string(o, "engine");
    result = vmaug_json_string(o, "result");
    db = json_object_get_member(o, "database");
    if (vmaug_json_string(o, "image") == NULL || engine == NULL ||
        result == NULL || db == NULL || !JSON_NODE_HOLDS_OBJECT(db) ||
        !image_scan_int(o, "files-scanned", &files) ||
        !image_scan_int(o, "files-cached", &cached) ||
        !image_scan_int(o, "bytes-scanned", &bytes)) {
        g_set_error_literal(error, VMAUG_HOST_ERROR,
                            VMAUG_HOST_ERROR_INVALID,
                            "a member is missing or of the wrong type");
        return -1;
    }
    dbo = json_node_get_object(db);
    if (image_scan_unknown(dbo, db_members) != NULL ||
        !image_scan_int(dbo, "signatures", &sigs)) {
        g_set_error_literal(error, VMAUG_HOST_ERROR,
                            VMAUG_HOST_ERROR_INVALID,
                            "\"database\" is not {version, signatures}");
        return -1;
    }
    /* A version is a number, or a string, or null (no official
     * database). */
    {
        JsonNode *v = json_object_get_member(dbo, "version");
        gint64 n;

        if (v != NULL && JSON_NODE_HOLDS_NULL(v)) {
            /* Signatures of the owner's own, no official database. */
            version = g_strdup("none");
        } else if (vmaug_json_string(dbo, "version") != NULL) {
            version = g_strdup(vmaug_json_string(dbo, "version"));
        } else if (image_scan_int(dbo, "version", &n)) {
            version = g_strdup_printf("%" G_GINT64_FORMAT, n);
        } else if (v != NULL) {
            g_set_error_literal(error, VMAUG_HOST_ERROR,
                                VMAUG_HOST_ERROR_INVALID,
                                "\"database\".version is neither a string "
                                "nor a number");
            return -1;
        }
    }
    findings = image_scan_records(o, "findings", image_scan_finding_members,
                                  error);
    if (findings == NULL) {
        return -1;
    }
    errors = image_scan_records(o, "errors", image_scan_error_members,
                                error);
    if (errors == NULL) {
        return -1;
    }
    for (guint i = 0; i < G_N_ELEMENTS(results); i++) {
        if (g_strcmp0(result, results[i]) == 0) {
            r = (gint)i;
        }
    }
    /* The exit status and the report must tell the same story. */
    if (r < 0 || r != exit_status ||
        (r == VMAUG_SCAN_INFECTED) != (json_array_get_length(findings) > 0)) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "result \"%s\" with %u findings does not match exit "
                    "status %d", result, json_array_get_length(findings),
                    exit_status);
        return -1;
    }

    g_string_append_printf(report, "result %s\n", results[r]);
    g_string_append(line, "engine ");
    image_scan_field(line, engine);
    g_string_append(line, "\tdatabase ");
    image_scan_field(line, version != NULL ? version : "");
    g_string_append_printf(line, "\tsignatures %" G_GINT64_FORMAT, sigs);
    image_scan_line(report, line, &left_out);
    g_string_printf(line, "files %" G_GINT64_FORMAT "\tcached %"
                    G_GINT64_FORMAT "\tbytes %" G_GINT64_FORMAT, files,
                    cached, bytes);
    image_scan_line(report, line, &left_out);
    g_string_append(summary, results[r]);
    image_scan_findings(report, summary, "finding", findings, errors,
                        r == VMAUG_SCAN_INCOMPLETE, left_out);
    if (r == VMAUG_SCAN_CLEAN) {
        g_string_append_printf(summary, ": %" G_GINT64_FORMAT " files (%"
                               G_GINT64_FORMAT " unchanged)", files, cached);
    }
    /* Tabs between fields read better as blanks in a log line. */
    g_strdelimit(summary->str, "\t", ' ');
    image_scan_summary_cut(summary);
    return r;
}

gint image_scan_parse_quarantine(const gchar *json, gsize len,
                                 GString *report, GString *summary,
                                 GError **error)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GError) local = NULL;
    JsonNode *root, *q;
    JsonObject *o;
    JsonArray *findings, *errors;
    const gchar *status;
    gint moved;

    if (len == 0 || memchr(json, '\0', len) != NULL ||
        !g_utf8_validate(json, len, NULL) ||
        !vmaug_json_depth_ok(json, len, IMAGE_SCAN_MAX_APPLY_DEPTH) ||
        !json_parser_load_from_data(parser, json, len, &local) ||
        (root = json_parser_get_root(parser)) == NULL ||
        !JSON_NODE_HOLDS_OBJECT(root)) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "not a JSON object of at most %u levels",
                    IMAGE_SCAN_MAX_APPLY_DEPTH);
        return -1;
    }
    o = json_node_get_object(root);
    status = vmaug_json_string(o, "status");
    q = json_object_get_member(o, "quarantine");
    if (status == NULL ||
        (!g_str_equal(status, "applied") &&
         !g_str_equal(status, "already-applied")) ||
        q == NULL || !JSON_NODE_HOLDS_OBJECT(q)) {
        g_set_error_literal(error, VMAUG_HOST_ERROR,
                            VMAUG_HOST_ERROR_INVALID,
                            "no \"status\" applied or already-applied with "
                            "a \"quarantine\" object");
        return -1;
    }
    findings = image_scan_records(json_node_get_object(q), "findings",
                                  image_scan_finding_members, error);
    errors = findings != NULL ?
             image_scan_records(json_node_get_object(q), "errors",
                                image_scan_error_members, error) : NULL;
    if (errors == NULL) {
        return -1;
    }
    /* Moved only by an apply: already-applied found nothing. */
    moved = g_str_equal(status, "applied") ?
            (gint)json_array_get_length(findings) : 0;
    if (moved == 0 && json_array_get_length(findings) > 0) {
        g_set_error_literal(error, VMAUG_HOST_ERROR,
                            VMAUG_HOST_ERROR_INVALID,
                            "findings, yet nothing applied");
        return -1;
    }
    g_string_append_printf(report, "result %s\n",
                           moved > 0 ? "quarantined" : "clean");
    g_string_append_printf(summary, "%s", moved > 0 ? "quarantined" :
                           "nothing to quarantine");
    image_scan_findings(report, summary, "moved", findings, errors, FALSE,
                        0);
    g_strdelimit(summary->str, "\t", ' ');
    image_scan_summary_cut(summary);
    return moved;
}

/* ---- The process ---- */

static void image_scan_free(ImageScan *s)
{
    if (s->timer != 0) {
        g_source_remove(s->timer);
    }
    g_clear_object(&s->proc);
    g_clear_object(&s->cancel);
    g_byte_array_unref(s->out);
    g_byte_array_unref(s->err);
    g_free(s);
}

/* The scanner's last complaint, its program name left out. */
static gchar *image_scan_complaint(ImageScan *s)
{
    g_autofree gchar *text = g_utf8_make_valid((const gchar *)s->err->data,
                                               s->err->len);
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    const gchar *last = NULL;
    GString *out = g_string_new(NULL);

    for (guint i = 0; lines[i] != NULL; i++) {
        if (*g_strstrip(lines[i]) != '\0') {
            last = lines[i];
        }
    }
    if (last == NULL) {
        g_string_append(out, "no reason given");
    } else {
        if (g_str_has_prefix(last, "vmaugment-offline: ")) {
            last += strlen("vmaugment-offline: ");
        }
        image_scan_field(out, last);
    }
    image_scan_summary_cut(out);
    return g_string_free(out, FALSE);
}

static gboolean image_scan_spare_on_soon(gpointer data)
{
    Helper *h = data;

    h->scan_spare_soon = 0;
    /* Not while the helper stops: it would only be killed. */
    if (!h->quitting) {
        image_scan_spare_start(h);
    }
    return G_SOURCE_REMOVE;
}

static void image_scan_finish(ImageScan *s)
{
    g_autoptr(GString) report = g_string_new(NULL);
    g_autoptr(GString) summary = g_string_new(NULL);
    g_autoptr(GError) error = NULL;
    g_autofree gchar *why = NULL;
    gint status = -1;
    gint r;

    if (s->cancelled) {
        image_scan_free(s);
        return;
    }
    if (g_subprocess_get_if_exited(s->proc)) {
        status = g_subprocess_get_exit_status(s->proc);
    }
    if (s->timed_out) {
        r = -ETIMEDOUT;
        why = g_strdup_printf("the scan did not end within %u s",
                              s->timeout_s);
    } else if (s->out_too_big) {
        r = -EIO;
        why = g_strdup_printf("the scanner's report is larger than %u "
                              "bytes", IMAGE_SCAN_MAX_JSON);
    } else if (status < 0) {
        r = -EIO;
        why = g_strdup_printf("the scanner was killed by signal %d",
                              g_subprocess_get_term_sig(s->proc));
    } else if (status > (s->quarantine ? 0 : VMAUG_SCAN_INCOMPLETE)) {
        g_autofree gchar *c = image_scan_complaint(s);

        r = -EIO;
        why = g_strdup_printf("the %s failed (exit status %d): %s",
                              s->quarantine ? "quarantine" : "scanner",
                              status, c);
    } else if (s->quarantine) {
        r = image_scan_parse_quarantine((const gchar *)s->out->data,
                                        s->out->len, report, summary, &error);
        if (r < 0) {
            r = -EIO;
            g_string_truncate(report, 0);
            g_string_truncate(summary, 0);
            why = g_strdup_printf("the quarantine's report is malformed: %s",
                                  error->message);
        }
    } else {
        r = image_scan_parse((const gchar *)s->out->data, s->out->len,
                             status, report, summary, &error);
        if (r < 0) {
            r = -EIO;
            g_string_truncate(report, 0);
            g_string_truncate(summary, 0);
            why = g_strdup_printf("the scanner's report is malformed: %s",
                                  error->message);
        }
    }
    if (why != NULL) {
        GString *w = g_string_new(NULL);

        image_scan_field(w, why);
        g_string_printf(report, "failure %s\n", w->str);
        g_string_printf(summary, "failed: %s", w->str);
        image_scan_summary_cut(summary);
        g_string_free(w, TRUE);
        /* One line that fits the module's report, whatever was said. */
        if (report->len > VMAUG_MODULE_MAX_SCAN_REPORT) {
            g_string_truncate(report, VMAUG_MODULE_MAX_SCAN_REPORT - 1);
            g_string_append_c(report, '\n');
        }
    }
    s->done(r, report->str, report->len, summary->str, s->done_data);
    /* This host scans images: the next one gets a scanner ready. */
    if (s->helper != NULL && s->helper->scan_spare == NULL &&
        s->helper->scan_spare_soon == 0) {
        s->helper->scan_spare_soon = g_timeout_add(IMAGE_SCAN_SPARE_DELAY_MS,
                                                   image_scan_spare_on_soon,
                                                   s->helper);
    }
    image_scan_free(s);
}

static void image_scan_step_done(ImageScan *s)
{
    if (--s->pending == 0) {
        image_scan_finish(s);
    }
}

static void image_scan_read(ImageScan *s, GInputStream *in, GByteArray *buf);

static void image_scan_on_read(GObject *source, GAsyncResult *res,
                               gpointer data)
{
    ImageScan *s = data;
    GInputStream *in = G_INPUT_STREAM(source);
    g_autoptr(GBytes) chunk = g_input_stream_read_bytes_finish(in, res,
                                                               NULL);
    gboolean is_out = in == g_subprocess_get_stdout_pipe(s->proc);
    GByteArray *buf = is_out ? s->out : s->err;
    gsize n = chunk != NULL ? g_bytes_get_size(chunk) : 0;

    if (n == 0 || s->cancelled) {
        image_scan_step_done(s);
        return;
    }
    if (is_out && buf->len + n > IMAGE_SCAN_MAX_JSON) {
        /* Nothing that large is a report: stop it now. */
        if (!s->out_too_big) {
            s->out_too_big = TRUE;
            g_subprocess_force_exit(s->proc);
        }
    } else if (is_out || buf->len < IMAGE_SCAN_MAX_STDERR) {
        g_byte_array_append(buf, g_bytes_get_data(chunk, NULL),
                            MIN(n, is_out ? n :
                                IMAGE_SCAN_MAX_STDERR - buf->len));
    }
    /* Read on to the end, keeping no more, so that it never blocks on a
     * full pipe. */
    image_scan_read(s, in, buf);
}

static void image_scan_read(ImageScan *s, GInputStream *in, GByteArray *buf)
{
    g_input_stream_read_bytes_async(in, 65536, G_PRIORITY_DEFAULT, s->cancel,
                                    image_scan_on_read, s);
}

static void image_scan_on_exit(GObject *source, GAsyncResult *res,
                               gpointer data)
{
    ImageScan *s = data;

    g_subprocess_wait_finish(G_SUBPROCESS(source), res, NULL);
    if (s->timer != 0) {
        g_source_remove(s->timer);
        s->timer = 0;
    }
    image_scan_step_done(s);
}

static gboolean image_scan_on_kill(gpointer data)
{
    ImageScan *s = data;

    s->timer = 0;
    g_subprocess_force_exit(s->proc);
    return G_SOURCE_REMOVE;
}

/* Past its own bound: asked to stop (it removes its export), then
 * killed. */
static gboolean image_scan_on_timeout(gpointer data)
{
    ImageScan *s = data;

    s->timed_out = TRUE;
    g_subprocess_send_signal(s->proc, SIGTERM);
    s->timer = g_timeout_add(IMAGE_SCAN_TERM_GRACE_MS, image_scan_on_kill, s);
    return G_SOURCE_REMOVE;
}

static ImageScan *image_scan_spawn(GPtrArray *argv, guint timeout_s,
                                   gboolean quarantine,
                                   ImageScanDoneFunc done, gpointer data,
                                   GError **error);
static ImageScan *image_scan_watch(GSubprocess *proc, guint timeout_s,
                                   gboolean quarantine,
                                   ImageScanDoneFunc done, gpointer data);

/*
 * The spare (docs/offline.rst, "A scanner kept ready"): "scan --spare"
 * starts its confined worker and loads the database at once, then waits
 * for the image and the scan's options on its standard input.  It holds
 * nothing of any VM until then.  One at a time, started once a scan
 * ended, so that only a host that scans keeps one (with the official
 * database, its compiled engine is about 1.5 GiB), and replaced after an
 * hour.
 */
struct ImageScanSpare {
    Helper *helper;
    GSubprocess *proc;
    int in;                         /* its standard input */
    guint aged;                     /* its replacement's timer */
};

static void image_scan_spare_free(ImageScanSpare *sp)
{
    if (sp->aged != 0) {
        g_source_remove(sp->aged);
    }
    if (sp->in >= 0) {
        close(sp->in);
    }
    g_clear_object(&sp->proc);
    g_free(sp);
}

static gboolean image_scan_spare_on_aged(gpointer data)
{
    ImageScanSpare *sp = data;
    Helper *h = sp->helper;

    sp->aged = 0;
    image_scan_spare_stop(h);
    image_scan_spare_start(h);
    return G_SOURCE_REMOVE;
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(ImageScanSpare, image_scan_spare_free)

/* A scan's command line up to its own options: the helper's scanner,
 * database, and the image read beside QEMU's lock. */
static GPtrArray *image_scan_argv(Helper *h)
{
    GPtrArray *argv = g_ptr_array_new_with_free_func(g_free);

    g_ptr_array_add(argv, g_strdup(h->scan_tool));
    g_ptr_array_add(argv, g_strdup("scan"));
    g_ptr_array_add(argv, g_strconcat("--database=", h->clamav_database,
                                      NULL));
    g_ptr_array_add(argv, g_strdup("--force-share"));
    g_ptr_array_add(argv, g_strdup("--json"));
    return argv;
}

void image_scan_spare_start(Helper *h)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GSubprocessLauncher) launcher = NULL;
    g_autoptr(GPtrArray) argv = image_scan_argv(h);
    ImageScanSpare *sp;
    int fds[2];

    if (h->scan_spare != NULL) {
        return;
    }
    g_ptr_array_add(argv, g_strdup("--spare"));
    g_ptr_array_add(argv, NULL);
    if (!g_unix_open_pipe(fds, FD_CLOEXEC, &error)) {
        g_warning("no spare scanner: %s", error->message);
        return;
    }
    launcher = g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_STDOUT_PIPE |
                                         G_SUBPROCESS_FLAGS_STDERR_PIPE);
    g_subprocess_launcher_take_stdin_fd(launcher, fds[0]);
    sp = g_new0(ImageScanSpare, 1);
    sp->helper = h;
    sp->in = fds[1];
    sp->proc = g_subprocess_launcher_spawnv(
        launcher, (const gchar *const *)argv->pdata, &error);
    if (sp->proc == NULL) {
        g_warning("no spare scanner: %s", error->message);
        image_scan_spare_free(sp);
        return;
    }
    sp->aged = g_timeout_add_seconds(IMAGE_SCAN_SPARE_MAX_AGE_S,
                                     image_scan_spare_on_aged, sp);
    h->scan_spare = sp;
}

void image_scan_spare_stop(Helper *h)
{
    g_clear_handle_id(&h->scan_spare_soon, g_source_remove);
    if (h->scan_spare != NULL) {
        g_subprocess_force_exit(h->scan_spare->proc);
        g_clear_pointer(&h->scan_spare, image_scan_spare_free);
    }
}

/*
 * The spare, given a scan's options and image (@args, each ended by a
 * NUL) in one write: NULL when there is none, or it ended meanwhile (the
 * scan then starts a scanner of its own).  Its pipe is made large enough
 * that the write never waits for it.
 */
static GSubprocess *image_scan_spare_take(Helper *h, GPtrArray *args)
{
    g_autoptr(ImageScanSpare) sp = g_steal_pointer(&h->scan_spare);
    g_autoptr(GString) text = g_string_new(NULL);

    if (sp == NULL || g_subprocess_get_identifier(sp->proc) == NULL) {
        return NULL;
    }
    for (guint i = 0; i < args->len; i++) {
        g_string_append_len(text, args->pdata[i],
                            strlen(args->pdata[i]) + 1);
    }
    if (text->len > IMAGE_SCAN_SPARE_PIPE ||
        (text->len > (gsize)fcntl(sp->in, F_GETPIPE_SZ) &&
         fcntl(sp->in, F_SETPIPE_SZ, IMAGE_SCAN_SPARE_PIPE) < 0) ||
        !g_unix_set_fd_nonblocking(sp->in, TRUE, NULL) ||
        write(sp->in, text->str, text->len) != (gssize)text->len) {
        g_subprocess_force_exit(sp->proc);
        return NULL;
    }
    /* The end of its input: the scan begins. */
    close(sp->in);
    sp->in = -1;
    return g_steal_pointer(&sp->proc);
}

ImageScan *image_scan_start(Helper *h, const gchar *image,
                            const gchar *cache, const gchar *const *paths,
                            const ImageScanLimits *limits,
                            ImageScanDoneFunc done, gpointer data,
                            GError **error)
{
    g_autoptr(GPtrArray) args = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GSubprocess) proc = NULL;
    ImageScan *s;
    guint timeout_s = limits->timeout_s == 0 ||
                      limits->timeout_s > h->scan_timeout_s ?
                      h->scan_timeout_s : limits->timeout_s;

    /* This scan's own: every value after an option of its own, in the
     * "--opt=value" form, so that none can pass for another option; the
     * image's path (last) is absolute. */
    g_ptr_array_add(args, g_strdup_printf("--timeout=%u", timeout_s));
    g_ptr_array_add(args, g_strconcat("--cache=", cache, NULL));
    if (limits->max_file_size != 0) {
        g_ptr_array_add(args, g_strdup_printf("--max-file-size=%"
                                              G_GUINT64_FORMAT,
                                              limits->max_file_size));
    }
    for (guint i = 0; paths != NULL && paths[i] != NULL; i++) {
        g_ptr_array_add(args, g_strconcat("--path=", paths[i], NULL));
    }
    g_ptr_array_add(args, g_strdup(image));
    proc = image_scan_spare_take(h, args);
    if (proc != NULL) {
        s = image_scan_watch(proc, timeout_s, FALSE, done, data);
    } else {
        g_autoptr(GPtrArray) argv = image_scan_argv(h);

        for (guint i = 0; i < args->len; i++) {
            g_ptr_array_add(argv, g_strdup(args->pdata[i]));
        }
        g_ptr_array_add(argv, NULL);
        s = image_scan_spawn(argv, timeout_s, FALSE, done, data, error);
        /* A spare due now would load the database beside this scan's
         * own scanner: the next one starts when this scan ends. */
        if (s != NULL) {
            g_clear_handle_id(&h->scan_spare_soon, g_source_remove);
        }
    }
    if (s != NULL) {
        s->helper = h;
    }
    return s;
}

/* Runs @argv, reading its report, for at most @timeout_s seconds. */
static ImageScan *image_scan_spawn(GPtrArray *argv, guint timeout_s,
                                   gboolean quarantine,
                                   ImageScanDoneFunc done, gpointer data,
                                   GError **error)
{
    g_autoptr(GSubprocess) proc = NULL;

    proc = g_subprocess_newv((const gchar *const *)argv->pdata,
                             G_SUBPROCESS_FLAGS_STDOUT_PIPE |
                             G_SUBPROCESS_FLAGS_STDERR_PIPE, error);
    if (proc == NULL) {
        return NULL;
    }
    return image_scan_watch(proc, timeout_s, quarantine, done, data);
}

/* Reads @proc's report, for at most @timeout_s seconds. */
static ImageScan *image_scan_watch(GSubprocess *proc, guint timeout_s,
                                   gboolean quarantine,
                                   ImageScanDoneFunc done, gpointer data)
{
    ImageScan *s = g_new0(ImageScan, 1);

    s->quarantine = quarantine;
    s->out = g_byte_array_new();
    s->err = g_byte_array_new();
    s->timeout_s = timeout_s;
    s->done = done;
    s->done_data = data;
    s->proc = g_object_ref(proc);
    s->cancel = g_cancellable_new();
    s->pending = 3;
    image_scan_read(s, g_subprocess_get_stdout_pipe(s->proc), s->out);
    image_scan_read(s, g_subprocess_get_stderr_pipe(s->proc), s->err);
    g_subprocess_wait_async(s->proc, NULL, image_scan_on_exit, s);
    s->timer = g_timeout_add((guint)timeout_s * 1000 + IMAGE_SCAN_GRACE_MS,
                             image_scan_on_timeout, s);
    return s;
}

ImageScan *image_scan_quarantine(Helper *h, const gchar *image,
                                 const gchar *bundle,
                                 const gchar *const *paths,
                                 ImageScanDoneFunc done, gpointer data,
                                 GError **error)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func(g_free);

    /* As for a scan: every value in the "--opt=value" form, the image
     * and the bundle absolute paths, which no option starts like.  No
     * --force-share: QEMU let go of the image (IMAGE_ACCESS) and keeps
     * only the consistent-read lock its inactive nodes hold
     * (--qemu-released); the apply takes its own locks. */
    g_ptr_array_add(argv, g_strdup(h->scan_tool));
    g_ptr_array_add(argv, g_strconcat("--database=", h->clamav_database,
                                      NULL));
    /* The bundle is signed by a signer the helper trusts, as modules
     * are: no other key decides what changes in an image. */
    g_ptr_array_add(argv, g_strconcat("--trust-dir=", h->trust_dir, NULL));
    g_ptr_array_add(argv, g_strdup_printf("--timeout=%u", h->scan_timeout_s));
    for (guint i = 0; paths != NULL && paths[i] != NULL; i++) {
        g_ptr_array_add(argv, g_strconcat("--path=", paths[i], NULL));
    }
    g_ptr_array_add(argv, g_strdup("--qemu-released"));
    g_ptr_array_add(argv, g_strdup("--json"));
    g_ptr_array_add(argv, g_strdup("apply"));
    g_ptr_array_add(argv, g_strdup(image));
    g_ptr_array_add(argv, g_strdup(bundle));
    g_ptr_array_add(argv, NULL);
    /* The scan inside it has the offline tool's own bound; the commit
     * after it is a copy of what changed. */
    return image_scan_spawn(argv, h->scan_timeout_s * 2, TRUE, done, data,
                            error);
}

void image_scan_cancel(ImageScan *s)
{
    if (s == NULL) {
        return;
    }
    /* Freed once its reads and its exit are in; done is not called. */
    s->cancelled = TRUE;
    g_cancellable_cancel(s->cancel);
    g_subprocess_force_exit(s->proc);
}
