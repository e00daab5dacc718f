/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Guest half of the transport benchmark (tests/bench/transport-bench.sh).
 * Prints "BENCH name value unit" lines for the host script to collect.
 *
 *   guest-bench upload MIB REPS       guest->host through /dev/vmaugment
 *                                     (UPLOAD_BEGIN, zero-copy chunks, ABORT),
 *                                     REPS times; prints each and the median
 *   guest-bench serial-write PORT MIB REPS
 *                                     the same bytes into a virtio-serial port;
 *                                     the host peer acknowledges each MIB
 *   guest-bench memcpy MIB REPS       the guest copying MIB MiB from one
 *                                     buffer to another, REPS times: the
 *                                     bound on any transfer out of it
 *   guest-bench serial-rtt PORT N     N 64-byte ping-pongs through a port
 *   guest-bench vmaug-rtt N WHAT      N small calls through /dev/vmaugment:
 *                                     "ping" (answered by the device),
 *                                     "query" (a missing module, answered by
 *                                     the helper) or "invoke" (the function
 *                                     echo of the loaded module echo, 64
 *                                     bytes, answered by its module process)
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <nettle/sha2.h>

#include "vmaugment.h"

#define RTT_SIZE 64
#define SERIAL_WRITE_SIZE (256 * 1024)

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

/* The same pseudo-random bytes for both transports. */
static uint8_t *make_data(size_t size)
{
    uint8_t *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    uint64_t x = 0x9e3779b97f4a7c15ULL;

    if (p == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    for (size_t i = 0; i + 8 <= size; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(p + i, &x, 8);
    }
    return p;
}

static void print_rates(const char *name, double *rate, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        printf("BENCH %s_run%zu %.1f MiB/s\n", name, i + 1, rate[i]);
    }
    qsort(rate, n, sizeof(*rate), cmp_double);
    printf("BENCH %s %.1f MiB/s\n", name, rate[n / 2]);
}

static void print_rtts(const char *name, double *rtt, size_t n)
{
    qsort(rtt, n, sizeof(*rtt), cmp_double);
    printf("BENCH %s_p50 %.1f us\n", name, rtt[n / 2] * 1e6);
    printf("BENCH %s_p99 %.1f us\n", name, rtt[(n * 99) / 100] * 1e6);
}

/* One upload of @size bytes; returns MiB/s, or a negative value. */
static double upload_once(vmaug_client *client,
                          const struct vmaug_upload_begin *begin,
                          const uint8_t *data, size_t size)
{
    struct vmaug_upload_state state;
    struct vmaug_upload_ref ref;
    uint64_t offset;
    size_t len;
    double t0, secs;
    int ret;

    ret = vmaug_call(client, VMAUG_OP_UPLOAD_BEGIN, begin, sizeof(*begin),
                     &state, sizeof(state), &len);
    if (ret != 0 || len != sizeof(state)) {
        fprintf(stderr, "UPLOAD_BEGIN: %s %s\n", vmaug_strerror(ret),
                vmaug_client_message(client));
        return -1;
    }
    offset = state.offset;
    t0 = now();
    while (offset < size) {
        struct vmaug_ioctl_chunk chunk = {
            .upload_id = state.upload_id,
            .offset = offset,
            .data_addr = (uintptr_t)(data + offset),
            .data_len = size - offset > VMAUG_CHUNK_MAX_DATA ?
                        VMAUG_CHUNK_MAX_DATA : (uint32_t)(size - offset),
        };

        if (ioctl(vmaug_client_fd(client), VMAUG_IOC_UPLOAD_CHUNK,
                  &chunk) < 0) {
            perror("UPLOAD_CHUNK");
            return -1;
        }
        if (chunk.status != VMAUG_S_OK || chunk.offset <= offset) {
            fprintf(stderr, "UPLOAD_CHUNK: status %s at %llu\n",
                    vmaug_status_name(chunk.status),
                    (unsigned long long)offset);
            return -1;
        }
        offset = chunk.offset;
    }
    secs = now() - t0;
    ref.upload_id = state.upload_id;
    /* The bytes are no module package: drop them on the host. */
    vmaug_call(client, VMAUG_OP_UPLOAD_ABORT, &ref, sizeof(ref), NULL, 0,
               NULL);
    return (double)(size >> 20) / secs;
}

