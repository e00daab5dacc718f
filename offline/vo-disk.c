/*
 * Disk access through qemu-nbd, started by socket activation, so that every
 * image format QEMU knows works and QEMU's own image locking applies.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <libnbd.h>

#include "vo-disk.h"

G_DEFINE_QUARK(vmaugment-offline-error-quark, vo_error)

/*
 * Cache pages are large so that ext4's many small metadata writes coalesce
 * and so that every request to the server is aligned (vhdx exports need
 * 512-byte alignment).  qcow2's default cluster is 64 KiB as well.
 */
#define VO_PAGE_SIZE (64 * 1024)
/* Above this many cached pages we write back and drop clean pages. */
#define VO_CACHE_MAX_PAGES 4096
/* qemu-nbd accepts requests up to 32 MiB; stay well below. */
#define VO_NBD_MAX_REQUEST (4 * 1024 * 1024)

typedef struct {
    guint8 *data;
    gboolean dirty;
} VoPage;

struct VoDisk {
    struct nbd_handle *nbd;
    char *format;
    char *errlog;
    guint64 size;
    gboolean writable;
    GHashTable *pages;      /* page index (guint64*) -> VoPage* */
};

const char *vo_disk_qemu_tool(const char *name)
{
    static GHashTable *cache;
    static GMutex lock;
    const char *found;

    g_mutex_lock(&lock);
    if (!cache) {
        cache = g_hash_table_new(g_str_hash, g_str_equal);
    }
    found = g_hash_table_lookup(cache, name);
    if (!found) {
        g_autofree char *var = g_ascii_strup(name, -1);
        const char *env;
        char *path;

        g_strdelimit(var, "-", '_');
        g_autofree char *envname = g_strdup_printf("VMAUGMENT_%s", var);
        env = g_getenv(envname);
        if (env && *env) {
            path = g_strdup(env);
        } else if (g_getenv("VMAUGMENT_QEMU_BUILD_DIR")) {
            path = g_build_filename(g_getenv("VMAUGMENT_QEMU_BUILD_DIR"),
                                    name, NULL);
        } else {
            /* Resolved once: every apply runs it several times. */
            path = g_find_program_in_path(name);
            if (!path) {
                path = g_strdup(name);
            }
        }
        g_hash_table_insert(cache, g_strdup(name), path);
        found = path;
    }
    g_mutex_unlock(&lock);
    return found;
}

gboolean vo_disk_check_unlocked(const char *image, GError **error)
{
    struct flock fl = {
        .l_type = F_WRLCK,
        .l_whence = SEEK_SET,
        /*
         * QEMU's file-posix driver expresses its permissions as byte locks
         * at offsets 100.. (permissions held) and 200.. (permissions it
         * refuses to share).  Any lock there means a QEMU process uses the
         * image, even one only reading it.
         */
        .l_start = 100,
        .l_len = 200,
    };
    int fd = open(image, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_NOT_FOUND, "cannot open %s: %s",
                    image, g_strerror(errno));
        return FALSE;
    }
    if (fcntl(fd, F_OFD_GETLK, &fl) < 0) {
        int saved = errno;

        close(fd);
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "cannot query the lock of %s: %s", image,
                    g_strerror(saved));
        return FALSE;
    }
    close(fd);
    if (fl.l_type != F_UNLCK) {
        g_set_error(error, VO_ERROR, VO_ERROR_IN_USE,
                    "%s is in use by a running QEMU (it holds QEMU's image "
                    "lock); stop the VM first", image);
        return FALSE;
    }
    return TRUE;
}

static gboolean vo_disk_run(const char *const *argv, char **out,
                            GError **error)
{
    g_autofree char *err = NULL;
    int status;

    if (!g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL,
                      NULL, out, &err, &status, error)) {
        return FALSE;
    }
    if (!g_spawn_check_wait_status(status, NULL)) {
        g_strstrip(err);
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "%s failed: %s",
                    argv[0], err);
        return FALSE;
    }
    return TRUE;
}

