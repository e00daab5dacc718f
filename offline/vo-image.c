/*
 * The image file on the host (vo-image.h): everything the privileged
 * parent does with it without reading the guest's data.
 *
 * qemu-img and qemu-nbd parse the image's format, which a hostile guest
 * cannot write (it sees only the virtual disk), but the image may come
 * from anyone: both run under the address-space and CPU limits OpenStack
 * applies to qemu-img on uploaded images, and an image whose header names
 * another host file (a backing file, an external data file, a vmdk
 * extent) is refused unless the operator allows it, since a header such
 * as "backing file /etc/shadow" would make the tools read that file as
 * the guest's disk.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "json-strict.h"
#include "sandbox.h"
#include "vo-image.h"

/* How long qemu-nbd may take to end once its client is gone. */
#define VO_IMAGE_SERVER_EXIT_US (60 * G_USEC_PER_SEC)
/* Where a server finds the file it is given held open (its listening
 * socket is descriptor 3, as socket activation wants). */
#define VO_IMAGE_SERVER_FD      4
#define VO_IMAGE_SERVER_FD_ARG  "/dev/fd/4"

typedef struct {
    rlim_t address_space;       /* bytes; 0: unlimited */
    rlim_t cpu_seconds;         /* 0: unlimited */
    guint wall_seconds;         /* killed after; 0: unlimited */
    gboolean die_with_parent;
    /* Landlock: it may open the image and the system's files only, unless
     * the operator allows images that name other files. */
    gboolean confine_paths;
} VoImageLimits;

/*
 * As OpenStack's image service limits "qemu-img info" on uploads, and
 * more: reading a header takes milliseconds, yet an image can name a file
 * whose open() blocks (a FIFO nobody writes), where no CPU limit is
 * reached.
 */
static const VoImageLimits vo_image_info_limits = {
    .address_space = 1024ull * 1024 * 1024,
    .cpu_seconds = 30,
    .wall_seconds = 30,
    .die_with_parent = TRUE,
    .confine_paths = TRUE,
};

/*
 * Creating an overlay and committing it: room for the threads a commit
 * starts (each reserves a stack and a malloc arena of address space), and
 * no CPU limit, which a large commit would reach.
 */
static const VoImageLimits vo_image_tool_limits = {
    .address_space = 4096ull * 1024 * 1024,
};
/* The server: room for QEMU's block layer caches and its I/O threads'
 * stacks; it serves as long as the job runs and dies with us. */
static const VoImageLimits vo_image_server_limits = {
    .address_space = 4096ull * 1024 * 1024,
    .die_with_parent = TRUE,
};

/* What the child is set up with between fork and exec. */
typedef struct {
    const VoImageLimits *limits;
    int ruleset;                /* sandbox_paths_ruleset(), or -1 */
    pid_t parent;               /* getpid() before the fork */
} VoImageChild;

static gboolean vo_image_allow_external;

/*
 * What qemu-img info said of a file in this process, while the file is
 * unchanged: the virtual size a later step needs is then no second
 * qemu-img start (one info per disk of a job).
 */
typedef struct {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    /* Set by the kernel at any change, utimensat() included: an mtime
     * put back does not make a changed file look unchanged. */
    struct timespec ctime;
    char *format;
    guint64 virtual_size;
} VoImageKnown;

static GHashTable *vo_image_known;     /* canonical path -> VoImageKnown */
static GMutex vo_image_known_lock;

struct VoImageServer {
    GPid pid;
    int client;
    int listener;           /* until qemu-nbd has it */
    char *errlog;
    char *image;
    char *file;             /* what the server was given: @image, or the
                             * descriptor it opens (VO_IMAGE_SERVER_FD) */
    char *name;             /* what messages call it */
    char *format;
    gboolean writable;
    /* qemu-storage-daemon (vo_image_server_new_luks()): it serves until
     * told to end; the LUKS volumes it opens (key files ours), and their
     * connections. */
    gboolean daemon;
    VoImageLuks luks[VO_IMAGE_MAX_LUKS];
    guint first;
    int volumes[VO_IMAGE_MAX_LUKS];
    guint n_volumes;
};

void vo_image_set_allow_external(gboolean allow)
{
    vo_image_allow_external = allow;
}

/* Between fork and exec: async-signal-safe calls only. */
static void vo_image_child_setup(gpointer data)
{
    const VoImageChild *c = data;
    const VoImageLimits *l = c->limits;
    struct rlimit r;

    if (l->address_space) {
        r.rlim_cur = r.rlim_max = l->address_space;
        setrlimit(RLIMIT_AS, &r);
    }
    if (l->cpu_seconds) {
        r.rlim_cur = r.rlim_max = l->cpu_seconds;
        setrlimit(RLIMIT_CPU, &r);
    }
    /* A parent killed between the fork and here sent no signal: such a
     * child would outlive it (a server serving the image to nobody). */
    if (l->die_with_parent &&
        (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 ||
         getppid() != c->parent)) {
        _exit(126);
    }
    if (c->ruleset >= 0 && sandbox_paths_restrict(c->ruleset) < 0) {
        /* Never run it unconfined when it was to be confined. */
        _exit(126);
    }
}

/*
 * Refuses an image that names another host file: qemu-img info does not
 * open backing files, but the tools that serve the image would.
 */
static gboolean vo_image_check_external(const char *image, JsonObject *info,
                                        JsonObject *spec, GError **error)
{
    const char *other = NULL;
    const char *what = NULL;
    JsonObject *data = NULL;

    if (json_object_has_member(info, "backing-filename")) {
        other = json_object_get_string_member_with_default(
            info, "backing-filename", "?");
        what = "a backing file";
    }
    if (spec && json_object_has_member(spec, "data") &&
        JSON_NODE_HOLDS_OBJECT(json_object_get_member(spec, "data"))) {
        data = json_object_get_object_member(spec, "data");
    }
    if (!other && data && json_object_has_member(data, "data-file")) {
        other = json_object_get_string_member_with_default(data, "data-file",
                                                           "?");
        what = "an external data file";
    }
    if (!other && data && json_object_has_member(data, "extents") &&
        JSON_NODE_HOLDS_ARRAY(json_object_get_member(data, "extents"))) {
        JsonArray *extents = json_object_get_array_member(data, "extents");
        g_autofree char *self = g_canonicalize_filename(image, NULL);

        for (guint i = 0; !other && i < json_array_get_length(extents); i++) {
            JsonNode *e = json_array_get_element(extents, i);
            const char *name = JSON_NODE_HOLDS_OBJECT(e)
                ? json_object_get_string_member_with_default(
                      json_node_get_object(e), "filename", NULL)
                : NULL;
            g_autofree char *abs = name ? g_canonicalize_filename(name, NULL)
                                        : NULL;

            if (!abs || !g_str_equal(abs, self)) {
                other = name ? name : "?";
                what = "an extent in another file";
            }
        }
    }
    if (other) {
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "%s names %s (%s); images that point at other host "
                    "files are refused unless --allow-backing-files is "
                    "given", image, what, other);
        return FALSE;
    }
    return TRUE;
}

