/*
 * The offline-servicing record of an image (servicing.h): a guest's report
 * counts only for a bundle applied to the image, only once, with its text
 * capped and cleaned; the record on disk is checked with json-glib
 * directly, not with the reader under test.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <sys/stat.h>

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "host-common.h"
#include "servicing.h"

#define SHA_HEX "00112233445566778899aabbccddeeff" \
                "00112233445566778899aabbccddeeff"

typedef struct {
    gchar *dir;
    gchar *image;
} Fixture;

static void fixture_setup(Fixture *f, gconstpointer data)
{
    g_autoptr(VmaugServicing) s = NULL;
    g_autoptr(GError) error = NULL;

    f->dir = g_dir_make_tmp("test-servicing-XXXXXX", NULL);
    f->image = g_build_filename(f->dir, "disk.qcow2", NULL);
    s = vmaug_servicing_load(f->image, &error);
    g_assert_no_error(error);
    vmaug_servicing_applied(s, "motd-refresh", "2026.11.1", SHA_HEX);
    g_assert_true(vmaug_servicing_save(s, &error));
    g_assert_no_error(error);
}

static void fixture_teardown(Fixture *f, gconstpointer data)
{
    g_autofree gchar *path = vmaug_servicing_path(f->image);

    g_unlink(path);
    g_rmdir(f->dir);
    g_free(f->image);
    g_free(f->dir);
}

static void fill_report(struct vmaug_servicing_report *rep,
                        const gchar *bundle, const gchar *version,
                        guint32 outcome)
{
    memset(rep, 0, sizeof(*rep));
    g_strlcpy((gchar *)rep->bundle, bundle, sizeof(rep->bundle));
    g_strlcpy((gchar *)rep->version, version, sizeof(rep->version));
    for (guint i = 0; i < sizeof(rep->manifest_sha256); i++) {
        rep->manifest_sha256[i] = (guint8)((i % 16) * 0x11);
    }
    rep->outcome = GUINT32_TO_LE(outcome);
}

/* The file's text, to compare before and after a refused report. */
static gchar *record_text(Fixture *f)
{
    g_autofree gchar *path = vmaug_servicing_path(f->image);
    gchar *text = NULL;

    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    return text;
}

/* Member @name of the record's only bundle, as json-glib reads the file. */
static JsonNode *record_member(Fixture *f, const gchar *name)
{
    g_autoptr(JsonParser) p = json_parser_new();
    g_autofree gchar *path = vmaug_servicing_path(f->image);
    JsonArray *bundles;
    JsonNode *n;

    g_assert_true(json_parser_load_from_file(p, path, NULL));
    bundles = json_object_get_array_member(
        json_node_get_object(json_parser_get_root(p)), "bundles");
    g_assert_cmpuint(json_array_get_length(bundles), ==, 1);
    n = json_object_get_member(json_array_get_object_element(bundles, 0),
                               name);
    return n ? json_node_copy(n) : NULL;
}

/* Report through a fresh load and save, as the helper does. */
static gboolean report(Fixture *f, const struct vmaug_servicing_report *rep,
                       const gchar *text, gsize len, GError **error)
{
    g_autoptr(VmaugServicing) s = vmaug_servicing_load(f->image, error);

    if (s == NULL) {
        return FALSE;
    }
    return vmaug_servicing_report(s, rep, (const guint8 *)text, len,
                                  error) != NULL &&
           vmaug_servicing_save(s, error);
}

static void start(Fixture *f)
{
    g_autoptr(VmaugServicing) s = vmaug_servicing_load(f->image, NULL);

    g_assert_true(vmaug_servicing_note_start(s));
    g_assert_true(vmaug_servicing_save(s, NULL));
}

static void test_confirm(Fixture *f, gconstpointer data)
{
    struct vmaug_servicing_report rep;
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonNode) state = NULL;
    g_autoptr(JsonNode) boot = NULL;
    g_autoptr(JsonNode) message = NULL;

    start(f);
    start(f);
    fill_report(&rep, "motd-refresh", "2026.11.1",
                VMAUG_SERVICING_CONFIRMED);
    g_assert_true(report(f, &rep, "motd in place", 13, &error));
    g_assert_no_error(error);
    state = record_member(f, "state");
    boot = record_member(f, "boot");
    message = record_member(f, "message");
    g_assert_cmpstr(json_node_get_string(state), ==, "confirmed");
    g_assert_cmpint(json_node_get_int(boot), ==, 2);
    g_assert_cmpstr(json_node_get_string(message), ==, "motd in place");
}

