/*
 * The process sandbox (sandbox.h): the parent starts a program in new
 * namespaces under an id of its own; the program, before it runs anything
 * untrusted, pivots into an empty root, drops its id and every capability,
 * applies rlimits, PR_SET_NO_NEW_PRIVS and a seccomp allowlist, and
 * tightens the filter once the code it was given is mapped.
 *
 * The filter follows OpenSSH's sandbox-seccomp-filter.c: everything not
 * listed kills the process; a few harmless probes fail with an errno so
 * that libc and the confined code can cope; memory may be mapped but not
 * made executable.  The list style follows virtiofsd's
 * passthrough_seccomp.c.  docs/sandbox.rst gives the reason for every
 * entry and is normative.
 *
 * GLib-free: the parent half runs in a child between clone() and exec,
 * where only async-signal-safe calls are allowed, and the child half in
 * the confined program.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <linux/securebits.h>
#include <poll.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/param.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "sandbox.h"

/* The parent's word to the child, on the channel (sandbox_spawn()). */
#define SANDBOX_GRANT_MAGIC     0x53415547u     /* "GUAS" */
#define SANDBOX_KEEP_ID         0xffffffffu

struct sandbox_grant {
    uint32_t magic;
    uint32_t pieces;        /* SANDBOX_* given */
    uint32_t uid;           /* to become, as the child sees ids, or */
    uint32_t gid;           /* SANDBOX_KEEP_ID */
};

/* Namespaces besides the user namespace. */
#define SANDBOX_NS_FLAGS    (CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | \
                             CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP)

/* The one file of an empty root that has code to load. */
#define SANDBOX_CODE_NAME   "code"

/* ---- The filter ---- */

/* Allowed with any arguments. */
static const int sandbox_allowed[] = {
    SCMP_SYS(read),
    SCMP_SYS(write),            /* descriptors it holds: files, its log */
    SCMP_SYS(readv),
    SCMP_SYS(writev),
    SCMP_SYS(pread64),
    SCMP_SYS(pwrite64),
    SCMP_SYS(lseek),
    SCMP_SYS(close),
    SCMP_SYS(fstat),
    SCMP_SYS(getdents64),       /* directories it was handed */
    SCMP_SYS(ftruncate),
    SCMP_SYS(fsync),
    SCMP_SYS(fdatasync),
    SCMP_SYS(munmap),
    SCMP_SYS(mremap),           /* moves memory, never changes protection */
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
    SCMP_SYS(poll),             /* waiting on descriptors it holds */
    SCMP_SYS(ppoll),
    SCMP_SYS(sched_yield),
};

/* Harmless probes that fail instead of killing (OpenSSH's SC_DENY). */
static const struct {
    int nr;
    int err;
} sandbox_denied[] = {
    /* Files come only from the parent, never by path. */
    { SCMP_SYS(open), EACCES },
    { SCMP_SYS(openat2), EACCES },
    { SCMP_SYS(stat), EACCES },
    { SCMP_SYS(lstat), EACCES },
    { SCMP_SYS(access), EACCES },
    { SCMP_SYS(faccessat), EACCES },
    { SCMP_SYS(faccessat2), EACCES },
    { SCMP_SYS(readlink), EACCES },
    /* No network: it talks to its parent only. */
    { SCMP_SYS(socket), EACCES },
    /* glibc tries clone3 first for threads; say it does not exist (and
     * clone, which it falls back to, kills). */
    { SCMP_SYS(clone3), ENOSYS },
    { SCMP_SYS(uname), EPERM },
    { SCMP_SYS(sysinfo), EPERM },
};

/* With scratch space in an empty root (SandboxPolicy.scratch_bytes). */
static const int sandbox_scratch[] = {
    SCMP_SYS(openat),           /* only its /tmp exists to be opened */
    SCMP_SYS(unlink),
    SCMP_SYS(unlinkat),
    SCMP_SYS(memfd_create),     /* anonymous memory, bounded by the
                                 * file size limit */
    SCMP_SYS(fadvise64),        /* hints on its own files (libblkid) */
};

/* With scratch directories (SandboxPolicy.scratch_dirs), in the same
 * /tmp. */
static const int sandbox_scratch_dirs[] = {
    SCMP_SYS(mkdir),            /* libclamav's per-scan directory */
    SCMP_SYS(mkdirat),
    SCMP_SYS(chmod),            /* ... which it makes private (0700) */
    SCMP_SYS(rmdir),            /* ... and removes when the scan ends */
};

/* fcntl commands on descriptors it holds; F_SETOWN, F_SETSIG, leases,
 * notifications and pipe sizes kill. */
static const int sandbox_fcntl_allowed[] = {
    F_GETFD,
    F_SETFD,
    F_GETFL,
    F_DUPFD_CLOEXEC,            /* renumbering, no new access */
    F_GET_SEALS,                /* checking a sealed memfd */
};

/* ioctl requests isatty() and stdio make: answered "not a terminal";
 * every other request kills. */
