/*
 * The libguestfs route (--backend=libguestfs): for filesystems no Debian
 * library writes from userspace (XFS, btrfs), the guest's disk is handed
 * to libguestfs's appliance, a small VM whose kernel mounts and parses
 * the filesystems.  The bundle semantics stay ours: a VoFs whose
 * operations are libguestfs calls on paths in the appliance lets
 * vo-patch.c decide, patch and verify exactly as the worker does on ext4
 * and NTFS.  vo-apply.c keeps the overlay, the journal and the commit.
 *
 * What the host still reads from the guest are the small files the
 * decision needs (os-release, the dpkg status, the files rules name),
 * through the same parsers the worker uses; the filesystem structures
 * are parsed only in the appliance.  docs/threat-model.rst says so.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <guestfs.h>

#include "vo-dl.h"
#include "vo-guestfs.h"
#include "vo-patch.h"

/*
 * libguestfs is loaded when this route is taken, not linked: its Debian
 * package brings QEMU, supermin and an appliance kernel, which a host
 * that never takes the route should not need.  Each call below goes
 * through the table filled from the library.
 */
#define VO_GUESTFS_CALLS(X) \
    X(guestfs_add_drive_opts) \
    X(guestfs_chmod) \
    X(guestfs_close) \
    X(guestfs_create) \
    X(guestfs_free_statns) \
    X(guestfs_inspect_get_mountpoints) \
    X(guestfs_inspect_get_type) \
    X(guestfs_inspect_os) \
    X(guestfs_last_errno) \
    X(guestfs_last_error) \
    X(guestfs_launch) \
    X(guestfs_lchown) \
    X(guestfs_lgetxattr) \
    X(guestfs_ln) \
    X(guestfs_ln_s) \
    X(guestfs_lremovexattr) \
    X(guestfs_lsetxattr) \
    X(guestfs_lstatns) \
    X(guestfs_mkdir_mode) \
    X(guestfs_mount) \
    X(guestfs_mount_ro) \
    X(guestfs_pread) \
    X(guestfs_read_file) \
    X(guestfs_readlink) \
    X(guestfs_rm) \
    X(guestfs_rmdir) \
    X(guestfs_set_error_handler) \
    X(guestfs_shutdown) \
    X(guestfs_sync) \
    X(guestfs_umount_all) \
    X(guestfs_upload) \
    X(guestfs_vfs_type) \
    X(guestfs_write)

static VO_DL_TABLE(VO_GUESTFS_CALLS) vo_gfs;

static gboolean vo_guestfs_load(GError **error)
{
    static void *lib;
    static const char *const names[] = VO_DL_NAMES(VO_GUESTFS_CALLS);

    return vo_dl_load(&lib, "libguestfs.so.0", names, vo_gfs.sym,
                      "--backend=libguestfs needs libguestfs (Debian: "
                      "libguestfs0 and libguestfs-tools)", error);
}

#define guestfs_add_drive_opts (*vo_gfs.f.guestfs_add_drive_opts)
#define guestfs_chmod (*vo_gfs.f.guestfs_chmod)
#define guestfs_close (*vo_gfs.f.guestfs_close)
#define guestfs_create (*vo_gfs.f.guestfs_create)
#define guestfs_free_statns (*vo_gfs.f.guestfs_free_statns)
#define guestfs_inspect_get_mountpoints \
    (*vo_gfs.f.guestfs_inspect_get_mountpoints)
