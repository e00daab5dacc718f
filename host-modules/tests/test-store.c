/*
 * The module store and its tamper corpus: every hostile package is
 * refused, leaves the store unchanged and is recorded in the audit log.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define _GNU_SOURCE         /* unshare() */
#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "test-common.h"

typedef struct {
    TestKeys *keys;
    VmaugPolicy *policy;
    gchar *store_dir;
    gchar *audit;
    VmaugStore *store;
    GBytes *payload;
    GBytes *payload2;
} Fixture;

static void fixture_setup(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GBytes) good = NULL;
    g_autoptr(VmaugManifest) m = NULL;

    f->keys = test_keys_new();
    f->policy = vmaug_policy_new_default();
    f->policy->max_package_size = 256 * 1024;
    f->store_dir = g_build_filename(f->keys->dir, "store", NULL);
    f->audit = g_build_filename(f->store_dir, "audit.log", NULL);
    f->store = vmaug_store_open(f->store_dir, f->keys->trust, f->policy,
                                &error);
    g_assert_no_error(error);
    /* Not an ELF: the store never interprets payloads. */
    f->payload = g_bytes_new_static("\177ELF payload one", 16);
    f->payload2 = g_bytes_new_static("\177ELF payload two!", 17);
    /* A baseline: version 1.1 is in the store. */
    good = test_package(f->keys->admin, "echo", "1.1", f->payload);
    m = vmaug_store_install(f->store, good, "test", &error);
    g_assert_no_error(error);
    g_assert_cmpstr(m->version, ==, "1.1");
}

static void fixture_teardown(Fixture *f, gconstpointer data)
{
    vmaug_store_free(f->store);
    vmaug_policy_free(f->policy);
    g_bytes_unref(f->payload);
    g_bytes_unref(f->payload2);
    g_free(f->store_dir);
    g_free(f->audit);
    test_keys_free(f->keys);
}

/* The package is refused with @code, the store (but its audit log) is
 * unchanged, and one more refusal is in the log. */
static void expect_refused(Fixture *f, GBytes *pkg, gint code)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugManifest) m = NULL;
    g_autofree gchar *before = test_snapshot(f->store_dir, "audit.log");
    g_autofree gchar *after = NULL;
    guint refusals = test_count_lines(f->audit, "\"refuse\"");

    m = vmaug_store_install(f->store, pkg, "test", &error);
    g_assert_null(m);
    g_assert_error(error, VMAUG_HOST_ERROR, code);
    after = test_snapshot(f->store_dir, "audit.log");
    g_assert_cmpstr(before, ==, after);
    g_assert_cmpuint(test_count_lines(f->audit, "\"refuse\""), ==,
                     refusals + 1);
}

static void test_accept(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GBytes) pkg = test_package(f->keys->admin, "echo", "1.2",
                                         f->payload2);
    g_autoptr(VmaugManifest) m = NULL;
    g_autoptr(VmaugStoreEntry) e = NULL;
    g_autoptr(VmaugPackage) loaded = NULL;
    g_autoptr(GBytes) payload = NULL;
    g_autoptr(GPtrArray) list = NULL;

    m = vmaug_store_install(f->store, pkg, "test", &error);
    g_assert_no_error(error);
    e = vmaug_store_lookup(f->store, "echo", NULL, &error);
    g_assert_no_error(error);
    g_assert_cmpstr(e->version, ==, "1.2");
    loaded = vmaug_store_open_package(f->store, "echo", "1.1", "test", "load",
                                      &error);
    g_assert_no_error(error);
    payload = vmaug_package_get_payload(loaded);
    g_assert_true(g_bytes_equal(payload, f->payload));
    list = vmaug_store_list(f->store);
    g_assert_cmpuint(list->len, ==, 2);
    g_assert_cmpuint(test_count_lines(f->audit, "\"accept\""), ==, 3);
    /* A CA-issued administrator is as good as a directly trusted one. */
    {
        g_autoptr(VmaugTrustIdentity) leaf = NULL;
        g_autoptr(GBytes) p2 = NULL;
        g_autoptr(VmaugManifest) m2 = NULL;
        gint64 now = g_get_real_time() / G_USEC_PER_SEC;

        leaf = vmaug_trust_identity_generate("Other site admin",
                                             VMAUG_TRUST_ROLE_SIGNER,
                                             now - 60, now + 3600,
                                             f->keys->ca, &error);
        p2 = test_package(leaf, "kv", "1.0", f->payload);
        m2 = vmaug_store_install(f->store, p2, "test", &error);
        g_assert_no_error(error);
    }
}

static void test_flipped_payload(Fixture *f, gconstpointer data)
{
    g_autoptr(GBytes) pkg = test_package(f->keys->admin, "echo", "1.2",
                                         f->payload2);
    gsize size = g_bytes_get_size(pkg);
    gsize plen = g_bytes_get_size(f->payload2);
    gsize sig_len = GUINT32_FROM_LE(*(const guint32 *)
                                    ((const guint8 *)g_bytes_get_data(pkg,
                                                                      NULL) +
                                     16));
    gsize poff = size - sig_len - plen;

    for (gsize bit = poff * 8; bit < (poff + plen) * 8; bit += 3) {
        g_autoptr(GBytes) bad = test_flip_bit(pkg, bit);

        expect_refused(f, bad, VMAUG_HOST_ERROR_DENIED);
    }
}

