/*
 * Several VMs on one vmaugment-helper, driven over its socket exactly as
 * QEMU devices drive it: no VM can touch another's uploads, configuration,
 * state, spool or registrations, crash the helper or corrupt a stored
 * package, fill the host's disk beyond its quotas, starve another of
 * upload slots or flood the audit log (docs/threat-model.rst, "VMs sharing
 * a helper").  Stored objects are checked with sha256sum(1), files on
 * disk with stat(2), never with the helper's own word.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "helper-client.h"
#include "test-common.h"
#include "vm-area.h"

typedef HelperFixture Fixture;

static void fixture_setup(Fixture *f, gconstpointer data)
{
    helper_fixture_setup(f);
}

/* The helper, with the fixture's image directory and @extra options;
 * the test connects its VMs itself. */
static void fixture_start(Fixture *f, const gchar *const *extra)
{
    static const gchar *const base[] = {
        "--call-timeout-ms", "5000", NULL
    };

    helper_fixture_start(f, base, extra);
}

static void fixture_teardown(Fixture *f, gconstpointer data)
{
    helper_fixture_teardown(f);
}

static gchar *audit_path(Fixture *f)
{
    return g_build_filename(f->store, "audit.log", NULL);
}

static void upload_module(Fixture *f, HelperClient *c, const gchar *name,
                          const gchar *version)
{
    g_autoptr(GBytes) pkg = test_module_package(f->keys->admin, name,
                                                version);

    g_assert_cmpuint(helper_upload(c, pkg, name, version, 64 * 1024), ==,
                     VMAUG_S_OK);
}

/* The text a refusal carries. */
static gchar *reply_text(const HelperReply *r)
{
    if (r->data == NULL) {
        return g_strdup("");
    }
    return g_strndup(g_bytes_get_data(r->data, NULL),
                     g_bytes_get_size(r->data));
}

/* @status, and a message containing @needle. */
static void assert_reply(const HelperReply *r, guint16 status,
                         const gchar *needle)
{
    g_autofree gchar *text = reply_text(r);

    if (r->status != VMAUG_S_OK) {
        g_test_message("status %u: %s", r->status, text);
    }
    g_assert_cmpuint(r->status, ==, status);
    if (needle != NULL) {
        g_assert_nonnull(strstr(text, needle));
    }
}

static void package_sha(GBytes *pkg, guint8 sha[32], gchar **hex)
{
    g_autoptr(GChecksum) c = g_checksum_new(G_CHECKSUM_SHA256);
    gsize len = 32;

    g_checksum_update(c, g_bytes_get_data(pkg, NULL), g_bytes_get_size(pkg));
    g_checksum_get_digest(c, sha, &len);
    if (hex != NULL) {
        *hex = g_strdup(g_checksum_get_string(c));
    }
}

static void begin(HelperClient *c, guint64 size, const guint8 sha[32],
                  const gchar *name, const gchar *version, HelperReply *r,
                  guint64 *id, guint64 *offset)
{
    struct vmaug_upload_begin b = { 0 };

    b.total_size = GUINT64_TO_LE(size);
    memcpy(b.sha256, sha, 32);
    helper_ref(&b.ref, name, version);
    g_assert_true(helper_client_call(c, VMAUG_OP_UPLOAD_BEGIN, &b, sizeof(b),
                                     NULL, 0, r));
    if (r->status == VMAUG_S_OK) {
        struct vmaug_upload_state st;

        g_assert_cmpuint(g_bytes_get_size(r->data), ==, sizeof(st));
        memcpy(&st, g_bytes_get_data(r->data, NULL), sizeof(st));
        if (id != NULL) {
            *id = GUINT64_FROM_LE(st.upload_id);
        }
        if (offset != NULL) {
            *offset = GUINT64_FROM_LE(st.offset);
        }
    }
}

/* One chunk; FALSE when the helper is gone. */
static gboolean chunk(HelperClient *c, guint64 id, guint64 offset,
                      const void *data, gsize len, HelperReply *r)
{
    struct vmaug_upload_chunk ch = {
        .upload_id = GUINT64_TO_LE(id),
        .offset = GUINT64_TO_LE(offset),
    };

    return helper_client_call(c, VMAUG_OP_UPLOAD_CHUNK, &ch, sizeof(ch),
                              data, len, r);
}

/* Every byte of @pkg from @from on, 64 KiB at a time. */
static void send_all(HelperClient *c, guint64 id, GBytes *pkg, guint64 from)
{
    gsize size;
    const guint8 *p = g_bytes_get_data(pkg, &size);

    for (guint64 off = from; off < size; off += 64 * 1024) {
        g_auto(HelperReply) r = { 0 };

        g_assert_true(chunk(c, id, off, p + off, MIN(64 * 1024, size - off),
                            &r));
        assert_reply(&r, VMAUG_S_OK, NULL);
    }
}

static gboolean upload_ref_call(HelperClient *c, guint16 op, guint64 id,
                                HelperReply *r)
{
    struct vmaug_upload_ref ref = { .upload_id = GUINT64_TO_LE(id) };

    return helper_client_call(c, op, &ref, sizeof(ref), NULL, 0, r);
}

static gchar *object_path(Fixture *f, const gchar *hex)
{
    g_autofree gchar *name = g_strconcat(hex, ".pkg", NULL);

    return g_build_filename(f->store, "objects", name, NULL);
}

static guint16 config_call(HelperClient *c, guint16 op, const gchar *module,
                           const gchar *key, const gchar *value,
                           HelperReply *r)
{
    struct vmaug_config_ref cref = { 0 };

    g_strlcpy((gchar *)cref.module, module, sizeof(cref.module));
    g_strlcpy((gchar *)cref.key, key, sizeof(cref.key));
    g_assert_true(helper_client_call(c, op, &cref, sizeof(cref), value,
                                     value != NULL ? strlen(value) : 0, r));
    return r->status;
}

static gchar *invoke_text(HelperClient *c, const gchar *module,
                          const gchar *function, const gchar *in,
                          guint16 expect)
{
    g_autoptr(GBytes) out = NULL;

    g_assert_cmpuint(helper_invoke(c, module, function, in,
                                   in != NULL ? strlen(in) : 0, &out), ==,
                     expect);
    if (out == NULL) {
        return g_strdup("");
    }
    return g_strndup(g_bytes_get_data(out, NULL), g_bytes_get_size(out));
}

static guint count_entries(const gchar *dir)
{
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    guint n = 0;

    while (d != NULL && g_dir_read_name(d) != NULL) {
        n++;
    }
    return n;
}

/* Bytes of the regular files in @dir, by stat(2). */
static guint64 dir_bytes(const gchar *dir)
{
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    const gchar *n;
    guint64 total = 0;

    while (d != NULL && (n = g_dir_read_name(d)) != NULL) {
        g_autofree gchar *p = g_build_filename(dir, n, NULL);
        struct stat st;

        g_assert_cmpint(lstat(p, &st), ==, 0);
        if (S_ISREG(st.st_mode)) {
            total += st.st_size;
        }
    }
    return total;
}

/* The areas (vms/<id>) holding @rel, in name order. */
static GPtrArray *areas_with(Fixture *f, const gchar *rel)
{
    g_autofree gchar *vms = g_build_filename(f->store, "vms", NULL);
    g_autoptr(GDir) d = g_dir_open(vms, 0, NULL);
    GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
    const gchar *n;

    while (d != NULL && (n = g_dir_read_name(d)) != NULL) {
        g_autofree gchar *p = g_build_filename(vms, n, rel, NULL);

        if (g_file_test(p, G_FILE_TEST_EXISTS)) {
            g_ptr_array_add(out, g_build_filename(vms, n, NULL));
        }
    }
    return out;
}

static guint count_regs(HelperClient *c)
{
    struct vmaug_list_req req = {
        .what = GUINT32_TO_LE(VMAUG_LIST_REGISTRATIONS),
    };
    struct vmaug_list_resp resp;
    g_auto(HelperReply) r = { 0 };

    g_assert_true(helper_client_call(c, VMAUG_OP_LIST, &req, sizeof(req),
                                     NULL, 0, &r));
    g_assert_cmpuint(r.status, ==, VMAUG_S_OK);
    memcpy(&resp, g_bytes_get_data(r.data, NULL), sizeof(resp));
    return GUINT32_FROM_LE(resp.total);
}

static HelperDone *image_start(HelperClient *c)
{
    static guint64 tag = 5000;
    HelperDone *d;

    helper_client_lifecycle(c, ++tag, VMAUG_EVENT_IMAGE_START, 0);
    d = helper_client_wait_done(c, tag, 30000);
    g_assert_nonnull(d);
    return d;
}

/* ---- Upload sessions that cannot collide ---- */

/*
 * Two VMs announce the same package with different sizes.  The second is
 * told the package is busy, instead of cutting the first one's file under
 * it (which made the first one's commit fault in the helper, for every
 * VM).  The first commits; the object is intact.
 */
