/*
 * vmaugment-helper driven over its socket exactly as the QEMU device
 * drives it: uploads, loads, invocations, version swaps, rollback,
 * configuration, several devices, hostile devices, a tamper corpus over
 * the upload path and a sandbox-escape corpus of signed hostile modules.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <signal.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "helper-client.h"
#include "test-common.h"

typedef struct {
    TestKeys *keys;
    gchar *store;
    gchar *socket;
    GPid pid;
    HelperClient *c;
} Fixture;

static const gchar *env(const gchar *name)
{
    const gchar *v = g_getenv(name);

    g_assert_nonnull(v);
    return v;
}

/* A package of one of the real modules (or the hostile one). */
static GBytes *module_package(VmaugTrustIdentity *signer, const gchar *name,
                              const gchar *version)
{
    g_autoptr(GError) error = NULL;
    g_autofree gchar *so = NULL;
    g_autofree gchar *manifest_path = NULL;
    g_autofree gchar *manifest = NULL;
    g_autoptr(GBytes) payload = NULL;
    GBytes *pkg;

    if (g_strcmp0(name, "hostile") == 0) {
        so = g_strdup(env("VMAUG_TEST_HOSTILE_SO"));
        manifest_path = g_strdup(env("VMAUG_TEST_HOSTILE_MANIFEST"));
    } else {
        g_autofree gchar *base = g_strconcat("vmaug-", name, ".so", NULL);

        so = g_build_filename(env("VMAUG_TEST_MODULES_BUILD"), base, NULL);
        manifest_path = g_build_filename(env("VMAUG_TEST_MODULES_SRC"), name,
                                         "manifest.json", NULL);
    }
    payload = test_read(so);
    g_assert_true(g_file_get_contents(manifest_path, &manifest, NULL, NULL));
    pkg = vmaug_package_build(manifest, version, payload, signer, &error);
    g_assert_no_error(error);
    return pkg;
}

static void fixture_start(Fixture *f, const gchar *const *extra)
{
    f->pid = helper_spawn(env("VMAUG_HELPER"), f->socket, f->store,
                          f->keys->trust_dir, extra);
    f->c = helper_client_connect(f->socket, NULL);
}

static void fixture_setup(Fixture *f, gconstpointer data)
{
    static const gchar *const args[] = {
        "--call-timeout-ms", "1500", "--memory-mb", "128", NULL
    };

    f->keys = test_keys_new();
    f->store = g_build_filename(f->keys->dir, "store", NULL);
    f->socket = g_build_filename(f->keys->dir, "helper.sock", NULL);
    fixture_start(f, args);
}

static void fixture_teardown(Fixture *f, gconstpointer data)
{
    helper_client_free(f->c);
    helper_kill(f->pid);
    g_free(f->store);
    g_free(f->socket);
    test_keys_free(f->keys);
}

static void upload_module(Fixture *f, const gchar *name, const gchar *version)
{
    g_autoptr(GBytes) pkg = module_package(f->keys->admin, name, version);

    g_assert_cmpuint(helper_upload(f->c, pkg, name, version, 64 * 1024), ==,
                     VMAUG_S_OK);
}

static gchar *audit_path(Fixture *f)
{
    return g_build_filename(f->store, "audit.log", NULL);
}

/* ---- Positive paths ---- */

static void test_upload_load_invoke(Fixture *f, gconstpointer data)
{
    struct vmaug_module_info info;
    g_autoptr(GBytes) out = NULL;
    g_autoptr(GBytes) ev = NULL;
    const struct virtio_vmaugment_event *e;

    g_assert_cmpstr(f->c->helper_name, ==, "vmaugment-helper 0.1.0");
    g_assert_cmpuint(helper_query(f->c, "echo", NULL, NULL), ==,
                     VMAUG_S_NOT_FOUND);
    upload_module(f, "echo", "1.0");
    g_assert_cmpuint(helper_query(f->c, "echo", NULL, &info), ==, VMAUG_S_OK);
    g_assert_cmpuint(GUINT32_FROM_LE(info.state), ==, VMAUG_MODULE_STORED);
    g_assert_cmpuint(GUINT32_FROM_LE(info.kind), ==,
                     VMAUG_KIND_COMMUNICATION);
    g_assert_cmpstr((const gchar *)info.ref.version, ==, "1.0");

    g_assert_cmpuint(helper_load(f->c, "echo", NULL, &info), ==, VMAUG_S_OK);
    g_assert_cmpuint(GUINT32_FROM_LE(info.state), ==, VMAUG_MODULE_LOADED);
    ev = helper_client_wait_event(f->c, VMAUG_EVENT_MODULE_LOADED, 5000);
    g_assert_nonnull(ev);
    g_clear_pointer(&ev, g_bytes_unref);
    /* Loading again is idempotent. */
    g_assert_cmpuint(helper_load(f->c, "echo", "1.0", &info), ==,
                     VMAUG_S_OK);

    g_assert_cmpuint(helper_invoke(f->c, "echo", "echo", "hello", 5, &out),
                     ==, VMAUG_S_OK);
    g_assert_cmpmem(g_bytes_get_data(out, NULL), g_bytes_get_size(out),
                    "hello", 5);
    g_clear_pointer(&out, g_bytes_unref);
    /* A message through the event queue. */
    g_assert_cmpuint(helper_invoke(f->c, "echo", "notify", "psst", 4, NULL),
                     ==, VMAUG_S_OK);
    ev = helper_client_wait_event(f->c, VMAUG_EVENT_MODULE_MESSAGE, 5000);
    g_assert_nonnull(ev);
    e = g_bytes_get_data(ev, NULL);
    g_assert_cmpuint(GUINT32_FROM_LE(e->len), ==,
                     sizeof(struct vmaug_module_ref) + 4);
    g_assert_cmpmem((const guint8 *)(e + 1) +
                    sizeof(struct vmaug_module_ref), 4, "psst", 4);
    /* Only exported functions reach the module. */
    g_assert_cmpuint(helper_invoke(f->c, "echo", "secret", NULL, 0, NULL), ==,
                     VMAUG_S_NOT_FOUND);
    g_assert_cmpuint(helper_invoke(f->c, "nothere", "echo", NULL, 0, NULL),
                     ==, VMAUG_S_NOT_FOUND);
    /* The largest call a guest can make. */
    {
        gsize n = VMAUG_MAX_REQ_PAYLOAD - sizeof(struct vmaug_invoke);
        g_autofree guint8 *big = g_malloc(n);

        memset(big, 'x', n);
        g_assert_cmpuint(helper_invoke(f->c, "echo", "echo", big, n, &out),
                         ==, VMAUG_S_OK);
        g_assert_cmpuint(g_bytes_get_size(out), ==, n);
        g_clear_pointer(&out, g_bytes_unref);
    }
    g_assert_cmpuint(helper_unload(f->c, "echo"), ==, VMAUG_S_OK);
    g_assert_cmpuint(helper_invoke(f->c, "echo", "echo", "x", 1, NULL), ==,
                     VMAUG_S_NOT_FOUND);
    g_assert_cmpuint(helper_unload(f->c, "echo"), ==, VMAUG_S_NOT_FOUND);
}

