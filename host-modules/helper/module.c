/*
 * vmaugment-helper: one module process, its link, its queue of calls and
 * events, and its state from start to exit.
 *
 * The process and everything it sends are hostile (docs/threat-model.rst):
 * every message is checked against the state it may come in, every wait
 * has a time bound, and whatever goes wrong kills the process, never the
 * helper.  What it answers and tells its VM goes to its owner through
 * ModuleOps (module.h); its host API requests to module-api.c.  modlink.h
 * is normative for the link.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "modlink.h"
#include "module-api.h"
#include "module.h"
#include "spares.h"

/* Grace a module gets to run its fini before SIGKILL. */
#define MODULE_STOP_GRACE_MS    500

static void module_drain_check(Module *m);

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


/* Answer the owner, if it is still there to hear it. */
static void module_reply(Module *m, guint64 tag, guint16 status,
                         const void *data, gsize len)
{
    if (m->owner != NULL) {
        m->ops->reply(m->owner, tag, status, data, len);
    }
}

void module_info_fill(struct vmaug_module_info *info, const gchar *name,
                      const gchar *version, const VmaugManifest *manifest,
                      guint32 state)
{
    memset(info, 0, sizeof(*info));
    g_strlcpy((gchar *)info->ref.name, name, sizeof(info->ref.name));
    g_strlcpy((gchar *)info->ref.version, version,
              sizeof(info->ref.version));
    info->kind = GUINT32_TO_LE(manifest->kind);
    info->events = GUINT32_TO_LE(manifest->events);
    info->state = GUINT32_TO_LE(state);
}

static void module_fail_calls(Module *m, guint16 status, const gchar *why);
static void module_fail_waiters(Module *m, guint16 status, const gchar *why);

/* Its process has started the module, or failed to: the helper may
 * start the next spare. */
static void module_started(Module *m)
{
    if (m->on_spare) {
        m->on_spare = FALSE;
        spares_load_ended(m->helper);
    }
}

