/*
 * Inventory of a guest: os-release and the dpkg or rpm database for Linux.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <string.h>

#include "vo-dpkg-db.h"
#include "vo-inventory.h"
#include "vo-registry.h"
#include "vo-rpm.h"

#define VO_MAX_OS_RELEASE (64 * 1024)

static void vo_package_free(VoPackage *p)
{
    g_free(p->name);
    g_free(p->version);
    g_free(p->architecture);
    g_free(p->status);
    g_free(p);
}

void vo_inventory_free(VoInventory *inv)
{
    if (!inv) {
        return;
    }
    g_free(inv->family);
    g_free(inv->package_format);
    g_hash_table_unref(inv->os);
    g_hash_table_unref(inv->packages);
    g_ptr_array_unref(inv->package_list);
    g_free(inv);
}

static void vo_inventory_parse_os_release(VoInventory *inv, const char *text,
                                          gsize len)
{
    g_autofree char *copy = g_strndup(text, len);
    g_auto(GStrv) lines = g_strsplit(copy, "\n", -1);

    for (guint i = 0; lines[i]; i++) {
        char *line = g_strstrip(lines[i]);
        char *eq = strchr(line, '=');
        g_autofree char *value = NULL;

        if (line[0] == '#' || !eq || eq == line) {
            continue;
        }
        *eq = '\0';
        /* os-release values use shell quoting. */
        value = g_shell_unquote(eq + 1, NULL);
        if (!value || !g_utf8_validate(value, -1, NULL)) {
            continue;
        }
        g_hash_table_replace(inv->os, g_ascii_strdown(line, -1),
                             g_steal_pointer(&value));
    }
}

gboolean vo_package_installed(const VoPackage *p)
{
    /* dpkg's "install ok installed"; rpm's packages are all installed. */
    return g_str_equal(p->status, "installed") ||
           g_str_has_suffix(p->status, " installed");
}

void vo_inventory_add_package(VoInventory *inv, GHashTable *fields)
{
    const char *name = g_hash_table_lookup(fields, "package");
    const char *status = g_hash_table_lookup(fields, "status");
    const char *version = g_hash_table_lookup(fields, "version");
    const char *arch = g_hash_table_lookup(fields, "architecture");
    VoPackage *p;

    /* Every field reaches the report, whose JSON must be UTF-8. */
    if (!name || !status || !version ||
        !g_utf8_validate(name, -1, NULL) ||
        !g_utf8_validate(version, -1, NULL) ||
        !g_utf8_validate(status, -1, NULL) ||
        (arch && !g_utf8_validate(arch, -1, NULL))) {
        return;
    }
    p = g_new0(VoPackage, 1);
    p->name = g_strdup(name);
    p->version = g_strdup(version);
    p->architecture = g_strdup(arch ? arch : "");
    p->status = g_strdup(status);
    g_ptr_array_add(inv->package_list, p);
    /* Plain names find the first architecture; name:arch is exact. */
    if (!g_hash_table_contains(inv->packages, name)) {
        g_hash_table_insert(inv->packages, g_strdup(name), p);
    }
    if (arch) {
        g_hash_table_insert(inv->packages,
                            g_strdup_printf("%s:%s", name, arch), p);
    }
}

static void vo_inventory_parse_dpkg(VoInventory *inv, const char *text,
                                    gsize len)
{
    g_autoptr(GHashTable) fields = g_hash_table_new_full(g_str_hash,
                                                         g_str_equal, g_free,
                                                         g_free);
    const char *p = text, *end = text + len;

    while (p < end) {
        const char *nl = memchr(p, '\n', end - p);
        const char *eol = nl ? nl : end;
        const char *colon;

        if (eol == p) {
            /* A blank line ends the paragraph. */
            vo_inventory_add_package(inv, fields);
            g_hash_table_remove_all(fields);
        } else if (*p != ' ' && *p != '\t' &&
                   (colon = memchr(p, ':', eol - p))) {
            g_autofree char *key = g_ascii_strdown(p, colon - p);

            if (g_str_equal(key, "package") || g_str_equal(key, "status") ||
                g_str_equal(key, "version") ||
                g_str_equal(key, "architecture")) {
                char *value = g_strndup(colon + 1, eol - colon - 1);

                g_hash_table_replace(fields, g_steal_pointer(&key),
                                     g_strstrip(value));
            }
        }
        p = eol + 1;
    }
    vo_inventory_add_package(inv, fields);
}

