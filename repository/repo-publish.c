/*
 * vmaugment module repository: the publisher, writing static files.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "host-common.h"
#include "repo-private.h"

static gboolean repo_publish_fail(GError **error, VmaugRepoError code,
                                  const gchar *what, const GError *cause)
{
    g_set_error(error, VMAUG_REPO_ERROR, code, "%s: %s", what,
                cause->message);
    return FALSE;
}

/* Static files for a web server, so readable by others (0644); atomic and
 * durable so a reader sees the old file or the new one. */
static gboolean repo_publish_write(const gchar *path, const void *data,
                                   gsize len, GError **error)
{
    g_autoptr(GError) local = NULL;
    g_autofree gchar *dir = g_path_get_dirname(path);

    if (!g_file_set_contents_full(path, data, len,
                                  G_FILE_SET_CONTENTS_CONSISTENT |
                                  G_FILE_SET_CONTENTS_DURABLE, 0644, &local)) {
        return repo_publish_fail(error, VMAUG_REPO_ERROR_FAILED, path, local);
    }
    repo_fsync_dir(dir);
    return TRUE;
}

/* The index the directory holds now, or an empty one at version 0. */
static VmaugRepoIndex *repo_publish_current(const gchar *dir, GError **error)
{
    g_autofree gchar *path = g_build_filename(dir, VMAUG_REPO_INDEX_FILE,
                                              NULL);
    g_autoptr(GBytes) json = NULL;
    g_autoptr(GError) local = NULL;
    VmaugRepoIndex *index;

    if (!g_file_test(path, G_FILE_TEST_EXISTS)) {
        index = g_new0(VmaugRepoIndex, 1);
        index->entries = g_ptr_array_new_with_free_func(
            (GDestroyNotify)vmaug_repo_entry_free);
        return index;
    }
    json = vmaug_trust_read_file(path, VMAUG_REPO_MAX_INDEX_SIZE, &local);
    if (json == NULL) {
        repo_publish_fail(error, VMAUG_REPO_ERROR_FAILED, path, local);
        return NULL;
    }
    return repo_index_parse(json, error);
}

/* Verify one package and add it to @index (copying it into the
 * repository) unless the very same package is there already. */
static gboolean repo_publish_add(VmaugRepoIndex *index, const gchar *dir,
                                 const gchar *file, VmaugTrustStore *trust,
                                 GError **error)
{
    g_autoptr(GError) local = NULL;
    g_autoptr(GBytes) bytes = NULL;
    g_autoptr(VmaugPackage) pkg = NULL;
    g_autofree gchar *sha = NULL;
    g_autofree gchar *dest = NULL;
    const VmaugRepoEntry *old;
    VmaugRepoEntry *e;
    gsize len;
    const guint8 *data;

    bytes = vmaug_trust_read_file(file, VMAUG_PKG_DEFAULT_MAX_SIZE, &local);
    if (bytes == NULL) {
        return repo_publish_fail(error, VMAUG_REPO_ERROR_FAILED, file, local);
    }
    /* Publishing what every host would refuse helps nobody. */
    pkg = vmaug_package_verify(bytes, trust, VMAUG_PKG_DEFAULT_MAX_SIZE,
                               &local);
    if (pkg == NULL) {
        return repo_publish_fail(error, VMAUG_REPO_ERROR_PACKAGE, file, local);
    }
    data = g_bytes_get_data(bytes, &len);
    sha = repo_sha256_hex(data, len);
    old = vmaug_repo_index_lookup(index, pkg->manifest->name,
                                  pkg->manifest->version);
    if (old != NULL) {
        if (strcmp(old->sha256, sha) == 0) {
            return TRUE;
        }
        g_set_error(error, VMAUG_REPO_ERROR, VMAUG_REPO_ERROR_MISMATCH,
                    "%s: %s %s is already published with other content",
                    file, old->name, old->version);
        return FALSE;
    }
    e = g_new0(VmaugRepoEntry, 1);
    e->name = g_strdup(pkg->manifest->name);
    e->version = g_strdup(pkg->manifest->version);
    e->sha256 = g_steal_pointer(&sha);
    e->size = len;
    e->path = g_strdup_printf(VMAUG_REPO_PACKAGE_DIR "/%s-%s.vmod", e->name,
                              e->version);
    g_ptr_array_add(index->entries, e);
    dest = g_build_filename(dir, e->path, NULL);
    return repo_publish_write(dest, data, len, error);
}

/* Drop signatures of indexes older than the previous one: a reader that
 * fetched the previous index a moment ago still finds its signature. */
static void repo_publish_prune(const gchar *sig_dir, const gchar *keep1,
                               const gchar *keep2)
{
    g_autoptr(GDir) d = g_dir_open(sig_dir, 0, NULL);
    const gchar *n;

    while (d != NULL && (n = g_dir_read_name(d)) != NULL) {
        g_autofree gchar *p = NULL;

        if (!g_str_has_prefix(n, "index-") || !g_str_has_suffix(n, ".p7s") ||
            (keep1 != NULL && strstr(n, keep1) != NULL) ||
            (keep2 != NULL && strstr(n, keep2) != NULL)) {
            continue;
        }
        p = g_build_filename(sig_dir, n, NULL);
        g_unlink(p);
    }
}

