/*
 * vmaugment trust: trust stores and detached signature verification.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

#include "trust-private.h"

#define SWAP(a, b) \
    do { \
        __typeof__(a) swap_tmp = (a); \
        (a) = (b); \
        (b) = swap_tmp; \
    } while (0)

/* Certificates a signature may carry (the signer plus intermediates). */
#define TRUST_MAX_EMBEDDED_CERTS    8
/* Verifications remembered (vmaug_trust_store_verify()); all are forgotten
 * when there would be more. */
#define TRUST_MAX_REMEMBERED        1024

/*
 * A verification that succeeded: its signer, and the times between which
 * every certificate it could have relied on is valid.  Within them the
 * same bytes verify the same way against the same store, so they are not
 * verified again (a module is verified at every load, and its signature
 * check is most of a load's time).  Failures are never remembered.
 */
typedef struct {
    VmaugTrustSigner *signer;
    gint64 valid_from;
    gint64 valid_until;
} TrustVerified;

struct _VmaugTrustStore {
    GPtrArray *certs;           /* gnutls_x509_crt_t, trusted, owned */
    GPtrArray *crls;            /* gnutls_x509_crl_t, as added, owned */
    GPtrArray *valid_crls;      /* of crls, those a trusted CA signed */
    gnutls_x509_trust_list_t tl;    /* copies of certs and crls */
    /* "SHA-256 of data and signature" -> TrustVerified; emptied by every
     * change of certs or crls. */
    GHashTable *verified;
    /* Followed (vmaug_trust_store_follow_dir()): the directory, what its
     * files looked like when last loaded, and why it could not be. */
    gchar *dir;
    gchar *dir_stamp;
    GError *dir_error;
    gchar *dir_reason;              /* why (for the log) */
    gint64 dir_tried;               /* when a load last failed (µs) */
    gboolean follow;
    /* Changes with every change of what verifies (vmaug_trust_store_
     * refresh()). */
    guint64 generation;
    /* Verifications may come from several threads (the store's commits
     * beside the helper's loop): GnuTLS promises read-only use of a trust
     * list from threads only for lists without PKCS #11, so one at a time. */
    GMutex verify_lock;
};

static void trust_verified_free(gpointer data)
{
    TrustVerified *v = data;

    vmaug_trust_signer_free(v->signer);
    g_free(v);
}

VmaugTrustStore *vmaug_trust_store_new(void)
{
    VmaugTrustStore *store = g_new0(VmaugTrustStore, 1);

    store->certs =
        g_ptr_array_new_with_free_func((GDestroyNotify)gnutls_x509_crt_deinit);
    store->crls =
        g_ptr_array_new_with_free_func((GDestroyNotify)gnutls_x509_crl_deinit);
    store->valid_crls = g_ptr_array_new();
    gnutls_x509_trust_list_init(&store->tl, 0);
    store->verified = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                            trust_verified_free);
    g_mutex_init(&store->verify_lock);
    return store;
}

void vmaug_trust_store_free(VmaugTrustStore *store)
{
    if (store == NULL) {
        return;
    }
    if (store->tl != NULL) {
        gnutls_x509_trust_list_deinit(store->tl, 1);
    }
    g_ptr_array_unref(store->valid_crls);
    g_ptr_array_unref(store->crls);
    g_ptr_array_unref(store->certs);
    g_hash_table_unref(store->verified);
    g_free(store->dir);
    g_free(store->dir_stamp);
    g_free(store->dir_reason);
    g_clear_error(&store->dir_error);
    g_mutex_clear(&store->verify_lock);
    g_free(store);
}

guint vmaug_trust_store_get_n_certificates(VmaugTrustStore *store)
{
    guint n;

    /* A followed store's arrays are replaced under the lock. */
    g_mutex_lock(&store->verify_lock);
    n = store->certs->len;
    g_mutex_unlock(&store->verify_lock);
    return n;
}

/*
 * GnuTLS trust lists take ownership of what they are given and cannot drop
 * entries, so after every change we build a new one from copies.
 */