#define guestfs_inspect_get_type (*vo_gfs.f.guestfs_inspect_get_type)
#define guestfs_inspect_os (*vo_gfs.f.guestfs_inspect_os)
#define guestfs_last_errno (*vo_gfs.f.guestfs_last_errno)
#define guestfs_last_error (*vo_gfs.f.guestfs_last_error)
#define guestfs_launch (*vo_gfs.f.guestfs_launch)
#define guestfs_lchown (*vo_gfs.f.guestfs_lchown)
#define guestfs_lgetxattr (*vo_gfs.f.guestfs_lgetxattr)
#define guestfs_ln (*vo_gfs.f.guestfs_ln)
#define guestfs_ln_s (*vo_gfs.f.guestfs_ln_s)
#define guestfs_lremovexattr (*vo_gfs.f.guestfs_lremovexattr)
#define guestfs_lsetxattr (*vo_gfs.f.guestfs_lsetxattr)
#define guestfs_lstatns (*vo_gfs.f.guestfs_lstatns)
#define guestfs_mkdir_mode (*vo_gfs.f.guestfs_mkdir_mode)
#define guestfs_mount (*vo_gfs.f.guestfs_mount)
#define guestfs_mount_ro (*vo_gfs.f.guestfs_mount_ro)
#define guestfs_pread (*vo_gfs.f.guestfs_pread)
#define guestfs_read_file (*vo_gfs.f.guestfs_read_file)
#define guestfs_readlink (*vo_gfs.f.guestfs_readlink)
#define guestfs_rm (*vo_gfs.f.guestfs_rm)
#define guestfs_rmdir (*vo_gfs.f.guestfs_rmdir)
#define guestfs_set_error_handler (*vo_gfs.f.guestfs_set_error_handler)
#define guestfs_shutdown (*vo_gfs.f.guestfs_shutdown)
#define guestfs_sync (*vo_gfs.f.guestfs_sync)
#define guestfs_umount_all (*vo_gfs.f.guestfs_umount_all)
#define guestfs_upload (*vo_gfs.f.guestfs_upload)
#define guestfs_vfs_type (*vo_gfs.f.guestfs_vfs_type)
#define guestfs_write (*vo_gfs.f.guestfs_write)

/* guestfs_write() sends the content in one protocol message (at most
 * 4 MiB); larger payloads go through a temporary file and an upload. */
#define VO_GUESTFS_WRITE_MAX (2 * 1024 * 1024)

typedef struct {
    guestfs_h *g;
    VoFsPaths paths;        /* appliance paths */
} VoGuestfsFs;

static gboolean vo_guestfs_fail(guestfs_h *g, const char *what,
                                const char *path, GError **error)
{
    int err = guestfs_last_errno(g);
    const char *msg = guestfs_last_error(g);
    int code = VO_ERROR_FAILED;

    if (err == ENOENT || err == ENODATA) {
        code = VO_ERROR_NOT_FOUND;
    } else if (err == ENOTEMPTY || err == EEXIST) {
        code = VO_ERROR_EXISTS;
    }
    g_set_error(error, VO_ERROR, code, "libguestfs: %s %s: %s", what,
                path ? path : "", msg ? msg : g_strerror(err));
    return FALSE;
}

static VoGuestfsFs *vo_guestfs_priv(VoFs *fs)
{
    return fs->priv;
}

static const char *vo_guestfs_path(VoFs *fs, guint64 node)
{
    return vo_fs_paths_get(&vo_guestfs_priv(fs)->paths, node, "/");
}

static char *vo_guestfs_child(VoFs *fs, guint64 dir, const char *name)
{
    const char *base = vo_guestfs_path(fs, dir);

    return g_strconcat(base, g_str_equal(base, "/") ? "" : "/", name, NULL);
}

static gboolean vo_guestfs_lookup(VoFs *fs, guint64 dir, const char *name,
                                  guint64 *node, GError **error)
{
    VoGuestfsFs *p = vo_guestfs_priv(fs);
    g_autofree char *path = vo_guestfs_child(fs, dir, name);
    struct guestfs_statns *st = guestfs_lstatns(p->g, path);

    if (!st) {
        return vo_guestfs_fail(p->g, "lstat", path, error);
    }
    guestfs_free_statns(st);
    *node = vo_fs_paths_intern(&p->paths, g_steal_pointer(&path));
    return TRUE;
}

