/*
 * The registrations of an image: round trips, limits, and sidecars that
 * are malformed or belong to another image, none of which is used.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "registrations.h"
#include "test-common.h"

#define EV(t) VMAUG_EVENT_MASK(VMAUG_EVENT_##t)
#define UUID "0b7c5b4e-2f6a-4c1e-9a3d-5e8f7a6b1c2d"

typedef struct {
    gchar *dir;
    gchar *image;                   /* <dir>/disk.qcow2 */
    gchar *sidecar;
} Fixture;

static void fixture_setup(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;

    f->dir = g_dir_make_tmp("vmaug-regs-XXXXXX", &error);
    g_assert_no_error(error);
    f->image = g_build_filename(f->dir, "disk.qcow2", NULL);
    f->sidecar = vmaug_reg_sidecar_path(f->image);
}

static void fixture_teardown(Fixture *f, gconstpointer data)
{
    test_rm_rf(f->dir);
    g_free(f->dir);
    g_free(f->image);
    g_free(f->sidecar);
}

static void write_sidecar(Fixture *f, const gchar *text)
{
    g_autoptr(GError) error = NULL;

    g_file_set_contents(f->sidecar, text, -1, &error);
    g_assert_no_error(error);
}

static void test_sidecar_path(Fixture *f, gconstpointer data)
{
    g_assert_true(g_str_has_suffix(f->sidecar, "/disk.qcow2.vmaugment.json"));
}

static void test_missing_is_empty(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugRegSet) set = vmaug_reg_set_load(f->image, NULL, &error);

    g_assert_no_error(error);
    g_assert_cmpuint(set->regs->len, ==, 0);
    g_assert_cmpstr(set->image, ==, "disk.qcow2");
    g_assert_true(g_uuid_string_is_valid(set->image_id));
    g_assert_cmpstr(set->path, ==, f->sidecar);
    /* Loading creates nothing. */
    g_assert_false(g_file_test(f->sidecar, G_FILE_TEST_EXISTS));
}

static void test_round_trip(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugRegSet) set = vmaug_reg_set_load(f->image, NULL, &error);
    g_autoptr(VmaugRegSet) again = NULL;
    g_autofree gchar *id = NULL;
    const VmaugRegistration *r;

    g_assert_no_error(error);
    id = g_strdup(set->image_id);
    g_assert_true(vmaug_reg_set_put(set, "scanner", "1.0",
                                    EV(IMAGE_START) | EV(IMAGE_STOP),
                                    VMAUG_REG_F_REQUIRED, &error));
    g_assert_true(vmaug_reg_set_put(set, "journal", NULL,
                                    VMAUG_EVENT_LIFECYCLE_MASK, 0, &error));
    g_assert_true(vmaug_reg_set_put(set, "echo", "", 0, 0, &error));
    /* Put replaces by name. */
    g_assert_true(vmaug_reg_set_put(set, "echo", "2.1", EV(PAUSE), 0,
                                    &error));
    g_assert_no_error(error);
    g_assert_cmpuint(set->regs->len, ==, 3);
    g_assert_true(vmaug_reg_set_save(set, &error));
    g_assert_no_error(error);

    again = vmaug_reg_set_load(f->image, NULL, &error);
    g_assert_no_error(error);
    g_assert_cmpstr(again->image_id, ==, id);
    g_assert_cmpuint(again->regs->len, ==, 3);
    /* Kept by name. */
    r = g_ptr_array_index(again->regs, 0);
    g_assert_cmpstr(r->name, ==, "echo");
    g_assert_cmpstr(r->version, ==, "2.1");
    g_assert_cmphex(r->events, ==, EV(PAUSE));
    g_assert_cmphex(r->flags, ==, 0);
    r = vmaug_reg_set_find(again, "journal");
    g_assert_nonnull(r);
    g_assert_cmpstr(r->version, ==, "");
    g_assert_cmphex(r->events, ==, VMAUG_EVENT_LIFECYCLE_MASK);
    r = vmaug_reg_set_find(again, "scanner");
    g_assert_nonnull(r);
    g_assert_cmpstr(r->version, ==, "1.0");
    g_assert_cmphex(r->events, ==, EV(IMAGE_START) | EV(IMAGE_STOP));
    g_assert_cmphex(r->flags, ==, VMAUG_REG_F_REQUIRED);

    g_assert_true(vmaug_reg_set_remove(again, "journal", &error));
    g_assert_false(vmaug_reg_set_remove(again, "journal", &error));
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_NOT_FOUND);
    g_clear_error(&error);
    g_assert_true(vmaug_reg_set_save(again, &error));
    g_clear_pointer(&set, vmaug_reg_set_free);
    set = vmaug_reg_set_load(f->image, NULL, &error);
    g_assert_no_error(error);
    g_assert_cmpuint(set->regs->len, ==, 2);
    g_assert_null(vmaug_reg_set_find(set, "journal"));
}