static const unsigned long sandbox_ioctl_notty[] = {
    TCGETS,
    TIOCGWINSZ,
};

static int sandbox_add(scmp_filter_ctx ctx, uint32_t action, int nr,
                       unsigned n, const struct scmp_arg_cmp *args)
{
    return seccomp_rule_add_array(ctx, action, nr, n, args);
}

#define SANDBOX_RULE(ctx, action, nr, ...) \
    sandbox_add(ctx, action, nr, \
                sizeof((struct scmp_arg_cmp[]){ __VA_ARGS__ }) / \
                sizeof(struct scmp_arg_cmp), \
                (struct scmp_arg_cmp[]){ __VA_ARGS__ })

/*
 * The filter of sandbox_confine(): the allowlist, plus, while code is
 * still to be loaded (@code_fd >= 0), what the dynamic loader needs for
 * it and nothing more.
 */
static int sandbox_rules(scmp_filter_ctx ctx, const SandboxPolicy *p,
                         bool defer_fsize, bool scratch)
{
    scmp_datum_t self = (scmp_datum_t)getpid();
    int rc = 0;

    for (size_t i = 0; rc == 0 && i < sizeof(sandbox_allowed) /
                                       sizeof(sandbox_allowed[0]); i++) {
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, sandbox_allowed[i], 0);
    }
    for (size_t i = 0; rc == 0 && i < sizeof(sandbox_denied) /
                                       sizeof(sandbox_denied[0]); i++) {
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(sandbox_denied[i].err),
                              sandbox_denied[i].nr, 0);
    }
    for (size_t i = 0; rc == 0 && i < sizeof(sandbox_fcntl_allowed) /
                                       sizeof(sandbox_fcntl_allowed[0]);
         i++) {
        rc = SANDBOX_RULE(ctx, SCMP_ACT_ALLOW, SCMP_SYS(fcntl),
                          SCMP_A1(SCMP_CMP_EQ, sandbox_fcntl_allowed[i]));
    }
    /* Flags such as O_NONBLOCK, but not O_ASYNC: no signals on I/O. */
    if (rc == 0) {
        rc = SANDBOX_RULE(ctx, SCMP_ACT_ALLOW, SCMP_SYS(fcntl),
                          SCMP_A1(SCMP_CMP_EQ, F_SETFL),
                          SCMP_A2(SCMP_CMP_MASKED_EQ, O_ASYNC, 0));
    }
    for (size_t i = 0; rc == 0 && i < sizeof(sandbox_ioctl_notty) /
                                       sizeof(sandbox_ioctl_notty[0]);
         i++) {
        rc = SANDBOX_RULE(ctx, SCMP_ACT_ERRNO(ENOTTY), SCMP_SYS(ioctl),
                          SCMP_A1(SCMP_CMP_EQ, sandbox_ioctl_notty[i]));
    }
    /* glibc's fstat(fd) is newfstatat(fd, "", AT_EMPTY_PATH); a path
     * lookup (stat()) fails like open(). */
    if (rc == 0) {
        rc = SANDBOX_RULE(ctx, SCMP_ACT_ALLOW, SCMP_SYS(newfstatat),
                          SCMP_A3(SCMP_CMP_EQ, AT_EMPTY_PATH));
    }
    /* With scratch directories the path form too: libclamav removes its
     * directories only after stat()ing what they hold, and the path
     * reaches nothing openat() does not already reach there. */
    if (rc == 0) {
        rc = SANDBOX_RULE(ctx,
                          scratch && p->code_fd < 0 && p->scratch_dirs
                              ? SCMP_ACT_ALLOW : SCMP_ACT_ERRNO(EACCES),
                          SCMP_SYS(newfstatat),
                          SCMP_A3(SCMP_CMP_NE, AT_EMPTY_PATH));
    }
    /* Memory, but never executable memory. */
    if (rc == 0) {
        rc = SANDBOX_RULE(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap),
                          SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
    }
    if (rc == 0) {
        rc = SANDBOX_RULE(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mprotect),
                          SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
    }
    /* Messages only on its own descriptors (descriptors arrive there). */
    for (unsigned i = 0; rc == 0 && i < p->n_io_fds; i++) {
        static const int msg[] = {
            SCMP_SYS(sendmsg), SCMP_SYS(recvmsg),
            SCMP_SYS(sendto), SCMP_SYS(recvfrom),
            SCMP_SYS(shutdown),     /* saying it is done (libnbd) */
        };

        for (size_t j = 0; rc == 0 && j < sizeof(msg) / sizeof(msg[0]);
             j++) {
            rc = SANDBOX_RULE(ctx, SCMP_ACT_ALLOW, msg[j],
                              SCMP_A0(SCMP_CMP_EQ,
                                      (scmp_datum_t)p->io_fds[i]));
        }
    }
    /* abort() signals itself; nothing else can be signalled. */
    if (rc == 0) {
        rc = SANDBOX_RULE(ctx, SCMP_ACT_ALLOW, SCMP_SYS(tgkill),
                          SCMP_A0(SCMP_CMP_EQ, self),
                          SCMP_A1(SCMP_CMP_EQ, self));
    }
    if (rc == 0) {
        rc = SANDBOX_RULE(ctx, SCMP_ACT_ALLOW, SCMP_SYS(kill),
                          SCMP_A0(SCMP_CMP_EQ, self));
    }
    /* Lowering its own file size limit once the code is in place
     * (sandbox_code_file()); a limit can never be raised without
     * CAP_SYS_RESOURCE. */
    if (rc == 0 && defer_fsize) {
        rc = SANDBOX_RULE(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prlimit64),
                          SCMP_A0(SCMP_CMP_EQ, 0),
                          SCMP_A1(SCMP_CMP_EQ, RLIMIT_FSIZE));
        if (rc == 0) {
            rc = SANDBOX_RULE(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(prlimit64),
                              SCMP_A0(SCMP_CMP_NE, 0));
        }
        if (rc == 0) {
            rc = SANDBOX_RULE(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(prlimit64),
                              SCMP_A1(SCMP_CMP_NE, RLIMIT_FSIZE));
        }
    } else if (rc == 0) {
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(prlimit64),
                              0);
    }
    if (p->code_fd < 0 && scratch) {
        /*
         * Its own files in /tmp of the empty root, which holds nothing
         * else: no path leads out of it (no /proc, no /dev, no host
         * directory), so opening by path reaches only what it made.
         */
        for (size_t i = 0; rc == 0 && i < sizeof(sandbox_scratch) /
                                           sizeof(sandbox_scratch[0]); i++) {
            rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, sandbox_scratch[i], 0);
        }
        for (size_t i = 0; rc == 0 && p->scratch_dirs &&
                           i < sizeof(sandbox_scratch_dirs) /
                               sizeof(sandbox_scratch_dirs[0]); i++) {
            rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW,
                                  sandbox_scratch_dirs[i], 0);
        }
        return rc;
    }
    if (p->code_fd < 0) {
        if (rc == 0) {
            rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EACCES),
                                  SCMP_SYS(openat), 0);
        }
        return rc;
    }
    /*
     * Until sandbox_lock(): the dynamic loader opens the code read-only
     * (the empty root holds nothing else) and maps it executable, never
     * writable and executable at once, from the one descriptor number it
     * will get; sandbox_lock() then installs its stage by this call.
     */
    if (rc == 0) {
        rc = SANDBOX_RULE(ctx, SCMP_ACT_ALLOW, SCMP_SYS(openat),
                          SCMP_A2(SCMP_CMP_EQ, O_RDONLY | O_CLOEXEC));
    }
    if (rc == 0) {
        rc = SANDBOX_RULE(ctx, SCMP_ACT_ERRNO(EACCES), SCMP_SYS(openat),
                          SCMP_A2(SCMP_CMP_NE, O_RDONLY | O_CLOEXEC));
    }
    if (rc == 0) {
        rc = SANDBOX_RULE(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap),
                          SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC | PROT_WRITE,
                                  PROT_EXEC),
                          SCMP_A4(SCMP_CMP_EQ, (scmp_datum_t)p->code_fd));
    }
    if (rc == 0) {
        rc = SANDBOX_RULE(ctx, SCMP_ACT_ALLOW, SCMP_SYS(seccomp),
                          SCMP_A0(SCMP_CMP_EQ, SECCOMP_SET_MODE_FILTER),
                          SCMP_A1(SCMP_CMP_EQ, 0));
    }
    return rc;
}

