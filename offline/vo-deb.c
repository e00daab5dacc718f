/*
 * A .deb's control members (vo-deb.h).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <string.h>

#include <archive.h>
#include <archive_entry.h>

#include "vo-deb.h"
#include "vo-disk.h"

/* Control archives are a few KiB; no package has one near this. */
#define VO_DEB_MAX_CONTROL (64 * 1024 * 1024)

static gboolean vo_deb_fail(GError **error, const char *path,
                            struct archive *a)
{
    g_set_error(error, VO_ERROR, VO_ERROR_INVALID, "cannot read %s: %s",
                path, a && archive_error_string(a) ? archive_error_string(a)
                                                   : "not a .deb");
    return FALSE;
}

static gboolean vo_deb_tar_has(const char *path, const guint8 *data,
                               gsize len, const char *name, gboolean *has,
                               GError **error)
{
    struct archive *t = archive_read_new();
    struct archive_entry *entry;
    gboolean ok = TRUE;
    int r;

    archive_read_support_filter_all(t);
    archive_read_support_format_tar(t);
    if (archive_read_open_memory(t, data, len) != ARCHIVE_OK) {
        ok = vo_deb_fail(error, path, t);
        archive_read_free(t);
        return ok;
    }
    while ((r = archive_read_next_header(t, &entry)) == ARCHIVE_OK) {
        const char *member = archive_entry_pathname(entry);

        if (g_str_has_prefix(member, "./")) {
            member += 2;
        }
        if (g_str_equal(member, name)) {
            *has = TRUE;
        }
    }
    if (r != ARCHIVE_EOF) {
        ok = vo_deb_fail(error, path, t);
    }
    archive_read_free(t);
    return ok;
}

gboolean vo_deb_has_control_member(const char *path, const char *name,
                                   gboolean *has, GError **error)
{
    struct archive *a = archive_read_new();
    struct archive_entry *entry;
    gboolean found = FALSE, ok = FALSE;

    *has = FALSE;
    archive_read_support_format_ar(a);
    if (archive_read_open_filename(a, path, 64 * 1024) != ARCHIVE_OK) {
        vo_deb_fail(error, path, a);
        archive_read_free(a);
        return FALSE;
    }
    while (!found && archive_read_next_header(a, &entry) == ARCHIVE_OK) {
        gint64 size = archive_entry_size(entry);
        g_autofree guint8 *buf = NULL;

        if (!g_str_has_prefix(archive_entry_pathname(entry), "control.tar")) {
            continue;
        }
        found = TRUE;
        if (size <= 0 || size > VO_DEB_MAX_CONTROL) {
            break;
        }
        buf = g_malloc(size);
        if (archive_read_data(a, buf, size) != size) {
            break;
        }
        ok = vo_deb_tar_has(path, buf, size, name, has, error);
        archive_read_free(a);
        return ok;
    }
    vo_deb_fail(error, path, found ? a : NULL);
    archive_read_free(a);
    return FALSE;
}