/*
 * A QEMU built without some block drivers probes their images as raw; the
 * guest would then look empty.  Recognise the common magics to say why.
 */
static gboolean vo_disk_check_not_foreign(const char *image, GError **error)
{
    static const struct {
        const char *magic;
        gsize len;
        const char *driver;
    } magics[] = {
        { "KDMV", 4, "vmdk" }, { "vhdxfile", 8, "vhdx" },
        { "conectix", 8, "vpc" }, { "QFI\xfb", 4, "qcow2" },
        { "<<< Oracle VM VirtualBox Disk Image >>>", 39, "vdi" },
    };
    char head[64] = { 0 };
    int fd = open(image, O_RDONLY | O_CLOEXEC);
    ssize_t got = fd >= 0 ? read(fd, head, sizeof(head)) : -1;

    if (fd >= 0) {
        close(fd);
    }
    for (gsize i = 0; got > 0 && i < G_N_ELEMENTS(magics); i++) {
        if ((gsize)got >= magics[i].len &&
            memcmp(head, magics[i].magic, magics[i].len) == 0) {
            g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                        "%s looks like a %s image, but %s has no %s driver "
                        "(set VMAUGMENT_QEMU_IMG/VMAUGMENT_QEMU_NBD to a "
                        "QEMU built with it)", image, magics[i].driver,
                        vo_disk_qemu_tool("qemu-img"), magics[i].driver);
            return FALSE;
        }
    }
    return TRUE;
}

char *vo_disk_probe_format(const char *image, const char *format,
                           gboolean for_writing, GError **error)
{
    g_autofree char *out = NULL;
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GError) local = NULL;
    JsonNode *root;
    JsonObject *obj, *spec;
    const char *argv[] = {
        vo_disk_qemu_tool("qemu-img"), "info", "--output=json",
        /* The lock is checked separately, with a clearer message. */
        "-U", format ? "-f" : image, format, image, NULL,
    };

    if (!format) {
        argv[5] = NULL;
    }
    if (!vo_disk_run(argv, &out, &local)) {
        g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                    "%s is not a usable disk image: %s", image,
                    local->message);
        return NULL;
    }
    if (!json_parser_load_from_data(parser, out, -1, error)) {
        return NULL;
    }
    root = json_parser_get_root(parser);
    if (!JSON_NODE_HOLDS_OBJECT(root)) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "qemu-img info printed no object");
        return NULL;
    }
    obj = json_node_get_object(root);
    if (!json_object_has_member(obj, "format")) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "qemu-img info gave no format for %s", image);
        return NULL;
    }
    spec = json_object_has_member(obj, "format-specific")
               ? json_object_get_object_member(obj, "format-specific")
               : NULL;
    if (spec && json_object_has_member(spec, "data")) {
        JsonObject *data = json_object_get_object_member(spec, "data");

        if (data && json_object_get_boolean_member_with_default(
                        data, "corrupt", FALSE)) {
            g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                        "%s is marked corrupt by QEMU; repair it with "
                        "'qemu-img check -r all' first", image);
            return NULL;
        }
    }
    if (g_str_equal(json_object_get_string_member(obj, "format"), "raw") &&
        !format && !vo_disk_check_not_foreign(image, error)) {
        return NULL;
    }
    if (for_writing && spec && json_object_has_member(spec, "data")) {
        JsonObject *data = json_object_get_object_member(spec, "data");
        const char *type = data ? json_object_get_string_member_with_default(
                                      data, "create-type", "")
                                : "";

        /* QEMU writes streamOptimized VMDKs only when creating them. */
        if (g_str_equal(type, "streamOptimized")) {
            g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                        "%s is a streamOptimized VMDK, which QEMU cannot "
                        "modify; convert it first (qemu-img convert -O vmdk)",
                        image);
            return NULL;
        }
    }
    return g_strdup(json_object_get_string_member(obj, "format"));
}