static void test_upload_sigbus(Fixture *f, gconstpointer data)
{
    g_autoptr(GBytes) pkg = test_module_package(f->keys->admin, "echo",
                                                "1.0");
    g_autoptr(HelperClient) a = NULL;
    g_autoptr(HelperClient) b = NULL;
    g_autofree gchar *hex = NULL;
    g_autofree gchar *obj = NULL;
    g_autofree gchar *stored = NULL;
    gsize size = g_bytes_get_size(pkg);
    guint8 sha[32];
    guint64 ida = 0, off = 1;

    fixture_start(f, NULL);
    a = helper_client_connect(f->socket, NULL);
    b = helper_client_connect(f->socket, NULL);
    package_sha(pkg, sha, &hex);
    {
        g_auto(HelperReply) r = { 0 };

        begin(a, size, sha, "echo", "1.0", &r, &ida, &off);
        assert_reply(&r, VMAUG_S_OK, NULL);
        g_assert_cmpuint(off, ==, 0);
    }
    send_all(a, ida, pkg, 0);
    {
        g_auto(HelperReply) r = { 0 };

        begin(b, size - 4096, sha, "echo", "1.0", &r, NULL, NULL);
        assert_reply(&r, VMAUG_S_BUSY, "being uploaded by another VM");
    }
    {
        g_auto(HelperReply) r = { 0 };

        /* The helper answers: it did not fault on a cut file. */
        g_assert_true(upload_ref_call(a, VMAUG_OP_UPLOAD_COMMIT, ida, &r));
        assert_reply(&r, VMAUG_S_OK, NULL);
    }
    obj = object_path(f, hex);
    stored = test_sha256sum(obj);
    g_assert_cmpstr(stored, ==, hex);
    g_assert_cmpuint(helper_query(b, "echo", "1.0", NULL), ==, VMAUG_S_OK);
    g_assert_cmpuint(helper_load(b, "echo", "1.0", NULL), ==, VMAUG_S_OK);
    {
        g_auto(HelperReply) r = { 0 };

        begin(b, size, sha, "echo", "1.0", &r, NULL, NULL);
        assert_reply(&r, VMAUG_S_EXISTS, "already stored");
    }
}

/*
 * The second VM keeps writing chunks after the first committed, with the
 * upload id of the first (it learned or guessed it): the upload is not
 * its own, and the stored object is a file nobody holds for writing.
 */
static void test_upload_poison(Fixture *f, gconstpointer data)
{
    g_autoptr(GBytes) pkg = test_module_package(f->keys->admin, "echo",
                                                "1.0");
    g_autoptr(GBytes) kv = test_module_package(f->keys->admin, "kv", "1.0");
    g_autoptr(HelperClient) a = NULL;
    g_autoptr(HelperClient) b = NULL;
    g_autofree gchar *hex = NULL;
    g_autofree gchar *obj = NULL;
    g_autofree gchar *stored = NULL;
    g_autofree gchar *junk = g_malloc(4096);
    gsize size = g_bytes_get_size(pkg);
    guint8 sha[32], kvsha[32];
    guint64 ida = 0, idk = 0, idk2 = 0;

    memset(junk, 0x5a, 4096);
    fixture_start(f, NULL);
    a = helper_client_connect(f->socket, NULL);
    b = helper_client_connect(f->socket, NULL);
    package_sha(pkg, sha, &hex);
    {
        g_auto(HelperReply) r = { 0 };

        begin(a, size, sha, "echo", "1.0", &r, &ida, NULL);
        assert_reply(&r, VMAUG_S_OK, NULL);
    }
    {
        g_auto(HelperReply) r = { 0 };

        begin(b, size + 1, sha, "echo", "1.0", &r, NULL, NULL);
        assert_reply(&r, VMAUG_S_BUSY, "being uploaded by another VM");
    }
    send_all(a, ida, pkg, 0);
    {
        g_auto(HelperReply) r = { 0 };

        g_assert_true(upload_ref_call(a, VMAUG_OP_UPLOAD_COMMIT, ida, &r));
        assert_reply(&r, VMAUG_S_OK, NULL);
    }
    /* Whatever b sends under that id, from the start or from the end. */
    for (guint i = 0; i < 8; i++) {
        g_auto(HelperReply) r = { 0 };
        g_autofree gchar *want = g_strdup_printf("no upload %"
                                                 G_GUINT64_FORMAT, ida);

        g_assert_true(chunk(b, ida, i == 0 ? 0 : size, junk, 4096, &r));
        assert_reply(&r, VMAUG_S_NOT_FOUND, want);
    }
    obj = object_path(f, hex);
    stored = test_sha256sum(obj);
    g_assert_cmpstr(stored, ==, hex);
    /* Verified again at load: still the package that was committed. */
    g_assert_cmpuint(helper_load(b, "echo", "1.0", NULL), ==, VMAUG_S_OK);

    /* Nor can one VM have two uploads of one package that disagree. */
    package_sha(kv, kvsha, NULL);
    {
        g_auto(HelperReply) r = { 0 };

        begin(a, g_bytes_get_size(kv), kvsha, "kv", "1.0", &r, &idk, NULL);
        assert_reply(&r, VMAUG_S_OK, NULL);
    }
    {
        g_auto(HelperReply) r = { 0 };

        begin(a, g_bytes_get_size(kv) + 1, kvsha, "kv", "1.0", &r, NULL,
              NULL);
        assert_reply(&r, VMAUG_S_BUSY, "abort it first");
    }
    {
        g_auto(HelperReply) r = { 0 };

        g_assert_true(upload_ref_call(b, VMAUG_OP_UPLOAD_ABORT, idk, &r));
        assert_reply(&r, VMAUG_S_NOT_FOUND, "no upload");
        helper_reply_clear(&r);
        g_assert_true(upload_ref_call(b, VMAUG_OP_UPLOAD_COMMIT, idk, &r));
        assert_reply(&r, VMAUG_S_NOT_FOUND, "no upload");
        helper_reply_clear(&r);
        g_assert_true(upload_ref_call(a, VMAUG_OP_UPLOAD_ABORT, idk, &r));
        assert_reply(&r, VMAUG_S_OK, NULL);
        helper_reply_clear(&r);
        begin(a, g_bytes_get_size(kv), kvsha, "kv", "1.0", &r, &idk2, NULL);
        assert_reply(&r, VMAUG_S_OK, NULL);
        g_assert_cmpuint(idk2, !=, idk);
    }
    send_all(a, idk2, kv, 0);
    {
        g_auto(HelperReply) r = { 0 };

        g_assert_true(upload_ref_call(a, VMAUG_OP_UPLOAD_COMMIT, idk2, &r));
        assert_reply(&r, VMAUG_S_OK, NULL);
    }
}

/* ---- Each VM its own ---- */

static gchar *area_of(const gchar *file, guint up)
{
    gchar *dir = g_strdup(file);

    for (guint i = 0; i < up; i++) {
        gchar *parent = g_path_get_dirname(dir);

        g_free(dir);
        dir = parent;
    }
    return dir;
}

static gchar *spool_file(Fixture *f, const gchar *job)
{
    g_autofree gchar *rel = g_strconcat("spool/", job, ".data", NULL);
    g_autoptr(GPtrArray) areas = areas_with(f, rel);

    g_assert_cmpuint(areas->len, ==, 1);
    return g_build_filename(g_ptr_array_index(areas, 0), rel, NULL);
}