static void test_flipped_manifest(Fixture *f, gconstpointer data)
{
    g_autoptr(GBytes) pkg = test_package(f->keys->admin, "echo", "1.2",
                                         f->payload2);
    const guint8 *p = g_bytes_get_data(pkg, NULL);
    gsize mlen = GUINT32_FROM_LE(*(const guint32 *)(p + 12));

    for (gsize bit = VMAUG_PKG_HEADER_SIZE * 8;
         bit < (VMAUG_PKG_HEADER_SIZE + mlen) * 8; bit += 11) {
        g_autoptr(GBytes) bad = test_flip_bit(pkg, bit);

        expect_refused(f, bad, VMAUG_HOST_ERROR_DENIED);
    }
}

static void test_flipped_signature(Fixture *f, gconstpointer data)
{
    /* Signed by a CA-issued administrator: the certificate travels in the
     * signature, so every bit of it matters. */
    g_autoptr(GBytes) pkg = test_package(f->keys->leaf, "echo", "1.2",
                                         f->payload2);
    const guint8 *p = g_bytes_get_data(pkg, NULL);
    gsize size = g_bytes_get_size(pkg);
    gsize slen = GUINT32_FROM_LE(*(const guint32 *)(p + 16));

    for (gsize bit = (size - slen) * 8; bit < size * 8; bit += 13) {
        g_autoptr(GBytes) bad = test_flip_bit(pkg, bit);

        expect_refused(f, bad, VMAUG_HOST_ERROR_DENIED);
    }
}

static void test_untrusted_signers(Fixture *f, gconstpointer data)
{
    g_autoptr(GBytes) unknown = test_package(f->keys->stranger, "echo", "1.2",
                                             f->payload2);
    g_autoptr(GBytes) expired = test_package(f->keys->expired, "echo", "1.2",
                                             f->payload2);
    g_autoptr(GBytes) revoked = test_package(f->keys->revoked, "echo", "1.2",
                                             f->payload2);

    expect_refused(f, unknown, VMAUG_HOST_ERROR_DENIED);
    expect_refused(f, expired, VMAUG_HOST_ERROR_DENIED);
    expect_refused(f, revoked, VMAUG_HOST_ERROR_DENIED);
    g_assert_cmpuint(test_count_lines(f->audit, "issuer is unknown"), ==, 1);
    g_assert_cmpuint(test_count_lines(f->audit, "revoked"), ==, 1);
    g_assert_cmpuint(test_count_lines(f->audit, "expired"), ==, 1);
}

static void test_rollback(Fixture *f, gconstpointer data)
{
    g_autoptr(GBytes) old = test_package(f->keys->admin, "echo", "1.0",
                                         f->payload2);
    g_autoptr(GBytes) same_version = test_package(f->keys->admin, "echo",
                                                  "1.1", f->payload2);
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugManifest) m = NULL;

    expect_refused(f, old, VMAUG_HOST_ERROR_DENIED);
    g_assert_cmpuint(test_count_lines(f->audit, "rollback"), ==, 1);
    /* Another package under an existing name and version. */
    expect_refused(f, same_version, VMAUG_HOST_ERROR_DENIED);
    /* The host owner may allow going back. */
    f->policy->allow_rollback = TRUE;
    m = vmaug_store_install(f->store, old, "test", &error);
    g_assert_no_error(error);
}

static void test_mix_and_match(Fixture *f, gconstpointer data)
{
    g_autoptr(GBytes) a = test_package(f->keys->admin, "echo", "1.2",
                                       f->payload);
    g_autoptr(GBytes) b = test_package(f->keys->admin, "echo", "1.2",
                                       f->payload2);
    const guint8 *pa = g_bytes_get_data(a, NULL);
    gsize mlen_a = GUINT32_FROM_LE(*(const guint32 *)(pa + 12));
    gsize slen_a = GUINT32_FROM_LE(*(const guint32 *)(pa + 16));
    g_autoptr(GByteArray) mix = g_byte_array_new();
    g_autoptr(GBytes) mixed = NULL;
    guint64 plen = g_bytes_get_size(f->payload2);

    /* Header and signed manifest of A, payload of B (both signed by the
     * same trusted administrator). */
    g_byte_array_append(mix, pa, VMAUG_PKG_HEADER_SIZE + mlen_a);
    *(guint64 *)(mix->data + 24) = GUINT64_TO_LE(plen);
    g_byte_array_append(mix, g_bytes_get_data(f->payload2, NULL), plen);
    g_byte_array_append(mix, pa + g_bytes_get_size(a) - slen_a, slen_a);
    mixed = g_bytes_new(mix->data, mix->len);
    expect_refused(f, mixed, VMAUG_HOST_ERROR_DENIED);
    g_assert_cmpuint(test_count_lines(f->audit, "mix-and-match"), ==, 1);
    (void)b;
}