/* The format as documented, written by hand, is read. */
static void test_documented_format(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugRegSet) set = NULL;
    const VmaugRegistration *r;

    write_sidecar(f, "{\"format\": \"vmaugment-registrations\","
                  " \"format-version\": 1, \"image\": \"disk.qcow2\","
                  " \"image-id\": \"" UUID "\", \"registrations\": ["
                  " {\"name\": \"scanner\", \"version\": \"1.0\","
                  " \"events\": [\"image-start\", \"host-stop\"],"
                  " \"required\": true}]}");
    set = vmaug_reg_set_load(f->image, NULL, &error);
    g_assert_no_error(error);
    g_assert_cmpstr(set->image_id, ==, UUID);
    r = vmaug_reg_set_find(set, "scanner");
    g_assert_nonnull(r);
    g_assert_cmphex(r->events, ==, EV(IMAGE_START) | EV(HOST_STOP));
    g_assert_cmphex(r->flags, ==, VMAUG_REG_F_REQUIRED);
}

static void test_store_file(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugRegSet) set = vmaug_reg_set_load(NULL, f->dir, &error);
    g_autoptr(VmaugRegSet) again = NULL;
    g_autofree gchar *path = g_build_filename(f->dir, "registrations.json",
                                              NULL);
    g_autofree gchar *text = NULL;

    g_assert_no_error(error);
    g_assert_null(set->image);
    g_assert_cmpstr(set->path, ==, path);
    g_assert_true(vmaug_reg_set_put(set, "echo", "1.0", EV(HOST_START), 0,
                                    &error));
    g_assert_true(vmaug_reg_set_save(set, &error));
    g_assert_no_error(error);
    again = vmaug_reg_set_load(NULL, f->dir, &error);
    g_assert_no_error(error);
    g_assert_nonnull(vmaug_reg_set_find(again, "echo"));
    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    g_assert_nonnull(strstr(text, "\"image\" : null"));
    /* A store's file naming an image is not a store's file. */
    g_assert_true(g_file_set_contents(path,
        "{\"format\": \"vmaugment-registrations\", \"format-version\": 1,"
        " \"image\": \"disk.qcow2\", \"image-id\": \"" UUID "\","
        " \"registrations\": []}", -1, NULL));
    g_clear_pointer(&again, vmaug_reg_set_free);
    again = vmaug_reg_set_load(NULL, f->dir, &error);
    g_assert_null(again);
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID);
}

/* A sidecar that says it belongs to another image is refused whole. */
static void test_other_image(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autofree gchar *other = g_build_filename(f->dir, "other.qcow2", NULL);
    g_autofree gchar *other_sidecar = vmaug_reg_sidecar_path(other);
    g_autoptr(VmaugRegSet) set = vmaug_reg_set_load(other, NULL, &error);
    g_autoptr(VmaugRegSet) bad = NULL;

    g_assert_no_error(error);
    g_assert_true(vmaug_reg_set_put(set, "echo", "", EV(IMAGE_START), 0,
                                    &error));
    g_assert_true(vmaug_reg_set_save(set, &error));
    g_assert_no_error(error);
    /* Copied next to disk.qcow2 under its name. */
    g_assert_cmpint(g_rename(other_sidecar, f->sidecar), ==, 0);
    bad = vmaug_reg_set_load(f->image, NULL, &error);
    g_assert_null(bad);
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID);
    g_assert_nonnull(strstr(error->message, "other.qcow2"));
    g_assert_nonnull(strstr(error->message, f->sidecar));
}

/* A copy of the image with its sidecar, same basename elsewhere, is the
 * same image: its registrations come along. */
static void test_copied(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugRegSet) set = vmaug_reg_set_load(f->image, NULL, &error);
    g_autoptr(VmaugRegSet) copy = NULL;
    g_autofree gchar *sub = g_build_filename(f->dir, "elsewhere", NULL);
    g_autofree gchar *image2 = g_build_filename(sub, "disk.qcow2", NULL);
    g_autofree gchar *sidecar2 = vmaug_reg_sidecar_path(image2);
    g_autofree gchar *text = NULL;
    gsize len;

    g_assert_true(vmaug_reg_set_put(set, "echo", "", EV(IMAGE_START), 0,
                                    &error));
    g_assert_true(vmaug_reg_set_save(set, &error));
    g_assert_cmpint(g_mkdir(sub, 0700), ==, 0);
    g_assert_true(g_file_get_contents(f->sidecar, &text, &len, NULL));
    g_assert_true(g_file_set_contents(sidecar2, text, len, NULL));
    copy = vmaug_reg_set_load(image2, NULL, &error);
    g_assert_no_error(error);
    g_assert_cmpstr(copy->image_id, ==, set->image_id);
    g_assert_nonnull(vmaug_reg_set_find(copy, "echo"));
}

