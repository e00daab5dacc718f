/*
 * vmaugment-repo: publish a module repository as static files, and fetch
 * from one.
 *
 *   vmaugment-repo publish --dir DIR --key K --cert C [--trust-dir T]
 *                          [--expires-days N | --expires ISO8601]
 *                          [--metadata-version N] PACKAGE.vmod...
 *   vmaugment-repo fetch --url URL --trust-dir T --state-dir S --dest D
 *                        [--ca-file F] [--timeout-ms N] [--max-size N]
 *                        NAME [VERSION]
 *   vmaugment-repo list --url URL --trust-dir T --state-dir S [--ca-file F]
 *
 * Exit status: 0 done, 1 usage or local error, 2 refused (signature,
 * expiry, rollback, mismatch, size, time, TLS), 3 not found.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmaugment-repo.h"

static int repo_tool_status(const GError *error)
{
    g_printerr("vmaugment-repo: %s\n", error->message);
    if (error->domain != VMAUG_REPO_ERROR) {
        return 1;
    }
    switch (error->code) {
    case VMAUG_REPO_ERROR_FAILED:
    case VMAUG_REPO_ERROR_INVALID:
        return 1;
    case VMAUG_REPO_ERROR_NOT_FOUND:
        return 3;
    default:
        return 2;
    }
}

static gboolean repo_tool_parse(GOptionContext *ctx, int *argc, char ***argv)
{
    g_autoptr(GError) error = NULL;

    if (!g_option_context_parse(ctx, argc, argv, &error)) {
        g_printerr("vmaugment-repo: %s\n", error->message);
        return FALSE;
    }
    return TRUE;
}

static int repo_tool_publish(int argc, char **argv)
{
    g_autoptr(GOptionContext) ctx =
        g_option_context_new("PACKAGE.vmod... - publish a repository");
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugRepoIndex) index = NULL;
    g_autofree gchar *dir = NULL, *key = NULL, *cert = NULL;
    g_autofree gchar *trust_dir = NULL, *expires_iso = NULL;
    gint expires_days = 7;
    gint64 version = 0;
    gint64 now = g_get_real_time() / G_USEC_PER_SEC;
    VmaugRepoPublishOptions opts = { 0 };
    GOptionEntry entries[] = {
        { "dir", 0, 0, G_OPTION_ARG_FILENAME, &dir,
          "Repository directory to write", "DIR" },
        { "key", 0, 0, G_OPTION_ARG_FILENAME, &key,
          "Administrator private key", "KEY" },
        { "cert", 0, 0, G_OPTION_ARG_FILENAME, &cert,
          "Administrator certificate", "CERT" },
        { "trust-dir", 0, 0, G_OPTION_ARG_FILENAME, &trust_dir,
          "Trust store packages must verify against (default: CERT)", "DIR" },
        { "expires-days", 0, 0, G_OPTION_ARG_INT, &expires_days,
          "Index expires after N days (default 7)", "N" },
        { "expires", 0, 0, G_OPTION_ARG_STRING, &expires_iso,
          "Index expires at this ISO 8601 time", "TIME" },
        { "metadata-version", 0, 0, G_OPTION_ARG_INT64, &version,
          "Metadata version (default: current + 1)", "N" },
        { NULL }
    };

    g_option_context_add_main_entries(ctx, entries, NULL);
    if (!repo_tool_parse(ctx, &argc, &argv)) {
        return 1;
    }
    if (dir == NULL || key == NULL || cert == NULL) {
        g_printerr("vmaugment-repo publish: --dir, --key and --cert are "
                   "required\n");
        return 1;
    }
    opts.dir = dir;
    opts.key_path = key;
    opts.cert_path = cert;
    opts.trust_dir = trust_dir;
    opts.version = version;
    if (expires_iso != NULL) {
        g_autoptr(GDateTime) dt = g_date_time_new_from_iso8601(expires_iso,
                                                               NULL);

        if (dt == NULL) {
            g_printerr("vmaugment-repo publish: --expires needs an ISO 8601 "
                       "time with zone\n");
            return 1;
        }
        opts.expires = g_date_time_to_unix(dt);
    } else {
        if (expires_days < 1 || expires_days > 3660) {
            g_printerr("vmaugment-repo publish: --expires-days out of "
                       "range\n");
            return 1;
        }
        opts.expires = now + (gint64)expires_days * 86400;
    }
    if (opts.expires <= now) {
        g_printerr("vmaugment-repo publish: the expiry is in the past\n");
        return 1;
    }
    index = vmaug_repo_publish(&opts, (const gchar *const *)argv + 1, &error);
    if (index == NULL) {
        return repo_tool_status(error);
    }
    g_print("published metadata version %" G_GINT64_FORMAT " with %u "
            "packages, signed by %s\n", index->version, index->entries->len,
            index->signer);
    return 0;
}

/* Options shared by fetch and list. */
typedef struct {
    gchar *url, *trust_dir, *state_dir, *ca_file, *dest;
    gint timeout_ms;
    gint64 max_size;
} RepoToolClient;

