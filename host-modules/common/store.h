/*
 * vmaugment host side: the module store.
 *
 * A directory holding verified packages by content (objects/<sha256>.pkg),
 * which name and version point to which content (modules/<name>/<version>),
 * the highest version ever accepted per name (modules/<name>/.highest, for
 * rollback protection), unfinished uploads (uploads/), each VM's own area
 * (vms/, see vm-area.h) and an append-only audit log of every accept and
 * refuse decision (audit.log).
 *
 * Packages are shared by every VM the store serves: they are public,
 * signed and addressed by content.  Everything a VM writes is its own: an
 * unfinished upload belongs to the VM that began it (its owner) and nobody
 * else may see, resume, feed, commit or abort it.
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

#include <gio/gio.h>

#include "host-common.h"

G_BEGIN_DECLS

/* Where the VMs' own areas live, and the prefix of the areas of VMs that
 * name no image (they last as long as their connection). */
#define VMAUG_STORE_VMS_DIR         "vms"
#define VMAUG_STORE_EPHEMERAL_VM    "device-"

/* The helper's defaults of the limits below (a store opened elsewhere
 * has the upload ones, and no audit limit). */
#define VMAUG_STORE_UPLOAD_SLOTS    4
#define VMAUG_STORE_UPLOAD_BYTES    (256 * 1024 * 1024)
#define VMAUG_STORE_UPLOAD_IDLE_S   600
#define VMAUG_STORE_AUDIT_BURST     20
#define VMAUG_STORE_AUDIT_WINDOW_S  60

typedef struct _VmaugStore VmaugStore;

/* What one VM's unfinished uploads may hold. */
typedef struct {
    guint slots;                    /* uploads at once */
    guint64 bytes;                  /* their announced sizes together; one
                                     * package of the policy's largest size
                                     * always fits */
    gint64 idle_us;                 /* an upload that took no chunk for this
                                     * long is dropped */
} VmaugUploadLimits;

/*
 * The audit log cannot be flooded: each actor gets @burst records of each
 * action per @window_us; what it causes beyond that is counted per action
 * and written as one record with the count ("count") when the window ends
 * or the actor is flushed.  Accepted installs and commits, which change
 * the store, and lifecycle handlers that ran are always written one by
 * one.
 */
typedef struct {
    guint burst;
    gint64 window_us;
} VmaugAuditLimits;

/* Microseconds of a monotonic clock; tests inject their own. */
typedef gint64 (*VmaugClockFunc)(gpointer data);

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
/* The clock for upload idleness and audit windows (default: monotonic). */
void vmaug_store_set_clock(VmaugStore *store, VmaugClockFunc func,
                           gpointer data);

/*
 * Append one decision to the audit log.  @error NULL means accepted,
 * otherwise its message is the reason for the refusal.  Beyond the
 * actor's budget (VmaugAuditLimits) the record is counted, not written.
 */
void vmaug_store_audit(VmaugStore *store, const gchar *actor,
                       const gchar *action, const gchar *name,
                       const gchar *version, const gchar *sha256,
                       const gchar *signer, const GError *error);
void vmaug_store_set_audit_limits(VmaugStore *store,
                                  const VmaugAuditLimits *limits);
/* Write the counts held back for @actor (it is going away), or with
 * @actor NULL for every actor whose window ended. */
void vmaug_store_audit_flush(VmaugStore *store, const gchar *actor);

/* Write a file of the store: temporary file, fsync, rename, fsync the
 * directory; errors are VMAUG_HOST_ERROR_IO. */
gboolean vmaug_store_write_file(const gchar *path, const void *data,
                                gsize len, GError **error);

/* Remove what is below @dir but its subdirectory @keep when that holds
 * anything (NULL: keep nothing), and @dir itself when nothing was kept;
 * symlinks are removed, never followed. */
void vmaug_store_remove_tree(const gchar *dir, const gchar *keep);

/* Verify and store a complete package.  Refused: signature, manifest,
 * mix-and-match, rollback, same version with other content.  Exactly
 * this package already stored is success, audited as an acceptance with
 * the reason "already stored". */
VmaugManifest *vmaug_store_install(VmaugStore *store, GBytes *package,
                                   const gchar *actor, GError **error);
/* The same, telling whether the package was already stored; with
 * @already_stored NULL that is an error, VMAUG_HOST_ERROR_EXISTS. */
VmaugManifest *vmaug_store_install_full(VmaugStore *store, GBytes *package,
                                        const gchar *actor,
                                        gboolean *already_stored,
                                        GError **error);
/* The same on the store's own thread, one package entering the store at a
 * time (uploads' commits too): @callback runs in the caller's
 * thread-default main context and calls vmaug_store_install_finish().
 * vmaug_store_free() waits for what is in flight. */