static const gchar *const malformed[] = {
    "",
    "not json",
    "[]",
    "null",
    "{\"format\": \"vmaugment-registrations\"}",
    /* wrong format, version, types */
    "{\"format\": \"other\", \"format-version\": 1, \"image\": \"disk.qcow2\","
    " \"image-id\": \"" UUID "\", \"registrations\": []}",
    "{\"format\": \"vmaugment-registrations\", \"format-version\": 3,"
    " \"image\": \"disk.qcow2\", \"image-id\": \"" UUID "\","
    " \"registrations\": []}",
    "{\"format\": \"vmaugment-registrations\", \"format-version\": 0,"
    " \"image\": \"disk.qcow2\", \"image-id\": \"" UUID "\","
    " \"registrations\": []}",
    "{\"format\": \"vmaugment-registrations\", \"format-version\": \"1\","
    " \"image\": \"disk.qcow2\", \"image-id\": \"" UUID "\","
    " \"registrations\": []}",
    "{\"format\": \"vmaugment-registrations\", \"format-version\": 1.0,"
    " \"image\": \"disk.qcow2\", \"image-id\": \"" UUID "\","
    " \"registrations\": []}",
    /* no image, image not a string, bad id */
    "{\"format\": \"vmaugment-registrations\", \"format-version\": 1,"
    " \"image-id\": \"" UUID "\", \"registrations\": []}",
    "{\"format\": \"vmaugment-registrations\", \"format-version\": 1,"
    " \"image\": 7, \"image-id\": \"" UUID "\", \"registrations\": []}",
    "{\"format\": \"vmaugment-registrations\", \"format-version\": 1,"
    " \"image\": \"disk.qcow2\", \"image-id\": \"nope\","
    " \"registrations\": []}",
    /* unknown member */
    "{\"format\": \"vmaugment-registrations\", \"format-version\": 1,"
    " \"image\": \"disk.qcow2\", \"image-id\": \"" UUID "\","
    " \"registrations\": [], \"signature\": \"\"}",
    /* registrations not an array, entries malformed */
    "{\"format\": \"vmaugment-registrations\", \"format-version\": 1,"
    " \"image\": \"disk.qcow2\", \"image-id\": \"" UUID "\","
    " \"registrations\": {}}",
    "{\"format\": \"vmaugment-registrations\", \"format-version\": 1,"
    " \"image\": \"disk.qcow2\", \"image-id\": \"" UUID "\","
    " \"registrations\": [\"echo\"]}",
    "{\"format\": \"vmaugment-registrations\", \"format-version\": 1,"
    " \"image\": \"disk.qcow2\", \"image-id\": \"" UUID "\","
    " \"registrations\": [{\"name\": \"Echo\", \"version\": \"\","
    " \"events\": [], \"required\": false}]}",
    "{\"format\": \"vmaugment-registrations\", \"format-version\": 1,"
    " \"image\": \"disk.qcow2\", \"image-id\": \"" UUID "\","
    " \"registrations\": [{\"name\": \"../echo\", \"version\": \"\","
    " \"events\": [], \"required\": false}]}",
    "{\"format\": \"vmaugment-registrations\", \"format-version\": 1,"
    " \"image\": \"disk.qcow2\", \"image-id\": \"" UUID "\","
    " \"registrations\": [{\"name\": \"echo\", \"version\": \"1.x\","
    " \"events\": [], \"required\": false}]}",
    "{\"format\": \"vmaugment-registrations\", \"format-version\": 1,"
    " \"image\": \"disk.qcow2\", \"image-id\": \"" UUID "\","
    " \"registrations\": [{\"name\": \"echo\", \"version\": \"\","
    " \"events\": [\"module-loaded\"], \"required\": false}]}",
    "{\"format\": \"vmaugment-registrations\", \"format-version\": 1,"
    " \"image\": \"disk.qcow2\", \"image-id\": \"" UUID "\","
    " \"registrations\": [{\"name\": \"echo\", \"version\": \"\","
    " \"events\": [\"image-start\", \"image-start\"],"
    " \"required\": false}]}",
    "{\"format\": \"vmaugment-registrations\", \"format-version\": 1,"
    " \"image\": \"disk.qcow2\", \"image-id\": \"" UUID "\","
    " \"registrations\": [{\"name\": \"echo\", \"version\": \"\","
    " \"events\": [2], \"required\": false}]}",
    "{\"format\": \"vmaugment-registrations\", \"format-version\": 1,"
    " \"image\": \"disk.qcow2\", \"image-id\": \"" UUID "\","
    " \"registrations\": [{\"name\": \"echo\", \"version\": \"\","
    " \"events\": [], \"required\": 1}]}",
    "{\"format\": \"vmaugment-registrations\", \"format-version\": 1,"
    " \"image\": \"disk.qcow2\", \"image-id\": \"" UUID "\","
    " \"registrations\": [{\"name\": \"echo\", \"version\": \"\","
    " \"events\": []}]}",
    "{\"format\": \"vmaugment-registrations\", \"format-version\": 1,"
    " \"image\": \"disk.qcow2\", \"image-id\": \"" UUID "\","
    " \"registrations\": [{\"name\": \"echo\", \"version\": \"\","
    " \"events\": [], \"required\": false, \"flags\": 0}]}",
    /* the same module twice */
    "{\"format\": \"vmaugment-registrations\", \"format-version\": 1,"
    " \"image\": \"disk.qcow2\", \"image-id\": \"" UUID "\","
    " \"registrations\": [{\"name\": \"echo\", \"version\": \"\","
    " \"events\": [], \"required\": false}, {\"name\": \"echo\","
    " \"version\": \"1.0\", \"events\": [], \"required\": true}]}",
    /* pins: not in version 1; stated in every entry of version 2 */
    "{\"format\": \"vmaugment-registrations\", \"format-version\": 1,"
    " \"image\": \"disk.qcow2\", \"image-id\": \"" UUID "\","
    " \"registrations\": [{\"name\": \"scanner\", \"version\": \"\","
    " \"events\": [], \"required\": true, \"pinned\": true}]}",
    "{\"format\": \"vmaugment-registrations\", \"format-version\": 1,"
    " \"image\": \"disk.qcow2\", \"image-id\": \"" UUID "\","
    " \"registrations\": [{\"name\": \"scanner\", \"version\": \"\","
    " \"events\": [], \"required\": true, \"config\": {}}]}",
    "{\"format\": \"vmaugment-registrations\", \"format-version\": 2,"
    " \"image\": \"disk.qcow2\", \"image-id\": \"" UUID "\","
    " \"registrations\": [{\"name\": \"scanner\", \"version\": \"\","
    " \"events\": [], \"required\": true}]}",
    "{\"format\": \"vmaugment-registrations\", \"format-version\": 2,"
    " \"image\": \"disk.qcow2\", \"image-id\": \"" UUID "\","
    " \"registrations\": [{\"name\": \"scanner\", \"version\": \"\","
    " \"events\": [], \"required\": true, \"pinned\": \"yes\"}]}",
    "{\"format\": \"vmaugment-registrations\", \"format-version\": 2,"
    " \"image\": \"disk.qcow2\", \"image-id\": \"" UUID "\","
    " \"registrations\": [{\"name\": \"scanner\", \"version\": \"\","
    " \"events\": [], \"required\": true, \"pinned\": 1}]}",
    "{\"format\": \"vmaugment-registrations\", \"format-version\": 2,"
    " \"image\": \"disk.qcow2\", \"image-id\": \"" UUID "\","
    " \"registrations\": [{\"name\": \"scanner\", \"version\": \"\","
    " \"events\": [], \"required\": true, \"pinned\": true,"
    " \"lock\": true}]}",
    /* host configuration: only with a pin, an object of strings */
    "{\"format\": \"vmaugment-registrations\", \"format-version\": 2,"
    " \"image\": \"disk.qcow2\", \"image-id\": \"" UUID "\","
    " \"registrations\": [{\"name\": \"scanner\", \"version\": \"\","
    " \"events\": [], \"required\": true, \"pinned\": false,"
    " \"config\": {\"policy\": \"refuse\"}}]}",
    "{\"format\": \"vmaugment-registrations\", \"format-version\": 2,"
    " \"image\": \"disk.qcow2\", \"image-id\": \"" UUID "\","
    " \"registrations\": [{\"name\": \"scanner\", \"version\": \"\","
    " \"events\": [], \"required\": true, \"pinned\": true,"
    " \"config\": [\"policy\"]}]}",
    "{\"format\": \"vmaugment-registrations\", \"format-version\": 2,"
    " \"image\": \"disk.qcow2\", \"image-id\": \"" UUID "\","
    " \"registrations\": [{\"name\": \"scanner\", \"version\": \"\","
    " \"events\": [], \"required\": true, \"pinned\": true,"
    " \"config\": {\"timeout\": 30}}]}",
    "{\"format\": \"vmaugment-registrations\", \"format-version\": 2,"
    " \"image\": \"disk.qcow2\", \"image-id\": \"" UUID "\","
    " \"registrations\": [{\"name\": \"scanner\", \"version\": \"\","
    " \"events\": [], \"required\": true, \"pinned\": true,"
    " \"config\": {\"policy\": null}}]}",
    "{\"format\": \"vmaugment-registrations\", \"format-version\": 2,"
    " \"image\": \"disk.qcow2\", \"image-id\": \"" UUID "\","
    " \"registrations\": [{\"name\": \"scanner\", \"version\": \"\","
    " \"events\": [], \"required\": true, \"pinned\": true,"
    " \"config\": {\"\": \"refuse\"}}]}",
    /* nested too deeply for the format */
    "{\"format\": \"vmaugment-registrations\", \"format-version\": 1,"
    " \"image\": \"disk.qcow2\", \"image-id\": \"" UUID "\","
    " \"registrations\": [{\"name\": \"echo\", \"version\": \"\","
    " \"events\": [[[]]], \"required\": false}]}",
    NULL
};