static gchar *spool_find(Fixture *f, const gchar *job)
{
    g_autofree gchar *name = g_strconcat(job, ".data", NULL);

    return g_build_filename(f->store, "spool", name, NULL);
}

static void test_printer_swap_rollback(Fixture *f, gconstpointer data)
{
    static const gchar doc[] = "Report\nHello from the guest.\n";
    struct vmaug_module_info info;
    g_autoptr(GBytes) job = NULL;
    g_autoptr(GBytes) ev = NULL;
    g_autoptr(GBytes) old_pkg = NULL;
    g_autofree gchar *job_id = NULL;
    g_autofree gchar *path = NULL;
    g_autofree gchar *contents = NULL;
    g_autofree gchar *audit = audit_path(f);

    g_assert_cmpuint(helper_query(f->c, "printer", "1.0", NULL), ==,
                     VMAUG_S_NOT_FOUND);
    upload_module(f, "printer", "1.0");
    g_assert_cmpuint(helper_load(f->c, "printer", "1.0", &info), ==,
                     VMAUG_S_OK);
    g_assert_cmpuint(helper_invoke(f->c, "printer", "print", doc,
                                   strlen(doc), &job), ==, VMAUG_S_OK);
    job_id = g_strndup(g_bytes_get_data(job, NULL), g_bytes_get_size(job));
    path = spool_find(f, job_id);
    g_assert_true(g_file_get_contents(path, &contents, NULL, NULL));
    g_assert_cmpstr(contents, ==, "Hello from the guest.\n");
    ev = helper_client_wait_event(f->c, VMAUG_EVENT_MODULE_MESSAGE, 5000);
    g_assert_nonnull(ev);

    /* 1.1 arrives: the helper swaps versions under the running VM. */
    upload_module(f, "printer", "1.1");
    g_assert_cmpuint(helper_load(f->c, "printer", NULL, &info), ==,
                     VMAUG_S_OK);
    g_assert_cmpstr((const gchar *)info.ref.version, ==, "1.1");
    g_assert_cmpuint(GUINT32_FROM_LE(info.state), ==, VMAUG_MODULE_LOADED);
    g_clear_pointer(&ev, g_bytes_unref);
    ev = helper_client_wait_event(f->c, VMAUG_EVENT_MODULE_UNLOADED, 5000);
    g_assert_nonnull(ev);
    g_clear_pointer(&job, g_bytes_unref);
    g_assert_cmpuint(helper_invoke(f->c, "printer", "jobs", NULL, 0, &job),
                     ==, VMAUG_S_OK);
    g_assert_cmpmem(g_bytes_get_data(job, NULL), g_bytes_get_size(job),
                    "0", 1);

    /* Going back to 1.0 is refused, by upload and by load. */
    g_assert_cmpuint(helper_load(f->c, "printer", "1.0", NULL), ==,
                     VMAUG_S_DENIED);
    old_pkg = module_package(f->keys->admin, "printer", "0.9");
    g_assert_cmpuint(helper_upload(f->c, old_pkg, "printer", "0.9", 65536),
                     ==, VMAUG_S_DENIED);
    g_assert_cmpuint(test_count_lines(audit, "rollback"), ==, 2);
    g_assert_cmpuint(helper_query(f->c, "printer", NULL, &info), ==,
                     VMAUG_S_OK);
    g_assert_cmpstr((const gchar *)info.ref.version, ==, "1.1");
    g_assert_cmpuint(GUINT32_FROM_LE(info.state), ==, VMAUG_MODULE_LOADED);
}