static gboolean trust_store_rebuild(VmaugTrustStore *store, GError **error)
{
    g_auto(gnutls_x509_trust_list_t) tl = NULL;
    gnutls_x509_crt_t *cas = NULL;
    gnutls_x509_crl_t *crls = NULL;
    guint ncrls = 0;
    int rc;

    rc = gnutls_x509_trust_list_init(&tl, 0);
    if (rc < 0) {
        return trust_gnutls_error(error, VMAUG_TRUST_ERROR_FAILED, rc,
                                  "trust list");
    }
    cas = g_new0(gnutls_x509_crt_t, store->certs->len + 1);
    for (guint i = 0; i < store->certs->len; i++) {
        g_auto(gnutls_datum_t) der = { NULL, 0 };

        gnutls_x509_crt_init(&cas[i]);
        rc = gnutls_x509_crt_export2(g_ptr_array_index(store->certs, i),
                                     GNUTLS_X509_FMT_DER, &der);
        if (rc >= 0) {
            rc = gnutls_x509_crt_import(cas[i], &der, GNUTLS_X509_FMT_DER);
        }
        if (rc < 0) {
            for (guint j = 0; j <= i; j++) {
                gnutls_x509_crt_deinit(cas[j]);
            }
            g_free(cas);
            return trust_gnutls_error(error, VMAUG_TRUST_ERROR_FAILED, rc,
                                      "certificate copy");
        }
    }
    rc = gnutls_x509_trust_list_add_cas(tl, cas, store->certs->len, 0);
    g_free(cas);    /* the certificates now belong to tl */
    if (rc < 0) {
        return trust_gnutls_error(error, VMAUG_TRUST_ERROR_FAILED, rc,
                                  "trust list certificates");
    }

    /* Only CRLs signed by a trusted CA count; the rest could be anyone's. */
    g_ptr_array_set_size(store->valid_crls, 0);
    crls = g_new0(gnutls_x509_crl_t, store->crls->len + 1);
    for (guint i = 0; i < store->crls->len; i++) {
        gnutls_x509_crl_t crl = g_ptr_array_index(store->crls, i);
        g_auto(gnutls_datum_t) der = { NULL, 0 };
        unsigned int status = 0;

        rc = gnutls_x509_crl_verify(crl,
                                    (gnutls_x509_crt_t *)store->certs->pdata,
                                    store->certs->len, 0, &status);
        /* An outdated CRL still revokes what it lists. */
        status &= ~(GNUTLS_CERT_REVOCATION_DATA_SUPERSEDED |
                    GNUTLS_CERT_EXPIRED);
        if (rc < 0 || status != 0) {
            g_debug("ignoring a CRL not signed by a trusted CA (0x%x)",
                    status);
            continue;
        }
        g_ptr_array_add(store->valid_crls, crl);
        if (gnutls_x509_crl_export2(crl, GNUTLS_X509_FMT_DER, &der) < 0) {
            continue;
        }
        gnutls_x509_crl_init(&crls[ncrls]);
        if (gnutls_x509_crl_import(crls[ncrls], &der,
                                   GNUTLS_X509_FMT_DER) < 0) {
            gnutls_x509_crl_deinit(crls[ncrls]);
            continue;
        }
        ncrls++;
    }
    if (ncrls > 0) {
        /* Belongs to tl from here, including any GnuTLS itself drops. */
        rc = gnutls_x509_trust_list_add_crls(tl, crls, ncrls, 0, 0);
    }
    g_free(crls);
    if (rc < 0) {
        return trust_gnutls_error(error, VMAUG_TRUST_ERROR_FAILED, rc,
                                  "trust list CRLs");
    }
    gnutls_x509_trust_list_deinit(store->tl, 1);
    store->tl = g_steal_pointer(&tl);
    /* What verified against the old store proves nothing about this one. */
    g_hash_table_remove_all(store->verified);
    store->generation++;
    return TRUE;
}

gboolean vmaug_trust_store_add_certificate(VmaugTrustStore *store,
                                           GBytes *cert, GError **error)
{
    g_autoptr(GPtrArray) crts = NULL;

    crts = trust_import_certs(cert, VMAUG_TRUST_MAX_STORE_FILES, error);
    if (crts == NULL) {
        return FALSE;
    }
    if (store->certs->len + crts->len > VMAUG_TRUST_MAX_STORE_FILES) {
        g_set_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_INVALID,
                    "more than %u trusted certificates",
                    VMAUG_TRUST_MAX_STORE_FILES);
        return FALSE;
    }
    while (crts->len > 0) {
        g_ptr_array_add(store->certs, g_ptr_array_steal_index(crts, 0));
    }
    return trust_store_rebuild(store, error);
}

gboolean vmaug_trust_store_add_crl(VmaugTrustStore *store, GBytes *crl,
                                   GError **error)
{
    g_autoptr(GPtrArray) crls = NULL;

    crls = trust_import_crls(crl, VMAUG_TRUST_MAX_STORE_FILES, error);
    if (crls == NULL) {
        return FALSE;
    }
    if (store->crls->len + crls->len > VMAUG_TRUST_MAX_STORE_FILES) {
        g_set_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_INVALID,
                    "more than %u CRLs", VMAUG_TRUST_MAX_STORE_FILES);
        return FALSE;
    }
    while (crls->len > 0) {
        g_ptr_array_add(store->crls, g_ptr_array_steal_index(crls, 0));
    }
    return trust_store_rebuild(store, error);
}

static gint trust_store_cmp_names(gconstpointer a, gconstpointer b)
{
    return strcmp(*(const gchar *const *)a, *(const gchar *const *)b);
}

gboolean trust_store_file_is_crl(const gchar *name)
{
    return g_str_has_suffix(name, ".crl");
}

