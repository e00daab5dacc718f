/*
 * Atomic application of a bundle to an image, on the host: one apply per
 * image at a time, the overlay the worker patches, the journal, the commit
 * into the image and recovery after a crash.  Nothing here reads guest
 * data: the confined worker (vo-worker.c) decides, patches and verifies,
 * or, on the route the user chose for XFS and btrfs, libguestfs's
 * appliance (vo-guestfs.c) or the host kernel (vo-hostkernel.c).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "servicing.h"
#include "vo-apply.h"
#include "vo-guestfs.h"
#include "vo-hostkernel.h"
#include "vo-image.h"
#include "vo-scan.h"
#include "vo-worker.h"

static void vo_apply_member_str(JsonBuilder *b, const char *name,
                                const char *value)
{
    if (value) {
        json_builder_set_member_name(b, name);
        json_builder_add_string_value(b, value);
    }
}

/* Files an apply keeps next to the image, on the same filesystem. */
static char *vo_apply_sidecar(const char *image, const char *suffix)
{
    g_autofree char *dir = g_path_get_dirname(image);
    g_autofree char *base = g_path_get_basename(image);
    g_autofree char *name = g_strdup_printf(".%s.vmaugment-%s", base, suffix);

    return g_build_filename(dir, name, NULL);
}

static gboolean vo_apply_sync_dir(const char *path, GError **error)
{
    g_autofree char *dir = g_path_get_dirname(path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0 || fsync(fd) < 0) {
        int saved = errno;

        if (fd >= 0) {
            close(fd);
        }
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "cannot sync %s: %s",
                    dir, g_strerror(saved));
        return FALSE;
    }
    close(fd);
    return TRUE;
}

static gboolean vo_apply_write_journal(const char *journal, const char *text,
                                       GError **error)
{
    g_autofree char *tmp = g_strdup_printf("%s.tmp", journal);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    gsize len = strlen(text);

    if (fd < 0 || write(fd, text, len) != (ssize_t)len || fsync(fd) < 0) {
        int saved = errno;

        if (fd >= 0) {
            close(fd);
        }
        g_unlink(tmp);
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "cannot write %s: %s",
                    tmp, g_strerror(saved));
        return FALSE;
    }
    close(fd);
    /* The rename is the commit point of the whole apply. */
    if (rename(tmp, journal) < 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "cannot rename %s: %s",
                    tmp, g_strerror(errno));
        g_unlink(tmp);
        return FALSE;
    }
    return vo_apply_sync_dir(journal, error);
}

/*
 * One vmaugment-offline at a time per image: a second apply would take the
 * first one's overlay for debris and delete it.  flock() locks are
 * independent of the OFD byte locks QEMU takes on the same file (on local
 * filesystems), so qemu-nbd and qemu-img still get theirs.
 */
static int vo_apply_lock(const char *image, GError **error)
{
    int fd = open(image, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_NOT_FOUND, "cannot open %s: %s",
                    image, g_strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int saved = errno;

        close(fd);
        g_set_error(error, VO_ERROR, VO_ERROR_IN_USE,
                    saved == EWOULDBLOCK
                        ? "%s is being serviced by another vmaugment-offline"
                        : "cannot lock %s: %s",
                    image, g_strerror(saved));
        return -1;
    }
    return fd;
}

/*
 * A guest of several disks is applied as one (docs/offline.rst, "Applying
 * atomically"): the journal next to its first disk is the one commit
 * point, and names every disk; each later disk carries a link, the path
 * of the first disk, from before its overlay exists until the whole
 * commit is done, so that recovery started from any disk finds the
 * group's journal.
 */
#define VO_APPLY_MAX_JOURNAL (64 * 1024)

/* The image a later disk's link names, or NULL (no link). */
static char *vo_apply_read_link(const char *image, GError **error)
{
    g_autofree char *link = vo_apply_sidecar(image, "group");
    g_autofree char *text = NULL;
    gsize len;

    if (!g_file_test(link, G_FILE_TEST_EXISTS)) {
        return NULL;
    }
    if (!g_file_get_contents(link, &text, &len, error)) {
        return NULL;
    }
    if (len == 0 || len > 4096 || strlen(text) != len ||
        !g_path_is_absolute(text)) {
        g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                    "%s does not name an image; remove it if no apply of "
                    "%s was interrupted", link, image);
        return NULL;
    }
    return g_steal_pointer(&text);
}

