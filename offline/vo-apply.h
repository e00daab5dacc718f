/*
 * Deciding, applying and verifying a bundle on an image.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include "vo-bundle.h"
#include "vo-inventory.h"

G_BEGIN_DECLS

/* Evaluates the bundle's applicability rules; @report gets one entry per
 * rule.  FALSE with VO_ERROR_NOT_APPLICABLE names the first failing one. */
gboolean vo_apply_check_rules(VoBundle *bundle, VoInventory *inv,
                              VoGuest *guest, JsonBuilder *report,
                              GError **error);

/* Checks every file instruction against the image (old hashes, existence,
 * paths) without changing anything; @plan gets what would change. */
gboolean vo_apply_plan(VoBundle *bundle, VoGuest *guest, JsonBuilder *plan,
                       GError **error);

/* Confirms every instruction took effect; @report gets one entry each.
 * FALSE with VO_ERROR_VERIFY when any did not. */
gboolean vo_apply_verify(VoBundle *bundle, VoGuest *guest,
                         JsonBuilder *report, GError **error);

typedef enum {
    VO_APPLY_DRY_RUN = 1 << 0,
} VoApplyFlags;

/*
 * The whole job on one image: recover, decide, then patch a qcow2 overlay,
 * verify it and commit it into the image.  Until the commit starts the
 * image is never written; once a verified overlay is recorded in the
 * journal, an interrupted commit is rolled forward by vo_apply_recover().
 * @report (an open object) gets "status" and the details.
 */
gboolean vo_apply_image(const char *image, const char *format,
                        VoBundle *bundle, VoApplyFlags flags,
                        JsonBuilder *report, GError **error);

/* Finishes or discards what an interrupted apply left next to @image.
 * @action (may be NULL) is set to "none", "rolled-back" or
 * "rolled-forward". */
gboolean vo_apply_recover(const char *image, const char **action,
                          GError **error);

G_END_DECLS
