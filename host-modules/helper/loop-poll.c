/*
 * vmaugment-helper: the main loop's wait, polled after an answer.
 *
 * A guest's next request mostly comes tens of microseconds after its
 * answer.  A helper asleep by then is woken by QEMU's write from the other
 * CPU, which on a VM host is an interrupt to that CPU and the scheduler
 * bringing it out of its idle state: more than the helper's own work for
 * a QUERY (docs/performance.md).  So the wait after a response to a
 * device's request channel first polls the descriptors for a while, as
 * QEMU's IOThread poll mode does, and adapts how long in the same way
 * (util/aio-posix.c there): a wait that ended soon after its poll polls
 * longer next time, one that went well past it shorter.  "Soon" is within
 * twice --poll-us of the wait's start, since what the wait measures
 * includes the wake-up it would have saved (tens of microseconds here).
 * GLib has no such wait of its own; its poll function is replaceable for
 * this.
 *
 * While polling it yields the CPU to anything runnable there (a module's
 * process finishing its answer), and it does not poll at all while a
 * module's process works on a call: that process would wait for the CPU
 * the poll takes.  The poll never outlasts the timeout GLib asked for
 * (its next timer).
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <sched.h>

#include "loop-poll.h"

static HelperPoll *helper_poll_installed;

static void helper_poll_yield(void)
{
    sched_yield();
}

void helper_poll_init(HelperPoll *p, gint64 max_us)
{
    *p = (HelperPoll){
        .max_us = MAX(max_us, 0),
        .window_us = MAX(max_us, 0),
        .poll = g_poll,
        .now = g_get_monotonic_time,
        .yield = helper_poll_yield,
    };
}

static gint helper_poll_default(GPollFD *fds, guint nfds, gint timeout_ms)
{
    return helper_poll_wait(helper_poll_installed, fds, nfds, timeout_ms);
}

void helper_poll_install(HelperPoll *p)
{
    g_return_if_fail(helper_poll_installed == NULL);
    helper_poll_installed = p;
    g_main_context_set_poll_func(NULL, helper_poll_default);
}

void helper_poll_arm(HelperPoll *p)
{
    p->armed = p->max_us > 0;
}

void helper_poll_disarm(HelperPoll *p)
{
    p->armed = FALSE;
}

gint helper_poll_wait(HelperPoll *p, GPollFD *fds, guint nfds,
                      gint timeout_ms)
{
    gint64 start, end, waited;
    gint n;

    if (!p->armed || timeout_ms == 0) {
        return p->poll(fds, nfds, timeout_ms);
    }
    p->armed = FALSE;
    start = p->now();
    end = start + p->window_us;
    if (timeout_ms > 0) {
        end = MIN(end, start + (gint64)timeout_ms * 1000);
    }
    while (p->window_us > 0) {
        n = p->poll(fds, nfds, 0);
        if (n != 0) {
            return n;
        }
        if (p->now() >= end) {
            break;
        }
        p->yield();
    }
    if (timeout_ms > 0) {
        gint64 left = start + (gint64)timeout_ms * 1000 - p->now();

        timeout_ms = left > 0 ? (gint)((left + 999) / 1000) : 0;
    }
    n = p->poll(fds, nfds, timeout_ms);
    waited = p->now() - start;
    if (n > 0 && waited <= 2 * p->max_us) {
        /* Polling a little longer would have caught it. */
        p->window_us = p->window_us
            ? MIN(p->window_us * 2, p->max_us)
            : MIN((gint64)HELPER_POLL_MIN_US, p->max_us);
    } else if (n >= 0 && waited > 2 * p->max_us) {
        /* Nothing came near: poll less, down to not at all. */
        p->window_us /= 2;
        if (p->window_us < HELPER_POLL_MIN_US) {
            p->window_us = 0;
        }
    }
    return n;
}
