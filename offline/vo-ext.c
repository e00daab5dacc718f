/*
 * ext2/3/4 through libext2fs, over an io_manager that reads and writes the
 * partition through VoDisk (and so through qemu-nbd and its cache).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <string.h>
#include <time.h>

#include <ext2fs/ext2fs.h>

#include "vo-fs.h"

typedef struct {
    VoDisk *disk;
    guint64 offset;
    guint64 size;
    GError *error;          /* first I/O failure, for the caller's message */
} VoExtChannel;

/*
 * libext2fs opens devices by name through the io_manager, so channels are
 * announced in a table under a private name before ext2fs_open2().
 */
static GMutex vo_ext_lock;
static GHashTable *vo_ext_channels;
static guint vo_ext_next_id;

static struct struct_io_manager vo_ext_manager;

static errcode_t vo_ext_io_open(const char *name, int flags,
                                io_channel *channel)
{
    VoExtChannel *priv;
    io_channel io;
    errcode_t err;

    g_mutex_lock(&vo_ext_lock);
    priv = vo_ext_channels ? g_hash_table_lookup(vo_ext_channels, name)
                           : NULL;
    g_mutex_unlock(&vo_ext_lock);
    if (!priv) {
        return EXT2_ET_BAD_DEVICE_NAME;
    }
    err = ext2fs_get_memzero(sizeof(*io), &io);
    if (err) {
        return err;
    }
    io->magic = EXT2_ET_MAGIC_IO_CHANNEL;
    io->manager = &vo_ext_manager;
    err = ext2fs_get_mem(strlen(name) + 1, &io->name);
    if (err) {
        ext2fs_free_mem(&io);
        return err;
    }
    strcpy(io->name, name);
    io->block_size = 1024;
    io->refcount = 1;
    io->private_data = priv;
    *channel = io;
    return 0;
}

static errcode_t vo_ext_io_close(io_channel channel)
{
    if (--channel->refcount > 0) {
        return 0;
    }
    ext2fs_free_mem(&channel->name);
    ext2fs_free_mem(&channel);
    return 0;
}

static errcode_t vo_ext_io_set_blksize(io_channel channel, int blksize)
{
    channel->block_size = blksize;
    return 0;
}

static errcode_t vo_ext_io_rw(io_channel channel, gboolean write,
                              guint64 offset, gsize len, void *data)
{
    VoExtChannel *priv = channel->private_data;
    g_autoptr(GError) error = NULL;
    gboolean ok;

    /* Metadata comes from the image: never reach past the partition. */
    if (offset > priv->size || len > priv->size - offset) {
        return write ? EXT2_ET_SHORT_WRITE : EXT2_ET_SHORT_READ;
    }
    ok = write ? vo_disk_pwrite(priv->disk, data, len, priv->offset + offset,
                                &error)
               : vo_disk_pread(priv->disk, data, len, priv->offset + offset,
                               &error);
    if (!ok) {
        if (!priv->error) {
            priv->error = g_steal_pointer(&error);
        }
        return EXT2_ET_LLSEEK_FAILED;
    }
    return 0;
}

static gsize vo_ext_io_len(io_channel channel, int count)
{
    /* A negative count is a byte count, as in unix_io. */
    return count < 0 ? (gsize)-(gint64)count
                     : (gsize)count * channel->block_size;
}

static errcode_t vo_ext_io_read_blk64(io_channel channel,
                                      unsigned long long block, int count,
                                      void *data)
{
    return vo_ext_io_rw(channel, FALSE, block * channel->block_size,
                        vo_ext_io_len(channel, count), data);
}

static errcode_t vo_ext_io_write_blk64(io_channel channel,
                                       unsigned long long block, int count,
                                       const void *data)
{
    return vo_ext_io_rw(channel, TRUE, block * channel->block_size,
                        vo_ext_io_len(channel, count), (void *)data);
}

static errcode_t vo_ext_io_read_blk(io_channel channel, unsigned long block,
                                    int count, void *data)
{
    return vo_ext_io_read_blk64(channel, block, count, data);
}

static errcode_t vo_ext_io_write_blk(io_channel channel, unsigned long block,
                                     int count, const void *data)
{
    return vo_ext_io_write_blk64(channel, block, count, data);
}

static errcode_t vo_ext_io_write_byte(io_channel channel,
                                      unsigned long offset, int count,
                                      const void *data)
{
    if (count < 0) {
        return EXT2_ET_INVALID_ARGUMENT;
    }
    return vo_ext_io_rw(channel, TRUE, offset, count, (void *)data);
}