/* A pinned registration and its host configuration survive the guest's
 * changes of other registrations and a round trip through the file. */
static void test_pinned_round_trip(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugRegSet) set = vmaug_reg_set_load(f->image, NULL, &error);
    g_autoptr(VmaugRegSet) again = NULL;
    g_autofree gchar *text = NULL;
    const VmaugRegistration *r;

    g_assert_no_error(error);
    g_assert_true(vmaug_reg_set_pin(set, "scanner", "1.0", EV(IMAGE_START),
                                    VMAUG_REG_F_REQUIRED, &error));
    g_assert_true(vmaug_reg_set_config(set, "scanner", "policy", "refuse",
                                       &error));
    g_assert_true(vmaug_reg_set_config(set, "scanner", "paths", "/srv\n/etc",
                                       &error));
    g_assert_true(vmaug_reg_set_put(set, "echo", "", EV(IMAGE_STOP), 0,
                                    &error));
    g_assert_true(vmaug_reg_set_save(set, &error));
    g_assert_true(g_file_get_contents(f->sidecar, &text, NULL, NULL));
    g_assert_nonnull(strstr(text, "\"format-version\" : 2"));

    again = vmaug_reg_set_load(f->image, NULL, &error);
    g_assert_no_error(error);
    r = vmaug_reg_set_find(again, "scanner");
    g_assert_nonnull(r);
    g_assert_true(r->pinned);
    g_assert_cmphex(r->flags, ==, VMAUG_REG_F_REQUIRED);
    g_assert_cmpstr(vmaug_reg_set_host_config(again, "scanner", "policy"),
                    ==, "refuse");
    g_assert_cmpstr(vmaug_reg_set_host_config(again, "scanner", "paths"),
                    ==, "/srv\n/etc");
    g_assert_null(vmaug_reg_set_host_config(again, "scanner", "timeout"));
    g_assert_false(vmaug_reg_set_find(again, "echo")->pinned);

    /* The host owner re-pins (a new version): its configuration stays. */
    g_assert_true(vmaug_reg_set_pin(again, "scanner", "1.1", EV(IMAGE_START),
                                    VMAUG_REG_F_REQUIRED, &error));
    g_assert_cmpstr(vmaug_reg_set_host_config(again, "scanner", "policy"),
                    ==, "refuse");
    g_assert_true(vmaug_reg_set_config(again, "scanner", "policy", NULL,
                                       &error));
    g_assert_null(vmaug_reg_set_host_config(again, "scanner", "policy"));
    g_assert_false(vmaug_reg_set_config(again, "scanner", "policy", NULL,
                                        &error));
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_NOT_FOUND);
}