static void test_failed(Fixture *f, gconstpointer data)
{
    struct vmaug_servicing_report rep;
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonNode) state = NULL;
    g_autoptr(JsonNode) boot = NULL;

    start(f);
    fill_report(&rep, "motd-refresh", "2026.11.1", VMAUG_SERVICING_FAILED);
    g_assert_true(report(f, &rep, "dpkg: error", 11, &error));
    g_assert_no_error(error);
    state = record_member(f, "state");
    boot = record_member(f, "boot");
    g_assert_cmpstr(json_node_get_string(state), ==, "failed");
    g_assert_cmpint(json_node_get_int(boot), ==, 1);
}

/* A refused report leaves the record byte for byte as it was. */
static void assert_refused(Fixture *f,
                           const struct vmaug_servicing_report *rep,
                           const gchar *text, gsize len, gint code,
                           const gchar *message)
{
    g_autofree gchar *before = record_text(f);
    g_autofree gchar *after = NULL;
    g_autoptr(GError) error = NULL;

    g_assert_false(report(f, rep, text, len, &error));
    g_assert_error(error, VMAUG_HOST_ERROR, code);
    g_assert_cmpstr(error->message, ==, message);
    after = record_text(f);
    g_assert_cmpstr(before, ==, after);
}

static void test_unknown_bundle(Fixture *f, gconstpointer data)
{
    struct vmaug_servicing_report rep;

    fill_report(&rep, "never-applied", "1", VMAUG_SERVICING_CONFIRMED);
    assert_refused(f, &rep, NULL, 0, VMAUG_HOST_ERROR_NOT_FOUND,
                   "bundle never-applied 1 was not applied to this image");
    fill_report(&rep, "motd-refresh", "2026.11.2",
                VMAUG_SERVICING_CONFIRMED);
    assert_refused(f, &rep, NULL, 0, VMAUG_HOST_ERROR_NOT_FOUND,
                   "bundle motd-refresh 2026.11.2 was not applied to this "
                   "image");
}

static void test_other_manifest(Fixture *f, gconstpointer data)
{
    struct vmaug_servicing_report rep;

    fill_report(&rep, "motd-refresh", "2026.11.1",
                VMAUG_SERVICING_CONFIRMED);
    rep.manifest_sha256[31] ^= 1;
    assert_refused(f, &rep, NULL, 0, VMAUG_HOST_ERROR_DENIED,
                   "bundle motd-refresh 2026.11.1 was applied with another "
                   "manifest");
}

static void test_twice(Fixture *f, gconstpointer data)
{
    struct vmaug_servicing_report rep;
    g_autoptr(GError) error = NULL;

    start(f);
    fill_report(&rep, "motd-refresh", "2026.11.1",
                VMAUG_SERVICING_CONFIRMED);
    g_assert_true(report(f, &rep, NULL, 0, &error));
    g_assert_no_error(error);
    assert_refused(f, &rep, NULL, 0, VMAUG_HOST_ERROR_EXISTS,
                   "bundle motd-refresh 2026.11.1 was already reported "
                   "confirmed at boot 1");
    /* Nor can a later failure overwrite the confirmation. */
    rep.outcome = GUINT32_TO_LE(VMAUG_SERVICING_FAILED);
    assert_refused(f, &rep, NULL, 0, VMAUG_HOST_ERROR_EXISTS,
                   "bundle motd-refresh 2026.11.1 was already reported "
                   "confirmed at boot 1");
}

static void test_message_oversize(Fixture *f, gconstpointer data)
{
    struct vmaug_servicing_report rep;
    g_autofree gchar *text = g_strnfill(VMAUG_SERVICING_MESSAGE_MAX + 1, 'a');

    fill_report(&rep, "motd-refresh", "2026.11.1",
                VMAUG_SERVICING_CONFIRMED);
    assert_refused(f, &rep, text, VMAUG_SERVICING_MESSAGE_MAX + 1,
                   VMAUG_HOST_ERROR_TOO_BIG,
                   "the message is longer than 256 bytes");
}

static void test_message_not_text(Fixture *f, gconstpointer data)
{
    struct vmaug_servicing_report rep;

    fill_report(&rep, "motd-refresh", "2026.11.1",
                VMAUG_SERVICING_CONFIRMED);
    assert_refused(f, &rep, "ok\xff\xfe", 4, VMAUG_HOST_ERROR_INVALID,
                   "the message is not UTF-8 text");
    assert_refused(f, &rep, "ok\0hidden", 9, VMAUG_HOST_ERROR_INVALID,
                   "the message is not UTF-8 text");
}

/* Terminal escapes, line breaks and direction overrides are kept as '?'. */
static void test_message_hostile(Fixture *f, gconstpointer data)
{
    static const gchar text[] = "ok\x1b[2J\nfake: line\xe2\x80\xae" "evil é";
    struct vmaug_servicing_report rep;
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonNode) message = NULL;

    fill_report(&rep, "motd-refresh", "2026.11.1",
                VMAUG_SERVICING_CONFIRMED);
    g_assert_true(report(f, &rep, text, strlen(text), &error));
    g_assert_no_error(error);
    message = record_member(f, "message");
    g_assert_cmpstr(json_node_get_string(message), ==,
                    "ok?[2J?fake: line?evil é");
}

