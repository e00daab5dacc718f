/*
 * kv: a communication module keeping key/value pairs in the module's
 * configuration, which the host persists per image.
 *
 * Calls: "set" with "key=value", "get" with "key" (returns the value),
 * "count" (returns how many sets this instance has done, as text).  A key
 * it never set is looked up among what the guest set with CONFIG_SET
 * ("guest.<key>"): plain data to kv, which interprets none of it.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <linux/virtio_vmaugment.h>

#include "vmaugment-module.h"

typedef struct {
    const struct vmaug_host_api *api;
    vmaug_host *host;
    unsigned long sets;
} Kv;

static Kv kv_state;

static int kv_init(const struct vmaug_host_api *api, vmaug_host *h,
                   void **priv)
{
    kv_state.api = api;
    kv_state.host = h;
    *priv = &kv_state;
    api->log(h, VMAUG_LOG_DEBUG, "kv ready");
    return 0;
}

static void kv_fini(void *priv)
{
}

/* Copy a guest-given key into a NUL-terminated buffer, refusing what
 * does not fit. */
static int kv_key(char *key, size_t cap, const char *in, size_t len)
{
    if (len == 0 || len >= cap || memchr(in, '\0', len) != NULL) {
        return -1;
    }
    memcpy(key, in, len);
    key[len] = '\0';
    return 0;
}

static int kv_call(void *priv, const char *function, const void *in,
                   size_t in_len, void *out, size_t out_cap, size_t *out_len)
{
    Kv *kv = priv;
    char key[VMAUG_CONFIG_KEY_MAX];
    int rc;

    if (strcmp(function, "set") == 0) {
        const char *eq = memchr(in, '=', in_len);

        if (eq == NULL ||
            kv_key(key, sizeof(key), in, eq - (const char *)in) < 0) {
            return VMAUG_S_INVALID;
        }
        rc = kv->api->config_set(kv->host, key, eq + 1,
                                 in_len - (eq + 1 - (const char *)in));
        if (rc < 0) {
            return rc == -EPERM ? VMAUG_S_DENIED :
                   rc == -EDQUOT ? VMAUG_S_TOO_BIG : VMAUG_S_INVALID;
        }
        kv->sets++;
        *out_len = 0;
        return VMAUG_S_OK;
    }
    if (strcmp(function, "get") == 0) {
        if (kv_key(key, sizeof(key), in, in_len) < 0) {
            return VMAUG_S_INVALID;
        }
        rc = kv->api->config_get(kv->host, key, out, out_cap);
        if (rc == -ENOENT) {
            char guest[VMAUG_CONFIG_KEY_MAX];

            if ((size_t)snprintf(guest, sizeof(guest), "guest.%s", key) >=
                sizeof(guest)) {
                return VMAUG_S_NOT_FOUND;
            }
            rc = kv->api->config_get(kv->host, guest, out, out_cap);
        }
        if (rc == -ENOENT) {
            return VMAUG_S_NOT_FOUND;
        }
        if (rc < 0) {
            return VMAUG_S_INVALID;
        }
        *out_len = (size_t)rc < out_cap ? (size_t)rc : out_cap;
        return VMAUG_S_OK;
    }
    if (strcmp(function, "count") == 0) {
        int n = snprintf(out, out_cap, "%lu", kv->sets);

        *out_len = n > 0 && (size_t)n < out_cap ? (size_t)n : 0;
        return VMAUG_S_OK;
    }
    return VMAUG_S_NOT_FOUND;
}

VMAUG_MODULE_DEFINE(
    .init = kv_init,
    .fini = kv_fini,
    .call = kv_call,
);
