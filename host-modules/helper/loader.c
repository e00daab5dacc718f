/*
 * vmaugment-helper: module processes and the host API they reach through
 * their link.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "helper.h"
#include "modlink.h"

/* Grace a module gets to run its fini before SIGKILL. */
#define MODULE_STOP_GRACE_MS    500

/*
 * What one init, call or event may ask of the host: a module must not be
 * able to flood its VM's event queue (and get the VM disconnected for not
 * reading), the host's log, or the spool.
 */
#define MODULE_BUDGET_EVENTS    64
#define MODULE_BUDGET_LOGS      256
#define MODULE_BUDGET_SPOOL     16
#define MODULE_BUDGET_UI        16

static void module_drain_check(Module *m);

static void module_refill_budget(Module *m)
{
    /* It may have written to its state files since we last looked. */
    vmaug_vm_area_state_stale(m->area);
    m->budget_events = MODULE_BUDGET_EVENTS;
    m->budget_logs = MODULE_BUDGET_LOGS;
    m->budget_spool = MODULE_BUDGET_SPOOL;
    m->budget_ui = MODULE_BUDGET_UI;
}

typedef struct {
    guint64 id;                     /* tag on the module link */
    guint64 tag;                    /* device tag; 0 for events */
    guint16 type;                   /* MODLINK_CALL or MODLINK_EVENT */
    GBytes *payload;
    ModuleDoneFunc done;            /* told how an event ended, or NULL */
    gpointer done_data;
} ModuleCall;

typedef struct {
    ModuleDoneFunc func;
    gpointer data;
} ModuleLoadCallback;

/* Tell whoever waits for @c how it ended; exactly once. */
static void module_call_done(Module *m, ModuleCall *c, guint16 status,
                             const gchar *why)
{
    ModuleDoneFunc done = c->done;

    c->done = NULL;
    if (done != NULL) {
        done(m, status, why, c->done_data);
    }
}

static void module_call_free(ModuleCall *c)
{
    g_bytes_unref(c->payload);
    g_free(c);
}

void module_ref_fill(const Module *m, struct vmaug_module_ref *ref)
{
    memset(ref, 0, sizeof(*ref));
    g_strlcpy((gchar *)ref->name, m->name, sizeof(ref->name));
    g_strlcpy((gchar *)ref->version, m->version, sizeof(ref->version));
}

static void module_fail_calls(Module *m, guint16 status, const gchar *why);
static void module_fail_waiters(Module *m, guint16 status, const gchar *why);

static void module_free(Module *m)
{
    /* Nobody may be left waiting on a module that is gone. */
    module_fail_waiters(m, VMAUG_S_INTERRUPTED, "module unloaded");
    module_fail_calls(m, VMAUG_S_INTERRUPTED, "module unloaded");
    if (m->child_watch != 0) {
        g_source_remove(m->child_watch);
    }
    if (m->timer != 0) {
        g_source_remove(m->timer);
    }
    if (m->drain_timer != 0) {
        g_source_remove(m->drain_timer);
    }
    vmaug_link_free(m->link);
    g_queue_clear_full(&m->calls, (GDestroyNotify)module_call_free);
    g_array_unref(m->load_waiters);
    g_array_unref(m->load_callbacks);
    vmaug_manifest_free(m->manifest);
    if (m->state_dirfd >= 0) {
        close(m->state_dirfd);
    }
    vmaug_vm_area_unref(m->area);
    g_free(m->name);
    g_free(m->version);
    g_free(m);
}

static gboolean module_has_cap(Module *m, const gchar *cap)
{
    /* A capability counts only if the signed manifest asks for it and
     * the host owner grants it. */
    return (g_strcmp0(cap, VMAUG_CAP_LOG) == 0 ||
            vmaug_manifest_has_capability(m->manifest, cap)) &&
           vmaug_policy_grants(m->helper->policy, m->name, cap);
}

static void module_kill(Module *m)
{
    if (m->pid > 0) {
        kill(m->pid, SIGKILL);
    }
}

/* Tell the load callbacks the outcome (they may be added again from
 * inside one, so the array is swapped out first). */
static void module_run_load_callbacks(Module *m, guint16 status,
                                      const gchar *why)
{
    g_autoptr(GArray) cbs = m->load_callbacks;

    m->load_callbacks = g_array_new(FALSE, FALSE,
                                    sizeof(ModuleLoadCallback));
    for (guint i = 0; i < cbs->len; i++) {
        ModuleLoadCallback *cb = &g_array_index(cbs, ModuleLoadCallback, i);

        cb->func(m, status, why, cb->data);
    }
}

static void module_fail_waiters(Module *m, guint16 status, const gchar *why)
{
    for (guint i = 0; m->dev != NULL && i < m->load_waiters->len; i++) {
        device_reply(m->dev, g_array_index(m->load_waiters, guint64, i),
                     status, why, strlen(why));
    }
    g_array_set_size(m->load_waiters, 0);
    module_run_load_callbacks(m, status, why);
}

static void module_fail_calls(Module *m, guint16 status, const gchar *why)
{
    ModuleCall *c;

    /* The call in flight when a module hangs is the one that timed out. */
    if (m->in_flight && m->timed_out &&
        (c = g_queue_pop_head(&m->calls)) != NULL) {
        if (c->tag != 0 && m->dev != NULL) {
            device_reply(m->dev, c->tag, VMAUG_S_TIMEOUT, "module timed out",
                         strlen("module timed out"));
        }
        module_call_done(m, c, VMAUG_S_TIMEOUT, "no answer in time");
        module_call_free(c);
    }
    m->in_flight = FALSE;
    while ((c = g_queue_pop_head(&m->calls)) != NULL) {
        if (c->tag != 0 && m->dev != NULL) {
            device_reply(m->dev, c->tag, status, why, strlen(why));
        }
        module_call_done(m, c, status, why);
        module_call_free(c);
    }
}

