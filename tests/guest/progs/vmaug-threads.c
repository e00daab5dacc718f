/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * THREADS threads share one open /dev/vmaugment and each sends CALLS pings
 * carrying its own thread number and sequence; every echo must be the
 * caller's own bytes.  Usage: vmaug-threads THREADS CALLS
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

static int dev_fd;
static unsigned long calls;

static void *pinger(void *arg)
{
    uint64_t me = (uintptr_t)arg;
    uint8_t out[256], in[256];

    for (uint64_t i = 0; i < calls; i++) {
        size_t len = 16 + (size_t)((me * 37 + i) % 200);
        struct vmaug_ioctl_call call = {
            .opcode = VMAUG_OP_PING,
            .req_addr = (uintptr_t)out,
            .req_len = (uint32_t)len,
            .resp_addr = (uintptr_t)in,
            .resp_len = sizeof(in),
        };

        memset(out, (int)me, sizeof(out));
        memcpy(out, &me, sizeof(me));
        memcpy(out + 8, &i, sizeof(i));
        if (ioctl(dev_fd, VMAUG_IOC_CALL, &call) != 0) {
            fprintf(stderr, "thread %llu call %llu: %s\n",
                    (unsigned long long)me, (unsigned long long)i,
                    strerror(errno));
            return (void *)1;
        }
        if (call.status != VMAUG_S_OK || call.resp_len != len ||
            memcmp(in, out, len) != 0) {
            fprintf(stderr, "thread %llu call %llu: wrong echo (status %u)\n",
                    (unsigned long long)me, (unsigned long long)i,
                    call.status);
            return (void *)1;
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    unsigned long threads;
    pthread_t tid[64];
    int failed = 0;

    if (argc != 3) {
        fprintf(stderr, "usage: vmaug-threads THREADS CALLS\n");
        return 2;
    }
    threads = strtoul(argv[1], NULL, 0);
    calls = strtoul(argv[2], NULL, 0);
    if (threads == 0 || threads > 64) {
        fprintf(stderr, "1..64 threads\n");
        return 2;
    }
    dev_fd = open("/dev/vmaugment", O_RDWR);
    if (dev_fd < 0) {
        perror("open /dev/vmaugment");
        return 1;
    }
    for (unsigned long t = 0; t < threads; t++) {
        if (pthread_create(&tid[t], NULL, pinger, (void *)(uintptr_t)t)) {
            perror("pthread_create");
            return 1;
        }
    }
    for (unsigned long t = 0; t < threads; t++) {
        void *ret;

        pthread_join(tid[t], &ret);
        failed += ret != NULL;
    }
    if (failed) {
        fprintf(stderr, "%d of %lu threads saw errors\n", failed, threads);
        return 1;
    }
    printf("%lu threads x %lu calls on one file matched\n", threads, calls);
    return 0;
}