GPtrArray *trust_store_dir_files(const gchar *dir, GError **error)
{
    g_autoptr(GDir) d = g_dir_open(dir, 0, error);
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
    const gchar *name;

    if (d == NULL) {
        return NULL;
    }
    while ((name = g_dir_read_name(d)) != NULL) {
        if (name[0] == '.') {
            continue;
        }
        if (!g_str_has_suffix(name, ".pem") && !g_str_has_suffix(name, ".crt")
            && !g_str_has_suffix(name, ".cer")
            && !trust_store_file_is_crl(name)) {
            continue;
        }
        if (names->len >= VMAUG_TRUST_MAX_STORE_FILES) {
            g_set_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_INVALID,
                        "%s holds more than %u files", dir,
                        VMAUG_TRUST_MAX_STORE_FILES);
            return NULL;
        }
        g_ptr_array_add(names, g_strdup(name));
    }
    /* Sorted, so that a store loads the same way every time. */
    g_ptr_array_sort(names, trust_store_cmp_names);
    return g_steal_pointer(&names);
}

/* Add every certificate and CRL of @dir to @store. */
static gboolean trust_store_load_dir(VmaugTrustStore *store, const gchar *dir,
                                     GError **error)
{
    g_autoptr(GPtrArray) names = trust_store_dir_files(dir, error);

    if (names == NULL) {
        return FALSE;
    }
    for (guint i = 0; i < names->len; i++) {
        const gchar *n = g_ptr_array_index(names, i);
        g_autofree gchar *path = g_build_filename(dir, n, NULL);
        g_autoptr(GBytes) blob = NULL;
        gboolean ok;

        blob = vmaug_trust_read_file(path, VMAUG_TRUST_MAX_CERT_FILE_SIZE,
                                     error);
        if (blob == NULL) {
            return FALSE;
        }
        if (trust_store_file_is_crl(n)) {
            ok = vmaug_trust_store_add_crl(store, blob, error);
        } else {
            ok = vmaug_trust_store_add_certificate(store, blob, error);
        }
        if (!ok) {
            g_prefix_error(error, "%s: ", path);
            return FALSE;
        }
    }
    return TRUE;
}

/*
 * What the files of @dir look like: each name with its inode, size and
 * change times, so that a file added, removed, replaced or rewritten in
 * place (its ctime) gives another stamp.  NULL when it cannot be listed.
 */
static gchar *trust_store_dir_stamp(const gchar *dir)
{
    g_autoptr(GPtrArray) names = trust_store_dir_files(dir, NULL);
    g_autoptr(GString) stamp = g_string_new(NULL);

    if (names == NULL) {
        return NULL;
    }
    for (guint i = 0; i < names->len; i++) {
        const gchar *n = g_ptr_array_index(names, i);
        g_autofree gchar *path = g_build_filename(dir, n, NULL);
        struct stat st;

        if (stat(path, &st) < 0) {
            g_string_append_printf(stamp, "%s error %d\n", n, errno);
            continue;
        }
        g_string_append_printf(stamp, "%s %ju %jd %jd.%09ld %jd.%09ld\n", n,
                               (uintmax_t)st.st_ino, (intmax_t)st.st_size,
                               (intmax_t)st.st_mtim.tv_sec,
                               st.st_mtim.tv_nsec,
                               (intmax_t)st.st_ctim.tv_sec,
                               st.st_ctim.tv_nsec);
    }
    return g_string_free(g_steal_pointer(&stamp), FALSE);
}

VmaugTrustStore *vmaug_trust_store_new_from_dir(const gchar *dir,
                                                GError **error)
{
    g_autoptr(VmaugTrustStore) store = vmaug_trust_store_new();
    /* Before the files are read: a change while they are is seen. */
    g_autofree gchar *stamp = trust_store_dir_stamp(dir);

    if (!trust_store_load_dir(store, dir, error)) {
        return NULL;
    }
    store->dir = g_strdup(dir);
    store->dir_stamp = g_steal_pointer(&stamp);
    return g_steal_pointer(&store);
}

void vmaug_trust_store_follow_dir(VmaugTrustStore *store)
{
    g_return_if_fail(store->dir != NULL);
    store->follow = TRUE;
}

/* A directory that failed to load for a reason that left its files as
 * they were (descriptors, memory) is tried again this often. */
#define TRUST_DIR_RETRY_US G_USEC_PER_SEC

/*
 * Under verify_lock: load the followed directory again if its files
 * changed.  One that cannot be loaded now refuses every verification
 * until it can (trusting or revoking less than the owner wrote would be
 * worse), as it refused the start.
 */
