/*
 * vmaugment module repository: fetch straight into the module store.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <glib/gstdio.h>

#include "host-common.h"
#include "store.h"
#include "repo-private.h"

VmaugRepoResult *vmaug_repo_install(const VmaugRepoOptions *opts,
                                    VmaugStore *store, const gchar *name,
                                    const gchar *version, const gchar *actor,
                                    GError **error)
{
    g_autoptr(VmaugRepoResult) r = NULL;
    g_autoptr(GError) local = NULL;
    g_autoptr(GBytes) pkg = NULL;
    g_autoptr(VmaugManifest) m = NULL;
    g_autofree gchar *downloads = NULL;

    if (opts->state_dir == NULL) {
        g_set_error(error, VMAUG_REPO_ERROR, VMAUG_REPO_ERROR_INVALID,
                    "repository state directory is required");
        return NULL;
    }
    /* Our own directory: the store's is the store's business. */
    downloads = g_build_filename(opts->state_dir, "downloads", NULL);
    r = vmaug_repo_fetch(opts, name, version, downloads, &local);
    /* The owner sees every repository decision in the store's audit log,
     * refusals with their reason. */
    vmaug_store_audit(store, actor, "repo-fetch", r ? r->name : name,
                      r ? r->version : version, r ? r->sha256 : NULL,
                      r ? r->signer : NULL, local);
    if (r == NULL) {
        g_propagate_error(error, g_steal_pointer(&local));
        return NULL;
    }
    pkg = vmaug_trust_read_file(r->path, r->size, &local);
    /* The store keeps its own copy by content; ours has served. */
    g_unlink(r->path);
    if (pkg == NULL) {
        g_set_error(error, VMAUG_REPO_ERROR, VMAUG_REPO_ERROR_FAILED,
                    "package %s %s: %s", r->name, r->version, local->message);
        return NULL;
    }
    /* The store's own checks follow (and audit): signature again, its
     * per-module rollback rule, one content per version. */
    m = vmaug_store_install(store, pkg, actor, &local);
    if (m == NULL) {
        g_propagate_prefixed_error(error, g_steal_pointer(&local),
                                   "package %s %s from %s: ", r->name,
                                   r->version, opts->url);
        return NULL;
    }
    g_clear_pointer(&r->path, g_free);
    return g_steal_pointer(&r);
}
