/*
 * vmaugment-admin: the store's audit log (audit).
 *
 * audit.log holds one JSON object per line, written by vmaug_store_audit()
 * (time, actor, action, module, version, sha256, signer, decision,
 * reason).  The log is evidence: it is only read here, and a line that is
 * not such a record (truncated by a crash, edited, garbage) is shown as
 * malformed rather than skipped or fatal.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "admin.h"
#include "json-strict.h"

/* Records are a few hundred bytes; a longer line is not one of them. */
#define ADMIN_AUDIT_MAX_LINE    (64 * 1024)
/* How much of a malformed line is shown. */
#define ADMIN_AUDIT_SHOW        200

static const gchar *const admin_audit_fields[] = {
    "time", "actor", "action", "module", "version", "sha256", "signer",
    "decision", "reason", NULL
};

typedef struct {
    const gchar *module;
    GDateTime *since;
    gboolean json;
    JsonBuilder *out;
    guint shown, malformed;
} AdminAudit;

/* A record, or NULL with @why set; every member must be a string. */
static JsonObject *admin_audit_parse(JsonParser *parser, const gchar *line,
                                     gsize len, GDateTime **time,
                                     const gchar **why)
{
    JsonNode *root;
    JsonObject *o;
    const gchar *decision;

    if (!g_utf8_validate(line, len, NULL)) {
        *why = "not UTF-8";
        return NULL;
    }
    if (!json_parser_load_from_data(parser, line, len, NULL)) {
        *why = "not JSON";
        return NULL;
    }
    root = json_parser_get_root(parser);
    if (root == NULL || !JSON_NODE_HOLDS_OBJECT(root)) {
        *why = "not a JSON object";
        return NULL;
    }
    o = json_node_get_object(root);
    for (guint i = 0; admin_audit_fields[i] != NULL; i++) {
        if (vmaug_json_string(o, admin_audit_fields[i]) == NULL) {
            *why = "a member is missing or not a string";
            return NULL;
        }
    }
    decision = json_object_get_string_member(o, "decision");
    if (g_strcmp0(decision, "accept") != 0 &&
        g_strcmp0(decision, "refuse") != 0) {
        *why = "unknown decision";
        return NULL;
    }
    *time = g_date_time_new_from_iso8601(
        json_object_get_string_member(o, "time"), NULL);
    if (*time == NULL) {
        *why = "bad time";
        return NULL;
    }
    return o;
}

static void admin_audit_malformed(AdminAudit *a, guint lineno,
                                  const gchar *line, gsize len,
                                  const gchar *why)
{
    g_autofree gchar *text = admin_printable(line,
                                             MIN(len, ADMIN_AUDIT_SHOW));

    a->malformed++;
    if (a->json) {
        json_builder_begin_object(a->out);
        json_builder_set_member_name(a->out, "line");
        json_builder_add_int_value(a->out, lineno);
        json_builder_set_member_name(a->out, "malformed");
        json_builder_add_string_value(a->out, why);
        json_builder_set_member_name(a->out, "text");
        json_builder_add_string_value(a->out, text);
        json_builder_end_object(a->out);
        return;
    }
    g_print("line %u: malformed (%s): %s%s\n", lineno, why, text,
            len > ADMIN_AUDIT_SHOW ? "..." : "");
}

static void admin_audit_record(AdminAudit *a, guint lineno, JsonObject *o,
                               GDateTime *time)
{
    g_autofree gchar *when = g_date_time_format(time, "%Y-%m-%dT%H:%M:%SZ");
    const gchar *sha = json_object_get_string_member(o, "sha256");
    const gchar *reason = json_object_get_string_member(o, "reason");
    gchar *p[G_N_ELEMENTS(admin_audit_fields)] = { NULL };

    a->shown++;
    if (a->json) {
        json_builder_begin_object(a->out);
        json_builder_set_member_name(a->out, "line");
        json_builder_add_int_value(a->out, lineno);
        for (guint i = 0; admin_audit_fields[i] != NULL; i++) {
            json_builder_set_member_name(a->out, admin_audit_fields[i]);
            json_builder_add_string_value(a->out,
                json_object_get_string_member(o, admin_audit_fields[i]));
        }
        json_builder_end_object(a->out);
        return;
    }
    /* Every field came from a file: escape before printing. */
    for (guint i = 0; admin_audit_fields[i] != NULL; i++) {
        p[i] = admin_printable(
            json_object_get_string_member(o, admin_audit_fields[i]), -1);
    }
    /* time actor action module version sha256 signer decision reason */
    g_print("%s %-6s %-14s %-16s %-10s by %s", when, p[7], p[2],
            p[3][0] != '\0' ? p[3] : "-", p[4][0] != '\0' ? p[4] : "-",
            p[1][0] != '\0' ? p[1] : "-");
    if (p[6][0] != '\0') {
        g_print(", signer %s", p[6]);
    }
    if (sha[0] != '\0') {
        g_print(", sha256 %.12s", p[5]);
    }
    g_print("\n");
    if (reason[0] != '\0') {
        g_print("    %s\n", p[8]);
    }
    for (guint i = 0; admin_audit_fields[i] != NULL; i++) {
        g_free(p[i]);
    }
}