static errcode_t vo_ext_io_flush(io_channel channel)
{
    /* Durability is VoDisk's job, after the whole change is written. */
    return 0;
}

static errcode_t vo_ext_io_set_option(io_channel channel, const char *option,
                                      const char *arg)
{
    return EXT2_ET_INVALID_ARGUMENT;
}

static struct struct_io_manager vo_ext_manager = {
    .magic = EXT2_ET_MAGIC_IO_MANAGER,
    .name = "vmaugment NBD I/O manager",
    .open = vo_ext_io_open,
    .close = vo_ext_io_close,
    .set_blksize = vo_ext_io_set_blksize,
    .read_blk = vo_ext_io_read_blk,
    .write_blk = vo_ext_io_write_blk,
    .flush = vo_ext_io_flush,
    .write_byte = vo_ext_io_write_byte,
    .set_option = vo_ext_io_set_option,
    .read_blk64 = vo_ext_io_read_blk64,
    .write_blk64 = vo_ext_io_write_blk64,
};

typedef struct {
    ext2_filsys fs;
    VoExtChannel channel;
    char *name;
} VoExt;

static gboolean vo_ext_fail(VoFs *vfs, errcode_t err, GError **error,
                            const char *what)
{
    VoExt *ext = vfs->priv;

    if (ext->channel.error) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "%s: %s", what,
                    ext->channel.error->message);
        g_clear_error(&ext->channel.error);
    } else {
        g_set_error(error, VO_ERROR,
                    err == EXT2_ET_FILE_NOT_FOUND ? VO_ERROR_NOT_FOUND
                                                  : VO_ERROR_FAILED,
                    "%s: %s", what, error_message(err));
    }
    return FALSE;
}

static gboolean vo_ext_lookup(VoFs *vfs, guint64 dir, const char *name,
                              guint64 *node, GError **error)
{
    VoExt *ext = vfs->priv;
    ext2_ino_t ino;
    errcode_t err;

    err = ext2fs_lookup(ext->fs, dir, name, strlen(name), NULL, &ino);
    if (err == EXT2_ET_FILE_NOT_FOUND) {
        g_set_error(error, VO_ERROR, VO_ERROR_NOT_FOUND, "%s: not found",
                    name);
        return FALSE;
    }
    if (err) {
        return vo_ext_fail(vfs, err, error, name);
    }
    *node = ino;
    return TRUE;
}

static gboolean vo_ext_read_inode(VoFs *vfs, guint64 node,
                                  struct ext2_inode *inode, GError **error)
{
    VoExt *ext = vfs->priv;
    errcode_t err;

    if (node == 0 || node > ext->fs->super->s_inodes_count) {
        g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                    "inode %" G_GUINT64_FORMAT " out of range", node);
        return FALSE;
    }
    err = ext2fs_read_inode(ext->fs, node, inode);
    if (err) {
        return vo_ext_fail(vfs, err, error, "read inode");
    }
    return TRUE;
}

/* Refuses on read-only filesystems, then reads the inode to modify. */
static gboolean vo_ext_begin_change(VoFs *vfs, guint64 node,
                                    struct ext2_inode *inode, GError **error)
{
    if (!vfs->writable) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "read-only");
        return FALSE;
    }
    return node == 0 || vo_ext_read_inode(vfs, node, inode, error);
}

static gboolean vo_ext_write_inode(VoFs *vfs, guint64 node,
                                   struct ext2_inode *inode, GError **error)
{
    VoExt *ext = vfs->priv;
    errcode_t err = ext2fs_write_inode(ext->fs, node, inode);

    if (err) {
        return vo_ext_fail(vfs, err, error, "write inode");
    }
    return TRUE;
}

/* Seconds and the large inode's extra field (epoch bits, then
 * nanoseconds shifted by two), as the kernel reads them. */
static gint64 vo_ext_time_ns(guint32 secs, guint32 extra, gboolean has_extra)
{
    gint64 s = (gint32)secs;

    if (!has_extra) {
        return s * G_GINT64_CONSTANT(1000000000);
    }
    s += (gint64)(extra & 3) << 32;
    /* The epoch bits reach the year 2446, nanoseconds only 2262; only
     * equality matters (the scan's cache), so a later time stays in
     * seconds. */
    if (s >= G_MAXINT64 / G_GINT64_CONSTANT(1000000000)) {
        return s;
    }
    return s * G_GINT64_CONSTANT(1000000000) + (extra >> 2);
}

