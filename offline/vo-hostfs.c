/*
 * A guest filesystem the host kernel has mounted (--host-kernel,
 * vo-hostkernel.c), as a VoFs for vo-patch.c.  The tree was written by
 * the guest: every path is opened with openat2() beneath the mount's
 * root, refusing symbolic links, magic links and other mounts on the
 * way, so that a link the guest planted (/etc/x -> /root) can never lead
 * a write out of its filesystem.  vo-guest.c resolves the guest's links
 * itself, inside the guest, before a path reaches this driver; the
 * kernel's refusal is the second wall, against anything that changed or
 * was missed between the two.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "vo-hostfs.h"

/* Symbolic links longer than this are not read (PATH_MAX). */
#define VO_HOSTFS_MAX_LINK 4096

typedef struct {
    int root;               /* the mount's root; borrowed */
    VoFsPaths paths;        /* relative to the root, which is "." */
} VoHostFs;

static VoHostFs *vo_hostfs_priv(VoFs *fs)
{
    return fs->priv;
}

static gboolean vo_hostfs_fail(const char *what, const char *path, int err,
                               GError **error)
{
    int code = VO_ERROR_FAILED;

    if (err == ENOENT || err == ENODATA) {
        code = VO_ERROR_NOT_FOUND;
    } else if (err == EEXIST || err == ENOTEMPTY) {
        code = VO_ERROR_EXISTS;
    } else if (err == ELOOP || err == EXDEV) {
        /* openat2() met a link or a mount on the way. */
        g_set_error(error, VO_ERROR, VO_ERROR_ESCAPE,
                    "%s /%s: the path crosses a link or another mount, "
                    "which the host-kernel route never follows", what,
                    g_str_equal(path, ".") ? "" : path);
        return FALSE;
    }
    g_set_error(error, VO_ERROR, code, "%s /%s: %s", what,
                g_str_equal(path, ".") ? "" : path, g_strerror(err));
    return FALSE;
}

static const char *vo_hostfs_path(VoFs *fs, guint64 node)
{
    return vo_fs_paths_get(&vo_hostfs_priv(fs)->paths, node, ".");
}

/* @path below the root, never through a link or out of the mount. */
static int vo_hostfs_open_path(VoHostFs *p, const char *path, guint64 flags,
                               mode_t mode)
{
    struct open_how how = {
        .flags = flags | O_CLOEXEC | O_NOFOLLOW,
        .mode = mode,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
                   RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
    };
    int fd;

    do {
        fd = syscall(SYS_openat2, p->root, path, &how, sizeof(how));
    } while (fd < 0 && errno == EAGAIN);
    return fd;
}

static int vo_hostfs_open(VoFs *fs, guint64 node, guint64 flags,
                          GError **error)
{
    const char *path = vo_hostfs_path(fs, node);
    int fd = vo_hostfs_open_path(vo_hostfs_priv(fs), path, flags, 0);

    if (fd < 0) {
        vo_hostfs_fail("open", path, errno, error);
    }
    return fd;
}

/* The directory @dir, to act on one of its names with the *at() calls. */
static int vo_hostfs_open_dir(VoFs *fs, guint64 dir, GError **error)
{
    return vo_hostfs_open(fs, dir, O_PATH | O_DIRECTORY, error);
}

static char *vo_hostfs_child(VoFs *fs, guint64 dir, const char *name)
{
    const char *base = vo_hostfs_path(fs, dir);

    return g_str_equal(base, ".") ? g_strdup(name)
                                  : g_strconcat(base, "/", name, NULL);
}

/* A name of one component, as the *at() calls below take it. */
static gboolean vo_hostfs_check_name(const char *name, GError **error)
{
    if (!*name || strchr(name, '/') || g_str_equal(name, ".") ||
        g_str_equal(name, "..")) {
        g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                    "'%s' is not a file name", name);
        return FALSE;
    }
    return TRUE;
}

