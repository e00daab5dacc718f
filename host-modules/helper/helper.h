/*
 * vmaugment-helper: the supervisor QEMU's vmaugment device talks to, and
 * what every part of it shares: the host owner's settings and the caches
 * of the stores.  Trusted: filled from the command line and configuration
 * file (main.c); docs/sandbox.rst is normative for the limits.
 *
 * One Helper listens on a unix socket; each accepted connection is one
 * device (one VM, device.c) with its session (session.c): the modules it
 * has, each running in its own sandboxed process (module.c,
 * vmaugment-module-host).  The layers, bottom up:
 *
 *   spares.c        module processes started ahead of need
 *   module.c        one module process: its link, queue and state
 *   module-api.c    the host API a module reaches (module-brokers.c for
 *                   the spool and UI files, image-scan.c for scans of
 *                   the VM's image)
 *   session.c       the modules of one VM: loads, refusals, info
 *   repo-fetch.c    a package fetched from the repository
 *   lifecycle.c     lifecycle events of one VM
 *   device.c        the connection to one QEMU device
 *
 * A layer calls only the layers below it; those report back through the
 * callbacks (ops structures) they were given.
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
#include "loop-poll.h"
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
    gchar *scan_tool;               /* vmaugment-offline (image-scan.c) */
    gchar *clamav_database;         /* the signature database directory */
    guint scan_timeout_s;           /* bound on one image scan */
    /* A scanner started before it is needed, its worker loading the
     * database and confining itself, for the next image's scan
     * (image-scan.c). */
    struct ImageScanSpare *scan_spare;
    guint scan_spare_soon;          /* the timeout that starts it */
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
    guint64 manifests_generation;   /* the trust store's, for both */
    VmaugVmQuota vm_quota;          /* what each VM may keep */
    VmaugUploadLimits upload_limits;
    VmaugAuditLimits audit_limits;
    GList *devices;
    guint64 jobs;
    /* The VMs' durable writes (device.c): running, queued per VM area
     * (id -> WriteQueue), and their threads (NULL: on the main thread). */
    guint writes;
    GHashTable *write_queues;
    GThreadPool *write_pool;
    GMainLoop *loop;
    HelperPoll poll;                /* the loop's wait (--poll-us) */
    gboolean quitting;
    /* Module processes started ahead of need (spares.c). */
    GQueue spares;                  /* of SpareProcess, oldest first */
    guint spares_max;               /* --spare-processes */
    guint spares_wanted;            /* at most spares_max */
    guint spare_idle;
    guint spares_loading;           /* taken, their modules not started */
    guint spares_hold;              /* while they start: no new spares */
} Helper;

/* helper.c */
/* The caches of stores, manifests and refusals, empty. */
void helper_caches_init(Helper *helper);
void helper_caches_clear(Helper *helper);
/* What each VM may keep, upload and audit: the documented defaults. */
void helper_limits_default(Helper *helper);
/* The store in @dir, opened once and given the helper's limits. */
VmaugStore *helper_store_open(Helper *helper, const gchar *dir,
                              GError **error);

#endif /* VMAUGMENT_HELPER_H */
