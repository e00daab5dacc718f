/*
 * vmaugment host side: what the store's own files (store.c, the layout
 * and packages; store-upload.c, upload sessions; store-audit.c, the audit
 * log) share.  Nothing outside them includes this.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VMAUGMENT_STORE_PRIVATE_H
#define VMAUGMENT_STORE_PRIVATE_H

#include "store.h"
#include "vmaugment-hex.h"

struct _VmaugStore {
    gchar *dir;
    VmaugTrustStore *trust;
    const VmaugPolicy *policy;
    int audit_fd;
    int lock_fd;                    /* "lock", held shared while open */
    VmaugClockFunc clock;
    gpointer clock_data;
    /* Upload sessions (store-upload.c). */
    GHashTable *uploads;            /* guint64 id -> StoreUpload */
    VmaugUploadLimits upload_limits;
    /* What enters the store (StoreJob, below). */
    GThreadPool *jobs;              /* one thread, made when first needed */
    GPtrArray *jobs_open;           /* StoreJob *, begun and not ended */
    GMutex job_lock;                /* held by whatever enters the store */
    /* Audit records held back per actor (store-audit.c). */
    GHashTable *audit_sources;      /* actor -> AuditSource */
    VmaugAuditLimits audit_limits;
    /* What lookups found, kept while nothing under modules/ changed
     * (vmaug_store_cache_lookups()). */
    int index_fd;                   /* inotify, or -1: nothing kept */
    int index_wd;                   /* its watch of modules/ */
    GHashTable *index;              /* "name\nversion" -> StoreIndexHit */
};

/* Now, in microseconds of the store's clock (monotonic by default). */
gint64 store_now(VmaugStore *store);
/* VMAUG_HOST_ERROR_IO for errno after @what of @path; FALSE. */
gboolean store_io_error(GError **error, const gchar *what,
                        const gchar *path);
void store_fsync_dir(const gchar *dir);
gchar *store_object_path(VmaugStore *store, const gchar *hex);
/* May @name @version (content @hex, or NULL when not known yet) enter
 * the store?  EXISTS when exactly this package is there. */
gboolean store_admit(VmaugStore *store, const gchar *name,
                     const gchar *version, const gchar *hex, GError **error);
/* Record verified @pkg, whose bytes are objects/<hex>.pkg already. */
gboolean store_publish(VmaugStore *store, VmaugPackage *pkg,
                       const gchar *hex, GError **error);

/*
 * What enters the store (an upload's commit, an install) is read, hashed,
 * verified, admitted, written and synced on the store's own thread, one
 * at a time: a large package, or a disk whose syncs take seconds, keeps
 * the caller's thread (the helper's, which serves every VM) free.  A job
 * begins and ends on the caller's thread; its work touches nothing of the
 * store's but its directory, trust store (which serialises verifications),
 * policy and audit log (one write per record).  Work done on the caller's
 * thread instead (the synchronous calls) holds job_lock just the same, so
 * admitting and publishing stay one step.
 */
typedef struct StoreJob StoreJob;
typedef void (*StoreJobFunc)(StoreJob *job);

struct StoreJob {
    VmaugStore *store;              /* NULL once the store is freed */
    /* On the caller's thread, exactly once, after the work: what the
     * store itself records of the job (sessions, refusals).  Run from
     * store_job_finish(), or by the store's free when that never came. */
    StoreJobFunc end;
    gchar *actor;                   /* who asked, for the audit log */
    VmaugPackage *pkg;              /* what the work verified, or NULL */
    GError *error;                  /* why the package is not stored */
};

/* What the job's fields hold; not the job itself. */
void store_job_clear(StoreJob *job);
/* @work on the caller's thread (under job_lock), then the job's end: the
 * synchronous calls. */
void store_job_run(StoreJob *job, StoreJobFunc work);
/* @job is @task's data (the task owns it): @work runs on the store's
 * thread, then @task returns TRUE to its callback. */
void store_job_push(VmaugStore *store, GTask *task, StoreJob *job,
                    StoreJobFunc work);
/* What the caller learns of an ended job: the stored package's manifest,
 * or NULL with the job's error. */
VmaugManifest *store_job_result(StoreJob *job, GError **error);
/* Back on the caller's thread, from the task's callback: the job (still
 * the task's), ended; or NULL with @error when the task failed before it
 * began, or G_IO_ERROR_CLOSED when the store was freed meanwhile (it
 * ended the job then; @store is compared, never used). */
StoreJob *store_job_finish(VmaugStore *store, GAsyncResult *result,
                           GError **error);

/* store-upload.c */
void store_uploads_init(VmaugStore *store);
/* Take over the unfinished uploads left in uploads/ (when repairing). */
void store_uploads_repair(VmaugStore *store);

/* store-audit.c */
void store_audit_init(VmaugStore *store);
/* An accepted @action ("install", never held back) with a @note saying
 * what the acceptance was ("already stored"). */
void store_audit_accept_note(VmaugStore *store, const gchar *actor,
                             const gchar *action, const gchar *name,
                             const gchar *version, const gchar *sha256,
                             const gchar *signer, const gchar *note);
gboolean store_audit_open(VmaugStore *store, GError **error);
void store_audit_close(VmaugStore *store);

#endif /* VMAUGMENT_STORE_PRIVATE_H */
