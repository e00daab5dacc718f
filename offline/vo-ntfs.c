/*
 * NTFS through libntfs-3g, with device operations on a VoDisk partition.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "vo-fs.h"

#include <ntfs-3g/types.h>
#include <ntfs-3g/attrib.h>
#include <ntfs-3g/device.h>
#include <ntfs-3g/dir.h>
#include <ntfs-3g/inode.h>
#include <ntfs-3g/unistr.h>
#include <ntfs-3g/volume.h>

typedef struct {
    VoDisk *disk;
    guint64 offset;
    guint64 size;
    gint64 pos;
    int partition;
    ntfs_volume *vol;
} VoNtfs;

static int vo_ntfs_dev_open(struct ntfs_device *dev, int flags)
{
    VoNtfs *nt = dev->d_private;

    if (NDevOpen(dev)) {
        errno = EBUSY;
        return -1;
    }
    if ((flags & O_ACCMODE) == O_RDONLY || !vo_disk_get_writable(nt->disk)) {
        NDevSetReadOnly(dev);
    }
    nt->pos = 0;
    NDevSetOpen(dev);
    return 0;
}

static int vo_ntfs_dev_close(struct ntfs_device *dev)
{
    NDevClearOpen(dev);
    return 0;
}

static s64 vo_ntfs_dev_seek(struct ntfs_device *dev, s64 offset, int whence)
{
    VoNtfs *nt = dev->d_private;
    gint64 base = whence == SEEK_SET ? 0
                : whence == SEEK_CUR ? nt->pos
                                     : (gint64)nt->size;

    if (whence != SEEK_SET && whence != SEEK_CUR && whence != SEEK_END) {
        errno = EINVAL;
        return -1;
    }
    if (base + offset < 0) {
        errno = EINVAL;
        return -1;
    }
    nt->pos = base + offset;
    return nt->pos;
}

static s64 vo_ntfs_dev_io(struct ntfs_device *dev, gboolean write, void *buf,
                          s64 count, s64 offset)
{
    VoNtfs *nt = dev->d_private;
    g_autoptr(GError) error = NULL;
    gboolean ok;

    /* Offsets come from the volume's own metadata: stay in the partition. */
    if (count < 0 || offset < 0 || (guint64)offset > nt->size) {
        errno = EINVAL;
        return -1;
    }
    count = MIN((guint64)count, nt->size - offset);
    if (count == 0) {
        return 0;
    }
    ok = write ? vo_disk_pwrite(nt->disk, buf, count, nt->offset + offset,
                                &error)
               : vo_disk_pread(nt->disk, buf, count, nt->offset + offset,
                               &error);
    if (!ok) {
        g_debug("NTFS I/O: %s", error->message);
        errno = EIO;
        return -1;
    }
    return count;
}

static s64 vo_ntfs_dev_pread(struct ntfs_device *dev, void *buf, s64 count,
                             s64 offset)
{
    return vo_ntfs_dev_io(dev, FALSE, buf, count, offset);
}

static s64 vo_ntfs_dev_pwrite(struct ntfs_device *dev, const void *buf,
                              s64 count, s64 offset)
{
    if (NDevReadOnly(dev)) {
        errno = EROFS;
        return -1;
    }
    NDevSetDirty(dev);
    return vo_ntfs_dev_io(dev, TRUE, (void *)buf, count, offset);
}

static s64 vo_ntfs_dev_read(struct ntfs_device *dev, void *buf, s64 count)
{
    VoNtfs *nt = dev->d_private;
    s64 r = vo_ntfs_dev_pread(dev, buf, count, nt->pos);

    if (r > 0) {
        nt->pos += r;
    }
    return r;
}

static s64 vo_ntfs_dev_write(struct ntfs_device *dev, const void *buf,
                             s64 count)
{
    VoNtfs *nt = dev->d_private;
    s64 r = vo_ntfs_dev_pwrite(dev, buf, count, nt->pos);

    if (r > 0) {
        nt->pos += r;
    }
    return r;
}