const char *vo_image_qemu_tool(const char *name)
{
    static GHashTable *cache;
    static GMutex lock;
    const char *found;

    g_mutex_lock(&lock);
    if (!cache) {
        cache = g_hash_table_new(g_str_hash, g_str_equal);
    }
    found = g_hash_table_lookup(cache, name);
    if (!found) {
        g_autofree char *var = g_ascii_strup(name, -1);
        const char *env;
        char *path;

        g_strdelimit(var, "-", '_');
        g_autofree char *envname = g_strdup_printf("VMAUGMENT_%s", var);
        env = g_getenv(envname);
        if (env && *env) {
            path = g_strdup(env);
        } else if (g_getenv("VMAUGMENT_QEMU_BUILD_DIR")) {
            path = g_build_filename(g_getenv("VMAUGMENT_QEMU_BUILD_DIR"),
                                    name, NULL);
            if (g_str_equal(name, "qemu-storage-daemon") &&
                !g_file_test(path, G_FILE_TEST_EXISTS)) {
                /* QEMU's build keeps the storage daemon in a directory
                 * of its own. */
                g_free(path);
                path = g_build_filename(g_getenv("VMAUGMENT_QEMU_BUILD_DIR"),
                                        "storage-daemon", name, NULL);
            }
        } else {
            /* Resolved once: every apply runs it several times. */
            path = g_find_program_in_path(name);
            if (!path) {
                path = g_strdup(name);
            }
        }
        g_hash_table_insert(cache, g_strdup(name), path);
        found = path;
    }
    g_mutex_unlock(&lock);
    return found;
}

/* Reading jobs on an image QEMU holds open (vo_image_set_force_share()). */
static gboolean vo_image_force_share;
/* Writing jobs beside a QEMU that released it (vo-image.h). */
static gboolean vo_image_qemu_released;

void vo_image_set_qemu_released(gboolean released)
{
    vo_image_qemu_released = released;
}

void vo_image_set_force_share(gboolean force)
{
    vo_image_force_share = force;
}

gboolean vo_image_check_unlocked(const char *image, gboolean for_writing,
                                 GError **error)
{
    /*
     * QEMU's file-posix driver expresses its permissions as byte locks at
     * offsets 100.. (permissions held: 100 consistent read, 101 write,
     * 102 write-unchanged, 103 resize) and 200.. (permissions it refuses
     * to share).  Writing needs the image to itself: any lock there means
     * a QEMU process uses it, even one only reading it.  Reading needs
     * only that nothing may change it underneath: no process holds a
     * write, write-unchanged or resize permission.  So readers, a VM
     * using the disk read-only and other inspections among them, read
     * side by side, as QEMU's own readers do.
     */
    struct flock fl = {
        .l_type = F_WRLCK,
        .l_whence = SEEK_SET,
        .l_start = for_writing && !vo_image_qemu_released ? 100 : 101,
        .l_len = for_writing ? (vo_image_qemu_released ? 199 : 200) : 3,
    };
    int fd = open(image, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_NOT_FOUND, "cannot open %s: %s",
                    image, g_strerror(errno));
        return FALSE;
    }
    if (fcntl(fd, F_OFD_GETLK, &fl) < 0) {
        int saved = errno;

        close(fd);
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "cannot query the lock of %s: %s", image,
                    g_strerror(saved));
        return FALSE;
    }
    close(fd);
    if (fl.l_type != F_UNLCK) {
        g_set_error(error, VO_ERROR, VO_ERROR_IN_USE,
                    "%s is in use by a running QEMU (it holds QEMU's image "
                    "lock); stop the VM first", image);
        return FALSE;
    }
    return TRUE;
}

static void vo_image_known_free(gpointer data)
{
    VoImageKnown *k = data;

    g_free(k->format);
    g_free(k);
}

/* The file @image, or when @fd is not -1 the file held open as @image:
 * what is under a name may have been swapped since. */
static int vo_image_stat(const char *path, int fd, struct stat *st)
{
    return fd >= 0 ? fstat(fd, st) : stat(path, st);
}

/* Remembers that @image (@fd, or -1: vo_image_stat()) in @format has
 * @virtual_size, for as long as its file stays as it is now. */
static void vo_image_remember(const char *image, int fd, const char *format,
                              guint64 virtual_size)
{
    g_autofree char *path = g_canonicalize_filename(image, NULL);
    VoImageKnown *k;
    struct stat st;

    if (vo_image_stat(path, fd, &st) < 0) {
        return;
    }
    k = g_new0(VoImageKnown, 1);
    k->dev = st.st_dev;
    k->ino = st.st_ino;
    k->size = st.st_size;
    k->mtime = st.st_mtim;
    k->ctime = st.st_ctim;
    k->format = g_strdup(format);
    k->virtual_size = virtual_size;
    g_mutex_lock(&vo_image_known_lock);
    if (!vo_image_known) {
        vo_image_known = g_hash_table_new_full(g_str_hash, g_str_equal,
                                               g_free, vo_image_known_free);
    }
    g_hash_table_replace(vo_image_known, g_steal_pointer(&path), k);
    g_mutex_unlock(&vo_image_known_lock);
}

/* The virtual size vo_image_remember() holds for @image (@fd, or -1) in
 * @format, if its file has not changed since (same file, size, mtime and
 * ctime). */
static gboolean vo_image_recall(const char *image, int fd, const char *format,
                                guint64 *virtual_size)
{
    g_autofree char *path = g_canonicalize_filename(image, NULL);
    VoImageKnown *k;
    struct stat st;
    gboolean found = FALSE;

    if (vo_image_stat(path, fd, &st) < 0) {
        return FALSE;
    }
    g_mutex_lock(&vo_image_known_lock);
    k = vo_image_known ? g_hash_table_lookup(vo_image_known, path) : NULL;
    if (k && k->dev == st.st_dev && k->ino == st.st_ino &&
        k->size == st.st_size && k->mtime.tv_sec == st.st_mtim.tv_sec &&
        k->mtime.tv_nsec == st.st_mtim.tv_nsec &&
        k->ctime.tv_sec == st.st_ctim.tv_sec &&
        k->ctime.tv_nsec == st.st_ctim.tv_nsec &&
        g_str_equal(k->format, format)) {
        *virtual_size = k->virtual_size;
        found = TRUE;
    }
    g_mutex_unlock(&vo_image_known_lock);
    return found;
}

