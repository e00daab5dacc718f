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
 * --json reports on stdout, also on failure.  Exit status (docs/cli.rst):
 * 0 done, 1 failed (network, not found, local error), 2 usage, 4 refused
 * (signature, expiry, rollback, mismatch, size, TLS).
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <string.h>

#include "vmaug-cli.h"
#include "repo-private.h"
#include "vmaugment-repo.h"

static gboolean opt_json;

/* "vmaugment-repo: COMMAND: why", the JSON report when asked for, and
 * the exit status. */
static int repo_tool_status(const char *command, const GError *error)
{
    if (opt_json) {
        vmaug_cli_print_failure(error);
    }
    return vmaug_cli_fail(error, "%s", command);
}

/* -1 to go on, else the exit status. */
static int repo_tool_parse(GOptionContext *ctx, const char *const *examples,
                           int *argc, char ***argv)
{
    vmaug_cli_setup(ctx, &opt_json, examples);
    return vmaug_cli_parse(ctx, argc, argv);
}

static int repo_tool_publish(int argc, char **argv)
{
    static const char *const examples[] = {
        "vmaugment-repo publish --dir /srv/modules --key admin.key "
        "--cert admin.crt *.vmod",
        NULL
    };
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

    int status;

    g_option_context_add_main_entries(ctx, entries, NULL);
    if ((status = repo_tool_parse(ctx, examples, &argc, &argv)) >= 0) {
        return status;
    }
    if (dir == NULL || key == NULL || cert == NULL) {
        return vmaug_cli_usage("publish: --dir, --key and --cert are "
                               "required");
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
            return vmaug_cli_usage("publish: --expires needs an ISO 8601 "
                                   "time with zone");
        }
        opts.expires = g_date_time_to_unix(dt);
    } else {
        if (expires_days < 1 || expires_days > 3660) {
            return vmaug_cli_usage("publish: --expires-days takes 1..3660");
        }
        opts.expires = now + (gint64)expires_days * 86400;
    }
    if (opts.expires <= now) {
        return vmaug_cli_usage("publish: the expiry is in the past");
    }
    index = vmaug_repo_publish(&opts, (const gchar *const *)argv + 1, &error);
    if (index == NULL) {
        return repo_tool_status("publish", error);
    }
    if (opt_json) {
        g_autoptr(JsonBuilder) b = json_builder_new();

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "metadata_version");
        json_builder_add_int_value(b, index->version);
        json_builder_set_member_name(b, "packages");
        json_builder_add_int_value(b, index->entries->len);
        json_builder_set_member_name(b, "signer");
        json_builder_add_string_value(b, index->signer);
        vmaug_cli_print_report(b, "published", NULL);
        return VMAUG_EXIT_OK;
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

