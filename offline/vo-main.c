/*
 * vmaugment-offline: inspect, check, patch and verify VM disk images
 * without booting them.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <stdio.h>
#include <stdlib.h>

#include <json-glib/json-glib.h>

#include "vo-inventory.h"
#include "vo-version.h"

static char *opt_format;

static void vo_main_print_json(JsonNode *node)
{
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autofree char *text = NULL;

    json_generator_set_pretty(gen, TRUE);
    json_generator_set_root(gen, node);
    text = json_generator_to_data(gen, NULL);
    printf("%s\n", text);
}

static gboolean vo_main_inspect(int argc, char **argv, GError **error)
{
    g_autoptr(VoGuest) guest = NULL;
    g_autoptr(VoInventory) inv = NULL;
    g_autoptr(JsonNode) node = NULL;

    if (argc != 2) {
        g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                    "usage: inspect IMAGE");
        return FALSE;
    }
    guest = vo_guest_open(argv[1], opt_format, FALSE, error);
    if (!guest) {
        return FALSE;
    }
    inv = vo_inventory_read(guest, error);
    if (!inv) {
        return FALSE;
    }
    node = vo_inventory_to_json(guest, inv);
    vo_main_print_json(node);
    return TRUE;
}

static gboolean vo_main_compare_versions(int argc, char **argv,
                                         GError **error)
{
    gboolean result;

    if (argc != 4) {
        g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                    "usage: compare-versions A OP B");
        return FALSE;
    }
    if (!vo_version_relate(argv[1], argv[2], argv[3], &result, error)) {
        return FALSE;
    }
    /* Like dpkg --compare-versions: the answer is the exit status. */
    return result ? TRUE : (exit(1), FALSE);
}

static const struct {
    const char *name;
    gboolean (*run)(int argc, char **argv, GError **error);
    const char *help;
} vo_main_commands[] = {
    { "inspect", vo_main_inspect,
      "IMAGE                 print drives, OS and packages as JSON" },
    { "compare-versions", vo_main_compare_versions,
      "A OP B       compare Debian versions (exit 0 if true)" },
};

int main(int argc, char **argv)
{
    g_autoptr(GOptionContext) ctx = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(GString) summary = g_string_new("Commands:\n");
    GOptionEntry entries[] = {
        { "format", 'f', 0, G_OPTION_ARG_STRING, &opt_format,
          "Image format (default: probed by qemu-img)", "FMT" },
        { NULL },
    };

    for (gsize i = 0; i < G_N_ELEMENTS(vo_main_commands); i++) {
        g_string_append_printf(summary, "  %s %s\n", vo_main_commands[i].name,
                               vo_main_commands[i].help);
    }
    ctx = g_option_context_new("COMMAND [ARGS...]");
    g_option_context_set_summary(ctx, summary->str);
    g_option_context_add_main_entries(ctx, entries, NULL);
    if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
        fprintf(stderr, "vmaugment-offline: %s\n", error->message);
        return 2;
    }
    if (argc < 2) {
        g_autofree char *help = g_option_context_get_help(ctx, TRUE, NULL);

        fprintf(stderr, "%s", help);
        return 2;
    }
    for (gsize i = 0; i < G_N_ELEMENTS(vo_main_commands); i++) {
        if (g_str_equal(argv[1], vo_main_commands[i].name)) {
            if (!vo_main_commands[i].run(argc - 1, argv + 1, &error)) {
                fprintf(stderr, "vmaugment-offline: %s\n", error->message);
                return error->domain == VO_ERROR &&
                               error->code == VO_ERROR_NOT_APPLICABLE
                           ? 3
                           : 1;
            }
            return 0;
        }
    }
    fprintf(stderr, "vmaugment-offline: unknown command '%s'\n", argv[1]);
    return 2;
}