/* sandbox_lock()'s stage, stacked on the first: the kernel runs both and
 * the stricter answer wins, so this one only takes away. */
static int sandbox_lock_rules(scmp_filter_ctx ctx)
{
    int rc;

    rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EACCES), SCMP_SYS(openat), 0);
    if (rc == 0) {
        rc = SANDBOX_RULE(ctx, SCMP_ACT_KILL_PROCESS, SCMP_SYS(mmap),
                          SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC));
    }
    if (rc == 0) {
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(prlimit64),
                              0);
    }
    if (rc == 0) {
        rc = seccomp_rule_add(ctx, SCMP_ACT_KILL_PROCESS, SCMP_SYS(seccomp),
                              0);
    }
    return rc;
}

/* ---- Parent half ---- */

const char *sandbox_piece_name(unsigned piece)
{
    switch (piece) {
    case SANDBOX_USER_NS:
        return "user-namespace";
    case SANDBOX_OWN_ID:
        return "own-id";
    case SANDBOX_NAMESPACES:
        return "namespaces";
    case SANDBOX_EMPTY_ROOT:
        return "empty-root";
    case SANDBOX_NO_CAPS:
        return "no-capabilities";
    default:
        return "?";
    }
}

uint32_t sandbox_child_uid(const SandboxHost *host, unsigned pieces,
                           pid_t pid)
{
    return (pieces & SANDBOX_OWN_ID) ? host->id_base + (uint32_t)pid :
           (uint32_t)getuid();
}

