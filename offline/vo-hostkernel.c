/*
 * The --host-kernel route: for XFS and btrfs, which no Debian library
 * writes from userspace, on images their owner trusts, the host's own
 * kernel mounts the guest's filesystem (docs/offline.rst, "XFS, btrfs and
 * encrypted disks").
 *
 * Crash safety comes from what is mounted, not from cleanup code.  The
 * confined worker says where the filesystem lies (the parent never parses
 * a partition table); the parent checks those numbers like any other
 * untrusted input and copies that byte range out of the overlay into a
 * regular file next to it.  A child process attaches a loop device to
 * that file with LO_FLAGS_AUTOCLEAR and mounts it (nodev, nosuid, noexec)
 * as a detached mount that only its descriptors hold, in a mount
 * namespace of its own, and dies with us (PR_SET_PDEATHSIG).  Whatever
 * ends it, the kernel then drops the mount, writes the filesystem's dirty
 * pages to a regular host file and detaches the loop device: nothing can
 * wait on a process that is gone, unlike a FUSE export served by one.
 * The patch goes through vo-hostfs.c (openat2() beneath the mount's root)
 * and vo-patch.c, with the same semantics as the worker's; once the
 * child has unmounted, remounted read-only and verified, the file is
 * written back into the overlay at the same offset and compared, and
 * vo-apply.c journals and commits as on the native route.
 *
 * The copy is named after the image (".IMAGE.vmaugment-host-kernel-XXXXXX")
 * and locked while a run uses it: recovery removes those nobody holds.
 * It is never part of a commit, which only the journal records.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "vo-guest.h"
#include "vo-hostfs.h"
#include "vo-hostkernel.h"
#include "vo-image.h"
#include "vo-mounts.h"
#include "vo-patch.h"
#include "vo-worker.h"

#define VO_HOSTKERNEL_TAG "vmaugment-host-kernel-"
/* The child's report: the worker's bound (vo-wire.h) is ample. */
#define VO_HOSTKERNEL_MAX_REPORT (64 * 1024 * 1024)
/* Free loop devices another process may take between our two calls. */
#define VO_HOSTKERNEL_LOOP_TRIES 16

typedef struct {
    VoHostKernelJob job;
    const char *name;
    const char *fstype;     /* "xfs" or "btrfs", checked */
    int file;               /* the copy, read-write */
    VoBundle *bundle;
    VoLayout *layout;       /* every volume the worker reported */
    guint root;             /* index of the mounted one in @layout */
} VoHostKernel;

/* A mounted copy: the loop device and the detached mount's root. */
typedef struct {
    int loop;
    int root;
} VoHostKernelMount;

/* ---- Parent: the worker's volumes ---- */

static gboolean vo_hostkernel_mountable(const char *fstype)
{
    return g_strcmp0(fstype, "xfs") == 0 || g_strcmp0(fstype, "btrfs") == 0;
}

VoLayout *vo_hostkernel_volumes(JsonObject *result, guint64 size,
                                guint *root, GError **error)
{
    g_autoptr(VoLayout) layout = vo_worker_volumes(result, &size, 1, error);
    guint found = 0;

    if (!layout) {
        return NULL;
    }
    for (guint i = 0; i < layout->partitions->len; i++) {
        VoPartition *p = layout->partitions->pdata[i];

        if (vo_hostkernel_mountable(p->fstype)) {
            *root = i;
            found++;
        }
    }
    if (found != 1) {
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "--host-kernel services a guest whose disk holds one "
                    "XFS or btrfs filesystem, its root; this one holds %u",
                    found);
        return NULL;
    }
    return g_steal_pointer(&layout);
}

/* The worker's prepare(): the disk is the overlay held open (@data). */
static gboolean vo_hostkernel_held(gpointer data, int *fds, GError **error)
{
    fds[0] = *(const int *)data;
    return TRUE;
}

/* The guest's volumes, and which one the route mounts.  @disk_fd: as
 * vo_hostkernel_run()'s. */
static VoLayout *vo_hostkernel_locate(const char *name, const char *disk,
                                      int disk_fd, const char *format,
                                      guint *root, GError **error)
{
    VoWorkerRequest req = {
        .job = VO_WORKER_LOCATE,
        .image = name,
        .disk = disk,
        .format = format,
        .prepare = disk_fd >= 0 ? vo_hostkernel_held : NULL,
        .prepare_data = &disk_fd,
    };
    g_autoptr(JsonObject) result = NULL;
    guint64 size;

    if (!vo_worker_run(&req, &result, error) ||
        !vo_image_virtual_size(disk, disk_fd, format, &size, error)) {
        return NULL;
    }
    return vo_hostkernel_volumes(result, size, root, error);
}

