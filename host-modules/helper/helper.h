/*
 * vmaugment-helper: the supervisor QEMU's vmaugment device talks to.
 *
 * One Helper listens on a unix socket; each accepted connection is one
 * device (one VM) with its own modules; each loaded module runs in its own
 * sandboxed process (vmaugment-module-host).
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VMAUGMENT_HELPER_H
#define VMAUGMENT_HELPER_H

#include <glib.h>
#include <linux/virtio_vmaugment.h>

#include "host-common.h"
#include "link.h"
#include "sandbox.h"
#include "store.h"
#include "vm-area.h"

#define HELPER_VERSION_STRING   "vmaugment-helper " VMAUG_HOST_VERSION
/* Devices served at once. */
#define HELPER_MAX_DEVICES      64
/* Calls queued for one module before BUSY. */
#define HELPER_MAX_QUEUED_CALLS 64
/* Bytes queued towards one peer before we give up on it. */
#define HELPER_MAX_QUEUED_OUT   (64 * 1024 * 1024)

typedef struct {
    const gchar *socket_path;
    gchar *default_store;
    GPtrArray *allowed_stores;      /* canonical paths */
    GPtrArray *image_dirs;          /* real paths images may live in */
    gchar *trust_dir;
    gchar *repo_url;                /* NULL: no repository */
    gchar *repo_ca;                 /* PEM CAs for its TLS, or NULL */
    gchar *repo_tool;               /* vmaugment-repo */
    guint repo_timeout_ms;
    VmaugTrustStore *trust;
    VmaugPolicy *policy;
    gchar *module_host;
    guint call_timeout_ms;
    SandboxLimits limits;
    SandboxHost sandbox;
    unsigned sandbox_pieces;        /* SANDBOX_* this host gives */
    gboolean sandbox_weaker_ok;     /* --accept-weaker-sandbox */
    gchar *cups_queue;
    gboolean module_stderr;         /* module processes may write to ours */
    GHashTable *stores;             /* canonical dir -> VmaugStore */
    GHashTable *manifests;          /* package sha256 -> VmaugManifest */
    /* Stored packages that failed verification, so that listing them
     * does not verify (and audit) them again and again. */
    GHashTable *refusals;           /* package sha256 -> GError */
    VmaugVmQuota vm_quota;          /* what each VM may keep */
    VmaugUploadLimits upload_limits;
    VmaugAuditLimits audit_limits;
    GList *devices;
    guint64 jobs;
    GMainLoop *loop;
    gboolean quitting;
    /* Module processes started ahead of need (see loader.c). */
    GQueue spares;                  /* of SpareProcess, oldest first */
    guint spares_max;               /* --spare-processes */
    guint spares_wanted;            /* at most spares_max */
    guint spare_idle;
} Helper;

typedef struct {
    Helper *helper;
    GPid pid;
    int fd;                         /* its end of the module link */
    guint watch;
} SpareProcess;

typedef struct _Module Module;

typedef struct {
    Helper *helper;
    VmaugLink *link;
    gchar *name;                    /* from the device's HELLO */
    gboolean hello;
    VmaugStore *store;
    gchar *image;                   /* the disk image (real directory), or
                                     * NULL */
    VmaugVmArea *area;              /* what this VM keeps (vm-area.h) */
    GHashTable *modules;            /* name -> Module */
    GHashTable *pending;            /* deferred tags (guint64 *) */
    GHashTable *cancelled;          /* tags the device gave up on */
    gboolean closed;
    /* Lifecycle events (lifecycle.c): the one that loads modules runs
     * alone; others wait in the queue behind it. */
    struct _Lifecycle *lifecycle;
    GQueue lifecycle_queue;
    GList *lifecycles;              /* every one still running */
    guint lifecycle_idle;           /* runs the queue after one finished */
    gboolean stop_seen;             /* IMAGE_STOP or HOST_STOP arrived */
} Device;

/* How an event or a load ended (VMAUG_S_OK or the failure). */
typedef void (*ModuleDoneFunc)(Module *m, guint16 status, const gchar *why,
                               gpointer data);

/* device.c */
/* The store in @dir, opened once and given the helper's limits. */
VmaugStore *device_store_open(Helper *helper, const gchar *dir,
                              GError **error);
