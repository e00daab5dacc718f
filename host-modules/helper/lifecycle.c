/*
 * vmaugment-helper: lifecycle events of a VM (VMAUG_HOST_LIFECYCLE).
 *
 * For an event E, every module registered with the image for E runs its
 * handler; HOST_START and IMAGE_START load the modules first, IMAGE_START
 * every registered one, fetching those missing from the store from the
 * configured repository.  IMAGE_START is answered (LIFECYCLE_DONE) once
 * every handler returned: the device holds the VM's start until then, and
 * a required module that is missing, refused or failing makes it refuse
 * to start.  Every handler run is recorded in the store's audit log.
 *
 * Modules are loaded through the VM's session (session.c) and fetched
 * through repo-fetch.c; the answer goes back through the callback the
 * device connection gave.  The messages come from QEMU, no more trusted
 * than its guest: checked, and bounded in number.  docs/protocol.rst is
 * normative for the events and their answer.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "lifecycle.h"
#include "registrations.h"
#include "repo-fetch.h"
#include "spares.h"
#include "servicing.h"
#include "vmaugment/protocol-names.h"

/* Lifecycle events of one device running or waiting: a QEMU is no more
 * trusted than its guest, and a flood of them is not a VM's life. */
#define LIFECYCLE_MAX_PENDING   64

typedef struct _Lifecycle Lifecycle;

struct _LifecycleEngine {
    Session *session;
    LifecycleAnswerFunc answer;
    gpointer owner;
    /* The event that loads modules runs alone; others wait in the queue
     * behind it. */
    Lifecycle *current;
    GQueue queue;
    GList *running;                 /* every one still running */
    guint idle;                     /* runs the queue after one finished */
};

struct _Lifecycle {
    gint ref;
    LifecycleEngine *eng;           /* NULL once the device is gone */
    Helper *helper;
    VmaugStore *store;              /* lives as long as the helper */
    gchar *actor;                   /* the device's name, for the audit */
    gchar *action;                  /* "lifecycle-image-start" */
    guint64 tag;
    guint32 event;
    guint32 flags;
    guint outstanding;              /* items not finished, plus one */
    gboolean finished;
    guint16 fail_status;            /* of the first required failure */
    GString *failure;               /* what required modules lacked */
    GPtrArray *fetches;             /* LcItem with a fetch running */
    guint guard;
};

typedef struct {
    Lifecycle *lc;
    gchar *name;
    gchar *version;                 /* as registered; "" for the newest */
    guint32 events;
    guint32 flags;
    gboolean fetched;               /* the repository was asked already */
    RepoFetch *fetch;               /* running */
} LcItem;

static gboolean lifecycle_loads(guint32 event)
{
    return event == VMAUG_EVENT_HOST_START ||
           event == VMAUG_EVENT_IMAGE_START;
}

static Lifecycle *lifecycle_ref(Lifecycle *lc)
{
    lc->ref++;
    return lc;
}

static void lifecycle_unref(Lifecycle *lc)
{
    if (--lc->ref > 0) {
        return;
    }
    g_assert(lc->guard == 0);
    if (lc->failure != NULL) {
        g_string_free(lc->failure, TRUE);
    }
    g_ptr_array_unref(lc->fetches);
    g_free(lc->actor);
    g_free(lc->action);
    g_free(lc);
}

static const gchar *lifecycle_version(const LcItem *it)
{
    return *it->version != '\0' ? it->version : "(newest)";
}

static void lifecycle_run(Lifecycle *lc);

/*
 * Run what waited behind a lifecycle event that loads modules.  From the
 * main loop, not from where the last one finished: that may be deep in a
 * module being stopped or swapped, which must not see new loads.
 */
static gboolean lifecycle_on_idle(gpointer data)
{
    LifecycleEngine *eng = data;
    Lifecycle *next;

    eng->idle = 0;
    while (eng->current == NULL &&
           (next = g_queue_pop_head(&eng->queue)) != NULL) {
        lifecycle_run(next);
        lifecycle_unref(next);
    }
    return G_SOURCE_REMOVE;
}