static long sandbox_clone(unsigned long flags)
{
    /* fork()'s semantics (a copy of our stack), with namespaces. */
    return syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
}

/* In a child's new mount namespace: can its empty root be made there
 * (every caller asks for one)?  0 or -errno. */
static int sandbox_check_root(void)
{
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
        fsopen("tmpfs", FSOPEN_CLOEXEC) < 0) {
        return -errno;
    }
    return 0;
}

static bool sandbox_try_clone(unsigned long flags)
{
    long pid = sandbox_clone(flags);
    int status;

    /* The namespaces are made; can the empty root be made too? */
    if (pid == 0) {
        _exit(sandbox_check_root() == 0 ? 0 : 1);
    }
    if (pid < 0) {
        return false;
    }
    while (waitpid((pid_t)pid, &status, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

unsigned sandbox_probe(const SandboxHost *host)
{
    bool root = geteuid() == 0;
    unsigned pieces = root ? SANDBOX_OWN_ID | SANDBOX_NO_CAPS : 0;

    if (!host->namespaces) {
        return pieces;
    }
    if (sandbox_try_clone(CLONE_NEWUSER | SANDBOX_NS_FLAGS)) {
        pieces |= SANDBOX_USER_NS | SANDBOX_NAMESPACES | SANDBOX_EMPTY_ROOT |
                  SANDBOX_NO_CAPS;
    } else if (root && sandbox_try_clone(SANDBOX_NS_FLAGS)) {
        pieces |= SANDBOX_NAMESPACES | SANDBOX_EMPTY_ROOT;
    }
    return pieces;
}

unsigned sandbox_expected(const SandboxHost *host)
{
    /* sandbox_probe()'s answer where the user namespace works. */
    unsigned pieces = geteuid() == 0 ? SANDBOX_OWN_ID | SANDBOX_NO_CAPS : 0;

    if (host->namespaces) {
        pieces |= SANDBOX_USER_NS | SANDBOX_NAMESPACES | SANDBOX_EMPTY_ROOT |
                  SANDBOX_NO_CAPS;
    }
    return pieces;
}

/* Tells the parent why we never reached exec (an int, -errno), then
 * ends. */
static void sandbox_child_fail(int status_fd, int rc)
{
    ssize_t unused = write(status_fd, &rc, sizeof(rc));

    (void)unused;
    _exit(126);
}

/* Between clone() and exec: async-signal-safe calls only, and raw system
 * calls where glibc would consult its (copied) thread list.  @status_fd
 * (close-on-exec) gets an errno if we fail before exec and closes
 * without a word when exec succeeds. */
static void sandbox_child_exec(const SandboxSpawn *s, int rd, int devnull,
                               int status_fd)
{
    static char *const envp[] = { NULL };
    const int low = 3 + SANDBOX_MAX_FDS + 1;
    int hi[SANDBOX_MAX_FDS];
    int exe, chan, nul, err, st;
    sigset_t none;
    char go;

    /* The parent writes our id maps first. */
    if (read(rd, &go, 1) != 1) {
        sandbox_child_fail(status_fd, -EPIPE);
    }
    /* Root of our own user namespace, mapped to our id outside, so that
     * exec keeps the capabilities sandbox_confine() needs there. */
    if ((s->pieces & SANDBOX_USER_NS) &&
        (syscall(SYS_setresgid, 0, 0, 0) < 0 ||
         syscall(SYS_setresuid, 0, 0, 0) < 0)) {
        sandbox_child_fail(status_fd, -errno);
    }
    /* What sandbox_probe() checks, checked here where the pieces were not
     * probed (sandbox_expected()): a host that cannot give them fails
     * the spawn, not the confinement after exec. */
    if (s->pieces & SANDBOX_EMPTY_ROOT) {
        int rc = sandbox_check_root();

        if (rc < 0) {
            sandbox_child_fail(status_fd, rc);
        }
    }
    /* Everything above its target first: a source may sit on another's
     * target. */
    exe = fcntl(s->exe_fd, F_DUPFD_CLOEXEC, low);
    chan = fcntl(rd, F_DUPFD_CLOEXEC, low);
    nul = fcntl(devnull, F_DUPFD_CLOEXEC, low);
    st = fcntl(status_fd, F_DUPFD_CLOEXEC, low);
    err = s->stderr_fd >= 0 ? fcntl(s->stderr_fd, F_DUPFD_CLOEXEC, low) :
          nul;
    if (exe < 0 || chan < 0 || nul < 0 || st < 0 || err < 0) {
        sandbox_child_fail(st >= 0 ? st : status_fd, -EMFILE);
    }
    for (unsigned i = 0; i < s->n_fds; i++) {
        hi[i] = fcntl(s->fds[i], F_DUPFD_CLOEXEC, low);
        if (hi[i] < 0) {
            sandbox_child_fail(st, -errno);
        }
    }
    if (dup2(nul, 0) < 0 || dup2(nul, 1) < 0 || dup2(err, 2) < 0) {
        sandbox_child_fail(st, -errno);
    }
    for (unsigned i = 0; i < s->n_fds; i++) {
        if (dup2(hi[i], 3 + i) < 0) {
            sandbox_child_fail(st, -errno);
        }
    }
    if (dup2(chan, 3 + s->n_fds) < 0 ||
        close_range(3 + s->n_fds + 1, ~0u, CLOSE_RANGE_CLOEXEC) < 0) {
        sandbox_child_fail(st, -errno);
    }
    /* Ignored signals (SIGPIPE) would stay ignored across exec. */
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig != SIGKILL && sig != SIGSTOP) {
            signal(sig, SIG_DFL);
        }
    }
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    syscall(SYS_execveat, exe, "", s->argv, envp, AT_EMPTY_PATH);
    sandbox_child_fail(st, -errno);
}

static int sandbox_write_file(pid_t pid, const char *name, const char *text)
{
    char path[64];
    int fd, rc = 0;
    size_t len = strlen(text);

    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, name);
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    if (write(fd, text, len) != (ssize_t)len) {
        rc = -errno;
    }
    close(fd);
    return rc;
}

