/*
 * Fuzz target: a Linux guest's /etc/fstab (libmount's parser and our
 * mapping of its entries to the partitions of the disk), which the guest
 * wrote and may have crafted against the host that services it.  The
 * guest here has a root mount and two partitions, one found by UUID and
 * one by device name, with no filesystem open: the mapping, not the
 * filesystems, is under test.
 * Build with clang -fsanitize=fuzzer; fuzz-run.c replays a corpus in
 * ordinary builds.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stdint.h>
#include <string.h>

#include "vo-mounts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_quiet(const gchar *domain, GLogLevelFlags level,
                       const gchar *message, gpointer user_data)
{
}

static void fuzz_partition_free(VoPartition *p)
{
    g_free(p->part_uuid);
    g_free(p->fstype);
    g_free(p->fs_uuid);
    g_free(p->fs_label);
    g_free(p);
}

static void fuzz_mount_free(VoMount *m)
{
    g_free(m->mountpoint);
    g_free(m->problem);
    g_free(m);
}

static VoPartition *fuzz_partition(int number, const char *fstype,
                                   const char *uuid, const char *label)
{
    VoPartition *p = g_new0(VoPartition, 1);

    p->number = number;
    p->offset = number * 1048576ull;
    p->size = 1048576;
    p->fstype = g_strdup(fstype);
    p->fs_uuid = g_strdup(uuid);
    p->fs_label = g_strdup(label);
    return p;
}

static VoGuest *fuzz_guest(void)
{
    VoGuest *g = g_new0(VoGuest, 1);
    VoMount *root = g_new0(VoMount, 1);

    g->family = g_strdup("linux");
    g->layout = g_new0(VoLayout, 1);
    g->layout->table = g_strdup("gpt");
    g->layout->partitions = g_ptr_array_new_with_free_func(
        (GDestroyNotify)fuzz_partition_free);
    g_ptr_array_add(g->layout->partitions,
                    fuzz_partition(1, "ext4",
                                   "0f3c7a2e-1b2d-4e5f-8a9b-0c1d2e3f4a5b",
                                   "root"));
    g_ptr_array_add(g->layout->partitions,
                    fuzz_partition(2, "xfs", "1234-ABCD", "data"));
    g->filesystems = g_ptr_array_new();
    g_ptr_array_add(g->filesystems, NULL);
    g_ptr_array_add(g->filesystems, NULL);
    g->mounts = g_ptr_array_new_with_free_func(
        (GDestroyNotify)fuzz_mount_free);
    root->mountpoint = g_strdup("/");
    root->part = g->layout->partitions->pdata[0];
    g_ptr_array_add(g->mounts, root);
    return g;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static gboolean quiet;
    g_autoptr(GBytes) fstab = g_bytes_new_static(data, size);
    g_autoptr(VoGuest) guest = fuzz_guest();
    g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);
    g_autoptr(GError) error = NULL;

    if (!quiet) {
        g_log_set_default_handler(fuzz_quiet, NULL);
        quiet = TRUE;
    }
    if (!vo_mounts_parse_fstab(guest, fstab, &error)) {
        /* Only a refusal of the whole table, saying so. */
        g_assert_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED);
        return 0;
    }
    g_assert_no_error(error);
    for (guint i = 0; i < guest->mounts->len; i++) {
        VoMount *m = guest->mounts->pdata[i];
        guint idx;

        /* Each mount point once, an absolute path the guest map accepts. */
        g_assert(g_hash_table_add(seen, m->mountpoint));
        g_assert(i == 0 || vo_guest_check_path(m->mountpoint, NULL));
        g_assert(i == 0 || strcmp(m->mountpoint, "/") != 0);
        /* On a partition of this disk, or saying why not. */
        g_assert(m->part == NULL ||
                 g_ptr_array_find(guest->layout->partitions, m->part, &idx));
        g_assert(i == 0 || (m->fs == NULL && m->problem != NULL));
    }
    return 0;
}
