/*
 * vmaugment module repository: signed metadata and package download.
 *
 * A repository is a directory of static files served over HTTPS:
 *
 *   index.json                       the index (see docs/repository.rst)
 *   signatures/index-<sha256>.p7s    its detached signature, named by the
 *                                    SHA-256 of the index bytes
 *   packages/<name>-<version>.vmod   the packages
 *
 * The index is signed with the trust library over
 * VMAUG_REPO_INDEX_SIGNING_CONTEXT followed by the index bytes; it carries
 * a metadata version that only grows, an expiry time, and for every package
 * its name, version, size, SHA-256 and relative path.  A client refuses an
 * index that is unsigned, signed by someone its trust store does not trust,
 * expired, or older than one it accepted before (rollback), and a package
 * whose bytes differ from what the index says or whose own signature does
 * not verify.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VMAUGMENT_REPO_H
#define VMAUGMENT_REPO_H

#include <glib.h>

G_BEGIN_DECLS

#define VMAUG_REPO_INDEX_FORMAT           1
#define VMAUG_REPO_INDEX_SIGNING_CONTEXT  "vmaugment repository index v1\n"
#define VMAUG_REPO_INDEX_FILE             "index.json"
#define VMAUG_REPO_SIGNATURE_DIR          "signatures"
#define VMAUG_REPO_PACKAGE_DIR            "packages"

/* Caps applied before anything is parsed or stored. */
#define VMAUG_REPO_MAX_INDEX_SIZE         (1024 * 1024)
#define VMAUG_REPO_MAX_INDEX_ENTRIES      4096
#define VMAUG_REPO_MAX_PATH               255
#define VMAUG_REPO_MAX_URL                2048
#define VMAUG_REPO_DEFAULT_MAX_PACKAGE    (64 * 1024 * 1024)

/* Time bounds by default. */
#define VMAUG_REPO_DEFAULT_TIMEOUT_MS     120000
#define VMAUG_REPO_DEFAULT_CONNECT_MS     10000
#define VMAUG_REPO_DEFAULT_LOW_SPEED_BPS  1024
#define VMAUG_REPO_DEFAULT_LOW_SPEED_S    15

#define VMAUG_REPO_ERROR (vmaug_repo_error_quark())
GQuark vmaug_repo_error_quark(void);

typedef enum {
    /* Local trouble: I/O in the destination or state directory. */
    VMAUG_REPO_ERROR_FAILED,
    /* A bad argument, or metadata that is malformed. */
    VMAUG_REPO_ERROR_INVALID,
    /* The server could not be reached or answered other than 200. */
    VMAUG_REPO_ERROR_NETWORK,
    /* TLS failed: certificate not trusted, wrong host name, handshake. */
    VMAUG_REPO_ERROR_TLS,
    /* The overall or the low-speed time bound was hit. */
    VMAUG_REPO_ERROR_TIMEOUT,
    /* A body larger than the index announces or than the hard cap. */
    VMAUG_REPO_ERROR_TOO_BIG,
    /* The index signature is missing, bad, or not by a trusted signer. */
    VMAUG_REPO_ERROR_SIGNATURE,
    /* The index is past its expiry time. */
    VMAUG_REPO_ERROR_EXPIRED,
    /* The index is older than one accepted before from this repository. */
    VMAUG_REPO_ERROR_ROLLBACK,
    /* A package's size or SHA-256 differs from the index. */
    VMAUG_REPO_ERROR_MISMATCH,
    /* The index has no such module (or version). */
    VMAUG_REPO_ERROR_NOT_FOUND,
    /* The package itself is refused: its signature or manifest, or it is
     * not the name and version the index says. */
    VMAUG_REPO_ERROR_PACKAGE,
} VmaugRepoError;

/* Where to fetch from and what to trust; see vmaug_repo_options_init(). */
typedef struct {
    /* https:// base URL of the repository (no query, no fragment). */
    const gchar *url;
    /* The host's trust store directory: the index and the packages must be
     * signed by an administrator it trusts. */
    const gchar *trust_dir;
    /* Where the highest metadata version seen per repository is kept
     * (created when missing, mode 0700). */
    const gchar *state_dir;
    /* PEM CA certificates for TLS, for a private repository; NULL for the
     * system's CA store.  Certificate and host name checking are always
     * on. */
    const gchar *ca_file;
    /* Bound on the whole fetch (index, signature and package), ms. */
    guint timeout_ms;
    /* Bound on each TCP + TLS connection setup, ms. */
    guint connect_timeout_ms;
    /* A transfer slower than low_speed_bps for low_speed_s seconds is
     * aborted. */
    guint low_speed_bps;
    guint low_speed_s;
    /* Hard cap on a package, whatever the index says. */
    guint64 max_package_size;
} VmaugRepoOptions;

