/*
 * Partition and filesystem discovery.
 *
 * libblkid reads from a file descriptor, not a callback, so it probes a
 * sparse memfd "shadow" of the disk into which we copy only the regions
 * where partition tables and superblocks live.  Reading the whole disk
 * would cost as much as the image is large.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <blkid.h>

#include "vo-layout.h"
#include "vo-lvm.h"

/* GPT entries and the MBR fit in the first MiB; the backup GPT at the end. */
#define VO_TABLE_REGION (1024 * 1024)
/* Superblocks: ext at 1 KiB, btrfs at 64 KiB, LVM/LUKS/XFS/NTFS at 0. */
#define VO_SB_HEAD (1024 * 1024)
/* md 0.90/1.0 and some other metadata sit at the end of the device. */
#define VO_SB_TAIL (128 * 1024)

static void vo_partition_free(VoPartition *p)
{
    g_free(p->type);
    g_free(p->part_uuid);
    g_free(p->part_label);
    g_free(p->fstype);
    g_free(p->fs_uuid);
    g_free(p->fs_label);
    g_free(p->volume);
    g_free(p);
}

void vo_layout_free(VoLayout *layout)
{
    if (!layout) {
        return;
    }
    g_free(layout->table);
    g_free(layout->table_id);
    g_ptr_array_unref(layout->partitions);
    g_free(layout);
}

VoLayout *vo_layout_new(void)
{
    VoLayout *layout = g_new0(VoLayout, 1);

    layout->partitions = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vo_partition_free);
    return layout;
}

/*
 * The shadow and which of its pages hold the disk's bytes: each page is
 * copied once however many of the regions below overlap it (on a disk of
 * a few hundred KiB, a fuzz target's, they all do).
 */
typedef struct {
    VoDisk *disk;
    int fd;
    GHashTable *copied;     /* page index (guint64, as a pointer's bits) */
} VoShadow;

#define VO_SHADOW_PAGE (64 * 1024)

static gboolean vo_layout_mirror(VoShadow *sh, guint64 offset, guint64 len,
                                 GError **error)
{
    guint64 size = vo_disk_get_size(sh->disk);
    guint64 end;

    offset = MIN(offset, size);
    end = offset + MIN(len, size - offset);
    for (guint64 page = offset / VO_SHADOW_PAGE;
         page * VO_SHADOW_PAGE < end; page++) {
        guint64 at = page * VO_SHADOW_PAGE;

        if (g_hash_table_contains(sh->copied, GSIZE_TO_POINTER(page))) {
            continue;
        }
        if (!vo_disk_copy_to_fd(sh->disk, sh->fd, at,
                                MIN((guint64)VO_SHADOW_PAGE, size - at),
                                error)) {
            return FALSE;
        }
        g_hash_table_add(sh->copied, GSIZE_TO_POINTER(page));
    }
    return TRUE;
}

static char *vo_layout_value(blkid_probe pr, const char *name)
{
    const char *value = NULL;

    if (blkid_probe_lookup_value(pr, name, &value, NULL) != 0 || !value) {
        return NULL;
    }
    return g_strdup(value);
}

/* Fills in the filesystem fields of @part; an unknown one leaves NULLs. */
static gboolean vo_layout_probe_fs(VoShadow *sh, VoPartition *part,
                                   GError **error)
{
    blkid_probe pr;
    guint64 tail;
    int r;

    if (!vo_layout_mirror(sh, part->offset,
                          MIN(part->size, (guint64)VO_SB_HEAD), error)) {
        return FALSE;
    }
    tail = part->size > VO_SB_TAIL ? part->size - VO_SB_TAIL : 0;
    if (!vo_layout_mirror(sh, part->offset + tail, part->size - tail,
                          error)) {
        return FALSE;
    }
    pr = blkid_new_probe();
    if (!pr || blkid_probe_set_device(pr, sh->fd, part->offset, part->size)) {
        if (pr) {
            blkid_free_probe(pr);
        }
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "libblkid setup failed");
        return FALSE;
    }
    blkid_probe_enable_superblocks(pr, 1);
    blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_TYPE |
                                      BLKID_SUBLKS_UUID |
                                      BLKID_SUBLKS_LABEL);
    blkid_probe_enable_partitions(pr, 0);
    r = blkid_do_safeprobe(pr);
    if (r == 0) {
        part->fstype = vo_layout_value(pr, "TYPE");
        part->fs_uuid = vo_layout_value(pr, "UUID");
        part->fs_label = vo_layout_value(pr, "LABEL");
    } else if (r == -2) {
        part->fstype = g_strdup("ambivalent");
    }
    blkid_free_probe(pr);
    return TRUE;
}

static guint32 vo_layout_le32(const guint8 *p)
{
    guint32 v;

    memcpy(&v, p, sizeof(v));
    return GUINT32_FROM_LE(v);
}

static gboolean vo_layout_is_extended(guint8 type)
{
    return type == 0x05 || type == 0x0f || type == 0x85;
}

