/*
 * The guest's disk as the offline worker sees it: an NBD connection to the
 * qemu-nbd its parent started (vo-image.c), with a page cache in front so
 * that the filesystem libraries' small reads and writes become few large
 * requests.  Every image format QEMU knows works the same way.
 *
 * The cache reaches its disk through a small backend (VoDiskBackend): the
 * NBD connection in the product, or a buffer in memory, through which the
 * fuzz targets (offline/tests/fuzz/fuzz-image.c) run the real readers
 * on mutated images without a server.  Both are as untrusted as each
 * other: every bound is checked above the backend, in the cache.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

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
/*
 * A miss of the page after one that is cached reads this many pages more
 * in the same request: a walk reads inode tables and MFT records page
 * after page (between reads of directories elsewhere), and each request
 * is a round trip to qemu-nbd.
 */
#define VO_READ_AHEAD_PAGES 15

/*
 * The cache's memory comes in chunks of this many pages (the longest read
 * fits one), mapped and populated by one mmap(): on a virtual machine each
 * page fault of touching fresh memory page by page costs tens of
 * microseconds, about as much as reading that page from qemu-nbd.  A run
 * of pages is read straight into a chunk; the chunks are given back all
 * at once when the cache is dropped, and reused.
 */
#define VO_CHUNK_PAGES (VO_READ_AHEAD_PAGES + 1)
#define VO_CHUNK_SIZE ((gsize)VO_CHUNK_PAGES * VO_PAGE_SIZE)
/* The cache's memory, whatever runs and single pages left unused in
 * their chunks: the same bound as its pages'. */
#define VO_CACHE_MAX_CHUNKS (VO_CACHE_MAX_PAGES / VO_CHUNK_PAGES)

typedef struct {
    guint8 *base;
    gsize used;
} VoChunk;

typedef struct {
    guint8 *data;           /* in one of the disk's chunks */
    gboolean dirty;
} VoPage;

/*
 * Where the cache's pages come from and go to.  Requests are whole, within
 * the disk and at most VO_NBD_MAX_REQUEST bytes.
 */
typedef struct {
    gboolean (*io)(VoDisk *disk, gboolean write, void *buf, gsize count,
                   guint64 offset, GError **error);
    gboolean (*flush)(VoDisk *disk, GError **error);
    void (*close)(VoDisk *disk);
} VoDiskBackend;

struct VoDisk {
    const VoDiskBackend *backend;
    struct nbd_handle *nbd;     /* the NBD backend's */
    guint8 *mem;                /* the memory backend's */
    GBytes *mem_bytes;          /* holds @mem when it is read-only */
    guint64 size;
    gboolean writable;
    GHashTable *pages;      /* page index (guint64*) -> VoPage* */
    GArray *chunks;         /* VoChunk: where the pages' data lies */
    guint chunk;            /* the one pages are taken from now */
};

/*
 * Chunks a freed disk leaves for the next one the process opens: the fuzz
 * targets open a disk per input, and mapping and populating fresh chunks
 * (with the page faults and TLB shootdowns of unmapping them) was most of
 * what an input cost.  A worker reads one guest, so nothing of one disk
 * reaches another's process; the pages are overwritten before use as a
 * chunk kept by vo_disk_drop_cache() is.
 */
#define VO_CHUNK_POOL 4

static G_LOCK_DEFINE(vo_chunk_pool);
static guint8 *vo_chunk_pool[VO_CHUNK_POOL];

