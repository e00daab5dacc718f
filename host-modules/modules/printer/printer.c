/*
 * printer: the guest prints documents on the host.
 *
 * Call "print" with the title, a newline, then the document bytes.  The
 * host's spool broker queues it (a spool directory, or a CUPS queue when
 * the host owner configured one) and the module answers with the job id.
 * Progress goes to the guest as module messages: "queued <job>" and
 * "done <job>".  Call "jobs" returns how many documents this instance
 * printed.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <linux/virtio_vmaugment.h>

#include "vmaugment-module.h"

#define PRINTER_TITLE_MAX   200

typedef struct {
    const struct vmaug_host_api *api;
    vmaug_host *host;
    unsigned long jobs;
} Printer;

static Printer printer_state;

static int printer_init(const struct vmaug_host_api *api, vmaug_host *h,
                        void **priv)
{
    printer_state.api = api;
    printer_state.host = h;
    *priv = &printer_state;
    return 0;
}

static void printer_fini(void *priv)
{
}

static void printer_progress(Printer *p, const char *what, const char *job)
{
    char msg[128];
    int n = snprintf(msg, sizeof(msg), "%s %s", what, job);

    if (n > 0 && (size_t)n < sizeof(msg)) {
        /* Progress is best effort: a guest not listening loses nothing. */
        (void)p->api->post_event(p->host, msg, n);
    }
}

static int printer_print(Printer *p, const char *in, size_t in_len,
                         void *out, size_t out_cap, size_t *out_len)
{
    const char *nl = memchr(in, '\n', in_len < PRINTER_TITLE_MAX + 1 ?
                                      in_len : PRINTER_TITLE_MAX + 1);
    char title[PRINTER_TITLE_MAX + 1];
    char job[64];
    size_t tlen;
    int rc;

    if (nl == NULL) {
        return VMAUG_S_INVALID;
    }
    tlen = nl - in;
    memcpy(title, in, tlen);
    title[tlen] = '\0';
    if (memchr(title, '\0', tlen) != NULL || nl + 1 == in + in_len) {
        return VMAUG_S_INVALID;     /* NUL in title, or empty document */
    }
    rc = p->api->spool_submit(p->host, title, nl + 1, in_len - tlen - 1,
                              job, sizeof(job));
    if (rc == -EPERM) {
        return VMAUG_S_DENIED;
    }
    if (rc == -EDQUOT) {
        return VMAUG_S_TOO_BIG;     /* the VM's spool is full */
    }
    if (rc < 0) {
        return VMAUG_S_IO_ERROR;
    }
    printer_progress(p, "queued", job);
    p->jobs++;
    if (strlen(job) > out_cap) {
        return VMAUG_S_NO_SPACE;
    }
    memcpy(out, job, strlen(job));
    *out_len = strlen(job);
    printer_progress(p, "done", job);
    return VMAUG_S_OK;
}

static int printer_call(void *priv, const char *function, const void *in,
                        size_t in_len, void *out, size_t out_cap,
                        size_t *out_len)
{
    Printer *p = priv;

    if (strcmp(function, "print") == 0) {
        return printer_print(p, in, in_len, out, out_cap, out_len);
    }
    if (strcmp(function, "jobs") == 0) {
        int n = snprintf(out, out_cap, "%lu", p->jobs);

        *out_len = n > 0 && (size_t)n < out_cap ? (size_t)n : 0;
        return VMAUG_S_OK;
    }
    return VMAUG_S_NOT_FOUND;
}

VMAUG_MODULE_DEFINE(
    .init = printer_init,
    .fini = printer_fini,
    .call = printer_call,
);