/*
 * An MBR's extended partition chains its logical partitions through boot
 * records (EBRs) that may lie anywhere inside it, where the shadow has
 * zeros: follow the chain here, only to copy each EBR's sector into the
 * shadow; libblkid then reads the partitions from them as from any disk.
 * Each link is relative to the extended partition and, as for Linux and
 * libblkid, may point backwards: the chain comes from the guest, so it
 * stays inside the extended partition and the disk, ends at a record it
 * already visited, and after VO_MAX_LOGICAL records.
 */
#define VO_MAX_LOGICAL 256

static gboolean vo_layout_mirror_ebrs(VoShadow *sh, GError **error)
{
    VoDisk *disk = sh->disk;
    guint64 sectors = vo_disk_get_size(disk) / 512;
    guint8 mbr[512];

    if (sectors == 0 || !vo_disk_pread(disk, mbr, sizeof(mbr), 0, error)) {
        return sectors == 0;
    }
    if (mbr[510] != 0x55 || mbr[511] != 0xaa) {
        return TRUE;
    }
    for (int i = 0; i < 4; i++) {
        const guint8 *e = mbr + 446 + 16 * i;
        guint64 start = vo_layout_le32(e + 8);
        guint64 end = MIN(start + vo_layout_le32(e + 12), sectors);
        guint64 cur = start;
        g_autoptr(GHashTable) seen = NULL;

        if (!vo_layout_is_extended(e[4]) || start == 0) {
            continue;
        }
        seen = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free,
                                     NULL);
        for (int hop = 0; hop < VO_MAX_LOGICAL && cur < end; hop++) {
            guint8 ebr[512];
            const guint8 *link = ebr + 446 + 16;
            guint64 next;

            if (!vo_layout_mirror(sh, cur * 512, 512, error) ||
                !vo_disk_pread(disk, ebr, sizeof(ebr), cur * 512, error)) {
                return FALSE;
            }
            if (ebr[510] != 0x55 || ebr[511] != 0xaa ||
                !vo_layout_is_extended(link[4])) {
                break;
            }
            g_hash_table_add(seen, g_memdup2(&cur, sizeof(cur)));
            next = start + vo_layout_le32(link + 8);
            if (next == start || g_hash_table_contains(seen, &next)) {
                break;
            }
            cur = next;
        }
    }
    return TRUE;
}

static void vo_layout_add_volume(const char *name, guint64 offset,
                                 guint64 size, gpointer data)
{
    VoLayout *layout = data;
    VoPartition *part = g_new0(VoPartition, 1);

    part->volume = g_strdup(name);
    part->type = g_strdup("lvm");
    part->offset = offset;
    part->size = size;
    g_ptr_array_add(layout->partitions, part);
}

/* The logical volumes of every LVM physical volume, after the partitions. */
static gboolean vo_layout_scan_volumes(VoShadow *sh, VoLayout *layout,
                                       GError **error)
{
    guint n = layout->partitions->len;

    for (guint i = 0; i < n; i++) {
        VoPartition *pv = layout->partitions->pdata[i];
        guint first = layout->partitions->len;

        if (g_strcmp0(pv->fstype, "LVM2_member") != 0) {
            continue;
        }
        if (!vo_lvm_scan(sh->disk, pv->offset, pv->size, vo_layout_add_volume,
                         layout, error)) {
            return FALSE;
        }
        for (guint j = first; j < layout->partitions->len; j++) {
            if (!vo_layout_probe_fs(sh, layout->partitions->pdata[j],
                                    error)) {
                return FALSE;
            }
        }
    }
    return TRUE;
}

