/*
 * vmaugment host side: the store's upload sessions (see store.h).
 *
 * An unfinished upload is uploads/<id>.part (the bytes so far) and
 * uploads/<id>.json (its owner, size, hash, name and version), named by
 * its id: two uploads never share a file, whatever they announce.  It
 * belongs to the VM that began it.  At commit its bytes, exactly the
 * announced size of them, are copied into a new file of the object
 * directory under a name no one else knows, hashed and verified there,
 * and that copy becomes the object: nothing anyone can still write to
 * (the .part, a descriptor on it) is ever the stored object, and nothing
 * is mapped that someone else could shrink.
 *
 * A commit's reading, hashing, verifying and syncing take as long as the
 * package is large and the host's disk is busy (seconds, when other
 * writers fill the journal), and the helper serves every VM from one
 * thread: that part runs on the store's commit thread, and only the
 * session bookkeeping before and after it on the caller's.  Meanwhile the
 * upload is neither fed, aborted, expired, released nor committed again.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define _GNU_SOURCE         /* copy_file_range() */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "store-private.h"

typedef struct {
    guint64 id;
    gchar *owner;
    guint8 sha256[32];
    gchar *hex;
    guint64 size;
    guint64 offset;
    gchar *name;
    gchar *version;
    int fd;
    gint64 last_active;             /* store clock: began or took a chunk */
    gboolean committing;            /* its commit runs (StoreCommit) */
    /* A chunk answered before it was written could not be written: said
     * to the next chunk or commit (vmaug_store_upload_chunk_write()). */
    gchar *write_error;
} StoreUpload;

static void store_upload_free(StoreUpload *u)
{
    if (u->fd >= 0) {
        close(u->fd);
    }
    g_free(u->owner);
    g_free(u->write_error);
    g_free(u->hex);
    g_free(u->name);
    g_free(u->version);
    g_free(u);
}

void store_uploads_init(VmaugStore *store)
{
    store->uploads = g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL,
                                           (GDestroyNotify)store_upload_free);
    store->upload_limits.slots = VMAUG_STORE_UPLOAD_SLOTS;
    store->upload_limits.bytes = VMAUG_STORE_UPLOAD_BYTES;
    store->upload_limits.idle_us = (gint64)VMAUG_STORE_UPLOAD_IDLE_S *
                                   G_USEC_PER_SEC;
}

void vmaug_store_set_upload_limits(VmaugStore *store,
                                   const VmaugUploadLimits *limits)
{
    store->upload_limits = *limits;
}

static gboolean store_owner_is_valid(const gchar *owner)
{
    gsize len = owner != NULL ? strlen(owner) : 0;

    if (len == 0 || len > 128) {
        return FALSE;
    }
    for (gsize i = 0; i < len; i++) {
        if (!g_ascii_isalnum(owner[i]) && owner[i] != '.' &&
            owner[i] != '_' && owner[i] != '-') {
            return FALSE;
        }
    }
    return TRUE;
}

static gchar *store_upload_path(VmaugStore *store, guint64 id,
                                const gchar *suffix)
{
    g_autofree gchar *name = g_strdup_printf("%016" G_GINT64_MODIFIER "x%s",
                                             id, suffix);

    return g_build_filename(store->dir, "uploads", name, NULL);
}

/* ---- Taking over unfinished uploads at start ---- */

