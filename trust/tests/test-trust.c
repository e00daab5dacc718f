/*
 * Tests of the vmaugment trust library: every refusal reason is reached
 * and told apart, and good signatures pass.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <fcntl.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <gnutls/gnutls.h>

#include "vmaugment-trust.h"

#define DAY (24 * 3600)

typedef struct {
    VmaugTrustIdentity *ca;         /* trusted CA */
    VmaugTrustIdentity *admin;      /* self-signed, trusted directly */
    VmaugTrustIdentity *leaf;       /* issued by ca */
    VmaugTrustIdentity *stranger;   /* self-signed, not trusted */
    GBytes *data;
} Fixture;

static gint64 now_s(void)
{
    return g_get_real_time() / G_USEC_PER_SEC;
}

static VmaugTrustIdentity *make_id(const gchar *cn, VmaugTrustRole role,
                                   gint64 from, gint64 to,
                                   VmaugTrustIdentity *issuer)
{
    g_autoptr(GError) error = NULL;
    VmaugTrustIdentity *id;

    id = vmaug_trust_identity_generate(cn, role, from, to, issuer, &error);
    g_assert_no_error(error);
    g_assert_nonnull(id);
    return id;
}

static void fixture_setup(Fixture *f, gconstpointer user_data)
{
    gint64 now = now_s();

    f->ca = make_id("Test CA", VMAUG_TRUST_ROLE_CA, now - DAY, now + DAY,
                    NULL);
    f->admin = make_id("Admin", VMAUG_TRUST_ROLE_SIGNER, now - DAY,
                       now + DAY, NULL);
    f->leaf = make_id("Leaf", VMAUG_TRUST_ROLE_SIGNER, now - DAY, now + DAY,
                      f->ca);
    f->stranger = make_id("Stranger", VMAUG_TRUST_ROLE_SIGNER, now - DAY,
                          now + DAY, NULL);
    f->data = g_bytes_new_static("module bytes\n", 13);
}

static void fixture_teardown(Fixture *f, gconstpointer user_data)
{
    vmaug_trust_identity_free(f->ca);
    vmaug_trust_identity_free(f->admin);
    vmaug_trust_identity_free(f->leaf);
    vmaug_trust_identity_free(f->stranger);
    g_bytes_unref(f->data);
}

static void trust(VmaugTrustStore *store, VmaugTrustIdentity *id)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GBytes) pem = vmaug_trust_identity_get_certificate(id, &error);

    g_assert_no_error(error);
    g_assert_true(vmaug_trust_store_add_certificate(store, pem, &error));
    g_assert_no_error(error);
}

static VmaugTrustStore *fixture_store(Fixture *f)
{
    VmaugTrustStore *store = vmaug_trust_store_new();

    trust(store, f->ca);
    trust(store, f->admin);
    return store;
}

static GBytes *sign(VmaugTrustIdentity *id, GBytes *data)
{
    g_autoptr(GError) error = NULL;
    GBytes *sig = vmaug_trust_identity_sign(id, data, &error);

    g_assert_no_error(error);
    g_assert_nonnull(sig);
    g_assert_cmpuint(g_bytes_get_size(sig), <=,
                     VMAUG_TRUST_MAX_SIGNATURE_SIZE);
    return sig;
}

static void expect_refused(VmaugTrustStore *store, GBytes *data, GBytes *sig,
                           VmaugTrustError code)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugTrustSigner) signer = NULL;

    signer = vmaug_trust_store_verify(store, data, sig, &error);
    g_assert_null(signer);
    g_assert_error(error, VMAUG_TRUST_ERROR, (gint)code);
}

static GBytes *flip_bit(GBytes *in, gsize bit)
{
    gsize len;
    const guint8 *p = g_bytes_get_data(in, &len);
    guint8 *copy = g_memdup2(p, len);

    copy[(bit / 8) % len] ^= 1u << (bit % 8);
    return g_bytes_new_take(copy, len);
}

static void test_self_signed(Fixture *f, gconstpointer user_data)
{
    g_autoptr(VmaugTrustStore) store = fixture_store(f);
    g_autoptr(GBytes) sig = sign(f->admin, f->data);
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugTrustSigner) signer = NULL;
    gint64 now = now_s();

    signer = vmaug_trust_store_verify(store, f->data, sig, &error);
    g_assert_no_error(error);
    g_assert_nonnull(signer);
    g_assert_cmpstr(signer->common_name, ==, "Admin");
    g_assert_cmpstr(signer->subject, ==, "CN=Admin");
    g_assert_cmpuint(strlen(signer->fingerprint), ==, 64);
    g_assert_cmpuint(strlen(signer->key_id), ==, 64);
    g_assert_cmpint(signer->signing_time, >=, now - 60);
    g_assert_cmpint(signer->signing_time, <=, now + 60);
    g_assert_cmpint(signer->not_after, >, now);
}