/*
 * The guest's (and QEMU's) changes of a pinned name are refused and change
 * nothing: not removed, replaced, downgraded or made optional.  Only the
 * host owner's removal takes it away.
 */
static void test_pinned_refuses_guest(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugRegSet) set = vmaug_reg_set_load(f->image, NULL, &error);
    const VmaugRegistration *r;

    g_assert_no_error(error);
    g_assert_true(vmaug_reg_set_pin(set, "scanner", "2.0", EV(IMAGE_START),
                                    VMAUG_REG_F_REQUIRED, &error));
    g_assert_true(vmaug_reg_set_config(set, "scanner", "policy", "refuse",
                                       &error));

    g_assert_false(vmaug_reg_set_remove(set, "scanner", &error));
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_DENIED);
    g_assert_nonnull(strstr(error->message, "pinned"));
    g_clear_error(&error);
    g_assert_false(vmaug_reg_set_put(set, "scanner", "1.0", EV(IMAGE_START),
                                     0, &error));
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_DENIED);
    g_clear_error(&error);
    g_assert_false(vmaug_reg_set_put(set, "scanner", "2.0", EV(IMAGE_START),
                                     VMAUG_REG_F_REQUIRED, &error));
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_DENIED);
    g_clear_error(&error);

    r = vmaug_reg_set_find(set, "scanner");
    g_assert_nonnull(r);
    g_assert_true(r->pinned);
    g_assert_cmpstr(r->version, ==, "2.0");
    g_assert_cmphex(r->flags, ==, VMAUG_REG_F_REQUIRED);
    g_assert_cmpstr(vmaug_reg_set_host_config(set, "scanner", "policy"), ==,
                    "refuse");

    g_assert_true(vmaug_reg_set_remove_any(set, "scanner", &error));
    g_assert_null(vmaug_reg_set_find(set, "scanner"));
}

