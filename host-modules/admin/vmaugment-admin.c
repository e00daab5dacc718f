/*
 * vmaugment-admin: administer the module store, the trust store, image
 * registrations and the audit log without a running QEMU.
 *
 *   vmaugment-admin modules [--store DIR] [--trust-dir DIR] [--json]
 *   vmaugment-admin verify [--store DIR] [--trust-dir DIR] NAME [VERSION]
 *   vmaugment-admin install [--store DIR] [--trust-dir DIR] PACKAGE.vmod
 *   vmaugment-admin trust list|add|remove [--trust-dir DIR] ...
 *   vmaugment-admin registrations list --image IMG [--json]
 *   vmaugment-admin register --image IMG NAME [--version V]
 *                            --events image-start,... [--required]
 *   vmaugment-admin unregister --image IMG NAME
 *   vmaugment-admin audit [--store DIR] [--module NAME] [--since TIME]
 *   vmaugment-admin invoke [--socket PATH] [--json] MODULE FUNCTION [INPUT]
 *
 * Exit status: 0 done, 1 failed, 2 usage, 4 refused by signature or
 * policy (docs/cli.rst).
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stdio.h>
#include <string.h>

#include "admin.h"

gboolean admin_global_json;
/* Whether the running command was asked for JSON: failures report in it. */
static gboolean admin_json_asked;
int admin_parse_exit;

int admin_fail(int status, const gchar *format, ...)
{
    g_autofree gchar *msg = NULL;
    va_list ap;

    va_start(ap, format);
    msg = g_strdup_vprintf(format, ap);
    va_end(ap);
    if (admin_json_asked) {
        g_autoptr(JsonBuilder) b = json_builder_new();

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "command");
        json_builder_add_string_value(b, g_get_prgname());
        json_builder_set_member_name(b, "error");
        json_builder_add_string_value(b, msg);
        vmaug_cli_print_report(b, vmaug_exit_status_word(status), NULL);
    }
    if (status == ADMIN_EXIT_USAGE) {
        return vmaug_cli_usage("%s", msg);
    }
    g_printerr("vmaugment-admin: %s\n", msg);
    return status;
}

int admin_fail_error(const GError *error)
{
    return admin_fail(vmaug_cli_status(error), "%s", error->message);
}

gboolean admin_parse(GOptionContext *ctx, const GOptionEntry *entries,
                     gboolean *json, int *argc, char ***argv)
{
    gboolean has_version = FALSE;
    int status;

    if (entries != NULL) {
        g_option_context_add_main_entries(ctx, entries, NULL);
    }
    if (json != NULL) {
        *json = admin_global_json;
    }
    /* register's --version is the module's: the tool's is given before
     * the command ("vmaugment-admin --version"). */
    for (gsize i = 0; entries != NULL && entries[i].long_name != NULL; i++) {
        has_version |= g_str_equal(entries[i].long_name, "version");
    }
    vmaug_cli_setup_full(ctx, !has_version, TRUE, json, NULL);
    admin_json_asked = json != NULL && *json;
    status = vmaug_cli_parse(ctx, argc, argv);
    admin_json_asked = json != NULL && *json;
    admin_parse_exit = status;
    return status < 0;
}

void admin_print_json(JsonNode *root)
{
    vmaug_cli_print_json(root);
}

gchar *admin_printable(const gchar *text, gssize len)
{
    g_autofree gchar *valid = g_utf8_make_valid(text, len);
    GString *out = g_string_new(NULL);

    /* Escape controls so a crafted name or log line cannot drive the
     * terminal or fake extra lines. */
    for (const gchar *p = valid; *p != '\0'; p = g_utf8_next_char(p)) {
        gunichar c = g_utf8_get_char(p);

        if (c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0)) {
            g_string_append_printf(out, "\\x%02x", c);
        } else {
            g_string_append_unichar(out, c);
        }
    }
    return g_string_free(out, FALSE);
}

gchar *admin_format_time(gint64 t)
{
    g_autoptr(GDateTime) dt = NULL;

    dt = t >= 0 ? g_date_time_new_from_unix_utc(t) : NULL;
    if (dt == NULL) {
        return g_strdup("-");
    }
    return g_date_time_format(dt, "%Y-%m-%dT%H:%M:%SZ");
}

