/*
 * The fixture of the helper's socket tests (test-helper-*.c): a helper
 * with the repository tool for image starts and its first client
 * connected, and what several areas of tests ask of it.  Trusted test
 * code; the helper under test is not.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stdlib.h>

#include <glib/gstdio.h>

#include "test-helper.h"
/* The helper, with the repository tool for image starts, and its first
 * client connected. */
void fixture_start(Fixture *f, const gchar *const *extra)
{
    const gchar *const base[] = {
        "--repository-tool", test_env("VMAUG_REPO_TOOL"), NULL
    };

    helper_fixture_start(f, base, extra);
    f->c = helper_client_connect(f->socket, NULL);
}

void fixture_setup(Fixture *f, gconstpointer data)
{
    static const gchar *const args[] = {
        "--call-timeout-ms", "1500", "--memory-mb", "128", NULL
    };

    helper_fixture_setup(f);
    fixture_start(f, args);
}

void fixture_teardown(Fixture *f, gconstpointer data)
{
    helper_fixture_teardown(f);
}

void upload_module(Fixture *f, const gchar *name, const gchar *version)
{
    g_autoptr(GBytes) pkg = test_module_package(f->keys->admin, name, version);

    g_assert_cmpuint(helper_upload(f->c, pkg, name, version, 64 * 1024), ==,
                     VMAUG_S_OK);
}

gchar *audit_path(Fixture *f)
{
    return g_build_filename(f->store, "audit.log", NULL);
}

/* @rel in the area of the VM that has it (vm-area.h); the VMs of one
 * test never write the same files. */
gchar *vm_file(Fixture *f, const gchar *rel)
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

/* The device's IMAGE_START, answered; returns the answer. */
HelperDone *lifecycle_call(HelperClient *c, guint32 event, guint32 flags)
{
    static guint64 tag = 1000;
    HelperDone *d;

    helper_client_lifecycle(c, ++tag, event, flags);
    d = helper_client_wait_done(c, tag, 30000);
    g_assert_nonnull(d);
    g_assert_cmpuint(d->event, ==, event);
    return d;
}