Device *device_new(Helper *helper, int fd);
void device_free(Device *dev);
/* Answer a deferred request (dropped if the device cancelled it). */
void device_reply(Device *dev, guint64 tag, guint16 status,
                  const void *data, gsize len);
void device_reply_error(Device *dev, guint64 tag, const GError *error);
void device_event(Device *dev, guint32 type, const void *a, gsize alen,
                  const void *b, gsize blen);
/* Load @name @version ("" for the newest) unless it runs already; the
 * module returned may still be starting.  Refusals are audited and sent
 * as VMAUG_EVENT_MODULE_REFUSED. */
Module *device_ensure_loaded(Device *dev, const gchar *name,
                             const gchar *version, GError **error);
/* Tell the guest a module it needed was refused, and why. */
void device_event_refused(Device *dev, const gchar *name,
                          const gchar *version, const gchar *why);
void device_fill_info(Device *dev, struct vmaug_module_info *info,
                      const gchar *name, const gchar *version,
                      const VmaugManifest *m);

/* loader.c */
struct _Module {
    Device *dev;                    /* NULL once the device is gone */
    Helper *helper;
    VmaugVmArea *area;              /* its VM's, kept while it runs */
    gchar *name;
    gchar *version;
    VmaugManifest *manifest;
    guint state;                    /* 0 while starting, VMAUG_MODULE_* */
    GPid pid;
    VmaugLink *link;
    guint child_watch;
    guint timer;
    gboolean timed_out;
    gboolean stopping;
    GQueue calls;                   /* ModuleCall, first is in flight */
    gboolean in_flight;
    guint64 next_call_id;
    GArray *load_waiters;           /* device tags */
    GArray *load_callbacks;         /* ModuleLoadCallback */
    guint restarts;                 /* loaded again after crashing */
    gboolean draining;              /* its VM left; running its queue */
    guint drain_timer;
    gint64 started_us;
    int state_dirfd;
    /* What one init, call or event may ask of the host (loader.c). */
    guint budget_events;
    guint budget_logs;
    guint budget_spool;
    guint budget_ui;
};

/* Keep h->spares_wanted spare module processes ready (or stop them, at
 * exit). */
void loader_spare_prepare(Helper *h);
/* An image that loads @count modules at once started: keep that many
 * spares for the next start, within --spare-processes. */
void loader_spare_want(Helper *h, guint count);
void loader_spare_discard(Helper *h);
/* Start a verified package in its sandbox; LOAD requests wait with
 * module_add_load_waiter(). */
Module *module_start(Device *dev, VmaugPackage *pkg, GError **error);
void module_add_load_waiter(Module *m, guint64 tag);
/* Be told when the module is ready or failed to start. */
void module_add_load_callback(Module *m, ModuleDoneFunc func, gpointer data);
/* Queue a guest call (answered to @tag) or a lifecycle event (@tag 0,
 * not answered). */
gboolean module_invoke(Module *m, guint64 tag, const gchar *function,
                       const void *input, gsize len, GError **error);
void module_post_event(Module *m, guint32 type, const void *data, gsize len);
/* The same, and @done is told when the handler returned, failed or timed
 * out.  FALSE (and @done is never called) when the module does not
 * handle @type or cannot take it now. */
gboolean module_post_event_full(Module *m, guint32 type, const void *data,
                                gsize len, ModuleDoneFunc done,
                                gpointer done_data);
/* The VM went away: let queued events run (at most @bound_ms), then stop
 * the module gracefully. */
void module_finish(Module *m, guint bound_ms);
/* Ask the module to finish (FINI, then SIGKILL after a grace period);
 * it is freed when its process is gone. */
void module_stop(Module *m, gboolean immediately);
void module_ref_fill(const Module *m, struct vmaug_module_ref *ref);

/* lifecycle.c */
typedef struct _Lifecycle Lifecycle;
/* A VMAUG_HOST_LIFECYCLE message; FALSE (with *why) if malformed. */
gboolean lifecycle_message(Device *dev, guint64 tag, const guint8 *data,
                           guint32 len, const gchar **why);
/* The device is going away. */
void lifecycle_device_gone(Device *dev);

#endif /* VMAUGMENT_HELPER_H */
