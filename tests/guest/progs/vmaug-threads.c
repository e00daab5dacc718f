/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * THREADS threads share one open /dev/vmaugment and each sends CALLS pings
 * carrying the process id, its thread number and sequence; every echo must
 * be the caller's own bytes.
 *
 * With DIR, thread T also appends every payload it sent to DIR/tT.sent and
 * every response the driver handed back, as many bytes as it reported, to
 * DIR/tT.recv: the scenario compares the two with tools of its own, so a
 * wrong echo or a response delivered to another caller is caught even if
 * this program's own check were wrong.
 *
 * Usage: vmaug-threads THREADS CALLS [SIZE [DIR]]
 *   SIZE 0 (the default): call I of thread T sends 16 + (T * 37 + I) % 200
 *   bytes; otherwise every call sends SIZE (16..4096) bytes.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/virtio_vmaugment.h>

#include "callers.h"

static int dev_fd;
static unsigned long calls;
static unsigned long fixed_size;
static const char *record_dir;

static void *pinger(void *arg)
{
    uint64_t me = (uintptr_t)arg;
    /* The process id too: several processes run this at once. */
    uint64_t tag = ((uint64_t)getpid() << 16) | me;
    uint8_t out[VMAUG_MAX_PING_PAYLOAD], in[VMAUG_MAX_PING_PAYLOAD];
    FILE *sent = NULL, *recv = NULL;
    void *ret = (void *)1;

    if (record_dir) {
        sent = record_open(record_dir, me, "sent");
        recv = record_open(record_dir, me, "recv");
        if (!sent || !recv) {
            perror(record_dir);
            goto out_close;
        }
    }
    for (uint64_t i = 0; i < calls; i++) {
        size_t len = fixed_size ? fixed_size :
                     16 + (size_t)((me * 37 + i) % 200);
        struct vmaug_ioctl_call call = {
            .opcode = VMAUG_OP_PING,
            .req_addr = (uintptr_t)out,
            .req_len = (uint32_t)len,
            .resp_addr = (uintptr_t)in,
            .resp_len = sizeof(in),
        };
        size_t got;

        /* Every byte depends on the call, so a shifted echo differs. */
        for (size_t k = 16; k < len; k++) {
            out[k] = (uint8_t)(tag * 13 + i * 7 + k);
        }
        memcpy(out, &tag, sizeof(tag));
        memcpy(out + 8, &i, sizeof(i));
        memset(in, 0, sizeof(in));
        if (ioctl(dev_fd, VMAUG_IOC_CALL, &call) != 0) {
            fprintf(stderr, "thread %llu call %llu: %s\n",
                    (unsigned long long)me, (unsigned long long)i,
                    strerror(errno));
            goto out_close;
        }
        got = call.resp_len < sizeof(in) ? call.resp_len : sizeof(in);
        if (sent && (fwrite(out, 1, len, sent) != len ||
                     fwrite(in, 1, got, recv) != got)) {
            perror("writing the records");
            goto out_close;
        }
        if (call.status != VMAUG_S_OK || call.resp_len != len ||
            memcmp(in, out, len) != 0) {
            fprintf(stderr, "thread %llu call %llu: wrong echo (status %u)\n",
                    (unsigned long long)me, (unsigned long long)i,
                    call.status);
            goto out_close;
        }
    }
    ret = NULL;

out_close:
    if (records_close(sent, recv) != 0) {
        ret = (void *)1;
    }
    return ret;
}

int main(int argc, char **argv)
{
    unsigned long threads;

    if (argc < 3 || argc > 5) {
        fprintf(stderr, "usage: vmaug-threads THREADS CALLS [SIZE [DIR]]\n");
        return 2;
    }
    threads = strtoul(argv[1], NULL, 0);
    calls = strtoul(argv[2], NULL, 0);
    fixed_size = argc > 3 ? strtoul(argv[3], NULL, 0) : 0;
    record_dir = argc > 4 ? argv[4] : NULL;
    if (fixed_size && (fixed_size < 16 ||
                       fixed_size > VMAUG_MAX_PING_PAYLOAD)) {
        fprintf(stderr, "SIZE is 0 or 16..%u\n", VMAUG_MAX_PING_PAYLOAD);
        return 2;
    }
    dev_fd = open("/dev/vmaugment", O_RDWR);
    if (dev_fd < 0) {
        perror("open /dev/vmaugment");
        return 1;
    }
    if (run_callers(threads, pinger) != 0) {
        return 1;
    }
    printf("%lu threads x %lu calls on one file matched\n", threads, calls);
    return 0;
}
