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
 * A repository fetch runs in its own process (vmaugment-repo fetch): the
 * helper serves many VMs and must neither block on the network nor parse
 * what a server sends; the package it writes is verified again by the
 * store before it is kept.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>

#include <gio/gio.h>
#include <glib/gstdio.h>

#include "helper.h"
#include "registrations.h"
#include "servicing.h"
#include "vmaugment/protocol-names.h"

/* Bytes of a fetch's complaint kept for messages. */
#define LIFECYCLE_MAX_REASON    300
/* Lifecycle events of one device running or waiting: a QEMU is no more
 * trusted than its guest, and a flood of them is not a VM's life. */
#define LIFECYCLE_MAX_PENDING   64

struct _Lifecycle {
    gint ref;
    Device *dev;                    /* NULL once the device is gone */
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
    gchar *fetch_dir;
    GSubprocess *proc;
    GCancellable *cancel;
    guint fetch_timer;
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
    Device *dev = data;
    Lifecycle *next;

    dev->lifecycle_idle = 0;
    while (dev->lifecycle == NULL &&
           (next = g_queue_pop_head(&dev->lifecycle_queue)) != NULL) {
        lifecycle_run(next);
        lifecycle_unref(next);
    }
    return G_SOURCE_REMOVE;
}

static void lifecycle_answer(Lifecycle *lc)
{
    Device *dev = lc->dev;
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
    if (dev != NULL && !dev->closed) {
        vmaug_link_send(dev->link, VMAUG_HOST_LIFECYCLE_DONE, lc->tag, &done,
                        sizeof(done), msg, len, -1);
    }
}

static void lifecycle_finish(Lifecycle *lc)
{
    Device *dev = lc->dev;

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
    if (dev != NULL && dev->lifecycle == lc) {
        dev->lifecycle = NULL;
        lifecycle_unref(lc);
        if (!g_queue_is_empty(&dev->lifecycle_queue) &&
            dev->lifecycle_idle == 0) {
            dev->lifecycle_idle = g_idle_add(lifecycle_on_idle, dev);
        }
    }
}

