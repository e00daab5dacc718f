/*
 * vmaugment-helper driven over its socket exactly as the QEMU device
 * drives it (test-helper.h has the fixture).  Here: the modules' own
 * paths: uploads, loads, invocations, version swaps and rollback,
 * configuration, several devices, and the modules shipped with the tree
 * (printer, kv, ui, config, upgrade, scanner).
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

#include "test-helper.h"
#include "vm-area.h"
#include "vmaugment-module.h"

/* The fixture's VM runs the image from now on, so that what it keeps
 * outlives its connection. */
static void fixture_use_image(Fixture *f)
{
    helper_client_free(f->c);
    f->c = helper_client_connect_image(f->socket, NULL, f->image);
}

static void image_start_ok(HelperClient *c)
{
    g_autoptr(HelperDone) d = lifecycle_call(c, VMAUG_EVENT_IMAGE_START, 0);

    g_assert_cmpstr(d->message, ==, "");
    g_assert_cmpuint(d->status, ==, VMAUG_S_OK);
}

/* ---- Positive paths ---- */

/*
 * The host owner removes a signer from the trust directory, or revokes
 * one with a CRL, while the helper runs: the next load of its module is
 * refused, without a restart; trusted again, it loads again.
 */
static void test_trust_change(Fixture *f, gconstpointer data)
{
    g_autofree gchar *admin = g_build_filename(f->keys->trust_dir,
                                               "admin.crt", NULL);
    g_autofree gchar *crl_path = g_build_filename(f->keys->trust_dir,
                                                  "ca.crl", NULL);
    g_autoptr(GBytes) admin_pem =
        vmaug_trust_identity_get_certificate(f->keys->admin, NULL);
    g_autoptr(GBytes) leaf_pkg = test_module_package(f->keys->leaf, "echo",
                                                     "2.0");
    g_autoptr(GPtrArray) revoke =
        g_ptr_array_new_with_free_func((GDestroyNotify)g_bytes_unref);
    g_autoptr(GBytes) crl = NULL;
    g_autoptr(GError) error = NULL;
    gint64 now = g_get_real_time() / G_USEC_PER_SEC;

    upload_module(f, "echo", "1.0");
    g_assert_cmpuint(helper_query(f->c, "echo", "1.0", NULL), ==, VMAUG_S_OK);
    g_assert_cmpuint(helper_load(f->c, "echo", "1.0", NULL), ==, VMAUG_S_OK);
    g_assert_cmpuint(helper_unload(f->c, "echo"), ==, VMAUG_S_OK);
    g_assert_cmpint(g_unlink(admin), ==, 0);
    /* What QUERY learned before is not kept across the change either. */
    g_assert_cmpuint(helper_query(f->c, "echo", "1.0", NULL), ==,
                     VMAUG_S_DENIED);
    g_assert_cmpuint(helper_load(f->c, "echo", "1.0", NULL), ==,
                     VMAUG_S_DENIED);
    g_assert_true(g_file_set_contents(admin,
                                      g_bytes_get_data(admin_pem, NULL),
                                      g_bytes_get_size(admin_pem), &error));
    g_assert_cmpuint(helper_query(f->c, "echo", "1.0", NULL), ==, VMAUG_S_OK);
    g_assert_cmpuint(helper_load(f->c, "echo", "1.0", NULL), ==, VMAUG_S_OK);
    g_assert_cmpuint(helper_unload(f->c, "echo"), ==, VMAUG_S_OK);

    /* A signer the CA issued, then revoked by the CA's new CRL. */
    g_assert_cmpuint(helper_upload(f->c, leaf_pkg, "echo", "2.0",
                                   64 * 1024), ==, VMAUG_S_OK);
    g_assert_cmpuint(helper_load(f->c, "echo", "2.0", NULL), ==, VMAUG_S_OK);
    g_assert_cmpuint(helper_unload(f->c, "echo"), ==, VMAUG_S_OK);
    g_ptr_array_add(revoke, vmaug_trust_identity_get_certificate(
                                f->keys->leaf, NULL));
    crl = vmaug_trust_identity_create_crl(f->keys->ca, revoke, now - 60,
                                          now + 3600, &error);
    g_assert_no_error(error);
    g_assert_true(g_file_set_contents(crl_path, g_bytes_get_data(crl, NULL),
                                      g_bytes_get_size(crl), &error));
    g_assert_cmpuint(helper_load(f->c, "echo", "2.0", NULL), ==,
                     VMAUG_S_DENIED);
}

static void test_upload_load_invoke(Fixture *f, gconstpointer data)
{
    struct vmaug_module_info info;
    g_autoptr(GBytes) out = NULL;
    g_autoptr(GBytes) ev = NULL;
    const struct virtio_vmaugment_event *e;

    g_assert_cmpstr(vmaug_link_client_get_peer(f->c->link), ==,
                    "vmaugment-helper 0.1.0");
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
    /* The largest call a guest can make, and long calls of other lengths
     * after it and before it again (the helper keeps the buffer its
     * longest message needed): each comes back as it went. */
    {
        gsize max = VMAUG_MAX_REQ_PAYLOAD - sizeof(struct vmaug_invoke);
        gsize lens[] = { 20000, max, max / 2, 40000, max };
        g_autofree guint8 *big = g_malloc(max);

        for (guint i = 0; i < G_N_ELEMENTS(lens); i++) {
            for (gsize j = 0; j < lens[i]; j++) {
                big[j] = (guint8)(j * (i + 3) + i);
            }
            g_assert_cmpuint(helper_invoke(f->c, "echo", "echo", big, lens[i],
                                           &out), ==, VMAUG_S_OK);
            g_assert_cmpmem(g_bytes_get_data(out, NULL),
                            g_bytes_get_size(out), big, lens[i]);
            g_clear_pointer(&out, g_bytes_unref);
        }
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
    config_set(f, "scanner", "host-paths", paths);
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

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    TEST_HELPER_ADD("/helper/upload-load-invoke", test_upload_load_invoke);
    TEST_HELPER_ADD("/helper/trust-change", test_trust_change);
    TEST_HELPER_ADD("/helper/printer-swap-rollback",
                    test_printer_swap_rollback);
    TEST_HELPER_ADD("/helper/kv-config", test_kv_config);
    TEST_HELPER_ADD("/helper/register-list", test_register_list);
    TEST_HELPER_ADD("/helper/several-devices", test_several_devices);
    TEST_HELPER_ADD("/helper/module/ui", test_module_ui);
    TEST_HELPER_ADD("/helper/module/config", test_module_config);
    TEST_HELPER_ADD("/helper/module/upgrade", test_module_upgrade);
    TEST_HELPER_ADD("/helper/module/scanner", test_module_scanner);
    return g_test_run();
}