static int vo_ntfs_dev_sync(struct ntfs_device *dev)
{
    /* Durability is VoDisk's job, once the whole change is written. */
    NDevClearDirty(dev);
    return 0;
}

static int vo_ntfs_dev_stat(struct ntfs_device *dev, struct stat *buf)
{
    VoNtfs *nt = dev->d_private;

    memset(buf, 0, sizeof(*buf));
    buf->st_mode = S_IFREG | 0600;
    buf->st_size = nt->size;
    return 0;
}

static int vo_ntfs_dev_ioctl(struct ntfs_device *dev, unsigned long request,
                             void *argp)
{
    errno = EOPNOTSUPP;
    return -1;
}

static struct ntfs_device_operations vo_ntfs_dev_ops = {
    .open = vo_ntfs_dev_open,
    .close = vo_ntfs_dev_close,
    .seek = vo_ntfs_dev_seek,
    .read = vo_ntfs_dev_read,
    .write = vo_ntfs_dev_write,
    .pread = vo_ntfs_dev_pread,
    .pwrite = vo_ntfs_dev_pwrite,
    .sync = vo_ntfs_dev_sync,
    .stat = vo_ntfs_dev_stat,
    .ioctl = vo_ntfs_dev_ioctl,
};

static gboolean vo_ntfs_fail(GError **error, const char *what)
{
    int saved = errno;

    g_set_error(error, VO_ERROR,
                saved == ENOENT ? VO_ERROR_NOT_FOUND : VO_ERROR_FAILED,
                "NTFS %s: %s", what, g_strerror(saved));
    return FALSE;
}

static ntfs_inode *vo_ntfs_inode(VoFs *vfs, guint64 node, GError **error)
{
    VoNtfs *nt = vfs->priv;
    ntfs_inode *ni;

    if (!nt->vol) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "NTFS volume closed");
        return NULL;
    }
    ni = ntfs_inode_open(nt->vol, node);
    if (!ni) {
        vo_ntfs_fail(error, "open inode");
    }
    return ni;
}

static gboolean vo_ntfs_name(const char *name, ntfschar **ucs, int *len,
                             GError **error);

static gboolean vo_ntfs_writable(VoFs *vfs, GError **error)
{
    if (!vfs->writable) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "read-only");
        return FALSE;
    }
    return TRUE;
}

/* Opens directory @dir and converts @name; both freed by the caller. */
static ntfs_inode *vo_ntfs_dir_and_name(VoFs *vfs, guint64 dir,
                                        const char *name, ntfschar **ucs,
                                        int *len, GError **error)
{
    ntfs_inode *dni;

    if (!vo_ntfs_name(name, ucs, len, error)) {
        return NULL;
    }
    dni = vo_ntfs_inode(vfs, dir, error);
    if (!dni) {
        free(*ucs);
        *ucs = NULL;
    }
    return dni;
}

static gboolean vo_ntfs_lookup(VoFs *vfs, guint64 dir, const char *name,
                               guint64 *node, GError **error)
{
    ntfs_inode *dni;
    ntfschar *ucs;
    int len;
    u64 ref;

    dni = vo_ntfs_dir_and_name(vfs, dir, name, &ucs, &len, error);
    if (!dni) {
        return FALSE;
    }
    /* Win32 names compare through the upcase table, as Windows does. */
    ref = ntfs_inode_lookup_by_name(dni, ucs, len);
    free(ucs);
    ntfs_inode_close(dni);
    if (ref == (u64)-1) {
        if (errno == ENOENT) {
            g_set_error(error, VO_ERROR, VO_ERROR_NOT_FOUND,
                        "%s: not found", name);
            return FALSE;
        }
        return vo_ntfs_fail(error, "lookup");
    }
    *node = MREF(ref);
    return TRUE;
}

/*
 * NTFS counts 100 ns since 1601: nanoseconds since 1970 for the years
 * 1678 to 2262.  Any time of today's overflows nanoseconds since 1601, and
 * a guest can write any 64 bits; only equality matters to the scan's
 * cache, so a time outside that range keeps NTFS's own units.
 */