/* The disks the journal @journal of @first names, in order (@first alone
 * in a journal of one disk). */
static GPtrArray *vo_apply_journal_disks(const char *journal,
                                         const char *first, GError **error)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GPtrArray) disks = g_ptr_array_new_with_free_func(g_free);
    g_autofree char *text = NULL;
    gsize len;
    JsonNode *root;
    JsonArray *list;

    if (!g_file_get_contents(journal, &text, &len, error)) {
        return NULL;
    }
    if (len > VO_APPLY_MAX_JOURNAL ||
        !json_parser_load_from_data(parser, text, len, NULL) ||
        !JSON_NODE_HOLDS_OBJECT(root = json_parser_get_root(parser))) {
        goto bad;
    }
    if (!json_object_has_member(json_node_get_object(root), "disks")) {
        g_ptr_array_add(disks, g_strdup(first));
        return g_steal_pointer(&disks);
    }
    if (!JSON_NODE_HOLDS_ARRAY(json_object_get_member(
            json_node_get_object(root), "disks"))) {
        goto bad;
    }
    list = json_object_get_array_member(json_node_get_object(root), "disks");
    for (guint i = 0; i < json_array_get_length(list); i++) {
        JsonNode *n = json_array_get_element(list, i);

        if (json_node_get_value_type(n) != G_TYPE_STRING ||
            !g_path_is_absolute(json_node_get_string(n)) ||
            i >= VO_WORKER_MAX_DISKS) {
            goto bad;
        }
        g_ptr_array_add(disks, g_strdup(json_node_get_string(n)));
    }
    if (disks->len == 0 || !g_str_equal(disks->pdata[0], first)) {
        goto bad;
    }
    return g_steal_pointer(&disks);
bad:
    g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                "%s is not a journal of vmaugment-offline; remove it if no "
                "apply of %s was interrupted", journal, first);
    return NULL;
}

/* Whether @path is one of @held (the images whose lock we hold). */
static gboolean vo_apply_holds(GPtrArray *held, const char *path)
{
    for (guint i = 0; held && i < held->len; i++) {
        if (g_str_equal(held->pdata[i], path)) {
            return TRUE;
        }
    }
    return FALSE;
}

/* Removes @path if present, and syncs its directory. */
static gboolean vo_apply_remove(const char *path, GError **error)
{
    if (g_unlink(path) < 0) {
        if (errno == ENOENT) {
            return TRUE;
        }
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "cannot remove %s: %s",
                    path, g_strerror(errno));
        return FALSE;
    }
    return vo_apply_sync_dir(path, error);
}

/*
 * Whether @overlay is still the file this apply created and holds open as
 * @fd.  Its header is then the one qemu-img create wrote: nothing but
 * qemu-nbd, which writes guest data and the tables that map it, has had
 * it open since.
 */
static gboolean vo_apply_is_made(const char *overlay, int fd, GError **error)
{
    GStatBuf st;
    struct stat made;

    if (g_lstat(overlay, &st) < 0 || fstat(fd, &made) < 0 ||
        !S_ISREG(st.st_mode) || st.st_dev != made.st_dev ||
        st.st_ino != made.st_ino) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "%s is no longer the overlay this apply made; it is "
                    "not committed", overlay);
        return FALSE;
    }
    return TRUE;
}

/* The overlay an interrupted apply left, opened for its commit; a link
 * under its name is no overlay of ours. */
static int vo_apply_open_overlay(const char *overlay, GError **error)
{
    int fd = open(overlay, O_RDWR | O_NOFOLLOW | O_CLOEXEC);

    if (fd < 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "cannot open %s: %s",
                    overlay, g_strerror(errno));
    }
    return fd;
}

/*
 * Rolls the group of @journal forward: every disk's overlay committed,
 * then the links, then the journal removed.  The images of @disks not in
 * @held are locked here first.  @made (NULL in a recovery): per disk, the
 * overlay this process created, still open; an overlay found on disk
 * instead is opened and has its header read (vo_image_check_overlay()).
 * qemu-img commits the file so held, not whatever is under its name
 * when qemu-img starts.
 */