static gboolean store_load_upload(VmaugStore *store, guint64 id)
{
    g_autofree gchar *jpath = store_upload_path(store, id, ".json");
    g_autofree gchar *ppath = store_upload_path(store, id, ".part");
    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    g_autoptr(GBytes) blob = NULL;
    g_autofree gchar *hex = NULL;
    JsonObject *o;
    JsonNode *root;
    StoreUpload *u;
    struct stat st;
    const gchar *owner, *name, *version, *sha;
    gint64 size;

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
    owner = json_object_get_string_member_with_default(o, "owner", NULL);
    name = json_object_get_string_member_with_default(o, "name", NULL);
    version = json_object_get_string_member_with_default(o, "version", NULL);
    sha = json_object_get_string_member_with_default(o, "sha256", NULL);
    size = json_object_get_int_member_with_default(o, "size", -1);
    if (size <= 0 || (guint64)size > store->policy->max_package_size ||
        (guint64)json_object_get_int_member_with_default(o, "id", 0) != id ||
        !store_owner_is_valid(owner) ||
        /* A connection's upload: the connection died with the helper,
         * nobody can resume it, and it would keep its package busy. */
        g_str_has_prefix(owner, VMAUG_STORE_EPHEMERAL_VM) || sha == NULL ||
        !vmaug_hex_is_sha256(sha) || !vmaug_name_is_valid(name) ||
        !vmaug_version_is_valid(version)) {
        return FALSE;
    }
    /* One unfinished upload per package, as at BEGIN. */
    hex = g_strdup(sha);
    {
        GHashTableIter it;
        StoreUpload *other;

        g_hash_table_iter_init(&it, store->uploads);
        while (g_hash_table_iter_next(&it, NULL, (gpointer *)&other)) {
            if (g_strcmp0(other->hex, hex) == 0) {
                return FALSE;
            }
        }
    }
    u = g_new0(StoreUpload, 1);
    u->fd = open(ppath, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (u->fd < 0 || fstat(u->fd, &st) < 0 || !S_ISREG(st.st_mode) ||
        st.st_size > size) {
        store_upload_free(u);
        return FALSE;
    }
    u->id = id;
    u->owner = g_strdup(owner);
    u->hex = g_steal_pointer(&hex);
    for (guint i = 0; i < 32; i++) {
        u->sha256[i] = g_ascii_xdigit_value(u->hex[2 * i]) << 4 |
                       g_ascii_xdigit_value(u->hex[2 * i + 1]);
    }
    u->size = size;
    /* What reached the disk is where the guest resumes; the hash at
     * commit catches anything a crash garbled. */
    u->offset = st.st_size;
    u->name = g_strdup(name);
    u->version = g_strdup(version);
    u->last_active = store_now(store);
    g_hash_table_insert(store->uploads, &u->id, u);
    return TRUE;
}

/* uploads/<16 hex digits><suffix>: the id, else 0. */
static guint64 store_upload_file_id(const gchar *n, const gchar *suffix)
{
    guint64 id = 0;

    if (strlen(n) != 16 + strlen(suffix) || !g_str_has_suffix(n, suffix)) {
        return 0;
    }
    for (guint i = 0; i < 16; i++) {
        gint v = g_ascii_xdigit_value(n[i]);

        if (v < 0 || g_ascii_isupper(n[i])) {
            return 0;
        }
        id = id << 4 | (guint64)v;
    }
    return id;
}

void store_uploads_repair(VmaugStore *store)
{
    g_autofree gchar *udir = g_build_filename(store->dir, "uploads", NULL);
    g_autoptr(GDir) d = g_dir_open(udir, 0, NULL);
    const gchar *n;

    while (d != NULL && (n = g_dir_read_name(d)) != NULL) {
        guint64 id = store_upload_file_id(n, ".json");

        if (id != 0 && store_load_upload(store, id)) {
            continue;
        }
        if (store_upload_file_id(n, ".part") != 0) {
            continue;   /* decided by its .json, below */
        }
        {
            g_autofree gchar *p = g_build_filename(udir, n, NULL);

            g_unlink(p);
        }
    }
    /* A .part whose .json was refused or is missing: drop it. */
    g_clear_pointer(&d, g_dir_close);
    d = g_dir_open(udir, 0, NULL);
    while (d != NULL && (n = g_dir_read_name(d)) != NULL) {
        guint64 id = store_upload_file_id(n, ".part");

        if (id == 0) {
            id = store_upload_file_id(n, ".json");
        }
        if (!g_hash_table_contains(store->uploads, &id)) {
            g_autofree gchar *p = g_build_filename(udir, n, NULL);

            g_unlink(p);
        }
    }
}

/* ---- Sessions ---- */

static void store_drop_upload(VmaugStore *store, StoreUpload *u)
{
    g_autofree gchar *j = store_upload_path(store, u->id, ".json");
    g_autofree gchar *p = store_upload_path(store, u->id, ".part");

    /* The description goes first: a .part without it is removed at the
     * next start, a .json without its .part too. */
    g_unlink(j);
    g_unlink(p);
    g_hash_table_remove(store->uploads, &u->id);
}

/*
 * Uploads that took no chunk for the idle time are dropped (audited), so
 * that abandoned ones give their owner's slots and the disk back.  Only
 * progress counts: announcing an upload again does not keep it alive.
 */
static void store_expire_uploads(VmaugStore *store)
{
    gint64 now = store_now(store);
    GHashTableIter it;
    StoreUpload *u;
    g_autoptr(GPtrArray) idle = g_ptr_array_new();

    g_hash_table_iter_init(&it, store->uploads);
    while (g_hash_table_iter_next(&it, NULL, (gpointer *)&u)) {
        if (!u->committing &&
            now - u->last_active >= store->upload_limits.idle_us) {
            g_ptr_array_add(idle, u);
        }
    }
    for (guint i = 0; i < idle->len; i++) {
        u = g_ptr_array_index(idle, i);
        vmaug_store_audit(store, "store", "upload-expire", u->name,
                          u->version, u->hex, NULL, NULL);
        store_drop_upload(store, u);
    }
}

/* Another owner's upload is as unknown as one that never was, and so is
 * one that went idle, whether or not an announcement dropped it yet. */
static StoreUpload *store_find_upload(VmaugStore *store, const gchar *owner,
                                      guint64 id, GError **error)
{
    StoreUpload *u;

    store_expire_uploads(store);
    u = g_hash_table_lookup(store->uploads, &id);
    if (u == NULL || g_strcmp0(u->owner, owner) != 0) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_NOT_FOUND,
                    "no upload %" G_GUINT64_FORMAT, id);
        return NULL;
    }
    if (u->committing) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_BUSY,
                    "upload %" G_GUINT64_FORMAT " is being committed", id);
        return NULL;
    }
    return u;
}

