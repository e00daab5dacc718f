/*
 * Guest path resolution through the guest's mount map (which vo-mounts.c
 * builds).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <stdio.h>
#include <string.h>

#include "vo-guest.h"

#define VO_MAX_SYMLINKS 40
#define VO_MAX_PATH 4096
#define VO_MAX_NAME 255

void vo_mount_free(VoMount *m)
{
    g_free(m->mountpoint);
    g_free(m->problem);
    g_free(m);
}

void vo_guest_free(VoGuest *guest)
{
    if (!guest) {
        return;
    }
    if (guest->mounts) {
        g_ptr_array_unref(guest->mounts);
    }
    if (guest->filesystems) {
        g_ptr_array_unref(guest->filesystems);
    }
    vo_layout_free(guest->layout);
    if (guest->layouts) {
        g_ptr_array_unref(guest->layouts);
    }
    if (guest->disks) {
        g_ptr_array_unref(guest->disks);
    } else {
        vo_disk_free(guest->disk);
    }
    if (guest->opened) {
        g_array_unref(guest->opened);
    }
    g_free(guest->family);
    g_free(guest->image);
    g_free(guest);
}

void vo_path_clear(VoPath *path)
{
    g_free(path->leaf);
    g_free(path->resolved);
    memset(path, 0, sizeof(*path));
}

static gboolean vo_guest_is_drive_path(const char *path)
{
    return g_ascii_isalpha(path[0]) && path[1] == ':' &&
           (path[2] == '\\' || path[2] == '/');
}

char *vo_guest_normalize_path(const char *path)
{
    char *norm;

    if (!vo_guest_is_drive_path(path)) {
        return g_strdup(path);
    }
    /* C:\Windows\x is /Windows/x on the system volume; D:\x is /:D/x,
     * a name no Windows path component can have. */
    if (g_ascii_toupper(path[0]) == 'C') {
        norm = g_strdup(path + 2);
    } else {
        norm = g_strdup_printf("/:%c%s", g_ascii_toupper(path[0]), path + 2);
    }
    g_strdelimit(norm, "\\", '/');
    return norm;
}

gboolean vo_guest_check_path(const char *path, GError **error)
{
    g_auto(GStrv) parts = NULL;
    g_autofree char *norm = NULL;

    if (vo_guest_is_drive_path(path)) {
        norm = vo_guest_normalize_path(path);
        path = norm;
    }

    if (!g_utf8_validate(path, -1, NULL) || strlen(path) > VO_MAX_PATH) {
        g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                    "path is not valid UTF-8 or too long");
        return FALSE;
    }
    if (path[0] != '/' || path[1] == '\0') {
        g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                    "path '%s' must be absolute and name a file", path);
        return FALSE;
    }
    parts = g_strsplit(path + 1, "/", -1);
    for (guint i = 0; parts[i]; i++) {
        if (g_str_equal(parts[i], "..") || g_str_equal(parts[i], ".") ||
            parts[i][0] == '\0') {
            /* Bundles name exact paths; anything relative could escape. */
            g_set_error(error, VO_ERROR, VO_ERROR_ESCAPE,
                        "path '%s' has an empty, '.' or '..' component",
                        path);
            return FALSE;
        }
        if (strlen(parts[i]) > VO_MAX_NAME) {
            g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                        "path '%s' has a component longer than %d bytes",
                        path, VO_MAX_NAME);
            return FALSE;
        }
    }
    return TRUE;
}

static char *vo_guest_join(GPtrArray *comps, guint n)
{
    GString *s = g_string_new(NULL);

    for (guint i = 0; i < n; i++) {
        g_string_append_c(s, '/');
        g_string_append(s, comps->pdata[i]);
    }
    if (s->len == 0) {
        g_string_append_c(s, '/');
    }
    return g_string_free(s, FALSE);
}

VoMount *vo_guest_mount_at(VoGuest *guest, const char *path)
{
    for (guint i = 0; i < guest->mounts->len; i++) {
        VoMount *m = guest->mounts->pdata[i];

        if (g_str_equal(m->mountpoint, path)) {
            return m;
        }
    }
    return NULL;
}

static gboolean vo_guest_mount_usable(VoMount *m, GError **error)
{
    if (!m->fs) {
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "%s cannot be serviced: %s", m->mountpoint,
                    m->problem ? m->problem : "no filesystem");
        return FALSE;
    }
    return TRUE;
}

/* A directory reached by the walk: its filesystem and node. */
typedef struct {
    VoFs *fs;
    guint64 node;
} VoDirRef;

/*
 * The directory the walk stands in: the last one it entered, or the
 * guest's root.  The walk keeps every directory it entered, so that a
 * component costs one lookup: walking again from the root for each one
 * made a crafted chain of long links through a directory cycle cost
 * quadratic time.
 */
