/*
 * vmaugment trust: errors, bounded file reading, certificate parsing.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "trust-private.h"
#include "vmaugment-hex.h"

G_DEFINE_QUARK(vmaug-trust-error-quark, vmaug_trust_error)

gboolean trust_gnutls_error(GError **error, gint code, int rc,
                            const gchar *what)
{
    g_set_error(error, VMAUG_TRUST_ERROR, code, "%s: %s", what,
                gnutls_strerror(rc));
    return FALSE;
}

GBytes *vmaug_trust_read_file(const gchar *path, gsize max_size,
                              GError **error)
{
    struct stat st;
    g_autofree guint8 *buf = NULL;
    gsize done = 0;
    int fd;

    /* O_NOFOLLOW-free on purpose: trust stores may be symlink farms, as
     * /etc/ssl/certs is; the size cap below is what protects us.
     * O_NONBLOCK: a FIFO under the name would block the open for ever;
     * it is refused below like anything else that is no regular file. */
    fd = g_open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0);
    if (fd < 0) {
        int saved = errno;
        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(saved),
                    "cannot open %s: %s", path, g_strerror(saved));
        return NULL;
    }
    if (fstat(fd, &st) < 0) {
        int saved = errno;
        close(fd);
        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(saved),
                    "cannot stat %s: %s", path, g_strerror(saved));
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        g_set_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_INVALID,
                    "%s is not a regular file", path);
        return NULL;
    }
    /* Refuse before allocating: the size comes from whoever wrote it. */
    if ((guint64)st.st_size > max_size) {
        close(fd);
        g_set_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_INVALID,
                    "%s is %" G_GINT64_FORMAT " bytes, more than %"
                    G_GSIZE_FORMAT, path, (gint64)st.st_size, max_size);
        return NULL;
    }
    buf = g_malloc(st.st_size + 1);
    while (done < (gsize)st.st_size) {
        ssize_t n = read(fd, buf + done, st.st_size - done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            int saved = errno;
            close(fd);
            g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(saved),
                        "cannot read %s: %s", path, g_strerror(saved));
            return NULL;
        }
        if (n == 0) {
            break;      /* shrank under us: take what is there */
        }
        done += n;
    }
    close(fd);
    return g_bytes_new_take(g_steal_pointer(&buf), done);
}

static gboolean trust_looks_pem(GBytes *blob)
{
    gsize len;
    const gchar *p = g_bytes_get_data(blob, &len);

    return p != NULL && g_strstr_len(p, MIN(len, 65536), "-----BEGIN ") != NULL;
}

/* What differs between parsing certificates and CRLs. */
typedef struct {
    const gchar *what;
    GDestroyNotify free_func;
    int (*import_pem)(GPtrArray *out, const gnutls_datum_t *d);
    int (*import_der)(GPtrArray *out, const gnutls_datum_t *d);
} TrustImportOps;

static int trust_crt_import_pem(GPtrArray *out, const gnutls_datum_t *d)
{
    gnutls_x509_crt_t *list = NULL;
    unsigned int n = 0;
    int rc = gnutls_x509_crt_list_import2(&list, &n, d, GNUTLS_X509_FMT_PEM,
                                          0);

    for (unsigned int i = 0; rc >= 0 && i < n; i++) {
        g_ptr_array_add(out, list[i]);
    }
    gnutls_free(list);
    return rc;
}

static int trust_crt_import_der(GPtrArray *out, const gnutls_datum_t *d)
{
    gnutls_x509_crt_t crt;
    int rc;

    gnutls_x509_crt_init(&crt);
    rc = gnutls_x509_crt_import(crt, d, GNUTLS_X509_FMT_DER);
    if (rc < 0) {
        gnutls_x509_crt_deinit(crt);
        return rc;
    }
    g_ptr_array_add(out, crt);
    return rc;
}

static int trust_crl_import_pem(GPtrArray *out, const gnutls_datum_t *d)
{
    gnutls_x509_crl_t *list = NULL;
    unsigned int n = 0;
    int rc = gnutls_x509_crl_list_import2(&list, &n, d, GNUTLS_X509_FMT_PEM,
                                          0);

    for (unsigned int i = 0; rc >= 0 && i < n; i++) {
        g_ptr_array_add(out, list[i]);
    }
    gnutls_free(list);
    return rc;
}

static int trust_crl_import_der(GPtrArray *out, const gnutls_datum_t *d)
{
    gnutls_x509_crl_t crl;
    int rc;

    gnutls_x509_crl_init(&crl);
    rc = gnutls_x509_crl_import(crl, d, GNUTLS_X509_FMT_DER);
    if (rc < 0) {
        gnutls_x509_crl_deinit(crl);
        return rc;
    }
    g_ptr_array_add(out, crl);
    return rc;
}

