/*
 * The helper's configuration file: one [helper] group whose keys are the
 * long command-line options (config.c, docs/service.rst).
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VMAUG_HELPER_CONFIG_H
#define VMAUG_HELPER_CONFIG_H

#include <glib.h>

#define CONFIG_GROUP "helper"

/*
 * Set the variables of ENTRIES from the keys of the file at PATH.  Fails,
 * setting nothing further, on an unknown group or key or a value of the
 * wrong type; hidden options cannot be set from a file.
 */
gboolean config_load(const gchar *path, const GOptionEntry *entries,
                     GError **error);

/* The current values of ENTRIES as the text of a configuration file. */
gchar *config_dump(const GOptionEntry *entries);

#endif
