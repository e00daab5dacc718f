/*
 * vmaugment trust: internals shared by the library's files.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VMAUGMENT_TRUST_PRIVATE_H
#define VMAUGMENT_TRUST_PRIVATE_H

#include <gnutls/gnutls.h>
#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/pkcs7.h>
#include <gnutls/x509.h>

#include "vmaugment-trust.h"

/* GnuTLS handles free themselves, after libjcat's jcat-gnutls-common.h. */
static inline void trust_datum_clear(gnutls_datum_t *d)
{
    gnutls_free(d->data);
    d->data = NULL;
    d->size = 0;
}

static inline void trust_list_free(gnutls_x509_trust_list_t tl)
{
    gnutls_x509_trust_list_deinit(tl, 1);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(gnutls_datum_t, trust_datum_clear)
G_DEFINE_AUTO_CLEANUP_FREE_FUNC(gnutls_x509_crt_t, gnutls_x509_crt_deinit, NULL)
G_DEFINE_AUTO_CLEANUP_FREE_FUNC(gnutls_x509_crl_t, gnutls_x509_crl_deinit, NULL)
G_DEFINE_AUTO_CLEANUP_FREE_FUNC(gnutls_x509_privkey_t,
                                gnutls_x509_privkey_deinit, NULL)
G_DEFINE_AUTO_CLEANUP_FREE_FUNC(gnutls_privkey_t, gnutls_privkey_deinit, NULL)
G_DEFINE_AUTO_CLEANUP_FREE_FUNC(gnutls_pkcs7_t, gnutls_pkcs7_deinit, NULL)
G_DEFINE_AUTO_CLEANUP_FREE_FUNC(gnutls_x509_trust_list_t, trust_list_free,
                                NULL)

/* A GnuTLS call failed: set @error and return FALSE. */
gboolean trust_gnutls_error(GError **error, gint code, int rc,
                            const gchar *what);
/* Parse one or more certificates (PEM) or one (DER) into a GPtrArray of
 * gnutls_x509_crt_t that owns them. */
GPtrArray *trust_import_certs(GBytes *blob, guint max_certs, GError **error);
/* Parse one or more CRLs, likewise. */
GPtrArray *trust_import_crls(GBytes *blob, guint max_crls, GError **error);
/* Hex SHA-256 fingerprint of a certificate, and its SHA-256 key id. */
gchar *trust_crt_fingerprint(gnutls_x509_crt_t crt);
/*
 * The files of trust store directory @dir that a store loads, in the order
 * it loads them: certificates (.pem, .crt, .cer) and CRLs (.crl), hidden
 * files skipped, sorted by name; at most VMAUG_TRUST_MAX_STORE_FILES.
 */
GPtrArray *trust_store_dir_files(const gchar *dir, GError **error);
/* Whether @name, one of those files, holds CRLs. */
gboolean trust_store_file_is_crl(const gchar *name);
gchar *trust_crt_key_id(gnutls_x509_crt_t crt);
/* The certificate's common name, "" when it has none. */
gchar *trust_crt_common_name(gnutls_x509_crt_t crt);

#endif /* VMAUGMENT_TRUST_PRIVATE_H */