static gboolean module_on_timeout(gpointer data)
{
    Module *m = data;

    m->timer = 0;
    if (!m->stopping) {
        g_message("module %s: no answer in %u ms; killing it", m->name,
                  m->helper->call_timeout_ms);
        m->timed_out = TRUE;
    }
    module_kill(m);
    return G_SOURCE_REMOVE;
}

static void module_arm_timer(Module *m, guint ms)
{
    if (m->timer != 0) {
        g_source_remove(m->timer);
    }
    m->timer = g_timeout_add(ms, module_on_timeout, m);
}

static void module_disarm_timer(Module *m)
{
    if (m->timer != 0) {
        g_source_remove(m->timer);
        m->timer = 0;
    }
}

/* Send the next queued call if none is in flight. */
static void module_pump(Module *m)
{
    ModuleCall *c;

    if (m->in_flight || m->stopping) {
        return;
    }
    if (m->state != VMAUG_MODULE_LOADED ||
        (c = g_queue_peek_head(&m->calls)) == NULL) {
        module_drain_check(m);
        return;
    }
    m->in_flight = TRUE;
    module_refill_budget(m);
    vmaug_link_send(m->link, c->type, c->id, g_bytes_get_data(c->payload,
                                                               NULL),
                    g_bytes_get_size(c->payload), NULL, 0, -1);
    module_arm_timer(m, m->helper->call_timeout_ms);
}

static void module_on_exit(GPid pid, gint status, gpointer data)
{
    Module *m = data;
    g_autofree gchar *how = NULL;

    m->child_watch = 0;
    g_spawn_close_pid(pid);
    m->pid = 0;
    module_disarm_timer(m);
    if (WIFSIGNALED(status)) {
        how = g_strdup_printf("killed by signal %d%s", WTERMSIG(status),
                              WTERMSIG(status) == SIGSYS ?
                              " (forbidden system call)" : "");
    } else {
        how = g_strdup_printf("exited with status %d", WEXITSTATUS(status));
    }
    if (m->stopping) {
        g_debug("module %s %s stopped: %s", m->name, m->version, how);
        module_fail_calls(m, VMAUG_S_INTERRUPTED, "module unloaded");
        module_free(m);
        return;
    }
    g_message("module %s %s %s", m->name, m->version, how);
    m->state = VMAUG_MODULE_CRASHED;
    m->draining = FALSE;
    vmaug_link_close(m->link, "module process ended");
    module_fail_waiters(m, VMAUG_S_MODULE_FAILED, how);
    module_fail_calls(m, VMAUG_S_MODULE_FAILED, how);
    if (m->dev != NULL) {
        struct vmaug_module_ref ref;

        module_ref_fill(m, &ref);
        device_event(m->dev, VMAUG_EVENT_MODULE_CRASHED, &ref, sizeof(ref),
                     NULL, 0);
    } else {
        module_free(m);
    }
}

/* ---- Host API broker ---- */

static void module_api_reply(Module *m, guint64 tag, gint32 rc,
                             const void *data, gsize len, int fd)
{
    guint32 le = GUINT32_TO_LE((guint32)rc);

    vmaug_link_send(m->link, MODLINK_REPLY, tag, &le, 4, data, len, fd);
}

/* A path below the state directory: relative, no "." or ".." parts. */
static gboolean module_path_ok(const gchar *path)
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
static int module_errno(const GError *error)
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
static int module_checked_fd(int fd, gboolean dir_ok)
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

static int module_state_open(Module *m, guint32 flags, const gchar *path)
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

    if ((flags & ~allowed) != 0 || !module_path_ok(path)) {
        return -EINVAL;
    }
    creates = (flags & O_CREAT) && faccessat(m->state_dirfd, path, F_OK,
                                             AT_SYMLINK_NOFOLLOW) < 0;
    /* RLIMIT_FSIZE bounds each file; the VM's quota all of them, and the
     * area how many there are. */
    if (writes && !vmaug_vm_area_state_admit(m->area, m->name, creates,
                                             &error)) {
        g_debug("module %s: state %s: %s", m->name, path, error->message);
        return module_errno(error);
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
    fd = module_checked_fd(fd < 0 ? -errno : fd, FALSE);
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
static int module_open_beneath(int rootfd, const gchar *rel)
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
    return module_checked_fd(fd, TRUE);
}

/* Read-only access below the roots the policy grants this module. */
static int module_host_open(Module *m, const gchar *path)
{
    GStrv roots = g_hash_table_lookup(m->helper->policy->read_roots,
                                      m->name);

    if (*path != '/' || strlen(path) > VMAUG_MODULE_MAX_HOST_PATH ||
        !g_utf8_validate(path, -1, NULL) || !module_path_ok(path + 1)) {
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
        fd = module_open_beneath(rootfd, rel);
        close(rootfd);
        return fd;
    }
    return -EACCES;
}

