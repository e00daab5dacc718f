/*
 * ui: declares a menu entry and a progress dialog that the host's admin
 * interface shows (through the helper's UI elements), and tells the guest
 * about progress.
 *
 * Calls: "progress" with "title\npercent" updates the dialog (and sends
 * "progress <percent>" to the guest); "menu" declares the menu entry
 * again; "done" closes the dialog.
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

#define UI_TITLE_MAX    128

static const struct vmaug_host_api *ui_api;
static vmaug_host *ui_host;

/* Guest text into a JSON string: printable ASCII kept, the rest dropped,
 * quotes and backslashes escaped. */
static void ui_json_string(char *out, size_t cap, const char *in, size_t len)
{
    size_t o = 0;

    for (size_t i = 0; i < len && o + 3 < cap; i++) {
        unsigned char c = (unsigned char)in[i];

        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c >= 0x20 && c < 0x7f) {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
}

static int ui_menu(void)
{
    return ui_api->post_ui(ui_host,
                           "{\"id\": \"menu.status\", \"type\": \"menu\", "
                           "\"label\": \"Show image status\", "
                           "\"action\": \"status\"}");
}

static int ui_init(const struct vmaug_host_api *api, vmaug_host *h,
                   void **priv)
{
    ui_api = api;
    ui_host = h;
    *priv = NULL;
    /* Declared at load: the admin sees the entry as soon as we run. */
    return ui_menu() == 0 ? 0 : -EIO;
}

static int ui_progress(const char *in, size_t len)
{
    const char *nl = memchr(in, '\n', len);
    char title[UI_TITLE_MAX * 2 + 1];
    char num[8];
    char json[512];
    char msg[32];
    size_t nlen;
    long percent;
    char *end;

    if (nl == NULL || (size_t)(nl - in) > UI_TITLE_MAX) {
        return VMAUG_S_INVALID;
    }
    nlen = len - (nl + 1 - in);
    if (nlen == 0 || nlen >= sizeof(num)) {
        return VMAUG_S_INVALID;
    }
    memcpy(num, nl + 1, nlen);
    num[nlen] = '\0';
    percent = strtol(num, &end, 10);
    if (*end != '\0' || percent < 0 || percent > 100) {
        return VMAUG_S_INVALID;
    }
    ui_json_string(title, sizeof(title), in, nl - in);
    snprintf(json, sizeof(json),
             "{\"id\": \"dialog.progress\", \"type\": \"progress\", "
             "\"title\": \"%s\", \"percent\": %ld}", title, percent);
    if (ui_api->post_ui(ui_host, json) < 0) {
        return VMAUG_S_DENIED;
    }
    snprintf(msg, sizeof(msg), "progress %ld", percent);
    (void)ui_api->post_event(ui_host, msg, strlen(msg));
    return VMAUG_S_OK;
}

static int ui_call(void *priv, const char *function, const void *in,
                   size_t in_len, void *out, size_t out_cap,
                   size_t *out_len)
{
    *out_len = 0;
    if (strcmp(function, "progress") == 0) {
        return ui_progress(in, in_len);
    }
    if (strcmp(function, "menu") == 0) {
        return ui_menu() == 0 ? VMAUG_S_OK : VMAUG_S_DENIED;
    }
    if (strcmp(function, "done") == 0) {
        return ui_api->post_ui(ui_host,
                               "{\"id\": \"dialog.progress\", "
                               "\"type\": \"progress\", \"closed\": true}")
               == 0 ? VMAUG_S_OK : VMAUG_S_DENIED;
    }
    return VMAUG_S_NOT_FOUND;
}

VMAUG_MODULE_DEFINE(
    .init = ui_init,
    .call = ui_call,
);