static char *vo_disk_read_errlog(VoDisk *disk)
{
    g_autofree char *text = NULL;

    if (!g_file_get_contents(disk->errlog, &text, NULL, NULL)) {
        return g_strdup("");
    }
    return g_strdup(g_strstrip(text));
}

VoDisk *vo_disk_open(const char *image, const char *format,
                     gboolean writable, GError **error)
{
    return vo_disk_open_full(image, format, writable, TRUE, error);
}

VoDisk *vo_disk_open_full(const char *image, const char *format,
                          gboolean writable, gboolean probe, GError **error)
{
    g_autoptr(VoDisk) disk = g_new0(VoDisk, 1);
    g_autofree char *absimage = NULL;
    int64_t size;
    int fd;

    if (!vo_disk_check_unlocked(image, error)) {
        return NULL;
    }
    disk->format = probe || !format
                       ? vo_disk_probe_format(image, format, writable, error)
                       : g_strdup(format);
    if (!disk->format) {
        return NULL;
    }
    disk->writable = writable;
    disk->pages = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free,
                                        NULL);
    fd = g_file_open_tmp("vmaugment-nbd-XXXXXX.log", &disk->errlog, error);
    if (fd < 0) {
        return NULL;
    }
    close(fd);

    disk->nbd = nbd_create();
    if (!disk->nbd) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "libnbd: %s",
                    nbd_get_error());
        return NULL;
    }
    absimage = g_canonicalize_filename(image, NULL);
    {
        /*
         * The shell only redirects qemu-nbd's stderr into a private log and
         * exec()s it, keeping the PID that socket activation announces.
         */
        const char *argv[] = {
            "/bin/sh", "-c", "log=$1; shift; exec \"$@\" 2>>\"$log\"",
            "sh", disk->errlog, vo_disk_qemu_tool("qemu-nbd"),
            "--format", disk->format,
            /* Data reaches the image only through our explicit flush. */
            "--cache=writeback",
            writable ? "--discard=unmap" : "--read-only",
            absimage, NULL,
        };

        if (nbd_connect_systemd_socket_activation(disk->nbd,
                                                  (char **)argv) < 0) {
            g_autofree char *log = vo_disk_read_errlog(disk);
            VoError code = VO_ERROR_FAILED;

            if (strstr(log, "lock")) {
                code = VO_ERROR_IN_USE;
            } else if (strstr(log, "corrupt") || strstr(log, "Could not")) {
                code = VO_ERROR_CORRUPT;
            }
            g_set_error(error, VO_ERROR, code, "cannot open %s: %s", image,
                        *log ? log : nbd_get_error());
            return NULL;
        }
    }
    size = nbd_get_size(disk->nbd);
    if (size < 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "libnbd: %s",
                    nbd_get_error());
        return NULL;
    }
    disk->size = size;
    return g_steal_pointer(&disk);
}

static void vo_disk_page_free(VoPage *page)
{
    g_free(page->data);
    g_free(page);
}

void vo_disk_set_read_only(VoDisk *disk)
{
    disk->writable = FALSE;
}

void vo_disk_drop_cache(VoDisk *disk)
{
    GHashTableIter it;
    gpointer value;

    g_hash_table_iter_init(&it, disk->pages);
    while (g_hash_table_iter_next(&it, NULL, &value)) {
        vo_disk_page_free(value);
        g_hash_table_iter_remove(&it);
    }
}

void vo_disk_free(VoDisk *disk)
{
    if (!disk) {
        return;
    }
    if (disk->pages) {
        GHashTableIter it;
        gpointer value;

        g_hash_table_iter_init(&it, disk->pages);
        while (g_hash_table_iter_next(&it, NULL, &value)) {
            vo_disk_page_free(value);
        }
        g_hash_table_unref(disk->pages);
    }
    if (disk->nbd) {
        /* Closing the handle makes libnbd stop and reap qemu-nbd. */
        nbd_shutdown(disk->nbd, 0);
        nbd_close(disk->nbd);
    }
    if (disk->errlog) {
        g_unlink(disk->errlog);
        g_free(disk->errlog);
    }
    g_free(disk->format);
    g_free(disk);
}

