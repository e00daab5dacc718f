/*
 * The helper's main-loop wait (../helper/loop-poll.c): when it polls, for how
 * long, that it yields meanwhile, never outlasts GLib's timeout, sleeps
 * while a module works on a call, and adapts its window.  The clock, the
 * poll and the yield are the test's, so every figure is exact.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <string.h>

#include <glib.h>

#include "loop-poll.h"

/* One answer of the fake poll: what it returns and how long it took. */
typedef struct {
    gint ret;
    gint64 took_us;
} Step;

static struct {
    gint64 now;
    const Step *steps;
    guint n_steps;
    guint calls;
    guint blocking;             /* calls with a timeout other than 0 */
    gint last_timeout;
    guint yields;
    gint64 poll_step_us;        /* a zero-timeout poll in vain takes this */
} fake;

static gint fake_poll(GPollFD *fds, guint nfds, gint timeout_ms)
{
    (void)fds;
    (void)nfds;
    fake.calls++;
    fake.last_timeout = timeout_ms;
    if (timeout_ms != 0) {
        fake.blocking++;
    }
    if (fake.calls <= fake.n_steps) {
        const Step *s = &fake.steps[fake.calls - 1];

        fake.now += s->took_us;
        return s->ret;
    }
    /* Past the script: a poll that finds nothing. */
    if (timeout_ms == 0) {
        fake.now += fake.poll_step_us;
    } else {
        fake.now += timeout_ms < 0 ? 1000000 : timeout_ms * 1000;
    }
    return 0;
}

static gint64 fake_now(void)
{
    return fake.now;
}

static void fake_yield(void)
{
    fake.yields++;
}

static void setup(HelperPoll *p, gint64 max_us, const Step *steps,
                  guint n_steps)
{
    memset(&fake, 0, sizeof(fake));
    fake.now = 1000000;
    fake.steps = steps;
    fake.n_steps = n_steps;
    fake.poll_step_us = 5;
    helper_poll_init(p, max_us);
    p->poll = fake_poll;
    p->now = fake_now;
    p->yield = fake_yield;
}

/* Not armed: one wait, GLib's, untouched. */
static void test_unarmed(void)
{
    static const Step steps[] = { { 1, 300 } };
    HelperPoll p;

    setup(&p, 50, steps, G_N_ELEMENTS(steps));
    g_assert_cmpint(helper_poll_wait(&p, NULL, 0, 7), ==, 1);
    g_assert_cmpuint(fake.calls, ==, 1);
    g_assert_cmpint(fake.last_timeout, ==, 7);
    g_assert_cmpuint(fake.yields, ==, 0);
}

/* Armed: polled, yielding between polls, until something comes. */
static void test_caught(void)
{
    static const Step steps[] = { { 0, 5 }, { 0, 5 }, { 0, 5 }, { 2, 5 } };
    HelperPoll p;

    setup(&p, 50, steps, G_N_ELEMENTS(steps));
    helper_poll_arm(&p);
    g_assert_cmpint(helper_poll_wait(&p, NULL, 0, -1), ==, 2);
    g_assert_cmpuint(fake.calls, ==, 4);
    g_assert_cmpuint(fake.blocking, ==, 0);
    g_assert_cmpuint(fake.yields, ==, 3);
    g_assert_cmpint(p.window_us, ==, 50);
    /* One polled wait per answer: the next one sleeps. */
    g_assert_cmpint(helper_poll_wait(&p, NULL, 0, -1), ==, 0);
    g_assert_cmpuint(fake.calls, ==, 5);
    g_assert_cmpint(fake.last_timeout, ==, -1);
}

/* Polled for the window, then asleep; the window is not outgrown. */
static void test_window(void)
{
    HelperPoll p;

    setup(&p, 50, NULL, 0);
    helper_poll_arm(&p);
    helper_poll_wait(&p, NULL, 0, -1);
    /* 5 us a poll: ten in 50 us, then one asleep. */
    g_assert_cmpuint(fake.calls, ==, 11);
    g_assert_cmpuint(fake.blocking, ==, 1);
    g_assert_cmpint(fake.last_timeout, ==, -1);
}

/* A module's process works on a call: no polling. */
static void test_disarmed(void)
{
    HelperPoll p;

    setup(&p, 50, NULL, 0);
    helper_poll_arm(&p);
    helper_poll_disarm(&p);
    helper_poll_wait(&p, NULL, 0, -1);
    g_assert_cmpuint(fake.calls, ==, 1);
    g_assert_cmpuint(fake.blocking, ==, 1);
    g_assert_cmpuint(fake.yields, ==, 0);
}

/* --poll-us 0: arming does nothing. */
static void test_off(void)
{
    HelperPoll p;

    setup(&p, 0, NULL, 0);
    helper_poll_arm(&p);
    helper_poll_wait(&p, NULL, 0, -1);
    g_assert_cmpuint(fake.calls, ==, 1);
    g_assert_cmpuint(fake.blocking, ==, 1);
}