void vmaug_store_upload_usage(VmaugStore *store, const gchar *owner,
                              guint *count, guint64 *bytes)
{
    GHashTableIter it;
    StoreUpload *u;

    *count = 0;
    *bytes = 0;
    g_hash_table_iter_init(&it, store->uploads);
    while (g_hash_table_iter_next(&it, NULL, (gpointer *)&u)) {
        if (g_strcmp0(u->owner, owner) == 0) {
            (*count)++;
            *bytes += u->size;
        }
    }
}

/* Checks of an announcement that need no data; sets @error. */
static gboolean store_upload_admit(VmaugStore *store, const gchar *owner,
                                   guint64 size, const gchar *hex,
                                   const gchar *name, const gchar *version,
                                   GError **error)
{
    g_autofree gchar *obj = store_object_path(store, hex);
    guint64 quota = MAX(store->upload_limits.bytes,
                        store->policy->max_package_size);
    GHashTableIter it;
    StoreUpload *u;
    guint count;
    guint64 bytes;

    if (size == 0 || size > store->policy->max_package_size ||
        size > VMAUG_MAX_UPLOAD_SIZE) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_TOO_BIG,
                    "upload of %" G_GUINT64_FORMAT " bytes (1..%"
                    G_GUINT64_FORMAT " allowed)", size,
                    store->policy->max_package_size);
        return FALSE;
    }
    if (!vmaug_name_is_valid(name) || !vmaug_version_is_valid(version)) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "invalid module name or version");
        return FALSE;
    }
    if (g_file_test(obj, G_FILE_TEST_EXISTS)) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_EXISTS,
                    "this package is already stored");
        return FALSE;
    }
    /* One package, one unfinished upload: two sessions never feed the
     * same bytes, whoever they are. */
    g_hash_table_iter_init(&it, store->uploads);
    while (g_hash_table_iter_next(&it, NULL, (gpointer *)&u)) {
        if (g_strcmp0(u->hex, hex) != 0) {
            continue;
        }
        if (g_strcmp0(u->owner, owner) != 0) {
            g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_BUSY,
                        "this package is being uploaded by another VM");
        } else {
            g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_BUSY,
                        "upload %" G_GUINT64_FORMAT " of this package, "
                        "announced as %s %s of %" G_GUINT64_FORMAT
                        " bytes, is unfinished; abort it first", u->id,
                        u->name, u->version, u->size);
        }
        return FALSE;
    }
    if (!store_admit(store, name, version, NULL, error)) {
        return FALSE;
    }
    vmaug_store_upload_usage(store, owner, &count, &bytes);
    if (count >= store->upload_limits.slots) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_BUSY,
                    "this VM has %u unfinished uploads, the most it may "
                    "have", count);
        return FALSE;
    }
    if (bytes + size > quota) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_TOO_BIG,
                    "this VM's unfinished uploads would hold %"
                    G_GUINT64_FORMAT " bytes, more than the %"
                    G_GUINT64_FORMAT " allowed", bytes + size, quota);
        return FALSE;
    }
    return TRUE;
}

