/*
 * Fuzz target: a Windows guest's SOFTWARE registry hive, as hivex and our
 * inventory walk read it (the product name and build under
 * Microsoft\Windows NT\CurrentVersion, the Uninstall keys).  The guest
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
    g_autoptr(GPtrArray) entries = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GError) error = NULL;
    GHashTableIter it;
    gpointer key, value;

    if (!quiet) {
        g_log_set_default_handler(fuzz_quiet, NULL);
        quiet = TRUE;
    }
    if (!vo_registry_inventory_hive(hive, os, entries, &error)) {
        g_assert(error != NULL);
        g_assert(entries->len == 0);
        return 0;
    }
    g_assert_cmpstr(g_hash_table_lookup(os, "id"), ==, "windows");
    /* What inspect prints as JSON strings must be UTF-8. */
    g_hash_table_iter_init(&it, os);
    while (g_hash_table_iter_next(&it, &key, &value)) {
        g_assert(g_utf8_validate(value, -1, NULL));
    }
    /* (name, version) pairs. */
    g_assert(entries->len % 2 == 0);
    for (guint i = 0; i < entries->len; i++) {
        g_assert(g_utf8_validate(entries->pdata[i], -1, NULL));
    }
    return 0;
}