static void test_truncated_and_oversize(Fixture *f, gconstpointer data)
{
    g_autoptr(GBytes) pkg = test_package(f->keys->admin, "echo", "1.2",
                                         f->payload2);
    g_autofree guint8 *big = g_malloc0(300 * 1024);
    g_autoptr(GBytes) big_payload = g_bytes_new(big, 300 * 1024);
    g_autoptr(GBytes) oversize = test_package(f->keys->admin, "echo", "1.3",
                                              big_payload);
    g_autoptr(GByteArray) padded = g_byte_array_new();
    g_autoptr(GBytes) pad = NULL;

    for (gsize cut = 0; cut < g_bytes_get_size(pkg); cut += 97) {
        g_autoptr(GBytes) t = g_bytes_new_from_bytes(pkg, 0, cut);

        expect_refused(f, t, VMAUG_HOST_ERROR_INVALID);
    }
    g_byte_array_append(padded, g_bytes_get_data(pkg, NULL),
                        g_bytes_get_size(pkg));
    g_byte_array_append(padded, (const guint8 *)"x", 1);
    pad = g_bytes_new(padded->data, padded->len);
    expect_refused(f, pad, VMAUG_HOST_ERROR_INVALID);
    expect_refused(f, oversize, VMAUG_HOST_ERROR_TOO_BIG);
}

static void test_wrong_json_types(Fixture *f, gconstpointer data)
{
    /* Each is signed by the trusted administrator: the manifest checks
     * must hold even then. */
    static const gchar *const bad[] = {
        "[]",
        "\"echo\"",
        "null",
        "{\"format\": 1, \"name\": 5, \"version\": \"1.2\"}",
        "{\"format\": \"1\", \"name\": \"echo\", \"version\": \"1.2\"}",
        "{\"format\": 1, \"name\": \"echo\", \"version\": 1.2, "
        "\"kind\": \"communication\", \"abi\": 1, \"arch\": \"x86_64\", "
        "\"min_host_version\": \"0.1\", \"entry\": \"vmaug_module_v1\", "
        "\"events\": [], \"functions\": [], \"capabilities\": [], "
        "\"payload\": {\"size\": 17, \"sha256\": \"00\"}}",
        "{\"format\": 1, \"name\": \"echo\", \"version\": \"1.2\", "
        "\"kind\": \"communication\", \"abi\": 1, \"arch\": \"x86_64\", "
        "\"min_host_version\": \"0.1\", \"entry\": \"vmaug_module_v1\", "
        "\"events\": {}, \"functions\": [], \"capabilities\": [], "
        "\"payload\": {\"size\": 17, \"sha256\": \"00\"}}",
        "{\"format\": 1, \"name\": \"echo\", \"version\": \"1.2\", "
        "\"kind\": \"communication\", \"abi\": 1, \"arch\": \"x86_64\", "
        "\"min_host_version\": \"0.1\", \"entry\": \"vmaug_module_v1\", "
        "\"events\": [], \"functions\": [7], \"capabilities\": [], "
        "\"payload\": {\"size\": 17, \"sha256\": \"00\"}}",
        "{\"format\": 1, \"name\": \"echo\", \"version\": \"1.2\", "
        "\"kind\": \"communication\", \"abi\": 1, \"arch\": \"x86_64\", "
        "\"min_host_version\": \"0.1\", \"entry\": \"vmaug_module_v1\", "
        "\"events\": [], \"functions\": [], \"capabilities\": [\"root\"], "
        "\"payload\": {\"size\": 17, \"sha256\": \"00\"}}",
        "{\"format\": 1, \"name\": \"echo\", \"version\": \"1.2\", "
        "\"kind\": \"communication\", \"abi\": 1, \"arch\": \"x86_64\", "
        "\"min_host_version\": \"0.1\", \"entry\": \"vmaug_module_v1\", "
        "\"events\": [], \"functions\": [], \"capabilities\": [], "
        "\"payload\": [17]}",
        "{\"format\": 1, \"name\": \"../etc\", \"version\": \"1.2\"}",
        "{\"format\": 1, \"unknown\": true}",
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
        "{\"format\": 1, \"name\": \"echo\"",
    };

    for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_autoptr(GBytes) pkg = test_package_raw(f->keys->admin, bad[i],
                                                 f->payload2);

        expect_refused(f, pkg, VMAUG_HOST_ERROR_INVALID);
    }
}

static void test_upload_resume(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GBytes) pkg = test_package(f->keys->admin, "echo", "2.0",
                                         f->payload2);
    g_autoptr(GChecksum) c = g_checksum_new(G_CHECKSUM_SHA256);
    g_autoptr(VmaugManifest) m = NULL;
    g_autoptr(GPtrArray) list = NULL;
    guint8 sha[32];
    gsize shalen = 32, size;
    const guint8 *p = g_bytes_get_data(pkg, &size);
    guint64 id, id2, off;
    gsize half = size / 2;

    g_checksum_update(c, p, size);
    g_checksum_get_digest(c, sha, &shalen);
    g_assert_true(vmaug_store_upload_begin(f->store, "vm-a", size, sha, "echo",
                                           "2.0", "test", &id, &off, &error));
    g_assert_no_error(error);
    g_assert_cmpuint(off, ==, 0);
    g_assert_true(vmaug_store_upload_chunk(f->store, "vm-a", id, 0, p, half,
                                           &off, &error));
    g_assert_cmpuint(off, ==, half);
    /* Out of order, past the end, or unknown ids are refused. */
    g_assert_false(vmaug_store_upload_chunk(f->store, "vm-a", id, 0, p, 1, &off,
                                            &error));
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID);
    g_clear_error(&error);
    g_assert_false(vmaug_store_upload_chunk(f->store, "vm-a", id, half, p,
                                            size - half + 1, &off, &error));
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_TOO_BIG);
    g_clear_error(&error);
    g_assert_false(vmaug_store_upload_chunk(f->store, "vm-a", id + 1, half, p,
                                            1, &off, &error));
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_NOT_FOUND);
    g_clear_error(&error);
    /* An unfinished upload is not a module. */
    g_assert_null(vmaug_store_lookup(f->store, "echo", "2.0", NULL));

    /* The helper dies; a new one finds the upload and resumes it. */
    g_clear_pointer(&f->store, vmaug_store_free);
    f->store = vmaug_store_open(f->store_dir, f->keys->trust, f->policy,
                                &error);
    g_assert_no_error(error);
    g_assert_null(vmaug_store_lookup(f->store, "echo", "2.0", NULL));
    g_assert_true(vmaug_store_upload_begin(f->store, "vm-a", size, sha, "echo",
                                           "2.0", "test", &id2, &off, &error));
    g_assert_cmpuint(id2, ==, id);
    g_assert_cmpuint(off, ==, half);
    g_assert_true(vmaug_store_upload_chunk(f->store, "vm-a", id2, half,
                                           p + half, size - half, &off,
                                           &error));
    g_assert_no_error(error);
    m = vmaug_store_upload_commit(f->store, "vm-a", id2, "test", &error);
    g_assert_no_error(error);
    g_assert_cmpstr(m->version, ==, "2.0");
    list = vmaug_store_list(f->store);
    g_assert_cmpuint(list->len, ==, 2);
}