static void trust_store_refresh_locked(VmaugTrustStore *store)
{
    g_autofree gchar *stamp = NULL;
    g_autoptr(VmaugTrustStore) fresh = NULL;
    g_autoptr(GError) local = NULL;
    gint64 now = g_get_monotonic_time();

    if (!store->follow) {
        return;
    }
    stamp = trust_store_dir_stamp(store->dir);
    if (store->dir_error != NULL) {
        /* As refused (even unlistable), tried again only after a while:
         * a guest asks for verifications as often as it likes. */
        if (g_strcmp0(stamp, store->dir_stamp) == 0 &&
            now - store->dir_tried < TRUST_DIR_RETRY_US) {
            return;
        }
    } else if (stamp != NULL && g_strcmp0(stamp, store->dir_stamp) == 0) {
        return;     /* as loaded */
    }
    fresh = vmaug_trust_store_new();
    if (!trust_store_load_dir(fresh, store->dir, &local)) {
        /* Said once per reason; the host's paths are for its log, not
         * for the guest that the refusal reaches. */
        if (store->dir_error == NULL ||
            g_strcmp0(store->dir_reason, local->message) != 0) {
            g_warning("the trust directory %s cannot be loaded: %s; every "
                      "signature is refused until it can", store->dir,
                      local->message);
        }
        if (store->dir_error == NULL) {
            store->generation++;
        }
        g_clear_error(&store->dir_error);
        g_set_error_literal(&store->dir_error, VMAUG_TRUST_ERROR,
                            VMAUG_TRUST_ERROR_FAILED,
                            "the host's trust directory cannot be loaded");
        g_free(store->dir_reason);
        store->dir_reason = g_strdup(local->message);
        store->dir_tried = now;
        /* The stamp was taken before the files were read: one still
         * being written then changes it when finished. */
        g_free(store->dir_stamp);
        store->dir_stamp = g_steal_pointer(&stamp);
        return;
    }
    g_message("trust directory %s changed: %u certificates, %u CRLs",
              store->dir, fresh->certs->len, fresh->crls->len);
    g_clear_error(&store->dir_error);
    g_clear_pointer(&store->dir_reason, g_free);
    /* Its contents become ours; ours go with it. */
    SWAP(store->certs, fresh->certs);
    SWAP(store->crls, fresh->crls);
    SWAP(store->valid_crls, fresh->valid_crls);
    SWAP(store->tl, fresh->tl);
    g_hash_table_remove_all(store->verified);
    store->generation++;
    g_free(store->dir_stamp);
    store->dir_stamp = g_steal_pointer(&stamp);
}

guint64 vmaug_trust_store_refresh(VmaugTrustStore *store)
{
    guint64 generation;

    g_mutex_lock(&store->verify_lock);
    trust_store_refresh_locked(store);
    generation = store->generation;
    g_mutex_unlock(&store->verify_lock);
    return generation;
}

static gboolean trust_crt_is_sid(gnutls_x509_crt_t crt,
                                 const gnutls_pkcs7_signature_info_st *info)
{
    if (info->issuer_keyid.size > 0) {
        guint8 ski[64];
        size_t len = sizeof(ski);
        unsigned int critical;

        return gnutls_x509_crt_get_subject_key_id(crt, ski, &len,
                                                  &critical) >= 0 &&
               len == info->issuer_keyid.size &&
               memcmp(ski, info->issuer_keyid.data, len) == 0;
    }
    if (info->issuer_dn.size > 0 && info->signer_serial.size > 0) {
        gnutls_datum_t dn = { NULL, 0 };
        guint8 serial[64];
        size_t len = sizeof(serial);

        if (gnutls_x509_crt_get_raw_issuer_dn(crt, &dn) < 0) {
            return FALSE;
        }
        gboolean same_dn = dn.size == info->issuer_dn.size &&
                           memcmp(dn.data, info->issuer_dn.data, dn.size) == 0;
        gnutls_free(dn.data);
        return same_dn &&
               gnutls_x509_crt_get_serial(crt, serial, &len) >= 0 &&
               len == info->signer_serial.size &&
               memcmp(serial, info->signer_serial.data, len) == 0;
    }
    return FALSE;
}

static gnutls_x509_crt_t trust_store_find_same_key(VmaugTrustStore *store,
                                                   gnutls_x509_crt_t crt)
{
    guint8 want[64], have[64];
    size_t wlen = sizeof(want);

    if (gnutls_x509_crt_get_key_id(crt, GNUTLS_KEYID_USE_SHA256, want,
                                   &wlen) < 0) {
        return NULL;
    }
    for (guint i = 0; i < store->certs->len; i++) {
        gnutls_x509_crt_t c = g_ptr_array_index(store->certs, i);
        size_t hlen = sizeof(have);

        if (gnutls_x509_crt_get_key_id(c, GNUTLS_KEYID_USE_SHA256, have,
                                       &hlen) >= 0 &&
            hlen == wlen && memcmp(have, want, wlen) == 0) {
            return c;
        }
    }
    return NULL;
}

static void trust_signature_info_free(gnutls_pkcs7_signature_info_st *info)
{
    gnutls_pkcs7_signature_info_deinit(info);
}

/*
 * A minimal reader of canonical DER, enough to reach the few fields of a
 * SignedData that GnuTLS parses but ignores.  Only used after GnuTLS has
 * accepted the structure and it re-encoded byte for byte.
 */
typedef struct {
    const guint8 *p;
    const guint8 *end;
} TrustDer;

