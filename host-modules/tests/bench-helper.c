/*
 * vmaugment-helper-bench: module cold-load time (verify + sandbox + init,
 * as the guest sees it: LOAD request to response), query round trip (of
 * a stored module and of a missing one), invoke round trip, and a 64 MiB
 * package's upload (its parts) and load, measured against a real helper
 * over its socket; beside them, two processes' round trip over a socket
 * pair, the floor of the module's part of an invoke.
 *
 *   vmaugment-helper-bench HELPER MODULES_BUILD MODULES_SRC
 *                          [LOADS [CALLS [SPARES]]]
 *
 * SPARES is the helper's --spare-processes (0: no module process is
 * started ahead of need, so each load pays for starting and confining
 * one).
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helper-client.h"
#include "test-common.h"

static gint cmp_double(gconstpointer a, gconstpointer b)
{
    gdouble x = *(const gdouble *)a, y = *(const gdouble *)b;

    return x < y ? -1 : x > y;
}

static void report(const gchar *what, GArray *ms)
{
    gdouble sum = 0;

    g_array_sort(ms, cmp_double);
    for (guint i = 0; i < ms->len; i++) {
        sum += g_array_index(ms, gdouble, i);
    }
    printf("%-26s n=%-5u p50=%8.3f ms  p99=%8.3f ms  mean=%8.3f ms  "
           "max=%8.3f ms\n", what, ms->len,
           g_array_index(ms, gdouble, ms->len / 2),
           g_array_index(ms, gdouble, MIN(ms->len - 1,
                                          (ms->len * 99 + 99) / 100 - 1)),
           sum / ms->len, g_array_index(ms, gdouble, ms->len - 1));
}

/*
 * The anchor of the invoke figures: two processes handing a 64-byte
 * message to and fro over a socket pair, as the helper and a module's
 * process do for every call.  An invoke costs a query's round trip plus
 * about one of these; what is left is the module's and the helper's own
 * work.
 */
static void bench_socketpair(guint calls, GArray *ms)
{
    guint8 msg[64 + 16] = { 0 };
    int sv[2];
    pid_t pid;

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
                    ==, 0);
    pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        ssize_t n;

        close(sv[0]);
        while ((n = recv(sv[1], msg, sizeof(msg), 0)) > 0) {
            if (send(sv[1], msg, n, MSG_NOSIGNAL) != n) {
                break;
            }
        }
        _exit(0);
    }
    close(sv[1]);
    for (guint i = 0; i < calls; i++) {
        gint64 t0 = g_get_monotonic_time();

        g_assert_cmpint(send(sv[0], msg, sizeof(msg), MSG_NOSIGNAL), ==,
                        sizeof(msg));
        g_assert_cmpint(recv(sv[0], msg, sizeof(msg), MSG_WAITALL), ==,
                        sizeof(msg));
        g_array_append_val(ms, (gdouble){
                               (g_get_monotonic_time() - t0) / 1000.0 });
    }
    close(sv[0]);
    g_assert_cmpint(waitpid(pid, NULL, 0), ==, pid);
}

