/*
 * vmaugment-helper driven over its socket exactly as the QEMU device
 * drives it (test-helper.h has the fixture).  Here: images and their
 * lifecycle: the image in HELLO, registrations, lifecycle events with
 * their handlers, reconnects, missing and refused modules, the repository
 * fetch, and the host owner's listings.
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

/* The area of the fixture's image, whose name the helper derives from
 * its real path. */
static gchar *image_area(Fixture *f)
{
    g_autofree gchar *dir = realpath(f->images, NULL);
    g_autofree gchar *real = g_build_filename(dir, "disk.qcow2", NULL);
    g_autofree gchar *id = vmaug_vm_area_id_for_image(real);

    return g_build_filename(f->store, "vms", id, NULL);
}

/* ---- Images, registrations and lifecycle events ---- */

#define ALL_LIFECYCLE VMAUG_EVENT_LIFECYCLE_MASK

/* A call with a guest tag, or with the host owner's (bit 63). */
static guint16 call_as(HelperClient *c, gboolean admin, guint16 op,
                       const void *a, gsize alen, GBytes **out)
{
    g_auto(HelperReply) r = { 0 };

    vmaug_link_client_set_host_owner(c->link, admin);
    g_assert_true(helper_client_call(c, op, a, alen, NULL, 0, &r));
    vmaug_link_client_set_host_owner(c->link, FALSE);
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

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    TEST_HELPER_ADD("/helper/image/hello", test_image_hello);
    TEST_HELPER_ADD("/helper/image/register", test_image_register);
    TEST_HELPER_ADD("/helper/lifecycle/journal", test_lifecycle_journal);
    TEST_HELPER_ADD("/helper/lifecycle/reconnect", test_lifecycle_reconnect);
    TEST_HELPER_ADD("/helper/lifecycle/missing", test_lifecycle_missing);
    TEST_HELPER_ADD("/helper/lifecycle/repository", test_lifecycle_repository);
    TEST_HELPER_ADD("/helper/list-admin", test_list_admin);
    TEST_HELPER_ADD("/helper/module-refused", test_module_refused);
    return g_test_run();
}
