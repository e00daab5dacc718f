/*
 * vmaugment-helper: the host API a module reaches through its link.
 *
 * One table says, for every operation of modlink.h, the capability it
 * needs (granted by the signed manifest and the host owner's policy),
 * the budget it spends, what its arguments must at least be, and whether
 * it outlives its VM; the handlers check the rest.  Everything a module
 * sends is hostile (docs/threat-model.rst); docs/modules.rst is normative
 * for what each operation does.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "image-scan.h"
#include "modlink.h"
#include "module-api.h"
#include "module-brokers.h"

/*
 * What one init, call or event may ask of the host: a module must not be
 * able to flood its VM's event queue (and get the VM disconnected for not
 * reading), the host's log, or the spool.
 */
static const guint module_api_budgets[MODULE_BUDGET_COUNT] = {
    [MODULE_BUDGET_EVENTS] = 64,
    [MODULE_BUDGET_LOGS] = 256,
    [MODULE_BUDGET_SPOOL] = 16,
    [MODULE_BUDGET_UI] = 16,
    /* A scan reads the whole image: one per call or event. */
    [MODULE_BUDGET_SCANS] = 1,
    [MODULE_BUDGET_QUARANTINES] = 1,
};

void module_api_refill(Module *m)
{
    /* It may have written to its state files since we last looked. */
    vmaug_vm_area_state_stale(m->area);
    memcpy(m->budget, module_api_budgets, sizeof(m->budget));
    g_clear_pointer(&m->reason, g_free);
}

static void module_api_quarantine_detach(Module *m);
static void module_api_install_detach(Module *m);

void module_api_cancel(Module *m)
{
    image_scan_cancel(g_steal_pointer(&m->pending));
    module_api_quarantine_detach(m);
    module_api_install_detach(m);
}

static gboolean module_api_has_cap(Module *m, const gchar *cap)
{
    /* A capability counts only if the signed manifest asks for it and
     * the host owner grants it. */
    return (g_strcmp0(cap, VMAUG_CAP_LOG) == 0 ||
            vmaug_manifest_has_capability(m->manifest, cap)) &&
           vmaug_policy_grants(m->helper->policy, m->name, cap);
}

static void module_api_reply(Module *m, guint64 tag, gint32 rc,
                             const void *data, gsize len, int fd)
{
    guint32 le = GUINT32_TO_LE((guint32)rc);

    vmaug_link_send(m->link, MODLINK_REPLY, tag, &le, 4, data, len, fd);
}

/* A path below the state directory: relative, no "." or ".." parts. */
static gboolean module_api_path_ok(const gchar *path)
{
    g_auto(GStrv) parts = NULL;

    if (*path == '\0' || *path == '/' || strlen(path) > VMAUG_MODULE_MAX_PATH
        || !g_utf8_validate(path, -1, NULL)) {
        return FALSE;
    }
    parts = g_strsplit(path, "/", -1);
    for (guint i = 0; parts[i] != NULL; i++) {
        if (*parts[i] == '\0' || g_strcmp0(parts[i], ".") == 0 ||
            g_strcmp0(parts[i], "..") == 0) {
            return FALSE;
        }
    }
    return TRUE;
}

/* Errors of the VM's area as a module sees them. */
static int module_api_errno(const GError *error)
{
    if (g_error_matches(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_TOO_BIG)) {
        return -EDQUOT;
    }
    if (g_error_matches(error, VMAUG_HOST_ERROR,
                        VMAUG_HOST_ERROR_NOT_FOUND)) {
        return -ENOENT;
    }
    if (g_error_matches(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID)) {
        return -EINVAL;
    }
    return -EIO;
}

/*
 * @fd was opened with O_NONBLOCK, so that a FIFO or a device could not
 * keep the helper, which serves every VM, waiting in open(): keep it only
 * if it is a regular file (or, with @dir_ok, a directory), and give it
 * back blocking, as the module asked.
 */
static int module_api_checked_fd(int fd, gboolean dir_ok)
{
    struct stat st;
    int fl;

    if (fd < 0) {
        return fd;
    }
    if (fstat(fd, &st) < 0 ||
        !(S_ISREG(st.st_mode) || (dir_ok && S_ISDIR(st.st_mode))) ||
        (fl = fcntl(fd, F_GETFL)) < 0 ||
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
        close(fd);
        return -EINVAL;
    }
    return fd;
}

