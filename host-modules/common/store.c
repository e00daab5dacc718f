/*
 * vmaugment host side: the module store (see store.h).
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "store.h"

typedef struct {
    guint64 id;
    guint8 sha256[32];
    gchar *hex;
    guint64 size;
    guint64 offset;
    gchar *name;
    gchar *version;
    int fd;
    gint64 last_active;             /* monotonic, microseconds */
} StoreUpload;

struct _VmaugStore {
    gchar *dir;
    VmaugTrustStore *trust;
    const VmaugPolicy *policy;
    int audit_fd;
    int lock_fd;                    /* "lock", held shared while open */
    GHashTable *uploads;            /* guint64 id -> StoreUpload */
    gint64 upload_idle_us;
};

static void store_upload_free(StoreUpload *u)
{
    if (u->fd >= 0) {
        close(u->fd);
    }
    g_free(u->hex);
    g_free(u->name);
    g_free(u->version);
    g_free(u);
}

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

static gboolean store_io_error(GError **error, const gchar *what,
                               const gchar *path)
{
    int saved = errno;

    g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_IO, "%s %s: %s",
                what, path, g_strerror(saved));
    return FALSE;
}

static void store_fsync_dir(const gchar *dir)
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

static gchar *store_hex(const guint8 *d, gsize len)
{
    GString *s = g_string_sized_new(len * 2);

    for (gsize i = 0; i < len; i++) {
        g_string_append_printf(s, "%02x", d[i]);
    }
    return g_string_free(s, FALSE);
}

static gboolean store_is_hex64(const gchar *s)
{
    if (strlen(s) != 64) {
        return FALSE;
    }
    for (guint i = 0; i < 64; i++) {
        if (!g_ascii_isdigit(s[i]) && !(s[i] >= 'a' && s[i] <= 'f')) {
            return FALSE;
        }
    }
    return TRUE;
}

static gchar *store_object_path(VmaugStore *store, const gchar *hex)
{
    g_autofree gchar *name = g_strconcat(hex, ".pkg", NULL);

    return g_build_filename(store->dir, "objects", name, NULL);
}

/* ---- Audit log ---- */

void vmaug_store_audit(VmaugStore *store, const gchar *actor,
                       const gchar *action, const gchar *name,
                       const gchar *version, const gchar *sha256,
                       const gchar *signer, const GError *error)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(JsonNode) root = NULL;
    g_autoptr(GDateTime) now = g_date_time_new_now_utc();
    g_autofree gchar *ts = g_date_time_format_iso8601(now);
    g_autofree gchar *line = NULL;
    gsize len;

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "time");
    json_builder_add_string_value(b, ts);
    json_builder_set_member_name(b, "actor");
    json_builder_add_string_value(b, actor != NULL ? actor : "");
    json_builder_set_member_name(b, "action");
    json_builder_add_string_value(b, action);
    json_builder_set_member_name(b, "module");
    json_builder_add_string_value(b, name != NULL ? name : "");
    json_builder_set_member_name(b, "version");
    json_builder_add_string_value(b, version != NULL ? version : "");
    json_builder_set_member_name(b, "sha256");
    json_builder_add_string_value(b, sha256 != NULL ? sha256 : "");
    json_builder_set_member_name(b, "signer");
    json_builder_add_string_value(b, signer != NULL ? signer : "");
    json_builder_set_member_name(b, "decision");
    json_builder_add_string_value(b, error == NULL ? "accept" : "refuse");
    json_builder_set_member_name(b, "reason");
    json_builder_add_string_value(b, error != NULL ? error->message : "");
    json_builder_end_object(b);
    root = json_builder_get_root(b);
    json_generator_set_root(gen, root);
    line = json_generator_to_data(gen, &len);
    line = g_realloc(line, len + 2);
    line[len++] = '\n';
    line[len] = '\0';

    if (error != NULL) {
        g_message("refused %s %s %s: %s", action, name != NULL ? name : "",
                  version != NULL ? version : "", error->message);
    } else {
        g_info("accepted %s %s %s", action, name != NULL ? name : "",
               version != NULL ? version : "");
    }
    /*
     * One write() with O_APPEND: records never interleave or overwrite.
     * Decisions that change the store or refuse something are synced;
     * routine loads are not, to keep them fast (a crash loses at most the
     * record of loads that left no trace).
     */
    if (store->audit_fd < 0 ||
        write(store->audit_fd, line, len) != (ssize_t)len ||
        ((error != NULL || g_strcmp0(action, "load") != 0) &&
         fdatasync(store->audit_fd) < 0)) {
        g_warning("audit log write failed: %s", g_strerror(errno));
    }
}

