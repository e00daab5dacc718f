/*
 * Building a guest's mount map (vo-mounts.h).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <string.h>

#include <libmount.h>

#include "vo-mounts.h"
#include "vo-registry.h"

#define VO_MAX_FSTAB (256 * 1024)
/* Far more than any system mounts; each entry costs a scan of the map. */
#define VO_MAX_FSTAB_ENTRIES 1024

static gboolean vo_mounts_fs_has(VoFs *fs, const char *const *comps)
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
static gboolean vo_mounts_names_volume(const char *source, const char *volume)
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

static guint vo_mounts_n_disks(VoGuest *guest)
{
    if (guest->n_disks) {
        return guest->n_disks;
    }
    return guest->disks ? guest->disks->len : 1;
}

/*
 * Which disk and partition a device name (after "/dev/") means.  Names
 * depend on the VM's bus, but each bus names disks in the order it sees
 * them: sda, vdb, xvdc, hdd and nvme1n1 are disks 0, 1, 2, 3 and 1;
 * their trailing number (after a 'p' for nvme and mmcblk) is the
 * partition, none the whole disk (0).  *@disk is -1 for other names,
 * whose trailing number still counts (/dev/disk/by-path/...-part2).
 */
static void vo_mounts_device_name(const char *name, int *disk, int *number)
{
    static const char *const letter_buses[] = { "xvd", "sd", "vd", "hd" };
    const char *end = name + strlen(name);
    const char *digits = end;

    *disk = -1;
    while (digits > name && g_ascii_isdigit(digits[-1])) {
        digits--;
    }
    *number = digits < end && end - digits < 6 ? atoi(digits) : -1;
    for (guint i = 0; i < G_N_ELEMENTS(letter_buses); i++) {
        const char *p = name + strlen(letter_buses[i]);
        int index = 0;

        if (!g_str_has_prefix(name, letter_buses[i]) || p == digits ||
            !g_ascii_islower(*p)) {
            continue;
        }
        /* sda..sdz, then sdaa...: letters count from 1, as Linux's
         * sd_format_disk_name() writes them. */
        for (; p < digits && g_ascii_islower(*p) && index < 1000; p++) {
            index = index * 26 + (*p - 'a' + 1);
        }
        if (p == digits) {
            *disk = index - 1;
            *number = digits < end ? *number : 0;
        }
        return;
    }
    if (g_str_has_prefix(name, "nvme") || g_str_has_prefix(name, "mmcblk")) {
        const char *p = name + (name[0] == 'n' ? 4 : 6);
        char *after;
        guint64 index;

        if (!g_ascii_isdigit(*p)) {
            return;
        }
        index = g_ascii_strtoull(p, &after, 10);
        if (name[0] == 'n') {
            /* nvmeCnN: controller C's namespace N. */
            if (*after != 'n' || !g_ascii_isdigit(after[1])) {
                return;
            }
            g_ascii_strtoull(after + 1, &after, 10);
        }
        if (index < 1000 && (*after == '\0' || *after == 'p')) {
            *disk = index;
            *number = *after == '\0' ? 0 : *number;
        }
    }
}

static VoPartition *vo_mounts_find_partition(VoGuest *guest,
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

        if (p->volume && vo_mounts_names_volume(source, p->volume)) {
            return p;
        }
    }
    if (source && g_str_has_prefix(source, "/dev/")) {
        int disk, number;

        vo_mounts_device_name(source + strlen("/dev/"), &disk, &number);
        for (guint i = 0; i < guest->layout->partitions->len; i++) {
            VoPartition *p = guest->layout->partitions->pdata[i];

            /* Without a disk in the name, only one disk may answer. */
            if (disk < 0 && p->number == number && number > 0 &&
                !p->container &&
                vo_mounts_n_disks(guest) == 1) {
                return p;
            }
            /* A decrypted volume has no device name of the guest's disks:
             * only its filesystem's UUID or label, or its LVM name. */
            if (disk >= 0 && (guint)disk == p->disk && p->number == number &&
                !p->volume && !p->container) {
                return p;
            }
        }
    }
    return NULL;
}

static VoFs *vo_mounts_fs_of(VoGuest *guest, VoPartition *part)
{
    guint idx;

    if (!g_ptr_array_find(guest->layout->partitions, part, &idx)) {
        return NULL;
    }
    return guest->filesystems->pdata[idx];
}

