/*
 * Guest drive mapping and path resolution.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <stdio.h>
#include <string.h>

#include <libmount.h>

#include "vo-guest.h"
#include "vo-registry.h"

#define VO_MAX_SYMLINKS 40
#define VO_MAX_PATH 4096
#define VO_MAX_NAME 255
#define VO_MAX_FSTAB (256 * 1024)
/* Far more than any system mounts; each entry costs a scan of the map. */
#define VO_MAX_FSTAB_ENTRIES 1024

static void vo_mount_free(VoMount *m)
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
    vo_disk_free(guest->disk);
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

/* The mount whose mountpoint is exactly @path, or NULL. */
static VoMount *vo_guest_mount_at(VoGuest *guest, const char *path)
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

gboolean vo_guest_is_mount_point(VoGuest *guest, const char *path)
{
    g_autofree char *norm = vo_guest_normalize_path(path);

    return g_str_equal(norm, "/") || vo_guest_mount_at(guest, norm) != NULL;
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
                g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                            "%s is a mount point", here);
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

GBytes *vo_guest_read_file_max(VoGuest *guest, const char *path, guint64 max,
                               GError **error)
{
    g_auto(VoPath) p = { 0 };

    if (!vo_guest_resolve(guest, path, TRUE, &p, error)) {
        return NULL;
    }
    if (!p.exists) {
        g_set_error(error, VO_ERROR, VO_ERROR_NOT_FOUND,
                    "%s does not exist in the guest", path);
        return NULL;
    }
    if (p.st.type != VO_NODE_REGULAR) {
        g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                    "%s is not a regular file", path);
        return NULL;
    }
    /* Before reading: the guest chooses the size, we the memory. */
    if (p.st.size > max) {
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "%s in the guest is implausibly large (%" G_GUINT64_FORMAT
                    " bytes; at most %" G_GUINT64_FORMAT ")", path,
                    p.st.size, max);
        return NULL;
    }
    return p.fs->ops->read(p.fs, p.node, error);
}

static gboolean vo_guest_fs_has(VoFs *fs, const char *const *comps)
{
    guint64 node = fs->root;

    for (guint i = 0; comps[i]; i++) {
        if (!fs->ops->lookup(fs, node, comps[i], &node, NULL)) {
            return FALSE;
        }
    }
    return TRUE;
}

/*
 * Whether @source is udev's name for the logical volume @volume ("VG/LV"):
 * /dev/VG/LV, or /dev/mapper/VG-LV with each '-' of either name doubled.
 */
static gboolean vo_guest_names_volume(const char *source, const char *volume)
{
    g_autofree char *vg = g_strdup(volume);
    char *lv = strchr(vg, '/');
    g_autofree char *dev = NULL;
    g_autofree char *mapper = NULL;
    g_auto(GStrv) vg_parts = NULL;
    g_auto(GStrv) lv_parts = NULL;
    g_autofree char *vg_dm = NULL;
    g_autofree char *lv_dm = NULL;

    if (!lv) {
        return FALSE;
    }
    *lv++ = '\0';
    dev = g_strdup_printf("/dev/%s/%s", vg, lv);
    vg_parts = g_strsplit(vg, "-", -1);
    lv_parts = g_strsplit(lv, "-", -1);
    vg_dm = g_strjoinv("--", vg_parts);
    lv_dm = g_strjoinv("--", lv_parts);
    mapper = g_strdup_printf("/dev/mapper/%s-%s", vg_dm, lv_dm);
    return g_str_equal(source, dev) || g_str_equal(source, mapper);
}

static VoPartition *vo_guest_find_partition(VoGuest *guest,
                                            struct libmnt_fs *ent)
{
    const char *tag = NULL, *value = NULL;
    const char *source = mnt_fs_get_source(ent);

    if (mnt_fs_get_tag(ent, &tag, &value) == 0) {
        for (guint i = 0; i < guest->layout->partitions->len; i++) {
            VoPartition *p = guest->layout->partitions->pdata[i];
            const char *have = NULL;

            if (g_str_equal(tag, "UUID")) {
                have = p->fs_uuid;
            } else if (g_str_equal(tag, "LABEL")) {
                have = p->fs_label;
            } else if (g_str_equal(tag, "PARTUUID")) {
                have = p->part_uuid;
            } else if (g_str_equal(tag, "PARTLABEL")) {
                have = p->part_label;
            }
            if (have && g_ascii_strcasecmp(have, value) == 0) {
                return p;
            }
        }
        return NULL;
    }
    for (guint i = 0; source && i < guest->layout->partitions->len; i++) {
        VoPartition *p = guest->layout->partitions->pdata[i];

        if (p->volume && vo_guest_names_volume(source, p->volume)) {
            return p;
        }
    }
    if (source && g_str_has_prefix(source, "/dev/")) {
        /* Device names depend on the VM's bus; the trailing number does
         * not, so /dev/vda2 and /dev/sda2 both mean partition 2. */
        const char *end = source + strlen(source);
        const char *digits = end;

        while (digits > source && g_ascii_isdigit(digits[-1])) {
            digits--;
        }
        if (digits < end) {
            int number = atoi(digits);

            for (guint i = 0; i < guest->layout->partitions->len; i++) {
                VoPartition *p = guest->layout->partitions->pdata[i];

                if (p->number == number) {
                    return p;
                }
            }
        }
    }
    return NULL;
}