/* The SHA-256 of @pkg into @sha; its hex form. */
static gchar *package_sha(GBytes *pkg, guint8 sha[32])
{
    g_autoptr(GChecksum) c = g_checksum_new(G_CHECKSUM_SHA256);
    gsize len = 32;

    g_checksum_update(c, g_bytes_get_data(pkg, NULL), g_bytes_get_size(pkg));
    g_checksum_get_digest(c, sha, &len);
    return g_strdup(g_checksum_get_string(c));
}

static void upload_all(Fixture *f, GBytes *pkg, const guint8 *sha,
                       const gchar *name, const gchar *version,
                       guint64 *id)
{
    g_autoptr(GError) error = NULL;
    gsize size;
    const guint8 *p = g_bytes_get_data(pkg, &size);
    guint64 off;

    g_assert_true(vmaug_store_upload_begin(f->store, "vm-a", size, sha, name,
                                           version, "test", id, &off, &error));
    g_assert_no_error(error);
    for (gsize done = 0; done < size; done += VMAUG_CHUNK_MAX_DATA) {
        g_assert_true(vmaug_store_upload_chunk(
            f->store, "vm-a", *id, done, p + done,
            MIN(size - done, VMAUG_CHUNK_MAX_DATA), &off, &error));
        g_assert_no_error(error);
    }
}

static void commit_done(GObject *source, GAsyncResult *result,
                        gpointer data)
{
    *(GAsyncResult **)data = g_object_ref(result);
}

/*
 * A commit on the store's thread: BUSY to its owner until it ends, then
 * the package is stored and the session gone.  A store freed while a
 * commit runs waits for it, and the commit's end, dispatched later, says
 * so without touching the store.
 */
static void test_upload_async(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GBytes) pkg = test_package(f->keys->admin, "echo", "2.0",
                                         f->payload2);
    g_autoptr(GBytes) pkg3 = test_package(f->keys->admin, "echo", "3.0",
                                          f->payload2);
    g_autoptr(GBytes) pkg4 = test_package(f->keys->admin, "echo", "4.0",
                                          f->payload2);
    g_autofree gchar *uploads = g_build_filename(f->store_dir, "uploads",
                                                 NULL);
    g_autoptr(VmaugManifest) m = NULL;
    GAsyncResult *result = NULL;
    GAsyncResult *refused = NULL;
    guint refusals;
    g_autofree gchar *hex = NULL;
    g_autofree gchar *obj = NULL;
    guint8 sha[32];
    guint64 id, off;
    guint count;
    guint64 bytes;

    hex = package_sha(pkg, sha);
    obj = g_strconcat(f->store_dir, "/objects/", hex, ".pkg", NULL);
    upload_all(f, pkg, sha, "echo", "2.0", &id);
    vmaug_store_upload_commit_async(f->store, "vm-a", id, "test", commit_done,
                                    &result);
    /* Running: not fed, aborted, resumed, committed again or released. */
    g_assert_false(vmaug_store_upload_abort(f->store, "vm-a", id, "test",
                                            &error));
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_BUSY);
    g_clear_error(&error);
    g_assert_false(vmaug_store_upload_begin(f->store, "vm-a",
                                            g_bytes_get_size(pkg), sha,
                                            "echo", "2.0", "test", &id, &off,
                                            &error));
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_BUSY);
    g_clear_error(&error);
    g_assert_null(vmaug_store_upload_commit(f->store, "vm-a", id, "test",
                                            &error));
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_BUSY);
    g_clear_error(&error);
    vmaug_store_upload_release(f->store, "vm-a", "test");
    while (result == NULL) {
        g_main_context_iteration(NULL, TRUE);
    }
    m = vmaug_store_upload_commit_finish(f->store, result, &error);
    g_clear_object(&result);
    g_assert_no_error(error);
    g_assert_cmpstr(m->version, ==, "2.0");
    g_assert_true(g_file_test(obj, G_FILE_TEST_IS_REGULAR));
    vmaug_store_upload_usage(f->store, "vm-a", &count, &bytes);
    g_assert_cmpuint(count, ==, 0);

    /*
     * Freed mid-commit, one to be accepted and one to be refused (a hash
     * not announced): the free waits for both and ends them (sessions
     * dropped, the refusal audited); their callbacks find no store.
     */
    g_free(package_sha(pkg3, sha));
    upload_all(f, pkg3, sha, "echo", "3.0", &id);
    vmaug_store_upload_commit_async(f->store, "vm-a", id, "test", commit_done,
                                    &result);
    sha[0] ^= 1;
    upload_all(f, pkg4, sha, "echo", "4.0", &id);
    vmaug_store_upload_commit_async(f->store, "vm-a", id, "test", commit_done,
                                    &refused);
    refusals = test_count_lines(f->audit, "\"refuse\"");
    {
        VmaugStore *gone = f->store;

        g_clear_pointer(&f->store, vmaug_store_free);
        g_assert_cmpuint(test_count_lines(f->audit, "\"refuse\""), ==,
                         refusals + 1);
        while (result == NULL || refused == NULL) {
            g_main_context_iteration(NULL, TRUE);
        }
        g_assert_null(vmaug_store_upload_commit_finish(gone, result,
                                                       &error));
        g_assert_error(error, G_IO_ERROR, G_IO_ERROR_CLOSED);
        g_clear_error(&error);
        g_assert_null(vmaug_store_upload_commit_finish(gone, refused,
                                                       &error));
        g_assert_error(error, G_IO_ERROR, G_IO_ERROR_CLOSED);
        g_clear_error(&error);
        g_clear_object(&result);
        g_clear_object(&refused);
    }
    /* What it did, it finished: the package is stored for the next one,
     * and no session is left to resume. */
    {
        g_autoptr(GDir) d = g_dir_open(uploads, 0, NULL);

        g_assert_nonnull(d);
        g_assert_null(g_dir_read_name(d));
    }
    f->store = vmaug_store_open(f->store_dir, f->keys->trust, f->policy,
                                &error);
    g_assert_no_error(error);
    {
        g_autoptr(VmaugStoreEntry) e = vmaug_store_lookup(f->store, "echo",
                                                          "3.0", NULL);

        g_assert_nonnull(e);
    }
}