/* The child's ids outside its user namespace: its own, or (unprivileged)
 * ours, the only ones we may map. */
static int sandbox_map_ids(const SandboxSpawn *s, pid_t pid)
{
    char map[64];
    uint32_t uid = sandbox_child_uid(s->host, s->pieces, pid);
    uint32_t gid = (s->pieces & SANDBOX_OWN_ID) ? uid : (uint32_t)getgid();
    int rc;

    snprintf(map, sizeof(map), "0 %u 1\n", uid);
    rc = sandbox_write_file(pid, "uid_map", map);
    if (rc == 0 && !(s->pieces & SANDBOX_OWN_ID)) {
        rc = sandbox_write_file(pid, "setgroups", "deny");
    }
    if (rc == 0) {
        snprintf(map, sizeof(map), "0 %u 1\n", gid);
        rc = sandbox_write_file(pid, "gid_map", map);
    }
    return rc;
}

pid_t sandbox_spawn(const SandboxSpawn *s)
{
    unsigned long flags = 0;
    struct {
        char go;
        struct sandbox_grant grant;
    } __attribute__((packed)) msg = { .go = 1 };
    int sync[2];
    int status[2];
    int devnull;
    long pid;
    int rc = 0;
    int child_rc;

    if (s->n_fds > SANDBOX_MAX_FDS) {
        return -EINVAL;
    }
    if (s->pieces & SANDBOX_USER_NS) {
        flags |= CLONE_NEWUSER;
    }
    if (s->pieces & SANDBOX_NAMESPACES) {
        flags |= SANDBOX_NS_FLAGS;
    }
    devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0) {
        return -errno;
    }
    if (pipe2(sync, O_CLOEXEC) < 0) {
        rc = -errno;
        close(devnull);
        return rc;
    }
    if (pipe2(status, O_CLOEXEC) < 0) {
        rc = -errno;
        close(sync[0]);
        close(sync[1]);
        close(devnull);
        return rc;
    }
    pid = sandbox_clone(flags);
    if (pid == 0) {
        close(sync[1]);
        close(status[0]);
        sandbox_child_exec(s, sync[0], devnull, status[1]);
    }
    rc = pid < 0 ? -errno : 0;
    close(sync[0]);
    close(status[1]);
    close(devnull);
    if (rc == 0 && (s->pieces & SANDBOX_USER_NS)) {
        rc = sandbox_map_ids(s, (pid_t)pid);
    }
    if (rc == 0) {
        msg.grant.magic = SANDBOX_GRANT_MAGIC;
        msg.grant.pieces = s->pieces;
        if (s->pieces & SANDBOX_USER_NS) {
            msg.grant.uid = msg.grant.gid = 0;
        } else if (s->pieces & SANDBOX_OWN_ID) {
            msg.grant.uid = msg.grant.gid =
                sandbox_child_uid(s->host, s->pieces, (pid_t)pid);
        } else {
            msg.grant.uid = msg.grant.gid = SANDBOX_KEEP_ID;
        }
        if (write(sync[1], &msg, sizeof(msg)) != sizeof(msg)) {
            rc = -EPIPE;
        }
    }
    close(sync[1]);
    /* The end of the status pipe without a word: it runs the program.
     * (The grant stays in the channel for sandbox_confine().) */
    if (rc == 0) {
        ssize_t n;

        while ((n = read(status[0], &child_rc, sizeof(child_rc))) < 0 &&
               errno == EINTR) {
        }
        if (n == sizeof(child_rc) && child_rc < 0) {
            rc = child_rc;
        } else if (n != 0) {
            rc = -EPROTO;
        }
    }
    close(status[0]);
    if (rc != 0 && pid > 0) {
        kill((pid_t)pid, SIGKILL);
        while (waitpid((pid_t)pid, NULL, 0) < 0 && errno == EINTR) {
        }
    }
    return rc != 0 ? rc : (pid_t)pid;
}