static void test_kv_config(Fixture *f, gconstpointer data)
{
    g_autoptr(GBytes) out = NULL;
    struct vmaug_config_ref cref = { 0 };
    g_auto(HelperReply) r = { 0 };

    upload_module(f, "kv", "1.0");
    g_assert_cmpuint(helper_load(f->c, "kv", NULL, NULL), ==, VMAUG_S_OK);
    g_assert_cmpuint(helper_invoke(f->c, "kv", "set", "colour=blue", 11,
                                   NULL), ==, VMAUG_S_OK);
    g_assert_cmpuint(helper_invoke(f->c, "kv", "get", "colour", 6, &out), ==,
                     VMAUG_S_OK);
    g_assert_cmpmem(g_bytes_get_data(out, NULL), g_bytes_get_size(out),
                    "blue", 4);
    g_assert_cmpuint(helper_invoke(f->c, "kv", "get", "size", 4, NULL), ==,
                     VMAUG_S_NOT_FOUND);
    /* The guest's own configuration requests see the same values. */
    g_strlcpy((gchar *)cref.module, "kv", sizeof(cref.module));
    g_strlcpy((gchar *)cref.key, "colour", sizeof(cref.key));
    g_assert_true(helper_client_call(f->c, VMAUG_OP_CONFIG_GET, &cref,
                                     sizeof(cref), NULL, 0, &r));
    g_assert_cmpuint(r.status, ==, VMAUG_S_OK);
    g_assert_cmpmem(g_bytes_get_data(r.data, NULL), g_bytes_get_size(r.data),
                    "blue", 4);
    helper_reply_clear(&r);
    g_strlcpy((gchar *)cref.key, "size", sizeof(cref.key));
    g_assert_true(helper_client_call(f->c, VMAUG_OP_CONFIG_SET, &cref,
                                     sizeof(cref), "XL", 2, &r));
    g_assert_cmpuint(r.status, ==, VMAUG_S_OK);
    g_clear_pointer(&out, g_bytes_unref);
    g_assert_cmpuint(helper_invoke(f->c, "kv", "get", "size", 4, &out), ==,
                     VMAUG_S_OK);
    g_assert_cmpmem(g_bytes_get_data(out, NULL), g_bytes_get_size(out),
                    "XL", 2);

    /* Persisted per image: a restarted helper still has it. */
    helper_client_free(f->c);
    helper_kill(f->pid);
    fixture_start(f, NULL);
    g_assert_cmpuint(helper_load(f->c, "kv", NULL, NULL), ==, VMAUG_S_OK);
    g_clear_pointer(&out, g_bytes_unref);
    g_assert_cmpuint(helper_invoke(f->c, "kv", "get", "colour", 6, &out), ==,
                     VMAUG_S_OK);
    g_assert_cmpmem(g_bytes_get_data(out, NULL), g_bytes_get_size(out),
                    "blue", 4);
}

static void test_register_list(Fixture *f, gconstpointer data)
{
    struct vmaug_registration reg = { 0 };
    struct vmaug_list_req req = { 0 };
    struct vmaug_list_resp resp;
    g_auto(HelperReply) r = { 0 };

    upload_module(f, "echo", "1.0");
    upload_module(f, "kv", "1.0");
    helper_ref(&reg.ref, "echo", NULL);
    reg.flags = GUINT32_TO_LE(VMAUG_REG_F_REQUIRED);
    g_assert_true(helper_client_call(f->c, VMAUG_OP_REGISTER, &reg,
                                     sizeof(reg), NULL, 0, &r));
    g_assert_cmpuint(r.status, ==, VMAUG_S_OK);
    helper_reply_clear(&r);

    req.what = GUINT32_TO_LE(VMAUG_LIST_MODULES);
    g_assert_true(helper_client_call(f->c, VMAUG_OP_LIST, &req, sizeof(req),
                                     NULL, 0, &r));
    g_assert_cmpuint(r.status, ==, VMAUG_S_OK);
    memcpy(&resp, g_bytes_get_data(r.data, NULL), sizeof(resp));
    g_assert_cmpuint(GUINT32_FROM_LE(resp.count), ==, 2);
    g_assert_cmpuint(GUINT32_FROM_LE(resp.total), ==, 2);
    g_assert_cmpuint(g_bytes_get_size(r.data), ==,
                     sizeof(resp) + 2 * sizeof(struct vmaug_module_info));
    helper_reply_clear(&r);

    req.what = GUINT32_TO_LE(VMAUG_LIST_REGISTRATIONS);
    g_assert_true(helper_client_call(f->c, VMAUG_OP_LIST, &req, sizeof(req),
                                     NULL, 0, &r));
    memcpy(&resp, g_bytes_get_data(r.data, NULL), sizeof(resp));
    g_assert_cmpuint(GUINT32_FROM_LE(resp.count), ==, 1);
    helper_reply_clear(&r);

    /* The next start of the image loads what it registered. */
    helper_client_free(f->c);
    f->c = helper_client_connect(f->socket, NULL);
    g_assert_nonnull(helper_client_wait_event(f->c,
                                              VMAUG_EVENT_MODULE_LOADED,
                                              5000));
    g_assert_cmpuint(helper_invoke(f->c, "echo", "echo", "a", 1, NULL), ==,
                     VMAUG_S_OK);
    g_assert_true(helper_client_call(f->c, VMAUG_OP_UNREGISTER, &reg.ref,
                                     sizeof(reg.ref), NULL, 0, &r));
    g_assert_cmpuint(r.status, ==, VMAUG_S_OK);
}

static void test_several_devices(Fixture *f, gconstpointer data)
{
    g_autoptr(HelperClient) c2 = NULL;
    g_autoptr(HelperClient) c3 = NULL;
    g_autoptr(GBytes) out = NULL;

    upload_module(f, "kv", "1.0");
    c2 = helper_client_connect(f->socket, NULL);
    c3 = helper_client_connect(f->socket, NULL);
    g_assert_cmpuint(helper_load(f->c, "kv", NULL, NULL), ==, VMAUG_S_OK);
    g_assert_cmpuint(helper_load(c2, "kv", NULL, NULL), ==, VMAUG_S_OK);
    g_assert_cmpuint(helper_invoke(c2, "kv", "set", "k=v", 3, NULL), ==,
                     VMAUG_S_OK);
    /* Each VM has its own module process. */
    g_assert_cmpuint(helper_invoke(f->c, "kv", "count", NULL, 0, &out), ==,
                     VMAUG_S_OK);
    g_assert_cmpmem(g_bytes_get_data(out, NULL), g_bytes_get_size(out), "0",
                    1);
    g_assert_cmpuint(helper_invoke(c3, "kv", "count", NULL, 0, NULL), ==,
                     VMAUG_S_NOT_FOUND);
    /* One VM going away leaves the others alone. */
    g_clear_pointer(&c2, helper_client_free);
    g_assert_cmpuint(helper_invoke(f->c, "kv", "count", NULL, 0, NULL), ==,
                     VMAUG_S_OK);
}

