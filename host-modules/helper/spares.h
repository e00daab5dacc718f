/*
 * vmaugment-helper: module processes started ahead of need (spares.c).
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VMAUGMENT_SPARES_H
#define VMAUGMENT_SPARES_H

#include "helper.h"

/* Modules run only as confined as the host owner accepted. */
gboolean spares_sandbox_accepted(Helper *h, GError **error);
/* Keep h->spares_wanted spare module processes ready. */
void spares_prepare(Helper *h);
/* An image that loads @count modules at once started: keep that many
 * spares for the next start, within --spare-processes. */
void spares_want(Helper *h, guint count);
/* Stop every spare (at exit). */
void spares_discard(Helper *h);
/* A confined module process, knowing nothing yet: its pid and our end
 * of its link (*@fd), started now if none was ready.  The caller owns
 * both, and calls spares_load_ended() once, when the module it hands
 * the process has started or failed: no spare is started until then,
 * for at most SPARES_HOLD_MS. */
gboolean spares_take(Helper *h, const gchar *for_module, GPid *pid, int *fd,
                     GError **error);
void spares_load_ended(Helper *h);

#endif /* VMAUGMENT_SPARES_H */