/* GLib's timeout (its next timer) bounds the poll and what follows. */
static void test_timeout(void)
{
    HelperPoll p;

    /* A timer due now: nothing but GLib's own zero-timeout poll. */
    setup(&p, 50, NULL, 0);
    helper_poll_arm(&p);
    helper_poll_wait(&p, NULL, 0, 0);
    g_assert_cmpuint(fake.calls, ==, 1);
    g_assert_cmpint(fake.last_timeout, ==, 0);

    /* A window longer than the timeout: polled for 2 ms, then the
     * timer's turn, with nothing left to wait. */
    setup(&p, 5000, NULL, 0);
    helper_poll_arm(&p);
    helper_poll_wait(&p, NULL, 0, 2);
    g_assert_cmpuint(fake.calls, ==, 2000 / 5 + 1);
    g_assert_cmpint(fake.last_timeout, ==, 0);
    /* and GLib's zero-timeout poll after it */
    g_assert_cmpint(fake.now, ==, 1000000 + 2000 + 5);

    /* Part of it polled: the sleep gets the rest, rounded up. */
    setup(&p, 50, NULL, 0);
    helper_poll_arm(&p);
    helper_poll_wait(&p, NULL, 0, 3);
    g_assert_cmpint(fake.last_timeout, ==, 3);
    setup(&p, 1500, NULL, 0);
    helper_poll_arm(&p);
    helper_poll_wait(&p, NULL, 0, 3);
    g_assert_cmpint(fake.last_timeout, ==, 2);
}

/* Polled in vain, and the request came soon after (within twice the
 * most, its wake-up included): a longer window; came late, or not at
 * all: a shorter one, down to none. */
static void test_adapt(void)
{
    /* Ten polls in vain (50 us), then asleep 20 us more. */
    static const Step soon[] = {
        { 0, 5 }, { 0, 5 }, { 0, 5 }, { 0, 5 }, { 0, 5 },
        { 0, 5 }, { 0, 5 }, { 0, 5 }, { 0, 5 }, { 0, 5 }, { 1, 20 },
    };
    static const Step late[] = {
        { 0, 5 }, { 0, 5 }, { 0, 5 }, { 0, 5 }, { 0, 5 },
        { 0, 5 }, { 0, 5 }, { 0, 5 }, { 0, 5 }, { 0, 5 }, { 1, 500 },
    };
    HelperPoll p;

    setup(&p, 100, soon, G_N_ELEMENTS(soon));
    p.window_us = 50;
    helper_poll_arm(&p);
    g_assert_cmpint(helper_poll_wait(&p, NULL, 0, -1), ==, 1);
    g_assert_cmpint(p.window_us, ==, 100);

    setup(&p, 60, soon, G_N_ELEMENTS(soon));
    p.window_us = 50;
    helper_poll_arm(&p);
    helper_poll_wait(&p, NULL, 0, -1);
    g_assert_cmpint(p.window_us, ==, 60);

    setup(&p, 100, late, G_N_ELEMENTS(late));
    p.window_us = 50;
    helper_poll_arm(&p);
    helper_poll_wait(&p, NULL, 0, -1);
    g_assert_cmpint(p.window_us, ==, 25);

    /* Shrinking: 25, 12, 6, then none; polled not at all then. */
    p.window_us = 6;
    fake.calls = fake.n_steps = 0;
    helper_poll_arm(&p);
    helper_poll_wait(&p, NULL, 0, -1);
    g_assert_cmpint(p.window_us, ==, 0);
    fake.calls = fake.blocking = 0;
    helper_poll_arm(&p);
    helper_poll_wait(&p, NULL, 0, 5);
    g_assert_cmpuint(fake.calls, ==, 1);
    g_assert_cmpuint(fake.blocking, ==, 1);

    /* From none, a request soon after an answer starts it again. */
    {
        static const Step quick[] = { { 1, 30 } };

        fake.steps = quick;
        fake.n_steps = G_N_ELEMENTS(quick);
        fake.calls = 0;
        helper_poll_arm(&p);
        helper_poll_wait(&p, NULL, 0, -1);
        g_assert_cmpint(p.window_us, ==, HELPER_POLL_MIN_US);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/helper-poll/unarmed", test_unarmed);
    g_test_add_func("/helper-poll/caught", test_caught);
    g_test_add_func("/helper-poll/window", test_window);
    g_test_add_func("/helper-poll/disarmed", test_disarmed);
    g_test_add_func("/helper-poll/off", test_off);
    g_test_add_func("/helper-poll/timeout", test_timeout);
    g_test_add_func("/helper-poll/adapt", test_adapt);
    return g_test_run();
}
