/*
 * Preloaded into a helper under test: fsync() and fdatasync() that take
 * VMAUG_TEST_SYNC_DELAY_MS longer, as on a host whose disk other writers
 * keep busy (an ext4 journal commit waits for their data).  The isolation
 * test shows with it that one VM's commit keeps no other VM waiting.
 *
 * The calls go straight to the kernel (syscall(2)): nothing here needs the
 * next definition in the link order.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static void slow_sync_wait(void)
{
    const char *ms = getenv("VMAUG_TEST_SYNC_DELAY_MS");
    long n = ms != NULL ? strtol(ms, NULL, 10) : 0;
    struct timespec ts = { .tv_sec = n / 1000, .tv_nsec = n % 1000 * 1000000 };

    while (n > 0 && nanosleep(&ts, &ts) < 0) {
        /* interrupted: sleep the rest */
    }
}

int fsync(int fd)
{
    slow_sync_wait();
    return syscall(SYS_fsync, fd);
}

int fdatasync(int fd)
{
    slow_sync_wait();
    return syscall(SYS_fdatasync, fd);
}