static void repo_tool_client_clear(RepoToolClient *c)
{
    g_free(c->url);
    g_free(c->trust_dir);
    g_free(c->state_dir);
    g_free(c->ca_file);
    g_free(c->dest);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(RepoToolClient, repo_tool_client_clear)

static gboolean repo_tool_client_parse(RepoToolClient *c, const gchar *usage,
                                       gboolean want_dest, int *argc,
                                       char ***argv, VmaugRepoOptions *opts)
{
    g_autoptr(GOptionContext) ctx = g_option_context_new(usage);
    GOptionEntry entries[] = {
        { "url", 0, 0, G_OPTION_ARG_STRING, &c->url,
          "Repository base URL (https://)", "URL" },
        { "trust-dir", 0, 0, G_OPTION_ARG_FILENAME, &c->trust_dir,
          "Trust store of administrator certificates", "DIR" },
        { "state-dir", 0, 0, G_OPTION_ARG_FILENAME, &c->state_dir,
          "Where accepted metadata versions are remembered", "DIR" },
        { "ca-file", 0, 0, G_OPTION_ARG_FILENAME, &c->ca_file,
          "PEM CA certificates for TLS (default: the system's)", "FILE" },
        { "dest", 0, 0, G_OPTION_ARG_FILENAME, &c->dest,
          "Directory the package is written to", "DIR" },
        { "timeout-ms", 0, 0, G_OPTION_ARG_INT, &c->timeout_ms,
          "Bound on the whole fetch", "MS" },
        { "max-size", 0, 0, G_OPTION_ARG_INT64, &c->max_size,
          "Largest package accepted, bytes", "N" },
        { NULL }
    };

    g_option_context_add_main_entries(ctx, entries, NULL);
    if (!repo_tool_parse(ctx, argc, argv)) {
        return FALSE;
    }
    if (c->url == NULL || c->trust_dir == NULL || c->state_dir == NULL ||
        (want_dest && c->dest == NULL)) {
        g_printerr("vmaugment-repo: --url, --trust-dir, --state-dir%s are "
                   "required\n", want_dest ? " and --dest" : "");
        return FALSE;
    }
    if (c->timeout_ms < 0 || c->max_size < 0) {
        g_printerr("vmaugment-repo: negative limits\n");
        return FALSE;
    }
    vmaug_repo_options_init(opts);
    opts->url = c->url;
    opts->trust_dir = c->trust_dir;
    opts->state_dir = c->state_dir;
    opts->ca_file = c->ca_file;
    if (c->timeout_ms > 0) {
        opts->timeout_ms = c->timeout_ms;
    }
    if (c->max_size > 0) {
        opts->max_package_size = c->max_size;
    }
    return TRUE;
}

static int repo_tool_fetch(int argc, char **argv)
{
    g_auto(RepoToolClient) c = { 0 };
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugRepoResult) r = NULL;
    VmaugRepoOptions opts;

    if (!repo_tool_client_parse(&c, "NAME [VERSION] - fetch a module", TRUE,
                                &argc, &argv, &opts)) {
        return 1;
    }
    if (argc < 2 || argc > 3) {
        g_printerr("vmaugment-repo fetch: NAME [VERSION] expected\n");
        return 1;
    }
    r = vmaug_repo_fetch(&opts, argv[1], argc == 3 ? argv[2] : NULL, c.dest,
                         &error);
    if (r == NULL) {
        return repo_tool_status(error);
    }
    g_print("%s %s %s %" G_GUINT64_FORMAT " %s (signed by %s, metadata "
            "version %" G_GINT64_FORMAT ")\n", r->name, r->version, r->sha256,
            r->size, r->path, r->signer, r->index_version);
    return 0;
}

static int repo_tool_list(int argc, char **argv)
{
    g_auto(RepoToolClient) c = { 0 };
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugRepoIndex) index = NULL;
    g_autoptr(GDateTime) dt = NULL;
    g_autofree gchar *when = NULL;
    VmaugRepoOptions opts;

    if (!repo_tool_client_parse(&c, "- list a repository", FALSE, &argc,
                                &argv, &opts)) {
        return 1;
    }
    index = vmaug_repo_fetch_index(&opts, &error);
    if (index == NULL) {
        return repo_tool_status(error);
    }
    dt = g_date_time_new_from_unix_utc(index->expires);
    when = g_date_time_format(dt, "%Y-%m-%dT%H:%M:%SZ");
    g_print("metadata version %" G_GINT64_FORMAT ", expires %s, signed by "
            "%s\n", index->version, when, index->signer);
    for (guint i = 0; i < index->entries->len; i++) {
        const VmaugRepoEntry *e = g_ptr_array_index(index->entries, i);

        g_print("%s %s %" G_GUINT64_FORMAT " %s %s\n", e->name, e->version,
                e->size, e->sha256, e->path);
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*run)(int argc, char **argv);
    } cmds[] = {
        { "publish", repo_tool_publish },
        { "fetch", repo_tool_fetch },
        { "list", repo_tool_list },
    };

    if (argc >= 2) {
        for (gsize i = 0; i < G_N_ELEMENTS(cmds); i++) {
            if (strcmp(argv[1], cmds[i].name) == 0) {
                return cmds[i].run(argc - 1, argv + 1);
            }
        }
    }
    g_printerr("usage: vmaugment-repo publish|fetch|list [--help] ...\n");
    return 1;
}