/* The "virtual-size" of qemu-img info's object @obj, if it has one. */
static gboolean vo_image_info_size(JsonObject *obj, guint64 *size)
{
    JsonNode *vsize = json_object_get_member(obj, "virtual-size");

    if (!vsize || json_node_get_value_type(vsize) != G_TYPE_INT64 ||
        json_node_get_int(vsize) < 0) {
        return FALSE;
    }
    *size = json_node_get_int(vsize);
    return TRUE;
}

/*
 * Runs qemu-img with @args (after the program name) under @limits; its
 * stdout into @out unless NULL.  @fd, unless -1, is qemu-img's
 * VO_IMAGE_FD_ARG, and @second, unless -1, its VO_IMAGE_FD2_ARG: files it
 * opens through the descriptors, whatever is under their names by then.
 * A failure names the subcommand and says
 * what qemu-img said, and is VO_ERROR_IN_USE when that was about a lock.
 */
/* What qemu-img may print on one stream: its JSON for the largest images
 * is a few kilobytes. */
#define VO_IMAGE_RUN_MAX_OUTPUT     (4 * 1024 * 1024)

static void vo_image_close_all(const int *fds, int n)
{
    for (int i = 0; i < n; i++) {
        close(fds[i]);
    }
}

/*
 * Read @fds[0] into @bufs[0] and @fds[1] into @bufs[1] until both end, or
 * until @deadline (g_get_monotonic_time(); 0: none) passes, which sets
 * *@late.
 */
static gboolean vo_image_collect(int fds[2], GString *bufs[2],
                                 gint64 deadline, gboolean *late,
                                 GError **error)
{
    char chunk[4096];

    while (fds[0] >= 0 || fds[1] >= 0) {
        struct pollfd p[2] = {
            { .fd = fds[0], .events = POLLIN },
            { .fd = fds[1], .events = POLLIN },
        };
        int timeout = -1;
        int n;

        if (deadline) {
            gint64 left = deadline - g_get_monotonic_time();

            timeout = left > 0 ? (int)((left + 999) / 1000) : 0;
        }
        n = poll(p, 2, timeout);
        if (n == 0) {
            *late = TRUE;
            return FALSE;
        }
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "poll: %s",
                        g_strerror(errno));
            return FALSE;
        }
        for (int i = 0; i < 2; i++) {
            ssize_t n;

            if (fds[i] < 0 || !p[i].revents) {
                continue;
            }
            n = read(fds[i], chunk, sizeof(chunk));
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                close(fds[i]);
                fds[i] = -1;
                continue;
            }
            if (bufs[i]->len + n > VO_IMAGE_RUN_MAX_OUTPUT) {
                g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                            "more than %u bytes of output",
                            VO_IMAGE_RUN_MAX_OUTPUT);
                return FALSE;
            }
            g_string_append_len(bufs[i], chunk, n);
        }
    }
    return TRUE;
}

/*
 * The Landlock ruleset for a qemu-img that reads @image (a path, or NULL)
 * and the files open as @fd and @second (or -1): the image and the
 * system's files, nothing else.  A kernel without Landlock leaves it
 * unconfined (the deadline and the checks of what it reports still
 * hold); any other failure to make the ruleset is an error.
 */
static gboolean vo_image_confine(VoImageChild *child, const char *image,
                                 int fd, int second, GError **error)
{
    g_autofree char *dir = g_path_get_dirname(vo_image_qemu_tool("qemu-img"));
    int fds[2];
    size_t n = 0;
    int rc;

    if (fd >= 0) {
        fds[n++] = fd;
    }
    if (second >= 0) {
        fds[n++] = second;
    }
    rc = sandbox_paths_ruleset(g_path_is_absolute(dir) ? dir : NULL, image,
                               fds, n);
    if (rc == -ENOSYS || rc == -EOPNOTSUPP) {
        static gsize said;

        if (g_once_init_enter(&said)) {
            g_message("this kernel has no Landlock: qemu-img info may "
                      "open what an image names before it is refused");
            g_once_init_leave(&said, 1);
        }
        return TRUE;
    }
    if (rc < 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "cannot confine qemu-img to the image: %s",
                    g_strerror(-rc));
        return FALSE;
    }
    child->ruleset = rc;
    return TRUE;
}

/*
 * Runs qemu-img with @args (after the program name) under @limits; its
 * stdout into @out unless NULL.  @fd, unless -1, is qemu-img's
 * VO_IMAGE_FD_ARG, and @second, unless -1, its VO_IMAGE_FD2_ARG: files it
 * opens through the descriptors, whatever is under their names by then.
 * @image is the path among @args it reads, for limits that confine it.
 * A failure names the subcommand and says
 * what qemu-img said, and is VO_ERROR_IN_USE when that was about a lock.
 *
 * Started, read and reaped here, without GSubprocess: that would start
 * GLib's worker thread to watch the child, and the --host-kernel route
 * forks a child that goes on running GLib code, which a lock held by
 * that thread at the fork would deadlock.
 */
