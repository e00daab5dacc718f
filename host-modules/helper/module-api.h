/*
 * vmaugment-helper: the host API a module reaches through its link
 * (module-api.c), for module.c.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VMAUGMENT_MODULE_API_H
#define VMAUGMENT_MODULE_API_H

#include "module.h"

/* Refill what one init, call or event may ask of the host. */
void module_api_refill(Module *m);
/* A MODLINK_API message of @m: answered with MODLINK_REPLY; FALSE (with
 * *why) on a protocol error, and the module is killed. */
gboolean module_api_request(Module *m, guint64 tag, const guint8 *data,
                            guint32 len, const gchar **why);
/* @m is going away: a request still being worked on is dropped without
 * an answer. */
void module_api_cancel(Module *m);

#endif /* VMAUGMENT_MODULE_API_H */
