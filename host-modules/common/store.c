/*
 * vmaugment host side: the module store (see store.h): its layout, its
 * repair at start, looking packages up and installing them.  Upload
 * sessions are in store-upload.c, the audit log in store-audit.c.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "store-private.h"

void vmaug_store_entry_free(VmaugStoreEntry *e)
{
    if (e == NULL) {
        return;
    }
    g_free(e->name);
    g_free(e->version);
    g_free(e->sha256);
    g_free(e);
}

const gchar *vmaug_store_get_dir(VmaugStore *store)
{
    return store->dir;
}

gint64 store_now(VmaugStore *store)
{
    return store->clock(store->clock_data);
}

static gint64 store_monotonic(gpointer data)
{
    return g_get_monotonic_time();
}

void vmaug_store_set_clock(VmaugStore *store, VmaugClockFunc func,
                           gpointer data)
{
    store->clock = func != NULL ? func : store_monotonic;
    store->clock_data = data;
}

gboolean store_io_error(GError **error, const gchar *what,
                        const gchar *path)
{
    int saved = errno;

    g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_IO, "%s %s: %s",
                what, path, g_strerror(saved));
    return FALSE;
}

void store_fsync_dir(const gchar *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

gboolean vmaug_store_write_file(const gchar *path, const void *data,
                                gsize len, GError **error)
{
    g_autofree gchar *dir = g_path_get_dirname(path);
    g_autoptr(GError) local = NULL;

    if (!g_file_set_contents_full(path, data, len,
                                  G_FILE_SET_CONTENTS_CONSISTENT |
                                  G_FILE_SET_CONTENTS_DURABLE, 0640,
                                  &local)) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_IO, "%s",
                    local->message);
        return FALSE;
    }
    store_fsync_dir(dir);
    return TRUE;
}

/* Remove @path and all below it, never following a symlink. */
static void store_remove_all(const gchar *path)
{
    GStatBuf st;

    if (g_lstat(path, &st) < 0) {
        return;
    }
    if (S_ISDIR(st.st_mode)) {
        g_autoptr(GDir) d = g_dir_open(path, 0, NULL);
        const gchar *n;

        while (d != NULL && (n = g_dir_read_name(d)) != NULL) {
            g_autofree gchar *child = g_build_filename(path, n, NULL);

            store_remove_all(child);
        }
        g_rmdir(path);
    } else {
        g_unlink(path);
    }
}

void vmaug_store_remove_tree(const gchar *dir, const gchar *keep)
{
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    const gchar *n;
    gboolean kept = FALSE;

    while (d != NULL && (n = g_dir_read_name(d)) != NULL) {
        g_autofree gchar *child = g_build_filename(dir, n, NULL);

        if (keep != NULL && g_strcmp0(n, keep) == 0 &&
            g_file_test(child, G_FILE_TEST_IS_DIR) &&
            !g_file_test(child, G_FILE_TEST_IS_SYMLINK)) {
            g_autoptr(GDir) kd = g_dir_open(child, 0, NULL);

            if (kd != NULL && g_dir_read_name(kd) != NULL) {
                kept = TRUE;
                continue;
            }
        }
        store_remove_all(child);
    }
    if (!kept) {
        g_rmdir(dir);
    }
}

gchar *store_object_path(VmaugStore *store, const gchar *hex)
{
    g_autofree gchar *name = g_strconcat(hex, ".pkg", NULL);

    return g_build_filename(store->dir, "objects", name, NULL);
}

/* ---- Opening and repair ---- */