/* The directory @dir, to act on its name @name (checked) with *at(). */
static int vo_hostfs_open_parent(VoFs *fs, guint64 dir, const char *name,
                                 GError **error)
{
    if (!vo_hostfs_check_name(name, error)) {
        return -1;
    }
    return vo_hostfs_open_dir(fs, dir, error);
}

static gboolean vo_hostfs_lookup(VoFs *fs, guint64 dir, const char *name,
                                 guint64 *node, GError **error)
{
    g_autofree char *path = NULL;
    int fd;

    if (!vo_hostfs_check_name(name, error)) {
        return FALSE;
    }
    path = vo_hostfs_child(fs, dir, name);
    fd = vo_hostfs_open_path(vo_hostfs_priv(fs), path, O_PATH, 0);
    if (fd < 0) {
        return vo_hostfs_fail("lookup", path, errno, error);
    }
    close(fd);
    *node = vo_fs_paths_intern(&vo_hostfs_priv(fs)->paths,
                               g_steal_pointer(&path));
    return TRUE;
}

static void vo_hostfs_fill(const struct stat *st, VoStat *out)
{
    out->type = vo_fs_node_type(st->st_mode);
    out->mode = st->st_mode & 07777;
    out->uid = st->st_uid;
    out->gid = st->st_gid;
    out->size = st->st_size;
    out->generation = 0;
    out->mtime_ns = st->st_mtim.tv_sec * G_GINT64_CONSTANT(1000000000) +
                    st->st_mtim.tv_nsec;
    out->ctime_ns = st->st_ctim.tv_sec * G_GINT64_CONSTANT(1000000000) +
                    st->st_ctim.tv_nsec;
}

static gboolean vo_hostfs_stat(VoFs *fs, guint64 node, VoStat *out,
                               GError **error)
{
    struct stat st;
    int fd = vo_hostfs_open(fs, node, O_PATH, error);

    if (fd < 0) {
        return FALSE;
    }
    if (fstat(fd, &st) < 0) {
        int saved = errno;

        close(fd);
        return vo_hostfs_fail("stat", vo_hostfs_path(fs, node), saved,
                              error);
    }
    close(fd);
    vo_hostfs_fill(&st, out);
    return TRUE;
}

static char *vo_hostfs_readlink(VoFs *fs, guint64 node, GError **error)
{
    char buf[VO_HOSTFS_MAX_LINK + 1];
    int fd = vo_hostfs_open(fs, node, O_PATH, error);
    ssize_t n;

    if (fd < 0) {
        return NULL;
    }
    n = readlinkat(fd, "", buf, sizeof(buf));
    if (n < 0) {
        int saved = errno;

        close(fd);
        vo_hostfs_fail("readlink", vo_hostfs_path(fs, node), saved, error);
        return NULL;
    }
    close(fd);
    if (n > VO_HOSTFS_MAX_LINK) {
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "the link /%s is too long", vo_hostfs_path(fs, node));
        return NULL;
    }
    return g_strndup(buf, n);
}

/* An open file of @node that is a regular file, or -1. */
static int vo_hostfs_open_regular(VoFs *fs, guint64 node, int flags,
                                  struct stat *st, GError **error)
{
    /* O_NONBLOCK: a FIFO the guest left must not hang us. */
    int fd = vo_hostfs_open(fs, node, flags | O_NONBLOCK, error);

    if (fd < 0) {
        return -1;
    }
    if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode)) {
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "/%s is not a regular file", vo_hostfs_path(fs, node));
        close(fd);
        return -1;
    }
    return fd;
}

/* @node's data, refused when larger than @max bytes, or with @head at
 * most @max bytes of it from @offset on. */
