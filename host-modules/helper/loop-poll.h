/*
 * vmaugment-helper: the main loop's wait, polled for a while after a
 * guest's request was answered, so that the guest's next request finds
 * the helper awake (docs/performance.md).
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VMAUGMENT_HELPER_LOOP_POLL_H
#define VMAUGMENT_HELPER_LOOP_POLL_H

#include <glib.h>

/* The window a wait starts from when polling catches nothing. */
#define HELPER_POLL_MIN_US      4

typedef struct HelperPoll {
    gint64 max_us;          /* --poll-us; 0: never polled */
    gint64 window_us;       /* what the next armed wait polls, adapted */
    gboolean armed;         /* a guest's request was just answered */
    /* g_poll(), g_get_monotonic_time() and sched_yield(), or a test's. */
    gint (*poll)(GPollFD *fds, guint nfds, gint timeout_ms);
    gint64 (*now)(void);
    void (*yield)(void);
} HelperPoll;

void helper_poll_init(HelperPoll *p, gint64 max_us);
/* @p becomes the default main context's poll function; once. */
void helper_poll_install(HelperPoll *p);
/* A response went to a device's request channel: the next wait polls. */
void helper_poll_arm(HelperPoll *p);
/* A module's process now works on a call: the next wait sleeps, since
 * that process needs the CPU a polling helper would take. */
void helper_poll_disarm(HelperPoll *p);
/* The wait itself, GPollFunc's contract. */
gint helper_poll_wait(HelperPoll *p, GPollFD *fds, guint nfds,
                      gint timeout_ms);

#endif