static void lifecycle_answer(Lifecycle *lc)
{
    struct vmaug_host_lifecycle_done done = { 0 };
    const gchar *msg = lc->failure != NULL ? lc->failure->str : "";
    gsize len = strlen(msg);

    if (len > VMAUG_HOST_MESSAGE_MAX) {
        /* Cut at a character boundary. */
        len = g_utf8_offset_to_pointer(msg, g_utf8_strlen(msg,
                                       VMAUG_HOST_MESSAGE_MAX - 4)) - msg;
    }
    done.event = GUINT32_TO_LE(lc->event);
    done.status = GUINT16_TO_LE(lc->failure != NULL ? lc->fail_status :
                                VMAUG_S_OK);
    if (lc->failure != NULL) {
        g_warning("device %s: image start refused: %s", lc->actor, msg);
    } else {
        g_message("device %s: registered modules ready, image may start",
                  lc->actor);
    }
    if (lc->eng != NULL) {
        lc->eng->answer(lc->eng->owner, lc->tag, &done, msg, len);
    }
}

static void lifecycle_finish(Lifecycle *lc)
{
    LifecycleEngine *eng = lc->eng;

    if (lc->finished) {
        return;
    }
    lc->finished = TRUE;
    if (lc->guard != 0) {
        g_source_remove(lc->guard);
        lc->guard = 0;
    }
    if (lc->event == VMAUG_EVENT_IMAGE_START) {
        lifecycle_answer(lc);
    }
    if (eng != NULL && eng->current == lc) {
        eng->current = NULL;
        lifecycle_unref(lc);
        if (!g_queue_is_empty(&eng->queue) && eng->idle == 0) {
            eng->idle = g_idle_add(lifecycle_on_idle, eng);
        }
    }
}

static void lifecycle_step_done(Lifecycle *lc)
{
    g_assert(lc->outstanding > 0);
    if (--lc->outstanding == 0) {
        if (lc->eng != NULL) {
            lc->eng->running = g_list_remove(lc->eng->running, lc);
        }
        lifecycle_finish(lc);
        lifecycle_unref(lc);    /* the running reference */
    }
}

/* The image-start answer cannot wait any longer than every step's own
 * bound together; this is the last resort if something still hangs. */
static gboolean lifecycle_on_guard(gpointer data)
{
    Lifecycle *lc = data;

    lc->guard = 0;
    if (lc->failure == NULL) {
        lc->failure = g_string_new(NULL);
        lc->fail_status = VMAUG_S_TIMEOUT;
        g_string_append(lc->failure, "registered modules were not ready in "
                        "time");
    }
    lifecycle_finish(lc);
    return G_SOURCE_REMOVE;
}

/* ---- One registration ---- */

static void lifecycle_item_free(LcItem *it)
{
    g_free(it->name);
    g_free(it->version);
    g_free(it);
}

static void lifecycle_item_end(LcItem *it)
{
    Lifecycle *lc = it->lc;

    lifecycle_item_free(it);
    lifecycle_step_done(lc);
    lifecycle_unref(lc);
}

/* @what could not be had; required for an image start, the start fails. */
static void lifecycle_item_fail(LcItem *it, guint16 status, const gchar *what)
{
    Lifecycle *lc = it->lc;
    g_autoptr(GError) error = g_error_new_literal(VMAUG_HOST_ERROR,
                                                  VMAUG_HOST_ERROR_IO, what);
    gboolean required = lc->event == VMAUG_EVENT_IMAGE_START &&
                        (it->flags & VMAUG_REG_F_REQUIRED);

    vmaug_store_audit(lc->store, lc->actor, lc->action, it->name,
                      *it->version != '\0' ? it->version : NULL, NULL, NULL,
                      error);
    if (!required) {
        g_message("device %s: %s: optional module %s %s: %s; going on",
                  lc->actor, lc->action, it->name, lifecycle_version(it),
                  what);
        return;
    }
    if (lc->finished) {
        return;
    }
    if (lc->failure == NULL) {
        lc->failure = g_string_new(NULL);
        lc->fail_status = status != VMAUG_S_OK ? status :
                          VMAUG_S_MODULE_FAILED;
    } else {
        g_string_append(lc->failure, "; ");
    }
    g_string_append_printf(lc->failure, "required module %s %s %s",
                           it->name, lifecycle_version(it), what);
}

