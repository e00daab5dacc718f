/*
 * hostile: a module signed by a trusted administrator that tries to break
 * out of its sandbox, one way per function.  The helper's tests invoke
 * each and expect it to be killed or denied, never to succeed; they also
 * run some of the same functions outside any sandbox, where they must
 * succeed, so that a denial is known to come from the sandbox and not from
 * an attempt that could never have worked.
 *
 * A function returns VMAUG_S_OK only if the escape worked ("ping" is the
 * exception: it proves the module runs at all).  A function that was
 * stopped returns VMAUG_S_DENIED with "STEP ERRNO" as its output: the call
 * that failed and the errno it got (e.g. "socket 13"), so that the test
 * can tell the sandbox's refusal from any other failure.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/virtio_vmaugment.h>
#include "vmaugment/host-link.h"

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

/* The escape was stopped at @step with @err: say so. */
static int hostile_stopped(const char *step, int err, void *out, size_t cap,
                           size_t *out_len)
{
    int n = snprintf(out, cap, "%s %d", step, err);

    *out_len = n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap;
    return VMAUG_S_DENIED;
}

/* The TCP port in @in (decimal), 0 if none. */
static int hostile_port(const void *in, size_t in_len)
{
    char buf[8];

    if (in_len == 0 || in_len >= sizeof(buf)) {
        return 0;
    }
    memcpy(buf, in, in_len);
    buf[in_len] = '\0';
    return atoi(buf);
}

/* The module link's framing (host-modules/helper/modlink.h): a module
 * that writes its own frames is what a hostile one would do. */
#define HOSTILE_LINK_MAGIC      0x4d475541
#define HOSTILE_LINK_RESULT     17

/* Calls this process has been given: the helper numbers them from 1. */
static unsigned long hostile_calls;

/* A RESULT for call @id carrying @len bytes, written straight to the
 * link; 0 or -errno. */
static int hostile_raw_result(unsigned long id, size_t len)
{
    struct vmaug_host_msg hdr = {
        .magic = htole32(HOSTILE_LINK_MAGIC),
        .type = htole16(HOSTILE_LINK_RESULT),
        .len = htole32((uint32_t)(4 + len)),
        .tag = htole64(id),
    };
    size_t total = sizeof(hdr) + 4 + len;
    unsigned char *frame = calloc(1, total);
    size_t done = 0;

    if (frame == NULL) {
        return -ENOMEM;
    }
    memcpy(frame, &hdr, sizeof(hdr));
    memset(frame + sizeof(hdr) + 4, 'x', len);
    while (done < total) {
        ssize_t n = write(3, frame + done, total - done);

        if (n < 0) {
            free(frame);
            return -errno;
        }
        done += n;
    }
    free(frame);
    return 0;
}