static void store_repair_modules(VmaugStore *store)
{
    g_autofree gchar *mdir = g_build_filename(store->dir, "modules", NULL);
    g_autoptr(GDir) d = g_dir_open(mdir, 0, NULL);
    const gchar *name;

    while (d != NULL && (name = g_dir_read_name(d)) != NULL) {
        g_autofree gchar *ndir = g_build_filename(mdir, name, NULL);
        g_autoptr(GDir) nd = NULL;
        const gchar *v;

        if (!vmaug_name_is_valid(name)) {
            continue;
        }
        nd = g_dir_open(ndir, 0, NULL);
        while (nd != NULL && (v = g_dir_read_name(nd)) != NULL) {
            g_autofree gchar *ref = g_build_filename(ndir, v, NULL);
            g_autofree gchar *hex = NULL;
            g_autofree gchar *obj = NULL;

            if (g_strcmp0(v, ".highest") == 0) {
                continue;
            }
            if (!vmaug_version_is_valid(v)) {
                /* A temporary file from an interrupted rename. */
                g_unlink(ref);
                continue;
            }
            if (!g_file_get_contents(ref, &hex, NULL, NULL) ||
                !vmaug_hex_is_sha256(g_strstrip(hex))) {
                g_unlink(ref);
                vmaug_store_audit(store, "store", "repair", name, v, NULL,
                                  NULL, NULL);
                continue;
            }
            obj = store_object_path(store, hex);
            if (!g_file_test(obj, G_FILE_TEST_IS_REGULAR)) {
                g_unlink(ref);
                vmaug_store_audit(store, "store", "repair", name, v, hex,
                                  NULL, NULL);
            }
        }
    }
}

static void store_repair_objects(VmaugStore *store)
{
    g_autofree gchar *odir = g_build_filename(store->dir, "objects", NULL);
    g_autoptr(GDir) d = g_dir_open(odir, 0, NULL);
    const gchar *n;

    while (d != NULL && (n = g_dir_read_name(d)) != NULL) {
        g_autofree gchar *hex = g_strndup(n, 64);

        if (!g_str_has_suffix(n, ".pkg") || strlen(n) != 68 ||
            !vmaug_hex_is_sha256(hex)) {
            g_autofree gchar *p = g_build_filename(odir, n, NULL);
            g_unlink(p);
        }
    }
}

/*
 * The areas of VMs that named no image last as long as their connection
 * (vm-area.h); one left behind by a crash can never be used again.  What
 * the VM printed stays for the host owner; the rest goes.
 */
static void store_repair_vms(VmaugStore *store)
{
    g_autofree gchar *vdir = g_build_filename(store->dir,
                                              VMAUG_STORE_VMS_DIR, NULL);
    g_autoptr(GDir) d = g_dir_open(vdir, 0, NULL);
    const gchar *n;

    while (d != NULL && (n = g_dir_read_name(d)) != NULL) {
        g_autofree gchar *area = NULL;

        if (!g_str_has_prefix(n, VMAUG_STORE_EPHEMERAL_VM)) {
            continue;
        }
        area = g_build_filename(vdir, n, NULL);
        vmaug_store_remove_tree(area, "spool");
    }
}

/*
 * Every process with the store open holds "lock" shared.  Only one that
 * finds nobody else there repairs the store and takes over its unfinished
 * uploads: another one's temporary files are its work in progress, not
 * leftovers of a crash.
 */
static gboolean store_lock(VmaugStore *store, GError **error)
{
    g_autofree gchar *path = g_build_filename(store->dir, "lock", NULL);

    store->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
                          0600);
    if (store->lock_fd < 0) {
        store_io_error(error, "cannot open", path);
        return FALSE;
    }
    if (flock(store->lock_fd, LOCK_EX | LOCK_NB) == 0) {
        store_repair_objects(store);
        store_repair_modules(store);
        store_uploads_repair(store);
        store_repair_vms(store);
    }
    /* From exclusive, or waiting out another's repair. */
    if (flock(store->lock_fd, LOCK_SH) < 0) {
        store_io_error(error, "cannot lock", path);
        return FALSE;
    }
    return TRUE;
}

/* ---- What lookups found ---- */

/* Names are the guest's to choose: what is kept is bounded. */
#define STORE_INDEX_MAX         4096
/* Any change to a directory's entries or to the files in it. */
#define STORE_INDEX_EVENTS      (IN_CREATE | IN_DELETE | IN_MOVED_FROM | \
                                 IN_MOVED_TO | IN_CLOSE_WRITE | IN_MODIFY | \
                                 IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF | \
                                 IN_ONLYDIR)

typedef struct {
    VmaugStoreEntry *entry;         /* NULL: not found, for @why */
    gchar *why;
} StoreIndexHit;

static void store_index_hit_free(StoreIndexHit *h)
{
    vmaug_store_entry_free(h->entry);
    g_free(h->why);
    g_free(h);
}

