/*
 * 'batch --apt-source': a month's updates for many images in one run.
 * apt plans once per group of images with the same package set (vo-plan.h),
 * each group gets one signed bundle (vo-plan-bundle.h), and the batch
 * applies it to the group's images (vo-batch.h).  Every image gets a
 * report of its own, the ones not applied too.
 * docs/offline.rst ("Batch updates with apt") is normative.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include "vo-batch.h"

G_BEGIN_DECLS

typedef struct {
    VoBatchOptions batch;   /* its report_dir is required */
    char **sources;         /* --apt-source, as written */
    const char *keyring;
    gboolean security_only;
    gboolean stage_preinst; /* as bundle-build --plan --stage-preinst */
    const char *key_path;   /* signs each group's bundle */
    const char *cert_path;
    const char *format;     /* --format, for images without one */
} VoBatchAptOptions;

/*
 * Plans, builds and applies for @targets (VoBatchTarget*, changed: each
 * gets its group and bundle, or the status it is reported with).  The
 * report directory receives plan.json, debs/, group-N.vmab and
 * N-IMAGE.json per image.  Returns the batch's summary (vo_batch_run()),
 * or NULL with @error when there is nothing to report on: no plan could
 * be made (a source or its signature), after every image got a report.
 */
JsonNode *vo_batch_apt_run(const VoBatchAptOptions *opts, GPtrArray *targets,
                           gboolean *all_ok, GError **error);

G_END_DECLS
