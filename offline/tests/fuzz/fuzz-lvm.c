/*
 * Fuzz target: an LVM2 physical volume as the guest left it (label,
 * metadata area header, the metadata text and the volumes it describes),
 * read from the input as a whole disk through the in-memory block layer.
 * Seeds: corpus-lvm, made by corpus-lvm-seeds.sh with lvm's own tools.
 * Build with clang -fsanitize=fuzzer; fuzz-run.c replays a corpus in
 * ordinary builds.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stdint.h>
#include <string.h>

#include "vo-lvm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_quiet(const gchar *domain, GLogLevelFlags level,
                       const gchar *message, gpointer user_data)
{
}

typedef struct {
    size_t size;
    guint volumes;
} FuzzPv;

/* What the reader promises: every volume named, and inside the PV. */
static void fuzz_volume(const char *name, guint64 offset, guint64 size,
                        gpointer data)
{
    FuzzPv *pv = data;

    g_assert(strchr(name, '/'));
    g_assert(offset <= pv->size && size <= pv->size - offset);
    pv->volumes++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autoptr(GBytes) bytes = g_bytes_new(data, size);
    g_autoptr(VoDisk) disk = NULL;
    g_autoptr(GError) error = NULL;
    FuzzPv pv = { size, 0 };

    g_log_set_default_handler(fuzz_quiet, NULL);
    disk = vo_disk_new_from_memory(bytes, FALSE);
    if (!vo_lvm_scan(disk, 0, size, fuzz_volume, &pv, &error)) {
        g_assert(error != NULL);
    }
    return 0;
}
