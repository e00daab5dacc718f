/*
 * vmaugment-helper driven over its socket exactly as the QEMU device
 * drives it: uploads, loads, invocations, version swaps, rollback,
 * configuration, several devices, hostile devices, a tamper corpus over
 * the upload path and a sandbox-escape corpus of signed hostile modules.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gio/gio.h>
#include <glib-unix.h>
#include <glib/gstdio.h>

#include "helper-client.h"
#include "test-common.h"
#include "vm-area.h"
#include "vmaugment-module.h"

typedef HelperFixture Fixture;

/* The helper, with the repository tool for image starts, and its first
 * client connected. */
static void fixture_start(Fixture *f, const gchar *const *extra)
{
    const gchar *const base[] = {
        "--repository-tool", test_env("VMAUG_REPO_TOOL"), NULL
    };

    helper_fixture_start(f, base, extra);
    f->c = helper_client_connect(f->socket, NULL);
}

static void fixture_setup(Fixture *f, gconstpointer data)
{
    static const gchar *const args[] = {
        "--call-timeout-ms", "1500", "--memory-mb", "128", NULL
    };

    helper_fixture_setup(f);
    fixture_start(f, args);
}

static void fixture_teardown(Fixture *f, gconstpointer data)
{
    helper_fixture_teardown(f);
}

static void upload_module(Fixture *f, const gchar *name, const gchar *version)
{
    g_autoptr(GBytes) pkg = test_module_package(f->keys->admin, name, version);

    g_assert_cmpuint(helper_upload(f->c, pkg, name, version, 64 * 1024), ==,
                     VMAUG_S_OK);
}

static gchar *audit_path(Fixture *f)
{
    return g_build_filename(f->store, "audit.log", NULL);
}

/* @rel in the area of the VM that has it (vm-area.h); the VMs of one
 * test never write the same files. */
static gchar *vm_file(Fixture *f, const gchar *rel)
{
    g_autofree gchar *vms = g_build_filename(f->store, "vms", NULL);
    g_autoptr(GDir) d = g_dir_open(vms, 0, NULL);
    const gchar *n;

    while (d != NULL && (n = g_dir_read_name(d)) != NULL) {
        gchar *p = g_build_filename(vms, n, rel, NULL);

        if (g_file_test(p, G_FILE_TEST_EXISTS)) {
            return p;
        }
        g_free(p);
    }
    return g_build_filename(vms, "(nowhere)", rel, NULL);
}

/* The area of the fixture's image, whose name the helper derives from
 * its real path. */
static gchar *image_area(Fixture *f)
{
    g_autofree gchar *dir = realpath(f->images, NULL);
    g_autofree gchar *real = g_build_filename(dir, "disk.qcow2", NULL);
    g_autofree gchar *id = vmaug_vm_area_id_for_image(real);

    return g_build_filename(f->store, "vms", id, NULL);
}

/* The fixture's VM runs the image from now on, so that what it keeps
 * outlives its connection. */
static void fixture_use_image(Fixture *f)
{
    helper_client_free(f->c);
    f->c = helper_client_connect_image(f->socket, NULL, f->image);
}

/* The device's IMAGE_START, answered; returns the answer. */
static HelperDone *lifecycle_call(HelperClient *c, guint32 event,
                                  guint32 flags)
{
    static guint64 tag = 1000;
    HelperDone *d;

    helper_client_lifecycle(c, ++tag, event, flags);
    d = helper_client_wait_done(c, tag, 30000);
    g_assert_nonnull(d);
    g_assert_cmpuint(d->event, ==, event);
    return d;
}