static gint32 module_spool(Module *m, const gchar *title, const guint8 *data,
                           gsize len, gchar **job_out)
{
    Helper *h = m->helper;
    g_autoptr(GError) error = NULL;
    g_autoptr(GDateTime) now = g_date_time_new_now_utc();
    g_autofree gchar *job = g_strdup_printf("%" G_GINT64_FORMAT "-%d-%"
                                            G_GUINT64_FORMAT,
                                            g_get_real_time() / 1000,
                                            (int)getpid(), ++h->jobs);
    g_autofree gchar *dir = NULL;
    g_autofree gchar *doc = NULL;
    g_autofree gchar *meta = NULL;
    g_autofree gchar *ts = g_date_time_format_iso8601(now);
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(JsonNode) root = NULL;
    g_autofree gchar *json = NULL;
    g_autofree gchar *safe_title = g_utf8_make_valid(title, -1);

    /* The description is small; the document counts against the VM's
     * spool quota before a byte of it is written. */
    if (!vmaug_vm_area_spool_admit(m->area, len, &error)) {
        g_message("module %s: spool: %s", m->name, error->message);
        return -EDQUOT;
    }
    dir = vmaug_vm_area_subdir(m->area, "spool", &error);
    if (dir == NULL) {
        g_warning("spool: %s", error->message);
        return -EIO;
    }
    doc = g_strconcat(dir, "/", job, ".data", NULL);
    meta = g_strconcat(dir, "/", job, ".json", NULL);
    /* The document first, its description last: a spool reader that sees
     * the .json finds the whole document. */
    if (!g_file_set_contents_full(doc, (const gchar *)data, len,
                                  G_FILE_SET_CONTENTS_CONSISTENT, 0640,
                                  &error)) {
        g_warning("spool: %s", error->message);
        return -EIO;
    }
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "job");
    json_builder_add_string_value(b, job);
    json_builder_set_member_name(b, "title");
    json_builder_add_string_value(b, safe_title);
    json_builder_set_member_name(b, "module");
    json_builder_add_string_value(b, m->name);
    json_builder_set_member_name(b, "image");
    json_builder_add_string_value(b, m->dev->name);
    json_builder_set_member_name(b, "vm");
    json_builder_add_string_value(b, vmaug_vm_area_get_id(m->area));
    json_builder_set_member_name(b, "size");
    json_builder_add_int_value(b, (gint64)len);
    json_builder_set_member_name(b, "time");
    json_builder_add_string_value(b, ts);
    json_builder_end_object(b);
    root = json_builder_get_root(b);
    json_generator_set_root(gen, root);
    json = json_generator_to_data(gen, NULL);
    if (!g_file_set_contents_full(meta, json, -1,
                                  G_FILE_SET_CONTENTS_CONSISTENT, 0640,
                                  &error)) {
        g_warning("spool: %s", error->message);
        return -EIO;
    }
    vmaug_vm_area_spool_added(m->area, len + strlen(json));
    if (h->cups_queue != NULL) {
        /* lp gets the document as an argument, never through a shell. */
        const gchar *argv[] = { "lp", "-d", h->cups_queue, "-t", safe_title,
                                "--", doc, NULL };

        if (!g_spawn_async(NULL, (gchar **)argv, NULL,
                           G_SPAWN_SEARCH_PATH |
                           G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL, NULL,
                           &error)) {
            g_warning("spool: lp: %s", error->message);
        }
    }
    g_message("module %s spooled job %s (%" G_GSIZE_FORMAT " bytes)",
              m->name, job, len);
    *job_out = g_steal_pointer(&job);
    return 0;
}

/* Elements one module may show at once. */
#define MODULE_MAX_UI_ELEMENTS  32

static gint32 module_post_ui(Module *m, const gchar *json, gsize len)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(JsonParser) old = json_parser_new();
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(JsonNode) all = NULL;
    g_autofree gchar *dir = g_build_filename(vmaug_vm_area_get_dir(m->area),
                                             "ui", NULL);
    g_autofree gchar *name = g_strconcat(m->name, ".json", NULL);
    g_autofree gchar *path = g_build_filename(dir, name, NULL);
    g_autofree gchar *out = NULL;
    g_autoptr(GError) error = NULL;
    JsonNode *root, *id;
    JsonObject *elements;

    /* Hostile JSON: no NUL, bounded, an object at the root with a string
     * "id" naming the element it adds or replaces. */
    if (len == 0 || memchr(json, 0, len) != NULL ||
        !json_parser_load_from_data(parser, json, len, NULL)) {
        return -EINVAL;
    }
    root = json_parser_get_root(parser);
    if (root == NULL || !JSON_NODE_HOLDS_OBJECT(root) ||
        (id = json_object_get_member(json_node_get_object(root),
                                     "id")) == NULL ||
        !JSON_NODE_HOLDS_VALUE(id) ||
        json_node_get_value_type(id) != G_TYPE_STRING ||
        strlen(json_node_get_string(id)) == 0 ||
        strlen(json_node_get_string(id)) > 64) {
        return -EINVAL;
    }
    g_clear_pointer(&dir, g_free);
    dir = vmaug_vm_area_subdir(m->area, "ui", &error);
    if (dir == NULL) {
        g_warning("ui: %s", error->message);
        return -EIO;
    }
    /* The admin interface reads every module's current elements here. */
    if (json_parser_load_from_file(old, path, NULL) &&
        json_parser_get_root(old) != NULL &&
        JSON_NODE_HOLDS_OBJECT(json_parser_get_root(old))) {
        all = json_node_copy(json_parser_get_root(old));
    } else {
        all = json_node_new(JSON_NODE_OBJECT);
        json_node_take_object(all, json_object_new());
    }
    elements = json_node_get_object(all);
    if (!json_object_has_member(elements, json_node_get_string(id)) &&
        json_object_get_size(elements) >= MODULE_MAX_UI_ELEMENTS) {
        return -ENOSPC;
    }
    json_object_set_member(elements, json_node_get_string(id),
                           json_node_copy(root));
    json_generator_set_root(gen, all);
    json_generator_set_pretty(gen, TRUE);
    out = json_generator_to_data(gen, NULL);
    if (!vmaug_store_write_file(path, out, strlen(out), &error)) {
        return -EIO;
    }
    g_message("module %s shows UI element %s", m->name,
              json_node_get_string(id));
    return 0;
}

