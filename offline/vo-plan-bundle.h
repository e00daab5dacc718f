/*
 * A signed update bundle from a plan ('bundle-build --plan'): the .deb
 * files apt chose for one group of images, and rules that pin the
 * versions they replace.  docs/offline.rst ("A bundle from a plan") is
 * normative.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/*
 * Turns group @group (-1: the only one) of the plan in @plan_path into a
 * signed bundle: one "unpack" per planned package, in apt's order, with
 * its .deb from @debs_dir (checked against the plan's SHA-256) as
 * payload, and rules pinning every version the plan replaces.  With
 * @stage_preinst, the packages refused for their preinst are added too,
 * as "stage": installed by dpkg in the guest at its next boot.
 */
gboolean vo_plan_bundle_build(const char *plan_path, int group,
                              gboolean stage_preinst,
                              const char *debs_dir, const char *key_path,
                              const char *cert_path, const char *out_path,
                              GError **error);

G_END_DECLS