static gboolean trust_der_next(TrustDer *in, guint8 *tag, TrustDer *body)
{
    gsize avail = in->end - in->p;
    gsize len, hdr = 2;

    if (avail < 2) {
        return FALSE;
    }
    *tag = in->p[0];
    len = in->p[1];
    if (len & 0x80) {
        guint n = len & 0x7f;

        /* Lengths beyond 3 bytes cannot occur in a 64 KiB signature. */
        if (n == 0 || n > 3 || avail < 2 + n) {
            return FALSE;
        }
        len = 0;
        for (guint i = 0; i < n; i++) {
            len = (len << 8) | in->p[2 + i];
        }
        hdr += n;
    }
    if (len > avail - hdr) {
        return FALSE;
    }
    body->p = in->p + hdr;
    body->end = body->p + len;
    in->p = body->end;
    return TRUE;
}

static gboolean trust_der_equal(const TrustDer *d, const guint8 *want,
                                gsize len)
{
    return (gsize)(d->end - d->p) == len && memcmp(d->p, want, len) == 0;
}

/*
 * The fields GnuTLS ignores must hold the one value we produce, so that a
 * signature has exactly one accepted encoding: SignedData and SignerInfo
 * version 1 (issuerAndSerialNumber) or 3 (subjectKeyIdentifier), and the
 * digest algorithms exactly SHA-256.
 */
static gboolean trust_check_fields(GBytes *signature)
{
    static const guint8 sha256_oid[] = {
        0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01
    };
    static const guint8 sha256_oid_null[] = {
        0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00
    };
    gsize len;
    TrustDer top, ci, content, sd, f, alg, sis, si;
    guint8 tag, version;

    top.p = g_bytes_get_data(signature, &len);
    top.end = top.p + len;
    if (!trust_der_next(&top, &tag, &ci) || tag != 0x30 ||
        !trust_der_next(&ci, &tag, &f) || tag != 0x06 ||
        !trust_der_next(&ci, &tag, &content) || tag != 0xa0 ||
        !trust_der_next(&content, &tag, &sd) || tag != 0x30) {
        return FALSE;
    }
    /* version */
    if (!trust_der_next(&sd, &tag, &f) || tag != 0x02 || f.end - f.p != 1 ||
        (f.p[0] != 1 && f.p[0] != 3)) {
        return FALSE;
    }
    version = f.p[0];
    /* digestAlgorithms: SET { sha256 } */
    if (!trust_der_next(&sd, &tag, &f) || tag != 0x31 ||
        !trust_der_next(&f, &tag, &alg) || tag != 0x30 || f.p != f.end ||
        (!trust_der_equal(&alg, sha256_oid, sizeof(sha256_oid)) &&
         !trust_der_equal(&alg, sha256_oid_null, sizeof(sha256_oid_null)))) {
        return FALSE;
    }
    /* encapContentInfo, then optional [0] certificates and [1] CRLs */
    if (!trust_der_next(&sd, &tag, &f) || tag != 0x30) {
        return FALSE;
    }
    do {
        if (!trust_der_next(&sd, &tag, &sis)) {
            return FALSE;
        }
    } while (tag == 0xa0 || tag == 0xa1);
    /* signerInfos: exactly one SignerInfo, and nothing after the SET */
    if (tag != 0x31 || sd.p != sd.end ||
        !trust_der_next(&sis, &tag, &si) || tag != 0x30 || sis.p != sis.end) {
        return FALSE;
    }
    if (!trust_der_next(&si, &tag, &f) || tag != 0x02 || f.end - f.p != 1 ||
        (f.p[0] != 1 && f.p[0] != 3) || (f.p[0] == 3) != (version == 3)) {
        return FALSE;
    }
    /* sid, then digestAlgorithm */
    if (!trust_der_next(&si, &tag, &f) ||
        !trust_der_next(&si, &tag, &alg) || tag != 0x30 ||
        (!trust_der_equal(&alg, sha256_oid, sizeof(sha256_oid)) &&
         !trust_der_equal(&alg, sha256_oid_null, sizeof(sha256_oid_null)))) {
        return FALSE;
    }
    return TRUE;
}

static gboolean trust_looks_der(GBytes *blob)
{
    gsize len;
    const guint8 *p = g_bytes_get_data(blob, &len);

    return len > 0 && p[0] == 0x30;     /* SEQUENCE, not "-----BEGIN" */
}

/*
 * Narrow [*from, *until], which holds @now, to the side of time @t on
 * which @now lies: a comparison of the time with @t ("from @t on") comes
 * out the same anywhere in it.
 */
static void trust_window_cut(gint64 now, gint64 t, gint64 *from,
                             gint64 *until)
{
    if (now < t) {
        *until = MIN(*until, t - 1);
    } else {
        *from = MAX(*from, t);
    }
}

/*
 * Narrow [*from, *until] by a period from @start (required) to @end
 * (inclusive; (time_t)-1 for none: RFC 5280's 99991231235959Z, or a CRL
 * that names no next update; an unreadable end our own check of the
 * signer refuses as expired and GnuTLS's of a chain as it does at any
 * time).  FALSE when @start cannot be read.
 */
static gboolean trust_window_period(gint64 now, time_t start, time_t end,
                                    gint64 *from, gint64 *until)
{
    if (start == (time_t)-1) {
        return FALSE;
    }
    trust_window_cut(now, start, from, until);
    if (end != (time_t)-1) {
        trust_window_cut(now, (gint64)end + 1, from, until);
    }
    return TRUE;
}