static void test_upload_refusals(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GBytes) pkg = test_package(f->keys->admin, "echo", "2.0",
                                         f->payload2);
    g_autoptr(GBytes) unknown = test_package(f->keys->stranger, "echo", "2.1",
                                             f->payload2);
    g_autofree gchar *before = test_snapshot(f->store_dir, "audit.log");
    g_autofree gchar *after = NULL;
    guint8 sha[32] = { 1 };
    guint64 id, off;
    VmaugManifest *m;

    /* Size caps are applied before a byte is accepted. */
    g_assert_false(vmaug_store_upload_begin(f->store, "vm-a", 1024 * 1024, sha,
                                            "echo", "2.0", "test", &id, &off,
                                            &error));
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_TOO_BIG);
    g_clear_error(&error);
    /* So is the rollback check, from what the upload announces. */
    g_assert_false(vmaug_store_upload_begin(f->store, "vm-a", 100, sha, "echo",
                                            "1.0", "test", &id, &off, &error));
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_DENIED);
    g_clear_error(&error);

    /* Wrong hash announced: refused at commit. */
    upload_all(f, pkg, sha, "echo", "2.0", &id);
    m = vmaug_store_upload_commit(f->store, "vm-a", id, "test", &error);
    g_assert_null(m);
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_HASH_MISMATCH);
    g_clear_error(&error);

    /* Right hash, untrusted signer. */
    g_free(package_sha(unknown, sha));
    upload_all(f, unknown, sha, "echo", "2.1", &id);
    m = vmaug_store_upload_commit(f->store, "vm-a", id, "test", &error);
    g_assert_null(m);
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_DENIED);
    g_clear_error(&error);

    /* A package that is not what the upload announced. */
    g_free(package_sha(pkg, sha));
    upload_all(f, pkg, sha, "kv", "2.0", &id);
    m = vmaug_store_upload_commit(f->store, "vm-a", id, "test", &error);
    g_assert_null(m);
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_DENIED);
    g_clear_error(&error);
    /* Its record names who signed what was refused. */
    g_assert_cmpuint(test_count_lines(f->audit, "\"signer\":\"Test admin\","
                                      "\"decision\":\"refuse\""), ==, 1);

    /* Aborted. */
    upload_all(f, pkg, sha, "echo", "2.0", &id);
    g_assert_true(vmaug_store_upload_abort(f->store, "vm-a", id, "test",
                                           &error));
    g_assert_null(vmaug_store_upload_commit(f->store, "vm-a", id, "test",
                                            &error));
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_NOT_FOUND);

    after = test_snapshot(f->store_dir, "audit.log");
    g_assert_cmpstr(before, ==, after);
    g_assert_cmpuint(test_count_lines(f->audit, "\"refuse\""), ==, 5);
}

/*
 * The upload's file on another filesystem than the objects (a tmpfs on
 * uploads/, in a mount namespace of a child): the kernel will not copy
 * between them, and the commit copies by hand; the object is the
 * package, byte for byte.
 */
/*
 * Run the rest of the test in a child with a 4 MiB tmpfs of its own on
 * the store's uploads/ (a mount namespace of its own: root only), with a
 * package echo 2.0 of 1.5 MiB, larger than a piece of the copy by hand:
 * the package in the child; NULL in the parent, which ran the child and
 * checked that it passed.
 */
