/*
 * Fuzz target: a Windows guest's SOFTWARE registry hive, as hivex and our
 * inventory walk read it (the product name, build and UBR under
 * Microsoft\Windows NT\CurrentVersion, the Uninstall keys, the update
 * packages of Component Based Servicing; and, read as a SYSTEM hive, the
 * host name of the current control set).  The guest
 * wrote the hive and may have crafted it against the host that inspects
 * it.  Each input is copied to a temporary file, as the product does,
 * so keep TMPDIR on a memory file system for long runs.
 *
 * The seed hives grew from hivex's upstream test hive images/minimal with
 * hivexsh, as offline/tests/make-fixtures.sh grows the fixture's.
 * Build with clang -fsanitize=fuzzer; fuzz-run.c replays a corpus in
 * ordinary builds.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stdint.h>
#include <string.h>

#include "vo-registry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_quiet(const gchar *domain, GLogLevelFlags level,
                       const gchar *message, gpointer user_data)
{
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static gboolean quiet;
    g_autoptr(GBytes) hive = g_bytes_new_static(data, size);
    g_autoptr(GHashTable) os = g_hash_table_new_full(g_str_hash, g_str_equal,
                                                     g_free, g_free);
    g_autoptr(GHashTable) sys = g_hash_table_new_full(g_str_hash,
                                                      g_str_equal, g_free,
                                                      g_free);
    g_autoptr(GPtrArray) apps = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vo_win_app_free);
    g_autoptr(GPtrArray) updates = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vo_win_update_free);
    g_autoptr(GError) error = NULL;
    g_autoptr(GError) sys_error = NULL;
    GHashTableIter it;
    gpointer key, value;

    if (!quiet) {
        g_log_set_default_handler(fuzz_quiet, NULL);
        quiet = TRUE;
    }
    /* The same bytes as a SYSTEM hive: a host name or an error. */
    if (vo_registry_system_hive(hive, sys, &sys_error)) {
        const char *host = g_hash_table_lookup(sys, "hostname");

        g_assert(!host || g_utf8_validate(host, -1, NULL));
    } else {
        g_assert(sys_error != NULL);
    }
    if (!vo_registry_inventory_hive(hive, os, apps, updates, &error)) {
        g_assert(error != NULL);
        return 0;
    }
    g_assert_cmpstr(g_hash_table_lookup(os, "id"), ==, "windows");
    /* What inspect prints as JSON strings must be UTF-8. */
    g_hash_table_iter_init(&it, os);
    while (g_hash_table_iter_next(&it, &key, &value)) {
        g_assert(g_utf8_validate(value, -1, NULL));
    }
    for (guint i = 0; i < apps->len; i++) {
        const VoWinApp *app = apps->pdata[i];

        g_assert(app->key && g_utf8_validate(app->key, -1, NULL));
        g_assert(!app->display_name ||
                 g_utf8_validate(app->display_name, -1, NULL));
        g_assert(!app->version || g_utf8_validate(app->version, -1, NULL));
        g_assert(!app->publisher ||
                 g_utf8_validate(app->publisher, -1, NULL));
        g_assert(!app->install_date ||
                 g_utf8_validate(app->install_date, -1, NULL));
    }
    for (guint i = 0; i < updates->len; i++) {
        const VoWinUpdate *u = updates->pdata[i];

        g_assert(g_utf8_validate(u->package, -1, NULL));
        g_assert(!u->kb || (g_str_has_prefix(u->kb, "KB") &&
                            strstr(u->package, u->kb)));
        g_assert(vo_registry_cbs_state_name(u->state) != NULL);
    }
    return 0;
}