static int bench_upload(size_t mib, size_t reps)
{
    size_t size = mib << 20;
    uint8_t *data = make_data(size);
    struct vmaug_upload_begin begin;
    struct sha256_ctx sha;
    vmaug_client *client;
    double rate[16];
    int ret;

    ret = vmaug_client_open(NULL, &client);
    if (ret < 0) {
        fprintf(stderr, "open: %s\n", vmaug_strerror(ret));
        return 1;
    }
    memset(&begin, 0, sizeof(begin));
    vmaug_module_ref_set(&begin.ref, "transport-bench", "1");
    begin.total_size = size;
    sha256_init(&sha);
    sha256_update(&sha, size, data);
    sha256_digest(&sha, sizeof(begin.sha256), begin.sha256);

    for (size_t i = 0; i < reps; i++) {
        rate[i] = upload_once(client, &begin, data, size);
        if (rate[i] < 0) {
            return 1;
        }
    }
    print_rates("vmaug_upload_mib_s", rate, reps);
    vmaug_client_close(client);
    return 0;
}

static int bench_memcpy(size_t mib, size_t reps)
{
    size_t size = mib << 20;
    uint8_t *src = make_data(size);
    uint8_t *dst = make_data(size);
    double rate[16];

    for (size_t i = 0; i < reps; i++) {
        double t0 = now();

        memcpy(dst, src, size);
        rate[i] = (double)mib / (now() - t0);
        /* Keep the copy: the compiler may not drop it. */
        src[i] ^= dst[size - 1 - i];
    }
    print_rates("guest_memcpy_mib_s", rate, reps);
    return 0;
}

static int open_port(const char *path)
{
    int fd = open(path, O_RDWR);

    if (fd < 0) {
        fprintf(stderr, "open %s: %s\n", path, strerror(errno));
        exit(1);
    }
    return fd;
}

static void read_full(int fd, uint8_t *buf, size_t len)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);

        if (n <= 0) {
            fprintf(stderr, "read: %s\n", n ? strerror(errno) : "EOF");
            exit(1);
        }
        got += (size_t)n;
    }
}

static void write_full(int fd, const uint8_t *buf, size_t len)
{
    size_t done = 0;

    while (done < len) {
        ssize_t n = write(fd, buf + done, len - done);

        if (n <= 0) {
            fprintf(stderr, "write: %s\n", strerror(errno));
            exit(1);
        }
        done += (size_t)n;
    }
}

static int bench_serial_write(const char *port, size_t mib, size_t reps)
{
    size_t size = mib << 20;
    uint8_t *data = make_data(size);
    int fd = open_port(port);
    double t0, rate[16];
    uint8_t ack;

    for (size_t rep = 0; rep < reps; rep++) {
        t0 = now();
        for (size_t off = 0; off < size; off += SERIAL_WRITE_SIZE) {
            write_full(fd, data + off, size - off < SERIAL_WRITE_SIZE ?
                       size - off : SERIAL_WRITE_SIZE);
        }
        /* The host peer answers one byte once it has counted them all. */
        read_full(fd, &ack, 1);
        rate[rep] = mib / (now() - t0);
    }
    print_rates("serial_write_mib_s", rate, reps);
    close(fd);
    return 0;
}

static int bench_serial_rtt(const char *port, size_t n)
{
    uint8_t out[RTT_SIZE], in[RTT_SIZE];
    double *rtt = calloc(n, sizeof(*rtt));
    int fd = open_port(port);

    memset(out, 0xa5, sizeof(out));
    for (size_t i = 0; i < n; i++) {
        double t0 = now();

        memcpy(out, &i, sizeof(i));
        write_full(fd, out, sizeof(out));
        read_full(fd, in, sizeof(in));
        rtt[i] = now() - t0;
        if (memcmp(in, out, sizeof(in)) != 0) {
            fprintf(stderr, "serial echo mismatch\n");
            return 1;
        }
    }
    print_rtts("serial_rtt", rtt, n);
    close(fd);
    free(rtt);
    return 0;
}