static gboolean store_open_audit(VmaugStore *store, GError **error)
{
    g_autofree gchar *path = g_build_filename(store->dir, "audit.log", NULL);
    int flags = 0;

    store->audit_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC |
                           O_NOFOLLOW, 0640);
    if (store->audit_fd < 0) {
        return store_io_error(error, "cannot open", path);
    }
    /* Where the file system and our privileges allow, make the log
     * append-only for everyone, us included (chattr +a). */
    if (ioctl(store->audit_fd, FS_IOC_GETFLAGS, &flags) == 0 &&
        !(flags & FS_APPEND_FL)) {
        flags |= FS_APPEND_FL;
        if (ioctl(store->audit_fd, FS_IOC_SETFLAGS, &flags) < 0) {
            g_debug("audit log stays without FS_APPEND_FL: %s",
                    g_strerror(errno));
        }
    }
    return TRUE;
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
                !store_is_hex64(g_strstrip(hex))) {
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
            !store_is_hex64(hex)) {
            g_autofree gchar *p = g_build_filename(odir, n, NULL);
            g_unlink(p);
        }
    }
}

static gboolean store_load_upload(VmaugStore *store, const gchar *hex)
{
    g_autofree gchar *jname = g_strconcat(hex, ".json", NULL);
    g_autofree gchar *pname = g_strconcat(hex, ".part", NULL);
    g_autofree gchar *jpath = g_build_filename(store->dir, "uploads", jname,
                                               NULL);
    g_autofree gchar *ppath = g_build_filename(store->dir, "uploads", pname,
                                               NULL);
    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    g_autoptr(GBytes) blob = NULL;
    JsonObject *o;
    JsonNode *root;
    StoreUpload *u;
    struct stat st;
    gint64 size, id;

    blob = vmaug_trust_read_file(jpath, 4096, NULL);
    if (blob == NULL ||
        !json_parser_load_from_data(parser, g_bytes_get_data(blob, NULL),
                                    g_bytes_get_size(blob), NULL)) {
        return FALSE;
    }
    root = json_parser_get_root(parser);
    if (root == NULL || !JSON_NODE_HOLDS_OBJECT(root)) {
        return FALSE;
    }
    o = json_node_get_object(root);
    if (json_object_get_int_member_with_default(o, "size", -1) <= 0 ||
        json_object_get_string_member_with_default(o, "name", NULL) == NULL ||
        json_object_get_string_member_with_default(o, "version",
                                                   NULL) == NULL) {
        return FALSE;
    }
    size = json_object_get_int_member(o, "size");
    id = json_object_get_int_member_with_default(o, "id", 0);
    if (id <= 0 || (guint64)size > store->policy->max_package_size ||
        !vmaug_name_is_valid(json_object_get_string_member(o, "name")) ||
        !vmaug_version_is_valid(json_object_get_string_member(o,
                                                              "version"))) {
        return FALSE;
    }
    u = g_new0(StoreUpload, 1);
    u->fd = open(ppath, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (u->fd < 0 || fstat(u->fd, &st) < 0 || st.st_size > size ||
        g_hash_table_size(store->uploads) >= VMAUG_STORE_MAX_UPLOADS) {
        store_upload_free(u);
        return FALSE;
    }
    u->id = id;
    u->hex = g_strdup(hex);
    for (guint i = 0; i < 32; i++) {
        u->sha256[i] = g_ascii_xdigit_value(hex[2 * i]) << 4 |
                       g_ascii_xdigit_value(hex[2 * i + 1]);
    }
    u->size = size;
    /* What reached the disk is where the guest resumes; the hash at
     * commit catches anything a crash garbled. */
    u->offset = st.st_size;
    u->name = g_strdup(json_object_get_string_member(o, "name"));
    u->version = g_strdup(json_object_get_string_member(o, "version"));
    u->last_active = g_get_monotonic_time();
    g_hash_table_insert(store->uploads, &u->id, u);
    return TRUE;
}

static void store_repair_uploads(VmaugStore *store)
{
    g_autofree gchar *udir = g_build_filename(store->dir, "uploads", NULL);
    g_autoptr(GDir) d = g_dir_open(udir, 0, NULL);
    const gchar *n;

    while (d != NULL && (n = g_dir_read_name(d)) != NULL) {
        g_autofree gchar *hex = g_strndup(n, 64);
        g_autofree gchar *p = g_build_filename(udir, n, NULL);

        if (g_str_has_suffix(n, ".json") && strlen(n) == 69 &&
            store_is_hex64(hex) && store_load_upload(store, hex)) {
            continue;
        }
        if (g_str_has_suffix(n, ".part") && strlen(n) == 69 &&
            store_is_hex64(hex)) {
            g_autofree gchar *j = g_strconcat(udir, "/", hex, ".json", NULL);

            if (g_file_test(j, G_FILE_TEST_EXISTS)) {
                continue;   /* decided by its .json */
            }
        }
        g_unlink(p);
    }
    /* A .part whose .json was refused above still lingers: drop it. */
    g_clear_pointer(&d, g_dir_close);
    d = g_dir_open(udir, 0, NULL);
    while (d != NULL && (n = g_dir_read_name(d)) != NULL) {
        g_autofree gchar *hex = g_strndup(n, 64);
        gboolean known = FALSE;
        GHashTableIter it;
        StoreUpload *u;

        g_hash_table_iter_init(&it, store->uploads);
        while (g_hash_table_iter_next(&it, NULL, (gpointer *)&u)) {
            known |= g_strcmp0(u->hex, hex) == 0;
        }
        if (!known) {
            g_autofree gchar *p = g_build_filename(udir, n, NULL);
            g_unlink(p);
        }
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
        store_repair_uploads(store);
    }
    /* From exclusive, or waiting out another's repair. */
    if (flock(store->lock_fd, LOCK_SH) < 0) {
        store_io_error(error, "cannot lock", path);
        return FALSE;
    }
    return TRUE;
}

VmaugStore *vmaug_store_open(const gchar *dir, VmaugTrustStore *trust,
                             const VmaugPolicy *policy, GError **error)
{
    g_autoptr(VmaugStore) store = g_new0(VmaugStore, 1);
    static const gchar *const subdirs[] = {
        "objects", "modules", "uploads", "config", "state", "spool", NULL
    };

    store->dir = g_canonicalize_filename(dir, NULL);
    store->trust = trust;
    store->policy = policy;
    store->audit_fd = -1;
    store->lock_fd = -1;
    store->upload_idle_us = (gint64)VMAUG_STORE_UPLOAD_IDLE_S *
                            G_USEC_PER_SEC;
    store->uploads = g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL,
                                           (GDestroyNotify)store_upload_free);
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
    if (!store_open_audit(store, error) || !store_lock(store, error)) {
        return NULL;
    }
    return g_steal_pointer(&store);
}

