/*
 * Keeping a program we do not build, QEMU's qemu-img, to the files it
 * needs, with Landlock: the system's programs, libraries and
 * configuration, read-only, and the image it is given.  It cannot
 * confine itself (sandbox_confine() is for our own programs), and an
 * image may name any host path for it to open (a vmdk descriptor's
 * extents are opened by "qemu-img info" itself): a FIFO nobody writes
 * hangs it, a device opens with its side effects.  Under this ruleset
 * such an open fails with EACCES.
 *
 * By hand because no library Debian ships wraps Landlock's three system
 * calls (glibc has no wrappers either).
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/landlock.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sandbox.h"

/* Every right of Landlock's first ABI: anything not granted below is
 * refused, reading, writing, executing and making files alike. */
#define PATHS_HANDLED \
    (LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE | \
     LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR | \
     LANDLOCK_ACCESS_FS_REMOVE_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE | \
     LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_DIR | \
     LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_MAKE_SOCK | \
     LANDLOCK_ACCESS_FS_MAKE_FIFO | LANDLOCK_ACCESS_FS_MAKE_BLOCK | \
     LANDLOCK_ACCESS_FS_MAKE_SYM)
#define PATHS_SYSTEM \
    (LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_READ_FILE | \
     LANDLOCK_ACCESS_FS_READ_DIR)

/*
 * What a dynamically linked program of the distribution reads: /usr
 * (/bin, /lib and /lib64 are links into it on a merged-/usr system, and
 * are added in case they are not), /etc (the loader's cache, locales),
 * and /dev/null, which QEMU's tools open for their standard streams.
 */
static const char *const paths_system[] = {
    "/usr", "/etc", "/bin", "/sbin", "/lib", "/lib64",
};

static int paths_add(int ruleset, int fd, uint64_t access)
{
    struct landlock_path_beneath_attr rule = {
        .allowed_access = access,
        .parent_fd = fd,
    };

    if (syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH,
                &rule, 0) < 0) {
        return -errno;
    }
    return 0;
}

static int paths_add_path(int ruleset, const char *path, uint64_t access,
                          bool must_exist)
{
    int fd = open(path, O_PATH | O_CLOEXEC);
    int rc;

    if (fd < 0) {
        return must_exist ? -errno : 0;
    }
    rc = paths_add(ruleset, fd, access);
    close(fd);
    return rc;
}

int sandbox_paths_ruleset(const char *program_dir, const char *read_path,
                          const int *read_fds, size_t n_read_fds)
{
    struct landlock_ruleset_attr attr = {
        .handled_access_fs = PATHS_HANDLED,
    };
    int ruleset;
    int rc = 0;

    ruleset = syscall(SYS_landlock_create_ruleset, &attr, sizeof(attr), 0);
    if (ruleset < 0) {
        return -errno;
    }
    for (size_t i = 0; rc == 0 && i < sizeof(paths_system) /
                                       sizeof(paths_system[0]); i++) {
        rc = paths_add_path(ruleset, paths_system[i], PATHS_SYSTEM, false);
    }
    if (rc == 0) {
        /* Opened for writing too, as a standard stream. */
        rc = paths_add_path(ruleset, "/dev/null",
                            LANDLOCK_ACCESS_FS_READ_FILE |
                            LANDLOCK_ACCESS_FS_WRITE_FILE, false);
    }
    if (rc == 0 && program_dir != NULL) {
        rc = paths_add_path(ruleset, program_dir, PATHS_SYSTEM, true);
    }
    if (rc == 0 && read_path != NULL) {
        rc = paths_add_path(ruleset, read_path, LANDLOCK_ACCESS_FS_READ_FILE,
                            true);
    }
    for (size_t i = 0; rc == 0 && i < n_read_fds; i++) {
        rc = paths_add(ruleset, read_fds[i], LANDLOCK_ACCESS_FS_READ_FILE);
    }
    if (rc < 0) {
        close(ruleset);
        return rc;
    }
    return ruleset;
}

int sandbox_paths_restrict(int ruleset)
{
    /* Landlock asks for it of a process without CAP_SYS_ADMIN; a tool
     * reading an image has no use for setuid programs either. */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
        syscall(SYS_landlock_restrict_self, ruleset, 0) < 0) {
        return -errno;
    }
    return 0;
}
