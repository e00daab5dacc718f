/*
 * A client of vmaugment-helper (see helper-client.h).
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "helper-client.h"

#define CLIENT_TIMEOUT_MS   20000

static void client_child_setup(gpointer data)
{
    /* A test that dies must not leave a helper holding its output. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
}

GPid helper_spawn(const gchar *helper, const gchar *socket,
                  const gchar *store, const gchar *trust_dir,
                  const gchar *const *extra_args)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_autoptr(GError) error = NULL;
    GPid pid;

    g_ptr_array_add(argv, (gpointer)helper);
    g_ptr_array_add(argv, (gpointer)"--socket");
    g_ptr_array_add(argv, (gpointer)socket);
    g_ptr_array_add(argv, (gpointer)"--store");
    g_ptr_array_add(argv, (gpointer)store);
    g_ptr_array_add(argv, (gpointer)"--trust-dir");
    g_ptr_array_add(argv, (gpointer)trust_dir);
    for (guint i = 0; extra_args != NULL && extra_args[i] != NULL; i++) {
        g_ptr_array_add(argv, (gpointer)extra_args[i]);
    }
    /* A sanitizer build of the helper still runs modules in a plain
     * module host: sanitizer runtimes need system calls the filter kills. */
    if (g_getenv("VMAUG_TEST_MODULE_HOST") != NULL) {
        g_ptr_array_add(argv, (gpointer)"--module-host");
        g_ptr_array_add(argv, (gpointer)g_getenv("VMAUG_TEST_MODULE_HOST"));
    }
    g_ptr_array_add(argv, NULL);
    g_spawn_async(NULL, (gchar **)argv->pdata, NULL,
                  G_SPAWN_DO_NOT_REAP_CHILD, client_child_setup, NULL, &pid,
                  &error);
    g_assert_no_error(error);
    return pid;
}

void helper_kill(GPid pid)
{
    int status;

    kill(pid, SIGTERM);
    waitpid(pid, &status, 0);
    g_spawn_close_pid(pid);
}

gboolean helper_client_send_raw(HelperClient *c, const void *data, gsize len)
{
    return vmaug_link_client_send_raw(c->link, data, len, NULL);
}

void helper_client_send_msg(HelperClient *c, guint16 type, guint64 tag,
                            const void *data, gsize len)
{
    vmaug_link_client_send_msg(c->link, type, tag, data, len, NULL);
}

/* A LIFECYCLE_DONE or an event that arrived while waiting for something
 * else; the link checked their sizes. */
static void client_keep(guint16 type, guint64 tag, GBytes *body,
                        gpointer user)
{
    HelperClient *c = user;
    struct vmaug_host_lifecycle_done done;
    HelperDone *d;

    if (type == VMAUG_HOST_EVENT) {
        g_queue_push_tail(&c->events, g_bytes_ref(body));
        return;
    }
    if (type == VMAUG_HOST_IMAGE_ACCESS) {
        struct vmaug_host_image_access req;
        struct vmaug_host_image_access_done ans = {
            .status = GUINT16_TO_LE(c->access_status),
        };
        guint32 op;

        memcpy(&req, g_bytes_get_data(body, NULL), sizeof(req));
        op = GUINT32_FROM_LE(req.op);
        g_array_append_val(c->accesses, op);
        ans.op = req.op;
        helper_client_send_msg(c, VMAUG_HOST_IMAGE_ACCESS_DONE, tag, &ans,
                               sizeof(ans));
        return;
    }
    d = g_new0(HelperDone, 1);
    memcpy(&done, g_bytes_get_data(body, NULL), sizeof(done));
    d->tag = tag;
    d->event = GUINT32_FROM_LE(done.event);
    d->status = GUINT16_FROM_LE(done.status);
    d->message = g_strndup((const gchar *)g_bytes_get_data(body, NULL) +
                           sizeof(done), g_bytes_get_size(body) -
                           sizeof(done));
    g_queue_push_tail(&c->dones, d);
}

HelperClient *helper_client_connect(const gchar *socket_path,
                                    const gchar *store_path)
{
    return helper_client_connect_image(socket_path, store_path, NULL);
}

HelperClient *helper_client_connect_image(const gchar *socket_path,
                                          const gchar *store_path,
                                          const gchar *image_path)
{
    return helper_client_connect_full(socket_path, store_path, image_path,
                                      FALSE);
}

HelperClient *helper_client_connect_full(const gchar *socket_path,
                                         const gchar *store_path,
                                         const gchar *image_path,
                                         gboolean channel)
{
    HelperClient *c = g_new0(HelperClient, 1);
    g_autoptr(GError) error = NULL;

    g_queue_init(&c->events);
    g_queue_init(&c->dones);
    c->accesses = g_array_new(FALSE, FALSE, sizeof(guint32));
    /* Retrying while the helper starts. */
    c->link = vmaug_link_client_connect_full(socket_path, "test-device",
                                             store_path, image_path, 10000,
                                             channel, &error);
    g_assert_no_error(error);
    vmaug_link_client_set_other_func(c->link, client_keep, c);
    return c;
}