static void lifecycle_step_done(Lifecycle *lc)
{
    g_assert(lc->outstanding > 0);
    if (--lc->outstanding == 0) {
        if (lc->dev != NULL) {
            lc->dev->lifecycles = g_list_remove(lc->dev->lifecycles, lc);
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
    g_free(it->fetch_dir);
    g_clear_object(&it->proc);
    g_clear_object(&it->cancel);
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
    if (!module_post_event_full(m, lc->event, NULL, 0, lifecycle_on_handled,
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

static void lifecycle_fetch_cleanup(LcItem *it)
{
    Lifecycle *lc = it->lc;

    if (it->fetch_timer != 0) {
        g_source_remove(it->fetch_timer);
        it->fetch_timer = 0;
    }
    g_ptr_array_remove(lc->fetches, it);
    if (it->fetch_dir != NULL) {
        g_autoptr(GDir) d = g_dir_open(it->fetch_dir, 0, NULL);
        const gchar *e;

        /* Whatever the fetch left, nothing partial stays behind. */
        while (d != NULL && (e = g_dir_read_name(d)) != NULL) {
            g_autofree gchar *p = g_build_filename(it->fetch_dir, e, NULL);

            g_unlink(p);
        }
        g_rmdir(it->fetch_dir);
        g_clear_pointer(&it->fetch_dir, g_free);
    }
}

/* The one package the fetch wrote, installed into the store (which
 * verifies it again and applies its rollback rule). */
static gboolean lifecycle_fetch_install(LcItem *it, GError **error)
{
    Lifecycle *lc = it->lc;
    g_autoptr(GDir) d = g_dir_open(it->fetch_dir, 0, error);
    g_autoptr(GBytes) pkg = NULL;
    g_autoptr(VmaugManifest) m = NULL;
    g_autoptr(GError) local = NULL;
    g_autofree gchar *path = NULL;
    const gchar *e;

    while (d != NULL && (e = g_dir_read_name(d)) != NULL) {
        if (g_str_has_suffix(e, ".vmod") && path == NULL) {
            path = g_build_filename(it->fetch_dir, e, NULL);
        }
    }
    if (path == NULL) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_IO,
                    "the repository client wrote no package");
        return FALSE;
    }
    pkg = vmaug_trust_read_file(path, lc->helper->policy->max_package_size,
                                error);
    if (pkg == NULL) {
        return FALSE;
    }
    m = vmaug_store_install(lc->store, pkg, lc->actor, &local);
    /* Another VM may have fetched the same package meanwhile. */
    if (m == NULL && !g_error_matches(local, VMAUG_HOST_ERROR,
                                      VMAUG_HOST_ERROR_EXISTS)) {
        g_propagate_error(error, g_steal_pointer(&local));
        return FALSE;
    }
    return TRUE;
}

/* The client's last complaint, without its program name. */
static gchar *lifecycle_fetch_reason(const gchar *err)
{
    g_auto(GStrv) lines = g_strsplit(err != NULL ? err : "", "\n", -1);
    const gchar *last = NULL;
    g_autofree gchar *valid = NULL;

    for (guint i = 0; lines[i] != NULL; i++) {
        if (*g_strstrip(lines[i]) != '\0') {
            last = lines[i];
        }
    }
    if (last == NULL) {
        return g_strdup("the repository client failed");
    }
    if (g_str_has_prefix(last, "vmaugment-repo: ")) {
        last += strlen("vmaugment-repo: ");
    }
    valid = g_utf8_make_valid(last, -1);
    if (g_utf8_strlen(valid, -1) > LIFECYCLE_MAX_REASON) {
        *g_utf8_offset_to_pointer(valid, LIFECYCLE_MAX_REASON) = '\0';
    }
    return g_steal_pointer(&valid);
}

static void lifecycle_on_fetched(GObject *source, GAsyncResult *res,
                                 gpointer data)
{
    LcItem *it = data;
    Lifecycle *lc = it->lc;
    g_autoptr(GError) error = NULL;
    g_autofree gchar *err = NULL;
    g_autofree gchar *reason = NULL;
    g_autofree gchar *what = NULL;
    gboolean ok;

    ok = g_subprocess_communicate_utf8_finish(G_SUBPROCESS(source), res,
                                              NULL, &err, &error) &&
         g_subprocess_get_if_exited(it->proc) &&
         g_subprocess_get_exit_status(it->proc) == 0;
    if (ok) {
        ok = lifecycle_fetch_install(it, &error);
        reason = error != NULL ? g_strdup(error->message) : NULL;
    } else if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED)) {
        reason = g_strdup("the VM went away");
    } else if (error != NULL) {
        reason = g_strdup(error->message);
    } else if (!g_subprocess_get_if_exited(it->proc)) {
        reason = g_strdup("the repository client was stopped (time bound)");
    } else {
        reason = lifecycle_fetch_reason(err);
    }
    lifecycle_fetch_cleanup(it);
    if (ok) {
        g_message("device %s: fetched %s %s from %s", lc->actor, it->name,
                  lifecycle_version(it), lc->helper->repo_url);
        vmaug_store_audit(lc->store, lc->actor, "repo-fetch", it->name,
                          *it->version != '\0' ? it->version : NULL, NULL,
                          NULL, NULL);
        if (lc->dev != NULL) {
            lifecycle_item_load(it);
            return;
        }
        lifecycle_item_end(it);
        return;
    }
    {
        g_autoptr(GError) refusal = g_error_new_literal(
            VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_NOT_FOUND, reason);

        vmaug_store_audit(lc->store, lc->actor, "repo-fetch", it->name,
                          *it->version != '\0' ? it->version : NULL, NULL,
                          NULL, refusal);
    }
    what = g_strdup_printf("unavailable: not in the store and repository "
                           "%s unreachable or refused it: %s",
                           lc->helper->repo_url, reason);
    if (lc->dev != NULL) {
        device_event_refused(lc->dev, it->name, it->version, what);
    }
    lifecycle_item_fail(it, VMAUG_S_NOT_FOUND, what);
    lifecycle_item_end(it);
}

/* The client has its own time bound; this one covers a client stuck
 * before it applies it. */
static gboolean lifecycle_on_fetch_timeout(gpointer data)
{
    LcItem *it = data;

    it->fetch_timer = 0;
    if (it->proc != NULL) {
        g_subprocess_force_exit(it->proc);
    }
    return G_SOURCE_REMOVE;
}

static gboolean lifecycle_fetch(LcItem *it, GError **error)
{
    Lifecycle *lc = it->lc;
    Helper *h = lc->helper;
    g_autofree gchar *state = g_build_filename(vmaug_store_get_dir(lc->store),
                                               "repository", NULL);
    g_autofree gchar *downloads = g_build_filename(state, "downloads", NULL);
    g_autofree gchar *timeout = g_strdup_printf("%u", h->repo_timeout_ms);
    g_autofree gchar *max = g_strdup_printf("%" G_GUINT64_FORMAT,
                                            h->policy->max_package_size);
    g_autoptr(GPtrArray) argv = g_ptr_array_new();

    if (g_mkdir_with_parents(downloads, 0700) < 0) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_IO,
                    "%s: %s", downloads, g_strerror(errno));
        return FALSE;
    }
    /* A directory of its own: two fetches never meet, and whatever one
     * leaves is removed with it. */
    it->fetch_dir = g_build_filename(downloads, "fetch-XXXXXX", NULL);
    if (g_mkdtemp_full(it->fetch_dir, 0700) == NULL) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_IO,
                    "%s: %s", downloads, g_strerror(errno));
        g_clear_pointer(&it->fetch_dir, g_free);
        return FALSE;
    }
    g_ptr_array_add(argv, h->repo_tool);
    g_ptr_array_add(argv, (gpointer)"fetch");
    g_ptr_array_add(argv, (gpointer)"--url");
    g_ptr_array_add(argv, h->repo_url);
    g_ptr_array_add(argv, (gpointer)"--trust-dir");
    g_ptr_array_add(argv, h->trust_dir);
    g_ptr_array_add(argv, (gpointer)"--state-dir");
    g_ptr_array_add(argv, state);
    g_ptr_array_add(argv, (gpointer)"--dest");
    g_ptr_array_add(argv, it->fetch_dir);
    g_ptr_array_add(argv, (gpointer)"--timeout-ms");
    g_ptr_array_add(argv, timeout);
    g_ptr_array_add(argv, (gpointer)"--max-size");
    g_ptr_array_add(argv, max);
    if (h->repo_ca != NULL) {
        g_ptr_array_add(argv, (gpointer)"--ca-file");
        g_ptr_array_add(argv, h->repo_ca);
    }
    /* Checked names and versions: neither can pass for an option. */
    g_ptr_array_add(argv, it->name);
    if (*it->version != '\0') {
        g_ptr_array_add(argv, it->version);
    }
    g_ptr_array_add(argv, NULL);
    it->proc = g_subprocess_newv((const gchar *const *)argv->pdata,
                                 G_SUBPROCESS_FLAGS_STDOUT_SILENCE |
                                 G_SUBPROCESS_FLAGS_STDERR_PIPE, error);
    if (it->proc == NULL) {
        g_rmdir(it->fetch_dir);
        g_clear_pointer(&it->fetch_dir, g_free);
        return FALSE;
    }
    it->fetched = TRUE;
    it->cancel = g_cancellable_new();
    g_ptr_array_add(lc->fetches, it);
    it->fetch_timer = g_timeout_add(h->repo_timeout_ms + 5000,
                                    lifecycle_on_fetch_timeout, it);
    g_message("device %s: %s %s is not in the store; fetching it from %s",
              lc->actor, it->name, lifecycle_version(it), h->repo_url);
    g_subprocess_communicate_utf8_async(it->proc, NULL, it->cancel,
                                        lifecycle_on_fetched, it);
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

    m = device_ensure_loaded(lc->dev, it->name, it->version, &error);
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
        device_event_refused(lc->dev, it->name, it->version, what);
    } else {
        /* Refused (signature, trust, rollback) or failed to start;
         * refusals were audited and sent by the loader. */
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
    m = g_hash_table_lookup(lc->dev->modules, it->name);
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

    record = vmaug_servicing_load(lc->dev->image, &error);
    if (record != NULL && vmaug_servicing_note_start(record)) {
        vmaug_servicing_save(record, &error);
    }
    if (error != NULL) {
        g_warning("device %s: %s", lc->actor, error->message);
    }
}