static void test_malformed_report(Fixture *f, gconstpointer data)
{
    struct vmaug_servicing_report rep;

    fill_report(&rep, "motd-refresh", "2026.11.1", 3);
    assert_refused(f, &rep, NULL, 0, VMAUG_HOST_ERROR_INVALID,
                   "bad outcome");
    fill_report(&rep, "motd-refresh", "2026.11.1",
                VMAUG_SERVICING_CONFIRMED);
    rep.boot = GUINT32_TO_LE(7);
    assert_refused(f, &rep, NULL, 0, VMAUG_HOST_ERROR_INVALID,
                   "bad outcome");
    fill_report(&rep, "../motd", "2026.11.1", VMAUG_SERVICING_CONFIRMED);
    assert_refused(f, &rep, NULL, 0, VMAUG_HOST_ERROR_INVALID,
                   "bad bundle id or version");
    fill_report(&rep, "motd-refresh", "2026.11.1",
                VMAUG_SERVICING_CONFIRMED);
    memset(rep.bundle, 'a', sizeof(rep.bundle));
    assert_refused(f, &rep, NULL, 0, VMAUG_HOST_ERROR_INVALID,
                   "bad bundle id or version");
}

/* Only bundles still awaiting their report count starts. */
static void test_starts(Fixture *f, gconstpointer data)
{
    struct vmaug_servicing_report rep;
    g_autoptr(VmaugServicing) s = NULL;
    g_autoptr(JsonNode) starts = NULL;

    start(f);
    fill_report(&rep, "motd-refresh", "2026.11.1",
                VMAUG_SERVICING_CONFIRMED);
    g_assert_true(report(f, &rep, NULL, 0, NULL));
    s = vmaug_servicing_load(f->image, NULL);
    g_assert_false(vmaug_servicing_note_start(s));
    starts = record_member(f, "starts");
    g_assert_cmpint(json_node_get_int(starts), ==, 1);
}

static void test_malformed_file(Fixture *f, gconstpointer data)
{
    g_autofree gchar *path = vmaug_servicing_path(f->image);
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugServicing) s = NULL;

    g_assert_true(g_file_set_contents(path,
        "{\"format\": 1, \"bundles\": [{\"bundle\": \"a\", \"version\": \"1\","
        " \"manifest_sha256\": \"" SHA_HEX "\", \"applied\": \"x\","
        " \"starts\": 0, \"state\": \"confirmed-by-itself\"}]}", -1, NULL));
    s = vmaug_servicing_load(f->image, &error);
    g_assert_null(s);
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID);
    g_assert_nonnull(strstr(error->message, "bundle entry 0 is malformed"));
}

/*
 * The record lies next to the image, where an image's supplier may have
 * put anything under its name: the helper, which serves every VM, must
 * neither overflow its stack parsing it nor wait on it.
 */
static void test_hostile_file(Fixture *f, gconstpointer data)
{
    g_autofree gchar *path = vmaug_servicing_path(f->image);
    g_autoptr(GString) deep = g_string_new("{\"format\": 1, \"bundles\": ");

    while (deep->len < 1000 * 1000) {
        g_string_append_c(deep, '[');
    }
    g_assert_true(g_file_set_contents(path, deep->str, deep->len, NULL));
    for (guint i = 0; i < 2; i++) {
        g_autoptr(GError) error = NULL;
        g_autoptr(VmaugServicing) s = vmaug_servicing_load(f->image, &error);

        g_assert_null(s);
        g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID);
        g_test_message("refused: %s", error->message);
        /* Then a FIFO under its name. */
        g_unlink(path);
        g_assert_cmpint(mkfifo(path, 0600), ==, 0);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
#define ADD(path, fn) \
    g_test_add(path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
    ADD("/servicing/confirm", test_confirm);
    ADD("/servicing/failed", test_failed);
    ADD("/servicing/unknown-bundle", test_unknown_bundle);
    ADD("/servicing/other-manifest", test_other_manifest);
    ADD("/servicing/twice", test_twice);
    ADD("/servicing/message-oversize", test_message_oversize);
    ADD("/servicing/message-not-text", test_message_not_text);
    ADD("/servicing/message-hostile", test_message_hostile);
    ADD("/servicing/malformed-report", test_malformed_report);
    ADD("/servicing/starts", test_starts);
    ADD("/servicing/malformed-file", test_malformed_file);
    ADD("/servicing/hostile-file", test_hostile_file);
#undef ADD
    return g_test_run();
}