static int64_t sandbox_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int sandbox_reap(pid_t pid, int64_t grace_us, bool *killed)
{
    const struct timespec tick = { .tv_nsec = 1000000 };
    int64_t deadline = sandbox_now_us() + grace_us;
    /* Readable once the child has ended: woken then, not at the next
     * tick.  Without one (a kernel before 5.3), a tick at a time. */
    int pidfd = grace_us > 0 ? (int)syscall(SYS_pidfd_open, pid, 0) : -1;
    int status = 0;

    *killed = false;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        int64_t now = sandbox_now_us();

        if (r == pid || (r < 0 && errno != EINTR)) {
            if (pidfd >= 0) {
                close(pidfd);
            }
            return r == pid ? status : 0;
        }
        if (now >= deadline) {
            break;
        }
        if (pidfd >= 0) {
            struct pollfd p = { .fd = pidfd, .events = POLLIN };

            poll(&p, 1, (int)MIN((deadline - now + 999) / 1000, 60000));
        } else {
            nanosleep(&tick, NULL);
        }
    }
    if (pidfd >= 0) {
        close(pidfd);
    }
    kill(pid, SIGKILL);
    *killed = true;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            return 0;
        }
    }
    return status;
}

/* ---- Child half ---- */

static struct {
    int code_fd;                /* the policy's */
    int code_file;              /* writable code file in the root, or -1 */
    uint64_t fsize;             /* RLIMIT_FSIZE, once the code is in */
    bool fsize_deferred;
    struct sock_fprog lock;     /* sandbox_lock()'s stage, compiled */
} sandbox_self = { .code_fd = -1, .code_file = -1 };

static int sandbox_limit(int resource, rlim_t value)
{
    struct rlimit rl = { value, value };

    return setrlimit(resource, &rl) < 0 ? -errno : 0;
}

static int sandbox_read_grant(int fd, struct sandbox_grant *g)
{
    size_t done = 0;

    while (done < sizeof(*g)) {
        ssize_t n = read(fd, (char *)g + done, sizeof(*g) - done);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return -EPROTO;
        }
        done += n;
    }
    close(fd);
    return g->magic == SANDBOX_GRANT_MAGIC ? 0 : -EPROTO;
}

/*
 * An empty tmpfs as the whole file system: the old root is detached, so
 * no path leads to the host's files, whatever the filter allows.  With
 * code to load it holds that one file, read-only for everyone.
 */
static int sandbox_empty_root(const SandboxPolicy *p)
{
    char size[32];
    int fs, mnt, rc = 0;

    /* Nothing we do here may reach the host's mount table. */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
        return -errno;
    }
    fs = fsopen("tmpfs", FSOPEN_CLOEXEC);
    if (fs < 0) {
        return -errno;
    }
    /* Room for the code alone (it cannot exceed what it may map), or
     * for the scratch files it was granted. */
    snprintf(size, sizeof(size), "%llu",
             p->code_fd >= 0 ? (unsigned long long)p->limits.memory_bytes :
             p->scratch_bytes ? (unsigned long long)p->scratch_bytes :
             4096ull);
    if (fsconfig(fs, FSCONFIG_SET_STRING, "size", size, 0) < 0 ||
        fsconfig(fs, FSCONFIG_SET_STRING, "nr_inodes",
                 p->scratch_bytes ? "64" : "4", 0) < 0 ||
        fsconfig(fs, FSCONFIG_SET_STRING, "mode", "0555", 0) < 0 ||
        fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
        rc = -errno;
        close(fs);
        return rc;
    }
    mnt = fsmount(fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
                  (p->code_fd >= 0 ? 0 : MOUNT_ATTR_NOEXEC));
    close(fs);
    if (mnt < 0) {
        return -errno;
    }
    /* Stacked on "/", entered by its descriptor, then swapped with the
     * old root, which is detached. */
    if (move_mount(mnt, "", AT_FDCWD, "/", MOVE_MOUNT_F_EMPTY_PATH) < 0 ||
        fchdir(mnt) < 0 ||
        syscall(SYS_pivot_root, ".", ".") < 0 ||
        umount2(".", MNT_DETACH) < 0 ||
        chdir("/") < 0) {
        rc = -errno;
    }
    close(mnt);
    /* World-writable and sticky like any /tmp; nobody else is here. */
    if (rc == 0 && p->scratch_bytes > 0 &&
        (mkdir("/tmp", 0700) < 0 || chmod("/tmp", 01777) < 0)) {
        rc = -errno;
    }
    if (rc == 0 && p->code_fd >= 0) {
        sandbox_self.code_file = open("/" SANDBOX_CODE_NAME,
                                      O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
                                      0444);
        if (sandbox_self.code_file < 0) {
            rc = -errno;
        }
    }
    return rc;
}

/* Capabilities and the bounding set, for good: even a root id (of its
 * own user namespace) gains nothing from exec. */