static GBytes *vo_hostfs_read_data(VoFs *fs, guint64 node, guint64 offset,
                                   guint64 max, gboolean head, GError **error)
{
    struct stat st;
    g_autofree char *buf = NULL;
    gsize got = 0;
    guint64 size;
    int fd = vo_hostfs_open_regular(fs, node, O_RDONLY, &st, error);

    if (fd < 0) {
        return NULL;
    }
    size = (guint64)st.st_size;
    if (head) {
        size = offset < size ? MIN(size - offset, max) : 0;
    }
    if (size > max) {
        close(fd);
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "/%s is too large to read", vo_hostfs_path(fs, node));
        return NULL;
    }
    buf = g_malloc(size + 1);
    while (got < size) {
        ssize_t n = pread(fd, buf + got, size - got, offset + got);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            int saved = n < 0 ? errno : EIO;

            close(fd);
            vo_hostfs_fail("read", vo_hostfs_path(fs, node), saved, error);
            return NULL;
        }
        got += n;
    }
    close(fd);
    return g_bytes_new_take(g_steal_pointer(&buf), got);
}

static GBytes *vo_hostfs_read(VoFs *fs, guint64 node, GError **error)
{
    return vo_hostfs_read_data(fs, node, 0, VO_FS_MAX_FILE, FALSE, error);
}

static GBytes *vo_hostfs_read_range(VoFs *fs, guint64 node, guint64 offset,
                                    gsize max, GError **error)
{
    return vo_hostfs_read_data(fs, node, offset, max, TRUE, error);
}

static gboolean vo_hostfs_write_all(int fd, GBytes *data, const char *path,
                                    GError **error)
{
    gsize len;
    const char *bytes = g_bytes_get_data(data, &len);

    while (len > 0) {
        ssize_t n = write(fd, bytes, len);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return vo_hostfs_fail("write", path, errno, error);
        }
        bytes += n;
        len -= n;
    }
    return TRUE;
}

/* Owners before the mode: chown clears set-id bits. */
static gboolean vo_hostfs_fd_attrs(int fd, const VoStat *attrs,
                                   const char *path, GError **error)
{
    if (fchown(fd, attrs->uid, attrs->gid) < 0) {
        return vo_hostfs_fail("chown", path, errno, error);
    }
    if (fchmod(fd, attrs->mode & 07777) < 0) {
        return vo_hostfs_fail("chmod", path, errno, error);
    }
    return TRUE;
}

static gboolean vo_hostfs_create(VoFs *fs, guint64 dir, const char *name,
                                 const VoStat *attrs, GBytes *data,
                                 GError **error)
{
    g_autofree char *path = vo_hostfs_child(fs, dir, name);
    gboolean ok;
    int dfd, fd;

    dfd = vo_hostfs_open_parent(fs, dir, name, error);
    if (dfd < 0) {
        return FALSE;
    }
    /* O_EXCL: a name the guest made a link meanwhile is not followed. */
    fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
                O_CLOEXEC, 0600);
    close(dfd);
    if (fd < 0) {
        return vo_hostfs_fail("create", path, errno, error);
    }
    ok = vo_hostfs_write_all(fd, data, path, error) &&
         vo_hostfs_fd_attrs(fd, attrs, path, error);
    close(fd);
    return ok;
}

static gboolean vo_hostfs_mkdir(VoFs *fs, guint64 dir, const char *name,
                                const VoStat *attrs, GError **error)
{
    g_autofree char *path = vo_hostfs_child(fs, dir, name);
    gboolean ok;
    int dfd, fd;

    dfd = vo_hostfs_open_parent(fs, dir, name, error);
    if (dfd < 0) {
        return FALSE;
    }
    if (mkdirat(dfd, name, 0700) < 0) {
        int saved = errno;

        close(dfd);
        return vo_hostfs_fail("mkdir", path, saved, error);
    }
    fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    close(dfd);
    if (fd < 0) {
        return vo_hostfs_fail("mkdir", path, errno, error);
    }
    ok = vo_hostfs_fd_attrs(fd, attrs, path, error);
    close(fd);
    return ok;
}

static gboolean vo_hostfs_replace(VoFs *fs, guint64 node, GBytes *data,
                                  GError **error)
{
    const char *path = vo_hostfs_path(fs, node);
    struct stat st;
    gboolean ok;
    int fd = vo_hostfs_open_regular(fs, node, O_WRONLY, &st, error);

    if (fd < 0) {
        return FALSE;
    }
    /* The same inode: mode, owners and other links stay. */
    ok = ftruncate(fd, 0) == 0
             ? vo_hostfs_write_all(fd, data, path, error)
             : vo_hostfs_fail("truncate", path, errno, error);
    close(fd);
    return ok;
}