void vmaug_store_free(VmaugStore *store)
{
    if (store == NULL) {
        return;
    }
    if (store->audit_fd >= 0) {
        close(store->audit_fd);
    }
    if (store->lock_fd >= 0) {
        close(store->lock_fd);
    }
    g_hash_table_unref(store->uploads);
    g_free(store->dir);
    g_free(store);
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

VmaugStoreEntry *vmaug_store_lookup(VmaugStore *store, const gchar *name,
                                    const gchar *version, GError **error)
{
    g_autoptr(VmaugStoreEntry) e = g_new0(VmaugStoreEntry, 1);
    g_autofree gchar *ref = NULL;

    if (!vmaug_name_is_valid(name) ||
        (version != NULL && *version != '\0' &&
         !vmaug_version_is_valid(version))) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "invalid module name or version");
        return NULL;
    }
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
        e->version = g_strdup(version);
    }
    ref = g_build_filename(store->dir, "modules", name, e->version, NULL);
    e->sha256 = store_read_small(ref);
    if (e->sha256 == NULL || !store_is_hex64(e->sha256)) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_NOT_FOUND,
                    "no module %s %s", name, e->version);
        return NULL;
    }
    return g_steal_pointer(&e);
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
        g_autofree gchar *hex = g_compute_checksum_for_bytes(
            G_CHECKSUM_SHA256, file);

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
static gboolean store_admit(VmaugStore *store, const gchar *name,
                            const gchar *version, const gchar *hex,
                            GError **error)
{
    g_autofree gchar *highest = store_highest(store, name);
    g_autofree gchar *ref = g_build_filename(store->dir, "modules", name,
                                             version, NULL);
    g_autofree gchar *have = store_read_small(ref);

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
static gboolean store_publish(VmaugStore *store, VmaugPackage *pkg,
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

VmaugManifest *vmaug_store_install(VmaugStore *store, GBytes *package,
                                   const gchar *actor, GError **error)
{
    g_autoptr(VmaugPackage) pkg = NULL;
    g_autoptr(GError) local = NULL;
    g_autofree gchar *hex = g_compute_checksum_for_bytes(G_CHECKSUM_SHA256,
                                                         package);
    g_autofree gchar *obj = store_object_path(store, hex);
    VmaugManifest *m;

    pkg = vmaug_package_verify(package, store->trust,
                               store->policy->max_package_size, &local);
    if (pkg == NULL ||
        !store_admit(store, pkg->manifest->name, pkg->manifest->version, hex,
                     &local) ||
        (!g_file_test(obj, G_FILE_TEST_IS_REGULAR) &&
         !vmaug_store_write_file(obj, g_bytes_get_data(package, NULL),
                             g_bytes_get_size(package), &local)) ||
        !store_publish(store, pkg, hex, &local)) {
        vmaug_store_audit(store, actor, "install",
                          pkg != NULL ? pkg->manifest->name : NULL,
                          pkg != NULL ? pkg->manifest->version : NULL, hex,
                          pkg != NULL ? pkg->signer->common_name : NULL,
                          local);
        g_propagate_error(error, g_steal_pointer(&local));
        return NULL;
    }
    vmaug_store_audit(store, actor, "install", pkg->manifest->name,
                      pkg->manifest->version, hex, pkg->signer->common_name,
                      NULL);
    m = g_steal_pointer(&pkg->manifest);
    return m;
}

/* ---- Uploads ---- */

static StoreUpload *store_find_upload(VmaugStore *store, guint64 id,
                                      GError **error)
{
    StoreUpload *u = g_hash_table_lookup(store->uploads, &id);

    if (u == NULL) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_NOT_FOUND,
                    "no upload %" G_GUINT64_FORMAT, id);
    }
    return u;
}

