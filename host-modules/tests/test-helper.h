/*
 * The fixture of the helper's socket tests (test-helper-fixture.c),
 * shared by test-helper-modules.c, test-helper-hostile.c and
 * test-helper-lifecycle.c.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VMAUGMENT_TEST_HELPER_H
#define VMAUGMENT_TEST_HELPER_H

#include "helper-client.h"
#include "test-common.h"

typedef HelperFixture Fixture;

/* The helper, with the repository tool for image starts, and its first
 * client connected. */
void fixture_start(Fixture *f, const gchar *const *extra);

/* Each test: a helper of its own, started, and its first client. */
void fixture_setup(Fixture *f, gconstpointer data);
void fixture_teardown(Fixture *f, gconstpointer data);

/* Upload @name @version as the fixture's administrator signed it. */
void upload_module(Fixture *f, const gchar *name, const gchar *version);
/* The store's audit log. */
gchar *audit_path(Fixture *f);

/* @rel in the area of the VM that has it (vm-area.h); the VMs of one
 * test never write the same files. */
gchar *vm_file(Fixture *f, const gchar *rel);

/* The device's IMAGE_START, answered; returns the answer. */
HelperDone *lifecycle_call(HelperClient *c, guint32 event, guint32 flags);

/* A test of the fixture, as g_test_add() takes it. */
#define TEST_HELPER_ADD(path, fn) \
    g_test_add(path, Fixture, NULL, fixture_setup, fn, fixture_teardown)

#endif /* VMAUGMENT_TEST_HELPER_H */