static void test_ca_issued(Fixture *f, gconstpointer user_data)
{
    g_autoptr(VmaugTrustStore) store = fixture_store(f);
    g_autoptr(GBytes) sig = sign(f->leaf, f->data);
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugTrustSigner) signer = NULL;

    signer = vmaug_trust_store_verify(store, f->data, sig, &error);
    g_assert_no_error(error);
    g_assert_cmpstr(signer->common_name, ==, "Leaf");
}

static void test_empty_data(Fixture *f, gconstpointer user_data)
{
    g_autoptr(VmaugTrustStore) store = fixture_store(f);
    g_autoptr(GBytes) empty = g_bytes_new(NULL, 0);
    g_autoptr(GBytes) sig = sign(f->admin, f->data);
    g_autoptr(GError) error = NULL;
    g_autoptr(GBytes) none = NULL;

    none = vmaug_trust_identity_sign(f->admin, empty, &error);
    g_assert_null(none);
    g_assert_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_INVALID);
    expect_refused(store, empty, sig, VMAUG_TRUST_ERROR_BAD_SIGNATURE);
}

static void test_tampered_data(Fixture *f, gconstpointer user_data)
{
    g_autoptr(VmaugTrustStore) store = fixture_store(f);
    g_autoptr(GBytes) sig = sign(f->admin, f->data);
    gsize bits = g_bytes_get_size(f->data) * 8;

    for (gsize bit = 0; bit < bits; bit += 7) {
        g_autoptr(GBytes) bad = flip_bit(f->data, bit);

        expect_refused(store, bad, sig, VMAUG_TRUST_ERROR_BAD_SIGNATURE);
    }
    /* One byte more or less is a different message too. */
    {
        g_autoptr(GBytes) shorter = g_bytes_new_from_bytes(
            f->data, 0, g_bytes_get_size(f->data) - 1);

        expect_refused(store, shorter, sig, VMAUG_TRUST_ERROR_BAD_SIGNATURE);
    }
}

static void test_tampered_signature(Fixture *f, gconstpointer user_data)
{
    g_autoptr(VmaugTrustStore) store = fixture_store(f);
    g_autoptr(GBytes) sig = sign(f->leaf, f->data);
    gsize bits = g_bytes_get_size(sig) * 8;

    /* The signer's certificate is not in the store, so every bit of the
     * structure matters: each flip must be refused, for whatever reason
     * the parser finds first. */
    for (gsize bit = 0; bit < bits; bit++) {
        g_autoptr(GBytes) bad = flip_bit(sig, bit);
        g_autoptr(GError) error = NULL;
        g_autoptr(VmaugTrustSigner) signer = NULL;

        signer = vmaug_trust_store_verify(store, f->data, bad, &error);
        if (signer != NULL) {
            g_error("bit %" G_GSIZE_FORMAT " flipped and still accepted",
                    bit);
        }
        g_assert_true(error->domain == VMAUG_TRUST_ERROR);
    }
}

static void test_tampered_embedded_cert(Fixture *f, gconstpointer user_data)
{
    g_autoptr(VmaugTrustStore) store = fixture_store(f);
    g_autoptr(GBytes) sig = sign(f->admin, f->data);
    g_autoptr(VmaugTrustSigner) good = NULL;
    gsize bits = g_bytes_get_size(sig) * 8;
    guint accepted = 0;

    good = vmaug_trust_store_verify(store, f->data, sig, NULL);
    g_assert_nonnull(good);
    /*
     * The admin certificate is trusted directly, so the copy embedded in
     * the signature does not count: a flip there may be accepted, but then
     * the signer reported must be the store's certificate, dates and all.
     */
    for (gsize bit = 0; bit < bits; bit++) {
        g_autoptr(GBytes) bad = flip_bit(sig, bit);
        g_autoptr(VmaugTrustSigner) signer = NULL;

        signer = vmaug_trust_store_verify(store, f->data, bad, NULL);
        if (signer != NULL) {
            accepted++;
            g_assert_cmpstr(signer->fingerprint, ==, good->fingerprint);
            g_assert_cmpint(signer->not_after, ==, good->not_after);
        }
    }
    g_test_message("%u of %" G_GSIZE_FORMAT " flips fell outside what "
                   "counts", accepted, bits);
    g_assert_cmpuint(accepted, <, bits / 2);
}