#define VO_NTFS_EPOCH_TICKS     116444736000000000LL    /* 1601 to 1970 */

static gint64 vo_ntfs_time_ns(ntfs_time t)
{
    gint64 ticks = (gint64)sle64_to_cpu(t);

    if (ticks < G_MININT64 / 100 + VO_NTFS_EPOCH_TICKS ||
        ticks > G_MAXINT64 / 100 + VO_NTFS_EPOCH_TICKS) {
        return ticks;
    }
    return (ticks - VO_NTFS_EPOCH_TICKS) * 100;
}

static gboolean vo_ntfs_stat(VoFs *vfs, guint64 node, VoStat *st,
                             GError **error)
{
    ntfs_inode *ni = vo_ntfs_inode(vfs, node, error);

    if (!ni) {
        return FALSE;
    }
    memset(st, 0, sizeof(*st));
    if (ni->flags & FILE_ATTR_REPARSE_POINT) {
        /* Junctions and links: never traversed or written through. */
        st->type = VO_NODE_OTHER;
    } else if (ni->mrec->flags & MFT_RECORD_IS_DIRECTORY) {
        st->type = VO_NODE_DIRECTORY;
    } else {
        st->type = VO_NODE_REGULAR;
        st->size = ni->data_size;
    }
    st->mode = st->type == VO_NODE_DIRECTORY ? 0755 : 0644;
    st->generation = le16_to_cpu(ni->mrec->sequence_number);
    st->mtime_ns = vo_ntfs_time_ns(ni->last_data_change_time);
    st->ctime_ns = vo_ntfs_time_ns(ni->last_mft_change_time);
    ntfs_inode_close(ni);
    return TRUE;
}

typedef struct {
    GPtrArray *entries;
    guint max;
    gboolean too_many;
} VoNtfsList;

static int vo_ntfs_list_entry(void *priv, const ntfschar *name,
                              const int name_len, const int name_type,
                              const s64 pos, const MFT_REF mref,
                              const unsigned dt_type)
{
    VoNtfsList *l = priv;
    char *utf8 = NULL;
    VoDirEntry *e;

    /* The 8.3 alias names the same file again; the volume's own files
     * ($MFT, $Extend, ...) are not the guest's. */
    if (name_type == FILE_NAME_DOS || MREF(mref) < FILE_first_user) {
        return 0;
    }
    if (l->entries->len >= l->max) {
        l->too_many = TRUE;
        return -1;
    }
    if (ntfs_ucstombs(name, name_len, &utf8, 0) < 0) {
        /* Not convertible (unpaired surrogates): kept as its code
         * units, so that the file is still scanned. */
        GString *s = g_string_new(NULL);

        for (int i = 0; i < name_len; i++) {
            g_string_append_printf(s, "\\u%04x", le16_to_cpu(name[i]));
        }
        utf8 = NULL;
        e = g_new(VoDirEntry, 1);
        e->name = g_string_free(s, FALSE);
    } else {
        e = g_new(VoDirEntry, 1);
        e->name = g_strdup(utf8);
        free(utf8);
    }
    e->node = MREF(mref);
    if (g_str_equal(e->name, ".") || g_str_equal(e->name, "..")) {
        vo_dir_entry_free(e);
        return 0;
    }
    g_ptr_array_add(l->entries, e);
    return 0;
}

