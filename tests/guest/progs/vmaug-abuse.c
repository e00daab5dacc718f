/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Misuse of /dev/vmaugment: wrong ioctl numbers and sizes, bad pointers,
 * huge lengths, reserved fields, then random garbage.  Every call must
 * fail with the documented errno (or be answered by the device with an
 * error status) and the kernel must not oops; the guest's /init checks the
 * kernel log and taint flags afterwards.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/virtio_vmaugment.h>

static int failures;

#define BAD_PTR ((uint64_t)0xdead0000UL)
#define KERNEL_PTR ((uint64_t)0xffff888000000000ULL)

/* The ioctl must fail with @want. */
static void expect_errno(int fd, unsigned long cmd, void *arg, int want,
                         const char *what)
{
    int ret = ioctl(fd, cmd, arg);

    if (ret == 0 || errno != want) {
        fprintf(stderr, "FAIL %s: got %d/%s, want %s\n", what, ret,
                ret ? strerror(errno) : "success", strerror(want));
        failures++;
    } else {
        printf("ok   %s: %s\n", what, strerror(want));
    }
}

/* The ioctl must succeed and the device answer with @want_status. */
static void expect_status(int fd, struct vmaug_ioctl_call *call,
                          int want_status, const char *what)
{
    if (ioctl(fd, VMAUG_IOC_CALL, call) != 0) {
        fprintf(stderr, "FAIL %s: %s\n", what, strerror(errno));
        failures++;
    } else if (call->status != want_status) {
        fprintf(stderr, "FAIL %s: status %u, want %d\n", what, call->status,
                want_status);
        failures++;
    } else {
        printf("ok   %s: status %d\n", what, want_status);
    }
}

static void test_calls(int fd)
{
    uint8_t buf[4096] = { 1, 2, 3 };
    struct vmaug_ioctl_call call;

    expect_errno(fd, _IO(VMAUG_IOCTL_MAGIC, 0x7f), NULL, ENOTTY,
                 "unknown ioctl");
    /* Same number, wrong size encoded in it. */
    expect_errno(fd, _IOWR(VMAUG_IOCTL_MAGIC, 0x01, uint64_t), buf, ENOTTY,
                 "CALL with a short size");
    expect_errno(fd, _IOWR(VMAUG_IOCTL_MAGIC, 0x01, uint8_t[64]), buf, ENOTTY,
                 "CALL with a long size");
    expect_errno(fd, _IOR(VMAUG_IOCTL_MAGIC, 0x01, struct vmaug_ioctl_call),
                 buf, ENOTTY, "CALL with the wrong direction");
    expect_errno(fd, VMAUG_IOC_CALL, NULL, EFAULT, "CALL with NULL");
    expect_errno(fd, VMAUG_IOC_CALL, (void *)(uintptr_t)BAD_PTR, EFAULT,
                 "CALL with an unmapped argument");
    expect_errno(fd, VMAUG_IOC_CALL, (void *)(uintptr_t)KERNEL_PTR, EFAULT,
                 "CALL with a kernel argument");

    memset(&call, 0, sizeof(call));
    call.opcode = VMAUG_OP_PING;
    call.req_addr = BAD_PTR;
    call.req_len = 16;
    expect_errno(fd, VMAUG_IOC_CALL, &call, EFAULT, "PING from bad memory");
    call.req_addr = KERNEL_PTR;
    expect_errno(fd, VMAUG_IOC_CALL, &call, EFAULT, "PING from kernel memory");

    call.req_addr = (uintptr_t)buf;
    call.req_len = 0xffffffffu;
    expect_errno(fd, VMAUG_IOC_CALL, &call, EMSGSIZE, "huge req_len");
    call.req_len = VMAUG_MAX_REQ_PAYLOAD + 1;
    expect_errno(fd, VMAUG_IOC_CALL, &call, EMSGSIZE, "req_len limit + 1");

    call.req_len = 16;
    call.resp_addr = BAD_PTR;
    call.resp_len = sizeof(buf);
    expect_errno(fd, VMAUG_IOC_CALL, &call, EFAULT, "PING into bad memory");
    call.resp_addr = KERNEL_PTR;
    expect_errno(fd, VMAUG_IOC_CALL, &call, EFAULT, "PING into kernel memory");

    call.resp_addr = (uintptr_t)buf;
    call.timeout_ms = VMAUG_MAX_TIMEOUT_MS + 1;
    expect_errno(fd, VMAUG_IOC_CALL, &call, EINVAL, "timeout above the limit");
    call.timeout_ms = 0;

    call.opcode = VMAUG_OP_SUBSCRIBE;
    expect_errno(fd, VMAUG_IOC_CALL, &call, EINVAL, "SUBSCRIBE through CALL");

    /* Requests the driver passes on and the device must refuse. */
    memset(&call, 0, sizeof(call));
    call.opcode = 0x7777;
    call.resp_addr = (uintptr_t)buf;
    call.resp_len = sizeof(buf);
    expect_status(fd, &call, VMAUG_S_UNSUPPORTED, "unknown opcode");

    memset(&call, 0, sizeof(call));
    call.opcode = VMAUG_OP_PING;
    call.req_addr = (uintptr_t)buf;
    call.req_len = VMAUG_MAX_PING_PAYLOAD + 1;
    call.resp_addr = (uintptr_t)buf;
    call.resp_len = sizeof(buf);
    {
        uint8_t *big = calloc(1, VMAUG_MAX_PING_PAYLOAD + 1);

        call.req_addr = (uintptr_t)big;
        expect_status(fd, &call, VMAUG_S_TOO_BIG, "oversized PING");
        free(big);
    }

    /* A response buffer too small for the echo: NO_SPACE and the size. */
    memset(&call, 0, sizeof(call));
    call.opcode = VMAUG_OP_PING;
    call.req_addr = (uintptr_t)buf;
    call.req_len = 100;
    call.resp_addr = (uintptr_t)buf;
    call.resp_len = 10;
    expect_status(fd, &call, VMAUG_S_NO_SPACE, "PING with a small buffer");
    if (call.resp_len != 100) {
        fprintf(stderr, "FAIL NO_SPACE reported %u bytes, want 100\n",
                call.resp_len);
        failures++;
    }

    /* VERSION with no response buffer at all. */
    memset(&call, 0, sizeof(call));
    call.opcode = VMAUG_OP_VERSION;
    expect_status(fd, &call, VMAUG_S_NO_SPACE, "VERSION without a buffer");

    /* Huge resp_len is clamped by the driver, not trusted. */
    memset(&call, 0, sizeof(call));
    call.opcode = VMAUG_OP_PING;
    call.req_addr = (uintptr_t)buf;
    call.req_len = 8;
    call.resp_addr = (uintptr_t)buf;
    call.resp_len = 0xffffffffu;
    expect_status(fd, &call, VMAUG_S_OK, "PING with a huge resp_len");
    if (call.resp_len != 8) {
        fprintf(stderr, "FAIL echo length %u, want 8\n", call.resp_len);
        failures++;
    }
}

