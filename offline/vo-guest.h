/*
 * A guest's disk seen as the guest sees it: filesystems mounted where its
 * /etc/fstab (or, for Windows, its drive letters) says, and guest paths
 * resolved through that map without ever leaving the guest's filesystems.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include "vo-fs.h"

G_BEGIN_DECLS

typedef struct {
    char *mountpoint;       /* "/", "/srv"; Windows' C: is "/" */
    VoPartition *part;      /* borrowed from the layout; NULL if missing */
    VoFs *fs;               /* borrowed; NULL when not serviceable */
    char *problem;          /* why fs is NULL */
} VoMount;

/* A LUKS volume the parent opened: where its container lies. */
typedef struct {
    guint disk;             /* the guest's disk holding it, from 0 */
    guint64 offset;         /* the container's offset on that disk */
} VoMountsOpened;

typedef struct {
    char *image;
    VoDisk *disk;           /* the first disk; owned unless @disks is set */
    /* Every disk of the guest, in the order it sees them (owned; NULL for
     * a guest not read from disks of ours), and each one's layout. */
    GPtrArray *disks;       /* VoDisk* */
    GPtrArray *layouts;     /* VoLayout* */
    /* How many of @disks are the guest's own (0: all); the LUKS volumes
     * the parent opened follow them (vo_mounts_open_guest()). */
    guint n_disks;
    GArray *opened;         /* VoMountsOpened, where each one lies */
    /* The partitions of every disk (borrowed from @layouts when set); the
     * table and its id are the first disk's. */
    VoLayout *layout;
    GPtrArray *filesystems; /* VoFs*, owned */
    GPtrArray *mounts;      /* VoMount* */
    char *family;           /* "linux" or "windows" */
} VoGuest;

typedef struct {
    VoFs *fs;
    guint64 parent;         /* directory holding the final component */
    char *leaf;
    gboolean exists;
    guint64 node;           /* valid when exists */
    VoStat st;              /* valid when exists */
    char *resolved;         /* guest path after following links */
    /* Set (borrowed) when the path is where a filesystem is mounted: it
     * names that filesystem's root directory (@fs, @node), which is in no
     * directory of its own, so @parent is 0 and @leaf NULL. */
    VoMount *mount;
} VoPath;

void vo_guest_free(VoGuest *guest);
void vo_mount_free(VoMount *m);
/* The mount whose mountpoint is exactly @path, or NULL. */
VoMount *vo_guest_mount_at(VoGuest *guest, const char *path);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VoGuest, vo_guest_free)

/* Checks a path from a bundle: absolute ("/..." or "C:\\..."), no empty,
 * '.' or '..' components. */
gboolean vo_guest_check_path(const char *path, GError **error);
/* "C:\\a\\b" -> "/a/b"; other paths unchanged. */
char *vo_guest_normalize_path(const char *path);

/* Resolves @path; symlinks in directories are always followed (inside the
 * guest only), the final component only when @follow_final.  A path
 * where a filesystem is mounted resolves to that filesystem's root, with
 * @out->mount set: reading it, and walking or creating below it, is as
 * for any directory; what would remove, replace or change the mount
 * point itself is refused by vo_path_check_not_mount(). */
gboolean vo_guest_resolve(VoGuest *guest, const char *path,
                          gboolean follow_final, VoPath *out,
                          GError **error);
void vo_path_clear(VoPath *path);
/*
 * Refuses (VO_ERROR_UNSUPPORTED) a @path that is where a filesystem is
 * mounted: deleting it or writing a file over it would reach a directory
 * that is no filesystem's entry, and what its mode, owners or attributes
 * are for the guest depends on the mount (mount options, a mount that
 * fails) as much as on the root directory's inode.
 */
gboolean vo_path_check_not_mount(const VoPath *path, GError **error);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(VoPath, vo_path_clear)

/* Reads a regular file, following links. */
GBytes *vo_guest_read_file(VoGuest *guest, const char *path, GError **error);
/* The same, refused (VO_ERROR_UNSUPPORTED) before reading when the file
 * is larger than @max bytes. */
GBytes *vo_guest_read_file_max(VoGuest *guest, const char *path, guint64 max,
                               GError **error);
/* The same for a text file, refused (VO_ERROR_CORRUPT) at its first NUL
 * byte and read a piece at a time (vo_fs_read_text()). */
GBytes *vo_guest_read_text_max(VoGuest *guest, const char *path, guint64 max,
                               GError **error);
/* The first @max bytes of a regular file (all of it when shorter),
 * following links: for a reader of a file's start (os-release(5), an ELF
 * header), which a file the guest made large must not make read more. */
GBytes *vo_guest_read_file_head(VoGuest *guest, const char *path, gsize max,
                                GError **error);

/* Writes all filesystem metadata and flushes the disk. */
gboolean vo_guest_sync(VoGuest *guest, GError **error);

G_END_DECLS