static void admin_log_drop(const gchar *domain, GLogLevelFlags level,
                           const gchar *message, gpointer data)
{
}

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} admin_cmds[] = {
    { "modules", admin_cmd_modules, "list stored modules" },
    { "verify", admin_cmd_verify, "verify a stored module again" },
    { "install", admin_cmd_install, "verify and store a package" },
    { "trust", admin_cmd_trust, "list, add or remove trusted certificates" },
    { "registrations", admin_cmd_registrations,
      "list the modules registered with an image" },
    { "register", admin_cmd_register, "register a module with an image" },
    { "unregister", admin_cmd_unregister,
      "remove a module's registration" },
    { "audit", admin_cmd_audit, "show the store's audit log" },
    { "invoke", admin_cmd_invoke,
      "call a stored module through the running helper" },
};

static int admin_usage(FILE *out, int status)
{
    fprintf(out, "Usage: vmaugment-admin [--json] COMMAND [OPTION...]\n\n"
                 "Commands:\n");
    for (gsize i = 0; i < G_N_ELEMENTS(admin_cmds); i++) {
        fprintf(out, "  %-15s %s\n", admin_cmds[i].name,
                admin_cmds[i].summary);
    }
    fprintf(out, "\nOptions before the command: --json, -v/--verbose, "
                 "--version, --help.\n"
                 "\"vmaugment-admin COMMAND --help\" describes a command."
                 "\n\nExamples:\n"
                 "  vmaugment-admin trust add admin.crt\n"
                 "  vmaugment-admin install printer-1.0.vmod\n"
                 "  vmaugment-admin --json modules\n"
                 "  vmaugment-admin invoke echo echo hello\n"
                 "  vmaugment-admin audit --module printer --since "
                 "2026-11-01T00:00:00Z\n"
                 "\nExit status: %d done, %d failed, %d usage, %d refused "
                 "(signature or policy); see docs/cli.rst.\n",
            ADMIN_EXIT_OK, ADMIN_EXIT_FAILED, ADMIN_EXIT_USAGE,
            ADMIN_EXIT_REFUSED);
    return status;
}

int main(int argc, char **argv)
{
    int first = 1;

    vmaug_cli_init("vmaugment-admin");
    /* The store reports each decision as a message too; this tool prints
     * its own line for it, so only warnings of the libraries get through. */
    g_log_set_handler("vmaugment-store",
                      G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO, admin_log_drop,
                      NULL);

    /* Options before the command apply to all of it. */
    while (first < argc && argv[first][0] == '-') {
        if (strcmp(argv[first], "--json") == 0) {
            admin_global_json = TRUE;
        } else if (strcmp(argv[first], "--help") == 0 ||
                   strcmp(argv[first], "-h") == 0) {
            return admin_usage(stdout, ADMIN_EXIT_OK);
        } else if (strcmp(argv[first], "--version") == 0) {
            g_print("vmaugment-admin %s\n", vmaug_cli_version());
            return ADMIN_EXIT_OK;
        } else if (strcmp(argv[first], "--verbose") == 0 ||
                   strcmp(argv[first], "-v") == 0) {
            g_setenv("G_MESSAGES_DEBUG", "all", TRUE);
        } else {
            return admin_fail(ADMIN_EXIT_USAGE, "unknown option %s",
                              argv[first]);
        }
        first++;
    }
    if (first >= argc) {
        return admin_fail(ADMIN_EXIT_USAGE, "a command is required");
    }
    for (gsize i = 0; i < G_N_ELEMENTS(admin_cmds); i++) {
        if (strcmp(argv[first], admin_cmds[i].name) == 0) {
            g_autofree gchar *prg = g_strconcat("vmaugment-admin ",
                                                argv[first], NULL);

            /* So that each command's --help names it. */
            g_set_prgname(prg);
            return admin_cmds[i].run(argc - first, argv + first);
        }
    }
    return admin_fail(ADMIN_EXIT_USAGE, "unknown command %s", argv[first]);
}
