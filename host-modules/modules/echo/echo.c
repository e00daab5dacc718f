/*
 * echo: a communication module that returns what the guest sends.  Used
 * by tests and benchmarks to measure the bare invoke round trip.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <string.h>

#include <linux/virtio_vmaugment.h>

#include "vmaugment-module.h"

typedef struct {
    const struct vmaug_host_api *api;
    vmaug_host *host;
    unsigned long calls;
} Echo;

static Echo echo_state;

static int echo_init(const struct vmaug_host_api *api, vmaug_host *h,
                     void **priv)
{
    echo_state.api = api;
    echo_state.host = h;
    *priv = &echo_state;
    return 0;
}

static void echo_fini(void *priv)
{
}

static int echo_call(void *priv, const char *function, const void *in,
                     size_t in_len, void *out, size_t out_cap,
                     size_t *out_len)
{
    Echo *e = priv;

    e->calls++;
    if (strcmp(function, "echo") == 0) {
        if (in_len > out_cap) {
            return VMAUG_S_TOO_BIG;
        }
        memcpy(out, in, in_len);
        *out_len = in_len;
        return VMAUG_S_OK;
    }
    if (strcmp(function, "notify") == 0) {
        /* Round trip through the event queue instead of the response. */
        return e->api->post_event(e->host, in, in_len) == 0 ?
               VMAUG_S_OK : VMAUG_S_DENIED;
    }
    return VMAUG_S_NOT_FOUND;
}

VMAUG_MODULE_DEFINE(
    .init = echo_init,
    .fini = echo_fini,
    .call = echo_call,
);