static int sandbox_drop_bounding(void)
{
    if (prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED |
              SECBIT_NO_SETUID_FIXUP | SECBIT_NO_SETUID_FIXUP_LOCKED |
              SECBIT_KEEP_CAPS_LOCKED, 0, 0, 0) < 0) {
        return -errno;
    }
    for (int cap = 0; cap < 64; cap++) {
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
            if (errno == EINVAL) {
                break;          /* past the last capability */
            }
            return -errno;
        }
    }
    return 0;
}

static int sandbox_drop_caps(void)
{
    struct __user_cap_header_struct hdr = {
        .version = _LINUX_CAPABILITY_VERSION_3,
    };
    struct __user_cap_data_struct data[2] = { { 0 } };

    if (syscall(SYS_capset, &hdr, data) < 0) {
        return -errno;
    }
    /* Kernels before 4.3 have no ambient set, so nothing to clear. */
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 &&
        errno != EINVAL) {
        return -errno;
    }
    return 0;
}

static int sandbox_set_ids(const struct sandbox_grant *g)
{
    uid_t ruid, euid, suid;
    gid_t rgid, egid, sgid;

    if (g->uid == SANDBOX_KEEP_ID) {
        return 0;
    }
    /* Supplementary groups are the parent's: none of them is ours.  An
     * unprivileged parent's user namespace forbids setgroups(). */
    if ((g->pieces & SANDBOX_OWN_ID) && setgroups(0, NULL) < 0) {
        return -errno;
    }
    if (setresgid(g->gid, g->gid, g->gid) < 0 ||
        setresuid(g->uid, g->uid, g->uid) < 0) {
        return -errno;
    }
    if (getresuid(&ruid, &euid, &suid) < 0 ||
        getresgid(&rgid, &egid, &sgid) < 0 ||
        ruid != g->uid || euid != g->uid || suid != g->uid ||
        rgid != g->gid || egid != g->gid || sgid != g->gid) {
        return -EPERM;
    }
    return 0;
}

static int sandbox_limits(const SandboxLimits *l, bool defer_fsize)
{
    /* From here it cannot grow beyond them (raising a hard limit needs
     * CAP_SYS_RESOURCE, which is gone). */
    int rc = sandbox_limit(RLIMIT_AS, l->memory_bytes);

    if (rc == 0) {
        rc = sandbox_limit(RLIMIT_DATA, l->memory_bytes);
    }
    if (rc == 0) {
        rc = sandbox_limit(RLIMIT_CPU, l->cpu_seconds);
    }
    if (rc == 0) {
        rc = sandbox_limit(RLIMIT_NOFILE, l->max_files);
    }
    if (rc == 0 && !defer_fsize) {
        rc = sandbox_limit(RLIMIT_FSIZE, l->max_file_bytes);
    }
    if (rc == 0) {
        rc = sandbox_limit(RLIMIT_NPROC, 0);
    }
    if (rc == 0) {
        rc = sandbox_limit(RLIMIT_CORE, 0);
    }
    if (rc == 0) {
        rc = sandbox_limit(RLIMIT_MEMLOCK, 0);
    }
    if (rc == 0) {
        rc = sandbox_limit(RLIMIT_MSGQUEUE, 0);
    }
    return rc;
}

/* Compile sandbox_lock()'s stage now: loading it must not need anything
 * libseccomp might do that the first stage forbids. */
static int sandbox_compile_lock(void)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    struct stat st;
    int fd, rc;

    if (ctx == NULL) {
        return -ENOMEM;
    }
    rc = sandbox_lock_rules(ctx);
    fd = memfd_create("sandbox-lock", MFD_CLOEXEC);
    if (rc == 0 && fd < 0) {
        rc = -errno;
    }
    if (rc == 0) {
        rc = seccomp_export_bpf(ctx, fd);
    }
    seccomp_release(ctx);
    if (rc == 0 && fstat(fd, &st) < 0) {
        rc = -errno;
    }
    if (rc == 0 && (st.st_size == 0 ||
                    st.st_size % sizeof(struct sock_filter) != 0 ||
                    st.st_size > 4096 * (off_t)sizeof(struct sock_filter))) {
        rc = -EINVAL;
    }
    if (rc == 0) {
        sandbox_self.lock.len = st.st_size / sizeof(struct sock_filter);
        sandbox_self.lock.filter = malloc(st.st_size);
        if (sandbox_self.lock.filter == NULL) {
            rc = -ENOMEM;
        } else if (pread(fd, sandbox_self.lock.filter, st.st_size, 0) !=
                   st.st_size) {
            rc = -EIO;
        }
    }
    if (fd >= 0) {
        close(fd);
    }
    return rc;
}

