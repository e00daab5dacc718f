/*
 * vmaugment trust: administrator identities (key + certificate), signing
 * and CRL issuing.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "trust-private.h"

struct _VmaugTrustIdentity {
    gnutls_x509_privkey_t key;
    gnutls_x509_crt_t crt;
};

void vmaug_trust_identity_free(VmaugTrustIdentity *identity)
{
    if (identity == NULL) {
        return;
    }
    if (identity->key != NULL) {
        gnutls_x509_privkey_deinit(identity->key);
    }
    if (identity->crt != NULL) {
        gnutls_x509_crt_deinit(identity->crt);
    }
    g_free(identity);
}

static gboolean trust_identity_set_serial(gnutls_x509_crt_t crt,
                                          GError **error)
{
    guint8 serial[16];
    int rc;

    /* Random serials (CA/B forum style) so that two certificates of one
     * issuer never collide, which CRLs rely on. */
    rc = gnutls_rnd(GNUTLS_RND_NONCE, serial, sizeof(serial));
    if (rc < 0) {
        return trust_gnutls_error(error, VMAUG_TRUST_ERROR_FAILED, rc,
                                  "random serial");
    }
    serial[0] &= 0x7f;      /* positive INTEGER */
    serial[0] |= 0x01;      /* and no leading zero byte */
    rc = gnutls_x509_crt_set_serial(crt, serial, sizeof(serial));
    if (rc < 0) {
        return trust_gnutls_error(error, VMAUG_TRUST_ERROR_FAILED, rc,
                                  "set serial");
    }
    return TRUE;
}

static gboolean trust_identity_set_key_ids(gnutls_x509_crt_t crt,
                                           gnutls_x509_crt_t issuer,
                                           GError **error)
{
    guint8 id[64];
    size_t len = sizeof(id);
    int rc;

    rc = gnutls_x509_crt_get_key_id(crt, GNUTLS_KEYID_USE_SHA1, id, &len);
    if (rc >= 0) {
        rc = gnutls_x509_crt_set_subject_key_id(crt, id, len);
    }
    if (rc < 0) {
        return trust_gnutls_error(error, VMAUG_TRUST_ERROR_FAILED, rc,
                                  "subject key id");
    }
    len = sizeof(id);
    rc = gnutls_x509_crt_get_key_id(issuer, GNUTLS_KEYID_USE_SHA1, id, &len);
    if (rc >= 0) {
        rc = gnutls_x509_crt_set_authority_key_id(crt, id, len);
    }
    if (rc < 0) {
        return trust_gnutls_error(error, VMAUG_TRUST_ERROR_FAILED, rc,
                                  "authority key id");
    }
    return TRUE;
}