static void test_unknown_signer(Fixture *f, gconstpointer user_data)
{
    g_autoptr(VmaugTrustStore) store = fixture_store(f);
    g_autoptr(VmaugTrustStore) empty = vmaug_trust_store_new();
    g_autoptr(GBytes) sig = sign(f->stranger, f->data);
    g_autoptr(GBytes) sig2 = sign(f->admin, f->data);

    expect_refused(store, f->data, sig, VMAUG_TRUST_ERROR_UNKNOWN_SIGNER);
    expect_refused(empty, f->data, sig2, VMAUG_TRUST_ERROR_UNKNOWN_SIGNER);
}

static void test_unknown_ca(Fixture *f, gconstpointer user_data)
{
    g_autoptr(VmaugTrustStore) store = fixture_store(f);
    gint64 now = now_s();
    g_autoptr(VmaugTrustIdentity) other_ca =
        make_id("Test CA", VMAUG_TRUST_ROLE_CA, now - DAY, now + DAY, NULL);
    g_autoptr(VmaugTrustIdentity) fake =
        make_id("Leaf", VMAUG_TRUST_ROLE_SIGNER, now - DAY, now + DAY,
                other_ca);
    g_autoptr(GBytes) sig = sign(fake, f->data);

    /* Same names as the trusted CA and leaf, different keys. */
    expect_refused(store, f->data, sig, VMAUG_TRUST_ERROR_UNKNOWN_SIGNER);
}

static void test_ca_role_cannot_be_forged_by_signer(Fixture *f,
                                                    gconstpointer user_data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugTrustIdentity) id = NULL;
    gint64 now = now_s();

    /* A signer certificate is not a CA: it cannot issue certificates. */
    id = vmaug_trust_identity_generate("Sub", VMAUG_TRUST_ROLE_SIGNER,
                                       now - DAY, now + DAY, f->admin,
                                       &error);
    g_assert_null(id);
    g_assert_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_INVALID);
}

static void test_expired(Fixture *f, gconstpointer user_data)
{
    g_autoptr(VmaugTrustStore) store = fixture_store(f);
    gint64 now = now_s();
    g_autoptr(VmaugTrustIdentity) old_admin =
        make_id("Old admin", VMAUG_TRUST_ROLE_SIGNER, now - 3 * DAY,
                now - DAY, NULL);
    g_autoptr(VmaugTrustIdentity) old_leaf =
        make_id("Old leaf", VMAUG_TRUST_ROLE_SIGNER, now - 3 * DAY,
                now - DAY, f->ca);
    g_autoptr(VmaugTrustIdentity) future_leaf =
        make_id("Future leaf", VMAUG_TRUST_ROLE_SIGNER, now + DAY,
                now + 3 * DAY, f->ca);
    g_autoptr(GBytes) sig1 = sign(old_admin, f->data);
    g_autoptr(GBytes) sig2 = sign(old_leaf, f->data);
    g_autoptr(GBytes) sig3 = sign(future_leaf, f->data);

    trust(store, old_admin);
    expect_refused(store, f->data, sig1, VMAUG_TRUST_ERROR_EXPIRED);
    expect_refused(store, f->data, sig2, VMAUG_TRUST_ERROR_EXPIRED);
    expect_refused(store, f->data, sig3, VMAUG_TRUST_ERROR_EXPIRED);
}

static void test_expired_ca(Fixture *f, gconstpointer user_data)
{
    g_autoptr(VmaugTrustStore) store = vmaug_trust_store_new();
    gint64 now = now_s();
    g_autoptr(VmaugTrustIdentity) old_ca =
        make_id("Old CA", VMAUG_TRUST_ROLE_CA, now - 3 * DAY, now - DAY,
                NULL);
    g_autoptr(VmaugTrustIdentity) leaf =
        make_id("Leaf of old CA", VMAUG_TRUST_ROLE_SIGNER, now - 3 * DAY,
                now + DAY, old_ca);
    g_autoptr(GBytes) sig = sign(leaf, f->data);
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugTrustSigner) signer = NULL;

    trust(store, old_ca);
    signer = vmaug_trust_store_verify(store, f->data, sig, &error);
    g_assert_null(signer);
    g_assert_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_EXPIRED);
}

