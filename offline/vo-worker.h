/*
 * The offline worker: the only process that reads or writes guest bytes.
 * The privileged parent (vmaugment-offline) serves the image with
 * qemu-nbd and starts vmaugment-offline-worker in the process sandbox
 * (sandbox.h) with three descriptors: the NBD connection, a socket for
 * its report (vo-wire.h) and, for bundle jobs, the verified bundle as a
 * sealed memfd.  docs/offline.rst ("Confinement") is normative.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include <json-glib/json-glib.h>

#include "vo-bundle.h"
#include "vo-layout.h"

G_BEGIN_DECLS

typedef enum {
    VO_WORKER_INSPECT,      /* "inventory" */
    VO_WORKER_CHECK,        /* "status", "rules", "plan" */
    VO_WORKER_APPLY,        /* ... and "verify", on a writable overlay */
    VO_WORKER_VERIFY,       /* "instructions", "verified" */
    VO_WORKER_PACKAGES,     /* "dpkg" (vo-dpkg-status.h) */
    VO_WORKER_SCAN,         /* "scan" (vo-scan.h) */
    /* "volumes": where each filesystem and LUKS volume lies, checked by
     * vo_worker_volumes(), for the --host-kernel route (vo-hostkernel.h),
     * which mounts one the worker cannot write, and for --luks-key, whose
     * volumes the parent opens. */
    VO_WORKER_LOCATE,
} VoWorkerJob;

/* The worker's descriptors, in this order; a guest's second and later
 * disks follow (vo_worker_disk_fd()). */
#define VO_WORKER_FD_DISK       3
#define VO_WORKER_FD_REPORT     4
#define VO_WORKER_FD_BUNDLE     5
/* The scan job's request (vo-scan.h), in the bundle's place. */
#define VO_WORKER_FD_REQUEST    5
/* The jobs that decide on a bundle (check, apply): after the bundle, the
 * scan request of its quarantine instruction (vo-quarantine.h), empty
 * when it has none. */
#define VO_WORKER_FD_SCAN       6
/* The scan job: after its request, the request of a spare's scan, written
 * once its image is known (VoWorkerRequest.await), empty otherwise. */
#define VO_WORKER_FD_LATER      6
/* The most disks one guest may have (each costs a qemu-nbd and an fd). */
#define VO_WORKER_MAX_DISKS     8
/* The most LUKS volumes opened for one guest (an fd each). */
#define VO_WORKER_MAX_LUKS      8
/* The most volumes a locate job may report; a guest has far fewer. */
#define VO_WORKER_MAX_VOLUMES   4096

/* Its limits: memory beyond the bundle it maps, CPU, descriptors, and
 * scratch space for registry hives (hivex reads files only). */
#define VO_WORKER_MEMORY        (2048ull * 1024 * 1024)
#define VO_WORKER_CPU_SECONDS   600
#define VO_WORKER_MAX_FILES     32
#define VO_WORKER_SCRATCH       (512ull * 1024 * 1024)
/* The longest error message it may report, in bytes. */
#define VO_WORKER_MAX_MESSAGE   4096
/* How long the parent waits for its report, whatever it does. */
#define VO_WORKER_TIMEOUT_S     1800
/* The scan job: room for libclamav's compiled database (the official one
 * takes about 1.5 GiB) besides the file it scans, and the time it may
 * take beyond its own --timeout to load the database and report. */
#define VO_WORKER_SCAN_MEMORY   (4096ull * 1024 * 1024)
#define VO_WORKER_SCAN_GRACE_S  300

/* The stages an apply announces (in this order). */
#define VO_WORKER_STAGE_DECIDING    "deciding"
#define VO_WORKER_STAGE_PATCHING    "patching the overlay"
#define VO_WORKER_STAGE_VERIFYING   "verifying the overlay"

const char *vo_worker_job_name(VoWorkerJob job);
/* Whether the job is handed a bundle (and its signer). */
gboolean vo_worker_job_has_bundle(VoWorkerJob job);
/* Whether it is handed a scan request beside it (VO_WORKER_FD_SCAN). */
gboolean vo_worker_job_has_scan(VoWorkerJob job);
/* The descriptors it is given: 2, 3 with a bundle, 4 with a bundle and
 * a scan request (VO_WORKER_FD_SCAN) or a scan's two requests. */
int vo_worker_job_fds(VoWorkerJob job);
gboolean vo_worker_job_from_name(const char *name, VoWorkerJob *job);
/* The descriptor of the guest's disk @disk (from 0) in a worker of @job;
 * the LUKS volumes opened follow the last disk. */
int vo_worker_disk_fd(VoWorkerJob job, guint disk);

/* ---- Parent ---- */