static gboolean vo_image_run(const char *const *args,
                             const VoImageLimits *limits, const char *image,
                             int fd, int second, char **out, GError **error)
{
    int source[2], target[2];
    int n_fds = 0;
    int pipes[2] = { -1, -1 };
    int status;
    GPid pid;
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_autoptr(GString) stdout_buf = g_string_new(NULL);
    g_autoptr(GString) stderr_buf = g_string_new(NULL);
    GString *bufs[2] = { stdout_buf, stderr_buf };
    g_autoptr(GError) local = NULL;
    VoImageChild child = {
        .limits = limits, .ruleset = -1, .parent = getpid()
    };
    gboolean spawned, read_ok, late = FALSE;

    if (limits->confine_paths && !vo_image_allow_external &&
        !vo_image_confine(&child, image, fd, second, error)) {
        return FALSE;
    }
    g_ptr_array_add(argv, (char *)vo_image_qemu_tool("qemu-img"));
    for (guint i = 0; args[i]; i++) {
        g_ptr_array_add(argv, (char *)args[i]);
    }
    g_ptr_array_add(argv, NULL);
    for (int i = 0; i < 2; i++) {
        int held = i == 0 ? fd : second;

        if (held < 0) {
            continue;
        }
        /* Above the targets: one copy is not moved onto another. */
        source[n_fds] = fcntl(held, F_DUPFD_CLOEXEC, VO_IMAGE_FD + 2);
        if (source[n_fds] < 0) {
            g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "qemu-img %s: %s",
                        args[0], g_strerror(errno));
            vo_image_close_all(source, n_fds);
            if (child.ruleset >= 0) {
                close(child.ruleset);
            }
            return FALSE;
        }
        target[n_fds++] = VO_IMAGE_FD + i;
    }
    spawned = g_spawn_async_with_pipes_and_fds(
            NULL, (const char *const *)argv->pdata, NULL,
            G_SPAWN_DO_NOT_REAP_CHILD |
            (out ? 0 : G_SPAWN_STDOUT_TO_DEV_NULL),
            vo_image_child_setup, &child, -1, -1, -1,
            source, target, n_fds, &pid, NULL,
            out ? &pipes[0] : NULL, &pipes[1], error);
    vo_image_close_all(source, n_fds);
    if (child.ruleset >= 0) {
        close(child.ruleset);
    }
    if (!spawned) {
        return FALSE;
    }
    read_ok = vo_image_collect(pipes, bufs,
                               limits->wall_seconds
                                   ? g_get_monotonic_time() +
                                     limits->wall_seconds * G_USEC_PER_SEC
                                   : 0,
                               &late, &local);
    if (late) {
        kill(pid, SIGKILL);
    }
    for (int i = 0; i < 2; i++) {
        if (pipes[i] >= 0) {
            close(pipes[i]);
        }
    }
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    g_spawn_close_pid(pid);
    if (late) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "qemu-img %s did not finish within %u s (does the "
                    "image name a file that blocks, such as a FIFO?)",
                    args[0], limits->wall_seconds);
        return FALSE;
    }
    if (!read_ok) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "qemu-img %s: %s",
                    args[0], local->message);
        return FALSE;
    }
    if (!g_spawn_check_wait_status(status, NULL)) {
        g_strstrip(stderr_buf->str);
        g_set_error(error, VO_ERROR,
                    strstr(stderr_buf->str, "lock") ? VO_ERROR_IN_USE
                                                    : VO_ERROR_FAILED,
                    "qemu-img %s failed: %s", args[0], stderr_buf->str);
        return FALSE;
    }
    if (out) {
        *out = g_string_free(g_steal_pointer(&stdout_buf), FALSE);
    }
    return TRUE;
}

/*
 * A QEMU built without some block drivers probes their images as raw; the
 * guest would then look empty.  Recognise the common magics to say why.
 */
static gboolean vo_image_check_not_foreign(const char *image, GError **error)
{
    static const struct {
        const char *magic;
        gsize len;
        const char *driver;
    } magics[] = {
        { "KDMV", 4, "vmdk" }, { "vhdxfile", 8, "vhdx" },
        { "conectix", 8, "vpc" }, { "QFI\xfb", 4, "qcow2" },
        { "<<< Oracle VM VirtualBox Disk Image >>>", 39, "vdi" },
    };
    char head[64] = { 0 };
    int fd = open(image, O_RDONLY | O_CLOEXEC);
    ssize_t got = fd >= 0 ? read(fd, head, sizeof(head)) : -1;

    if (fd >= 0) {
        close(fd);
    }
    for (gsize i = 0; got > 0 && i < G_N_ELEMENTS(magics); i++) {
        if ((gsize)got >= magics[i].len &&
            memcmp(head, magics[i].magic, magics[i].len) == 0) {
            g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                        "%s looks like a %s image, but %s has no %s driver "
                        "(set VMAUGMENT_QEMU_IMG/VMAUGMENT_QEMU_NBD to a "
                        "QEMU built with it)", image, magics[i].driver,
                        vo_image_qemu_tool("qemu-img"), magics[i].driver);
            return FALSE;
        }
    }
    return TRUE;
}

char *vo_image_probe_format(const char *image, const char *format,
                           gboolean for_writing, GError **error)
{
    g_autofree char *out = NULL;
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GError) local = NULL;
    JsonNode *root;
    JsonObject *obj, *spec;
    guint64 size;
    const char *args[] = {
        "info", "--output=json",
        /* The lock is checked separately, with a clearer message. */
        "-U", format ? "-f" : image, format, image, NULL,
    };

    if (!format) {
        args[4] = NULL;
    }
    if (!vo_image_run(args, &vo_image_info_limits, image, -1, -1, &out,
                      &local)) {
        g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                    "%s is not a usable disk image: %s", image,
                    local->message);
        return NULL;
    }
    if (!json_parser_load_from_data(parser, out, -1, error)) {
        return NULL;
    }
    root = json_parser_get_root(parser);
    if (!JSON_NODE_HOLDS_OBJECT(root)) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "qemu-img info printed no object");
        return NULL;
    }
    obj = json_node_get_object(root);
    if (!json_object_has_member(obj, "format")) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "qemu-img info gave no format for %s", image);
        return NULL;
    }
    spec = json_object_has_member(obj, "format-specific")
               ? json_object_get_object_member(obj, "format-specific")
               : NULL;
    if (spec && json_object_has_member(spec, "data")) {
        JsonObject *data = json_object_get_object_member(spec, "data");

        if (data && json_object_get_boolean_member_with_default(
                        data, "corrupt", FALSE)) {
            g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                        "%s is marked corrupt by QEMU; repair it with "
                        "'qemu-img check -r all' first", image);
            return NULL;
        }
    }
    if (!vo_image_allow_external &&
        !vo_image_check_external(image, obj, spec, error)) {
        return NULL;
    }
    if (g_str_equal(json_object_get_string_member(obj, "format"), "raw") &&
        !format && !vo_image_check_not_foreign(image, error)) {
        return NULL;
    }
    if (for_writing && spec && json_object_has_member(spec, "data")) {
        JsonObject *data = json_object_get_object_member(spec, "data");
        const char *type = data ? json_object_get_string_member_with_default(
                                      data, "create-type", "")
                                : "";

        /* QEMU writes streamOptimized VMDKs only when creating them. */
        if (g_str_equal(type, "streamOptimized")) {
            g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                        "%s is a streamOptimized VMDK, which QEMU cannot "
                        "modify; convert it first (qemu-img convert -O vmdk)",
                        image);
            return NULL;
        }
    }
    if (vo_image_info_size(obj, &size)) {
        vo_image_remember(image, -1,
                          json_object_get_string_member(obj, "format"), size);
    }
    return g_strdup(json_object_get_string_member(obj, "format"));
}