static GBytes *make_crl(VmaugTrustIdentity *ca, VmaugTrustIdentity *revoked)
{
    g_autoptr(GPtrArray) certs =
        g_ptr_array_new_with_free_func((GDestroyNotify)g_bytes_unref);
    g_autoptr(GError) error = NULL;
    GBytes *crl;
    gint64 now = now_s();

    if (revoked != NULL) {
        g_ptr_array_add(certs,
                        vmaug_trust_identity_get_certificate(revoked, &error));
        g_assert_no_error(error);
    }
    crl = vmaug_trust_identity_create_crl(ca, certs, now - 60, now + DAY,
                                          &error);
    g_assert_no_error(error);
    g_assert_nonnull(crl);
    return crl;
}

static void test_revoked(Fixture *f, gconstpointer user_data)
{
    g_autoptr(VmaugTrustStore) store = fixture_store(f);
    g_autoptr(GBytes) sig = sign(f->leaf, f->data);
    g_autoptr(GBytes) crl = make_crl(f->ca, f->leaf);
    g_autoptr(GError) error = NULL;
    gint64 now = now_s();
    g_autoptr(VmaugTrustIdentity) other =
        make_id("Other leaf", VMAUG_TRUST_ROLE_SIGNER, now - DAY, now + DAY,
                f->ca);
    g_autoptr(GBytes) sig_other = sign(other, f->data);
    g_autoptr(VmaugTrustSigner) signer = NULL;

    g_assert_true(vmaug_trust_store_add_crl(store, crl, &error));
    g_assert_no_error(error);
    expect_refused(store, f->data, sig, VMAUG_TRUST_ERROR_REVOKED);
    /* The CA and its other certificates stay good. */
    signer = vmaug_trust_store_verify(store, f->data, sig_other, &error);
    g_assert_no_error(error);
    g_assert_cmpstr(signer->common_name, ==, "Other leaf");
}

/* GnuTLS's clock two days ahead: the fixture's certificates expired. */
static time_t two_days_on(time_t *t)
{
    time_t now = time(NULL) + 2 * DAY;

    if (t != NULL) {
        *t = now;
    }
    return now;
}

/*
 * A store remembers what verified (vmaug_trust_store_verify()): a change of
 * the store or the passing of a certificate's or CRL's time must still
 * decide as a fresh verification does.  What is remembered is not
 * verified again: with GnuTLS's clock past the chain's expiry, a fresh
 * verification fails and the remembered one does not (only a test moves
 * GnuTLS's clock alone).
 */
static void test_remembered_hit_and_change(Fixture *f, gconstpointer user_data)
{
    g_autoptr(VmaugTrustStore) store = fixture_store(f);
    g_autoptr(VmaugTrustStore) fresh = fixture_store(f);
    g_autoptr(GBytes) sig = sign(f->leaf, f->data);
    g_autoptr(GBytes) crl = make_crl(f->ca, f->leaf);
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugTrustSigner) first = NULL;
    g_autoptr(VmaugTrustSigner) again = NULL;

    first = vmaug_trust_store_verify(store, f->data, sig, &error);
    g_assert_no_error(error);
    gnutls_global_set_time_function(two_days_on);
    again = vmaug_trust_store_verify(store, f->data, sig, &error);
    g_assert_no_error(error);
    expect_refused(fresh, f->data, sig, VMAUG_TRUST_ERROR_EXPIRED);
    gnutls_global_set_time_function(time);
    g_assert_cmpstr(again->common_name, ==, first->common_name);
    g_assert_cmpstr(again->fingerprint, ==, first->fingerprint);
    g_assert_cmpint(again->not_after, ==, first->not_after);
    /* Other bytes under the same signature are not what verified. */
    {
        g_autoptr(GBytes) other = flip_bit(f->data, 3);

        expect_refused(store, other, sig, VMAUG_TRUST_ERROR_BAD_SIGNATURE);
    }
    g_assert_true(vmaug_trust_store_add_crl(store, crl, &error));
    g_assert_no_error(error);
    expect_refused(store, f->data, sig, VMAUG_TRUST_ERROR_REVOKED);
}

/* The outcome of verifying @sig now, as a string: the signer or the
 * error's code. */
static gchar *outcome(VmaugTrustStore *store, GBytes *data, GBytes *sig)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugTrustSigner) signer =
        vmaug_trust_store_verify(store, data, sig, &error);

    return signer != NULL ? g_strdup(signer->common_name)
                          : g_strdup_printf("error %d", error->code);
}