gboolean vo_mounts_parse_fstab(VoGuest *guest, GBytes *fstab, GError **error)
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
        m->part = vo_mounts_find_partition(guest, ent);
        if (!m->part) {
            /* The guest wrote the source; the report must be UTF-8. */
            g_autofree char *source = g_utf8_make_valid(
                mnt_fs_get_source(ent) ? mnt_fs_get_source(ent) : "none",
                -1);

            guint n = vo_mounts_n_disks(guest);

            m->problem = g_strdup_printf("the guest's /etc/fstab mounts it "
                                         "from %s, which is on none of the "
                                         "%u disk%s given", source, n,
                                         n == 1 ? "" : "s");
        } else {
            m->fs = vo_mounts_fs_of(guest, m->part);
            if (!m->fs) {
                const char *why = vo_layout_unsupported_reason(
                    m->part->fstype);
                const char *hint = vo_layout_route_hint(m->part->fstype);
                g_autofree char *where = vo_layout_describe(m->part);

                m->problem = g_strdup_printf(
                    "%s holds %s, which is not supported%s%s", where,
                    why ? why : m->part->fstype ? m->part->fstype
                                                : "no known filesystem",
                    hint ? "; " : "", hint ? hint : "");
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

gboolean vo_mounts_read_fstab(VoGuest *guest, GError **error)
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
    return vo_mounts_parse_fstab(guest, data, error);
}

static void vo_mounts_map_drive_letters(VoGuest *guest)
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
        m->fs = vo_mounts_fs_of(guest, m->part);
        if (!m->fs) {
            m->problem = g_strdup_printf("partition %d holds %s, which is "
                                         "not supported", m->part->number,
                                         m->part->fstype ? m->part->fstype
                                                         : "no filesystem");
        }
        g_ptr_array_add(guest->mounts, m);
    }
}

/*
 * The partitions of the decrypted volume @d (@layout) lie in the LUKS
 * container the parent opened it from, found among those of the guest's
 * own disks (scanned before it).
 */
static gboolean vo_mounts_link_opened(VoGuest *guest, guint d,
                                      VoLayout *layout, GError **error)
{
    const VoMountsOpened *o = &g_array_index(guest->opened, VoMountsOpened,
                                             d - vo_mounts_n_disks(guest));
    VoPartition *container = NULL;

    for (guint i = 0; i < guest->layout->partitions->len; i++) {
        VoPartition *p = guest->layout->partitions->pdata[i];

        if (p->disk == o->disk && p->offset == o->offset && !p->container &&
            g_strcmp0(p->fstype, "crypto_LUKS") == 0) {
            container = p;
        }
    }
    if (!container) {
        /* The parent opens only what a locate job reported. */
        g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                    "the LUKS volume at byte %" G_GUINT64_FORMAT " of disk "
                    "%u changed since it was found", o->offset, o->disk + 1);
        return FALSE;
    }
    container->opened = TRUE;
    for (guint i = 0; i < layout->partitions->len; i++) {
        VoPartition *p = layout->partitions->pdata[i];

        p->container = container;
        if (g_strcmp0(p->fstype, "crypto_LUKS") == 0) {
            /* Never opened: the parent opens the guest's disks' only. */
            p->opened = FALSE;
        }
    }
    return TRUE;
}

/*
 * The layout of each disk, and all their partitions in guest->layout: a
 * guest's fstab may name a filesystem of any of its disks.
 */
static gboolean vo_mounts_scan_disks(VoGuest *guest, GError **error)
{
    guest->layouts = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vo_layout_free);
    guest->layout = g_new0(VoLayout, 1);
    guest->layout->partitions = g_ptr_array_new();
    for (guint d = 0; d < guest->disks->len; d++) {
        VoLayout *layout = vo_layout_scan(guest->disks->pdata[d], error);

        if (!layout) {
            if (guest->disks->len > 1) {
                g_prefix_error(error, "disk %u: ", d + 1);
            }
            return FALSE;
        }
        g_ptr_array_add(guest->layouts, layout);
        if (d >= vo_mounts_n_disks(guest) &&
            !vo_mounts_link_opened(guest, d, layout, error)) {
            return FALSE;
        }
        for (guint i = 0; i < layout->partitions->len; i++) {
            VoPartition *p = layout->partitions->pdata[i];

            p->disk = d;
            g_ptr_array_add(guest->layout->partitions, p);
        }
    }
    guest->layout->table = g_strdup(
        ((VoLayout *)guest->layouts->pdata[0])->table);
    guest->layout->table_id = g_strdup(
        ((VoLayout *)guest->layouts->pdata[0])->table_id);
    return TRUE;
}