static void test_two_vms(Fixture *f, gconstpointer data)
{
    g_autoptr(HelperClient) a = NULL;
    g_autoptr(HelperClient) b = NULL;
    g_autoptr(GBytes) newer = test_module_package(f->keys->admin, "printer",
                                                  "1.1");
    g_autoptr(GPtrArray) with_notes = NULL;
    g_autofree gchar *text = NULL;
    g_autofree gchar *job_a = NULL;
    g_autofree gchar *job_b = NULL;
    g_autofree gchar *file_a = NULL;
    g_autofree gchar *file_b = NULL;
    g_autofree gchar *area_a = NULL;
    g_autofree gchar *area_b = NULL;
    struct vmaug_registration reg = { 0 };
    guint8 sha[32];
    guint64 id = 0, id2 = 0, off = 1;

    fixture_start(f, NULL);
    a = helper_client_connect(f->socket, NULL);
    b = helper_client_connect(f->socket, NULL);
    upload_module(f, a, "kv", "1.0");
    upload_module(f, a, "printer", "1.0");
    upload_module(f, a, "hostile", "1.0");
    upload_module(f, a, "echo", "1.0");

    /* Configuration: the kv module's values, and the guest's own. */
    g_assert_cmpuint(helper_load(a, "kv", NULL, NULL), ==, VMAUG_S_OK);
    g_assert_cmpuint(helper_load(b, "kv", NULL, NULL), ==, VMAUG_S_OK);
    g_free(invoke_text(a, "kv", "set", "secret=only-a", VMAUG_S_OK));
    g_free(invoke_text(b, "kv", "get", "secret", VMAUG_S_NOT_FOUND));
    {
        g_auto(HelperReply) r = { 0 };

        g_assert_cmpuint(config_call(a, VMAUG_OP_CONFIG_GET, "kv", "secret",
                                     NULL, &r), ==, VMAUG_S_OK);
        g_assert_cmpmem(g_bytes_get_data(r.data, NULL),
                        g_bytes_get_size(r.data), "only-a", 6);
        helper_reply_clear(&r);
        config_call(b, VMAUG_OP_CONFIG_GET, "kv", "secret", NULL, &r);
        assert_reply(&r, VMAUG_S_NOT_FOUND, "no configuration secret");
        helper_reply_clear(&r);
        g_assert_cmpuint(config_call(a, VMAUG_OP_CONFIG_SET, "kv", "colour",
                                     "red", &r), ==, VMAUG_S_OK);
        helper_reply_clear(&r);
        config_call(b, VMAUG_OP_CONFIG_GET, "kv", "colour", NULL, &r);
        assert_reply(&r, VMAUG_S_NOT_FOUND, "no configuration colour");
        helper_reply_clear(&r);
        /* Only for modules the VM uses. */
        config_call(b, VMAUG_OP_CONFIG_SET, "echo", "greeting", "hi", &r);
        assert_reply(&r, VMAUG_S_NOT_FOUND,
                     "echo is neither loaded nor registered by this VM");
    }

    /* State: the module's files in its VM's area. */
    g_assert_cmpuint(helper_load(a, "hostile", NULL, NULL), ==, VMAUG_S_OK);
    g_assert_cmpuint(helper_load(b, "hostile", NULL, NULL), ==, VMAUG_S_OK);
    g_assert_cmpuint(helper_invoke(a, "hostile", "state", "a-state", 7,
                                   NULL), ==, VMAUG_S_DENIED);
    with_notes = areas_with(f, "state/hostile/notes.txt");
    g_assert_cmpuint(with_notes->len, ==, 1);
    {
        g_autofree gchar *notes = g_build_filename(
            g_ptr_array_index(with_notes, 0), "state", "hostile",
            "notes.txt", NULL);

        g_assert_true(g_file_get_contents(notes, &text, NULL, NULL));
        g_assert_cmpstr(text, ==, "a-state");
        area_a = area_of(notes, 3);
    }

    /* Spool: each VM's documents in its own area. */
    g_assert_cmpuint(helper_load(a, "printer", NULL, NULL), ==, VMAUG_S_OK);
    g_assert_cmpuint(helper_load(b, "printer", NULL, NULL), ==, VMAUG_S_OK);
    job_a = invoke_text(a, "printer", "print", "A\nfrom a", VMAUG_S_OK);
    job_b = invoke_text(b, "printer", "print", "B\nfrom b", VMAUG_S_OK);
    file_a = spool_file(f, job_a);
    file_b = spool_file(f, job_b);
    g_clear_pointer(&text, g_free);
    g_assert_true(g_file_get_contents(file_a, &text, NULL, NULL));
    g_assert_cmpstr(text, ==, "from a");
    g_assert_cmpstr(area_a, ==, area_of(file_a, 2));
    area_b = area_of(file_b, 2);
    g_assert_cmpstr(area_a, !=, area_b);

    /* Registrations: a's are not b's, and b's start loads none of them. */
    helper_ref(&reg.ref, "echo", NULL);
    reg.flags = GUINT32_TO_LE(VMAUG_REG_F_REQUIRED);
    {
        g_auto(HelperReply) r = { 0 };

        g_assert_true(helper_client_call(a, VMAUG_OP_REGISTER, &reg,
                                         sizeof(reg), NULL, 0, &r));
        assert_reply(&r, VMAUG_S_OK, NULL);
    }
    g_assert_cmpuint(count_regs(a), ==, 1);
    g_assert_cmpuint(count_regs(b), ==, 0);
    {
        g_autoptr(HelperDone) d = image_start(b);

        g_assert_cmpuint(d->status, ==, VMAUG_S_OK);
        g_assert_cmpstr(d->message, ==, "");
    }
    g_assert_cmpuint(helper_invoke(b, "echo", "echo", "x", 1, NULL), ==,
                     VMAUG_S_NOT_FOUND);
    {
        g_autoptr(HelperDone) d = image_start(a);

        g_assert_cmpuint(d->status, ==, VMAUG_S_OK);
    }
    g_assert_cmpuint(helper_invoke(a, "echo", "echo", "x", 1, NULL), ==,
                     VMAUG_S_OK);

    /* Uploads: b can neither see, feed, commit nor abort a's. */
    package_sha(newer, sha, NULL);
    {
        g_auto(HelperReply) r = { 0 };

        begin(a, g_bytes_get_size(newer), sha, "printer", "1.1", &r, &id,
              NULL);
        assert_reply(&r, VMAUG_S_OK, NULL);
        helper_reply_clear(&r);
        g_assert_true(chunk(b, id, 0, "x", 1, &r));
        assert_reply(&r, VMAUG_S_NOT_FOUND, "no upload");
        helper_reply_clear(&r);
        g_assert_true(upload_ref_call(b, VMAUG_OP_UPLOAD_COMMIT, id, &r));
        assert_reply(&r, VMAUG_S_NOT_FOUND, "no upload");
        helper_reply_clear(&r);
        g_assert_true(upload_ref_call(b, VMAUG_OP_UPLOAD_ABORT, id, &r));
        assert_reply(&r, VMAUG_S_NOT_FOUND, "no upload");
        helper_reply_clear(&r);
        begin(a, g_bytes_get_size(newer), sha, "printer", "1.1", &r, &id2,
              &off);
        assert_reply(&r, VMAUG_S_OK, NULL);
        g_assert_cmpuint(id2, ==, id);
        g_assert_cmpuint(off, ==, 0);
    }
    send_all(a, id, newer, 0);
    {
        g_auto(HelperReply) r = { 0 };

        g_assert_true(upload_ref_call(a, VMAUG_OP_UPLOAD_COMMIT, id, &r));
        assert_reply(&r, VMAUG_S_OK, NULL);
    }

    /* b goes: nobody can name its area again, so it goes too, but for
     * what it printed. */
    g_clear_pointer(&b, helper_client_free);
    for (guint i = 0; i < 100 && count_entries(area_b) > 1; i++) {
        g_usleep(50000);
    }
    g_assert_cmpuint(count_entries(area_b), ==, 1);
    g_assert_true(g_file_test(file_b, G_FILE_TEST_IS_REGULAR));
    g_assert_true(g_file_test(area_a, G_FILE_TEST_IS_DIR));
}

/* A VM naming an image has that image's area, across connections; one
 * image is one VM at a time. */
static void test_image_areas(Fixture *f, gconstpointer data)
{
    g_autofree gchar *one = g_build_filename(f->images, "one.qcow2", NULL);
    g_autofree gchar *two = g_build_filename(f->images, "two.qcow2", NULL);
    g_autofree gchar *real_dir = realpath(f->images, NULL);
    g_autofree gchar *real_one = g_build_filename(real_dir, "one.qcow2",
                                                  NULL);
    g_autofree gchar *id = vmaug_vm_area_id_for_image(real_one);
    g_autofree gchar *info = g_build_filename(f->store, "vms", id, "image",
                                              NULL);
    g_autofree gchar *text = NULL;
    g_autoptr(HelperClient) c1 = NULL;
    g_autoptr(HelperClient) c2 = NULL;
    g_autoptr(HelperClient) c3 = NULL;
    g_autoptr(HelperClient) up = NULL;

    fixture_start(f, NULL);
    up = helper_client_connect(f->socket, NULL);
    upload_module(f, up, "kv", "1.0");
    c1 = helper_client_connect_image(f->socket, NULL, one);
    g_assert_cmpuint(helper_load(c1, "kv", NULL, NULL), ==, VMAUG_S_OK);
    g_free(invoke_text(c1, "kv", "set", "secret=of-one", VMAUG_S_OK));
    /* Another device naming the same image is refused... */
    c2 = helper_client_connect_image(f->socket, NULL, one);
    g_assert_true(helper_client_closed(c2, 5000));
    /* ...another image is another VM... */
    c3 = helper_client_connect_image(f->socket, NULL, two);
    g_assert_cmpuint(helper_load(c3, "kv", NULL, NULL), ==, VMAUG_S_OK);
    g_free(invoke_text(c3, "kv", "get", "secret", VMAUG_S_NOT_FOUND));
    /* ...and the image's next start finds its own. */
    g_clear_pointer(&c1, helper_client_free);
    c1 = helper_client_connect_image(f->socket, NULL, one);
    g_assert_cmpuint(helper_load(c1, "kv", NULL, NULL), ==, VMAUG_S_OK);
    g_free(text);
    text = invoke_text(c1, "kv", "get", "secret", VMAUG_S_OK);
    g_assert_cmpstr(text, ==, "of-one");
    /* The host owner finds the image an area belongs to. */
    g_clear_pointer(&text, g_free);
    g_assert_true(g_file_get_contents(info, &text, NULL, NULL));
    g_assert_cmpstr(g_strchomp(text), ==, real_one);
}

/* ---- Configuration through the module ---- */

static JsonObject *read_json(const gchar *path)
{
    g_autoptr(JsonParser) p = json_parser_new();
    g_autoptr(GError) error = NULL;

    json_parser_load_from_file(p, path, &error);
    g_assert_no_error(error);
    g_assert_true(JSON_NODE_HOLDS_OBJECT(json_parser_get_root(p)));
    return json_object_ref(json_node_get_object(json_parser_get_root(p)));
}

/* The value of @key in a configuration file (base64), or NULL. */
static gchar *config_file_value(const gchar *path, const gchar *key)
{
    g_autoptr(JsonObject) o = read_json(path);
    g_autofree guchar *raw = NULL;
    gsize len;

    if (!json_object_has_member(o, key)) {
        return NULL;
    }
    raw = g_base64_decode(json_object_get_string_member(o, key), &len);
    return g_strndup((const gchar *)raw, len);
}

/* The guest registers @name for image-start (@reg, for the test to
 * reuse). */