static gboolean vo_apply_roll_forward(GPtrArray *disks, const char *journal,
                                      GPtrArray *held, const int *made,
                                      GError **error)
{
    g_autoptr(GArray) fds = g_array_new(FALSE, FALSE, sizeof(int));
    gboolean ok = TRUE;

    for (guint i = 0; ok && i < disks->len; i++) {
        int fd;

        if (vo_apply_holds(held, disks->pdata[i])) {
            continue;
        }
        fd = vo_apply_lock(disks->pdata[i], error);
        if (fd < 0) {
            ok = FALSE;
            break;
        }
        g_array_append_val(fds, fd);
    }
    for (guint i = 0; ok && i < disks->len; i++) {
        const char *image = disks->pdata[i];
        g_autofree char *overlay = vo_apply_sidecar(image, "overlay.qcow2");
        const char *args[] = {
            /* -d keeps the overlay intact: a killed commit can be redone. */
            "commit", "-q", "-d", "-f", "qcow2", VO_IMAGE_FD_ARG, NULL,
        };
        int found = -1;

        if (!g_file_test(overlay, G_FILE_TEST_EXISTS)) {
            /* Committed already; only its removal was not. */
            continue;
        }
        if (!made) {
            found = vo_apply_open_overlay(overlay, error);
        }
        ok = (made || found >= 0) &&
             vo_image_check_unlocked(image, TRUE, error) &&
             (made ? vo_apply_is_made(overlay, made[i], error)
                   : vo_image_check_overlay(overlay, found, image, error)) &&
             vo_image_qemu_img_fds(args, made ? made[i] : found, -1, error) &&
             vo_apply_remove(overlay, error);
        if (found >= 0) {
            close(found);
        }
        if (ok && disks->len > 1) {
            g_debug("%s: committed", image);
        }
    }
    /*
     * The links go before the journal: a link without its journal says
     * "never committed", which is true only once every disk is.
     */
    for (guint i = 1; ok && i < disks->len; i++) {
        g_autofree char *link = vo_apply_sidecar(disks->pdata[i], "group");

        ok = vo_apply_remove(link, error);
    }
    ok = ok && vo_apply_remove(journal, error);
    for (guint i = 0; i < fds->len; i++) {
        close(g_array_index(fds, int, i));
    }
    return ok;
}

/* Drops what an apply that never reached its journal left by @image. */
static gboolean vo_apply_roll_back(const char *image, gboolean *any,
                                   GError **error)
{
    g_autofree char *overlay = vo_apply_sidecar(image, "overlay.qcow2");
    g_autofree char *link = vo_apply_sidecar(image, "group");

    *any = g_file_test(overlay, G_FILE_TEST_EXISTS) ||
           g_file_test(link, G_FILE_TEST_EXISTS);
    if (!*any) {
        return TRUE;
    }
    /* The overlay first: a link alone is harmless. */
    return vo_image_check_unlocked(image, TRUE, error) &&
           vo_apply_remove(overlay, error) && vo_apply_remove(link, error);
}

/* @image is locked by us, with the images of @held (may be NULL). */
static gboolean vo_apply_recover_locked(const char *image, GPtrArray *held,
                                        const char **action, GError **error)
{
    g_autofree char *first = NULL;
    g_autofree char *journal = NULL;
    g_autofree char *journal_tmp = NULL;
    g_autoptr(GPtrArray) disks = NULL;
    g_autoptr(GError) local = NULL;
    gboolean any, copies;

    if (action) {
        *action = "none";
    }
    /* A --host-kernel copy is never part of a commit: debris, always. */
    if (!vo_hostkernel_clean(image, &copies, error)) {
        return FALSE;
    }
    first = vo_apply_read_link(image, &local);
    if (local) {
        g_propagate_error(error, g_steal_pointer(&local));
        return FALSE;
    }
    if (!first) {
        first = g_strdup(image);
    }
    journal = vo_apply_sidecar(first, "journal");
    journal_tmp = g_strdup_printf("%s.tmp", journal);
    if (g_str_equal(first, image)) {
        /* Never renamed into place: nothing was committed. */
        g_unlink(journal_tmp);
    }
    if (g_file_test(journal, G_FILE_TEST_EXISTS)) {
        disks = vo_apply_journal_disks(journal, first, error);
        if (!disks) {
            return FALSE;
        }
    }
    if (disks && vo_apply_holds(disks, image)) {
        g_message("%s: finishing an interrupted apply", image);
        if (!vo_apply_roll_forward(disks, journal, held, NULL, error)) {
            g_prefix_error(error, "cannot finish the interrupted apply: ");
            return FALSE;
        }
        if (action) {
            *action = "rolled-forward";
        }
        return TRUE;
    }
    /*
     * No journal names this disk: its overlay was never committed (a
     * journal naming other disks is another apply's, which the first
     * disk's recovery finishes).
     */
    if (!vo_apply_roll_back(image, &any, error)) {
        return FALSE;
    }
    if (action && (any || copies)) {
        *action = "rolled-back";
    }
    return TRUE;
}