static int bench_vmaug_rtt(size_t n, const char *what)
{
    uint8_t data[RTT_SIZE], resp[1024];
    double *rtt = calloc(n, sizeof(*rtt));
    struct vmaug_module_ref ref;
    struct {
        struct vmaug_invoke hdr;
        uint8_t input[RTT_SIZE];
    } inv;
    uint16_t opcode = VMAUG_OP_PING;
    const char *name = "vmaug_ping_rtt";
    const void *req = data;
    size_t req_len = sizeof(data), len;
    vmaug_client *client;
    int ret;

    if (strcmp(what, "query") == 0) {
        /* A relayed request: the helper answers NOT_FOUND. */
        opcode = VMAUG_OP_QUERY;
        name = "vmaug_query_rtt";
        vmaug_module_ref_set(&ref, "no-such-module", NULL);
        req = &ref;
        req_len = sizeof(ref);
    } else if (strcmp(what, "invoke") == 0) {
        /* Relayed to the helper and on to the module's process. */
        opcode = VMAUG_OP_INVOKE;
        name = "vmaug_invoke_rtt";
        memset(&inv, 0, sizeof(inv));
        strcpy((char *)inv.hdr.module, "echo");
        strcpy((char *)inv.hdr.function, "echo");
        memset(inv.input, 0x5a, sizeof(inv.input));
        req = &inv;
        req_len = sizeof(inv);
    } else if (strcmp(what, "ping") != 0) {
        fprintf(stderr, "vmaug-rtt: ping, query or invoke\n");
        return 2;
    }
    ret = vmaug_client_open(NULL, &client);
    if (ret < 0) {
        fprintf(stderr, "open: %s\n", vmaug_strerror(ret));
        return 1;
    }
    memset(data, 0x5a, sizeof(data));
    for (size_t i = 0; i < n; i++) {
        double t0 = now();

        ret = vmaug_call(client, opcode, req, req_len, resp, sizeof(resp),
                         &len);
        rtt[i] = now() - t0;
        if (ret < 0 || (opcode != VMAUG_OP_QUERY && ret != 0)) {
            fprintf(stderr, "%s: %s %s\n", what, vmaug_strerror(ret),
                    vmaug_client_message(client));
            return 1;
        }
        if (opcode == VMAUG_OP_INVOKE &&
            (len != RTT_SIZE || memcmp(resp, inv.input, RTT_SIZE) != 0)) {
            fprintf(stderr, "invoke: the echo differs\n");
            return 1;
        }
    }
    print_rtts(name, rtt, n);
    vmaug_client_close(client);
    free(rtt);
    return 0;
}

static size_t reps(const char *arg)
{
    size_t n = strtoul(arg, NULL, 0);

    if (n < 1 || n > 16) {
        fprintf(stderr, "1..16 repetitions\n");
        exit(2);
    }
    return n;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "upload") == 0) {
        return bench_upload(strtoul(argv[2], NULL, 0), reps(argv[3]));
    }
    if (argc == 4 && strcmp(argv[1], "memcpy") == 0) {
        return bench_memcpy(strtoul(argv[2], NULL, 0), reps(argv[3]));
    }
    if (argc == 5 && strcmp(argv[1], "serial-write") == 0) {
        return bench_serial_write(argv[2], strtoul(argv[3], NULL, 0),
                                  reps(argv[4]));
    }
    if (argc == 4 && strcmp(argv[1], "serial-rtt") == 0) {
        return bench_serial_rtt(argv[2], strtoul(argv[3], NULL, 0));
    }
    if (argc == 4 && strcmp(argv[1], "vmaug-rtt") == 0) {
        return bench_vmaug_rtt(strtoul(argv[2], NULL, 0), argv[3]);
    }
    fprintf(stderr, "usage: see the comment at the top of guest-bench.c\n");
    return 2;
}