static gboolean vo_ext_stat(VoFs *vfs, guint64 node, VoStat *st,
                            GError **error)
{
    VoExt *ext = vfs->priv;
    struct ext2_inode_large large;
    struct ext2_inode inode;
    gboolean extra;
    errcode_t err;

    if (node == 0 || node > ext->fs->super->s_inodes_count) {
        g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                    "inode %" G_GUINT64_FORMAT " out of range", node);
        return FALSE;
    }
    /* One read for the inode and its extra times: a scan stats every
     * file. */
    memset(&large, 0, sizeof(large));
    err = ext2fs_read_inode_full(ext->fs, node,
                                 (struct ext2_inode *)&large,
                                 sizeof(large));
    if (err) {
        return vo_ext_fail(vfs, err, error, "read inode");
    }
    memcpy(&inode, &large, sizeof(inode));
    extra = EXT2_INODE_SIZE(ext->fs->super) > EXT2_GOOD_OLD_INODE_SIZE &&
            large.i_extra_isize >= 8;
    st->generation = inode.i_generation;
    st->mtime_ns = vo_ext_time_ns(inode.i_mtime, large.i_mtime_extra, extra);
    st->ctime_ns = vo_ext_time_ns(inode.i_ctime, large.i_ctime_extra, extra);
    if (LINUX_S_ISREG(inode.i_mode)) {
        st->type = VO_NODE_REGULAR;
    } else if (LINUX_S_ISDIR(inode.i_mode)) {
        st->type = VO_NODE_DIRECTORY;
    } else if (LINUX_S_ISLNK(inode.i_mode)) {
        st->type = VO_NODE_SYMLINK;
    } else {
        st->type = VO_NODE_OTHER;
    }
    st->mode = inode.i_mode & 07777;
    st->uid = inode_uid(inode);
    st->gid = inode_gid(inode);
    st->size = EXT2_I_SIZE(&inode);
    return TRUE;
}

/* @node's data, refused when larger than @max bytes, or with @head at
 * most @max bytes of it from @offset on. */
static GBytes *vo_ext_read_data(VoFs *vfs, guint64 node, guint64 offset,
                                guint64 max, gboolean head, GError **error)
{
    VoExt *ext = vfs->priv;
    ext2_file_t file;
    errcode_t err;
    guint64 size;
    guint8 *buf;
    guint64 done = 0;

    err = ext2fs_file_open(ext->fs, node, 0, &file);
    if (err) {
        vo_ext_fail(vfs, err, error, "open file");
        return NULL;
    }
    size = ext2fs_file_get_size(file);
    if (head) {
        size = offset < size ? MIN(size - offset, max) : 0;
        err = size ? ext2fs_file_llseek(file, offset, EXT2_SEEK_SET, NULL)
                   : 0;
        if (err) {
            ext2fs_file_close(file);
            vo_ext_fail(vfs, err, error, "seek in file");
            return NULL;
        }
    } else if (size > max) {
        ext2fs_file_close(file);
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "file of %" G_GUINT64_FORMAT " bytes is too large", size);
        return NULL;
    }
    buf = g_malloc(size ? size : 1);
    while (done < size) {
        unsigned int got = 0;

        err = ext2fs_file_read(file, buf + done,
                               MIN(size - done, (guint64)(16 << 20)), &got);
        if (err || got == 0) {
            g_free(buf);
            ext2fs_file_close(file);
            if (!err) {
                g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                            "short read of inode %" G_GUINT64_FORMAT, node);
                return NULL;
            }
            vo_ext_fail(vfs, err, error, "read file");
            return NULL;
        }
        done += got;
    }
    ext2fs_file_close(file);
    return g_bytes_new_take(buf, size);
}

static GBytes *vo_ext_read(VoFs *vfs, guint64 node, GError **error)
{
    return vo_ext_read_data(vfs, node, 0, VO_FS_MAX_FILE, FALSE, error);
}

static GBytes *vo_ext_read_range(VoFs *vfs, guint64 node, guint64 offset,
                                 gsize max, GError **error)
{
    return vo_ext_read_data(vfs, node, offset, max, TRUE, error);
}