static GBytes *upload_tmpfs_child(Fixture *f)
{
    g_autofree gchar *udir = NULL;
    guint8 *big;

    if (!g_test_subprocess()) {
        if (geteuid() != 0) {
            g_test_skip("a tmpfs of its own needs root");
            return NULL;
        }
        g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
        g_test_trap_assert_passed();
        return NULL;
    }
    udir = g_build_filename(f->store_dir, "uploads", NULL);
    g_assert_cmpint(unshare(CLONE_NEWNS), ==, 0);
    g_assert_cmpint(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), ==, 0);
    g_assert_cmpint(mount("tmpfs", udir, "tmpfs", 0, "size=4m"), ==, 0);
    f->policy->max_package_size = 4 * 1024 * 1024;
    g_bytes_unref(f->payload2);
    big = g_malloc(1536 * 1024);
    for (gsize i = 0; i < 1536 * 1024; i++) {
        big[i] = (guint8)(i * 7 + i / 4096);
    }
    f->payload2 = g_bytes_new_take(big, 1536 * 1024);
    return test_package(f->keys->admin, "echo", "2.0", f->payload2);
}

static void test_upload_other_fs(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GBytes) pkg = upload_tmpfs_child(f);
    g_autoptr(GBytes) stored = NULL;
    g_autoptr(VmaugManifest) m = NULL;
    g_autofree gchar *hex = NULL;
    g_autofree gchar *obj = NULL;
    guint8 sha[32];
    guint64 id;

    if (pkg == NULL) {
        return;
    }
    hex = package_sha(pkg, sha);
    upload_all(f, pkg, sha, "echo", "2.0", &id);
    m = vmaug_store_upload_commit(f->store, "vm-a", id, "test", &error);
    g_assert_no_error(error);
    g_assert_cmpstr(m->version, ==, "2.0");
    obj = g_strdup_printf("%s/objects/%s.pkg", f->store_dir, hex);
    stored = vmaug_trust_read_file(obj, G_MAXSIZE, &error);
    g_assert_no_error(error);
    g_assert_true(g_bytes_equal(stored, pkg));
}

/*
 * Chunks answered before they are written (the upload area's): checked,
 * then written; a write that fails (a full filesystem) leaves the upload
 * where it was and is said, once, to the next chunk, and the upload
 * resumes from there and commits.
 */
static void test_upload_write_behind(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GBytes) pkg = upload_tmpfs_child(f);
    g_autoptr(VmaugManifest) m = NULL;
    g_autofree gchar *filler = NULL;
    g_autofree gchar *hex = NULL;
    const guint8 *p;
    guint8 sha[32];
    guint64 id, off;
    gsize size;

    if (pkg == NULL) {
        return;
    }
    hex = package_sha(pkg, sha);
    p = g_bytes_get_data(pkg, &size);

    g_assert_true(vmaug_store_upload_begin(f->store, "vm-a", size, sha,
                                           "echo", "2.0", "test", &id, &off,
                                           &error));
    g_assert_no_error(error);
    /* Room for less than the first chunk. */
    filler = g_build_filename(f->store_dir, "uploads", "filler", NULL);
    {
        g_autofree guint8 *fill = g_malloc0(3584 * 1024);

        g_assert_true(g_file_set_contents(filler, (const gchar *)fill,
                                          3584 * 1024, NULL));
    }
    g_assert_true(vmaug_store_upload_chunk_check(f->store, "vm-a", id, 0,
                                                 VMAUG_CHUNK_MAX_DATA, &off,
                                                 &error));
    g_assert_no_error(error);
    g_assert_cmpuint(off, ==, VMAUG_CHUNK_MAX_DATA);
    vmaug_store_upload_chunk_write(f->store, "vm-a", id, 0, p,
                                   VMAUG_CHUNK_MAX_DATA);
    /* The next chunk hears of it, once; the upload stayed at 0. */
    g_assert_false(vmaug_store_upload_chunk_check(f->store, "vm-a", id,
                                                  VMAUG_CHUNK_MAX_DATA,
                                                  size - VMAUG_CHUNK_MAX_DATA,
                                                  &off, &error));
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_IO);
    g_assert_nonnull(strstr(error->message, "could not be written"));
    g_assert_nonnull(strstr(error->message, "resumes at 0"));
    g_clear_error(&error);
    g_assert_false(vmaug_store_upload_chunk_check(f->store, "vm-a", id,
                                                  VMAUG_CHUNK_MAX_DATA,
                                                  size - VMAUG_CHUNK_MAX_DATA,
                                                  &off, &error));
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID);
    g_clear_error(&error);

    /* Room again: it resumes at 0 and commits. */
    g_assert_cmpint(g_unlink(filler), ==, 0);
    for (gsize done = 0; done < size; done += VMAUG_CHUNK_MAX_DATA) {
        gsize n = MIN(size - done, VMAUG_CHUNK_MAX_DATA);

        g_assert_true(vmaug_store_upload_chunk_check(f->store, "vm-a", id,
                                                     done, n, &off, &error));
        g_assert_no_error(error);
        g_assert_cmpuint(off, ==, done + n);
        vmaug_store_upload_chunk_write(f->store, "vm-a", id, done, p + done,
                                       n);
    }
    m = vmaug_store_upload_commit(f->store, "vm-a", id, "test", &error);
    g_assert_no_error(error);
    g_assert_cmpstr(m->version, ==, "2.0");
}