static gboolean trust_window_crt(gnutls_x509_crt_t crt, gint64 now,
                                 gint64 *from, gint64 *until)
{
    return trust_window_period(now, gnutls_x509_crt_get_activation_time(crt),
                               gnutls_x509_crt_get_expiration_time(crt),
                               from, until);
}

/*
 * The longest time around @now in which no certificate of the store or
 * of @embedded starts or ends its validity and no CRL its update period:
 * every check of a time that a verification makes (ours and GnuTLS's,
 * of whatever chain it builds) comes out as it does @now.  FALSE when a
 * time cannot be read.
 */
static gboolean trust_store_window(VmaugTrustStore *store,
                                   GPtrArray *embedded, gint64 now,
                                   gint64 *from, gint64 *until)
{
    *from = G_MININT64;
    *until = G_MAXINT64;
    for (guint i = 0; i < store->certs->len; i++) {
        if (!trust_window_crt(g_ptr_array_index(store->certs, i), now, from,
                              until)) {
            return FALSE;
        }
    }
    for (guint i = 0; i < embedded->len; i++) {
        if (!trust_window_crt(g_ptr_array_index(embedded, i), now, from,
                              until)) {
            return FALSE;
        }
    }
    for (guint i = 0; i < store->crls->len; i++) {
        gnutls_x509_crl_t crl = g_ptr_array_index(store->crls, i);

        if (!trust_window_period(now, gnutls_x509_crl_get_this_update(crl),
                                 gnutls_x509_crl_get_next_update(crl), from,
                                 until)) {
            return FALSE;
        }
    }
    return TRUE;
}