/* ---- The copy ---- */

/* @path as a value of qemu's option syntax, where ',' is doubled. */
static char *vo_hostkernel_opt_path(const char *path)
{
    g_auto(GStrv) parts = g_strsplit(path, ",", -1);

    return g_strjoinv(",,", parts);
}

/* The byte range of @part in @disk (@format) as a raw block node; the
 * file held open as VO_IMAGE_FD_ARG when @disk_fd is not -1. */
static char *vo_hostkernel_window(const char *disk, int disk_fd,
                                  const char *format, const VoPartition *part)
{
    g_autofree char *file = vo_hostkernel_opt_path(
        disk_fd >= 0 ? VO_IMAGE_FD_ARG : disk);

    return g_strdup_printf("driver=raw,offset=%" G_GUINT64_FORMAT
                           ",size=%" G_GUINT64_FORMAT ",file.driver=%s,"
                           "file.file.driver=file,file.file.filename=%s",
                           part->offset, part->size, format, file);
}

static char *vo_hostkernel_raw(const char *path)
{
    g_autofree char *file = vo_hostkernel_opt_path(path);

    return g_strdup_printf("driver=raw,file.driver=file,file.filename=%s",
                           file);
}

/* A new, empty, locked copy next to @owner: its descriptor, or -1. */
static int vo_hostkernel_create_copy(const char *owner, guint64 size,
                                     char **path, GError **error)
{
    g_autofree char *dir = g_path_get_dirname(owner);
    g_autofree char *base = g_path_get_basename(owner);
    g_autofree char *name = g_strdup_printf(".%s." VO_HOSTKERNEL_TAG "XXXXXX",
                                            base);
    int fd;

    *path = g_build_filename(dir, name, NULL);
    fd = g_mkstemp_full(*path, O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "cannot create a copy of the filesystem next to %s: %s",
                    owner, g_strerror(errno));
        return -1;
    }
    /* Held as long as this run (and the loop device on it) may use it. */
    if (flock(fd, LOCK_EX | LOCK_NB) < 0 || ftruncate(fd, size) < 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "cannot prepare %s: %s",
                    *path, g_strerror(errno));
        g_unlink(*path);
        close(fd);
        return -1;
    }
    return fd;
}

gboolean vo_hostkernel_clean(const char *image, gboolean *any, GError **error)
{
    g_autofree char *dir = g_path_get_dirname(image);
    g_autofree char *base = g_path_get_basename(image);
    g_autofree char *prefix = g_strdup_printf(".%s." VO_HOSTKERNEL_TAG, base);
    g_autoptr(GDir) d = g_dir_open(dir, 0, error);
    const char *entry;

    *any = FALSE;
    if (!d) {
        return FALSE;
    }
    while ((entry = g_dir_read_name(d))) {
        g_autofree char *path = NULL;
        int fd;

        if (!g_str_has_prefix(entry, prefix) ||
            strlen(entry) != strlen(prefix) + 6) {
            continue;
        }
        path = g_build_filename(dir, entry, NULL);
        fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) {
            continue;
        }
        /* Locked: a run still uses it (or its loop device still does). */
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
            if (g_unlink(path) < 0 && errno != ENOENT) {
                g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                            "cannot remove %s: %s", path, g_strerror(errno));
                close(fd);
                return FALSE;
            }
            *any = TRUE;
        }
        close(fd);
    }
    return TRUE;
}

/* ---- Child: the mount ---- */

/*
 * A loop device on @file, read-write even for a read-only mount: XFS
 * replays a dirty log before it mounts, into our copy.
 */