guint64 vo_disk_get_size(VoDisk *disk)
{
    return disk->size;
}

gboolean vo_disk_get_writable(VoDisk *disk)
{
    return disk->writable;
}

const char *vo_disk_get_format(VoDisk *disk)
{
    return disk->format;
}

static gsize vo_disk_page_len(VoDisk *disk, guint64 index)
{
    guint64 start = index * VO_PAGE_SIZE;

    return MIN((guint64)VO_PAGE_SIZE, disk->size - start);
}

static gboolean vo_disk_nbd_io(VoDisk *disk, gboolean write, void *buf,
                               gsize count, guint64 offset, GError **error)
{
    while (count > 0) {
        gsize chunk = MIN(count, (gsize)VO_NBD_MAX_REQUEST);
        int r = write ? nbd_pwrite(disk->nbd, buf, chunk, offset, 0)
                      : nbd_pread(disk->nbd, buf, chunk, offset, 0);

        if (r < 0) {
            g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                        "NBD %s of %zu bytes at %" G_GUINT64_FORMAT ": %s",
                        write ? "write" : "read", chunk, offset,
                        nbd_get_error());
            return FALSE;
        }
        buf = (guint8 *)buf + chunk;
        count -= chunk;
        offset += chunk;
    }
    return TRUE;
}

static gint vo_disk_cmp_index(gconstpointer a, gconstpointer b)
{
    guint64 x = **(guint64 *const *)a, y = **(guint64 *const *)b;

    return x < y ? -1 : x > y;
}

/* Writes dirty pages back, coalescing neighbours into larger requests. */
static gboolean vo_disk_writeback(VoDisk *disk, GError **error)
{
    g_autoptr(GPtrArray) dirty = g_ptr_array_new();
    g_autofree guint8 *run = NULL;
    GHashTableIter it;
    gpointer key, value;
    guint i = 0;

    g_hash_table_iter_init(&it, disk->pages);
    while (g_hash_table_iter_next(&it, &key, &value)) {
        if (((VoPage *)value)->dirty) {
            g_ptr_array_add(dirty, key);
        }
    }
    g_ptr_array_sort(dirty, vo_disk_cmp_index);
    run = g_malloc(VO_NBD_MAX_REQUEST);
    while (i < dirty->len) {
        guint64 first = *(guint64 *)dirty->pdata[i];
        gsize len = 0;
        guint n = 0;

        while (i + n < dirty->len &&
               *(guint64 *)dirty->pdata[i + n] == first + n &&
               len + VO_PAGE_SIZE <= VO_NBD_MAX_REQUEST) {
            VoPage *page = g_hash_table_lookup(disk->pages,
                                               dirty->pdata[i + n]);
            gsize plen = vo_disk_page_len(disk, first + n);

            memcpy(run + len, page->data, plen);
            len += plen;
            n++;
        }
        if (!vo_disk_nbd_io(disk, TRUE, run, len, first * VO_PAGE_SIZE,
                            error)) {
            return FALSE;
        }
        for (guint k = 0; k < n; k++) {
            VoPage *page = g_hash_table_lookup(disk->pages,
                                               dirty->pdata[i + k]);
            page->dirty = FALSE;
        }
        i += n;
    }
    return TRUE;
}