static VmaugStoreEntry *store_entry_copy(const VmaugStoreEntry *e)
{
    VmaugStoreEntry *c = g_new0(VmaugStoreEntry, 1);

    c->name = g_strdup(e->name);
    c->version = g_strdup(e->version);
    c->sha256 = g_strdup(e->sha256);
    return c;
}

/* Keep nothing from now on: every lookup reads the store. */
static void store_index_stop(VmaugStore *store)
{
    if (store->index_fd >= 0) {
        close(store->index_fd);
        store->index_fd = -1;
    }
    g_clear_pointer(&store->index, g_hash_table_unref);
}

gboolean vmaug_store_cache_lookups(VmaugStore *store, GError **error)
{
    g_autofree gchar *mdir = g_build_filename(store->dir, "modules", NULL);

    if (store->index_fd >= 0) {
        return TRUE;
    }
    store->index_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (store->index_fd < 0) {
        return store_io_error(error, "cannot watch", mdir);
    }
    store->index_wd = inotify_add_watch(store->index_fd, mdir,
                                        STORE_INDEX_EVENTS);
    if (store->index_wd < 0) {
        store_io_error(error, "cannot watch", mdir);
        store_index_stop(store);
        return FALSE;
    }
    store->index = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                         (GDestroyNotify)store_index_hit_free);
    return TRUE;
}

/*
 * Forget what was kept if anything under modules/ changed.  The kernel
 * queues an event as the change is made, so one that another process
 * finished before now is read here.
 */
static void store_index_sync(VmaugStore *store)
{
    union {
        struct inotify_event ev;
        gchar buf[4096];
    } u;
    gboolean changed = FALSE;

    for (;;) {
        ssize_t n = read(store->index_fd, &u, sizeof(u));

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && errno == EAGAIN) {
            break;
        }
        if (n <= 0) {
            store_index_stop(store);
            return;
        }
        changed = TRUE;
        for (gsize off = 0; off + sizeof(struct inotify_event) <= (gsize)n;) {
            struct inotify_event ev;

            memcpy(&ev, u.buf + off, sizeof(ev));
            /* Events were lost, or modules/ itself went away (and with
             * it the watch that would see a new one): nothing kept could
             * be trusted again. */
            if ((ev.mask & IN_Q_OVERFLOW) ||
                (ev.wd == store->index_wd &&
                 (ev.mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF)))) {
                store_index_stop(store);
                return;
            }
            off += sizeof(ev) + ev.len;
        }
    }
    if (changed) {
        g_hash_table_remove_all(store->index);
    }
}

VmaugStore *vmaug_store_open(const gchar *dir, VmaugTrustStore *trust,
                             const VmaugPolicy *policy, GError **error)
{
    g_autoptr(VmaugStore) store = g_new0(VmaugStore, 1);
    static const gchar *const subdirs[] = {
        "objects", "modules", "uploads", VMAUG_STORE_VMS_DIR, NULL
    };

    store->dir = g_canonicalize_filename(dir, NULL);
    store->trust = trust;
    store->policy = policy;
    store->lock_fd = -1;
    store->index_fd = -1;
    store->jobs_open = g_ptr_array_new();
    g_mutex_init(&store->job_lock);
    vmaug_store_set_clock(store, NULL, NULL);
    store_audit_init(store);
    store_uploads_init(store);
    if (g_mkdir_with_parents(store->dir, 0750) < 0) {
        store_io_error(error, "cannot create", store->dir);
        return NULL;
    }
    for (guint i = 0; subdirs[i] != NULL; i++) {
        g_autofree gchar *p = g_build_filename(store->dir, subdirs[i], NULL);

        if (g_mkdir_with_parents(p, 0750) < 0) {
            store_io_error(error, "cannot create", p);
            return NULL;
        }
    }
    if (!store_audit_open(store, error) || !store_lock(store, error)) {
        return NULL;
    }
    return g_steal_pointer(&store);
}