/* Host configuration needs a pin, checked keys and values. */
static void test_pinned_config_checks(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugRegSet) set = vmaug_reg_set_load(f->image, NULL, &error);
    g_autofree gchar *long_key = g_strnfill(VMAUG_CONFIG_KEY_MAX, 'k');
    g_autofree gchar *long_value = g_strnfill(VMAUG_MAX_CONFIG_VALUE + 1,
                                              'v');

    g_assert_true(vmaug_reg_set_put(set, "echo", "", 0, 0, &error));
    g_assert_false(vmaug_reg_set_config(set, "echo", "policy", "refuse",
                                        &error));
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID);
    g_clear_error(&error);
    g_assert_false(vmaug_reg_set_config(set, "nosuch", "policy", "refuse",
                                        &error));
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID);
    g_clear_error(&error);
    g_assert_null(vmaug_reg_set_host_config(set, "echo", "policy"));

    g_assert_true(vmaug_reg_set_pin(set, "scanner", "", EV(IMAGE_START), 0,
                                    &error));
    g_assert_false(vmaug_reg_set_config(set, "scanner", long_key, "x",
                                        &error));
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID);
    g_clear_error(&error);
    g_assert_false(vmaug_reg_set_config(set, "scanner", "k", long_value,
                                        &error));
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID);
    g_clear_error(&error);
    g_assert_false(vmaug_reg_set_config(set, "scanner", "k", "\xff",
                                        &error));
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID);
    g_clear_error(&error);
    for (guint i = 0; i < VMAUG_REGS_MAX_CONFIG; i++) {
        g_autofree gchar *k = g_strdup_printf("k%u", i);

        g_assert_true(vmaug_reg_set_config(set, "scanner", k, "v", &error));
    }
    g_assert_false(vmaug_reg_set_config(set, "scanner", "one-more", "v",
                                        &error));
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_TOO_BIG);
}

/* A set without pins is written as version 1, which helpers that know no
 * pins read; the documented version 1 is read (test_documented_format). */
static void test_old_format_kept(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugRegSet) set = vmaug_reg_set_load(f->image, NULL, &error);
    g_autofree gchar *text = NULL;

    g_assert_true(vmaug_reg_set_put(set, "echo", "", EV(IMAGE_START), 0,
                                    &error));
    g_assert_true(vmaug_reg_set_save(set, &error));
    g_assert_true(g_file_get_contents(f->sidecar, &text, NULL, NULL));
    g_assert_nonnull(strstr(text, "\"format-version\" : 1"));
    g_assert_null(strstr(text, "pinned"));
}

/*
 * A change holds the lock of the sidecar's directory until it is freed:
 * one who does not wait (the helper) is told BUSY, and a reader is not
 * held up.
 */
static void test_update_lock(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugRegSet) held = NULL;
    g_autoptr(VmaugRegSet) other = NULL;
    g_autoptr(VmaugRegSet) reader = NULL;

    held = vmaug_reg_set_load_for_update(f->image, NULL, 0, &error);
    g_assert_no_error(error);
    other = vmaug_reg_set_load_for_update(f->image, NULL, 0, &error);
    g_assert_null(other);
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_BUSY);
    g_clear_error(&error);
    reader = vmaug_reg_set_load(f->image, NULL, &error);
    g_assert_no_error(error);
    g_assert_true(vmaug_reg_set_pin(held, "scanner", "", EV(IMAGE_START),
                                    VMAUG_REG_F_REQUIRED, &error));
    g_assert_true(vmaug_reg_set_save(held, &error));
    g_clear_pointer(&held, vmaug_reg_set_free);
    /* Released: the next change starts from the pin. */
    other = vmaug_reg_set_load_for_update(f->image, NULL, 0, &error);
    g_assert_no_error(error);
    g_assert_true(vmaug_reg_set_find(other, "scanner")->pinned);
}

/*
 * A change's end releases the lock even while a process forked during
 * the change (one not yet exec'd) still shares its descriptor.
 */
static void test_update_lock_forked(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugRegSet) other = NULL;
    VmaugRegSet *held;
    int go[2];
    pid_t pid;
    char c = 0;

    held = vmaug_reg_set_load_for_update(f->image, NULL, 0, &error);
    g_assert_no_error(error);
    g_assert_cmpint(pipe(go), ==, 0);
    pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        /* Holds every descriptor of the parent's until told to go. */
        close(go[1]);
        _exit(read(go[0], &c, 1) < 0);
    }
    close(go[0]);
    vmaug_reg_set_free(held);
    other = vmaug_reg_set_load_for_update(f->image, NULL, 0, &error);
    g_assert_no_error(error);
    g_assert_nonnull(other);
    g_assert_cmpint(write(go[1], &c, 1), ==, 1);
    close(go[1]);
    g_assert_cmpint(waitpid(pid, NULL, 0), ==, pid);
}