static int vo_hostkernel_attach(int file, char **dev, GError **error)
{
    struct loop_config cfg = {
        .fd = file,
        /* Detached by the kernel when its last user (the mount) goes. */
        .info.lo_flags = LO_FLAGS_AUTOCLEAR,
    };
    int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);

    if (ctl < 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "--host-kernel needs loop devices: /dev/loop-control: %s",
                    g_strerror(errno));
        return -1;
    }
    g_strlcpy((char *)cfg.info.lo_file_name, "vmaugment-offline",
              sizeof(cfg.info.lo_file_name));
    for (int i = 0; i < VO_HOSTKERNEL_LOOP_TRIES; i++) {
        int n = ioctl(ctl, LOOP_CTL_GET_FREE);
        int fd;

        if (n < 0) {
            break;
        }
        g_free(*dev);
        *dev = g_strdup_printf("/dev/loop%d", n);
        fd = open(*dev, O_RDWR | O_CLOEXEC);
        if (fd < 0) {
            break;
        }
        if (ioctl(fd, LOOP_CONFIGURE, &cfg) == 0) {
            close(ctl);
            return fd;
        }
        close(fd);
        if (errno != EBUSY) {
            break;
        }
    }
    g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                "cannot attach a loop device: %s", g_strerror(errno));
    close(ctl);
    return -1;
}

/* The kernel's own words on a failed mount, from the context. */
static void vo_hostkernel_fs_messages(int fsfd, GString *out)
{
    char buf[512];
    ssize_t n;

    while ((n = read(fsfd, buf, sizeof(buf) - 1)) > 0 && out->len < 2048) {
        buf[n] = '\0';
        g_string_append_printf(out, "; %s", buf);
    }
}

static gboolean vo_hostkernel_mount(VoHostKernel *hk, gboolean read_only,
                                    VoHostKernelMount *m, GError **error)
{
    g_autofree char *dev = NULL;
    g_autoptr(GString) why = g_string_new(NULL);
    int fsfd;

    m->root = -1;
    m->loop = vo_hostkernel_attach(hk->file, &dev, error);
    if (m->loop < 0) {
        return FALSE;
    }
    fsfd = fsopen(hk->fstype, FSOPEN_CLOEXEC);
    if (fsfd < 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "the host kernel does not mount %s: %s", hk->fstype,
                    g_strerror(errno));
        goto fail;
    }
    /*
     * nouuid: the copy has the UUID of the image's filesystem, which the
     * host may have mounted already (another copy, the VM's own disk).
     */
    if (fsconfig(fsfd, FSCONFIG_SET_STRING, "source", dev, 0) < 0 ||
        (g_str_equal(hk->fstype, "xfs") &&
         fsconfig(fsfd, FSCONFIG_SET_FLAG, "nouuid", NULL, 0) < 0) ||
        (read_only && fsconfig(fsfd, FSCONFIG_SET_FLAG, "ro", NULL, 0) < 0) ||
        fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
        int saved = errno;

        vo_hostkernel_fs_messages(fsfd, why);
        g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                    "the host kernel cannot mount the %s filesystem: %s%s",
                    hk->fstype, g_strerror(saved), why->str);
        close(fsfd);
        goto fail;
    }
    /* Detached: no path names it, no mount table lists it, and it goes
     * with the last descriptor. */
    m->root = fsmount(fsfd, FSMOUNT_CLOEXEC,
                      MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID |
                      MOUNT_ATTR_NOEXEC |
                      (read_only ? MOUNT_ATTR_RDONLY : 0));
    close(fsfd);
    if (m->root < 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "fsmount: %s",
                    g_strerror(errno));
        goto fail;
    }
    return TRUE;
fail:
    close(m->loop);
    m->loop = -1;
    return FALSE;
}

/*
 * Unmounts: closing the last descriptor of a detached mount shuts the
 * filesystem down before close() returns, which writes it all to the
 * loop device; flushing that, then closing it, leaves every byte in the
 * copy and lets the kernel detach the device.
 */
static gboolean vo_hostkernel_unmount(VoHostKernelMount *m, GError **error)
{
    gboolean ok = TRUE;

    if (m->root >= 0) {
        /* fsmount() gave an O_PATH descriptor, which syncfs() refuses. */
        int fd = openat(m->root, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        ok = fd >= 0 && syncfs(fd) == 0;
        if (fd >= 0) {
            close(fd);
        }
        close(m->root);
        m->root = -1;
    }
    if (m->loop >= 0) {
        ok = fsync(m->loop) == 0 && ok;
        close(m->loop);
        m->loop = -1;
    }
    if (!ok) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "cannot write the filesystem back: %s", g_strerror(errno));
    }
    return ok;
}

/*
 * The guest as the route sees it: the mounted filesystem at "/", and its
 * fstab's other mounts fenced off, so that a path below /boot is refused
 * rather than written to the directory that mount hides.
 */
