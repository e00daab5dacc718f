/*
 * Atomic application of a bundle to an image, on the host: one apply per
 * image at a time, the overlay the worker patches, the journal, the commit
 * into the image and recovery after a crash.  Nothing here reads guest
 * data: the confined worker (vo-worker.c) decides, patches and verifies,
 * or, on the route the user chose for XFS and btrfs, libguestfs's
 * appliance (vo-guestfs.c).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "servicing.h"
#include "vo-apply.h"
#include "vo-guestfs.h"
#include "vo-image.h"
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

/* Copies the verified overlay into the image and removes the sidecars. */
static gboolean vo_apply_commit(const char *overlay, const char *journal,
                                GError **error)
{
    const char *args[] = {
        /* -d keeps the overlay intact, so a killed commit can be redone. */
        "commit", "-q", "-d", "-f", "qcow2", overlay, NULL,
    };

    if (!vo_image_qemu_img(args, error)) {
        return FALSE;
    }
    /*
     * The overlay goes first: a journal alone says "committed", while an
     * overlay alone says "never written" and would have recover report a
     * finished commit as rolled back.
     */
    if (g_unlink(overlay) < 0 && errno != ENOENT) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "cannot remove %s: %s",
                    overlay, g_strerror(errno));
        return FALSE;
    }
    if (!vo_apply_sync_dir(overlay, error)) {
        return FALSE;
    }
    if (g_unlink(journal) < 0 && errno != ENOENT) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "cannot remove %s: %s",
                    journal, g_strerror(errno));
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

static void vo_apply_unlock(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
    }
}

static gboolean vo_apply_recover_locked(const char *image,
                                        const char **action, GError **error);

gboolean vo_apply_recover(const char *image, const char **action,
                          GError **error)
{
    int fd = vo_apply_lock(image, error);
    gboolean ok;

    if (fd < 0) {
        return FALSE;
    }
    ok = vo_apply_recover_locked(image, action, error);
    close(fd);
    return ok;
}