static void test_remembered_times(Fixture *f, gconstpointer user_data)
{
    gint64 now = now_s();
    gint64 end = now + 3;
    /* Each time that ends in a few seconds in a store of its own: a
     * signer's, a CA's in the store, a CRL's next update. */
    g_autoptr(VmaugTrustIdentity) short_leaf =
        make_id("Short leaf", VMAUG_TRUST_ROLE_SIGNER, now - DAY, end, f->ca);
    g_autoptr(VmaugTrustIdentity) short_ca =
        make_id("Short CA", VMAUG_TRUST_ROLE_CA, now - DAY, end, NULL);
    g_autoptr(VmaugTrustIdentity) leaf_of_short =
        make_id("Leaf of short CA", VMAUG_TRUST_ROLE_SIGNER, now - DAY,
                now + DAY, short_ca);
    g_autoptr(GPtrArray) none =
        g_ptr_array_new_with_free_func((GDestroyNotify)g_bytes_unref);
    g_autoptr(GError) error = NULL;
    g_autoptr(GBytes) crl =
        vmaug_trust_identity_create_crl(f->ca, none, now - 60, end, &error);
    GBytes *sigs[] = {
        sign(short_leaf, f->data), sign(leaf_of_short, f->data),
        sign(f->leaf, f->data),
    };
    /* [i][0] verifies before the time ends and again after it; [i][1],
     * the same store made afresh, only after. */
    VmaugTrustStore *stores[G_N_ELEMENTS(sigs)][2];

    g_assert_no_error(error);
    for (guint i = 0; i < G_N_ELEMENTS(sigs); i++) {
        g_autofree gchar *before = NULL;

        for (guint j = 0; j < 2; j++) {
            stores[i][j] = fixture_store(f);
            if (i == 1) {
                trust(stores[i][j], short_ca);
            } else if (i == 2) {
                g_assert_true(vmaug_trust_store_add_crl(stores[i][j], crl,
                                                        &error));
                g_assert_no_error(error);
            }
        }
        before = outcome(stores[i][0], f->data, sigs[i]);
        g_assert_false(g_str_has_prefix(before, "error"));
    }
    while (now_s() <= end + 1) {
        g_usleep(100 * 1000);
    }
    for (guint i = 0; i < G_N_ELEMENTS(sigs); i++) {
        g_autofree gchar *remembered = outcome(stores[i][0], f->data,
                                               sigs[i]);
        g_autofree gchar *fresh = outcome(stores[i][1], f->data, sigs[i]);

        g_test_message("signature %u: %s, afresh %s", i, remembered, fresh);
        g_assert_cmpstr(remembered, ==, fresh);
        /* The expired signer, and the leaf of the expired CA. */
        if (i < 2) {
            g_autofree gchar *expired = g_strdup_printf(
                "error %d", VMAUG_TRUST_ERROR_EXPIRED);

            g_assert_cmpstr(fresh, ==, expired);
        }
        g_bytes_unref(sigs[i]);
        vmaug_trust_store_free(stores[i][0]);
        vmaug_trust_store_free(stores[i][1]);
    }
}

static void test_crl_from_stranger_ignored(Fixture *f,
                                           gconstpointer user_data)
{
    g_autoptr(VmaugTrustStore) store = fixture_store(f);
    gint64 now = now_s();
    g_autoptr(VmaugTrustIdentity) rogue_ca =
        make_id("Test CA", VMAUG_TRUST_ROLE_CA, now - DAY, now + DAY, NULL);
    g_autoptr(GBytes) crl = make_crl(rogue_ca, f->leaf);
    g_autoptr(GBytes) sig = sign(f->leaf, f->data);
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugTrustSigner) signer = NULL;

    /* Someone who merely names himself like our CA cannot revoke ours. */
    g_assert_true(vmaug_trust_store_add_crl(store, crl, &error));
    signer = vmaug_trust_store_verify(store, f->data, sig, &error);
    g_assert_no_error(error);
    g_assert_nonnull(signer);
}

static void test_crl_needs_ca(Fixture *f, gconstpointer user_data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GBytes) crl = NULL;

    crl = vmaug_trust_identity_create_crl(f->admin, NULL, 0, 1, &error);
    g_assert_null(crl);
    g_assert_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_INVALID);
}

static void test_malformed(Fixture *f, gconstpointer user_data)
{
    g_autoptr(VmaugTrustStore) store = fixture_store(f);
    g_autoptr(GBytes) empty = g_bytes_new(NULL, 0);
    g_autoptr(GBytes) garbage = g_bytes_new_static("not a signature", 15);
    g_autoptr(GBytes) sig = sign(f->admin, f->data);
    g_autofree guint8 *big = g_malloc0(VMAUG_TRUST_MAX_SIGNATURE_SIZE + 1);
    g_autoptr(GBytes) oversize =
        g_bytes_new(big, VMAUG_TRUST_MAX_SIGNATURE_SIZE + 1);
    g_autoptr(GBytes) truncated = NULL;

    expect_refused(store, f->data, empty, VMAUG_TRUST_ERROR_INVALID);
    expect_refused(store, f->data, garbage, VMAUG_TRUST_ERROR_INVALID);
    expect_refused(store, f->data, oversize, VMAUG_TRUST_ERROR_INVALID);
    for (gsize cut = 1; cut < g_bytes_get_size(sig); cut += 17) {
        truncated = g_bytes_new_from_bytes(sig, 0, cut);
        expect_refused(store, f->data, truncated, VMAUG_TRUST_ERROR_INVALID);
        g_clear_pointer(&truncated, g_bytes_unref);
    }
}