static gboolean vo_guest_current_dir(VoGuest *guest, GArray *dirs,
                                     VoFs **fs, guint64 *node,
                                     GError **error)
{
    VoMount *m;

    if (dirs->len > 0) {
        VoDirRef *top = &g_array_index(dirs, VoDirRef, dirs->len - 1);

        *fs = top->fs;
        *node = top->node;
        return TRUE;
    }
    m = vo_guest_mount_at(guest, "/");
    if (!m) {
        g_set_error(error, VO_ERROR, VO_ERROR_NOT_FOUND,
                    "the guest has no root filesystem");
        return FALSE;
    }
    if (!vo_guest_mount_usable(m, error)) {
        return FALSE;
    }
    *fs = m->fs;
    *node = m->fs->root;
    return TRUE;
}

static void vo_guest_enter(GPtrArray *cur, GArray *dirs, const char *name,
                           VoFs *fs, guint64 node)
{
    VoDirRef ref = { fs, node };

    g_ptr_array_add(cur, g_strdup(name));
    g_array_append_val(dirs, ref);
}

static void vo_guest_push_front(GQueue *todo, const char *path)
{
    g_auto(GStrv) parts = g_strsplit(path, "/", -1);
    guint n = g_strv_length(parts);

    for (guint i = n; i > 0; i--) {
        g_queue_push_head(todo, g_strdup(parts[i - 1]));
    }
}

gboolean vo_path_check_not_mount(const VoPath *path, GError **error)
{
    if (path->mount) {
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "%s is a mount point (the root of the %s filesystem "
                    "mounted there); refusing to remove, replace or change "
                    "it", path->resolved, path->fs->type);
        return FALSE;
    }
    return TRUE;
}

gboolean vo_guest_resolve(VoGuest *guest, const char *path,
                          gboolean follow_final, VoPath *out, GError **error)
{
    g_autoptr(GPtrArray) cur = g_ptr_array_new_with_free_func(g_free);
    /* dirs[i]: the directory that cur[0..i] names. */
    g_autoptr(GArray) dirs = g_array_new(FALSE, FALSE, sizeof(VoDirRef));
    GQueue todo = G_QUEUE_INIT;
    guint hops = 0;
    gboolean ok = FALSE;

    g_autofree char *norm = NULL;

    memset(out, 0, sizeof(*out));
    if (!vo_guest_check_path(path, error)) {
        return FALSE;
    }
    if (vo_guest_is_drive_path(path) &&
        !g_str_equal(guest->family, "windows")) {
        g_set_error(error, VO_ERROR, VO_ERROR_NOT_APPLICABLE,
                    "%s: a Windows path on a %s guest", path, guest->family);
        return FALSE;
    }
    norm = vo_guest_normalize_path(path);
    vo_guest_push_front(&todo, norm + 1);
    while (!g_queue_is_empty(&todo)) {
        g_autofree char *c = g_queue_pop_head(&todo);
        gboolean final = g_queue_is_empty(&todo);
        g_autofree char *here = NULL;
        VoMount *mounted;
        VoFs *fs;
        guint64 dir, node;
        VoStat st;
        g_autoptr(GError) local = NULL;

        if (c[0] == '\0' || g_str_equal(c, ".")) {
            if (final) {
                g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                            "%s resolves to a directory", path);
                goto out;
            }
            continue;
        }
        if (g_str_equal(c, "..")) {
            /* Only link targets get here: climbing above / is an escape. */
            if (cur->len == 0) {
                g_set_error(error, VO_ERROR, VO_ERROR_ESCAPE,
                            "%s: a symbolic link climbs above the guest's "
                            "root; refusing to follow it", path);
                goto out;
            }
            g_ptr_array_remove_index(cur, cur->len - 1);
            g_array_set_size(dirs, cur->len);
            if (final) {
                g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                            "%s resolves to a directory", path);
                goto out;
            }
            continue;
        }
        if (!vo_guest_current_dir(guest, dirs, &fs, &dir, error)) {
            goto out;
        }
        g_ptr_array_add(cur, g_strdup(c));
        here = vo_guest_join(cur, cur->len);
        g_ptr_array_remove_index(cur, cur->len - 1);
        mounted = vo_guest_mount_at(guest, here);
        if (mounted) {
            if (!vo_guest_mount_usable(mounted, error)) {
                goto out;
            }
            node = mounted->fs->root;
            if (final) {
                /* The directory the guest sees there is the mounted
                 * root, not the one the mount hides. */
                out->fs = mounted->fs;
                out->exists = TRUE;
                out->node = node;
                out->mount = mounted;
                out->resolved = g_steal_pointer(&here);
                ok = mounted->fs->ops->stat(mounted->fs, node, &out->st,
                                            error);
                goto out;
            }
            vo_guest_enter(cur, dirs, c, mounted->fs, node);
            continue;
        }
        if (!fs->ops->lookup(fs, dir, c, &node, &local)) {
            if (!g_error_matches(local, VO_ERROR, VO_ERROR_NOT_FOUND)) {
                g_propagate_error(error, g_steal_pointer(&local));
                goto out;
            }
            if (!final) {
                g_set_error(error, VO_ERROR, VO_ERROR_NOT_FOUND,
                            "%s: no such directory in the guest", here);
                goto out;
            }
            out->fs = fs;
            out->parent = dir;
            out->leaf = g_strdup(c);
            out->exists = FALSE;
            out->resolved = g_steal_pointer(&here);
            ok = TRUE;
            goto out;
        }
        if (!fs->ops->stat(fs, node, &st, error)) {
            goto out;
        }
        if (st.type == VO_NODE_SYMLINK && (!final || follow_final)) {
            g_autofree char *target = NULL;

            if (++hops > VO_MAX_SYMLINKS) {
                g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                            "%s: too many levels of symbolic links", path);
                goto out;
            }
            target = fs->ops->readlink(fs, node, error);
            if (!target) {
                goto out;
            }
            if (target[0] == '\0') {
                /* As Linux has it (only a crafted filesystem holds one):
                 * an empty link names nothing. */
                g_set_error(error, VO_ERROR, VO_ERROR_NOT_FOUND,
                            "%s: a symbolic link with an empty target", here);
                goto out;
            }
            if (target[0] == '/') {
                /* Guest-absolute: it restarts at the guest's root. */
                g_ptr_array_set_size(cur, 0);
                g_array_set_size(dirs, 0);
            }
            vo_guest_push_front(&todo, target);
            continue;
        }
        if (!final) {
            if (st.type != VO_NODE_DIRECTORY) {
                g_set_error(error, VO_ERROR, VO_ERROR_NOT_FOUND,
                            "%s is not a directory", here);
                goto out;
            }
            vo_guest_enter(cur, dirs, c, fs, node);
            continue;
        }
        out->fs = fs;
        out->parent = dir;
        out->leaf = g_strdup(c);
        out->exists = TRUE;
        out->node = node;
        out->st = st;
        out->resolved = g_steal_pointer(&here);
        ok = TRUE;
    }
