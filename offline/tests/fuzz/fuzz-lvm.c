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

static void fuzz_partition_free(VoPartition *p)
{
    g_free(p->type);
    g_free(p->volume);
    g_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autoptr(GBytes) bytes = g_bytes_new(data, size);
    g_autoptr(VoDisk) disk = NULL;
    g_autoptr(GPtrArray) parts = NULL;
    g_autoptr(GError) error = NULL;
    VoPartition pv = { .size = size, .fstype = (char *)"LVM2_member" };

    g_log_set_default_handler(fuzz_quiet, NULL);
    disk = vo_disk_new_from_memory(bytes, "raw", FALSE);
    parts = g_ptr_array_new_with_free_func(
        (GDestroyNotify)fuzz_partition_free);
    if (vo_lvm_scan(disk, &pv, parts, &error)) {
        for (guint i = 0; i < parts->len; i++) {
            VoPartition *p = parts->pdata[i];

            /* What the reader promises: every volume inside the PV. */
            g_assert(p->offset <= size && p->size <= size - p->offset);
            g_assert(p->volume && strchr(p->volume, '/'));
        }
    } else {
        g_assert(error != NULL);
    }
    return 0;
}
