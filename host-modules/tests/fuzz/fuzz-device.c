/*
 * Fuzz target: the helper's device link, fed what a hostile QEMU could
 * send (a valid HELLO is prepended so that requests are reached).
 *
 * Each input starts from the same empty store and the same state of
 * GLib's random numbers (upload ids, image ids): an input's outcome must
 * not depend on what earlier inputs uploaded or on chance, so that a fixed
 * seed repeats a run and a crashing input reproduces on its own.
 *
 * Inputs are cheap where they can be without sharing anything: the empty
 * store is made once, by the helper's own code, and after each input only
 * what the input changed is put back (most inputs change nothing, or only
 * append to the audit log); an input that left anything else behind gets
 * the store made anew.  Every HELLO still opens (and repairs) the store.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
/* getdents64() */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "device.h"
#include "test-common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__asan_default_options(void);

/*
 * Every lifecycle message reads the VM's registrations into a 1 MiB buffer.
 * For an allocation that large AddressSanitizer by default clears the
 * shadow by mapping it anew (a system call and a TLB flush each time);
 * clearing it with memset checks the same, for a fraction of the cost.
 */
const char *__asan_default_options(void)
{
    return "clear_shadow_mmap_threshold=4194304";
}

static void fuzz_quiet(const gchar *domain, GLogLevelFlags level,
                       const gchar *message, gpointer user_data)
{
}

static gchar *fuzz_dir;

static void fuzz_cleanup(void)
{
    test_rm_rf(fuzz_dir);
}

/* ---- The empty store every input starts from ---- */

/* One entry of the empty store's top level. */
typedef struct {
    gchar *name;
    gboolean dir;               /* an empty directory, else a file */
    goffset size;               /* of a file */
} FuzzEntry;

static GArray *fuzz_pristine;   /* of FuzzEntry */
/* Its top level holds only empty directories and files: what an input
 * changed can be found there without walking the tree. */
static gboolean fuzz_flat;

/* The store as the helper makes it, with nothing left of earlier inputs. */
static void fuzz_store_make(Helper *h)
{
    g_autoptr(GError) error = NULL;
    VmaugStore *store;

    test_rm_rf(h->default_store);
    store = vmaug_store_open(h->default_store, h->trust, h->policy, &error);
    g_assert_no_error(error);
    vmaug_store_free(store);
}

static gboolean fuzz_dir_is_empty(const gchar *path)
{
    g_autoptr(GDir) d = g_dir_open(path, 0, NULL);

    return d != NULL && g_dir_read_name(d) == NULL;
}

static void fuzz_store_record(Helper *h)
{
    g_autoptr(GDir) d = g_dir_open(h->default_store, 0, NULL);
    const gchar *n;

    g_assert(d != NULL);
    fuzz_pristine = g_array_new(FALSE, TRUE, sizeof(FuzzEntry));
    fuzz_flat = TRUE;
    while ((n = g_dir_read_name(d)) != NULL) {
        g_autofree gchar *p = g_build_filename(h->default_store, n, NULL);
        FuzzEntry e = { .name = g_strdup(n) };
        struct stat st;

        g_assert(lstat(p, &st) == 0);
        e.dir = S_ISDIR(st.st_mode);
        e.size = st.st_size;
        if (e.dir ? !fuzz_dir_is_empty(p) : !S_ISREG(st.st_mode)) {
            fuzz_flat = FALSE;
        }
        g_array_append_val(fuzz_pristine, e);
    }
}

static const FuzzEntry *fuzz_pristine_find(const char *name)
{
    for (guint i = 0; i < fuzz_pristine->len; i++) {
        const FuzzEntry *e = &g_array_index(fuzz_pristine, FuzzEntry, i);

        if (strcmp(e->name, name) == 0) {
            return e;
        }
    }
    return NULL;
}

/*
 * Directory entries are read with getdents64() into a buffer on the stack:
 * opendir() would allocate, and every input reads five directories here.
 * Calls @fn for each entry but "." and ".." until it returns FALSE; FALSE
 * if it did, or if @fd could not be read.
 */
typedef gboolean (*FuzzEntryFn)(int dirfd, const struct dirent64 *e);

static gboolean fuzz_each_entry(int fd, FuzzEntryFn fn)
{
    guint8 buf[2048] __attribute__((aligned(8)));
    ssize_t n;

    while ((n = getdents64(fd, buf, sizeof(buf))) > 0) {
        for (ssize_t off = 0; off < n;) {
            const struct dirent64 *e = (const void *)(buf + off);

            off += e->d_reclen;
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
                continue;
            }
            if (!fn(fd, e)) {
                return FALSE;
            }
        }
    }
    return n == 0;
}

static gboolean fuzz_no_entry(int dirfd, const struct dirent64 *e)
{
    return FALSE;
}

/* An audit log an input appended to: emptied, and append-only again. */
static gboolean fuzz_file_empty(int dirfd, const char *name)
{
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC |
                    O_NONBLOCK);
    int flags = 0;
    gboolean append;
    int w;

    if (fd < 0) {
        return FALSE;
    }
    append = ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0 &&
             (flags & FS_APPEND_FL);
    if (append) {
        flags &= ~FS_APPEND_FL;
        if (ioctl(fd, FS_IOC_SETFLAGS, &flags) < 0) {
            close(fd);
            return FALSE;
        }
    }
    w = openat(dirfd, name, O_WRONLY | O_TRUNC | O_NOFOLLOW | O_CLOEXEC |
               O_NONBLOCK);
    if (w >= 0) {
        close(w);
    }
    if (append) {
        flags |= FS_APPEND_FL;
        ioctl(fd, FS_IOC_SETFLAGS, &flags);
    }
    close(fd);
    return w >= 0;
}