static void test_chunks(int fd)
{
    size_t big_len = VMAUG_CHUNK_MAX_DATA + 4096;
    uint8_t *big = mmap(NULL, big_len, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    struct vmaug_ioctl_chunk chunk;

    if (big == MAP_FAILED) {
        perror("mmap");
        failures++;
        return;
    }
    memset(big, 0x5a, big_len);

    expect_errno(fd, _IOWR(VMAUG_IOCTL_MAGIC, 0x02, uint32_t), &chunk, ENOTTY,
                 "UPLOAD_CHUNK with a short size");
    expect_errno(fd, VMAUG_IOC_UPLOAD_CHUNK, NULL, EFAULT,
                 "UPLOAD_CHUNK with NULL");

    memset(&chunk, 0, sizeof(chunk));
    chunk.data_addr = (uintptr_t)big;
    expect_errno(fd, VMAUG_IOC_UPLOAD_CHUNK, &chunk, EMSGSIZE, "empty chunk");
    chunk.data_len = VMAUG_CHUNK_MAX_DATA + 1;
    expect_errno(fd, VMAUG_IOC_UPLOAD_CHUNK, &chunk, EMSGSIZE,
                 "chunk limit + 1");
    chunk.data_len = 0xffffffffu;
    expect_errno(fd, VMAUG_IOC_UPLOAD_CHUNK, &chunk, EMSGSIZE, "huge chunk");
    chunk.data_len = 4096;
    chunk.reserved = 1;
    expect_errno(fd, VMAUG_IOC_UPLOAD_CHUNK, &chunk, EINVAL,
                 "chunk with reserved set");
    chunk.reserved = 0;
    chunk.reserved2 = 1;
    expect_errno(fd, VMAUG_IOC_UPLOAD_CHUNK, &chunk, EINVAL,
                 "chunk with reserved2 set");
    chunk.reserved2 = 0;
    chunk.data_addr = BAD_PTR;
    expect_errno(fd, VMAUG_IOC_UPLOAD_CHUNK, &chunk, EFAULT,
                 "chunk from unmapped memory");
    chunk.data_addr = KERNEL_PTR;
    expect_errno(fd, VMAUG_IOC_UPLOAD_CHUNK, &chunk, EFAULT,
                 "chunk from kernel memory");
    chunk.data_addr = ~(uint64_t)0 - 100;
    chunk.data_len = 4096;
    expect_errno(fd, VMAUG_IOC_UPLOAD_CHUNK, &chunk, EFAULT,
                 "chunk wrapping the address space");
    /*
     * A well-formed chunk from an unaligned address spanning 257 pages
     * reaches the device, which has no helper to relay it to.
     */
    chunk.data_addr = (uintptr_t)big + 100;
    chunk.data_len = VMAUG_CHUNK_MAX_DATA;
    if (ioctl(fd, VMAUG_IOC_UPLOAD_CHUNK, &chunk) != 0 ||
        chunk.status != VMAUG_S_UNAVAILABLE) {
        fprintf(stderr, "FAIL full chunk without a helper: %s status %u\n",
                strerror(errno), chunk.status);
        failures++;
    } else {
        printf("ok   full chunk without a helper: status %d\n",
               VMAUG_S_UNAVAILABLE);
    }
    /* Half mapped: the second page is gone. */
    munmap(big + 4096, 4096);
    chunk.data_addr = (uintptr_t)big;
    chunk.data_len = 8192;
    expect_errno(fd, VMAUG_IOC_UPLOAD_CHUNK, &chunk, EFAULT,
                 "chunk over a hole");
    munmap(big, big_len);
}

static void test_subscribe_and_read(int fd)
{
    struct vmaug_ioctl_subscribe sub = { 0 };
    uint8_t buf[8];
    int nb;

    expect_errno(fd, VMAUG_IOC_SUBSCRIBE, NULL, EFAULT, "SUBSCRIBE with NULL");
    sub.mask = 1;
    expect_errno(fd, VMAUG_IOC_SUBSCRIBE, &sub, EINVAL,
                 "SUBSCRIBE to event type 0");
    sub.mask = VMAUG_EVENT_MASK(VMAUG_EVENT_HELPER_LOST);
    sub.reserved = 1;
    expect_errno(fd, VMAUG_IOC_SUBSCRIBE, &sub, EINVAL,
                 "SUBSCRIBE with reserved set");

    nb = open("/dev/vmaugment", O_RDWR | O_NONBLOCK);
    if (nb < 0 || read(nb, buf, sizeof(buf)) != -1 || errno != EAGAIN) {
        fprintf(stderr, "FAIL non-blocking read without events\n");
        failures++;
    } else {
        printf("ok   non-blocking read without events: EAGAIN\n");
    }
    if (nb >= 0) {
        close(nb);
    }
    if (write(fd, buf, sizeof(buf)) != -1) {
        fprintf(stderr, "FAIL write() succeeded\n");
        failures++;
    }
    if (mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0) != MAP_FAILED) {
        fprintf(stderr, "FAIL mmap() succeeded\n");
        failures++;
    }
}