out:
    g_queue_clear_full(&todo, g_free);
    if (!ok) {
        vo_path_clear(out);
    }
    return ok;
}

GBytes *vo_guest_read_file(VoGuest *guest, const char *path, GError **error)
{
    return vo_guest_read_file_max(guest, path, VO_FS_MAX_FILE, error);
}

/* @path, resolved into @p: a regular file, or an error. */
static gboolean vo_guest_regular(VoGuest *guest, const char *path, VoPath *p,
                                 GError **error)
{
    if (!vo_guest_resolve(guest, path, TRUE, p, error)) {
        return FALSE;
    }
    if (!p->exists) {
        g_set_error(error, VO_ERROR, VO_ERROR_NOT_FOUND,
                    "%s does not exist in the guest", path);
        return FALSE;
    }
    if (p->st.type != VO_NODE_REGULAR) {
        g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                    "%s is not a regular file", path);
        return FALSE;
    }
    return TRUE;
}

/* @path, resolved into @p: a regular file of at most @max bytes. */
static gboolean vo_guest_regular_max(VoGuest *guest, const char *path,
                                     guint64 max, VoPath *p, GError **error)
{
    if (!vo_guest_regular(guest, path, p, error)) {
        return FALSE;
    }
    /* Before reading: the guest chooses the size, we the memory. */
    if (p->st.size > max) {
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "%s in the guest is implausibly large (%" G_GUINT64_FORMAT
                    " bytes; at most %" G_GUINT64_FORMAT ")", path,
                    p->st.size, max);
        return FALSE;
    }
    return TRUE;
}

GBytes *vo_guest_read_file_max(VoGuest *guest, const char *path, guint64 max,
                               GError **error)
{
    g_auto(VoPath) p = { 0 };

    if (!vo_guest_regular_max(guest, path, max, &p, error)) {
        return NULL;
    }
    return p.fs->ops->read(p.fs, p.node, error);
}

GBytes *vo_guest_read_text_max(VoGuest *guest, const char *path, guint64 max,
                               GError **error)
{
    g_auto(VoPath) p = { 0 };
    g_autofree char *what = NULL;

    if (!vo_guest_regular_max(guest, path, max, &p, error)) {
        return NULL;
    }
    what = g_strdup_printf("%s in the guest", path);
    return vo_fs_read_text(p.fs, p.node, p.st.size, what, error);
}

GBytes *vo_guest_read_file_head(VoGuest *guest, const char *path, gsize max,
                                GError **error)
{
    g_auto(VoPath) p = { 0 };

    if (!vo_guest_regular(guest, path, &p, error)) {
        return NULL;
    }
    return p.fs->ops->read_range(p.fs, p.node, 0, max, error);
}

gboolean vo_guest_sync(VoGuest *guest, GError **error)
{
    for (guint i = 0; i < guest->filesystems->len; i++) {
        VoFs *fs = guest->filesystems->pdata[i];

        if (fs && !fs->ops->sync(fs, error)) {
            return FALSE;
        }
    }
    if (guest->disks) {
        for (guint i = 0; i < guest->disks->len; i++) {
            if (!vo_disk_flush(guest->disks->pdata[i], error)) {
                return FALSE;
            }
        }
        return TRUE;
    }
    /* A guest without a disk of ours (vo-guestfs.c) has nothing more. */
    return !guest->disk || vo_disk_flush(guest->disk, error);
}