static char *vo_ext_readlink(VoFs *vfs, guint64 node, GError **error)
{
    VoExt *ext = vfs->priv;
    struct ext2_inode inode;
    guint64 size;

    if (!vo_ext_read_inode(vfs, node, &inode, error)) {
        return NULL;
    }
    size = EXT2_I_SIZE(&inode);
    if (!LINUX_S_ISLNK(inode.i_mode) || size == 0 || size >= 4096) {
        g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                    "inode %" G_GUINT64_FORMAT " is not a valid symlink",
                    node);
        return NULL;
    }
    if (ext2fs_is_fast_symlink(&inode)) {
        if (size >= sizeof(inode.i_block)) {
            g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                        "fast symlink too long");
            return NULL;
        }
        return g_strndup((const char *)inode.i_block, size);
    }
    if (inode.i_flags & EXT4_INLINE_DATA_FL) {
        char buf[4096];
        size_t len = sizeof(buf);
        errcode_t err = ext2fs_inline_data_get(ext->fs, node, &inode, buf,
                                               &len);
        if (err) {
            vo_ext_fail(vfs, err, error, "inline symlink");
            return NULL;
        }
        return g_strndup(buf, MIN(len, size));
    }
    {
        g_autoptr(GBytes) data = vo_ext_read_data(vfs, node, 0, 4096, FALSE,
                                                   error);
        gsize len;
        const char *p;

        if (!data) {
            return NULL;
        }
        p = g_bytes_get_data(data, &len);
        return g_strndup(p, len);
    }
}

static gboolean vo_ext_write_data(VoFs *vfs, guint64 node, GBytes *data,
                                  GError **error)
{
    VoExt *ext = vfs->priv;
    ext2_file_t file;
    errcode_t err;
    gsize len;
    const guint8 *p = g_bytes_get_data(data, &len);
    gsize done = 0;

    err = ext2fs_file_open(ext->fs, node, EXT2_FILE_WRITE, &file);
    if (err) {
        return vo_ext_fail(vfs, err, error, "open file for writing");
    }
    /* Truncating first frees the old blocks; the inode keeps its owner. */
    err = ext2fs_file_set_size2(file, 0);
    while (!err && done < len) {
        unsigned int wrote = 0;

        err = ext2fs_file_write(file, p + done, MIN(len - done,
                                                   (gsize)(16 << 20)),
                                &wrote);
        if (!err && wrote == 0) {
            err = EXT2_ET_SHORT_WRITE;
        }
        done += wrote;
    }
    if (!err) {
        err = ext2fs_file_set_size2(file, len);
    }
    if (err) {
        ext2fs_file_close(file);
        return vo_ext_fail(vfs, err, error, "write file");
    }
    err = ext2fs_file_close(file);
    if (err) {
        return vo_ext_fail(vfs, err, error, "close file");
    }
    return TRUE;
}

static gboolean vo_ext_touch(VoFs *vfs, guint64 node, GError **error)
{
    struct ext2_inode inode;

    if (!vo_ext_begin_change(vfs, node, &inode, error)) {
        return FALSE;
    }
    inode.i_mtime = inode.i_ctime = time(NULL);
    return vo_ext_write_inode(vfs, node, &inode, error);
}

static gboolean vo_ext_replace(VoFs *vfs, guint64 node, GBytes *data,
                               GError **error)
{
    return vo_ext_write_data(vfs, node, data, error) &&
           vo_ext_touch(vfs, node, error);
}

static errcode_t vo_ext_link(ext2_filsys fs, ext2_ino_t dir, const char *name,
                             ext2_ino_t ino, int type)
{
    errcode_t err = ext2fs_link(fs, dir, name, ino, type);

    if (err == EXT2_ET_DIR_NO_SPACE) {
        err = ext2fs_expand_dir(fs, dir);
        if (!err) {
            err = ext2fs_link(fs, dir, name, ino, type);
        }
    }
    return err;
}

static void vo_ext_set_owner(struct ext2_inode *inode, guint32 uid,
                             guint32 gid)
{
    inode->i_uid = uid & 0xffff;
    ext2fs_set_i_uid_high(*inode, uid >> 16);
    inode->i_gid = gid & 0xffff;
    ext2fs_set_i_gid_high(*inode, gid >> 16);
}

static gboolean vo_ext_create(VoFs *vfs, guint64 dir, const char *name,
                              const VoStat *attrs, GBytes *data,
                              GError **error)
{
    VoExt *ext = vfs->priv;
    ext2_filsys fs = ext->fs;
    struct ext2_inode inode;
    ext2_ino_t ino;
    errcode_t err;

    if (!vo_ext_begin_change(vfs, 0, NULL, error)) {
        return FALSE;
    }
    err = ext2fs_new_inode(fs, dir, LINUX_S_IFREG | 0644, NULL, &ino);
    if (err) {
        return vo_ext_fail(vfs, err, error, "allocate inode");
    }
    err = vo_ext_link(fs, dir, name, ino, EXT2_FT_REG_FILE);
    if (err) {
        return vo_ext_fail(vfs, err, error, "link");
    }
    ext2fs_inode_alloc_stats2(fs, ino, +1, 0);

    memset(&inode, 0, sizeof(inode));
    inode.i_mode = LINUX_S_IFREG | (attrs->mode & 07777);
    inode.i_atime = inode.i_ctime = inode.i_mtime = time(NULL);
    inode.i_links_count = 1;
    vo_ext_set_owner(&inode, attrs->uid, attrs->gid);
    if (ext2fs_has_feature_extents(fs->super)) {
        ext2_extent_handle_t handle;

        /* Opening an extent handle on a fresh inode writes its header. */
        inode.i_flags &= ~EXT4_EXTENTS_FL;
        err = ext2fs_extent_open2(fs, ino, &inode, &handle);
        if (err) {
            return vo_ext_fail(vfs, err, error, "extent header");
        }
        ext2fs_extent_free(handle);
    }
    err = ext2fs_write_new_inode(fs, ino, &inode);
    if (err) {
        return vo_ext_fail(vfs, err, error, "write inode");
    }
    return vo_ext_write_data(vfs, ino, data, error);
}