static guint8 *vo_disk_chunk_new(void)
{
    guint8 *base = NULL;

    G_LOCK(vo_chunk_pool);
    for (guint i = 0; i < VO_CHUNK_POOL && !base; i++) {
        base = g_steal_pointer(&vo_chunk_pool[i]);
    }
    G_UNLOCK(vo_chunk_pool);
    if (base) {
        return base;
    }
    base = mmap(NULL, VO_CHUNK_SIZE, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    return base == MAP_FAILED ? NULL : base;
}

static void vo_disk_chunk_free(guint8 *base)
{
    G_LOCK(vo_chunk_pool);
    for (guint i = 0; i < VO_CHUNK_POOL && base; i++) {
        if (!vo_chunk_pool[i]) {
            vo_chunk_pool[i] = g_steal_pointer(&base);
        }
    }
    G_UNLOCK(vo_chunk_pool);
    if (base) {
        munmap(base, VO_CHUNK_SIZE);
    }
}

/* The first chunk with room for @n pages one after the other, or -1:
 * runs and single pages mixed waste at most a run's worth per chunk. */
static gint vo_disk_chunk_with_room(VoDisk *disk, guint n)
{
    gsize need = n * (gsize)VO_PAGE_SIZE;

    for (guint i = disk->chunk; i < disk->chunks->len; i++) {
        if (g_array_index(disk->chunks, VoChunk, i).used + need <=
            VO_CHUNK_SIZE) {
            return i;
        }
    }
    return -1;
}

/* Whether @n pages, one after the other, fit the cache's memory. */
static gboolean vo_disk_has_room(VoDisk *disk, guint n)
{
    return disk->chunks->len < VO_CACHE_MAX_CHUNKS ||
           vo_disk_chunk_with_room(disk, n) >= 0;
}

/* Room for @n pages, one after the other (vo_disk_has_room()); NULL when
 * no memory is left. */
static guint8 *vo_disk_take_pages(VoDisk *disk, guint n, GError **error)
{
    gsize need = n * (gsize)VO_PAGE_SIZE;
    gint i = vo_disk_chunk_with_room(disk, n);
    VoChunk fresh;

    g_assert(n <= VO_CHUNK_PAGES);
    if (i >= 0) {
        VoChunk *c = &g_array_index(disk->chunks, VoChunk, i);

        c->used += need;
        while (disk->chunk < disk->chunks->len &&
               g_array_index(disk->chunks, VoChunk,
                             disk->chunk).used == VO_CHUNK_SIZE) {
            disk->chunk++;
        }
        return c->base + c->used - need;
    }
    fresh.base = vo_disk_chunk_new();
    if (!fresh.base) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "no memory for the disk's cache: %s", g_strerror(errno));
        return NULL;
    }
    fresh.used = need;
    g_array_append_val(disk->chunks, fresh);
    return fresh.base;
}

/* Give back the @n pages at @data, the last ones taken (a failed read). */
static void vo_disk_untake_pages(VoDisk *disk, guint8 *data, guint n)
{
    for (guint i = 0; i < disk->chunks->len; i++) {
        VoChunk *c = &g_array_index(disk->chunks, VoChunk, i);

        if (data >= c->base && data < c->base + VO_CHUNK_SIZE &&
            data + n * (gsize)VO_PAGE_SIZE == c->base + c->used) {
            c->used -= n * (gsize)VO_PAGE_SIZE;
            disk->chunk = MIN(disk->chunk, i);
            return;
        }
    }
}

static gboolean vo_disk_nbd_io(VoDisk *disk, gboolean write, void *buf,
                               gsize count, guint64 offset, GError **error)
{
    int r = write ? nbd_pwrite(disk->nbd, buf, count, offset, 0)
                  : nbd_pread(disk->nbd, buf, count, offset, 0);

    if (r < 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "NBD %s of %zu bytes at %" G_GUINT64_FORMAT ": %s",
                    write ? "write" : "read", count, offset,
                    nbd_get_error());
        return FALSE;
    }
    return TRUE;
}

static gboolean vo_disk_nbd_flush(VoDisk *disk, GError **error)
{
    if (nbd_flush(disk->nbd, 0) < 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "NBD flush: %s",
                    nbd_get_error());
        return FALSE;
    }
    return TRUE;
}

