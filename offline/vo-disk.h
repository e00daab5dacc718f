/*
 * Disk access for offline servicing: a qemu-nbd export reached through
 * libnbd (or, for the fuzz targets, a buffer in memory), with a
 * write-back page cache in front of it.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define VO_ERROR vo_error_quark()
GQuark vo_error_quark(void);

/* Error codes shared by the whole offline library. */
typedef enum {
    VO_ERROR_FAILED,
    VO_ERROR_IN_USE,        /* a running QEMU holds the image's lock */
    VO_ERROR_CORRUPT,       /* image or filesystem structurally broken */
    VO_ERROR_UNSUPPORTED,   /* layout/format we do not handle */
    VO_ERROR_DIRTY,         /* filesystem needs recovery / is hibernated */
    VO_ERROR_NOT_FOUND,
    VO_ERROR_EXISTS,
    VO_ERROR_ESCAPE,        /* a guest path leaves the guest's filesystems */
    VO_ERROR_SIGNATURE,
    VO_ERROR_NOT_APPLICABLE,
    VO_ERROR_HASH_MISMATCH,
    VO_ERROR_INVALID,       /* malformed bundle or arguments */
    VO_ERROR_VERIFY,
    VO_ERROR_TIMEOUT,       /* a process we started did not finish */
} VoError;

typedef struct VoDisk VoDisk;

/*
 * The disk served on the connected stream socket @sock (taken, whatever
 * happens) as the export named @export (NULL: the default, ""): the NBD
 * handshake, then reads and writes through the cache.  Its format is the
 * server's business, and its parent's to report.
 */
VoDisk *vo_disk_connect(int sock, const char *export, gboolean writable,
                        GError **error);
/*
 * The disk whose bytes are @data (referenced, never written: a writable
 * disk writes to a private copy), read through the same cache as an NBD
 * export: the fuzz targets' way to the readers without a server.
 */
VoDisk *vo_disk_new_from_memory(GBytes *data, gboolean writable);
/* From now on refuse writes (the export stays as it was opened). */
void vo_disk_set_read_only(VoDisk *disk);
/* Forgets every cached page; dirty ones are lost, so flush first. */
void vo_disk_drop_cache(VoDisk *disk);
void vo_disk_free(VoDisk *disk);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VoDisk, vo_disk_free)

guint64 vo_disk_get_size(VoDisk *disk);
gboolean vo_disk_get_writable(VoDisk *disk);
gboolean vo_disk_pread(VoDisk *disk, void *buf, gsize count, guint64 offset,
                       GError **error);
gboolean vo_disk_pwrite(VoDisk *disk, const void *buf, gsize count,
                        guint64 offset, GError **error);
/*
 * Copies @count bytes at @offset to the same offset of @fd, page by page
 * out of the cache, which keeps them: no buffer of @count bytes.  @fd is
 * sparse and was never written there (a fresh file of its size): blocks
 * of zeros are left as holes, not written.
 */
gboolean vo_disk_copy_to_fd(VoDisk *disk, int fd, guint64 offset,
                            guint64 count, GError **error);
/* Writes every dirty page back and asks the server to flush. */
gboolean vo_disk_flush(VoDisk *disk, GError **error);

G_END_DECLS
