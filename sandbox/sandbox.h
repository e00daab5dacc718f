/*
 * A process sandbox in two halves, after OpenSSH's privilege separation
 * and Firecracker's jailer: the parent starts a program in new namespaces
 * under an id of its own (sandbox_spawn()); the program confines itself
 * before it runs anything untrusted (sandbox_confine()) and tightens the
 * filter once it has mapped the code it was given (sandbox_lock()).
 *
 * Nothing here knows what the confined program does: it is told which
 * descriptors it talks on and whether it maps one piece of code.
 * docs/sandbox.rst is normative for the steps and the filter.
 *
 * GLib-free: the parent half runs between clone() and exec, the child
 * half in the confined program.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VMAUGMENT_SANDBOX_H
#define VMAUGMENT_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * Pieces of confinement a host may be unable to give (sandbox_probe()).
 * rlimits, PR_SET_NO_NEW_PRIVS and the seccomp filter are not among them:
 * without those a sandboxed program refuses to run at all.
 */
#define SANDBOX_USER_NS     0x01u   /* a user namespace of its own */
#define SANDBOX_OWN_ID      0x02u   /* a uid and gid nobody else runs as */
#define SANDBOX_NAMESPACES  0x04u   /* new PID, mount, network, IPC, UTS
                                     * and cgroup namespaces */
#define SANDBOX_EMPTY_ROOT  0x08u   /* pivoted into an empty tmpfs */
#define SANDBOX_NO_CAPS     0x10u   /* no capabilities, empty bounding set */
#define SANDBOX_ALL         0x1fu

/* The id base a host owner gets unless they choose another: far above
 * the ids distributions hand out to people and services. */
#define SANDBOX_DEFAULT_ID_BASE 0x70000000u

/* ---- Parent half ---- */

typedef struct {
    uint32_t id_base;       /* a child runs as uid and gid id_base + its
                             * host pid (only a privileged parent) */
    bool namespaces;        /* false: the host owner turned them off */
} SandboxHost;

/* The pieces this host, with this process's privileges, can give (costs
 * one short-lived child). */
unsigned sandbox_probe(const SandboxHost *host);
/*
 * What sandbox_probe() answers on a host whose namespaces work, without
 * asking: a caller may spawn with these first and probe only when that
 * spawn fails (sandbox_spawn() checks, before exec, what the probe would
 * have), saving the probe's child on the hosts that confine fully.
 */
unsigned sandbox_expected(const SandboxHost *host);
/* "user-namespace", "own-id", ... for one SANDBOX_* bit. */
const char *sandbox_piece_name(unsigned piece);
/* The host uid a child started with @pieces runs as. */
uint32_t sandbox_child_uid(const SandboxHost *host, unsigned pieces,
                           pid_t pid);

typedef struct {
    const SandboxHost *host;
    unsigned pieces;        /* what to give: sandbox_probe()'s answer */
    int exe_fd;             /* the program, opened O_PATH */
    char *const *argv;
    const int *fds;         /* become 3, 4, ... in the child */
    unsigned n_fds;         /* at most SANDBOX_MAX_FDS */
    int stderr_fd;          /* the child's stderr; -1: /dev/null */
} SandboxSpawn;

#define SANDBOX_MAX_FDS     12

/*
 * Start the program in new namespaces, under its own id.  Descriptors
 * 0-2 are /dev/null (stderr as asked), 3.. the caller's, and the next one
 * the channel the child passes to sandbox_confine(); nothing else is
 * inherited.  Returns once the child runs the program: its pid (reaped
 * by the caller), or -errno when it could not get there (namespaces the
 * host refused, an empty root it cannot make, exec), the child reaped.
 */
pid_t sandbox_spawn(const SandboxSpawn *s);

/*
 * Reap the child @pid (sandboxed or any other), letting it end by itself
 * for at most @grace_us; one still running then is killed, and *@killed
 * says so.  Returns its wait status (0 when it was no longer ours).
 */
int sandbox_reap(pid_t pid, int64_t grace_us, bool *killed);

/* ---- Child half ---- */

typedef struct {
    uint64_t memory_bytes;      /* RLIMIT_AS and RLIMIT_DATA */
    uint64_t cpu_seconds;       /* RLIMIT_CPU, cumulative */
    uint64_t max_files;         /* RLIMIT_NOFILE */
    uint64_t max_file_bytes;    /* RLIMIT_FSIZE */
} SandboxLimits;

typedef struct {
    SandboxLimits limits;
    const int *io_fds;      /* the only descriptors it may send and
                             * receive messages on */
    unsigned n_io_fds;
    /*
     * -1: the program maps no code.  Otherwise the descriptor number the
     * dynamic loader will open the code at (the lowest one free when
     * sandbox_code_file()'s path is opened): until sandbox_lock(), opening
     * files read-only and executable mappings of that descriptor alone are
     * allowed.
     */
    int code_fd;
    /*
     * 0: no scratch space.  Otherwise the empty root gets a writable /tmp
     * of this many bytes where files may be created, opened and removed
     * (nothing else is there to open), and memfds may be made.  Without
     * an empty root nothing can be opened, scratch or not.
     */
    uint64_t scratch_bytes;
    /* With scratch space: directories may be made and removed there too
     * (libclamav unpacks each scan into a directory of its own). */
    bool scratch_dirs;
    /* Killed when the process that started it ends (set after the ids
     * change, which would clear it). */
    bool die_with_parent;
} SandboxPolicy;

/*
 * Confine the calling process: read the parent's grant from @channel_fd,
 * pivot into an empty root, drop to its id, clear every capability and
 * the bounding set, apply rlimits, PR_SET_NO_NEW_PRIVS and the filter.
 * Pieces the parent did not grant are skipped.  Returns the pieces in
 * force (SANDBOX_*) or -errno; on failure the caller must exit, never
 * run anything unconfined.
 */
int sandbox_confine(const SandboxPolicy *p, int channel_fd);

/*
 * Make the sealed memfd @src_fd loadable and set RLIMIT_FSIZE: its bytes
 * are copied into the empty root and @src_fd is closed; without an empty
 * root it stays open, under another number than code_fd, to be loaded
 * through /proc.  @path receives what to dlopen().  Only with a policy
 * that has a code_fd.  Returns 0 or -errno.
 */
int sandbox_code_file(int src_fd, char *path, size_t cap);

/* The code is mapped: from now on no file can be opened and no memory
 * made executable.  Returns 0 or -errno. */
int sandbox_lock(void);

/*
 * Landlock for a program we do not build (sandbox-paths.c): a ruleset
 * under which it may read and execute the system's programs, libraries
 * and configuration and @program_dir (NULL: none), read @read_path and
 * the files open as @read_fds, and nothing else: no other file can be
 * opened, written, made or removed.  Returns the ruleset's descriptor
 * (close-on-exec), or -errno; -ENOSYS or -EOPNOTSUPP when the kernel has
 * no Landlock.
 */
int sandbox_paths_ruleset(const char *program_dir, const char *read_path,
                          const int *read_fds, size_t n_read_fds);

/* Between fork and exec (async-signal-safe): PR_SET_NO_NEW_PRIVS and the
 * ruleset from sandbox_paths_ruleset().  Returns 0 or -errno. */
int sandbox_paths_restrict(int ruleset);

#endif /* VMAUGMENT_SANDBOX_H */
