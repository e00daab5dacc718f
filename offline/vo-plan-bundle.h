/*
 * A signed update bundle from a plan ('bundle-build --plan'): the .deb
 * files apt chose for one group of images, and rules that pin the
 * versions they replace.  docs/offline.rst ("A bundle from a plan") is
 * normative.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include <json-glib/json-glib.h>

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

/* Group @index of the plan @root, which has the plan "format" and a
 * "groups" array; -1 is fine only for a single group. */
JsonObject *vo_plan_bundle_group(JsonNode *root, int index, GError **error);

/* The file @name (a plain name) from @dir, which must be what the plan
 * recorded: SHA-256 @sha256. */
GBytes *vo_plan_bundle_file(const char *dir, const char *name,
                            const char *sha256, GError **error);

G_END_DECLS