/* One top-level entry, put back as it was if that is cheap. */
static gboolean fuzz_restore_entry(int dirfd, const struct dirent64 *e)
{
    const FuzzEntry *p = fuzz_pristine_find(e->d_name);
    struct stat st;
    gboolean ok;
    int fd;

    if (p == NULL) {
        return FALSE;
    }
    if (p->dir) {
        fd = openat(dirfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
                    O_CLOEXEC);
        ok = fd >= 0 && fuzz_each_entry(fd, fuzz_no_entry);
        if (fd >= 0) {
            close(fd);
        }
        return ok;
    }
    if (fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
        !S_ISREG(st.st_mode)) {
        return FALSE;
    }
    if (st.st_size == p->size) {
        return TRUE;
    }
    return p->size == 0 && fuzz_file_empty(dirfd, e->d_name);
}

static guint fuzz_restored;

static gboolean fuzz_count_entry(int dirfd, const struct dirent64 *e)
{
    if (!fuzz_restore_entry(dirfd, e)) {
        return FALSE;
    }
    fuzz_restored++;
    return TRUE;
}

/*
 * Puts the store back as fuzz_store_make() left it, if the input changed
 * no more than file sizes at its top level; FALSE if it must be made anew.
 * Its directories were empty: whatever an input left deeper down sits in
 * one of them, so none is skipped, whatever its timestamps say.
 */
static gboolean fuzz_store_restore(Helper *h)
{
    int fd = open(h->default_store, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
                  O_CLOEXEC);
    gboolean ok;

    if (fd < 0) {
        return FALSE;
    }
    fuzz_restored = 0;
    ok = fuzz_each_entry(fd, fuzz_count_entry) &&
         fuzz_restored == fuzz_pristine->len;
    close(fd);
    return ok;
}

static Helper *fuzz_helper(void)
{
    static Helper h;
    static gboolean ready;
    g_autoptr(GError) error = NULL;
    g_autofree gchar *dir = NULL;
    if (ready) {
        return &h;
    }
    g_log_set_default_handler(fuzz_quiet, NULL);
    dir = g_dir_make_tmp("vmaug-fuzz-XXXXXX", &error);
    g_assert_no_error(error);
    fuzz_dir = g_strdup(dir);
    atexit(fuzz_cleanup);
    h.default_store = g_build_filename(dir, "store", NULL);
    h.allowed_stores = g_ptr_array_new_with_free_func(g_free);
    h.image_dirs = g_ptr_array_new_with_free_func(g_free);
    h.trust = vmaug_trust_store_new();     /* trusts nobody */
    h.policy = vmaug_policy_new_default();
    h.policy->max_package_size = 64 * 1024;
    h.module_host = g_strdup("/nonexistent");
    h.call_timeout_ms = 100;
    helper_caches_init(&h);
    /* No threads: writes are made one per turn of the loop, in order,
     * so that an input replays the same. */
    device_writes_init(&h, FALSE);
    helper_limits_default(&h);
    fuzz_store_make(&h);
    fuzz_store_record(&h);
    ready = TRUE;
    return &h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Helper *h = fuzz_helper();
    struct {
        struct vmaug_host_msg m;
        struct vmaug_host_hello hello;
    } hello = {
        .m = {
            .magic = GUINT32_TO_LE(VMAUG_HOST_MAGIC),
            .type = GUINT16_TO_LE(VMAUG_HOST_HELLO),
            .len = GUINT32_TO_LE(sizeof(struct vmaug_host_hello)),
        },
        .hello = { .proto_version = GUINT32_TO_LE(VMAUG_PROTO_VERSION) },
    };
    int sv[2];
    Device *dev;
    guint8 sink[65536];

    g_random_set_seed(1);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        return 0;
    }
    dev = device_new(h, sv[0]);
    if (write(sv[1], &hello, sizeof(hello)) != sizeof(hello)) {
        abort();
    }
    /* Small inputs fit the socket buffer whole. */
    if (size > 0 && write(sv[1], data, MIN(size, 100000)) < 0) {
        abort();
    }
    shutdown(sv[1], SHUT_WR);
    for (guint i = 0; i < 64 && g_main_context_iteration(NULL, FALSE); i++) {
        while (recv(sv[1], sink, sizeof(sink), MSG_DONTWAIT) > 0) {
        }
    }
    if (g_list_find(h->devices, dev) != NULL) {
        device_free(dev);
    }
    /* A closed device frees itself from an idle callback. */
    while (g_main_context_iteration(NULL, FALSE)) {
    }
    close(sv[1]);
    /* The device opened the store on HELLO; the next input opens it again,
     * as it was before this one, and remembers nothing of this one. */
    g_hash_table_remove_all(h->stores);
    g_hash_table_remove_all(h->manifests);
    g_hash_table_remove_all(h->refusals);
    h->jobs = 0;
    if (!fuzz_flat || !fuzz_store_restore(h)) {
        fuzz_store_make(h);
    }
    return 0;
}