gboolean vmaug_store_upload_begin(VmaugStore *store, const gchar *owner,
                                  guint64 size, const guint8 sha256[32],
                                  const gchar *name, const gchar *version,
                                  const gchar *actor, guint64 *upload_id,
                                  guint64 *offset, GError **error)
{
    g_autofree gchar *hex = vmaug_hex_encode(sha256, 32);
    g_autoptr(GError) local = NULL;
    g_autofree gchar *json = NULL;
    g_autofree gchar *ppath = NULL;
    g_autofree gchar *jpath = NULL;
    GHashTableIter it;
    StoreUpload *u;

    if (!store_owner_is_valid(owner)) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "invalid upload owner");
        return FALSE;
    }
    store_expire_uploads(store);
    /* Resuming: the same owner announces the same content again. */
    g_hash_table_iter_init(&it, store->uploads);
    while (g_hash_table_iter_next(&it, NULL, (gpointer *)&u)) {
        if (g_strcmp0(u->owner, owner) == 0 &&
            memcmp(u->sha256, sha256, 32) == 0 && u->size == size &&
            g_strcmp0(u->name, name) == 0 &&
            g_strcmp0(u->version, version) == 0) {
            if (u->committing) {
                g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_BUSY,
                            "upload %" G_GUINT64_FORMAT " is being committed",
                            u->id);
                return FALSE;
            }
            *upload_id = u->id;
            *offset = u->offset;
            return TRUE;
        }
    }
    /* Every check that needs no data happens before we accept a byte. */
    if (!store_upload_admit(store, owner, size, hex, name, version,
                            &local)) {
        vmaug_store_audit(store, actor, "upload-begin", name, version, hex,
                          NULL, local);
        g_propagate_error(error, g_steal_pointer(&local));
        return FALSE;
    }

    u = g_new0(StoreUpload, 1);
    do {
        u->id = g_random_int() | (guint64)(g_random_int() & 0x7fffffff) << 32;
    } while (u->id == 0 || g_hash_table_contains(store->uploads, &u->id));
    u->owner = g_strdup(owner);
    memcpy(u->sha256, sha256, 32);
    u->hex = g_strdup(hex);
    u->size = size;
    u->name = g_strdup(name);
    u->version = g_strdup(version);
    u->last_active = store_now(store);
    ppath = store_upload_path(store, u->id, ".part");
    jpath = store_upload_path(store, u->id, ".json");
    /* A file of its own, never one that is there already. */
    u->fd = open(ppath, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                 0640);
    if (u->fd < 0) {
        store_io_error(error, "cannot create", ppath);
        store_upload_free(u);
        return FALSE;
    }
    json = g_strdup_printf("{\"id\": %" G_GINT64_FORMAT ", \"owner\": \"%s\", "
                           "\"sha256\": \"%s\", \"size\": %" G_GUINT64_FORMAT
                           ", \"name\": \"%s\", \"version\": \"%s\"}\n",
                           (gint64)u->id, owner, hex, size, name, version);
    /* Replaced whole, not synced: it only lets the upload be resumed
     * after a restart, and one lost in a crash drops its .part with it
     * at the next start (store_uploads_repair()). */
    if (!g_file_set_contents_full(jpath, json, -1,
                                  G_FILE_SET_CONTENTS_CONSISTENT, 0640,
                                  &local)) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_IO, "%s",
                    local->message);
        g_unlink(ppath);
        store_upload_free(u);
        return FALSE;
    }
    g_hash_table_insert(store->uploads, &u->id, u);
    *upload_id = u->id;
    *offset = 0;
    return TRUE;
}