static gboolean vo_ext_mkdir(VoFs *vfs, guint64 dir, const char *name,
                             const VoStat *attrs, GError **error)
{
    VoExt *ext = vfs->priv;
    struct ext2_inode inode;
    ext2_ino_t ino;
    errcode_t err;

    if (!vo_ext_begin_change(vfs, 0, NULL, error)) {
        return FALSE;
    }
    err = ext2fs_mkdir(ext->fs, dir, 0, name);
    if (err == EXT2_ET_DIR_NO_SPACE) {
        err = ext2fs_expand_dir(ext->fs, dir);
        if (!err) {
            err = ext2fs_mkdir(ext->fs, dir, 0, name);
        }
    }
    if (err) {
        return vo_ext_fail(vfs, err, error, "mkdir");
    }
    err = ext2fs_lookup(ext->fs, dir, name, strlen(name), NULL, &ino);
    if (err || ext2fs_read_inode(ext->fs, ino, &inode)) {
        return vo_ext_fail(vfs, err ? err : EXT2_ET_SHORT_READ, error,
                           "mkdir lookup");
    }
    inode.i_mode = LINUX_S_IFDIR | (attrs->mode & 07777);
    vo_ext_set_owner(&inode, attrs->uid, attrs->gid);
    return vo_ext_write_inode(vfs, ino, &inode, error);
}

static gboolean vo_ext_remove(VoFs *vfs, guint64 dir, const char *name,
                              guint64 node, GError **error)
{
    VoExt *ext = vfs->priv;
    ext2_filsys fs = ext->fs;
    struct ext2_inode inode;
    errcode_t err;

    if (!vo_ext_begin_change(vfs, node, &inode, error)) {
        return FALSE;
    }
    if (LINUX_S_ISDIR(inode.i_mode)) {
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "%s is a directory; only files and links are deleted",
                    name);
        return FALSE;
    }
    err = ext2fs_unlink(fs, dir, name, node, 0);
    if (err) {
        return vo_ext_fail(vfs, err, error, "unlink");
    }
    if (inode.i_links_count > 0) {
        inode.i_links_count--;
    }
    inode.i_ctime = time(NULL);
    if (inode.i_links_count == 0) {
        /* The same release debugfs's kill_file performs. */
        if (ext2fs_inode_has_valid_blocks2(fs, &inode)) {
            err = ext2fs_punch(fs, node, &inode, NULL, 0, ~0ULL);
            if (err) {
                return vo_ext_fail(vfs, err, error, "free blocks");
            }
        }
        inode.i_dtime = time(NULL);
        ext2fs_inode_alloc_stats2(fs, node, -1, 0);
    }
    return vo_ext_write_inode(vfs, node, &inode, error);
}

static gboolean vo_ext_symlink(VoFs *vfs, guint64 dir, const char *name,
                               const char *target, guint32 uid, guint32 gid,
                               GError **error)
{
    VoExt *ext = vfs->priv;
    struct ext2_inode inode;
    ext2_ino_t ino;
    errcode_t err;

    if (!vo_ext_begin_change(vfs, 0, NULL, error)) {
        return FALSE;
    }
    /* ext2fs_symlink() copies at most a block of target. */
    if (strlen(target) >= ext->fs->blocksize) {
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "%s: link target too long", name);
        return FALSE;
    }
    err = ext2fs_symlink(ext->fs, dir, 0, name, target);
    if (err == EXT2_ET_DIR_NO_SPACE) {
        err = ext2fs_expand_dir(ext->fs, dir);
        if (!err) {
            err = ext2fs_symlink(ext->fs, dir, 0, name, target);
        }
    }
    if (err) {
        return vo_ext_fail(vfs, err, error, "symlink");
    }
    err = ext2fs_lookup(ext->fs, dir, name, strlen(name), NULL, &ino);
    if (err || ext2fs_read_inode(ext->fs, ino, &inode)) {
        return vo_ext_fail(vfs, err ? err : EXT2_ET_SHORT_READ, error,
                           "symlink lookup");
    }
    vo_ext_set_owner(&inode, uid, gid);
    return vo_ext_write_inode(vfs, ino, &inode, error);
}