static void bench(const gchar *helper, const gchar *build, const gchar *src,
                  guint loads, guint calls, const gchar *spares,
                  gboolean namespaces)
{
    g_autoptr(TestKeys) keys = test_keys_new();
    g_autofree gchar *store = g_build_filename(keys->dir, "store", NULL);
    g_autofree gchar *sock = g_build_filename(keys->dir, "h.sock", NULL);
    g_autofree gchar *so = g_build_filename(build, "echo", "vmaug-echo.so",
                                         NULL);
    g_autofree gchar *mpath = g_build_filename(src, "echo", "manifest.json",
                                               NULL);
    g_autofree gchar *manifest = NULL;
    g_autoptr(GBytes) payload = test_read(so);
    g_autoptr(GBytes) pkg = NULL;
    g_autoptr(GArray) load_ms = g_array_new(FALSE, FALSE, sizeof(gdouble));
    g_autoptr(GArray) burst_ms = g_array_new(FALSE, FALSE, sizeof(gdouble));
    g_autoptr(GArray) call_ms = g_array_new(FALSE, FALSE, sizeof(gdouble));
    g_autoptr(GArray) big_ms = g_array_new(FALSE, FALSE, sizeof(gdouble));
    g_autoptr(GArray) query_ms = g_array_new(FALSE, FALSE, sizeof(gdouble));
    g_autoptr(GArray) missing_ms = g_array_new(FALSE, FALSE,
                                               sizeof(gdouble));
    g_autoptr(GArray) pair_ms = g_array_new(FALSE, FALSE, sizeof(gdouble));
    g_autoptr(GError) error = NULL;
    g_autofree guint8 *big = g_malloc0(64 * 1024);
    g_autoptr(GPtrArray) args = g_ptr_array_new();
    HelperClient *c;
    GPid pid;

    g_file_get_contents(mpath, &manifest, NULL, &error);
    g_assert_no_error(error);
    pkg = vmaug_package_build(manifest, NULL, payload, keys->admin, &error);
    g_assert_no_error(error);
    if (!namespaces) {
        g_ptr_array_add(args, (gpointer)"--no-namespaces");
        g_ptr_array_add(args, (gpointer)"--accept-weaker-sandbox");
    }
    if (spares != NULL) {
        g_ptr_array_add(args, (gpointer)"--spare-processes");
        g_ptr_array_add(args, (gpointer)spares);
    }
    g_ptr_array_add(args, NULL);
    pid = helper_spawn(helper, sock, store, keys->trust_dir,
                       (const gchar *const *)args->pdata);
    c = helper_client_connect(sock, NULL);
    g_assert_cmpuint(helper_upload(c, pkg, "echo", "1.0", 1 << 20), ==,
                     VMAUG_S_OK);
    /* QUERY is answered by the helper alone, from its store. */
    for (guint i = 0; i < calls; i++) {
        gint64 t0 = g_get_monotonic_time();

        g_assert_cmpuint(helper_query(c, "echo", NULL, NULL), ==,
                         VMAUG_S_OK);
        g_array_append_val(query_ms, (gdouble){
                               (g_get_monotonic_time() - t0) / 1000.0 });
        t0 = g_get_monotonic_time();
        g_assert_cmpuint(helper_query(c, "no-such-module", NULL, NULL), ==,
                         VMAUG_S_NOT_FOUND);
        g_array_append_val(missing_ms, (gdouble){
                               (g_get_monotonic_time() - t0) / 1000.0 });
    }
    /*
     * Spaced loads find the helper's spare process ready, as loads at
     * image start or on demand do; back-to-back loads also pay for
     * starting the next spare.
     */
    for (guint i = 0; i < 2 * loads; i++) {
        gint64 t0;

        if (i > 0) {
            g_assert_cmpuint(helper_unload(c, "echo"), ==, VMAUG_S_OK);
        }
        if (i < loads) {
            g_usleep(20000);
        }
        t0 = g_get_monotonic_time();
        g_assert_cmpuint(helper_load(c, "echo", NULL, NULL), ==, VMAUG_S_OK);
        g_array_append_val(i < loads ? load_ms : burst_ms, (gdouble){
                               (g_get_monotonic_time() - t0) / 1000.0 });
    }
    /* Each size apart: the heap a 64 KiB call leaves behind would slow
     * the small call after it. */
    for (guint i = 0; i < calls; i++) {
        gint64 t0 = g_get_monotonic_time();

        g_assert_cmpuint(helper_invoke(c, "echo", "echo", "0123456789abcdef"
                                       "0123456789abcdef0123456789abcdef"
                                       "0123456789abcdef", 64, NULL), ==,
                         VMAUG_S_OK);
        g_array_append_val(call_ms, (gdouble){
                               (g_get_monotonic_time() - t0) / 1000.0 });
    }
    for (guint i = 0; i < calls; i++) {
        gint64 t0 = g_get_monotonic_time();

        g_assert_cmpuint(helper_invoke(c, "echo", "echo", big, 64 * 1024,
                                       NULL), ==, VMAUG_S_OK);
        g_array_append_val(big_ms, (gdouble){
                               (g_get_monotonic_time() - t0) / 1000.0 });
    }
    bench_socketpair(calls, pair_ms);
    printf("namespaces %s\n", namespaces ? "on" : "off");
    report("cold load, spaced 20 ms", load_ms);
    report("cold load, back to back", burst_ms);
    report("query round trip", query_ms);
    report("query (missing) round trip", missing_ms);
    report("invoke 64 B round trip", call_ms);
    report("invoke 64 KiB round trip", big_ms);
    report("socketpair echo (anchor)", pair_ms);
    helper_client_free(c);
    helper_kill(pid);
}

/* The largest package the default policy takes, nearly: the echo
 * module with random bytes after its end (the loader maps only what its
 * headers name). */
#define BIG_PACKAGE_PAYLOAD (VMAUG_PKG_DEFAULT_MAX_SIZE - 64 * 1024)