/* ---- Hostile devices ---- */

static void test_hostile_device(Fixture *f, gconstpointer data)
{
    g_auto(HelperReply) r = { 0 };
    struct vmaug_module_ref ref;

    /* Malformed requests get error responses, not a dead helper. */
    g_assert_true(helper_client_call(f->c, VMAUG_OP_QUERY, "x", 1, NULL, 0,
                                     &r));
    g_assert_cmpuint(r.status, ==, VMAUG_S_INVALID);
    helper_reply_clear(&r);
    g_assert_true(helper_client_call(f->c, 0x7777, NULL, 0, NULL, 0, &r));
    g_assert_cmpuint(r.status, ==, VMAUG_S_UNSUPPORTED);
    helper_reply_clear(&r);
    memset(&ref, 'A', sizeof(ref));     /* no NUL anywhere */
    g_assert_true(helper_client_call(f->c, VMAUG_OP_LOAD, &ref, sizeof(ref),
                                     NULL, 0, &r));
    g_assert_cmpuint(r.status, ==, VMAUG_S_INVALID);
    helper_reply_clear(&r);
    helper_ref(&ref, "../../etc", NULL);
    g_assert_true(helper_client_call(f->c, VMAUG_OP_LOAD, &ref, sizeof(ref),
                                     NULL, 0, &r));
    g_assert_cmpuint(r.status, ==, VMAUG_S_INVALID);
    helper_reply_clear(&r);
    /* A request whose header lies about its length. */
    {
        struct virtio_vmaugment_req req = {
            .opcode = GUINT16_TO_LE(VMAUG_OP_QUERY),
            .len = GUINT32_TO_LE(1000),
        };

        helper_client_send_msg(f->c, VMAUG_HOST_REQUEST, 999, &req,
                               sizeof(req));
        g_assert_true(helper_client_wait_response(f->c, 999, &r));
        g_assert_cmpuint(r.status, ==, VMAUG_S_INVALID);
        helper_reply_clear(&r);
    }

    /* Framing violations close that connection only. */
    {
        g_autoptr(HelperClient) bad = helper_client_connect(f->socket, NULL);

        helper_client_send_raw(bad, "garbage garbage garbage!", 24);
        g_assert_true(helper_client_closed(bad, 5000));
    }
    {
        g_autoptr(HelperClient) bad = helper_client_connect(f->socket, NULL);
        struct vmaug_host_msg m = {
            .magic = GUINT32_TO_LE(VMAUG_HOST_MAGIC),
            .type = GUINT16_TO_LE(VMAUG_HOST_REQUEST),
            .len = GUINT32_TO_LE(0xffffffff),
        };

        helper_client_send_raw(bad, &m, sizeof(m));
        g_assert_true(helper_client_closed(bad, 5000));
    }
    {
        g_autoptr(HelperClient) bad = helper_client_connect(f->socket, NULL);

        helper_client_send_msg(bad, VMAUG_HOST_HELLO, 0, "again", 5);
        g_assert_true(helper_client_closed(bad, 5000));
    }
    /* A store QEMU names must be one the host owner allowed. */
    {
        g_autoptr(HelperClient) bad = helper_client_connect(f->socket,
                                                            "/etc");

        g_assert_true(helper_client_closed(bad, 5000));
    }
    g_assert_true(helper_client_call(f->c, VMAUG_OP_QUERY, &ref, sizeof(ref),
                                     NULL, 0, &r));
}

static void test_cancel(Fixture *f, gconstpointer data)
{
    struct vmaug_invoke inv = { 0 };
    struct virtio_vmaugment_req req = {
        .opcode = GUINT16_TO_LE(VMAUG_OP_INVOKE),
        .len = GUINT32_TO_LE(sizeof(inv)),
    };
    g_autoptr(GByteArray) msg = g_byte_array_new();
    g_auto(HelperReply) r = { 0 };
    struct vmaug_list_req lr = { .what = GUINT32_TO_LE(VMAUG_LIST_MODULES) };

    upload_module(f, "hostile", "1.0");
    g_assert_cmpuint(helper_load(f->c, "hostile", NULL, NULL), ==,
                     VMAUG_S_OK);
    /* A call that will never answer, cancelled by a device reset. */
    g_strlcpy((gchar *)inv.module, "hostile", sizeof(inv.module));
    g_strlcpy((gchar *)inv.function, "spin", sizeof(inv.function));
    g_byte_array_append(msg, (const guint8 *)&req, sizeof(req));
    g_byte_array_append(msg, (const guint8 *)&inv, sizeof(inv));
    helper_client_send_msg(f->c, VMAUG_HOST_REQUEST, 777, msg->data,
                           msg->len);
    helper_client_send_msg(f->c, VMAUG_HOST_CANCEL, 777, NULL, 0);
    /* The module is killed when its call times out; the cancelled tag is
     * never answered (helper_client_call would fail on a stray tag). */
    g_assert_nonnull(helper_client_wait_event(f->c,
                                              VMAUG_EVENT_MODULE_CRASHED,
                                              10000));
    g_assert_true(helper_client_call(f->c, VMAUG_OP_LIST, &lr, sizeof(lr),
                                     NULL, 0, &r));
    g_assert_cmpuint(r.status, ==, VMAUG_S_OK);
    /* A CANCEL with a payload breaks the framing rules. */
    helper_client_send_msg(f->c, VMAUG_HOST_CANCEL, 1, "x", 1);
    g_assert_true(helper_client_closed(f->c, 5000));
}