static void guest_register(HelperClient *c, struct vmaug_registration *reg,
                           const gchar *name)
{
    g_auto(HelperReply) r = { 0 };

    memset(reg, 0, sizeof(*reg));
    helper_ref(&reg->ref, name, NULL);
    reg->events = GUINT32_TO_LE(VMAUG_EVENT_MASK(VMAUG_EVENT_IMAGE_START));
    g_assert_true(helper_client_call(c, VMAUG_OP_REGISTER, reg, sizeof(*reg),
                                     NULL, 0, &r));
    assert_reply(&r, VMAUG_S_OK, NULL);
}

static void test_config_module(Fixture *f, gconstpointer data)
{
    g_autoptr(HelperClient) c = NULL;
    g_autofree gchar *real_dir = realpath(f->images, NULL);
    g_autofree gchar *real = g_build_filename(real_dir, "disk.qcow2", NULL);
    g_autofree gchar *id = vmaug_vm_area_id_for_image(real);
    g_autofree gchar *own = g_build_filename(f->store, "vms", id, "config",
                                             "config.json", NULL);
    g_autofree gchar *guest = g_build_filename(f->store, "vms", id, "config",
                                               "config.guest.json", NULL);
    g_autofree gchar *v = NULL;
    struct vmaug_registration reg = { 0 };

    fixture_start(f, NULL);
    c = helper_client_connect_image(f->socket, NULL, f->image);
    upload_module(f, c, "config", "1.0");
    upload_module(f, c, "kv", "1.0");
    {
        g_auto(HelperReply) r = { 0 };

        /* Neither loaded nor registered yet: nothing to configure. */
        config_call(c, VMAUG_OP_CONFIG_SET, "config", "applied.memory-mb",
                    "999999999", &r);
        assert_reply(&r, VMAUG_S_NOT_FOUND, "neither loaded nor registered");
        helper_reply_clear(&r);
        config_call(c, VMAUG_OP_CONFIG_SET, "invented", "k", "v", &r);
        assert_reply(&r, VMAUG_S_NOT_FOUND, "neither loaded nor registered");
    }
    g_assert_false(g_file_test(own, G_FILE_TEST_EXISTS));

    guest_register(c, &reg, "config");
    {
        g_auto(HelperReply) r = { 0 };

        /* Registered: the guest may set, into its own namespace. */
        g_assert_cmpuint(config_call(c, VMAUG_OP_CONFIG_SET, "config",
                                     "applied.memory-mb", "999999999", &r),
                         ==, VMAUG_S_OK);
        helper_reply_clear(&r);
        g_assert_cmpuint(config_call(c, VMAUG_OP_CONFIG_SET, "config",
                                     "pending.cpus", "100000", &r), ==,
                         VMAUG_S_OK);
    }
    g_assert_cmpuint(helper_load(c, "config", NULL, NULL), ==, VMAUG_S_OK);
    /* Through the module's own validation. */
    g_free(invoke_text(c, "config", "set", "memory-mb=2048", VMAUG_S_OK));
    g_free(invoke_text(c, "config", "set", "cpus=100000", VMAUG_S_INVALID));
    /* A pending value the module never validated (an older helper let the
     * guest write the module's own file) is not applied either. */
    {
        g_autoptr(JsonObject) o = read_json(own);
        g_autoptr(JsonNode) root = json_node_new(JSON_NODE_OBJECT);
        g_autofree gchar *b64 = g_base64_encode((const guchar *)"100000", 6);
        g_autofree gchar *text = NULL;

        json_object_set_string_member(o, "pending.cpus", b64);
        json_node_set_object(root, o);
        text = json_to_string(root, FALSE);
        g_assert_true(g_file_set_contents(own, text, -1, NULL));
    }

    /* The image starts again: pending settings are applied. */
    g_clear_pointer(&c, helper_client_free);
    c = helper_client_connect_image(f->socket, NULL, f->image);
    {
        g_autoptr(HelperDone) d = image_start(c);

        g_assert_cmpuint(d->status, ==, VMAUG_S_OK);
    }
    /* What the host application reads holds validated values only. */
    v = config_file_value(own, "applied.memory-mb");
    g_assert_cmpstr(v, ==, "2048");
    g_clear_pointer(&v, g_free);
    v = config_file_value(own, "applied.cpus");
    g_assert_null(v);
    v = config_file_value(guest, "applied.memory-mb");
    g_assert_cmpstr(v, ==, "999999999");
    g_clear_pointer(&v, g_free);
    v = invoke_text(c, "config", "get", "memory-mb", VMAUG_S_OK);
    g_assert_cmpstr(v, ==, "2048");
    g_clear_pointer(&v, g_free);
    g_free(invoke_text(c, "config", "get", "cpus", VMAUG_S_NOT_FOUND));
    {
        g_auto(HelperReply) r = { 0 };

        /* The guest reads the module's value before its own. */
        g_assert_cmpuint(config_call(c, VMAUG_OP_CONFIG_GET, "config",
                                     "applied.memory-mb", NULL, &r), ==,
                         VMAUG_S_OK);
        g_assert_cmpmem(g_bytes_get_data(r.data, NULL),
                        g_bytes_get_size(r.data), "2048", 4);
    }
    /* A module cannot write the guest's namespace either. */
    g_assert_cmpuint(helper_load(c, "kv", NULL, NULL), ==, VMAUG_S_OK);
    g_free(invoke_text(c, "kv", "set", "guest.paths=/", VMAUG_S_INVALID));
    {
        g_auto(HelperReply) r = { 0 };

        g_assert_cmpuint(config_call(c, VMAUG_OP_CONFIG_SET, "kv", "size",
                                     "XL", &r), ==, VMAUG_S_OK);
    }
    g_clear_pointer(&v, g_free);
    v = invoke_text(c, "kv", "get", "size", VMAUG_S_OK);
    g_assert_cmpstr(v, ==, "XL");
}

/*
 * The host owner's configuration, kept with a pinned registration: the
 * module reads it in place of the guest's value, the guest can set
 * neither it nor the registration, and the module cannot write it; keys
 * the host owner did not set stay the guest's.
 */
static void test_config_host(Fixture *f, gconstpointer data)
{
    g_autoptr(HelperClient) c = NULL;
    g_autoptr(VmaugRegSet) set = NULL;
    g_autoptr(GError) error = NULL;
    g_autofree gchar *v = NULL;
    struct vmaug_registration reg = { 0 };

    fixture_start(f, NULL);
    c = helper_client_connect_image(f->socket, NULL, f->image);
    upload_module(f, c, "kv", "1.0");
    guest_register(c, &reg, "kv");
    {
        g_auto(HelperReply) r = { 0 };

        g_assert_cmpuint(config_call(c, VMAUG_OP_CONFIG_SET, "kv", "size",
                                     "XL", &r), ==, VMAUG_S_OK);
    }

    /* What vmaugment-admin register --pinned --set size=S does; while it
     * holds the sidecar, the guest's change waits its turn. */
    set = vmaug_reg_set_load_for_update(f->image, NULL, 0, &error);
    g_assert_no_error(error);
    {
        g_auto(HelperReply) r = { 0 };

        g_assert_true(helper_client_call(c, VMAUG_OP_UNREGISTER, &reg.ref,
                                         sizeof(reg.ref), NULL, 0, &r));
        assert_reply(&r, VMAUG_S_BUSY, "being changed");
    }
    g_assert_true(vmaug_reg_set_pin(set, "kv", "", 0, 0, &error));
    g_assert_true(vmaug_reg_set_config(set, "kv", "size", "S", &error));
    g_assert_true(vmaug_reg_set_save(set, &error));
    g_clear_pointer(&set, vmaug_reg_set_free);

    {
        g_auto(HelperReply) r = { 0 };

        g_assert_cmpuint(config_call(c, VMAUG_OP_CONFIG_SET, "kv", "size",
                                     "M", &r), ==, VMAUG_S_DENIED);
        helper_reply_clear(&r);
        g_assert_cmpuint(config_call(c, VMAUG_OP_CONFIG_SET, "kv", "color",
                                     "red", &r), ==, VMAUG_S_OK);
        helper_reply_clear(&r);
        g_assert_true(helper_client_call(c, VMAUG_OP_UNREGISTER, &reg.ref,
                                         sizeof(reg.ref), NULL, 0, &r));
        assert_reply(&r, VMAUG_S_DENIED, "kv is pinned by the host owner");
        helper_reply_clear(&r);
        /* The guest reads the values in force: the host owner's where
         * there is one. */
        g_assert_cmpuint(config_call(c, VMAUG_OP_CONFIG_GET, "kv", "size",
                                     NULL, &r), ==, VMAUG_S_OK);
        g_assert_cmpmem(g_bytes_get_data(r.data, NULL),
                        g_bytes_get_size(r.data), "S", 1);
        helper_reply_clear(&r);
        g_assert_cmpuint(config_call(c, VMAUG_OP_CONFIG_GET, "kv", "color",
                                     NULL, &r), ==, VMAUG_S_OK);
        g_assert_cmpmem(g_bytes_get_data(r.data, NULL),
                        g_bytes_get_size(r.data), "red", 3);
        helper_reply_clear(&r);

        /* QMP's vmaugment-register and -unregister (tag bit 63) are
         * refused alike: QEMU runs beside the guest. */
        vmaug_link_client_set_host_owner(c->link, TRUE);
        reg.flags = GUINT32_TO_LE(VMAUG_REG_F_REQUIRED);
        g_assert_true(helper_client_call(c, VMAUG_OP_REGISTER, &reg,
                                         sizeof(reg), NULL, 0, &r));
        assert_reply(&r, VMAUG_S_DENIED, "kv is pinned by the host owner");
        helper_reply_clear(&r);
        g_assert_true(helper_client_call(c, VMAUG_OP_UNREGISTER, &reg.ref,
                                         sizeof(reg.ref), NULL, 0, &r));
        assert_reply(&r, VMAUG_S_DENIED, "kv is pinned by the host owner");
        vmaug_link_client_set_host_owner(c->link, FALSE);
    }
    set = vmaug_reg_set_load(f->image, NULL, &error);
    g_assert_no_error(error);
    g_assert_true(vmaug_reg_set_find(set, "kv")->pinned);
    g_assert_cmpuint(vmaug_reg_set_find(set, "kv")->flags, ==, 0);
    g_clear_pointer(&set, vmaug_reg_set_free);
    g_assert_cmpuint(helper_load(c, "kv", NULL, NULL), ==, VMAUG_S_OK);
    /* kv reads "guest.size": the host owner's value, not the guest's. */
    v = invoke_text(c, "kv", "get", "size", VMAUG_S_OK);
    g_assert_cmpstr(v, ==, "S");
    g_clear_pointer(&v, g_free);
    v = invoke_text(c, "kv", "get", "host.size", VMAUG_S_OK);
    g_assert_cmpstr(v, ==, "S");
    g_clear_pointer(&v, g_free);
    v = invoke_text(c, "kv", "get", "color", VMAUG_S_OK);
    g_assert_cmpstr(v, ==, "red");
    g_free(invoke_text(c, "kv", "get", "host.color", VMAUG_S_NOT_FOUND));
    /* Nor can the module write the host owner's namespace. */
    g_free(invoke_text(c, "kv", "set", "host.size=XL", VMAUG_S_INVALID));
    v = invoke_text(c, "kv", "get", "host.size", VMAUG_S_OK);
    g_assert_cmpstr(v, ==, "S");
}