static gboolean vo_guestfs_stat(VoFs *fs, guint64 node, VoStat *out,
                                GError **error)
{
    VoGuestfsFs *p = vo_guestfs_priv(fs);
    const char *path = vo_guestfs_path(fs, node);
    struct guestfs_statns *st = guestfs_lstatns(p->g, path);

    if (!st) {
        return vo_guestfs_fail(p->g, "lstat", path, error);
    }
    out->type = vo_fs_node_type(st->st_mode);
    out->mode = st->st_mode & 07777;
    out->uid = st->st_uid;
    out->gid = st->st_gid;
    out->size = st->st_size;
    guestfs_free_statns(st);
    return TRUE;
}

static char *vo_guestfs_readlink(VoFs *fs, guint64 node, GError **error)
{
    VoGuestfsFs *p = vo_guestfs_priv(fs);
    const char *path = vo_guestfs_path(fs, node);
    char *target = guestfs_readlink(p->g, path);

    if (!target) {
        vo_guestfs_fail(p->g, "readlink", path, error);
    }
    return target;
}

static GBytes *vo_guestfs_read(VoFs *fs, guint64 node, GError **error)
{
    VoGuestfsFs *p = vo_guestfs_priv(fs);
    const char *path = vo_guestfs_path(fs, node);
    VoStat st;
    size_t size;
    char *data;

    if (!vo_guestfs_stat(fs, node, &st, error)) {
        return NULL;
    }
    if (st.size > VO_FS_MAX_FILE) {
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "%s is too large to read", path);
        return NULL;
    }
    data = guestfs_read_file(p->g, path, &size);
    if (!data) {
        vo_guestfs_fail(p->g, "read", path, error);
        return NULL;
    }
    return g_bytes_new_with_free_func(data, size, free, data);
}

static GBytes *vo_guestfs_read_range(VoFs *fs, guint64 node,
                                     guint64 offset, gsize max, GError **error)
{
    VoGuestfsFs *p = vo_guestfs_priv(fs);
    const char *path = vo_guestfs_path(fs, node);
    g_autoptr(GByteArray) out = g_byte_array_new();
    VoStat st;
    gsize want;

    if (!vo_guestfs_stat(fs, node, &st, error)) {
        return NULL;
    }
    /* The appliance reads at most a few MiB per call: a range is one. */
    want = offset < st.size ? MIN(st.size - offset,
                                  (guint64)MIN(max, (gsize)(4 << 20)))
                            : 0;
    while (out->len < want) {
        size_t got;
        char *data = guestfs_pread(p->g, path, want - out->len,
                                   offset + out->len, &got);

        if (!data) {
            vo_guestfs_fail(p->g, "read", path, error);
            return NULL;
        }
        g_byte_array_append(out, (const guint8 *)data,
                            MIN(got, want - out->len));
        free(data);
        if (got == 0) {
            break;
        }
    }
    return g_byte_array_free_to_bytes(g_steal_pointer(&out));
}

/* Writes @data as the whole content of @path (created if absent). */
static gboolean vo_guestfs_put(guestfs_h *g, const char *path, GBytes *data,
                               GError **error)
{
    g_autofree char *tmp = NULL;
    gsize len;
    const char *bytes = g_bytes_get_data(data, &len);
    gboolean ok;
    int fd;

    if (len <= VO_GUESTFS_WRITE_MAX) {
        if (guestfs_write(g, path, bytes ? bytes : "", len) < 0) {
            return vo_guestfs_fail(g, "write", path, error);
        }
        return TRUE;
    }
    fd = g_file_open_tmp("vmaugment-offline-XXXXXX", &tmp, error);
    if (fd < 0) {
        return FALSE;
    }
    ok = g_file_set_contents(tmp, bytes, len, error);
    close(fd);
    if (ok && guestfs_upload(g, tmp, path) < 0) {
        ok = vo_guestfs_fail(g, "upload", path, error);
    }
    g_unlink(tmp);
    return ok;
}

