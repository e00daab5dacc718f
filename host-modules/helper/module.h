/*
 * vmaugment-helper: one module running in its sandboxed process
 * (module.c), the bottom layer of the helper above the spares.
 *
 * A module knows nothing of devices or sessions: whoever started it (its
 * owner) gave it a ModuleOps and is told through it what the module
 * answers and what it tells its VM.  The owner detaches (module_finish(),
 * module_stop()) before it goes away; a detached module never calls it
 * again.  Everything the module process sends is hostile
 * (docs/threat-model.rst); modlink.h is normative for the link.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VMAUGMENT_HELPER_MODULE_H
#define VMAUGMENT_HELPER_MODULE_H

#include "helper.h"

typedef struct _Module Module;

/* How an image access ended: VMAUG_S_OK, or the failure and why. */
typedef void (*ModuleImageAccessFunc)(guint16 status, const gchar *why,
                                      gpointer data);

typedef struct {
    /* Answer the owner's request @tag (a call, or a load that waited). */
    void (*reply)(gpointer owner, guint64 tag, guint16 status,
                  const void *data, gsize len);
    /* Tell the owner's VM: a VMAUG_EVENT_* of @a then @b. */
    void (*event)(gpointer owner, guint32 type, const void *a, gsize alen,
                  const void *b, gsize blen);
    /*
     * Have the owner's QEMU release (VMAUG_IMAGE_RELEASE) or retake its
     * image while the image start is held; @done runs once, later, with
     * the outcome (VMAUG_S_BUSY when no start is held), also when the
     * owner goes away meanwhile.
     */
    void (*image_access)(gpointer owner, guint32 op,
                         ModuleImageAccessFunc done, gpointer data);
} ModuleOps;

/* What a module has of its VM, kept while it runs. */
typedef struct {
    VmaugStore *store;              /* where INSTALL puts packages */
    VmaugVmArea *area;              /* its configuration, state, spool */
    const gchar *vm_name;           /* for spool descriptions */
} ModuleEnv;

/* How an event or a load ended (VMAUG_S_OK or the failure). */
typedef void (*ModuleDoneFunc)(Module *m, guint16 status, const gchar *why,
                               gpointer data);

/* What one init, call or event may ask of the host (module-api.c). */
typedef enum {
    MODULE_BUDGET_NONE = -1,
    MODULE_BUDGET_EVENTS,
    MODULE_BUDGET_LOGS,
    MODULE_BUDGET_SPOOL,
    MODULE_BUDGET_UI,
    MODULE_BUDGET_SCANS,
    MODULE_BUDGET_QUARANTINES,
    MODULE_BUDGET_COUNT,
} ModuleBudget;

struct _Module {
    const ModuleOps *ops;
    gpointer owner;                 /* NULL once detached */
    Helper *helper;
    VmaugStore *store;
    VmaugVmArea *area;              /* its VM's, kept while it runs */
    gchar *vm_name;
    gchar *name;
    gchar *version;
    VmaugManifest *manifest;
    guint state;                    /* 0 while starting, VMAUG_MODULE_* */
    GPid pid;
    gboolean on_spare;              /* holds a spare until it has started */
    VmaugLink *link;
    guint child_watch;
    guint timer;
    gboolean timed_out;
    gboolean stopping;
    GQueue calls;                   /* ModuleCall, first is in flight */
    gboolean in_flight;
    guint64 next_call_id;
    GArray *load_waiters;           /* owner tags */
    GArray *load_callbacks;         /* ModuleLoadCallback */
    guint restarts;                 /* loaded again after crashing */
    gboolean draining;              /* its VM left; running its queue */
    guint drain_timer;
    gint64 started_us;
    int state_dirfd;
    guint budget[MODULE_BUDGET_COUNT];
    gchar *reason;                  /* why the running call fails, or NULL */
    /* A host API request answered later (module-brokers.c's image scan):
     * the call's time bound is extended by this much when it starts. */
    gpointer pending;
    /* A quarantine running for it (module-api.c); it outlives the
     * module, which only stops waiting. */
    gpointer quarantine;
    /* Its install, on the store's thread (module-api.c): the same. */
    gpointer installing;
    guint api_extend_ms;
};

/* Start a verified package in a spare process; the load is answered
 * later (module_add_load_waiter(), module_add_load_callback()). */
Module *module_start(Helper *helper, const ModuleEnv *env,
                     VmaugPackage *pkg, const ModuleOps *ops,
                     gpointer owner, GError **error);
/* Answer @tag through the owner's reply once the module is ready or
 * failed to start. */
void module_add_load_waiter(Module *m, guint64 tag);
/* Be told when the module is ready or failed to start. */
void module_add_load_callback(Module *m, ModuleDoneFunc func, gpointer data);
/* Queue a call of the owner (answered to @tag). */
gboolean module_invoke(Module *m, guint64 tag, const gchar *function,
                       const void *input, gsize len, GError **error);
/* Queue a lifecycle event; @done (if not NULL) is told when the handler
 * returned, failed or timed out.  FALSE (and @done is never called) when
 * the module does not handle @type or cannot take it now. */
gboolean module_post_event(Module *m, guint32 type, const void *data,
                           gsize len, ModuleDoneFunc done,
                           gpointer done_data);
/* The owner is going away: let queued events run (at most @bound_ms),
 * then stop the module gracefully. */
void module_finish(Module *m, guint bound_ms);
/* Ask the module to finish (FINI, then SIGKILL after a grace period);
 * it is freed when its process is gone, and is the owner's no more. */
void module_stop(Module *m, gboolean immediately);

static inline void module_ref_fill(const Module *m,
                                   struct vmaug_module_ref *ref)
{
    memset(ref, 0, sizeof(*ref));
    g_strlcpy((gchar *)ref->name, m->name, sizeof(ref->name));
    g_strlcpy((gchar *)ref->version, m->version, sizeof(ref->version));
}

/* What LIST and LOAD say of a module: @state is VMAUG_MODULE_*. */
void module_info_fill(struct vmaug_module_info *info, const gchar *name,
                      const gchar *version, const VmaugManifest *manifest,
                      guint32 state);

#endif /* VMAUGMENT_HELPER_MODULE_H */