void helper_client_free(HelperClient *c)
{
    if (c == NULL) {
        return;
    }
    vmaug_link_client_free(c->link);
    g_queue_clear_full(&c->events, (GDestroyNotify)g_bytes_unref);
    g_queue_clear_full(&c->dones, (GDestroyNotify)helper_done_free);
    g_array_unref(c->accesses);
    g_free(c);
}

void helper_reply_clear(HelperReply *r)
{
    g_clear_pointer(&r->data, g_bytes_unref);
}

guint64 helper_client_request(HelperClient *c, guint16 opcode,
                              const void *a, gsize alen, const void *b,
                              gsize blen)
{
    return vmaug_link_client_request(c->link, opcode, a, alen, b, blen,
                                     NULL);
}

gboolean helper_client_call(HelperClient *c, guint16 opcode,
                            const void *a, gsize alen, const void *b,
                            gsize blen, HelperReply *reply)
{
    guint64 tag = helper_client_request(c, opcode, a, alen, b, blen);

    return tag != 0 && helper_client_wait_response(c, tag, reply);
}

void helper_done_free(HelperDone *d)
{
    if (d != NULL) {
        g_free(d->message);
        g_free(d);
    }
}

void helper_client_lifecycle(HelperClient *c, guint64 tag, guint32 event,
                             guint32 flags)
{
    struct vmaug_host_lifecycle lc = {
        .event = GUINT32_TO_LE(event),
        .flags = GUINT32_TO_LE(flags),
    };

    helper_client_send_msg(c, VMAUG_HOST_LIFECYCLE, tag, &lc, sizeof(lc));
}

/* Receive one event or LIFECYCLE_DONE before @deadline and queue it. */
static gboolean client_stash_next(HelperClient *c, gint64 deadline)
{
    gint64 now = g_get_monotonic_time();

    return now < deadline &&
           vmaug_link_client_pump(c->link, (deadline - now) / 1000 + 1,
                                  NULL);
}

HelperDone *helper_client_wait_done(HelperClient *c, guint64 tag,
                                    guint timeout_ms)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;

    for (;;) {

        for (GList *l = c->dones.head; l != NULL; l = l->next) {
            HelperDone *d = l->data;

            if (d->tag == tag) {
                g_queue_delete_link(&c->dones, l);
                return d;
            }
        }
        if (!client_stash_next(c, deadline)) {
            return NULL;
        }
    }
}

gboolean helper_client_wait_response(HelperClient *c, guint64 tag,
                                     HelperReply *reply)
{
    return vmaug_link_client_wait_response(c->link, tag, CLIENT_TIMEOUT_MS,
                                           &reply->status, &reply->data,
                                           NULL);
}

GBytes *helper_client_wait_event(HelperClient *c, guint32 type,
                                 guint timeout_ms)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;

    for (;;) {
        for (GList *l = c->events.head; l != NULL; l = l->next) {
            const struct virtio_vmaugment_event *ev =
                g_bytes_get_data(l->data, NULL);

            if (type == 0 || GUINT32_FROM_LE(ev->type) == type) {
                GBytes *b = l->data;

                g_queue_delete_link(&c->events, l);
                return b;
            }
        }
        if (!client_stash_next(c, deadline)) {
            return NULL;
        }
    }
}

gboolean helper_client_closed(HelperClient *c, guint timeout_ms)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
    guint8 buf[4096];

    while (g_get_monotonic_time() < deadline) {
        ssize_t n;

        struct pollfd p = {
            .fd = vmaug_link_client_get_fd(c->link), .events = POLLIN,
        };

        if (poll(&p, 1, 100) <= 0) {
            continue;
        }
        n = recv(p.fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            return TRUE;
        }
    }
    return FALSE;
}

void helper_ref(struct vmaug_module_ref *ref, const gchar *name,
                const gchar *version)
{
    vmaug_link_client_ref(ref, name, version);
}

static guint16 client_ref_call(HelperClient *c, guint16 op,
                               const gchar *name, const gchar *version,
                               struct vmaug_module_info *info)
{
    g_autoptr(GError) error = NULL;
    guint16 status = VMAUG_S_INTERNAL;

    vmaug_link_client_ref_call(c->link, op, name, version, CLIENT_TIMEOUT_MS,
                               &status, info, &error);
    g_assert_no_error(error);
    return status;
}

guint16 helper_load(HelperClient *c, const gchar *name, const gchar *version,
                    struct vmaug_module_info *info)
{
    return client_ref_call(c, VMAUG_OP_LOAD, name, version, info);
}

guint16 helper_query(HelperClient *c, const gchar *name,
                     const gchar *version, struct vmaug_module_info *info)
{
    return client_ref_call(c, VMAUG_OP_QUERY, name, version, info);
}

