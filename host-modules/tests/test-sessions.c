/*
 * The store's upload sessions and audit budget on their own, with a clock
 * the test moves: uploads owned by one VM, idleness that announcing does
 * not reset, commits from a private copy that neither a held descriptor
 * nor a cut file can reach, counted audit records, the areas of gone
 * connections, and one spelling per version.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "test-common.h"
#include "vm-area.h"

typedef struct {
    TestKeys *keys;
    VmaugPolicy *policy;
    gchar *store_dir;
    gchar *audit;
    VmaugStore *store;
    gint64 now;                     /* the store's clock, microseconds */
    GBytes *pkg;                    /* echo 2.0, signed by admin */
    guint8 sha[32];
    gchar *hex;
} Fixture;

#define SECONDS(s)  ((gint64)(s) * G_USEC_PER_SEC)

static gint64 fixture_clock(gpointer data)
{
    Fixture *f = data;

    return f->now;
}

static void fixture_open(Fixture *f)
{
    g_autoptr(GError) error = NULL;

    f->store = vmaug_store_open(f->store_dir, f->keys->trust, f->policy,
                                &error);
    g_assert_no_error(error);
    vmaug_store_set_clock(f->store, fixture_clock, f);
}

static void fixture_setup(Fixture *f, gconstpointer data)
{
    g_autoptr(GChecksum) c = g_checksum_new(G_CHECKSUM_SHA256);
    g_autoptr(GBytes) payload = g_bytes_new_static("\177ELF payload", 12);
    gsize len = 32;

    f->keys = test_keys_new();
    f->policy = vmaug_policy_new_default();
    f->policy->max_package_size = 256 * 1024;
    f->store_dir = g_build_filename(f->keys->dir, "store", NULL);
    f->audit = g_build_filename(f->store_dir, "audit.log", NULL);
    f->now = SECONDS(1000);
    fixture_open(f);
    f->pkg = test_package(f->keys->admin, "echo", "2.0", payload);
    g_checksum_update(c, g_bytes_get_data(f->pkg, NULL),
                      g_bytes_get_size(f->pkg));
    g_checksum_get_digest(c, f->sha, &len);
    f->hex = g_strdup(g_checksum_get_string(c));
}

static void fixture_teardown(Fixture *f, gconstpointer data)
{
    vmaug_store_free(f->store);
    vmaug_policy_free(f->policy);
    g_bytes_unref(f->pkg);
    g_free(f->hex);
    g_free(f->store_dir);
    g_free(f->audit);
    test_keys_free(f->keys);
}

static guint64 begin_ok(Fixture *f, const gchar *owner, guint64 size,
                        const guint8 *sha, const gchar *version,
                        guint64 *offset)
{
    g_autoptr(GError) error = NULL;
    guint64 id = 0, off = 0;

    g_assert_true(vmaug_store_upload_begin(f->store, owner, size, sha, "echo",
                                           version, "test", &id, &off,
                                           &error));
    g_assert_no_error(error);
    if (offset != NULL) {
        *offset = off;
    }
    return id;
}

static void begin_refused(Fixture *f, const gchar *owner, guint64 size,
                          const guint8 *sha, const gchar *version, gint code,
                          const gchar *needle)
{
    g_autoptr(GError) error = NULL;
    guint64 id, off;

    g_assert_false(vmaug_store_upload_begin(f->store, owner, size, sha,
                                            "echo", version, "test", &id,
                                            &off, &error));
    g_assert_error(error, VMAUG_HOST_ERROR, code);
    g_test_message("refused: %s", error->message);
    g_assert_nonnull(strstr(error->message, needle));
}

static void send_package(Fixture *f, const gchar *owner, guint64 id)
{
    g_autoptr(GError) error = NULL;
    gsize size;
    const guint8 *p = g_bytes_get_data(f->pkg, &size);
    guint64 off;

    g_assert_true(vmaug_store_upload_chunk(f->store, owner, id, 0, p, size,
                                           &off, &error));
    g_assert_no_error(error);
    g_assert_cmpuint(off, ==, size);
}

static gchar *part_path(Fixture *f, guint64 id)
{
    g_autofree gchar *name = g_strdup_printf("%016" G_GINT64_MODIFIER
                                             "x.part", id);

    return g_build_filename(f->store_dir, "uploads", name, NULL);
}