/* ---- Quotas ---- */

static void test_quota_config(Fixture *f, gconstpointer data)
{
    static const gchar *const args[] = { "--vm-config-bytes", "8192", NULL };
    g_autoptr(HelperClient) c = NULL;
    g_autoptr(HelperClient) other = NULL;
    g_autofree gchar *value = g_strnfill(1000, 'v');
    g_autofree gchar *big = g_strconcat("big=", value, NULL);
    g_autoptr(GPtrArray) areas = NULL;
    g_autofree gchar *dir = NULL;
    guint ok = 0;

    fixture_start(f, args);
    c = helper_client_connect(f->socket, NULL);
    upload_module(f, c, "kv", "1.0");
    g_assert_cmpuint(helper_load(c, "kv", NULL, NULL), ==, VMAUG_S_OK);
    for (guint i = 0; i < 20; i++) {
        g_auto(HelperReply) r = { 0 };
        g_autofree gchar *key = g_strdup_printf("k%u", i);

        if (config_call(c, VMAUG_OP_CONFIG_SET, "kv", key, value, &r) !=
            VMAUG_S_OK) {
            assert_reply(&r, VMAUG_S_TOO_BIG, "more than the 8192 allowed");
            break;
        }
        ok++;
    }
    g_assert_cmpuint(ok, >=, 4);
    g_assert_cmpuint(ok, <, 20);
    /* The module's own writes count against the same quota. */
    g_free(invoke_text(c, "kv", "set", big, VMAUG_S_TOO_BIG));
    areas = areas_with(f, "config/kv.guest.json");
    g_assert_cmpuint(areas->len, ==, 1);
    dir = g_build_filename(g_ptr_array_index(areas, 0), "config", NULL);
    g_assert_cmpuint(dir_bytes(dir), <=, 8192);
    /* Another VM has a quota of its own. */
    other = helper_client_connect(f->socket, NULL);
    g_assert_cmpuint(helper_load(other, "kv", NULL, NULL), ==, VMAUG_S_OK);
    {
        g_auto(HelperReply) r = { 0 };

        g_assert_cmpuint(config_call(other, VMAUG_OP_CONFIG_SET, "kv", "k0",
                                     value, &r), ==, VMAUG_S_OK);
    }
    g_free(invoke_text(other, "kv", "set", big, VMAUG_S_OK));
}

static void test_quota_spool_state(Fixture *f, gconstpointer data)
{
    static const gchar *const args[] = {
        "--vm-spool-bytes", "4096", "--vm-state-bytes", "4096", NULL
    };
    g_autoptr(HelperClient) c = NULL;
    g_autofree gchar *doc = g_strnfill(3000, 'd');
    g_autofree gchar *print = g_strconcat("Title\n", doc, NULL);
    g_autofree gchar *state = g_strnfill(6000, 's');
    g_autofree gchar *job = NULL;
    g_autofree gchar *file = NULL;
    g_autofree gchar *spool = NULL;
    g_autoptr(GPtrArray) areas = NULL;
    g_autofree gchar *notes = NULL;
    struct stat st;

    fixture_start(f, args);
    c = helper_client_connect(f->socket, NULL);
    upload_module(f, c, "printer", "1.0");
    upload_module(f, c, "hostile", "1.0");
    g_assert_cmpuint(helper_load(c, "printer", NULL, NULL), ==, VMAUG_S_OK);
    job = invoke_text(c, "printer", "print", print, VMAUG_S_OK);
    g_free(invoke_text(c, "printer", "print", print, VMAUG_S_TOO_BIG));
    file = spool_file(f, job);
    spool = g_path_get_dirname(file);
    g_assert_cmpuint(count_entries(spool), ==, 2);
    g_assert_cmpuint(dir_bytes(spool), <=, 4096);

    /* State: what the module wrote is measured after the call; a full
     * VM gets no file opened for writing. */
    g_assert_cmpuint(helper_load(c, "hostile", NULL, NULL), ==, VMAUG_S_OK);
    g_assert_cmpuint(helper_invoke(c, "hostile", "state", state, 6000, NULL),
                     ==, VMAUG_S_DENIED);
    g_assert_cmpuint(helper_invoke(c, "hostile", "state", "x", 1, NULL), ==,
                     VMAUG_S_IO_ERROR);
    areas = areas_with(f, "state/hostile/notes.txt");
    g_assert_cmpuint(areas->len, ==, 1);
    notes = g_build_filename(g_ptr_array_index(areas, 0), "state", "hostile",
                             "notes.txt", NULL);
    g_assert_cmpint(stat(notes, &st), ==, 0);
    g_assert_cmpint(st.st_size, ==, 6000);
}

/* One VM holding every upload slot it has, and announcing them again and
 * again, does not keep another from uploading. */
static void test_upload_slots(Fixture *f, gconstpointer data)
{
    g_autoptr(HelperClient) a = NULL;
    g_autoptr(HelperClient) b = NULL;
    g_autoptr(GBytes) pkg = test_module_package(f->keys->admin, "echo",
                                                "1.0");
    guint8 sha[32] = { 0 };
    guint held = 0;

    fixture_start(f, NULL);
    a = helper_client_connect(f->socket, NULL);
    b = helper_client_connect(f->socket, NULL);
    for (guint i = 0; i < 64; i++) {
        g_auto(HelperReply) r = { 0 };
        g_autofree gchar *version = g_strdup_printf("7.%u", i);

        sha[0] = i + 1;
        begin(a, 100, sha, "echo", version, &r, NULL, NULL);
        if (r.status != VMAUG_S_OK) {
            assert_reply(&r, VMAUG_S_BUSY, "unfinished uploads, the most");
            break;
        }
        held++;
    }
    g_assert_cmpuint(held, >=, 1);
    g_assert_cmpuint(held, <, 64);
    /* Announcing them again is no progress, and takes nothing from b. */
    for (guint round = 0; round < 20; round++) {
        for (guint i = 0; i < held; i++) {
            g_auto(HelperReply) r = { 0 };
            g_autofree gchar *version = g_strdup_printf("7.%u", i);

            sha[0] = i + 1;
            begin(a, 100, sha, "echo", version, &r, NULL, NULL);
            assert_reply(&r, VMAUG_S_OK, NULL);
        }
    }
    g_assert_cmpuint(helper_upload(b, pkg, "echo", "1.0", 64 * 1024), ==,
                     VMAUG_S_OK);
}

/* A request that must be answered in far less than one sync takes. */
#define SLOW_SYNC_MS        1000
#define ANSWER_WITHIN_MS    600
/* A VM's durable writes that wait beside the one under way
 * (docs/protocol.rst, "Configuration"). */
#define WRITES_WAITING      32

/* The helper on a disk whose every sync takes SLOW_SYNC_MS. */
static void fixture_start_slow_disk(Fixture *f)
{
    g_autofree gchar *delay = g_strdup_printf("%d", SLOW_SYNC_MS);

    g_setenv("LD_PRELOAD", test_env("VMAUG_TEST_SLOW_SYNC_SO"), TRUE);
    g_setenv("VMAUG_TEST_SYNC_DELAY_MS", delay, TRUE);
    fixture_start(f, NULL);
    g_unsetenv("LD_PRELOAD");
    g_unsetenv("VMAUG_TEST_SYNC_DELAY_MS");
}