VmaugTrustIdentity *vmaug_trust_identity_generate(const gchar *common_name,
                                                  VmaugTrustRole role,
                                                  gint64 not_before,
                                                  gint64 not_after,
                                                  VmaugTrustIdentity *issuer,
                                                  GError **error)
{
    g_autoptr(VmaugTrustIdentity) id = g_new0(VmaugTrustIdentity, 1);
    unsigned int usage;
    int rc;

    g_return_val_if_fail(common_name != NULL, NULL);

    if (*common_name == '\0' || strlen(common_name) > 64 ||
        !g_utf8_validate(common_name, -1, NULL)) {
        g_set_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_INVALID,
                    "common name must be 1..64 bytes of UTF-8");
        return NULL;
    }
    if (not_after <= not_before) {
        g_set_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_INVALID,
                    "certificate would expire before it starts");
        return NULL;
    }
    if (issuer != NULL) {
        unsigned int ca = 0;

        if (gnutls_x509_crt_get_basic_constraints(issuer->crt, NULL, &ca,
                                                  NULL) < 0 || !ca) {
            g_set_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_INVALID,
                        "the issuer is not a CA certificate");
            return NULL;
        }
    }

    gnutls_x509_privkey_init(&id->key);
    /* ECDSA P-256: quick to generate in tests, quick to verify at load. */
    rc = gnutls_x509_privkey_generate(id->key, GNUTLS_PK_ECDSA,
                                      GNUTLS_CURVE_TO_BITS(
                                          GNUTLS_ECC_CURVE_SECP256R1), 0);
    if (rc < 0) {
        trust_gnutls_error(error, VMAUG_TRUST_ERROR_FAILED, rc,
                           "key generation");
        return NULL;
    }

    gnutls_x509_crt_init(&id->crt);
    rc = gnutls_x509_crt_set_version(id->crt, 3);
    if (rc >= 0) {
        rc = gnutls_x509_crt_set_key(id->crt, id->key);
    }
    if (rc >= 0) {
        rc = gnutls_x509_crt_set_dn_by_oid(id->crt,
                                           GNUTLS_OID_X520_COMMON_NAME, 0,
                                           common_name, strlen(common_name));
    }
    if (rc >= 0) {
        rc = gnutls_x509_crt_set_activation_time(id->crt, (time_t)not_before);
    }
    if (rc >= 0) {
        rc = gnutls_x509_crt_set_expiration_time(id->crt, (time_t)not_after);
    }
    if (rc >= 0) {
        rc = gnutls_x509_crt_set_basic_constraints(
            id->crt, role == VMAUG_TRUST_ROLE_CA, -1);
    }
    if (rc >= 0) {
        usage = GNUTLS_KEY_DIGITAL_SIGNATURE;
        if (role == VMAUG_TRUST_ROLE_CA) {
            usage |= GNUTLS_KEY_KEY_CERT_SIGN | GNUTLS_KEY_CRL_SIGN;
        }
        rc = gnutls_x509_crt_set_key_usage(id->crt, usage);
    }
    if (rc >= 0 && role == VMAUG_TRUST_ROLE_SIGNER) {
        /* Verification demands code signing, so a TLS certificate of the
         * same CA cannot sign modules. */
        rc = gnutls_x509_crt_set_key_purpose_oid(id->crt,
                                                 GNUTLS_KP_CODE_SIGNING, 1);
    }
    if (rc < 0) {
        trust_gnutls_error(error, VMAUG_TRUST_ERROR_FAILED, rc,
                           "certificate fields");
        return NULL;
    }
    if (!trust_identity_set_serial(id->crt, error)) {
        return NULL;
    }
    if (!trust_identity_set_key_ids(id->crt,
                                    issuer != NULL ? issuer->crt : id->crt,
                                    error)) {
        return NULL;
    }
    if (issuer != NULL) {
        rc = gnutls_x509_crt_sign2(id->crt, issuer->crt, issuer->key,
                                   GNUTLS_DIG_SHA256, 0);
    } else {
        rc = gnutls_x509_crt_sign2(id->crt, id->crt, id->key,
                                   GNUTLS_DIG_SHA256, 0);
    }
    if (rc < 0) {
        trust_gnutls_error(error, VMAUG_TRUST_ERROR_FAILED, rc,
                           "certificate signing");
        return NULL;
    }
    return g_steal_pointer(&id);
}

VmaugTrustIdentity *vmaug_trust_identity_load(const gchar *key_path,
                                              const gchar *cert_path,
                                              GError **error)
{
    g_autoptr(VmaugTrustIdentity) id = g_new0(VmaugTrustIdentity, 1);
    g_autoptr(GBytes) key_blob = NULL;
    g_autoptr(GBytes) cert_blob = NULL;
    g_autoptr(GPtrArray) crts = NULL;
    guint8 kid[64], cid[64];
    size_t klen = sizeof(kid), clen = sizeof(cid);
    gnutls_datum_t d;
    gsize len;
    int rc;

    key_blob = vmaug_trust_read_file(key_path, VMAUG_TRUST_MAX_KEY_FILE_SIZE,
                                     error);
    if (key_blob == NULL) {
        return NULL;
    }
    cert_blob = vmaug_trust_read_file(cert_path,
                                      VMAUG_TRUST_MAX_CERT_FILE_SIZE, error);
    if (cert_blob == NULL) {
        return NULL;
    }

    d.data = (unsigned char *)g_bytes_get_data(key_blob, &len);
    d.size = len;
    gnutls_x509_privkey_init(&id->key);
    rc = gnutls_x509_privkey_import2(id->key, &d, GNUTLS_X509_FMT_PEM, NULL,
                                     GNUTLS_PKCS_PLAIN);
    if (rc < 0) {
        rc = gnutls_x509_privkey_import2(id->key, &d, GNUTLS_X509_FMT_DER,
                                         NULL, GNUTLS_PKCS_PLAIN);
    }
    if (rc < 0) {
        g_set_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_INVALID,
                    "%s: not an unencrypted private key: %s", key_path,
                    gnutls_strerror(rc));
        return NULL;
    }

    crts = trust_import_certs(cert_blob, 1, error);
    if (crts == NULL) {
        g_prefix_error(error, "%s: ", cert_path);
        return NULL;
    }
    id->crt = g_ptr_array_steal_index(crts, 0);

    /* A mismatched pair would produce signatures nobody can verify. */
    if (gnutls_x509_privkey_get_key_id(id->key, GNUTLS_KEYID_USE_SHA256, kid,
                                       &klen) < 0 ||
        gnutls_x509_crt_get_key_id(id->crt, GNUTLS_KEYID_USE_SHA256, cid,
                                   &clen) < 0 ||
        klen != clen || memcmp(kid, cid, klen) != 0) {
        g_set_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_INVALID,
                    "%s does not certify the key in %s", cert_path,
                    key_path);
        return NULL;
    }
    return g_steal_pointer(&id);
}