/* Fill in the defaults; the caller then sets url, trust_dir, state_dir. */
void vmaug_repo_options_init(VmaugRepoOptions *opts);

/* One package of an index. */
typedef struct {
    gchar *name;
    gchar *version;
    gchar *sha256;          /* 64 lower-case hex digits */
    guint64 size;
    gchar *path;            /* relative to the repository URL */
} VmaugRepoEntry;

void vmaug_repo_entry_free(VmaugRepoEntry *entry);

/* A verified index. */
typedef struct {
    gint64 version;         /* metadata version, >= 1 */
    gint64 expires;         /* seconds since the Epoch, UTC */
    gchar *signer;          /* common name of the signing administrator */
    gchar *sha256;          /* of the index bytes */
    GPtrArray *entries;     /* of VmaugRepoEntry, as listed */
} VmaugRepoIndex;

void vmaug_repo_index_free(VmaugRepoIndex *index);
/* The entry for @name at @version, or the highest version when @version
 * is NULL or empty; NULL when absent. */
const VmaugRepoEntry *vmaug_repo_index_lookup(const VmaugRepoIndex *index,
                                              const gchar *name,
                                              const gchar *version);

/*
 * Download the index and its signature, verify them against the trust
 * store, check expiry and rollback, and record the accepted metadata
 * version in the state directory.  Errors are VMAUG_REPO_ERROR.
 */
VmaugRepoIndex *vmaug_repo_fetch_index(const VmaugRepoOptions *opts,
                                       GError **error);

/* What vmaug_repo_fetch() stored. */
typedef struct {
    gchar *name;
    gchar *version;
    gchar *sha256;
    guint64 size;
    gchar *path;            /* the file written in the destination dir */
    gchar *signer;          /* common name of the package's signer */
    gint64 index_version;
} VmaugRepoResult;

void vmaug_repo_result_free(VmaugRepoResult *result);

/*
 * Fetch module @name at @version (NULL or "" for the newest the index
 * lists) into @dest_dir as "<name>-<version>.vmod": the verified index
 * first (as vmaug_repo_fetch_index()), then the package, streamed into a
 * temporary file in @dest_dir, checked against the index's size and
 * SHA-256 while it arrives, then its own signature and manifest (name and
 * version must be the index's), then synced and renamed into place.  On
 * any failure nothing is left in @dest_dir.  Errors are VMAUG_REPO_ERROR
 * and their messages name the reason.
 */
VmaugRepoResult *vmaug_repo_fetch(const VmaugRepoOptions *opts,
                                  const gchar *name, const gchar *version,
                                  const gchar *dest_dir, GError **error);

/* The host's module store (host-modules/common/store.h). */
typedef struct _VmaugStore VmaugStore;

/*
 * Fetch as vmaug_repo_fetch() into "downloads" below the state directory,
 * then install the package into @store with vmaug_store_install() (which
 * verifies it again and applies the store's rules: per-module rollback,
 * one content per version) and remove the download.  The repository's
 * decision is appended to the store's audit log as action "repo-fetch" by
 * @actor, the installation's as "install".  Returns what was installed
 * (path NULL).  Errors are VMAUG_REPO_ERROR, or the store's
 * VMAUG_HOST_ERROR prefixed with the package and repository.
 */
VmaugRepoResult *vmaug_repo_install(const VmaugRepoOptions *opts,
                                    VmaugStore *store, const gchar *name,
                                    const gchar *version, const gchar *actor,
                                    GError **error);

/* ---- Publishing ---- */

typedef struct {
    /* Repository directory to write (created when missing). */
    const gchar *dir;
    /* The administrator's key and certificate that sign the index. */
    const gchar *key_path;
    const gchar *cert_path;
    /* Trust store the packages must verify against; NULL for the signing
     * certificate alone. */
    const gchar *trust_dir;
    /* Expiry of the new index, seconds since the Epoch. */
    gint64 expires;
    /* Metadata version to write; 0 for the current one plus one. */
    gint64 version;
} VmaugRepoPublishOptions;

/*
 * Add the packages (paths of *.vmod files) to the repository in @opts->dir,
 * keeping the packages it already lists, and write a new signed index with
 * a higher metadata version.  Packages are verified first; a package under
 * a name and version already published with other content is refused.
 * Files are written atomically, the signature before the index that needs
 * it, so a reader always finds a matching pair.  Returns the new index.
 */
VmaugRepoIndex *vmaug_repo_publish(const VmaugRepoPublishOptions *opts,
                                   const gchar *const *packages,
                                   GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmaugRepoEntry, vmaug_repo_entry_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmaugRepoIndex, vmaug_repo_index_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmaugRepoResult, vmaug_repo_result_free)

G_END_DECLS

#endif /* VMAUGMENT_REPO_H */