/* Upload all of @pkg and send its COMMIT without waiting: its tag. */
static guint64 upload_and_commit(HelperClient *c, GBytes *pkg,
                                 const gchar *name, const gchar *version,
                                 guint64 *id)
{
    struct vmaug_upload_ref ref = { 0 };
    g_auto(HelperReply) r = { 0 };
    guint8 sha[32];

    package_sha(pkg, sha, NULL);
    begin(c, g_bytes_get_size(pkg), sha, name, version, &r, id, NULL);
    assert_reply(&r, VMAUG_S_OK, NULL);
    send_all(c, *id, pkg, 0);
    ref.upload_id = GUINT64_TO_LE(*id);
    return vmaug_link_client_request(c->link, VMAUG_OP_UPLOAD_COMMIT, &ref,
                                     sizeof(ref), NULL, 0, NULL);
}

/* A QUERY of @name with the tag of a request in flight (a hostile
 * device): BUSY, and the request in flight keeps its tag. */
static void query_with_tag(HelperClient *c, guint64 tag, const gchar *name)
{
    struct {
        struct virtio_vmaugment_req req;
        struct vmaug_module_ref ref;
    } __attribute__((packed)) msg = {
        .req = {
            .opcode = GUINT16_TO_LE(VMAUG_OP_QUERY),
            .len = GUINT32_TO_LE(sizeof(struct vmaug_module_ref)),
            .id = GUINT64_TO_LE(tag),
        },
    };
    g_auto(HelperReply) r = { 0 };

    helper_ref(&msg.ref, name, NULL);
    helper_client_send_msg(c, VMAUG_HOST_REQUEST, tag, &msg, sizeof(msg));
    g_assert_true(helper_client_wait_response(c, tag, &r));
    g_assert_cmpuint(r.status, ==, VMAUG_S_BUSY);
}

/* A QUERY answered (whatever it says) within ANSWER_WITHIN_MS. */
static guint16 query_quickly(HelperClient *c, const gchar *name)
{
    gint64 t0 = g_get_monotonic_time();
    guint16 st = helper_query(c, name, NULL, NULL);
    gint64 ms = (g_get_monotonic_time() - t0) / 1000;

    g_test_message("QUERY %s: status %u after %" G_GINT64_FORMAT " ms", name,
                   st, ms);
    g_assert_cmpint(ms, <, ANSWER_WITHIN_MS);
    return st;
}

/*
 * On a host whose disk makes every sync take a second (other writers
 * filling the journal), one VM's commit (its hashing, verifying and the
 * syncs of its object, references and audit record) keeps no request
 * waiting: another VM's, or the committing VM's own.  Its upload is BUSY
 * to its owner until the commit ends, and so is its tag, also once the
 * device gave up on it; a VM that goes away mid-commit leaves its package
 * stored and the helper serving.
 */
static void test_slow_commit(Fixture *f, gconstpointer data)
{
    g_autoptr(HelperClient) a = NULL;
    g_autoptr(HelperClient) b = NULL;
    HelperClient *c;
    g_autoptr(GBytes) echo = test_module_package(f->keys->admin, "echo",
                                                 "1.0");
    g_autoptr(GBytes) kv = test_module_package(f->keys->admin, "kv", "1.0");
    g_autofree gchar *audit = audit_path(f);
    guint64 id_a = 0, id_c = 0, tag;
    guint8 sha[32];
    gint64 deadline;

    fixture_start_slow_disk(f);
    a = helper_client_connect(f->socket, NULL);
    b = helper_client_connect(f->socket, NULL);
    c = helper_client_connect(f->socket, NULL);

    tag = upload_and_commit(a, echo, "echo", "1.0", &id_a);
    g_assert_cmpuint(tag, !=, 0);
    /* c commits too, and is gone before its commit ends. */
    g_assert_cmpuint(upload_and_commit(c, kv, "kv", "1.0", &id_c), !=, 0);
    helper_client_free(c);

    /* Served meanwhile: another VM, and the committing one. */
    query_quickly(b, "echo");
    query_quickly(a, "kv");
    {
        g_auto(HelperReply) r = { 0 };
        g_autofree guint8 *byte = g_malloc0(1);

        g_assert_true(upload_ref_call(a, VMAUG_OP_UPLOAD_ABORT, id_a, &r));
        assert_reply(&r, VMAUG_S_BUSY, "being committed");
        helper_reply_clear(&r);
        g_assert_true(chunk(a, id_a, 0, byte, 1, &r));
        assert_reply(&r, VMAUG_S_BUSY, "being committed");
        helper_reply_clear(&r);
        package_sha(echo, sha, NULL);
        begin(a, g_bytes_get_size(echo), sha, "echo", "1.0", &r, NULL, NULL);
        assert_reply(&r, VMAUG_S_BUSY, "being committed");
    }
    /* The commit's tag, reused: BUSY, also once the device cancelled it;
     * the commit's answer then reaches nobody. */
    query_with_tag(a, tag, "kv");
    helper_client_send_msg(a, VMAUG_HOST_CANCEL, tag, NULL, 0);
    query_with_tag(a, tag, "kv");
    /* Both commits end (c's, queued behind a's, without c): the packages
     * are stored, then their records synced. */
    deadline = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;
    while (helper_query(b, "kv", NULL, NULL) != VMAUG_S_OK ||
           helper_query(b, "echo", NULL, NULL) != VMAUG_S_OK ||
           test_count_lines(audit, "\"upload-commit\"") < 2) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(100 * 1000);
    }
    {
        guint16 status;
        g_autoptr(GBytes) late = NULL;

        g_assert_false(vmaug_link_client_wait_response(a->link, tag, 1000,
                                                       &status, &late,
                                                       NULL));
    }
    g_assert_cmpuint(test_count_lines(audit, "\"upload-commit\""), ==, 2);
    g_assert_cmpuint(test_count_lines(audit, "\"refuse\""), ==, 0);
}

/* A CONFIG_SET of @value sent without waiting for its answer: its tag. */
static guint64 config_set_send(HelperClient *c, const gchar *module,
                               const gchar *key, const gchar *value)
{
    struct vmaug_config_ref cref = { 0 };

    g_strlcpy((gchar *)cref.module, module, sizeof(cref.module));
    g_strlcpy((gchar *)cref.key, key, sizeof(cref.key));
    return vmaug_link_client_request(c->link, VMAUG_OP_CONFIG_SET, &cref,
                                     sizeof(cref), value, strlen(value),
                                     NULL);
}

/* The answer to @tag: OK, after at least a sync (@slow) or not. */
static void answered_ok(HelperClient *c, guint64 tag, gint64 since,
                        gboolean slow)
{
    g_auto(HelperReply) r = { 0 };

    g_assert_cmpuint(tag, !=, 0);
    g_assert_true(helper_client_wait_response(c, tag, &r));
    assert_reply(&r, VMAUG_S_OK, NULL);
    if (slow) {
        g_assert_cmpint(g_get_monotonic_time() - since, >=,
                        SLOW_SYNC_MS * 1000);
    }
}

/* The answer to @tag, @status saying @needle, within ANSWER_WITHIN_MS. */
static void answered_quickly(HelperClient *c, guint64 tag, guint16 status,
                             const gchar *needle)
{
    g_auto(HelperReply) r = { 0 };
    gint64 t0 = g_get_monotonic_time();

    g_assert_cmpuint(tag, !=, 0);
    g_assert_true(helper_client_wait_response(c, tag, &r));
    g_assert_cmpint((g_get_monotonic_time() - t0) / 1000, <,
                    ANSWER_WITHIN_MS);
    assert_reply(&r, status, needle);
}

/*
 * A VM's durable writes (REGISTER, CONFIG_SET, UNREGISTER: a sync of a
 * file and of its directory each) on a disk whose syncs take a second
 * keep no request waiting, another VM's or the writing VM's own; the
 * VM's writes are answered once written, in the order they came.
 */