static GPtrArray *vo_ntfs_list(VoFs *vfs, guint64 dir, guint max,
                               GError **error)
{
    ntfs_inode *ni = vo_ntfs_inode(vfs, dir, error);
    g_autoptr(GPtrArray) entries = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vo_dir_entry_free);
    VoNtfsList l = { entries, max, FALSE };
    s64 pos = 0;
    int rc;

    if (!ni) {
        return NULL;
    }
    if (!(ni->mrec->flags & MFT_RECORD_IS_DIRECTORY)) {
        ntfs_inode_close(ni);
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "record %" G_GUINT64_FORMAT " is not a directory", dir);
        return NULL;
    }
    rc = ntfs_readdir(ni, &pos, &l, vo_ntfs_list_entry);
    if (rc < 0 && !l.too_many) {
        vo_ntfs_fail(error, "read directory");
        ntfs_inode_close(ni);
        return NULL;
    }
    ntfs_inode_close(ni);
    if (l.too_many) {
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "directory of more than %u entries", max);
        return NULL;
    }
    return g_steal_pointer(&entries);
}

static char *vo_ntfs_readlink(VoFs *vfs, guint64 node, GError **error)
{
    g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                "NTFS reparse points are not followed");
    return NULL;
}

/* @node's data, refused when larger than @max bytes, or with @head at
 * most @max bytes of it from @offset on. */
static GBytes *vo_ntfs_read_data(VoFs *vfs, guint64 node, s64 offset,
                                 s64 max, gboolean head, GError **error)
{
    ntfs_inode *ni = vo_ntfs_inode(vfs, node, error);
    ntfs_attr *na;
    guint8 *buf;
    s64 size, done = 0;

    if (!ni) {
        return NULL;
    }
    na = ntfs_attr_open(ni, AT_DATA, AT_UNNAMED, 0);
    if (!na) {
        vo_ntfs_fail(error, "open data");
        ntfs_inode_close(ni);
        return NULL;
    }
    size = na->data_size;
    if (head) {
        size = offset < size ? MIN(size - offset, max) : 0;
    }
    if (size < 0 || size > max) {
        ntfs_attr_close(na);
        ntfs_inode_close(ni);
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "file too large");
        return NULL;
    }
    buf = g_malloc(size ? size : 1);
    while (done < size) {
        s64 r = ntfs_attr_pread(na, offset + done, size - done, buf + done);

        if (r <= 0) {
            if (r == 0) {
                errno = EIO;
            }
            vo_ntfs_fail(error, "read");
            g_free(buf);
            ntfs_attr_close(na);
            ntfs_inode_close(ni);
            return NULL;
        }
        done += r;
    }
    ntfs_attr_close(na);
    ntfs_inode_close(ni);
    return g_bytes_new_take(buf, size);
}

static GBytes *vo_ntfs_read(VoFs *vfs, guint64 node, GError **error)
{
    return vo_ntfs_read_data(vfs, node, 0, VO_FS_MAX_FILE, FALSE, error);
}

static GBytes *vo_ntfs_read_range(VoFs *vfs, guint64 node, guint64 offset,
                                  gsize max, GError **error)
{
    return vo_ntfs_read_data(vfs, node, MIN(offset, (guint64)G_MAXINT64),
                             MIN(max, (gsize)VO_FS_MAX_FILE), TRUE, error);
}

static gboolean vo_ntfs_write_data(ntfs_inode *ni, GBytes *data,
                                   GError **error)
{
    ntfs_attr *na = ntfs_attr_open(ni, AT_DATA, AT_UNNAMED, 0);
    gsize len;
    const guint8 *p = g_bytes_get_data(data, &len);
    gsize done = 0;

    if (!na) {
        return vo_ntfs_fail(error, "open data");
    }
    if (ntfs_attr_truncate(na, 0)) {
        ntfs_attr_close(na);
        return vo_ntfs_fail(error, "truncate");
    }
    while (done < len) {
        s64 w = ntfs_attr_pwrite(na, done, len - done, p + done);

        if (w <= 0) {
            if (w == 0) {
                errno = EIO;
            }
            ntfs_attr_close(na);
            return vo_ntfs_fail(error, "write");
        }
        done += w;
    }
    ntfs_attr_close(na);
    return TRUE;
}

static gboolean vo_ntfs_replace(VoFs *vfs, guint64 node, GBytes *data,
                                GError **error);

