/*
 * The module sandbox: resource limits, namespaces, no new privileges and a
 * seccomp allowlist, applied in that order after the module is mapped and
 * before its init runs.
 *
 * The filter follows OpenSSH's sandbox-seccomp-filter.c: everything not
 * listed kills the process; a few harmless probes fail with an errno so
 * that libc and modules can cope; memory may be mapped but never
 * executable.  The list style follows virtiofsd's passthrough_seccomp.c.
 *
 * This file is GLib-free: it runs in the module process.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "sandbox.h"

/* Allowed with any arguments. */
static const int sandbox_allowed[] = {
    SCMP_SYS(read),
    SCMP_SYS(write),            /* the module's own fds: state files, log */
    SCMP_SYS(readv),
    SCMP_SYS(writev),
    SCMP_SYS(pread64),
    SCMP_SYS(pwrite64),
    SCMP_SYS(lseek),
    SCMP_SYS(close),
    SCMP_SYS(fstat),
    SCMP_SYS(newfstatat),       /* glibc's fstat() */
    SCMP_SYS(fcntl),            /* on descriptors it already holds */
    SCMP_SYS(getdents64),       /* directories the helper opened for it */
    SCMP_SYS(ftruncate),
    SCMP_SYS(fsync),
    SCMP_SYS(fdatasync),
    SCMP_SYS(munmap),
    SCMP_SYS(mremap),
    SCMP_SYS(brk),
    SCMP_SYS(madvise),
    SCMP_SYS(exit),
    SCMP_SYS(exit_group),
    SCMP_SYS(rt_sigreturn),
    SCMP_SYS(rt_sigprocmask),
    SCMP_SYS(rt_sigaction),
    SCMP_SYS(restart_syscall),
    SCMP_SYS(clock_gettime),
    SCMP_SYS(clock_nanosleep),
    SCMP_SYS(nanosleep),
    SCMP_SYS(gettimeofday),
    SCMP_SYS(time),
    SCMP_SYS(getpid),
    SCMP_SYS(gettid),
    SCMP_SYS(getrandom),
    SCMP_SYS(futex),            /* libc locks, single-threaded or not */
    SCMP_SYS(sched_yield),
};

/* Harmless probes that fail instead of killing (OpenSSH's SC_DENY). */
static const struct {
    int nr;
    int err;
} sandbox_denied[] = {
    /* Files come only from the helper (state_open), never by path. */
    { SCMP_SYS(open), EACCES },
    { SCMP_SYS(openat), EACCES },
    { SCMP_SYS(openat2), EACCES },
    { SCMP_SYS(stat), EACCES },
    { SCMP_SYS(lstat), EACCES },
    { SCMP_SYS(access), EACCES },
    { SCMP_SYS(faccessat), EACCES },
    { SCMP_SYS(faccessat2), EACCES },
    { SCMP_SYS(readlink), EACCES },
    /* No network: a module talks to the helper only. */
    { SCMP_SYS(socket), EACCES },
    /* glibc tries clone3 first for threads; say it does not exist (and
     * clone, which it falls back to, kills). */
    { SCMP_SYS(clone3), ENOSYS },
    { SCMP_SYS(uname), EPERM },
    { SCMP_SYS(ioctl), ENOTTY },
    { SCMP_SYS(sysinfo), EPERM },
    { SCMP_SYS(prlimit64), EPERM },
};

static int sandbox_limit(int resource, rlim_t value)
{
    struct rlimit rl = { value, value };

    return setrlimit(resource, &rl);
}

int sandbox_unshare(void)
{
    /*
     * New, empty network, IPC and UTS namespaces: even a filter mistake
     * leaves no host network or SysV IPC to reach.  An unprivileged helper
     * needs a user namespace, and then a mount namespace of its own for
     * chroot; a privileged one needs neither (a new mount namespace costs
     * more than all the rest).  Hosts may forbid all of it; the seccomp
     * filter does not depend on any of it.
     */
    int flags = CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS;

    if (unshare(flags) < 0 &&
        unshare(flags | CLONE_NEWUSER | CLONE_NEWNS) < 0) {
        int saved = errno;

        fprintf(stderr, "vmaugment-module-host: namespaces unavailable: %s\n",
                strerror(saved));
        return -saved;
    }
    return 0;
}