static void test_slow_writes(Fixture *f, gconstpointer data)
{
    g_autoptr(HelperClient) a = NULL;
    g_autoptr(HelperClient) b = NULL;
    struct vmaug_registration reg = { 0 };
    guint64 first, second;
    gint64 t0;

    fixture_start_slow_disk(f);
    a = helper_client_connect(f->socket, NULL);
    b = helper_client_connect(f->socket, NULL);

    helper_ref(&reg.ref, "echo", NULL);
    t0 = g_get_monotonic_time();
    first = vmaug_link_client_request(a->link, VMAUG_OP_REGISTER, &reg,
                                      sizeof(reg), NULL, 0, NULL);
    query_quickly(b, "echo");
    query_quickly(a, "echo");
    answered_ok(a, first, t0, TRUE);
    g_assert_cmpuint(count_regs(a), ==, 1);

    /* Two values, one after the other: the second is the one kept. */
    t0 = g_get_monotonic_time();
    first = config_set_send(a, "echo", "greeting", "one");
    second = config_set_send(a, "echo", "greeting", "two");
    query_quickly(b, "echo");
    query_quickly(a, "echo");
    /* Sets that no file could make valid are refused at once, not after
     * the writes ahead of them: an empty key, and a value over the bound
     * (which the protocol's own length check refuses). */
    {
        g_autofree gchar *big = g_strnfill(VMAUG_MAX_CONFIG_VALUE + 1, 'x');
        guint64 bad = config_set_send(a, "echo", "", "x");
        guint64 large = config_set_send(a, "echo", "greeting", big);

        answered_quickly(a, bad, VMAUG_S_INVALID, "invalid module or key");
        answered_quickly(a, large, VMAUG_S_TOO_BIG, "larger than");
    }
    answered_ok(a, first, t0, TRUE);
    answered_ok(a, second, t0, TRUE);
    {
        g_auto(HelperReply) r = { 0 };

        g_assert_cmpuint(config_call(a, VMAUG_OP_CONFIG_GET, "echo",
                                     "greeting", NULL, &r), ==, VMAUG_S_OK);
        g_assert_cmpmem(g_bytes_get_data(r.data, NULL),
                        g_bytes_get_size(r.data), "two", 3);
    }

    t0 = g_get_monotonic_time();
    first = vmaug_link_client_request(a->link, VMAUG_OP_UNREGISTER, &reg.ref,
                                      sizeof(reg.ref), NULL, 0, NULL);
    query_quickly(b, "echo");
    answered_ok(a, first, t0, TRUE);
    g_assert_cmpuint(count_regs(a), ==, 0);

    /* A device that sends more writes than a VM may have waiting: one
     * under way, WRITES_WAITING waiting (not answered yet), the rest BUSY
     * at once. */
    {
        guint64 tags[WRITES_WAITING + 3];

        for (guint i = 0; i < G_N_ELEMENTS(tags); i++) {
            tags[i] = vmaug_link_client_request(b->link, VMAUG_OP_REGISTER,
                                                &reg, sizeof(reg), NULL, 0,
                                                NULL);
        }
        for (guint i = WRITES_WAITING + 1; i < G_N_ELEMENTS(tags); i++) {
            g_auto(HelperReply) r = { 0 };

            g_assert_true(helper_client_wait_response(b, tags[i], &r));
            assert_reply(&r, VMAUG_S_BUSY, "too many writes");
        }
        for (guint i = 1; i <= WRITES_WAITING; i++) {
            guint16 status;
            g_autoptr(GBytes) none = NULL;

            g_assert_false(vmaug_link_client_wait_response(
                b->link, tags[i], 10, &status, &none, NULL));
        }
    }
    query_quickly(a, "echo");
}

static gchar *config_value(HelperClient *c, const gchar *module,
                           const gchar *key)
{
    g_auto(HelperReply) r = { 0 };

    g_assert_cmpuint(config_call(c, VMAUG_OP_CONFIG_GET, module, key, NULL,
                                 &r), ==, VMAUG_S_OK);
    return g_strndup(g_bytes_get_data(r.data, NULL),
                     g_bytes_get_size(r.data));
}

/*
 * The same, for VMs of images: a REGISTER and a CONFIG_SET sent together
 * both written; two images of one directory (whose registrations share a
 * lock) registering at once, neither BUSY; a device that leaves while
 * its write runs, and the next device for its image, whose writes wait
 * behind it (a migration, a restarted QEMU); a write cancelled before it
 * began is not written.
 */
static void test_slow_writes_images(Fixture *f, gconstpointer data)
{
    g_autofree gchar *one = g_build_filename(f->images, "one.qcow2", NULL);
    g_autofree gchar *two = g_build_filename(f->images, "two.qcow2", NULL);
    g_autofree gchar *value = NULL;
    g_autoptr(HelperClient) c1 = NULL;
    g_autoptr(HelperClient) c2 = NULL;
    g_autoptr(HelperClient) c3 = NULL;
    struct vmaug_registration reg = { 0 };
    guint64 first, second, third;
    gint64 t0;

    fixture_start_slow_disk(f);
    c1 = helper_client_connect_image(f->socket, NULL, one);
    c3 = helper_client_connect_image(f->socket, NULL, two);
    helper_ref(&reg.ref, "echo", NULL);

    t0 = g_get_monotonic_time();
    first = vmaug_link_client_request(c1->link, VMAUG_OP_REGISTER, &reg,
                                      sizeof(reg), NULL, 0, NULL);
    second = config_set_send(c1, "echo", "greeting", "one");
    third = vmaug_link_client_request(c3->link, VMAUG_OP_REGISTER, &reg,
                                      sizeof(reg), NULL, 0, NULL);
    query_quickly(c3, "echo");
    answered_ok(c1, first, t0, TRUE);
    answered_ok(c1, second, t0, TRUE);
    answered_ok(c3, third, t0, TRUE);
    value = config_value(c1, "echo", "greeting");
    g_assert_cmpstr(value, ==, "one");

    /* c1 leaves with a write under way and one waiting; the next device
     * for its image writes the same file: after c1's write, which it
     * does not undo. */
    t0 = g_get_monotonic_time();
    config_set_send(c1, "echo", "colour", "red");
    config_set_send(c1, "echo", "greeting", "void");
    g_usleep(200 * 1000);
    g_clear_pointer(&c1, helper_client_free);
    c2 = NULL;
    for (guint i = 0; i < 100 && c2 == NULL; i++) {
        c2 = helper_client_connect_image(f->socket, NULL, one);
        if (helper_client_closed(c2, 100)) {
            g_clear_pointer(&c2, helper_client_free);
        }
    }
    g_assert_nonnull(c2);
    first = config_set_send(c2, "echo", "greeting", "two");
    /* Cancelled while it waits: never written, never answered. */
    second = config_set_send(c2, "echo", "greeting", "cancelled");
    helper_client_send_msg(c2, VMAUG_HOST_CANCEL, second, NULL, 0);
    query_quickly(c2, "echo");
    answered_ok(c2, first, t0, TRUE);
    {
        guint16 status;
        g_autoptr(GBytes) late = NULL;

        g_assert_false(vmaug_link_client_wait_response(
            c2->link, second, 2 * SLOW_SYNC_MS, &status, &late, NULL));
    }
    g_clear_pointer(&value, g_free);
    value = config_value(c2, "echo", "greeting");
    g_assert_cmpstr(value, ==, "two");
    g_clear_pointer(&value, g_free);
    value = config_value(c2, "echo", "colour");
    g_assert_cmpstr(value, ==, "red");
    g_assert_cmpuint(count_regs(c2), ==, 1);
}

static void test_quota_uploads(Fixture *f, gconstpointer data)
{
    /* At least one package of the policy's largest size (64 MiB) always
     * fits. */
    static const gchar *const args[] = { "--vm-upload-bytes", "1", NULL };
    g_autoptr(HelperClient) a = NULL;
    g_autoptr(HelperClient) b = NULL;
    guint8 sha[32] = { 0 };

    fixture_start(f, args);
    a = helper_client_connect(f->socket, NULL);
    b = helper_client_connect(f->socket, NULL);
    {
        g_auto(HelperReply) r = { 0 };

        sha[0] = 1;
        begin(a, 40 << 20, sha, "echo", "5.1", &r, NULL, NULL);
        assert_reply(&r, VMAUG_S_OK, NULL);
        helper_reply_clear(&r);
        sha[0] = 2;
        begin(a, 40 << 20, sha, "echo", "5.2", &r, NULL, NULL);
        assert_reply(&r, VMAUG_S_TOO_BIG, "more than the 67108864 allowed");
        helper_reply_clear(&r);
        begin(b, 40 << 20, sha, "echo", "5.2", &r, NULL, NULL);
        assert_reply(&r, VMAUG_S_OK, NULL);
    }
}

/* ---- The audit log ---- */

/* Records of refused upload-begins: those written one by one, and the
 * refusals the counted ones stand for. */
static void audit_refusals(Fixture *f, guint *single, guint64 *counted)
{
    g_autofree gchar *path = audit_path(f);

    g_assert_true(test_audit_tally(path, "upload-begin", "refuse", single,
                                   counted));
}

/*
 * Thousands of refused requests from one VM leave a bounded log, the
 * refusals beyond the budget counted in one record, none lost.
 */
static void test_audit_flood(Fixture *f, gconstpointer data)
{
    const guint n = 3000;
    g_autoptr(HelperClient) a = NULL;
    g_autoptr(HelperClient) b = NULL;
    g_autoptr(GByteArray) req = g_byte_array_new();
    g_autofree gchar *audit = audit_path(f);
    struct virtio_vmaugment_req hdr = {
        .opcode = GUINT16_TO_LE(VMAUG_OP_UPLOAD_BEGIN),
        .len = GUINT32_TO_LE(sizeof(struct vmaug_upload_begin)),
    };
    struct vmaug_upload_begin bad = { 0 };      /* size 0: refused */
    guint before, single = 0;
    guint64 counted = 0;

    fixture_start(f, NULL);
    a = helper_client_connect(f->socket, NULL);
    b = helper_client_connect(f->socket, NULL);
    helper_ref(&bad.ref, "echo", "1.0");
    g_byte_array_append(req, (const guint8 *)&hdr, sizeof(hdr));
    g_byte_array_append(req, (const guint8 *)&bad, sizeof(bad));
    before = test_count_lines(audit, NULL);
    for (guint i = 0; i < n; i++) {
        helper_client_send_msg(a, VMAUG_HOST_REQUEST, 100 + i, req->data,
                               req->len);
        if (i % 64 == 63 || i == n - 1) {
            /* Read the answers as they come, as a device does. */
            for (guint j = i - i % 64; j <= i; j++) {
                g_auto(HelperReply) r = { 0 };

                g_assert_true(helper_client_wait_response(a, 100 + j, &r));
                g_assert_cmpuint(r.status, ==, VMAUG_S_TOO_BIG);
            }
        }
    }
    /* The helper serves the others meanwhile. */
    g_assert_cmpuint(helper_query(b, "echo", NULL, NULL), ==,
                     VMAUG_S_NOT_FOUND);
    /* The count is written when the VM leaves. */
    g_clear_pointer(&a, helper_client_free);
    for (guint i = 0; i < 200; i++) {
        audit_refusals(f, &single, &counted);
        if (single + counted >= n) {
            break;
        }
        g_usleep(50000);
    }
    g_test_message("%u refusals written one by one, %" G_GUINT64_FORMAT
                   " counted, %u lines", single, counted,
                   test_count_lines(audit, NULL) - before);
    g_assert_cmpuint(single + counted, ==, n);
    g_assert_cmpuint(counted, >, 0);
    /* A budget per window (default 20 a minute) and one record per
     * window with the count: bounded even if a slow run spans a few. */
    g_assert_cmpuint(test_count_lines(audit, NULL) - before, <=, 100);
}