static gboolean vo_ntfs_name(const char *name, ntfschar **ucs, int *len,
                             GError **error)
{
    *ucs = NULL;
    *len = ntfs_mbstoucs(name, ucs);
    if (*len <= 0 || *len > 255) {
        free(*ucs);
        *ucs = NULL;
        g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                    "%s: not a valid NTFS name", name);
        return FALSE;
    }
    return TRUE;
}

static gboolean vo_ntfs_make(VoFs *vfs, guint64 dir, const char *name,
                             mode_t type, GBytes *data, GError **error)
{
    ntfs_inode *dni, *ni;
    ntfschar *ucs;
    int len;
    u64 mft = 0;
    gboolean ok = TRUE;

    if (!vo_ntfs_writable(vfs, error)) {
        return FALSE;
    }
    dni = vo_ntfs_dir_and_name(vfs, dir, name, &ucs, &len, error);
    if (!dni) {
        return FALSE;
    }
    ni = ntfs_create(dni, const_cpu_to_le32(0), ucs, len, type);
    free(ucs);
    if (!ni) {
        ok = vo_ntfs_fail(error, "create");
    } else {
        mft = ni->mft_no;
        if (ntfs_inode_close(ni)) {
            ok = vo_ntfs_fail(error, "close inode");
        }
    }
    if (ntfs_inode_close(dni) && ok) {
        ok = vo_ntfs_fail(error, "close directory");
    }
    /*
     * Contents are written with the directory closed: libntfs-3g's close
     * of a grown file updates its directory entry and fails with EBUSY
     * while the directory is open.
     */
    if (ok && data) {
        ok = vo_ntfs_replace(vfs, mft, data, error);
    }
    return ok;
}

static gboolean vo_ntfs_create(VoFs *vfs, guint64 dir, const char *name,
                               const VoStat *attrs, GBytes *data,
                               GError **error)
{
    return vo_ntfs_make(vfs, dir, name, S_IFREG, data, error);
}

static gboolean vo_ntfs_mkdir(VoFs *vfs, guint64 dir, const char *name,
                              const VoStat *attrs, GError **error)
{
    return vo_ntfs_make(vfs, dir, name, S_IFDIR, NULL, error);
}

static gboolean vo_ntfs_replace(VoFs *vfs, guint64 node, GBytes *data,
                                GError **error)
{
    ntfs_inode *ni;
    gboolean ok;

    if (!vo_ntfs_writable(vfs, error)) {
        return FALSE;
    }
    ni = vo_ntfs_inode(vfs, node, error);
    if (!ni) {
        return FALSE;
    }
    ok = vo_ntfs_write_data(ni, data, error);
    if (ntfs_inode_close(ni) && ok) {
        ok = vo_ntfs_fail(error, "close inode");
    }
    return ok;
}

static gboolean vo_ntfs_remove(VoFs *vfs, guint64 dir, const char *name,
                               guint64 node, GError **error)
{
    VoNtfs *nt = vfs->priv;
    ntfs_inode *dni, *ni;
    ntfschar *ucs;
    int len, r;

    if (!vo_ntfs_writable(vfs, error)) {
        return FALSE;
    }
    dni = vo_ntfs_dir_and_name(vfs, dir, name, &ucs, &len, error);
    ni = dni ? vo_ntfs_inode(vfs, node, error) : NULL;
    if (!ni) {
        if (dni) {
            ntfs_inode_close(dni);
            free(ucs);
        }
        return FALSE;
    }
    if (ni->mrec->flags & MFT_RECORD_IS_DIRECTORY) {
        ntfs_inode_close(ni);
        ntfs_inode_close(dni);
        free(ucs);
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "%s is a directory; only files are deleted", name);
        return FALSE;
    }
    /* ntfs_delete() closes both inodes, whatever happens. */
    r = ntfs_delete(nt->vol, NULL, ni, dni, ucs, len);
    free(ucs);
    if (r) {
        return vo_ntfs_fail(error, "delete");
    }
    return TRUE;
}