static void test_upload_slots(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    VmaugUploadLimits limits = {
        .slots = VMAUG_STORE_UPLOAD_SLOTS,
        .bytes = VMAUG_STORE_UPLOAD_BYTES,
        .idle_us = 0,
    };
    guint8 sha[32] = { 0 };
    guint64 id, first = 0, off;

    for (guint i = 0; i < VMAUG_STORE_UPLOAD_SLOTS; i++) {
        sha[0] = i + 1;
        g_assert_true(vmaug_store_upload_begin(f->store, "vm-a", 100, sha,
                                               "echo", "3.0", "test", &id,
                                               &off, &error));
        g_assert_no_error(error);
        if (i == 0) {
            first = id;
        }
    }
    /* Every slot of this VM is taken by uploads that are still fresh. */
    sha[0] = 99;
    g_assert_false(vmaug_store_upload_begin(f->store, "vm-a", 100, sha,
                                            "echo", "3.0", "test", &id, &off,
                                            &error));
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_BUSY);
    g_clear_error(&error);
    /* Another VM's slots are its own. */
    g_assert_true(vmaug_store_upload_begin(f->store, "vm-b", 100, sha,
                                           "echo", "3.0", "test", &id, &off,
                                           &error));
    g_assert_no_error(error);
    /* Abandoned ones give way. */
    vmaug_store_set_upload_limits(f->store, &limits);
    sha[0] = 100;
    g_assert_true(vmaug_store_upload_begin(f->store, "vm-a", 100, sha, "echo",
                                           "3.0", "test", &id, &off, &error));
    g_assert_no_error(error);
    g_assert_false(vmaug_store_upload_chunk(f->store, "vm-a", first, 0, sha,
                                            1, &off, &error));
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_NOT_FOUND);
    /* With no idle time at all, the upload just begun is idle by the
     * chunk's turn too. */
    g_assert_cmpuint(test_count_lines(f->audit, "upload-expire"), ==,
                     VMAUG_STORE_UPLOAD_SLOTS + 2);
}

static void test_repair(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autofree gchar *before = test_snapshot(f->store_dir, "audit.log");
    g_autofree gchar *after = NULL;
    g_autofree gchar *p1 = g_build_filename(f->store_dir, "modules", "echo",
                                            "1.1.XYZ123", NULL);
    g_autofree gchar *p2 = g_build_filename(f->store_dir, "objects",
                                            "abc.pkg.QWERTY", NULL);
    g_autofree gchar *p3 = g_build_filename(f->store_dir, "uploads",
                                            "junk.part", NULL);
    g_autofree gchar *dangling = g_build_filename(f->store_dir, "modules",
                                                  "echo", "3.0", NULL);
    g_autoptr(GPtrArray) list = NULL;

    /* Leftovers of crashes in every step of an install. */
    g_file_set_contents(p1, "half", -1, NULL);
    g_file_set_contents(p2, "half", -1, NULL);
    g_file_set_contents(p3, "half", -1, NULL);
    g_file_set_contents(dangling,
                        "00000000000000000000000000000000"
                        "00000000000000000000000000000000\n", -1, NULL);
    g_clear_pointer(&f->store, vmaug_store_free);
    f->store = vmaug_store_open(f->store_dir, f->keys->trust, f->policy,
                                &error);
    g_assert_no_error(error);
    after = test_snapshot(f->store_dir, "audit.log");
    g_assert_cmpstr(before, ==, after);
    list = vmaug_store_list(f->store);
    g_assert_cmpuint(list->len, ==, 1);

    /* An object altered on disk is refused at load time. */
    {
        g_autoptr(VmaugStoreEntry) e = vmaug_store_lookup(f->store, "echo",
                                                          NULL, &error);
        g_autofree gchar *name = g_strconcat(e->sha256, ".pkg", NULL);
        g_autofree gchar *obj = g_build_filename(f->store_dir, "objects",
                                                 name, NULL);
        g_autofree gchar *data = NULL;
        gsize len;
        g_autoptr(VmaugPackage) pkg = NULL;

        g_assert_true(g_file_get_contents(obj, &data, &len, NULL));
        data[len - 100] ^= 1;
        g_assert_true(g_file_set_contents(obj, data, len, NULL));
        pkg = vmaug_store_open_package(f->store, "echo", NULL, "test", "load",
                                       &error);
        g_assert_null(pkg);
        g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_DENIED);
    }
}

/* A second process with the store open leaves the first one's work in
 * progress alone; repair waits until the store is free. */
static void test_repair_shared(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autofree gchar *tmp = g_build_filename(f->store_dir, "objects",
                                             "abc.pkg.INPROGRESS", NULL);
    VmaugStore *second;

    g_assert_true(g_file_set_contents(tmp, "half", -1, NULL));
    second = vmaug_store_open(f->store_dir, f->keys->trust, f->policy,
                              &error);
    g_assert_no_error(error);
    g_assert_true(g_file_test(tmp, G_FILE_TEST_EXISTS));
    vmaug_store_free(second);

    g_clear_pointer(&f->store, vmaug_store_free);
    f->store = vmaug_store_open(f->store_dir, f->keys->trust, f->policy,
                                &error);
    g_assert_no_error(error);
    g_assert_false(g_file_test(tmp, G_FILE_TEST_EXISTS));
}

