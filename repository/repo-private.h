/*
 * vmaugment module repository: internals shared by the client and the
 * publisher.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VMAUGMENT_REPO_PRIVATE_H
#define VMAUGMENT_REPO_PRIVATE_H

#include <json-glib/json-glib.h>

#include "vmaugment-repo.h"
#include "vmaugment-trust.h"

/* Make a rename or a new file in @dir durable. */
void repo_fsync_dir(const gchar *dir);
/* Lower-case hex of a SHA-256 digest of @data. */
gchar *repo_sha256_hex(const void *data, gsize len);
/* The bytes a repository index signature covers: the context string, then
 * the index. */
GBytes *repo_index_signed_bytes(GBytes *index_json);
/* Parse and check an index (after its signature verified). */
VmaugRepoIndex *repo_index_parse(GBytes *json, GError **error);
/* The canonical JSON of @index (version, expiry and entries). */
gchar *repo_index_to_json(const VmaugRepoIndex *index);
/* Its members, added to the object @b is building (what vmaugment-repo
 * list --json reports too). */
void repo_index_build(JsonBuilder *b, const VmaugRepoIndex *index);
/* A relative path inside the repository: '/'-separated components of
 * [A-Za-z0-9._-], none "." or "..", not empty, no leading '/'. */
gboolean repo_path_is_valid(const gchar *path);
/* Map a trust library error on the index signature to VMAUG_REPO_ERROR. */
void repo_propagate_signature_error(GError **error, GError *local,
                                    const gchar *what);
/*
 * Refuse @index when its version is lower than the highest this state
 * directory accepted for @url, or equal with other content; otherwise
 * record it (atomically and durably) as the highest.
 */
gboolean repo_state_admit(const gchar *state_dir, const gchar *url,
                          const VmaugRepoIndex *index, GError **error);

#endif /* VMAUGMENT_REPO_PRIVATE_H */