VoLayout *vo_layout_scan(VoDisk *disk, GError **error)
{
    g_autoptr(VoLayout) layout = vo_layout_new();
    guint64 size = vo_disk_get_size(disk);
    blkid_probe pr = NULL;
    blkid_partlist list;
    VoShadow shadow = { .disk = disk };
    VoShadow *sh = &shadow;

    shadow.copied = g_hash_table_new(NULL, NULL);
    shadow.fd = memfd_create("vmaugment-probe", MFD_CLOEXEC);
    if (shadow.fd < 0 || ftruncate(shadow.fd, size) < 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "cannot create the probe shadow: %s", g_strerror(errno));
        goto fail;
    }
    if (!vo_layout_mirror(sh, 0, VO_TABLE_REGION, error) ||
        !vo_layout_mirror(sh,
                          size > VO_TABLE_REGION ? size - VO_TABLE_REGION : 0,
                          VO_TABLE_REGION, error) ||
        !vo_layout_mirror_ebrs(sh, error)) {
        goto fail;
    }
    pr = blkid_new_probe();
    if (!pr || blkid_probe_set_device(pr, sh->fd, 0, size)) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "libblkid setup failed");
        goto fail;
    }
    blkid_probe_enable_partitions(pr, 1);
    blkid_probe_set_partitions_flags(pr, BLKID_PARTS_ENTRY_DETAILS);
    list = blkid_probe_get_partitions(pr);
    if (list && blkid_partlist_numof_partitions(list) > 0) {
        blkid_parttable table = blkid_partlist_get_table(list);
        int n = blkid_partlist_numof_partitions(list);

        layout->table = g_strdup(table ? blkid_parttable_get_type(table)
                                       : NULL);
        layout->table_id = g_strdup(table ? blkid_parttable_get_id(table)
                                          : NULL);
        for (int i = 0; i < n; i++) {
            blkid_partition par = blkid_partlist_get_partition(list, i);
            VoPartition *part = g_new0(VoPartition, 1);
            blkid_loff_t start = blkid_partition_get_start(par);
            blkid_loff_t len = blkid_partition_get_size(par);

            g_ptr_array_add(layout->partitions, part);
            part->number = blkid_partition_get_partno(par);
            /* Entries come from the image: keep them inside the disk. */
            if (start < 0 || len <= 0 ||
                (guint64)start > size / 512 ||
                (guint64)len > size / 512 - (guint64)start) {
                g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                            "partition %d lies outside the disk",
                            part->number);
                goto fail;
            }
            part->offset = (guint64)start * 512;
            part->size = (guint64)len * 512;
            if (blkid_partition_get_type_string(par)) {
                part->type = g_strdup(blkid_partition_get_type_string(par));
            } else {
                part->type = g_strdup_printf(
                    "0x%02x", blkid_partition_get_type(par));
            }
            part->part_uuid = g_strdup(blkid_partition_get_uuid(par));
            part->part_label = g_strdup(blkid_partition_get_name(par));
            if (blkid_partition_is_extended(par)) {
                continue;
            }
            if (!vo_layout_probe_fs(sh, part, error)) {
                goto fail;
            }
        }
    } else {
        VoPartition *whole = g_new0(VoPartition, 1);

        whole->size = size;
        g_ptr_array_add(layout->partitions, whole);
        if (!vo_layout_probe_fs(sh, whole, error)) {
            goto fail;
        }
    }
    if (!vo_layout_scan_volumes(sh, layout, error)) {
        goto fail;
    }
    blkid_free_probe(pr);
    close(shadow.fd);
    g_hash_table_unref(shadow.copied);
    return g_steal_pointer(&layout);

fail:
    if (pr) {
        blkid_free_probe(pr);
    }
    if (shadow.fd >= 0) {
        close(shadow.fd);
    }
    g_hash_table_unref(shadow.copied);
    return NULL;
}

const char *vo_layout_unsupported_reason(const char *fstype)
{
    static const struct {
        const char *type;
        const char *reason;
    } table[] = {
        /* Its logical volumes are read (vo-lvm.c); the PV itself is not a
         * filesystem. */
        { "LVM2_member", "LVM physical volume" },
        { "crypto_LUKS", "LUKS encrypted volume" },
        { "linux_raid_member", "md RAID member" },
        { "xfs", "XFS filesystem" },
        { "btrfs", "btrfs filesystem" },
        { "zfs_member", "ZFS pool member" },
        { "BitLocker", "BitLocker encrypted volume" },
        { "ambivalent", "ambiguous signatures (more than one filesystem)" },
    };

    if (!fstype) {
        return NULL;
    }
    for (gsize i = 0; i < G_N_ELEMENTS(table); i++) {
        if (g_str_equal(fstype, table[i].type)) {
            return table[i].reason;
        }
    }
    return NULL;
}

char *vo_layout_describe(const VoPartition *part)
{
    g_autofree char *of = NULL;

    if (part->container) {
        g_autofree char *outer = vo_layout_describe(part->container);

        if (part->volume) {
            return g_strdup_printf("logical volume %s in the LUKS volume on "
                                   "%s", part->volume, outer);
        }
        return g_strdup_printf("the LUKS volume on %s", outer);
    }
    of = part->disk
                              ? g_strdup_printf(" of disk %u", part->disk + 1)
                              : g_strdup("");

    if (part->volume) {
        return g_strdup_printf("logical volume %s%s", part->volume, of);
    }
    if (part->number == 0) {
        return g_strdup_printf("the whole disk%s", of);
    }
    return g_strdup_printf("partition %d%s", part->number, of);
}

guint vo_layout_disk_number(const VoPartition *part)
{
    return (part->container ? part->container->disk : part->disk) + 1;
}

const char *vo_layout_route_hint(const char *fstype)
{
    /*
     * No Debian library writes XFS or btrfs from userspace: the routes
     * that can are explicit because each trusts something more than the
     * confined worker does (docs/offline.rst, "XFS, btrfs and encrypted
     * disks").
     */
    if (g_strcmp0(fstype, "xfs") == 0 || g_strcmp0(fstype, "btrfs") == 0) {
        return "XFS and btrfs are serviced only through a route chosen "
               "explicitly: --backend=libguestfs (an appliance VM parses "
               "the filesystem) or --host-kernel (the host kernel mounts "
               "it: for images you trust)";
    }
    if (g_strcmp0(fstype, "crypto_LUKS") == 0) {
        /* QEMU's luks driver opens it in the parent's storage daemon;
         * the key never reaches the worker. */
        return "LUKS volumes are opened only with their key: --luks-key "
               "UUID:file:KEYFILE (or all:file:KEYFILE); QEMU opens LUKS1 "
               "volumes";
    }
    return NULL;
}