static VmaugTrustSigner *trust_store_verify_locked(VmaugTrustStore *store,
                                                   GBytes *data,
                                                   GBytes *signature,
                                                   gint64 now,
                                                   TrustVerified *window,
                                                   GError **error)
{
    g_auto(gnutls_pkcs7_t) p7 = NULL;
    g_autoptr(GPtrArray) embedded =
        g_ptr_array_new_with_free_func((GDestroyNotify)gnutls_x509_crt_deinit);
    g_autoptr(GPtrArray) chain = g_ptr_array_new();
    gnutls_pkcs7_signature_info_st info;
    g_auto(gnutls_datum_t) content = { NULL, 0 };
    g_auto(gnutls_datum_t) dn = { NULL, 0 };
    gnutls_x509_crt_t signer = NULL;
    gnutls_typed_vdata_st purpose = {
        .type = GNUTLS_DT_KEY_PURPOSE_OID,
        .data = (unsigned char *)GNUTLS_KP_CODE_SIGNING,
    };
    VmaugTrustSigner *out;
    unsigned int status = 0;
    gnutls_datum_t d;
    gsize len;
    int rc, count;

    /* Cap before parsing: the signature arrives from anyone. */
    d.data = (unsigned char *)g_bytes_get_data(signature, &len);
    if (len == 0 || len > VMAUG_TRUST_MAX_SIGNATURE_SIZE) {
        g_set_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_INVALID,
                    "signature of %" G_GSIZE_FORMAT " bytes (1..%u allowed)",
                    len, VMAUG_TRUST_MAX_SIGNATURE_SIZE);
        return NULL;
    }
    d.size = len;
    gnutls_pkcs7_init(&p7);
    rc = gnutls_pkcs7_import(p7, &d, GNUTLS_X509_FMT_DER);
    if (rc < 0) {
        /* certtool --p7-detached-sign writes PEM by default. */
        rc = gnutls_pkcs7_import(p7, &d, GNUTLS_X509_FMT_PEM);
    }
    if (rc < 0) {
        trust_gnutls_error(error, VMAUG_TRUST_ERROR_INVALID, rc,
                           "malformed signature");
        return NULL;
    }
    /*
     * Only canonical DER: a structure that parses but re-encodes
     * differently (long-form or lying lengths, trailing bytes) is
     * malleable, and one signature must have one encoding.
     */
    {
        g_auto(gnutls_datum_t) der = { NULL, 0 };

        rc = gnutls_pkcs7_export2(p7, GNUTLS_X509_FMT_DER, &der);
        if (rc < 0 || (trust_looks_der(signature) &&
                       (der.size != d.size ||
                        memcmp(der.data, d.data, d.size) != 0 ||
                        !trust_check_fields(signature)))) {
            g_set_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_INVALID,
                        "signature is not in canonical DER");
            return NULL;
        }
    }
    /* Exactly one signer: otherwise "who signed this" has no one answer. */
    count = gnutls_pkcs7_get_signature_count(p7);
    if (count != 1) {
        g_set_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_INVALID,
                    "signature holds %d signers, not 1", count);
        return NULL;
    }
    /* Detached only: embedded content would not be the bytes we check. */
    if (gnutls_pkcs7_get_embedded_data(p7, 0, &content) >= 0 &&
        content.size > 0) {
        g_set_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_INVALID,
                    "signature embeds its content; a detached one is needed");
        return NULL;
    }
    count = gnutls_pkcs7_get_crt_count(p7);
    if (count < 0 || count > TRUST_MAX_EMBEDDED_CERTS) {
        g_set_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_INVALID,
                    "signature carries %d certificates", count);
        return NULL;
    }
    for (int i = 0; i < count; i++) {
        gnutls_datum_t raw = { NULL, 0 };
        gnutls_x509_crt_t crt;

        rc = gnutls_pkcs7_get_crt_raw2(p7, i, &raw);
        if (rc < 0) {
            trust_gnutls_error(error, VMAUG_TRUST_ERROR_INVALID, rc,
                               "embedded certificate");
            return NULL;
        }
        gnutls_x509_crt_init(&crt);
        rc = gnutls_x509_crt_import(crt, &raw, GNUTLS_X509_FMT_DER);
        gnutls_free(raw.data);
        if (rc < 0) {
            gnutls_x509_crt_deinit(crt);
            trust_gnutls_error(error, VMAUG_TRUST_ERROR_INVALID, rc,
                               "embedded certificate");
            return NULL;
        }
        g_ptr_array_add(embedded, crt);
    }

    memset(&info, 0, sizeof(info));
    rc = gnutls_pkcs7_get_signature_info(p7, 0, &info);
    if (rc < 0) {
        trust_gnutls_error(error, VMAUG_TRUST_ERROR_INVALID, rc,
                           "signer information");
        return NULL;
    }
    for (guint i = 0; signer == NULL && i < embedded->len; i++) {
        if (trust_crt_is_sid(g_ptr_array_index(embedded, i), &info)) {
            signer = g_ptr_array_index(embedded, i);
        }
    }
    for (guint i = 0; signer == NULL && i < store->certs->len; i++) {
        if (trust_crt_is_sid(g_ptr_array_index(store->certs, i), &info)) {
            signer = g_ptr_array_index(store->certs, i);
        }
    }
    if (signer != NULL) {
        /*
         * GnuTLS trusts a certificate whose subject and key equal a trusted
         * one without checking its own signature, and neither the SignerInfo
         * nor the embedded certificates are covered by the signature: an
         * attacker holding an expired (or revoked) directly trusted key
         * could embed a copy with new dates or serial.  The store's copy is
         * the one that counts.
         */
        gnutls_x509_crt_t same = trust_store_find_same_key(store, signer);

        if (same != NULL) {
            signer = same;
        }
    }
    if (signer == NULL) {
        trust_signature_info_free(&info);
        g_set_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_UNKNOWN_SIGNER,
                    "the signer's certificate is neither included nor "
                    "trusted");
        return NULL;
    }

    /* Revocation first, and by us, so it is reported as such even for a
     * certificate the store trusts directly. */
    if (store->valid_crls->len > 0 &&
        gnutls_x509_crt_check_revocation(
            signer, (gnutls_x509_crl_t *)store->valid_crls->pdata,
            store->valid_crls->len) == 1) {
        trust_signature_info_free(&info);
        g_set_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_REVOKED,
                    "the signer's certificate is revoked");
        return NULL;
    }

    g_ptr_array_add(chain, signer);
    for (guint i = 0; i < embedded->len; i++) {
        if (g_ptr_array_index(embedded, i) != signer) {
            g_ptr_array_add(chain, g_ptr_array_index(embedded, i));
        }
    }
    rc = gnutls_x509_trust_list_verify_crt2(store->tl,
                                            (gnutls_x509_crt_t *)chain->pdata,
                                            chain->len, &purpose, 1, 0,
                                            &status, NULL);
    if (rc < 0) {
        trust_signature_info_free(&info);
        trust_gnutls_error(error, VMAUG_TRUST_ERROR_FAILED, rc,
                           "certificate verification");
        return NULL;
    }
    /* GnuTLS may accept a directly trusted certificate without looking at
     * its dates; we do not. */
    if (now < (gint64)gnutls_x509_crt_get_activation_time(signer) ||
        now > (gint64)gnutls_x509_crt_get_expiration_time(signer)) {
        status |= GNUTLS_CERT_EXPIRED | GNUTLS_CERT_INVALID;
    }
    if (status != 0) {
        g_auto(gnutls_datum_t) why = { NULL, 0 };
        gint code = VMAUG_TRUST_ERROR_UNKNOWN_SIGNER;

        if (status & GNUTLS_CERT_REVOKED) {
            code = VMAUG_TRUST_ERROR_REVOKED;
        } else if (status & (GNUTLS_CERT_EXPIRED |
                             GNUTLS_CERT_NOT_ACTIVATED)) {
            code = VMAUG_TRUST_ERROR_EXPIRED;
        }
        gnutls_certificate_verification_status_print(status,
                                                     GNUTLS_CRT_X509, &why,
                                                     0);
        trust_signature_info_free(&info);
        g_set_error(error, VMAUG_TRUST_ERROR, code,
                    "the signer's certificate is not trusted: %s",
                    why.data != NULL ? (const char *)why.data : "?");
        return NULL;
    }

    d.data = (unsigned char *)g_bytes_get_data(data, &len);
    d.size = len;
    if (len == 0) {
        trust_signature_info_free(&info);
        g_set_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_BAD_SIGNATURE,
                    "no data to verify");
        return NULL;
    }
    rc = gnutls_pkcs7_verify_direct(p7, signer, 0, &d, 0);
    if (rc < 0) {
        trust_signature_info_free(&info);
        g_set_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_BAD_SIGNATURE,
                    "the signature does not match the data: %s",
                    gnutls_strerror(rc));
        return NULL;
    }

    out = g_new0(VmaugTrustSigner, 1);
    out->common_name = trust_crt_common_name(signer);
    if (gnutls_x509_crt_get_dn3(signer, &dn, 0) >= 0 &&
        g_utf8_validate((const gchar *)dn.data, dn.size, NULL)) {
        out->subject = g_strndup((const gchar *)dn.data, dn.size);
    } else {
        out->subject = g_strdup("");
    }
    out->fingerprint = trust_crt_fingerprint(signer);
    out->key_id = trust_crt_key_id(signer);
    out->signing_time = info.signing_time == (time_t)-1 ||
                        info.signing_time == 0 ? -1 :
                        (gint64)info.signing_time;
    out->not_after = gnutls_x509_crt_get_expiration_time(signer);
    trust_signature_info_free(&info);
    if (!trust_store_window(store, embedded, now, &window->valid_from,
                            &window->valid_until)) {
        /* Verified, but not to be remembered. */
        window->valid_from = G_MAXINT64;
        window->valid_until = G_MININT64;
    }
    return out;
}

