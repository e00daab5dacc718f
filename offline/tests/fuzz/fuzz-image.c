/*
 * Fuzz targets fuzz-image-ext and fuzz-image-ntfs: a whole guest disk,
 * read as the offline worker reads one for inspect.  The input is the
 * raw disk, which the guest wrote and may have crafted against its
 * reader; it reaches the real readers through the in-memory block layer
 * (vo_disk_new_from_memory(): the worker's page cache, without qemu-nbd):
 * the partition table and superblocks (libblkid), the filesystems
 * (libext2fs, libntfs-3g), the guest's map (fstab, or the drive letters
 * of the SYSTEM hive) and the inventory (os-release and the dpkg status,
 * or the SOFTWARE hive through hivex): vo_mounts_open() and
 * vo_inventory_read(), the code path of the worker's inspect job.
 *
 * The two targets share this code and differ by their seed corpus
 * (corpus-image-ext, corpus-image-ntfs), so that each campaign mutates
 * one kind of guest.  The seeds are tiny disks made by
 * corpus-image-seeds.sh, which says how; the libraries themselves are
 * Debian's, not instrumented, so coverage steers by our code only and a
 * library's memory error shows as the signal it raises.
 * Build with clang -fsanitize=fuzzer; fuzz-run.c replays a corpus in
 * ordinary builds.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stdint.h>
#include <string.h>

#include "vo-inventory.h"
#include "vo-mounts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_quiet(const gchar *domain, GLogLevelFlags level,
                       const gchar *message, gpointer user_data)
{
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static gboolean quiet;
    g_autoptr(GBytes) bytes = g_bytes_new_static(data, size);
    g_autoptr(VoGuest) guest = NULL;
    g_autoptr(VoInventory) inv = NULL;
    g_autoptr(JsonNode) node = NULL;
    g_autoptr(GError) error = NULL;
    g_autofree char *text = NULL;
    VoMount *root;

    if (!quiet) {
        g_log_set_default_handler(fuzz_quiet, NULL);
        quiet = TRUE;
    }
    /* Read-only, as inspect opens it: nothing may be written. */
    guest = vo_mounts_open(vo_disk_new_from_memory(bytes, FALSE),
                         "fuzz.img", &error);
    if (!guest) {
        g_assert(error != NULL);
        return 0;
    }
    g_assert(g_str_equal(guest->family, "linux") ||
             g_str_equal(guest->family, "windows"));
    g_assert(guest->mounts->len >= 1);
    root = guest->mounts->pdata[0];
    g_assert_cmpstr(root->mountpoint, ==, "/");
    g_assert(root->fs != NULL && !root->fs->writable);
    for (guint i = 0; i < guest->layout->partitions->len; i++) {
        VoPartition *p = guest->layout->partitions->pdata[i];

        /* Every partition lies inside the disk. */
        g_assert(p->offset <= size && p->size <= size - p->offset);
    }
    inv = vo_inventory_read(guest, &error);
    if (!inv) {
        g_assert(error != NULL);
        return 0;
    }
    g_assert_no_error(error);
    /* What the worker reports: valid JSON, as its parent will check. */
    node = vo_inventory_to_json(guest, inv);
    text = json_to_string(node, FALSE);
    g_assert(text != NULL && g_utf8_validate(text, -1, NULL));
    return 0;
}
