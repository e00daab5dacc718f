/*
 * Fuzz target: an OVF descriptor, written by whoever exported the
 * appliance.  Only plain file names beside the descriptor may come out
 * of it (docs/offline.rst).
 * Build with clang -fsanitize=fuzzer; fuzz-run.c replays a corpus in
 * ordinary builds.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stdint.h>
#include <string.h>

#include "vo-ovf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autoptr(GPtrArray) disks = NULL;
    g_autoptr(GError) error = NULL;

    disks = vo_ovf_parse("/appliances/vm.ovf", (const char *)data, size,
                         &error);
    if (disks == NULL) {
        g_assert(error != NULL);
        return 0;
    }
    g_assert(disks->len > 0);
    for (guint i = 0; i < disks->len; i++) {
        const char *d = disks->pdata[i];
        const char *name = d + strlen("/appliances/");

        /* Beside the descriptor, never above or below it. */
        g_assert(g_str_has_prefix(d, "/appliances/"));
        g_assert(*name != '\0' && *name != '.');
        g_assert(strchr(name, '/') == NULL);
    }
    return 0;
}
