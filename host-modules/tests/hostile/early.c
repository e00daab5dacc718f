/*
 * hostile-early: a module signed by a trusted administrator that attacks
 * before its init is ever called: from an ELF constructor, from an
 * .init_array entry and from an IFUNC resolver (run while the object is
 * relocated), as well as from its init and from a call.
 *
 * What it does is read from EARLY_ORDERS, a marker in its own data that
 * the test overwrites in the payload before signing it, since nothing
 * else reaches code that runs this early:
 *
 *   "<stage> <attack> <victim pid> <tcp port> <host path>"
 *
 * Stages: ctor, init-array, ifunc, init, call.  Attacks: file (create the
 * host path), socket (connect to the port on 127.0.0.1), exec (/bin/sh
 * writing the host path), kill (SIGKILL the victim), fcntl-signal
 * (F_SETOWN the victim, F_SETSIG SIGKILL and O_ASYNC on the link socket,
 * so that the next message from the helper kills it), ptrace (attach to
 * the victim), proc (read /proc/1/status), stat and stat-empty-path
 * (newfstatat of /etc/passwd, plain and with AT_EMPTY_PATH), unshare (a
 * user namespace), setns, dev (open /dev/null), exec-memory (an
 * executable mapping); and stall, no attack: two seconds' sleep, a
 * module slow to start.
 *
 * The attack code makes raw system calls only: an IFUNC resolver runs
 * before this object's calls into libc are bound.  An attack that
 * returns leaves "<attack> <result>" for the function "report" (the
 * result is 0 or a negative errno); the test decides what counts.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>

#include <linux/virtio_vmaugment.h>

#include "vmaugment-module.h"

#define EARLY_ORDERS_SIZE   512

/* Overwritten in the payload by the test (a volatile array, so that the
 * compiler cannot fold the placeholder into the code). */
static volatile const char early_orders[EARLY_ORDERS_SIZE] =
    "VMAUG-HOSTILE-EARLY-ORDERS:none";

static char early_report[64];

static long early_syscall(long nr, long a, long b, long c, long d, long e,
                          long f)
{
#if defined(__x86_64__)
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;

    __asm__ volatile ("syscall"
                      : "=a" (ret)
                      : "a" (nr), "D" (a), "S" (b), "d" (c), "r" (r10),
                        "r" (r8), "r" (r9)
                      : "rcx", "r11", "memory");
    return ret;
#else
    /* Elsewhere through libc: the resolver stage may then crash instead
     * of attacking, which a test reads as not escaping. */
    long ret = syscall(nr, a, b, c, d, e, f);

    return ret < 0 ? -errno : ret;
#endif
}

#define SC(nr, ...) early_syscall_n(nr, __VA_ARGS__)
#define early_syscall_n(nr, ...) early_syscall_args(nr, __VA_ARGS__, 0, 0, \
                                                    0, 0, 0, 0)
#define early_syscall_args(nr, a, b, c, d, e, f, ...) \
    early_syscall(nr, (long)(a), (long)(b), (long)(c), (long)(d), \
                  (long)(e), (long)(f))

/* libc-free helpers: the resolver stage cannot call into libc (the
 * build keeps the compiler from turning their loops into calls). */
static int early_eq(const char *a, const char *b)
{
    while (*a != '\0' && *a == *b) {
        a++;
        b++;
    }
    return *a == *b;
}

/* Split the orders into @words (in place, in a copy). */
static int early_words(char *buf, char **words, int max)
{
    /* sizeof only: the marker must appear once in the object. */
    size_t i, skip = sizeof("VMAUG-HOSTILE-EARLY-ORDERS:") - 1;
    int n = 0;

    for (i = 0; i + 1 < EARLY_ORDERS_SIZE; i++) {
        buf[i] = early_orders[i];
    }
    buf[i] = '\0';
    buf += skip;
    while (*buf != '\0' && n < max) {
        while (*buf == ' ') {
            *buf++ = '\0';
        }
        if (*buf == '\0') {
            break;
        }
        words[n++] = buf;
        while (*buf != '\0' && *buf != ' ') {
            buf++;
        }
    }
    return n;
}

static long early_number(const char *s)
{
    long v = 0;

    while (*s >= '0' && *s <= '9') {
        v = v * 10 + (*s++ - '0');
    }
    return v;
}

static void early_note(const char *attack, long result)
{
    char num[24];
    size_t n = 0, k = 0;
    unsigned long v = result < 0 ? -result : result;

    do {
        num[k++] = '0' + v % 10;
        v /= 10;
    } while (v != 0);
    while (*attack != '\0' && n < sizeof(early_report) - 26) {
        early_report[n++] = *attack++;
    }
    early_report[n++] = ' ';
    if (result < 0) {
        early_report[n++] = '-';
    }
    while (k > 0) {
        early_report[n++] = num[--k];
    }
    early_report[n] = '\0';
}