static VoGuest *vo_hostkernel_guest(VoHostKernel *hk, VoHostKernelMount *m,
                                    gboolean writable, GError **error)
{
    g_autoptr(VoGuest) guest = g_new0(VoGuest, 1);
    VoPartition *root = hk->layout->partitions->pdata[hk->root];
    g_autofree char *where = vo_layout_describe(root);
    VoFs *fs = vo_hostfs_open_root(m->root, hk->fstype, writable);
    VoMount *mount = g_new0(VoMount, 1);
    guint64 node;

    guest->image = g_strdup(hk->name);
    guest->family = g_strdup("linux");
    /* Borrowed from hk->layout: a copy of the table, same partitions. */
    guest->layout = vo_layout_new();
    g_ptr_array_set_free_func(guest->layout->partitions, NULL);
    guest->filesystems = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vo_fs_close);
    for (guint i = 0; i < hk->layout->partitions->len; i++) {
        g_ptr_array_add(guest->layout->partitions,
                        hk->layout->partitions->pdata[i]);
        g_ptr_array_add(guest->filesystems, i == hk->root ? fs : NULL);
    }
    guest->mounts = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vo_mount_free);
    mount->mountpoint = g_strdup("/");
    mount->part = root;
    mount->fs = fs;
    g_ptr_array_add(guest->mounts, mount);
    if (!fs->ops->lookup(fs, fs->root, "etc", &node, NULL) ||
        !fs->ops->lookup(fs, node, "os-release", &node, NULL)) {
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "%s (%s) is not a Linux system's root (no "
                    "/etc/os-release); --host-kernel services guests whose "
                    "root it holds", where, hk->fstype);
        return NULL;
    }
    if (!vo_mounts_read_fstab(guest, error)) {
        return NULL;
    }
    for (guint i = 1; i < guest->mounts->len; i++) {
        VoMount *other = guest->mounts->pdata[i];
        g_autofree char *there = NULL;

        if (other->fs == fs) {
            g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                        "the guest's /etc/fstab mounts its root %s again "
                        "at %s", where, other->mountpoint);
            return NULL;
        }
        if (!other->part) {
            continue;
        }
        there = vo_layout_describe(other->part);
        g_free(other->problem);
        other->problem = g_strdup_printf(
            "the guest mounts %s there, and --host-kernel mounts only its "
            "root (%s)", there, where);
    }
    return g_steal_pointer(&guest);
}

static void vo_hostkernel_stage(VoHostKernel *hk, const char *stage)
{
    /* The words of the worker's stages, for those who follow them. */
    g_debug("%s: %s", hk->name, stage);
}

static gboolean vo_hostkernel_job(VoHostKernel *hk, JsonBuilder *b,
                                  GError **error)
{
    VoHostKernelMount m = { -1, -1 };
    g_autoptr(VoGuest) guest = NULL;
    gboolean writable = hk->job == VO_HOSTKERNEL_APPLY;
    gboolean ok = FALSE, done;

    if (!vo_hostkernel_mount(hk, !writable, &m, error)) {
        return FALSE;
    }
    guest = vo_hostkernel_guest(hk, &m, writable, error);
    if (!guest) {
        goto out;
    }
    if (hk->job == VO_HOSTKERNEL_VERIFY) {
        json_builder_set_member_name(b, "instructions");
        ok = vo_patch_verify(hk->bundle, guest, b, error);
        json_builder_set_member_name(b, "verified");
        json_builder_add_boolean_value(b, ok);
        goto out;
    }
    vo_hostkernel_stage(hk, VO_WORKER_STAGE_DECIDING);
    if (!vo_patch_decide(hk->bundle, guest, b, &done, error)) {
        goto out;
    }
    if (done || !writable) {
        json_builder_set_member_name(b, "status");
        json_builder_add_string_value(b, done ? "already-applied"
                                              : "dry-run");
        ok = TRUE;
        goto out;
    }
    vo_hostkernel_stage(hk, VO_WORKER_STAGE_PATCHING);
    if (!vo_patch_execute(hk->bundle, guest, error)) {
        goto out;
    }
    /* Verify what reached the copy: unmount, mount it again read-only. */
    g_clear_pointer(&guest, vo_guest_free);
    if (!vo_hostkernel_unmount(&m, error)) {
        goto out;
    }
    vo_hostkernel_stage(hk, VO_WORKER_STAGE_VERIFYING);
    if (!vo_hostkernel_mount(hk, TRUE, &m, error)) {
        goto out;
    }
    guest = vo_hostkernel_guest(hk, &m, FALSE, error);
    if (!guest) {
        goto out;
    }
    json_builder_set_member_name(b, "verify");
    if (!vo_patch_verify(hk->bundle, guest, b, error)) {
        goto out;
    }
    json_builder_set_member_name(b, "status");
    json_builder_add_string_value(b, "patched");
    ok = TRUE;
out:
    g_clear_pointer(&guest, vo_guest_free);
    if (!vo_hostkernel_unmount(&m, ok ? error : NULL)) {
        ok = FALSE;
    }
    return ok;
}