gboolean vo_image_virtual_size(const char *image, int fd, const char *format,
                               guint64 *size, GError **error)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autofree char *out = NULL;
    const char *args[] = {
        "info", "--output=json", "-U", "-f", format,
        fd >= 0 ? VO_IMAGE_FD_ARG : image, NULL,
    };
    JsonNode *root;

    if (vo_image_recall(image, fd, format, size)) {
        return TRUE;
    }
    if (!vo_image_run(args, &vo_image_info_limits, fd >= 0 ? NULL : image,
                      fd, -1, &out, error) ||
        !json_parser_load_from_data(parser, out, -1, error)) {
        return FALSE;
    }
    root = json_parser_get_root(parser);
    if (!JSON_NODE_HOLDS_OBJECT(root) ||
        !vo_image_info_size(json_node_get_object(root), size)) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "qemu-img info gave no virtual size for %s", image);
        return FALSE;
    }
    vo_image_remember(image, fd, format, *size);
    return TRUE;
}

gboolean vo_image_create_overlay(const char *overlay, int fd,
                                 const char *image, const char *format,
                                 GError **error)
{
    const char *args[] = {
        "create", "-q", "-f", "qcow2", "-b", image, "-F", format,
        VO_IMAGE_FD_ARG, NULL,
    };
    guint64 size;

    if (!vo_image_run(args, &vo_image_tool_limits, NULL, fd, -1, NULL, error)) {
        return FALSE;
    }
    /* Made without a size, it has its backing file's. */
    if (vo_image_recall(image, -1, format, &size)) {
        vo_image_remember(overlay, fd, "qcow2", size);
    }
    return TRUE;
}

gboolean vo_image_check_overlay(const char *overlay, int fd,
                                const char *image, GError **error)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autofree char *want = g_canonicalize_filename(image, NULL);
    g_autofree char *have = NULL;
    g_autofree char *out = NULL;
    const char *args[] = {
        /* The header only: its backing file is not opened. */
        "info", "--output=json", "-U", "-f", "qcow2", VO_IMAGE_FD_ARG, NULL,
    };
    const char *backing = NULL;
    gboolean data_file = FALSE;
    struct stat st;

    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
        vo_image_run(args, &vo_image_info_limits, NULL, fd, -1, &out, NULL) &&
        json_parser_load_from_data(parser, out, -1, NULL) &&
        JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser))) {
        JsonObject *obj = json_node_get_object(json_parser_get_root(parser));
        JsonNode *spec = json_object_get_member(obj, "format-specific");
        JsonNode *data = spec && JSON_NODE_HOLDS_OBJECT(spec)
            ? json_object_get_member(json_node_get_object(spec), "data")
            : NULL;

        backing = vmaug_json_string(obj, "full-backing-filename");
        data_file = data && JSON_NODE_HOLDS_OBJECT(data) &&
                    json_object_has_member(json_node_get_object(data),
                                           "data-file");
    }
    if (backing) {
        have = g_canonicalize_filename(backing, NULL);
    }
    /*
     * The commit writes the overlay into its backing file and reads any
     * data file it names: only the overlay an apply made on @image, and
     * nothing planted next to it, may be finished.
     */
    if (!have || !g_str_equal(have, want) || data_file) {
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "%s is not the overlay of %s that an interrupted apply "
                    "leaves (its backing file is %s%s); it is not "
                    "committed: remove it and its journal if no apply of "
                    "this image was interrupted", overlay, image,
                    backing ? backing : "none",
                    data_file ? ", and it names a data file" : "");
        return FALSE;
    }
    return TRUE;
}


char *vo_image_open_format(const char *image, const char *format,
                           gboolean for_writing, GError **error)
{
    if (for_writing && vo_image_force_share) {
        g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                    "--force-share is for reading jobs only");
        return NULL;
    }
    /* The caller vouches that the VM holding the image runs no
     * instruction while we read: QEMU's locks say nothing then. */
    if (!vo_image_force_share &&
        !vo_image_check_unlocked(image, for_writing, error)) {
        return NULL;
    }
    return vo_image_probe_format(image, format, for_writing, error);
}

gboolean vo_image_qemu_img_fds(const char *const *args, int fd, int second,
                               GError **error)
{
    return vo_image_run(args, &vo_image_tool_limits, NULL, fd, second, NULL,
                        error);
}

static char *vo_image_server_log(VoImageServer *s)
{
    g_autofree char *text = NULL;

    if (!g_file_get_contents(s->errlog, &text, NULL, NULL)) {
        return g_strdup("");
    }
    return g_strdup(g_strstrip(text));
}

/* A listening socket in a fresh private directory, and its path. */
static int vo_image_listen(char **dir, char **path, GError **error)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd;

    *dir = g_dir_make_tmp("vmaugment-nbd-XXXXXX", error);
    if (!*dir) {
        return -1;
    }
    *path = g_build_filename(*dir, "sock", NULL);
    if (strlen(*path) >= sizeof(sa.sun_path)) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "the temporary directory's path is too long for a "
                    "socket: %s", *path);
        return -1;
    }
    strcpy(sa.sun_path, *path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(fd, 1) < 0) {
        int saved = errno;

        if (fd >= 0) {
            close(fd);
        }
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "cannot listen on %s: %s", *path, g_strerror(saved));
        return -1;
    }
    return fd;
}

static int vo_image_connect(const char *path, GError **error)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    strcpy(sa.sun_path, path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int saved = errno;

        if (fd >= 0) {
            close(fd);
        }
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "cannot connect to qemu-nbd: %s", g_strerror(saved));
        return -1;
    }
    return fd;
}

/*
 * @s's listening socket, and on it the client's connection and one per
 * LUKS volume (@s->n_volumes), queued until the server takes them over.
 */
static gboolean vo_image_server_connect(VoImageServer *s, GError **error)
{
    g_autofree char *dir = NULL;
    g_autofree char *path = NULL;

    s->listener = vo_image_listen(&dir, &path, error);
    /* Room for every connection, queued until the server starts. */
    if (s->listener >= 0 && listen(s->listener, s->n_volumes + 1) < 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "cannot listen: %s",
                    g_strerror(errno));
    } else if (s->listener >= 0) {
        s->client = vo_image_connect(path, error);
        for (guint i = 0; s->client >= 0 && i < s->n_volumes; i++) {
            s->volumes[i] = vo_image_connect(path, error);
            if (s->volumes[i] < 0) {
                close(s->client);
                s->client = -1;
            }
        }
    }
    /* Connected or not, nobody else may come: the exports are ours. */
    if (path) {
        g_unlink(path);
    }
    if (dir) {
        g_rmdir(dir);
    }
    return s->client >= 0;
}