static VoFs *vo_guest_fs_of(VoGuest *guest, VoPartition *part)
{
    guint idx;

    if (!g_ptr_array_find(guest->layout->partitions, part, &idx)) {
        return NULL;
    }
    return guest->filesystems->pdata[idx];
}

gboolean vo_guest_parse_fstab(VoGuest *guest, GBytes *fstab, GError **error)
{
    struct libmnt_table *tb;
    struct libmnt_iter *it;
    struct libmnt_fs *ent;
    FILE *f;
    gsize len;
    gboolean ok = FALSE;
    const char *text = g_bytes_get_data(fstab, &len);

    if (len == 0) {
        return TRUE;
    }
    /*
     * Without the guest's mounts a path below one of them would be read
     * from, or written to, the directory the mount hides: refuse rather
     * than ignore what is too big to map.
     */
    if (len > VO_MAX_FSTAB) {
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "the guest's /etc/fstab is implausibly large "
                    "(%zu bytes; at most %d)", len, VO_MAX_FSTAB);
        return FALSE;
    }
    f = fmemopen((void *)text, len, "r");
    tb = mnt_new_table();
    it = mnt_new_iter(MNT_ITER_FORWARD);
    if (!f || !tb || !it) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "libmount setup failed");
        goto out;
    }
    if (mnt_table_parse_stream(tb, f, "/etc/fstab") != 0) {
        g_warning("the guest's /etc/fstab does not parse; using its root only");
        ok = TRUE;
        goto out;
    }
    if (mnt_table_get_nents(tb) > VO_MAX_FSTAB_ENTRIES) {
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "the guest's /etc/fstab has implausibly many entries "
                    "(%d; at most %d)", mnt_table_get_nents(tb),
                    VO_MAX_FSTAB_ENTRIES);
        goto out;
    }
    while (mnt_table_next_fs(tb, it, &ent) == 0) {
        const char *target = mnt_fs_get_target(ent);
        const char *type = mnt_fs_get_fstype(ent);
        VoMount *m;

        if (!target || target[0] != '/' || g_str_equal(target, "/") ||
            (type && (g_str_equal(type, "swap") || g_str_equal(type, "proc") ||
                      g_str_equal(type, "tmpfs") || g_str_equal(type, "none") ||
                      g_str_equal(type, "sysfs") ||
                      g_str_equal(type, "devpts"))) ||
            !vo_guest_check_path(target, NULL) ||
            vo_guest_mount_at(guest, target)) {
            continue;
        }
        m = g_new0(VoMount, 1);
        m->mountpoint = g_strdup(target);
        m->part = vo_guest_find_partition(guest, ent);
        if (!m->part) {
            /* The guest wrote the source; the report must be UTF-8. */
            g_autofree char *source = g_utf8_make_valid(
                mnt_fs_get_source(ent) ? mnt_fs_get_source(ent) : "none",
                -1);

            m->problem = g_strdup_printf("its filesystem (%s) is not on this "
                                         "disk", source);
        } else {
            m->fs = vo_guest_fs_of(guest, m->part);
            if (!m->fs) {
                const char *why = vo_layout_unsupported_reason(
                    m->part->fstype);
                m->problem = g_strdup_printf(
                    "partition %d holds %s, which is not supported",
                    m->part->number,
                    why ? why : m->part->fstype ? m->part->fstype
                                                : "no known filesystem");
            }
        }
        g_ptr_array_add(guest->mounts, m);
    }
    ok = TRUE;
out:
    if (it) {
        mnt_free_iter(it);
    }
    if (tb) {
        mnt_unref_table(tb);
    }
    if (f) {
        fclose(f);
    }
    return ok;
}

static gboolean vo_guest_read_fstab(VoGuest *guest, GError **error)
{
    g_autoptr(GBytes) data = NULL;
    g_autoptr(GError) local = NULL;

    data = vo_guest_read_file_max(guest, "/etc/fstab", VO_MAX_FSTAB, &local);
    if (!data && !g_error_matches(local, VO_ERROR, VO_ERROR_NOT_FOUND)) {
        /* A guest whose mounts cannot be known cannot be serviced. */
        g_propagate_error(error, g_steal_pointer(&local));
        return FALSE;
    }
    if (!data) {
        /* A guest without fstab simply has nothing but its root. */
        return TRUE;
    }
    return vo_guest_parse_fstab(guest, data, error);
}