static gboolean module_on_api(Module *m, guint64 tag, const guint8 *data,
                              guint32 len, const gchar **why)
{
    g_autoptr(GError) error = NULL;
    const guint8 *args = data + 4;
    gsize alen = len - 4;
    guint32 op;
    const guint8 *nul;

    if (len < 4) {
        *why = "short API request";
        return FALSE;
    }
    memcpy(&op, data, 4);
    op = GUINT32_FROM_LE(op);
    /*
     * A module finishing its stop handlers after its VM went away may
     * still use its own state and host reads; everything else belongs to
     * the device.
     */
    if (m->dev == NULL && op != MODLINK_OP_STATE_OPEN &&
        op != MODLINK_OP_HOST_OPEN) {
        module_api_reply(m, tag, -EIO, NULL, 0, -1);
        return TRUE;
    }
    switch (op) {
    case MODLINK_OP_CONFIG_GET: {
        g_autofree gchar *key = g_strndup((const gchar *)args, alen);
        g_autoptr(GBytes) value = NULL;
        gboolean guest = g_str_has_prefix(key, VMAUG_VM_GUEST_PREFIX);

        /* Its own keys, or what the guest set under "guest.". */
        if (!module_has_cap(m, VMAUG_CAP_CONFIG)) {
            module_api_reply(m, tag, -EPERM, NULL, 0, -1);
        } else if (strlen(key) != alen ||
                   !vmaug_vm_area_config_get(
                       m->area, m->name,
                       guest ? VMAUG_CONFIG_GUEST : VMAUG_CONFIG_MODULE,
                       guest ? key + strlen(VMAUG_VM_GUEST_PREFIX) : key,
                       &value, &error)) {
            module_api_reply(m, tag, error != NULL ? module_errno(error) :
                             -EINVAL, NULL, 0, -1);
        } else {
            module_api_reply(m, tag, 0, g_bytes_get_data(value, NULL),
                             g_bytes_get_size(value), -1);
        }
        return TRUE;
    }
    case MODLINK_OP_CONFIG_SET:
        nul = memchr(args, 0, alen);
        if (!module_has_cap(m, VMAUG_CAP_CONFIG)) {
            module_api_reply(m, tag, -EPERM, NULL, 0, -1);
        } else if (nul == NULL ||
                   g_str_has_prefix((const gchar *)args,
                                    VMAUG_VM_GUEST_PREFIX)) {
            /* The guest's namespace is the guest's to write. */
            module_api_reply(m, tag, -EINVAL, NULL, 0, -1);
        } else if (!vmaug_vm_area_config_set(m->area, m->name,
                                             VMAUG_CONFIG_MODULE,
                                             (const gchar *)args, nul + 1,
                                             alen - (nul + 1 - args),
                                             &error)) {
            module_api_reply(m, tag, module_errno(error), NULL, 0, -1);
        } else {
            module_api_reply(m, tag, 0, NULL, 0, -1);
        }
        return TRUE;
    case MODLINK_OP_STATE_OPEN: {
        guint32 flags;
        g_autofree gchar *path = NULL;
        int fd;

        if (alen < 4) {
            *why = "short state_open";
            return FALSE;
        }
        memcpy(&flags, args, 4);
        path = g_strndup((const gchar *)args + 4, alen - 4);
        if (!module_has_cap(m, VMAUG_CAP_STATE)) {
            fd = -EPERM;
        } else if (strlen(path) != alen - 4) {
            fd = -EINVAL;
        } else {
            fd = module_state_open(m, GUINT32_FROM_LE(flags), path);
        }
        module_api_reply(m, tag, fd < 0 ? fd : 0, NULL, 0, fd < 0 ? -1 : fd);
        return TRUE;
    }
    case MODLINK_OP_SPOOL: {
        g_autofree gchar *job = NULL;
        gint32 rc;

        nul = memchr(args, 0, MIN(alen, 256));
        if (!module_has_cap(m, VMAUG_CAP_SPOOL)) {
            rc = -EPERM;
        } else if (m->budget_spool == 0) {
            rc = -EAGAIN;
        } else if (nul == NULL || nul + 1 == args + alen ||
                   !g_utf8_validate((const gchar *)args, nul - args, NULL)) {
            rc = -EINVAL;
        } else {
            m->budget_spool--;
            rc = module_spool(m, (const gchar *)args, nul + 1,
                              alen - (nul + 1 - args), &job);
        }
        module_api_reply(m, tag, rc, job, job != NULL ? strlen(job) : 0, -1);
        return TRUE;
    }
    case MODLINK_OP_POST_EVENT: {
        struct vmaug_module_ref ref;

        if (!module_has_cap(m, VMAUG_CAP_EVENTS)) {
            module_api_reply(m, tag, -EPERM, NULL, 0, -1);
        } else if (m->budget_events == 0) {
            module_api_reply(m, tag, -EAGAIN, NULL, 0, -1);
        } else if (alen + sizeof(ref) > VMAUG_MAX_EVENT_PAYLOAD) {
            module_api_reply(m, tag, -EINVAL, NULL, 0, -1);
        } else {
            m->budget_events--;
            module_ref_fill(m, &ref);
            device_event(m->dev, VMAUG_EVENT_MODULE_MESSAGE, &ref,
                         sizeof(ref), args, alen);
            module_api_reply(m, tag, 0, NULL, 0, -1);
        }
        return TRUE;
    }
    case MODLINK_OP_POST_UI: {
        gint32 rc;

        if (!module_has_cap(m, VMAUG_CAP_UI)) {
            rc = -EPERM;
        } else if (m->budget_ui == 0) {
            rc = -EAGAIN;
        } else if (alen > VMAUG_MODULE_MAX_UI) {
            rc = -EINVAL;
        } else {
            m->budget_ui--;
            rc = module_post_ui(m, (const gchar *)args, alen);
        }
        module_api_reply(m, tag, rc, NULL, 0, -1);
        return TRUE;
    }
    case MODLINK_OP_RESTART: {
        guint32 what = 0;
        struct vmaug_restart restart;
        const gchar *cap;

        if (alen != 4) {
            *why = "bad restart request";
            return FALSE;
        }
        memcpy(&what, args, 4);
        what = GUINT32_FROM_LE(what);
        cap = what == VMAUG_RESTART_IMAGE ? VMAUG_CAP_RESTART_IMAGE :
              what == VMAUG_RESTART_HOST ? VMAUG_CAP_RESTART_HOST : NULL;
        if (cap == NULL || !module_has_cap(m, cap)) {
            module_api_reply(m, tag, cap == NULL ? -EINVAL : -EPERM, NULL, 0,
                             -1);
            return TRUE;
        }
        g_message("module %s requests a restart of the %s", m->name,
                  what == VMAUG_RESTART_IMAGE ? "image" :
                  "host application");
        memset(&restart, 0, sizeof(restart));
        module_ref_fill(m, &restart.ref);
        restart.what = GUINT32_TO_LE(what);
        device_event(m->dev, VMAUG_EVENT_RESTART_REQUESTED, &restart,
                     sizeof(restart), NULL, 0);
        module_api_reply(m, tag, 0, NULL, 0, -1);
        return TRUE;
    }
    case MODLINK_OP_HOST_OPEN: {
        g_autofree gchar *path = g_strndup((const gchar *)args, alen);
        int fd;

        if (!module_has_cap(m, VMAUG_CAP_HOST_READ)) {
            fd = -EPERM;
        } else if (strlen(path) != alen) {
            fd = -EINVAL;
        } else {
            fd = module_host_open(m, path);
        }
        module_api_reply(m, tag, fd < 0 ? fd : 0, NULL, 0, fd < 0 ? -1 : fd);
        return TRUE;
    }
    case MODLINK_OP_INSTALL: {
        g_autoptr(GBytes) pkg = g_bytes_new(args, alen);
        g_autoptr(VmaugManifest) installed = NULL;
        g_autofree gchar *actor = g_strconcat("module:", m->name, NULL);

        if (!module_has_cap(m, VMAUG_CAP_MODULES)) {
            module_api_reply(m, tag, -EPERM, NULL, 0, -1);
            return TRUE;
        }
        /* Exactly the checks of a guest upload, signature first. */
        installed = vmaug_store_install(m->dev->store, pkg, actor, &error);
        module_api_reply(m, tag, installed != NULL ? 0 :
                         error->code == VMAUG_HOST_ERROR_EXISTS ? -EEXIST :
                         -EACCES, NULL, 0, -1);
        return TRUE;
    }
    default:
        *why = "unknown API operation";
        return FALSE;
    }
}