/* @version of @name as a lookup through @store finds it; NULL: none. */
static void expect_lookup(VmaugStore *store, const gchar *name,
                          const gchar *version, const gchar *found)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugStoreEntry) e = vmaug_store_lookup(store, name, version,
                                                      &error);

    if (found == NULL) {
        g_assert_null(e);
        g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_NOT_FOUND);
        return;
    }
    g_assert_no_error(error);
    g_assert_cmpstr(e->version, ==, found);
}

/*
 * Lookups a store keeps (the helper's) follow every change under
 * modules/: by another process (vmaugment-admin install), by the same
 * store, and by hand.
 */
static void test_lookup_cache(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GBytes) echo12 = test_package(f->keys->admin, "echo", "1.2",
                                            f->payload2);
    g_autoptr(GBytes) kv10 = test_package(f->keys->admin, "kv", "1.0",
                                          f->payload);
    g_autoptr(GBytes) kv11 = test_package(f->keys->admin, "kv", "1.1",
                                          f->payload2);
    g_autoptr(VmaugManifest) m = NULL;
    g_autoptr(VmaugManifest) m2 = NULL;
    g_autofree gchar *kv_ref = g_build_filename(f->store_dir, "modules",
                                                "kv", "1.0", NULL);
    g_autofree gchar *echo_dir = g_build_filename(f->store_dir, "modules",
                                                  "echo", NULL);
    VmaugStore *other;

    g_assert_true(vmaug_store_cache_lookups(f->store, &error));
    g_assert_no_error(error);
    for (guint i = 0; i < 2; i++) {
        expect_lookup(f->store, "echo", NULL, "1.1");
        expect_lookup(f->store, "echo", "1.2", NULL);
        expect_lookup(f->store, "kv", "", NULL);
    }

    other = vmaug_store_open(f->store_dir, f->keys->trust, f->policy,
                             &error);
    g_assert_no_error(error);
    m = vmaug_store_install(other, echo12, "test", &error);
    g_assert_no_error(error);
    m2 = vmaug_store_install(other, kv10, "test", &error);
    g_assert_no_error(error);
    vmaug_store_free(other);
    expect_lookup(f->store, "echo", NULL, "1.2");
    expect_lookup(f->store, "echo", "1.2", "1.2");
    expect_lookup(f->store, "kv", "", "1.0");

    g_clear_pointer(&m, vmaug_manifest_free);
    m = vmaug_store_install(f->store, kv11, "test", &error);
    g_assert_no_error(error);
    expect_lookup(f->store, "kv", "", "1.1");

    g_assert_cmpint(g_unlink(kv_ref), ==, 0);
    expect_lookup(f->store, "kv", "1.0", NULL);
    vmaug_store_remove_tree(echo_dir, NULL);
    expect_lookup(f->store, "echo", NULL, NULL);
    expect_lookup(f->store, "echo", "1.1", NULL);
    expect_lookup(f->store, "kv", "", "1.1");
}

static void test_versions(void)
{
    g_assert_true(vmaug_version_is_valid("1"));
    g_assert_true(vmaug_version_is_valid("1.2.3.4"));
    g_assert_false(vmaug_version_is_valid("1.2.3.4.5"));
    g_assert_false(vmaug_version_is_valid(""));
    g_assert_false(vmaug_version_is_valid("1..2"));
    g_assert_false(vmaug_version_is_valid("1.2a"));
    g_assert_false(vmaug_version_is_valid("99999999999"));
    g_assert_cmpint(vmaug_version_compare("1.10", "1.9"), >, 0);
    g_assert_cmpint(vmaug_version_compare("1.0", "1"), ==, 0);
    g_assert_cmpint(vmaug_version_compare("1.0", "1.1"), <, 0);
    g_assert_true(vmaug_name_is_valid("printer"));
    g_assert_false(vmaug_name_is_valid("Printer"));
    g_assert_false(vmaug_name_is_valid("../x"));
    g_assert_false(vmaug_name_is_valid(""));
}

#define ADD(path, fn) \
    g_test_add(path, Fixture, NULL, fixture_setup, fn, fixture_teardown)

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_log_set_always_fatal(G_LOG_LEVEL_CRITICAL);
    g_test_add_func("/store/versions", test_versions);
    ADD("/store/accept", test_accept);
    ADD("/store/tamper/flipped-payload", test_flipped_payload);
    ADD("/store/tamper/flipped-manifest", test_flipped_manifest);
    ADD("/store/tamper/flipped-signature", test_flipped_signature);
    ADD("/store/tamper/untrusted-signers", test_untrusted_signers);
    ADD("/store/tamper/rollback", test_rollback);
    ADD("/store/tamper/mix-and-match", test_mix_and_match);
    ADD("/store/tamper/truncated-oversize", test_truncated_and_oversize);
    ADD("/store/tamper/wrong-json-types", test_wrong_json_types);
    ADD("/store/upload/resume", test_upload_resume);
    ADD("/store/upload/refusals", test_upload_refusals);
    ADD("/store/upload/async", test_upload_async);
    ADD("/store/upload/slots", test_upload_slots);
    ADD("/store/upload/other-fs", test_upload_other_fs);
    ADD("/store/upload/write-behind", test_upload_write_behind);
    ADD("/store/repair", test_repair);
    ADD("/store/repair-shared", test_repair_shared);
    ADD("/store/lookup-cache", test_lookup_cache);
    return g_test_run();
}