static void store_drop_upload(VmaugStore *store, StoreUpload *u)
{
    g_autofree gchar *j = g_strconcat(store->dir, "/uploads/", u->hex,
                                      ".json", NULL);
    g_autofree gchar *p = g_strconcat(store->dir, "/uploads/", u->hex,
                                      ".part", NULL);

    /* The description goes first: a .part without it is removed at the
     * next start, a .json without its .part too. */
    g_unlink(j);
    g_unlink(p);
    g_hash_table_remove(store->uploads, &u->id);
}

void vmaug_store_set_upload_idle(VmaugStore *store, guint seconds)
{
    store->upload_idle_us = (gint64)seconds * G_USEC_PER_SEC;
}

/*
 * All upload slots taken: free the one idle longest, if it has been idle
 * long enough.  Unfinished uploads survive restarts, so without this a
 * guest that never finishes could keep every other guest from uploading.
 */
static gboolean store_expire_upload(VmaugStore *store, const gchar *actor)
{
    GHashTableIter it;
    StoreUpload *u, *oldest = NULL;

    g_hash_table_iter_init(&it, store->uploads);
    while (g_hash_table_iter_next(&it, NULL, (gpointer *)&u)) {
        if (oldest == NULL || u->last_active < oldest->last_active) {
            oldest = u;
        }
    }
    if (oldest == NULL ||
        g_get_monotonic_time() - oldest->last_active < store->upload_idle_us) {
        return FALSE;
    }
    vmaug_store_audit(store, actor, "upload-expire", oldest->name,
                      oldest->version, oldest->hex, NULL, NULL);
    store_drop_upload(store, oldest);
    return TRUE;
}

