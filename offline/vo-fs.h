/*
 * The filesystem operations offline servicing needs, implemented over a
 * VoDisk for ext2/3/4 (libext2fs) and NTFS (libntfs-3g).  Nodes are the
 * filesystem's own inode numbers; path walking lives in vo-guest.c so that
 * every filesystem gets the same escape checks.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include "vo-disk.h"
#include "vo-layout.h"

G_BEGIN_DECLS

/* Files larger than this are not read into memory. */
#define VO_FS_MAX_FILE (1024u * 1024 * 1024)

typedef enum {
    VO_NODE_REGULAR,
    VO_NODE_DIRECTORY,
    VO_NODE_SYMLINK,
    VO_NODE_OTHER,
} VoNodeType;

typedef struct {
    VoNodeType type;
    guint32 mode;           /* permission bits only */
    guint32 uid;
    guint32 gid;
    guint64 size;
    /* What tells an unchanged file (the scan's cache, vo-scan.h); zero
     * where the filesystem has no such field.  Times in nanoseconds. */
    guint64 generation;     /* ext: i_generation; NTFS: sequence number */
    gint64 mtime_ns;
    gint64 ctime_ns;        /* NTFS: the MFT record's change time */
} VoStat;

/* One name of a directory (vo_fs_list()): the bytes as stored. */
typedef struct {
    char *name;
    guint64 node;
} VoDirEntry;

void vo_dir_entry_free(VoDirEntry *e);

typedef struct VoFs VoFs;

typedef struct {
    /* FALSE with VO_ERROR_NOT_FOUND when @name is absent. */
    gboolean (*lookup)(VoFs *fs, guint64 dir, const char *name,
                       guint64 *node, GError **error);
    gboolean (*stat)(VoFs *fs, guint64 node, VoStat *st, GError **error);
    char *(*readlink)(VoFs *fs, guint64 node, GError **error);
    /* The names of directory @dir but "." and "..", as VoDirEntry*; at
     * most @max of them (VO_ERROR_UNSUPPORTED beyond).  NULL where the
     * filesystem cannot list. */
    GPtrArray *(*list)(VoFs *fs, guint64 dir, guint max, GError **error);
    GBytes *(*read)(VoFs *fs, guint64 node, GError **error);
    /* At most @max bytes of @node from @offset on, fewer at its end and
     * none past it: what a reader of a file's start, or of a file a piece
     * at a time, needs, whatever size the guest gave the file. */
    GBytes *(*read_range)(VoFs *fs, guint64 node, guint64 offset, gsize max,
                          GError **error);
    gboolean (*create)(VoFs *fs, guint64 dir, const char *name,
                       const VoStat *attrs, GBytes *data, GError **error);
    gboolean (*mkdir)(VoFs *fs, guint64 dir, const char *name,
                      const VoStat *attrs, GError **error);
    gboolean (*replace)(VoFs *fs, guint64 node, GBytes *data,
                        GError **error);
    gboolean (*remove)(VoFs *fs, guint64 dir, const char *name,
                       guint64 node, GError **error);
    /* Package unpacking (vo-unpack.c); NULL where the filesystem has no
     * POSIX links.  rmdir fails with VO_ERROR_EXISTS when @node is not
     * empty, as rmdir(2) does, so that directories still used stay. */
    gboolean (*symlink)(VoFs *fs, guint64 dir, const char *name,
                        const char *target, guint32 uid, guint32 gid,
                        GError **error);
    gboolean (*link)(VoFs *fs, guint64 dir, const char *name, guint64 node,
                     GError **error);
    gboolean (*rmdir)(VoFs *fs, guint64 dir, const char *name, guint64 node,
                      GError **error);
    /* NULL arguments leave the attribute alone. */
    gboolean (*set_attrs)(VoFs *fs, guint64 node, const guint32 *mode,
                          const guint32 *uid, const guint32 *gid,
                          GError **error);
    /* Extended attributes; NULL where the filesystem has none.  A NULL
     * @value removes; get fails with VO_ERROR_NOT_FOUND when absent. */
    gboolean (*set_xattr)(VoFs *fs, guint64 node, const char *name,
                          GBytes *value, GError **error);
    GBytes *(*get_xattr)(VoFs *fs, guint64 node, const char *name,
                         GError **error);
    /* Writes all metadata back to the disk (not the disk's own flush). */
    gboolean (*sync)(VoFs *fs, GError **error);
    void (*close)(VoFs *fs);
} VoFsOps;

struct VoFs {
    const VoFsOps *ops;
    const char *type;       /* "ext4", "ntfs", ... */
    guint64 root;
    gboolean writable;
    gboolean case_insensitive;
    gboolean has_owners;    /* uid/gid/mode meaningful */
    gpointer priv;
};

VoFs *vo_ext_open(VoDisk *disk, const VoPartition *part, GError **error);
VoFs *vo_ntfs_open(VoDisk *disk, const VoPartition *part, GError **error);

/* A reader, for the filesystem type libblkid names. */
typedef struct {
    const char *type;       /* blkid's TYPE: "ext4", "ntfs", ... */
    VoFs *(*open)(VoDisk *disk, const VoPartition *part, GError **error);
} VoFsDriver;

/*
 * Nodes named by their paths, for the drivers that reach a filesystem
 * through paths (vo-guestfs.c, vo-hostfs.c): node n is the n-th path
 * interned, from 1.
 */
typedef struct {
    GPtrArray *paths;       /* node - 1 -> path */
    GHashTable *nodes;      /* path -> node */
} VoFsPaths;

void vo_fs_paths_init(VoFsPaths *t);
void vo_fs_paths_clear(VoFsPaths *t);
/* The node of @path (taken). */
guint64 vo_fs_paths_intern(VoFsPaths *t, char *path);
/* The path of @node, or @fallback for a node never interned. */
const char *vo_fs_paths_get(VoFsPaths *t, guint64 node, const char *fallback);
/* The type of a POSIX st_mode. */
VoNodeType vo_fs_node_type(guint32 st_mode);

/* The driver for @fstype (may be NULL), or NULL when none reads it. */
const VoFsDriver *vo_fs_driver_for(const char *fstype);

/*
 * The @size bytes of @node, a text file, read a piece at a time and
 * refused (VO_ERROR_CORRUPT, naming @what) at its first NUL byte.  A
 * text file (a dpkg status, a package's list of files) holds none, and
 * the parsers of such files refuse one anyway; refusing it while
 * reading makes a sparse file the guest sized at hundreds of MiB, holes
 * only, cost one piece of reading and of memory instead of its size.
 */
GBytes *vo_fs_read_text(VoFs *fs, guint64 node, guint64 size,
                        const char *what, GError **error);

static inline void vo_fs_close(VoFs *fs)
{
    if (fs) {
        fs->ops->close(fs);
    }
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VoFs, vo_fs_close)

G_END_DECLS
