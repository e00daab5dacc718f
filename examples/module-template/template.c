/*
 * template: a vmaugment host module to start from.  It answers two
 * functions a guest (or "vmaugment-admin invoke template ...") may call:
 *
 *   hello    "hello, " followed by the input
 *   reverse  the input, byte by byte reversed
 *
 * and logs each call through the host API.  Rename it, change the
 * functions in call() and in manifest.json's "functions" together, and
 * request in "capabilities" only what the module uses: the helper grants
 * no more, and the module runs in a sandbox where it cannot open files,
 * sockets or processes (vmaugment-module(3), docs/modules.rst).
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <string.h>

#include <vmaugment/vmaugment-module.h>

/* What the module keeps between calls: the host's API and handle. */
typedef struct {
    const struct vmaug_host_api *api;
    vmaug_host *host;
} Template;

static Template template_state;

static int template_init(const struct vmaug_host_api *api, vmaug_host *h,
                         void **priv)
{
    template_state.api = api;
    template_state.host = h;
    *priv = &template_state;
    return 0;
}

static void template_fini(void *priv)
{
    (void)priv;
}

static int template_call(void *priv, const char *function, const void *in,
                         size_t in_len, void *out, size_t out_cap,
                         size_t *out_len)
{
    static const char greeting[] = "hello, ";
    Template *t = priv;
    const unsigned char *p = in;
    unsigned char *o = out;

    /* The input is the caller's: any bytes, any length up to the limit. */
    t->api->log(t->host, VMAUG_LOG_INFO, function);
    if (strcmp(function, "hello") == 0) {
        if (out_cap < sizeof(greeting) - 1 ||
            in_len > out_cap - (sizeof(greeting) - 1)) {
            return VMAUG_S_TOO_BIG;
        }
        memcpy(o, greeting, sizeof(greeting) - 1);
        memcpy(o + sizeof(greeting) - 1, p, in_len);
        *out_len = sizeof(greeting) - 1 + in_len;
        return VMAUG_S_OK;
    }
    if (strcmp(function, "reverse") == 0) {
        if (in_len > out_cap) {
            return VMAUG_S_TOO_BIG;
        }
        for (size_t i = 0; i < in_len; i++) {
            o[i] = p[in_len - 1 - i];
        }
        *out_len = in_len;
        return VMAUG_S_OK;
    }
    /* The helper passes only what the manifest exports; be strict anyway. */
    return VMAUG_S_NOT_FOUND;
}

/* The one symbol the helper looks for (VMAUG_MODULE_SYMBOL). */
VMAUG_MODULE_DEFINE(
    .init = template_init,
    .fini = template_fini,
    .call = template_call,
);