gboolean vmaug_store_upload_begin(VmaugStore *store, guint64 size,
                                  const guint8 sha256[32], const gchar *name,
                                  const gchar *version, const gchar *actor,
                                  guint64 *upload_id, guint64 *offset,
                                  GError **error)
{
    g_autofree gchar *hex = store_hex(sha256, 32);
    g_autofree gchar *obj = store_object_path(store, hex);
    g_autoptr(GError) local = NULL;
    g_autofree gchar *json = NULL;
    g_autofree gchar *ppath = NULL;
    g_autofree gchar *jpath = NULL;
    GHashTableIter it;
    StoreUpload *u;

    /* Resuming: same content announced again. */
    g_hash_table_iter_init(&it, store->uploads);
    while (g_hash_table_iter_next(&it, NULL, (gpointer *)&u)) {
        if (memcmp(u->sha256, sha256, 32) == 0 && u->size == size &&
            g_strcmp0(u->name, name) == 0 &&
            g_strcmp0(u->version, version) == 0) {
            *upload_id = u->id;
            *offset = u->offset;
            u->last_active = g_get_monotonic_time();
            return TRUE;
        }
    }
    /* Every check that needs no data happens before we accept a byte. */
    if (size == 0 || size > store->policy->max_package_size ||
        size > VMAUG_MAX_UPLOAD_SIZE) {
        g_set_error(&local, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_TOO_BIG,
                    "upload of %" G_GUINT64_FORMAT " bytes (1..%"
                    G_GUINT64_FORMAT " allowed)", size,
                    store->policy->max_package_size);
    } else if (!vmaug_name_is_valid(name) ||
               !vmaug_version_is_valid(version)) {
        g_set_error(&local, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "invalid module name or version");
    } else if (g_file_test(obj, G_FILE_TEST_EXISTS)) {
        g_set_error(&local, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_EXISTS,
                    "this package is already stored");
    } else if (!store_admit(store, name, version, NULL, &local)) {
        /* local set */
    } else if (g_hash_table_size(store->uploads) >= VMAUG_STORE_MAX_UPLOADS &&
               !store_expire_upload(store, actor)) {
        g_set_error(&local, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_BUSY,
                    "too many unfinished uploads");
    }
    if (local != NULL) {
        vmaug_store_audit(store, actor, "upload-begin", name, version, hex,
                          NULL, local);
        g_propagate_error(error, g_steal_pointer(&local));
        return FALSE;
    }

    u = g_new0(StoreUpload, 1);
    do {
        u->id = g_random_int() | (guint64)(g_random_int() & 0x7fffffff) << 32;
    } while (u->id == 0 || g_hash_table_contains(store->uploads, &u->id));
    memcpy(u->sha256, sha256, 32);
    u->hex = g_strdup(hex);
    u->size = size;
    u->name = g_strdup(name);
    u->version = g_strdup(version);
    u->last_active = g_get_monotonic_time();
    ppath = g_strconcat(store->dir, "/uploads/", hex, ".part", NULL);
    jpath = g_strconcat(store->dir, "/uploads/", hex, ".json", NULL);
    u->fd = open(ppath, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
                 0640);
    if (u->fd < 0) {
        store_io_error(error, "cannot create", ppath);
        store_upload_free(u);
        return FALSE;
    }
    json = g_strdup_printf("{\"id\": %" G_GINT64_FORMAT ", \"size\": %"
                           G_GUINT64_FORMAT ", \"name\": \"%s\", "
                           "\"version\": \"%s\"}\n", (gint64)u->id, size,
                           name, version);
    if (!vmaug_store_write_file(jpath, json, strlen(json), error)) {
        g_unlink(ppath);
        store_upload_free(u);
        return FALSE;
    }
    g_hash_table_insert(store->uploads, &u->id, u);
    *upload_id = u->id;
    *offset = 0;
    return TRUE;
}

gboolean vmaug_store_upload_chunk(VmaugStore *store, guint64 upload_id,
                                  guint64 offset, const guint8 *data,
                                  gsize len, guint64 *new_offset,
                                  GError **error)
{
    StoreUpload *u = store_find_upload(store, upload_id, error);
    gsize done = 0;

    if (u == NULL) {
        return FALSE;
    }
    if (offset != u->offset) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "chunk at %" G_GUINT64_FORMAT ", expected %"
                    G_GUINT64_FORMAT, offset, u->offset);
        return FALSE;
    }
    if (len == 0 || len > VMAUG_CHUNK_MAX_DATA || len > u->size - offset) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_TOO_BIG,
                    "chunk of %" G_GSIZE_FORMAT " bytes does not fit",
                    len);
        return FALSE;
    }
    while (done < len) {
        ssize_t n = pwrite(u->fd, data + done, len - done, offset + done);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            /* Leave the upload where it was: the file may hold a partial
             * chunk, but it is truncated back before the retry. */
            if (ftruncate(u->fd, u->offset) < 0) {
                g_debug("truncate failed: %s", g_strerror(errno));
            }
            return store_io_error(error, "cannot write upload", u->hex);
        }
        done += n;
    }
    u->offset += len;
    u->last_active = g_get_monotonic_time();
    *new_offset = u->offset;
    return TRUE;
}