guint16 helper_unload(HelperClient *c, const gchar *name)
{
    return client_ref_call(c, VMAUG_OP_UNLOAD, name, NULL, NULL);
}

guint16 helper_upload(HelperClient *c, GBytes *pkg, const gchar *name,
                      const gchar *version, gsize chunk)
{
    return helper_upload_timed(c, pkg, name, version, chunk, NULL);
}

guint16 helper_upload_timed(HelperClient *c, GBytes *pkg, const gchar *name,
                            const gchar *version, gsize chunk,
                            HelperUploadTimes *t)
{
    HelperUploadTimes local;
    gint64 t0;
    struct vmaug_upload_begin b = { 0 };
    struct vmaug_upload_state st;
    struct vmaug_upload_ref ref;
    gsize size;
    const guint8 *p = g_bytes_get_data(pkg, &size);
    guint64 off;

    vmaug_sha256(p, size, b.sha256);
    t0 = g_get_monotonic_time();
    b.total_size = GUINT64_TO_LE(size);
    helper_ref(&b.ref, name, version);
    {
        g_auto(HelperReply) r = { 0 };

        g_assert_true(helper_client_call(c, VMAUG_OP_UPLOAD_BEGIN, &b,
                                         sizeof(b), NULL, 0, &r));
        if (r.status != VMAUG_S_OK) {
            return r.status;
        }
        g_assert_cmpuint(g_bytes_get_size(r.data), ==, sizeof(st));
        memcpy(&st, g_bytes_get_data(r.data, NULL), sizeof(st));
    }
    if (t == NULL) {
        t = &local;
    }
    t->begin_us = g_get_monotonic_time() - t0;
    t0 = g_get_monotonic_time();
    off = GUINT64_FROM_LE(st.offset);
    while (off < size) {
        struct vmaug_upload_chunk ch = {
            .upload_id = st.upload_id,
            .offset = GUINT64_TO_LE(off),
        };
        gsize n = MIN(chunk, size - off);
        g_auto(HelperReply) r = { 0 };

        g_assert_true(helper_client_call(c, VMAUG_OP_UPLOAD_CHUNK, &ch,
                                         sizeof(ch), p + off, n, &r));
        if (r.status != VMAUG_S_OK) {
            return r.status;
        }
        memcpy(&st, g_bytes_get_data(r.data, NULL), sizeof(st));
        g_assert_cmpuint(GUINT64_FROM_LE(st.offset), ==, off + n);
        off += n;
    }
    t->chunks_us = g_get_monotonic_time() - t0;
    t0 = g_get_monotonic_time();
    ref.upload_id = st.upload_id;
    {
        g_auto(HelperReply) r = { 0 };

        g_assert_true(helper_client_call(c, VMAUG_OP_UPLOAD_COMMIT, &ref,
                                         sizeof(ref), NULL, 0, &r));
        t->commit_us = g_get_monotonic_time() - t0;
        return r.status;
    }
}

guint16 helper_invoke(HelperClient *c, const gchar *module,
                      const gchar *function, const void *in, gsize len,
                      GBytes **out)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GBytes) data = NULL;
    guint16 status = VMAUG_S_INTERNAL;

    vmaug_link_client_invoke(c->link, module, function, in, len,
                             CLIENT_TIMEOUT_MS, &status, &data, &error);
    g_assert_no_error(error);
    if (out != NULL) {
        *out = g_steal_pointer(&data);
    }
    return status;
}

void helper_fixture_setup(HelperFixture *f)
{
    f->keys = test_keys_new();
    f->store = g_build_filename(f->keys->dir, "store", NULL);
    f->socket = g_build_filename(f->keys->dir, "helper.sock", NULL);
    f->images = g_build_filename(f->keys->dir, "images", NULL);
    f->image = g_build_filename(f->images, "disk.qcow2", NULL);
    g_assert_cmpint(g_mkdir(f->images, 0700), ==, 0);
}

void helper_fixture_start(HelperFixture *f, const gchar *const *base,
                          const gchar *const *extra)
{
    g_autoptr(GPtrArray) args = g_ptr_array_new();

    g_ptr_array_add(args, (gpointer)"--image-dir");
    g_ptr_array_add(args, f->images);
    for (guint i = 0; base != NULL && base[i] != NULL; i++) {
        g_ptr_array_add(args, (gpointer)base[i]);
    }
    for (guint i = 0; extra != NULL && extra[i] != NULL; i++) {
        g_ptr_array_add(args, (gpointer)extra[i]);
    }
    g_ptr_array_add(args, NULL);
    f->pid = helper_spawn(test_env("VMAUG_HELPER"), f->socket, f->store,
                          f->keys->trust_dir,
                          (const gchar *const *)args->pdata);
}

void helper_fixture_teardown(HelperFixture *f)
{
    helper_client_free(f->c);
    if (f->pid > 0) {
        helper_kill(f->pid);
    }
    g_free(f->store);
    g_free(f->socket);
    g_free(f->images);
    g_free(f->image);
    test_keys_free(f->keys);
}