static gboolean module_on_message(VmaugLink *link, guint16 type, guint64 tag,
                                  const guint8 *data, guint32 len,
                                  gpointer user_data, const gchar **why)
{
    Module *m = user_data;

    switch (type) {
    case MODLINK_READY: {
        gint32 rc;

        if (m->state != 0 || len != 4) {
            *why = "unexpected READY";
            return FALSE;
        }
        memcpy(&rc, data, 4);
        rc = (gint32)GUINT32_FROM_LE((guint32)rc);
        module_disarm_timer(m);
        if (rc != 0) {
            g_autofree gchar *msg = g_strdup_printf("module init failed: %d",
                                                    rc);

            g_message("module %s: %s", m->name, msg);
            m->state = VMAUG_MODULE_CRASHED;
            module_fail_waiters(m, VMAUG_S_MODULE_FAILED, msg);
            module_kill(m);
            return TRUE;
        }
        m->state = VMAUG_MODULE_LOADED;
        g_info("module %s %s loaded in %.3f ms", m->name, m->version,
               (g_get_monotonic_time() - m->started_us) / 1000.0);
        if (m->dev != NULL) {
            struct vmaug_module_info info;
            struct vmaug_module_ref ref;

            device_fill_info(m->dev, &info, m->name, m->version, m->manifest);
            for (guint i = 0; i < m->load_waiters->len; i++) {
                device_reply(m->dev,
                             g_array_index(m->load_waiters, guint64, i),
                             VMAUG_S_OK, &info, sizeof(info));
            }
            g_array_set_size(m->load_waiters, 0);
            module_ref_fill(m, &ref);
            device_event(m->dev, VMAUG_EVENT_MODULE_LOADED, &ref, sizeof(ref),
                         NULL, 0);
        }
        module_run_load_callbacks(m, VMAUG_S_OK, NULL);
        module_pump(m);
        return TRUE;
    }
    case MODLINK_RESULT: {
        ModuleCall *c = g_queue_peek_head(&m->calls);
        guint32 status;

        if (!m->in_flight || c == NULL || c->id != tag || len < 4) {
            *why = "unexpected RESULT";
            return FALSE;
        }
        memcpy(&status, data, 4);
        status = GUINT32_FROM_LE(status);
        module_disarm_timer(m);
        g_queue_pop_head(&m->calls);
        m->in_flight = FALSE;
        /* A module's status is a number it chose (an event handler's is a
         * negative errno on failure): clamp it. */
        if (status > VMAUG_S_MAX) {
            status = VMAUG_S_MODULE_FAILED;
        }
        if (c->tag != 0 && m->dev != NULL) {
            device_reply(m->dev, c->tag, (guint16)status, data + 4, len - 4);
        }
        module_call_done(m, c, (guint16)status, status == VMAUG_S_OK ? NULL :
                         "the handler reported a failure");
        module_call_free(c);
        module_pump(m);
        return TRUE;
    }
    case MODLINK_API:
        /* Only while it serves us: init, a call or an event. */
        if (!(m->state == 0 || m->in_flight)) {
            *why = "unsolicited API request";
            return FALSE;
        }
        return module_on_api(m, tag, data, len, why);
    case MODLINK_LOG: {
        g_autofree gchar *text = NULL;
        guint32 level;

        if (len < 4) {
            *why = "short LOG";
            return FALSE;
        }
        memcpy(&level, data, 4);
        if (m->budget_logs == 0) {
            return TRUE;    /* dropped: a module cannot flood our log */
        }
        m->budget_logs--;
        text = g_utf8_make_valid((const gchar *)data + 4,
                                 MIN(len - 4, VMAUG_MODULE_MAX_LOG));
        g_strcanon(text, "\t !\"#$%&'()*+,-./0123456789:;<=>?@"
                   "ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`"
                   "abcdefghijklmnopqrstuvwxyz{|}~", '?');
        if (GUINT32_FROM_LE(level) <= VMAUG_LOG_WARNING) {
            g_message("module %s: %s", m->name, text);
        } else {
            g_debug("module %s: %s", m->name, text);
        }
        return TRUE;
    }
    default:
        *why = "unknown message type";
        return FALSE;
    }
}