static VoInventory *vo_inventory_new(const char *family)
{
    VoInventory *inv = g_new0(VoInventory, 1);

    inv->family = g_strdup(family);
    inv->os = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    inv->packages = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                          NULL);
    inv->package_list = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vo_package_free);
    g_hash_table_insert(inv->os, g_strdup("family"), g_strdup(family));
    return inv;
}

VoInventory *vo_inventory_parse_linux(const char *family, GBytes *os_release,
                                      GBytes *dpkg_status, GError **error)
{
    g_autoptr(VoInventory) inv = vo_inventory_new(family);

    if (os_release) {
        gsize len;
        const char *text = g_bytes_get_data(os_release, &len);

        vo_inventory_parse_os_release(inv, text,
                                      MIN(len, (gsize)VO_MAX_OS_RELEASE));
    }
    if (dpkg_status) {
        gsize len;
        const char *text = g_bytes_get_data(dpkg_status, &len);

        if (len > VO_DPKG_MAX_STATUS) {
            g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                        "the guest's dpkg status file is implausibly large");
            return NULL;
        }
        vo_inventory_parse_dpkg(inv, text, len);
        inv->package_format = g_strdup("deb");
    }
    return g_steal_pointer(&inv);
}

void vo_inventory_add_rpm(const char *name, const char *evr,
                          const char *arch, gpointer data)
{
    g_autoptr(GHashTable) fields = g_hash_table_new(g_str_hash, g_str_equal);

    g_hash_table_insert(fields, "package", (gpointer)name);
    g_hash_table_insert(fields, "version", (gpointer)evr);
    g_hash_table_insert(fields, "status", "installed");
    if (arch) {
        g_hash_table_insert(fields, "architecture", (gpointer)arch);
    }
    vo_inventory_add_package(data, fields);
}

VoInventory *vo_inventory_read(VoGuest *guest, GError **error)
{
    g_autoptr(VoInventory) inv = NULL;
    gboolean found;
    g_autoptr(GBytes) osr = NULL;
    g_autoptr(GBytes) status = NULL;
    g_autoptr(GError) local = NULL;

    if (g_str_equal(guest->family, "windows")) {
        g_autoptr(VoInventory) inv = vo_inventory_new(guest->family);
        g_autoptr(GPtrArray) entries = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(GHashTable) fields = g_hash_table_new_full(
            g_str_hash, g_str_equal, g_free, g_free);

        if (!vo_registry_inventory(guest, inv->os, entries, error)) {
            return NULL;
        }
        /* Uninstall entries are the Windows packages. */
        for (guint i = 0; i + 1 < entries->len; i += 2) {
            g_hash_table_replace(fields, g_strdup("package"),
                                 g_strdup(entries->pdata[i]));
            g_hash_table_replace(fields, g_strdup("version"),
                                 g_strdup(entries->pdata[i + 1]));
            g_hash_table_replace(fields, g_strdup("status"),
                                 g_strdup("install ok installed"));
            vo_inventory_add_package(inv, fields);
        }
        return g_steal_pointer(&inv);
    }

    osr = vo_guest_read_file(guest, "/etc/os-release", &local);
    /* Only a missing file falls back: one that cannot be read (a link
     * loop, a corrupt inode) would otherwise pass for a guest without it,
     * and the rules would judge an OS that is not there. */
    if (!osr && g_error_matches(local, VO_ERROR, VO_ERROR_NOT_FOUND)) {
        g_clear_error(&local);
        osr = vo_guest_read_file(guest, "/usr/lib/os-release", &local);
    }
    if (!osr && !g_error_matches(local, VO_ERROR, VO_ERROR_NOT_FOUND)) {
        g_propagate_error(error, g_steal_pointer(&local));
        return NULL;
    }
    g_clear_error(&local);

    status = vo_guest_read_file_max(guest, VO_DPKG_ADMINDIR "/status",
                                    VO_DPKG_MAX_STATUS, &local);
    if (!status && !g_error_matches(local, VO_ERROR, VO_ERROR_NOT_FOUND)) {
        g_propagate_error(error, g_steal_pointer(&local));
        return NULL;
    }
    inv = vo_inventory_parse_linux(guest->family, osr, status, error);
    /* Without dpkg, rpm's database, if there is one. */
    if (inv && !status) {
        if (!vo_rpm_read(guest, vo_inventory_add_rpm, inv, &found, error)) {
            return NULL;
        }
        if (found) {
            inv->package_format = g_strdup("rpm");
        }
    }
    return g_steal_pointer(&inv);
}