static const TrustImportOps trust_crt_ops = {
    "certificate", (GDestroyNotify)gnutls_x509_crt_deinit,
    trust_crt_import_pem, trust_crt_import_der,
};

static const TrustImportOps trust_crl_ops = {
    "CRL", (GDestroyNotify)gnutls_x509_crl_deinit,
    trust_crl_import_pem, trust_crl_import_der,
};

static GPtrArray *trust_import(const TrustImportOps *ops, GBytes *blob,
                               guint max, GError **error)
{
    g_autoptr(GPtrArray) out = g_ptr_array_new_with_free_func(ops->free_func);
    gnutls_datum_t d;
    gsize len;
    int rc;

    d.data = (unsigned char *)g_bytes_get_data(blob, &len);
    if (len == 0 || len > VMAUG_TRUST_MAX_CERT_FILE_SIZE) {
        g_set_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_INVALID,
                    "%s data of %" G_GSIZE_FORMAT " bytes", ops->what, len);
        return NULL;
    }
    d.size = len;
    if (trust_looks_pem(blob)) {
        rc = ops->import_pem(out, &d);
    } else {
        rc = ops->import_der(out, &d);
    }
    if (rc < 0) {
        g_set_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_INVALID,
                    "cannot parse %s: %s", ops->what, gnutls_strerror(rc));
        return NULL;
    }
    if (out->len == 0 || out->len > max) {
        g_set_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_INVALID,
                    "%u of %s where 1..%u are allowed", out->len, ops->what,
                    max);
        return NULL;
    }
    return g_steal_pointer(&out);
}

GPtrArray *trust_import_certs(GBytes *blob, guint max_certs, GError **error)
{
    return trust_import(&trust_crt_ops, blob, max_certs, error);
}

GPtrArray *trust_import_crls(GBytes *blob, guint max_crls, GError **error)
{
    return trust_import(&trust_crl_ops, blob, max_crls, error);
}

gchar *trust_crt_fingerprint(gnutls_x509_crt_t crt)
{
    guint8 buf[32];
    size_t len = sizeof(buf);

    if (gnutls_x509_crt_get_fingerprint(crt, GNUTLS_DIG_SHA256, buf,
                                        &len) < 0) {
        return g_strdup("");
    }
    return vmaug_hex_encode(buf, len);
}

gchar *trust_crt_key_id(gnutls_x509_crt_t crt)
{
    guint8 buf[64];
    size_t len = sizeof(buf);

    if (gnutls_x509_crt_get_key_id(crt, GNUTLS_KEYID_USE_SHA256, buf,
                                   &len) < 0) {
        return g_strdup("");
    }
    return vmaug_hex_encode(buf, len);
}

gchar *trust_crt_common_name(gnutls_x509_crt_t crt)
{
    gchar buf[256];
    size_t len = sizeof(buf);

    if (gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0,
                                      buf, &len) < 0) {
        return g_strdup("");
    }
    buf[MIN(len, sizeof(buf) - 1)] = '\0';
    /* A CN is attacker-chosen text that ends up in logs. */
    if (!g_utf8_validate(buf, -1, NULL)) {
        return g_strdup("(invalid UTF-8)");
    }
    return g_strdup(buf);
}

void vmaug_trust_signer_free(VmaugTrustSigner *signer)
{
    if (signer == NULL) {
        return;
    }
    g_free(signer->common_name);
    g_free(signer->subject);
    g_free(signer->fingerprint);
    g_free(signer->key_id);
    g_free(signer);
}

void vmaug_sha256(const void *data, gsize len, guint8 out[32])
{
    g_autoptr(GChecksum) c = NULL;
    const guint8 *p = data;
    gsize olen = 32;

    if (gnutls_hash_fast(GNUTLS_DIG_SHA256, data, len, out) == 0) {
        return;
    }
    c = g_checksum_new(G_CHECKSUM_SHA256);
    /* g_checksum_update() takes a gssize: the bytes in pieces. */
    while (len > 0) {
        gsize n = MIN(len, (gsize)G_MAXINT32);

        g_checksum_update(c, p, n);
        p += n;
        len -= n;
    }
    g_checksum_get_digest(c, out, &olen);
}

gchar *vmaug_sha256_hex(const void *data, gsize len)
{
    guint8 digest[32];

    vmaug_sha256(data, len, digest);
    return vmaug_hex_encode(digest, sizeof(digest));
}