static void vo_hostkernel_write(int fd, const char *data, gsize len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return;
        }
        data += n;
        len -= n;
    }
}

/* The child's whole life: its report goes to @out. */
static G_GNUC_NORETURN void vo_hostkernel_child(VoHostKernel *hk,
                                                pid_t parent, int out)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(JsonNode) root = NULL;
    g_autoptr(GError) error = NULL;
    g_autofree char *text = NULL;
    g_autofree char *where = vo_layout_describe(
        hk->layout->partitions->pdata[hk->root]);
    gsize len;
    gboolean ok;

    /* Our mount must not outlive the run: we end with the parent. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent) {
        _exit(1);
    }
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "backend");
    json_builder_add_string_value(b, "host-kernel");
    json_builder_set_member_name(b, "filesystem");
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "where");
    json_builder_add_string_value(b, where);
    json_builder_set_member_name(b, "type");
    json_builder_add_string_value(b, hk->fstype);
    json_builder_end_object(b);
    /* A namespace of our own: nothing we do shows in the host's. */
    if (unshare(CLONE_NEWNS) < 0 ||
        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
        g_set_error(&error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "--host-kernel needs a mount namespace (root): %s",
                    g_strerror(errno));
        ok = FALSE;
    } else {
        ok = vo_hostkernel_job(hk, b, &error);
    }
    if (!ok) {
        vo_worker_add_error(b, error);
    }
    json_builder_end_object(b);
    root = json_builder_get_root(b);
    json_generator_set_root(gen, root);
    text = json_generator_to_data(gen, &len);
    vo_hostkernel_write(out, text, len);
    _exit(ok ? 0 : 1);
}

/* ---- Parent: the child ---- */

static JsonObject *vo_hostkernel_read_report(int fd, pid_t pid,
                                             GError **error)
{
    g_autoptr(GByteArray) buf = g_byte_array_new();
    g_autoptr(JsonParser) parser = json_parser_new();
    gint64 deadline = g_get_monotonic_time() +
                      VO_WORKER_TIMEOUT_S * G_USEC_PER_SEC;
    int status;

    for (;;) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        gint64 left = deadline - g_get_monotonic_time();
        guint8 chunk[65536];
        ssize_t n;

        if (left <= 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            g_set_error(error, VO_ERROR, VO_ERROR_TIMEOUT,
                        "the host-kernel job did not finish in %d s",
                        VO_WORKER_TIMEOUT_S);
            return NULL;
        }
        if (poll(&p, 1, MIN(left / 1000, 60000)) < 0 && errno != EINTR) {
            break;
        }
        if (!(p.revents & (POLLIN | POLLHUP | POLLERR))) {
            continue;
        }
        n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        if (buf->len + n > VO_HOSTKERNEL_MAX_REPORT) {
            kill(pid, SIGKILL);
            break;
        }
        g_byte_array_append(buf, chunk, n);
    }
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFSIGNALED(status)) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "the host-kernel job was killed by signal %d",
                    WTERMSIG(status));
        return NULL;
    }
    if (!json_parser_load_from_data(parser, (const char *)buf->data,
                                    buf->len, NULL) ||
        !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser))) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "the host-kernel job ended without a report");
        return NULL;
    }
    return json_object_ref(json_node_get_object(
        json_parser_get_root(parser)));
}

/* The child's "error", as ours; FALSE when it had one. */
static gboolean vo_hostkernel_job_error(JsonObject *report, GError **error)
{
    JsonNode *e = json_object_get_member(report, "error");
    JsonObject *o;

    if (!e) {
        return TRUE;
    }
    o = JSON_NODE_HOLDS_OBJECT(e) ? json_node_get_object(e) : NULL;
    g_set_error(error, VO_ERROR,
                o ? json_object_get_int_member_with_default(o, "code",
                                                            VO_ERROR_FAILED)
                  : VO_ERROR_FAILED,
                "%s", o ? json_object_get_string_member_with_default(
                              o, "message", "failed") : "failed");
    return FALSE;
}