/* A server of @image, not connected yet. */
static VoImageServer *vo_image_server_alloc(const char *image,
                                            const char *name,
                                            const char *format,
                                            gboolean writable)
{
    VoImageServer *s = g_new0(VoImageServer, 1);

    s->client = -1;
    s->listener = -1;
    /* None yet: a spare's (vo_image_server_set_image()). */
    s->image = image ? g_canonicalize_filename(image, NULL) : NULL;
    s->name = g_strdup(name ? name : image);
    s->format = g_strdup(format);
    s->writable = writable;
    return s;
}

VoImageServer *vo_image_server_new(const char *image, const char *name,
                                   const char *format, gboolean writable,
                                   GError **error)
{
    g_autoptr(VoImageServer) s = vo_image_server_alloc(image, name, format,
                                                       writable);

    if (!vo_image_server_connect(s, error)) {
        return NULL;
    }
    return g_steal_pointer(&s);
}

void vo_image_server_set_image(VoImageServer *s, const char *image,
                               const char *name)
{
    g_return_if_fail(s->listener >= 0);
    g_free(s->image);
    g_free(s->name);
    s->image = g_canonicalize_filename(image, NULL);
    s->name = g_strdup(name ? name : image);
}

void vo_image_server_set_format(VoImageServer *s, const char *format)
{
    g_return_if_fail(s->listener >= 0);
    g_free(s->format);
    s->format = g_strdup(format);
}

/* @text for QemuOpts: a comma is written twice. */
static char *vo_image_opt(const char *text)
{
    g_autoptr(GString) s = g_string_new(text);

    g_string_replace(s, ",", ",,", 0);
    return g_string_free(g_steal_pointer(&s), FALSE);
}

/* One block graph: the disk's format node, then per volume a raw window
 * on it and a luks node on the window; every export on that graph. */
static GPtrArray *vo_image_daemon_args(const char *image, const char *format,
                                       gboolean writable,
                                       const VoImageLuks *luks, guint n,
                                       guint first, int listener,
                                       const char *pidfile)
{
    GPtrArray *args = g_ptr_array_new_with_free_func(g_free);
    g_autofree char *file = vo_image_opt(image);
    g_autofree char *pid = vo_image_opt(pidfile);
    const char *ro = writable ? "off" : "on";

    g_ptr_array_add(args, g_strdup(vo_image_qemu_tool(
                              "qemu-storage-daemon")));
    for (guint i = 0; i < n; i++) {
        g_autofree char *key = vo_image_opt(luks[i].key_file);

        /* QEMU reads the key from the file: never a command line. */
        g_ptr_array_add(args, g_strdup("--object"));
        g_ptr_array_add(args, g_strdup_printf(
                                  "secret,id=key%u,file=%s,format=raw", i,
                                  key));
    }
    g_ptr_array_add(args, g_strdup("--blockdev"));
    g_ptr_array_add(args, g_strdup_printf(
                              "driver=file,node-name=file,filename=%s,"
                              "read-only=%s%s", file, ro,
                              !writable && vo_image_force_share
                                  ? ",force-share=on" : ""));
    g_ptr_array_add(args, g_strdup("--blockdev"));
    g_ptr_array_add(args, g_strdup_printf(
                              "driver=%s,node-name=disk,file=file,"
                              "read-only=%s%s", format, ro,
                              !writable && vo_image_force_share
                                  ? ",force-share=on" : ""));
    for (guint i = 0; i < n; i++) {
        g_ptr_array_add(args, g_strdup("--blockdev"));
        g_ptr_array_add(args, g_strdup_printf(
                                  "driver=raw,node-name=window%u,file=disk,"
                                  "offset=%" G_GUINT64_FORMAT ",size=%"
                                  G_GUINT64_FORMAT ",read-only=%s", i,
                                  luks[i].offset, luks[i].size, ro));
        g_ptr_array_add(args, g_strdup("--blockdev"));
        g_ptr_array_add(args, g_strdup_printf(
                                  "driver=luks,node-name=luks%u,"
                                  "file=window%u,key-secret=key%u,"
                                  "read-only=%s", first + i, i, i, ro));
    }
    g_ptr_array_add(args, g_strdup("--nbd-server"));
    g_ptr_array_add(args, g_strdup_printf(
                              "addr.type=fd,addr.str=%d,max-connections=%u",
                              listener, n + 1));
    g_ptr_array_add(args, g_strdup("--export"));
    g_ptr_array_add(args, g_strdup_printf(
                              "type=nbd,id=disk,node-name=disk,name=,"
                              "writable=%s", writable ? "on" : "off"));
    for (guint i = 0; i < n; i++) {
        g_ptr_array_add(args, g_strdup("--export"));
        g_ptr_array_add(args, g_strdup_printf(
                                  "type=nbd,id=luks%u,node-name=luks%u,"
                                  "name=luks%u,writable=%s", first + i,
                                  first + i, first + i,
                                  writable ? "on" : "off"));
    }
    /* Written once every node and export is set up (the daemon's
     * documented order): our sign that the keys opened the volumes. */
    g_ptr_array_add(args, g_strdup("--pidfile"));
    g_ptr_array_add(args, g_steal_pointer(&pid));
    g_ptr_array_add(args, NULL);
    return args;
}

/* Why the daemon did not start, in the user's words. */
static void vo_image_daemon_failed(VoImageServer *s, const VoImageLuks *luks,
                                   guint n, guint first, GError **error)
{
    g_autofree char *log = vo_image_server_log(s);

    for (guint i = 0; i < n; i++) {
        g_autofree char *node = g_strdup_printf("node-name=luks%u,",
                                                first + i);
        const char *where = strstr(log, node);

        if (!where || !strstr(where, ": ")) {
            continue;
        }
        if (strstr(where, "Invalid password")) {
            g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                        "%s: the key in %s opens none of the key slots of "
                        "the LUKS volume at byte %" G_GUINT64_FORMAT
                        "; nothing was written", s->name, luks[i].key_file,
                        luks[i].offset);
            return;
        }
        if (strstr(where, "LUKS version")) {
            g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                        "%s: the LUKS volume at byte %" G_GUINT64_FORMAT
                        " is not LUKS1, the only version QEMU's luks driver "
                        "opens (%s)", s->name, luks[i].offset,
                        strstr(where, ": ") + 2);
            return;
        }
    }
    g_set_error(error, VO_ERROR,
                strstr(log, "lock") ? VO_ERROR_IN_USE : VO_ERROR_FAILED,
                "cannot open %s: %s", s->name,
                *log ? log : "qemu-storage-daemon failed");
}