gboolean vo_apply_recover(const char *image, const char **action,
                          GError **error)
{
    g_autofree char *absimage = g_canonicalize_filename(image, NULL);
    g_autoptr(GPtrArray) held = g_ptr_array_new();
    int fd = vo_apply_lock(absimage, error);
    gboolean ok;

    if (fd < 0) {
        return FALSE;
    }
    g_ptr_array_add(held, absimage);
    ok = vo_apply_recover_locked(absimage, held, action, error);
    close(fd);
    return ok;
}

static void vo_apply_status(JsonBuilder *report, const char *status)
{
    vo_apply_member_str(report, "status", status);
}

/* The image's servicing record awaits @bundle's report (servicing.h). */
static gboolean vo_apply_await_report(const char *image, VoBundle *bundle,
                                      GError **error)
{
    g_autoptr(VmaugServicing) record = NULL;
    g_autoptr(GError) local = NULL;

    record = vmaug_servicing_load(image, &local);
    if (record != NULL) {
        vmaug_servicing_applied(record, bundle->id, bundle->version,
                                bundle->marker_sha256);
        if (vmaug_servicing_save(record, &local)) {
            return TRUE;
        }
    }
    g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "%s", local->message);
    return FALSE;
}

/*
 * Copies the worker's members into @report, in its order; "status" is the
 * host's to set, from the worker's (already checked) word.
 */
static void vo_apply_copy_report(JsonBuilder *report, JsonObject *worker)
{
    g_autoptr(GList) names = worker ? json_object_get_members(worker) : NULL;

    for (GList *l = names; l; l = l->next) {
        if (g_str_equal(l->data, "status") || g_str_equal(l->data, "error") ||
            g_str_equal(l->data, "quarantine")) {
            continue;
        }
        json_builder_set_member_name(report, l->data);
        json_builder_add_value(report,
                               json_node_copy(json_object_get_member(
                                   worker, l->data)));
    }
}

/* Interned: it outlives the report (one of vo-worker.c's few words). */
static const char *vo_apply_worker_status(JsonObject *worker)
{
    return g_intern_string(worker ? json_object_get_string_member_with_default(
                                        worker, "status", "error")
                                  : "error");
}

/* One disk of the guest an apply services. */
typedef struct {
    const char *name;       /* as the user named it */
    char *image;            /* canonical */
    char *overlay;
    char *link;             /* later disks: names the first */
    char *format;
    int lock_fd;
    int overlay_fd;         /* the overlay we created, until committed */
} VoApplyDisk;

static void vo_apply_disk_clear(gpointer data)
{
    VoApplyDisk *d = data;

    g_free(d->image);
    g_free(d->overlay);
    g_free(d->link);
    g_free(d->format);
    if (d->lock_fd >= 0) {
        close(d->lock_fd);
    }
    if (d->overlay_fd >= 0) {
        close(d->overlay_fd);
    }
}

/* The worker's part: decide (and, unless a dry run, patch and verify) on
 * the disks' overlays or (dry run) the images themselves; with
 * VO_APPLY_LIBGUESTFS, libguestfs's appliance does the worker's part, with
 * VO_APPLY_HOST_KERNEL the host kernel (after the worker says where). */
static gboolean vo_apply_create_overlays(gpointer data, int *fds,
                                         GError **error);

/*
 * The scan report of a quarantine instruction, checked as any worker's
 * scan is, into @report: what was moved aside.
 */
static gboolean vo_apply_quarantine_report(JsonObject *worker,
                                           JsonBuilder *report,
                                           GError **error)
{
    JsonNode *scan = worker ? json_object_get_member(worker, "quarantine")
                            : NULL;
    g_autoptr(JsonObject) checked = NULL;

    if (!scan) {
        return TRUE;
    }
    checked = vo_scan_check_report(scan, 0, NULL, NULL, error);
    if (!checked) {
        g_prefix_error(error, "quarantine: ");
        return FALSE;
    }
    json_builder_set_member_name(report, "quarantine");
    json_builder_add_value(report, json_node_init_object(json_node_alloc(),
                                                         checked));
    return TRUE;
}