void vmaug_store_free(VmaugStore *store)
{
    if (store == NULL) {
        return;
    }
    if (store->jobs != NULL) {
        /* Their work uses the store: let it finish. */
        g_thread_pool_free(store->jobs, FALSE, TRUE);
    }
    /* Their callbacks will not run now, or will find no store: what the
     * store records of them is recorded here (a refusal's audit record,
     * the end of an upload's session). */
    for (guint i = 0; i < store->jobs_open->len; i++) {
        StoreJob *job = g_ptr_array_index(store->jobs_open, i);

        job->end(job);
        job->store = NULL;
    }
    g_ptr_array_unref(store->jobs_open);
    g_mutex_clear(&store->job_lock);
    /* Sessions first: dropping one may be audited. */
    g_hash_table_unref(store->uploads);
    store_audit_close(store);
    store_index_stop(store);
    if (store->lock_fd >= 0) {
        close(store->lock_fd);
    }
    g_free(store->dir);
    g_free(store);
}

/* ---- What enters the store: its thread ---- */

typedef struct {
    GTask *task;
    StoreJob *job;
    StoreJobFunc work;
} StoreJobRun;

void store_job_clear(StoreJob *job)
{
    g_clear_pointer(&job->actor, g_free);
    g_clear_pointer(&job->pkg, vmaug_package_free);
    g_clear_error(&job->error);
}

/* Admitting and publishing stay one step, wherever the work runs. */
static void store_job_work(StoreJob *job, StoreJobFunc work)
{
    g_mutex_lock(&job->store->job_lock);
    work(job);
    g_mutex_unlock(&job->store->job_lock);
}

void store_job_run(StoreJob *job, StoreJobFunc work)
{
    store_job_work(job, work);
    job->end(job);
}

VmaugManifest *store_job_result(StoreJob *job, GError **error)
{
    if (job->error != NULL) {
        g_propagate_error(error, g_steal_pointer(&job->error));
        return NULL;
    }
    return g_steal_pointer(&job->pkg->manifest);
}

static void store_job_thread(gpointer data, gpointer user_data)
{
    StoreJobRun *run = data;

    store_job_work(run->job, run->work);
    g_task_return_boolean(run->task, TRUE);
    g_object_unref(run->task);
    g_free(run);
}

void store_job_push(VmaugStore *store, GTask *task, StoreJob *job,
                    StoreJobFunc work)
{
    StoreJobRun *run = g_new0(StoreJobRun, 1);

    job->store = store;
    g_ptr_array_add(store->jobs_open, job);
    run->task = g_object_ref(task);
    run->job = job;
    run->work = work;
    if (store->jobs == NULL) {
        g_autoptr(GError) local = NULL;

        /* One thread, made now (exclusive): jobs queue in order. */
        store->jobs = g_thread_pool_new(store_job_thread, NULL, 1, TRUE,
                                        &local);
        if (store->jobs == NULL) {
            /* Slower, never lost: this one on the caller's thread. */
            g_warning("store %s: no thread for packages entering it: %s",
                      store->dir, local->message);
            store_job_thread(run, NULL);
            return;
        }
    }
    g_thread_pool_push(store->jobs, run, NULL);
}

StoreJob *store_job_finish(VmaugStore *store, GAsyncResult *result,
                           GError **error)
{
    StoreJob *job;

    g_return_val_if_fail(g_task_is_valid(result, NULL), NULL);
    if (!g_task_propagate_boolean(G_TASK(result), error)) {
        return NULL;
    }
    job = g_task_get_task_data(G_TASK(result));
    g_return_val_if_fail(job->store == store || job->store == NULL, NULL);
    if (job->store == NULL) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_CLOSED,
                    "the store was closed before the answer");
        return NULL;
    }
    g_ptr_array_remove_fast(store->jobs_open, job);
    job->end(job);
    return job;
}

/* ---- Lookup ---- */

static gchar *store_read_small(const gchar *path)
{
    g_autoptr(GBytes) b = vmaug_trust_read_file(path, 256, NULL);

    if (b == NULL) {
        return NULL;
    }
    return g_strstrip(g_strndup(g_bytes_get_data(b, NULL),
                                g_bytes_get_size(b)));
}

static gchar *store_highest(VmaugStore *store, const gchar *name)
{
    g_autofree gchar *p = g_build_filename(store->dir, "modules", name,
                                           ".highest", NULL);
    gchar *v = store_read_small(p);

    if (v != NULL && !vmaug_version_is_valid(v)) {
        g_clear_pointer(&v, g_free);
    }
    return v;
}

