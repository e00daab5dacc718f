/*
 * vmaugment-helper: what every VM shares, the stores.  The directories
 * come from the host owner (trusted); a device may only pick among them
 * (device.c checks its HELLO before asking here).
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "helper.h"

void helper_caches_init(Helper *h)
{
    h->stores = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                      (GDestroyNotify)vmaug_store_free);
    h->manifests = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                         (GDestroyNotify)vmaug_manifest_free);
    h->refusals = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                        (GDestroyNotify)g_error_free);
}

void helper_caches_clear(Helper *h)
{
    g_clear_pointer(&h->stores, g_hash_table_unref);
    g_clear_pointer(&h->manifests, g_hash_table_unref);
    g_clear_pointer(&h->refusals, g_hash_table_unref);
}

void helper_limits_default(Helper *h)
{
    h->vm_quota.config_bytes = VMAUG_VM_CONFIG_BYTES;
    h->vm_quota.state_bytes = VMAUG_VM_STATE_BYTES;
    h->vm_quota.spool_bytes = VMAUG_VM_SPOOL_BYTES;
    h->upload_limits.slots = VMAUG_STORE_UPLOAD_SLOTS;
    h->upload_limits.bytes = VMAUG_STORE_UPLOAD_BYTES;
    h->upload_limits.idle_us = VMAUG_STORE_UPLOAD_IDLE_S * G_USEC_PER_SEC;
    h->audit_limits.burst = VMAUG_STORE_AUDIT_BURST;
    h->audit_limits.window_us = VMAUG_STORE_AUDIT_WINDOW_S * G_USEC_PER_SEC;
}

VmaugStore *helper_store_open(Helper *h, const gchar *dir, GError **error)
{
    VmaugStore *store = g_hash_table_lookup(h->stores, dir);

    if (store != NULL) {
        return store;
    }
    store = vmaug_store_open(dir, h->trust, h->policy, error);
    if (store == NULL) {
        return NULL;
    }
    vmaug_store_set_upload_limits(store, &h->upload_limits);
    vmaug_store_set_audit_limits(store, &h->audit_limits);
    {
        g_autoptr(GError) local = NULL;

        /* Without it every lookup reads the store: slower, as correct. */
        if (!vmaug_store_cache_lookups(store, &local)) {
            g_warning("store %s: %s", dir, local->message);
        }
    }
    g_hash_table_insert(h->stores, g_strdup(dir), store);
    return store;
}