VmaugRepoIndex *vmaug_repo_publish(const VmaugRepoPublishOptions *opts,
                                   const gchar *const *packages,
                                   GError **error)
{
    g_autoptr(GError) local = NULL;
    g_autoptr(VmaugTrustIdentity) id = NULL;
    g_autoptr(VmaugTrustStore) trust = NULL;
    g_autoptr(VmaugRepoIndex) index = NULL;
    g_autoptr(GBytes) json_bytes = NULL;
    g_autoptr(GBytes) signed_bytes = NULL;
    g_autoptr(GBytes) sig = NULL;
    g_autofree gchar *old_sha = NULL;
    g_autofree gchar *json = NULL;
    g_autofree gchar *pkg_dir = NULL;
    g_autofree gchar *sig_dir = NULL;
    g_autofree gchar *sig_path = NULL;
    g_autofree gchar *index_path = NULL;
    gint64 old_version;

    if (opts->dir == NULL || opts->key_path == NULL ||
        opts->cert_path == NULL) {
        g_set_error(error, VMAUG_REPO_ERROR, VMAUG_REPO_ERROR_INVALID,
                    "a repository directory, key and certificate are "
                    "required");
        return NULL;
    }
    id = vmaug_trust_identity_load(opts->key_path, opts->cert_path, &local);
    if (id == NULL) {
        repo_publish_fail(error, VMAUG_REPO_ERROR_FAILED, opts->key_path,
                          local);
        return NULL;
    }
    if (opts->trust_dir != NULL) {
        trust = vmaug_trust_store_new_from_dir(opts->trust_dir, &local);
    } else {
        g_autoptr(GBytes) cert = vmaug_trust_identity_get_certificate(id,
                                                                      &local);

        trust = vmaug_trust_store_new();
        if (cert == NULL ||
            !vmaug_trust_store_add_certificate(trust, cert, &local)) {
            g_clear_pointer(&trust, vmaug_trust_store_free);
        }
    }
    if (trust == NULL) {
        repo_publish_fail(error, VMAUG_REPO_ERROR_FAILED, "trust store",
                          local);
        return NULL;
    }

    pkg_dir = g_build_filename(opts->dir, VMAUG_REPO_PACKAGE_DIR, NULL);
    sig_dir = g_build_filename(opts->dir, VMAUG_REPO_SIGNATURE_DIR, NULL);
    if (g_mkdir_with_parents(pkg_dir, 0755) != 0 ||
        g_mkdir_with_parents(sig_dir, 0755) != 0) {
        g_set_error(error, VMAUG_REPO_ERROR, VMAUG_REPO_ERROR_FAILED,
                    "cannot create %s: %s", opts->dir, g_strerror(errno));
        return NULL;
    }
    index = repo_publish_current(opts->dir, error);
    if (index == NULL) {
        return NULL;
    }
    old_version = index->version;
    old_sha = g_steal_pointer(&index->sha256);
    for (guint i = 0; packages != NULL && packages[i] != NULL; i++) {
        if (!repo_publish_add(index, opts->dir, packages[i], trust, error)) {
            return NULL;
        }
    }
    if (opts->version == 0 && old_version == G_MAXINT64) {
        g_set_error(error, VMAUG_REPO_ERROR, VMAUG_REPO_ERROR_INVALID,
                    "metadata version cannot grow any more");
        return NULL;
    }
    if (opts->version != 0 && opts->version <= old_version) {
        g_set_error(error, VMAUG_REPO_ERROR, VMAUG_REPO_ERROR_ROLLBACK,
                    "metadata version %" G_GINT64_FORMAT " is not above the "
                    "published %" G_GINT64_FORMAT, opts->version, old_version);
        return NULL;
    }
    index->version = opts->version ? opts->version : old_version + 1;
    index->expires = opts->expires;

    json = repo_index_to_json(index);
    json_bytes = g_bytes_new(json, strlen(json));
    signed_bytes = repo_index_signed_bytes(json_bytes);
    sig = vmaug_trust_identity_sign(id, signed_bytes, &local);
    if (sig == NULL) {
        repo_publish_fail(error, VMAUG_REPO_ERROR_FAILED, "signing the index",
                          local);
        return NULL;
    }
    index->sha256 = repo_sha256_hex(json, strlen(json));
    index->signer = vmaug_trust_identity_get_name(id);
    sig_path = g_strdup_printf("%s/index-%s.p7s", sig_dir, index->sha256);
    index_path = g_build_filename(opts->dir, VMAUG_REPO_INDEX_FILE, NULL);
    /* Packages, then the signature, then the index that refers to both. */
    if (!repo_publish_write(sig_path, g_bytes_get_data(sig, NULL),
                            g_bytes_get_size(sig), error) ||
        !repo_publish_write(index_path, json, strlen(json), error)) {
        return NULL;
    }
    repo_publish_prune(sig_dir, index->sha256, old_sha);
    return g_steal_pointer(&index);
}