static void image_start_ok(HelperClient *c)
{
    g_autoptr(HelperDone) d = lifecycle_call(c, VMAUG_EVENT_IMAGE_START, 0);

    g_assert_cmpstr(d->message, ==, "");
    g_assert_cmpuint(d->status, ==, VMAUG_S_OK);
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
    g_autofree gchar *name = g_strconcat("spool/", job, ".data", NULL);

    return vm_file(f, name);
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
    old_pkg = test_module_package(f->keys->admin, "printer", "0.9");
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
    fixture_use_image(f);
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
    fixture_use_image(f);
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
    fixture_use_image(f);
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

    /* Connecting loads nothing; the next start of the image loads what
     * it registered. */
    fixture_use_image(f);
    g_assert_null(helper_client_wait_event(f->c, VMAUG_EVENT_MODULE_LOADED,
                                           500));
    g_assert_cmpuint(helper_invoke(f->c, "echo", "echo", "a", 1, NULL), ==,
                     VMAUG_S_NOT_FOUND);
    image_start_ok(f->c);
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
    g_autoptr(GBytes) pkg = test_module_package(f->keys->admin, "echo", "1.0");
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
    g_autoptr(GBytes) good = test_module_package(f->keys->admin, "echo", "1.0");
    g_autoptr(GBytes) unknown = test_module_package(f->keys->stranger, "echo",
                                                    "1.0");
    g_autoptr(GBytes) expired = test_module_package(f->keys->expired, "echo",
                                                    "1.0");
    g_autoptr(GBytes) revoked = test_module_package(f->keys->revoked, "echo",
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

static void hostile_log(vmaug_host *h, int level, const char *message)
{
}

/*
 * The control for an escape attempt: @function of the hostile module run
 * in a child of this test, outside any sandbox.  Returns the function's
 * status, or -1 when the child ended without answering because execve
 * replaced it (with a program that exited 0).
 */
static gint hostile_unconfined(const gchar *function, const gchar *in)
{
    static const struct vmaug_host_api api = {
        .abi_version = VMAUG_MODULE_ABI_VERSION,
        .size = sizeof(struct vmaug_host_api),
        .log = hostile_log,
    };
    const struct vmaug_module *mod;
    void *so = dlopen(test_env("VMAUG_TEST_HOSTILE_SO"), RTLD_NOW | RTLD_LOCAL);
    gint32 status = -1;
    int fds[2];
    int ws;
    pid_t pid;

    g_assert_nonnull(so);
    mod = dlsym(so, VMAUG_MODULE_SYMBOL);
    g_assert_nonnull(mod);
    g_assert_true(g_unix_open_pipe(fds, FD_CLOEXEC, NULL));
    pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        gchar out[256];
        gsize out_len = 0;
        void *priv = NULL;
        gint32 st;

        if (mod->init(&api, NULL, &priv) != 0) {
            _exit(2);
        }
        st = mod->call(priv, function, in, in != NULL ? strlen(in) : 0, out,
                       sizeof(out), &out_len);
        _exit(write(fds[1], &st, sizeof(st)) == sizeof(st) ? 0 : 3);
    }
    close(fds[1]);
    if (read(fds[0], &status, sizeof(status)) != sizeof(status)) {
        status = -1;
    }
    close(fds[0]);
    g_assert_cmpint(waitpid(pid, &ws, 0), ==, pid);
    g_assert_true(WIFEXITED(ws));
    g_assert_cmpint(WEXITSTATUS(ws), ==, 0);
    dlclose(so);
    return status;
}

/* Whether a connection is waiting on listener @s. */
static gboolean listener_accepts(int s)
{
    int c = accept(s, NULL, NULL);

    if (c < 0) {
        g_assert_cmpint(errno, ==, EAGAIN);
        return FALSE;
    }
    close(c);
    return TRUE;
}

static gsize count_files(const gchar *path)
{
    g_autoptr(GDir) d = g_dir_open(path, 0, NULL);
    gsize n = 0;

    g_assert_nonnull(d);
    while (g_dir_read_name(d) != NULL) {
        n++;
    }
    return n;
}

/*
 * Each attempt and how the sandbox stops it (docs/sandbox.rst): a denied
 * system call or broker request answers DENIED with the step and errno the
 * module saw ("socket 13"); a forbidden system call kills the module with
 * SIGSYS, a protocol violation gets it SIGKILLed by the helper, and a hang
 * is cut off by the call timeout.  The helper's answer to a killed call
 * is "killed by signal N".
 */
typedef enum {
    ESCAPE_ERRNO,               /* DENIED, "step errno" */
    ESCAPE_SIGNAL,              /* MODULE_FAILED, killed by the signal */
    ESCAPE_TIMEOUT,             /* TIMEOUT, then killed */
} EscapeStop;

/* What the same function does outside the sandbox, where that is cheap to
 * show: the attempt is real, so its failure inside is the sandbox's. */
typedef enum {
    UNCONFINED_NOT_RUN,
    UNCONFINED_OK,              /* answers VMAUG_S_OK */
    UNCONFINED_EXEC,            /* the process image is replaced */
} EscapeControl;

static void test_escape(Fixture *f, gconstpointer data)
{
    static const struct {
        const gchar *function;
        EscapeStop stop;
        const gchar *step;      /* ESCAPE_ERRNO: the call that failed */
        int code;               /* its errno, or the signal */
        EscapeControl unconfined;
    } corpus[] = {
        /* No syscall outside the allowlist: killed, never ENOSYS. */
        { "execve", ESCAPE_SIGNAL, NULL, SIGSYS, UNCONFINED_EXEC },
        /* Files by path are denied by the filter (SC_DENY EACCES). */
        { "open", ESCAPE_ERRNO, "open", EACCES, UNCONFINED_OK },
        /* The broker refuses paths out of the state directory. */
        { "open-climb", ESCAPE_ERRNO, "state_open", EINVAL,
          UNCONFINED_NOT_RUN },
        { "open-absolute", ESCAPE_ERRNO, "state_open", EINVAL,
          UNCONFINED_NOT_RUN },
        /* No sockets (SC_DENY EACCES), with a listener that the same
         * code reaches unconfined. */
        { "connect", ESCAPE_ERRNO, "socket", EACCES, UNCONFINED_OK },
        { "ptrace", ESCAPE_SIGNAL, NULL, SIGSYS, UNCONFINED_OK },
        { "fork", ESCAPE_SIGNAL, NULL, SIGSYS, UNCONFINED_OK },
        /* RLIMIT_AS (--memory-mb 128); 8 GiB is not run unconfined. */
        { "alloc", ESCAPE_ERRNO, "malloc", ENOMEM, UNCONFINED_NOT_RUN },
        { "spin", ESCAPE_TIMEOUT, NULL, 0, UNCONFINED_NOT_RUN },
        /* Not a message: the helper closes the link and kills it. */
        { "garbage", ESCAPE_SIGNAL, NULL, SIGKILL, UNCONFINED_NOT_RUN },
        /* PROT_EXEC is outside the mmap rule: killed. */
        { "exec-memory", ESCAPE_SIGNAL, NULL, SIGSYS, UNCONFINED_OK },
        /* Budgets: 64 events per call, 1024 state entries (the test
         * fills the directory to 1000 first, so that the module's own
         * creations reach the bound within one call's time). */
        { "flood", ESCAPE_ERRNO, "post_event", EAGAIN, UNCONFINED_NOT_RUN },
        { "files", ESCAPE_ERRNO, "state_open", EDQUOT, UNCONFINED_NOT_RUN },
    };
    g_autoptr(GBytes) out = NULL;
    g_autofree gchar *state = NULL;
    g_autofree gchar *notes = NULL;
    g_autofree gchar *text = NULL;
    g_autofree gchar *port_text = NULL;
    guint16 port;
    int listener = test_listen_loopback(&port);

    port_text = g_strdup_printf("%u", port);
    upload_module(f, "hostile", "1.0");
    upload_module(f, "echo", "1.0");
    g_assert_cmpuint(helper_load(f->c, "echo", NULL, NULL), ==, VMAUG_S_OK);
    /* What it may do works: a file of its own, through the broker. */
    g_assert_cmpuint(helper_load(f->c, "hostile", NULL, NULL), ==,
                     VMAUG_S_OK);
    g_assert_cmpuint(helper_invoke(f->c, "hostile", "state", "mine", 4, NULL),
                     ==, VMAUG_S_DENIED);
    notes = vm_file(f, "state/hostile/notes.txt");
    g_assert_true(g_file_get_contents(notes, &text, NULL, NULL));
    g_assert_cmpstr(text, ==, "mine");
    state = g_path_get_dirname(notes);
    for (guint i = 0; i < G_N_ELEMENTS(corpus); i++) {
        const gchar *fn = corpus[i].function;
        const gchar *in = g_strcmp0(fn, "connect") == 0 ? port_text : NULL;
        struct vmaug_module_info info;
        g_autofree gchar *answer = NULL;
        g_autofree gchar *want = NULL;
        guint16 st;

        g_test_message("escape attempt: %s", fn);
        if (g_strcmp0(fn, "files") == 0) {
            for (guint k = count_files(state); k < 1000; k++) {
                g_autofree gchar *name = g_strdup_printf("%s/seed-%u", state,
                                                         k);

                g_assert_true(g_file_set_contents(name, "", 0, NULL));
            }
        }
        if (corpus[i].unconfined != UNCONFINED_NOT_RUN) {
            gint expect = corpus[i].unconfined == UNCONFINED_OK ?
                          VMAUG_S_OK : -1;

            g_assert_cmpint(hostile_unconfined(fn, in), ==, expect);
            if (in != NULL) {
                g_assert_true(listener_accepts(listener));
            }
        }
        g_assert_cmpuint(helper_load(f->c, "hostile", NULL, &info), ==,
                         VMAUG_S_OK);
        g_clear_pointer(&out, g_bytes_unref);
        st = helper_invoke(f->c, "hostile", fn, in,
                           in != NULL ? strlen(in) : 0, &out);
        answer = out != NULL ?
                 g_strndup(g_bytes_get_data(out, NULL),
                           g_bytes_get_size(out)) : g_strdup("");
        g_test_message("%s: status %u, \"%s\"", fn, st, answer);
        switch (corpus[i].stop) {
        case ESCAPE_ERRNO:
            want = g_strdup_printf("%s %d", corpus[i].step, corpus[i].code);
            g_assert_cmpuint(st, ==, VMAUG_S_DENIED);
            g_assert_cmpstr(answer, ==, want);
            break;
        case ESCAPE_SIGNAL:
            /* The number, whole: "killed by signal 31 (...)". */
            want = g_strdup_printf("killed by signal %d", corpus[i].code);
            g_assert_cmpuint(st, ==, VMAUG_S_MODULE_FAILED);
            g_assert_true(g_str_has_prefix(answer, want));
            g_assert_true(answer[strlen(want)] == '\0' ||
                          answer[strlen(want)] == ' ');
            break;
        case ESCAPE_TIMEOUT:
            g_assert_cmpuint(st, ==, VMAUG_S_TIMEOUT);
            g_assert_cmpstr(answer, ==, "module timed out");
            break;
        }
        if (in != NULL) {
            g_assert_false(listener_accepts(listener));
        }
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
    close(listener);
    /* The flood reached the VM only up to the call's budget of 64. */
    {
        guint n = 0;
        GBytes *ev;

        while ((ev = helper_client_wait_event(f->c,
                                              VMAUG_EVENT_MODULE_MESSAGE,
                                              200)) != NULL) {
            g_bytes_unref(ev);
            n++;
        }
        g_assert_cmpuint(n, ==, 64);
    }
    /* The state directory stopped at 1024 entries, 24 of them the
     * module's own, counted on the host. */
    g_assert_cmpuint(count_files(state), ==, 1024);
    {
        g_autofree gchar *last = g_build_filename(state, "junk-23", NULL);
        g_autofree gchar *over = g_build_filename(state, "junk-24", NULL);

        g_assert_true(g_file_test(last, G_FILE_TEST_IS_REGULAR));
        g_assert_false(g_file_test(over, G_FILE_TEST_EXISTS));
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
    g_autofree gchar *name = g_strconcat("ui/", module, ".json", NULL);
    g_autofree gchar *path = vm_file(f, name);
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
    fixture_use_image(f);
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
    fixture_use_image(f);
    image_start_ok(f->c);
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
    g_autoptr(GBytes) newer = test_module_package(f->keys->admin, "echo",
                                                  "2.0");
    g_autoptr(GBytes) older = test_module_package(f->keys->admin, "echo",
                                                  "0.5");
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
    /* Who asked, and for what. */
    {
        const struct virtio_vmaugment_event *e = g_bytes_get_data(ev, NULL);
        struct vmaug_restart rs;

        g_assert_cmpuint(GUINT32_FROM_LE(e->len), ==, sizeof(rs));
        memcpy(&rs, e + 1, sizeof(rs));
        g_assert_cmpstr((const gchar *)rs.ref.name, ==, "upgrade");
        g_assert_cmpuint(GUINT32_FROM_LE(rs.what), ==, VMAUG_RESTART_IMAGE);
    }
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
    g_assert_cmpuint(helper_load(f->c, "scanner", NULL, NULL), ==,
                     VMAUG_S_OK);
    paths = g_strdup_printf("%s\n%s\n%s", root, secret, link);
    config_set(f, "scanner", "paths", paths);
    /* "EVIL-PATTERN" */
    config_set(f, "scanner", "signatures",
               "Evil:4556494c2d5041545445524e\nbroken:zz\n");
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

/* ---- Images, registrations and lifecycle events ---- */

#define ALL_LIFECYCLE VMAUG_EVENT_LIFECYCLE_MASK
#define ADMIN_TAG (G_GUINT64_CONSTANT(1) << 63)

/* A call with a guest tag, or with the host owner's (bit 63). */
static guint16 call_as(HelperClient *c, gboolean admin, guint16 op,
                       const void *a, gsize alen, GBytes **out)
{
    g_auto(HelperReply) r = { 0 };
    guint64 saved = c->next_tag;

    if (admin) {
        c->next_tag |= ADMIN_TAG;
    }
    g_assert_true(helper_client_call(c, op, a, alen, NULL, 0, &r));
    c->next_tag = saved + 1;
    if (out != NULL) {
        *out = g_steal_pointer(&r.data);
    }
    return r.status;
}

static guint16 register_as(HelperClient *c, gboolean admin, const gchar *name,
                           const gchar *version, guint32 events,
                           guint32 flags)
{
    struct vmaug_registration reg = { 0 };

    helper_ref(&reg.ref, name, version);
    reg.events = GUINT32_TO_LE(events);
    reg.flags = GUINT32_TO_LE(flags);
    return call_as(c, admin, VMAUG_OP_REGISTER, &reg, sizeof(reg), NULL);
}

/* LIST @what from @start: the status, and the count, total and entries. */
static guint16 list_as(HelperClient *c, gboolean admin, guint32 what,
                       guint32 start, struct vmaug_list_resp *resp,
                       GBytes **entries)
{
    struct vmaug_list_req req = {
        .what = GUINT32_TO_LE(what),
        .start = GUINT32_TO_LE(start),
    };
    g_autoptr(GBytes) out = NULL;
    guint16 status = call_as(c, admin, VMAUG_OP_LIST, &req, sizeof(req),
                             &out);

    if (status != VMAUG_S_OK) {
        return status;
    }
    g_assert_cmpuint(g_bytes_get_size(out), >=, sizeof(*resp));
    g_assert_cmpuint(g_bytes_get_size(out), <=, VMAUG_MAX_RESP_PAYLOAD);
    memcpy(resp, g_bytes_get_data(out, NULL), sizeof(*resp));
    resp->count = GUINT32_FROM_LE(resp->count);
    resp->total = GUINT32_FROM_LE(resp->total);
    if (entries != NULL) {
        *entries = g_bytes_new_from_bytes(out, sizeof(*resp),
                                          g_bytes_get_size(out) -
                                          sizeof(*resp));
    }
    return status;
}

static guint32 count_regs(HelperClient *c)
{
    struct vmaug_list_resp resp;

    g_assert_cmpuint(list_as(c, FALSE, VMAUG_LIST_REGISTRATIONS, 0, &resp,
                             NULL), ==, VMAUG_S_OK);
    return resp.count;
}

static void test_image_hello(Fixture *f, gconstpointer data)
{
    g_autofree gchar *elsewhere = g_build_filename(f->keys->dir, "elsewhere",
                                                   NULL);
    g_autofree gchar *outside = g_build_filename(elsewhere, "disk.qcow2",
                                                 NULL);
    g_autofree gchar *link = g_build_filename(f->images, "link", NULL);
    g_autofree gchar *via_link = g_build_filename(link, "disk.qcow2", NULL);
    g_autofree gchar *missing = g_build_filename(f->images, "no", "d.qcow2",
                                                 NULL);
    g_autofree gchar *sidecar = g_strconcat(f->image, ".vmaugment.json",
                                            NULL);
    const gchar *refused[] = { outside, via_link, missing, "disk.qcow2",
                               "/", NULL };
    g_autoptr(HelperClient) c = NULL;

    g_assert_cmpint(g_mkdir(elsewhere, 0700), ==, 0);
    g_assert_cmpint(symlink(elsewhere, link), ==, 0);
    /* An image in an --image-dir is accepted... */
    c = helper_client_connect_image(f->socket, NULL, f->image);
    g_assert_cmpuint(count_regs(c), ==, 0);
    g_clear_pointer(&c, helper_client_free);
    /* ...anything else, and the device is refused. */
    for (guint i = 0; refused[i] != NULL; i++) {
        g_autoptr(HelperClient) bad =
            helper_client_connect_image(f->socket, NULL, refused[i]);

        g_test_message("image %s", refused[i]);
        g_assert_true(helper_client_closed(bad, 5000));
    }
    /* A sidecar that names another image is used for nothing. */
    g_assert_true(g_file_set_contents(sidecar,
        "{\"format\": \"vmaugment-registrations\", \"format-version\": 1,"
        " \"image\": \"other.qcow2\", \"image-id\":"
        " \"0b7c5b4e-2f6a-4c1e-9a3d-5e8f7a6b1c2d\", \"registrations\": []}",
        -1, NULL));
    c = helper_client_connect_image(f->socket, NULL, f->image);
    g_assert_cmpuint(register_as(c, FALSE, "echo", NULL, 0, 0), ==,
                     VMAUG_S_INVALID);
    {
        g_autoptr(HelperDone) d = lifecycle_call(c, VMAUG_EVENT_IMAGE_START,
                                                 0);

        g_assert_cmpuint(d->status, !=, VMAUG_S_OK);
        g_assert_nonnull(strstr(d->message, "other.qcow2"));
    }
    /* The helper still serves the others. */
    g_assert_cmpuint(count_regs(f->c), ==, 0);
}

static void test_image_register(Fixture *f, gconstpointer data)
{
    g_autofree gchar *sidecar = g_strconcat(f->image, ".vmaugment.json",
                                            NULL);
    g_autofree gchar *store_regs = g_build_filename(f->store,
                                                    "registrations.json",
                                                    NULL);
    g_autofree gchar *text = NULL;
    g_autoptr(HelperClient) c = NULL;

    c = helper_client_connect_image(f->socket, NULL, f->image);
    /* By the guest and by the host owner (an admin tag). */
    g_assert_cmpuint(register_as(c, FALSE, "echo", "1.0",
                                 VMAUG_EVENT_MASK(VMAUG_EVENT_IMAGE_START),
                                 VMAUG_REG_F_REQUIRED), ==, VMAUG_S_OK);
    g_assert_cmpuint(register_as(c, TRUE, "kv", NULL, 0, 0), ==, VMAUG_S_OK);
    /* Only lifecycle events can be registered. */
    g_assert_cmpuint(register_as(c, FALSE, "kv", NULL,
                                 VMAUG_EVENT_MASK(VMAUG_EVENT_MODULE_LOADED),
                                 0), ==, VMAUG_S_INVALID);
    g_assert_cmpuint(count_regs(c), ==, 2);
    /* Kept next to the image, not in the store. */
    g_assert_true(g_file_get_contents(sidecar, &text, NULL, NULL));
    g_assert_nonnull(strstr(text, "\"image\" : \"disk.qcow2\""));
    g_assert_nonnull(strstr(text, "\"echo\""));
    g_assert_nonnull(strstr(text, "\"image-start\""));
    g_assert_false(g_file_test(store_regs, G_FILE_TEST_EXISTS));
    g_assert_cmpuint(count_regs(f->c), ==, 0);

    /* A new helper finds them again. */
    g_clear_pointer(&c, helper_client_free);
    helper_client_free(f->c);
    helper_kill(f->pid);
    fixture_start(f, NULL);
    c = helper_client_connect_image(f->socket, NULL, f->image);
    g_assert_cmpuint(count_regs(c), ==, 2);
    {
        struct vmaug_list_resp resp;
        g_autoptr(GBytes) entries = NULL;
        struct vmaug_registration r;

        g_assert_cmpuint(list_as(c, TRUE, VMAUG_LIST_REGISTRATIONS, 0, &resp,
                                 &entries), ==, VMAUG_S_OK);
        g_assert_cmpuint(g_bytes_get_size(entries), ==, 2 * sizeof(r));
        memcpy(&r, g_bytes_get_data(entries, NULL), sizeof(r));
        g_assert_cmpstr((const gchar *)r.ref.name, ==, "echo");
        g_assert_cmpstr((const gchar *)r.ref.version, ==, "1.0");
        g_assert_cmphex(GUINT32_FROM_LE(r.flags), ==, VMAUG_REG_F_REQUIRED);
        g_assert_cmphex(GUINT32_FROM_LE(r.events), ==,
                        VMAUG_EVENT_MASK(VMAUG_EVENT_IMAGE_START));
    }
    {
        struct vmaug_module_ref ref;

        helper_ref(&ref, "kv", NULL);
        g_assert_cmpuint(call_as(c, TRUE, VMAUG_OP_UNREGISTER, &ref,
                                 sizeof(ref), NULL), ==, VMAUG_S_OK);
        g_assert_cmpuint(call_as(c, FALSE, VMAUG_OP_UNREGISTER, &ref,
                                 sizeof(ref), NULL), ==, VMAUG_S_NOT_FOUND);
    }
    g_assert_cmpuint(count_regs(c), ==, 1);
}

static gchar *journal_file(Fixture *f)
{
    g_autofree gchar *area = image_area(f);

    return g_build_filename(area, "state", "journal", "journal.log", NULL);
}

/* The journal's lines: event names, and their times in @times. */
static GPtrArray *journal_parse(const gchar *text, GArray *times)
{
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    GPtrArray *events = g_ptr_array_new_with_free_func(g_free);

    for (guint i = 0; lines[i] != NULL; i++) {
        g_auto(GStrv) parts = NULL;
        gdouble t;

        if (*lines[i] == '\0') {
            continue;
        }
        parts = g_strsplit(lines[i], " ", 2);
        g_assert_nonnull(parts[1]);
        g_ptr_array_add(events, g_strdup(parts[0]));
        t = g_ascii_strtod(parts[1], NULL);
        g_array_append_val(times, t);
    }
    return events;
}

/* The time (seconds) of the audit record of @action by module @module. */
static gdouble audit_time(Fixture *f, const gchar *action,
                          const gchar *module)
{
    g_autofree gchar *path = audit_path(f);
    g_autofree gchar *text = NULL;
    g_auto(GStrv) lines = NULL;
    g_autofree gchar *a = g_strdup_printf("\"action\":\"%s\"", action);
    g_autofree gchar *m = g_strdup_printf("\"module\":\"%s\"", module);

    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    lines = g_strsplit(text, "\n", -1);
    for (guint i = 0; lines[i] != NULL; i++) {
        if (strstr(lines[i], a) && strstr(lines[i], m) &&
            strstr(lines[i], "\"accept\"")) {
            const gchar *t = strstr(lines[i], "\"time\":\"");
            g_autofree gchar *iso = NULL;
            g_autoptr(GDateTime) dt = NULL;

            g_assert_nonnull(t);
            iso = g_strndup(t + 8, strchr(t + 8, '"') - (t + 8));
            dt = g_date_time_new_from_iso8601(iso, NULL);
            g_assert_nonnull(dt);
            /* Microseconds, so that handlers can be ordered. */
            g_assert_nonnull(strchr(iso, '.'));
            return g_date_time_to_unix(dt) +
                   g_date_time_get_microsecond(dt) / 1e6;
        }
    }
    g_test_message("no %s of %s in the audit log", action, module);
    g_assert_not_reached();
    return 0;
}

static void test_lifecycle_journal(Fixture *f, gconstpointer data)
{
    static const gchar *const order[] = {
        "host-start", "image-start", "pause", "resume", "image-stop",
        "host-stop", NULL
    };
    g_autoptr(HelperClient) c = NULL;
    g_autoptr(HelperDone) d = NULL;
    g_autoptr(GBytes) out = NULL;
    g_autoptr(GArray) times = g_array_new(FALSE, FALSE, sizeof(gdouble));
    g_autoptr(GPtrArray) events = NULL;
    g_autofree gchar *text = NULL;
    g_autofree gchar *path = journal_file(f);
    gdouble before, answered, audited;

    upload_module(f, "journal", "1.0");
    upload_module(f, "echo", "1.0");
    c = helper_client_connect_image(f->socket, NULL, f->image);
    g_assert_cmpuint(register_as(c, FALSE, "journal", "1.0", ALL_LIFECYCLE,
                                 VMAUG_REG_F_REQUIRED), ==, VMAUG_S_OK);
    /* Loaded at image start though it handles no event. */
    g_assert_cmpuint(register_as(c, FALSE, "echo", NULL, 0, 0), ==,
                     VMAUG_S_OK);
    g_clear_pointer(&c, helper_client_free);

    /* The VM starts again. */
    c = helper_client_connect_image(f->socket, NULL, f->image);
    g_assert_cmpuint(helper_invoke(c, "journal", "history", NULL, 0, NULL),
                     ==, VMAUG_S_NOT_FOUND);
    before = g_get_real_time() / 1e6;
    helper_client_lifecycle(c, 1, VMAUG_EVENT_HOST_START, 0);
    d = lifecycle_call(c, VMAUG_EVENT_IMAGE_START, 0);
    answered = g_get_real_time() / 1e6;
    g_assert_cmpstr(d->message, ==, "");
    g_assert_cmpuint(d->status, ==, VMAUG_S_OK);
    /* Both handlers ran, in order, before the answer. */
    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    events = journal_parse(text, times);
    g_assert_cmpuint(events->len, ==, 2);
    g_assert_cmpstr(g_ptr_array_index(events, 0), ==, "host-start");
    g_assert_cmpstr(g_ptr_array_index(events, 1), ==, "image-start");
    g_assert_cmpfloat(g_array_index(times, gdouble, 0), >=, before - 0.001);
    g_assert_cmpfloat(g_array_index(times, gdouble, 0), <=,
                      g_array_index(times, gdouble, 1));
    g_assert_cmpfloat(g_array_index(times, gdouble, 1), <=, answered);
    /* The audit log records the handler after it returned, before the
     * answer. */
    audited = audit_time(f, "lifecycle-image-start", "journal");
    g_assert_cmpfloat(audited, >=, g_array_index(times, gdouble, 1) - 0.001);
    g_assert_cmpfloat(audited, <=, answered + 0.001);
    /* The module's own view through the guest's call. */
    g_assert_cmpuint(helper_invoke(c, "journal", "history", NULL, 0, &out),
                     ==, VMAUG_S_OK);
    g_assert_cmpmem(g_bytes_get_data(out, NULL), g_bytes_get_size(out),
                    text, strlen(text));
    g_assert_cmpuint(helper_invoke(c, "echo", "echo", "x", 1, NULL), ==,
                     VMAUG_S_OK);

    /* Pause, resume, then the VM stops and QEMU goes away at once. */
    helper_client_lifecycle(c, 2, VMAUG_EVENT_PAUSE, 0);
    helper_client_lifecycle(c, 3, VMAUG_EVENT_RESUME, 0);
    helper_client_lifecycle(c, 4, VMAUG_EVENT_IMAGE_STOP, 0);
    helper_client_lifecycle(c, 5, VMAUG_EVENT_HOST_STOP, 0);
    g_clear_pointer(&c, helper_client_free);
    for (guint i = 0; i < 100; i++) {
        g_clear_pointer(&text, g_free);
        g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
        if (strstr(text, "host-stop") != NULL) {
            break;
        }
        g_usleep(50000);
    }
    g_clear_pointer(&events, g_ptr_array_unref);
    g_array_set_size(times, 0);
    events = journal_parse(text, times);
    for (guint i = 0; order[i] != NULL; i++) {
        g_assert_cmpuint(i, <, events->len);
        g_assert_cmpstr(g_ptr_array_index(events, i), ==, order[i]);
        if (i > 0) {
            g_assert_cmpfloat(g_array_index(times, gdouble, i - 1), <=,
                              g_array_index(times, gdouble, i));
        }
    }
    g_assert_cmpuint(events->len, ==, g_strv_length((gchar **)order));
    /* Wait for the record written after the handler returned. */
    for (guint i = 0; i < 100; i++) {
        g_autofree gchar *audit = audit_path(f);

        if (test_count_lines(audit, "lifecycle-host-stop") > 0) {
            break;
        }
        g_usleep(50000);
    }
    audited = audit_time(f, "lifecycle-host-stop", "journal");
    g_assert_cmpfloat(audited, >=, g_array_index(times, gdouble, 5) - 0.001);
}

static void test_lifecycle_reconnect(Fixture *f, gconstpointer data)
{
    g_autoptr(HelperClient) c = NULL;
    g_autoptr(HelperDone) d = NULL;
    g_autoptr(GBytes) out = NULL;

    upload_module(f, "journal", "1.0");
    c = helper_client_connect_image(f->socket, NULL, f->image);
    g_assert_cmpuint(register_as(c, FALSE, "journal", NULL, ALL_LIFECYCLE,
                                 0), ==, VMAUG_S_OK);
    /* The VM was running already: load, but run no handler again. */
    d = lifecycle_call(c, VMAUG_EVENT_IMAGE_START,
                       VMAUG_LIFECYCLE_F_RECONNECT);
    g_assert_cmpuint(d->status, ==, VMAUG_S_OK);
    g_assert_cmpuint(helper_invoke(c, "journal", "history", NULL, 0, &out),
                     ==, VMAUG_S_OK);
    g_assert_cmpuint(g_bytes_get_size(out), ==, 0);
    /* Malformed lifecycle messages end the connection. */
    {
        struct vmaug_host_lifecycle bad = {
            .event = GUINT32_TO_LE(VMAUG_EVENT_MODULE_LOADED),
        };

        helper_client_send_msg(c, VMAUG_HOST_LIFECYCLE, 9, &bad,
                               sizeof(bad));
        g_assert_true(helper_client_closed(c, 5000));
    }
    /* So does a flood of events while their handlers run. */
    g_clear_pointer(&c, helper_client_free);
    g_clear_pointer(&d, helper_done_free);
    c = helper_client_connect_image(f->socket, NULL, f->image);
    d = lifecycle_call(c, VMAUG_EVENT_IMAGE_START,
                       VMAUG_LIFECYCLE_F_RECONNECT);
    g_assert_cmpuint(d->status, ==, VMAUG_S_OK);
    {
        g_autoptr(GByteArray) burst = g_byte_array_new();
        struct vmaug_host_msg msg = {
            .magic = GUINT32_TO_LE(VMAUG_HOST_MAGIC),
            .type = GUINT16_TO_LE(VMAUG_HOST_LIFECYCLE),
            .len = GUINT32_TO_LE(sizeof(struct vmaug_host_lifecycle)),
        };
        struct vmaug_host_lifecycle pause = {
            .event = GUINT32_TO_LE(VMAUG_EVENT_PAUSE),
        };

        for (guint i = 0; i < 200; i++) {
            g_byte_array_append(burst, (const guint8 *)&msg, sizeof(msg));
            g_byte_array_append(burst, (const guint8 *)&pause,
                                sizeof(pause));
        }
        g_assert_true(helper_client_send_raw(c, burst->data, burst->len));
        g_assert_true(helper_client_closed(c, 5000));
    }
}

/* The MODULE_REFUSED event for @name: its reason. */
static gchar *wait_refused(HelperClient *c, const gchar *name)
{
    g_autoptr(GBytes) ev = helper_client_wait_event(
        c, VMAUG_EVENT_MODULE_REFUSED, 5000);
    const struct virtio_vmaugment_event *e;
    struct vmaug_module_ref ref;
    gsize len;

    g_assert_nonnull(ev);
    e = g_bytes_get_data(ev, NULL);
    len = GUINT32_FROM_LE(e->len);
    g_assert_cmpuint(len, >, sizeof(ref));
    memcpy(&ref, e + 1, sizeof(ref));
    g_assert_cmpstr((const gchar *)ref.name, ==, name);
    return g_strndup((const gchar *)(e + 1) + sizeof(ref),
                     len - sizeof(ref));
}

/* A loopback https:// URL where nothing listens. */
static gchar *closed_url(void)
{
    g_autoptr(GSocket) sock = g_socket_new(G_SOCKET_FAMILY_IPV4,
                                           G_SOCKET_TYPE_STREAM,
                                           G_SOCKET_PROTOCOL_TCP, NULL);
    g_autoptr(GInetAddress) lo = g_inet_address_new_loopback(
        G_SOCKET_FAMILY_IPV4);
    g_autoptr(GSocketAddress) addr = g_inet_socket_address_new(lo, 0);
    g_autoptr(GSocketAddress) bound = NULL;
    gchar *url;

    /* A port that was free a moment ago, and is closed again. */
    g_assert_true(g_socket_bind(sock, addr, FALSE, NULL));
    bound = g_socket_get_local_address(sock, NULL);
    url = g_strdup_printf("https://127.0.0.1:%u/",
                          g_inet_socket_address_get_port(
                              G_INET_SOCKET_ADDRESS(bound)));
    g_socket_close(sock, NULL);
    return url;
}

static void test_lifecycle_missing(Fixture *f, gconstpointer data)
{
    g_autoptr(HelperClient) c = NULL;
    g_autoptr(HelperDone) d = NULL;
    g_autofree gchar *reason = NULL;
    g_autofree gchar *url = closed_url();
    g_autofree gchar *audit = audit_path(f);
    g_autofree gchar *downloads = g_build_filename(f->store, "repository",
                                                   "downloads", NULL);
    g_autoptr(GDir) dir = NULL;
    const gchar *args[] = { "--repository", url, NULL };

    c = helper_client_connect_image(f->socket, NULL, f->image);
    g_assert_cmpuint(register_as(c, FALSE, "scanner", "1.0",
                                 VMAUG_EVENT_MASK(VMAUG_EVENT_IMAGE_START),
                                 VMAUG_REG_F_REQUIRED), ==, VMAUG_S_OK);
    /* Required, missing, no repository: the image does not start. */
    d = lifecycle_call(c, VMAUG_EVENT_IMAGE_START, 0);
    g_assert_cmpuint(d->status, !=, VMAUG_S_OK);
    g_assert_cmpstr(d->message, ==, "required module scanner 1.0 "
                    "unavailable: not in the store and no repository is "
                    "configured");
    reason = wait_refused(c, "scanner");
    g_assert_nonnull(strstr(reason, "no repository"));
    g_clear_pointer(&d, helper_done_free);

    /* Optional and missing: it starts, and the owner can see why the
     * module is not there. */
    g_assert_cmpuint(register_as(c, FALSE, "scanner", "1.0",
                                 VMAUG_EVENT_MASK(VMAUG_EVENT_IMAGE_START),
                                 0), ==, VMAUG_S_OK);
    d = lifecycle_call(c, VMAUG_EVENT_IMAGE_START, 0);
    g_assert_cmpuint(d->status, ==, VMAUG_S_OK);
    g_clear_pointer(&d, helper_done_free);
    g_assert_cmpuint(test_count_lines(audit, "lifecycle-image-start"), ==, 2);

    /* A repository that does not answer. */
    g_clear_pointer(&c, helper_client_free);
    helper_client_free(f->c);
    helper_kill(f->pid);
    fixture_start(f, args);
    c = helper_client_connect_image(f->socket, NULL, f->image);
    g_assert_cmpuint(register_as(c, FALSE, "scanner", "1.0",
                                 VMAUG_EVENT_MASK(VMAUG_EVENT_IMAGE_START),
                                 VMAUG_REG_F_REQUIRED), ==, VMAUG_S_OK);
    d = lifecycle_call(c, VMAUG_EVENT_IMAGE_START, 0);
    g_test_message("%s", d->message);
    g_assert_cmpuint(d->status, !=, VMAUG_S_OK);
    g_assert_true(g_str_has_prefix(d->message, "required module scanner "
                                   "1.0 unavailable: not in the store and "
                                   "repository "));
    g_assert_nonnull(strstr(d->message, url));
    g_assert_null(strchr(d->message, '\n'));
    g_clear_pointer(&reason, g_free);
    reason = wait_refused(c, "scanner");
    g_assert_nonnull(strstr(reason, url));
    /* Nothing of the attempt is left. */
    dir = g_dir_open(downloads, 0, NULL);
    g_assert_nonnull(dir);
    g_assert_null(g_dir_read_name(dir));
    g_assert_cmpuint(helper_query(c, "scanner", NULL, NULL), ==,
                     VMAUG_S_NOT_FOUND);
}

static void test_lifecycle_repository(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autofree gchar *tls = g_build_filename(f->keys->dir, "tls", NULL);
    g_autofree gchar *www = g_build_filename(f->keys->dir, "www", NULL);
    g_autofree gchar *repo = g_build_filename(www, "repo", NULL);
    g_autofree gchar *key = g_build_filename(tls, "admin.key", NULL);
    g_autofree gchar *cert = g_build_filename(tls, "admin.crt", NULL);
    g_autofree gchar *pkg_path = g_build_filename(tls, "journal-1.0.vmod",
                                                  NULL);
    g_autofree gchar *srv_crt = g_build_filename(tls, "server.crt", NULL);
    g_autofree gchar *srv_key = g_build_filename(tls, "server.key", NULL);
    g_autofree gchar *ca = g_build_filename(tls, "ca.crt", NULL);
    g_autofree gchar *url = NULL;
    g_autofree gchar *line = NULL;
    g_autofree gchar *downloads = g_build_filename(f->store, "repository",
                                                   "downloads", NULL);
    g_autofree gchar *audit = audit_path(f);
    g_autofree gchar *echo_path = g_build_filename(tls, "echo-1.0.vmod",
                                                   NULL);
    g_autofree gchar *slow_url = NULL;
    g_autofree gchar *server_log = g_build_filename(tls, "server.log", NULL);
    g_autoptr(GBytes) pkg = NULL;
    g_autoptr(GBytes) echo_pkg = NULL;
    g_autoptr(GSubprocess) server = NULL;
    g_autoptr(GDataInputStream) server_out = NULL;
    g_autoptr(HelperClient) c = NULL;
    g_autoptr(HelperDone) d = NULL;
    g_autoptr(GBytes) out = NULL;
    g_autoptr(GDir) dir = NULL;

    /* A repository publishing journal 1.0, signed by the trusted admin,
     * behind TLS with a test CA. */
    g_assert_cmpint(g_mkdir_with_parents(repo, 0700), ==, 0);
    g_assert_cmpint(g_mkdir(tls, 0700), ==, 0);
    test_certtool(tls, "ca", "cn = \"Helper test CA\"\nca\n"
                  "cert_signing_key\nexpiration_days = 2\n", NULL);
    test_certtool(tls, "server", "cn = \"127.0.0.1\"\nip_address = "
                  "\"127.0.0.1\"\ntls_www_server\nsigning_key\n"
                  "encryption_key\nexpiration_days = 2\n", "ca");
    vmaug_trust_identity_save(f->keys->admin, key, cert, &error);
    g_assert_no_error(error);
    pkg = test_module_package(f->keys->admin, "journal", "1.0");
    g_assert_true(g_file_set_contents(pkg_path, g_bytes_get_data(pkg, NULL),
                                      g_bytes_get_size(pkg), NULL));
    echo_pkg = test_module_package(f->keys->admin, "echo", "1.0");
    g_assert_true(g_file_set_contents(echo_path,
                                      g_bytes_get_data(echo_pkg, NULL),
                                      g_bytes_get_size(echo_pkg), NULL));
    {
        const gchar *publish[] = {
            test_env("VMAUG_REPO_TOOL"), "publish", "--dir", repo, "--key", key,
            "--cert", cert, "--trust-dir", f->keys->trust_dir,
            "--expires-days", "1", pkg_path, echo_path, NULL
        };

        test_run(publish);
    }
    server = g_subprocess_new(G_SUBPROCESS_FLAGS_STDOUT_PIPE |
                              G_SUBPROCESS_FLAGS_STDIN_PIPE, &error,
                              test_env("VMAUG_PYTHON"),
                              test_env("VMAUG_REPO_SERVER"),
                              "--root", www, "--cert", srv_crt, "--key",
                              srv_key, "--log", server_log, NULL);
    g_assert_no_error(error);
    server_out = g_data_input_stream_new(
        g_subprocess_get_stdout_pipe(server));
    line = g_data_input_stream_read_line(server_out, NULL, NULL, &error);
    g_assert_no_error(error);
    g_assert_nonnull(line);
    url = g_strdup_printf("https://127.0.0.1:%d/ok/repo", atoi(line));
    /* The same files, from a server that stalls before a package's body
     * until the client leaves. */
    slow_url = g_strdup_printf("https://127.0.0.1:%d/slow/repo", atoi(line));

    helper_client_free(f->c);
    helper_kill(f->pid);
    {
        const gchar *args[] = { "--repository", url, "--repository-ca", ca,
                                NULL };

        fixture_start(f, args);
    }
    c = helper_client_connect_image(f->socket, NULL, f->image);
    g_assert_cmpuint(register_as(c, FALSE, "journal", "1.0", ALL_LIFECYCLE,
                                 VMAUG_REG_F_REQUIRED), ==, VMAUG_S_OK);
    g_assert_cmpuint(helper_query(c, "journal", NULL, NULL), ==,
                     VMAUG_S_NOT_FOUND);
    /* Missing at image start: fetched, verified, stored, loaded, run. */
    d = lifecycle_call(c, VMAUG_EVENT_IMAGE_START, 0);
    g_assert_cmpstr(d->message, ==, "");
    g_assert_cmpuint(d->status, ==, VMAUG_S_OK);
    g_assert_cmpuint(helper_query(c, "journal", "1.0", NULL), ==,
                     VMAUG_S_OK);
    g_assert_cmpuint(helper_invoke(c, "journal", "history", NULL, 0, &out),
                     ==, VMAUG_S_OK);
    g_assert_cmpuint(g_bytes_get_size(out), >, 12);
    g_assert_cmpmem(g_bytes_get_data(out, NULL), 12, "image-start ", 12);
    g_assert_cmpuint(test_count_lines(audit, "\"repo-fetch\""), ==, 1);
    dir = g_dir_open(downloads, 0, NULL);
    g_assert_nonnull(dir);
    g_assert_null(g_dir_read_name(dir));
    g_clear_pointer(&d, helper_done_free);

    /* What the repository does not publish is still missing. */
    g_assert_cmpuint(register_as(c, FALSE, "kv", NULL, 0,
                                 VMAUG_REG_F_REQUIRED), ==, VMAUG_S_OK);
    d = lifecycle_call(c, VMAUG_EVENT_IMAGE_START, 0);
    g_test_message("%s", d->message);
    g_assert_cmpuint(d->status, !=, VMAUG_S_OK);
    g_assert_true(g_str_has_prefix(d->message, "required module kv "
                                   "(newest) unavailable"));
    g_clear_pointer(&d, helper_done_free);

    /* A server that stalls: only the fetch's time bound can end it (the
     * bound's error, on the package the server was asked for), the image
     * does not start, and nothing of the download stays. */
    g_clear_pointer(&c, helper_client_free);
    helper_client_free(f->c);
    helper_kill(f->pid);
    {
        const gchar *args[] = { "--repository", slow_url, "--repository-ca",
                                ca, "--repository-timeout-ms", "1500",
                                NULL };

        fixture_start(f, args);
    }
    c = helper_client_connect_image(f->socket, NULL, f->image);
    g_assert_cmpuint(register_as(c, FALSE, "kv", NULL, 0, 0), ==,
                     VMAUG_S_OK);
    g_assert_cmpuint(register_as(c, FALSE, "echo", "1.0", 0,
                                 VMAUG_REG_F_REQUIRED), ==, VMAUG_S_OK);
    d = lifecycle_call(c, VMAUG_EVENT_IMAGE_START, 0);
    g_test_message("%s", d->message);
    g_assert_cmpuint(d->status, !=, VMAUG_S_OK);
    g_assert_true(g_str_has_prefix(d->message, "required module echo 1.0 "
                                   "unavailable: not in the store and "
                                   "repository "));
    {
        g_autofree gchar *why = g_strdup_printf("package echo 1.0 from %s: "
                                                "Timeout was reached: "
                                                "Operation timed out after ",
                                                slow_url);

        g_assert_nonnull(strstr(d->message, why));
    }
    g_assert_cmpuint(test_count_lines(server_log,
                                      "/slow/repo/packages/echo-1.0.vmod"),
                     ==, 1);
    g_assert_cmpuint(helper_query(c, "echo", NULL, NULL), ==,
                     VMAUG_S_NOT_FOUND);
    g_clear_pointer(&dir, g_dir_close);
    dir = g_dir_open(downloads, 0, NULL);
    g_assert_null(g_dir_read_name(dir));
    g_clear_pointer(&d, helper_done_free);

    /* The VM goes away while a fetch runs: the fetch is stopped and
     * cleaned up, and the helper serves the others meanwhile. */
    helper_client_free(f->c);
    helper_kill(f->pid);
    g_clear_pointer(&c, helper_client_free);
    {
        const gchar *args[] = { "--repository", slow_url, "--repository-ca",
                                ca, "--repository-timeout-ms", "20000",
                                NULL };

        fixture_start(f, args);
    }
    c = helper_client_connect_image(f->socket, NULL, f->image);
    helper_client_lifecycle(c, 77, VMAUG_EVENT_IMAGE_START, 0);
    g_usleep(500000);
    g_assert_cmpuint(count_regs(f->c), ==, 0);
    g_clear_pointer(&c, helper_client_free);
    for (guint i = 0; i < 100; i++) {
        g_clear_pointer(&dir, g_dir_close);
        dir = g_dir_open(downloads, 0, NULL);
        if (g_dir_read_name(dir) == NULL) {
            break;
        }
        g_usleep(50000);
    }
    g_clear_pointer(&dir, g_dir_close);
    dir = g_dir_open(downloads, 0, NULL);
    g_assert_null(g_dir_read_name(dir));
    g_assert_cmpuint(helper_query(f->c, "echo", NULL, NULL), ==,
                     VMAUG_S_NOT_FOUND);
    g_subprocess_force_exit(server);
    g_subprocess_wait(server, NULL, NULL);
}

static void test_list_admin(Fixture *f, gconstpointer data)
{
    struct vmaug_list_resp resp;
    g_autoptr(GBytes) entries = NULL;
    struct vmaug_sandbox_info sb;
    struct vmaug_ui_entry ui;
    const guint8 *p;
    gsize off = 0;

    upload_module(f, "echo", "1.0");
    upload_module(f, "ui", "1.0");
    g_assert_cmpuint(helper_load(f->c, "ui", NULL, NULL), ==, VMAUG_S_OK);
    g_assert_cmpuint(helper_load(f->c, "echo", NULL, NULL), ==, VMAUG_S_OK);
    /* The host owner's view only. */
    g_assert_cmpuint(list_as(f->c, FALSE, VMAUG_LIST_SANDBOXES, 0, &resp,
                             NULL), ==, VMAUG_S_DENIED);
    g_assert_cmpuint(list_as(f->c, FALSE, VMAUG_LIST_UI, 0, &resp, NULL), ==,
                     VMAUG_S_DENIED);

    g_assert_cmpuint(list_as(f->c, TRUE, VMAUG_LIST_SANDBOXES, 0, &resp,
                             &entries), ==, VMAUG_S_OK);
    g_assert_cmpuint(resp.count, ==, 2);
    g_assert_cmpuint(resp.total, ==, 2);
    g_assert_cmpuint(g_bytes_get_size(entries), ==, 2 * sizeof(sb));
    memcpy(&sb, g_bytes_get_data(entries, NULL), sizeof(sb));
    g_assert_cmpstr((const gchar *)sb.ref.name, ==, "echo");
    g_assert_cmpstr((const gchar *)sb.ref.version, ==, "1.0");
    g_assert_cmpuint(GUINT32_FROM_LE(sb.state), ==, VMAUG_MODULE_LOADED);
    g_assert_cmpuint(GUINT32_FROM_LE(sb.pid), >, 0);
    g_assert_cmpint(kill(GUINT32_FROM_LE(sb.pid), 0), ==, 0);
    g_assert_cmpuint(GUINT64_FROM_LE(sb.memory_limit), ==, 128 << 20);
    g_assert_cmpuint(GUINT64_FROM_LE(sb.cpu_limit), ==, 60);
    g_assert_cmpuint(GUINT32_FROM_LE(sb.restarts), ==, 0);
    g_clear_pointer(&entries, g_bytes_unref);
    /* Paged. */
    g_assert_cmpuint(list_as(f->c, TRUE, VMAUG_LIST_SANDBOXES, 1, &resp,
                             &entries), ==, VMAUG_S_OK);
    g_assert_cmpuint(resp.count, ==, 1);
    g_assert_cmpuint(resp.total, ==, 2);
    memcpy(&sb, g_bytes_get_data(entries, NULL), sizeof(sb));
    g_assert_cmpstr((const gchar *)sb.ref.name, ==, "ui");
    g_clear_pointer(&entries, g_bytes_unref);

    /* The ui module declared its menu entry when it started. */
    g_assert_cmpuint(helper_invoke(f->c, "ui", "progress", "Backup\n42", 9,
                                   NULL), ==, VMAUG_S_OK);
    g_assert_cmpuint(list_as(f->c, TRUE, VMAUG_LIST_UI, 0, &resp, &entries),
                     ==, VMAUG_S_OK);
    g_assert_cmpuint(resp.count, ==, 2);
    g_assert_cmpuint(resp.total, ==, 2);
    p = g_bytes_get_data(entries, NULL);
    for (guint i = 0; i < resp.count; i++) {
        g_autofree gchar *json = NULL;
        guint32 len;

        g_assert_cmpuint(off + sizeof(ui), <=, g_bytes_get_size(entries));
        memcpy(&ui, p + off, sizeof(ui));
        len = GUINT32_FROM_LE(ui.len);
        g_assert_cmpstr((const gchar *)ui.module, ==, "ui");
        g_assert_cmpuint(len, >=, 2);
        g_assert_cmpuint(len, <=, VMAUG_UI_MAX_JSON);
        json = g_strndup((const gchar *)p + off + sizeof(ui), len);
        g_assert_true(json[0] == '{' && json[len - 1] == '}');
        g_assert_nonnull(strstr(json, i == 0 ? "dialog.progress" :
                                "menu.status"));
        off += sizeof(ui) + len;
        /* Zero padding to a multiple of 8. */
        while (off % 8 != 0) {
            g_assert_cmpuint(p[off], ==, 0);
            off++;
        }
    }
    g_assert_cmpuint(off, ==, g_bytes_get_size(entries));
    g_clear_pointer(&entries, g_bytes_unref);
    g_assert_cmpuint(list_as(f->c, TRUE, VMAUG_LIST_UI, 2, &resp, &entries),
                     ==, VMAUG_S_OK);
    g_assert_cmpuint(resp.count, ==, 0);
    g_assert_cmpuint(resp.total, ==, 2);
    g_clear_pointer(&entries, g_bytes_unref);

    /* A module that crashed is listed as such, and counted when it is
     * loaded again. */
    upload_module(f, "hostile", "1.0");
    g_assert_cmpuint(helper_load(f->c, "hostile", NULL, NULL), ==,
                     VMAUG_S_OK);
    g_assert_cmpuint(helper_invoke(f->c, "hostile", "execve", NULL, 0, NULL),
                     ==, VMAUG_S_MODULE_FAILED);
    g_assert_nonnull(helper_client_wait_event(f->c,
                                              VMAUG_EVENT_MODULE_CRASHED,
                                              5000));
    g_assert_cmpuint(list_as(f->c, TRUE, VMAUG_LIST_SANDBOXES, 1, &resp,
                             &entries), ==, VMAUG_S_OK);
    g_assert_cmpuint(resp.total, ==, 3);
    memcpy(&sb, g_bytes_get_data(entries, NULL), sizeof(sb));
    g_assert_cmpstr((const gchar *)sb.ref.name, ==, "hostile");
    g_assert_cmpuint(GUINT32_FROM_LE(sb.state), ==, VMAUG_MODULE_CRASHED);
    g_assert_cmpuint(GUINT32_FROM_LE(sb.pid), ==, 0);
    g_clear_pointer(&entries, g_bytes_unref);
    g_assert_cmpuint(helper_load(f->c, "hostile", NULL, NULL), ==,
                     VMAUG_S_OK);
    g_assert_cmpuint(list_as(f->c, TRUE, VMAUG_LIST_SANDBOXES, 1, &resp,
                             &entries), ==, VMAUG_S_OK);
    memcpy(&sb, g_bytes_get_data(entries, NULL), sizeof(sb));
    g_assert_cmpstr((const gchar *)sb.ref.name, ==, "hostile");
    g_assert_cmpuint(GUINT32_FROM_LE(sb.state), ==, VMAUG_MODULE_LOADED);
    g_assert_cmpuint(GUINT32_FROM_LE(sb.restarts), ==, 1);
}

static void test_module_refused(Fixture *f, gconstpointer data)
{
    g_autofree gchar *reason = NULL;

    upload_module(f, "echo", "1.0");
    upload_module(f, "echo", "1.1");
    g_assert_cmpuint(helper_load(f->c, "echo", "1.1", NULL), ==, VMAUG_S_OK);
    /* A rollback is refused, and the guest is told why. */
    g_assert_cmpuint(helper_load(f->c, "echo", "1.0", NULL), ==,
                     VMAUG_S_DENIED);
    reason = wait_refused(f->c, "echo");
    g_assert_true(g_utf8_validate(reason, -1, NULL));
    g_assert_nonnull(strstr(reason, "rollback"));
    /* A module merely absent is not a refusal. */
    g_assert_cmpuint(helper_load(f->c, "kv", NULL, NULL), ==,
                     VMAUG_S_NOT_FOUND);
    g_assert_null(helper_client_wait_event(f->c, VMAUG_EVENT_MODULE_REFUSED,
                                           300));
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
    ADD("/helper/image/hello", test_image_hello);
    ADD("/helper/image/register", test_image_register);
    ADD("/helper/lifecycle/journal", test_lifecycle_journal);
    ADD("/helper/lifecycle/reconnect", test_lifecycle_reconnect);
    ADD("/helper/lifecycle/missing", test_lifecycle_missing);
    ADD("/helper/lifecycle/repository", test_lifecycle_repository);
    ADD("/helper/list-admin", test_list_admin);
    ADD("/helper/module-refused", test_module_refused);
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