static int sandbox_filter(const SandboxPolicy *p, bool defer_fsize,
                          bool scratch)
{
    uint32_t kill_action = SCMP_ACT_KILL_PROCESS;
    scmp_filter_ctx ctx;
    int rc;

    /* Kernels before 4.14 cannot kill a whole process. */
    if (seccomp_api_get() < 3) {
        kill_action = SCMP_ACT_KILL;
    }
    ctx = seccomp_init(kill_action);
    if (ctx == NULL) {
        return -ENOMEM;
    }
    rc = sandbox_rules(ctx, p, defer_fsize, scratch);
    if (rc == 0) {
        rc = seccomp_load(ctx);
    }
    seccomp_release(ctx);
    return rc;
}

int sandbox_confine(const SandboxPolicy *p, int channel_fd)
{
    struct sandbox_grant g;
    bool defer_fsize = p->code_fd >= 0;
    int rc;

    rc = sandbox_read_grant(channel_fd, &g);
    if (rc < 0) {
        return rc;
    }
    sandbox_self.code_fd = p->code_fd;
    /* A new PID namespace makes us its init: nothing else lives there. */
    if ((g.pieces & SANDBOX_NAMESPACES) && getpid() != 1) {
        return -EPERM;
    }
    if (g.pieces & SANDBOX_EMPTY_ROOT) {
        rc = sandbox_empty_root(p);
        if (rc < 0) {
            return rc;
        }
    }
    if (g.pieces & SANDBOX_NO_CAPS) {
        rc = sandbox_drop_bounding();
        if (rc < 0) {
            return rc;
        }
    }
    rc = sandbox_set_ids(&g);
    if (rc == 0) {
        rc = sandbox_drop_caps();
    }
    if (rc == 0) {
        rc = sandbox_limits(&p->limits, defer_fsize);
    }
    if (rc < 0) {
        return rc;
    }
    sandbox_self.fsize = p->limits.max_file_bytes;
    sandbox_self.fsize_deferred = defer_fsize;
    /* Changing ids cleared any earlier death signal.  A parent that ended
     * before this line also closed the descriptors we talk on, so we
     * end at our next word to it. */
    if (p->die_with_parent && prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) {
        return -errno;
    }
    /* Required for an unprivileged filter; also no setuid gains, and no
     * core dumps or ptrace by other processes of our id. */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
        prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
        return -errno;
    }
    if (p->code_fd >= 0) {
        rc = sandbox_compile_lock();
        if (rc < 0) {
            return rc;
        }
    }
    rc = sandbox_filter(p, defer_fsize,
                        p->scratch_bytes > 0 &&
                        (g.pieces & SANDBOX_EMPTY_ROOT));
    return rc < 0 ? rc : (int)g.pieces;
}

int sandbox_code_file(int src_fd, char *path, size_t cap)
{
    int rc = 0;

    if (sandbox_self.code_fd < 0 || !sandbox_self.fsize_deferred) {
        return -EINVAL;
    }
    if (sandbox_self.code_file >= 0) {
        /* Copied, since only a file of the empty root has a path. */
        const size_t chunk = 1 << 20;
        char *buf = malloc(chunk);
        off_t off = 0;

        if (buf == NULL) {
            return -ENOMEM;
        }
        for (;;) {
            ssize_t n = pread(src_fd, buf, chunk, off);

            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                rc = n < 0 ? -errno : 0;
                break;
            }
            if (write(sandbox_self.code_file, buf, n) != n) {
                rc = -EIO;
                break;
            }
            off += n;
        }
        free(buf);
        close(sandbox_self.code_file);
        sandbox_self.code_file = -1;
        close(src_fd);
        snprintf(path, cap, "/%s", SANDBOX_CODE_NAME);
    } else {
        /* No root of its own: the memfd itself, opened by its /proc
         * link, under a number that is not the loader's. */
        if (src_fd == sandbox_self.code_fd) {
            int moved = fcntl(src_fd, F_DUPFD_CLOEXEC,
                              sandbox_self.code_fd + 1);

            if (moved < 0) {
                return -errno;
            }
            close(src_fd);
            src_fd = moved;
        }
        snprintf(path, cap, "/proc/self/fd/%d", src_fd);
    }
    if (rc == 0) {
        rc = sandbox_limit(RLIMIT_FSIZE, sandbox_self.fsize);
    }
    sandbox_self.fsize_deferred = false;
    /* The loader gets the lowest free descriptor: it must be code_fd. */
    for (int fd = 0; rc == 0 && fd < sandbox_self.code_fd; fd++) {
        if (fcntl(fd, F_GETFD) < 0) {
            rc = -EBADF;
        }
    }
    if (rc == 0 && fcntl(sandbox_self.code_fd, F_GETFD) >= 0) {
        rc = -EBUSY;
    }
    return rc;
}

int sandbox_lock(void)
{
    if (sandbox_self.lock.filter == NULL) {
        return sandbox_self.code_fd < 0 ? 0 : -EINVAL;
    }
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0,
                &sandbox_self.lock) < 0) {
        return -errno;
    }
    free(sandbox_self.lock.filter);
    sandbox_self.lock.filter = NULL;
    sandbox_self.code_fd = -1;
    return 0;
}
