/*
 * upgrade: installs a newer version of another module, then asks for a
 * restart of the image so that it takes effect.
 *
 * Call "install" with a signed module package.  The helper checks it
 * exactly as it checks a guest upload (signature, rollback, mix-and-match,
 * sizes) before it enters the store; this module never decides trust.
 * The helper's own files are not upgraded this way: they belong to the
 * host's package manager.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <string.h>

#include <linux/virtio_vmaugment.h>

#include "vmaugment-module.h"

static const struct vmaug_host_api *up_api;
static vmaug_host *up_host;

static int upgrade_init(const struct vmaug_host_api *api, vmaug_host *h,
                        void **priv)
{
    up_api = api;
    up_host = h;
    *priv = NULL;
    return 0;
}

static int upgrade_call(void *priv, const char *function, const void *in,
                        size_t in_len, void *out, size_t out_cap,
                        size_t *out_len)
{
    int rc;

    *out_len = 0;
    if (strcmp(function, "install") != 0) {
        return VMAUG_S_NOT_FOUND;
    }
    if (in_len == 0) {
        return VMAUG_S_INVALID;
    }
    rc = up_api->install_module(up_host, in, in_len);
    if (rc == -EEXIST) {
        return VMAUG_S_EXISTS;
    }
    if (rc < 0) {
        up_api->log(up_host, VMAUG_LOG_WARNING, "package refused");
        return VMAUG_S_DENIED;
    }
    up_api->log(up_host, VMAUG_LOG_INFO, "package installed");
    rc = up_api->request_restart(up_host, VMAUG_RESTART_IMAGE);
    return rc == 0 ? VMAUG_S_OK : VMAUG_S_DENIED;
}

VMAUG_MODULE_DEFINE(
    .init = upgrade_init,
    .call = upgrade_call,
);