static int module_api_state_file(Module *m, guint32 flags,
                                 const gchar *path)
{
    g_autoptr(GError) error = NULL;
    const guint32 allowed = O_ACCMODE | O_CREAT | O_TRUNC | O_APPEND |
                            O_EXCL;
    struct open_how how = {
        .mode = 0600,
        /* The kernel enforces "below the state directory", whatever
         * symlinks or races the module arranges. */
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
                   RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
    };
    gboolean writes = (flags & O_ACCMODE) != O_RDONLY ||
                      (flags & (O_CREAT | O_TRUNC | O_APPEND)) != 0;
    gboolean creates;
    int fd;

    if ((flags & ~allowed) != 0 || !module_api_path_ok(path)) {
        return -EINVAL;
    }
    creates = (flags & O_CREAT) && faccessat(m->state_dirfd, path, F_OK,
                                             AT_SYMLINK_NOFOLLOW) < 0;
    /* RLIMIT_FSIZE bounds each file; the VM's quota all of them, and the
     * area how many there are. */
    if (writes && !vmaug_vm_area_state_admit(m->area, m->name, creates,
                                             &error)) {
        g_debug("module %s: state %s: %s", m->name, path, error->message);
        return module_api_errno(error);
    }
    how.flags = flags | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK;
    if (!(flags & O_CREAT)) {
        how.mode = 0;
    }
    fd = syscall(SYS_openat2, m->state_dirfd, path, &how, sizeof(how));
    if (fd < 0 && errno == ENOSYS && strchr(path, '/') == NULL) {
        /* Old kernels: a single component cannot escape with O_NOFOLLOW. */
        fd = openat(m->state_dirfd, path, (int)how.flags, 0600);
    }
    fd = module_api_checked_fd(fd < 0 ? -errno : fd, FALSE);
    if (fd >= 0 && creates) {
        vmaug_vm_area_state_created(m->area, m->name);
    }
    return fd;
}

/*
 * Open @rel below @rootfd for reading, and only if it is a regular file
 * or a directory: it is looked at through an O_PATH descriptor first, so
 * that nothing else (a FIFO, a device) is ever opened at all.
 */
static int module_api_open_beneath(int rootfd, const gchar *rel)
{
    struct open_how how = {
        .flags = O_PATH | O_CLOEXEC | O_NOFOLLOW,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
                   RESOLVE_NO_MAGICLINKS,
    };
    g_autofree gchar *proc = NULL;
    struct stat st;
    int pfd, fd;

    pfd = syscall(SYS_openat2, rootfd, rel, &how, sizeof(how));
    if (pfd < 0) {
        return -errno;
    }
    if (fstat(pfd, &st) < 0 || !(S_ISREG(st.st_mode) ||
                                 S_ISDIR(st.st_mode))) {
        close(pfd);
        return -EINVAL;
    }
    /* The same inode, now for reading. */
    proc = g_strdup_printf("/proc/self/fd/%d", pfd);
    fd = open(proc, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0 && errno == ENOENT) {
        /* No /proc: O_NONBLOCK alone keeps a swapped-in FIFO from
         * blocking us. */
        how.flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY |
                    O_NONBLOCK;
        fd = syscall(SYS_openat2, rootfd, rel, &how, sizeof(how));
    }
    fd = fd < 0 ? -errno : fd;
    close(pfd);
    return module_api_checked_fd(fd, TRUE);
}

