/*
 * Patch bundles: a tar archive holding manifest.json, its detached PKCS#7
 * signature manifest.json.p7s, and payload/<name> files whose SHA-256 the
 * signed manifest lists.  See docs/offline.rst.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include <json-glib/json-glib.h>

#include "vo-disk.h"

G_BEGIN_DECLS

#define VO_BUNDLE_FORMAT 1
#define VO_BUNDLE_MAX_MANIFEST (1024 * 1024)
#define VO_BUNDLE_MAX_PAYLOAD_TOTAL (1024ull * 1024 * 1024)
#define VO_BUNDLE_MAX_OPS 10000

typedef enum {
    VO_FILE_OP_MKDIR,
    VO_FILE_OP_ADD,
    VO_FILE_OP_REPLACE,
    VO_FILE_OP_DELETE,
    VO_FILE_OP_CHMOD,
    VO_FILE_OP_CHOWN,
    VO_FILE_OP_XATTR,
    /* Moves what the host's ClamAV database finds aside into "path"
     * (vo-quarantine.h): the files it changes are not in the bundle. */
    VO_FILE_OP_QUARANTINE,
} VoFileOpKind;

typedef struct {
    VoFileOpKind kind;
    char *path;
    char *payload;          /* add, replace */
    GBytes *data;           /* borrowed from the bundle's payloads */
    char *new_sha256;       /* of data */
    char *old_sha256;       /* replace (required), delete (optional) */
    gboolean has_mode, has_uid, has_gid;
    guint32 mode, uid, gid;
    GBytes *owned_data;     /* content made from the manifest (marker) */
    char *xattr_name;       /* xattr */
    GBytes *xattr_value;    /* xattr; NULL removes */
    /* quarantine, in the worker: what the scan found (VoQuarantineHit*),
     * NULL before a scan (vo-quarantine.h). */
    GPtrArray *hits;
} VoFileOp;

/* One package of "packages": a .deb to unpack with dpkg's semantics. */
typedef struct {
    char *payload;
    GBytes *data;           /* borrowed from the bundle's payloads */
    char *package;
    char *architecture;
    char *version;
    char *old_version;      /* NULL: not installed before */
} VoPackageOp;

typedef struct {
    char *id;
    char *version;
    char *description;
    JsonNode *manifest;     /* the whole signed manifest */
    JsonArray *rules;       /* borrowed from manifest; may be NULL */
    GPtrArray *files;       /* VoFileOp* */
    GPtrArray *registry;    /* VoRegOp* */
    GPtrArray *packages;    /* VoPackageOp*, in apt's order */
    GHashTable *payloads;   /* name -> GBytes* */
    char *signer;           /* common name of the trusted signer */
    char *signer_fingerprint;
    /* SHA-256 of the manifest when it has a "marker": the guest reports
     * the update at its next boot, the host awaits that (servicing.h). */
    char *marker_sha256;
    /* The signed file as read and verified (vo_bundle_load() only): what
     * the worker is handed. */
    GBytes *bytes;
} VoBundle;

/* Reads, checks the signature against the trust store directory, then
 * parses the manifest and checks every payload's hash. */
VoBundle *vo_bundle_load(const char *path, const char *trust_dir,
                         GError **error);
/* The same on @len bytes of a bundle already in memory, called @name in
 * messages. */
VoBundle *vo_bundle_load_data(const void *data, gsize len, const char *name,
                              const char *trust_dir, GError **error);
/*
 * A bundle whose bytes the caller's parent verified with
 * vo_bundle_load_data() and handed over sealed: parsed like any other,
 * but its signature is not checked again (the offline worker has no
 * trust store): @signer and @fingerprint are what the parent found.
 * Never for bytes of any other origin.
 */
VoBundle *vo_bundle_load_checked_data(const void *data, gsize len,
                                      const char *name, const char *signer,
                                      const char *fingerprint,
                                      GError **error);
/* The manifest checks of vo_bundle_load() on @manifest with @payloads
 * (name -> GBytes*, referenced) but no signature: for the fuzz target
 * and for vo_bundle_build_manifest() before it signs, since nothing
 * unsigned may be applied. */
VoBundle *vo_bundle_parse_unverified(GBytes *manifest, GHashTable *payloads,
                                     GError **error);
void vo_bundle_free(VoBundle *bundle);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VoBundle, vo_bundle_free)

/* Builds a bundle: fills the manifest's "payload" table from the files in
 * @payload_dir that the file and package instructions name, and signs
 * it. */
gboolean vo_bundle_build(const char *manifest_path, const char *payload_dir,
                         const char *key_path, const char *cert_path,
                         const char *out_path, GError **error);
/* The same for a manifest in memory (@root, whose "payload" table is
 * replaced) and @payloads already read (name -> GBytes*). */
gboolean vo_bundle_build_manifest(JsonNode *root, GHashTable *payloads,
                                  const char *key_path,
                                  const char *cert_path,
                                  const char *out_path, GError **error);

const char *vo_file_op_name(VoFileOpKind kind);
/* The bundle's quarantine instruction (at most one), or NULL. */
VoFileOp *vo_bundle_quarantine_op(VoBundle *bundle);
char *vo_sha256(GBytes *data);

G_END_DECLS
