/*
 * hostile: a module signed by a trusted administrator that tries to break
 * out of its sandbox, one way per function.  The helper's tests invoke
 * each and expect it to be killed or denied, never to succeed.
 *
 * A function returns VMAUG_S_OK only if the escape worked ("ping" is the
 * exception: it proves the module runs at all).
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/virtio_vmaugment.h>

#include "vmaugment-module.h"

static const struct vmaug_host_api *api;
static vmaug_host *host;

static int hostile_init(const struct vmaug_host_api *a, vmaug_host *h,
                        void **priv)
{
    api = a;
    host = h;
    return 0;
}

static int hostile_call(void *priv, const char *f, const void *in,
                        size_t in_len, void *out, size_t cap,
                        size_t *out_len)
{
    if (strcmp(f, "ping") == 0) {
        memcpy(out, "pong", 4);
        *out_len = 4;
        return VMAUG_S_OK;
    }
    if (strcmp(f, "execve") == 0) {
        char *argv[] = { (char *)"/bin/sh", (char *)"-c", (char *)"true",
                         NULL };

        execve("/bin/sh", argv, NULL);
        return VMAUG_S_DENIED;
    }
    if (strcmp(f, "open") == 0) {
        int fd = open("/etc/passwd", O_RDONLY);

        if (fd >= 0) {
            return VMAUG_S_OK;
        }
        /* Through the broker, trying to climb out of the state dir. */
        fd = api->state_open(host, "../../audit.log", O_RDONLY);
        if (fd >= 0) {
            return VMAUG_S_OK;
        }
        fd = api->state_open(host, "/etc/passwd", O_RDONLY);
        return fd >= 0 ? VMAUG_S_OK : VMAUG_S_DENIED;
    }
    if (strcmp(f, "state") == 0) {
        /* What a module may do: its own files. */
        int fd = api->state_open(host, "notes.txt",
                                 O_WRONLY | O_CREAT | O_TRUNC);

        if (fd < 0 || write(fd, in, in_len) != (ssize_t)in_len) {
            return VMAUG_S_IO_ERROR;
        }
        close(fd);
        *out_len = 0;
        return VMAUG_S_DENIED;      /* not an escape */
    }
    if (strcmp(f, "connect") == 0) {
        struct sockaddr_in sa = { .sin_family = AF_INET,
                                  .sin_port = htons(22),
                                  .sin_addr.s_addr = htonl(0x7f000001) };
        int s = socket(AF_INET, SOCK_STREAM, 0);

        if (s >= 0 && connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            return VMAUG_S_OK;
        }
        return VMAUG_S_DENIED;
    }
    if (strcmp(f, "ptrace") == 0) {
        if (ptrace(PTRACE_TRACEME, 0, NULL, NULL) == 0) {
            return VMAUG_S_OK;
        }
        return VMAUG_S_DENIED;
    }
    if (strcmp(f, "fork") == 0) {
        for (int i = 0; i < 100000; i++) {
            if (fork() < 0) {
                return VMAUG_S_DENIED;
            }
        }
        return VMAUG_S_OK;
    }
    if (strcmp(f, "alloc") == 0) {
        /* Far beyond the limit: 8 GiB in 16 MiB steps, touched. */
        for (int i = 0; i < 512; i++) {
            char *p = malloc(16 << 20);

            if (p == NULL) {
                return VMAUG_S_DENIED;
            }
            memset(p, 0xa5, 16 << 20);
        }
        return VMAUG_S_OK;
    }
    if (strcmp(f, "spin") == 0) {
        volatile unsigned long n = 0;

        for (;;) {
            n++;
        }
    }
    if (strcmp(f, "garbage") == 0) {
        static const char junk[] = "this is not a vmaugment message at all";

        if (write(3, junk, sizeof(junk)) < 0) {
            return VMAUG_S_DENIED;
        }
        return VMAUG_S_OK;
    }
    if (strcmp(f, "exec-memory") == 0) {
        void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

        return p != MAP_FAILED ? VMAUG_S_OK : VMAUG_S_DENIED;
    }
    if (strcmp(f, "files") == 0) {
        /* Fill the host's disk with files in the state directory. */
        for (int i = 0; i < 5000; i++) {
            char name[32];
            int fd;

            snprintf(name, sizeof(name), "junk-%d", i);
            fd = api->state_open(host, name, O_WRONLY | O_CREAT);
            if (fd < 0) {
                return VMAUG_S_DENIED;
            }
            close(fd);
        }
        return VMAUG_S_OK;
    }
    if (strcmp(f, "flood") == 0) {
        /* Try to drown the VM's event queue (and get it disconnected). */
        for (int i = 0; i < 1000; i++) {
            if (api->post_event(host, "flood", 5) < 0) {
                return VMAUG_S_DENIED;
            }
        }
        for (int i = 0; i < 100000; i++) {
            api->log(host, VMAUG_LOG_WARNING, "flood");
        }
        return VMAUG_S_OK;
    }
    if (strcmp(f, "undeclared") == 0) {
        return VMAUG_S_OK;          /* not in the manifest: never called */
    }
    return VMAUG_S_NOT_FOUND;
}

VMAUG_MODULE_DEFINE(
    .init = hostile_init,
    .call = hostile_call,
);