/* The failure of a write that was answered before it was made, once. */
static gboolean store_upload_write_failed(StoreUpload *u, GError **error)
{
    if (u->write_error == NULL) {
        return FALSE;
    }
    g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_IO,
                "an earlier chunk could not be written (%s); the upload "
                "resumes at %" G_GUINT64_FORMAT, u->write_error, u->offset);
    g_clear_pointer(&u->write_error, g_free);
    return TRUE;
}

/* The upload @upload_id takes @len bytes at @offset now. */
static StoreUpload *store_upload_chunk_fits(VmaugStore *store,
                                            const gchar *owner,
                                            guint64 upload_id, guint64 offset,
                                            gsize len, GError **error)
{
    StoreUpload *u = store_find_upload(store, owner, upload_id, error);

    if (u == NULL || store_upload_write_failed(u, error)) {
        return NULL;
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
        return NULL;
    }
    return u;
}

/* Write a chunk that fits, and take it. */
static gboolean store_upload_write(VmaugStore *store, StoreUpload *u,
                                   guint64 offset, const guint8 *data,
                                   gsize len, GError **error)
{
    gsize done = 0;

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
    u->last_active = store_now(store);
    return TRUE;
}

gboolean vmaug_store_upload_chunk(VmaugStore *store, const gchar *owner,
                                  guint64 upload_id, guint64 offset,
                                  const guint8 *data, gsize len,
                                  guint64 *new_offset, GError **error)
{
    StoreUpload *u = store_upload_chunk_fits(store, owner, upload_id, offset,
                                             len, error);

    if (u == NULL || !store_upload_write(store, u, offset, data, len, error)) {
        return FALSE;
    }
    *new_offset = u->offset;
    return TRUE;
}

gboolean vmaug_store_upload_chunk_check(VmaugStore *store, const gchar *owner,
                                        guint64 upload_id, guint64 offset,
                                        gsize len, guint64 *new_offset,
                                        GError **error)
{
    if (store_upload_chunk_fits(store, owner, upload_id, offset, len,
                                error) == NULL) {
        return FALSE;
    }
    *new_offset = offset + len;
    return TRUE;
}

void vmaug_store_upload_chunk_write(VmaugStore *store, const gchar *owner,
                                    guint64 upload_id, guint64 offset,
                                    const guint8 *data, gsize len)
{
    g_autoptr(GError) error = NULL;
    StoreUpload *u = store_upload_chunk_fits(store, owner, upload_id, offset,
                                             len, &error);

    /* The check just passed: what fails now is the write, whose failure
     * the upload keeps (fits() took any earlier one), or an upload gone
     * meanwhile, which has nothing to keep it. */
    if (u == NULL || !store_upload_write(store, u, offset, data, len,
                                         &error)) {
        g_warning("upload %" G_GUINT64_FORMAT ": %s", upload_id,
                  error->message);
    }
    if (u != NULL && error != NULL) {
        u->write_error = g_strdup(error->message);
    }
}

/* Pieces of a copy made by hand (the upload on another filesystem). */
#define STORE_COPY_PIECE    ((gsize)1 << 20)

/*
 * Copy the first @len bytes of @in_fd to @out_fd; *@copied says how many
 * were.  0, -1 when @in_fd ends before, or -errno.
 */