/*
 * A lock that is never released (anyone who can open the directory can
 * take it) makes the host owner's tool give up after its bounded wait,
 * with BUSY, instead of hanging.
 */
static void test_update_lock_held(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugRegSet) set = NULL;
    gint64 start;
    int fd;

    fd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(flock(fd, LOCK_EX), ==, 0);
    /* Killed, and so failed, if the wait is not bounded. */
    alarm(30);
    start = g_get_monotonic_time();
    set = vmaug_reg_set_load_for_update(f->image, NULL, 300, &error);
    alarm(0);
    g_assert_null(set);
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_BUSY);
    g_assert_cmpint(g_get_monotonic_time() - start, >=, 300 * 1000);
    g_assert_cmpint(g_get_monotonic_time() - start, <, 20 * G_USEC_PER_SEC);
    close(fd);
}

static void test_malformed(Fixture *f, gconstpointer data)
{
    for (guint i = 0; malformed[i] != NULL; i++) {
        g_autoptr(GError) error = NULL;
        g_autoptr(VmaugRegSet) set = NULL;

        write_sidecar(f, malformed[i]);
        set = vmaug_reg_set_load(f->image, NULL, &error);
        if (set != NULL) {
            g_test_message("accepted: %s", malformed[i]);
        }
        g_assert_null(set);
        g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID);
        g_assert_nonnull(strstr(error->message, f->sidecar));
    }
}

/*
 * json-glib also reads comments and single-quoted strings: a quote inside
 * one must not hide the nesting that follows from the depth check, or a
 * sidecar deep enough would overflow the parser's stack.
 */
static void test_hidden_nesting(Fixture *f, gconstpointer data)
{
    static const gchar *const hide[][2] = {
        { "/* \" */", "/* \" */" },
        { "['\"',", ", '\"']" },
    };

    for (guint i = 0; i < G_N_ELEMENTS(hide); i++) {
        g_autoptr(GString) text = g_string_new(hide[i][0]);
        g_autoptr(GError) error = NULL;
        g_autoptr(VmaugRegSet) set = NULL;

        for (guint d = 0; d < 1000; d++) {
            g_string_append_c(text, '[');
        }
        for (guint d = 0; d < 1000; d++) {
            g_string_append_c(text, ']');
        }
        g_string_append(text, hide[i][1]);
        write_sidecar(f, text->str);
        set = vmaug_reg_set_load(f->image, NULL, &error);
        g_assert_null(set);
        g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID);
        g_test_message("refused: %s", error->message);
        g_assert_nonnull(strstr(error->message, "nested too deeply"));
    }
}

static void test_not_regular(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugRegSet) set = NULL;

    /* A FIFO is refused at once, not waited on. */
    g_assert_cmpint(mkfifo(f->sidecar, 0600), ==, 0);
    set = vmaug_reg_set_load(f->image, NULL, &error);
    g_assert_null(set);
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID);
}

static void test_too_big_file(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugRegSet) set = NULL;
    gsize len = VMAUG_REGS_MAX_FILE + 1;
    g_autofree gchar *big = g_malloc(len);

    memset(big, ' ', len);
    g_assert_true(g_file_set_contents(f->sidecar, big, len, NULL));
    set = vmaug_reg_set_load(f->image, NULL, &error);
    g_assert_null(set);
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_TOO_BIG);
}

static void test_too_many(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugRegSet) set = vmaug_reg_set_load(f->image, NULL, &error);
    g_autoptr(VmaugRegSet) bad = NULL;
    GString *json;

    for (guint i = 0; i < VMAUG_REGS_MAX; i++) {
        g_autofree gchar *name = g_strdup_printf("m%u", i);

        g_assert_true(vmaug_reg_set_put(set, name, "", 0, 0, &error));
    }
    g_assert_false(vmaug_reg_set_put(set, "one-more", "", 0, 0, &error));
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_TOO_BIG);
    g_clear_error(&error);
    /* Replacing one is still possible at the limit. */
    g_assert_true(vmaug_reg_set_put(set, "m0", "1.0", 0, 0, &error));
    g_assert_true(vmaug_reg_set_save(set, &error));
    g_assert_no_error(error);
    g_clear_pointer(&set, vmaug_reg_set_free);
    set = vmaug_reg_set_load(f->image, NULL, &error);
    g_assert_no_error(error);
    g_assert_cmpuint(set->regs->len, ==, VMAUG_REGS_MAX);

    /* One more in the file than the limit is refused when read. */
    json = g_string_new("{\"format\": \"vmaugment-registrations\","
                        " \"format-version\": 1, \"image\": \"disk.qcow2\","
                        " \"image-id\": \"" UUID "\", \"registrations\": [");
    for (guint i = 0; i <= VMAUG_REGS_MAX; i++) {
        g_string_append_printf(json, "%s{\"name\": \"m%u\", \"version\":"
                               " \"\", \"events\": [], \"required\": false}",
                               i > 0 ? "," : "", i);
    }
    g_string_append(json, "]}");
    write_sidecar(f, json->str);
    g_string_free(json, TRUE);
    bad = vmaug_reg_set_load(f->image, NULL, &error);
    g_assert_null(bad);
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_TOO_BIG);
}

