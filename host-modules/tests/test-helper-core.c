/*
 * The helper's layers in one process, each driven through the callbacks
 * the layer above gives it: a VM's session and its lifecycle engine with
 * no device, no socket and no module process.  What the device link does
 * end to end is test-helper.c's.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <glib/gstdio.h>

#include "lifecycle.h"
#include "registrations.h"
#include "session.h"
#include "test-common.h"

/* What the layers told their owner. */
typedef struct {
    Helper h;
    gchar *dir;
    Session *s;
    LifecycleEngine *eng;
    GArray *events;                 /* guint32 types */
    gsize last_event_len;
    guint answers;
    guint16 answer_status;
    guint32 answer_event;
    gchar *answer_text;
} Fixture;

static void fixture_reply(gpointer owner, guint64 tag, guint16 status,
                          const void *data, gsize len)
{
    g_assert_not_reached();     /* nothing here asks */
}

static void fixture_event(gpointer owner, guint32 type, const void *a,
                          gsize alen, const void *b, gsize blen)
{
    Fixture *f = owner;

    g_array_append_val(f->events, type);
    f->last_event_len = blen;
}

static const ModuleOps fixture_ops = {
    .reply = fixture_reply,
    .event = fixture_event,
};

static void fixture_answer(gpointer owner, guint64 tag,
                           const struct vmaug_host_lifecycle_done *done,
                           const gchar *msg, gsize len)
{
    Fixture *f = owner;

    f->answers++;
    f->answer_status = GUINT16_FROM_LE(done->status);
    f->answer_event = GUINT32_FROM_LE(done->event);
    g_free(f->answer_text);
    f->answer_text = g_strndup(msg, len);
}

static void fixture_setup(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    VmaugStore *store;

    f->dir = g_dir_make_tmp("vmaug-core-XXXXXX", &error);
    g_assert_no_error(error);
    f->h.default_store = g_build_filename(f->dir, "store", NULL);
    f->h.trust = vmaug_trust_store_new();   /* trusts nobody */
    f->h.policy = vmaug_policy_new_default();
    f->h.call_timeout_ms = 1000;
    helper_caches_init(&f->h);
    helper_limits_default(&f->h);
    store = helper_store_open(&f->h, f->h.default_store, &error);
    g_assert_no_error(error);
    f->events = g_array_new(FALSE, FALSE, sizeof(guint32));
    f->s = session_new(&f->h, store, "vm-under-test", NULL, &fixture_ops, f);
    f->eng = lifecycle_engine_new(f->s, fixture_answer, f);
}

static void fixture_teardown(Fixture *f, gconstpointer data)
{
    lifecycle_engine_free(f->eng);
    session_free(f->s);
    while (g_main_context_iteration(NULL, FALSE)) {
    }
    helper_caches_clear(&f->h);
    vmaug_policy_free(f->h.policy);
    vmaug_trust_store_free(f->h.trust);
    g_free(f->h.default_store);
    g_array_unref(f->events);
    g_free(f->answer_text);
    test_rm_rf(f->dir);
    g_free(f->dir);
}

static void fixture_register(Fixture *f, const gchar *name, guint32 flags)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugRegSet) set = vmaug_vm_area_regs_load(f->s->area,
                                                          &error);

    g_assert_no_error(error);
    g_assert_true(vmaug_reg_set_put(set, name, "",
                                    VMAUG_EVENT_MASK(VMAUG_EVENT_IMAGE_START),
                                    flags, &error));
    g_assert_no_error(error);
    g_assert_true(vmaug_reg_set_save(set, &error));
    g_assert_no_error(error);
}

static void fixture_lifecycle(Fixture *f, guint32 event)
{
    struct vmaug_host_lifecycle msg = { .event = GUINT32_TO_LE(event) };
    const gchar *why = NULL;

    g_assert_true(lifecycle_engine_message(f->eng, 7, (const guint8 *)&msg,
                                           sizeof(msg), &why));
    g_assert_null(why);
    for (guint i = 0; i < 100 && f->answers == 0; i++) {
        g_main_context_iteration(NULL, FALSE);
    }
}