static void lifecycle_on_handled(Module *m, guint16 status, const gchar *why,
                                 gpointer data)
{
    LcItem *it = data;
    Lifecycle *lc = it->lc;
    const gchar *event = vmaug_proto_event_name(lc->event);

    if (status == VMAUG_S_OK) {
        vmaug_store_audit(lc->store, lc->actor, lc->action, m->name,
                          m->version, NULL, NULL, NULL);
    } else {
        g_autofree gchar *what = g_strdup_printf(
            "unavailable: its %s handler %s (%s)", event,
            status == VMAUG_S_TIMEOUT ? "timed out" : "failed",
            why != NULL ? why : "no reason given");

        lifecycle_item_fail(it, status, what);
    }
    lifecycle_item_end(it);
}

/* The module runs: its handler, unless the VM only reconnected. */
static void lifecycle_item_ready(LcItem *it, Module *m)
{
    Lifecycle *lc = it->lc;

    if (!(it->events & VMAUG_EVENT_MASK(lc->event)) ||
        (lc->flags & VMAUG_LIFECYCLE_F_RECONNECT)) {
        lifecycle_item_end(it);
        return;
    }
    if (!module_post_event(m, lc->event, NULL, 0, lifecycle_on_handled,
                                it)) {
        /* Its manifest lists no handler for the event: nothing to run. */
        g_debug("module %s has no %s handler", m->name, lc->action);
        lifecycle_item_end(it);
    }
}

static void lifecycle_on_loaded(Module *m, guint16 status, const gchar *why,
                                gpointer data)
{
    LcItem *it = data;

    if (status == VMAUG_S_OK) {
        lifecycle_item_ready(it, m);
        return;
    }
    {
        g_autofree gchar *what = g_strdup_printf(
            "unavailable: it failed to start (%s)",
            why != NULL ? why : "no reason given");

        lifecycle_item_fail(it, status, what);
    }
    lifecycle_item_end(it);
}

static void lifecycle_item_load(LcItem *it);

static void lifecycle_on_fetched(gboolean ok, const gchar *reason,
                                 gpointer data)
{
    LcItem *it = data;
    Lifecycle *lc = it->lc;
    g_autofree gchar *what = NULL;

    it->fetch = NULL;
    g_ptr_array_remove(lc->fetches, it);
    if (ok) {
        if (lc->eng != NULL) {
            lifecycle_item_load(it);
            return;
        }
        lifecycle_item_end(it);
        return;
    }
    what = g_strdup_printf("unavailable: not in the store and repository "
                           "%s unreachable or refused it: %s",
                           lc->helper->repo_url, reason);
    if (lc->eng != NULL) {
        session_event_refused(lc->eng->session, it->name, it->version, what);
    }
    lifecycle_item_fail(it, VMAUG_S_NOT_FOUND, what);
    lifecycle_item_end(it);
}

static gboolean lifecycle_fetch(LcItem *it, GError **error)
{
    Lifecycle *lc = it->lc;

    it->fetch = repo_fetch_start(lc->helper, lc->store, lc->actor, it->name,
                                 it->version, lifecycle_on_fetched, it,
                                 error);
    if (it->fetch == NULL) {
        return FALSE;
    }
    it->fetched = TRUE;
    g_ptr_array_add(lc->fetches, it);
    return TRUE;
}

/* Load the registered module (fetching it first when missing). */
static void lifecycle_item_load(LcItem *it)
{
    Lifecycle *lc = it->lc;
    Helper *h = lc->helper;
    g_autoptr(GError) error = NULL;
    g_autofree gchar *what = NULL;
    Module *m;

    m = session_ensure_loaded(lc->eng->session, it->name, it->version,
                              &error);
    if (m != NULL) {
        if (m->state == VMAUG_MODULE_LOADED) {
            lifecycle_item_ready(it, m);
        } else {
            module_add_load_callback(m, lifecycle_on_loaded, it);
        }
        return;
    }
    if (g_error_matches(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_NOT_FOUND)) {
        g_autoptr(GError) ferr = NULL;

        if (h->repo_url != NULL && !it->fetched) {
            if (lifecycle_fetch(it, &ferr)) {
                return;
            }
            what = g_strdup_printf("unavailable: not in the store and it "
                                   "cannot be fetched: %s", ferr->message);
        } else if (h->repo_url != NULL) {
            what = g_strdup_printf("unavailable: repository %s does not "
                                   "have it", h->repo_url);
        } else {
            what = g_strdup("unavailable: not in the store and no "
                            "repository is configured");
        }
        session_event_refused(lc->eng->session, it->name, it->version,
                              what);
    } else {
        /* Refused (signature, trust, rollback) or failed to start;
         * refusals were audited and sent by the session. */
        what = g_strdup_printf("refused: %s", error->message);
    }
    lifecycle_item_fail(it, vmaug_host_error_status(error), what);
    lifecycle_item_end(it);
}

