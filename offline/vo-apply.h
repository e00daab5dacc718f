/*
 * Applying a bundle to an image atomically, and recovering an interrupted
 * apply: the host's side of the job (vo-apply.c).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include <json-glib/json-glib.h>

#include "vo-bundle.h"
#include "vo-scan.h"

G_BEGIN_DECLS

typedef enum {
    VO_APPLY_DRY_RUN = 1 << 0,
    /* --backend=libguestfs: the appliance reads and writes the guest. */
    VO_APPLY_LIBGUESTFS = 1 << 1,
    /* --host-kernel: the host kernel mounts a copy of the filesystem. */
    VO_APPLY_HOST_KERNEL = 1 << 2,
} VoApplyFlags;

/*
 * The whole job on one image: recover, then let the worker decide, patch
 * a qcow2 overlay and verify it, and commit the overlay into the image.
 * Until the commit starts the image is never written; once a verified
 * overlay is recorded in the journal, an interrupted commit is rolled
 * forward by vo_apply_recover().
 * @report (an open object) gets "status" and the details.
 */
/*
 * A guest of several disks (@n_images, in the order the guest sees them)
 * is applied as one: every disk's overlay is verified before any is
 * committed, and recovery leaves every disk old or every disk new.
 * @formats has a format per disk (NULL: probed), or is NULL: all probed.
 */
/*
 * @scan: how a quarantine instruction scans (vo-quarantine.h): its
 * database, the guest paths, the limits (its image and cache unused);
 * required, with a database, for a bundle that has one, else unused.
 */
gboolean vo_apply_image(const char *const *images, guint n_images,
                        const char *const *formats, VoBundle *bundle,
                        VoApplyFlags flags, const VoScanOptions *scan,
                        JsonBuilder *report, GError **error);

/* Finishes or discards what an interrupted apply left next to @image
 * (and, for a guest of several disks, next to the others: the journal
 * by the first disk names them).
 * @action (may be NULL) is set to "none", "rolled-back" or
 * "rolled-forward". */
gboolean vo_apply_recover(const char *image, const char **action,
                          GError **error);

G_END_DECLS