static void module_on_link_closed(VmaugLink *link, const gchar *why,
                                  gpointer user_data)
{
    Module *m = user_data;

    /* Whatever closed the link (garbage, a crash), the process goes. */
    if (m->pid > 0) {
        if (!m->stopping) {
            g_message("module %s: link closed (%s); killing it", m->name,
                      why);
        }
        module_kill(m);
    }
}

static int module_payload_memfd(Module *m, GBytes *payload, GError **error)
{
    gsize len;
    const guint8 *p = g_bytes_get_data(payload, &len);
    gsize done = 0;
    int fd = memfd_create(m->name, MFD_CLOEXEC | MFD_ALLOW_SEALING);

    if (fd < 0) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_IO,
                    "memfd_create: %s", g_strerror(errno));
        return -1;
    }
    while (done < len) {
        ssize_t n = write(fd, p + done, len - done);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            close(fd);
            g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_IO,
                        "memfd write: %s", g_strerror(errno));
            return -1;
        }
        done += n;
    }
    /* From here the verified bytes can change for nobody, us included. */
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE |
              F_SEAL_SEAL) < 0) {
        close(fd);
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_IO,
                    "memfd seal: %s", g_strerror(errno));
        return -1;
    }
    return fd;
}

/*
 * Start vmaugment-module-host in its sandbox (sandbox.h), with its link
 * socket at MODLINK_FD_SOCKET and nothing else of ours.  Returns our end
 * of the link.
 */
static int loader_spawn_host(Helper *h, GPid *pid, GError **error)
{
    g_autofree gchar *mem = g_strdup_printf("%" G_GUINT64_FORMAT,
                                            h->limits.memory_bytes);
    g_autofree gchar *cpu = g_strdup_printf("%" G_GUINT64_FORMAT,
                                            h->limits.cpu_seconds);
    g_autofree gchar *files = g_strdup_printf("%" G_GUINT64_FORMAT,
                                              h->limits.max_files);
    g_autofree gchar *fsize = g_strdup_printf("%" G_GUINT64_FORMAT,
                                              h->limits.max_file_bytes);
    char *argv[] = { h->module_host, mem, cpu, files, fsize, NULL };
    SandboxSpawn sp = {
        .host = &h->sandbox,
        .pieces = h->sandbox_pieces,
        .argv = argv,
        .n_fds = 1,
        /* A module could fill our log through its stderr: only when
         * asked. */
        .stderr_fd = h->module_stderr ? STDERR_FILENO : -1,
    };
    int sv[2];
    pid_t child;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_IO,
                    "socketpair: %s", g_strerror(errno));
        return -1;
    }
    sp.fds = &sv[1];
    sp.exe_fd = open(h->module_host, O_PATH | O_CLOEXEC);
    child = sp.exe_fd < 0 ? -errno : sandbox_spawn(&sp);
    if (sp.exe_fd >= 0) {
        close(sp.exe_fd);
    }
    close(sv[1]);
    if (child < 0) {
        close(sv[0]);
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_IO,
                    "cannot start %s: %s", h->module_host,
                    g_strerror(-child));
        return -1;
    }
    *pid = child;
    return sv[0];
}

/* Modules run only as confined as the host owner accepted. */
static gboolean loader_sandbox_accepted(Helper *h, GError **error)
{
    if ((h->sandbox_pieces & SANDBOX_ALL) == SANDBOX_ALL ||
        h->sandbox_weaker_ok) {
        return TRUE;
    }
    g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_DENIED,
                "this host cannot confine modules fully and the host owner "
                "did not accept a weaker sandbox");
    return FALSE;
}

/* ---- Spare module processes ----
 *
 * Starting a process, linking it, creating its namespaces and confining
 * it is most of a cold load.  Every module process starts as a spare:
 * confined, knowing nothing yet; a load hands one the verified payload
 * over its socket.  Spares are kept ready: one at first; an image start
 * that loads more modules at once raises that to as many, within
 * --spare-processes, so that its next start finds them ready.
 */