/* ---- One event ---- */

static void lifecycle_item_start(Lifecycle *lc, const VmaugRegistration *r)
{
    LcItem *it = g_new0(LcItem, 1);
    Module *m;

    it->lc = lifecycle_ref(lc);
    it->name = g_strdup(r->name);
    it->version = g_strdup(r->version);
    it->events = r->events;
    it->flags = r->flags;
    lc->outstanding++;
    if (lifecycle_loads(lc->event)) {
        lifecycle_item_load(it);
        return;
    }
    /* Stop, pause and resume run in modules already loaded only. */
    m = g_hash_table_lookup(lc->eng->session->modules, it->name);
    if (m == NULL || m->state == VMAUG_MODULE_CRASHED || m->stopping) {
        lifecycle_item_end(it);
    } else if (m->state == 0) {
        module_add_load_callback(m, lifecycle_on_loaded, it);
    } else {
        lifecycle_item_ready(it, m);
    }
}

/*
 * Count the start for the bundles applied offline that await the guest's
 * report, so that it can say at which boot the update was confirmed.  A
 * record that cannot be read or written costs the count, not the start.
 */
static void lifecycle_count_start(Lifecycle *lc)
{
    g_autoptr(VmaugServicing) record = NULL;
    g_autoptr(GError) error = NULL;

    record = vmaug_servicing_load(lc->eng->session->image, &error);
    if (record != NULL && vmaug_servicing_note_start(record)) {
        vmaug_servicing_save(record, &error);
    }
    if (error != NULL) {
        g_warning("device %s: %s", lc->actor, error->message);
    }
}

static void lifecycle_run(Lifecycle *lc)
{
    LifecycleEngine *eng = lc->eng;
    Session *s = eng->session;
    g_autoptr(VmaugRegSet) set = NULL;
    g_autoptr(GError) error = NULL;

    g_debug("device %s: %s%s", lc->actor, lc->action,
            (lc->flags & VMAUG_LIFECYCLE_F_RECONNECT) ? " (reconnect)" : "");
    /* Held until every item is issued, so none can finish the event
     * early. */
    lc->outstanding = 1;
    lifecycle_ref(lc);          /* the running reference */
    eng->running = g_list_prepend(eng->running, lc);
    if (lifecycle_loads(lc->event)) {
        eng->current = lifecycle_ref(lc);
    }
    if (lc->event == VMAUG_EVENT_IMAGE_START &&
        !(lc->flags & VMAUG_LIFECYCLE_F_RECONNECT) && s->image != NULL) {
        lifecycle_count_start(lc);
    }
    if (lc->event == VMAUG_EVENT_IMAGE_START) {
        Helper *h = lc->helper;
        /* A handler may scan the image (image-scan.c) within its own
         * bound, which its call's is extended by. */
        guint bound = 4 * h->call_timeout_ms + 2000 +
                      (h->repo_url != NULL ? h->repo_timeout_ms + 6000 : 0) +
                      h->scan_timeout_s * 1000 + 20000;

        lc->guard = g_timeout_add(bound, lifecycle_on_guard, lc);
    }
    set = vmaug_vm_area_regs_load(s->area, &error);
    if (set == NULL) {
        /* Its required modules cannot be known: the image does not
         * start on a guess. */
        g_warning("device %s: %s", lc->actor, error->message);
        vmaug_store_audit(lc->store, lc->actor, lc->action, NULL, NULL, NULL,
                          NULL, error);
        if (lc->event == VMAUG_EVENT_IMAGE_START) {
            lc->failure = g_string_new(NULL);
            lc->fail_status = vmaug_host_error_status(error);
            g_string_append_printf(lc->failure, "the image's registrations "
                                   "cannot be used: %s", error->message);
        }
    } else {
        if (lc->event == VMAUG_EVENT_IMAGE_START) {
            spares_want(lc->helper, set->regs->len);
        }
        for (guint i = 0; i < set->regs->len; i++) {
            const VmaugRegistration *r = g_ptr_array_index(set->regs, i);

            /* IMAGE_START loads every registered module; HOST_START those
             * that asked for it; the others only run handlers. */
            if (lc->event == VMAUG_EVENT_IMAGE_START ||
                (r->events & VMAUG_EVENT_MASK(lc->event))) {
                lifecycle_item_start(lc, r);
            }
        }
    }
    lifecycle_step_done(lc);
}