/* -1 to go on, else the exit status. */
static int repo_tool_client_parse(RepoToolClient *c, const gchar *usage,
                                  const char *const *examples,
                                  gboolean fetch, int *argc, char ***argv,
                                  VmaugRepoOptions *opts)
{
    g_autoptr(GOptionContext) ctx = g_option_context_new(usage);
    int status;
    GOptionEntry entries[] = {
        { "url", 0, 0, G_OPTION_ARG_STRING, &c->url,
          "Repository base URL (https://) or directory (/path, file:///path)",
          "URL" },
        { "trust-dir", 0, 0, G_OPTION_ARG_FILENAME, &c->trust_dir,
          "Trust store of administrator certificates (default: the "
          "host's)", "DIR" },
        { "state-dir", 0, 0, G_OPTION_ARG_FILENAME, &c->state_dir,
          "Where accepted metadata versions are remembered", "DIR" },
        { "ca-file", 0, 0, G_OPTION_ARG_FILENAME, &c->ca_file,
          "PEM CA certificates for TLS (default: the system's)", "FILE" },
        { "timeout-ms", 0, 0, G_OPTION_ARG_INT, &c->timeout_ms,
          "Bound on the whole fetch", "MS" },
        { NULL }
    };
    /* Only fetch writes a package: list offers none of these. */
    GOptionEntry fetch_entries[] = {
        { "dest", 0, 0, G_OPTION_ARG_FILENAME, &c->dest,
          "Directory the package is written to", "DIR" },
        { "max-size", 0, 0, G_OPTION_ARG_INT64, &c->max_size,
          "Largest package accepted, bytes", "N" },
        { NULL }
    };

    g_option_context_add_main_entries(ctx, entries, NULL);
    if (fetch) {
        g_option_context_add_main_entries(ctx, fetch_entries, NULL);
    }
    if ((status = repo_tool_parse(ctx, examples, argc, argv)) >= 0) {
        return status;
    }
    if (c->url == NULL || c->state_dir == NULL ||
        (fetch && c->dest == NULL)) {
        return vmaug_cli_usage("--url, --state-dir%s are required",
                               fetch ? " and --dest" : "");
    }
    if (c->timeout_ms < 0 || c->max_size < 0) {
        return vmaug_cli_usage("negative limits");
    }
    if (c->trust_dir == NULL) {
        c->trust_dir = g_strdup(vmaug_cli_default_trust_dir());
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
    return -1;
}

static int repo_tool_fetch(int argc, char **argv)
{
    g_auto(RepoToolClient) c = { 0 };
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugRepoResult) r = NULL;
    VmaugRepoOptions opts;
    static const char *const examples[] = {
        "vmaugment-repo fetch --url https://modules.example.org/ "
        "--state-dir /var/lib/vmaugment/repo --dest . printer 1.1",
        NULL
    };
    int status;

    status = repo_tool_client_parse(&c, "NAME [VERSION] - fetch a module",
                                    examples, TRUE, &argc, &argv, &opts);
    if (status >= 0) {
        return status;
    }
    if (argc < 2 || argc > 3) {
        return vmaug_cli_usage("fetch: NAME [VERSION] expected");
    }
    r = vmaug_repo_fetch(&opts, argv[1], argc == 3 ? argv[2] : NULL, c.dest,
                         &error);
    if (r == NULL) {
        return repo_tool_status("fetch", error);
    }
    if (opt_json) {
        g_autoptr(JsonBuilder) b = json_builder_new();

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "name");
        json_builder_add_string_value(b, r->name);
        json_builder_set_member_name(b, "version");
        json_builder_add_string_value(b, r->version);
        json_builder_set_member_name(b, "sha256");
        json_builder_add_string_value(b, r->sha256);
        json_builder_set_member_name(b, "size");
        json_builder_add_int_value(b, (gint64)r->size);
        json_builder_set_member_name(b, "path");
        json_builder_add_string_value(b, r->path);
        json_builder_set_member_name(b, "signer");
        json_builder_add_string_value(b, r->signer);
        json_builder_set_member_name(b, "metadata_version");
        json_builder_add_int_value(b, r->index_version);
        vmaug_cli_print_report(b, "fetched", NULL);
        return VMAUG_EXIT_OK;
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
    static const char *const examples[] = {
        "vmaugment-repo list --url https://modules.example.org/ "
        "--state-dir /var/lib/vmaugment/repo --json",
        NULL
    };
    int status;

    status = repo_tool_client_parse(&c, "- list a repository", examples,
                                    FALSE, &argc, &argv, &opts);
    if (status >= 0) {
        return status;
    }
    if (argc != 1) {
        return vmaug_cli_usage("list takes no arguments");
    }
    index = vmaug_repo_fetch_index(&opts, &error);
    if (index == NULL) {
        return repo_tool_status("list", error);
    }
    dt = g_date_time_new_from_unix_utc(index->expires);
    when = g_date_time_format(dt, "%Y-%m-%dT%H:%M:%SZ");
    if (opt_json) {
        g_autoptr(JsonBuilder) b = json_builder_new();

        /* The signed index as it verified, and who signed it. */
        json_builder_begin_object(b);
        repo_index_build(b, index);
        json_builder_set_member_name(b, "signer");
        json_builder_add_string_value(b, index->signer);
        vmaug_cli_print_report(b, "ok", NULL);
        return VMAUG_EXIT_OK;
    }
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
        const char *summary;
    } cmds[] = {
        { "publish", repo_tool_publish,
          "write a signed repository of packages to a directory" },
        { "fetch", repo_tool_fetch, "fetch and check one module" },
        { "list", repo_tool_list, "list a repository's signed index" },
    };

    vmaug_cli_init("vmaugment-repo");
    if (argc >= 2) {
        for (gsize i = 0; i < G_N_ELEMENTS(cmds); i++) {
            if (strcmp(argv[1], cmds[i].name) == 0) {
                g_autofree gchar *prg = g_strconcat("vmaugment-repo ",
                                                    argv[1], NULL);

                /* So that each command's --help names it. */
                g_set_prgname(prg);
                return cmds[i].run(argc - 1, argv + 1);
            }
        }
    }
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 ||
                      strcmp(argv[1], "-h") == 0)) {
        g_print("Usage: vmaugment-repo COMMAND [OPTION...]\n\nCommands:\n");
        for (gsize i = 0; i < G_N_ELEMENTS(cmds); i++) {
            g_print("  %-8s %s\n", cmds[i].name, cmds[i].summary);
        }
        g_print("\n\"vmaugment-repo COMMAND --help\" describes a command."
                "\n\nExamples:\n"
                "  vmaugment-repo publish --dir /srv/modules --key admin.key "
                "--cert admin.crt *.vmod\n"
                "  vmaugment-repo list --url https://modules.example.org/ "
                "--state-dir /var/lib/vmaugment/repo\n"
                "\nExit status: %d done, %d failed, %d usage, %d refused "
                "(signature or policy); see docs/cli.rst.\n",
                VMAUG_EXIT_OK, VMAUG_EXIT_FAILURE, VMAUG_EXIT_USAGE,
                VMAUG_EXIT_REFUSED);
        return VMAUG_EXIT_OK;
    }
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        g_print("vmaugment-repo %s\n", vmaug_cli_version());
        return VMAUG_EXIT_OK;
    }
    if (argc < 2) {
        return vmaug_cli_usage("a command is required: publish, fetch or "
                               "list");
    }
    return vmaug_cli_usage("unknown command or option %s", argv[1]);
}