static void loader_spare_free(SpareProcess *sp)
{
    if (sp->watch != 0) {
        g_source_remove(sp->watch);
    }
    g_free(sp);
}

static void loader_spare_on_exit(GPid pid, gint status, gpointer data)
{
    SpareProcess *sp = data;
    Helper *h = sp->helper;

    /* Died unused: started again only when one is needed. */
    g_spawn_close_pid(pid);
    close(sp->fd);
    sp->watch = 0;
    g_queue_remove(&h->spares, sp);
    loader_spare_free(sp);
    g_message("spare module process ended unused (status 0x%x)", status);
}

static gboolean loader_spare_spawn(Helper *h, GError **error)
{
    SpareProcess *sp;

    if (!loader_sandbox_accepted(h, error)) {
        return FALSE;
    }
    sp = g_new0(SpareProcess, 1);
    sp->helper = h;
    sp->fd = loader_spawn_host(h, &sp->pid, error);
    if (sp->fd < 0) {
        g_free(sp);
        return FALSE;
    }
    sp->watch = g_child_watch_add(sp->pid, loader_spare_on_exit, sp);
    g_queue_push_tail(&h->spares, sp);
    return TRUE;
}

/* One spare per idle turn, so that a burst of requests goes first. */
static gboolean loader_spare_on_idle(gpointer data)
{
    Helper *h = data;
    g_autoptr(GError) error = NULL;

    if (h->spares.length >= h->spares_wanted) {
        h->spare_idle = 0;
        return G_SOURCE_REMOVE;
    }
    if (!loader_spare_spawn(h, &error)) {
        g_warning("cannot start a spare module process: %s", error->message);
        h->spare_idle = 0;
        return G_SOURCE_REMOVE;
    }
    return G_SOURCE_CONTINUE;
}

void loader_spare_prepare(Helper *h)
{
    /* After the current requests are answered, not on their path. */
    if (h->spares.length < h->spares_wanted && h->spare_idle == 0 &&
        loader_sandbox_accepted(h, NULL)) {
        h->spare_idle = g_idle_add(loader_spare_on_idle, h);
    }
}

void loader_spare_want(Helper *h, guint count)
{
    if (count > h->spares_wanted) {
        h->spares_wanted = MIN(count, h->spares_max);
        loader_spare_prepare(h);
    }
}

void loader_spare_discard(Helper *h)
{
    SpareProcess *sp;

    if (h->spare_idle != 0) {
        g_source_remove(h->spare_idle);
        h->spare_idle = 0;
    }
    while ((sp = g_queue_pop_head(&h->spares)) != NULL) {
        kill(sp->pid, SIGKILL);
        waitpid(sp->pid, NULL, 0);
        g_spawn_close_pid(sp->pid);
        close(sp->fd);
        loader_spare_free(sp);
    }
}

/* Hand the module to a spare process (there is one). */
static void module_use_spare(Module *m, int memfd)
{
    Helper *h = m->helper;
    SpareProcess *sp = g_queue_pop_head(&h->spares);
    struct modlink_start st = { 0 };
    int sock = sp->fd;

    m->pid = sp->pid;
    loader_spare_free(sp);
    g_strlcpy((gchar *)st.name, m->name, sizeof(st.name));
    m->link = vmaug_link_new(sock, VMAUG_MODLINK_MAGIC,
                             MODLINK_MAX_FROM_MODULE, HELPER_MAX_QUEUED_OUT,
                             module_on_message, module_on_link_closed, m);
    vmaug_link_send_fds(m->link, MODLINK_START, 0, &st, sizeof(st), NULL, 0,
                        &memfd, 1);
}

Module *module_start(Device *dev, VmaugPackage *pkg, GError **error)
{
    Helper *h = dev->helper;
    g_autoptr(GBytes) payload = NULL;
    g_autofree gchar *state_dir = NULL;
    Module *m;
    int memfd;

    if (!loader_sandbox_accepted(h, error)) {
        return NULL;
    }
    payload = vmaug_package_get_payload(pkg);
    m = g_new0(Module, 1);
    m->dev = dev;
    m->helper = h;
    /* Its state, spool and configuration are its VM's, as long as it
     * runs, also after the VM left. */
    m->area = vmaug_vm_area_ref(dev->area);
    m->name = g_strdup(pkg->manifest->name);
    m->version = g_strdup(pkg->manifest->version);
    m->manifest = g_steal_pointer(&pkg->manifest);
    m->load_waiters = g_array_new(FALSE, FALSE, sizeof(guint64));
    m->load_callbacks = g_array_new(FALSE, FALSE,
                                    sizeof(ModuleLoadCallback));
    m->state_dirfd = -1;
    m->started_us = g_get_monotonic_time();
    module_refill_budget(m);
    g_queue_init(&m->calls);

    {
        g_autofree gchar *all = vmaug_vm_area_subdir(m->area, "state",
                                                     error);

        if (all == NULL) {
            module_free(m);
            return NULL;
        }
        state_dir = g_build_filename(all, m->name, NULL);
    }
    if (g_mkdir_with_parents(state_dir, 0700) < 0 ||
        (m->state_dirfd = open(state_dir, O_RDONLY | O_DIRECTORY |
                               O_CLOEXEC | O_NOFOLLOW)) < 0) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_IO,
                    "state directory %s: %s", state_dir, g_strerror(errno));
        module_free(m);
        return NULL;
    }
    memfd = module_payload_memfd(m, payload, error);
    if (memfd < 0) {
        module_free(m);
        return NULL;
    }
    /* Without a spare ready, one is started for this module now. */
    if (h->spares.length == 0) {
        g_debug("module %s: no spare process ready, starting one for it",
                m->name);
        if (!loader_spare_spawn(h, error)) {
            close(memfd);
            module_free(m);
            return NULL;
        }
    }
    module_use_spare(m, memfd);
    /* The link took the memfd; the next load gets a new spare. */
    loader_spare_prepare(h);
    m->child_watch = g_child_watch_add(m->pid, module_on_exit, m);
    module_arm_timer(m, h->call_timeout_ms);
    return m;
}