GBytes *vmaug_trust_identity_get_certificate(VmaugTrustIdentity *identity,
                                             GError **error)
{
    g_auto(gnutls_datum_t) out = { NULL, 0 };
    int rc;

    rc = gnutls_x509_crt_export2(identity->crt, GNUTLS_X509_FMT_PEM, &out);
    if (rc < 0) {
        trust_gnutls_error(error, VMAUG_TRUST_ERROR_FAILED, rc,
                           "certificate export");
        return NULL;
    }
    return g_bytes_new(out.data, out.size);
}

gchar *vmaug_trust_identity_get_name(VmaugTrustIdentity *identity)
{
    return trust_crt_common_name(identity->crt);
}

gboolean vmaug_trust_identity_save(VmaugTrustIdentity *identity,
                                   const gchar *key_path,
                                   const gchar *cert_path,
                                   GError **error)
{
    g_auto(gnutls_datum_t) key = { NULL, 0 };
    g_autoptr(GBytes) cert = NULL;
    int rc;

    rc = gnutls_x509_privkey_export2_pkcs8(identity->key, GNUTLS_X509_FMT_PEM,
                                           NULL, GNUTLS_PKCS_PLAIN, &key);
    if (rc < 0) {
        return trust_gnutls_error(error, VMAUG_TRUST_ERROR_FAILED, rc,
                                  "key export");
    }
    cert = vmaug_trust_identity_get_certificate(identity, error);
    if (cert == NULL) {
        return FALSE;
    }
    /* Temporary file, fsync, rename: never a half-written key. */
    if (!g_file_set_contents_full(key_path, (const gchar *)key.data,
                                  key.size,
                                  G_FILE_SET_CONTENTS_CONSISTENT |
                                  G_FILE_SET_CONTENTS_DURABLE,
                                  0600, error)) {
        return FALSE;
    }
    return g_file_set_contents_full(cert_path,
                                    g_bytes_get_data(cert, NULL),
                                    g_bytes_get_size(cert),
                                    G_FILE_SET_CONTENTS_CONSISTENT |
                                    G_FILE_SET_CONTENTS_DURABLE,
                                    0644, error);
}