static VoPage *vo_disk_get_page(VoDisk *disk, guint64 index, gboolean load,
                                GError **error)
{
    VoPage *page = g_hash_table_lookup(disk->pages, &index);
    guint64 *key;

    if (page) {
        return page;
    }
    if (g_hash_table_size(disk->pages) >= VO_CACHE_MAX_PAGES) {
        if (!vo_disk_writeback(disk, error)) {
            return NULL;
        }
        vo_disk_drop_cache(disk);
    }
    page = g_new0(VoPage, 1);
    page->data = g_malloc0(VO_PAGE_SIZE);
    if (load && !vo_disk_nbd_io(disk, FALSE, page->data,
                                vo_disk_page_len(disk, index),
                                index * VO_PAGE_SIZE, error)) {
        vo_disk_page_free(page);
        return NULL;
    }
    key = g_new(guint64, 1);
    *key = index;
    g_hash_table_insert(disk->pages, key, page);
    return page;
}

static gboolean vo_disk_check_range(VoDisk *disk, gsize count,
                                    guint64 offset, GError **error)
{
    if (offset > disk->size || count > disk->size - offset) {
        g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                    "access of %zu bytes at %" G_GUINT64_FORMAT
                    " beyond the end of the disk (%" G_GUINT64_FORMAT ")",
                    count, offset, disk->size);
        return FALSE;
    }
    return TRUE;
}

gboolean vo_disk_pread(VoDisk *disk, void *buf, gsize count, guint64 offset,
                       GError **error)
{
    guint8 *out = buf;

    if (!vo_disk_check_range(disk, count, offset, error)) {
        return FALSE;
    }
    while (count > 0) {
        guint64 index = offset / VO_PAGE_SIZE;
        gsize in_page = offset % VO_PAGE_SIZE;
        gsize n = MIN(count, VO_PAGE_SIZE - in_page);
        VoPage *page = g_hash_table_lookup(disk->pages, &index);

        if (!page && in_page == 0 && count >= 4 * VO_PAGE_SIZE) {
            /* Large uncached reads (file contents) bypass the cache. */
            gsize whole = count - count % VO_PAGE_SIZE;

            for (guint64 i = 0; i < whole / VO_PAGE_SIZE; i++) {
                guint64 idx = index + i;
                if (g_hash_table_contains(disk->pages, &idx)) {
                    whole = i * VO_PAGE_SIZE;
                    break;
                }
            }
            if (whole > 0) {
                if (!vo_disk_nbd_io(disk, FALSE, out, whole, offset, error)) {
                    return FALSE;
                }
                out += whole;
                offset += whole;
                count -= whole;
                continue;
            }
        }
        page = vo_disk_get_page(disk, index, TRUE, error);
        if (!page) {
            return FALSE;
        }
        memcpy(out, page->data + in_page, n);
        out += n;
        offset += n;
        count -= n;
    }
    return TRUE;
}

gboolean vo_disk_pwrite(VoDisk *disk, const void *buf, gsize count,
                        guint64 offset, GError **error)
{
    const guint8 *in = buf;

    if (!disk->writable) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "disk opened read-only");
        return FALSE;
    }
    if (!vo_disk_check_range(disk, count, offset, error)) {
        return FALSE;
    }
    while (count > 0) {
        guint64 index = offset / VO_PAGE_SIZE;
        gsize in_page = offset % VO_PAGE_SIZE;
        gsize n = MIN(count, VO_PAGE_SIZE - in_page);
        /* A page overwritten whole need not be read first. */
        gboolean whole = in_page == 0 && n == vo_disk_page_len(disk, index);
        VoPage *page = vo_disk_get_page(disk, index, !whole, error);

        if (!page) {
            return FALSE;
        }
        memcpy(page->data + in_page, in, n);
        page->dirty = TRUE;
        in += n;
        offset += n;
        count -= n;
    }
    return TRUE;
}

gboolean vo_disk_flush(VoDisk *disk, GError **error)
{
    if (!disk->writable) {
        return TRUE;
    }
    if (!vo_disk_writeback(disk, error)) {
        return FALSE;
    }
    if (nbd_flush(disk->nbd, 0) < 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "NBD flush: %s",
                    nbd_get_error());
        return FALSE;
    }
    return TRUE;
}