static gboolean vo_guestfs_chown(guestfs_h *g, const char *path,
                                 const guint32 *uid, const guint32 *gid,
                                 GError **error)
{
    struct guestfs_statns *st;
    int owner, group;

    if (!uid && !gid) {
        return TRUE;
    }
    /* lchown sets both: keep the one not asked for. */
    st = guestfs_lstatns(g, path);
    if (!st) {
        return vo_guestfs_fail(g, "lstat", path, error);
    }
    owner = uid ? (int)*uid : (int)st->st_uid;
    group = gid ? (int)*gid : (int)st->st_gid;
    guestfs_free_statns(st);
    if (guestfs_lchown(g, owner, group, path) < 0) {
        return vo_guestfs_fail(g, "chown", path, error);
    }
    return TRUE;
}

static gboolean vo_guestfs_attrs(guestfs_h *g, const char *path,
                                 const VoStat *attrs, GError **error)
{
    /* The appliance's umask applied at creation: set the bundle's mode. */
    if (guestfs_chmod(g, attrs->mode & 07777, path) < 0) {
        return vo_guestfs_fail(g, "chmod", path, error);
    }
    return vo_guestfs_chown(g, path, &attrs->uid, &attrs->gid, error);
}

static gboolean vo_guestfs_create(VoFs *fs, guint64 dir, const char *name,
                                  const VoStat *attrs, GBytes *data,
                                  GError **error)
{
    VoGuestfsFs *p = vo_guestfs_priv(fs);
    g_autofree char *path = vo_guestfs_child(fs, dir, name);

    return vo_guestfs_put(p->g, path, data, error) &&
           vo_guestfs_attrs(p->g, path, attrs, error);
}

static gboolean vo_guestfs_mkdir(VoFs *fs, guint64 dir, const char *name,
                                 const VoStat *attrs, GError **error)
{
    VoGuestfsFs *p = vo_guestfs_priv(fs);
    g_autofree char *path = vo_guestfs_child(fs, dir, name);

    if (guestfs_mkdir_mode(p->g, path, attrs->mode & 07777) < 0) {
        return vo_guestfs_fail(p->g, "mkdir", path, error);
    }
    return vo_guestfs_attrs(p->g, path, attrs, error);
}

static gboolean vo_guestfs_replace(VoFs *fs, guint64 node, GBytes *data,
                                   GError **error)
{
    VoGuestfsFs *p = vo_guestfs_priv(fs);

    /* O_TRUNC on the same inode: mode, owner and links stay. */
    return vo_guestfs_put(p->g, vo_guestfs_path(fs, node), data, error);
}

/* rm or rmdir of @name in @dir. */
static gboolean vo_guestfs_unlink(VoFs *fs, guint64 dir, const char *name,
                                  int (*op)(guestfs_h *, const char *),
                                  const char *what, GError **error)
{
    VoGuestfsFs *p = vo_guestfs_priv(fs);
    g_autofree char *path = vo_guestfs_child(fs, dir, name);

    if (op(p->g, path) < 0) {
        return vo_guestfs_fail(p->g, what, path, error);
    }
    return TRUE;
}

static gboolean vo_guestfs_remove(VoFs *fs, guint64 dir, const char *name,
                                  guint64 node, GError **error)
{
    return vo_guestfs_unlink(fs, dir, name, guestfs_rm, "rm", error);
}

static gboolean vo_guestfs_symlink(VoFs *fs, guint64 dir, const char *name,
                                   const char *target, guint32 uid,
                                   guint32 gid, GError **error)
{
    VoGuestfsFs *p = vo_guestfs_priv(fs);
    g_autofree char *path = vo_guestfs_child(fs, dir, name);

    if (guestfs_ln_s(p->g, target, path) < 0) {
        return vo_guestfs_fail(p->g, "symlink", path, error);
    }
    return vo_guestfs_chown(p->g, path, &uid, &gid, error);
}