static void test_allowed_store(Fixture *f, gconstpointer data)
{
    g_autofree gchar *other = g_build_filename(f->keys->dir, "other-image",
                                               NULL);
    g_autofree gchar *objects = g_build_filename(other, "objects", NULL);
    g_autoptr(HelperClient) c2 = NULL;
    g_autoptr(GBytes) pkg = module_package(f->keys->admin, "echo", "1.0");
    const gchar *args[] = { "--allow-store", other, NULL };
    g_autoptr(GDir) d = NULL;

    helper_client_free(f->c);
    helper_kill(f->pid);
    fixture_start(f, args);
    /* Another image, another store: what one uploads the other lacks. */
    c2 = helper_client_connect(f->socket, other);
    g_assert_cmpuint(helper_upload(c2, pkg, "echo", "1.0", 65536), ==,
                     VMAUG_S_OK);
    g_assert_cmpuint(helper_query(c2, "echo", NULL, NULL), ==, VMAUG_S_OK);
    g_assert_cmpuint(helper_query(f->c, "echo", NULL, NULL), ==,
                     VMAUG_S_NOT_FOUND);
    d = g_dir_open(objects, 0, NULL);
    g_assert_nonnull(d);
    g_assert_nonnull(g_dir_read_name(d));
}

/* ---- Tamper corpus over the upload path ---- */

static void test_tamper_upload(Fixture *f, gconstpointer data)
{
    g_autoptr(GBytes) good = module_package(f->keys->admin, "echo", "1.0");
    g_autoptr(GBytes) unknown = module_package(f->keys->stranger, "echo",
                                               "1.0");
    g_autoptr(GBytes) expired = module_package(f->keys->expired, "echo",
                                               "1.0");
    g_autoptr(GBytes) revoked = module_package(f->keys->revoked, "echo",
                                               "1.0");
    g_autoptr(GBytes) truncated = g_bytes_new_from_bytes(
        good, 0, g_bytes_get_size(good) - 10);
    g_autofree gchar *audit = audit_path(f);
    g_autofree gchar *before = test_snapshot(f->store, "audit.log");
    g_autofree gchar *after = NULL;
    gsize size = g_bytes_get_size(good);
    GBytes *bad[7];
    guint refusals = test_count_lines(audit, "\"refuse\"");

    bad[0] = test_flip_bit(good, (size - 2000) * 8 + 3);    /* payload */
    bad[1] = test_flip_bit(good, (VMAUG_PKG_HEADER_SIZE + 20) * 8);
    bad[2] = test_flip_bit(good, (size - 40) * 8 + 1);      /* signature */
    bad[3] = g_bytes_ref(unknown);
    bad[4] = g_bytes_ref(expired);
    bad[5] = g_bytes_ref(revoked);
    bad[6] = g_bytes_ref(truncated);
    for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
        guint16 st = helper_upload(f->c, bad[i], "echo", "1.0", 65536);

        g_assert_true(st == VMAUG_S_DENIED || st == VMAUG_S_INVALID);
        g_bytes_unref(bad[i]);
    }
    after = test_snapshot(f->store, "audit.log");
    g_assert_cmpstr(before, ==, after);
    g_assert_cmpuint(test_count_lines(audit, "\"refuse\""), ==,
                     refusals + G_N_ELEMENTS(bad));
    /* Oversize is refused at BEGIN, before any byte is taken. */
    {
        struct vmaug_upload_begin b = { 0 };
        g_auto(HelperReply) r = { 0 };

        b.total_size = GUINT64_TO_LE(VMAUG_MAX_UPLOAD_SIZE);
        helper_ref(&b.ref, "echo", "9.0");
        g_assert_true(helper_client_call(f->c, VMAUG_OP_UPLOAD_BEGIN, &b,
                                         sizeof(b), NULL, 0, &r));
        g_assert_cmpuint(r.status, ==, VMAUG_S_TOO_BIG);
    }
    /* And the honest package still goes in. */
    g_assert_cmpuint(helper_upload(f->c, good, "echo", "1.0", 65536), ==,
                     VMAUG_S_OK);
}

/* ---- Sandbox-escape corpus ---- */

