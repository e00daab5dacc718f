/*
 * The module sandbox (GLib-free; runs in the module process).
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VMAUGMENT_SANDBOX_H
#define VMAUGMENT_SANDBOX_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    uint64_t memory_bytes;      /* RLIMIT_AS and RLIMIT_DATA */
    uint64_t cpu_seconds;       /* RLIMIT_CPU, cumulative */
    uint64_t max_files;         /* RLIMIT_NOFILE */
    uint64_t max_file_bytes;    /* RLIMIT_FSIZE */
    bool namespaces;            /* new net/ipc/uts namespaces if possible */
    bool in_namespaces;         /* sandbox_unshare() already done */
} SandboxLimits;

/* Enter new namespaces (done early by spare processes, whose namespaces
 * cost nothing on the load path).  Returns 0 or a negative errno. */
int sandbox_unshare(void);

/*
 * Apply limits, namespaces, PR_SET_NO_NEW_PRIVS and the seccomp filter to
 * the calling process, in that order.  @sock_fd is the one socket the
 * module may send and receive on; with namespaces, the process is also
 * confined (chroot) to the directory @root_fd, where the host allows it.
 * Returns 0 or a negative errno; on failure the caller must exit, never
 * run the module unconfined.
 */
int sandbox_apply(const SandboxLimits *limits, int sock_fd, int root_fd);

#endif /* VMAUGMENT_SANDBOX_H */