static gboolean vo_guestfs_link(VoFs *fs, guint64 dir, const char *name,
                                guint64 node, GError **error)
{
    VoGuestfsFs *p = vo_guestfs_priv(fs);
    g_autofree char *path = vo_guestfs_child(fs, dir, name);

    if (guestfs_ln(p->g, vo_guestfs_path(fs, node), path) < 0) {
        return vo_guestfs_fail(p->g, "link", path, error);
    }
    return TRUE;
}

static gboolean vo_guestfs_rmdir(VoFs *fs, guint64 dir, const char *name,
                                 guint64 node, GError **error)
{
    return vo_guestfs_unlink(fs, dir, name, guestfs_rmdir, "rmdir", error);
}

static gboolean vo_guestfs_set_attrs(VoFs *fs, guint64 node,
                                     const guint32 *mode, const guint32 *uid,
                                     const guint32 *gid, GError **error)
{
    VoGuestfsFs *p = vo_guestfs_priv(fs);
    const char *path = vo_guestfs_path(fs, node);

    if (mode && guestfs_chmod(p->g, *mode & 07777, path) < 0) {
        return vo_guestfs_fail(p->g, "chmod", path, error);
    }
    return vo_guestfs_chown(p->g, path, uid, gid, error);
}

static gboolean vo_guestfs_set_xattr(VoFs *fs, guint64 node, const char *name,
                                     GBytes *value, GError **error)
{
    VoGuestfsFs *p = vo_guestfs_priv(fs);
    const char *path = vo_guestfs_path(fs, node);
    gsize len;
    const char *bytes;

    if (!value) {
        if (guestfs_lremovexattr(p->g, name, path) < 0) {
            return vo_guestfs_fail(p->g, "removexattr", path, error);
        }
        return TRUE;
    }
    bytes = g_bytes_get_data(value, &len);
    if (guestfs_lsetxattr(p->g, name, bytes ? bytes : "", len, path) < 0) {
        return vo_guestfs_fail(p->g, "setxattr", path, error);
    }
    return TRUE;
}

static GBytes *vo_guestfs_get_xattr(VoFs *fs, guint64 node, const char *name,
                                    GError **error)
{
    VoGuestfsFs *p = vo_guestfs_priv(fs);
    const char *path = vo_guestfs_path(fs, node);
    size_t size;
    char *value = guestfs_lgetxattr(p->g, path, name, &size);

    if (!value) {
        vo_guestfs_fail(p->g, "getxattr", path, error);
        return NULL;
    }
    return g_bytes_new_with_free_func(value, size, free, value);
}

static gboolean vo_guestfs_sync_fs(VoFs *fs, GError **error)
{
    VoGuestfsFs *p = vo_guestfs_priv(fs);

    if (guestfs_sync(p->g) < 0) {
        return vo_guestfs_fail(p->g, "sync", NULL, error);
    }
    return TRUE;
}

static void vo_guestfs_close_fs(VoFs *fs)
{
    VoGuestfsFs *p = vo_guestfs_priv(fs);

    vo_fs_paths_clear(&p->paths);
    g_free(p);
    g_free(fs);
}

static const VoFsOps vo_guestfs_ops = {
    .lookup = vo_guestfs_lookup,
    .stat = vo_guestfs_stat,
    .readlink = vo_guestfs_readlink,
    .read = vo_guestfs_read,
    .read_range = vo_guestfs_read_range,
    .create = vo_guestfs_create,
    .mkdir = vo_guestfs_mkdir,
    .replace = vo_guestfs_replace,
    .remove = vo_guestfs_remove,
    .symlink = vo_guestfs_symlink,
    .link = vo_guestfs_link,
    .rmdir = vo_guestfs_rmdir,
    .set_attrs = vo_guestfs_set_attrs,
    .set_xattr = vo_guestfs_set_xattr,
    .get_xattr = vo_guestfs_get_xattr,
    .sync = vo_guestfs_sync_fs,
    .close = vo_guestfs_close_fs,
};