void module_add_load_waiter(Module *m, guint64 tag)
{
    g_array_append_val(m->load_waiters, tag);
}

void module_add_load_callback(Module *m, ModuleDoneFunc func, gpointer data)
{
    ModuleLoadCallback cb = { func, data };

    g_array_append_val(m->load_callbacks, cb);
}

static void module_queue(Module *m, guint64 tag, guint16 type, GBytes *p,
                         ModuleDoneFunc done, gpointer done_data)
{
    ModuleCall *c = g_new0(ModuleCall, 1);

    c->id = ++m->next_call_id;
    c->tag = tag;
    c->type = type;
    c->payload = p;
    c->done = done;
    c->done_data = done_data;
    g_queue_push_tail(&m->calls, c);
    module_pump(m);
}

gboolean module_invoke(Module *m, guint64 tag, const gchar *function,
                       const void *input, gsize len, GError **error)
{
    GByteArray *p;

    if (g_queue_get_length(&m->calls) >= HELPER_MAX_QUEUED_CALLS) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_BUSY,
                    "module %s has too many calls queued", m->name);
        return FALSE;
    }
    p = g_byte_array_sized_new(strlen(function) + 1 + len);
    g_byte_array_append(p, (const guint8 *)function, strlen(function) + 1);
    g_byte_array_append(p, input, len);
    module_queue(m, tag, MODLINK_CALL, g_byte_array_free_to_bytes(p), NULL,
                 NULL);
    return TRUE;
}

gboolean module_post_event_full(Module *m, guint32 type, const void *data,
                                gsize len, ModuleDoneFunc done,
                                gpointer done_data)
{
    GByteArray *p;
    guint32 le = GUINT32_TO_LE(type);

    if (!(m->manifest->events & VMAUG_EVENT_MASK(type)) || m->stopping ||
        m->state == VMAUG_MODULE_CRASHED ||
        g_queue_get_length(&m->calls) >= HELPER_MAX_QUEUED_CALLS) {
        return FALSE;
    }
    p = g_byte_array_sized_new(4 + len);
    g_byte_array_append(p, (const guint8 *)&le, 4);
    g_byte_array_append(p, data, len);
    module_queue(m, 0, MODLINK_EVENT, g_byte_array_free_to_bytes(p), done,
                 done_data);
    return TRUE;
}

void module_post_event(Module *m, guint32 type, const void *data, gsize len)
{
    module_post_event_full(m, type, data, len, NULL, NULL);
}

/* ---- Finishing after the VM went away ---- */

static gboolean module_on_drain_timeout(gpointer data)
{
    Module *m = data;

    m->drain_timer = 0;
    if (m->draining) {
        g_message("module %s: stop handlers still running after the VM "
                  "left; stopping it", m->name);
        m->draining = FALSE;
        module_stop(m, TRUE);
    }
    return G_SOURCE_REMOVE;
}

/* Once a draining module has nothing left to run, stop it gracefully. */
static void module_drain_check(Module *m)
{
    if (!m->draining || m->in_flight ||
        (m->state == VMAUG_MODULE_LOADED &&
         !g_queue_is_empty(&m->calls)) ||
        m->state == 0) {
        return;
    }
    m->draining = FALSE;
    if (m->drain_timer != 0) {
        g_source_remove(m->drain_timer);
        m->drain_timer = 0;
    }
    module_stop(m, FALSE);
}

void module_finish(Module *m, guint bound_ms)
{
    GList *l, *next;

    /* Guest calls still queued can never be answered: drop them.  Events
     * (the stop handlers) stay queued and run. */
    for (l = m->calls.head; l != NULL; l = next) {
        ModuleCall *c = l->data;

        next = l->next;
        if (c->tag != 0 && !(m->in_flight && l == m->calls.head)) {
            g_queue_delete_link(&m->calls, l);
            module_call_done(m, c, VMAUG_S_INTERRUPTED, "VM gone");
            module_call_free(c);
        }
    }
    g_array_set_size(m->load_waiters, 0);
    m->dev = NULL;
    m->draining = TRUE;
    m->drain_timer = g_timeout_add(bound_ms, module_on_drain_timeout, m);
    module_drain_check(m);
}

void module_stop(Module *m, gboolean immediately)
{
    gboolean busy = m->in_flight;

    module_fail_waiters(m, VMAUG_S_INTERRUPTED, "module unloaded");
    module_fail_calls(m, VMAUG_S_INTERRUPTED, "module unloaded");
    m->stopping = TRUE;
    m->dev = NULL;
    if (m->pid <= 0) {
        module_free(m);
        return;
    }
    /* A module in the middle of a call cannot read FINI: no grace. */
    if (immediately || busy || m->state != VMAUG_MODULE_LOADED ||
        !vmaug_link_is_open(m->link)) {
        module_kill(m);
        return;
    }
    vmaug_link_send(m->link, MODLINK_FINI, 0, NULL, 0, NULL, 0, -1);
    module_arm_timer(m, MODULE_STOP_GRACE_MS);
}