static VmaugTrustSigner *trust_signer_copy(const VmaugTrustSigner *signer)
{
    VmaugTrustSigner *copy = g_memdup2(signer, sizeof(*signer));

    copy->common_name = g_strdup(signer->common_name);
    copy->subject = g_strdup(signer->subject);
    copy->fingerprint = g_strdup(signer->fingerprint);
    copy->key_id = g_strdup(signer->key_id);
    return copy;
}

/* Names @data and @signature together: both lengths are hashed, so no
 * other split of the same bytes has the same name. */
static gchar *trust_verified_key(GBytes *data, GBytes *signature)
{
    g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
    GBytes *parts[] = { data, signature };

    for (guint i = 0; i < G_N_ELEMENTS(parts); i++) {
        gsize len;
        const guchar *p = g_bytes_get_data(parts[i], &len);
        guint64 le = GUINT64_TO_LE((guint64)len);

        g_checksum_update(sum, (const guchar *)&le, sizeof(le));
        g_checksum_update(sum, p, len);
    }
    return g_strdup(g_checksum_get_string(sum));
}

/*
 * The clocks a verification reads: ours (g_get_real_time()) and GnuTLS's
 * (libc's time(), a coarser clock that can lag ours by a second), both
 * widened into [*lo, *hi].
 */
static void trust_clocks(gint64 *lo, gint64 *hi)
{
    gint64 precise = g_get_real_time() / G_USEC_PER_SEC;
    gint64 coarse = (gint64)time(NULL);

    *lo = MIN(*lo, MIN(precise, coarse));
    *hi = MAX(*hi, MAX(precise, coarse));
}

VmaugTrustSigner *vmaug_trust_store_verify(VmaugTrustStore *store,
                                           GBytes *data, GBytes *signature,
                                           GError **error)
{
    g_autofree gchar *key = trust_verified_key(data, signature);
    gint64 lo = G_MAXINT64, hi = G_MININT64;
    TrustVerified window = { 0 };
    TrustVerified *v;
    VmaugTrustSigner *signer;

    g_mutex_lock(&store->verify_lock);
    trust_store_refresh_locked(store);
    if (store->dir_error != NULL) {
        g_propagate_error(error, g_error_copy(store->dir_error));
        g_mutex_unlock(&store->verify_lock);
        return NULL;
    }
    /* Every clock a fresh verification would read lies in the window. */
    trust_clocks(&lo, &hi);
    v = g_hash_table_lookup(store->verified, key);
    if (v != NULL && lo >= v->valid_from && hi <= v->valid_until) {
        signer = trust_signer_copy(v->signer);
        g_mutex_unlock(&store->verify_lock);
        return signer;
    }
    signer = trust_store_verify_locked(store, data, signature,
                                       g_get_real_time() / G_USEC_PER_SEC,
                                       &window, error);
    /* Remembered only when every clock read, before and after, lay in
     * the window: whatever time each check saw, it is one of the window's
     * times. */
    trust_clocks(&lo, &hi);
    if (signer != NULL && lo >= window.valid_from &&
        hi <= window.valid_until) {
        if (g_hash_table_size(store->verified) >= TRUST_MAX_REMEMBERED) {
            g_hash_table_remove_all(store->verified);
        }
        v = g_new0(TrustVerified, 1);
        *v = window;
        v->signer = trust_signer_copy(signer);
        g_hash_table_replace(store->verified, g_steal_pointer(&key), v);
    }
    g_mutex_unlock(&store->verify_lock);
    return signer;
}