static GPtrArray *store_versions(VmaugStore *store, const gchar *name)
{
    g_autofree gchar *ndir = g_build_filename(store->dir, "modules", name,
                                              NULL);
    g_autoptr(GDir) d = g_dir_open(ndir, 0, NULL);
    GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
    const gchar *v;

    while (d != NULL && (v = g_dir_read_name(d)) != NULL) {
        if (vmaug_version_is_valid(v)) {
            g_ptr_array_add(out, g_strdup(v));
        }
    }
    return out;
}

static gint store_cmp_names(gconstpointer a, gconstpointer b)
{
    return strcmp(*(const gchar *const *)a, *(const gchar *const *)b);
}

static gint store_cmp_versions(gconstpointer a, gconstpointer b)
{
    return vmaug_version_compare(*(const gchar *const *)a,
                                 *(const gchar *const *)b);
}

/*
 * How the store spells version @version of @name: "1.0" and "1.00" are
 * one number, so one version.  The exact spelling if it is stored, else
 * another of the same number, else NULL.
 */
static gchar *store_spelling(VmaugStore *store, const gchar *name,
                             const gchar *version)
{
    g_autoptr(GPtrArray) vs = store_versions(store, name);
    const gchar *same = NULL;

    for (guint i = 0; i < vs->len; i++) {
        const gchar *v = g_ptr_array_index(vs, i);

        if (g_strcmp0(v, version) == 0) {
            return g_strdup(v);
        }
        if (same == NULL && vmaug_version_compare(v, version) == 0) {
            same = v;
        }
    }
    return g_strdup(same);
}

static VmaugStoreEntry *store_lookup_read(VmaugStore *store,
                                          const gchar *name,
                                          const gchar *version,
                                          GError **error)
{
    g_autoptr(VmaugStoreEntry) e = g_new0(VmaugStoreEntry, 1);
    g_autofree gchar *ref = NULL;

    e->name = g_strdup(name);
    if (version == NULL || *version == '\0') {
        g_autoptr(GPtrArray) vs = store_versions(store, name);

        if (vs->len == 0) {
            g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_NOT_FOUND,
                        "no module %s", name);
            return NULL;
        }
        g_ptr_array_sort(vs, store_cmp_versions);
        e->version = g_strdup(g_ptr_array_index(vs, vs->len - 1));
    } else {
        e->version = store_spelling(store, name, version);
        if (e->version == NULL) {
            e->version = g_strdup(version);
        }
    }
    ref = g_build_filename(store->dir, "modules", name, e->version, NULL);
    e->sha256 = store_read_small(ref);
    if (e->sha256 == NULL || !vmaug_hex_is_sha256(e->sha256)) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_NOT_FOUND,
                    "no module %s %s", name, e->version);
        return NULL;
    }
    return g_steal_pointer(&e);
}

VmaugStoreEntry *vmaug_store_lookup(VmaugStore *store, const gchar *name,
                                    const gchar *version, GError **error)
{
    g_autofree gchar *key = NULL;
    g_autofree gchar *ndir = NULL;
    g_autoptr(GError) local = NULL;
    StoreIndexHit *hit;
    VmaugStoreEntry *e;

    if (!vmaug_name_is_valid(name) ||
        (version != NULL && *version != '\0' &&
         !vmaug_version_is_valid(version))) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "invalid module name or version");
        return NULL;
    }
    if (store->index_fd >= 0) {
        store_index_sync(store);
    }
    if (store->index == NULL) {
        return store_lookup_read(store, name, version, error);
    }
    key = g_strconcat(name, "\n", version != NULL ? version : "", NULL);
    hit = g_hash_table_lookup(store->index, key);
    if (hit != NULL) {
        if (hit->entry == NULL) {
            g_set_error_literal(error, VMAUG_HOST_ERROR,
                                VMAUG_HOST_ERROR_NOT_FOUND, hit->why);
            return NULL;
        }
        return store_entry_copy(hit->entry);
    }
    /* Watched before it is read: a change made while we read is queued
     * and forgets what we are about to keep.  A module that does not
     * exist has no directory; its creation shows on modules/. */
    ndir = g_build_filename(store->dir, "modules", name, NULL);
    if (inotify_add_watch(store->index_fd, ndir, STORE_INDEX_EVENTS) < 0 &&
        errno != ENOENT) {
        /* Out of watches: this name is read every time. */
        return store_lookup_read(store, name, version, error);
    }
    e = store_lookup_read(store, name, version, &local);
    if (e == NULL && !g_error_matches(local, VMAUG_HOST_ERROR,
                                      VMAUG_HOST_ERROR_NOT_FOUND)) {
        g_propagate_error(error, g_steal_pointer(&local));
        return NULL;
    }
    if (g_hash_table_size(store->index) >= STORE_INDEX_MAX) {
        g_hash_table_remove_all(store->index);
    }
    hit = g_new0(StoreIndexHit, 1);
    hit->entry = e != NULL ? store_entry_copy(e) : NULL;
    hit->why = local != NULL ? g_strdup(local->message) : NULL;
    g_hash_table_insert(store->index, g_steal_pointer(&key), hit);
    if (e == NULL) {
        g_propagate_error(error, g_steal_pointer(&local));
    }
    return e;
}