static gint vo_inventory_cmp_str(gconstpointer a, gconstpointer b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

JsonNode *vo_inventory_to_json(VoGuest *guest, VoInventory *inv)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(GPtrArray) keys = g_ptr_array_new();
    GHashTableIter it;
    gpointer key;

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "image");
    json_builder_add_string_value(b, guest->image);
    json_builder_set_member_name(b, "format");
    json_builder_add_string_value(b, vo_disk_get_format(guest->disk));
    json_builder_set_member_name(b, "virtual_size");
    json_builder_add_int_value(b, vo_disk_get_size(guest->disk));
    json_builder_set_member_name(b, "partition_table");
    if (guest->layout->table) {
        json_builder_add_string_value(b, guest->layout->table);
    } else {
        json_builder_add_null_value(b);
    }

    json_builder_set_member_name(b, "partitions");
    json_builder_begin_array(b);
    for (guint i = 0; i < guest->layout->partitions->len; i++) {
        VoPartition *p = guest->layout->partitions->pdata[i];
        const struct {
            const char *key;
            const char *value;
        } strs[] = {
            { "type", p->type }, { "partuuid", p->part_uuid },
            { "partlabel", p->part_label }, { "filesystem", p->fstype },
            { "uuid", p->fs_uuid }, { "label", p->fs_label },
            { "volume", p->volume },
        };

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "number");
        json_builder_add_int_value(b, p->number);
        json_builder_set_member_name(b, "offset");
        json_builder_add_int_value(b, p->offset);
        json_builder_set_member_name(b, "size");
        json_builder_add_int_value(b, p->size);
        for (gsize k = 0; k < G_N_ELEMENTS(strs); k++) {
            if (strs[k].value && g_utf8_validate(strs[k].value, -1, NULL)) {
                json_builder_set_member_name(b, strs[k].key);
                json_builder_add_string_value(b, strs[k].value);
            }
        }
        json_builder_end_object(b);
    }
    json_builder_end_array(b);

    json_builder_set_member_name(b, "mounts");
    json_builder_begin_array(b);
    for (guint i = 0; i < guest->mounts->len; i++) {
        VoMount *m = guest->mounts->pdata[i];
        g_autofree char *shown = NULL;

        json_builder_begin_object(b);
        if (g_str_equal(guest->family, "windows")) {
            /* "/" is C:, "/:D" is D: (see vo_guest_normalize_path()). */
            shown = g_str_equal(m->mountpoint, "/")
                        ? g_strdup("C:")
                        : g_strdup_printf("%s:", m->mountpoint + 2);
        }
        json_builder_set_member_name(b, "mountpoint");
        json_builder_add_string_value(b, shown ? shown : m->mountpoint);
        if (m->part) {
            json_builder_set_member_name(b, "partition");
            json_builder_add_int_value(b, m->part->number);
            if (m->part->volume) {
                json_builder_set_member_name(b, "volume");
                json_builder_add_string_value(b, m->part->volume);
            }
        }
        if (m->fs) {
            json_builder_set_member_name(b, "filesystem");
            json_builder_add_string_value(b, m->part->fstype);
        }
        if (m->problem) {
            json_builder_set_member_name(b, "problem");
            json_builder_add_string_value(b, m->problem);
        }
        json_builder_end_object(b);
    }
    json_builder_end_array(b);

    json_builder_set_member_name(b, "os");
    json_builder_begin_object(b);
    g_hash_table_iter_init(&it, inv->os);
    while (g_hash_table_iter_next(&it, &key, NULL)) {
        g_ptr_array_add(keys, key);
    }
    g_ptr_array_sort(keys, vo_inventory_cmp_str);
    for (guint i = 0; i < keys->len; i++) {
        json_builder_set_member_name(b, keys->pdata[i]);
        json_builder_add_string_value(
            b, g_hash_table_lookup(inv->os, keys->pdata[i]));
    }
    json_builder_end_object(b);

    if (inv->package_format) {
        json_builder_set_member_name(b, "package_format");
        json_builder_add_string_value(b, inv->package_format);
    }
    json_builder_set_member_name(b, "packages");
    json_builder_begin_array(b);
    for (guint i = 0; i < inv->package_list->len; i++) {
        VoPackage *p = inv->package_list->pdata[i];

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "name");
        json_builder_add_string_value(b, p->name);
        json_builder_set_member_name(b, "version");
        json_builder_add_string_value(b, p->version);
        json_builder_set_member_name(b, "architecture");
        json_builder_add_string_value(b, p->architecture);
        json_builder_set_member_name(b, "status");
        json_builder_add_string_value(b, p->status);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    json_builder_end_object(b);
    return json_builder_get_root(b);
}
