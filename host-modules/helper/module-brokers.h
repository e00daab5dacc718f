/*
 * vmaugment-helper: the spool and UI files of a module's VM
 * (module-brokers.c), for the host API (module-api.c).
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VMAUGMENT_MODULE_BROKERS_H
#define VMAUGMENT_MODULE_BROKERS_H

#include "module.h"

/* Spool @title with the document @data; 0 and the job's name, or a
 * negative errno. */
gint32 module_brokers_spool(Module *m, const gchar *title,
                            const guint8 *data, gsize len, gchar **job_out);
/* Add or replace the UI element of the JSON object @json (by its "id");
 * 0 or a negative errno. */
gint32 module_brokers_post_ui(Module *m, const gchar *json, gsize len);

#endif /* VMAUGMENT_MODULE_BROKERS_H */