/* The guest's whole tree as the appliance has it mounted, as one VoFs. */
static VoGuest *vo_guestfs_guest(guestfs_h *g, const char *image,
                                 const char *type, gboolean writable)
{
    VoGuest *guest = g_new0(VoGuest, 1);
    VoGuestfsFs *p = g_new0(VoGuestfsFs, 1);
    VoFs *fs = g_new0(VoFs, 1);
    VoMount *m = g_new0(VoMount, 1);

    p->g = g;
    vo_fs_paths_init(&p->paths);
    fs->ops = &vo_guestfs_ops;
    fs->type = g_intern_string(type);
    fs->writable = writable;
    fs->has_owners = TRUE;
    fs->priv = p;
    fs->root = vo_fs_paths_intern(&p->paths, g_strdup("/"));
    guest->image = g_strdup(image);
    guest->family = g_strdup("linux");
    guest->filesystems = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vo_fs_close);
    g_ptr_array_add(guest->filesystems, fs);
    guest->mounts = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vo_mount_free);
    m->mountpoint = g_strdup("/");
    m->fs = fs;
    g_ptr_array_add(guest->mounts, m);
    return guest;
}

static int vo_guestfs_by_depth(const void *a, const void *b)
{
    const char *const *pa = a;
    const char *const *pb = b;
    gsize la = strlen(pa[0]), lb = strlen(pb[0]);

    return la < lb ? -1 : la > lb;
}

static void vo_guestfs_strv_free(char **v)
{
    for (char **s = v; v && *s; s++) {
        free(*s);
    }
    free(v);
}

/*
 * Mounts the guest's filesystems where its fstab puts them (libguestfs's
 * inspection, which runs in the appliance); *@type gets the root's
 * filesystem type.
 */
static gboolean vo_guestfs_mount(guestfs_h *g, const char *root,
                                 gboolean read_only, char **type,
                                 GError **error)
{
    char **pairs = guestfs_inspect_get_mountpoints(g, root);
    gsize n = 0;
    gboolean ok = TRUE;

    if (!pairs) {
        return vo_guestfs_fail(g, "inspect mountpoints", root, error);
    }
    while (pairs[2 * n]) {
        n++;
    }
    /* Parents before children: "/" before "/srv" before "/srv/b". */
    qsort(pairs, n, 2 * sizeof(char *), vo_guestfs_by_depth);
    for (gsize i = 0; ok && i < n; i++) {
        const char *mp = pairs[2 * i], *dev = pairs[2 * i + 1];
        int r = read_only ? guestfs_mount_ro(g, dev, mp)
                          : guestfs_mount(g, dev, mp);

        if (r < 0) {
            ok = vo_guestfs_fail(g, "mount", mp, error);
        }
    }
    if (ok && type) {
        *type = guestfs_vfs_type(g, root);
        if (!*type) {
            ok = vo_guestfs_fail(g, "vfs-type", root, error);
        }
    }
    vo_guestfs_strv_free(pairs);
    return ok;
}