/* Read-only access below the roots the policy grants this module. */
static int module_api_host_file(Module *m, const gchar *path)
{
    GStrv roots = g_hash_table_lookup(m->helper->policy->read_roots,
                                      m->name);

    if (*path != '/' || strlen(path) > VMAUG_MODULE_MAX_HOST_PATH ||
        !g_utf8_validate(path, -1, NULL) || !module_api_path_ok(path + 1)) {
        return -EINVAL;
    }
    for (guint i = 0; roots != NULL && roots[i] != NULL; i++) {
        gsize rlen = strlen(roots[i]);
        const gchar *rel;
        int rootfd, fd;

        if (strncmp(path, roots[i], rlen) != 0 ||
            (path[rlen] != '\0' && path[rlen] != '/')) {
            continue;
        }
        rel = path[rlen] == '\0' ? "." : path + rlen + 1;
        rootfd = open(roots[i], O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (rootfd < 0) {
            return -errno;
        }
        fd = module_api_open_beneath(rootfd, rel);
        close(rootfd);
        return fd;
    }
    return -EACCES;
}

/* ---- The operations ---- */

/* @key's namespace by its prefix, and @key without it. */
static VmaugConfigSpace module_api_config_space(const gchar **key)
{
    if (g_str_has_prefix(*key, VMAUG_VM_GUEST_PREFIX)) {
        *key += strlen(VMAUG_VM_GUEST_PREFIX);
        return VMAUG_CONFIG_GUEST;
    }
    if (g_str_has_prefix(*key, VMAUG_VM_HOST_PREFIX)) {
        *key += strlen(VMAUG_VM_HOST_PREFIX);
        return VMAUG_CONFIG_HOST;
    }
    return VMAUG_CONFIG_MODULE;
}

static gboolean module_api_config_get(Module *m, guint64 tag,
                                      const guint8 *args, gsize alen,
                                      const gchar **why)
{
    g_autofree gchar *text = g_strndup((const gchar *)args, alen);
    const gchar *key = text;
    g_autoptr(GBytes) value = NULL;
    g_autoptr(GError) error = NULL;
    VmaugConfigSpace space = module_api_config_space(&key);
    gboolean ok = FALSE;

    if (strlen(text) == alen) {
        /*
         * The guest's key reads the host owner's value where there is
         * one: a module cannot forget to ask, so a guest cannot undo
         * what the host owner pinned by setting the same key.
         */
        ok = vmaug_vm_area_config_get(m->area, m->name,
                                      space == VMAUG_CONFIG_GUEST ?
                                      VMAUG_CONFIG_HOST : space,
                                      key, &value, &error);
        if (!ok && space == VMAUG_CONFIG_GUEST &&
            g_error_matches(error, VMAUG_HOST_ERROR,
                            VMAUG_HOST_ERROR_NOT_FOUND)) {
            g_clear_error(&error);
            ok = vmaug_vm_area_config_get(m->area, m->name, space, key,
                                          &value, &error);
        }
    }
    if (!ok) {
        module_api_reply(m, tag, error != NULL ? module_api_errno(error) :
                         -EINVAL, NULL, 0, -1);
    } else {
        module_api_reply(m, tag, 0, g_bytes_get_data(value, NULL),
                         g_bytes_get_size(value), -1);
    }
    return TRUE;
}

static gboolean module_api_config_set(Module *m, guint64 tag,
                                      const guint8 *args, gsize alen,
                                      const gchar **why)
{
    const guint8 *nul = memchr(args, 0, alen);
    const gchar *key = (const gchar *)args;
    g_autoptr(GError) error = NULL;

    if (nul == NULL ||
        module_api_config_space(&key) != VMAUG_CONFIG_MODULE) {
        /* The guest's namespace is the guest's to write, the host
         * owner's the host owner's. */
        module_api_reply(m, tag, -EINVAL, NULL, 0, -1);
    } else if (!vmaug_vm_area_config_set(m->area, m->name,
                                         VMAUG_CONFIG_MODULE,
                                         (const gchar *)args, nul + 1,
                                         alen - (nul + 1 - args), &error)) {
        module_api_reply(m, tag, module_api_errno(error), NULL, 0, -1);
    } else {
        module_api_reply(m, tag, 0, NULL, 0, -1);
    }
    return TRUE;
}

static gboolean module_api_state_open(Module *m, guint64 tag,
                                      const guint8 *args, gsize alen,
                                      const gchar **why)
{
    guint32 flags;
    g_autofree gchar *path = NULL;
    int fd;

    memcpy(&flags, args, 4);
    path = g_strndup((const gchar *)args + 4, alen - 4);
    if (strlen(path) != alen - 4) {
        fd = -EINVAL;
    } else {
        fd = module_api_state_file(m, GUINT32_FROM_LE(flags), path);
    }
    module_api_reply(m, tag, fd < 0 ? fd : 0, NULL, 0, fd < 0 ? -1 : fd);
    return TRUE;
}

static gboolean module_api_spool(Module *m, guint64 tag, const guint8 *args,
                                 gsize alen, const gchar **why)
{
    const guint8 *nul = memchr(args, 0, MIN(alen, 256));
    g_autofree gchar *job = NULL;
    gint32 rc;

    if (nul == NULL || nul + 1 == args + alen ||
        !g_utf8_validate((const gchar *)args, nul - args, NULL)) {
        rc = -EINVAL;
    } else {
        m->budget[MODULE_BUDGET_SPOOL]--;
        rc = module_brokers_spool(m, (const gchar *)args, nul + 1,
                                  alen - (nul + 1 - args), &job);
    }
    module_api_reply(m, tag, rc, job, job != NULL ? strlen(job) : 0, -1);
    return TRUE;
}

static gboolean module_api_post_event(Module *m, guint64 tag,
                                      const guint8 *args, gsize alen,
                                      const gchar **why)
{
    struct vmaug_module_ref ref;

    if (alen + sizeof(ref) > VMAUG_MAX_EVENT_PAYLOAD) {
        module_api_reply(m, tag, -EINVAL, NULL, 0, -1);
        return TRUE;
    }
    m->budget[MODULE_BUDGET_EVENTS]--;
    module_ref_fill(m, &ref);
    m->ops->event(m->owner, VMAUG_EVENT_MODULE_MESSAGE, &ref, sizeof(ref),
                  args, alen);
    module_api_reply(m, tag, 0, NULL, 0, -1);
    return TRUE;
}

static gboolean module_api_post_ui(Module *m, guint64 tag, const guint8 *args,
                                   gsize alen, const gchar **why)
{
    gint32 rc;

    if (alen > VMAUG_MODULE_MAX_UI) {
        rc = -EINVAL;
    } else {
        m->budget[MODULE_BUDGET_UI]--;
        rc = module_brokers_post_ui(m, (const gchar *)args, alen);
    }
    module_api_reply(m, tag, rc, NULL, 0, -1);
    return TRUE;
}

static gboolean module_api_restart(Module *m, guint64 tag, const guint8 *args,
                                   gsize alen, const gchar **why)
{
    guint32 what = 0;
    struct vmaug_restart restart;
    const gchar *cap;

    memcpy(&what, args, 4);
    what = GUINT32_FROM_LE(what);
    /* Two capabilities, one per thing it may restart. */
    cap = what == VMAUG_RESTART_IMAGE ? VMAUG_CAP_RESTART_IMAGE :
          what == VMAUG_RESTART_HOST ? VMAUG_CAP_RESTART_HOST : NULL;
    if (cap == NULL || !module_api_has_cap(m, cap)) {
        module_api_reply(m, tag, cap == NULL ? -EINVAL : -EPERM, NULL, 0,
                         -1);
        return TRUE;
    }
    g_message("module %s requests a restart of the %s", m->name,
              what == VMAUG_RESTART_IMAGE ? "image" : "host application");
    memset(&restart, 0, sizeof(restart));
    module_ref_fill(m, &restart.ref);
    restart.what = GUINT32_TO_LE(what);
    m->ops->event(m->owner, VMAUG_EVENT_RESTART_REQUESTED, &restart,
                  sizeof(restart), NULL, 0);
    module_api_reply(m, tag, 0, NULL, 0, -1);
    return TRUE;
}

static gboolean module_api_host_open(Module *m, guint64 tag,
                                     const guint8 *args, gsize alen,
                                     const gchar **why)
{
    g_autofree gchar *path = g_strndup((const gchar *)args, alen);
    int fd;

    if (strlen(path) != alen) {
        fd = -EINVAL;
    } else {
        fd = module_api_host_file(m, path);
    }
    module_api_reply(m, tag, fd < 0 ? fd : 0, NULL, 0, fd < 0 ? -1 : fd);
    return TRUE;
}

/* An install on the store's thread: it outlives its module, which only
 * stops waiting. */
typedef struct {
    Module *m;                      /* NULL once the module is gone */
    VmaugStore *store;              /* the helper's: outlives modules */
    guint64 tag;
} ModuleApiInstall;

static void module_api_install_detach(Module *m)
{
    ModuleApiInstall *in = g_steal_pointer(&m->installing);

    if (in != NULL) {
        in->m = NULL;
    }
}

static void module_api_installed(GObject *source, GAsyncResult *res,
                                 gpointer data)
{
    g_autofree ModuleApiInstall *in = data;
    g_autoptr(VmaugManifest) installed = NULL;
    gboolean already = FALSE;

    installed = vmaug_store_install_finish(in->store, res, &already, NULL);
    if (in->m == NULL) {
        return;
    }
    in->m->installing = NULL;
    /* A module learns that nothing changed (an upgrade module then
     * restarts nothing). */
    module_api_reply(in->m, in->tag, already ? -EEXIST :
                     installed != NULL ? 0 : -EACCES, NULL, 0, -1);
}

/* Bound for an install on top of the call's own: it may wait behind
 * other packages entering the store, on a slow disk. */
#define MODULE_API_INSTALL_EXTEND_MS    60000

static gboolean module_api_install(Module *m, guint64 tag, const guint8 *args,
                                   gsize alen, const gchar **why)
{
    g_autoptr(GBytes) pkg = g_bytes_new(args, alen);
    g_autofree gchar *actor = g_strconcat("module:", m->name, NULL);
    ModuleApiInstall *in = g_new0(ModuleApiInstall, 1);

    /* Exactly the checks of a guest upload, signature first, on the
     * store's thread: answered when they are done. */
    in->m = m;
    in->store = m->store;
    in->tag = tag;
    m->installing = in;
    m->api_extend_ms = MODULE_API_INSTALL_EXTEND_MS;
    vmaug_store_install_async(m->store, pkg, actor, module_api_installed, in);
    return TRUE;
}

static gboolean module_api_set_reason(Module *m, guint64 tag,
                                      const guint8 *args, gsize alen,
                                      const gchar **why)
{
    g_autofree gchar *text = NULL;

    if (alen > VMAUG_MODULE_MAX_REASON) {
        module_api_reply(m, tag, -EINVAL, NULL, 0, -1);
        return TRUE;
    }
    /* Its words go into log lines, the audit log and the message QEMU
     * prints: valid UTF-8, one line, no control characters. */
    text = g_utf8_make_valid((const gchar *)args, alen);
    for (gchar *c = text; *c != '\0'; c++) {
        if ((guchar)*c < 0x20 || *c == 0x7f) {
            *c = '?';
        }
    }
    g_free(m->reason);
    m->reason = g_steal_pointer(&text);
    module_api_reply(m, tag, 0, NULL, 0, -1);
    return TRUE;
}

typedef struct {
    Module *m;
    guint64 tag;
} ModuleApiScan;

static void module_api_on_scanned(gint result, const gchar *report,
                                  gsize len, const gchar *summary,
                                  gpointer data)
{
    ModuleApiScan *sc = data;
    Module *m = sc->m;
    g_autoptr(GError) finding = NULL;

    m->pending = NULL;
    g_message("module %s %s: scan of %s: %s", m->name, m->version,
              vmaug_vm_area_get_image(m->area), summary);
    /* The host owner learns of every scan from the audit log: accepted
     * when clean, otherwise with what was found or went wrong. */
    if (result != VMAUG_SCAN_CLEAN) {
        finding = g_error_new_literal(VMAUG_HOST_ERROR,
                                      VMAUG_HOST_ERROR_DENIED, summary);
    }
    vmaug_store_audit(m->store, m->vm_name, "image-scan", m->name,
                      m->version, NULL, NULL, finding);
    module_api_reply(m, sc->tag, result, report, len, -1);
    g_free(sc);
}

static gboolean module_api_scan_image(Module *m, guint64 tag,
                                      const guint8 *args, gsize alen,
                                      const gchar **why)
{
    struct vmaug_scan_limits limits;
    const gchar *image = vmaug_vm_area_get_image(m->area);
    g_auto(GStrv) paths = NULL;
    g_autofree gchar *dir = NULL;
    g_autofree gchar *cache = NULL;
    g_autoptr(GError) error = NULL;
    ImageScanLimits il;
    ModuleApiScan *sc;
    gint rc = 0;

    memcpy(&limits, args, sizeof(limits));
    /* The image is its own VM's and nothing else: the module names
     * guest paths at most. */
    if (image == NULL) {
        rc = -ENODEV;
    } else if (limits.reserved != 0 ||
               alen - sizeof(limits) > VMAUG_MODULE_MAX_SCAN_PATHS ||
               (paths = image_scan_paths_split(
                    (const gchar *)args + sizeof(limits),
                    alen - sizeof(limits))) == NULL) {
        rc = -EINVAL;
    } else if ((dir = vmaug_vm_area_subdir(m->area, "scan",
                                           &error)) == NULL) {
        g_warning("module %s: scan: %s", m->name, error->message);
        rc = -EIO;
    }
    if (rc < 0) {
        module_api_reply(m, tag, rc, NULL, 0, -1);
        return TRUE;
    }
    m->budget[MODULE_BUDGET_SCANS]--;
    /* The scanner's own cache, per image: it trusts nothing in it (a
     * stale or damaged cache costs a full scan). */
    cache = g_build_filename(dir, "clamav.cache", NULL);
    il.max_file_size = GUINT64_FROM_LE(limits.max_file_size);
    il.timeout_s = GUINT32_FROM_LE(limits.timeout_s);
    sc = g_new0(ModuleApiScan, 1);
    sc->m = m;
    sc->tag = tag;
    m->pending = image_scan_start(m->helper, image, cache,
                                  (const gchar *const *)paths, &il,
                                  module_api_on_scanned, sc, &error);
    if (m->pending == NULL) {
        g_autofree gchar *text = g_strdup_printf("failure %s\n",
                                                 error->message);

        g_warning("module %s: scan: %s", m->name, error->message);
        g_free(sc);
        module_api_reply(m, tag, -EIO, text, strlen(text), -1);
        return TRUE;
    }
    g_message("module %s %s: scanning %s", m->name, m->version, image);
    m->api_extend_ms = (il.timeout_s == 0 ||
                        il.timeout_s > m->helper->scan_timeout_s ?
                        m->helper->scan_timeout_s : il.timeout_s) * 1000 +
                       20000;
    return TRUE;
}

/*
 * ---- image-quarantine ----
 *
 * Release (QEMU lets go of the image while its start is held), apply the
 * host owner's quarantine bundle, retake: in that order whatever
 * happens, so that the guest never runs on an image QEMU does not hold.
 * The job outlives a module that goes away meanwhile (it only stops
 * waiting): an apply is not killed half-way, and a device that still
 * holds released nodes takes them back itself before the guest runs.
 */
typedef struct {
    Module *m;                      /* NULL once it stopped waiting */
    guint64 tag;
    Helper *helper;
    gchar *image;
    gchar *bundle;
    gchar **paths;
    gchar *vm_name;
    gint result;
    GString *report;
    gchar *summary;
} ModuleApiQuarantine;

static void module_api_quarantine_free(ModuleApiQuarantine *q)
{
    g_free(q->image);
    g_free(q->bundle);
    g_strfreev(q->paths);
    g_free(q->vm_name);
    g_string_free(q->report, TRUE);
    g_free(q->summary);
    g_free(q);
}

static void module_api_quarantine_detach(Module *m)
{
    ModuleApiQuarantine *q = g_steal_pointer(&m->quarantine);

    if (q != NULL) {
        q->m = NULL;
    }
}

/* @why (may be NULL) as the report's one failure line. */
static void module_api_quarantine_fail(ModuleApiQuarantine *q, gint rc,
                                       const gchar *what, const gchar *why)
{
    g_autofree gchar *line = g_strdup_printf("%s%s%s", what,
                                             why != NULL ? ": " : "",
                                             why != NULL ? why : "");

    for (gchar *c = line; *c != '\0'; c++) {
        if ((guchar)*c < 0x20 || *c == 0x7f) {
            *c = '?';
        }
    }
    q->result = rc;
    g_string_printf(q->report, "failure %s\n", line);
    g_free(q->summary);
    q->summary = g_strdup_printf("failed: %s", line);
}

/* The end: the module (if it still waits) gets the answer, the host
 * owner the audit record. */
static void module_api_quarantine_end(ModuleApiQuarantine *q)
{
    Module *m = q->m;
    g_autoptr(GError) finding = NULL;

    g_message("vm %s: quarantine of %s: %s", q->vm_name, q->image,
              q->summary);
    if (m != NULL) {
        m->quarantine = NULL;
        /* Accepted when nothing was found; otherwise what moved or what
         * went wrong. */
        if (q->result != 0) {
            finding = g_error_new_literal(VMAUG_HOST_ERROR,
                                          VMAUG_HOST_ERROR_DENIED,
                                          q->summary);
        }
        vmaug_store_audit(m->store, m->vm_name, "image-quarantine", m->name,
                          m->version, NULL, NULL, finding);
        module_api_reply(m, q->tag, q->result, q->report->str,
                         MIN(q->report->len, VMAUG_MODULE_MAX_SCAN_REPORT),
                         -1);
    }
    module_api_quarantine_free(q);
}

static void module_api_quarantine_retaken(guint16 status, const gchar *why,
                                          gpointer data)
{
    ModuleApiQuarantine *q = data;

    if (status != VMAUG_S_OK) {
        /* The device refuses the start itself: nothing runs. */
        module_api_quarantine_fail(q, -EIO, "QEMU could not take the image "
                                   "back", why);
    }
    module_api_quarantine_end(q);
}

/* Retake, through a module that still has its VM; otherwise the device
 * takes the image back itself before the guest runs. */
static void module_api_quarantine_retake(ModuleApiQuarantine *q)
{
    if (q->m == NULL || q->m->owner == NULL) {
        module_api_quarantine_end(q);
        return;
    }
    q->m->ops->image_access(q->m->owner, VMAUG_IMAGE_RETAKE,
                            module_api_quarantine_retaken, q);
}

static void module_api_quarantine_applied(gint result, const gchar *report,
                                          gsize len, const gchar *summary,
                                          gpointer data)
{
    ModuleApiQuarantine *q = data;

    q->result = result;
    g_string_assign(q->report, "");
    g_string_append_len(q->report, report, len);
    g_free(q->summary);
    q->summary = g_strdup(summary);
    module_api_quarantine_retake(q);
}

static void module_api_quarantine_released(guint16 status, const gchar *why,
                                           gpointer data)
{
    ModuleApiQuarantine *q = data;
    g_autoptr(GError) error = NULL;

    if (status != VMAUG_S_OK) {
        module_api_quarantine_fail(q, status == VMAUG_S_BUSY ? -EBUSY : -EIO,
                                   "QEMU did not release the image", why);
        module_api_quarantine_end(q);
        return;
    }
    if (q->m == NULL) {
        /* Nobody waits: the image is not changed for nobody. */
        module_api_quarantine_retake(q);
        return;
    }
    if (image_scan_quarantine(q->helper, q->image, q->bundle,
                              (const gchar *const *)q->paths,
                              module_api_quarantine_applied, q,
                              &error) == NULL) {
        module_api_quarantine_fail(q, -EIO, "the quarantine did not start",
                                   error->message);
        module_api_quarantine_retake(q);
    }
}

/* The host owner's bundle: an absolute path of one line. */
static gchar *module_api_quarantine_bundle(Module *m, gint *rc)
{
    g_autoptr(GBytes) value = NULL;
    g_autoptr(GError) error = NULL;
    g_autofree gchar *path = NULL;

    /* The host owner's key only: a guest must not choose what is
     * applied to its image. */
    if (!vmaug_vm_area_config_get(m->area, m->name, VMAUG_CONFIG_HOST,
                                  "quarantine-bundle", &value, &error)) {
        *rc = -ENOENT;
        return NULL;
    }
    path = g_strndup(g_bytes_get_data(value, NULL), g_bytes_get_size(value));
    if (strlen(path) != g_bytes_get_size(value) ||
        !g_path_is_absolute(path) ||
        strlen(path) > VMAUG_MODULE_MAX_HOST_PATH ||
        !g_utf8_validate(path, -1, NULL) ||
        strpbrk(path, "\n\r\t") != NULL) {
        *rc = -EINVAL;
        return NULL;
    }
    return g_steal_pointer(&path);
}

static gboolean module_api_quarantine_image(Module *m, guint64 tag,
                                            const guint8 *args, gsize alen,
                                            const gchar **why)
{
    const gchar *image = vmaug_vm_area_get_image(m->area);
    ModuleApiQuarantine *q;
    g_autofree gchar *bundle = NULL;
    g_auto(GStrv) paths = NULL;
    gint rc = 0;

    if (image == NULL) {
        rc = -ENODEV;
    } else if (alen > VMAUG_MODULE_MAX_SCAN_PATHS ||
               (paths = image_scan_paths_split((const gchar *)args,
                                               alen)) == NULL) {
        /* The same guest paths a scan takes. */
        rc = -EINVAL;
    } else if ((bundle = module_api_quarantine_bundle(m, &rc)) == NULL) {
        const gchar *text = rc == -ENOENT ?
            "failure the host owner pinned no quarantine-bundle\n" :
            "failure quarantine-bundle is not an absolute path\n";

        module_api_reply(m, tag, rc, text, strlen(text), -1);
        return TRUE;
    } else if (m->owner == NULL) {
        rc = -EBUSY;
    }
    if (rc < 0) {
        module_api_reply(m, tag, rc, NULL, 0, -1);
        return TRUE;
    }
    m->budget[MODULE_BUDGET_QUARANTINES]--;
    q = g_new0(ModuleApiQuarantine, 1);
    q->m = m;
    q->tag = tag;
    q->helper = m->helper;
    q->image = g_strdup(image);
    q->bundle = g_steal_pointer(&bundle);
    q->paths = g_steal_pointer(&paths);
    q->vm_name = g_strdup(m->vm_name);
    q->report = g_string_new(NULL);
    q->summary = g_strdup("nothing done");
    m->quarantine = q;
    g_message("module %s %s: quarantine of %s with %s", m->name, m->version,
              image, q->bundle);
    /* The apply's own bound, and the releases around it. */
    m->api_extend_ms = m->helper->scan_timeout_s * 2 * 1000 + 30000;
    m->ops->image_access(m->owner, VMAUG_IMAGE_RELEASE,
                         module_api_quarantine_released, q);
    return TRUE;
}

/* ---- The table ---- */

typedef struct {
    guint32 op;
    /* Granted by manifest and policy, or EPERM; NULL: the handler
     * checks (the capability depends on the arguments). */
    const gchar *cap;
    /* Spent by each valid request, EAGAIN once spent. */
    ModuleBudget budget;
    /* Arguments shorter (or, with exact_len, other) than this are a
     * protocol error: the module is killed. */
    gsize min_len;
    gboolean exact_len;
    const gchar *bad_len_why;
    /*
     * A module finishing its stop handlers after its VM went away may
     * still use its own state and host reads; everything else belongs to
     * the VM.
     */
    gboolean without_vm;
    /* Replies (module_api_reply()); FALSE with *why: a protocol error. */
    gboolean (*handler)(Module *m, guint64 tag, const guint8 *args,
                        gsize alen, const gchar **why);
} ModuleApiOp;

static const ModuleApiOp module_api_ops[] = {
    { MODLINK_OP_CONFIG_GET, VMAUG_CAP_CONFIG, MODULE_BUDGET_NONE, 0, FALSE,
      NULL, FALSE, module_api_config_get },
    { MODLINK_OP_CONFIG_SET, VMAUG_CAP_CONFIG, MODULE_BUDGET_NONE, 0, FALSE,
      NULL, FALSE, module_api_config_set },
    { MODLINK_OP_STATE_OPEN, VMAUG_CAP_STATE, MODULE_BUDGET_NONE, 4, FALSE,
      "short state_open", TRUE, module_api_state_open },
    { MODLINK_OP_SPOOL, VMAUG_CAP_SPOOL, MODULE_BUDGET_SPOOL, 0, FALSE,
      NULL, FALSE, module_api_spool },
    { MODLINK_OP_POST_EVENT, VMAUG_CAP_EVENTS, MODULE_BUDGET_EVENTS, 0,
      FALSE, NULL, FALSE, module_api_post_event },
    { MODLINK_OP_POST_UI, VMAUG_CAP_UI, MODULE_BUDGET_UI, 0, FALSE,
      NULL, FALSE, module_api_post_ui },
    { MODLINK_OP_RESTART, NULL, MODULE_BUDGET_NONE, 4, TRUE,
      "bad restart request", FALSE, module_api_restart },
    { MODLINK_OP_INSTALL, VMAUG_CAP_MODULES, MODULE_BUDGET_NONE, 0, FALSE,
      NULL, FALSE, module_api_install },
    { MODLINK_OP_HOST_OPEN, VMAUG_CAP_HOST_READ, MODULE_BUDGET_NONE, 0,
      FALSE, NULL, TRUE, module_api_host_open },
    { MODLINK_OP_SCAN_IMAGE, VMAUG_CAP_IMAGE_SCAN, MODULE_BUDGET_SCANS,
      sizeof(struct vmaug_scan_limits), FALSE, "short scan_image", FALSE,
      module_api_scan_image },
    { MODLINK_OP_SET_REASON, NULL, MODULE_BUDGET_NONE, 0, FALSE, NULL, TRUE,
      module_api_set_reason },
    { MODLINK_OP_QUARANTINE_IMAGE, VMAUG_CAP_IMAGE_QUARANTINE,
      MODULE_BUDGET_QUARANTINES, 0, FALSE, NULL, FALSE,
      module_api_quarantine_image },
};

gboolean module_api_request(Module *m, guint64 tag, const guint8 *data,
                            guint32 len, const gchar **why)
{
    const ModuleApiOp *e = NULL;
    const guint8 *args = data + 4;
    gsize alen = len - 4;
    guint32 op;

    if (len < 4) {
        *why = "short API request";
        return FALSE;
    }
    memcpy(&op, data, 4);
    op = GUINT32_FROM_LE(op);
    for (guint i = 0; i < G_N_ELEMENTS(module_api_ops); i++) {
        if (module_api_ops[i].op == op) {
            e = &module_api_ops[i];
        }
    }
    if (m->owner == NULL && (e == NULL || !e->without_vm)) {
        module_api_reply(m, tag, -EIO, NULL, 0, -1);
        return TRUE;
    }
    if (e == NULL) {
        *why = "unknown API operation";
        return FALSE;
    }
    if (alen < e->min_len || (e->exact_len && alen != e->min_len)) {
        *why = e->bad_len_why;
        return FALSE;
    }
    if (e->cap != NULL && !module_api_has_cap(m, e->cap)) {
        module_api_reply(m, tag, -EPERM, NULL, 0, -1);
        return TRUE;
    }
    if (e->budget != MODULE_BUDGET_NONE && m->budget[e->budget] == 0) {
        module_api_reply(m, tag, -EAGAIN, NULL, 0, -1);
        return TRUE;
    }

    return e->handler(m, tag, args, alen, why);
}