static gchar *write_tmp(const gchar *dir, const gchar *name, GBytes *b)
{
    g_autoptr(GError) error = NULL;
    gchar *path = g_build_filename(dir, name, NULL);

    g_assert_true(g_file_set_contents(path, g_bytes_get_data(b, NULL),
                                      g_bytes_get_size(b), &error));
    g_assert_no_error(error);
    return path;
}

static void rm_rf(const gchar *dir)
{
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    const gchar *n;

    while (d != NULL && (n = g_dir_read_name(d)) != NULL) {
        g_autofree gchar *p = g_build_filename(dir, n, NULL);
        g_unlink(p);
    }
    g_rmdir(dir);
}

static void test_store_dir(Fixture *f, gconstpointer user_data)
{
    g_autoptr(GError) error = NULL;
    g_autofree gchar *dir = g_dir_make_tmp("trust-XXXXXX", &error);
    g_autoptr(GBytes) ca_pem = vmaug_trust_identity_get_certificate(f->ca,
                                                                     NULL);
    g_autoptr(GBytes) crl = make_crl(f->ca, f->leaf);
    g_autoptr(GBytes) junk = g_bytes_new_static("junk", 4);
    g_autoptr(GBytes) sig_leaf = sign(f->leaf, f->data);
    g_autoptr(GBytes) sig_admin = sign(f->admin, f->data);
    g_autoptr(VmaugTrustStore) store = NULL;
    g_autofree gchar *p1 = NULL, *p2 = NULL, *p3 = NULL, *p4 = NULL;

    g_assert_no_error(error);
    p1 = write_tmp(dir, "ca.pem", ca_pem);
    p2 = write_tmp(dir, "site.crl", crl);
    p3 = write_tmp(dir, "README", junk);
    p4 = write_tmp(dir, ".hidden.pem", junk);

    store = vmaug_trust_store_new_from_dir(dir, &error);
    g_assert_no_error(error);
    g_assert_cmpuint(vmaug_trust_store_get_n_certificates(store), ==, 1);
    expect_refused(store, f->data, sig_leaf, VMAUG_TRUST_ERROR_REVOKED);
    expect_refused(store, f->data, sig_admin,
                   VMAUG_TRUST_ERROR_UNKNOWN_SIGNER);
    g_clear_pointer(&store, vmaug_trust_store_free);

    /* A malformed certificate fails the whole load. */
    g_free(write_tmp(dir, "broken.crt", junk));
    store = vmaug_trust_store_new_from_dir(dir, &error);
    g_assert_null(store);
    g_assert_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_INVALID);
    rm_rf(dir);
}

/*
 * A followed directory (vmaug_trust_store_follow_dir(), the helper's):
 * what the owner changes there counts at the next verification, a
 * malformed file refuses everything until it is gone, and a store not
 * followed keeps what it loaded.
 */