static int hostile_call(void *priv, const char *f, const void *in,
                        size_t in_len, void *out, size_t cap,
                        size_t *out_len)
{
    hostile_calls++;
    if (strcmp(f, "ping") == 0) {
        memcpy(out, "pong", 4);
        *out_len = 4;
        return VMAUG_S_OK;
    }
    if (strcmp(f, "execve") == 0) {
        char *argv[] = { (char *)"/bin/sh", (char *)"-c", (char *)"true",
                         NULL };

        execve("/bin/sh", argv, NULL);
        return hostile_stopped("execve", errno, out, cap, out_len);
    }
    if (strcmp(f, "open") == 0) {
        int fd = open("/etc/passwd", O_RDONLY);

        if (fd < 0) {
            return hostile_stopped("open", errno, out, cap, out_len);
        }
        close(fd);
        return VMAUG_S_OK;
    }
    if (strcmp(f, "open-climb") == 0) {
        /* Through the broker, out of the state directory. */
        int fd = api->state_open(host, "../../audit.log", O_RDONLY);

        if (fd < 0) {
            return hostile_stopped("state_open", -fd, out, cap, out_len);
        }
        close(fd);
        return VMAUG_S_OK;
    }
    if (strcmp(f, "open-absolute") == 0) {
        int fd = api->state_open(host, "/etc/passwd", O_RDONLY);

        if (fd < 0) {
            return hostile_stopped("state_open", -fd, out, cap, out_len);
        }
        close(fd);
        return VMAUG_S_OK;
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
        /* The test listens on 127.0.0.1 at the port it passes. */
        struct sockaddr_in sa = { .sin_family = AF_INET,
                                  .sin_port = htons(hostile_port(in, in_len)),
                                  .sin_addr.s_addr = htonl(0x7f000001) };
        int s = socket(AF_INET, SOCK_STREAM, 0);

        if (s < 0) {
            return hostile_stopped("socket", errno, out, cap, out_len);
        }
        if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            int err = errno;

            close(s);
            return hostile_stopped("connect", err, out, cap, out_len);
        }
        close(s);
        return VMAUG_S_OK;
    }
    if (strcmp(f, "ptrace") == 0) {
        if (ptrace(PTRACE_TRACEME, 0, NULL, NULL) < 0) {
            return hostile_stopped("ptrace", errno, out, cap, out_len);
        }
        return VMAUG_S_OK;
    }
    if (strcmp(f, "fork") == 0) {
        /* One child is already an escape (the sandbox allows no process
         * but this one), and unlike a fork bomb it is cheap to show
         * working without a sandbox. */
        pid_t pid = fork();

        if (pid < 0) {
            return hostile_stopped("fork", errno, out, cap, out_len);
        }
        if (pid == 0) {
            _exit(0);
        }
        waitpid(pid, NULL, 0);
        return VMAUG_S_OK;
    }
    if (strcmp(f, "alloc") == 0) {
        /* Far beyond the limit: 8 GiB in 16 MiB steps, touched. */
        for (int i = 0; i < 512; i++) {
            char *p = malloc(16 << 20);

            if (p == NULL) {
                return hostile_stopped("malloc", errno, out, cap, out_len);
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
    if (strcmp(f, "big-result") == 0) {
        /* An answer larger than any response may be: the helper must not
         * pass it on as a message the device refuses. */
        int rc = hostile_raw_result(hostile_calls,
                                    2 * VMAUG_MAX_RESP_PAYLOAD);

        if (rc < 0) {
            return hostile_stopped("write", -rc, out, cap, out_len);
        }
        /* Answered already: whatever the helper does next ends this. */
        for (;;) {
            struct timespec ts = { 1, 0 };

            nanosleep(&ts, NULL);
        }
    }
    if (strcmp(f, "garbage") == 0) {
        static const char junk[] = "this is not a vmaugment message at all";

        if (write(3, junk, sizeof(junk)) < 0) {
            return hostile_stopped("write", errno, out, cap, out_len);
        }
        /* Never answer: only the helper, reacting to the garbage, can end
         * this call (answering would race its kill with our own exit on
         * the closed link). */
        for (;;) {
            struct timespec ts = { 1, 0 };

            nanosleep(&ts, NULL);
        }
    }
    if (strcmp(f, "exec-memory") == 0) {
        void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

        if (p == MAP_FAILED) {
            return hostile_stopped("mmap", errno, out, cap, out_len);
        }
        munmap(p, 4096);
        return VMAUG_S_OK;
    }
    if (strcmp(f, "files") == 0) {
        /* Fill the host's disk with files in the state directory. */
        for (int i = 0; i < 5000; i++) {
            char name[32];
            int fd;

            snprintf(name, sizeof(name), "junk-%d", i);
            fd = api->state_open(host, name, O_WRONLY | O_CREAT);
            if (fd < 0) {
                return hostile_stopped("state_open", -fd, out, cap, out_len);
            }
            close(fd);
        }
        return VMAUG_S_OK;
    }
    if (strcmp(f, "flood") == 0) {
        /* Try to drown the VM's event queue (and get it disconnected). */
        for (int i = 0; i < 1000; i++) {
            int rc = api->post_event(host, "flood", 5);

            if (rc < 0) {
                for (int j = 0; j < 1000; j++) {
                    api->log(host, VMAUG_LOG_WARNING, "flood");
                }
                return hostile_stopped("post_event", -rc, out, cap,
                                       out_len);
            }
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