VoImageServer *vo_image_server_new_luks(const char *image, const char *name,
                                        const char *format, gboolean writable,
                                        const VoImageLuks *luks, guint n,
                                        guint first, GError **error)
{
    g_autoptr(VoImageServer) s = vo_image_server_alloc(image, name, format,
                                                       writable);

    g_assert(n > 0 && n <= VO_IMAGE_MAX_LUKS);
    s->daemon = TRUE;
    s->first = first;
    for (guint i = 0; i < n; i++) {
        s->volumes[i] = -1;
        s->luks[i] = luks[i];
        s->luks[i].key_file = g_canonicalize_filename(luks[i].key_file, NULL);
    }
    s->n_volumes = n;
    if (!vo_image_server_connect(s, error)) {
        return NULL;
    }
    return g_steal_pointer(&s);
}

/*
 * The daemon's PID file, written in full: it creates the file, locks it
 * and checks it is still the one at that path before it writes its PID
 * and a newline, so an empty file may not be removed yet.
 */
static gboolean vo_image_pidfile_written(const char *pidfile)
{
    g_autofree char *text = NULL;

    return g_file_get_contents(pidfile, &text, NULL, NULL) &&
           g_str_has_suffix(text, "\n");
}

/* vo_image_server_start() of a vo_image_server_new_luks() server; @held
 * as there, its copy (or -1). */
static gboolean vo_image_daemon_start(VoImageServer *s, int held,
                                      GError **error)
{
    g_autofree char *dir = NULL;
    g_autofree char *pidfile = NULL;
    g_autoptr(GPtrArray) args = NULL;
    g_autoptr(GError) local = NULL;
    gint64 deadline;
    int log;
    int source[2], target[2] = { 3, VO_IMAGE_SERVER_FD };
    VoImageChild child = {
        .limits = &vo_image_server_limits, .ruleset = -1, .parent = getpid()
    };
    int status;
    gboolean ok;

    log = g_file_open_tmp("vmaugment-qsd-XXXXXX.log", &s->errlog, error);
    if (log < 0) {
        return FALSE;
    }
    dir = g_dir_make_tmp("vmaugment-qsd-XXXXXX", error);
    if (!dir) {
        close(log);
        return FALSE;
    }
    pidfile = g_build_filename(dir, "pid", NULL);
    args = vo_image_daemon_args(s->file, s->format, s->writable, s->luks,
                                s->n_volumes, s->first, target[0], pidfile);
    source[0] = s->listener;
    source[1] = held;
    if (!g_spawn_async_with_pipes_and_fds(
            NULL, (const char *const *)args->pdata, NULL,
            G_SPAWN_DO_NOT_REAP_CHILD, vo_image_child_setup,
            &child, -1, -1, log, source, target,
            held >= 0 ? 2 : 1, &s->pid, NULL, NULL, NULL, &local)) {
        s->pid = 0;
    }
    close(s->listener);
    s->listener = -1;
    close(log);
    /* Opening a LUKS volume runs its key derivation: seconds at most. */
    deadline = g_get_monotonic_time() + VO_IMAGE_SERVER_EXIT_US;
    while (!local && !vo_image_pidfile_written(pidfile)) {
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            s->pid = 0;
            vo_image_daemon_failed(s, s->luks, s->n_volumes, s->first,
                                   &local);
        } else if (g_get_monotonic_time() > deadline) {
            g_set_error(&local, VO_ERROR, VO_ERROR_TIMEOUT,
                        "qemu-storage-daemon did not open %s in time",
                        s->name);
        } else {
            g_usleep(20 * 1000);
        }
    }
    ok = local == NULL;
    if (!ok) {
        g_propagate_error(error, g_steal_pointer(&local));
    }
    g_unlink(pidfile);
    g_rmdir(dir);
    return ok;
}

/* What qemu-nbd's child runs with, all made before the fork. */
typedef struct {
    const char *path;
    char *const *argv;
    char **envp;
    char *listen_pid;       /* the value of @envp's LISTEN_PID entry */
    int devnull;
    int log;
    int listener;
    int held;               /* becomes VO_IMAGE_SERVER_FD, unless -1 */
    VoImageChild child;
} VoImageExec;

/* Formats @n into @buf (room for 21 bytes): async-signal-safe. */
static void vo_image_format_pid(char *buf, pid_t n)
{
    char digits[21];
    int len = 0;

    do {
        digits[len++] = '0' + n % 10;
        n /= 10;
    } while (n > 0);
    while (len > 0) {
        *buf++ = digits[--len];
    }
    *buf = '\0';
}

/* The forked child: async-signal-safe calls only, as between any fork
 * and exec of a process that may have threads. */
static void G_GNUC_NORETURN vo_image_exec_server(const VoImageExec *e)
{
    static const char failed[] = "cannot execute qemu-nbd\n";

    if (dup2(e->devnull, STDIN_FILENO) < 0 ||
        dup2(e->log, STDERR_FILENO) < 0 ||
        (e->listener == 3 ? fcntl(3, F_SETFD, 0)
                          : dup2(e->listener, 3)) < 0 ||
        /* Above VO_IMAGE_SERVER_FD (vo_image_server_start()): never one
         * of the descriptors just placed. */
        (e->held >= 0 && dup2(e->held, VO_IMAGE_SERVER_FD) < 0)) {
        _exit(127);
    }
    if (close_range(VO_IMAGE_SERVER_FD + (e->held >= 0), ~0u, 0) < 0) {
        for (int fd = VO_IMAGE_SERVER_FD + (e->held >= 0); fd < 65536;
             fd++) {
            close(fd);
        }
    }
    vo_image_child_setup((gpointer)&e->child);
    /* Socket activation: the fd is for the process LISTEN_PID names. */
    vo_image_format_pid(e->listen_pid, getpid());
    execve(e->path, e->argv, e->envp);
    if (write(STDERR_FILENO, failed, sizeof(failed) - 1) < 0) {
        /* Its exit status says it anyway. */
    }
    _exit(127);
}