static void admin_audit_line(AdminAudit *a, guint lineno, const gchar *line,
                             gsize len)
{
    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    g_autoptr(GDateTime) time = NULL;
    const gchar *why = NULL;
    JsonObject *o;

    o = admin_audit_parse(parser, line, len, &time, &why);
    if (o == NULL) {
        /* Shown whatever the filters: it could have been anything. */
        admin_audit_malformed(a, lineno, line, len, why);
        return;
    }
    if (a->module != NULL &&
        g_strcmp0(json_object_get_string_member(o, "module"),
                  a->module) != 0) {
        return;
    }
    if (a->since != NULL && g_date_time_compare(time, a->since) < 0) {
        return;
    }
    admin_audit_record(a, lineno, o, time);
}

/* Read @f line by line, never holding more than one bounded line. */
static gboolean admin_audit_read(AdminAudit *a, FILE *f, GError **error)
{
    g_autofree gchar *buf = g_malloc(ADMIN_AUDIT_MAX_LINE + 1);
    gsize len = 0;
    guint lineno = 0;
    gboolean too_long = FALSE, has_nul = FALSE;
    int c;

    do {
        c = getc(f);
        if (c != EOF && c != '\n') {
            if (len < ADMIN_AUDIT_MAX_LINE) {
                has_nul |= c == '\0';
                buf[len++] = c;
            } else {
                too_long = TRUE;
            }
            continue;
        }
        if (len == 0 && !too_long && c == EOF) {
            break;
        }
        lineno++;
        buf[len] = '\0';
        if (too_long) {
            admin_audit_malformed(a, lineno, buf, len, "line too long");
        } else if (has_nul) {
            admin_audit_malformed(a, lineno, buf, strlen(buf),
                                  "holds NUL bytes");
        } else if (len > 0) {
            admin_audit_line(a, lineno, buf, len);
        }
        len = 0;
        too_long = has_nul = FALSE;
    } while (c != EOF);
    if (ferror(f)) {
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_IO,
                    "reading the audit log failed");
        return FALSE;
    }
    return TRUE;
}

static GDateTime *admin_audit_parse_since(const gchar *text)
{
    g_autoptr(GTimeZone) utc = g_time_zone_new_utc();
    g_autofree gchar *full = NULL;

    /* A bare date means its start, UTC. */
    if (strlen(text) == 10) {
        full = g_strconcat(text, "T00:00:00Z", NULL);
        text = full;
    }
    return g_date_time_new_from_iso8601(text, utc);
}

int admin_cmd_audit(int argc, char **argv)
{
    g_autoptr(GOptionContext) ctx = g_option_context_new(
        "- show the store's audit log");
    g_autoptr(GError) error = NULL;
    g_autofree gchar *store = NULL;
    g_autofree gchar *module = NULL;
    g_autofree gchar *since = NULL;
    g_autofree gchar *path = NULL;
    g_autoptr(JsonBuilder) out = json_builder_new();
    AdminAudit a = { 0 };
    const GOptionEntry entries[] = {
        { "store", 's', 0, G_OPTION_ARG_FILENAME, &store,
          "Module store (default: the host's)", "DIR" },
        { "module", 'm', 0, G_OPTION_ARG_STRING, &module,
          "Only records about this module", "NAME" },
        { "since", 0, 0, G_OPTION_ARG_STRING, &since,
          "Only records from this time on (ISO 8601, UTC when no zone "
          "is given; a bare date means its start)", "TIME" },
        { NULL }
    };
    FILE *f;
    int fd;
    gboolean ok;

    if (!admin_parse(ctx, entries, &a.json, &argc, &argv)) {
        return admin_parse_exit;
    }
    if (argc != 1) {
        return admin_fail(ADMIN_EXIT_USAGE, "audit takes no arguments");
    }
    a.since = since != NULL ? admin_audit_parse_since(since) : NULL;
    if (since != NULL && a.since == NULL) {
        return admin_fail(ADMIN_EXIT_USAGE, "--since %s is not an ISO 8601 "
                          "time", since);
    }
    a.module = module;
    a.out = out;
    if (store == NULL) {
        store = g_strdup(vmaug_cli_default_store_dir());
    }
    if (!g_file_test(store, G_FILE_TEST_IS_DIR)) {
        g_clear_pointer(&a.since, g_date_time_unref);
        return admin_fail(ADMIN_EXIT_FAILED, "no module store at %s", store);
    }
    path = g_build_filename(store, "audit.log", NULL);
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno != ENOENT) {
        int saved = errno;

        g_clear_pointer(&a.since, g_date_time_unref);
        return admin_fail(ADMIN_EXIT_FAILED, "cannot open %s: %s", path,
                          g_strerror(saved));
    }
    json_builder_begin_array(out);
    if (fd >= 0) {
        f = fdopen(fd, "r");
        ok = admin_audit_read(&a, f, &error);
        fclose(f);
    } else {
        ok = TRUE;      /* a store that never decided anything */
    }
    json_builder_end_array(out);
    g_clear_pointer(&a.since, g_date_time_unref);
    if (!ok) {
        return admin_fail_error(error);
    }
    if (a.json) {
        g_autoptr(JsonNode) root = json_builder_get_root(out);

        admin_print_json(root);
    } else if (a.shown == 0 && a.malformed == 0) {
        g_print("no audit records%s\n",
                module != NULL || since != NULL ? " match" : "");
    }
    return ADMIN_EXIT_OK;
}
