/*
 * Fuzz target: a Linux guest's /var/lib/dpkg/status and os-release, which
 * the guest wrote and may have crafted against the host that inspects it
 * (docs/threat-model.rst).  The same bytes are read as both files, and as
 * the status file whose fields the worker hands to its parent for apt
 * (vo-dpkg-status.h), which the parent then checks.
 * Build with clang -fsanitize=fuzzer; fuzz-run.c replays a corpus in
 * ordinary builds.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stdint.h>
#include <string.h>

#include "vo-dpkg-status.h"
#include "vo-inventory.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A key of inv->packages names its package: "name" or "name:arch". */
static gboolean fuzz_names(const VoPackage *p, const char *key)
{
    g_autofree char *exact = g_strdup_printf("%s:%s", p->name,
                                             p->architecture);

    return strcmp(p->name, key) == 0 || strcmp(exact, key) == 0;
}

/*
 * The status file written for apt holds one package per paragraph, each
 * opening with its name, and only "Field: value" lines without control
 * characters: nothing the guest wrote adds a line or a package.
 */
static void fuzz_apt_status(const VoDpkgStatus *st)
{
    g_auto(GStrv) lines = g_strsplit(st->text, "\n", -1);
    gboolean start = TRUE;
    guint paragraphs = 0;

    for (guint i = 0; lines[i]; i++) {
        const char *l = lines[i];
        const char *colon = strchr(l, ':');

        if (!*l) {
            paragraphs += !start;
            start = TRUE;
            continue;
        }
        g_assert(!start || g_str_has_prefix(l, "Package: "));
        start = FALSE;
        g_assert(colon && colon[1] == ' ' && g_ascii_isupper(l[0]));
        for (const char *c = l; *c; c++) {
            g_assert((guchar)*c >= 0x20 && *c != 0x7f);
        }
    }
    g_assert_cmpuint(paragraphs, ==, st->n_packages);
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
        g_assert(g_utf8_validate(key, -1, NULL));
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
    {
        g_autoptr(JsonNode) dpkg = vo_dpkg_status_extract_bytes(
            inv->os, bytes, NULL, NULL);
        g_autoptr(VoDpkgStatus) st = dpkg ? vo_dpkg_status_from_report(
                                                dpkg, NULL) : NULL;

        if (st) {
            fuzz_apt_status(st);
        }
    }
    return 0;
}