/* Maps the guest on guest->disks: partitions, filesystems, mounts. */
static gboolean vo_mounts_attach(VoGuest *guest, GError **error)
{
    g_autoptr(GString) unsupported = g_string_new(NULL);
    /* NULL-terminated, for g_strv_contains() and the message. */
    g_autoptr(GPtrArray) hints = g_ptr_array_new();
    static const char *const linux_marks[][3] = {
        { "etc", "os-release", NULL },
        { "usr", "lib", NULL },
    };
    static const char *const windows_mark[] = {
        "Windows", "System32", "config", "SOFTWARE", NULL,
    };
    VoPartition *root = NULL;
    VoMount *m;

    g_ptr_array_add(hints, NULL);
    if (!vo_mounts_scan_disks(guest, error)) {
        return FALSE;
    }
    guest->filesystems = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vo_fs_close);
    guest->mounts = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vo_mount_free);
    for (guint i = 0; i < guest->layout->partitions->len; i++) {
        VoPartition *p = guest->layout->partitions->pdata[i];
        /* An opened LUKS container is read through its decrypted
         * volume, a disk of its own. */
        const char *why = p->opened ? NULL
                                    : vo_layout_unsupported_reason(p->fstype);
        const VoFsDriver *driver = vo_fs_driver_for(p->fstype);
        VoFs *fs = NULL;

        g_debug("partition %d at %" G_GUINT64_FORMAT ": %s", p->number,
                p->offset, p->fstype ? p->fstype : "(unknown)");
        if (driver) {
            fs = driver->open(guest->disks->pdata[p->disk], p, error);
            if (!fs) {
                return FALSE;
            }
        } else if (why) {
            g_autofree char *where = vo_layout_describe(p);
            const char *hint = vo_layout_route_hint(p->fstype);

            g_string_append_printf(unsupported, "%s%s: %s",
                                   unsupported->len ? "; " : "", where, why);
            /* Each hint once, however many volumes need it. */
            if (hint && !g_strv_contains((const char *const *)hints->pdata,
                                         hint)) {
                g_ptr_array_insert(hints, hints->len - 1, (gpointer)hint);
            }
        }
        g_ptr_array_add(guest->filesystems, fs);
        if (!fs || root) {
            continue;
        }
        if (vo_mounts_fs_has(fs, linux_marks[0]) ||
            (g_str_equal(fs->type, "ext4") &&
             vo_mounts_fs_has(fs, linux_marks[1]) &&
             vo_mounts_fs_has(fs, (const char *const[]){ "etc", NULL }))) {
            root = p;
            guest->family = g_strdup("linux");
        } else if (fs->case_insensitive && vo_mounts_fs_has(fs, windows_mark)) {
            root = p;
            guest->family = g_strdup("windows");
        }
    }
    if (!root) {
        if (unsupported->len) {
            g_autofree char *routes = g_strjoinv(
                "; ", (char **)hints->pdata);

            g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                        "unsupported disk layout (%s); vmaugment-offline "
                        "services ext2/3/4 and NTFS directly%s%s",
                        unsupported->str, *routes ? "; " : "", routes);
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
    m->fs = vo_mounts_fs_of(guest, root);
    g_ptr_array_add(guest->mounts, m);
    if (g_str_equal(guest->family, "linux") &&
        !vo_mounts_read_fstab(guest, error)) {
        return FALSE;
    }
    if (g_str_equal(guest->family, "windows")) {
        vo_mounts_map_drive_letters(guest);
    }
    return TRUE;
}

VoGuest *vo_mounts_open(VoDisk *disk, const char *image, GError **error)
{
    return vo_mounts_open_disks(&disk, 1, image, error);
}

VoGuest *vo_mounts_open_disks(VoDisk *const *disks, guint n_disks,
                              const char *image, GError **error)
{
    return vo_mounts_open_guest(disks, n_disks, NULL, 0, image, error);
}

VoGuest *vo_mounts_open_guest(VoDisk *const *disks, guint n_disks,
                              const VoMountsOpened *opened, guint n_opened,
                              const char *image, GError **error)
{
    g_autoptr(VoGuest) guest = g_new0(VoGuest, 1);

    g_assert(n_disks > 0);
    guest->image = g_strdup(image);
    guest->disks = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vo_disk_free);
    for (guint i = 0; i < n_disks + n_opened; i++) {
        g_ptr_array_add(guest->disks, disks[i]);
    }
    guest->n_disks = n_disks;
    guest->opened = g_array_new(FALSE, FALSE, sizeof(VoMountsOpened));
    if (n_opened) {
        g_array_append_vals(guest->opened, opened, n_opened);
    }
    guest->disk = disks[0];
    if (!vo_mounts_attach(guest, error)) {
        return NULL;
    }
    return g_steal_pointer(&guest);
}

gboolean vo_mounts_reopen_read_only(VoGuest *guest, GError **error)
{
    /* What is verified must be what reached the image, not our cache. */
    if (!vo_guest_sync(guest, error)) {
        return FALSE;
    }
    g_clear_pointer(&guest->mounts, g_ptr_array_unref);
    g_clear_pointer(&guest->filesystems, g_ptr_array_unref);
    g_clear_pointer(&guest->layout, vo_layout_free);
    g_clear_pointer(&guest->layouts, g_ptr_array_unref);
    g_clear_pointer(&guest->family, g_free);
    for (guint i = 0; i < guest->disks->len; i++) {
        vo_disk_set_read_only(guest->disks->pdata[i]);
        vo_disk_drop_cache(guest->disks->pdata[i]);
    }
    return vo_mounts_attach(guest, error);
}
