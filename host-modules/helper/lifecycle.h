/*
 * vmaugment-helper: lifecycle events of one VM (lifecycle.c), above its
 * session and below the device connection that feeds it.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VMAUGMENT_LIFECYCLE_H
#define VMAUGMENT_LIFECYCLE_H

#include "session.h"

typedef struct _LifecycleEngine LifecycleEngine;

/* Send VMAUG_HOST_LIFECYCLE_DONE for the message @tag: @done, then @msg
 * (@len bytes, not NUL-terminated). */
typedef void (*LifecycleAnswerFunc)(gpointer owner, guint64 tag,
                                    const struct vmaug_host_lifecycle_done
                                    *done, const gchar *msg, gsize len);

LifecycleEngine *lifecycle_engine_new(Session *session,
                                      LifecycleAnswerFunc answer,
                                      gpointer owner);
/* A VMAUG_HOST_LIFECYCLE message; FALSE (with *why) if malformed. */
gboolean lifecycle_engine_message(LifecycleEngine *eng, guint64 tag,
                                  const guint8 *data, guint32 len,
                                  const gchar **why);
/* The tag of the IMAGE_START the device holds the VM for and that is not
 * answered yet, or 0. */
guint64 lifecycle_engine_held_start(LifecycleEngine *eng);
/* The device is going away: events still running finish without it
 * (before its session is freed). */
void lifecycle_engine_free(LifecycleEngine *eng);

#endif /* VMAUGMENT_LIFECYCLE_H */