static gboolean vo_apply_in_worker(GArray *disks, VoBundle *bundle,
                                   VoApplyFlags flags,
                                   const VoScanOptions *scan_opts,
                                   JsonBuilder *report, const char **status,
                                   GError **error)
{
    g_autoptr(GBytes) scan = NULL;
    g_autoptr(JsonObject) worker = NULL;
    gboolean dry_run = flags & VO_APPLY_DRY_RUN;
    VoApplyDisk *first = &g_array_index(disks, VoApplyDisk, 0);
    const char *names[VO_WORKER_MAX_DISKS];
    const char *files[VO_WORKER_MAX_DISKS];
    const char *formats[VO_WORKER_MAX_DISKS];
    VoWorkerRequest req = {
        .job = dry_run ? VO_WORKER_CHECK : VO_WORKER_APPLY,
        .image = first->name,
        .disk = dry_run ? first->image : first->overlay,
        .format = dry_run ? first->format : "qcow2",
        .bundle = bundle,
        .n_more = disks->len - 1,
        .more_images = names,
        .more_disks = files,
        .more_formats = formats,
        /* An apply's overlays are made while its worker starts. */
        .prepare = dry_run ? NULL : vo_apply_create_overlays,
        .prepare_data = disks,
    };
    int made[VO_WORKER_MAX_DISKS];
    gboolean ok;

    if (vo_bundle_quarantine_op(bundle)) {
        /* What it moves is what the host's database finds: without one
         * it would decide on nothing. */
        if (!scan_opts || !scan_opts->database) {
            g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                        "bundle %s has a quarantine instruction: apply it "
                        "with --database DIR (the signature database it "
                        "scans with)", bundle->id);
            *status = "error";
            return FALSE;
        }
        scan = vo_scan_quarantine_request(scan_opts, error);
        if (!scan) {
            *status = "error";
            return FALSE;
        }
        req.request = scan;
    }
    for (guint i = 1; i < disks->len && i <= VO_WORKER_MAX_DISKS; i++) {
        VoApplyDisk *d = &g_array_index(disks, VoApplyDisk, i);

        names[i - 1] = d->name;
        files[i - 1] = dry_run ? d->image : d->overlay;
        formats[i - 1] = dry_run ? d->format : "qcow2";
    }
    if (flags & VO_APPLY_LIBGUESTFS) {
        if (disks->len != 1) {
            g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                        "--backend=libguestfs services guests of one disk");
            ok = FALSE;
        } else {
            ok = (!req.prepare ||
                  req.prepare(req.prepare_data, made, error)) &&
                 vo_guestfs_run(req.image, req.disk, req.format, bundle,
                                dry_run, &worker, error);
        }
    } else if (flags & VO_APPLY_HOST_KERNEL) {
        if (disks->len != 1) {
            g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                        "--host-kernel services guests of one disk");
            ok = FALSE;
        } else {
            ok = (!req.prepare ||
                  req.prepare(req.prepare_data, made, error)) &&
                 vo_hostkernel_run(dry_run ? VO_HOSTKERNEL_CHECK
                                           : VO_HOSTKERNEL_APPLY,
                                   req.image, first->image, req.disk,
                                   dry_run ? -1 : made[0], req.format,
                                   bundle, &worker, error);
        }
    } else {
        ok = vo_worker_run(&req, &worker, error);
    }
    vo_apply_copy_report(report, worker);
    *status = vo_apply_worker_status(worker);
    if (!vo_apply_quarantine_report(worker, report, ok ? error : NULL)) {
        *status = "error";
        return FALSE;
    }
    return ok;
}

/* Drops every overlay and link the apply made (it never journaled). */
static void vo_apply_drop(GArray *disks)
{
    for (guint i = 0; i < disks->len; i++) {
        VoApplyDisk *d = &g_array_index(disks, VoApplyDisk, i);

        g_unlink(d->overlay);
        if (d->link) {
            g_unlink(d->link);
        }
    }
}