static void test_put_checks(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugRegSet) set = vmaug_reg_set_load(f->image, NULL, &error);

    g_assert_false(vmaug_reg_set_put(set, "", "", 0, 0, &error));
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID);
    g_clear_error(&error);
    g_assert_false(vmaug_reg_set_put(set, "echo", "one", 0, 0, &error));
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID);
    g_clear_error(&error);
    g_assert_false(vmaug_reg_set_put(set, "echo", "",
                                     EV(MODULE_LOADED), 0, &error));
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID);
    g_clear_error(&error);
    g_assert_false(vmaug_reg_set_put(set, "echo", "", 0, 2, &error));
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID);
    g_clear_error(&error);
    g_assert_cmpuint(set->regs->len, ==, 0);
}

static void test_events_strings(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autofree gchar *all = vmaug_reg_events_to_string(
        VMAUG_EVENT_LIFECYCLE_MASK | EV(MODULE_LOADED));
    g_autofree gchar *none = vmaug_reg_events_to_string(0);
    guint32 mask = 0xdead;

    g_assert_cmpstr(all, ==, "host-start,image-start,image-stop,host-stop,"
                    "pause,resume");
    g_assert_cmpstr(none, ==, "");
    g_assert_true(vmaug_reg_events_from_string(all, &mask, &error));
    g_assert_cmphex(mask, ==, VMAUG_EVENT_LIFECYCLE_MASK);
    g_assert_true(vmaug_reg_events_from_string("", &mask, &error));
    g_assert_cmphex(mask, ==, 0);
    g_assert_true(vmaug_reg_events_from_string(" image-stop , pause",
                                               &mask, &error));
    g_assert_cmphex(mask, ==, EV(IMAGE_STOP) | EV(PAUSE));
    g_assert_no_error(error);
    g_assert_false(vmaug_reg_events_from_string("image-start,module-loaded",
                                                &mask, &error));
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID);
    g_clear_error(&error);
    g_assert_false(vmaug_reg_events_from_string("image-start,", &mask,
                                                &error));
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID);
}

/* Saving replaces the file whole: no temporary file is left behind. */
static void test_atomic_save(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugRegSet) set = vmaug_reg_set_load(f->image, NULL, &error);
    g_autoptr(GDir) d = NULL;
    const gchar *e;
    guint files = 0;

    for (guint i = 0; i < 5; i++) {
        g_autofree gchar *name = g_strdup_printf("m%u", i);

        g_assert_true(vmaug_reg_set_put(set, name, "", 0, 0, &error));
        g_assert_true(vmaug_reg_set_save(set, &error));
        g_assert_no_error(error);
    }
    d = g_dir_open(f->dir, 0, &error);
    g_assert_no_error(error);
    while ((e = g_dir_read_name(d)) != NULL) {
        g_assert_cmpstr(e, ==, "disk.qcow2.vmaugment.json");
        files++;
    }
    g_assert_cmpuint(files, ==, 1);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
#define ADD(path, fn) \
    g_test_add(path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
    ADD("/registrations/sidecar-path", test_sidecar_path);
    ADD("/registrations/missing-is-empty", test_missing_is_empty);
    ADD("/registrations/round-trip", test_round_trip);
    ADD("/registrations/documented-format", test_documented_format);
    ADD("/registrations/store-file", test_store_file);
    ADD("/registrations/other-image", test_other_image);
    ADD("/registrations/copied", test_copied);
    ADD("/registrations/malformed", test_malformed);
    ADD("/registrations/pinned/round-trip", test_pinned_round_trip);
    ADD("/registrations/pinned/refuses-guest", test_pinned_refuses_guest);
    ADD("/registrations/pinned/config-checks", test_pinned_config_checks);
    ADD("/registrations/pinned/old-format-kept", test_old_format_kept);
    ADD("/registrations/pinned/update-lock", test_update_lock);
    ADD("/registrations/pinned/update-lock-held", test_update_lock_held);
    ADD("/registrations/pinned/update-lock-forked", test_update_lock_forked);
    ADD("/registrations/hidden-nesting", test_hidden_nesting);
    ADD("/registrations/not-regular", test_not_regular);
    ADD("/registrations/too-big-file", test_too_big_file);
    ADD("/registrations/too-many", test_too_many);
    ADD("/registrations/put-checks", test_put_checks);
    ADD("/registrations/events-strings", test_events_strings);
    ADD("/registrations/atomic-save", test_atomic_save);
#undef ADD
    return g_test_run();
}