static void test_store_follow(Fixture *f, gconstpointer user_data)
{
    g_autoptr(GError) error = NULL;
    g_autofree gchar *dir = g_dir_make_tmp("trust-XXXXXX", &error);
    g_autoptr(GBytes) ca_pem = vmaug_trust_identity_get_certificate(f->ca,
                                                                     NULL);
    g_autoptr(GBytes) admin_pem =
        vmaug_trust_identity_get_certificate(f->admin, NULL);
    g_autoptr(GBytes) crl = make_crl(f->ca, f->leaf);
    g_autoptr(GBytes) junk = g_bytes_new_static("junk", 4);
    g_autoptr(GBytes) sig_leaf = sign(f->leaf, f->data);
    g_autoptr(GBytes) sig_admin = sign(f->admin, f->data);
    g_autoptr(VmaugTrustStore) store = NULL;
    g_autoptr(VmaugTrustStore) fixed = NULL;
    g_autoptr(VmaugTrustSigner) signer = NULL;
    g_autofree gchar *admin = NULL;
    g_autofree gchar *broken = NULL;
    guint64 generation;

    g_assert_no_error(error);
    g_free(write_tmp(dir, "ca.pem", ca_pem));
    admin = write_tmp(dir, "admin.pem", admin_pem);
    store = vmaug_trust_store_new_from_dir(dir, &error);
    g_assert_no_error(error);
    fixed = vmaug_trust_store_new_from_dir(dir, &error);
    g_assert_no_error(error);
    vmaug_trust_store_follow_dir(store);
    /* Both verify, and are remembered. */
    for (guint i = 0; i < 2; i++) {
        VmaugTrustStore *s = i == 0 ? store : fixed;
        g_autoptr(VmaugTrustSigner) a =
            vmaug_trust_store_verify(s, f->data, sig_admin, &error);
        g_autoptr(VmaugTrustSigner) l = NULL;

        g_assert_no_error(error);
        l = vmaug_trust_store_verify(s, f->data, sig_leaf, &error);
        g_assert_no_error(error);
    }
    /* The directly trusted admin removed, the CA's leaf revoked. */
    g_assert_cmpint(g_unlink(admin), ==, 0);
    g_free(write_tmp(dir, "site.crl", crl));
    expect_refused(store, f->data, sig_admin,
                   VMAUG_TRUST_ERROR_UNKNOWN_SIGNER);
    expect_refused(store, f->data, sig_leaf, VMAUG_TRUST_ERROR_REVOKED);
    signer = vmaug_trust_store_verify(fixed, f->data, sig_admin, &error);
    g_assert_no_error(error);
    g_clear_pointer(&signer, vmaug_trust_signer_free);
    /* A malformed file: nothing verifies, until it is gone. */
    broken = write_tmp(dir, "broken.crt", junk);
    g_test_expect_message("vmaugment-trust", G_LOG_LEVEL_WARNING,
                          "*broken.crt*every signature is refused*");
    expect_refused(store, f->data, sig_admin, VMAUG_TRUST_ERROR_FAILED);
    g_test_assert_expected_messages();
    g_assert_cmpint(g_unlink(broken), ==, 0);
    expect_refused(store, f->data, sig_leaf, VMAUG_TRUST_ERROR_REVOKED);
    /* The admin trusted again. */
    g_free(write_tmp(dir, "admin.pem", admin_pem));
    signer = vmaug_trust_store_verify(store, f->data, sig_admin, &error);
    g_assert_no_error(error);
    g_assert_cmpstr(signer->common_name, ==, "Admin");
    /* Its file rewritten in place (same name and inode) with the CA's
     * certificate: the admin is gone, and the generation moved. */
    generation = vmaug_trust_store_refresh(store);
    g_assert_cmpuint(vmaug_trust_store_refresh(store), ==, generation);
    {
        int fd = open(admin, O_WRONLY | O_TRUNC);

        g_assert_cmpint(fd, >=, 0);
        g_assert_cmpint(write(fd, g_bytes_get_data(ca_pem, NULL),
                              g_bytes_get_size(ca_pem)), ==,
                        (gssize)g_bytes_get_size(ca_pem));
        close(fd);
    }
    g_assert_cmpuint(vmaug_trust_store_refresh(store), !=, generation);
    expect_refused(store, f->data, sig_admin,
                   VMAUG_TRUST_ERROR_UNKNOWN_SIGNER);
    rm_rf(dir);
}

static void test_save_load(Fixture *f, gconstpointer user_data)
{
    g_autoptr(GError) error = NULL;
    g_autofree gchar *dir = g_dir_make_tmp("trust-XXXXXX", &error);
    g_autofree gchar *key = g_build_filename(dir, "a.key", NULL);
    g_autofree gchar *crt = g_build_filename(dir, "a.crt", NULL);
    g_autofree gchar *key2 = g_build_filename(dir, "b.key", NULL);
    g_autofree gchar *crt2 = g_build_filename(dir, "b.crt", NULL);
    g_autoptr(VmaugTrustIdentity) loaded = NULL;
    g_autoptr(VmaugTrustStore) store = fixture_store(f);
    g_autoptr(GBytes) sig = NULL;
    g_autoptr(VmaugTrustSigner) signer = NULL;
    g_autofree gchar *name = NULL;
    GStatBuf st;

    g_assert_true(vmaug_trust_identity_save(f->admin, key, crt, &error));
    g_assert_no_error(error);
    g_assert_cmpint(g_stat(key, &st), ==, 0);
    g_assert_cmpint(st.st_mode & 0077, ==, 0);  /* private key not shared */

    loaded = vmaug_trust_identity_load(key, crt, &error);
    g_assert_no_error(error);
    name = vmaug_trust_identity_get_name(loaded);
    g_assert_cmpstr(name, ==, "Admin");
    sig = sign(loaded, f->data);
    signer = vmaug_trust_store_verify(store, f->data, sig, &error);
    g_assert_no_error(error);
    g_clear_pointer(&loaded, vmaug_trust_identity_free);

    /* A key with someone else's certificate is refused. */
    g_assert_true(vmaug_trust_identity_save(f->stranger, key2, crt2,
                                            &error));
    loaded = vmaug_trust_identity_load(key2, crt, &error);
    g_assert_null(loaded);
    g_assert_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_INVALID);
    rm_rf(dir);
}