static void module_free(Module *m)
{
    module_started(m);
    /* Nobody may be left waiting on a module that is gone. */
    module_fail_waiters(m, VMAUG_S_INTERRUPTED, "module unloaded");
    module_fail_calls(m, VMAUG_S_INTERRUPTED, "module unloaded");
    module_api_cancel(m);
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
    g_free(m->reason);
    g_free(m->vm_name);
    g_free(m->name);
    g_free(m->version);
    g_free(m);
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
    for (guint i = 0; i < m->load_waiters->len; i++) {
        module_reply(m, g_array_index(m->load_waiters, guint64, i), status,
                     why, strlen(why));
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
        if (c->tag != 0) {
            module_reply(m, c->tag, VMAUG_S_TIMEOUT, "module timed out",
                         strlen("module timed out"));
        }
        module_call_done(m, c, VMAUG_S_TIMEOUT, "no answer in time");
        module_call_free(c);
    }
    m->in_flight = FALSE;
    while ((c = g_queue_pop_head(&m->calls)) != NULL) {
        if (c->tag != 0) {
            module_reply(m, c->tag, status, why, strlen(why));
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
    module_api_refill(m);
    helper_poll_disarm(&m->helper->poll);
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
    module_started(m);
    /* Nobody is left to hear the answer of a request in progress. */
    module_api_cancel(m);
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
    if (m->owner != NULL) {
        struct vmaug_module_ref ref;

        module_ref_fill(m, &ref);
        m->ops->event(m->owner, VMAUG_EVENT_MODULE_CRASHED, &ref, sizeof(ref),
                     NULL, 0);
    } else {
        module_free(m);
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
        module_started(m);
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
        if (m->owner != NULL) {
            struct vmaug_module_info info;
            struct vmaug_module_ref ref;

            module_info_fill(&info, m->name, m->version, m->manifest,
                             m->state);
            for (guint i = 0; i < m->load_waiters->len; i++) {
                module_reply(m, g_array_index(m->load_waiters, guint64, i),
                             VMAUG_S_OK, &info, sizeof(info));
            }
            g_array_set_size(m->load_waiters, 0);
            module_ref_fill(m, &ref);
            m->ops->event(m->owner, VMAUG_EVENT_MODULE_LOADED, &ref,
                          sizeof(ref), NULL, 0);
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
        /* Its output becomes a response, which the device refuses (and
         * drops the VM's link for) above this size. */
        if (len - 4 > VMAUG_MAX_RESP_PAYLOAD) {
            *why = "RESULT larger than a response";
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
        if (c->tag != 0) {
            module_reply(m, c->tag, (guint16)status, data + 4, len - 4);
        }
        /* Its own words (set_reason), checked when it set them. */
        module_call_done(m, c, (guint16)status, status == VMAUG_S_OK ? NULL :
                         m->reason != NULL ? m->reason :
                         "the handler reported a failure");
        module_call_free(c);
        module_pump(m);
        return TRUE;
    }
    case MODLINK_API:
        /* Only while it serves us: init, a call or an event; and one
         * at a time (it waits for each answer). */
        if (!(m->state == 0 || m->in_flight) || m->pending != NULL ||
            m->quarantine != NULL || m->installing != NULL) {
            *why = "unsolicited API request";
            return FALSE;
        }
        if (!module_api_request(m, tag, data, len, why)) {
            return FALSE;
        }
        if (m->api_extend_ms != 0 && m->timer != 0) {
            /* Answered later, within the request's own bound. */
            module_arm_timer(m, m->api_extend_ms +
                             m->helper->call_timeout_ms);
        }
        m->api_extend_ms = 0;
        return TRUE;
    case MODLINK_LOG: {
        g_autofree gchar *text = NULL;
        guint32 level;

        if (len < 4) {
            *why = "short LOG";
            return FALSE;
        }
        memcpy(&level, data, 4);
        if (m->budget[MODULE_BUDGET_LOGS] == 0) {
            return TRUE;    /* dropped: a module cannot flood our log */
        }
        m->budget[MODULE_BUDGET_LOGS]--;
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

/* Hand the module to a spare process (spares.c). */
static gboolean module_use_spare(Module *m, int memfd, GError **error)
{
    struct modlink_start st = { 0 };
    int sock;

    if (!spares_take(m->helper, m->name, &m->pid, &sock, error)) {
        return FALSE;
    }
    m->on_spare = TRUE;
    g_strlcpy((gchar *)st.name, m->name, sizeof(st.name));
    m->link = vmaug_link_new(sock, VMAUG_MODLINK_MAGIC,
                             MODLINK_MAX_FROM_MODULE, HELPER_MAX_QUEUED_OUT,
                             module_on_message, module_on_link_closed, m);
    vmaug_link_send_fds(m->link, MODLINK_START, 0, &st, sizeof(st), NULL, 0,
                        &memfd, 1);
    return TRUE;
}

Module *module_start(Helper *h, const ModuleEnv *env, VmaugPackage *pkg,
                     const ModuleOps *ops, gpointer owner, GError **error)
{
    g_autoptr(GBytes) payload = NULL;
    g_autofree gchar *state_dir = NULL;
    Module *m;
    int memfd;

    if (!spares_sandbox_accepted(h, error)) {
        return NULL;
    }
    payload = vmaug_package_get_payload(pkg);
    m = g_new0(Module, 1);
    m->ops = ops;
    m->owner = owner;
    m->helper = h;
    m->store = env->store;
    /* Its state, spool and configuration are its VM's, as long as it
     * runs, also after the VM left. */
    m->area = vmaug_vm_area_ref(env->area);
    m->vm_name = g_strdup(env->vm_name);
    m->name = g_strdup(pkg->manifest->name);
    m->version = g_strdup(pkg->manifest->version);
    m->manifest = g_steal_pointer(&pkg->manifest);
    m->load_waiters = g_array_new(FALSE, FALSE, sizeof(guint64));
    m->load_callbacks = g_array_new(FALSE, FALSE,
                                    sizeof(ModuleLoadCallback));
    m->state_dirfd = -1;
    m->started_us = g_get_monotonic_time();
    module_api_refill(m);
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
    if (!module_use_spare(m, memfd, error)) {
        close(memfd);
        module_free(m);
        return NULL;
    }
    /* The link took the memfd. */
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

gboolean module_post_event(Module *m, guint32 type, const void *data,
                           gsize len, ModuleDoneFunc done, gpointer done_data)
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
    m->owner = NULL;
    m->draining = TRUE;
    m->drain_timer = g_timeout_add(bound_ms, module_on_drain_timeout, m);
    module_drain_check(m);
}

void module_stop(Module *m, gboolean immediately)
{
    gboolean busy = m->in_flight;

    module_fail_waiters(m, VMAUG_S_INTERRUPTED, "module unloaded");
    module_fail_calls(m, VMAUG_S_INTERRUPTED, "module unloaded");
    /* A scan it waits for is of no use any more (and must not outlive a
     * helper that is quitting). */
    module_api_cancel(m);
    m->stopping = TRUE;
    m->owner = NULL;
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