static gboolean vo_apply_recover_locked(const char *image,
                                        const char **action, GError **error)
{
    g_autofree char *overlay = vo_apply_sidecar(image, "overlay.qcow2");
    g_autofree char *journal = vo_apply_sidecar(image, "journal");
    g_autofree char *journal_tmp = g_strdup_printf("%s.tmp", journal);
    gboolean have_overlay = g_file_test(overlay, G_FILE_TEST_EXISTS);
    gboolean have_journal = g_file_test(journal, G_FILE_TEST_EXISTS);

    if (action) {
        *action = "none";
    }
    g_unlink(journal_tmp);
    if (!have_overlay && !have_journal) {
        return TRUE;
    }
    if (!vo_image_check_unlocked(image, TRUE, error)) {
        return FALSE;
    }
    if (have_journal) {
        if (!have_overlay) {
            /* The commit finished; only the journal's removal did not. */
            g_unlink(journal);
            return vo_apply_sync_dir(journal, error);
        }
        if (!vo_image_check_overlay(overlay, image, error)) {
            return FALSE;
        }
        g_message("%s: finishing an interrupted apply", image);
        if (!vo_apply_commit(overlay, journal, error)) {
            g_prefix_error(error, "cannot finish the interrupted apply: ");
            return FALSE;
        }
        if (action) {
            *action = "rolled-forward";
        }
        return TRUE;
    }
    /* No journal: the image was never written; drop the half-done work. */
    g_unlink(overlay);
    if (action) {
        *action = "rolled-back";
    }
    return TRUE;
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
        if (g_str_equal(l->data, "status") || g_str_equal(l->data, "error")) {
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

/* The worker's part: decide (and, unless a dry run, patch and verify) on
 * @disk, a qcow2 overlay or (dry run) the image itself; with
 * VO_APPLY_LIBGUESTFS, libguestfs's appliance does the worker's part. */
static gboolean vo_apply_in_worker(const char *image, const char *disk,
                                   const char *format, VoBundle *bundle,
                                   VoApplyFlags flags, JsonBuilder *report,
                                   const char **status, GError **error)
{
    g_autoptr(JsonObject) worker = NULL;
    gboolean dry_run = flags & VO_APPLY_DRY_RUN;
    VoWorkerRequest req = {
        .job = dry_run ? VO_WORKER_CHECK : VO_WORKER_APPLY,
        .image = image,
        .disk = disk,
        .format = format,
        .bundle = bundle,
    };
    gboolean ok = (flags & VO_APPLY_LIBGUESTFS)
                      ? vo_guestfs_run(image, disk, format, bundle, dry_run,
                                       &worker, error)
                      : vo_worker_run(&req, &worker, error);

    vo_apply_copy_report(report, worker);
    *status = vo_apply_worker_status(worker);
    return ok;
}

gboolean vo_apply_image(const char *image, const char *format,
                        VoBundle *bundle, VoApplyFlags flags,
                        JsonBuilder *report, GError **error)
{
    g_autofree char *fmt = NULL;
    g_autofree char *absimage = g_canonicalize_filename(image, NULL);
    g_autofree char *overlay = vo_apply_sidecar(absimage, "overlay.qcow2");
    g_autofree char *journal = vo_apply_sidecar(absimage, "journal");
    g_autofree char *journal_text = NULL;
    const char *recovered;
    const char *status;
    /* Held until we return, whichever way. */
    __attribute__((cleanup(vo_apply_unlock))) int lock_fd = -1;

    vo_apply_member_str(report, "image", image);
    vo_apply_member_str(report, "bundle", bundle->id);
    vo_apply_member_str(report, "bundle_version", bundle->version);
    vo_apply_member_str(report, "signer", bundle->signer);
    lock_fd = vo_apply_lock(absimage, error);
    if (lock_fd < 0 ||
        !vo_apply_recover_locked(absimage, &recovered, error)) {
        vo_apply_status(report, "error");
        return FALSE;
    }
    vo_apply_member_str(report, "recovery", recovered);

    if (!(fmt = vo_image_open_format(absimage, format,
                                     !(flags & VO_APPLY_DRY_RUN), error))) {
        vo_apply_status(report, "error");
        return FALSE;
    }
    if (flags & VO_APPLY_DRY_RUN) {
        /* A dry run leaves no file behind: it reads the image itself. */
        gboolean ok = vo_apply_in_worker(image, absimage, fmt, bundle, flags,
                                         report, &status, error);

        vo_apply_status(report, status);
        return ok;
    }
    {
        const char *args[] = {
            "create", "-q", "-f", "qcow2", "-b", absimage, "-F", fmt,
            overlay, NULL,
        };

        if (!vo_image_qemu_img(args, error)) {
            vo_apply_status(report, "error");
            return FALSE;
        }
    }
    /*
     * From here until the journal exists, any end means: drop the overlay.
     * The worker decides on the image through the still-empty overlay, so
     * the decision and the patch see exactly the same bytes, and verifies
     * what reached the overlay.
     */
    if (!vo_apply_in_worker(image, overlay, "qcow2", bundle,
                            flags & ~VO_APPLY_DRY_RUN, report,
                            &status, error)) {
        g_unlink(overlay);
        vo_apply_status(report, status);
        return FALSE;
    }
    if (!g_str_equal(status, "patched")) {
        /* Nothing to do ("already-applied"). */
        g_unlink(overlay);
        vo_apply_status(report, status);
        return TRUE;
    }
    {
        g_autoptr(JsonBuilder) jb = json_builder_new();
        g_autoptr(JsonGenerator) gen = json_generator_new();
        g_autoptr(JsonNode) root = NULL;

        /* For people: recovery needs only the journal's existence. */
        json_builder_begin_object(jb);
        vo_apply_member_str(jb, "image", absimage);
        vo_apply_member_str(jb, "bundle", bundle->id);
        vo_apply_member_str(jb, "version", bundle->version);
        json_builder_end_object(jb);
        root = json_builder_get_root(jb);
        json_generator_set_root(gen, root);
        journal_text = json_generator_to_data(gen, NULL);
    }
    if (!vo_apply_write_journal(journal, journal_text, error)) {
        goto fail;
    }
    /*
     * From the journal on the patch will be in the image (recover finishes
     * it), so the host now awaits the guest's report of it.  Without the
     * record the guest's report would be refused: undo rather than leave
     * an update nobody can confirm.
     */
    if (bundle->marker_sha256 != NULL &&
        !vo_apply_await_report(absimage, bundle, error)) {
        g_unlink(journal);
        goto fail;
    }
    g_debug("%s: committing", image);
    if (!vo_apply_commit(overlay, journal, error)) {
        g_prefix_error(error, "commit interrupted (run 'vmaugment-offline "
                       "recover %s' to finish it): ", image);
        vo_apply_status(report, "error");
        return FALSE;
    }
    g_debug("%s: applied", image);
    vo_apply_status(report, "applied");
    return TRUE;

fail:
    g_unlink(overlay);
    vo_apply_status(report, "error");
    return FALSE;
}