GPtrArray *vmaug_store_list(VmaugStore *store)
{
    g_autofree gchar *mdir = g_build_filename(store->dir, "modules", NULL);
    g_autoptr(GDir) d = g_dir_open(mdir, 0, NULL);
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
    GPtrArray *out = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vmaug_store_entry_free);
    const gchar *n;

    while (d != NULL && (n = g_dir_read_name(d)) != NULL) {
        if (vmaug_name_is_valid(n)) {
            g_ptr_array_add(names, g_strdup(n));
        }
    }
    g_ptr_array_sort(names, store_cmp_names);
    for (guint i = 0; i < names->len; i++) {
        g_autoptr(GPtrArray) vs = store_versions(store,
                                                 g_ptr_array_index(names, i));

        g_ptr_array_sort(vs, store_cmp_versions);
        for (guint j = 0; j < vs->len; j++) {
            VmaugStoreEntry *e = vmaug_store_lookup(store,
                                                    g_ptr_array_index(names,
                                                                      i),
                                                    g_ptr_array_index(vs, j),
                                                    NULL);
            if (e != NULL) {
                g_ptr_array_add(out, e);
            }
        }
    }
    return out;
}

VmaugPackage *vmaug_store_open_package(VmaugStore *store, const gchar *name,
                                       const gchar *version,
                                       const gchar *actor,
                                       const gchar *action, GError **error)
{
    g_autoptr(VmaugStoreEntry) e = NULL;
    g_autoptr(GBytes) file = NULL;
    g_autofree gchar *path = NULL;
    g_autoptr(GError) local = NULL;
    VmaugPackage *pkg;

    e = vmaug_store_lookup(store, name, version, error);
    if (e == NULL) {
        return NULL;
    }
    path = store_object_path(store, e->sha256);
    file = vmaug_trust_read_file(path, store->policy->max_package_size,
                                 &local);
    if (file == NULL) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_IO, "%s",
                    local->message);
        vmaug_store_audit(store, actor, action != NULL ? action : "read",
                          name, e->version, e->sha256, NULL, *error);
        return NULL;
    }
    pkg = vmaug_package_verify(file, store->trust,
                               store->policy->max_package_size, &local);
    /* The stored object must still be what was accepted under this name. */
    if (pkg != NULL && (g_strcmp0(pkg->manifest->name, name) != 0 ||
                        g_strcmp0(pkg->manifest->version, e->version) != 0)) {
        g_clear_pointer(&pkg, vmaug_package_free);
        g_set_error(&local, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_DENIED,
                    "stored package is not %s %s", name, e->version);
    }
    if (pkg != NULL) {
        g_autofree gchar *hex = vmaug_sha256_hex(
            g_bytes_get_data(file, NULL), g_bytes_get_size(file));

        if (g_strcmp0(hex, e->sha256) != 0) {
            g_clear_pointer(&pkg, vmaug_package_free);
            g_set_error(&local, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_DENIED,
                        "stored package changed on disk");
        }
    }
    /* Refusals are always recorded; acceptances when asked to. */
    if (action != NULL || local != NULL) {
        vmaug_store_audit(store, actor, action != NULL ? action : "read",
                          name, e->version, e->sha256,
                          pkg != NULL ? pkg->signer->common_name : NULL,
                          local);
    }
    if (pkg == NULL) {
        g_propagate_error(error, g_steal_pointer(&local));
    }
    return pkg;
}