static gboolean vo_ext_hardlink(VoFs *vfs, guint64 dir, const char *name,
                                guint64 node, GError **error)
{
    VoExt *ext = vfs->priv;
    struct ext2_inode inode;
    errcode_t err;

    if (!vo_ext_begin_change(vfs, node, &inode, error)) {
        return FALSE;
    }
    if ((!LINUX_S_ISREG(inode.i_mode) && !LINUX_S_ISLNK(inode.i_mode)) ||
        inode.i_links_count >= 65000) {
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "%s: hard links only to files and symbolic links with "
                    "fewer than 65000 links", name);
        return FALSE;
    }
    err = vo_ext_link(ext->fs, dir, name, node,
                      LINUX_S_ISLNK(inode.i_mode) ? EXT2_FT_SYMLINK
                                                  : EXT2_FT_REG_FILE);
    if (err) {
        return vo_ext_fail(vfs, err, error, "link");
    }
    inode.i_links_count++;
    inode.i_ctime = time(NULL);
    return vo_ext_write_inode(vfs, node, &inode, error);
}

static int vo_ext_count_entry(ext2_ino_t dir, int entry,
                              struct ext2_dir_entry *dirent, int offset,
                              int blocksize, char *buf, void *priv)
{
    int len = ext2fs_dirent_name_len(dirent);
    guint *count = priv;

    if (dirent->inode &&
        !(len == 1 && dirent->name[0] == '.') &&
        !(len == 2 && dirent->name[0] == '.' && dirent->name[1] == '.')) {
        (*count)++;
        return DIRENT_ABORT;
    }
    return 0;
}

/* The steps of debugfs's rmdir: an empty directory's inode and blocks
 * released, its entry removed, its parent's link count lowered. */
static gboolean vo_ext_rmdir(VoFs *vfs, guint64 dir, const char *name,
                             guint64 node, GError **error)
{
    VoExt *ext = vfs->priv;
    ext2_filsys fs = ext->fs;
    struct ext2_inode inode, parent;
    guint entries = 0;
    errcode_t err;

    if (!vo_ext_begin_change(vfs, node, &inode, error) ||
        !vo_ext_read_inode(vfs, dir, &parent, error)) {
        return FALSE;
    }
    if (!LINUX_S_ISDIR(inode.i_mode)) {
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "%s is not a directory", name);
        return FALSE;
    }
    err = ext2fs_dir_iterate2(fs, node, 0, NULL, vo_ext_count_entry,
                              &entries);
    if (err) {
        return vo_ext_fail(vfs, err, error, "read directory");
    }
    if (entries) {
        g_set_error(error, VO_ERROR, VO_ERROR_EXISTS,
                    "%s: directory not empty", name);
        return FALSE;
    }
    err = ext2fs_unlink(fs, dir, name, node, 0);
    if (err) {
        return vo_ext_fail(vfs, err, error, "unlink");
    }
    inode.i_links_count = 0;
    inode.i_dtime = inode.i_ctime = time(NULL);
    if (ext2fs_inode_has_valid_blocks2(fs, &inode)) {
        err = ext2fs_punch(fs, node, &inode, NULL, 0, ~0ULL);
        if (err) {
            return vo_ext_fail(vfs, err, error, "free blocks");
        }
    }
    ext2fs_inode_alloc_stats2(fs, node, -1, 1);
    if (!vo_ext_write_inode(vfs, node, &inode, error)) {
        return FALSE;
    }
    if (parent.i_links_count > 1) {
        parent.i_links_count--;
    }
    parent.i_ctime = parent.i_mtime = time(NULL);
    return vo_ext_write_inode(vfs, dir, &parent, error);
}

typedef struct {
    GPtrArray *entries;
    guint max;
    gboolean too_many;
} VoExtList;

