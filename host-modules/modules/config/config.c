/*
 * config: sets host settings for the image, applied at its next start.
 *
 * Call "set" with "key=value" records a pending setting; at the next
 * image start (the "image-start" event) pending settings become applied
 * ones, which the host application reads when it starts the VM: keys
 * "applied.<key>" in the module's own configuration
 * (<store>/vms/<image's area>/config/config.json).  "get" returns the
 * applied value, "pending" the pending one.  Only the settings below, with
 * values in range, are accepted, and a value is checked again before it
 * is applied: the host application acts on "applied.*", so nothing gets
 * there unvalidated.  What the guest writes with CONFIG_SET stays in its
 * own namespace ("guest.*"), which this module never reads.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <linux/virtio_vmaugment.h>

#include "vmaugment-module.h"

#define CONFIG_VALUE_MAX    32

static const struct vmaug_host_api *cf_api;
static vmaug_host *cf_host;

typedef struct {
    const char *key;
    long min, max;              /* numeric settings */
    const char *const *words;   /* or one of these words */
} Setting;

static const char *const display_words[] = { "none", "vnc", "spice", NULL };
static const char *const boot_words[] = { "disk", "cdrom", "network", NULL };

static const Setting settings[] = {
    { "memory-mb", 64, 1024 * 1024, NULL },
    { "cpus", 1, 256, NULL },
    { "display", 0, 0, display_words },
    { "boot", 0, 0, boot_words },
};

static const Setting *config_find(const char *key)
{
    for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++) {
        if (strcmp(settings[i].key, key) == 0) {
            return &settings[i];
        }
    }
    return NULL;
}

static int config_valid(const Setting *s, const char *value)
{
    if (s->words != NULL) {
        for (size_t i = 0; s->words[i] != NULL; i++) {
            if (strcmp(s->words[i], value) == 0) {
                return 1;
            }
        }
        return 0;
    }
    {
        char *end;
        long v = strtol(value, &end, 10);

        return *value != '\0' && *end == '\0' && v >= s->min && v <= s->max;
    }
}

static int config_init(const struct vmaug_host_api *api, vmaug_host *h,
                       void **priv)
{
    cf_api = api;
    cf_host = h;
    *priv = NULL;
    return 0;
}

static int config_get_value(const char *prefix, const char *key, char *out,
                            size_t cap)
{
    char k[VMAUG_CONFIG_KEY_MAX];
    int n;

    snprintf(k, sizeof(k), "%s.%s", prefix, key);
    n = cf_api->config_get(cf_host, k, out, cap - 1);
    if (n < 0) {
        return n;
    }
    out[n < (int)cap - 1 ? n : (int)cap - 1] = '\0';
    return n;
}

/* The image starts: what was set last time takes effect now. */
static int config_event(void *priv, uint32_t type, const void *data,
                        size_t len)
{
    if (type != VMAUG_EVENT_IMAGE_START) {
        return 0;
    }
    for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++) {
        char value[CONFIG_VALUE_MAX + 1];
        char k[VMAUG_CONFIG_KEY_MAX];
        int n = config_get_value("pending", settings[i].key, value,
                                 sizeof(value));

        /* All of it, and valid: a cut or NUL-split value is not. */
        if (n <= 0 || n > CONFIG_VALUE_MAX || strlen(value) != (size_t)n ||
            !config_valid(&settings[i], value)) {
            continue;
        }
        snprintf(k, sizeof(k), "applied.%s", settings[i].key);
        cf_api->config_set(cf_host, k, value, strlen(value));
        snprintf(k, sizeof(k), "pending.%s", settings[i].key);
        cf_api->config_set(cf_host, k, "", 0);
    }
    return 0;
}

static int config_call(void *priv, const char *function, const void *in,
                       size_t in_len, void *out, size_t out_cap,
                       size_t *out_len)
{
    char buf[VMAUG_CONFIG_KEY_MAX + CONFIG_VALUE_MAX + 2];
    char value[CONFIG_VALUE_MAX + 1];
    const Setting *s;
    char *eq;
    int n;

    *out_len = 0;
    if (in_len == 0 || in_len >= sizeof(buf) || memchr(in, 0, in_len)) {
        return VMAUG_S_INVALID;
    }
    memcpy(buf, in, in_len);
    buf[in_len] = '\0';
    if (strcmp(function, "set") == 0) {
        char k[VMAUG_CONFIG_KEY_MAX];

        eq = strchr(buf, '=');
        if (eq == NULL) {
            return VMAUG_S_INVALID;
        }
        *eq = '\0';
        s = config_find(buf);
        if (s == NULL || strlen(eq + 1) > CONFIG_VALUE_MAX ||
            !config_valid(s, eq + 1)) {
            return VMAUG_S_INVALID;
        }
        snprintf(k, sizeof(k), "pending.%s", s->key);
        return cf_api->config_set(cf_host, k, eq + 1, strlen(eq + 1)) == 0 ?
               VMAUG_S_OK : VMAUG_S_DENIED;
    }
    if (strcmp(function, "get") == 0 || strcmp(function, "pending") == 0) {
        s = config_find(buf);
        if (s == NULL) {
            return VMAUG_S_INVALID;
        }
        n = config_get_value(strcmp(function, "get") == 0 ? "applied" :
                             "pending", s->key, value, sizeof(value));
        if (n <= 0) {
            return VMAUG_S_NOT_FOUND;
        }
        if ((size_t)n > out_cap) {
            return VMAUG_S_NO_SPACE;
        }
        memcpy(out, value, n);
        *out_len = n;
        return VMAUG_S_OK;
    }
    return VMAUG_S_NOT_FOUND;
}

VMAUG_MODULE_DEFINE(
    .init = config_init,
    .event = config_event,
    .call = config_call,
);