/* Random ioctl numbers of our magic with random argument blocks. */
static void test_garbage(int fd, unsigned int rounds)
{
    union {
        uint64_t raw[8];
        struct vmaug_ioctl_call call;
        struct vmaug_ioctl_chunk chunk;
    } arg;

    srand(12345);
    for (unsigned int i = 0; i < rounds; i++) {
        unsigned long nr = (unsigned long)rand() & 0x07;
        unsigned long size = (unsigned long)rand() % 64;
        unsigned long dir = (unsigned long)rand() & 3;
        unsigned long cmd = _IOC(dir, VMAUG_IOCTL_MAGIC, nr, size);

        for (size_t j = 0; j < 8; j++) {
            arg.raw[j] = ((uint64_t)rand() << 32) | (uint64_t)rand();
        }
        /* Small lengths and a short timeout keep the run quick. */
        if (cmd == VMAUG_IOC_CALL) {
            arg.call.timeout_ms %= 2000;
            arg.call.req_len %= 8192;
        }
        if (cmd == VMAUG_IOC_UPLOAD_CHUNK) {
            arg.chunk.timeout_ms %= 2000;
        }
        ioctl(fd, cmd, &arg);
    }
    printf("ok   %u random ioctls\n", rounds);
}

int main(void)
{
    int fd = open("/dev/vmaugment", O_RDWR);
    struct vmaug_ioctl_call call = { 0 };
    uint8_t echo[32], data[32] = "still alive";

    if (fd < 0) {
        perror("open /dev/vmaugment");
        return 1;
    }
    test_calls(fd);
    test_chunks(fd);
    test_subscribe_and_read(fd);
    test_garbage(fd, 20000);

    /* The device and driver still work afterwards. */
    call.opcode = VMAUG_OP_PING;
    call.req_addr = (uintptr_t)data;
    call.req_len = sizeof(data);
    call.resp_addr = (uintptr_t)echo;
    call.resp_len = sizeof(echo);
    if (ioctl(fd, VMAUG_IOC_CALL, &call) != 0 || call.status != VMAUG_S_OK ||
        call.resp_len != sizeof(data) || memcmp(echo, data, sizeof(data))) {
        fprintf(stderr, "FAIL ping after the abuse\n");
        failures++;
    }
    close(fd);
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("all misuse rejected\n");
    return 0;
}