static void test_escape(Fixture *f, gconstpointer data)
{
    static const struct {
        const gchar *function;
        guint16 expect;             /* killed (MODULE_FAILED) or denied */
    } corpus[] = {
        { "execve", VMAUG_S_MODULE_FAILED },
        { "open", VMAUG_S_DENIED },
        { "connect", VMAUG_S_DENIED },
        { "ptrace", VMAUG_S_MODULE_FAILED },
        { "fork", VMAUG_S_MODULE_FAILED },
        { "alloc", VMAUG_S_DENIED },
        { "spin", VMAUG_S_TIMEOUT },
        { "garbage", VMAUG_S_MODULE_FAILED },
        { "exec-memory", VMAUG_S_MODULE_FAILED },
        { "flood", VMAUG_S_DENIED },
        { "files", VMAUG_S_DENIED },
    };
    g_autoptr(GBytes) out = NULL;
    g_autofree gchar *notes = g_build_filename(f->store, "state", "hostile",
                                               "notes.txt", NULL);
    g_autofree gchar *text = NULL;

    upload_module(f, "hostile", "1.0");
    upload_module(f, "echo", "1.0");
    g_assert_cmpuint(helper_load(f->c, "echo", NULL, NULL), ==, VMAUG_S_OK);
    /* What it may do works: a file of its own, through the broker. */
    g_assert_cmpuint(helper_load(f->c, "hostile", NULL, NULL), ==,
                     VMAUG_S_OK);
    g_assert_cmpuint(helper_invoke(f->c, "hostile", "state", "mine", 4, NULL),
                     ==, VMAUG_S_DENIED);
    g_assert_true(g_file_get_contents(notes, &text, NULL, NULL));
    g_assert_cmpstr(text, ==, "mine");
    for (guint i = 0; i < G_N_ELEMENTS(corpus); i++) {
        struct vmaug_module_info info;
        guint16 st;

        g_test_message("escape attempt: %s", corpus[i].function);
        g_assert_cmpuint(helper_load(f->c, "hostile", NULL, &info), ==,
                         VMAUG_S_OK);
        st = helper_invoke(f->c, "hostile", corpus[i].function, NULL, 0,
                           NULL);
        g_assert_cmpuint(st, !=, VMAUG_S_OK);
        g_assert_cmpuint(st, ==, corpus[i].expect);
        if (st != VMAUG_S_DENIED) {
            g_autoptr(GBytes) ev =
                helper_client_wait_event(f->c, VMAUG_EVENT_MODULE_CRASHED,
                                         5000);

            g_assert_nonnull(ev);
            g_assert_cmpuint(helper_query(f->c, "hostile", NULL, &info), ==,
                             VMAUG_S_OK);
            g_assert_cmpuint(GUINT32_FROM_LE(info.state), ==,
                             VMAUG_MODULE_CRASHED);
            g_assert_cmpuint(helper_invoke(f->c, "hostile", "ping", NULL, 0,
                                           NULL), ==, VMAUG_S_MODULE_FAILED);
        }
        /* Contained: the helper and the other module keep working, and
         * the hostile one can be loaded again. */
        g_clear_pointer(&out, g_bytes_unref);
        g_assert_cmpuint(helper_invoke(f->c, "echo", "echo", "ok", 2, &out),
                         ==, VMAUG_S_OK);
        g_assert_cmpuint(helper_load(f->c, "hostile", NULL, NULL), ==,
                         VMAUG_S_OK);
        g_clear_pointer(&out, g_bytes_unref);
        g_assert_cmpuint(helper_invoke(f->c, "hostile", "ping", NULL, 0,
                                       &out), ==, VMAUG_S_OK);
        g_assert_cmpmem(g_bytes_get_data(out, NULL), g_bytes_get_size(out),
                        "pong", 4);
    }
    /* The flood reached the VM only up to the module's budget. */
    {
        guint n = 0;
        GBytes *ev;

        while ((ev = helper_client_wait_event(f->c,
                                              VMAUG_EVENT_MODULE_MESSAGE,
                                              200)) != NULL) {
            g_bytes_unref(ev);
            n++;
        }
        g_assert_cmpuint(n, >, 0);
        g_assert_cmpuint(n, <=, 64);
    }
    /* A function the manifest does not export never runs. */
    g_assert_cmpuint(helper_invoke(f->c, "hostile", "undeclared", NULL, 0,
                                   NULL), ==, VMAUG_S_NOT_FOUND);
}

/* ---- The other modules ---- */

static void fixture_restart(Fixture *f, const gchar *policy_json)
{
    g_autofree gchar *policy = g_build_filename(f->keys->dir, "policy.json",
                                                NULL);
    const gchar *args[] = { "--policy", policy, "--call-timeout-ms", "5000",
                            NULL };

    g_assert_true(g_file_set_contents(policy, policy_json, -1, NULL));
    helper_client_free(f->c);
    helper_kill(f->pid);
    fixture_start(f, args);
}

static gchar *read_ui(Fixture *f, const gchar *module)
{
    g_autofree gchar *name = g_strconcat(module, ".json", NULL);
    g_autofree gchar *path = g_build_filename(f->store, "ui", name, NULL);
    gchar *text = NULL;

    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    return text;
}

static void test_module_ui(Fixture *f, gconstpointer data)
{
    g_autofree gchar *ui = NULL;
    g_autoptr(GBytes) ev = NULL;
    const struct virtio_vmaugment_event *e;

    upload_module(f, "ui", "1.0");
    g_assert_cmpuint(helper_load(f->c, "ui", NULL, NULL), ==, VMAUG_S_OK);
    ui = read_ui(f, "ui");
    g_assert_nonnull(strstr(ui, "\"menu.status\""));
    g_assert_cmpuint(helper_invoke(f->c, "ui", "progress", "Backup \"x\"\n42",
                                   13, NULL), ==, VMAUG_S_OK);
    g_clear_pointer(&ui, g_free);
    ui = read_ui(f, "ui");
    g_assert_nonnull(strstr(ui, "\"dialog.progress\""));
    g_assert_nonnull(strstr(ui, "\"percent\" : 42"));
    g_assert_nonnull(strstr(ui, "\"menu.status\""));
    ev = helper_client_wait_event(f->c, VMAUG_EVENT_MODULE_MESSAGE, 5000);
    g_assert_nonnull(ev);
    e = g_bytes_get_data(ev, NULL);
    g_assert_cmpmem((const guint8 *)(e + 1) +
                    sizeof(struct vmaug_module_ref),
                    GUINT32_FROM_LE(e->len) - sizeof(struct vmaug_module_ref),
                    "progress 42", 11);
    g_assert_cmpuint(helper_invoke(f->c, "ui", "progress", "t\n101", 5,
                                   NULL), ==, VMAUG_S_INVALID);
    g_assert_cmpuint(helper_invoke(f->c, "ui", "done", NULL, 0, NULL), ==,
                     VMAUG_S_OK);
}