/*
 * A real upload of a 64 MiB package, six times (each its own version,
 * so each is new to the store): UPLOAD_BEGIN, 1 MiB chunks, UPLOAD_COMMIT
 * (the helper's digest, signature verification and write into the
 * store), then its cold LOAD (verification, the payload into a sealed
 * memfd, the module's start).  As QEMU's device sends them, on the
 * request channel, alternately with the chunks' data in the upload area
 * and (the anchor) in their REQUESTs.
 */
static void bench_big(const gchar *helper, const gchar *build)
{
    g_autoptr(TestKeys) keys = test_keys_new();
    g_autofree gchar *store = g_build_filename(keys->dir, "store", NULL);
    g_autofree gchar *sock = g_build_filename(keys->dir, "h.sock", NULL);
    g_autofree gchar *so = g_build_filename(build, "echo", "vmaug-echo.so",
                                         NULL);
    g_autoptr(GBytes) echo = test_read(so);
    const gchar *const none[] = { NULL };
    HelperClient *c;
    GPid pid;

    pid = helper_spawn(helper, sock, store, keys->trust_dir, none);
    c = helper_client_connect_full(sock, NULL, NULL, TRUE);
    g_assert_true(vmaug_link_client_wait_area(c->link, 5000, NULL));
    printf("64 MiB package (begin, 1 MiB chunks, commit; then its cold "
           "load), ms\n");
    for (guint i = 0; i < 6; i++) {
        gboolean area = i % 2 == 0;
        g_autofree gchar *version = g_strdup_printf("1.%u", i);
        g_autofree guint8 *bytes = g_malloc(BIG_PACKAGE_PAYLOAD);
        g_autoptr(GBytes) payload = NULL;
        g_autoptr(GBytes) pkg = NULL;
        HelperUploadTimes t;
        gsize len = g_bytes_get_size(echo);
        gint64 t0;

        memcpy(bytes, g_bytes_get_data(echo, NULL), len);
        for (gsize k = len; k < BIG_PACKAGE_PAYLOAD; k++) {
            bytes[k] = (guint8)g_random_int();
        }
        payload = g_bytes_new_take(g_steal_pointer(&bytes),
                                   BIG_PACKAGE_PAYLOAD);
        pkg = test_package(keys->admin, "big", version, payload);
        vmaug_link_client_use_area(c->link, area);
        g_assert_cmpuint(helper_upload_timed(c, pkg, "big", version,
                                             1 << 20, &t), ==, VMAUG_S_OK);
        t0 = g_get_monotonic_time();
        g_assert_cmpuint(helper_load(c, "big", version, NULL), ==,
                         VMAUG_S_OK);
        printf("upload %u (%s): %.1f MiB in %.1f ms (%.0f MiB/s): begin "
               "%.2f, chunks %.1f, commit %.1f; load %.1f\n", i + 1,
               area ? "area" : "channel",
               g_bytes_get_size(pkg) / 1048576.0,
               (t.begin_us + t.chunks_us + t.commit_us) / 1000.0,
               g_bytes_get_size(pkg) / 1048576.0 /
               ((t.begin_us + t.chunks_us + t.commit_us) / 1e6),
               t.begin_us / 1000.0, t.chunks_us / 1000.0,
               t.commit_us / 1000.0,
               (g_get_monotonic_time() - t0) / 1000.0);
        g_assert_cmpuint(helper_unload(c, "big"), ==, VMAUG_S_OK);
    }
    helper_client_free(c);
    helper_kill(pid);
}

int main(int argc, char **argv)
{
    guint loads = argc > 4 ? (guint)atoi(argv[4]) : 200;
    guint calls = argc > 5 ? (guint)atoi(argv[5]) : 2000;
    /* 0: every load starts its module process itself. */
    const gchar *spares = argc > 6 ? argv[6] : NULL;

    if (argc < 4 || loads < 1 || calls < 1) {
        fprintf(stderr, "usage: vmaugment-helper-bench HELPER MODULES_BUILD "
                "MODULES_SRC [LOADS [CALLS [SPARES]]]\n");
        return 2;
    }
    g_log_set_handler("vmaugment-trust", G_LOG_LEVEL_DEBUG,
                      g_log_default_handler, NULL);
    bench(argv[1], argv[2], argv[3], loads, calls, spares, TRUE);
    bench(argv[1], argv[2], argv[3], loads, calls, spares, FALSE);
    bench_big(argv[1], argv[2]);
    return 0;
}
