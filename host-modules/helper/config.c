/*
 * The helper's configuration file (installed as
 * /etc/vmaugment/helper.conf): a GKeyFile whose one group [helper] has a
 * key for every command-line option, named as the long option.  The file
 * is read before the command line, so the command line overrides it.
 *
 * The file is the host owner's and trusted, yet a key or group we do not
 * know is refused, never skipped: a misspelt limit that silently fell back
 * to its default would loosen the sandbox without anyone noticing.
 * docs/service.rst is normative.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "config.h"

/* Whether ENTRY is one a configuration file may set. */
static gboolean config_entry_settable(const GOptionEntry *entry)
{
    if (entry->flags & G_OPTION_FLAG_HIDDEN) {
        return FALSE;
    }
    switch (entry->arg) {
    case G_OPTION_ARG_NONE:
    case G_OPTION_ARG_STRING:
    case G_OPTION_ARG_FILENAME:
    case G_OPTION_ARG_STRING_ARRAY:
    case G_OPTION_ARG_FILENAME_ARRAY:
    case G_OPTION_ARG_INT:
    case G_OPTION_ARG_INT64:
        return TRUE;
    default:
        return FALSE;
    }
}

static const GOptionEntry *config_find(const GOptionEntry *entries,
                                       const gchar *key)
{
    for (const GOptionEntry *e = entries; e->long_name != NULL; e++) {
        if (g_str_equal(e->long_name, key) && config_entry_settable(e)) {
            return e;
        }
    }
    return NULL;
}

/* Store the value of KEY into the variable ENTRY points at. */
static gboolean config_set(GKeyFile *kf, const GOptionEntry *entry,
                           GError **error)
{
    const gchar *key = entry->long_name;
    g_autoptr(GError) local = NULL;

    switch (entry->arg) {
    case G_OPTION_ARG_NONE: {
        gboolean v = g_key_file_get_boolean(kf, CONFIG_GROUP, key, &local);

        if (local == NULL) {
            *(gboolean *)entry->arg_data = v;
        }
        break;
    }
    case G_OPTION_ARG_STRING:
    case G_OPTION_ARG_FILENAME: {
        gchar *v = g_key_file_get_string(kf, CONFIG_GROUP, key, &local);

        if (local == NULL) {
            g_free(*(gchar **)entry->arg_data);
            *(gchar **)entry->arg_data = v;
        }
        break;
    }
    case G_OPTION_ARG_STRING_ARRAY:
    case G_OPTION_ARG_FILENAME_ARRAY: {
        gchar **v = g_key_file_get_string_list(kf, CONFIG_GROUP, key, NULL,
                                               &local);

        if (local == NULL) {
            g_strfreev(*(gchar ***)entry->arg_data);
            *(gchar ***)entry->arg_data = v;
        }
        break;
    }
    case G_OPTION_ARG_INT: {
        gint v = g_key_file_get_integer(kf, CONFIG_GROUP, key, &local);

        if (local == NULL) {
            *(gint *)entry->arg_data = v;
        }
        break;
    }
    case G_OPTION_ARG_INT64: {
        gint64 v = g_key_file_get_int64(kf, CONFIG_GROUP, key, &local);

        if (local == NULL) {
            *(gint64 *)entry->arg_data = v;
        }
        break;
    }
    default:
        g_assert_not_reached();
    }
    if (local != NULL) {
        g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                    "key '%s': %s", key, local->message);
        return FALSE;
    }
    return TRUE;
}

gboolean config_load(const gchar *path, const GOptionEntry *entries,
                     GError **error)
{
    g_autoptr(GKeyFile) kf = g_key_file_new();
    g_auto(GStrv) groups = NULL;
    g_auto(GStrv) keys = NULL;
    g_autoptr(GError) local = NULL;

    if (!g_key_file_load_from_file(kf, path, G_KEY_FILE_NONE, &local)) {
        g_set_error(error, local->domain, local->code, "%s: %s", path,
                    local->message);
        return FALSE;
    }
    groups = g_key_file_get_groups(kf, NULL);
    for (guint i = 0; groups[i] != NULL; i++) {
        if (!g_str_equal(groups[i], CONFIG_GROUP)) {
            g_set_error(error, G_KEY_FILE_ERROR,
                        G_KEY_FILE_ERROR_GROUP_NOT_FOUND,
                        "%s: unknown group [%s] (the only group is [%s])",
                        path, groups[i], CONFIG_GROUP);
            return FALSE;
        }
    }
    if (!g_key_file_has_group(kf, CONFIG_GROUP)) {
        return TRUE;
    }
    keys = g_key_file_get_keys(kf, CONFIG_GROUP, NULL, NULL);
    for (guint i = 0; keys[i] != NULL; i++) {
        const GOptionEntry *entry = config_find(entries, keys[i]);

        if (entry == NULL) {
            g_set_error(error, G_KEY_FILE_ERROR,
                        G_KEY_FILE_ERROR_KEY_NOT_FOUND,
                        "%s: unknown key '%s' in [%s]", path, keys[i],
                        CONFIG_GROUP);
            return FALSE;
        }
        if (!config_set(kf, entry, &local)) {
            g_set_error(error, local->domain, local->code, "%s: %s", path,
                        local->message);
            return FALSE;
        }
    }
    return TRUE;
}

gchar *config_dump(const GOptionEntry *entries)
{
    g_autoptr(GKeyFile) kf = g_key_file_new();

    for (const GOptionEntry *e = entries; e->long_name != NULL; e++) {
        const gchar *key = e->long_name;

        if (!config_entry_settable(e)) {
            continue;
        }
        switch (e->arg) {
        case G_OPTION_ARG_NONE:
            g_key_file_set_boolean(kf, CONFIG_GROUP, key,
                                   *(gboolean *)e->arg_data);
            break;
        case G_OPTION_ARG_STRING:
        case G_OPTION_ARG_FILENAME:
            if (*(gchar **)e->arg_data != NULL) {
                g_key_file_set_string(kf, CONFIG_GROUP, key,
                                      *(gchar **)e->arg_data);
            }
            break;
        case G_OPTION_ARG_STRING_ARRAY:
        case G_OPTION_ARG_FILENAME_ARRAY: {
            gchar **v = *(gchar ***)e->arg_data;

            if (v != NULL) {
                g_key_file_set_string_list(kf, CONFIG_GROUP, key,
                                           (const gchar * const *)v,
                                           g_strv_length(v));
            }
            break;
        }
        case G_OPTION_ARG_INT:
            g_key_file_set_integer(kf, CONFIG_GROUP, key,
                                   *(gint *)e->arg_data);
            break;
        case G_OPTION_ARG_INT64:
            g_key_file_set_int64(kf, CONFIG_GROUP, key,
                                 *(gint64 *)e->arg_data);
            break;
        default:
            g_assert_not_reached();
        }
    }
    return g_key_file_to_data(kf, NULL, NULL);
}