static int store_copy_range(int in_fd, int out_fd, guint64 len,
                            guint64 *copied)
{
    g_autofree guint8 *buf = NULL;
    loff_t in_off = 0, out_off = 0;

    *copied = 0;
    /* In the kernel, page cache to page cache (or shared extents): no
     * buffer of ours is filled. */
    while (*copied < len) {
        ssize_t n = copy_file_range(in_fd, &in_off, out_fd, &out_off,
                                    MIN(len - *copied, (guint64)1 << 30), 0);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && *copied == 0 &&
            (errno == EXDEV || errno == ENOSYS || errno == EINVAL ||
             errno == EOPNOTSUPP)) {
            break;              /* not between these files: by hand */
        }
        if (n <= 0) {
            return n == 0 ? -1 : -errno;
        }
        *copied += n;
    }
    if (*copied < len) {
        buf = g_malloc(STORE_COPY_PIECE);
    }
    while (*copied < len) {
        ssize_t n = pread(in_fd, buf, MIN(len - *copied, STORE_COPY_PIECE),
                          *copied);
        gsize done = 0;

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return n == 0 ? -1 : -errno;
        }
        while (done < (gsize)n) {
            ssize_t w = pwrite(out_fd, buf + done, n - done, *copied + done);

            if (w < 0 && errno == EINTR) {
                continue;
            }
            if (w <= 0) {
                return w == 0 ? -ENOSPC : -errno;
            }
            done += w;
        }
        *copied += n;
    }
    return 0;
}

/*
 * The upload's bytes, exactly @u->size of them, copied into a new file
 * beside the object it may become (*@tmp_path, open as *@tmp_fd), and
 * that copy mapped: the .part may be cut or grown behind our back (it is
 * only a file), and a mapping of a file that shrinks faults, but the copy
 * has a name no one else knows, so what is hashed and verified here is
 * what becomes the object.  Reading the upload into fresh memory of our
 * own instead cost more than the rest of a commit where a page touched
 * the first time costs a fault (docs/performance.md, "A 64 MiB
 * package"), and held the whole package in the helper's memory.
 */
static GBytes *store_upload_copy(StoreUpload *u, const gchar *obj,
                                 gchar **tmp_path, int *tmp_fd,
                                 GError **error)
{
    g_autoptr(GMappedFile) map = NULL;
    g_autoptr(GError) local = NULL;
    struct stat st;
    guint64 copied;
    int rc;

    if (fstat(u->fd, &st) < 0) {
        store_io_error(error, "cannot stat upload", u->hex);
        return NULL;
    }
    if (!S_ISREG(st.st_mode) || (guint64)st.st_size != u->size) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "upload holds %" G_GINT64_FORMAT " bytes, %"
                    G_GUINT64_FORMAT " were announced", (gint64)st.st_size,
                    u->size);
        return NULL;
    }
    *tmp_path = g_strdup_printf("%s.XXXXXX", obj);
    *tmp_fd = g_mkstemp_full(*tmp_path, O_RDWR | O_CLOEXEC, 0640);
    if (*tmp_fd < 0) {
        g_clear_pointer(tmp_path, g_free);
        store_io_error(error, "cannot create the object of upload", u->hex);
        return NULL;
    }
    rc = store_copy_range(u->fd, *tmp_fd, u->size, &copied);
    if (rc == -1) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "upload ends after %" G_GUINT64_FORMAT " of %"
                    G_GUINT64_FORMAT " bytes", copied, u->size);
        return NULL;
    }
    if (rc < 0) {
        errno = -rc;
        store_io_error(error, "cannot copy upload", u->hex);
        return NULL;
    }
    if (u->size == 0) {
        return g_bytes_new_static("", 0);
    }
    map = g_mapped_file_new_from_fd(*tmp_fd, FALSE, &local);
    if (map == NULL) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_IO,
                    "cannot map upload %s: %s", u->hex, local->message);
        return NULL;
    }
    return g_mapped_file_get_bytes(map);
}