/* The journal: the commit point, naming every disk of the guest. */
static char *vo_apply_journal_text(GArray *disks, VoBundle *bundle)
{
    g_autoptr(JsonBuilder) jb = json_builder_new();
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(JsonNode) root = NULL;

    json_builder_begin_object(jb);
    vo_apply_member_str(jb, "image",
                        g_array_index(disks, VoApplyDisk, 0).image);
    vo_apply_member_str(jb, "bundle", bundle->id);
    vo_apply_member_str(jb, "version", bundle->version);
    if (disks->len > 1) {
        json_builder_set_member_name(jb, "disks");
        json_builder_begin_array(jb);
        for (guint i = 0; i < disks->len; i++) {
            json_builder_add_string_value(
                jb, g_array_index(disks, VoApplyDisk, i).image);
        }
        json_builder_end_array(jb);
    }
    json_builder_end_object(jb);
    root = json_builder_get_root(jb);
    json_generator_set_root(gen, root);
    return json_generator_to_data(gen, NULL);
}

/* Locks and recovers every disk, then checks QEMU's lock and the format
 * of each one (@formats: as vo_apply_image()). */
static gboolean vo_apply_open_disks(GArray *disks,
                                    const char *const *formats,
                                    VoApplyFlags flags, JsonBuilder *report,
                                    GError **error)
{
    g_autoptr(GPtrArray) held = g_ptr_array_new();
    const char *recovered = "none";

    for (guint i = 0; i < disks->len; i++) {
        VoApplyDisk *d = &g_array_index(disks, VoApplyDisk, i);

        if (vo_apply_holds(held, d->image)) {
            g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                        "%s is named twice among the guest's disks", d->name);
            return FALSE;
        }
        d->lock_fd = vo_apply_lock(d->image, error);
        if (d->lock_fd < 0) {
            return FALSE;
        }
        g_ptr_array_add(held, d->image);
    }
    for (guint i = 0; i < disks->len; i++) {
        VoApplyDisk *d = &g_array_index(disks, VoApplyDisk, i);
        const char *action;

        if (!vo_apply_recover_locked(d->image, held, &action, error)) {
            return FALSE;
        }
        /* Rolling forward says most: it finished what another began. */
        if (!g_str_equal(action, "none") &&
            !g_str_equal(recovered, "rolled-forward")) {
            recovered = action;
        }
    }
    vo_apply_member_str(report, "recovery", recovered);
    for (guint i = 0; i < disks->len; i++) {
        VoApplyDisk *d = &g_array_index(disks, VoApplyDisk, i);

        d->format = vo_image_open_format(d->image,
                                         formats ? formats[i] : NULL,
                                         !(flags & VO_APPLY_DRY_RUN), error);
        if (!d->format) {
            return FALSE;
        }
    }
    return TRUE;
}

/* Links the later disks of @data (a GArray of VoApplyDisk) to the first,
 * then creates every overlay, held open in @fds too (the disks'). */
static gboolean vo_apply_create_overlays(gpointer data, int *fds,
                                         GError **error)
{
    GArray *disks = data;
    VoApplyDisk *first = &g_array_index(disks, VoApplyDisk, 0);

    for (guint i = 1; i < disks->len; i++) {
        VoApplyDisk *d = &g_array_index(disks, VoApplyDisk, i);

        d->link = vo_apply_sidecar(d->image, "group");
        /* Before its overlay: recovery must find the group's journal. */
        if (!g_file_set_contents(d->link, first->image, -1, error) ||
            !vo_apply_sync_dir(d->link, error)) {
            return FALSE;
        }
    }
    for (guint i = 0; i < disks->len; i++) {
        VoApplyDisk *d = &g_array_index(disks, VoApplyDisk, i);

        /*
         * Ours before qemu-img writes it: a file or link planted under
         * the name makes the apply fail instead of being written, and
         * qemu-img create and commit reach the overlay through this
         * descriptor, whatever is under the name by then.
         */
        d->overlay_fd = open(d->overlay,
                             O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW |
                                 O_CLOEXEC, 0600);
        if (d->overlay_fd < 0) {
            g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                        "cannot create %s: %s", d->overlay,
                        g_strerror(errno));
            return FALSE;
        }
        if (!vo_image_create_overlay(d->overlay, d->overlay_fd, d->image,
                                     d->format, error)) {
            return FALSE;
        }
        fds[i] = d->overlay_fd;
    }
    return TRUE;
}