static int vo_ext_list_entry(ext2_ino_t dir, int entry,
                             struct ext2_dir_entry *dirent, int offset,
                             int blocksize, char *buf, void *priv)
{
    VoExtList *l = priv;
    int len = ext2fs_dirent_name_len(dirent);
    VoDirEntry *e;

    if (!dirent->inode || len == 0 ||
        (len == 1 && dirent->name[0] == '.') ||
        (len == 2 && dirent->name[0] == '.' && dirent->name[1] == '.')) {
        return 0;
    }
    if (l->entries->len >= l->max) {
        l->too_many = TRUE;
        return DIRENT_ABORT;
    }
    e = g_new(VoDirEntry, 1);
    e->name = g_strndup(dirent->name, len);
    e->node = dirent->inode;
    /* A NUL inside a name: not a name the guest could open. */
    if (strlen(e->name) != (gsize)len) {
        vo_dir_entry_free(e);
        return 0;
    }
    g_ptr_array_add(l->entries, e);
    return 0;
}

static GPtrArray *vo_ext_list(VoFs *vfs, guint64 dir, guint max,
                              GError **error)
{
    VoExt *ext = vfs->priv;
    struct ext2_inode inode;
    g_autoptr(GPtrArray) entries = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vo_dir_entry_free);
    VoExtList l = { entries, max, FALSE };
    errcode_t err;

    if (!vo_ext_read_inode(vfs, dir, &inode, error)) {
        return NULL;
    }
    if (!LINUX_S_ISDIR(inode.i_mode)) {
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "inode %" G_GUINT64_FORMAT " is not a directory", dir);
        return NULL;
    }
    err = ext2fs_dir_iterate2(ext->fs, dir, 0, NULL, vo_ext_list_entry, &l);
    if (err) {
        vo_ext_fail(vfs, err, error, "read directory");
        return NULL;
    }
    if (l.too_many) {
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "directory of more than %u entries", max);
        return NULL;
    }
    return g_steal_pointer(&entries);
}

static gboolean vo_ext_set_attrs(VoFs *vfs, guint64 node, const guint32 *mode,
                                 const guint32 *uid, const guint32 *gid,
                                 GError **error)
{
    struct ext2_inode inode;

    if (!vo_ext_begin_change(vfs, node, &inode, error)) {
        return FALSE;
    }
    if (mode) {
        inode.i_mode = (inode.i_mode & ~07777) | (*mode & 07777);
    }
    vo_ext_set_owner(&inode, uid ? *uid : inode_uid(inode),
                     gid ? *gid : inode_gid(inode));
    inode.i_ctime = time(NULL);
    return vo_ext_write_inode(vfs, node, &inode, error);
}

static gboolean vo_ext_set_xattr(VoFs *vfs, guint64 node, const char *name,
                                 GBytes *value, GError **error)
{
    VoExt *ext = vfs->priv;
    struct ext2_xattr_handle *h = NULL;
    struct ext2_inode inode;
    errcode_t err;

    if (!vo_ext_begin_change(vfs, node, &inode, error)) {
        return FALSE;
    }
    err = ext2fs_xattrs_open(ext->fs, node, &h);
    if (!err) {
        err = ext2fs_xattrs_read(h);
    }
    if (!err) {
        err = value ? ext2fs_xattr_set(h, name, g_bytes_get_data(value, NULL),
                                       g_bytes_get_size(value))
                    : ext2fs_xattr_remove(h, name);
    }
    if (h) {
        /* Closing writes the attributes back. */
        errcode_t cerr = ext2fs_xattrs_close(&h);

        if (!err) {
            err = cerr;
        }
    }
    if (err) {
        return vo_ext_fail(vfs, err, error, "extended attribute");
    }
    return TRUE;
}

static GBytes *vo_ext_get_xattr(VoFs *vfs, guint64 node, const char *name,
                                GError **error)
{
    VoExt *ext = vfs->priv;
    struct ext2_xattr_handle *h = NULL;
    void *value = NULL;
    size_t len = 0;
    errcode_t err;
    GBytes *out = NULL;

    err = ext2fs_xattrs_open(ext->fs, node, &h);
    if (!err) {
        err = ext2fs_xattrs_read(h);
    }
    if (!err) {
        err = ext2fs_xattr_get(h, name, &value, &len);
    }
    if (h) {
        ext2fs_xattrs_close(&h);
    }
    if (err == EXT2_ET_EA_KEY_NOT_FOUND) {
        g_set_error(error, VO_ERROR, VO_ERROR_NOT_FOUND, "no attribute %s",
                    name);
        return NULL;
    }
    if (err) {
        vo_ext_fail(vfs, err, error, "extended attribute");
        return NULL;
    }
    out = g_bytes_new(value, len);
    ext2fs_free_mem(&value);
    return out;
}