/* One commit (StoreJob): begun and ended on the caller's thread. */
typedef struct {
    StoreJob job;
    guint64 id;
    int fd;                         /* a duplicate of the session's */
    guint64 size;
    gchar *hex;
    gchar *name;
    gchar *version;
    gchar *signer;                  /* of a package that verified */
} StoreCommit;

static void store_commit_end(StoreJob *job);

static void store_commit_free(StoreCommit *c)
{
    if (c->fd >= 0) {
        close(c->fd);
    }
    g_free(c->hex);
    g_free(c->name);
    g_free(c->version);
    g_free(c->signer);
    store_job_clear(&c->job);
    g_free(c);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(StoreCommit, store_commit_free)

/* The checks that need no data; marks the session as committing. */
static StoreCommit *store_commit_begin(VmaugStore *store, const gchar *owner,
                                       guint64 upload_id, const gchar *actor,
                                       GError **error)
{
    StoreUpload *u = store_find_upload(store, owner, upload_id, error);
    StoreCommit *c;

    if (u == NULL || store_upload_write_failed(u, error)) {
        return NULL;
    }
    if (u->offset != u->size) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "upload incomplete: %" G_GUINT64_FORMAT " of %"
                    G_GUINT64_FORMAT " bytes", u->offset, u->size);
        return NULL;
    }
    c = g_new0(StoreCommit, 1);
    c->fd = fcntl(u->fd, F_DUPFD_CLOEXEC, 0);
    if (c->fd < 0) {
        store_io_error(error, "cannot commit upload", u->hex);
        store_commit_free(c);
        return NULL;
    }
    c->job.store = store;
    c->job.end = store_commit_end;
    c->id = u->id;
    c->size = u->size;
    c->hex = g_strdup(u->hex);
    c->name = g_strdup(u->name);
    c->version = g_strdup(u->version);
    c->job.actor = g_strdup(actor);
    u->committing = TRUE;
    return c;
}