void vmaug_store_install_async(VmaugStore *store, GBytes *package,
                               const gchar *actor,
                               GAsyncReadyCallback callback,
                               gpointer user_data);
VmaugManifest *vmaug_store_install_finish(VmaugStore *store,
                                          GAsyncResult *result,
                                          gboolean *already_stored,
                                          GError **error);

/* The given version (NULL or "" for the newest) of a module.  A version
 * is a number: "1.00" finds what is stored as "1.0", and only one
 * spelling of a number is ever stored. */
VmaugStoreEntry *vmaug_store_lookup(VmaugStore *store, const gchar *name,
                                    const gchar *version, GError **error);
/*
 * Keep what lookups find, for a process that looks up often (the helper
 * answers every QUERY, LOAD and LIST with lookups).  What is kept is
 * forgotten as soon as anything under modules/ changes, through this
 * store or any other process: inotify, read before each lookup, so a
 * change that finished before the lookup began is always seen.
 */
gboolean vmaug_store_cache_lookups(VmaugStore *store, GError **error);
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

/*
 * Uploads (VMAUG_OP_UPLOAD_* in the protocol header), each owned by the
 * VM that began it: @owner names its area ([A-Za-z0-9._-]+).  An upload id
 * of another owner is NOT_FOUND, as an unknown one.  A package (by SHA-256)
 * has at most one unfinished upload: BEGIN of one that another owner
 * uploads, or that the same owner announced with another size, name or
 * version, is BUSY.  BEGIN with the same announcement by the same owner
 * resumes it (also after a restart) without counting as activity: only a
 * chunk does.  COMMIT verifies a private copy of exactly the announced
 * size and writes the object anew; no descriptor anyone holds reaches it.
 */
void vmaug_store_set_upload_limits(VmaugStore *store,
                                   const VmaugUploadLimits *limits);
gboolean vmaug_store_upload_begin(VmaugStore *store, const gchar *owner,
                                  guint64 size, const guint8 sha256[32],
                                  const gchar *name, const gchar *version,
                                  const gchar *actor, guint64 *upload_id,
                                  guint64 *offset, GError **error);
gboolean vmaug_store_upload_chunk(VmaugStore *store, const gchar *owner,
                                  guint64 upload_id, guint64 offset,
                                  const guint8 *data, gsize len,
                                  guint64 *new_offset, GError **error);
/*
 * A chunk answered before it is written: whether the upload takes @len
 * bytes at @offset now (the same refusals as vmaug_store_upload_chunk()),
 * then, after the answer, the write itself, with nothing in between.  A
 * write that fails leaves the upload where it was and is said, once, to
 * its next chunk or commit (VMAUG_HOST_ERROR_IO).
 */
gboolean vmaug_store_upload_chunk_check(VmaugStore *store, const gchar *owner,
                                        guint64 upload_id, guint64 offset,
                                        gsize len, guint64 *new_offset,
                                        GError **error);
void vmaug_store_upload_chunk_write(VmaugStore *store, const gchar *owner,
                                    guint64 upload_id, guint64 offset,
                                    const guint8 *data, gsize len);
VmaugManifest *vmaug_store_upload_commit(VmaugStore *store,
                                         const gchar *owner,
                                         guint64 upload_id,
                                         const gchar *actor, GError **error);
/*
 * The same commit, whose reading, hashing, verifying and syncing run on
 * the store's commit thread: @callback runs in the caller's thread-default
 * main context and calls vmaug_store_upload_commit_finish().  Until then
 * the upload is BUSY to its owner (chunks, abort, another commit) and is
 * neither expired nor released; it ends with the commit either way.
 * vmaug_store_free() waits for the commits in flight.
 */
void vmaug_store_upload_commit_async(VmaugStore *store, const gchar *owner,
                                     guint64 upload_id, const gchar *actor,
                                     GAsyncReadyCallback callback,
                                     gpointer user_data);
VmaugManifest *vmaug_store_upload_commit_finish(VmaugStore *store,
                                                GAsyncResult *result,
                                                GError **error);
gboolean vmaug_store_upload_abort(VmaugStore *store, const gchar *owner,
                                  guint64 upload_id, const gchar *actor,
                                  GError **error);
/* Drop every unfinished upload of @owner (a VM that cannot come back). */
void vmaug_store_upload_release(VmaugStore *store, const gchar *owner,
                                const gchar *actor);
/* The owner's unfinished uploads: how many, and their announced bytes. */
void vmaug_store_upload_usage(VmaugStore *store, const gchar *owner,
                              guint *count, guint64 *bytes);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmaugStore, vmaug_store_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmaugStoreEntry, vmaug_store_entry_free)

G_END_DECLS

#endif /* VMAUGMENT_STORE_H */
