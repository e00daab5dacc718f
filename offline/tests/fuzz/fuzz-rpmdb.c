/*
 * Fuzz target: an rpm guest's database (rpmdb.sqlite) as the guest left
 * it: SQLite's file format from memory, rpm's package table and the
 * package headers librpm imports from it.  The seed is the database rpm
 * itself made for the offline tests' rpm guest (make-fixtures.sh rpm).
 * Build with clang -fsanitize=fuzzer; fuzz-run.c replays a corpus in
 * ordinary builds.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stdint.h>

#include "vo-inventory.h"
#include "vo-rpm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_quiet(const gchar *domain, GLogLevelFlags level,
                       const gchar *message, gpointer user_data)
{
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autoptr(GBytes) bytes = g_bytes_new(data, size);
    g_autoptr(VoInventory) inv = NULL;
    g_autoptr(GError) error = NULL;

    g_log_set_default_handler(fuzz_quiet, NULL);
    inv = vo_inventory_parse_linux("linux", NULL, NULL, &error);
    g_assert(inv);
    if (vo_rpm_parse_db(bytes, vo_inventory_add_rpm, inv, &error)) {
        /* What the report needs: every package named, UTF-8 throughout
         * (vo_inventory_add_package() drops the others). */
        for (guint i = 0; i < inv->package_list->len; i++) {
            VoPackage *p = inv->package_list->pdata[i];

            g_assert(p->name && g_utf8_validate(p->name, -1, NULL));
        }
    } else {
        g_assert(error != NULL);
    }
    return 0;
}