GBytes *vmaug_trust_identity_sign(VmaugTrustIdentity *identity, GBytes *data,
                                  GError **error)
{
    g_auto(gnutls_pkcs7_t) p7 = NULL;
    g_auto(gnutls_privkey_t) pk = NULL;
    g_auto(gnutls_datum_t) out = { NULL, 0 };
    gnutls_datum_t d;
    gsize len;
    int rc;

    gnutls_privkey_init(&pk);
    rc = gnutls_privkey_import_x509(pk, identity->key,
                                    GNUTLS_PRIVKEY_IMPORT_COPY);
    if (rc < 0) {
        trust_gnutls_error(error, VMAUG_TRUST_ERROR_FAILED, rc, "key import");
        return NULL;
    }
    d.data = (unsigned char *)g_bytes_get_data(data, &len);
    d.size = len;
    /* GnuTLS cannot sign nothing, and nothing is never worth signing. */
    if (len == 0) {
        g_set_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_INVALID,
                    "refusing to sign empty data");
        return NULL;
    }
    gnutls_pkcs7_init(&p7);
    rc = gnutls_pkcs7_sign(p7, identity->crt, pk, &d, NULL, NULL,
                           GNUTLS_DIG_SHA256,
                           GNUTLS_PKCS7_INCLUDE_TIME |
                           GNUTLS_PKCS7_INCLUDE_CERT);
    if (rc < 0) {
        trust_gnutls_error(error, VMAUG_TRUST_ERROR_FAILED, rc, "signing");
        return NULL;
    }
    rc = gnutls_pkcs7_export2(p7, GNUTLS_X509_FMT_DER, &out);
    if (rc < 0) {
        trust_gnutls_error(error, VMAUG_TRUST_ERROR_FAILED, rc,
                           "signature export");
        return NULL;
    }
    return g_bytes_new(out.data, out.size);
}

GBytes *vmaug_trust_identity_create_crl(VmaugTrustIdentity *identity,
                                        GPtrArray *revoked_certs,
                                        gint64 this_update,
                                        gint64 next_update,
                                        GError **error)
{
    g_auto(gnutls_x509_crl_t) crl = NULL;
    g_auto(gnutls_datum_t) out = { NULL, 0 };
    guint8 id[64];
    size_t idlen = sizeof(id);
    guint8 number[8];
    unsigned int ca = 0;
    int rc;

    if (gnutls_x509_crt_get_basic_constraints(identity->crt, NULL, &ca,
                                              NULL) < 0 || !ca) {
        g_set_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_INVALID,
                    "only a CA identity issues CRLs");
        return NULL;
    }
    if (next_update <= this_update) {
        g_set_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_INVALID,
                    "CRL next update must follow this update");
        return NULL;
    }
    gnutls_x509_crl_init(&crl);
    rc = gnutls_x509_crl_set_version(crl, 2);
    if (rc >= 0) {
        rc = gnutls_x509_crl_set_this_update(crl, (time_t)this_update);
    }
    if (rc >= 0) {
        rc = gnutls_x509_crl_set_next_update(crl, (time_t)next_update);
    }
    if (rc >= 0) {
        /* CRL numbers must increase; the issuing time does. */
        for (guint i = 0; i < sizeof(number); i++) {
            number[i] = (guint8)((guint64)this_update >> (56 - 8 * i));
        }
        rc = gnutls_x509_crl_set_number(crl, number, sizeof(number));
    }
    if (rc >= 0) {
        rc = gnutls_x509_crt_get_key_id(identity->crt, GNUTLS_KEYID_USE_SHA1,
                                        id, &idlen);
    }
    if (rc >= 0) {
        rc = gnutls_x509_crl_set_authority_key_id(crl, id, idlen);
    }
    if (rc < 0) {
        trust_gnutls_error(error, VMAUG_TRUST_ERROR_FAILED, rc, "CRL fields");
        return NULL;
    }
    for (guint i = 0; revoked_certs != NULL && i < revoked_certs->len; i++) {
        g_autoptr(GPtrArray) crts = NULL;

        crts = trust_import_certs(g_ptr_array_index(revoked_certs, i), 16,
                                  error);
        if (crts == NULL) {
            return NULL;
        }
        for (guint j = 0; j < crts->len; j++) {
            rc = gnutls_x509_crl_set_crt(crl, g_ptr_array_index(crts, j),
                                         (time_t)this_update);
            if (rc < 0) {
                trust_gnutls_error(error, VMAUG_TRUST_ERROR_FAILED, rc,
                                   "CRL entry");
                return NULL;
            }
        }
    }
    rc = gnutls_x509_crl_sign2(crl, identity->crt, identity->key,
                               GNUTLS_DIG_SHA256, 0);
    if (rc >= 0) {
        rc = gnutls_x509_crl_export2(crl, GNUTLS_X509_FMT_PEM, &out);
    }
    if (rc < 0) {
        trust_gnutls_error(error, VMAUG_TRUST_ERROR_FAILED, rc, "CRL signing");
        return NULL;
    }
    return g_bytes_new(out.data, out.size);
}