/* ---- Lower items ---- */

/* One version number is one version: "1.00" is "1.0". */
static void test_version_spelling(Fixture *f, gconstpointer data)
{
    g_autoptr(HelperClient) c = NULL;
    g_autoptr(GBytes) again = test_module_package(f->keys->admin, "echo",
                                                  "1.00");
    struct vmaug_module_info info;
    struct vmaug_list_req req = { .what = GUINT32_TO_LE(VMAUG_LIST_MODULES) };
    struct vmaug_list_resp resp;
    g_autofree gchar *audit = audit_path(f);

    fixture_start(f, NULL);
    c = helper_client_connect(f->socket, NULL);
    upload_module(f, c, "echo", "1.0");
    g_assert_cmpuint(helper_upload(c, again, "echo", "1.00", 64 * 1024), ==,
                     VMAUG_S_DENIED);
    g_assert_cmpuint(test_count_lines(audit,
                                      "echo 1.00 is version 1.0, already "
                                      "stored"), ==, 1);
    g_assert_cmpuint(helper_query(c, "echo", "1.00", &info), ==, VMAUG_S_OK);
    g_assert_cmpstr((const gchar *)info.ref.version, ==, "1.0");
    g_assert_cmpuint(helper_load(c, "echo", "1.00", &info), ==, VMAUG_S_OK);
    g_assert_cmpstr((const gchar *)info.ref.version, ==, "1.0");
    {
        g_auto(HelperReply) r = { 0 };

        g_assert_true(helper_client_call(c, VMAUG_OP_LIST, &req, sizeof(req),
                                         NULL, 0, &r));
        memcpy(&resp, g_bytes_get_data(r.data, NULL), sizeof(resp));
        g_assert_cmpuint(GUINT32_FROM_LE(resp.total), ==, 1);
    }
}

/* A FIFO below a module's read root is refused, not waited on: the helper
 * serves every VM from one thread. */
static void test_host_open_fifo(Fixture *f, gconstpointer data)
{
    g_autofree gchar *root = g_build_filename(f->keys->dir, "share", NULL);
    g_autofree gchar *fifo = g_build_filename(root, "pipe", NULL);
    g_autofree gchar *bad = g_build_filename(root, "bad.bin", NULL);
    g_autofree gchar *policy = g_build_filename(f->keys->dir, "policy.json",
                                                NULL);
    g_autofree gchar *json = g_strdup_printf(
        "{\"grants\": {\"*\": [\"log\", \"config\", \"events\"], "
        "\"scanner\": [\"host-read\"]}, \"read_roots\": "
        "{\"scanner\": [\"%s\"]}}", root);
    const gchar *args[] = { "--policy", policy, NULL };
    g_autofree gchar *paths = g_strdup_printf("%s\n%s\n%s", fifo, bad, root);
    g_autofree gchar *found = NULL;
    g_autofree gchar *want = NULL;
    g_autoptr(HelperClient) c = NULL;
    g_autoptr(HelperClient) other = NULL;

    g_assert_cmpint(g_mkdir(root, 0700), ==, 0);
    g_assert_cmpint(mkfifo(fifo, 0600), ==, 0);
    g_assert_true(g_file_set_contents(bad, "x EVIL-PATTERN y", -1, NULL));
    g_assert_true(g_file_set_contents(policy, json, -1, NULL));
    fixture_start(f, args);
    c = helper_client_connect(f->socket, NULL);
    other = helper_client_connect(f->socket, NULL);
    upload_module(f, c, "scanner", "1.0");
    g_assert_cmpuint(helper_load(c, "scanner", NULL, NULL), ==, VMAUG_S_OK);
    {
        g_auto(HelperReply) r = { 0 };

        g_assert_cmpuint(config_call(c, VMAUG_OP_CONFIG_SET, "scanner",
                                     "host-paths", paths, &r),
                         ==, VMAUG_S_OK);
        helper_reply_clear(&r);
        g_assert_cmpuint(config_call(c, VMAUG_OP_CONFIG_SET, "scanner",
                                     "signatures",
                                     "Evil:4556494c2d5041545445524e", &r),
                         ==, VMAUG_S_OK);
    }
    found = invoke_text(c, "scanner", "scan", NULL, VMAUG_S_OK);
    g_test_message("findings:\n%s", found);
    want = g_strdup_printf("%s: (not readable)\n", fifo);
    g_assert_nonnull(strstr(found, want));
    g_clear_pointer(&want, g_free);
    want = g_strdup_printf("%s: Evil\n", bad);
    g_assert_nonnull(strstr(found, want));
    g_assert_cmpuint(helper_query(other, "scanner", NULL, NULL), ==,
                     VMAUG_S_OK);
}

/* A stored package that fails verification is verified (and audited)
 * once, not at every listing. */
static void test_list_refused(Fixture *f, gconstpointer data)
{
    g_autoptr(HelperClient) c = NULL;
    g_autoptr(GBytes) pkg = test_module_package(f->keys->admin, "echo",
                                                "1.0");
    g_autofree gchar *hex = NULL;
    g_autofree gchar *obj = NULL;
    g_autofree gchar *bytes = NULL;
    g_autofree gchar *audit = audit_path(f);
    struct vmaug_list_req req = { .what = GUINT32_TO_LE(VMAUG_LIST_MODULES) };
    guint8 sha[32];
    gsize len;

    fixture_start(f, NULL);
    c = helper_client_connect(f->socket, NULL);
    g_assert_cmpuint(helper_upload(c, pkg, "echo", "1.0", 64 * 1024), ==,
                     VMAUG_S_OK);
    /* Altered on disk behind the store's back. */
    package_sha(pkg, sha, &hex);
    obj = object_path(f, hex);
    g_assert_true(g_file_get_contents(obj, &bytes, &len, NULL));
    bytes[len - 2000] ^= 1;
    g_assert_true(g_file_set_contents(obj, bytes, len, NULL));
    for (guint i = 0; i < 10; i++) {
        g_auto(HelperReply) r = { 0 };
        struct vmaug_list_resp resp;
        struct vmaug_module_info info;

        g_assert_true(helper_client_call(c, VMAUG_OP_LIST, &req, sizeof(req),
                                         NULL, 0, &r));
        g_assert_cmpuint(r.status, ==, VMAUG_S_OK);
        g_assert_cmpuint(g_bytes_get_size(r.data), ==,
                         sizeof(resp) + sizeof(info));
        memcpy(&info, (const guint8 *)g_bytes_get_data(r.data, NULL) +
               sizeof(resp), sizeof(info));
        g_assert_cmpstr((const gchar *)info.ref.name, ==, "echo");
        g_assert_cmpuint(helper_query(c, "echo", NULL, NULL), ==,
                         VMAUG_S_DENIED);
    }
    g_assert_cmpuint(test_count_lines(audit, "\"action\":\"read\""), ==, 1);
    /* A load verifies afresh all the same. */
    g_assert_cmpuint(helper_load(c, "echo", NULL, NULL), ==, VMAUG_S_DENIED);
    g_assert_cmpuint(test_count_lines(audit, "\"action\":\"load\""), ==, 1);
}

#define ADD(path, fn) \
    g_test_add(path, Fixture, NULL, fixture_setup, fn, fixture_teardown)

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    ADD("/isolation/upload/sigbus", test_upload_sigbus);
    ADD("/isolation/upload/poison", test_upload_poison);
    ADD("/isolation/upload/slots", test_upload_slots);
    ADD("/isolation/upload/slow-commit", test_slow_commit);
    ADD("/isolation/slow-writes", test_slow_writes);
    ADD("/isolation/slow-writes/images", test_slow_writes_images);
    ADD("/isolation/two-vms", test_two_vms);
    ADD("/isolation/image-areas", test_image_areas);
    ADD("/isolation/config/module", test_config_module);
    ADD("/isolation/config/host", test_config_host);
    ADD("/isolation/quota/config", test_quota_config);
    ADD("/isolation/quota/spool-state", test_quota_spool_state);
    ADD("/isolation/quota/uploads", test_quota_uploads);
    ADD("/isolation/audit-flood", test_audit_flood);
    ADD("/isolation/version-spelling", test_version_spelling);
    ADD("/isolation/host-open-fifo", test_host_open_fifo);
    ADD("/isolation/list-refused", test_list_refused);
    return g_test_run();
}