VmaugManifest *vmaug_store_upload_commit(VmaugStore *store,
                                         guint64 upload_id,
                                         const gchar *actor, GError **error)
{
    StoreUpload *u = store_find_upload(store, upload_id, error);
    g_autoptr(GError) local = NULL;
    g_autoptr(VmaugPackage) pkg = NULL;
    g_autoptr(GBytes) file = NULL;
    g_autofree gchar *ppath = NULL;
    g_autofree gchar *obj = NULL;
    g_autofree gchar *hex = NULL;
    g_autofree gchar *name = NULL;
    g_autofree gchar *version = NULL;
    void *map = MAP_FAILED;

    if (u == NULL) {
        return NULL;
    }
    if (u->offset != u->size) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "upload incomplete: %" G_GUINT64_FORMAT " of %"
                    G_GUINT64_FORMAT " bytes", u->offset, u->size);
        return NULL;
    }
    name = g_strdup(u->name);
    version = g_strdup(u->version);
    hex = g_strdup(u->hex);
    ppath = g_strconcat(store->dir, "/uploads/", u->hex, ".part", NULL);
    obj = store_object_path(store, u->hex);
    if (fsync(u->fd) < 0) {
        store_io_error(&local, "cannot sync", ppath);
    } else {
        map = mmap(NULL, u->size, PROT_READ, MAP_PRIVATE, u->fd, 0);
        if (map == MAP_FAILED) {
            store_io_error(&local, "cannot map", ppath);
        }
    }
    if (local == NULL) {
        g_autofree gchar *got = NULL;

        file = g_bytes_new_static(map, u->size);
        got = g_compute_checksum_for_bytes(G_CHECKSUM_SHA256, file);
        if (g_strcmp0(got, u->hex) != 0) {
            g_set_error(&local, VMAUG_HOST_ERROR,
                        VMAUG_HOST_ERROR_HASH_MISMATCH,
                        "upload SHA-256 %s differs from the announced one",
                        got);
        }
    }
    if (local == NULL) {
        pkg = vmaug_package_verify(file, store->trust,
                                   store->policy->max_package_size, &local);
    }
    if (pkg != NULL && (g_strcmp0(pkg->manifest->name, u->name) != 0 ||
                        g_strcmp0(pkg->manifest->version, u->version) != 0)) {
        g_set_error(&local, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_DENIED,
                    "package is %s %s, the upload announced %s %s",
                    pkg->manifest->name, pkg->manifest->version, u->name,
                    u->version);
    }
    if (local == NULL) {
        store_admit(store, u->name, u->version, u->hex, &local);
    }
    /* The verified file becomes the object by rename: no copy, no window
     * in which a half-written object is visible. */
    if (local == NULL && rename(ppath, obj) < 0) {
        store_io_error(&local, "cannot store", obj);
    }
    if (local == NULL) {
        g_autofree gchar *odir = g_path_get_dirname(obj);

        store_fsync_dir(odir);
        store_publish(store, pkg, u->hex, &local);
    }
    g_clear_pointer(&file, g_bytes_unref);
    if (map != MAP_FAILED) {
        munmap(map, u->size);
    }
    /* Accepted or refused, this upload is finished: a refused one would
     * be refused again. */
    store_drop_upload(store, u);
    vmaug_store_audit(store, actor, "upload-commit", name, version, hex,
                      pkg != NULL ? pkg->signer->common_name : NULL, local);
    if (local != NULL) {
        g_propagate_error(error, g_steal_pointer(&local));
        return NULL;
    }
    return g_steal_pointer(&pkg->manifest);
}

gboolean vmaug_store_upload_abort(VmaugStore *store, guint64 upload_id,
                                  const gchar *actor, GError **error)
{
    StoreUpload *u = store_find_upload(store, upload_id, error);

    if (u == NULL) {
        return FALSE;
    }
    vmaug_store_audit(store, actor, "upload-abort", u->name, u->version,
                      u->hex, NULL, NULL);
    store_drop_upload(store, u);
    return TRUE;
}