gboolean vo_apply_image(const char *const *images, guint n_images,
                        const char *const *formats, VoBundle *bundle,
                        VoApplyFlags flags, const VoScanOptions *scan,
                        JsonBuilder *report, GError **error)
{
    g_autoptr(GArray) disks = g_array_new(FALSE, TRUE, sizeof(VoApplyDisk));
    g_autoptr(GPtrArray) all = g_ptr_array_new();
    g_autofree char *journal = NULL;
    g_autofree char *journal_text = NULL;
    int made[VO_WORKER_MAX_DISKS];
    const char *first;
    const char *status;

    g_array_set_clear_func(disks, vo_apply_disk_clear);
    vo_apply_member_str(report, "image", images[0]);
    if (n_images > 1) {
        json_builder_set_member_name(report, "disks");
        json_builder_begin_array(report);
        for (guint i = 0; i < n_images; i++) {
            json_builder_add_string_value(report, images[i]);
        }
        json_builder_end_array(report);
    }
    vo_apply_member_str(report, "bundle", bundle->id);
    vo_apply_member_str(report, "bundle_version", bundle->version);
    vo_apply_member_str(report, "signer", bundle->signer);
    if (n_images > VO_WORKER_MAX_DISKS) {
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "a guest of %u disks; at most %d are serviced together",
                    n_images, VO_WORKER_MAX_DISKS);
        vo_apply_status(report, "error");
        return FALSE;
    }
    for (guint i = 0; i < n_images; i++) {
        VoApplyDisk d = {
            .name = images[i],
            .image = g_canonicalize_filename(images[i], NULL),
            .lock_fd = -1,
            .overlay_fd = -1,
        };

        d.overlay = vo_apply_sidecar(d.image, "overlay.qcow2");
        g_array_append_val(disks, d);
        g_ptr_array_add(all, d.image);
    }
    first = g_array_index(disks, VoApplyDisk, 0).image;
    journal = vo_apply_sidecar(first, "journal");
    if (!vo_apply_open_disks(disks, formats, flags, report, error)) {
        vo_apply_status(report, "error");
        return FALSE;
    }
    if (flags & VO_APPLY_DRY_RUN) {
        /* A dry run leaves no file behind: it reads the images. */
        gboolean ok = vo_apply_in_worker(disks, bundle, flags, scan, report,
                                         &status, error);

        vo_apply_status(report, status);
        return ok;
    }
    /*
     * From the overlays' creation (by vo_apply_in_worker(), while the
     * worker starts) until the journal exists, any end means: drop the
     * overlays.  The worker decides on the images through the still-empty
     * overlays, so the decision and the patch see exactly the same bytes,
     * and verifies what reached every overlay before anything is
     * committed.
     */
    if (!vo_apply_in_worker(disks, bundle, flags & ~VO_APPLY_DRY_RUN,
                            scan, report, &status, error)) {
        vo_apply_drop(disks);
        vo_apply_status(report, status);
        return FALSE;
    }
    if (!g_str_equal(status, "patched")) {
        /* Nothing to do ("already-applied"). */
        vo_apply_drop(disks);
        vo_apply_status(report, status);
        return TRUE;
    }
    journal_text = vo_apply_journal_text(disks, bundle);
    if (!vo_apply_write_journal(journal, journal_text, error)) {
        goto fail;
    }
    /*
     * From the journal on the patch will be in the images (recover
     * finishes it), so the host now awaits the guest's report of it.
     * Without the record the guest's report would be refused: undo rather
     * than leave an update nobody can confirm.
     */
    if (bundle->marker_sha256 != NULL &&
        !vo_apply_await_report(first, bundle, error)) {
        g_unlink(journal);
        goto fail;
    }
    for (guint i = 0; i < disks->len; i++) {
        made[i] = g_array_index(disks, VoApplyDisk, i).overlay_fd;
    }
    g_debug("%s: committing", images[0]);
    if (!vo_apply_roll_forward(all, journal, all, made, error)) {
        g_prefix_error(error, "commit interrupted (run 'vmaugment-offline "
                       "recover %s' to finish it): ", images[0]);
        vo_apply_status(report, "error");
        return FALSE;
    }
    g_debug("%s: applied", images[0]);
    vo_apply_status(report, "applied");
    return TRUE;

fail:
    vo_apply_drop(disks);
    vo_apply_status(report, "error");
    return FALSE;
}
