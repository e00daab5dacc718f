/*
 * vmaugment host side: module packages, the module store and the audit
 * log, shared by the helper and vmaugment-pack.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VMAUGMENT_HOST_COMMON_H
#define VMAUGMENT_HOST_COMMON_H

#include <glib.h>
#include <linux/virtio_vmaugment.h>

#include "json-strict.h"
#include "vmaugment-trust.h"

G_BEGIN_DECLS

#define VMAUG_HOST_VERSION          "0.1.0"

/* ---- Errors (each maps to one VMAUG_S_* status) ---- */

#define VMAUG_HOST_ERROR (vmaug_host_error_quark())
GQuark vmaug_host_error_quark(void);

typedef enum {
    VMAUG_HOST_ERROR_IO,            /* VMAUG_S_IO_ERROR */
    VMAUG_HOST_ERROR_INVALID,       /* VMAUG_S_INVALID: malformed */
    VMAUG_HOST_ERROR_TOO_BIG,       /* VMAUG_S_TOO_BIG */
    VMAUG_HOST_ERROR_NOT_FOUND,     /* VMAUG_S_NOT_FOUND */
    VMAUG_HOST_ERROR_EXISTS,        /* VMAUG_S_EXISTS */
    VMAUG_HOST_ERROR_DENIED,        /* VMAUG_S_DENIED: signature, policy */
    VMAUG_HOST_ERROR_HASH_MISMATCH, /* VMAUG_S_HASH_MISMATCH */
    VMAUG_HOST_ERROR_BUSY,          /* VMAUG_S_BUSY */
    VMAUG_HOST_ERROR_MODULE_FAILED, /* VMAUG_S_MODULE_FAILED */
    VMAUG_HOST_ERROR_TIMEOUT,       /* VMAUG_S_TIMEOUT */
} VmaugHostError;

/* The VMAUG_S_* status for an error of any domain. */
guint16 vmaug_host_error_status(const GError *error);
/* The error a peer meant by answering @status (not VMAUG_S_OK): the
 * VMAUG_HOST_ERROR that is answered with it, else G_IO_ERROR_FAILED. */
void vmaug_host_error_set_status(GError **error, guint16 status,
                                 const gchar *format, ...)
    G_GNUC_PRINTF(3, 4);

/* ---- Names and versions ---- */

/* [a-z][a-z0-9_-]*, shorter than VMAUG_NAME_MAX. */
gboolean vmaug_name_is_valid(const gchar *name);
/* 1 to 4 dot-separated decimal numbers (each < 2^31), shorter than
 * VMAUG_VERSION_MAX. */
gboolean vmaug_version_is_valid(const gchar *version);
/* A key of a module's configuration: UTF-8, 1 to VMAUG_CONFIG_KEY_MAX - 1
 * bytes. */
gboolean vmaug_config_key_is_valid(const gchar *key);
/* Numeric comparison of two valid versions ("1.10" > "1.9", "1.0" == "1"). */
gint vmaug_version_compare(const gchar *a, const gchar *b);
/* A NUL-padded fixed field of the protocol as a valid UTF-8 string, or
 * NULL when it has no NUL or is not UTF-8. */
gchar *vmaug_fixed_string(const guint8 *field, gsize size);

/* ---- Manifests and packages ---- */

/* Limits checked before anything is read or parsed. */
#define VMAUG_PKG_MAX_MANIFEST      (64 * 1024)
#define VMAUG_PKG_DEFAULT_MAX_SIZE  (64 * 1024 * 1024)
#define VMAUG_PKG_MAX_FUNCTIONS     64
#define VMAUG_PKG_MAX_CAPABILITIES  16

/*
 * Package file layout (little-endian):
 *   0  "VMAUGPKG"                 8 bytes
 *   8  format (1)                 le32
 *  12  manifest length            le32, 1 .. VMAUG_PKG_MAX_MANIFEST
 *  16  signature length           le32, 1 .. VMAUG_TRUST_MAX_SIGNATURE_SIZE
 *  20  reserved (0)               le32
 *  24  payload length             le64
 *  32  manifest (JSON), payload (ELF), signature (DER PKCS#7)
 * The signature covers VMAUG_PKG_SIGNING_CONTEXT followed by the manifest;
 * the manifest holds the payload's size and SHA-256, so manifest and
 * payload are bound together and cannot be mixed across packages.
 */
