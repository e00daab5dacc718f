/*
 * vmaugment trust: signing and verification of vmaugment artefacts.
 *
 * An administrator holds an identity (a PKCS#8 private key plus its X.509
 * certificate).  Bytes are signed detached: the signature is a DER-encoded
 * PKCS#7 (CMS SignedData) structure without the content, carrying the
 * signer's certificate and the signing time.  A host trusts a directory of
 * certificates (self-signed administrator certificates, or the CA
 * certificates that issue them) and certificate revocation lists.
 * Verification answers "which trusted administrator signed exactly these
 * bytes", or an error in VMAUG_TRUST_ERROR telling why not.
 *
 * Every file format is standard, so GnuTLS's certtool and OpenSSL
 * interoperate: keys are PKCS#8 PEM, certificates and CRLs PEM (DER is
 * accepted on input), signatures DER PKCS#7.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VMAUGMENT_TRUST_H
#define VMAUGMENT_TRUST_H

#include <glib.h>

G_BEGIN_DECLS

/* Caps applied before anything is parsed: every input may be hostile. */
#define VMAUG_TRUST_MAX_SIGNATURE_SIZE  (64 * 1024)
#define VMAUG_TRUST_MAX_CERT_FILE_SIZE  (1024 * 1024)
#define VMAUG_TRUST_MAX_KEY_FILE_SIZE   (64 * 1024)
/* Files a trust store directory may hold; more is refused. */
#define VMAUG_TRUST_MAX_STORE_FILES     1024

#define VMAUG_TRUST_ERROR (vmaug_trust_error_quark())
GQuark vmaug_trust_error_quark(void);

typedef enum {
    /* Anything else: I/O, out of memory, a GnuTLS failure. */
    VMAUG_TRUST_ERROR_FAILED,
    /* Malformed or oversized input (signature, key, certificate, CRL). */
    VMAUG_TRUST_ERROR_INVALID,
    /* The signature does not match the bytes (tampering). */
    VMAUG_TRUST_ERROR_BAD_SIGNATURE,
    /* The signer is not, and does not chain to, a trusted certificate,
     * or its certificate may not sign code. */
    VMAUG_TRUST_ERROR_UNKNOWN_SIGNER,
    /* The signer's certificate (or its issuer's) is expired or not yet
     * valid at verification time. */
    VMAUG_TRUST_ERROR_EXPIRED,
    /* A CRL of the trust store revokes the signer's certificate. */
    VMAUG_TRUST_ERROR_REVOKED,
} VmaugTrustError;

/* What a certificate may do. */
typedef enum {
    /* Signs data: keyUsage digitalSignature, extKeyUsage codeSigning. */
    VMAUG_TRUST_ROLE_SIGNER,
    /* Issues signer certificates and CRLs (and may sign data). */
    VMAUG_TRUST_ROLE_CA,
} VmaugTrustRole;

/* ---- Identities: a private key and its certificate ---- */

typedef struct _VmaugTrustIdentity VmaugTrustIdentity;

/*
 * Generate an ECDSA P-256 key and a certificate for it with the given
 * common name and validity (seconds since the Epoch, UTC).  With @issuer
 * NULL the certificate is self-signed, otherwise @issuer (a CA identity)
 * signs it.
 */
VmaugTrustIdentity *vmaug_trust_identity_generate(const gchar *common_name,
                                                  VmaugTrustRole role,
                                                  gint64 not_before,
                                                  gint64 not_after,
                                                  VmaugTrustIdentity *issuer,
                                                  GError **error);
/* Load a private key (PKCS#8 or PKCS#1, PEM or DER, unencrypted) and its
 * certificate; fails unless the certificate holds that key. */
VmaugTrustIdentity *vmaug_trust_identity_load(const gchar *key_path,
                                              const gchar *cert_path,
                                              GError **error);
/* Write the key (PKCS#8 PEM, mode 0600) and the certificate (PEM), each
 * atomically. */
gboolean vmaug_trust_identity_save(VmaugTrustIdentity *identity,
                                   const gchar *key_path,
                                   const gchar *cert_path,
                                   GError **error);
/* The certificate, PEM. */
GBytes *vmaug_trust_identity_get_certificate(VmaugTrustIdentity *identity,
                                             GError **error);
/* The certificate's common name. */
gchar *vmaug_trust_identity_get_name(VmaugTrustIdentity *identity);
/*
 * Sign @data (not empty) detached.  Returns the DER PKCS#7 signature
 * (SHA-256, signing time and the signer certificate included).
 */
GBytes *vmaug_trust_identity_sign(VmaugTrustIdentity *identity, GBytes *data,
                                  GError **error);