static void lifecycle_run(Lifecycle *lc)
{
    Device *dev = lc->dev;
    g_autoptr(VmaugRegSet) set = NULL;
    g_autoptr(GError) error = NULL;

    g_debug("device %s: %s%s", lc->actor, lc->action,
            (lc->flags & VMAUG_LIFECYCLE_F_RECONNECT) ? " (reconnect)" : "");
    /* Held until every item is issued, so none can finish the event
     * early. */
    lc->outstanding = 1;
    lifecycle_ref(lc);          /* the running reference */
    dev->lifecycles = g_list_prepend(dev->lifecycles, lc);
    if (lifecycle_loads(lc->event)) {
        dev->lifecycle = lifecycle_ref(lc);
    }
    if (lc->event == VMAUG_EVENT_IMAGE_START &&
        !(lc->flags & VMAUG_LIFECYCLE_F_RECONNECT) && dev->image != NULL) {
        lifecycle_count_start(lc);
    }
    if (lc->event == VMAUG_EVENT_IMAGE_START) {
        Helper *h = lc->helper;
        guint bound = 4 * h->call_timeout_ms + 2000 +
                      (h->repo_url != NULL ? h->repo_timeout_ms + 6000 : 0);

        lc->guard = g_timeout_add(bound, lifecycle_on_guard, lc);
    }
    set = vmaug_vm_area_regs_load(dev->area, &error);
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
            loader_spare_want(lc->helper, set->regs->len);
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

gboolean lifecycle_message(Device *dev, guint64 tag, const guint8 *data,
                           guint32 len, const gchar **why)
{
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
    if (g_queue_get_length(&dev->lifecycle_queue) +
        g_list_length(dev->lifecycles) >= LIFECYCLE_MAX_PENDING) {
        *why = "too many LIFECYCLE events at once";
        return FALSE;
    }
    if (event == VMAUG_EVENT_IMAGE_STOP || event == VMAUG_EVENT_HOST_STOP) {
        dev->stop_seen = TRUE;
    }
    lc = g_new0(Lifecycle, 1);
    lc->ref = 1;
    lc->dev = dev;
    lc->helper = dev->helper;
    lc->store = dev->store;
    lc->actor = g_strdup(dev->name);
    lc->action = g_strconcat("lifecycle-", vmaug_proto_event_name(event),
                             NULL);
    lc->tag = tag;
    lc->event = event;
    lc->flags = flags;
    lc->fetches = g_ptr_array_new();
    g_message("device %s: %s%s", dev->name, lc->action,
              (flags & VMAUG_LIFECYCLE_F_RECONNECT) ? " (reconnect)" : "");
    /* Events keep their order behind one that is still loading modules;
     * module queues keep it for the rest. */
    if (dev->lifecycle != NULL || !g_queue_is_empty(&dev->lifecycle_queue)) {
        g_queue_push_tail(&dev->lifecycle_queue, lc);
        return TRUE;
    }
    lifecycle_run(lc);
    lifecycle_unref(lc);
    return TRUE;
}

void lifecycle_device_gone(Device *dev)
{
    Lifecycle *lc;

    if (dev->lifecycle_idle != 0) {
        g_source_remove(dev->lifecycle_idle);
        dev->lifecycle_idle = 0;
    }
    /* Not started yet: the VM is gone before they could matter. */
    while ((lc = g_queue_pop_head(&dev->lifecycle_queue)) != NULL) {
        lifecycle_unref(lc);
    }
    for (GList *l = dev->lifecycles; l != NULL; l = l->next) {
        lc = l->data;
        lc->dev = NULL;
        /* A fetch for a VM that left is of no use to anyone. */
        for (guint i = 0; i < lc->fetches->len; i++) {
            LcItem *it = g_ptr_array_index(lc->fetches, i);

            g_cancellable_cancel(it->cancel);
            g_subprocess_force_exit(it->proc);
        }
        if (lc->guard != 0) {
            g_source_remove(lc->guard);
            lc->guard = 0;
        }
        lc->finished = TRUE;
    }
    g_clear_pointer(&dev->lifecycles, g_list_free);
    if (dev->lifecycle != NULL) {
        lifecycle_unref(dev->lifecycle);
        dev->lifecycle = NULL;
    }
}
