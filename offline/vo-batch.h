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
} VoBatchOptions;

/* Expands directories (image files directly inside, hidden ones skipped)
 * and @list files (one path per line) into image paths. */
GPtrArray *vo_batch_collect(char **sources, GError **error);

/* Sorted *.vmab files of @dir. */
GPtrArray *vo_batch_bundles_in(const char *dir, GError **error);

/* Runs everything, prints progress on stderr, returns the summary; FALSE
 * in @all_ok when any image failed. */
JsonNode *vo_batch_run(const VoBatchOptions *opts, GPtrArray *images,
                       GPtrArray *bundles, gboolean *all_ok);

G_END_DECLS