#define VMAUG_PKG_MAGIC             "VMAUGPKG"
#define VMAUG_PKG_FORMAT            1
#define VMAUG_PKG_HEADER_SIZE       32
#define VMAUG_PKG_SIGNING_CONTEXT   "vmaugment module manifest v1\n"

typedef struct {
    gchar *name;
    gchar *version;
    guint32 kind;                   /* VMAUG_KIND_* */
    guint32 abi;                    /* VMAUG_MODULE_ABI_VERSION */
    gchar *arch;                    /* "x86_64", ... */
    gchar *min_host_version;
    gchar *entry;                   /* exported symbol */
    guint32 events;                 /* VMAUG_EVENT_MASK() bits */
    GStrv functions;
    GStrv capabilities;
    guint64 payload_size;
    guint8 payload_sha256[32];
} VmaugManifest;

void vmaug_manifest_free(VmaugManifest *m);
/* Parse and check a manifest: every member's JSON type, ranges, no
 * unknown members. */
VmaugManifest *vmaug_manifest_parse(const gchar *json, gsize len,
                                    GError **error);
/* Names for kinds and lifecycle events as manifests spell them. */
const gchar *vmaug_kind_to_string(guint32 kind);
gboolean vmaug_manifest_has_function(const VmaugManifest *m,
                                     const gchar *function);
gboolean vmaug_manifest_has_capability(const VmaugManifest *m,
                                       const gchar *cap);

typedef struct {
    GBytes *file;                   /* the whole package */
    VmaugManifest *manifest;
    VmaugTrustSigner *signer;
    gsize payload_offset;
} VmaugPackage;

void vmaug_package_free(VmaugPackage *pkg);
/*
 * Check a package completely: layout and sizes, the signature over the
 * manifest against @trust (before the manifest is parsed), the manifest,
 * and that the payload is the one the manifest names.  Nothing of the
 * payload is interpreted.  Errors are VMAUG_HOST_ERROR_DENIED (signature,
 * mix-and-match, wrong architecture or ABI), _INVALID, _TOO_BIG.
 */
VmaugPackage *vmaug_package_verify(GBytes *file, VmaugTrustStore *trust,
                                   guint64 max_size, GError **error);
/* The payload bytes of a verified package. */
GBytes *vmaug_package_get_payload(VmaugPackage *pkg);
/* Build a package from a manifest template and a payload, signed by
 * @signer.  The payload's size and hash are filled in, as are format, abi,
 * entry, arch and min_host_version when absent; @version, when not NULL,
 * replaces the template's. */
GBytes *vmaug_package_build(const gchar *manifest_json, const gchar *version,
                            GBytes *payload, VmaugTrustIdentity *signer,
                            GError **error);
/*
 * What the helper's loader needs of a payload for @arch, checked before
 * signing (vmaugment-pack create): an ELF shared object of that machine
 * and class.  Errors are VMAUG_HOST_ERROR_INVALID.
 */
gboolean vmaug_payload_check(GBytes *payload, const gchar *arch,
                             GError **error);
/* The machine architecture packages are built for here. */
const gchar *vmaug_host_arch(void);

/* ---- Policy ---- */

typedef struct {
    gboolean allow_rollback;
    guint64 max_package_size;
    /* module name or "*" -> GStrv of capabilities granted */
    GHashTable *grants;
    /* module name -> GStrv of host directories it may read (host-read) */
    GHashTable *read_roots;
} VmaugPolicy;

VmaugPolicy *vmaug_policy_new_default(void);
/* {"allow_rollback": bool, "max_package_size": int,
 *  "grants": {"*": ["log", ...], "printer": ["spool"]},
 *  "read_roots": {"scanner": ["/srv/share"]}} */
VmaugPolicy *vmaug_policy_load(const gchar *path, GError **error);
gboolean vmaug_policy_grants(const VmaugPolicy *policy, const gchar *module,
                             const gchar *cap);
void vmaug_policy_free(VmaugPolicy *policy);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmaugManifest, vmaug_manifest_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmaugPackage, vmaug_package_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmaugPolicy, vmaug_policy_free)

G_END_DECLS

#endif /* VMAUGMENT_HOST_COMMON_H */