static void sandbox_namespaces(const SandboxLimits *limits, int root_fd)
{
    if (!limits->namespaces) {
        return;
    }
    if (!limits->in_namespaces && sandbox_unshare() < 0) {
        return;
    }
    /*
     * The filter cannot read path strings, so the few path-taking calls
     * it allows (newfstatat, for fstat) would still see host metadata:
     * make the module's own state directory its whole file system.
     */
    if (root_fd >= 0 && (fchdir(root_fd) < 0 || chroot(".") < 0)) {
        fprintf(stderr, "vmaugment-module-host: chroot unavailable: %s\n",
                strerror(errno));
    }
}

int sandbox_apply(const SandboxLimits *limits, int sock_fd, int root_fd)
{
    uint32_t kill_action = SCMP_ACT_KILL_PROCESS;
    scmp_filter_ctx ctx;
    int rc = 0;

    /* Limits first: from here the module cannot grow beyond them. */
    if (sandbox_limit(RLIMIT_AS, limits->memory_bytes) < 0 ||
        sandbox_limit(RLIMIT_DATA, limits->memory_bytes) < 0 ||
        sandbox_limit(RLIMIT_CPU, limits->cpu_seconds) < 0 ||
        sandbox_limit(RLIMIT_NOFILE, limits->max_files) < 0 ||
        sandbox_limit(RLIMIT_FSIZE, limits->max_file_bytes) < 0 ||
        sandbox_limit(RLIMIT_NPROC, 0) < 0 ||
        sandbox_limit(RLIMIT_CORE, 0) < 0 ||
        sandbox_limit(RLIMIT_MEMLOCK, 0) < 0 ||
        sandbox_limit(RLIMIT_MSGQUEUE, 0) < 0) {
        return -errno;
    }
    sandbox_namespaces(limits, root_fd);
    /* Required for an unprivileged filter, and keeps setuid binaries
     * (unreachable anyway) from gaining anything. */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
        prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
        return -errno;
    }
    /* Kernels before 4.14 cannot kill a whole process. */
    if (seccomp_api_get() < 3) {
        kill_action = SCMP_ACT_KILL;
    }
    ctx = seccomp_init(kill_action);
    if (ctx == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; rc == 0 && i < sizeof(sandbox_allowed) /
                                       sizeof(sandbox_allowed[0]); i++) {
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, sandbox_allowed[i], 0);
    }
    for (size_t i = 0; rc == 0 && i < sizeof(sandbox_denied) /
                                       sizeof(sandbox_denied[0]); i++) {
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(sandbox_denied[i].err),
                              sandbox_denied[i].nr, 0);
    }
    /* Memory, but never executable memory: no code beyond what was
     * verified and mapped before the filter. */
    if (rc == 0) {
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
                              SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
    }
    if (rc == 0) {
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
                              SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
    }
    /* Messages only on the helper's socket (descriptors arrive there). */
    if (rc == 0) {
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(sendmsg), 1,
                              SCMP_A0(SCMP_CMP_EQ, sock_fd));
    }
    if (rc == 0) {
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(recvmsg), 1,
                              SCMP_A0(SCMP_CMP_EQ, sock_fd));
    }
    if (rc == 0) {
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(sendto), 1,
                              SCMP_A0(SCMP_CMP_EQ, sock_fd));
    }
    if (rc == 0) {
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(recvfrom), 1,
                              SCMP_A0(SCMP_CMP_EQ, sock_fd));
    }
    /* abort() signals itself; other processes are out of reach. */
    if (rc == 0) {
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1,
                              SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)getpid()));
    }
    if (rc == 0) {
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(kill), 1,
                              SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)getpid()));
    }
    if (rc == 0) {
        rc = seccomp_load(ctx);
    }
    seccomp_release(ctx);
    return rc;
}