static gboolean vo_hostfs_unlink(VoFs *fs, guint64 dir, const char *name,
                                 int flags, GError **error)
{
    g_autofree char *path = vo_hostfs_child(fs, dir, name);
    int dfd, rc;

    dfd = vo_hostfs_open_parent(fs, dir, name, error);
    if (dfd < 0) {
        return FALSE;
    }
    rc = unlinkat(dfd, name, flags);
    if (rc < 0) {
        int saved = errno;

        close(dfd);
        return vo_hostfs_fail(flags ? "rmdir" : "remove", path, saved,
                              error);
    }
    close(dfd);
    return TRUE;
}

static gboolean vo_hostfs_remove(VoFs *fs, guint64 dir, const char *name,
                                 guint64 node, GError **error)
{
    return vo_hostfs_unlink(fs, dir, name, 0, error);
}

static gboolean vo_hostfs_rmdir(VoFs *fs, guint64 dir, const char *name,
                                guint64 node, GError **error)
{
    return vo_hostfs_unlink(fs, dir, name, AT_REMOVEDIR, error);
}

static gboolean vo_hostfs_symlink(VoFs *fs, guint64 dir, const char *name,
                                  const char *target, guint32 uid,
                                  guint32 gid, GError **error)
{
    g_autofree char *path = vo_hostfs_child(fs, dir, name);
    int dfd;

    dfd = vo_hostfs_open_parent(fs, dir, name, error);
    if (dfd < 0) {
        return FALSE;
    }
    if (symlinkat(target, dfd, name) < 0 ||
        fchownat(dfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0) {
        int saved = errno;

        close(dfd);
        return vo_hostfs_fail("symlink", path, saved, error);
    }
    close(dfd);
    return TRUE;
}

static gboolean vo_hostfs_link(VoFs *fs, guint64 dir, const char *name,
                               guint64 node, GError **error)
{
    g_autofree char *path = vo_hostfs_child(fs, dir, name);
    int dfd, sfd, rc;

    if (!vo_hostfs_check_name(name, error)) {
        return FALSE;
    }
    sfd = vo_hostfs_open(fs, node, O_PATH, error);
    if (sfd < 0) {
        return FALSE;
    }
    dfd = vo_hostfs_open_dir(fs, dir, error);
    if (dfd < 0) {
        close(sfd);
        return FALSE;
    }
    rc = linkat(sfd, "", dfd, name, AT_EMPTY_PATH);
    if (rc < 0) {
        int saved = errno;

        close(sfd);
        close(dfd);
        return vo_hostfs_fail("link", path, saved, error);
    }
    close(sfd);
    close(dfd);
    return TRUE;
}

static gboolean vo_hostfs_set_attrs(VoFs *fs, guint64 node,
                                    const guint32 *mode, const guint32 *uid,
                                    const guint32 *gid, GError **error)
{
    const char *path = vo_hostfs_path(fs, node);
    struct stat st;
    int fd = vo_hostfs_open(fs, node, O_PATH, error);

    if (fd < 0) {
        return FALSE;
    }
    if ((uid || gid) &&
        fchownat(fd, "", uid ? (uid_t)*uid : (uid_t)-1,
                 gid ? (gid_t)*gid : (gid_t)-1,
                 AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
        int saved = errno;

        close(fd);
        return vo_hostfs_fail("chown", path, saved, error);
    }
    if (fstat(fd, &st) < 0) {
        int saved = errno;

        close(fd);
        return vo_hostfs_fail("stat", path, saved, error);
    }
    close(fd);
    if (!mode || S_ISLNK(st.st_mode)) {
        /* A link has no mode of its own on Linux. */
        return TRUE;
    }
    fd = vo_hostfs_open(fs, node, O_RDONLY | O_NONBLOCK, error);
    if (fd < 0) {
        return FALSE;
    }
    if (fchmod(fd, *mode & 07777) < 0) {
        int saved = errno;

        close(fd);
        return vo_hostfs_fail("chmod", path, saved, error);
    }
    close(fd);
    return TRUE;
}

static gboolean vo_hostfs_set_xattr(VoFs *fs, guint64 node, const char *name,
                                    GBytes *value, GError **error)
{
    const char *path = vo_hostfs_path(fs, node);
    int fd = vo_hostfs_open(fs, node, O_RDONLY | O_NONBLOCK, error);
    gsize len = 0;
    const void *bytes = value ? g_bytes_get_data(value, &len) : NULL;
    int rc;

    if (fd < 0) {
        return FALSE;
    }
    rc = value ? fsetxattr(fd, name, bytes ? bytes : "", len, 0)
               : fremovexattr(fd, name);
    if (rc < 0) {
        int saved = errno;

        close(fd);
        return vo_hostfs_fail("setxattr", path, saved, error);
    }
    close(fd);
    return TRUE;
}

static GBytes *vo_hostfs_get_xattr(VoFs *fs, guint64 node, const char *name,
                                   GError **error)
{
    const char *path = vo_hostfs_path(fs, node);
    int fd = vo_hostfs_open(fs, node, O_RDONLY | O_NONBLOCK, error);
    g_autofree char *buf = NULL;
    ssize_t n;

    if (fd < 0) {
        return NULL;
    }
    /* An attribute's value is at most 64 KiB (XATTR_SIZE_MAX). */
    buf = g_malloc(65536);
    n = fgetxattr(fd, name, buf, 65536);
    if (n < 0) {
        int saved = errno;

        close(fd);
        vo_hostfs_fail("getxattr", path, saved, error);
        return NULL;
    }
    close(fd);
    return g_bytes_new(buf, n);
}

static gboolean vo_hostfs_sync(VoFs *fs, GError **error)
{
    /* The root may be an O_PATH descriptor (fsmount()), which syncfs()
     * does not take. */
    int fd = vo_hostfs_open(fs, fs->root, O_RDONLY | O_DIRECTORY, error);
    int rc;

    if (fd < 0) {
        return FALSE;
    }
    rc = syncfs(fd);
    close(fd);
    if (rc < 0) {
        return vo_hostfs_fail("sync", ".", errno, error);
    }
    return TRUE;
}

static void vo_hostfs_close(VoFs *fs)
{
    VoHostFs *p = vo_hostfs_priv(fs);

    vo_fs_paths_clear(&p->paths);
    g_free(p);
    g_free(fs);
}

static const VoFsOps vo_hostfs_ops = {
    .lookup = vo_hostfs_lookup,
    .stat = vo_hostfs_stat,
    .readlink = vo_hostfs_readlink,
    .read = vo_hostfs_read,
    .read_range = vo_hostfs_read_range,
    .create = vo_hostfs_create,
    .mkdir = vo_hostfs_mkdir,
    .replace = vo_hostfs_replace,
    .remove = vo_hostfs_remove,
    .symlink = vo_hostfs_symlink,
    .link = vo_hostfs_link,
    .rmdir = vo_hostfs_rmdir,
    .set_attrs = vo_hostfs_set_attrs,
    .set_xattr = vo_hostfs_set_xattr,
    .get_xattr = vo_hostfs_get_xattr,
    .sync = vo_hostfs_sync,
    .close = vo_hostfs_close,
};

VoFs *vo_hostfs_open_root(int root, const char *type, gboolean writable)
{
    VoHostFs *p = g_new0(VoHostFs, 1);
    VoFs *fs = g_new0(VoFs, 1);

    p->root = root;
    vo_fs_paths_init(&p->paths);
    fs->ops = &vo_hostfs_ops;
    fs->type = g_intern_string(type);
    fs->writable = writable;
    fs->has_owners = TRUE;
    fs->priv = p;
    fs->root = vo_fs_paths_intern(&p->paths, g_strdup("."));
    return fs;
}
