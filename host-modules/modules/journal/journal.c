/*
 * journal: records the lifecycle events it runs on.
 *
 * Each event appends one line "<event> <seconds>.<microseconds>" (the
 * host's CLOCK_REALTIME when the handler ran) to journal.log in the
 * module's state directory; "history" returns the file.  Registered with
 * an image for every lifecycle event, it shows which handlers ran and in
 * which order, against the guest's own output or the host's audit log.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <linux/virtio_vmaugment.h>

#include "vmaugment-module.h"
#include "vmaugment/protocol-names.h"

#define JOURNAL_FILE    "journal.log"

static const struct vmaug_host_api *jn_api;
static vmaug_host *jn_host;

static int journal_init(const struct vmaug_host_api *api, vmaug_host *h,
                        void **priv)
{
    jn_api = api;
    jn_host = h;
    *priv = NULL;
    return 0;
}

static int journal_write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return -EIO;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int journal_event(void *priv, uint32_t type, const void *data,
                         size_t len)
{
    const char *name = vmaug_proto_event_name(type);
    struct timespec ts;
    char line[96];
    int fd, n, rc;

    if (name == NULL || clock_gettime(CLOCK_REALTIME, &ts) < 0) {
        return -EINVAL;
    }
    n = snprintf(line, sizeof(line), "%s %lld.%06ld\n", name,
                 (long long)ts.tv_sec, ts.tv_nsec / 1000);
    fd = jn_api->state_open(jn_host, JOURNAL_FILE,
                            O_WRONLY | O_CREAT | O_APPEND);
    if (fd < 0) {
        return fd;
    }
    /* One write with O_APPEND: a line is never torn or interleaved. */
    rc = journal_write_all(fd, line, (size_t)n);
    if (rc == 0 && fdatasync(fd) < 0) {
        rc = -EIO;
    }
    close(fd);
    return rc;
}

static int journal_call(void *priv, const char *function, const void *in,
                        size_t in_len, void *out, size_t out_cap,
                        size_t *out_len)
{
    size_t done = 0;
    int fd;

    *out_len = 0;
    if (strcmp(function, "history") != 0 || in_len != 0) {
        return VMAUG_S_INVALID;
    }
    fd = jn_api->state_open(jn_host, JOURNAL_FILE, O_RDONLY);
    if (fd == -ENOENT) {
        return VMAUG_S_OK;          /* nothing ran yet */
    }
    if (fd < 0) {
        return VMAUG_S_IO_ERROR;
    }
    while (done < out_cap) {
        ssize_t n = read(fd, (char *)out + done, out_cap - done);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            close(fd);
            return VMAUG_S_IO_ERROR;
        }
        if (n == 0) {
            break;
        }
        done += (size_t)n;
    }
    close(fd);
    *out_len = done;
    return VMAUG_S_OK;
}

VMAUG_MODULE_DEFINE(
    .init = journal_init,
    .event = journal_event,
    .call = journal_call,
);