static guestfs_h *vo_guestfs_launch(const char *disk, const char *format,
                                    gboolean read_only, char **root,
                                    GError **error)
{
    guestfs_h *g = guestfs_create();
    char **roots = NULL;
    g_autofree char *ostype = NULL;

    if (!g) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "cannot create a libguestfs handle");
        return NULL;
    }
    /* Its messages reach the user in our error, once. */
    guestfs_set_error_handler(g, NULL, NULL);
    if (guestfs_add_drive_opts(g, disk,
                               GUESTFS_ADD_DRIVE_OPTS_FORMAT, format,
                               GUESTFS_ADD_DRIVE_OPTS_READONLY, read_only,
                               -1) < 0 ||
        guestfs_launch(g) < 0) {
        vo_guestfs_fail(g, "launch", NULL, error);
        goto fail;
    }
    roots = guestfs_inspect_os(g);
    if (!roots) {
        vo_guestfs_fail(g, "inspect", NULL, error);
        goto fail;
    }
    if (!roots[0] || roots[1]) {
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "libguestfs found %s operating system on the image",
                    roots[0] ? "more than one" : "no");
        goto fail;
    }
    ostype = guestfs_inspect_get_type(g, roots[0]);
    if (g_strcmp0(ostype, "linux") != 0) {
        /* NTFS has the native route; its case-insensitive lookups and
         * drive letters are not modelled here. */
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "--backend=libguestfs services Linux guests only "
                    "(found %s)", ostype ? ostype : "unknown");
        goto fail;
    }
    *root = g_strdup(roots[0]);
    vo_guestfs_strv_free(roots);
    return g;

fail:
    vo_guestfs_strv_free(roots);
    guestfs_close(g);
    return NULL;
}

static gboolean vo_guestfs_job(guestfs_h *g, const char *root,
                               const char *image, VoBundle *bundle,
                               gboolean dry_run, JsonBuilder *b,
                               GError **error)
{
    g_autofree char *type = NULL;
    g_autoptr(VoGuest) guest = NULL;
    g_autoptr(VoGuest) check = NULL;
    gboolean done;

    if (!vo_guestfs_mount(g, root, dry_run, &type, error)) {
        return FALSE;
    }
    guest = vo_guestfs_guest(g, image, type, !dry_run);
    if (!vo_patch_decide(bundle, guest, b, &done, error)) {
        return FALSE;
    }
    if (done || dry_run) {
        json_builder_set_member_name(b, "status");
        json_builder_add_string_value(b, done ? "already-applied"
                                              : "dry-run");
        return TRUE;
    }
    if (!vo_patch_execute(bundle, guest, error)) {
        return FALSE;
    }
    /* Verify what reached the disk: unmount, mount again read-only. */
    if (guestfs_sync(g) < 0 || guestfs_umount_all(g) < 0) {
        return vo_guestfs_fail(g, "unmount", NULL, error);
    }
    g_clear_pointer(&guest, vo_guest_free);
    if (!vo_guestfs_mount(g, root, TRUE, NULL, error)) {
        return FALSE;
    }
    check = vo_guestfs_guest(g, image, type, FALSE);
    json_builder_set_member_name(b, "verify");
    if (!vo_patch_verify(bundle, check, b, error)) {
        return FALSE;
    }
    json_builder_set_member_name(b, "status");
    json_builder_add_string_value(b, "patched");
    return TRUE;
}

gboolean vo_guestfs_run(const char *image, const char *disk,
                        const char *format, VoBundle *bundle,
                        gboolean dry_run, JsonObject **report,
                        GError **error)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonNode) node = NULL;
    g_autofree char *root = NULL;
    guestfs_h *g;
    gboolean ok;

    *report = NULL;
    if (!vo_patch_check_files_only(bundle, "--backend=libguestfs", error) ||
        !vo_guestfs_load(error)) {
        return FALSE;
    }
    g_debug("%s: launching the libguestfs appliance", image);
    g = vo_guestfs_launch(disk, format, dry_run, &root, error);
    if (!g) {
        return FALSE;
    }
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "backend");
    json_builder_add_string_value(b, "libguestfs");
    ok = vo_guestfs_job(g, root, image, bundle, dry_run, b, error);
    /* Closing flushes the appliance's disk; its failure is the job's. */
    if (guestfs_umount_all(g) < 0 || guestfs_shutdown(g) < 0) {
        if (ok) {
            ok = vo_guestfs_fail(g, "shutdown", NULL, error);
        }
    }
    guestfs_close(g);
    json_builder_end_object(b);
    node = json_builder_get_root(b);
    *report = json_object_ref(json_node_get_object(node));
    return ok;
}