static void vo_disk_nbd_close(VoDisk *disk)
{
    if (disk->nbd) {
        /* The server ends with its last client (the parent reaps it). */
        nbd_shutdown(disk->nbd, 0);
        nbd_close(disk->nbd);
    }
}

static const VoDiskBackend vo_disk_nbd_backend = {
    .io = vo_disk_nbd_io,
    .flush = vo_disk_nbd_flush,
    .close = vo_disk_nbd_close,
};

static gboolean vo_disk_mem_io(VoDisk *disk, gboolean write, void *buf,
                               gsize count, guint64 offset, GError **error)
{
    if (write) {
        memcpy(disk->mem + offset, buf, count);
    } else {
        memcpy(buf, disk->mem + offset, count);
    }
    return TRUE;
}

static gboolean vo_disk_mem_flush(VoDisk *disk, GError **error)
{
    return TRUE;
}

static void vo_disk_mem_close(VoDisk *disk)
{
    if (disk->mem_bytes) {
        g_bytes_unref(disk->mem_bytes);
    } else {
        g_free(disk->mem);
    }
}

static const VoDiskBackend vo_disk_mem_backend = {
    .io = vo_disk_mem_io,
    .flush = vo_disk_mem_flush,
    .close = vo_disk_mem_close,
};

static VoDisk *vo_disk_new(const VoDiskBackend *backend, gboolean writable)
{
    VoDisk *disk = g_new0(VoDisk, 1);

    disk->backend = backend;
    disk->writable = writable;
    disk->pages = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free,
                                        NULL);
    disk->chunks = g_array_new(FALSE, FALSE, sizeof(VoChunk));
    return disk;
}

VoDisk *vo_disk_connect(int sock, const char *export, gboolean writable,
                        GError **error)
{
    g_autoptr(VoDisk) disk = vo_disk_new(&vo_disk_nbd_backend, writable);
    int64_t size;

    disk->nbd = nbd_create();
    if (!disk->nbd) {
        close(sock);
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "libnbd: %s",
                    nbd_get_error());
        return NULL;
    }
    /*
     * libnbd zeroes a buffer before reading into it, lest a failed read
     * leave old memory there: ours are given back when a read fails
     * (vo_disk_get_page()), and zeroing a megabyte before every read of
     * one costs as much again as copying it in.
     */
    nbd_set_pread_initialize(disk->nbd, false);
    /* qemu-nbd's only export is "", also libnbd's default. */
    if (export && nbd_set_export_name(disk->nbd, export) < 0) {
        close(sock);
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "libnbd: %s",
                    nbd_get_error());
        return NULL;
    }
    /* libnbd owns @sock from here, failed or not. */
    if (nbd_connect_socket(disk->nbd, sock) < 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "no disk to read: %s", nbd_get_error());
        return NULL;
    }
    if (writable && nbd_is_read_only(disk->nbd) != 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "the disk was exported read-only");
        return NULL;
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

VoDisk *vo_disk_new_from_memory(GBytes *data, gboolean writable)
{
    VoDisk *disk = vo_disk_new(&vo_disk_mem_backend, writable);
    gsize len;
    const guint8 *p = g_bytes_get_data(data, &len);

    disk->size = len;
    if (writable) {
        /* Writes land in a copy: @data stays as the caller gave it. */
        disk->mem = g_memdup2(p, len ? len : 1);
    } else {
        disk->mem_bytes = g_bytes_ref(data);
        disk->mem = (guint8 *)p;
    }
    return disk;
}

