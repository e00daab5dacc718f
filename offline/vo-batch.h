/*
 * Servicing many images: each (image, bundle) pair is applied by a child
 * vmaugment-offline process, at most @jobs images at a time.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include <json-glib/json-glib.h>

G_BEGIN_DECLS

typedef struct {
    const char *self;           /* path of the vmaugment-offline binary */
    const char *trust_dir;
    const char *report_dir;     /* may be NULL */
    guint jobs;
    gboolean dry_run;
    gboolean allow_backing;     /* passed on to each apply */
    gboolean accept_weaker;
    /* --luks-key selectors, passed on to each job (the key files' names,
     * never the keys). */
    char **keys;
    /* One report per image, N-IMAGE.json, for every image (those skipped
     * too), instead of one per (image, bundle) pair. */
    gboolean report_per_image;
} VoBatchOptions;

/* One image to service.  Only @path is set for images named on the
 * command line; a libvirt domain's disk also names its domain, its target
 * device and the format the domain XML gives, and a disk that must not be
 * opened carries the status and reason it is reported with instead.  The
 * serviceable disks of a domain are one target: its first disk here, the
 * others in @more, applied together as a guest of several disks.  An
 * image planned with apt (vo-batch-apt.h) has its group's bundle of its
 * own and reports its group. */
/* A later disk of a guest of several disks (a libvirt domain's, an
 * OVF's). */
typedef struct {
    char *path;
    char *format;           /* NULL: probed */
    char *disk;             /* its target device; NULL for an OVF's */
} VoBatchDisk;

typedef struct {
    char *path;
    char *format;           /* NULL: probed */
    GPtrArray *more;        /* VoBatchDisk*: the guest's later disks */
    char *domain;           /* NULL: not from libvirt */
    char *disk;
    /* A disk of a domain that is no part of its guest (a CD-ROM, a
     * network disk): listed in the domain's report, not its status. */
    gboolean aside;
    char *skip_status;      /* NULL: service it */
    char *skip_reason;
    GPtrArray *bundles;     /* char*; NULL: the batch's */
    int group;              /* -1: none */
} VoBatchTarget;

VoBatchTarget *vo_batch_target_new(const char *path);
/* Appends a later disk to @t. */
void vo_batch_target_add_disk(VoBatchTarget *t, const char *path,
                              const char *format, const char *disk);
void vo_batch_target_free(VoBatchTarget *t);

/* Expands directories (image files directly inside, hidden ones skipped),
 * @list files (one path per line) and OVF descriptors into targets
 * (VoBatchTarget*): an OVF's disks are one target, a guest of several
 * disks. */
GPtrArray *vo_batch_collect(char **sources, GError **error);

/* Sorted *.vmab files of @dir. */
GPtrArray *vo_batch_bundles_in(const char *dir, GError **error);

/* Runs everything on @targets (VoBatchTarget*), prints progress on
 * stderr, returns the summary; FALSE in @all_ok when any image failed
 * (an image skipped with status "error" or "refused" among them).
 * With a report directory, each (image, bundle) pair gets a report, or
 * each domain one when the targets come from libvirt. */
JsonNode *vo_batch_run(const VoBatchOptions *opts, GPtrArray *images,
                       GPtrArray *bundles, gboolean *all_ok);

G_END_DECLS