static gchar *object_path(Fixture *f)
{
    g_autofree gchar *name = g_strconcat(f->hex, ".pkg", NULL);

    return g_build_filename(f->store_dir, "objects", name, NULL);
}

/* ---- Ownership ---- */

static void test_foreign(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugManifest) m = NULL;
    gsize size = g_bytes_get_size(f->pkg);
    guint64 id, off;

    id = begin_ok(f, "vm-a", size, f->sha, "2.0", NULL);
    begin_refused(f, "vm-b", size, f->sha, "2.0", VMAUG_HOST_ERROR_BUSY,
                  "being uploaded by another VM");
    begin_refused(f, "vm-a", size - 1, f->sha, "2.0", VMAUG_HOST_ERROR_BUSY,
                  "abort it first");
    g_assert_false(vmaug_store_upload_chunk(f->store, "vm-b", id, 0,
                                            (const guint8 *)"x", 1, &off,
                                            &error));
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_NOT_FOUND);
    g_clear_error(&error);
    g_assert_null(vmaug_store_upload_commit(f->store, "vm-b", id, "test",
                                            &error));
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_NOT_FOUND);
    g_clear_error(&error);
    g_assert_false(vmaug_store_upload_abort(f->store, "vm-b", id, "test",
                                            &error));
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_NOT_FOUND);
    g_clear_error(&error);
    /* Across a restart the upload is still vm-a's alone. */
    g_clear_pointer(&f->store, vmaug_store_free);
    fixture_open(f);
    begin_refused(f, "vm-b", size, f->sha, "2.0", VMAUG_HOST_ERROR_BUSY,
                  "being uploaded by another VM");
    g_assert_cmpuint(begin_ok(f, "vm-a", size, f->sha, "2.0", &off), ==, id);
    g_assert_cmpuint(off, ==, 0);
    send_package(f, "vm-a", id);
    m = vmaug_store_upload_commit(f->store, "vm-a", id, "test", &error);
    g_assert_no_error(error);
    g_assert_cmpstr(m->version, ==, "2.0");
}

/* ---- Idleness: only progress counts ---- */

static void test_idle(Fixture *f, gconstpointer data)
{
    VmaugUploadLimits limits = {
        .slots = 1, .bytes = 1024 * 1024, .idle_us = SECONDS(10),
    };
    guint8 x[32] = { 1 }, y[32] = { 2 }, z[32] = { 3 };
    guint64 idx, idy, off;

    vmaug_store_set_upload_limits(f->store, &limits);
    idx = begin_ok(f, "vm-a", 100, x, "3.1", NULL);
    begin_refused(f, "vm-a", 100, y, "3.2", VMAUG_HOST_ERROR_BUSY,
                  "1 unfinished uploads, the most it may have");
    /* Announcing it again, and again: no progress. */
    f->now += SECONDS(8);
    g_assert_cmpuint(begin_ok(f, "vm-a", 100, x, "3.1", &off), ==, idx);
    f->now += SECONDS(1);
    g_assert_cmpuint(begin_ok(f, "vm-a", 100, x, "3.1", &off), ==, idx);
    /* Ten seconds after it last took a chunk (it never did), it is gone
     * and its slot free. */
    f->now += SECONDS(1);
    idy = begin_ok(f, "vm-a", 100, y, "3.2", NULL);
    g_assert_cmpuint(idy, !=, idx);
    g_assert_cmpuint(test_count_lines(f->audit, "upload-expire"), ==, 1);
    /* A chunk is progress. */
    f->now += SECONDS(9);
    {
        g_autoptr(GError) error = NULL;

        g_assert_true(vmaug_store_upload_chunk(f->store, "vm-a", idy, 0,
                                               (const guint8 *)"y", 1, &off,
                                               &error));
        g_assert_no_error(error);
    }
    f->now += SECONDS(9);
    begin_ok(f, "vm-b", 100, z, "3.3", NULL);
    g_assert_cmpuint(begin_ok(f, "vm-a", 100, y, "3.2", &off), ==, idy);
    g_assert_cmpuint(off, ==, 1);
    g_assert_cmpuint(test_count_lines(f->audit, "upload-expire"), ==, 1);
}