static void test_read_file_cap(void)
{
    g_autoptr(GError) error = NULL;
    g_autofree gchar *dir = g_dir_make_tmp("trust-XXXXXX", &error);
    g_autoptr(GBytes) b = g_bytes_new_static("0123456789", 10);
    g_autofree gchar *p = write_tmp(dir, "f", b);
    g_autoptr(GBytes) r = NULL;

    r = vmaug_trust_read_file(p, 10, &error);
    g_assert_no_error(error);
    g_assert_cmpuint(g_bytes_get_size(r), ==, 10);
    g_clear_pointer(&r, g_bytes_unref);
    r = vmaug_trust_read_file(p, 9, &error);
    g_assert_null(r);
    g_assert_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_INVALID);
    g_clear_error(&error);
    r = vmaug_trust_read_file(dir, 100, &error);
    g_assert_null(r);
    g_assert_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_INVALID);
    rm_rf(dir);
}

/* The digest of nothing, of FIPS 180-2's "abc", and of megabytes, which
 * GLib's implementation must agree with. */
static void test_sha256(void)
{
    gsize big = 3 * 1024 * 1024 + 17;
    g_autofree guint8 *bytes = g_malloc(big);
    g_autofree gchar *empty = vmaug_sha256_hex(NULL, 0);
    g_autofree gchar *abc = vmaug_sha256_hex("abc", 3);
    g_autofree gchar *ours = NULL;
    g_autofree gchar *glibs = NULL;

    g_assert_cmpstr(empty, ==, "e3b0c44298fc1c149afbf4c8996fb924"
                               "27ae41e4649b934ca495991b7852b855");
    g_assert_cmpstr(abc, ==, "ba7816bf8f01cfea414140de5dae2223"
                             "b00361a396177a9cb410ff61f20015ad");
    for (gsize i = 0; i < big; i++) {
        bytes[i] = (guint8)(i * 131 + (i >> 11));
    }
    ours = vmaug_sha256_hex(bytes, big);
    glibs = g_compute_checksum_for_data(G_CHECKSUM_SHA256, bytes, big);
    g_assert_cmpstr(ours, ==, glibs);
}

#define ADD(path, fn) \
    g_test_add(path, Fixture, NULL, fixture_setup, fn, fixture_teardown)

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    ADD("/trust/verify/self-signed", test_self_signed);
    ADD("/trust/verify/ca-issued", test_ca_issued);
    ADD("/trust/verify/empty-data", test_empty_data);
    ADD("/trust/refuse/tampered-data", test_tampered_data);
    ADD("/trust/refuse/tampered-signature", test_tampered_signature);
    ADD("/trust/refuse/tampered-embedded-cert", test_tampered_embedded_cert);
    ADD("/trust/refuse/unknown-signer", test_unknown_signer);
    ADD("/trust/refuse/unknown-ca", test_unknown_ca);
    ADD("/trust/refuse/signer-is-not-ca",
        test_ca_role_cannot_be_forged_by_signer);
    ADD("/trust/refuse/expired", test_expired);
    ADD("/trust/refuse/expired-ca", test_expired_ca);
    ADD("/trust/refuse/revoked", test_revoked);
    ADD("/trust/crl/stranger-ignored", test_crl_from_stranger_ignored);
    ADD("/trust/remembered/hit-and-change", test_remembered_hit_and_change);
    ADD("/trust/remembered/times", test_remembered_times);
    ADD("/trust/crl/needs-ca", test_crl_needs_ca);
    ADD("/trust/refuse/malformed", test_malformed);
    ADD("/trust/store/dir", test_store_dir);
    ADD("/trust/store/follow", test_store_follow);
    ADD("/trust/identity/save-load", test_save_load);
    g_test_add_func("/trust/read-file/cap", test_read_file_cap);
    g_test_add_func("/trust/sha256", test_sha256);
    return g_test_run();
}