typedef struct VoWorkerRequest {
    VoWorkerJob job;
    const char *image;      /* named in messages and reports */
    const char *disk;       /* the file qemu-nbd serves: image or overlay */
    /* Of @disk: never probed again, unless @probe. */
    const char *format;
    VoBundle *bundle;       /* bundle jobs; from vo_bundle_load() */
    /*
     * A guest of several disks: its second and later ones, in its order
     * (@more_images names them, @more_disks are the files served, with
     * @more_formats); all read by the one worker.
     */
    guint n_more;
    const char *const *more_images;
    const char *const *more_disks;
    const char *const *more_formats;
    /* The scan job's request (vo-scan.h); for check and apply, the scan
     * request of the bundle's quarantine instruction, or NULL. */
    GBytes *request;
    GBytes *request_keys;   /* what follows @request, or NULL (a scan
                             * cache's keys, handed over without a copy) */
    guint timeout_s;        /* 0: VO_WORKER_TIMEOUT_S */
    /*
     * NULL when the disks exist.  Otherwise what makes them (an apply's
     * overlays), called once the worker is started and before qemu-nbd
     * opens them, so that the worker's start overlaps it; when it fails,
     * so does the job, the worker ended.  It sets @fds[i], for each disk
     * in the guest's order, to the file it made, held open (still its
     * own, until the job ends): the disk's server opens the file through
     * that descriptor, not by its name, which whoever can write its
     * directory may have swapped meanwhile.
     */
    gboolean (*prepare)(gpointer data, int *fds, GError **error);
    gpointer prepare_data;
    /*
     * Whether @format and @more_formats are only what the user named (or
     * NULL), each disk to be checked and probed (vo_image_open_format())
     * once the worker is started and before qemu-nbd opens it, so that
     * the worker's start overlaps the probe; when a disk is refused, so
     * is the job, the worker ended.  Reading jobs only, without @prepare.
     */
    gboolean probe;
    /*
     * A scan worker started before its image is known (a spare,
     * vo_scan_run()): its request says "later", and @image, @disk,
     * @format, @request, @request_keys and @timeout_s are unset until
     * @await, called once the worker is spawned, sets them in the copy it
     * is given (it may wait for them as long as it likes).  The worker
     * then takes the request as its disk is served.  A guest of one disk,
     * no --luks-key: otherwise @await is called first and the job runs as
     * any other.
     */
    gboolean (*await)(gpointer data, struct VoWorkerRequest *req,
                      GError **error);
    gpointer await_data;
    /* Set when the spare's worker had ended by the time @await returned
     * (killed while it waited): the job then fails, where a worker of its
     * own would not have. */
    gboolean *spare_lost;
} VoWorkerRequest;

/* The host owner accepts running the worker with less than every piece
 * of confinement (--accept-weaker-sandbox). */
void vo_worker_set_accept_weaker(gboolean accept);
/*
 * --luks-key SELECTOR (docs/offline.rst, "LUKS"): "ID:file:FILE", ID a LUKS
 * volume's UUID or "all".  With keys, each job first asks a worker where
 * the guest's LUKS volumes lie and serves those it has a key for
 * decrypted, beside the disks.  The key files are read by QEMU only.
 */
gboolean vo_worker_add_key(const char *selector, GError **error);
/*
 * The volumes a locate job reported in @result (a guest of @n_disks
 * disks, of virtual sizes @sizes), each checked as untrusted input: known
 * members of their types, one of the disks, a range of whole sectors
 * inside it.  NULL with @error otherwise.  Each VoPartition's @disk says
 * which disk.
 */
VoLayout *vo_worker_volumes(JsonObject *result, const guint64 *sizes,
                            guint n_disks, GError **error);
/* The uid base of the worker's own ids (sandbox.h). */
void vo_worker_set_id_base(guint32 base);

/*
 * Runs @req in a confined worker.  *@result gets the worker's report
 * (checked member by member) whenever one arrived, also when the job
 * failed; the job's outcome is the return value and @error.  A worker
 * that crashed, hung or sent anything malformed is a failure that names
 * it; the image was not written by the parent in any case.
 */
gboolean vo_worker_run(const VoWorkerRequest *req, JsonObject **result,
                       GError **error);

/*
 * The checks vo_worker_run() applies to what a worker sends on @fd
 * (stage frames, one result, the end), before @deadline: the report, or
 * NULL with @error.  A report holding the worker's "error" also sets
 * @job_error.  For the fuzz target of the parent's side.
 */
JsonObject *vo_worker_read_report(const VoWorkerRequest *req, int fd,
                                  gint64 deadline, GError **job_error,
                                  GError **error);

/*
 * Adds a report's "error" member for @error: its code (VO_ERROR_FAILED
 * outside VO_ERROR) and its message, cut at a character to
 * VO_WORKER_MAX_MESSAGE bytes (in place), which the parent's check
 * accepts.  Used by the worker and by the --host-kernel route's child.
 */
void vo_worker_add_error(JsonBuilder *b, GError *error);

G_END_DECLS