/* An idle upload is gone for its own VM too: no chunk, commit or abort
 * revives it, even when nobody announced anything meanwhile. */
static void test_idle_gone(Fixture *f, gconstpointer data)
{
    VmaugUploadLimits limits = {
        .slots = 1, .bytes = 1024 * 1024, .idle_us = SECONDS(10),
    };
    g_autoptr(GError) error = NULL;
    g_autofree gchar *part = NULL;
    g_autofree gchar *obj = object_path(f);
    gsize size = g_bytes_get_size(f->pkg);
    guint64 id, off;

    vmaug_store_set_upload_limits(f->store, &limits);
    id = begin_ok(f, "vm-a", size, f->sha, "2.0", NULL);
    part = part_path(f, id);
    f->now += SECONDS(10);
    g_assert_false(vmaug_store_upload_chunk(f->store, "vm-a", id, 0,
                                            g_bytes_get_data(f->pkg, NULL),
                                            size, &off, &error));
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_NOT_FOUND);
    g_clear_error(&error);
    g_assert_false(g_file_test(part, G_FILE_TEST_EXISTS));
    g_assert_cmpuint(test_count_lines(f->audit, "upload-expire"), ==, 1);

    /* Complete, then idle: the commit finds nothing either. */
    id = begin_ok(f, "vm-a", size, f->sha, "2.0", NULL);
    send_package(f, "vm-a", id);
    f->now += SECONDS(10);
    g_assert_null(vmaug_store_upload_commit(f->store, "vm-a", id, "test",
                                            &error));
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_NOT_FOUND);
    g_clear_error(&error);
    g_assert_false(g_file_test(obj, G_FILE_TEST_EXISTS));
    g_assert_false(vmaug_store_upload_abort(f->store, "vm-a", id, "test",
                                            &error));
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_NOT_FOUND);
}

/* ---- The commit's private copy ---- */

/* Whoever still holds the upload's file cannot reach the stored object. */
static void test_private_copy(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugManifest) m = NULL;
    g_autofree gchar *part = NULL;
    g_autofree gchar *obj = object_path(f);
    g_autofree gchar *stored = NULL;
    g_autofree gchar *junk = g_strnfill(4096, 'j');
    guint64 id = begin_ok(f, "vm-a", g_bytes_get_size(f->pkg), f->sha, "2.0",
                          NULL);
    struct stat held, object;
    int fd;

    send_package(f, "vm-a", id);
    part = part_path(f, id);
    fd = open(part, O_RDWR | O_CLOEXEC);
    g_assert_cmpint(fd, >=, 0);
    m = vmaug_store_upload_commit(f->store, "vm-a", id, "test", &error);
    g_assert_no_error(error);
    g_assert_cmpint(fstat(fd, &held), ==, 0);
    g_assert_cmpint(stat(obj, &object), ==, 0);
    g_assert_false(held.st_dev == object.st_dev &&
                   held.st_ino == object.st_ino);
    g_assert_cmpint(pwrite(fd, junk, 4096, 0), ==, 4096);
    close(fd);
    stored = test_sha256sum(obj);
    g_assert_cmpstr(stored, ==, f->hex);
    g_assert_false(g_file_test(part, G_FILE_TEST_EXISTS));
}

/* The upload's file cut or grown behind the store's back: a clear
 * refusal, not a fault. */
static void test_cut_file(Fixture *f, gconstpointer data)
{
    gsize size = g_bytes_get_size(f->pkg);
    g_autofree gchar *obj = object_path(f);

    for (guint i = 0; i < 2; i++) {
        g_autoptr(GError) error = NULL;
        g_autofree gchar *part = NULL;
        guint64 id = begin_ok(f, "vm-a", size, f->sha, "2.0", NULL);

        send_package(f, "vm-a", id);
        part = part_path(f, id);
        g_assert_cmpint(truncate(part, i == 0 ? size / 2 : size + 4096), ==,
                        0);
        g_assert_null(vmaug_store_upload_commit(f->store, "vm-a", id, "test",
                                                &error));
        g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID);
        g_test_message("refused: %s", error->message);
        g_assert_nonnull(strstr(error->message, "were announced"));
        g_assert_false(g_file_test(obj, G_FILE_TEST_EXISTS));
        g_assert_false(g_file_test(part, G_FILE_TEST_EXISTS));
    }
}