static gboolean vo_ext_sync(VoFs *vfs, GError **error)
{
    VoExt *ext = vfs->priv;
    errcode_t err;

    if (!vfs->writable) {
        return TRUE;
    }
    err = ext2fs_write_bitmaps(ext->fs);
    if (!err) {
        ext2fs_mark_super_dirty(ext->fs);
        err = ext2fs_flush(ext->fs);
    }
    if (err) {
        return vo_ext_fail(vfs, err, error, "write metadata");
    }
    return TRUE;
}

static void vo_ext_close(VoFs *vfs)
{
    VoExt *ext = vfs->priv;

    /* Nothing unsynced may reach the disk: free, never ext2fs_close(). */
    if (ext->fs) {
        ext2fs_free(ext->fs);
    }
    g_mutex_lock(&vo_ext_lock);
    g_hash_table_remove(vo_ext_channels, ext->name);
    g_mutex_unlock(&vo_ext_lock);
    g_clear_error(&ext->channel.error);
    g_free(ext->name);
    g_free(ext);
    g_free(vfs);
}

static const VoFsOps vo_ext_ops = {
    .lookup = vo_ext_lookup,
    .stat = vo_ext_stat,
    .readlink = vo_ext_readlink,
    .list = vo_ext_list,
    .read = vo_ext_read,
    .read_range = vo_ext_read_range,
    .create = vo_ext_create,
    .mkdir = vo_ext_mkdir,
    .replace = vo_ext_replace,
    .remove = vo_ext_remove,
    .symlink = vo_ext_symlink,
    .link = vo_ext_hardlink,
    .rmdir = vo_ext_rmdir,
    .set_attrs = vo_ext_set_attrs,
    .set_xattr = vo_ext_set_xattr,
    .get_xattr = vo_ext_get_xattr,
    .sync = vo_ext_sync,
    .close = vo_ext_close,
};

VoFs *vo_ext_open(VoDisk *disk, const VoPartition *part, GError **error)
{
    g_autoptr(VoFs) vfs = g_new0(VoFs, 1);
    VoExt *ext = g_new0(VoExt, 1);
    gboolean writable = vo_disk_get_writable(disk);
    int flags = EXT2_FLAG_64BITS | (writable ? EXT2_FLAG_RW : 0);
    struct ext2_super_block *sb;
    errcode_t err;

    vfs->ops = &vo_ext_ops;
    vfs->priv = ext;
    vfs->root = EXT2_ROOT_INO;
    vfs->writable = writable;
    vfs->has_owners = TRUE;
    vfs->type = "ext";
    ext->channel.disk = disk;
    ext->channel.offset = part->offset;
    ext->channel.size = part->size;

    g_mutex_lock(&vo_ext_lock);
    if (!vo_ext_channels) {
        vo_ext_channels = g_hash_table_new_full(g_str_hash, g_str_equal,
                                                g_free, NULL);
        initialize_ext2_error_table();
    }
    ext->name = g_strdup_printf("vmaugment-nbd:%u", vo_ext_next_id++);
    g_hash_table_insert(vo_ext_channels, g_strdup(ext->name), &ext->channel);
    g_mutex_unlock(&vo_ext_lock);

    err = ext2fs_open2(ext->name, NULL, flags, 0, 0, &vo_ext_manager,
                       &ext->fs);
    if (err) {
        ext->fs = NULL;
        if (err == EXT2_ET_UNSUPP_FEATURE || err == EXT2_ET_RO_UNSUPP_FEATURE) {
            g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                        "partition %d: ext filesystem uses features this "
                        "libext2fs cannot handle", part->number);
            return NULL;
        }
        vo_ext_fail(vfs, err, error, "open ext filesystem");
        return NULL;
    }
    sb = ext->fs->super;
    if (ext2fs_has_feature_journal_needs_recovery(sb)) {
        g_set_error(error, VO_ERROR, VO_ERROR_DIRTY,
                    "partition %d: ext filesystem needs journal recovery "
                    "(not cleanly unmounted); boot the guest or run e2fsck "
                    "first", part->number);
        return NULL;
    }
    if (!(sb->s_state & EXT2_VALID_FS) || (sb->s_state & EXT2_ERROR_FS)) {
        g_set_error(error, VO_ERROR, VO_ERROR_DIRTY,
                    "partition %d: ext filesystem is dirty or has errors; "
                    "run e2fsck first", part->number);
        return NULL;
    }
    vfs->type = ext2fs_has_feature_journal(sb)
                    ? (ext2fs_has_feature_extents(sb) ? "ext4" : "ext3")
                    : "ext2";
    if (writable) {
        err = ext2fs_read_bitmaps(ext->fs);
        if (err) {
            vo_ext_fail(vfs, err, error, "read bitmaps");
            return NULL;
        }
    }
    return g_steal_pointer(&vfs);
}