static void test_module_config(Fixture *f, gconstpointer data)
{
    struct vmaug_registration reg = { 0 };
    g_auto(HelperReply) r = { 0 };
    g_autoptr(GBytes) out = NULL;

    upload_module(f, "config", "1.0");
    helper_ref(&reg.ref, "config", NULL);
    reg.events = GUINT32_TO_LE(VMAUG_EVENT_MASK(VMAUG_EVENT_IMAGE_START));
    g_assert_true(helper_client_call(f->c, VMAUG_OP_REGISTER, &reg,
                                     sizeof(reg), NULL, 0, &r));
    g_assert_cmpuint(r.status, ==, VMAUG_S_OK);
    g_assert_cmpuint(helper_load(f->c, "config", NULL, NULL), ==,
                     VMAUG_S_OK);
    g_assert_cmpuint(helper_invoke(f->c, "config", "set", "memory-mb=2048",
                                   14, NULL), ==, VMAUG_S_OK);
    g_assert_cmpuint(helper_invoke(f->c, "config", "set", "memory-mb=1", 11,
                                   NULL), ==, VMAUG_S_INVALID);
    g_assert_cmpuint(helper_invoke(f->c, "config", "set", "rootpw=x", 8,
                                   NULL), ==, VMAUG_S_INVALID);
    g_assert_cmpuint(helper_invoke(f->c, "config", "set", "display=vnc", 11,
                                   NULL), ==, VMAUG_S_OK);
    /* Not applied before the next start. */
    g_assert_cmpuint(helper_invoke(f->c, "config", "get", "memory-mb", 9,
                                   NULL), ==, VMAUG_S_NOT_FOUND);
    g_assert_cmpuint(helper_invoke(f->c, "config", "pending", "memory-mb", 9,
                                   &out), ==, VMAUG_S_OK);
    g_assert_cmpmem(g_bytes_get_data(out, NULL), g_bytes_get_size(out),
                    "2048", 4);

    /* The image restarts. */
    helper_client_free(f->c);
    f->c = helper_client_connect(f->socket, NULL);
    g_clear_pointer(&out, g_bytes_unref);
    g_assert_cmpuint(helper_invoke(f->c, "config", "get", "memory-mb", 9,
                                   &out), ==, VMAUG_S_OK);
    g_assert_cmpmem(g_bytes_get_data(out, NULL), g_bytes_get_size(out),
                    "2048", 4);
    g_assert_cmpuint(helper_invoke(f->c, "config", "pending", "memory-mb", 9,
                                   NULL), ==, VMAUG_S_NOT_FOUND);
}

static void test_module_upgrade(Fixture *f, gconstpointer data)
{
    g_autoptr(GBytes) newer = module_package(f->keys->admin, "echo", "2.0");
    g_autoptr(GBytes) older = module_package(f->keys->admin, "echo", "0.5");
    g_autoptr(GBytes) tampered = test_flip_bit(newer,
                                               (g_bytes_get_size(newer) -
                                                3000) * 8);
    g_autoptr(GBytes) ev = NULL;
    struct vmaug_module_info info;

    upload_module(f, "upgrade", "1.0");
    upload_module(f, "echo", "1.0");
    /* Installing modules is granted only by name. */
    g_assert_cmpuint(helper_load(f->c, "upgrade", NULL, NULL), ==,
                     VMAUG_S_OK);
    g_assert_cmpuint(helper_invoke(f->c, "upgrade", "install",
                                   g_bytes_get_data(newer, NULL),
                                   g_bytes_get_size(newer), NULL), ==,
                     VMAUG_S_DENIED);
    g_assert_cmpuint(helper_query(f->c, "echo", NULL, &info), ==, VMAUG_S_OK);
    g_assert_cmpstr((const gchar *)info.ref.version, ==, "1.0");

    fixture_restart(f, "{\"grants\": {\"*\": [\"log\"], "
                    "\"upgrade\": [\"modules\", \"restart-image\"]}}");
    g_assert_cmpuint(helper_load(f->c, "upgrade", NULL, NULL), ==,
                     VMAUG_S_OK);
    g_assert_cmpuint(helper_invoke(f->c, "upgrade", "install",
                                   g_bytes_get_data(tampered, NULL),
                                   g_bytes_get_size(tampered), NULL), ==,
                     VMAUG_S_DENIED);
    g_assert_cmpuint(helper_invoke(f->c, "upgrade", "install",
                                   g_bytes_get_data(newer, NULL),
                                   g_bytes_get_size(newer), NULL), ==,
                     VMAUG_S_OK);
    ev = helper_client_wait_event(f->c, VMAUG_EVENT_RESTART_REQUESTED, 5000);
    g_assert_nonnull(ev);
    g_assert_cmpuint(helper_query(f->c, "echo", NULL, &info), ==, VMAUG_S_OK);
    g_assert_cmpstr((const gchar *)info.ref.version, ==, "2.0");
    g_assert_cmpuint(helper_invoke(f->c, "upgrade", "install",
                                   g_bytes_get_data(older, NULL),
                                   g_bytes_get_size(older), NULL), ==,
                     VMAUG_S_DENIED);
    g_assert_cmpuint(helper_invoke(f->c, "upgrade", "install",
                                   g_bytes_get_data(newer, NULL),
                                   g_bytes_get_size(newer), NULL), ==,
                     VMAUG_S_EXISTS);
}

static void write_file(const gchar *path, const gchar *text)
{
    g_assert_true(g_file_set_contents(path, text, -1, NULL));
}

static void config_set(Fixture *f, const gchar *module, const gchar *key,
                       const gchar *value)
{
    struct vmaug_config_ref cref = { 0 };
    g_auto(HelperReply) r = { 0 };

    g_strlcpy((gchar *)cref.module, module, sizeof(cref.module));
    g_strlcpy((gchar *)cref.key, key, sizeof(cref.key));
    g_assert_true(helper_client_call(f->c, VMAUG_OP_CONFIG_SET, &cref,
                                     sizeof(cref), value, strlen(value), &r));
    g_assert_cmpuint(r.status, ==, VMAUG_S_OK);
}