/* ---- Release ---- */

static void test_release(Fixture *f, gconstpointer data)
{
    guint8 x[32] = { 1 }, y[32] = { 2 };
    guint64 ida = begin_ok(f, "device-a-1", 100, x, "3.1", NULL);
    guint64 idb = begin_ok(f, "vm-b", 100, y, "3.2", NULL);
    g_autofree gchar *parta = part_path(f, ida);
    g_autofree gchar *partb = part_path(f, idb);
    guint count;
    guint64 bytes;

    vmaug_store_upload_release(f->store, "device-a-1", "test");
    g_assert_false(g_file_test(parta, G_FILE_TEST_EXISTS));
    g_assert_true(g_file_test(partb, G_FILE_TEST_EXISTS));
    vmaug_store_upload_usage(f->store, "device-a-1", &count, &bytes);
    g_assert_cmpuint(count, ==, 0);
    vmaug_store_upload_usage(f->store, "vm-b", &count, &bytes);
    g_assert_cmpuint(count, ==, 1);
    g_assert_cmpuint(bytes, ==, 100);
}

/* ---- The audit budget ---- */

/* Lines of the log that are records of @action: written one by one, and
 * the sum of the counts of the others.  No log yet is no record. */
static void audit_tally(Fixture *f, const gchar *action, guint *single,
                        guint64 *counted)
{
    test_audit_tally(f->audit, action, NULL, single, counted);
}

static void test_audit_budget(Fixture *f, gconstpointer data)
{
    VmaugAuditLimits limits = { .burst = 3, .window_us = SECONDS(10) };
    g_autoptr(GError) refusal = g_error_new_literal(
        VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_DENIED, "no");
    guint single;
    guint64 counted;

    vmaug_store_set_audit_limits(f->store, &limits);
    for (guint i = 0; i < 10; i++) {
        vmaug_store_audit(f->store, "vm-a", "load", "echo", "1.0", NULL, NULL,
                          refusal);
        /* Another actor has a budget of its own. */
        if (i < 2) {
            vmaug_store_audit(f->store, "vm-b", "load", "kv", "1.0", NULL,
                              NULL, refusal);
        }
        /* What changes the store is never held back. */
        vmaug_store_audit(f->store, "vm-a", "install", "echo", "1.0", NULL,
                          NULL, NULL);
    }
    audit_tally(f, "load", &single, &counted);
    g_assert_cmpuint(single, ==, 3 + 2);
    g_assert_cmpuint(counted, ==, 0);
    audit_tally(f, "install", &single, &counted);
    g_assert_cmpuint(single, ==, 10);
    /* A flood of one kind hides no other; handlers that ran are work
     * done, each recorded. */
    vmaug_store_audit(f->store, "vm-a", "upload-begin", "echo", "1.0", NULL,
                      NULL, refusal);
    audit_tally(f, "upload-begin", &single, &counted);
    g_assert_cmpuint(single, ==, 1);
    for (guint i = 0; i < 30; i++) {
        vmaug_store_audit(f->store, "vm-a", "lifecycle-image-start", "echo",
                          "1.0", NULL, NULL, NULL);
    }
    audit_tally(f, "lifecycle-image-start", &single, &counted);
    g_assert_cmpuint(single, ==, 30);
    /* Within the window nothing more is written... */
    f->now += SECONDS(9);
    vmaug_store_audit_flush(f->store, NULL);
    audit_tally(f, "load", &single, &counted);
    g_assert_cmpuint(single + counted, ==, 5);
    /* ...once it ended, the count is. */
    f->now += SECONDS(1);
    vmaug_store_audit_flush(f->store, NULL);
    audit_tally(f, "load", &single, &counted);
    g_assert_cmpuint(single, ==, 5);
    g_assert_cmpuint(counted, ==, 7);
    g_assert_cmpuint(test_count_lines(f->audit, "7 more refusals of load "
                                      "not written one by one; the last: "
                                      "no"), ==, 1);
    /* A new window, a new budget; leaving writes what is held. */
    for (guint i = 0; i < 5; i++) {
        vmaug_store_audit(f->store, "vm-a", "load", "echo", "1.0", NULL, NULL,
                          refusal);
    }
    audit_tally(f, "load", &single, &counted);
    g_assert_cmpuint(single, ==, 8);
    vmaug_store_audit_flush(f->store, "vm-a");
    audit_tally(f, "load", &single, &counted);
    g_assert_cmpuint(single, ==, 8);
    g_assert_cmpuint(counted, ==, 9);
}