/*
 * As a CA, issue a CRL (PEM) revoking the given certificates (each PEM or
 * DER GBytes), valid from @this_update until @next_update.
 */
GBytes *vmaug_trust_identity_create_crl(VmaugTrustIdentity *identity,
                                        GPtrArray *revoked_certs,
                                        gint64 this_update,
                                        gint64 next_update,
                                        GError **error);
void vmaug_trust_identity_free(VmaugTrustIdentity *identity);

/* ---- The signer a verification found ---- */

typedef struct {
    gchar *common_name;     /* the certificate's CN, "" when absent */
    gchar *subject;         /* RFC 4514 distinguished name */
    gchar *fingerprint;     /* SHA-256 of the DER certificate, hex */
    gchar *key_id;          /* SHA-256 key identifier, hex */
    gint64 signing_time;    /* claimed by the signer; -1 when absent */
    gint64 not_after;       /* the certificate's expiry */
} VmaugTrustSigner;

void vmaug_trust_signer_free(VmaugTrustSigner *signer);

/* ---- Trust stores ---- */

typedef struct _VmaugTrustStore VmaugTrustStore;

VmaugTrustStore *vmaug_trust_store_new(void);
/*
 * Load every certificate (files named *.pem, *.crt, *.cer; PEM may hold
 * several) and every CRL (*.crl) in @dir.  Other and hidden files are
 * ignored; an unreadable or malformed certificate or CRL fails the load,
 * because silently trusting less (or revoking less) than the owner wrote
 * is worse than refusing to start.
 */
VmaugTrustStore *vmaug_trust_store_new_from_dir(const gchar *dir,
                                                GError **error);
/*
 * Follow the directory @store was loaded from (a long-running process's
 * store): before each verification its files are looked at (names,
 * inodes, sizes, change times), and the store loaded again when they
 * changed, so that a certificate removed or revoked by a CRL added stops
 * verifying at once.  While the directory cannot be loaded, every
 * verification fails (VMAUG_TRUST_ERROR_FAILED).
 */
void vmaug_trust_store_follow_dir(VmaugTrustStore *store);
/*
 * Look at a followed directory now, as a verification would, and return
 * the store's generation: a number that changes whenever what verifies
 * may have (certificates or CRLs added or reloaded, the directory failing
 * to load or loading again), for callers that keep what they learned
 * from verifications.
 */
guint64 vmaug_trust_store_refresh(VmaugTrustStore *store);
/* Trust a certificate (PEM, possibly several, or DER). */
gboolean vmaug_trust_store_add_certificate(VmaugTrustStore *store,
                                           GBytes *cert, GError **error);
/* Honour a CRL (PEM or DER).  It must be signed by a trusted certificate
 * when a verification uses it; CRLs from unknown issuers are ignored. */
gboolean vmaug_trust_store_add_crl(VmaugTrustStore *store, GBytes *crl,
                                   GError **error);
guint vmaug_trust_store_get_n_certificates(VmaugTrustStore *store);
/*
 * Verify that @signature is a valid detached signature over exactly @data
 * by a certificate that is trusted (in the store, or issued by a CA of the
 * store), valid now, not revoked and allowed to sign code.  Returns the
 * signer, or NULL with a VMAUG_TRUST_ERROR.  Empty @data never verifies.
 *
 * A store is safe to use from several threads once no more certificates
 * or CRLs are added.
 */
VmaugTrustSigner *vmaug_trust_store_verify(VmaugTrustStore *store,
                                           GBytes *data, GBytes *signature,
                                           GError **error);
void vmaug_trust_store_free(VmaugTrustStore *store);

/* ---- Helpers ---- */

/*
 * The SHA-256 of @len bytes at @data, as 32 bytes or as lower-case hex.
 * GnuTLS's, which uses the CPU's SHA instructions where it has them:
 * several times faster than GLib's GChecksum on the tens of megabytes of
 * a package or a bundle's payload.  Never fails (GLib's if GnuTLS's
 * does).
 */
void vmaug_sha256(const void *data, gsize len, guint8 out[32]);
gchar *vmaug_sha256_hex(const void *data, gsize len);

/*
 * Read a whole regular file, refusing it before reading when it is larger
 * than @max_size.  Errors are G_FILE_ERROR, or VMAUG_TRUST_ERROR_INVALID
 * for a file too big or not regular.
 */
GBytes *vmaug_trust_read_file(const gchar *path, gsize max_size,
                              GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmaugTrustIdentity, vmaug_trust_identity_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmaugTrustSigner, vmaug_trust_signer_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmaugTrustStore, vmaug_trust_store_free)

G_END_DECLS

#endif /* VMAUGMENT_TRUST_H */
