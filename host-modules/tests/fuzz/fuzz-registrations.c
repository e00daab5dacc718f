/*
 * Fuzz target: the registration sidecar ("<image>.vmaugment.json") and a
 * store's registrations.json as an attacker could write them.  The sidecar
 * is not signed and sits beside an image the image's owner may control,
 * so its parser must hold against anything (docs/registrations.rst).
 * Build with clang -fsanitize=fuzzer; fuzz-run.c replays a corpus in
 * ordinary builds.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stdint.h>

#include "registrations.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What the loader promises of any set it returns. */
static void fuzz_check_set(const VmaugRegSet *set)
{
    g_assert(set->regs->len <= VMAUG_REGS_MAX);
    g_assert(g_uuid_string_is_valid(set->image_id));
    for (guint i = 0; i < set->regs->len; i++) {
        const VmaugRegistration *r = g_ptr_array_index(set->regs, i);
        g_autofree gchar *events = vmaug_reg_events_to_string(r->events);
        guint32 again = 0;

        g_assert(vmaug_name_is_valid(r->name));
        g_assert(*r->version == '\0' || vmaug_version_is_valid(r->version));
        g_assert((r->flags & ~VMAUG_REG_F_REQUIRED) == 0);
        /* Only lifecycle events, and their names read back the same. */
        g_assert(vmaug_reg_events_from_string(events, &again, NULL));
        g_assert(again == r->events);
        /* Host configuration only with a pin, its keys and values as
         * the host owner's tool could have set them. */
        g_assert(r->config == NULL || r->pinned);
        if (r->config != NULL) {
            GHashTableIter it;
            gpointer key, value;

            g_assert(g_hash_table_size(r->config) <= VMAUG_REGS_MAX_CONFIG);
            g_hash_table_iter_init(&it, r->config);
            while (g_hash_table_iter_next(&it, &key, &value)) {
                g_assert(vmaug_config_key_is_valid(key));
                g_assert(strlen(value) <= VMAUG_MAX_CONFIG_VALUE);
                g_assert(g_utf8_validate(value, -1, NULL));
            }
        }
        /* Sorted by name, each name once. */
        if (i > 0) {
            const VmaugRegistration *p = g_ptr_array_index(set->regs, i - 1);

            g_assert(strcmp(p->name, r->name) < 0);
        }
    }
}

static void fuzz_quiet(const gchar *domain, GLogLevelFlags level,
                       const gchar *message, gpointer user_data)
{
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static gboolean quiet;
    g_autoptr(VmaugRegSet) sidecar = NULL;
    g_autoptr(VmaugRegSet) store = NULL;
    g_autoptr(GError) error = NULL;

    if (!quiet) {
        g_log_set_default_handler(fuzz_quiet, NULL);
        quiet = TRUE;
    }
    if (size > VMAUG_REGS_MAX_FILE) {
        return 0;   /* vmaug_reg_set_load() refuses it unread */
    }
    /* The same bytes as an image's sidecar and as a store's file. */
    sidecar = vmaug_reg_set_parse("/images/disk.qcow2",
                                  "/images/disk.qcow2.vmaugment.json",
                                  (const gchar *)data, size, &error);
    if (sidecar != NULL) {
        fuzz_check_set(sidecar);
    } else {
        g_assert(error != NULL);
        g_clear_error(&error);
    }
    store = vmaug_reg_set_parse(NULL, "/store/registrations.json",
                                (const gchar *)data, size, &error);
    if (store != NULL) {
        fuzz_check_set(store);
    } else {
        g_assert(error != NULL);
    }
    /* A set names an image or none: never both readings of one file. */
    g_assert(sidecar == NULL || store == NULL);
    return 0;
}
