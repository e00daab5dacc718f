/*
 * Fuzz target: the helper's device link, fed what a hostile QEMU could
 * send (a valid HELLO is prepended so that requests are reached).
 *
 * Each input starts from an empty store and the same state of GLib's
 * random numbers (upload ids, image ids): an input's outcome must not
 * depend on what earlier inputs uploaded or on chance, so that a fixed seed
 * repeats a run and a crashing input reproduces on its own.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "device.h"
#include "test-common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_quiet(const gchar *domain, GLogLevelFlags level,
                       const gchar *message, gpointer user_data)
{
}

static gchar *fuzz_dir;

static void fuzz_cleanup(void)
{
    test_rm_rf(fuzz_dir);
}

static Helper *fuzz_helper(void)
{
    static Helper h;
    static gboolean ready;
    g_autoptr(GError) error = NULL;
    g_autofree gchar *dir = NULL;
    if (ready) {
        return &h;
    }
    g_log_set_default_handler(fuzz_quiet, NULL);
    dir = g_dir_make_tmp("vmaug-fuzz-XXXXXX", &error);
    g_assert_no_error(error);
    fuzz_dir = g_strdup(dir);
    atexit(fuzz_cleanup);
    h.default_store = g_build_filename(dir, "store", NULL);
    h.allowed_stores = g_ptr_array_new_with_free_func(g_free);
    h.image_dirs = g_ptr_array_new_with_free_func(g_free);
    h.trust = vmaug_trust_store_new();     /* trusts nobody */
    h.policy = vmaug_policy_new_default();
    h.policy->max_package_size = 64 * 1024;
    h.module_host = g_strdup("/nonexistent");
    h.call_timeout_ms = 100;
    helper_caches_init(&h);
    helper_limits_default(&h);
    ready = TRUE;
    return &h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Helper *h = fuzz_helper();
    struct {
        struct vmaug_host_msg m;
        struct vmaug_host_hello hello;
    } hello = {
        .m = {
            .magic = GUINT32_TO_LE(VMAUG_HOST_MAGIC),
            .type = GUINT16_TO_LE(VMAUG_HOST_HELLO),
            .len = GUINT32_TO_LE(sizeof(struct vmaug_host_hello)),
        },
        .hello = { .proto_version = GUINT32_TO_LE(VMAUG_PROTO_VERSION) },
    };
    int sv[2];
    Device *dev;
    guint8 sink[65536];

    g_random_set_seed(1);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        return 0;
    }
    dev = device_new(h, sv[0]);
    if (write(sv[1], &hello, sizeof(hello)) != sizeof(hello)) {
        abort();
    }
    /* Small inputs fit the socket buffer whole. */
    if (size > 0 && write(sv[1], data, MIN(size, 100000)) < 0) {
        abort();
    }
    shutdown(sv[1], SHUT_WR);
    for (guint i = 0; i < 64 && g_main_context_iteration(NULL, FALSE); i++) {
        while (recv(sv[1], sink, sizeof(sink), MSG_DONTWAIT) > 0) {
        }
    }
    if (g_list_find(h->devices, dev) != NULL) {
        device_free(dev);
    }
    /* A closed device frees itself from an idle callback. */
    while (g_main_context_iteration(NULL, FALSE)) {
    }
    close(sv[1]);
    /* The device opened the store on HELLO; the next input opens a new
     * one. */
    g_hash_table_remove_all(h->stores);
    g_hash_table_remove_all(h->manifests);
    test_rm_rf(h->default_store);
    return 0;
}