LifecycleEngine *lifecycle_engine_new(Session *session,
                                      LifecycleAnswerFunc answer,
                                      gpointer owner)
{
    LifecycleEngine *eng = g_new0(LifecycleEngine, 1);

    eng->session = session;
    eng->answer = answer;
    eng->owner = owner;
    g_queue_init(&eng->queue);
    return eng;
}

gboolean lifecycle_engine_message(LifecycleEngine *eng, guint64 tag,
                                  const guint8 *data, guint32 len,
                                  const gchar **why)
{
    Session *s = eng->session;
    struct vmaug_host_lifecycle msg;
    Lifecycle *lc;
    guint32 event, flags;

    if (len != sizeof(msg)) {
        *why = "bad LIFECYCLE";
        return FALSE;
    }
    memcpy(&msg, data, sizeof(msg));
    event = GUINT32_FROM_LE(msg.event);
    flags = GUINT32_FROM_LE(msg.flags);
    if (event < VMAUG_EVENT_HOST_START || event > VMAUG_EVENT_RESUME ||
        (flags & ~VMAUG_LIFECYCLE_F_RECONNECT)) {
        *why = "bad LIFECYCLE event or flags";
        return FALSE;
    }
    if (g_queue_get_length(&eng->queue) + g_list_length(eng->running) >=
        LIFECYCLE_MAX_PENDING) {
        *why = "too many LIFECYCLE events at once";
        return FALSE;
    }
    if (event == VMAUG_EVENT_IMAGE_STOP || event == VMAUG_EVENT_HOST_STOP) {
        s->stop_seen = TRUE;
    }
    lc = g_new0(Lifecycle, 1);
    lc->ref = 1;
    lc->eng = eng;
    lc->helper = s->helper;
    lc->store = s->store;
    lc->actor = g_strdup(s->name);
    lc->action = g_strconcat("lifecycle-", vmaug_proto_event_name(event),
                             NULL);
    lc->tag = tag;
    lc->event = event;
    lc->flags = flags;
    lc->fetches = g_ptr_array_new();
    g_message("device %s: %s%s", s->name, lc->action,
              (flags & VMAUG_LIFECYCLE_F_RECONNECT) ? " (reconnect)" : "");
    /* Events keep their order behind one that is still loading modules;
     * module queues keep it for the rest. */
    if (eng->current != NULL || !g_queue_is_empty(&eng->queue)) {
        g_queue_push_tail(&eng->queue, lc);
        return TRUE;
    }
    lifecycle_run(lc);
    lifecycle_unref(lc);
    return TRUE;
}

guint64 lifecycle_engine_held_start(LifecycleEngine *eng)
{
    for (GList *l = eng->running; l != NULL; l = l->next) {
        Lifecycle *lc = l->data;

        /* A reconnect's start is not held: the VM may run. */
        if (lc->event == VMAUG_EVENT_IMAGE_START && !lc->finished &&
            !(lc->flags & VMAUG_LIFECYCLE_F_RECONNECT)) {
            return lc->tag;
        }
    }
    return 0;
}

void lifecycle_engine_free(LifecycleEngine *eng)
{
    Lifecycle *lc;

    if (eng == NULL) {
        return;
    }
    if (eng->idle != 0) {
        g_source_remove(eng->idle);
        eng->idle = 0;
    }
    /* Not started yet: the VM is gone before they could matter. */
    while ((lc = g_queue_pop_head(&eng->queue)) != NULL) {
        lifecycle_unref(lc);
    }
    for (GList *l = eng->running; l != NULL; l = l->next) {
        lc = l->data;
        lc->eng = NULL;
        /* A fetch for a VM that left is of no use to anyone. */
        for (guint i = 0; i < lc->fetches->len; i++) {
            LcItem *it = g_ptr_array_index(lc->fetches, i);

            repo_fetch_cancel(it->fetch);
        }
        if (lc->guard != 0) {
            g_source_remove(lc->guard);
            lc->guard = 0;
        }
        lc->finished = TRUE;
    }
    g_clear_pointer(&eng->running, g_list_free);
    if (eng->current != NULL) {
        lifecycle_unref(eng->current);
        eng->current = NULL;
    }
    g_free(eng);
}