gboolean vo_image_server_start(VoImageServer *s, int fd, GError **error)
{
    g_auto(GStrv) envp = g_get_environ();
    const char *cmd[] = {
        /* Data reaches the image only through the worker's flush. */
        "--cache=writeback",
        s->writable ? "--discard=unmap" : "--read-only",
    };
    g_autoptr(GPtrArray) args = g_ptr_array_new_with_free_func(g_free);
    g_autofree char *path = NULL;
    VoImageExec e;
    pid_t pid;
    int saved;
    gboolean ok;

    g_return_val_if_fail(s->listener >= 0 && s->format, FALSE);
    /*
     * A file held open is reopened through its descriptor, whatever is
     * under its name by now: a copy above every descriptor the child
     * places, so that none overwrites another.
     */
    e.held = fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, VO_IMAGE_SERVER_FD + 1)
                     : -1;
    if (fd >= 0 && e.held < 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "cannot start the "
                    "server of %s: %s", s->name, g_strerror(errno));
        return FALSE;
    }
    g_free(s->file);
    s->file = fd >= 0 ? g_strdup(VO_IMAGE_SERVER_FD_ARG) : g_strdup(s->image);
    if (s->daemon) {
        ok = vo_image_daemon_start(s, e.held, error);
        if (e.held >= 0) {
            close(e.held);
        }
        return ok;
    }
    path = g_strdup(vo_image_qemu_tool("qemu-nbd"));
    if (!strchr(path, '/')) {
        /* Not on PATH when looked up: execve() searches nothing. */
        g_autofree char *found = g_find_program_in_path(path);

        if (found) {
            g_free(path);
            path = g_steal_pointer(&found);
        }
    }
    g_ptr_array_add(args, g_strdup(path));
    for (gsize i = 0; i < G_N_ELEMENTS(cmd); i++) {
        g_ptr_array_add(args, g_strdup(cmd[i]));
    }
    if (!s->writable && vo_image_force_share) {
        /* Beside the holding QEMU's locks, which only the block layer's
         * force-share option ignores (vo_image_set_force_share()). */
        g_autoptr(GString) file = g_string_new(s->file);

        g_string_replace(file, ",", ",,", 0);
        g_ptr_array_add(args, g_strdup("--image-opts"));
        g_ptr_array_add(args, g_strdup_printf(
                                  "driver=%s,force-share=on,file.driver=file,"
                                  "file.filename=%s", s->format, file->str));
    } else {
        g_ptr_array_add(args, g_strdup("--format"));
        g_ptr_array_add(args, g_strdup(s->format));
        g_ptr_array_add(args, g_strdup(s->file));
    }
    g_ptr_array_add(args, NULL);

    /*
     * Socket activation (LISTEN_FDS, LISTEN_PID): the listening socket is
     * ready before qemu-nbd runs and nobody but us can reach it.  The
     * child writes its own PID into the entry made here, so that qemu-nbd
     * is exec()ed directly, with no shell in between.
     */
    envp = g_environ_setenv(envp, "LISTEN_FDS", "1", TRUE);
    envp = g_environ_setenv(envp, "LISTEN_PID", "00000000000000000000", TRUE);
    envp = g_environ_unsetenv(envp, "LISTEN_FDNAMES");
    e.listen_pid = NULL;
    for (guint i = 0; envp[i]; i++) {
        if (g_str_has_prefix(envp[i], "LISTEN_PID=")) {
            e.listen_pid = envp[i] + strlen("LISTEN_PID=");
        }
    }
    g_assert(e.listen_pid);
    e.child = (VoImageChild){
        .limits = &vo_image_server_limits, .ruleset = -1, .parent = getpid()
    };
    e.path = path;
    e.argv = (char *const *)args->pdata;
    e.envp = envp;
    e.listener = s->listener;
    e.log = g_file_open_tmp("vmaugment-nbd-XXXXXX.log", &s->errlog, error);
    if (e.log < 0) {
        if (e.held >= 0) {
            close(e.held);
        }
        return FALSE;
    }
    e.devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    pid = e.devnull >= 0 ? fork() : -1;
    if (pid == 0) {
        vo_image_exec_server(&e);
    }
    saved = errno;
    close(e.log);
    if (e.held >= 0) {
        close(e.held);
    }
    if (e.devnull >= 0) {
        close(e.devnull);
    }
    close(s->listener);
    s->listener = -1;
    if (pid < 0) {
        s->pid = 0;
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "cannot start qemu-nbd: %s", g_strerror(saved));
        return FALSE;
    }
    s->pid = pid;
    return TRUE;
}

int vo_image_server_take_volume(VoImageServer *s, guint i)
{
    int fd;

    g_assert(i < s->n_volumes);
    fd = s->volumes[i];
    s->volumes[i] = -1;
    return fd;
}

int vo_image_server_take_client(VoImageServer *s)
{
    int fd = s->client;

    s->client = -1;
    return fd;
}

gboolean vo_image_server_finish(VoImageServer *s, GError **error)
{
    g_autofree char *log = NULL;
    VoError code = VO_ERROR_FAILED;
    bool killed;
    int status;

    if (s->client >= 0) {
        close(s->client);
        s->client = -1;
    }
    for (guint i = 0; i < s->n_volumes; i++) {
        if (s->volumes[i] >= 0) {
            close(s->volumes[i]);
            s->volumes[i] = -1;
        }
    }
    if (s->pid == 0) {
        return TRUE;
    }
    if (s->daemon) {
        /* It serves until told: SIGTERM closes its exports and flushes
         * every node to the file before it exits. */
        kill(s->pid, SIGTERM);
    }
    status = sandbox_reap(s->pid, VO_IMAGE_SERVER_EXIT_US, &killed);
    s->pid = 0;
    if (killed) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "%s did not end after its client left",
                    s->daemon ? "qemu-storage-daemon" : "qemu-nbd");
        return FALSE;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        return TRUE;
    }
    log = vo_image_server_log(s);
    if (strstr(log, "lock")) {
        code = VO_ERROR_IN_USE;
    } else if (strstr(log, "corrupt") || strstr(log, "Could not")) {
        code = VO_ERROR_CORRUPT;
    }
    if (s->file && !g_str_equal(s->file, s->name)) {
        /* qemu-nbd names the file it was given: an overlay (or the
         * descriptor it is opened through) is ours, not something the
         * user knows of. */
        g_auto(GStrv) parts = g_strsplit(log, s->file, -1);

        g_free(log);
        log = g_strjoinv(s->name, parts);
    }
    g_set_error(error, VO_ERROR, code, "cannot open %s: %s", s->name,
                *log ? log : "qemu-nbd failed");
    return FALSE;
}

void vo_image_server_free(VoImageServer *s)
{
    if (!s) {
        return;
    }
    if (s->client >= 0) {
        close(s->client);
    }
    for (guint i = 0; i < s->n_volumes; i++) {
        if (s->volumes[i] >= 0) {
            close(s->volumes[i]);
        }
        g_free((char *)s->luks[i].key_file);
    }
    if (s->listener >= 0) {
        close(s->listener);
    }
    if (s->pid > 0) {
        bool killed;

        sandbox_reap(s->pid, 0, &killed);
    }
    if (s->errlog) {
        g_unlink(s->errlog);
        g_free(s->errlog);
    }
    g_free(s->image);
    g_free(s->file);
    g_free(s->name);
    g_free(s->format);
    g_free(s);
}