/* Copy, hash, verify, admit, write and publish (StoreJob). */
static void store_commit_work(StoreJob *job)
{
    StoreCommit *c = (StoreCommit *)job;
    VmaugStore *store = job->store;
    StoreUpload view = {
        .fd = c->fd, .size = c->size, .hex = c->hex,
    };
    g_autoptr(VmaugPackage) pkg = NULL;
    g_autoptr(GBytes) file = NULL;
    g_autofree gchar *obj = store_object_path(store, c->hex);
    g_autofree gchar *odir = g_path_get_dirname(obj);
    g_autofree gchar *tmp = NULL;
    GError *local = NULL;
    int tmp_fd = -1;

    file = store_upload_copy(&view, obj, &tmp, &tmp_fd, &local);
    if (file != NULL) {
        g_autofree gchar *got = vmaug_sha256_hex(
            g_bytes_get_data(file, NULL), g_bytes_get_size(file));

        if (g_strcmp0(got, c->hex) != 0) {
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
    if (pkg != NULL) {
        c->signer = g_strdup(pkg->signer->common_name);
    }
    if (pkg != NULL && (g_strcmp0(pkg->manifest->name, c->name) != 0 ||
                        g_strcmp0(pkg->manifest->version, c->version) != 0)) {
        g_set_error(&local, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_DENIED,
                    "package is %s %s, the upload announced %s %s",
                    pkg->manifest->name, pkg->manifest->version, c->name,
                    c->version);
    }
    if (local == NULL) {
        store_admit(store, c->name, c->version, c->hex, &local);
    }
    /* The object is the verified copy, synced before it has its name;
     * one already there (the same bytes, by name) stays. */
    if (local == NULL && !g_file_test(obj, G_FILE_TEST_IS_REGULAR)) {
        if (fsync(tmp_fd) < 0 || rename(tmp, obj) < 0) {
            store_io_error(&local, "cannot write object", obj);
        } else {
            g_clear_pointer(&tmp, g_free);
            store_fsync_dir(odir);
        }
    }
    if (tmp != NULL) {
        g_unlink(tmp);
    }
    if (tmp_fd >= 0) {
        close(tmp_fd);
    }
    if (local == NULL) {
        store_publish(store, pkg, c->hex, &local);
    }
    if (local != NULL) {
        job->error = local;
        return;
    }
    /* Accepted: never held back, and synced before anyone is told. */
    store_audit_accept_note(store, job->actor, "upload-commit", c->name,
                            c->version, c->hex, pkg->signer->common_name,
                            NULL);
    job->pkg = g_steal_pointer(&pkg);
}

/* Back on the caller's thread (StoreJob's end): the session ends,
 * accepted or refused (a refused one would be refused again). */
static void store_commit_end(StoreJob *job)
{
    StoreCommit *c = (StoreCommit *)job;
    StoreUpload *u = g_hash_table_lookup(job->store->uploads, &c->id);

    if (u != NULL) {
        store_drop_upload(job->store, u);
    }
    if (job->error != NULL) {
        /* Refusals are held back in a flood (store-audit.c). */
        vmaug_store_audit(job->store, job->actor, "upload-commit", c->name,
                          c->version, c->hex, c->signer, job->error);
    }
}

VmaugManifest *vmaug_store_upload_commit(VmaugStore *store,
                                         const gchar *owner,
                                         guint64 upload_id,
                                         const gchar *actor, GError **error)
{
    g_autoptr(StoreCommit) c = store_commit_begin(store, owner, upload_id,
                                                  actor, error);

    if (c == NULL) {
        return NULL;
    }
    store_job_run(&c->job, store_commit_work);
    return store_job_result(&c->job, error);
}

void vmaug_store_upload_commit_async(VmaugStore *store, const gchar *owner,
                                     guint64 upload_id, const gchar *actor,
                                     GAsyncReadyCallback callback,
                                     gpointer user_data)
{
    g_autoptr(GTask) task = g_task_new(NULL, NULL, callback, user_data);
    g_autoptr(GError) local = NULL;
    StoreCommit *c;

    g_task_set_source_tag(task, vmaug_store_upload_commit_async);
    c = store_commit_begin(store, owner, upload_id, actor, &local);
    if (c == NULL) {
        g_task_return_error(task, g_steal_pointer(&local));
        return;
    }
    g_task_set_task_data(task, c, (GDestroyNotify)store_commit_free);
    store_job_push(store, task, &c->job, store_commit_work);
}

VmaugManifest *vmaug_store_upload_commit_finish(VmaugStore *store,
                                                GAsyncResult *result,
                                                GError **error)
{
    StoreJob *job = store_job_finish(store, result, error);

    /* NULL: refused before it began, or the store is gone. */
    return job != NULL ? store_job_result(job, error) : NULL;
}

gboolean vmaug_store_upload_abort(VmaugStore *store, const gchar *owner,
                                  guint64 upload_id, const gchar *actor,
                                  GError **error)
{
    StoreUpload *u = store_find_upload(store, owner, upload_id, error);

    if (u == NULL) {
        return FALSE;
    }
    vmaug_store_audit(store, actor, "upload-abort", u->name, u->version,
                      u->hex, NULL, NULL);
    store_drop_upload(store, u);
    return TRUE;
}

void vmaug_store_upload_release(VmaugStore *store, const gchar *owner,
                                const gchar *actor)
{
    g_autoptr(GPtrArray) mine = g_ptr_array_new();
    GHashTableIter it;
    StoreUpload *u;

    g_hash_table_iter_init(&it, store->uploads);
    while (g_hash_table_iter_next(&it, NULL, (gpointer *)&u)) {
        /* A commit in flight ends by itself, and drops its session. */
        if (g_strcmp0(u->owner, owner) == 0 && !u->committing) {
            g_ptr_array_add(mine, u);
        }
    }
    for (guint i = 0; i < mine->len; i++) {
        u = g_ptr_array_index(mine, i);
        vmaug_store_audit(store, actor, "upload-abort", u->name, u->version,
                          u->hex, NULL, NULL);
        store_drop_upload(store, u);
    }
}