static gboolean vo_hostkernel_spawn(VoHostKernel *hk, JsonObject **report,
                                    GError **error)
{
    pid_t parent = getpid();
    int pipefd[2];
    pid_t pid;

    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "pipe: %s",
                    g_strerror(errno));
        return FALSE;
    }
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "fork: %s",
                    g_strerror(errno));
        close(pipefd[0]);
        close(pipefd[1]);
        return FALSE;
    }
    if (pid == 0) {
        close(pipefd[0]);
        vo_hostkernel_child(hk, parent, pipefd[1]);
    }
    close(pipefd[1]);
    *report = vo_hostkernel_read_report(pipefd[0], pid, error);
    close(pipefd[0]);
    return *report && vo_hostkernel_job_error(*report, error);
}

gboolean vo_hostkernel_run(VoHostKernelJob job, const char *name,
                           const char *owner, const char *disk, int disk_fd,
                           const char *format, VoBundle *bundle,
                           JsonObject **report, GError **error)
{
    g_autoptr(VoLayout) layout = NULL;
    g_autofree char *copy = NULL;
    g_autofree char *window = NULL;
    g_autofree char *raw = NULL;
    VoHostKernel hk = {
        .job = job,
        .name = name,
        .bundle = bundle,
        .file = -1,
    };
    VoPartition *part;
    gboolean ok = FALSE;

    *report = NULL;
    if (!vo_patch_check_files_only(bundle, "--host-kernel", error)) {
        return FALSE;
    }
    if (geteuid() != 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "--host-kernel needs root: it attaches a loop device "
                    "and mounts the guest's filesystem");
        return FALSE;
    }
    layout = vo_hostkernel_locate(name, disk, disk_fd, format, &hk.root,
                                  error);
    if (!layout) {
        return FALSE;
    }
    hk.layout = layout;
    part = layout->partitions->pdata[hk.root];
    hk.fstype = g_str_equal(part->fstype, "xfs") ? "xfs" : "btrfs";
    hk.file = vo_hostkernel_create_copy(owner, part->size, &copy, error);
    if (hk.file < 0) {
        return FALSE;
    }
    window = vo_hostkernel_window(disk, disk_fd, format, part);
    /* The copy too is reached through its descriptor: it lies in the
     * image's directory, where its name may be swapped. */
    raw = vo_hostkernel_raw(VO_IMAGE_FD2_ARG);
    g_debug("%s: copying %s out of %s", name, part->fstype, disk);
    {
        /* Sparse: the copy is all holes, zeroes need no writing. */
        const char *out[] = {
            "convert", "-q", "-n", "--target-is-zero", "--image-opts",
            window, "-O", "raw", VO_IMAGE_FD2_ARG, NULL,
        };

        if (!vo_image_qemu_img_fds(out, disk_fd, hk.file, error)) {
            goto out;
        }
    }
    if (!vo_hostkernel_spawn(&hk, report, error)) {
        goto out;
    }
    if (job == VO_HOSTKERNEL_APPLY &&
        g_strcmp0(json_object_get_string_member_with_default(
                      *report, "status", ""), "patched") == 0) {
        /* Every byte back, zeroes included: they replace old data. */
        const char *in[] = {
            "convert", "-q", "-n", "-f", "raw", VO_IMAGE_FD2_ARG,
            "--target-image-opts",
            window, NULL,
        };
        const char *cmp[] = {
            "compare", "-q", "--image-opts", raw, window, NULL,
        };

        g_debug("%s: writing %s back into %s", name, part->fstype, disk);
        if (fsync(hk.file) < 0 ||
            !vo_image_qemu_img_fds(in, disk_fd, hk.file, error)) {
            goto out;
        }
        if (!vo_image_qemu_img_fds(cmp, disk_fd, hk.file, NULL)) {
            g_set_error(error, VO_ERROR, VO_ERROR_VERIFY,
                        "the patched filesystem did not reach %s intact",
                        disk);
            goto out;
        }
    }
    ok = TRUE;
out:
    g_unlink(copy);
    close(hk.file);
    return ok;
}
