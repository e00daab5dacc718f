/*
 * vmaugment host side: the module store.
 *
 * A directory holding verified packages by content (objects/<sha256>.pkg),
 * which name and version point to which content (modules/<name>/<version>),
 * the highest version ever accepted per name (modules/<name>/.highest, for
 * rollback protection), unfinished uploads (uploads/) and an append-only
 * audit log of every accept and refuse decision (audit.log).
 *
 * Every change is written to a temporary file, synced and renamed, so a
 * crash leaves either the old or the new state; vmaug_store_open() removes
 * leftovers and references to missing content.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VMAUGMENT_STORE_H
#define VMAUGMENT_STORE_H

#include "host-common.h"

G_BEGIN_DECLS

/* Unfinished uploads a store keeps at once; when all are taken, one idle
 * this long is dropped for a new one. */
#define VMAUG_STORE_MAX_UPLOADS     4
#define VMAUG_STORE_UPLOAD_IDLE_S   600

typedef struct _VmaugStore VmaugStore;

typedef struct {
    gchar *name;
    gchar *version;
    gchar *sha256;                  /* of the whole package, hex */
} VmaugStoreEntry;

void vmaug_store_entry_free(VmaugStoreEntry *e);

/* Open (creating it if needed) and repair the store in @dir.  @trust and
 * @policy must outlive the store.  While another process has it open (the
 * helper, when vmaugment-admin runs), it is neither repaired nor are its
 * unfinished uploads taken over: those are the other process's. */
VmaugStore *vmaug_store_open(const gchar *dir, VmaugTrustStore *trust,
                             const VmaugPolicy *policy, GError **error);
void vmaug_store_free(VmaugStore *store);
const gchar *vmaug_store_get_dir(VmaugStore *store);

/*
 * Append one decision to the audit log.  @error NULL means accepted,
 * otherwise its message is the reason for the refusal.
 */
void vmaug_store_audit(VmaugStore *store, const gchar *actor,
                       const gchar *action, const gchar *name,
                       const gchar *version, const gchar *sha256,
                       const gchar *signer, const GError *error);

/* Write a file of the store: temporary file, fsync, rename, fsync the
 * directory; errors are VMAUG_HOST_ERROR_IO. */
gboolean vmaug_store_write_file(const gchar *path, const void *data,
                                gsize len, GError **error);

/* Verify and store a complete package.  Refused: signature, manifest,
 * mix-and-match, rollback, same version with other content. */
VmaugManifest *vmaug_store_install(VmaugStore *store, GBytes *package,
                                   const gchar *actor, GError **error);

/* The given version (NULL or "" for the newest) of a module. */
VmaugStoreEntry *vmaug_store_lookup(VmaugStore *store, const gchar *name,
                                    const gchar *version, GError **error);
/* Read a stored package and verify it again (trust may have changed:
 * expiry, revocation; the file may have been altered on disk).  The
 * decision is audited as @action; with @action NULL only a refusal is. */
VmaugPackage *vmaug_store_open_package(VmaugStore *store, const gchar *name,
                                       const gchar *version,
                                       const gchar *actor,
                                       const gchar *action, GError **error);
/* Refuse (and audit) running @version when a higher one of @name was
 * accepted, unless the policy allows rollback. */
gboolean vmaug_store_check_version(VmaugStore *store, const gchar *name,
                                   const gchar *version, const gchar *actor,
                                   GError **error);
/* Every stored module version, sorted by name then version. */
GPtrArray *vmaug_store_list(VmaugStore *store);

/* Uploads: see VMAUG_OP_UPLOAD_* in the protocol header. */
void vmaug_store_set_upload_idle(VmaugStore *store, guint seconds);
gboolean vmaug_store_upload_begin(VmaugStore *store, guint64 size,
                                  const guint8 sha256[32], const gchar *name,
                                  const gchar *version, const gchar *actor,
                                  guint64 *upload_id, guint64 *offset,
                                  GError **error);
gboolean vmaug_store_upload_chunk(VmaugStore *store, guint64 upload_id,
                                  guint64 offset, const guint8 *data,
                                  gsize len, guint64 *new_offset,
                                  GError **error);
VmaugManifest *vmaug_store_upload_commit(VmaugStore *store,
                                         guint64 upload_id,
                                         const gchar *actor, GError **error);
gboolean vmaug_store_upload_abort(VmaugStore *store, guint64 upload_id,
                                  const gchar *actor, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmaugStore, vmaug_store_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmaugStoreEntry, vmaug_store_entry_free)

G_END_DECLS

#endif /* VMAUGMENT_STORE_H */