static void vo_guest_map_drive_letters(VoGuest *guest)
{
    g_autoptr(GPtrArray) letters = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GPtrArray) parts = g_ptr_array_new();
    g_autoptr(GError) local = NULL;

    if (!vo_registry_drive_letters(guest, letters, parts, &local)) {
        /* Without SYSTEM's MountedDevices there is only C:. */
        g_debug("no drive letters: %s", local->message);
        return;
    }
    for (guint i = 0; i < letters->len; i++) {
        g_autofree char *mp = g_strdup_printf("/:%s",
                                              (char *)letters->pdata[i]);
        VoMount *m;

        if (vo_guest_mount_at(guest, mp)) {
            continue;
        }
        m = g_new0(VoMount, 1);
        m->mountpoint = g_steal_pointer(&mp);
        m->part = parts->pdata[i];
        m->fs = vo_guest_fs_of(guest, m->part);
        if (!m->fs) {
            m->problem = g_strdup_printf("partition %d holds %s, which is "
                                         "not supported", m->part->number,
                                         m->part->fstype ? m->part->fstype
                                                         : "no filesystem");
        }
        g_ptr_array_add(guest->mounts, m);
    }
}

/* Maps the guest on guest->disk: partitions, filesystems, mounts. */
static gboolean vo_guest_attach(VoGuest *guest, GError **error)
{
    g_autoptr(GString) unsupported = g_string_new(NULL);
    static const char *const linux_marks[][3] = {
        { "etc", "os-release", NULL },
        { "usr", "lib", NULL },
    };
    static const char *const windows_mark[] = {
        "Windows", "System32", "config", "SOFTWARE", NULL,
    };
    VoPartition *root = NULL;
    VoMount *m;

    guest->layout = vo_layout_scan(guest->disk, error);
    if (!guest->layout) {
        return FALSE;
    }
    guest->filesystems = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vo_fs_close);
    guest->mounts = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vo_mount_free);
    for (guint i = 0; i < guest->layout->partitions->len; i++) {
        VoPartition *p = guest->layout->partitions->pdata[i];
        const char *why = vo_layout_unsupported_reason(p->fstype);
        const VoFsDriver *driver = vo_fs_driver_for(p->fstype);
        VoFs *fs = NULL;

        g_debug("partition %d at %" G_GUINT64_FORMAT ": %s", p->number,
                p->offset, p->fstype ? p->fstype : "(unknown)");
        if (driver) {
            fs = driver->open(guest->disk, p, error);
            if (!fs) {
                return FALSE;
            }
        } else if (why) {
            g_string_append_printf(unsupported, "%spartition %d: %s",
                                   unsupported->len ? "; " : "", p->number,
                                   why);
        }
        g_ptr_array_add(guest->filesystems, fs);
        if (!fs || root) {
            continue;
        }
        if (vo_guest_fs_has(fs, linux_marks[0]) ||
            (g_str_equal(fs->type, "ext4") &&
             vo_guest_fs_has(fs, linux_marks[1]) &&
             vo_guest_fs_has(fs, (const char *const[]){ "etc", NULL }))) {
            root = p;
            guest->family = g_strdup("linux");
        } else if (fs->case_insensitive && vo_guest_fs_has(fs, windows_mark)) {
            root = p;
            guest->family = g_strdup("windows");
        }
    }
    if (!root) {
        if (unsupported->len) {
            g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                        "unsupported disk layout (%s); vmaugment-offline "
                        "services ext2/3/4 and NTFS directly (libguestfs "
                        "can handle the rest)", unsupported->str);
        } else {
            g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                        "no Linux or Windows system found on %s",
                        guest->image);
        }
        return FALSE;
    }
    m = g_new0(VoMount, 1);
    /* Windows' C: is "/" inside; guest paths are translated to it. */
    m->mountpoint = g_strdup("/");
    m->part = root;
    m->fs = vo_guest_fs_of(guest, root);
    g_ptr_array_add(guest->mounts, m);
    if (g_str_equal(guest->family, "linux") &&
        !vo_guest_read_fstab(guest, error)) {
        return FALSE;
    }
    if (g_str_equal(guest->family, "windows")) {
        vo_guest_map_drive_letters(guest);
    }
    return TRUE;
}

VoGuest *vo_guest_new(VoDisk *disk, const char *image, GError **error)
{
    g_autoptr(VoGuest) guest = g_new0(VoGuest, 1);

    guest->image = g_strdup(image);
    guest->disk = disk;
    if (!vo_guest_attach(guest, error)) {
        return NULL;
    }
    return g_steal_pointer(&guest);
}

gboolean vo_guest_reopen_read_only(VoGuest *guest, GError **error)
{
    /* What is verified must be what reached the image, not our cache. */
    if (!vo_guest_sync(guest, error)) {
        return FALSE;
    }
    g_clear_pointer(&guest->mounts, g_ptr_array_unref);
    g_clear_pointer(&guest->filesystems, g_ptr_array_unref);
    g_clear_pointer(&guest->layout, vo_layout_free);
    g_clear_pointer(&guest->family, g_free);
    vo_disk_set_read_only(guest->disk);
    vo_disk_drop_cache(guest->disk);
    return vo_guest_attach(guest, error);
}

gboolean vo_guest_sync(VoGuest *guest, GError **error)
{
    for (guint i = 0; i < guest->filesystems->len; i++) {
        VoFs *fs = guest->filesystems->pdata[i];

        if (fs && !fs->ops->sync(fs, error)) {
            return FALSE;
        }
    }
    return vo_disk_flush(guest->disk, error);
}
