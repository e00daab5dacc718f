/*
 * Fuzz target: a Linux guest's /var/lib/dpkg/status and os-release, which
 * the guest wrote and may have crafted against the host that inspects it
 * (docs/threat-model.rst).  The same bytes are read as both files.
 * Build with clang -fsanitize=fuzzer; fuzz-run.c replays a corpus in
 * ordinary builds.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stdint.h>
#include <string.h>

#include "vo-inventory.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A key of inv->packages names its package: "name" or "name:arch". */
static gboolean fuzz_names(const VoPackage *p, const char *key)
{
    g_autofree char *exact = g_strdup_printf("%s:%s", p->name,
                                             p->architecture);

    return strcmp(p->name, key) == 0 || strcmp(exact, key) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autoptr(GBytes) bytes = g_bytes_new_static(data, size);
    g_autoptr(VoInventory) inv = NULL;
    g_autoptr(GError) error = NULL;
    GHashTableIter it;
    gpointer key, value;

    inv = vo_inventory_parse_linux("linux", bytes, bytes, &error);
    g_assert_no_error(error);
    g_assert_cmpstr(g_hash_table_lookup(inv->os, "family"), ==, "linux");
    /* What inspect prints as JSON strings must be UTF-8. */
    g_hash_table_iter_init(&it, inv->os);
    while (g_hash_table_iter_next(&it, &key, &value)) {
        g_assert(g_utf8_validate(value, -1, NULL));
    }
    for (guint i = 0; i < inv->package_list->len; i++) {
        VoPackage *p = inv->package_list->pdata[i];

        g_assert(g_utf8_validate(p->name, -1, NULL));
        g_assert(g_utf8_validate(p->version, -1, NULL));
        g_assert(p->status != NULL && p->architecture != NULL);
        /* All four reach the worker's report, which must be UTF-8. */
        g_assert(g_utf8_validate(p->status, -1, NULL));
        g_assert(g_utf8_validate(p->architecture, -1, NULL));
    }
    /* Every key finds a package it names, and only listed packages. */
    g_hash_table_iter_init(&it, inv->packages);
    while (g_hash_table_iter_next(&it, &key, &value)) {
        guint idx;

        g_assert(fuzz_names(value, key));
        g_assert(g_ptr_array_find(inv->package_list, value, &idx));
    }
    return 0;
}