/* ---- Areas of connections that are gone ---- */

static void test_repair_areas(Fixture *f, gconstpointer data)
{
    g_autofree gchar *vms = g_build_filename(f->store_dir, "vms", NULL);
    g_autofree gchar *gone = g_build_filename(vms, "device-x-0123", NULL);
    g_autofree gchar *quiet = g_build_filename(vms, "device-y-4567", NULL);
    g_autofree gchar *image = g_build_filename(vms, "image-disk-89ab", NULL);
    g_autofree gchar *doc = g_build_filename(gone, "spool", "1.data", NULL);
    g_autofree gchar *state = g_build_filename(gone, "state", "kv", "f",
                                               NULL);
    g_autofree gchar *kept = g_build_filename(image, "state", "kv", "f",
                                              NULL);
    g_autofree gchar *dir = NULL;

    for (const gchar *const *p = (const gchar *const[]) { doc, state, kept,
                                                          NULL };
         *p != NULL; p++) {
        dir = g_path_get_dirname(*p);
        g_assert_cmpint(g_mkdir_with_parents(dir, 0700), ==, 0);
        g_assert_true(g_file_set_contents(*p, "x", -1, NULL));
        g_clear_pointer(&dir, g_free);
    }
    g_assert_cmpint(g_mkdir_with_parents(quiet, 0700), ==, 0);
    g_clear_pointer(&f->store, vmaug_store_free);
    fixture_open(f);
    /* Nobody can name a connection's area again: what it printed stays,
     * nothing else. */
    g_assert_true(g_file_test(doc, G_FILE_TEST_IS_REGULAR));
    g_assert_false(g_file_test(state, G_FILE_TEST_EXISTS));
    g_assert_false(g_file_test(quiet, G_FILE_TEST_EXISTS));
    g_assert_true(g_file_test(kept, G_FILE_TEST_IS_REGULAR));
}

/* The uploads a connection began go with its area after a crash too:
 * nobody can resume them, and they would keep their package busy. */
static void test_repair_connection_uploads(Fixture *f, gconstpointer data)
{
    gsize size = g_bytes_get_size(f->pkg);
    g_autofree gchar *part = NULL;
    guint64 gone, kept, off;

    gone = begin_ok(f, "device-x-0123456789abcdef", size, f->sha, "2.0",
                    NULL);
    part = part_path(f, gone);
    kept = begin_ok(f, "image-disk-0123456789abcdef", 100,
                    (const guint8[32]){ 7 }, "3.0", NULL);
    /* The helper dies: nothing released them. */
    g_clear_pointer(&f->store, vmaug_store_free);
    fixture_open(f);
    g_assert_false(g_file_test(part, G_FILE_TEST_EXISTS));
    g_assert_cmpuint(begin_ok(f, "device-z-fedcba9876543210", size, f->sha,
                              "2.0", &off), !=, gone);
    g_assert_cmpuint(off, ==, 0);
    /* A VM that names its image resumes its own. */
    g_assert_cmpuint(begin_ok(f, "image-disk-0123456789abcdef", 100,
                              (const guint8[32]){ 7 }, "3.0", &off), ==,
                     kept);
}