/* ---- Installing ---- */

/*
 * Decide whether @m may enter the store; @hex is the package's digest.
 * Sets EXISTS when exactly this package is already there.
 */
gboolean store_admit(VmaugStore *store, const gchar *name,
                     const gchar *version, const gchar *hex, GError **error)
{
    g_autofree gchar *highest = store_highest(store, name);
    g_autofree gchar *ref = g_build_filename(store->dir, "modules", name,
                                             version, NULL);
    g_autofree gchar *have = store_read_small(ref);
    g_autofree gchar *spelled = store_spelling(store, name, version);

    /* Two spellings of one number would be two packages of one version,
     * each passing for the other at lookup. */
    if (have == NULL && spelled != NULL) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_DENIED,
                    "%s %s is version %s, already stored", name, version,
                    spelled);
        return FALSE;
    }
    if (have != NULL) {
        if (hex != NULL && g_strcmp0(have, hex) == 0) {
            g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_EXISTS,
                        "%s %s is already stored", name, version);
        } else {
            /* One name and version, one content: anything else is a
             * replacement attack or a packaging mistake. */
            g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_DENIED,
                        "%s %s is already stored with other content", name,
                        version);
        }
        return FALSE;
    }
    if (highest != NULL && vmaug_version_compare(version, highest) < 0 &&
        !store->policy->allow_rollback) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_DENIED,
                    "rollback: %s %s is older than %s, accepted before",
                    name, version, highest);
        return FALSE;
    }
    return TRUE;
}

gboolean vmaug_store_check_version(VmaugStore *store, const gchar *name,
                                   const gchar *version, const gchar *actor,
                                   GError **error)
{
    g_autofree gchar *highest = store_highest(store, name);

    if (highest != NULL && vmaug_version_compare(version, highest) < 0 &&
        !store->policy->allow_rollback) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_DENIED,
                    "rollback: %s %s is older than %s, accepted before",
                    name, version, highest);
        vmaug_store_audit(store, actor, "load", name, version, NULL, NULL,
                          *error);
        return FALSE;
    }
    return TRUE;
}

/*
 * Record @pkg (already verified and admitted, its bytes in
 * objects/<hex>.pkg) under its name and version.
 */
gboolean store_publish(VmaugStore *store, VmaugPackage *pkg,
                       const gchar *hex, GError **error)
{
    const VmaugManifest *m = pkg->manifest;
    g_autofree gchar *ndir = g_build_filename(store->dir, "modules", m->name,
                                              NULL);
    g_autofree gchar *ref = g_build_filename(ndir, m->version, NULL);
    g_autofree gchar *hp = g_build_filename(ndir, ".highest", NULL);
    g_autofree gchar *highest = store_highest(store, m->name);
    g_autofree gchar *line = g_strconcat(hex, "\n", NULL);

    if (g_mkdir_with_parents(ndir, 0750) < 0) {
        return store_io_error(error, "cannot create", ndir);
    }
    if (!vmaug_store_write_file(ref, line, strlen(line), error)) {
        return FALSE;
    }
    if (highest == NULL || vmaug_version_compare(m->version, highest) > 0) {
        g_autofree gchar *v = g_strconcat(m->version, "\n", NULL);

        if (!vmaug_store_write_file(hp, v, strlen(v), error)) {
            return FALSE;
        }
    }
    return TRUE;
}

/* An install (StoreJob): of bytes the caller holds, signature first. */
typedef struct {
    StoreJob job;
    GBytes *package;
    gchar *hex;                     /* its SHA-256, hashed by the work */
    gboolean exists_ok;             /* that being there is success */
    gboolean already;               /* exactly this package was there */
} StoreInstall;

