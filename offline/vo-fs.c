/*
 * The filesystems the offline library reads and writes (vo-fs.h): one
 * table, which vo-guest.c consults for every partition.  Adding a
 * filesystem is a reader implementing VoFsOps and one line here.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <sys/stat.h>

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

void vo_fs_paths_init(VoFsPaths *t)
{
    t->paths = g_ptr_array_new_with_free_func(g_free);
    t->nodes = g_hash_table_new(g_str_hash, g_str_equal);
}

void vo_fs_paths_clear(VoFsPaths *t)
{
    g_clear_pointer(&t->nodes, g_hash_table_unref);
    g_clear_pointer(&t->paths, g_ptr_array_unref);
}

guint64 vo_fs_paths_intern(VoFsPaths *t, char *path)
{
    gpointer node;

    if (g_hash_table_lookup_extended(t->nodes, path, NULL, &node)) {
        g_free(path);
        return GPOINTER_TO_SIZE(node);
    }
    g_ptr_array_add(t->paths, path);
    g_hash_table_insert(t->nodes, path, GSIZE_TO_POINTER(t->paths->len));
    return t->paths->len;
}

const char *vo_fs_paths_get(VoFsPaths *t, guint64 node, const char *fallback)
{
    g_return_val_if_fail(node >= 1 && node <= t->paths->len, fallback);
    return t->paths->pdata[node - 1];
}

VoNodeType vo_fs_node_type(guint32 st_mode)
{
    switch (st_mode & S_IFMT) {
    case S_IFREG:
        return VO_NODE_REGULAR;
    case S_IFDIR:
        return VO_NODE_DIRECTORY;
    case S_IFLNK:
        return VO_NODE_SYMLINK;
    default:
        return VO_NODE_OTHER;
    }
}