static long early_attack(const char *attack, long victim, long port,
                         const char *path)
{
    if (early_eq(attack, "file")) {
        long fd = SC(SYS_openat, AT_FDCWD, path,
                     O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

        if (fd >= 0) {
            SC(SYS_write, fd, "escaped\n", 8);
            SC(SYS_close, fd);
            return 0;
        }
        return fd;
    }
    if (early_eq(attack, "socket")) {
        struct {
            unsigned short family;
            unsigned short port;
            unsigned int addr;
            char zero[8];
        } sa = { AF_INET, (unsigned short)((port >> 8) | (port << 8)),
                 0x0100007f, { 0 } };
        long s = SC(SYS_socket, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (s < 0) {
            return s;
        }
        return SC(SYS_connect, s, &sa, sizeof(sa));
    }
    if (early_eq(attack, "exec")) {
        static const char echo[] = "echo escaped > ";
        char cmd[EARLY_ORDERS_SIZE + sizeof(echo)];
        char *argv[] = { (char *)"/bin/sh", (char *)"-c", cmd, NULL };
        char *envp[] = { NULL };
        size_t n = 0;

        for (size_t i = 0; echo[i] != '\0'; i++) {
            cmd[n++] = echo[i];
        }
        for (size_t i = 0; path[i] != '\0'; i++) {
            cmd[n++] = path[i];
        }
        cmd[n] = '\0';
        return SC(SYS_execve, "/bin/sh", argv, envp);
    }
    if (early_eq(attack, "kill")) {
        return SC(SYS_kill, victim, SIGKILL);
    }
    if (early_eq(attack, "fcntl-signal")) {
        long rc = SC(SYS_fcntl, 3, F_SETOWN, victim);

        if (rc == 0) {
            rc = SC(SYS_fcntl, 3, F_SETSIG, SIGKILL);
        }
        if (rc == 0) {
            rc = SC(SYS_fcntl, 3, F_SETFL, O_RDWR | O_ASYNC);
        }
        return rc;
    }
    if (early_eq(attack, "ptrace")) {
        return SC(SYS_ptrace, PTRACE_ATTACH, victim, 0, 0);
    }
    if (early_eq(attack, "proc")) {
        char buf[256];
        long fd = SC(SYS_openat, AT_FDCWD, "/proc/1/status",
                     O_RDONLY | O_CLOEXEC, 0);
        long n;

        if (fd < 0) {
            return fd;
        }
        n = SC(SYS_read, fd, buf, sizeof(buf));
        SC(SYS_close, fd);
        return n > 0 ? 0 : n;
    }
    if (early_eq(attack, "stat") || early_eq(attack, "stat-empty-path")) {
        /* The path form (stat()) and a path with AT_EMPTY_PATH, which the
         * kernel still looks up. */
        char st[256];

        return SC(SYS_newfstatat, AT_FDCWD, "/etc/passwd", st,
                  early_eq(attack, "stat") ? 0 : AT_EMPTY_PATH);
    }
    if (early_eq(attack, "unshare")) {
        return SC(SYS_unshare, CLONE_NEWUSER);
    }
    if (early_eq(attack, "setns")) {
        return SC(SYS_setns, 3, 0);
    }
    if (early_eq(attack, "dev")) {
        long fd = SC(SYS_openat, AT_FDCWD, "/dev/null",
                     O_RDONLY | O_CLOEXEC, 0);

        if (fd >= 0) {
            SC(SYS_close, fd);
            return 0;
        }
        return fd;
    }
    if (early_eq(attack, "stall")) {
        struct {
            long sec;
            long nsec;
        } seconds = { 2, 0 };

        return SC(SYS_nanosleep, &seconds, 0);
    }
    if (early_eq(attack, "exec-memory")) {
        long p = SC(SYS_mmap, 0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

        return p < 0 && p > -4096 ? p : 0;
    }
    return -22;
}

/* Carry out the orders if they are for @stage. */
static void early_run(const char *stage)
{
    char buf[EARLY_ORDERS_SIZE];
    char *w[5];

    if (early_words(buf, w, 5) != 5 || !early_eq(w[0], stage)) {
        return;
    }
    early_note(w[1], early_attack(w[1], early_number(w[2]),
                                  early_number(w[3]), w[4]));
}

__attribute__((constructor)) static void early_ctor(void)
{
    early_run("ctor");
}

static void early_init_array(void)
{
    early_run("init-array");
}

__attribute__((section(".init_array"), used))
static void (*early_init_array_entry)(void) = early_init_array;

static int early_answer(void)
{
    return 42;
}

/* Called while the dynamic loader relocates this object. */
static int (*early_resolver(void))(void)
{
    early_run("ifunc");
    return early_answer;
}

int early_indirect(void) __attribute__((ifunc("early_resolver")));

static int early_module_init(const struct vmaug_host_api *a, vmaug_host *h,
                             void **priv)
{
    early_run("init");
    return 0;
}

static int early_call(void *priv, const char *f, const void *in,
                      size_t in_len, void *out, size_t cap, size_t *out_len)
{
    if (strcmp(f, "report") == 0) {
        /* The resolver's function is bound: the object was relocated. */
        *out_len = (size_t)snprintf(out, cap, "%s|%d", early_report,
                                    early_indirect());
        return VMAUG_S_OK;
    }
    if (strcmp(f, "attack") == 0) {
        early_run("call");
        *out_len = (size_t)snprintf(out, cap, "%s", early_report);
        return VMAUG_S_OK;
    }
    return VMAUG_S_NOT_FOUND;
}

VMAUG_MODULE_DEFINE(
    .init = early_module_init,
    .call = early_call,
);