static void store_install_free(StoreInstall *in)
{
    store_job_clear(&in->job);
    g_bytes_unref(in->package);
    g_free(in->hex);
    g_free(in);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(StoreInstall, store_install_free)

static void store_install_end(StoreJob *job);

static StoreInstall *store_install_new(VmaugStore *store, GBytes *package,
                                       const gchar *actor)
{
    StoreInstall *in = g_new0(StoreInstall, 1);

    in->job.store = store;
    in->job.end = store_install_end;
    in->job.actor = g_strdup(actor);
    in->package = g_bytes_ref(package);
    return in;
}

/* Under job_lock, on any thread (StoreJob). */
static void store_install_work(StoreJob *job)
{
    StoreInstall *in = (StoreInstall *)job;
    VmaugStore *store = job->store;
    g_autofree gchar *obj = NULL;
    GError *local = NULL;

    in->hex = vmaug_sha256_hex(g_bytes_get_data(in->package, NULL),
                               g_bytes_get_size(in->package));
    obj = store_object_path(store, in->hex);
    job->pkg = vmaug_package_verify(in->package, store->trust,
                                    store->policy->max_package_size, &local);
    if (job->pkg != NULL &&
        !store_admit(store, job->pkg->manifest->name,
                     job->pkg->manifest->version, in->hex, &local) &&
        g_error_matches(local, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_EXISTS) &&
        in->exists_ok) {
        /* Exactly this package again: what was asked for is there, so a
         * re-run (configuration management) succeeds, and says so. */
        store_audit_accept_note(store, job->actor, "install",
                                job->pkg->manifest->name,
                                job->pkg->manifest->version, in->hex,
                                job->pkg->signer->common_name,
                                local->message);
        g_clear_error(&local);
        in->already = TRUE;
        return;
    }
    if (job->pkg == NULL || local != NULL ||
        (!g_file_test(obj, G_FILE_TEST_IS_REGULAR) &&
         !vmaug_store_write_file(obj, g_bytes_get_data(in->package, NULL),
                                 g_bytes_get_size(in->package), &local)) ||
        !store_publish(store, job->pkg, in->hex, &local)) {
        job->error = local;
        return;
    }
    store_audit_accept_note(store, job->actor, "install",
                            job->pkg->manifest->name,
                            job->pkg->manifest->version, in->hex,
                            job->pkg->signer->common_name, NULL);
}

/* On the caller's thread (StoreJob's end): a refusal is audited here,
 * held back in a flood (store-audit.c). */
static void store_install_end(StoreJob *job)
{
    StoreInstall *in = (StoreInstall *)job;
    VmaugPackage *pkg = job->pkg;

    if (job->error == NULL) {
        return;
    }
    vmaug_store_audit(job->store, job->actor, "install",
                      pkg != NULL ? pkg->manifest->name : NULL,
                      pkg != NULL ? pkg->manifest->version : NULL, in->hex,
                      pkg != NULL ? pkg->signer->common_name : NULL,
                      job->error);
}

/* What the caller learns of an ended install. */
static VmaugManifest *store_install_result(StoreInstall *in,
                                           gboolean *already_stored,
                                           GError **error)
{
    if (already_stored != NULL) {
        *already_stored = in->already;
    }
    return store_job_result(&in->job, error);
}

VmaugManifest *vmaug_store_install_full(VmaugStore *store, GBytes *package,
                                        const gchar *actor,
                                        gboolean *already_stored,
                                        GError **error)
{
    g_autoptr(StoreInstall) in = store_install_new(store, package, actor);

    in->exists_ok = already_stored != NULL;
    store_job_run(&in->job, store_install_work);
    return store_install_result(in, already_stored, error);
}

void vmaug_store_install_async(VmaugStore *store, GBytes *package,
                               const gchar *actor,
                               GAsyncReadyCallback callback,
                               gpointer user_data)
{
    g_autoptr(GTask) task = g_task_new(NULL, NULL, callback, user_data);
    StoreInstall *in = store_install_new(store, package, actor);

    in->exists_ok = TRUE;
    g_task_set_source_tag(task, vmaug_store_install_async);
    g_task_set_task_data(task, in, (GDestroyNotify)store_install_free);
    store_job_push(store, task, &in->job, store_install_work);
}

VmaugManifest *vmaug_store_install_finish(VmaugStore *store,
                                          GAsyncResult *result,
                                          gboolean *already_stored,
                                          GError **error)
{
    StoreInstall *in = (StoreInstall *)store_job_finish(store, result, error);

    return in != NULL ? store_install_result(in, already_stored, error)
                      : NULL;
}

VmaugManifest *vmaug_store_install(VmaugStore *store, GBytes *package,
                                   const gchar *actor, GError **error)
{
    gboolean already;

    return vmaug_store_install_full(store, package, actor, &already, error);
}