static void test_module_scanner(Fixture *f, gconstpointer data)
{
    g_autofree gchar *root = g_build_filename(f->keys->dir, "share", NULL);
    g_autofree gchar *bad = g_build_filename(root, "bad.bin", NULL);
    g_autofree gchar *clean = g_build_filename(root, "clean.txt", NULL);
    g_autofree gchar *secret = g_build_filename(f->keys->dir, "secret.txt",
                                                NULL);
    g_autofree gchar *link = g_build_filename(root, "link", NULL);
    g_autofree gchar *policy = NULL;
    g_autofree gchar *paths = NULL;
    g_autofree gchar *found = NULL;
    g_autofree gchar *want = NULL;
    g_autoptr(GBytes) out = NULL;
    g_autoptr(GBytes) ev = NULL;

    g_assert_cmpint(g_mkdir(root, 0700), ==, 0);
    write_file(bad, "header EVIL-PATTERN trailer");
    write_file(clean, "nothing to see");
    write_file(secret, "EVIL-PATTERN outside the granted root");
    g_assert_cmpint(symlink(secret, link), ==, 0);
    policy = g_strdup_printf("{\"grants\": {\"*\": [\"log\", \"config\", "
                             "\"events\"], \"scanner\": [\"host-read\"]}, "
                             "\"read_roots\": {\"scanner\": [\"%s\"]}}",
                             root);
    fixture_restart(f, policy);
    upload_module(f, "scanner", "1.0");
    paths = g_strdup_printf("%s\n%s\n%s", root, secret, link);
    config_set(f, "scanner", "paths", paths);
    /* "EVIL-PATTERN" */
    config_set(f, "scanner", "signatures",
               "Evil:4556494c2d5041545445524e\nbroken:zz\n");
    g_assert_cmpuint(helper_load(f->c, "scanner", NULL, NULL), ==,
                     VMAUG_S_OK);
    g_assert_cmpuint(helper_invoke(f->c, "scanner", "scan", NULL, 0, &out),
                     ==, VMAUG_S_OK);
    found = g_strndup(g_bytes_get_data(out, NULL), g_bytes_get_size(out));
    g_test_message("findings:\n%s", found);
    want = g_strdup_printf("%s: Evil\n", bad);
    g_assert_nonnull(strstr(found, want));
    g_assert_null(strstr(found, "clean.txt"));
    /* Outside the granted root, or through a symlink: not readable. */
    g_clear_pointer(&want, g_free);
    want = g_strdup_printf("%s: (not readable)\n", secret);
    g_assert_nonnull(strstr(found, want));
    g_clear_pointer(&want, g_free);
    want = g_strdup_printf("%s: (not readable)\n", link);
    g_assert_nonnull(strstr(found, want));
    ev = helper_client_wait_event(f->c, VMAUG_EVENT_MODULE_MESSAGE, 5000);
    g_assert_nonnull(ev);
}

/* ---- A crashed helper is restarted; QEMU's side just reconnects ---- */

static GPid child_of(GPid pid)
{
    g_autofree gchar *path = g_strdup_printf("/proc/%d/task/%d/children",
                                             pid, pid);
    g_autofree gchar *text = NULL;
    gint64 deadline = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;

    while (g_get_monotonic_time() < deadline) {
        g_clear_pointer(&text, g_free);
        if (g_file_get_contents(path, &text, NULL, NULL) &&
            g_ascii_isdigit(text[0])) {
            return (GPid)g_ascii_strtoll(text, NULL, 10);
        }
        g_usleep(10000);
    }
    g_assert_not_reached();
}

static void test_supervise(Fixture *f, gconstpointer data)
{
    static const gchar *const args[] = { "--supervise", NULL };
    GPid worker, worker2;
    g_autoptr(GBytes) out = NULL;

    /* Replace the fixture's helper with a supervised one. */
    helper_client_free(f->c);
    helper_kill(f->pid);
    fixture_start(f, args);
    upload_module(f, "echo", "1.0");
    g_assert_cmpuint(helper_load(f->c, "echo", NULL, NULL), ==, VMAUG_S_OK);

    worker = child_of(f->pid);
    g_assert_cmpint(kill(worker, SIGKILL), ==, 0);
    g_assert_true(helper_client_closed(f->c, 5000));
    helper_client_free(f->c);
    /* As QEMU's reconnect-ms does. */
    f->c = helper_client_connect(f->socket, NULL);
    worker2 = child_of(f->pid);
    g_assert_cmpint(worker2, !=, worker);
    g_assert_cmpuint(helper_load(f->c, "echo", NULL, NULL), ==, VMAUG_S_OK);
    g_assert_cmpuint(helper_invoke(f->c, "echo", "echo", "back", 4, &out),
                     ==, VMAUG_S_OK);
    g_assert_cmpmem(g_bytes_get_data(out, NULL), g_bytes_get_size(out),
                    "back", 4);
}

#define ADD(path, fn) \
    g_test_add(path, Fixture, NULL, fixture_setup, fn, fixture_teardown)

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    ADD("/helper/upload-load-invoke", test_upload_load_invoke);
    ADD("/helper/printer-swap-rollback", test_printer_swap_rollback);
    ADD("/helper/kv-config", test_kv_config);
    ADD("/helper/register-list", test_register_list);
    ADD("/helper/several-devices", test_several_devices);
    ADD("/helper/hostile-device", test_hostile_device);
    ADD("/helper/cancel", test_cancel);
    ADD("/helper/allowed-store", test_allowed_store);
    ADD("/helper/tamper-upload", test_tamper_upload);
    ADD("/helper/escape", test_escape);
    ADD("/helper/supervise", test_supervise);
    ADD("/helper/module/ui", test_module_ui);
    ADD("/helper/module/config", test_module_config);
    ADD("/helper/module/upgrade", test_module_upgrade);
    ADD("/helper/module/scanner", test_module_scanner);
    return g_test_run();
}
