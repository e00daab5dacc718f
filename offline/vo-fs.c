/*
 * The filesystems the offline library reads and writes (vo-fs.h): one
 * table, which vo-guest.c consults for every partition.  Adding a
 * filesystem is a reader implementing VoFsOps and one line here.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include "vo-fs.h"

static const VoFsDriver vo_fs_drivers[] = {
    { "ext2", vo_ext_open },
    { "ext3", vo_ext_open },
    { "ext4", vo_ext_open },
    { "ntfs", vo_ntfs_open },
};

const VoFsDriver *vo_fs_driver_for(const char *fstype)
{
    for (gsize i = 0; fstype && i < G_N_ELEMENTS(vo_fs_drivers); i++) {
        if (g_str_equal(fstype, vo_fs_drivers[i].type)) {
            return &vo_fs_drivers[i];
        }
    }
    return NULL;
}

void vo_dir_entry_free(VoDirEntry *e)
{
    g_free(e->name);
    g_free(e);
}