/* Its data stays in its chunk until the cache is dropped. */
static void vo_disk_page_free(VoPage *page)
{
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
    /* Every page is gone: the chunks, populated, serve again. */
    for (guint i = 0; i < disk->chunks->len; i++) {
        g_array_index(disk->chunks, VoChunk, i).used = 0;
    }
    disk->chunk = 0;
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
    for (guint i = 0; disk->chunks && i < disk->chunks->len; i++) {
        vo_disk_chunk_free(g_array_index(disk->chunks, VoChunk, i).base);
    }
    g_clear_pointer(&disk->chunks, g_array_unref);
    disk->backend->close(disk);
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

static gsize vo_disk_page_len(VoDisk *disk, guint64 index)
{
    guint64 start = index * VO_PAGE_SIZE;

    return MIN((guint64)VO_PAGE_SIZE, disk->size - start);
}

static gboolean vo_disk_io(VoDisk *disk, gboolean write, void *buf,
                           gsize count, guint64 offset, GError **error)
{
    while (count > 0) {
        gsize chunk = MIN(count, (gsize)VO_NBD_MAX_REQUEST);

        if (!disk->backend->io(disk, write, buf, chunk, offset, error)) {
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
        if (!vo_disk_io(disk, TRUE, run, len, first * VO_PAGE_SIZE,
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

static void vo_disk_add_page(VoDisk *disk, guint64 index, VoPage *page)
{
    guint64 *key = g_new(guint64, 1);

    *key = index;
    g_hash_table_insert(disk->pages, key, page);
}

/*
 * How many pages from @index on one read brings in: 1, or when the page
 * before is cached, up to VO_READ_AHEAD_PAGES more that are neither
 * cached nor past the disk's end or the cache's room.
 */
static guint vo_disk_read_run(VoDisk *disk, guint64 index)
{
    guint64 n_pages = (disk->size + VO_PAGE_SIZE - 1) / VO_PAGE_SIZE;
    guint room = VO_CACHE_MAX_PAGES - g_hash_table_size(disk->pages);
    guint64 before = index - 1;
    guint n = 1;

    if (index == 0 || !g_hash_table_contains(disk->pages, &before)) {
        return 1;
    }
    while (n <= VO_READ_AHEAD_PAGES && n < room && index + n < n_pages) {
        guint64 next = index + n;

        if (g_hash_table_contains(disk->pages, &next)) {
            break;
        }
        n++;
    }
    return n;
}

static VoPage *vo_disk_get_page(VoDisk *disk, guint64 index, gboolean load,
                                GError **error)
{
    VoPage *page = g_hash_table_lookup(disk->pages, &index);
    guint8 *run;
    gsize len;
    guint n;

    if (page) {
        return page;
    }
    n = load ? vo_disk_read_run(disk, index) : 1;
    if (g_hash_table_size(disk->pages) >= VO_CACHE_MAX_PAGES ||
        !vo_disk_has_room(disk, n)) {
        if (!vo_disk_writeback(disk, error)) {
            return NULL;
        }
        vo_disk_drop_cache(disk);
        n = 1;      /* nothing before it is cached now */
    }
    if (!load) {
        run = vo_disk_take_pages(disk, 1, error);
        if (!run) {
            return NULL;
        }
        /* A chunk used before holds old pages. */
        memset(run, 0, VO_PAGE_SIZE);
        page = g_new0(VoPage, 1);
        page->data = run;
        vo_disk_add_page(disk, index, page);
        return page;
    }
    for (;;) {
        g_autoptr(GError) local = NULL;

        run = vo_disk_take_pages(disk, n, error);
        if (!run) {
            return NULL;
        }
        /* Read into the chunk: only the end past the disk is zeroed. */
        len = (n - 1) * (gsize)VO_PAGE_SIZE +
              vo_disk_page_len(disk, index + n - 1);
        memset(run + len, 0, n * (gsize)VO_PAGE_SIZE - len);
        if (vo_disk_io(disk, FALSE, run, len, index * VO_PAGE_SIZE,
                       &local)) {
            break;
        }
        vo_disk_untake_pages(disk, run, n);
        if (n == 1) {
            g_propagate_error(error, g_steal_pointer(&local));
            return NULL;
        }
        /* What failed may lie in the pages read ahead (a damaged qcow2
         * cluster), not in the one asked for. */
        n = 1;
    }
    for (guint i = 1; i < n; i++) {
        VoPage *more = g_new0(VoPage, 1);

        more->data = run + i * (gsize)VO_PAGE_SIZE;
        vo_disk_add_page(disk, index + i, more);
    }
    page = g_new0(VoPage, 1);
    page->data = run;
    vo_disk_add_page(disk, index, page);
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

/*
 * The bytes at @offset in its cached page (loaded if need be), and in *@n
 * how many of the @count wanted from there the page holds.
 */
static const guint8 *vo_disk_cached_at(VoDisk *disk, guint64 offset,
                                       guint64 count, gsize *n,
                                       GError **error)
{
    gsize in_page = offset % VO_PAGE_SIZE;
    VoPage *page = vo_disk_get_page(disk, offset / VO_PAGE_SIZE, TRUE, error);

    if (!page) {
        return NULL;
    }
    *n = MIN(count, VO_PAGE_SIZE - in_page);
    return page->data + in_page;
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
        const guint8 *bytes;
        gsize n;

        if (offset % VO_PAGE_SIZE == 0 && count >= 4 * VO_PAGE_SIZE) {
            /* Large uncached reads (file contents) bypass the cache: the
             * pages from @index up to the first one cached. */
            gsize whole = count - count % VO_PAGE_SIZE;

            for (guint64 i = 0; i < whole / VO_PAGE_SIZE; i++) {
                guint64 idx = index + i;
                if (g_hash_table_contains(disk->pages, &idx)) {
                    whole = i * VO_PAGE_SIZE;
                    break;
                }
            }
            if (whole > 0) {
                if (!vo_disk_io(disk, FALSE, out, whole, offset, error)) {
                    return FALSE;
                }
                out += whole;
                offset += whole;
                count -= whole;
                continue;
            }
        }
        bytes = vo_disk_cached_at(disk, offset, count, &n, error);
        if (!bytes) {
            return FALSE;
        }
        memcpy(out, bytes, n);
        out += n;
        offset += n;
        count -= n;
    }
    return TRUE;
}

/* The block a sparse copy skips when it is zero: a page of the host. */
#define VO_DISK_SPARSE_BLOCK    4096

static gboolean vo_disk_is_zero(const guint8 *p, gsize n)
{
    return p[0] == 0 && memcmp(p, p + 1, n - 1) == 0;
}

gboolean vo_disk_copy_to_fd(VoDisk *disk, int fd, guint64 offset,
                            guint64 count, GError **error)
{
    if (!vo_disk_check_range(disk, count, offset, error)) {
        return FALSE;
    }
    while (count > 0) {
        gsize n;
        const guint8 *bytes = vo_disk_cached_at(disk, offset, count, &n,
                                                error);

        if (!bytes) {
            return FALSE;
        }
        /* Runs of blocks that are not zero; the zero ones stay holes, and
         * cost @fd no memory (most of a disk's first and last MiB). */
        for (gsize at = 0; at < n;) {
            gsize start, end;

            while (at < n &&
                   vo_disk_is_zero(bytes + at,
                                   MIN(VO_DISK_SPARSE_BLOCK, n - at))) {
                at += MIN(VO_DISK_SPARSE_BLOCK, n - at);
            }
            start = at;
            while (at < n &&
                   !vo_disk_is_zero(bytes + at,
                                    MIN(VO_DISK_SPARSE_BLOCK, n - at))) {
                at += MIN(VO_DISK_SPARSE_BLOCK, n - at);
            }
            end = at;
            if (end > start &&
                pwrite(fd, bytes + start, end - start, offset + start) !=
                    (ssize_t)(end - start)) {
                g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                            "cannot copy the disk's bytes: %s",
                            g_strerror(errno));
                return FALSE;
            }
        }
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
    return vo_disk_writeback(disk, error) &&
           disk->backend->flush(disk, error);
}