static gboolean vo_ntfs_set_attrs(VoFs *vfs, guint64 node,
                                  const guint32 *mode, const guint32 *uid,
                                  const guint32 *gid, GError **error)
{
    g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                "NTFS has no POSIX modes or owners");
    return FALSE;
}

static gboolean vo_ntfs_sync(VoFs *vfs, GError **error)
{
    VoNtfs *nt = vfs->priv;
    int r;

    if (!vfs->writable || !nt->vol) {
        return TRUE;
    }
    /*
     * libntfs-3g writes the MFT mirror and clears its state on unmount
     * only, so syncing ends the volume's use.
     */
    r = ntfs_umount(nt->vol, FALSE);
    nt->vol = NULL;
    if (r) {
        return vo_ntfs_fail(error, "unmount");
    }
    return TRUE;
}

static void vo_ntfs_close(VoFs *vfs)
{
    VoNtfs *nt = vfs->priv;

    if (nt->vol) {
        /*
         * A read-only unmount writes nothing; a writable one that was not
         * synced belongs to a failed apply whose overlay is dropped.
         */
        ntfs_umount(nt->vol, TRUE);
    }
    g_free(nt);
    g_free(vfs);
}

static const VoFsOps vo_ntfs_ops = {
    .lookup = vo_ntfs_lookup,
    .stat = vo_ntfs_stat,
    .readlink = vo_ntfs_readlink,
    .list = vo_ntfs_list,
    .read = vo_ntfs_read,
    .read_range = vo_ntfs_read_range,
    .create = vo_ntfs_create,
    .mkdir = vo_ntfs_mkdir,
    .replace = vo_ntfs_replace,
    .remove = vo_ntfs_remove,
    .set_attrs = vo_ntfs_set_attrs,
    .sync = vo_ntfs_sync,
    .close = vo_ntfs_close,
};

VoFs *vo_ntfs_open(VoDisk *disk, const VoPartition *part, GError **error)
{
    g_autoptr(VoFs) vfs = g_new0(VoFs, 1);
    VoNtfs *nt = g_new0(VoNtfs, 1);
    gboolean writable = vo_disk_get_writable(disk);
    g_autofree char *name = g_strdup_printf("vmaugment-partition-%d",
                                            part->number);
    struct ntfs_device *dev;

    vfs->ops = &vo_ntfs_ops;
    vfs->priv = nt;
    vfs->type = "ntfs";
    vfs->root = FILE_root;
    vfs->writable = writable;
    vfs->case_insensitive = TRUE;
    nt->disk = disk;
    nt->offset = part->offset;
    nt->size = part->size;
    nt->partition = part->number;

    dev = ntfs_device_alloc(name, 0, &vo_ntfs_dev_ops, nt);
    if (!dev) {
        vo_ntfs_fail(error, "device");
        return NULL;
    }
    nt->vol = ntfs_device_mount(dev, writable ? 0 : NTFS_MNT_RDONLY);
    if (!nt->vol) {
        int saved = errno;

        ntfs_device_free(dev);
        if (saved == EPERM) {
            g_set_error(error, VO_ERROR, VO_ERROR_DIRTY,
                        "partition %d: NTFS is hibernated or uses Windows "
                        "fast startup; shut Windows down fully first",
                        part->number);
        } else {
            g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                        "partition %d: cannot open NTFS: %s", part->number,
                        g_strerror(saved));
        }
        return NULL;
    }
    if (nt->vol->flags & VOLUME_IS_DIRTY) {
        g_set_error(error, VO_ERROR, VO_ERROR_DIRTY,
                    "partition %d: NTFS is marked dirty (not cleanly shut "
                    "down); run chkdsk in Windows first", part->number);
        return NULL;
    }
    if (ntfs_volume_check_hiberfile(nt->vol, 0)) {
        g_set_error(error, VO_ERROR, VO_ERROR_DIRTY,
                    "partition %d: NTFS is hibernated or uses Windows fast "
                    "startup; shut Windows down fully first", part->number);
        return NULL;
    }
    return g_steal_pointer(&vfs);
}