/* An area of a connection goes with its last reference, but its spool. */
static void test_connection_area(Fixture *f, gconstpointer data)
{
    VmaugVmQuota quota = { 4096, 4096, 4096 };
    g_autoptr(GError) error = NULL;
    VmaugVmArea *area = vmaug_vm_area_new(f->store, NULL, "vm a/..",
                                          &quota);
    g_autofree gchar *dir = NULL;
    g_autofree gchar *spool = NULL;
    g_autofree gchar *doc = NULL;
    g_autoptr(GBytes) v = NULL;
    guint8 x[32] = { 1 };
    guint64 id;

    dir = g_strdup(vmaug_vm_area_get_dir(area));
    g_assert_true(g_str_has_prefix(vmaug_vm_area_get_id(area),
                                   "device-vm_a_..-"));
    g_assert_true(vmaug_vm_area_config_set(area, "kv", VMAUG_CONFIG_GUEST,
                                           "k", "v", 1, &error));
    g_assert_no_error(error);
    g_assert_false(vmaug_vm_area_config_get(area, "kv", VMAUG_CONFIG_MODULE,
                                            "k", &v, &error));
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_NOT_FOUND);
    g_clear_error(&error);
    g_assert_false(vmaug_vm_area_config_set(area, "../kv",
                                            VMAUG_CONFIG_GUEST, "k", "v", 1,
                                            &error));
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID);
    g_clear_error(&error);
    spool = vmaug_vm_area_subdir(area, "spool", &error);
    g_assert_no_error(error);
    doc = g_build_filename(spool, "1.data", NULL);
    g_assert_true(g_file_set_contents(doc, "printed", -1, NULL));
    id = begin_ok(f, vmaug_vm_area_get_id(area), 100, x, "3.1", NULL);
    g_assert_cmpuint(id, !=, 0);
    vmaug_vm_area_unref(area);
    g_assert_true(g_file_test(doc, G_FILE_TEST_IS_REGULAR));
    {
        g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);

        g_assert_nonnull(d);
        g_assert_cmpstr(g_dir_read_name(d), ==, "spool");
        g_assert_null(g_dir_read_name(d));
    }
    {
        g_autofree gchar *part = part_path(f, id);

        g_assert_false(g_file_test(part, G_FILE_TEST_EXISTS));
    }
}

/* ---- One number, one version ---- */

static void test_version_spelling(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GBytes) payload = g_bytes_new_static("\177ELF other", 10);
    g_autoptr(GBytes) one = test_package(f->keys->admin, "echo", "1.0",
                                         payload);
    g_autoptr(VmaugManifest) m = NULL;
    g_autoptr(VmaugStoreEntry) e = NULL;
    g_autoptr(GPtrArray) list = NULL;
    const gchar *again[] = { "1.00", "1", "01.0", "1.0.0.0" };

    m = vmaug_store_install(f->store, one, "test", &error);
    g_assert_no_error(error);
    for (guint i = 0; i < G_N_ELEMENTS(again); i++) {
        g_autoptr(GBytes) pkg = test_package(f->keys->admin, "echo",
                                             again[i], payload);
        g_autoptr(VmaugManifest) m2 = NULL;
        g_autofree gchar *want = g_strdup_printf("echo %s is version 1.0, "
                                                 "already stored", again[i]);

        m2 = vmaug_store_install(f->store, pkg, "test", &error);
        g_assert_null(m2);
        g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_DENIED);
        g_assert_cmpstr(error->message, ==, want);
        g_clear_error(&error);
        e = vmaug_store_lookup(f->store, "echo", again[i], &error);
        g_assert_no_error(error);
        g_assert_cmpstr(e->version, ==, "1.0");
        g_clear_pointer(&e, vmaug_store_entry_free);
    }
    list = vmaug_store_list(f->store);
    g_assert_cmpuint(list->len, ==, 1);
}

#define ADD(path, fn) \
    g_test_add(path, Fixture, NULL, fixture_setup, fn, fixture_teardown)

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_log_set_always_fatal(G_LOG_LEVEL_CRITICAL);
    ADD("/sessions/foreign", test_foreign);
    ADD("/sessions/idle", test_idle);
    ADD("/sessions/idle-gone", test_idle_gone);
    ADD("/sessions/private-copy", test_private_copy);
    ADD("/sessions/cut-file", test_cut_file);
    ADD("/sessions/release", test_release);
    ADD("/sessions/audit-budget", test_audit_budget);
    ADD("/sessions/repair-areas", test_repair_areas);
    ADD("/sessions/repair-connection-uploads",
        test_repair_connection_uploads);
    ADD("/sessions/connection-area", test_connection_area);
    ADD("/sessions/version-spelling", test_version_spelling);
    return g_test_run();
}
