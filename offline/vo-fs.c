/*
 * The filesystems the offline library reads and writes (vo-fs.h): one
 * table, which vo-guest.c consults for every partition.  Adding a
 * filesystem is a reader implementing VoFsOps and one line here.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <string.h>
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

/* The first piece is small, for the usual small file and for the sparse
 * one; later ones grow so that a real status of tens of MiB is read in a
 * few calls. */
#define VO_FS_TEXT_FIRST (64u * 1024)
#define VO_FS_TEXT_MOST (8u * 1024 * 1024)

GBytes *vo_fs_read_text(VoFs *fs, guint64 node, guint64 size,
                        const char *what, GError **error)
{
    g_autoptr(GByteArray) text = NULL;
    gsize piece = VO_FS_TEXT_FIRST;

    if (size > G_MAXUINT) {
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "%s is too large to read as text", what);
        return NULL;
    }
    text = g_byte_array_sized_new(MIN(size, (guint64)piece));
    while (text->len < size) {
        g_autoptr(GBytes) got = NULL;
        const guint8 *p;
        const guint8 *nul;
        gsize len;

        got = fs->ops->read_range(fs, node, text->len,
                                  MIN(size - text->len, (guint64)piece),
                                  error);
        if (!got) {
            return NULL;
        }
        p = g_bytes_get_data(got, &len);
        if (len == 0) {
            g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                        "%s ends before its size", what);
            return NULL;
        }
        nul = memchr(p, '\0', len);
        if (nul) {
            g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                        "%s is not text: a NUL byte at offset %u", what,
                        (guint)(text->len + (nul - p)));
            return NULL;
        }
        g_byte_array_append(text, p, len);
        piece = MIN(piece * 2, (gsize)VO_FS_TEXT_MOST);
    }
    if (text->len == 0) {
        /* An empty array has no data; readers take it as a string's
         * start, as the filesystems' reads give it. */
        return g_bytes_new_static("", 0);
    }
    return g_byte_array_free_to_bytes(g_steal_pointer(&text));
}
