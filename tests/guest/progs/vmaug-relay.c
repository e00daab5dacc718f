/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * THREADS threads share one open /dev/vmaugment and make CALLS requests
 * each that the device relays to the host helper: INVOKEs of MODULE's
 * "echo" function, and every fourth call a QUERY.  Every answer must be
 * the caller's own:
 *
 * - an INVOKE sends bytes that carry the process id, the thread and the
 *   call's number, of a length that depends on them (16..2063 bytes), and
 *   must get exactly those bytes back;
 * - a QUERY of an even thread asks for MODULE, which must be answered OK
 *   with MODULE's name; an odd thread asks for a module of a name of its
 *   own that the host does not have, which must be answered NOT_FOUND with
 *   the host's reason, which names it.  A QUERY answer delivered to the
 *   wrong caller has the wrong status, length or name.
 *
 * Thread T appends every INVOKE payload it sent to DIR/tT.sent and every
 * answer the driver handed back, as many bytes as it reported, to
 * DIR/tT.recv, for the scenario to compare with tools of its own.
 *
 * Usage: vmaug-relay THREADS CALLS MODULE DIR
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

#define RELAY_MAX_DATA  2063
/*
 * What is checked is where each answer goes, not how soon it comes: on a
 * host whose disk is busy with other work the helper has been seen to
 * answer nothing for over 30 s (the driver's default) while an upload
 * was stored, so each call waits up to 120 s.  A lost or misrouted answer
 * still fails.
 */
#define RELAY_TIMEOUT_MS 120000

static int dev_fd;
static unsigned long calls;
static const char *module;
static const char *record_dir;

/* Whether @reason ends with the word @name. */
static int reason_names(const char *reason, const char *name)
{
    size_t r = strlen(reason), n = strlen(name);

    return r > n && reason[r - n - 1] == ' ' &&
           strcmp(reason + r - n, name) == 0;
}

/* QUERY: MODULE on even threads, a name nobody has on odd ones. */
static int relay_query(uint64_t me, uint64_t i)
{
    struct vmaug_module_ref ref;
    union {
        struct vmaug_module_info info;
        char reason[256];
    } a;
    struct vmaug_module_info *info = &a.info;
    int present = !(me & 1);
    struct vmaug_ioctl_call call = {
        .opcode = VMAUG_OP_QUERY,
        .req_addr = (uintptr_t)&ref,
        .req_len = sizeof(ref),
        .resp_addr = (uintptr_t)&a,
        .resp_len = sizeof(a) - 1,
        .timeout_ms = RELAY_TIMEOUT_MS,
    };

    memset(&ref, 0, sizeof(ref));
    memset(&a, 0, sizeof(a));
    if (present) {
        snprintf((char *)ref.name, sizeof(ref.name), "%s", module);
    } else {
        snprintf((char *)ref.name, sizeof(ref.name), "absent-%d-%llu",
                 (int)getpid(), (unsigned long long)me);
    }
    if (ioctl(dev_fd, VMAUG_IOC_CALL, &call) != 0) {
        fprintf(stderr, "thread %llu query %llu: %s\n",
                (unsigned long long)me, (unsigned long long)i,
                strerror(errno));
        return -1;
    }
    /* The reason ("no module NAME") names what was asked. */
    if (present ? (call.status != VMAUG_S_OK ||
                   call.resp_len != sizeof(*info) ||
                   strncmp((char *)info->ref.name, module,
                           sizeof(info->ref.name)) != 0) :
                  (call.status != VMAUG_S_NOT_FOUND ||
                   call.resp_len >= sizeof(a) ||
                   !reason_names(a.reason, (char *)ref.name))) {
        fprintf(stderr, "thread %llu query %llu of %s: status %u, %u bytes"
                ": not the answer to this query\n",
                (unsigned long long)me, (unsigned long long)i,
                (char *)ref.name, call.status, call.resp_len);
        return -1;
    }
    return 0;
}

static void *caller(void *arg)
{
    uint64_t me = (uintptr_t)arg;
    /* The process id too: several processes run this at once. */
    uint64_t tag = ((uint64_t)getpid() << 16) | me;
    static __thread uint8_t out[sizeof(struct vmaug_invoke) + RELAY_MAX_DATA];
    static __thread uint8_t in[RELAY_MAX_DATA + 1];
    struct vmaug_invoke *inv = (struct vmaug_invoke *)out;
    uint8_t *data = out + sizeof(*inv);
    FILE *sent, *recv;
    void *ret = (void *)1;

    sent = record_open(record_dir, me, "sent");
    recv = record_open(record_dir, me, "recv");
    if (!sent || !recv) {
        perror(record_dir);
        goto out_close;
    }
    memset(inv, 0, sizeof(*inv));
    snprintf((char *)inv->module, sizeof(inv->module), "%s", module);
    snprintf((char *)inv->function, sizeof(inv->function), "echo");
    for (uint64_t i = 0; i < calls; i++) {
        size_t len = 16 + (size_t)((tag * 37 + i * 101) %
                                   (RELAY_MAX_DATA - 15));
        struct vmaug_ioctl_call call = {
            .opcode = VMAUG_OP_INVOKE,
            .req_addr = (uintptr_t)out,
            .req_len = (uint32_t)(sizeof(*inv) + len),
            .resp_addr = (uintptr_t)in,
            .resp_len = sizeof(in),
            .timeout_ms = RELAY_TIMEOUT_MS,
        };
        size_t got;

        if (i % 4 == 3) {
            if (relay_query(me, i) != 0) {
                goto out_close;
            }
            continue;
        }
        /* Every byte depends on the call, so a shifted echo differs. */
        for (size_t k = 16; k < len; k++) {
            data[k] = (uint8_t)(tag * 13 + i * 7 + k);
        }
        memcpy(data, &tag, sizeof(tag));
        memcpy(data + 8, &i, sizeof(i));
        memset(in, 0, sizeof(in));
        if (ioctl(dev_fd, VMAUG_IOC_CALL, &call) != 0) {
            fprintf(stderr, "thread %llu call %llu: %s\n",
                    (unsigned long long)me, (unsigned long long)i,
                    strerror(errno));
            goto out_close;
        }
        got = call.resp_len < sizeof(in) ? call.resp_len : sizeof(in);
        if (fwrite(data, 1, len, sent) != len ||
            fwrite(in, 1, got, recv) != got) {
            perror("writing the records");
            goto out_close;
        }
        if (call.status != VMAUG_S_OK || call.resp_len != len ||
            memcmp(in, data, len) != 0) {
            fprintf(stderr, "thread %llu call %llu: wrong echo (status %u,"
                    " %u bytes for %zu)\n", (unsigned long long)me,
                    (unsigned long long)i, call.status, call.resp_len, len);
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

    if (argc != 5) {
        fprintf(stderr, "usage: vmaug-relay THREADS CALLS MODULE DIR\n");
        return 2;
    }
    threads = strtoul(argv[1], NULL, 0);
    calls = strtoul(argv[2], NULL, 0);
    module = argv[3];
    record_dir = argv[4];
    dev_fd = open("/dev/vmaugment", O_RDWR);
    if (dev_fd < 0) {
        perror("open /dev/vmaugment");
        return 1;
    }
    if (run_callers(threads, caller) != 0) {
        return 1;
    }
    printf("%lu threads x %lu relayed calls matched\n", threads, calls);
    return 0;
}