/* An image with nothing registered may start at once. */
static void test_start_empty(Fixture *f, gconstpointer data)
{
    fixture_lifecycle(f, VMAUG_EVENT_IMAGE_START);
    g_assert_cmpuint(f->answers, ==, 1);
    g_assert_cmpuint(f->answer_event, ==, VMAUG_EVENT_IMAGE_START);
    g_assert_cmpuint(f->answer_status, ==, VMAUG_S_OK);
    g_assert_cmpstr(f->answer_text, ==, "");
    g_assert_cmpuint(f->events->len, ==, 0);
}

/* A required module that is nowhere: the start is refused, the guest is
 * told why through the session, and no module process is started. */
static void test_start_missing_required(Fixture *f, gconstpointer data)
{
    fixture_register(f, "absent", VMAUG_REG_F_REQUIRED);
    fixture_lifecycle(f, VMAUG_EVENT_IMAGE_START);
    g_assert_cmpuint(f->answers, ==, 1);
    g_assert_cmpuint(f->answer_status, ==, VMAUG_S_NOT_FOUND);
    g_assert_nonnull(strstr(f->answer_text, "required module absent"));
    g_assert_nonnull(strstr(f->answer_text, "no repository"));
    g_assert_cmpuint(f->events->len, ==, 1);
    g_assert_cmpuint(g_array_index(f->events, guint32, 0), ==,
                     VMAUG_EVENT_MODULE_REFUSED);
    g_assert_cmpuint(g_hash_table_size(f->s->modules), ==, 0);
}

/* An optional one does not hold the start up. */
static void test_start_missing_optional(Fixture *f, gconstpointer data)
{
    fixture_register(f, "absent", 0);
    fixture_lifecycle(f, VMAUG_EVENT_IMAGE_START);
    g_assert_cmpuint(f->answers, ==, 1);
    g_assert_cmpuint(f->answer_status, ==, VMAUG_S_OK);
    g_assert_cmpuint(f->events->len, ==, 1);
}

/* Stop events run in loaded modules only and are not answered. */
static void test_stop_unanswered(Fixture *f, gconstpointer data)
{
    fixture_register(f, "absent", VMAUG_REG_F_REQUIRED);
    fixture_lifecycle(f, VMAUG_EVENT_IMAGE_STOP);
    g_assert_cmpuint(f->answers, ==, 0);
    g_assert_true(f->s->stop_seen);
    g_assert_cmpuint(f->events->len, ==, 0);
}

/* A refusal's reason is cut to what the event carries. */
static void test_refusal_text(Fixture *f, gconstpointer data)
{
    g_autofree gchar *why = g_strnfill(1000, 'x');

    session_event_refused(f->s, "mod", "1.0", why);
    g_assert_cmpuint(f->events->len, ==, 1);
    g_assert_cmpuint(f->last_event_len, ==, 200);
}

/* Nothing the VM did not load or register can be configured. */
static void test_has_module(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;

    g_assert_false(session_has_module(f->s, "absent", &error));
    g_assert_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_NOT_FOUND);
    g_clear_error(&error);
    fixture_register(f, "absent", 0);
    g_assert_true(session_has_module(f->s, "absent", &error));
    g_assert_no_error(error);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_log_set_always_fatal(G_LOG_LEVEL_CRITICAL);
#define ADD(path, fn) \
    g_test_add(path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
    ADD("/helper-core/lifecycle/start-empty", test_start_empty);
    ADD("/helper-core/lifecycle/start-missing-required",
        test_start_missing_required);
    ADD("/helper-core/lifecycle/start-missing-optional",
        test_start_missing_optional);
    ADD("/helper-core/lifecycle/stop-unanswered", test_stop_unanswered);
    ADD("/helper-core/session/refusal-text", test_refusal_text);
    ADD("/helper-core/session/has-module", test_has_module);
#undef ADD
    return g_test_run();
}
