/*
 * What a bundle does to a guest (vo-patch.c): runs in the offline worker.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include "vo-bundle.h"
#include "vo-inventory.h"

G_BEGIN_DECLS

/* Checks every file instruction against the image (old hashes, existence,
 * paths) without changing anything; @plan gets what would change. */
gboolean vo_patch_plan(VoBundle *bundle, VoGuest *guest, JsonBuilder *plan,
                       GError **error);

/* Confirms every instruction took effect; @report gets one entry each.
 * FALSE with VO_ERROR_VERIFY when any did not. */
gboolean vo_patch_verify(VoBundle *bundle, VoGuest *guest,
                         JsonBuilder *report, GError **error);

/* Carries out every instruction on the guest and writes it back. */
gboolean vo_patch_execute(VoBundle *bundle, VoGuest *guest, GError **error);

/*
 * Reads the inventory, then: "already in effect?", the rules ("rules"),
 * the plan ("plan"), each as a member of @report (an open object).
 * Returns FALSE with @error on refusal; TRUE with *@done when nothing is
 * left to do.  The report's "status" is set whenever the decision ends the
 * job.
 */
gboolean vo_patch_decide(VoBundle *bundle, VoGuest *guest,
                         JsonBuilder *report, gboolean *done,
                         GError **error);

/* Refuses (VO_ERROR_UNSUPPORTED) a bundle with registry or package
 * instructions: the routes that carry out file instructions only
 * (@route: "--backend=libguestfs", "--host-kernel"). */
gboolean vo_patch_check_files_only(VoBundle *bundle, const char *route,
                                   GError **error);

G_END_DECLS
